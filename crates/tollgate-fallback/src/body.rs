//! [`ResponseBody`]: the body of the cascade's responses.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tollgate_core::classify::{ClassifyEos, Verdict};
use tollgate_core::sse::SharedEvents;
use tollgate_core::{BoxError, ErrorClass, Failure, Redactor};

use crate::resume::{Call, Resume};
use crate::splice::{Break, Splicer};

pin_project! {
    /// The body of a [`Fallback`](crate::Fallback) response.
    ///
    /// A complete (JSON) body passes through untouched. A stream
    /// (`text/event-stream`) is forwarded event by event, cut only at event
    /// boundaries, every data event checked to be whole JSON; the events
    /// held back before the first content come first. When it breaks after
    /// content went out, the body asks the next capable group to continue
    /// from the text already sent and splices that stream in; when nothing
    /// can, it ends with one OpenAI-style error event
    /// (`data: {"error":{…,"code":"stream_interrupted"}}`) naming the
    /// original cause — never with `finish_reason: "stop"` and `[DONE]`. A
    /// stream that ends after its finish chunk without `[DONE]` gets one.
    ///
    /// A stream body never returns an error: every failure becomes that
    /// error event, which the OpenAI SDKs raise. With a
    /// [`Redactor`](tollgate_core::Redactor) in the request's extensions,
    /// the event is redacted with it.
    pub struct ResponseBody<B, E> {
        #[pin]
        kind: Kind<B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, E> {
        Pass {
            #[pin]
            body: B,
        },
        // An error response whose start was read to classify it.
        Replay {
            prefix: Option<Bytes>,
            error: Option<BoxError>,
            body: Pin<Box<B>>,
        },
        Stream {
            stream: Box<Stream<B, E>>,
        },
    }
}

impl<B, E> ResponseBody<B, E> {
    pub(crate) fn pass(body: B) -> Self {
        ResponseBody {
            kind: Kind::Pass { body },
        }
    }

    pub(crate) fn replay(prefix: Bytes, error: Option<BoxError>, body: Pin<Box<B>>) -> Self {
        ResponseBody {
            kind: Kind::Replay {
                prefix: (!prefix.is_empty()).then_some(prefix),
                error,
                body,
            },
        }
    }

    pub(crate) fn stream(
        body: Pin<Box<B>>,
        splicer: Splicer<E>,
        resume: Option<Box<dyn Resume<B, E>>>,
        deadline: Option<Instant>,
        redactor: Option<Redactor>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Stream {
                stream: Box::new(Stream {
                    body: Some(body),
                    splicer,
                    resume,
                    deadline,
                    sleep: None,
                    call: None,
                    cause: None,
                    latest: None,
                    failure: None,
                    redactor,
                    ended: false,
                }),
            },
        }
    }

    /// The failure a stream ended with, once it has: what its error event
    /// told the client. `None` while it runs, after a complete answer, and
    /// for a complete body.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.kind {
            Kind::Stream { stream } => stream.failure.as_ref(),
            _ => None,
        }
    }

    /// Continuation requests the stream made after it broke.
    pub fn continuations(&self) -> u32 {
        match &self.kind {
            Kind::Stream { stream } => stream.resume.as_ref().map_or(0, |r| r.continuations()),
            _ => 0,
        }
    }
}

impl<B: fmt::Debug, E> fmt::Debug for ResponseBody<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Pass { body } => f.debug_tuple("ResponseBody::Pass").field(body).finish(),
            Kind::Replay { body, .. } => f.debug_tuple("ResponseBody::Replay").field(body).finish(),
            Kind::Stream { stream } => f
                .debug_struct("ResponseBody::Stream")
                .field("splicer", &stream.splicer)
                .field("continuing", &stream.call.is_some())
                .field("failure", &stream.failure)
                .finish_non_exhaustive(),
        }
    }
}

impl<B, E> Body for ResponseBody<B, E>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    E: ClassifyEos,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Pass { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Replay {
                prefix,
                error,
                body,
            } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                if let Some(error) = error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                body.as_mut().poll_frame(cx).map_err(Into::into)
            }
            KindProj::Stream { stream } => stream.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Pass { body } => body.is_end_stream(),
            Kind::Replay {
                prefix,
                error,
                body,
            } => prefix.is_none() && error.is_none() && body.is_end_stream(),
            Kind::Stream { stream } => stream.ended && !stream.splicer.has_output(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Pass { body } => body.size_hint(),
            Kind::Replay { prefix, body, .. } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}

