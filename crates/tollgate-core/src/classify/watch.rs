//! [`WatchBody`]: settles a response's outcome when its body ends.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::ClassifyEos;
use crate::failure::{BoxError, Failure};
use crate::sse::{EventReader, EventSplitter, Frame as SseFrame, SharedEvents, SseParser};

/// How a watched response body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// It ended, and the classifier found nothing wrong.
    Complete,
    /// It failed: an error event, a transport error, or an end the classifier
    /// judged incomplete.
    Failed(Failure),
    /// It was dropped before it ended: the client went away. Neither a
    /// success nor a failure of the upstream.
    Cancelled,
}

/// What a [`WatchBody`] calls, once, when its body ends. Implemented for
/// every `FnOnce(StreamEnd)`; a layer that needs to name its body type
/// implements it on a struct instead of boxing a closure.
pub trait OnEnd {
    /// The body ended like this.
    fn on_end(self, end: StreamEnd);
}

impl<F: FnOnce(StreamEnd)> OnEnd for F {
    fn on_end(self, end: StreamEnd) {
        self(end)
    }
}

pin_project! {
    /// Passes a response body through and reports, exactly once, how it
    /// ended — for layers whose outcome is only known at the end of a
    /// stream (a circuit breaker, cost accounting, concurrency permits).
    ///
    /// With a [`ClassifyEos`] it reads the stream's events and shows the
    /// classifier the ones it [`wants`](ClassifyEos::wants); the first
    /// failure settles the outcome (the bytes still flow: watching never
    /// changes them). The stream goes out one whole event per frame, each
    /// [published](SharedEvents) for the layers above when the body was
    /// made [`sharing`](Self::sharing) the response's events — so a
    /// stack of watchers splits the stream once; an incomplete event is
    /// held back until its end arrives (an SSE client could not use it
    /// before), and handed out as it came when the stream ends inside it.
    /// Without a classifier (a complete JSON body), only a transport error
    /// fails it, and frames pass as they come. Dropping it unsettled
    /// reports [`StreamEnd::Cancelled`].
    pub struct WatchBody<B, E, F>
    where
        F: OnEnd,
    {
        #[pin]
        inner: B,
        eos: Option<E>,
        events: Option<Box<Reframe>>,
        on_end: Option<F>,
    }

    impl<B, E, F> PinnedDrop for WatchBody<B, E, F>
    where
        F: OnEnd,
    {
        fn drop(this: Pin<&mut Self>) {
            if let Some(on_end) = this.project().on_end.take() {
                on_end.on_end(StreamEnd::Cancelled);
            }
        }
    }
}

/// A watched stream's events on their way out.
#[derive(Debug, Default)]
struct Reframe {
    reader: EventReader,
    /// Where the events handed out are published, when shared.
    shared: Option<SharedEvents>,
    /// Pieces ready for the client, and whether each is one whole event
    /// to publish.
    out: VecDeque<(Bytes, bool)>,
    /// Trailers, for after the pieces.
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    /// The inner body has ended (or failed).
    ended: bool,
}

impl Reframe {
    /// The inner body is over: the incomplete event it ended in goes out
    /// as it came.
    fn end(&mut self) {
        self.ended = true;
        if let Some(tail) = self.reader.take_tail() {
            self.out.push_back((tail, false));
        }
    }
}

impl<B, E, F> WatchBody<B, E, F>
where
    B: Body,
    E: ClassifyEos,
    F: OnEnd,
{
    /// Watches a stream with `eos`; calls `on_end` once it ends.
    pub fn stream(inner: B, eos: E, on_end: F) -> Self {
        WatchBody {
            inner,
            eos: Some(eos),
            events: Some(Box::default()),
            on_end: Some(on_end),
        }
        .settled_if_empty()
    }

    /// Watches a complete (non-streaming) body; calls `on_end` once it ends.
    pub fn complete(inner: B, on_end: F) -> Self {
        WatchBody {
            inner,
            eos: None,
            events: None,
            on_end: Some(on_end),
        }
        .settled_if_empty()
    }

    /// Shares the stream's events with the other layers that watch it
    /// (`shared` is the response's [`SharedEvents`]): the events a layer
    /// below split are taken whole, and those handed out are published.
    /// No effect on a complete body.
    pub fn sharing(mut self, shared: SharedEvents) -> Self {
        if let Some(events) = self.events.as_mut() {
            events.reader = EventReader::new(Some(shared.clone()));
            events.shared = Some(shared);
        }
        self
    }

    /// A body that is empty from the start is never polled (hyper checks
    /// `is_end_stream` first): it ends here.
    fn settled_if_empty(mut self) -> Self {
        if self.inner.is_end_stream() {
            if let Some(events) = self.events.as_mut() {
                events.ended = true;
            }
            let end = match self.eos.take().map(ClassifyEos::classify_eos) {
                Some(Err(failure)) => StreamEnd::Failed(failure),
                _ => StreamEnd::Complete,
            };
            if let Some(on_end) = self.on_end.take() {
                on_end.on_end(end);
            }
        }
        self
    }
}

