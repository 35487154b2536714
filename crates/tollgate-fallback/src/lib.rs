//! A fallback cascade over model groups, as a tower layer: when a model
//! fails, the next one answers — and a stream that breaks mid-answer is
//! finished by another, so the client gets one whole answer or a clear
//! error, never a truncated "success".
//!
//! [`FallbackLayer`] wraps a service that answers chat-completion requests
//! for a *model group* named in the request's
//! [`ModelGroup`](tollgate_core::extensions::ModelGroup) extension (the
//! Tollgate gateway's stack, a router of your own, a `service_fn`), and
//! tries the groups of a cascade in turn, with LiteLLM's rules:
//!
//! - **Which failures move on** is decided by the shared classifier of
//!   [`tollgate_core`]: an `Err` is classified with
//!   [`ClassifyResponse::classify_error`](tollgate_core::classify::ClassifyResponse::classify_error)
//!   (a [`Failure`](tollgate_core::Failure) anywhere in its source chain), an
//!   `Ok` response by its status and, for an error status, the first 64 KiB
//!   of its body (by default with
//!   [`OpenAiClassifier`](tollgate_core::classify::OpenAiClassifier)).
//! - **Where to** ([`FallbackConfig`]): `context_window_exceeded` goes to
//!   the group's `context_window_fallbacks`, else its `fallbacks` (LiteLLM's
//!   rule); `content_policy` goes *only* to its `content_policy_fallbacks` —
//!   without them the refusal and its reason go back to the client, where
//!   LiteLLM would hide them behind another model's answer; any other
//!   failure another model may fix
//!   ([`Failure::is_fallback_eligible`](tollgate_core::Failure::is_fallback_eligible))
//!   goes to the group's `fallbacks`, else `default_fallbacks`. A bad
//!   request, or a failure that says no other target will help, goes back
//!   at once. A fallback's own lists come before the rest of its parent's
//!   (LiteLLM's nesting); no group is tried twice; at most
//!   [`max_fallbacks`](FallbackConfig::max_fallbacks) fallback groups are.
//! - **Rate-limit pools**: a rate limit of a pool shared by several groups
//!   ([`Scope::AccountFreePool`](tollgate_core::Scope::AccountFreePool):
//!   OpenRouter's free models of one key) skips every group of that
//!   [`pool`](TargetInfo::pool) and still tries the others. Without a pool
//!   configured for the failing group, the failure's own verdict (not
//!   eligible, as the OpenRouter normalizer says) stands.
//! - **Health**: groups a [`Health`] source reports unavailable (every
//!   deployment's circuit breaker open) are skipped without a call; when no
//!   group at all is available the request fails at once with a 503.
//! - **One deadline**: no group is started after the request's
//!   [`Deadline`](tollgate_core::extensions::Deadline), and the cascade does
//!   not wait past it (the request then fails with a `timeout`).
//!
//! # Streams
//!
//! A stream (`text/event-stream`) is read up to its **first content** — a
//! chunk with text, reasoning, a refusal, a tool call or a `finish_reason` —
//! before the response is handed up: an error status, an error event, a
//! broken connection or a stream that ends before content moves on to the
//! next group, and the client never sees it. (The failing group is not
//! tried again then: a retry layer below saw a success at the head.) The
//! events held back (at most
//! [`max_commit_bytes`](FallbackConfig::max_commit_bytes)) go out first;
//! the rest is forwarded as it comes, cut at event boundaries, every data
//! event checked to be whole JSON ([`ResponseBody`]).
//!
//! Once content has gone out, a break — a cut, a stall (an inner timeout),
//! an error event, a malformed event, an end without `[DONE]` or a finish —
//! is handled by **continuation**: the request goes again, with the text
//! already sent as an assistant message at its end (a prefill), first to
//! the same group (the retry layer below may pick another deployment), then
//! to the groups its rules name; the new stream's first role-only chunk is
//! dropped, its chunks get the original `id` and `created`, and it is
//! spliced into the client's. Groups that do not take a prefill
//! ([`supports_assistant_prefill`](TargetInfo::supports_assistant_prefill)
//! false, or a 400 answering one) are skipped; each group is asked once; at
//! most [`max_continuations`](FallbackConfig::max_continuations) requests
//! are made, none after the deadline. The text sent is kept for the prefill
//! (up to 1 MiB; a longer answer is not continued); whitespace it ends with
//! is left out of the prefill (Anthropic's models reject it) and dropped
//! from the continuation when it repeats it. When nothing can continue, the stream ends with one
//! OpenAI-style error event, code `stream_interrupted`, naming the original
//! cause — never a continuation's own failure, and never `finish_reason:
//! "stop"` with `[DONE]`. A stream that ends after its finish chunk without
//! `[DONE]` is complete: it gets one.
//!
//! Continuation chunks keep their own `model`, so the client can tell which
//! model wrote which part. The usage chunk (when the client asked for one)
//! is the last continuation's own report: its prompt tokens include the
//! prefill and its completion tokens only the continued part; the broken
//! attempt's usage never arrived and is not made up.
//!
//! # Reporting
//!
//! The response carries the fallback groups tried (the one that answered
//! included; 0 when the client's group answered) as an
//! [`AttemptedFallbacks`](tollgate_core::extensions::AttemptedFallbacks)
//! extension and as the [`x-tollgate-attempted-fallbacks`](ATTEMPTED_FALLBACKS)
//! header, and the group that answered as a
//! [`ModelGroup`](tollgate_core::extensions::ModelGroup) extension; for a
//! stream, as known when it committed. An error is a [`GaveUp`], whose
//! source is the last group's error. Each failed attempt and each
//! continuation is logged with `tracing` (under the `tollgate_fallback`
//! target): the group, the class, the next group — never prompt or
//! completion text.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use tollgate_core::RequestBody;
//! use tollgate_core::extensions::{AttemptedFallbacks, ModelGroup};
//! use tollgate_fallback::{FallbackConfig, FallbackLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_core::BoxError> {
//! // An upstream whose "primary" group is down.
//! let upstream = service_fn(|request: Request<RequestBody>| async move {
//!     let group = request.extensions().get::<ModelGroup>().map(|g| g.0.clone());
//!     let mut response = Response::new(format!(r#"{{"model":"{}"}}"#, group.unwrap_or_default()));
//!     if response.body().contains("primary") {
//!         *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
//!     }
//!     Ok::<_, Infallible>(response)
//! });
//!
//! let config = FallbackConfig::builder()
//!     .fallbacks("primary", ["backup"])
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(config))
//!     .service(upstream);
//!
//! let mut request = Request::new(RequestBody::new(Bytes::from_static(
//!     br#"{"model":"primary","messages":[{"role":"user","content":"Hi"}]}"#,
//! )));
//! request.extensions_mut().insert(ModelGroup("primary".into()));
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.extensions().get(), Some(&AttemptedFallbacks(1)));
//! assert_eq!(response.headers()["x-tollgate-attempted-fallbacks"], "1");
//! # Ok(())
//! # }
//! ```
//!
//! In the Tollgate gateway it is the outermost resilience layer: each group
//! it tries goes through the retry layer (retries inside the group first,
//! LiteLLM's order), which picks a deployment per attempt, each behind its
//! circuit breaker; a [`Health`] built on those breakers lets the cascade
//! skip a group that is down without calling it.
//!
//! # When not to use it
//!
//! - **One model, no fallback**: a stream is still read to its first
//!   content and watched, which costs a parse per event; a plain stream
//!   guard is cheaper if you never fail over or continue.
//! - **Requests that are not chat completions**: continuation rebuilds the
//!   request from its [`ChatRequest`](tollgate_core::ChatRequest) and the
//!   stream is read as OpenAI's chunk format; other streams are not
//!   understood.
//! - **A complete (JSON) answer that breaks after its head**: it is passed
//!   on as it comes; buffering whole answers to fail over would cost every
//!   answer its latency.
//! - **Answers that must come from one model**: a continuation finishes
//!   the text with another group; turn it off with `max_continuations: 0`
//!   to end a broken stream with an error event instead.
//! - **Models that do not continue from a prefill** (OpenAI's chat models
//!   answer it as a new turn): mark them `supports_assistant_prefill:
//!   false`, or the client may get an answer that starts over mid-text.
//! - **Tool calls and several choices (`n > 1`)** are never continued: a
//!   text prefill cannot resume them; a break ends the stream with the error
//!   event.

mod answer;
mod body;
mod config;
mod error;
mod future;
mod health;
mod layer;
mod resume;
mod service;
mod splice;
mod state;

pub use body::ResponseBody;
pub use config::{FallbackConfig, FallbackConfigBuilder, GroupFallbacks, TargetInfo};
pub use error::{ConfigError, GaveUp, StopReason};
pub use future::ResponseFuture;
pub use health::{AlwaysAvailable, Health};
pub use layer::FallbackLayer;
pub use service::Fallback;

/// The response header carrying the number of fallback groups tried:
/// `x-tollgate-attempted-fallbacks`.
pub const ATTEMPTED_FALLBACKS: http::HeaderName =
    http::HeaderName::from_static("x-tollgate-attempted-fallbacks");
