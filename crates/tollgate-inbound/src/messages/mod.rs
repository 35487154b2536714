//! Anthropic's Messages API (`POST /v1/messages`) served by a chat
//! service: [`Messages`] is its [`Protocol`], [`MessagesLayer`] the layer.

mod answer;
mod request;
mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use tollgate_core::extensions::NativeApi;
use tollgate_core::{ChatRequest, ErrorClass, Failure};

use crate::protocol::Protocol;
pub use stream::MessagesStream;

/// Anthropic's Messages API, as a [`Protocol`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Messages;

/// The layer serving Anthropic's Messages API with a chat service.
pub type MessagesLayer = crate::InboundLayer<Messages>;

/// The service of [`MessagesLayer`].
pub type MessagesService<S> = crate::Inbound<S, Messages>;

impl Protocol for Messages {
    type Stream = MessagesStream;

    const NATIVE: Option<NativeApi> = Some(NativeApi::AnthropicMessages);

    fn to_chat(body: &[u8]) -> Result<ChatRequest, Failure> {
        request::to_chat(body)
    }

    fn answer(chat: &[u8]) -> Result<Bytes, Failure> {
        answer::answer(chat)
    }

    fn stream() -> MessagesStream {
        MessagesStream::default()
    }

    fn error_body(failure: &Failure) -> Bytes {
        Bytes::from(serde_json::to_vec(&error_object(failure)).unwrap_or_default())
    }
}

/// Anthropic's error object (reference "Errors",
/// <https://docs.anthropic.com/en/api/errors>):
/// `{"type":"error","error":{"type":...,"message":...}}`, its type from the
/// status the failure answers with.
pub(crate) fn error_object(failure: &Failure) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type(failure), "message": failure.message()},
    })
}

/// Anthropic's error type for a failure.
pub fn error_type(failure: &Failure) -> &'static str {
    if failure.class() == ErrorClass::StreamInterrupted {
        return "api_error";
    }
    match failure.status() {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request_error",
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::PAYMENT_REQUIRED => "billing_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        StatusCode::GATEWAY_TIMEOUT => "timeout_error",
        status if status.as_u16() == 529 || status == StatusCode::SERVICE_UNAVAILABLE => {
            "overloaded_error"
        }
        _ => "api_error",
    }
}
