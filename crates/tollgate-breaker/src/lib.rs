//! Per-key circuit breakers for HTTP upstreams, as a tower layer.
//!
//! [`CircuitBreakerLayer`] wraps any `Service<http::Request<B>>` that answers
//! `http::Response`s — a hyper client, a tonic channel, the gateway's
//! upstream stack — with one breaker per key. By default there is one key,
//! [`WholeService`]: one breaker for everything the layer wraps; pick
//! [`HostKey`], [`DeploymentKey`] or [`key_fn`] to guard several upstreams
//! separately.
//!
//! - **CLOSED**: calls go through and their outcomes are counted. It opens
//!   on a failure rate over a sliding window (with a minimum number of
//!   calls), on a run of consecutive failures, or — when the upstream
//!   rate-limits with `Retry-After` — for as long as the upstream asked.
//! - **OPEN**: calls are rejected in `call`, at once, with [`CircuitOpen`]
//!   (`key`, `retry_after`); the inner service never sees them.
//! - **HALF_OPEN**: after the open time, a bounded number of probes go
//!   through. Success closes the breaker; failure reopens it for twice as
//!   long as before (capped, jittered).
//!
//! Only failures that say "this upstream is unhealthy" count: the class of
//! each failure comes from a [classifier](tollgate_core::classify)
//! ([`OpenAiClassifier`](tollgate_core::classify::OpenAiClassifier) by
//! default, pluggable), and which classes count is configurable — never
//! `bad_request` or `context_window_exceeded` by default. A failure that
//! does not count is neither success nor failure. Failures reach the breaker
//! either as `Err(e)` (the [`Failure`](tollgate_core::Failure) in `e`'s
//! source chain, or a classified I/O error) or as an `Ok` response with an
//! error status, which the caller still receives. An error nothing can
//! classify (a tower `Elapsed`, hyper's "connection closed before message
//! completed") still means the upstream did not answer: it counts as
//! `upstream_unavailable`.
//!
//! A success is settled when its body ends ([`ResponseBody`]), so a stream
//! that breaks half-way counts as a failure, and one the client abandons
//! counts as neither (and frees its probe slot).
//!
//! The breakers live in [`Breakers`], built once with the layer: read
//! [`snapshots`](Breakers::snapshots) for a health endpoint,
//! [`subscribe`](Breakers::subscribe) to state changes for metrics, and
//! [`register`](Breakers::register) known keys so they show before their
//! first call. A CLOSED breaker admits and counts with a few atomic
//! operations and no lock (see [`Breakers`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tollgate_breaker::{BreakerConfig, CircuitBreakerLayer, CircuitOpen, FixedKey, State};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = BreakerConfig::builder()
//!     .consecutive_failures(2)
//!     .cooldown(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let layer = CircuitBreakerLayer::new(config)
//!     .key(FixedKey::new("upstream"));
//! let breakers = layer.breakers();
//!
//! // An upstream that is down.
//! let upstream = service_fn(|_req: Request<String>| async {
//!     let mut response = Response::new(Full::new(Bytes::from("overloaded")));
//!     *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! let service = layer.layer(upstream);
//!
//! // Two failures open the breaker; the caller still gets each 503.
//! for _ in 0..2 {
//!     let response = service.clone().oneshot(Request::new(String::new())).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! }
//! assert_eq!(breakers.snapshot("upstream").unwrap().state, State::Open);
//!
//! // Now calls are rejected at once, without reaching the upstream.
//! let error = service.oneshot(Request::new(String::new())).await.unwrap_err();
//! let open = error.downcast_ref::<CircuitOpen>().unwrap();
//! assert_eq!(open.key(), "upstream");
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(5));
//! # }
//! ```
//!
//! # On a hyper client
//!
//! One breaker per upstream host ([`HostKey`]). The response body is a
//! [`ResponseBody`] around hyper's `Incoming`: read it to the end (or drop
//! it) as usual; that is when the call is settled.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tollgate_breaker::{BreakerConfig, CircuitBreakerLayer, CircuitOpen, HostKey};
//! use tollgate_core::Failure;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_core::BoxError> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let layer = CircuitBreakerLayer::default().key(HostKey);
//! let client = layer.layer(client);
//!
//! let request = http::Request::post("http://127.0.0.1:8080/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(br#"{"model":"m","messages":[]}"#)))?;
//! match client.oneshot(request).await {
//!     Ok(response) => {
//!         let body = response.into_body().collect().await?.to_bytes();
//!         println!("{}", String::from_utf8_lossy(&body));
//!     }
//!     Err(error) if error.is::<CircuitOpen>() => {
//!         // Fail fast, or try another upstream.
//!         println!("{error}");
//!     }
//!     Err(error) => println!("{}", Failure::from_error(&*error)),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # When not to use it
//!
//! - In front of a single upstream you cannot replace: failing fast only
//!   helps when the caller has something better to do (another deployment, a
//!   fallback model, a cached answer, shedding load). Otherwise a retry with
//!   backoff and a budget is what protects the upstream.
//! - With keys from an unbounded set (user ids, raw URLs): every key gets a
//!   breaker, and a key seen once is never forgotten (up to
//!   [`BreakerConfig::max_keys`]).
//! - To share breaker state between replicas: this one is in-process.
//! - Where requests are not HTTP: the outcome model is the HTTP response and
//!   its body.

mod availability;
mod body;
mod breakers;
mod config;
mod error;
mod future;
mod jitter;
mod key;
mod layer;
#[cfg(feature = "redis")]
mod redis_sync;
mod service;
mod state;

pub use body::ResponseBody;
pub use breakers::{Breakers, EVENT_CAPACITY, Snapshot, StateChange, WeakBreakers};
pub use config::{BreakerConfig, BreakerConfigBuilder, ConfigError};
pub use error::CircuitOpen;
pub use future::ResponseFuture;
pub use jitter::JitterSource;
pub use key::{DeploymentKey, FixedKey, FnKey, HostKey, KeyExtractor, WholeService, key_fn};
pub use layer::CircuitBreakerLayer;
#[cfg(feature = "redis")]
pub use redis_sync::{OnFallback, POLL_EVERY, RedisSync};
pub use service::CircuitBreaker;
pub use state::{Reason, State};
