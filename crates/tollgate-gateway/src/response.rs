//! [`GatewayBody`]: every response body the gateway sends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tollgate_core::{BoxError, ErrorClass, Failure, TimeoutKind};

use tollgate_inbound::messages::MessagesStream;
use tollgate_inbound::responses::ResponsesStream;

use crate::access_log::AccessLog;
use crate::after_write::{self, Deferred};
use crate::grace::{GracePeriod, GraceWatch};
use crate::stack::StackBody;
use crate::write_deadline::{self, Registration};

pin_project! {
    /// A gateway response body: a small complete one (errors, `/v1/models`),
    /// a forwarded JSON body, or a guarded SSE stream. It carries the
    /// request's access-log entry and settles it when it ends or is dropped.
    /// A stream ends with a `shutdown` error event when the server's grace
    /// period ends first.
    /// A forwarded body may run under the request's deadline
    /// ([`with_deadline`](GatewayBody::with_deadline)).
    pub struct GatewayBody {
        #[pin]
        kind: Kind,
        log: Option<AccessLog>,
        grace: Option<Box<GraceWatch>>,
        deadline: Option<ResponseDeadline>,
    }

    impl PinnedDrop for GatewayBody {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(registration) = this.deadline.take().and_then(|d| d.registration) {
                // The server is cutting a response its client did not take
                // by the deadline (see `write_deadline`).
                if registration.expired()
                    && let Some(log) = this.log.as_mut()
                {
                    log.write_timeout = true;
                    log.finished = true;
                    log.class = Some(ErrorClass::Timeout);
                    if let Some((metrics, _)) = &log.metrics {
                        metrics.client_timeout(crate::metrics::WRITE_TIMEOUT);
                    }
                }
                registration.release();
            }
            // The body first: dropping a stream's body settles its attempt
            // (tokens and cost of what was relayed) into the tally the line
            // reads.
            this.kind.set(Kind::Full { data: None });
            // The line is written once the answer is (see `after_write`).
            if let Some(log) = this.log.take() {
                after_write::defer(Deferred::AccessLog(log));
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Full { data: Option<Bytes> },
        Forward { #[pin] body: StackBody },
        // `POST /v1/messages` and `POST /v1/responses`: the stack's chat
        // answer in the route's own shape.
        Messages { #[pin] body: InboundBody<MessagesStream> },
        Responses { #[pin] body: InboundBody<ResponsesStream> },
    }
}

/// The stack's body translated for an inbound API.
pub(crate) type InboundBody<T> = tollgate_inbound::ResponseBody<StackBody, T>;

impl std::fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "full",
            Kind::Forward { .. } => "forward",
            Kind::Messages { .. } => "messages",
            Kind::Responses { .. } => "responses",
        };
        f.debug_struct("GatewayBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl GatewayBody {
    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        GatewayBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            log: None,
            grace: None,
            deadline: None,
        }
    }

    pub(crate) fn forward(body: StackBody) -> Self {
        GatewayBody::of(Kind::Forward { body })
    }

    fn of(kind: Kind) -> Self {
        GatewayBody {
            kind,
            log: None,
            grace: None,
            deadline: None,
        }
    }

    /// The stack's answer translated into Anthropic's Messages shape.
    pub(crate) fn messages(body: InboundBody<MessagesStream>) -> Self {
        GatewayBody::of(Kind::Messages { body })
    }

    /// The stack's answer translated into OpenAI's Responses shape.
    pub(crate) fn responses(body: InboundBody<ResponsesStream>) -> Self {
        GatewayBody::of(Kind::Responses { body })
    }

    /// Ends the body — a stream — with the `shutdown` error event when
    /// `period` ends before it does: what it forwards is dropped then (its
    /// upstream attempts settle), the event is its last frame.
    pub(crate) fn cut_at_grace_end(mut self, period: &GracePeriod) -> Self {
        self.grace = Some(Box::new(period.watch()));
        self
    }

    /// Runs a forwarded body under the request's deadline: if it passes
    /// while the body waits for the upstream, the body ends — an SSE stream
    /// with an OpenAI-style error event, anything else with an error — and
    /// the upstream is let go; if it passes while the client does not take
    /// the body, the server cuts the response. The server's timer
    /// ([`write_deadline`]) is what polls the body at the deadline: a body
    /// served some other way ends only if polled after it.
    pub(crate) fn with_deadline(mut self, at: Instant, sse: bool) -> Self {
        if !matches!(self.kind, Kind::Full { .. }) {
            self.deadline = Some(ResponseDeadline {
                at,
                sse,
                registration: write_deadline::register(at),
            });
        }
        self
    }

    pub(crate) fn with_log(mut self, mut log: AccessLog) -> Self {
        // An empty body is never polled: it is complete as it stands.
        log.finished = self.kind.is_end();
        self.log = Some(log);
        self
    }
}

impl Kind {
    fn is_end(&self) -> bool {
        match self {
            Kind::Full { data } => data.is_none(),
            Kind::Forward { body } => body.is_end_stream(),
            Kind::Messages { body } => body.is_end_stream(),
            Kind::Responses { body } => body.is_end_stream(),
        }
    }

    /// What a stream of this kind ends with when the gateway cuts it: the
    /// error event in the route's own shape — for a translated stream, in
    /// the terms of the answer so far (the same message or response, its
    /// events not yet sent first), never a second start.
    fn error_event(self: Pin<&mut Self>, failure: &Failure) -> Bytes {
        match self.project() {
            KindProj::Messages { body } => body.cut(failure),
            KindProj::Responses { body } => body.cut(failure),
            KindProj::Full { .. } | KindProj::Forward { .. } => {
                let mut event = BytesMut::new();
                tollgate_core::sse::write_data(&mut event, &failure.to_openai_body());
                event.freeze()
            }
        }
    }
}

impl From<Bytes> for GatewayBody {
    fn from(data: Bytes) -> Self {
        GatewayBody::full(data)
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(watch) = this.grace.as_mut()
            && !this.kind.is_end()
            && watch.poll_over(cx)
        {
            *this.grace = None;
            // Dropping the stream settles its attempts; the event is all
            // that is left to send.
            let event = this
                .kind
                .as_mut()
                .error_event(&crate::grace::shutdown_failure());
            this.kind.set(Kind::Full { data: Some(event) });
            if let Some(log) = this.log.as_mut() {
                log.shutdown = true;
                log.finished = true;
            }
        }
        let (mut result, mut stream_failure) = match this.kind.as_mut().project() {
            KindProj::Full { data } => (Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))), None),
            KindProj::Forward { mut body } => {
                let result = body.as_mut().poll_frame(cx);
                // A stream the cascade ended with an error event.
                let failure = body
                    .get_ref()
                    .and_then(|cascade| cascade.failure())
                    .map(Failure::class);
                (result, failure)
            }
            KindProj::Messages { mut body } => {
                let result = body.as_mut().poll_frame(cx);
                (result, inbound_failure(&body))
            }
            KindProj::Responses { mut body } => {
                let result = body.as_mut().poll_frame(cx);
                (result, inbound_failure(&body))
            }
        };
        if result.is_pending()
            && this
                .deadline
                .as_ref()
                .is_some_and(|d| write_deadline::passed(d.at))
        {
            // Dropping the forwarded body lets the upstream go.
            let sse = this.deadline.as_ref().is_some_and(|d| d.sse);
            let failure = Failure::timeout(TimeoutKind::Total);
            let event = sse.then(|| this.kind.as_mut().error_event(&failure));
            this.kind.set(Kind::Full { data: None });
            stream_failure = Some(failure.class());
            result = Poll::Ready(Some(if let Some(event) = event {
                Ok(Frame::data(event))
            } else {
                Err(Box::new(failure))
            }));
        }
        let ended = match &result {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.kind.is_end(),
            Poll::Pending => false,
        };
        if ended && let Some(registration) = this.deadline.take().and_then(|d| d.registration) {
            registration.release();
        }
        if let Some(log) = this.log.as_mut() {
            if stream_failure.is_some() {
                log.class = stream_failure;
            }
            if log.first_data.is_none()
                && matches!(&result, Poll::Ready(Some(Ok(frame))) if frame.is_data())
            {
                log.first_data = Some(tokio::time::Instant::now());
            }
            match &result {
                Poll::Ready(Some(Err(error))) => {
                    log.finished = true;
                    log.class = Some(Failure::from_error(&**error).class());
                }
                // hyper stops polling once a body says it has ended, so the
                // last frame is as good as the end.
                Poll::Ready(_) if this.kind.is_end() => log.finished = true,
                Poll::Ready(None) => log.finished = true,
                _ => {}
            }
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Forward { body } => body.size_hint(),
            Kind::Messages { body } => body.size_hint(),
            Kind::Responses { body } => body.size_hint(),
        }
    }
}

/// The class of the failure the cascade ended a translated stream with.
fn inbound_failure<T>(body: &InboundBody<T>) -> Option<ErrorClass> {
    body.get_ref()
        .and_then(|stack| stack.get_ref())
        .and_then(|cascade| cascade.failure())
        .map(Failure::class)
}

/// The request's deadline over a forwarded body.
struct ResponseDeadline {
    at: Instant,
    /// An SSE stream ends with an error event; any other body with an error.
    sse: bool,
    /// The server's watch, whose timer polls the body at the deadline and
    /// cuts a response the client does not take.
    registration: Option<Registration>,
}
