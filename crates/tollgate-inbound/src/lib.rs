//! Anthropic's Messages API and OpenAI's Responses API in front of an
//! OpenAI chat-completions service, as tower layers.
//!
//! Tollgate's layers — retry, breaker, fallback, limits, cost — speak
//! OpenAI's chat completions. Clients speak more: Claude Code speaks
//! Anthropic's Messages API, Codex OpenAI's Responses API. An
//! [`InboundLayer`] over a chat service serves one of those APIs with it,
//! so each request gets everything a chat request gets:
//!
//! - **Requests** of the API are translated into chat requests (and parsed
//!   into core's [`ChatRequest`](tollgate_core::ChatRequest), which the
//!   layers below read); a body that is not a request of the API is an
//!   `Err` holding a 400 [`Failure`](tollgate_core::Failure) saying why.
//! - **Answers**: a `chat.completion` becomes the API's answer; a stream of
//!   chunks becomes the API's events, chunk by chunk as it arrives.
//! - **A stream that breaks** — an error event from below, a body error,
//!   an end without `[DONE]` — ends with the API's error event, never with
//!   its clean end.
//! - **Failures** of the inner service stay `Err`s, for the caller to
//!   render with [`Protocol::error_response`] in the API's error shape.
//! - **Native answers**: a provider that speaks the API itself may send the
//!   client's request as written (it travels beside the chat request as a
//!   [`NativeRequest`](tollgate_core::extensions::NativeRequest)) and mark
//!   its answer a [`NativeAnswer`](tollgate_core::extensions::NativeAnswer):
//!   it passes through untouched, and a stream that breaks still ends with
//!   the API's error events, in the terms of that answer.
//!
//! | module | feature | API |
//! |---|---|---|
//! | [`messages`] | `messages` | Anthropic Messages (`POST /v1/messages`): system, text, image, tool use and results, `stop_sequences`, streaming events |
//! | [`responses`] | `responses` | OpenAI Responses (`POST /v1/responses`): input string or items, instructions, function tools and calls, streaming events; stateless; answers of a deployment that speaks it passed through |
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "messages")]
//! # {
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::RequestBody;
//! use tollgate_inbound::messages::MessagesLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Stands in for the chat stack: it gets a chat request, answers one.
//! let chat = service_fn(|request: Request<RequestBody>| async move {
//!     let sent = request.body().bytes().cloned().unwrap_or_default();
//!     let sent: serde_json::Value = serde_json::from_slice(&sent)?;
//!     assert_eq!(sent["messages"][0], serde_json::json!({"role": "system", "content": "Be brief."}));
//!     let answer = r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"index":0,
//!         "message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],
//!         "usage":{"prompt_tokens":12,"completion_tokens":2}}"#;
//!     Ok::<_, tollgate_core::BoxError>(Response::new(Full::new(Bytes::from(answer))))
//! });
//!
//! let service = MessagesLayer::new().layer(chat);
//! let request = Request::new(RequestBody::new(Bytes::from(
//!     r#"{"model":"gpt-4o","max_tokens":64,"system":"Be brief.",
//!         "messages":[{"role":"user","content":"The capital of France?"}]}"#,
//! )));
//! let response = service.oneshot(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! let message: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(message["content"][0]["text"], "Paris.");
//! assert_eq!(message["stop_reason"], "end_turn");
//! assert_eq!(message["usage"]["input_tokens"], 12);
//! # Ok(())
//! # }
//! # }
//! ```

mod body;
mod chat;
mod future;
mod layer;
mod protocol;
mod request;
#[cfg(test)]
mod test_support;
#[cfg(all(test, feature = "messages", feature = "responses"))]
mod tests;

#[cfg(feature = "messages")]
pub mod messages;
#[cfg(feature = "responses")]
pub mod responses;

pub use body::ResponseBody;
pub use chat::ChatAnswer;
pub use future::{MAX_ANSWER_BYTES, ResponseFuture};
pub use layer::{Inbound, InboundLayer};
pub use protocol::{Protocol, TranslateStream};
