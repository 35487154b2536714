//! The shared vocabulary of the Tollgate layers.
//!
//! Every Tollgate layer — retry, circuit breaker, fallback, cost, the
//! OpenRouter normalizer — decides "failure or not" through this crate, so
//! they agree on what happened:
//!
//! - [`ErrorClass`], [`Scope`] and [`TimeoutKind`]: what went wrong, and the
//!   defaults each class carries (retryable, fallback-eligible, counts against
//!   a breaker);
//! - [`Failure`]: a classified error with its hints (retry-after, scope) and
//!   its OpenAI-shaped rendering; [`UpstreamError`], an inner service's
//!   error paired with its classification;
//! - [`classify`]: a classifier shaped like tower-http's, with a default for
//!   OpenAI-compatible upstreams;
//! - [`sse`]: an incremental Server-Sent Events parser and writer, and
//!   [`sse::SharedEvents`], a stream's events split once for every layer
//!   that watches it; [`ChunkView`]: what a stream chunk's `choices` hold,
//!   read by a [`ChunkReader`];
//! - [`json_cursor`]: JSON read by serde_json's grammar without building
//!   anything, for the readers of every chunk and answer;
//! - [`ReadLimited`]: a whole response body read inside a `poll`, up to a
//!   limit;
//! - [`RequestBody`] and [`ChatRequest`]: the request read once at ingress,
//!   cheap to resend, carrying its light parsed view (which leaves unknown
//!   fields untouched) — a chat request, or the legacy completion or
//!   embeddings request its [`Operation`] names; the layers read and edit
//!   the request through the body, never a copy of it;
//! - [`Redactor`] and [`Secrets`]: what makes upstream text safe to show a
//!   client — no configured secret, nothing shaped like a key;
//! - [`Usd`]: exact money in pico-dollars, and [`write_picos`], the one
//!   place pico-dollars become decimal text;
//! - [`time`]: the wall clock the layers read ([`time::Clock`]), Unix
//!   milliseconds and UTC civil dates;
//! - [`Availability`], [`DeploymentLimits`] and [`DeploymentQuota`]: which
//!   deployments are out and where their `rpm` and `tpm` are counted — the
//!   balancer's contracts with the breakers and the limits' store;
//! - [`Valid`] and [`Validate`]: a configuration checked once, at load, so
//!   that a layer's `new` cannot fail;
//! - [`extensions`]: what the layers pass each other on requests and
//!   responses;
//! - [`shared_state::Fallbacks`]: how a user of state shared through Redis
//!   counts and logs falling back to its local copy.
//!
//! # Example
//!
//! ```
//! use tollgate_core::{ErrorClass, Failure};
//! use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
//! use http::{HeaderMap, StatusCode};
//!
//! let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.",
//!                 "type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
//! let failure = OpenAiClassifier::new().classify_error_body(
//!     StatusCode::BAD_REQUEST,
//!     &HeaderMap::new(),
//!     body,
//! );
//! assert_eq!(failure.class(), ErrorClass::ContextWindowExceeded);
//! assert!(!failure.is_retryable());
//! assert!(failure.is_fallback_eligible());
//!
//! // What the client gets: an OpenAI-shaped error with a fitting status.
//! let response: http::Response<bytes::Bytes> = failure.to_response();
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! ```

pub mod classify;
pub mod extensions;
pub mod json_cursor;
pub mod redact;
pub mod shared_state;
pub mod sse;
pub mod time;

mod availability;
mod body;
mod chat;
mod chat_fallbacks;
mod chunk;
mod class;
mod deployment_limits;
mod failure;
mod inputs;
mod json_depth;
mod money;
mod operation;
mod read_limited;
mod upstream_error;
mod usage_report;
mod valid;

pub use availability::{AlwaysAvailable, Availability};
pub use body::{RequestBody, read_body_limited};
pub use chat::{ChatRequest, MAX_JSON_DEPTH};
pub use chat_fallbacks::RequestFallbacks;
pub use chunk::{ChunkReader, ChunkView};
pub use class::{ErrorClass, Scope, TimeoutKind};
pub use deployment_limits::{Admission, AdmitFuture, DeploymentLimits, DeploymentQuota, Unlimited};
pub use failure::{BoxError, Failure};
pub use money::{PICOS_PER_DOLLAR, ParseUsdError, Usd, write_picos};
pub use operation::Operation;
pub use read_limited::{ReadLimited, ReadLimitedError};
pub use redact::{MAX_MESSAGE_LEN, MIN_SECRET_LEN, Redactor, Secrets, sanitize_message};
pub use upstream_error::UpstreamError;
pub use valid::{Valid, Validate};
