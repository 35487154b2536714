//! [`SseGuard`]: forwards an upstream SSE stream whole events at a time, and
//! never lets it end as a truncated "success".

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::classify::{ClassifyEos, OpenAiEos};
use tollgate_core::sse::{Frame as SseFrame, SseParser};
use tollgate_core::{BoxError, ErrorClass, Failure};

/// The largest event the guard holds back while waiting for its end.
const MAX_EVENT_LEN: usize = 1 << 20;

pin_project! {
    /// Wraps an upstream event stream.
    ///
    /// Bytes are forwarded as they arrive, cut only at event boundaries, so the
    /// client never holds half an event when the stream ends. Events are not
    /// parsed unless they may be an error or the `[DONE]` marker (a byte
    /// search decides). When the upstream fails — an error event, a transport
    /// error, a stall, an end without `[DONE]` — the client gets one
    /// OpenAI-style `data: {"error":…}` event and the stream ends: an SDK
    /// raises instead of returning a truncated answer.
    pub(crate) struct SseGuard<B> {
        #[pin]
        inner: B,
        eos: Option<OpenAiEos>,
        scanner: BoundaryScanner,
        tail: BytesMut,
        state: State,
        forwarded_event: bool,
        failure: Option<Failure>,
    }
}

enum State {
    Streaming,
    Ending(Bytes),
    Done,
}

impl<B> SseGuard<B> {
    pub(crate) fn new(inner: B, eos: OpenAiEos) -> Self {
        SseGuard {
            inner,
            eos: Some(eos),
            scanner: BoundaryScanner::default(),
            tail: BytesMut::new(),
            state: State::Streaming,
            forwarded_event: false,
            failure: None,
        }
    }

    /// The failure the stream ended with, once it has.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }
}

impl<B> Body for SseGuard<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            match std::mem::replace(this.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Ending(event) => return Poll::Ready(Some(Ok(Frame::data(event)))),
                State::Streaming => {}
            }
            *this.state = State::Streaming;
            let failure = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(chunk) = frame.into_data() else {
                        continue; // trailers mean nothing to an SSE client
                    };
                    let (forward, failure) =
                        scan_chunk(chunk, this.tail, this.scanner, this.eos.as_mut());
                    if let Some(failure) = failure {
                        let event = end_with(
                            this.failure,
                            failure,
                            *this.forwarded_event || !forward.is_empty(),
                        );
                        *this.state = State::Ending(event);
                    }
                    if forward.is_empty() {
                        continue;
                    }
                    *this.forwarded_event = true;
                    return Poll::Ready(Some(Ok(Frame::data(forward))));
                }
                Poll::Ready(Some(Err(error))) => Failure::from_error(&*error),
                Poll::Ready(None) => match this.eos.take().map(ClassifyEos::classify_eos) {
                    Some(Err(failure)) => failure,
                    _ => {
                        *this.state = State::Done;
                        return Poll::Ready(None);
                    }
                },
            };
            let event = end_with(this.failure, failure, *this.forwarded_event);
            *this.state = State::Ending(event);
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Records the failure and renders the error event the client gets. After
/// content went out, whatever the cause, the stream was interrupted.
fn end_with(slot: &mut Option<Failure>, failure: Failure, content_sent: bool) -> Bytes {
    let failure = if content_sent && failure.class() != ErrorClass::StreamInterrupted {
        Failure::new(
            ErrorClass::StreamInterrupted,
            format!("the upstream stream was interrupted ({})", failure.class()),
        )
        .with_subkind(failure.class().as_str())
    } else {
        failure
    };
    let mut event = BytesMut::new();
    tollgate_core::sse::write_data(&mut event, &failure.to_openai_body());
    *slot = Some(failure);
    event.freeze()
}

/// Splits `chunk` (after any held-back `tail`) into the complete events to
/// forward now and the incomplete rest to hold back, stopping before an error
/// event.
fn scan_chunk(
    chunk: Bytes,
    tail: &mut BytesMut,
    scanner: &mut BoundaryScanner,
    mut eos: Option<&mut OpenAiEos>,
) -> (Bytes, Option<Failure>) {
    let scan_from = tail.len();
    let buf = if tail.is_empty() {
        chunk
    } else {
        tail.extend_from_slice(&chunk);
        tail.split().freeze()
    };
    let mut pos = scan_from;
    let mut event_start = 0;
    while let Some(end) = scanner.next_boundary(&buf, &mut pos) {
        let event = &buf[event_start..end];
        if let Some(eos) = eos.as_deref_mut()
            && may_matter(event)
            && let Some(failure) = classify_event(eos, buf.slice(event_start..end))
        {
            return (buf.slice(..event_start), Some(failure));
        }
        event_start = end;
    }
    if buf.len() - event_start > MAX_EVENT_LEN {
        let failure = Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream sent an event larger than the gateway accepts",
        )
        .with_subkind("oversized_event");
        return (buf.slice(..event_start), Some(failure));
    }
    tail.extend_from_slice(&buf[event_start..]);
    (buf.slice(..event_start), None)
}

