//! [`StreamState`]: an upstream event stream cut into events and handed to
//! a protocol's translator, chunk by chunk.

use bytes::{Bytes, BytesMut};
use tollgate_core::sse::{Frame, SseParser};
use tollgate_core::{ErrorClass, Failure};

use crate::protocol::TranslateStream;

/// The SSE parser and the translator of one stream. Events are translated
/// as soon as they are complete; an event split across chunks waits in the
/// parser for its end, nothing else is held.
#[derive(Debug)]
pub(crate) struct StreamState<T> {
    parser: SseParser,
    translator: T,
}

impl<T: TranslateStream> StreamState<T> {
    pub(crate) fn new(translator: T) -> Self {
        StreamState {
            parser: SseParser::new(),
            translator,
        }
    }

    /// Translates every event `chunk` completes into `out`.
    ///
    /// # Errors
    ///
    /// The first event that fails; events after it in `chunk` are dropped.
    pub(crate) fn push(&mut self, chunk: Bytes, out: &mut BytesMut) -> Result<(), Failure> {
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

    pub(crate) fn translator(&self) -> &T {
        &self.translator
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
pub(crate) fn translate_all<T: TranslateStream>(
    translator: T,
    chunks: impl IntoIterator<Item = Bytes>,
) -> Result<Bytes, Failure> {
    let mut state = StreamState::new(translator);
    let mut out = BytesMut::new();
    for chunk in chunks {
        state.push(chunk, &mut out)?;
    }
    Ok(out.freeze())
}
