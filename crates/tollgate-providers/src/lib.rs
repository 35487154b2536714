//! Native LLM provider APIs behind OpenAI's chat-completions shape, as
//! tower layers.
//!
//! Tollgate's layers — retry, breaker, fallback, cost, limits — speak
//! OpenAI's chat-completions API and Tollgate's error classes. A
//! [`ProviderLayer`] sits over an HTTP client and makes a provider with its
//! own API look like that:
//!
//! - **Requests**: the OpenAI chat request (a [`BufferedBody`], such as
//!   core's `RequestBody`) is translated into the provider's, and sent to
//!   its URL with its headers and credentials.
//! - **`Ok(response)` is a success in OpenAI's shape**: a complete answer
//!   is read (up to 8 MiB) and translated into a `chat.completion`; a
//!   stream is translated event by event as it arrives, never buffered,
//!   and ends with `data: [DONE]`; it goes out one whole event per frame,
//!   each published in the response's
//!   [`SharedEvents`](tollgate_core::sse::SharedEvents), so the layers
//!   above take the events whole without splitting them again.
//! - **Every failure is an `Err`** whose source chain holds a classified
//!   [`Failure`](tollgate_core::Failure) (`Failure::from_error` finds it):
//!   an error status and body, an error event before the stream's first
//!   content (the layer reads that far before answering, so a retry or
//!   fallback is still possible), or the inner service's own error.
//! - **A stream that fails after its first content** ends with one
//!   OpenAI-style `data: {"error": …}` event, which a fallback layer above
//!   continues from.
//!
//! What comes out is OpenAI's shape, so the layers above (retry, breaker,
//! fallback, cost) classify it with core's `OpenAiClassifier`, whose stream
//! watcher reads that error event and a missing `[DONE]` as failures.
//!
//! The generic machinery (the layer, its future and body) is shared; each
//! provider is a [`Protocol`] — translate the request, translate a complete
//! answer, translate a stream ([`TranslateStream`], writing
//! [`TranslatedEvents`]; [`SseStream`] over a [`TranslateEvent`] for
//! server-sent events), classify an error — behind
//! its own cargo feature:
//!
//! | module | feature | protocol |
//! |---|---|---|
//! | `anthropic` | `anthropic` | Anthropic Messages (`/v1/messages`), native |
//! | `azure` | `azure` | Azure OpenAI deployments: OpenAI's shape, Azure's URL, keys and content filter |
//! | `gemini` | `gemini` | Google's Gemini API (`generateContent`, AI Studio; the same bodies at another URL for Vertex AI), native |
//! | `bedrock` | `bedrock` | AWS Bedrock Converse / ConverseStream, native: SigV4, the binary event stream |
//! | `vertex` | `vertex` | Vertex AI: Gemini and Claude models in a Google Cloud project, service-account OAuth2 tokens |
//!
//! OpenAI embeddings requests go through Gemini's, Vertex AI's and
//! Bedrock's own embeddings APIs with [`Provider::embeddings`] (see
//! [`embeddings`]): an [`Embed`](embeddings::Embed) implementation plans
//! the upstream calls and reads their answers.
//!
//! Every provider is built from the same plain [`ProviderConfig`] (LiteLLM's
//! `api_base`, `api_key`, `api_version`...).
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "anthropic")]
//! # {
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::{ErrorClass, Failure};
//! use tollgate_providers::ProviderConfig;
//! use tollgate_providers::anthropic::Anthropic;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Stands in for an HTTP client talking to Anthropic.
//! let upstream = service_fn(|request: Request<Bytes>| async move {
//!     assert_eq!(request.uri(), "https://api.anthropic.com/v1/messages");
//!     assert_eq!(request.headers()["anthropic-version"], "2023-06-01");
//!     let sent: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
//!     assert_eq!(sent["system"], "Be brief.");
//!     assert_eq!(sent["max_tokens"], 4096);
//!     let answer: &'static str = if sent["messages"][0]["content"] == "fail" {
//!         r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
//!     } else {
//!         r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
//!            "content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn",
//!            "usage":{"input_tokens":9,"output_tokens":1}}"#
//!     };
//!     let status = if sent["messages"][0]["content"] == "fail" { 529 } else { 200 };
//!     let response = Response::builder().status(status).body(Full::new(Bytes::from(answer)));
//!     Ok::<_, std::convert::Infallible>(response.unwrap())
//! });
//! let service = Anthropic::layer(&ProviderConfig::new().api_key("sk-ant-demo"))?.layer(upstream);
//!
//! let ask = |text: &str| {
//!     let body = format!(
//!         r#"{{"model":"claude-sonnet-4-5","messages":[
//!             {{"role":"system","content":"Be brief."}},{{"role":"user","content":"{text}"}}]}}"#
//!     );
//!     Request::post("/chat/completions").body(Bytes::from(body)).unwrap()
//! };
//!
//! // A success, in OpenAI's shape.
//! let response = service.clone().oneshot(ask("hello")).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(json["choices"][0]["message"]["content"], "Hi");
//! assert_eq!(json["choices"][0]["finish_reason"], "stop");
//! assert_eq!(json["usage"]["total_tokens"], 10);
//!
//! // A failure, classified.
//! let error = service.oneshot(ask("fail")).await.unwrap_err();
//! let failure = Failure::from_error(&*error);
//! assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
//! assert_eq!(failure.subkind(), Some("overloaded"));
//! assert!(failure.is_retryable());
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! # When not to use it
//!
//! - In front of an OpenAI-compatible upstream (OpenAI, Groq, vLLM...):
//!   nothing needs translating, and this layer would read every complete
//!   answer into memory.
//! - When the client needs the provider's own fields (Anthropic's content
//!   block citations, Azure's content-filter annotations on a success):
//!   only what OpenAI's shape has room for is kept.

// The shared translation helpers serve whichever providers are built; with
// some left out, the helpers only they use are unused, not dead.
#![cfg_attr(
    not(all(
        feature = "anthropic",
        feature = "azure",
        feature = "bedrock",
        feature = "gemini"
    )),
    allow(dead_code)
)]

mod blocks;
mod body;
mod buffered;
mod chat;
mod config;
#[cfg(any(feature = "gemini", feature = "bedrock"))]
pub mod embeddings;
mod endpoint;
mod error;
mod events;
mod failures;
mod future;
mod layer;
mod openai;
mod protocol;
mod stream;
#[cfg(test)]
mod test_support;

#[cfg(feature = "anthropic")]
pub mod anthropic;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "bedrock")]
pub mod bedrock;
#[cfg(feature = "gemini")]
pub mod gemini;
#[cfg(feature = "vertex")]
pub mod vertex;

pub use body::ResponseBody;
pub use buffered::BufferedBody;
pub use config::ProviderConfig;
pub use error::InvalidConfig;
pub use events::TranslatedEvents;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_MAX_BODY_BYTES, Provider, ProviderLayer};
pub use protocol::{Exchange, Protocol, TranslateEvent, TranslateStream};
pub use stream::SseStream;
pub use tollgate_core::UpstreamError;
