//! Deciding "failure or not" in one place.
//!
//! Shaped like tower-http's `classify`: a classifier looks at the response
//! head and either gives a verdict at once or, for a stream, hands back a
//! [`ClassifyEos`] that watches the events and gives the verdict at the end.
//! Retry, breaker, fallback and cost all ask the same classifier, so they agree
//! on what happened.
//!
//! A head is classified once: the first layer to ask leaves the verdict in
//! the response ([`Classified`]) for the layers above it.
//!
//! [`OpenAiClassifier`] is the default for plain OpenAI-compatible upstreams;
//! provider normalizers (OpenRouter) bring their own.

mod head;
mod openai;
mod retry_after;
mod watch;

pub use head::Classified;
pub use openai::{OpenAiClassifier, OpenAiEos, is_event_stream, status_from_code};
pub use retry_after::{parse_http_date, retry_after_from_headers};
pub use watch::{OnEnd, StreamEnd, WatchBody, classify_raw_event};

use http::{HeaderMap, Response, StatusCode};

use crate::failure::Failure;
use crate::sse::Event;

/// The verdict on a response at its head.
#[derive(Debug)]
pub enum Verdict<E> {
    /// A success that needs no further watching (a complete JSON body).
    Success,
    /// A failure known from the status and headers alone. A caller that can
    /// read the (small) error body should refine it with
    /// [`ClassifyResponse::classify_error_body`].
    Failure(Failure),
    /// A stream: the verdict comes from the events and from how it ends.
    Watch(E),
}

/// Classifies responses and errors of one kind of upstream.
pub trait ClassifyResponse: Clone + Send + Sync + 'static {
    /// Watches a streaming body to its end.
    type Eos: ClassifyEos;

    /// Gives the verdict on a response at its head.
    ///
    /// Layers ask through [`Classified`], which gives each head's verdict
    /// once per classifier type and carries it up the stack.
    fn classify_response<B>(&self, response: &Response<B>) -> Verdict<Self::Eos>;

    /// A watcher for a stream whose head this classifier judged
    /// [`Verdict::Watch`] already (see [`Classified`]). The default asks
    /// [`classify_response`](Self::classify_response) again; a classifier
    /// whose watcher needs nothing from the head makes it directly.
    fn watch<B>(&self, response: &Response<B>) -> Option<Self::Eos> {
        match self.classify_response(response) {
            Verdict::Watch(eos) => Some(eos),
            Verdict::Success | Verdict::Failure(_) => None,
        }
    }

    /// Classifies an error response from its status, headers and body (the
    /// caller reads at most a small bounded prefix of it).
    fn classify_error_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure;

    /// Classifies an error returned instead of a response (connect, timeout,
    /// reset).
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::from_error(error)
    }
}

/// The failure of a stream that ended cleanly at the transport level but
/// without its end (`data: [DONE]`, a last chunk with a `finish_reason`):
/// the upstream cut it. Every [`ClassifyEos`] that sees such an end gives
/// this one, so that retry, breaker and fallback read it the same.
pub fn stream_cut() -> Failure {
    Failure::new(
        crate::ErrorClass::UpstreamUnavailable,
        "the upstream stream ended before it was complete",
    )
    .with_subkind("stream_cut")
}

/// Watches a streaming response, event by event, and gives the verdict when
/// the stream ends.
pub trait ClassifyEos: Send + 'static {
    /// Whether the classifier needs to see this raw event (its bytes, blank
    /// line included) at all. Watchers parse only the events it wants, so a
    /// cheap byte test here keeps content chunks off the parser. The default
    /// wants every event.
    fn wants(&self, raw_event: &[u8]) -> bool {
        let _ = raw_event;
        true
    }

    /// Looks at one SSE event. A failure (an `error` object in a data event)
    /// is returned at once; the stream should be treated as failed from here.
    fn classify_event(&mut self, event: &Event) -> Option<Failure>;

    /// The stream ended cleanly at the transport level; was it complete?
    fn classify_eos(self) -> Result<(), Failure>;

    /// The stream ended with a transport error. By default a classified
    /// error keeps its class, and anything else is the upstream's failure: the
    /// bytes stopped coming from it.
    fn classify_error(self, error: &(dyn std::error::Error + 'static)) -> Failure
    where
        Self: Sized,
    {
        Failure::find(error).cloned().unwrap_or_else(|| {
            Failure::new(
                crate::ErrorClass::UpstreamUnavailable,
                "the upstream connection broke mid-response",
            )
            .with_subkind("body_error")
        })
    }
}
