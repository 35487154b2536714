//! [`SseStream`]: an upstream server-sent-events stream cut into events
//! and handed to a protocol's event translator, chunk by chunk.

use bytes::Bytes;
use tollgate_core::sse::{Frame, SseParser};
use tollgate_core::{ErrorClass, Failure};

use crate::events::TranslatedEvents;
use crate::protocol::{TranslateEvent, TranslateStream};

/// A [`TranslateStream`] for providers that stream server-sent events: the
/// SSE parser and the protocol's [`TranslateEvent`]. Events are translated
/// as soon as they are complete; an event split across chunks waits in the
/// parser for its end, nothing else is held. Comments (keep-alives) are
/// dropped.
#[derive(Debug)]
pub struct SseStream<T> {
    parser: SseParser,
    translator: T,
}

impl<T: TranslateEvent> SseStream<T> {
    /// A stream translated by `translator`.
    pub fn new(translator: T) -> Self {
        SseStream {
            parser: SseParser::new(),
            translator,
        }
    }
}

impl<T: TranslateEvent> TranslateStream for SseStream<T> {
    /// Translates every event `chunk` completes into `out`; after the first
    /// event that fails, the rest of `chunk` is dropped.
    fn push(&mut self, chunk: Bytes, out: &mut TranslatedEvents) -> Result<(), Failure> {
        if self.translator.finished() {
            return Ok(());
        }
        self.parser.push(chunk);
        loop {
            match self.parser.next_frame() {
                Ok(Some(Frame::Event(event))) => {
                    self.translator.event(&event, out)?;
                    if self.translator.finished() {
                        return Ok(());
                    }
                }
                // Keep-alive comments mean nothing to an OpenAI client.
                Ok(Some(Frame::Comment(_))) => {}
                Ok(None) => return Ok(()),
                Err(_) => return Err(event_too_large()),
            }
        }
    }

    fn committed(&self) -> bool {
        self.translator.committed()
    }

    fn finished(&self) -> bool {
        self.translator.finished()
    }
}

fn event_too_large() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "an upstream stream event exceeded the size limit",
    )
    .with_subkind("event_too_large")
}

/// Translates a whole stream given as chunks: what the layer's body yields,
/// concatenated (tests and benchmarks compare splits of one stream with it).
#[cfg(test)]
pub(crate) fn translate_all<T: TranslateEvent>(
    translator: T,
    chunks: impl IntoIterator<Item = Bytes>,
) -> Result<Bytes, Failure> {
    let mut state = SseStream::new(translator);
    let mut out = TranslatedEvents::new();
    for chunk in chunks {
        state.push(chunk, &mut out)?;
    }
    Ok(out.take_all())
}