/// Only an error event or the `[DONE]` marker changes the verdict; content
/// chunks skip the parser entirely.
fn may_matter(event: &[u8]) -> bool {
    contains(event, b"[DONE]") || contains(event, b"\"error\"")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn classify_event(eos: &mut OpenAiEos, event: Bytes) -> Option<Failure> {
    let mut parser = SseParser::new();
    parser.push(event);
    while let Ok(Some(frame)) = parser.next_frame() {
        if let SseFrame::Event(event) = frame
            && let Some(failure) = eos.classify_event(&event)
        {
            return Some(failure);
        }
    }
    None
}

/// Finds the blank lines that end SSE events, across chunk boundaries, for
/// every line ending the spec allows (`\n`, `\r`, `\r\n`).
#[derive(Debug)]
struct BoundaryScanner {
    at_line_start: bool,
    last_cr: bool,
}

impl Default for BoundaryScanner {
    fn default() -> Self {
        BoundaryScanner {
            at_line_start: true,
            last_cr: false,
        }
    }
}

impl BoundaryScanner {
    /// The offset just past the next event boundary at or after `*pos`, or
    /// `None` when `buf` has none left; `*pos` advances past what was read.
    fn next_boundary(&mut self, buf: &[u8], pos: &mut usize) -> Option<usize> {
        while *pos < buf.len() {
            let byte = buf[*pos];
            *pos += 1;
            if byte == b'\n' && self.last_cr {
                // The LF of a CRLF; the line ended at its CR.
                self.last_cr = false;
                continue;
            }
            self.last_cr = byte == b'\r';
            if byte == b'\r' || byte == b'\n' {
                if self.at_line_start {
                    if byte == b'\r' && buf.get(*pos) == Some(&b'\n') {
                        *pos += 1;
                        self.last_cr = false;
                    }
                    return Some(*pos);
                }
                self.at_line_start = true;
            } else {
                self.at_line_start = false;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boundaries(chunks: &[&[u8]]) -> Vec<usize> {
        let mut scanner = BoundaryScanner::default();
        let mut found = Vec::new();
        let mut offset = 0;
        for chunk in chunks {
            let mut pos = 0;
            while let Some(end) = scanner.next_boundary(chunk, &mut pos) {
                found.push(offset + end);
            }
            offset += chunk.len();
        }
        found
    }

    #[test]
    fn finds_boundaries_for_every_line_ending() {
        assert_eq!(boundaries(&[b"data: a\n\ndata: b\n\n"]), [9, 18]);
        assert_eq!(boundaries(&[b"data: a\r\rdata: b\r\r"]), [9, 18]);
        assert_eq!(boundaries(&[b"data: a\r\n\r\ndata: b\r\n\r\n"]), [11, 22]);
        assert_eq!(boundaries(&[b"data: a\ndata: b\n\n"]), [17]);
        assert_eq!(boundaries(&[b": ping\n\n"]), [8]);
    }

    #[test]
    fn finds_boundaries_split_across_chunks() {
        assert_eq!(boundaries(&[b"data: a\r", b"\n\r\n"]), [11]);
        assert_eq!(boundaries(&[b"data: a\n", b"\n"]), [9]);
        assert_eq!(boundaries(&[b"data: a\r\n\r", b"\n"]), [10]);
        assert_eq!(boundaries(&[b"data: a", b"\n", b"\ndata: b\n\n"]), [9, 18]);
    }

    #[test]
    fn holds_back_the_incomplete_tail_and_stops_before_an_error() {
        let mut tail = BytesMut::new();
        let mut scanner = BoundaryScanner::default();
        let mut eos = OpenAiEos::default();
        let (out, failure) = scan_chunk(
            Bytes::from_static(b"data: {\"a\":1}\n\ndata: {\"b\""),
            &mut tail,
            &mut scanner,
            Some(&mut eos),
        );
        assert_eq!(out, "data: {\"a\":1}\n\n");
        assert!(failure.is_none());
        assert_eq!(&tail[..], b"data: {\"b\"");
        let (out, failure) = scan_chunk(
            Bytes::from_static(b":2}\n\ndata: {\"error\":{\"message\":\"x\",\"code\":502}}\n\n"),
            &mut tail,
            &mut scanner,
            Some(&mut eos),
        );
        assert_eq!(out, "data: {\"b\":2}\n\n");
        assert_eq!(failure.unwrap().class(), ErrorClass::UpstreamUnavailable);
    }
}
