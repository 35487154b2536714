//! The rate limits' side of the gateway: the store they count in, the
//! limits of a virtual key, and the bridge that tells them what a request
//! really used.
//!
//! The rate-limit layer (outermost) reserves tokens and checks the budget
//! when a request arrives, and settles both when its response ends, from an
//! `Arc<UsageReport>` request extension. The cost layer (per upstream
//! attempt, far below) adds each attempt's tokens and cost to the request's
//! `Arc<RequestTally>`. [`ReportUsage`], between the two, copies the tally
//! into the report when the response ends — after every attempt has been
//! recorded, before the limits read it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_balance::{Admission, AdmitFuture, DeploymentLimits, Quota};
use tollgate_core::BoxError;
use tollgate_cost::RequestTally;
use tollgate_limits::{
    Budget, DEFAULT_OP_TIMEOUT, DeploymentQuota, DeploymentRateLimits, KeyLimits, MemoryStore,
    RedisStore, Store, UsageReport, restore_spend,
};
use tower_service::Service;

use crate::config::Config;
use crate::keys::{Keys, VirtualKey};
use crate::ledger::Ledger;
use crate::shared::{PREFIX, SharedState};

/// The store the limits count in: Redis when the config names one (every
/// replica counts together), waiting at most `timeout` for it per call, else
/// this process's memory.
pub(crate) fn store(shared: Option<&SharedState>, timeout: Option<Duration>) -> Arc<dyn Store> {
    match shared {
        Some(shared) => match RedisStore::new(shared.client.clone()) {
            Ok(store) => Arc::new(
                store
                    .prefix(PREFIX)
                    .op_timeout(timeout.unwrap_or(DEFAULT_OP_TIMEOUT))
                    .on_fallback(shared.on_fallback.clone()),
            ),
            Err(error) => {
                tracing::error!(%error, "rate limits cannot use Redis; counting in memory");
                Arc::new(MemoryStore::new())
            }
        },
        None => Arc::new(MemoryStore::new()),
    }
}

/// The deployments' `rpm` and `tpm`, counted for the balancer in the
/// limits' store (shared by the replicas when it is Redis).
#[derive(Debug, Clone)]
pub(crate) struct BalancerLimits(pub(crate) DeploymentRateLimits);

fn deployment_quota(quota: Quota) -> DeploymentQuota {
    DeploymentQuota {
        rpm: quota.rpm,
        tpm: quota.tpm,
    }
}

impl DeploymentLimits for BalancerLimits {
    fn admit<'a>(&'a self, deployment: &'a str, quota: Quota, tokens: u64) -> AdmitFuture<'a> {
        Box::pin(async move {
            let answer = self
                .0
                .admit(deployment, deployment_quota(quota), tokens)
                .await;
            Admission {
                admitted: answer.admitted,
                refused_by: answer.refused_by.map(|limit| limit.as_str()),
                retry_after: answer.retry_after,
                requests_left: answer.headroom.requests,
                tokens_left: answer.headroom.tokens,
            }
        })
    }

    fn record_tokens(&self, deployment: &str, quota: Quota, tokens: u64) {
        self.0
            .record_tokens(deployment, deployment_quota(quota), tokens);
    }
}

/// A virtual key's limits, as the rate-limit layer reads them.
pub(crate) fn key_limits(key: &VirtualKey) -> KeyLimits {
    let mut limits = KeyLimits::new(key.name());
    if let Some(rpm) = key.rpm_limit {
        limits = limits.rpm(rpm);
    }
    if let Some(tpm) = key.tpm_limit {
        limits = limits.tpm(tpm);
    }
    if let Some(parallel) = key.max_parallel_requests {
        limits = limits.max_parallel(parallel);
    }
    if let Some(picos) = key.max_budget_picos {
        limits = limits.max_budget(match key.budget_duration {
            Some(window) => Budget::per(picos, window),
            None => Budget::lifetime(picos),
        });
    }
    limits
}