/// A stream, and what it needs to continue after a break.
struct Stream<B, E> {
    /// The body being read: the upstream's, or a continuation's.
    body: Option<Pin<Box<B>>>,
    splicer: Splicer<E>,
    resume: Option<Box<dyn Resume<B, E>>>,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A continuation request on its way.
    call: Option<Call<B>>,
    /// The first break after content: what the client is told when nothing
    /// can continue.
    cause: Option<Failure>,
    /// The last break after content: what picks the groups that may
    /// continue.
    latest: Option<Failure>,
    failure: Option<Failure>,
    /// The request's [`Redactor`] extension: the error event is the
    /// client's, so whatever upstream text it names is redacted as the
    /// gateway's edge redacts its answers.
    redactor: Option<Redactor>,
    ended: bool,
}

impl<B, E> Stream<B, E>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    E: ClassifyEos,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(bytes) = self.splicer.pop() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match self.splicer.take_break() {
                None => {}
                Some(Break::AfterContent(cause)) => {
                    self.body = None;
                    self.broke(cause);
                    continue;
                }
                Some(Break::BeforeContent(failure)) => {
                    self.body = None;
                    self.continuation_failed(&failure);
                    continue;
                }
            }
            if let Some(call) = self.call.as_mut() {
                let answer = match call.as_mut().poll(cx) {
                    Poll::Ready(answer) => answer,
                    Poll::Pending if self.deadline_passed(cx) => {
                        self.give_up();
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                };
                self.call = None;
                self.answered(answer);
                continue;
            }
            let Some(body) = self.body.as_mut() else {
                self.ended = true;
                continue;
            };
            match body.as_mut().poll_frame(cx) {
                // Waiting for a continuation's first content is bounded by
                // the deadline; after that, by the inner stack's timeouts.
                Poll::Pending if !self.splicer.committed() && self.deadline_passed(cx) => {
                    self.give_up();
                    continue;
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.splicer.push(data);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    self.splicer.error(&*error);
                    self.body = None;
                }
                Poll::Ready(None) => {
                    self.splicer.end();
                    self.body = None;
                }
            }
        }
    }

    fn broke(&mut self, cause: Failure) {
        if let Some(resume) = self.resume.as_mut() {
            resume.broke(&cause);
        }
        if self.cause.is_none() {
            self.cause = Some(cause.clone());
        }
        self.latest = Some(cause);
        self.continue_elsewhere();
    }

    fn continuation_failed(&mut self, failure: &Failure) {
        match self.resume.as_mut() {
            Some(resume) if self.cause.is_some() => {
                resume.failed(failure);
                self.continue_elsewhere();
            }
            // A stream committed before its first content (its prefix
            // outgrew the bound) that broke: a break like any other.
            _ => self.broke(failure.clone()),
        }
    }

    /// Asks the next group to continue, or ends the stream.
    fn continue_elsewhere(&mut self) {
        let call = match (&mut self.resume, &self.latest) {
            (Some(resume), Some(cause))
                if self.splicer.continuable()
                    && self.deadline.is_none_or(|d| Instant::now() < d) =>
            {
                resume.next_call(self.splicer.prefill(), cause)
            }
            _ => None,
        };
        match call {
            Some(call) => self.call = Some(call),
            None => self.give_up(),
        }
    }

    fn answered(&mut self, answer: Result<http::Response<B>, BoxError>) {
        let Some(resume) = self.resume.as_mut() else {
            return self.give_up();
        };
        let failure = match answer {
            Ok(response) => match resume.classify(&response) {
                Verdict::Watch(eos) => {
                    let mut response = response;
                    let below = SharedEvents::of(response.extensions_mut());
                    self.splicer.resume(eos, below);
                    self.body = Some(Box::pin(response.into_body()));
                    return;
                }
                Verdict::Failure(failure) => failure,
                Verdict::Success => Failure::new(
                    ErrorClass::UpstreamUnavailable,
                    "the continuation was not a stream",
                ),
            },
            Err(error) => resume.classify_error(&*error),
        };
        self.continuation_failed(&failure);
    }

    /// Nothing can continue: one error event naming the original cause, and
    /// the end.
    fn give_up(&mut self) {
        self.call = None;
        self.body = None;
        let cause = self.cause.take().unwrap_or_else(|| {
            Failure::new(ErrorClass::UpstreamUnavailable, "the upstream stream broke")
        });
        let mut failure = interrupted(&cause);
        if let Some(redactor) = &self.redactor {
            failure = redactor.redact_failure(&failure);
        }
        tracing::info!(
            class = %cause.class(),
            continuations = self.resume.as_ref().map_or(0, |r| r.continuations()),
            "fallback: ending a broken stream with an error event"
        );
        self.splicer.fail(&failure);
        self.failure = Some(failure);
        self.ended = true;
    }

    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// What the client is told: the stream was interrupted, and why.
fn interrupted(cause: &Failure) -> Failure {
    if cause.class() == ErrorClass::StreamInterrupted {
        return cause.clone();
    }
    Failure::new(
        ErrorClass::StreamInterrupted,
        format!("the stream was interrupted after part of the answer was sent ({cause})"),
    )
    .with_subkind(cause.class().as_str())
}
