//! [`SseGuard`]: forwards an upstream SSE stream whole events at a time, and
//! never lets it end as a truncated "success".

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::classify::{ClassifyEos, OpenAiEos, classify_raw_event};
use tollgate_core::sse::EventSplitter;
use tollgate_core::{BoxError, ErrorClass, Failure};

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
        splitter: EventSplitter,
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
            splitter: EventSplitter::new(),
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
                    let (forward, failure) = scan_chunk(chunk, this.splitter, this.eos.as_mut());
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

/// Splits `chunk` (after what the splitter held back) into the complete
/// events to forward now, holding back an incomplete rest, and stops before
/// an error event.
fn scan_chunk(
    chunk: Bytes,
    splitter: &mut EventSplitter,
    mut eos: Option<&mut OpenAiEos>,
) -> (Bytes, Option<Failure>) {
    let mut events = splitter.push(chunk);
    let mut failure = None;
    let mut forward = events.yielded();
    while let Some(event) = events.next() {
        if let Some(eos) = eos.as_deref_mut()
            && eos.wants(&event)
            && let Some(found) = classify_raw_event(eos, event)
        {
            failure = Some(found);
            break;
        }
        forward = events.yielded();
    }
    drop(events);
    if failure.is_none() && splitter.overflowed() {
        failure = Some(
            Failure::new(
                ErrorClass::UpstreamUnavailable,
                "the upstream sent an event larger than the gateway accepts",
            )
            .with_subkind("oversized_event"),
        );
    }
    (forward, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_the_incomplete_tail_and_stops_before_an_error() {
        let mut splitter = EventSplitter::new();
        let mut eos = OpenAiEos::default();
        let (out, failure) = scan_chunk(
            Bytes::from_static(b"data: {\"a\":1}\n\ndata: {\"b\""),
            &mut splitter,
            Some(&mut eos),
        );
        assert_eq!(out, "data: {\"a\":1}\n\n");
        assert!(failure.is_none());
        assert_eq!(splitter.pending(), 10);
        let (out, failure) = scan_chunk(
            Bytes::from_static(
                b":2}\n\ndata: {\"error\":{\"message\":\"x\",\"code\":502}}\n\ndata: {}\n\n",
            ),
            &mut splitter,
            Some(&mut eos),
        );
        assert_eq!(out, "data: {\"b\":2}\n\n");
        assert_eq!(failure.unwrap().class(), ErrorClass::UpstreamUnavailable);
    }
}
