//! A tower layer that makes OpenRouter look like OpenAI to the layers above
//! it, and its failures look like Tollgate's error classes.
//!
//! OpenRouter speaks OpenAI's chat-completions API with quirks that break
//! strict clients and hide failures: errors arrive inside HTTP 200 bodies
//! and inside SSE streams, `error.code` is a number, streams carry
//! `: OPENROUTER PROCESSING` comments, chunks carry fields OpenAI does not
//! have (`provider`, `native_finish_reason`, `reasoning`), rate-limit resets
//! come in epoch milliseconds, and the free models share one account-wide
//! pool of requests. [`OpenRouterLayer`] sits over an HTTP client and turns
//! all of that into one contract:
//!
//! - **Requests** go to the configured base URL
//!   (`https://openrouter.ai/api/v1` by default) when their URI is relative,
//!   with `Authorization: Bearer <key>`, `HTTP-Referer` and `X-Title` when
//!   configured and not already set. Bodies are not touched: the caller
//!   sends the model slug without its `openrouter/` prefix ([`strip_prefix`]).
//! - **`Ok(response)` is a success in OpenAI's shape.** A complete body is
//!   read (up to 8 MiB) and reshaped field by field; a stream is reshaped
//!   event by event as it arrives, never buffered.
//! - **Every failure is an `Err`** whose source chain holds a classified
//!   [`Failure`](tollgate_core::Failure) — class, subkind, [`Scope`],
//!   retry-after, and a message safe for a client — found with
//!   `Failure::from_error`: an error status, an error inside a 200 body, an
//!   error event before a stream's first data event (the layer reads that
//!   far before answering, so nothing has reached the client and a retry or
//!   fallback is still possible), or the inner service's own error.
//! - **A stream that fails after its first data event** ends, cleanly for
//!   the client, with an OpenAI-style `data: {"error": …}` event; the
//!   failure (neither retryable nor fallback-eligible: content went out) is
//!   recorded in the response's [`StreamFailure`], and [`OpenRouterEos`]
//!   reports it to layers that watch the stream with core's `WatchBody`.
//!
//! [`OpenRouterClassifier`] holds the rules, and is a core
//! `ClassifyResponse`: a breaker or a retry over a raw OpenRouter client
//! can classify with it too. Its docs explain the free-model pool
//! ([`Scope::AccountFreePool`]).
//!
//! [`Scope`]: tollgate_core::Scope
//! [`Scope::AccountFreePool`]: tollgate_core::Scope::AccountFreePool
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::{ErrorClass, Failure};
//! use tollgate_openrouter::{OpenRouterConfig, OpenRouterLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Stands in for an HTTP client talking to OpenRouter.
//! let upstream = service_fn(|request: Request<Full<Bytes>>| async move {
//!     assert_eq!(request.uri(), "https://openrouter.ai/api/v1/chat/completions");
//!     assert!(request.headers().contains_key("authorization"));
//!     let body: &'static str = if request.headers().contains_key("x-demo-fail") {
//!         // An error inside an HTTP 200, as OpenRouter sends them.
//!         r#"{"error":{"message":"Provider returned error","code":502}}"#
//!     } else {
//!         r#"{"id":"gen-1","provider":"Chutes","object":"chat.completion","created":1,
//!            "model":"deepseek/deepseek-chat:free","choices":[{"index":0,"finish_reason":"stop",
//!            "native_finish_reason":"stop","message":{"role":"assistant","content":"Hi","reasoning":null}}]}"#
//!     };
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(body.as_bytes()))))
//! });
//! let config = OpenRouterConfig::new().api_key("sk-or-v1-demo").build()?;
//! let service = OpenRouterLayer::new(config).layer(upstream);
//!
//! // A success, in OpenAI's shape.
//! let request = Request::post("/chat/completions").body(Full::new(Bytes::new()))?;
//! let response = service.clone().oneshot(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(json["choices"][0]["message"]["content"], "Hi");
//! assert!(json.get("provider").is_none());
//!
//! // A failure, classified.
//! let request = Request::post("/chat/completions")
//!     .header("x-demo-fail", "1")
//!     .body(Full::new(Bytes::new()))?;
//! let error = service.oneshot(request).await.unwrap_err();
//! let failure = Failure::from_error(&*error);
//! assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
//! assert!(failure.is_retryable() && failure.is_fallback_eligible());
//! assert_eq!(failure.message(), "the upstream provider failed");
//! # Ok(())
//! # }
//! ```
//!
//! # When not to use it
//!
//! - In front of a plain OpenAI-compatible upstream: core's
//!   `OpenAiClassifier` classifies it, and this layer would read every
//!   complete body into memory and re-parse every stream chunk for quirks
//!   that upstream does not have.
//! - When the client needs OpenRouter's own fields — which provider served
//!   the request, `native_finish_reason`, structured `reasoning_details` —
//!   or OpenRouter's own endpoints with large bodies: the layer reshapes
//!   them away, and holds complete bodies in memory.
//! - When a stream's first byte must reach the client before its first data
//!   event (OpenRouter's queueing comments): the layer holds the response
//!   head until that event, so that an error in its place can still be an
//!   HTTP error.

mod body;
mod classify;
mod config;
mod error;
mod future;
mod layer;
mod request;
mod reshape;
mod service;
mod state;

pub use body::ResponseBody;
pub use classify::{OpenRouterClassifier, OpenRouterEos, StreamFailure};
pub use config::{DEFAULT_API_BASE, DEFAULT_MAX_BODY_BYTES, OpenRouterConfig};
pub use error::InvalidConfig;
pub use future::ResponseFuture;
pub use layer::OpenRouterLayer;
pub use request::strip_prefix;
pub use service::OpenRouter;
pub use tollgate_core::UpstreamError;
