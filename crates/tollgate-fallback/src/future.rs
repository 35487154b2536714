//! [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tollgate_core::classify::{Classified, ClassifyResponse, Verdict};
use tollgate_core::extensions::ModelGroup;
use tollgate_core::sse::SharedEvents;
use tollgate_core::{BoxError, Failure, Redactor, RequestBody};
use tower_service::Service;

use crate::answer::{answered, past_deadline, polled_after_completion, progress};
use crate::body::ResponseBody;
use crate::error::{GaveUp, StopReason};
use crate::health::Health;
use crate::resume::{Resume, Resumer};
use crate::service::Shared;
use crate::splice::{Break, Splicer};
use crate::state::{Cascade, Step};

/// The most of an error response's body read to classify it (a context
/// window or a content-policy 400 says so only in its body).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What another attempt needs: a service to send with and the request to
/// send.
pub(crate) struct Again<S> {
    pub(crate) service: S,
    pub(crate) request: Request<RequestBody>,
}

pin_project! {
    /// The response future of [`Fallback`](crate::Fallback).
    ///
    /// A state machine: calling a group; for a stream, reading it up to its
    /// first content; for an error response, reading the start of its body
    /// to classify it; waiting for the inner service to be ready for the
    /// next group. It resolves to the first response that is not a failure
    /// (a stream once it has content), or to the last outcome when the
    /// cascade stops: that response, or a [`GaveUp`] error.
    pub struct ResponseFuture<S, H, C, B>
    where
        S: Service<Request<RequestBody>>,
        C: ClassifyResponse,
    {
        #[pin]
        state: State<S::Future, B, C::Eos>,
        cascade: Option<Cascade>,
        again: Option<Again<S>>,
        shared: Arc<Shared<H, C>>,
        deadline: Option<Instant>,
        // The request's, for a stream's error event.
        redactor: Option<Redactor>,
        // Made the first time the future waits, and only with a deadline:
        // a call that answers at once never pays for a timer.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(crate) enum State<F, B, E> {
        Calling {
            #[pin]
            future: F,
        },
        // Boxed: streams and error bodies are read on their own path, and
        // the common future stays small.
        Committing {
            commit: Option<Box<Commit<B, E>>>,
        },
        Reading {
            read: Option<Box<ErrorRead<B>>>,
        },
        Ready,
        Failed {
            error: Option<BoxError>,
        },
    }
}

/// A stream read up to its first content.
pub(crate) struct Commit<B, E> {
    parts: http::response::Parts,
    body: Pin<Box<B>>,
    splicer: Splicer<E>,
}

/// An error response whose body is read to classify it.
pub(crate) struct ErrorRead<B> {
    parts: http::response::Parts,
    body: Pin<Box<B>>,
    buf: BytesMut,
    head: Failure,
}

impl<S, H, C, B> ResponseFuture<S, H, C, B>
where
    S: Service<Request<RequestBody>>,
    C: ClassifyResponse,
{
    pub(crate) fn new(
        state: State<S::Future, B, C::Eos>,
        cascade: Option<Cascade>,
        again: Option<Again<S>>,
        shared: Arc<Shared<H, C>>,
        deadline: Option<Instant>,
        redactor: Option<Redactor>,
    ) -> Self {
        ResponseFuture {
            state,
            cascade,
            again,
            shared,
            deadline,
            redactor,
            sleep: None,
        }
    }
}

pub(crate) fn calling<F, B, E>(future: F) -> State<F, B, E> {
    State::Calling { future }
}

pub(crate) fn failed<F, B, E>(error: BoxError) -> State<F, B, E> {
    State::Failed { error: Some(error) }
}

/// What happened to the current group, when it failed.
enum Failed<B> {
    /// An error.
    Error(BoxError, Failure),
    /// An error response, its body read as far as `prefix`.
    Response {
        parts: http::response::Parts,
        prefix: Bytes,
        error: Option<BoxError>,
        body: Pin<Box<B>>,
        failure: Failure,
    },
}

