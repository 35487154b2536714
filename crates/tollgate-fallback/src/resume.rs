//! Asking the next group to continue a broken stream.
//!
//! The body keeps this behind a trait object, so that its type names only
//! the inner body and its classifier, not the service, the health source and
//! the classifier it was made with. Continuations are the cold path: a boxed
//! future per continuation request costs nothing that matters.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use tollgate_core::classify::{Classified, ClassifyResponse, Verdict};
use tollgate_core::extensions::ModelGroup;
use tollgate_core::{BoxError, ChatRequest, ErrorClass, Failure, RequestBody};
use tower::ServiceExt;
use tower_service::Service;

use crate::service::Shared;
use crate::state::Cascade;

/// A continuation request on its way.
pub(crate) type Call<B> = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

/// What a stream body needs to continue after a break.
pub(crate) trait Resume<B, E>: Send {
    /// The current group's stream broke after content with `cause`.
    fn broke(&mut self, cause: &Failure);

    /// Sends the request, with `prefill` as the assistant's answer so far,
    /// to the next group that may continue after `cause`; `None` when none
    /// is left (or allowed).
    fn next_call(&mut self, prefill: &str, cause: &Failure) -> Option<Call<B>>;

    /// The verdict on a continuation's response head.
    fn classify(&self, response: &Response<B>) -> Verdict<E>;

    /// The class of a continuation's error.
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Failure;

    /// The current continuation failed before its first content.
    fn failed(&mut self, failure: &Failure);

    /// Continuation requests made so far.
    fn continuations(&self) -> u32;
}

/// [`Resume`] over the cascade's service.
pub(crate) struct Resumer<S, H, C> {
    pub(crate) service: S,
    pub(crate) request: Request<RequestBody>,
    pub(crate) cascade: Cascade,
    pub(crate) shared: Arc<Shared<H, C>>,
    /// The request with the last prefill, and that prefill's length: the
    /// text sent only grows, so the same length is the same prefill.
    pub(crate) prefilled: Option<(usize, Arc<ChatRequest>)>,
}

impl<S, H, C> Resumer<S, H, C> {
    /// The client's request, parsed: the view its body carries, else the
    /// body parsed now (and kept parsed for the next continuation).
    fn chat(&mut self) -> Option<Arc<ChatRequest>> {
        self.request.body_mut().parse_chat().cloned()
    }
}

impl<S, H, C> fmt::Debug for Resumer<S, H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resumer")
            .field("cascade", &self.cascade)
            .finish_non_exhaustive()
    }
}

impl<S, H, C, B> Resume<B, C::Eos> for Resumer<S, H, C>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
    H: crate::Health,
    C: ClassifyResponse,
{
    fn broke(&mut self, cause: &Failure) {
        self.cascade.broke(&self.shared.plan, cause);
    }

    fn next_call(&mut self, prefill: &str, cause: &Failure) -> Option<Call<B>> {
        let shared = &*self.shared;
        let from = self.cascade.current().clone();
        let allowed = self.cascade.allowed();
        let available = |group: &str| allowed(group) && shared.health.available(group);
        let Some(group) = self
            .cascade
            .next_continuation(&shared.plan, cause, &available)
        else {
            tracing::info!(
                group = %from,
                class = %cause.class(),
                "fallback: no model group can continue the broken stream"
            );
            return None;
        };
        let chat = self.chat()?;
        let body = if prefill.is_empty() {
            // Nothing to continue from (only whitespace or reasoning went
            // out): the request as it was.
            chat
        } else {
            match &self.prefilled {
                Some((len, prefilled)) if *len == prefill.len() => prefilled.clone(),
                _ => {
                    let prefilled = Arc::new(chat.with_assistant_prefill(prefill).ok()?);
                    self.prefilled = Some((prefill.len(), prefilled.clone()));
                    prefilled
                }
            }
        };
        tracing::info!(
            group = %from,
            class = %cause.class(),
            next = %group,
            continuation = self.cascade.continuations(),
            prefill_bytes = prefill.len(),
            "fallback: the stream broke after content; asking for a continuation"
        );
        let mut request = self.request.clone();
        request.body_mut().set_chat(body);
        request.extensions_mut().insert(ModelGroup(group));
        let mut service = self.service.clone();
        Some(Box::pin(async move {
            let ready = service.ready().await.map_err(Into::into)?;
            ready.call(request).await.map_err(Into::into)
        }))
    }

    fn classify(&self, response: &Response<B>) -> Verdict<C::Eos> {
        Classified::verdict(&self.shared.classifier, response)
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Failure {
        self.shared.classifier.classify_error(error)
    }

    fn failed(&mut self, failure: &Failure) {
        let group = self.cascade.current().clone();
        if failure.class() == ErrorClass::BadRequest {
            tracing::info!(%group, "fallback: the model group rejected the assistant prefill");
        } else {
            tracing::info!(
                %group,
                class = %failure.class(),
                "fallback: a continuation failed before its first content"
            );
        }
        self.cascade.continuation_failed(&self.shared.plan, failure);
    }

    fn continuations(&self) -> u32 {
        self.cascade.continuations()
    }
}
