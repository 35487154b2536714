//! OpenAI's Responses API (`POST /v1/responses`) served by a chat service:
//! [`Responses`] is its [`Protocol`], [`ResponsesLayer`] the layer.
//!
//! The chat upstream keeps no state, so neither does the bridge: a request
//! naming a `previous_response_id` is refused with a 400 saying so.

mod answer;
mod request;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use tollgate_core::{ChatRequest, Failure};

use crate::protocol::Protocol;
pub use stream::ResponsesStream;

/// OpenAI's Responses API, as a [`Protocol`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Responses;

/// The layer serving OpenAI's Responses API with a chat service.
pub type ResponsesLayer = crate::InboundLayer<Responses>;

/// The service of [`ResponsesLayer`].
pub type ResponsesService<S> = crate::Inbound<S, Responses>;

impl Protocol for Responses {
    type Stream = ResponsesStream;

    fn to_chat(body: &[u8]) -> Result<ChatRequest, Failure> {
        request::to_chat(body)
    }

    fn answer(chat: &[u8]) -> Result<Bytes, Failure> {
        answer::answer(chat)
    }

    fn stream() -> ResponsesStream {
        ResponsesStream::default()
    }

    /// OpenAI's error shape, as on every OpenAI route.
    fn error_body(failure: &Failure) -> Bytes {
        failure.to_openai_body()
    }
}
