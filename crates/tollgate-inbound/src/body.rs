//! [`ResponseBody`]: a translated answer, or a stream translated event by
//! event.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::sse::{EventSplitter, Frame as SseFrame, SseParser};
use tollgate_core::{BoxError, ErrorClass, Failure};

use crate::chat::ChatAnswer;
use crate::protocol::TranslateStream;

pin_project! {
    /// The body of [`Inbound`](crate::Inbound)'s responses: a complete
    /// translated answer, or the inner stream translated as it arrives —
    /// each chunk of the inner body becomes the events it completes, none
    /// is held back for later ones. An answer the upstream wrote in the
    /// API itself (a [`NativeAnswer`](tollgate_core::extensions::NativeAnswer))
    /// passes through untouched, a JSON one as it arrives, a stream event
    /// by event.
    ///
    /// A stream always ends with the API's closing events or its error
    /// event: an error event from the inner stream, an inner body error, or
    /// an end without `[DONE]` (a native stream: without its own last
    /// event) all become the error event, never a clean end.
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
    /// `[DONE]` was read (a native stream: its last event).
    done: bool,
    /// The events are the API's own, passed on as they are: cut apart
    /// whole, shown to the translator, never translated.
    native: Option<EventSplitter>,
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
        ResponseBody::watched(inner, translator, None)
    }

    /// A stream in the API itself, passed on event by event.
    pub(crate) fn native_stream(inner: B, translator: T) -> Self {
        ResponseBody::watched(inner, translator, Some(EventSplitter::new()))
    }

    /// A complete answer in the API itself, passed on as it arrives.
    pub(crate) fn native(inner: B) -> Self {
        ResponseBody {
            inner: Some(inner),
            complete: None,
            stream: None,
        }
    }

    fn watched(inner: B, translator: T, native: Option<EventSplitter>) -> Self {
        ResponseBody {
            inner: Some(inner),
            complete: None,
            stream: Some(Box::new(Translation {
                parser: SseParser::new(),
                translator,
                out: BytesMut::new(),
                done: false,
                native,
            })),
        }
    }

    /// The inner stream, while it is read.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B, T: TranslateStream> ResponseBody<B, T> {
    /// Ends a stream now — the gateway's deadline, its shutdown — with the
    /// API's error events for `failure`, in the terms of the answer so far
    /// (the same response or message, never a second start). The inner
    /// body is dropped, which settles what it wraps. Returns what is left
    /// to send: the events not yet handed out, then the error events; for
    /// a stream already ended, only what was not handed out; nothing for a
    /// complete answer.
    pub fn cut(self: Pin<&mut Self>, failure: &Failure) -> Bytes {
        let mut this = self.project();
        this.inner.set(None);
        let Some(translation) = this.stream.as_mut() else {
            return Bytes::new();
        };
        translation.translator.fail(failure, &mut translation.out);
        translation.out.split().freeze()
    }
}

impl<T: TranslateStream> Translation<T> {
    /// Translates the events `chunk` completes; `true` when one of them
    /// ended the stream (an error event, a malformed event).
    fn push(&mut self, chunk: Bytes) -> bool {
        if self.native.is_some() {
            return self.push_native(chunk);
        }
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

    /// Passes on the events `chunk` completes, as they came, showing each
    /// to the translator; `true` when the stream ended. An error event in
    /// chat's shape is not the upstream's: a layer below (the cascade) ended
    /// the stream with it, and it becomes the API's error events.
    fn push_native(&mut self, chunk: Bytes) -> bool {
        let Some(splitter) = self.native.as_mut() else {
            return false;
        };
        for raw in splitter.push(chunk) {
            if self.done {
                // Nothing goes after the API's own last event.
                continue;
            }
            let mut parser = SseParser::new();
            parser.push(raw.clone());
            let Ok(Some(SseFrame::Event(event))) = parser.finish() else {
                // A comment (a keep-alive) or an event without data.
                self.out.extend_from_slice(&raw);
                continue;
            };
            if let Some(failure) = cascade_error(&event.data) {
                self.translator.fail(&failure, &mut self.out);
                return true;
            }
            self.out.extend_from_slice(&raw);
            self.done = self.translator.native_event(&event);
        }
        false
    }

    /// The inner stream's end.
    fn end(&mut self) {
        if self.native.is_some() {
            if !self.done {
                let failure = Failure::new(
                    ErrorClass::StreamInterrupted,
                    "the upstream's stream ended before it was complete",
                );
                self.translator.fail(&failure, &mut self.out);
            }
            return;
        }
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
            // A native answer, as it arrives (or nothing left).
            return match this.inner.as_pin_mut() {
                Some(inner) => inner.poll_frame(cx).map_err(Into::into),
                None => Poll::Ready(None),
            };
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
        match (&self.inner, &self.stream) {
            (Some(inner), None) => inner.is_end_stream(),
            (inner, stream) => {
                self.complete.is_none()
                    && inner.is_none()
                    && stream.as_ref().is_none_or(|t| t.out.is_empty())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.complete, &self.stream, &self.inner) {
            (Some(bytes), _, _) => SizeHint::with_exact(bytes.len() as u64),
            (None, None, Some(inner)) => inner.size_hint(),
            (None, None, None) => SizeHint::with_exact(0),
            (None, Some(_), _) => SizeHint::default(),
        }
    }
}

/// The failure of an OpenAI-style error event (`data: {"error": {...}}`),
/// which a chat layer below writes to end a stream it cannot go on with;
/// `None` for any other event. A Responses event carries its error inside
/// (`type: "error"`, or `response.error`), never at the top.
fn cascade_error(data: &[u8]) -> Option<Failure> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(default)]
        error: Option<crate::chat::ChatError>,
    }
    // Only events that name `"error"` (which escaped text cannot fake) are
    // parsed.
    data.windows(7).find(|w| w == b"\"error\"")?;
    let top: Top = serde_json::from_slice(data).ok()?;
    Some(top.error?.to_failure())
}
