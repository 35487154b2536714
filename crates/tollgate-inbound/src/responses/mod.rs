//! OpenAI's Responses API (`POST /v1/responses`) served by a chat service:
//! [`Responses`] is its [`Protocol`], [`ResponsesLayer`] the layer.
//!
//! A deployment that speaks the Responses API itself (OpenAI's, Azure's)
//! gets the client's request as written, beside its chat translation
//! ([`Protocol::NATIVE`]), and its answer — JSON or typed events — passes
//! through untouched; a stream a layer below ends early still ends with
//! `error` and `response.failed` of the same response. Every other
//! deployment gets the chat translation. A chat upstream keeps no state,
//! so neither does the bridge: a request naming a `previous_response_id`
//! is refused with a 400 saying so when no deployment of the group keeps
//! state (see [`to_chat_stateful`]).

mod answer;
#[cfg(test)]
mod native_tests;
mod request;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use tollgate_core::extensions::NativeApi;
use tollgate_core::{ChatRequest, Failure};

use crate::protocol::Protocol;
pub use stream::ResponsesStream;

/// The chat request for a Responses request body, for a service below that
/// may send the body as written to a deployment that keeps state (OpenAI's,
/// Azure's): a `previous_response_id` is accepted, and left out of the chat
/// translation — a deployment served through chat must refuse the request
/// ([`names_previous_response`] tells).
pub fn to_chat_stateful(body: &[u8]) -> Result<ChatRequest, Failure> {
    request::to_chat(body, true)
}

/// Whether a Responses request body continues a stored response (names a
/// `previous_response_id`): only a deployment that keeps state can answer
/// it.
pub fn names_previous_response(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct View<'a> {
        #[serde(borrow, default)]
        previous_response_id: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<View<'_>>(body)
        .ok()
        .and_then(|view| view.previous_response_id)
        .is_some_and(|id| id.get() != "null")
}

/// The 400 a deployment served through chat answers a request naming a
/// `previous_response_id` with.
pub fn stateless_refusal() -> Failure {
    crate::request::bad_request(
        "previous_response_id is not supported here: this model is served through chat \
         completions and the gateway keeps no conversation state; send the whole \
         conversation in `input`",
    )
    .with_param("previous_response_id")
}

/// OpenAI's Responses API, as a [`Protocol`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Responses;

/// The layer serving OpenAI's Responses API with a chat service.
pub type ResponsesLayer = crate::InboundLayer<Responses>;

/// The service of [`ResponsesLayer`].
pub type ResponsesService<S> = crate::Inbound<S, Responses>;

impl Protocol for Responses {
    type Stream = ResponsesStream;

    const NATIVE: Option<NativeApi> = Some(NativeApi::OpenAiResponses);

    fn to_chat(body: &[u8]) -> Result<ChatRequest, Failure> {
        request::to_chat(body, false)
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
