//! The reference Tollgate gateway, as a library.
//!
//! The `tollgate` binary is a thin CLI over this crate: it loads a LiteLLM
//! `config.yaml` ([`config`]), builds a [`Gateway`] from it, and [`serve`]s it
//! on a TCP listener with graceful shutdown. The same pieces let a test or
//! another program embed the gateway.
//!
//! The gateway speaks the OpenAI API: `POST /v1/chat/completions` (and
//! `/chat/completions`), streaming and not; `GET /v1/models`; `GET /health`
//! (liveness, never calls upstream) and `GET /health/readiness`. Model groups
//! are served by real upstreams through the pooled [`upstream`] client
//! (`openai/`, `openrouter/`) or by the in-process [`mock`] provider
//! (`mock/`). A running gateway reloads its config without a restart
//! ([`reload`]: `SIGHUP`, `POST /config/reload`).
//!
//! # Example
//!
//! ```
//! use tollgate_gateway::{Gateway, config};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let yaml = "
//! model_list:
//!   - model_name: demo
//!     litellm_params:
//!       model: mock/demo
//!       mock_response: Hi!
//! ";
//! let loaded = config::load_str(yaml, &|_| None).unwrap();
//! let gateway = Gateway::new(&loaded.config).unwrap();
//!
//! // Served on a socket with `tollgate_gateway::serve`; here, in process.
//! let request = http::Request::post("/v1/chat/completions")
//!     .body(http_body_util::Full::new(bytes::Bytes::from(
//!         r#"{"model":"demo","messages":[{"role":"user","content":"hello"}]}"#,
//!     )))
//!     .unwrap();
//! let response = gateway.handle(request).await;
//! assert_eq!(response.status(), 200);
//! # }
//! ```
pub mod config;
pub mod healthcheck;
pub mod log_format;
pub mod log_writer;
pub mod mock;
pub mod model_prices;
pub mod openrouter_models;
pub mod upstream;

/// A map the request path looks names up in — model groups, deployments,
/// metric label sets: keys from the config or bounded label values, hashed
/// with `foldhash` (seeded per process) instead of SipHash, whose ~200
/// instructions a lookup showed in the profiles (BENCHMARKS.md).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

mod access_log;
mod after_write;
mod app;
mod build;
mod connection;
pub mod deadlines;
mod deployment;
mod disabled;
mod door;
pub(crate) mod end_users;
mod exposure;
mod generation;
mod grace;
mod handoff;
mod hedge;
mod http;
mod key_format;
pub(crate) mod keys;
mod learned;
pub(crate) mod ledger;
mod limits;
pub(crate) mod metrics;
mod model_info;
mod native_responses;
mod per_core;
mod pricing;
mod provider;
mod providers;
pub mod reload;
mod request_body;
mod request_id;
pub mod resilience;
mod response;
mod routing;
mod server;
mod shared;
mod spend;
mod stack;
mod teams;
#[cfg(test)]
mod temp_dir;
mod write_deadline;

pub use app::Gateway;
pub use build::BuildError;
pub use connection::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HTTP2_KEEPALIVE_INTERVAL, DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, MAX_DEFAULT_CONNECTIONS,
};
pub use exposure::open_access_warning;
pub use ledger::DEFAULT_LEDGER_FILE;
pub use per_core::serve_per_core;
pub use request_body::{
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_REQUEST_BODY_IDLE_TIMEOUT, DEFAULT_REQUEST_BODY_MEMORY,
    DEFAULT_REQUEST_BODY_TIMEOUT,
};
pub use response::GatewayBody;
pub use server::{DEFAULT_GRACE_PERIOD, bind, serve};