impl<S, H, C, B> Future for ResponseFuture<S, H, C, B>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    H: Health,
    C: ClassifyResponse,
{
    type Output = Result<Response<ResponseBody<B, C::Eos>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let failed = match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let Poll::Ready(outcome) = future.poll(cx) else {
                        return wait(this.sleep, *this.deadline, this.cascade.as_ref(), cx);
                    };
                    match outcome {
                        Err(error) => {
                            let error: BoxError = error.into();
                            let failure = this.shared.classifier.classify_error(&*error);
                            Failed::Error(error, failure)
                        }
                        Ok(mut response) => {
                            match Classified::once(&this.shared.classifier, &mut response) {
                                Verdict::Success => {
                                    let (fallbacks, group) = progress(this.cascade.as_ref());
                                    let response = response.map(ResponseBody::pass);
                                    return Poll::Ready(Ok(answered(response, fallbacks, group)));
                                }
                                Verdict::Watch(eos) => {
                                    let (mut parts, body) = response.into_parts();
                                    let track = this.again.is_some()
                                        && this.shared.plan.max_continuations > 0;
                                    let events = SharedEvents::of(&mut parts.extensions);
                                    let commit = Commit {
                                        parts,
                                        body: Box::pin(body),
                                        splicer: Splicer::new(eos, track, events),
                                    };
                                    this.state.set(State::Committing {
                                        commit: Some(Box::new(commit)),
                                    });
                                    continue;
                                }
                                // No other group to try: the response as it is.
                                Verdict::Failure(_) if this.again.is_none() => {
                                    let (fallbacks, group) = progress(this.cascade.as_ref());
                                    let response = response.map(ResponseBody::pass);
                                    return Poll::Ready(Ok(answered(response, fallbacks, group)));
                                }
                                Verdict::Failure(head) => {
                                    let (parts, body) = response.into_parts();
                                    let read = ErrorRead {
                                        parts,
                                        body: Box::pin(body),
                                        buf: BytesMut::new(),
                                        head,
                                    };
                                    this.state.set(State::Reading {
                                        read: Some(Box::new(read)),
                                    });
                                    continue;
                                }
                            }
                        }
                    }
                }
                StateProj::Committing { commit: slot } => {
                    let Some(commit) = slot.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let max = this.shared.plan.max_commit_bytes;
                    match poll_commit(commit, max, cx) {
                        Poll::Pending => {
                            return wait(this.sleep, *this.deadline, this.cascade.as_ref(), cx);
                        }
                        Poll::Ready(Err(failure)) => {
                            *slot = None;
                            Failed::Error(BoxError::from(failure.clone()), failure)
                        }
                        Poll::Ready(Ok(())) => {
                            let Some(commit) = slot.take() else {
                                return Poll::Ready(Err(polled_after_completion()));
                            };
                            let response = commit_stream(
                                *commit,
                                this.cascade.take(),
                                this.again.take(),
                                this.shared,
                                *this.deadline,
                                this.redactor.take(),
                            );
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Reading { read: slot } => {
                    let Some(read) = slot.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Poll::Ready((complete, error)) = poll_error_body(read, cx) else {
                        return wait(this.sleep, *this.deadline, this.cascade.as_ref(), cx);
                    };
                    let Some(read) = slot.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let ErrorRead {
                        parts,
                        body,
                        buf,
                        head,
                    } = *read;
                    let prefix = buf.freeze();
                    // A body read whole refines the verdict of the head (a
                    // 400 may be a context window or a content policy).
                    let failure = if complete {
                        this.shared.classifier.classify_error_body(
                            parts.status,
                            &parts.headers,
                            &prefix,
                        )
                    } else {
                        head
                    };
                    Failed::Response {
                        parts,
                        prefix,
                        error,
                        body,
                        failure,
                    }
                }
                StateProj::Ready => {
                    let Some(again) = this.again.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    match again.service.poll_ready(cx) {
                        Poll::Pending => {
                            return wait(this.sleep, *this.deadline, this.cascade.as_ref(), cx);
                        }
                        Poll::Ready(Err(error)) => {
                            let (fallbacks, _) = progress(this.cascade.as_ref());
                            let reason = StopReason::ServiceFailed;
                            return Poll::Ready(Err(
                                GaveUp::new(fallbacks, reason, error.into()).into()
                            ));
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let mut request = again.request.clone();
                    if let Some(cascade) = this.cascade.as_ref() {
                        request
                            .extensions_mut()
                            .insert(ModelGroup(cascade.current().clone()));
                    }
                    let future = again.service.call(request);
                    this.state.set(State::Calling { future });
                    continue;
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(polled_after_completion)));
                }
            };

            // The current group failed: on to the next, or the last outcome.
            let failure = match &failed {
                Failed::Error(_, failure) | Failed::Response { failure, .. } => failure,
            };
            let decision = decide(
                this.cascade.as_mut(),
                this.again.is_some(),
                this.shared,
                *this.deadline,
                failure,
            );
            let Err(reason) = decision else {
                // The failed outcome, an error response's body included, is
                // dropped.
                drop(failed);
                this.state.set(State::Ready);
                continue;
            };
            let (fallbacks, group) = progress(this.cascade.as_ref());
            return Poll::Ready(match failed {
                Failed::Error(error, _) => Err(GaveUp::new(fallbacks, reason, error).into()),
                Failed::Response {
                    parts,
                    prefix,
                    error,
                    body,
                    ..
                } => {
                    let body = ResponseBody::replay(prefix, error, body);
                    let response = Response::from_parts(parts, body);
                    Ok(answered(response, fallbacks, group))
                }
            });
        }
    }
}