impl<B, E, F> std::fmt::Debug for WatchBody<B, E, F>
where
    B: std::fmt::Debug,
    F: OnEnd,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchBody")
            .field("inner", &self.inner)
            .field("settled", &self.on_end.is_none())
            .finish_non_exhaustive()
    }
}

fn settle<F: OnEnd>(on_end: &mut Option<F>, end: StreamEnd) {
    if let Some(on_end) = on_end.take() {
        on_end.on_end(end);
    }
}

fn end_of<E: ClassifyEos>(eos: &mut Option<E>) -> StreamEnd {
    match eos.take().map(ClassifyEos::classify_eos) {
        Some(Err(failure)) => StreamEnd::Failed(failure),
        _ => StreamEnd::Complete,
    }
}

impl<B, E, F> Body for WatchBody<B, E, F>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    E: ClassifyEos,
    F: OnEnd,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let Some(events) = this.events.as_deref_mut() else {
            return poll_complete(this.inner, this.on_end, cx);
        };
        loop {
            if let Some((piece, whole)) = events.out.pop_front() {
                if whole && let Some(shared) = &events.shared {
                    shared.publish(&piece);
                }
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if let Some(trailers) = events.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if let Some(error) = events.error.take() {
                return Poll::Ready(Some(Err(error)));
            }
            if events.ended {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => {
                            // Trailers end a body: after the incomplete
                            // event it ended in.
                            if let Ok(trailers) = frame.into_trailers() {
                                events.trailers = Some(trailers);
                            }
                            events.end();
                            if this.on_end.is_some() {
                                settle(this.on_end, end_of(this.eos));
                            }
                            continue;
                        }
                    };
                    if events.reader.pending() + data.len() > EventSplitter::DEFAULT_MAX_EVENT_LEN {
                        // An event too large to hold (a splitter would
                        // drop it): its bytes pass as they come, unread.
                        if let Some(tail) = events.reader.take_tail() {
                            events.out.push_back((tail, false));
                        }
                        events.out.push_back((data, false));
                    } else {
                        let watching = this.on_end.is_some();
                        let mut failure = None;
                        let read = events.reader.push(data);
                        // A frame published below goes out at once, as it
                        // is: still the published one, nothing to publish.
                        let publish = events.shared.is_some() && !read.published();
                        for event in read {
                            if watching
                                && failure.is_none()
                                && let Some(eos) = this.eos.as_mut()
                                && eos.wants(&event)
                            {
                                failure = classify_raw_event(eos, event.clone());
                            }
                            events.out.push_back((event, publish));
                        }
                        if let Some(failure) = failure {
                            settle(this.on_end, StreamEnd::Failed(failure));
                        }
                    }
                    // hyper stops polling a body that says it has ended, so
                    // the last frame is as good as the end.
                    if this.inner.is_end_stream() {
                        events.end();
                        if this.on_end.is_some() {
                            settle(this.on_end, end_of(this.eos));
                        }
                    }
                }
                Some(Err(error)) => {
                    let error: BoxError = error.into();
                    events.end();
                    if this.on_end.is_some() {
                        let failure = match this.eos.take() {
                            Some(eos) => eos.classify_error(&*error),
                            None => body_failure(&*error),
                        };
                        settle(this.on_end, StreamEnd::Failed(failure));
                    }
                    events.error = Some(error);
                }
                None => {
                    events.end();
                    if this.on_end.is_some() {
                        settle(this.on_end, end_of(this.eos));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.events.as_deref() {
            Some(events) => {
                events.ended
                    && events.out.is_empty()
                    && events.trailers.is_none()
                    && events.error.is_none()
            }
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.events.as_deref() {
            // Bytes held back are counted by neither side: the inner body's
            // bounds, raised by what waits here.
            Some(events) => {
                let held: u64 = events.out.iter().map(|(b, _)| b.len() as u64).sum::<u64>()
                    + events.reader.pending() as u64;
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(held));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(held));
                }
                hint
            }
            None => self.inner.size_hint(),
        }
    }
}

