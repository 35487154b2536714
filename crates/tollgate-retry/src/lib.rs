//! Retries with exponential backoff, `Retry-After` and a retry budget, as a
//! tower layer for HTTP clients of LLM upstreams.
//!
//! [`RetryLayer`] wraps any `Service<http::Request<B>>` whose requests can be
//! cloned (`B: Clone`: [`RequestBody`](tollgate_core::RequestBody) or
//! `Bytes`, which clone a reference count) and resends a request whose
//! attempt failed, when a retry may help:
//!
//! - **What failed** is decided by the shared classifier of
//!   [`tollgate_core`]: an `Err` is classified with
//!   [`Failure::from_error`](tollgate_core::Failure::from_error) (the gateway
//!   turns upstream errors into `Err(Failure)`), an `Ok` response by its
//!   status and headers ([`ClassifyResponse`](tollgate_core::classify::ClassifyResponse),
//!   by default [`OpenAiClassifier`](tollgate_core::classify::OpenAiClassifier)).
//!   A success, or a stream, is handed up at once and never retried: from
//!   then on its bytes may be reaching the client.
//! - **Which failures** are retried, and how often, is a per-class
//!   [`RetryPolicy`] over [`num_retries`](RetryConfig::num_retries) (3 by
//!   default; LiteLLM's `num_retries` and `retry_policy`). By default only
//!   `rate_limited`, `timeout` and `upstream_unavailable` are:
//!   `bad_request`, `auth`, `content_policy` and `context_window_exceeded`
//!   go up after one attempt.
//! - **When**: after a backoff with full jitter, `random(0, min(cap, base ×
//!   factorⁿ))`, never shorter than [`min_backoff`](RetryConfig::min_backoff)
//!   ([`Backoff`]); or after the upstream's `Retry-After` (seconds or HTTP
//!   date) or `retry-after-ms` when that is longer, up to
//!   [`max_retry_after`](RetryConfig::max_retry_after) — an upstream asking
//!   for more is not retried at all.
//! - **Deadline**: when the wait would reach the request's
//!   [`Deadline`](tollgate_core::extensions::Deadline) extension, the last
//!   outcome goes up at once, leaving the time to a fallback.
//! - **Circuit breakers**: a call an open breaker below rejected
//!   ([`Failure::is_circuit_open`](tollgate_core::Failure::is_circuit_open))
//!   goes up at once ([`StopReason::CircuitOpen`]), never after sleeping
//!   through the breaker's open time: this layer resends to the same
//!   breaker. To move on to another upstream, put a fallback above, or a
//!   balancer that skips open breakers between this layer and them.
//! - **Budget**: retries come out of a [`RetryBudget`] shared by every
//!   service of the layer — a fraction of the requests (20%) plus a reserve
//!   (10 per second) — so that an outage never multiplies the load on an
//!   upstream already down.
//!
//! The response handed up carries the number of retries made, as an
//! [`AttemptedRetries`](tollgate_core::extensions::AttemptedRetries)
//! extension and as the [`x-tollgate-attempted-retries`](ATTEMPTED_RETRIES)
//! header, also when it is 0 (a header that is always there tells "no retry
//! was needed" from "no retry layer", and matches LiteLLM's
//! `x-litellm-attempted-retries`). A failed attempt that was a response is
//! handed up as that response; one that was an error becomes a [`GaveUp`]
//! error, whose source is the attempt's error, so `Failure::from_error`
//! still finds its class. Each retry carries an
//! [`Attempt`](tollgate_core::extensions::Attempt) extension counting on from
//! the request's own, and the attempts of a request that may be retried
//! share a
//! [`TriedDeployments`](tollgate_core::extensions::TriedDeployments), so that
//! a balancer below sends a retry to a deployment not tried yet.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use tollgate_core::extensions::AttemptedRetries;
//! use tollgate_retry::{RetryConfig, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tollgate_core::BoxError> {
//! // An upstream that is unavailable twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = service_fn({
//!     let calls = calls.clone();
//!     move |_request: Request<Bytes>| {
//!         let status = match calls.fetch_add(1, Ordering::Relaxed) {
//!             0 | 1 => StatusCode::SERVICE_UNAVAILABLE,
//!             _ => StatusCode::OK,
//!         };
//!         let mut response = Response::new(Bytes::from_static(b"{}"));
//!         *response.status_mut() = status;
//!         async move { Ok::<_, Infallible>(response) }
//!     }
//! });
//!
//! let config = RetryConfig::builder().num_retries(3).build()?;
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(config))
//!     .service(upstream);
//!
//! let request = Request::post("/v1/chat/completions").body(Bytes::from_static(b"{}"))?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::Relaxed), 3);
//! assert_eq!(response.extensions().get(), Some(&AttemptedRetries(2)));
//! assert_eq!(response.headers()["x-tollgate-attempted-retries"], "2");
//! # Ok(())
//! # }
//! ```
//!
//! On a hyper client, with the request body read once into a
//! [`RequestBody`](tollgate_core::RequestBody):
//!
//! ```no_run
//! use bytes::Bytes;
//! use http::Request;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tollgate_core::{Failure, RequestBody};
//! use tollgate_retry::{GaveUp, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<RequestBody>();
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::default())
//!     .service(client);
//!
//! let request = Request::post("http://127.0.0.1:8080/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(RequestBody::new(Bytes::from_static(br#"{"model":"gpt-4o-mini","messages":[]}"#)))?;
//! match client.oneshot(request).await {
//!     // A success, or the last error response (a 429 whose Retry-After
//!     // was too long, a 400...), with `x-tollgate-attempted-retries`.
//!     Ok(response) => println!("{} {:?}", response.status(), response.headers()),
//!     // Connection errors: classified, with the retries made.
//!     Err(error) => {
//!         let failure = Failure::from_error(&*error);
//!         let retries = error.downcast_ref::<GaveUp>().map_or(0, GaveUp::retries);
//!         println!("{} after {retries} retries", failure.class());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # When not to use it
//!
//! - **Streaming request bodies** cannot be replayed: read the body first
//!   (the gateway does, with a size limit), or do not retry.
//! - **Moving to another deployment** is a fallback's or a balancer's job:
//!   this layer resends to the service it wraps. Put it above a balancer to
//!   let each retry pick a deployment.
//! - **Nested retry layers** multiply (3 retries over 3 retries is 16
//!   attempts); retry in one place.
//! - **Requests whose duplicates cost**: an LLM completion that timed out
//!   may still have run, and been billed, upstream; retrying runs it again.
//! - **Body-level classification** of error *responses* is not done here:
//!   an `Ok` error response is judged by its status and headers (OpenAI's
//!   `insufficient_quota` comes as a 429 and looks like a rate limit). A
//!   stack that needs the body's verdict turns error responses into
//!   `Err(Failure)` below this layer, as the Tollgate gateway does.
//! - **Failures after the response head** (a stream cut halfway) are never
//!   retried: the client may have the first bytes. A fallback layer can end
//!   the stream with a clear error.

mod budget;
mod config;
mod error;
mod future;
mod jitter;
mod layer;
mod service;
mod state;

pub use budget::RetryBudget;
pub use config::{BudgetConfig, RetryConfig, RetryConfigBuilder, RetryPolicy};
pub use error::{ConfigError, GaveUp, StopReason};
pub use future::ResponseFuture;
pub use jitter::{Jitter, NoJitter, RandomJitter};
pub use layer::RetryLayer;
pub use service::Retry;
pub use state::Backoff;

/// The response header carrying the number of retries made:
/// `x-tollgate-attempted-retries`.
pub const ATTEMPTED_RETRIES: http::HeaderName =
    http::HeaderName::from_static("x-tollgate-attempted-retries");
