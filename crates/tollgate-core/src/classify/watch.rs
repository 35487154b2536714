//! [`WatchBody`]: settles a response's outcome when its body ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::ClassifyEos;
use crate::failure::{BoxError, Failure};
use crate::sse::{EventSplitter, Frame as SseFrame, SseParser};

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
    /// Passes a response body through unchanged and reports, exactly once,
    /// how it ended — for layers whose outcome is only known at the end of a
    /// stream (a circuit breaker, cost accounting, concurrency permits).
    ///
    /// With a [`ClassifyEos`] it splits the stream into events and shows the
    /// classifier the ones it [`wants`](ClassifyEos::wants); the first failure
    /// settles the outcome (the bytes still flow: watching never changes the
    /// stream). Without one (a complete JSON body), only a transport error
    /// fails it. Dropping it unsettled reports [`StreamEnd::Cancelled`].
    pub struct WatchBody<B, E, F>
    where
        F: OnEnd,
    {
        #[pin]
        inner: B,
        eos: Option<E>,
        splitter: Option<EventSplitter>,
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
            splitter: Some(EventSplitter::new()),
            on_end: Some(on_end),
        }
        .settled_if_empty()
    }

    /// Watches a complete (non-streaming) body; calls `on_end` once it ends.
    pub fn complete(inner: B, on_end: F) -> Self {
        WatchBody {
            inner,
            eos: None,
            splitter: None,
            on_end: Some(on_end),
        }
        .settled_if_empty()
    }

    /// A body that is empty from the start is never polled (hyper checks
    /// `is_end_stream` first): it ends here.
    fn settled_if_empty(mut self) -> Self {
        if self.inner.is_end_stream() {
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
        let polled = match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(polled) => polled,
        };
        let settle = |on_end: &mut Option<F>, end: StreamEnd| {
            if let Some(on_end) = on_end.take() {
                on_end.on_end(end);
            }
        };
        match polled {
            Some(Ok(frame)) => {
                if let (Some(eos), Some(splitter), Some(data)) =
                    (this.eos.as_mut(), this.splitter.as_mut(), frame.data_ref())
                    && this.on_end.is_some()
                {
                    let failure = splitter.push(data.clone()).find_map(|event| {
                        eos.wants(&event).then(|| classify_raw_event(eos, event))?
                    });
                    if let Some(failure) = failure {
                        settle(this.on_end, StreamEnd::Failed(failure));
                    }
                }
                // hyper stops polling a body that says it has ended, so the
                // last frame is as good as the end.
                if this.on_end.is_some() && this.inner.is_end_stream() {
                    let end = match this.eos.take().map(ClassifyEos::classify_eos) {
                        Some(Err(failure)) => StreamEnd::Failed(failure),
                        _ => StreamEnd::Complete,
                    };
                    settle(this.on_end, end);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let error: BoxError = error.into();
                let failure = match this.eos.take() {
                    Some(eos) => eos.classify_error(&*error),
                    // A body that broke was the upstream's failure, unless
                    // the error says more.
                    None => body_failure(&*error),
                };
                settle(this.on_end, StreamEnd::Failed(failure));
                Poll::Ready(Some(Err(error)))
            }
            None => {
                let end = match this.eos.take().map(ClassifyEos::classify_eos) {
                    Some(Err(failure)) => StreamEnd::Failed(failure),
                    _ => StreamEnd::Complete,
                };
                settle(this.on_end, end);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
    struct Scripted(VecDeque<Result<Bytes, &'static str>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|item| match item {
                Ok(data) => Ok(Frame::data(data)),
                Err(message) => Err(BoxError::from(message)),
            }))
        }
    }

    fn scripted(items: &[Result<&'static str, &'static str>]) -> Scripted {
        Scripted(
            items
                .iter()
                .map(|i| i.map(|s| Bytes::from_static(s.as_bytes())))
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
}
