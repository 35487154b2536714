//! [`ResponseBody`]: a translated answer, or a stream translated event by
//! event.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::sse::{Frame as SseFrame, SseParser};
use tollgate_core::{BoxError, ErrorClass, Failure};

use crate::chat::ChatAnswer;
use crate::protocol::TranslateStream;

pin_project! {
    /// The body of [`Inbound`](crate::Inbound)'s responses: a complete
    /// translated answer, or the inner stream translated as it arrives —
    /// each chunk of the inner body becomes the events it completes, none
    /// is held back for later ones.
    ///
    /// A stream always ends with the API's closing events or its error
    /// event: an error event from the inner stream, an inner body error, or
    /// an end without `[DONE]` all become the error event, never a clean
    /// end.
    pub struct ResponseBody<B, T> {
        #[pin]
        inner: Option<B>,
        complete: Option<Bytes>,
        stream: Option<Box<Translation<T>>>,
    }
}

struct Translation<T> {
    parser: SseParser,
    translator: T,
    out: BytesMut,
    /// `[DONE]` was read.
    done: bool,
}

impl<B, T> fmt::Debug for ResponseBody<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("stream", &self.stream.is_some())
            .field("ended", &self.inner.is_none())
            .finish()
    }
}

impl<B, T> ResponseBody<B, T> {
    pub(crate) fn complete(bytes: Bytes) -> Self {
        ResponseBody {
            inner: None,
            complete: (!bytes.is_empty()).then_some(bytes),
            stream: None,
        }
    }

    pub(crate) fn stream(inner: B, translator: T) -> Self {
        ResponseBody {
            inner: Some(inner),
            complete: None,
            stream: Some(Box::new(Translation {
                parser: SseParser::new(),
                translator,
                out: BytesMut::new(),
                done: false,
            })),
        }
    }

    /// The inner stream, while it is read.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<T: TranslateStream> Translation<T> {
    /// Translates the events `chunk` completes; `true` when one of them
    /// ended the stream (an error event, a malformed event).
    fn push(&mut self, chunk: Bytes) -> bool {
        self.parser.push(chunk);
        loop {
            match self.parser.next_frame() {
                Ok(Some(SseFrame::Event(event))) => {
                    if self.event(&event.data) {
                        return true;
                    }
                }
                Ok(Some(SseFrame::Comment(_))) => {}
                Ok(None) => return false,
                Err(_) => {
                    let failure = Failure::new(
                        ErrorClass::StreamInterrupted,
                        "the upstream's stream is malformed",
                    );
                    self.translator.fail(&failure, &mut self.out);
                    return true;
                }
            }
        }
    }

    /// One event; `true` when it ends the stream.
    fn event(&mut self, data: &[u8]) -> bool {
        if data == b"[DONE]" {
            self.done = true;
            return false;
        }
        match ChatAnswer::parse(data) {
            Ok(answer) => match &answer.error {
                Some(error) => {
                    self.translator.fail(&error.to_failure(), &mut self.out);
                    true
                }
                None => {
                    self.translator.chunk(&answer, &mut self.out);
                    false
                }
            },
            Err(_) => {
                let failure = Failure::new(
                    ErrorClass::StreamInterrupted,
                    "the upstream sent an event that is not a chat chunk",
                );
                self.translator.fail(&failure, &mut self.out);
                true
            }
        }
    }

    /// The inner stream's end.
    fn end(&mut self) {
        if self.done {
            self.translator.finish(&mut self.out);
        } else {
            let failure = Failure::new(
                ErrorClass::StreamInterrupted,
                "the upstream's stream ended before it was complete",
            );
            self.translator.fail(&failure, &mut self.out);
        }
    }
}

impl<B, T> Body for ResponseBody<B, T>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: TranslateStream,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(bytes) = this.complete.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        let Some(translation) = this.stream.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                let out = translation.out.split().freeze();
                return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
            };
            let over = match inner.poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => translation.push(data),
                    Err(_) => false,
                },
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    translation
                        .translator
                        .fail(&Failure::from_error(&*error), &mut translation.out);
                    true
                }
                Poll::Ready(None) => {
                    translation.end();
                    true
                }
            };
            if over {
                // Dropping the inner body settles what it wraps (limits,
                // breaker, cost) at once.
                this.inner.set(None);
            }
            if !translation.out.is_empty() {
                let out = translation.out.split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.complete.is_none()
            && self.inner.is_none()
            && self.stream.as_ref().is_none_or(|t| t.out.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.complete, &self.stream) {
            (Some(bytes), _) => SizeHint::with_exact(bytes.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            (None, Some(_)) => SizeHint::default(),
        }
    }
}