/// Brings back what each key of `keys` with a budget has spent in its
/// current window (at `now`, unix milliseconds), from `ledger` into
/// `store`.
pub(crate) async fn restore_budgets(keys: &Keys, ledger: &Ledger, store: &dyn Store, now: i64) {
    for key in keys.with_budgets() {
        let Some(budget) = key_limits(&key).max_budget else {
            continue;
        };
        let name = key.name();
        let since = budget.window_at(now).start_unix_ms();
        match ledger.billed_since(&name, since).await {
            Ok(0) => {}
            Ok(spent) => {
                let spent = u64::try_from(spent).unwrap_or(u64::MAX);
                restore_spend(store, &name, &budget, now, spent).await;
                tracing::info!(key = %name, spent_picos = spent, "budget spend restored from the ledger");
            }
            Err(error) => {
                tracing::error!(key = %name, %error, "budget spend could not be read from the ledger");
            }
        }
    }
}

/// Says at startup how the deployments' `rpm` and `tpm` are enforced, when
/// any has one.
pub(crate) fn log_deployment_limits(config: &Config, shared: bool) {
    let limited: Vec<&str> = config
        .model_list
        .iter()
        .filter(|d| d.rpm.is_some() || d.tpm.is_some())
        .map(|d| d.id.as_str())
        .collect();
    if limited.is_empty() {
        return;
    }
    if shared {
        tracing::info!(
            deployments = ?limited,
            "deployment rpm/tpm limits enforced, counted in Redis: one limit for every replica"
        );
    } else {
        tracing::info!(
            deployments = ?limited,
            "deployment rpm/tpm limits enforced, counted in this process (no redis_host: \
             each replica counts on its own)"
        );
    }
}

/// Copies a request's cost tally into its usage report when the response
/// ends (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct ReportUsage<S> {
    inner: S,
}

impl<S> ReportUsage<S> {
    pub(crate) fn new(inner: S) -> Self {
        ReportUsage { inner }
    }
}

/// The tally and the report of one request, when it has both.
#[derive(Debug)]
struct Bridge {
    tally: Arc<RequestTally>,
    report: Arc<UsageReport>,
}

impl Bridge {
    fn of<B>(request: &Request<B>) -> Option<Bridge> {
        let extensions = request.extensions();
        Some(Bridge {
            tally: extensions.get::<Arc<RequestTally>>()?.clone(),
            report: extensions.get::<Arc<UsageReport>>()?.clone(),
        })
    }

    /// Reports what the attempts used; a request with no attempt reports
    /// nothing (its reservation stands), an unknown price adds no spend.
    fn settle(self) {
        let tally = self.tally.snapshot();
        if tally.attempts == 0 {
            return;
        }
        self.report.add_tokens(tally.usage.total_tokens());
        if !tally.cost_unknown {
            self.report.add_picos(tally.billed.picos());
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ReportUsage<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ReportBody<ResB>>;
    type Error = BoxError;
    type Future = ReportFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let bridge = OnEnd {
            bridge: Bridge::of(&request),
        };
        ReportFuture {
            inner: self.inner.call(request),
            bridge,
        }
    }
}

pin_project! {
    /// The response future of [`ReportUsage`]. Dropped before the answer
    /// (the client went away), it still settles: the inner future — its
    /// attempts' cost records — is dropped first, then the guard.
    pub(crate) struct ReportFuture<F> {
        #[pin]
        inner: F,
        bridge: OnEnd,
    }
}

impl<F, ResB, E> Future for ReportFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ReportBody<ResB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(response) => {
                let bridge = OnEnd {
                    bridge: this.bridge.bridge.take(),
                };
                Poll::Ready(Ok(response.map(|inner| ReportBody { inner, bridge })))
            }
            Err(error) => {
                // Every attempt has ended: the failure is the last word.
                this.bridge.settle();
                Poll::Ready(Err(error.into()))
            }
        }
    }
}

/// Settles the bridge once: at the end of the body or when it is dropped.
#[derive(Debug)]
struct OnEnd {
    bridge: Option<Bridge>,
}

impl OnEnd {
    fn settle(&mut self) {
        if let Some(bridge) = self.bridge.take() {
            bridge.settle();
        }
    }
}

impl Drop for OnEnd {
    fn drop(&mut self) {
        self.settle();
    }
}

pin_project! {
    /// The response body of [`ReportUsage`]: the inner body, unchanged.
    #[derive(Debug)]
    pub(crate) struct ReportBody<B> {
        // Declared first: dropped (its attempts recorded) before `bridge`.
        #[pin]
        inner: B,
        bridge: OnEnd,
    }
}

impl<B> ReportBody<B> {
    /// The inner body.
    pub(crate) fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> Body for ReportBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        // The last frame may be the end: the limits settle on it too.
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.bridge.settle();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
