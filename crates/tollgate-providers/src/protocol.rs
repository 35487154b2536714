//! [`Protocol`] and [`TranslateStream`]: what a provider module supplies to
//! the generic layer.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, request};
use tollgate_core::Failure;
use tollgate_core::classify::is_event_stream;
use tollgate_core::sse::Event;

use crate::events::TranslatedEvents;

/// What the layer keeps of one request after translating it: enough to
/// translate the answer back.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for a usage chunk at the end of the stream
    /// (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The model the request named (sent upstream, echoed in answers that
    /// carry no model of their own).
    pub model: Arc<str>,
    /// The `created` of the answer's chunks: when the layer sent the
    /// request, in Unix seconds.
    pub created: u64,
}

/// One provider's wire protocol, as [`ProviderLayer`](crate::ProviderLayer)
/// drives it: translate the request, translate a complete answer, translate
/// a stream event by event, classify an error answer.
///
/// Every method is synchronous and works on bytes already read: the layer
/// owns the I/O (reading bodies under limits, holding a stream until its
/// first content, ending a broken one), so a protocol is plain
/// translation code, tested without a runtime. Each module of this crate
/// (`anthropic`, `azure`, `gemini`, `bedrock`, `vertex`) implements it;
/// another provider is another implementation.
pub trait Protocol: fmt::Debug + Send + Sync + 'static {
    /// The translation state of one stream.
    type Stream: TranslateStream;

    /// Turns the OpenAI chat request in `body` into the provider's: the new
    /// body, with `head`'s URI and headers pointed at the provider.
    ///
    /// # Errors
    ///
    /// A request the provider cannot be sent (not JSON, no messages, a
    /// content part it has no equivalent for), as a `bad_request`
    /// [`Failure`] in OpenAI's shape.
    fn prepare(
        &self,
        head: &mut request::Parts,
        body: &[u8],
        created: u64,
    ) -> Result<(Bytes, Exchange), Failure>;

    /// The request as the client wrote it in this provider's own API
    /// (`native`, carried beside the chat request), to send instead of the
    /// translation `prepare` made — with `exchange`'s model and stream —
    /// or `None` when this protocol does not speak `native`'s API.
    fn native(
        &self,
        native: &tollgate_core::extensions::NativeRequest,
        exchange: &Exchange,
    ) -> Option<Bytes> {
        let _ = (native, exchange);
        None
    }

    /// Turns a complete 2xx answer into an OpenAI `chat.completion`.
    ///
    /// # Errors
    ///
    /// When the answer is a failure after all (an error object, a filtered
    /// answer with nothing in it) or cannot be read.
    fn answer(&self, exchange: &Exchange, body: Bytes) -> Result<Bytes, Failure>;

    /// The state that translates one streamed answer.
    fn stream(&self, exchange: &Exchange) -> Self::Stream;

    /// Whether a 2xx answer to a stream request is the provider's stream
    /// (by its headers); otherwise it is read as a complete answer. By
    /// default, a `text/event-stream` content type.
    fn is_stream(&self, headers: &HeaderMap) -> bool {
        is_event_stream(headers)
    }

    /// Classifies an error answer (a non-2xx status and its body, which may
    /// be empty or cut short).
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure;
}

/// Translates one streamed answer, chunk by chunk as the body brings them:
/// what the layer drives.
///
/// Providers that stream server-sent events implement [`TranslateEvent`]
/// and use [`SseStream`](crate::SseStream), which cuts the chunks into
/// events; a provider with another framing (AWS's binary event stream)
/// implements this trait over its own decoder.
pub trait TranslateStream: Send + 'static {
    /// Translates what `chunk` completes, appending OpenAI `data:` events
    /// to `out`, each written whole; an incomplete frame waits for the
    /// next chunk.
    ///
    /// # Errors
    ///
    /// The failure an error event (or an unreadable event) stands for. The
    /// layer answers with it as an error when nothing has reached the client
    /// yet, and ends the stream with an OpenAI error event otherwise.
    fn push(&mut self, chunk: Bytes, out: &mut TranslatedEvents) -> Result<(), Failure>;

    /// Whether content (text, a tool call, a finish) has been written: from
    /// then on a failure can no longer be an HTTP error.
    fn committed(&self) -> bool;

    /// Whether the stream is complete (`data: [DONE]` written): bytes the
    /// upstream sends after it are ignored.
    fn finished(&self) -> bool;
}

/// Translates one server-sent-events answer, event by event (see
/// [`SseStream`](crate::SseStream)).
pub trait TranslateEvent: Send + 'static {
    /// Translates one upstream event, appending OpenAI `data:` events to
    /// `out` (none, one or several).
    ///
    /// # Errors
    ///
    /// As [`TranslateStream::push`].
    fn event(&mut self, event: &Event, out: &mut TranslatedEvents) -> Result<(), Failure>;

    /// Whether content (text, a tool call, a finish) has been written: from
    /// then on a failure can no longer be an HTTP error.
    fn committed(&self) -> bool;

    /// Whether the stream is complete (`data: [DONE]` written): bytes the
    /// upstream sends after it are ignored.
    fn finished(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use tollgate_core::ErrorClass;
    use tollgate_core::extensions::{NativeApi, NativeRequest};

    use super::*;

    /// A protocol that supplies only what it must: the defaults are what
    /// is tested.
    #[derive(Debug)]
    struct Minimal;

    struct Silent;

    impl TranslateStream for Silent {
        fn push(&mut self, _: Bytes, _: &mut TranslatedEvents) -> Result<(), Failure> {
            Ok(())
        }
        fn committed(&self) -> bool {
            false
        }
        fn finished(&self) -> bool {
            false
        }
    }

    impl Protocol for Minimal {
        type Stream = Silent;
        fn prepare(
            &self,
            _: &mut request::Parts,
            _: &[u8],
            _: u64,
        ) -> Result<(Bytes, Exchange), Failure> {
            Err(Failure::new(ErrorClass::BadRequest, "not sent"))
        }
        fn answer(&self, _: &Exchange, body: Bytes) -> Result<Bytes, Failure> {
            Ok(body)
        }
        fn stream(&self, _: &Exchange) -> Silent {
            Silent
        }
        fn classify(&self, status: StatusCode, _: &HeaderMap, _: &[u8]) -> Failure {
            Failure::new(ErrorClass::Internal, status.to_string())
        }
    }

    #[test]
    fn by_default_no_native_body_and_a_stream_is_server_sent_events() {
        let exchange = Exchange {
            stream: true,
            include_usage: false,
            model: "m".into(),
            created: 0,
        };
        let native = NativeRequest {
            api: NativeApi::AnthropicMessages,
            body: Bytes::from_static(b"{}"),
            message_count: 1,
        };
        assert_eq!(Minimal.native(&native, &exchange), None);
        let mut headers = HeaderMap::new();
        assert!(!Minimal.is_stream(&headers));
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        assert!(Minimal.is_stream(&headers));
    }
}