/// Reads a stream up to its first content: `Ok` to commit, `Err` when it
/// failed before.
fn poll_commit<B, E>(
    commit: &mut Commit<B, E>,
    max_held: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Failure>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    E: tollgate_core::classify::ClassifyEos,
{
    loop {
        match ready!(commit.body.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    commit.splicer.push(data);
                }
            }
            Some(Err(error)) => {
                let error: BoxError = error.into();
                commit.splicer.error(&*error);
            }
            None => commit.splicer.end(),
        }
        // Content first: a break after it in the same chunk is the body's
        // to handle, by continuation.
        if commit.splicer.committed() {
            return Poll::Ready(Ok(()));
        }
        match commit.splicer.take_break() {
            Some(Break::BeforeContent(failure) | Break::AfterContent(failure)) => {
                return Poll::Ready(Err(failure));
            }
            None if commit.splicer.held() > max_held => {
                // Bounded memory over a perfect failover: from here a
                // failure is a break.
                commit.splicer.force_commit();
                return Poll::Ready(Ok(()));
            }
            None => {}
        }
    }
}

/// Reads an error response's body, up to [`MAX_ERROR_BODY`]: whether it
/// was read whole, and the error that stopped it, if one did.
fn poll_error_body<B>(
    read: &mut ErrorRead<B>,
    cx: &mut Context<'_>,
) -> Poll<(bool, Option<BoxError>)>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    loop {
        if read.body.is_end_stream() {
            return Poll::Ready((true, None));
        }
        match ready!(read.body.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.buf.extend_from_slice(&data);
                    if read.buf.len() > MAX_ERROR_BODY {
                        return Poll::Ready((false, None));
                    }
                }
            }
            Some(Err(error)) => return Poll::Ready((false, Some(error.into()))),
            None => return Poll::Ready((true, None)),
        }
    }
}

/// The committed stream as the response handed up.
fn commit_stream<S, H, C, B>(
    commit: Commit<B, C::Eos>,
    cascade: Option<Cascade>,
    again: Option<Again<S>>,
    shared: &Arc<Shared<H, C>>,
    deadline: Option<Instant>,
    redactor: Option<Redactor>,
) -> Response<ResponseBody<B, C::Eos>>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    H: Health,
    C: ClassifyResponse,
{
    let Commit {
        parts,
        body,
        splicer,
    } = commit;
    let (fallbacks, group) = progress(cascade.as_ref());
    let resume = match (again, cascade) {
        (Some(again), Some(mut cascade)) if splicer.continuable() => {
            let current = cascade.current().clone();
            cascade.answered(&current);
            let resumer = Resumer {
                service: again.service,
                request: again.request,
                cascade,
                shared: shared.clone(),
                prefilled: None,
            };
            Some(Box::new(resumer) as Box<dyn Resume<B, C::Eos>>)
        }
        _ => None,
    };
    let body = ResponseBody::stream(body, splicer, resume, deadline, redactor);
    answered(Response::from_parts(parts, body), fallbacks, group)
}

/// The decision after the current group failed: `Ok` to try the next group
/// (the cascade has moved to it), or why to stop.
fn decide<H: Health, C>(
    cascade: Option<&mut Cascade>,
    can_resend: bool,
    shared: &Shared<H, C>,
    deadline: Option<Instant>,
    failure: &Failure,
) -> Result<(), StopReason> {
    let Some(cascade) = cascade else {
        return Err(StopReason::Exhausted);
    };
    let group = cascade.current().clone();
    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
        tracing::info!(%group, class = %failure.class(), "fallback: the deadline has passed; giving up");
        return Err(StopReason::Deadline);
    }
    let allowed = cascade.allowed();
    let available = |group: &str| allowed(group) && shared.health.available(group);
    match cascade.failed(&shared.plan, failure, &available) {
        Step::Try(next) if can_resend => {
            tracing::info!(
                %group,
                class = %failure.class(),
                %next,
                fallbacks = cascade.fallbacks(),
                "fallback: a model group failed; trying the next"
            );
            Ok(())
        }
        Step::Try(_) => Err(StopReason::Exhausted),
        Step::Stop(reason) => {
            tracing::info!(
                %group,
                class = %failure.class(),
                fallbacks = cascade.fallbacks(),
                %reason,
                "fallback: a model group failed; giving up"
            );
            Err(reason)
        }
    }
}

/// Pending, unless the deadline has passed: then the request fails with a
/// total timeout.
fn wait<T>(
    sleep: &mut Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
    cascade: Option<&Cascade>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, BoxError>> {
    let Some(deadline) = deadline else {
        return Poll::Pending;
    };
    let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    ready!(sleep.as_mut().poll(cx));
    let (fallbacks, group) = progress(cascade);
    tracing::info!(
        group = group.as_deref().unwrap_or(""),
        "fallback: the deadline has passed while waiting; giving up"
    );
    let failure = past_deadline();
    Poll::Ready(Err(GaveUp::new(
        fallbacks,
        StopReason::Deadline,
        failure.into(),
    )
    .into()))
}

impl<S, H, C, B> fmt::Debug for ResponseFuture<S, H, C, B>
where
    S: Service<Request<RequestBody>>,
    C: ClassifyResponse,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Committing { .. } => "committing",
            State::Reading { .. } => "reading_error",
            State::Ready => "ready",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("cascade", &self.cascade)
            .finish_non_exhaustive()
    }
}