/// A complete body: frames pass as they come; a transport error fails it.
fn poll_complete<B, F>(
    inner: Pin<&mut B>,
    on_end: &mut Option<F>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    F: OnEnd,
{
    let mut inner = inner;
    match ready!(inner.as_mut().poll_frame(cx)) {
        Some(Ok(frame)) => {
            if on_end.is_some() && inner.is_end_stream() {
                settle(on_end, StreamEnd::Complete);
            }
            Poll::Ready(Some(Ok(frame)))
        }
        Some(Err(error)) => {
            let error: BoxError = error.into();
            settle(on_end, StreamEnd::Failed(body_failure(&*error)));
            Poll::Ready(Some(Err(error)))
        }
        None => {
            settle(on_end, StreamEnd::Complete);
            Poll::Ready(None)
        }
    }
}

/// The failure of a complete body that broke: a classified error keeps its
/// class, anything else (a connection closed mid-body) is the upstream's.
fn body_failure(error: &(dyn std::error::Error + 'static)) -> Failure {
    Failure::find(error).cloned().unwrap_or_else(|| {
        Failure::new(
            crate::ErrorClass::UpstreamUnavailable,
            "the upstream connection broke mid-response",
        )
        .with_subkind("body_error")
    })
}

/// Parses one raw event (as [`EventSplitter`] yields it) and shows it to
/// `eos`; returns the failure it finds.
pub fn classify_raw_event<E: ClassifyEos>(eos: &mut E, raw_event: Bytes) -> Option<Failure> {
    let mut parser = SseParser::new();
    parser.push(raw_event);
    while let Ok(Some(frame)) = parser.next_frame() {
        if let SseFrame::Event(event) = frame
            && let Some(failure) = eos.classify_event(&event)
        {
            return Some(failure);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ErrorClass;
    use crate::classify::OpenAiEos;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// A body of scripted frames, then an optional error.
    struct Scripted(VecDeque<Result<Frame<Bytes>, &'static str>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(
                self.get_mut()
                    .0
                    .pop_front()
                    .map(|item| item.map_err(BoxError::from)),
            )
        }
    }

    fn scripted(items: &[Result<&'static str, &'static str>]) -> Scripted {
        Scripted(
            items
                .iter()
                .map(|i| i.map(|s| Frame::data(Bytes::from_static(s.as_bytes()))))
                .collect(),
        )
    }

    fn recorder() -> (Arc<Mutex<Vec<StreamEnd>>>, impl FnOnce(StreamEnd)) {
        let ends = Arc::new(Mutex::new(Vec::new()));
        let sink = ends.clone();
        (ends, move |end| sink.lock().unwrap().push(end))
    }

    #[tokio::test]
    async fn a_complete_stream_settles_complete_and_passes_bytes_through() {
        let (ends, on_end) = recorder();
        let body = scripted(&[Ok("data: {\"a\":1}\n\nda"), Ok("ta: [DONE]\n\n")]);
        let body = WatchBody::stream(body, OpenAiEos::default(), on_end);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(*ends.lock().unwrap(), [StreamEnd::Complete]);
    }

    #[tokio::test]
    async fn an_error_event_split_across_chunks_settles_failed_once() {
        let (ends, on_end) = recorder();
        let body = scripted(&[
            Ok("data: {\"err"),
            Ok("or\":{\"message\":\"x\",\"code\":429}}\n\n"),
            Ok("data: {\"error\":{\"message\":\"again\"}}\n\n"),
        ]);
        let body = WatchBody::stream(body, OpenAiEos::default(), on_end);
        body.collect().await.unwrap();
        let ends = ends.lock().unwrap();
        assert_eq!(ends.len(), 1);
        match &ends[0] {
            StreamEnd::Failed(failure) => assert_eq!(failure.class(), ErrorClass::RateLimited),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_that_reports_its_end_settles_without_a_last_poll() {
        let (ends, on_end) = recorder();
        let body = WatchBody::<_, OpenAiEos, _>::complete(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            on_end,
        );
        tokio::pin!(body);
        let frame = body.as_mut().frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "{}");
        assert!(body.is_end_stream());
        assert_eq!(*ends.lock().unwrap(), [StreamEnd::Complete]);

        let (ends, on_end) = recorder();
        let empty =
            WatchBody::<_, OpenAiEos, _>::complete(http_body_util::Empty::<Bytes>::new(), on_end);
        assert_eq!(*ends.lock().unwrap(), [StreamEnd::Complete]);
        drop(empty);
        assert_eq!(ends.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn transport_errors_fail_and_drops_cancel() {
        let (ends, on_end) = recorder();
        let body = WatchBody::stream(
            scripted(&[Ok("data: {}\n\n"), Err("reset")]),
            OpenAiEos::default(),
            on_end,
        );
        assert!(body.collect().await.is_err());
        assert!(matches!(ends.lock().unwrap()[0], StreamEnd::Failed(_)));

        let (ends, on_end) = recorder();
        let body = WatchBody::stream(
            scripted(&[Ok("data: {}\n\n")]),
            OpenAiEos::default(),
            on_end,
        );
        drop(body);
        assert_eq!(*ends.lock().unwrap(), [StreamEnd::Cancelled]);

        let (ends, on_end) = recorder();
        let body = WatchBody::<_, OpenAiEos, _>::complete(scripted(&[Ok("{}")]), on_end);
        body.collect().await.unwrap();
        assert_eq!(*ends.lock().unwrap(), [StreamEnd::Complete]);
    }

    #[tokio::test]
    async fn stacked_watchers_split_once_and_hand_out_one_event_per_frame() {
        let shared = SharedEvents::new();
        let (inner_ends, on_end) = recorder();
        let body = scripted(&[
            Ok("data: {\"a\":1}\n\ndata: {\"a"),
            Ok("\":2}\n\ndata: [DONE]\n\n"),
        ]);
        let inner = WatchBody::stream(body, OpenAiEos::default(), on_end).sharing(shared.clone());
        let (outer_ends, on_end) = recorder();
        let outer = WatchBody::stream(inner, OpenAiEos::default(), on_end).sharing(shared.clone());
        tokio::pin!(outer);
        let mut frames = Vec::new();
        while let Some(frame) = outer.as_mut().frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(shared.is_published(&data), "{data:?}");
            frames.push(data);
        }
        assert_eq!(
            frames,
            [
                "data: {\"a\":1}\n\n",
                "data: {\"a\":2}\n\n",
                "data: [DONE]\n\n"
            ]
        );
        assert_eq!(*inner_ends.lock().unwrap(), [StreamEnd::Complete]);
        assert_eq!(*outer_ends.lock().unwrap(), [StreamEnd::Complete]);
    }

    #[tokio::test]
    async fn an_incomplete_last_event_goes_out_as_it_came_before_the_error() {
        let (ends, on_end) = recorder();
        let body = scripted(&[Ok("data: {}\n\ndata: {\"cut"), Err("reset")]);
        let body = WatchBody::stream(body, OpenAiEos::default(), on_end);
        tokio::pin!(body);
        let mut data = Vec::new();
        let error = loop {
            match body.as_mut().frame().await.unwrap() {
                Ok(frame) => data.extend_from_slice(&frame.into_data().unwrap()),
                Err(error) => break error,
            }
        };
        assert_eq!(error.to_string(), "reset");
        assert_eq!(data, b"data: {}\n\ndata: {\"cut");
        assert!(matches!(ends.lock().unwrap()[0], StreamEnd::Failed(_)));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn trailers_come_after_the_incomplete_event_they_end() {
        let (ends, on_end) = recorder();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-end", http::HeaderValue::from_static("1"));
        let body = Scripted(VecDeque::from([
            Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\ndata: x"))),
            Ok(Frame::trailers(trailers)),
        ]));
        let body = WatchBody::stream(body, OpenAiEos::default(), on_end);
        tokio::pin!(body);
        let mut frames = Vec::new();
        while let Some(frame) = body.as_mut().frame().await {
            frames.push(frame.unwrap());
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data_ref().unwrap(), "data: [DONE]\n\n");
        assert_eq!(frames[1].data_ref().unwrap(), "data: x");
        assert_eq!(frames[2].trailers_ref().unwrap()["x-end"], "1");
        assert_eq!(*ends.lock().unwrap(), [StreamEnd::Complete]);
    }
}
