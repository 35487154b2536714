//! Hedged streams (`tollgate.hedge_streams`, off by default; LiteLLM has no
//! such setting): a stream of a hedged model group whose first content has
//! not come by its deployments' learned first-token p95 asks the group's
//! first fallback in parallel, keeps whichever stream reaches its first
//! content first, and cancels the other.
//!
//! The hedge sits above the fallback cascade, which hands a stream up only
//! once its first content has come: "streams first" is "its cascade
//! answers first". Both requests go through the whole cascade below — the
//! cost layer records each attempt, the cancelled one too, on the ledger —
//! and share the request's deadline. A group without learned timings yet
//! (fewer than [`MIN_SAMPLES`](crate::learned::MIN_SAMPLES) streams) is not
//! hedged: there is no p95 to wait for.
//!
//! When one side fails, the other is waited for; when both fail, the
//! client gets the primary's error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tollgate_core::extensions::{AllowedGroups, AttemptedFallbacks, ModelGroup, RequestFallbacks};
use tollgate_core::{BoxError, RequestBody};
use tollgate_fallback::ATTEMPTED_FALLBACKS;
use tower::ServiceExt;
use tower_service::Service;

use crate::FastMap;
use crate::deployment::Groups;
use crate::learned::Phase;
use crate::metrics::Metrics;

/// Hedged groups and the group each one hedges with.
pub(crate) type HedgePlans = Arc<FastMap<Arc<str>, Arc<str>>>;

/// Hedges the streams of the groups in its plans (see the module).
#[derive(Clone)]
pub(crate) struct Hedge<S> {
    inner: S,
    plans: HedgePlans,
    groups: Groups,
    metrics: Metrics,
}

impl<S> Hedge<S> {
    pub(crate) fn new(inner: S, plans: HedgePlans, groups: Groups, metrics: Metrics) -> Self {
        Hedge {
            inner,
            plans,
            groups,
            metrics,
        }
    }

    /// The group to hedge `request` with and how long to wait first, if it
    /// is a stream of a hedged group that has learned its first tokens.
    fn plan(&self, request: &Request<RequestBody>) -> Option<(Arc<str>, Arc<str>, Duration)> {
        if !request.body().chat()?.stream() {
            return None;
        }
        let extensions = request.extensions();
        let group = &extensions.get::<ModelGroup>()?.0;
        let to = hedge_target(self.plans.get(group)?, extensions.get())?;
        if let Some(AllowedGroups(allowed)) = extensions.get::<AllowedGroups>()
            && !allowed.contains(to)
        {
            return None;
        }
        // The slowest of the group's deployments: whichever is picked, its
        // stream is not hedged before most of its streams have started.
        let wait = self
            .groups
            .get(group)?
            .members()
            .filter_map(|(_, d)| d.timings.sketch(Phase::FirstToken).quantile(0.95))
            .max()?;
        Some((group.clone(), to.clone(), wait))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<RequestBody>> for Hedge<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<B>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        // The service made ready answers this request, in place: its future
        // does not hold it, so no clone is made for the next request. A
        // hedge gets a clone, made ready by `oneshot`.
        let Some((group, to, wait)) = self.plan(&request) else {
            return Box::pin(self.inner.call(request));
        };
        let hedge_request = with_group(&request, to);
        let hedge_service = self.inner.clone();
        let primary = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            tokio::pin!(primary);
            tokio::select! {
                biased;
                answered = &mut primary => return answered,
                () = tokio::time::sleep(wait) => {}
            }
            metrics.hedge(&group, "started");
            let hedge = hedge_service.oneshot(hedge_request);
            tokio::pin!(hedge);
            // Whichever answers first wins; the loser is dropped, which
            // cancels its upstream attempt.
            tokio::select! {
                biased;
                answered = &mut primary => match answered {
                    Ok(response) => Ok(response),
                    Err(error) => hedge
                        .await
                        .map(|response| hedge_won(&metrics, &group, response))
                        .map_err(|_| error),
                },
                answered = &mut hedge => match answered {
                    Ok(response) => Ok(hedge_won(&metrics, &group, response)),
                    Err(_) => primary.await,
                },
            }
        })
    }
}

/// Counts the win; the answer says one fallback was made to get it (its
/// extension and its header, as the cascade writes them).
fn hedge_won<B>(metrics: &Metrics, group: &str, mut response: Response<B>) -> Response<B> {
    metrics.hedge(group, "won");
    let made = response
        .extensions()
        .get::<AttemptedFallbacks>()
        .map_or(0, |f| f.0)
        .saturating_add(1);
    response.extensions_mut().insert(AttemptedFallbacks(made));
    response
        .headers_mut()
        .insert(ATTEMPTED_FALLBACKS, HeaderValue::from(made));
    response
}

/// A copy of `request` (its body is shared bytes) for model group `group`.
fn with_group(request: &Request<RequestBody>, group: Arc<str>) -> Request<RequestBody> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy.extensions_mut().insert(ModelGroup(group));
    copy
}

/// The group a hedged stream races: the request's own first fallback when
/// it names its `fallbacks` (none when that list is empty: the request
/// turned fallbacks off), else the configured one.
fn hedge_target<'a>(
    configured: &'a Arc<str>,
    requested: Option<&'a RequestFallbacks>,
) -> Option<&'a Arc<str>> {
    match requested.and_then(|lists| lists.fallbacks.as_ref()) {
        Some(list) => list.first(),
        None => Some(configured),
    }
}

/// The hedged groups of `config` and the group each hedges with: its first
/// fallback, else the first default fallback; a hedged group with neither
/// is an error.
pub(crate) fn plans(config: &crate::config::Config) -> Result<HedgePlans, String> {
    config
        .tollgate
        .hedge_streams
        .iter()
        .map(|group| {
            let to = config
                .fallbacks()
                .iter()
                .find(|(from, _)| from == group)
                .and_then(|(_, to)| to.first())
                .or_else(|| config.default_fallbacks().iter().find(|to| *to != group))
                .ok_or_else(|| {
                    format!("model group {group:?} has no fallback to hedge its streams with")
                })?;
            Ok((Arc::from(group.as_str()), Arc::from(to.as_str())))
        })
        .collect::<Result<FastMap<_, _>, String>>()
        .map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<crate::config::Config, String> {
        crate::config::load_str(yaml, &|_| None)
            .map(|loaded| loaded.config)
            .map_err(|error| error.to_string())
    }

    const GROUPS: &str = "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n  - model_name: b\n    litellm_params:\n      model: mock/b\n";

    #[test]
    fn the_requests_own_fallbacks_pick_the_hedge() {
        let configured: Arc<str> = Arc::from("b");
        assert_eq!(hedge_target(&configured, None), Some(&configured));
        let lists = |names: &[&str]| RequestFallbacks {
            fallbacks: Some(names.iter().map(|n| Arc::from(*n)).collect()),
            ..RequestFallbacks::default()
        };
        let named = lists(&["c", "b"]);
        assert_eq!(
            hedge_target(&configured, Some(&named)).map(|g| &**g),
            Some("c")
        );
        assert_eq!(hedge_target(&configured, Some(&lists(&[]))), None);
        // Other kinds of list leave the hedge alone.
        let other = RequestFallbacks {
            context_window: Some(Arc::from([Arc::from("long")])),
            ..RequestFallbacks::default()
        };
        assert_eq!(hedge_target(&configured, Some(&other)), Some(&configured));
    }

    #[test]
    fn a_hedged_group_hedges_with_its_first_fallback_and_needs_one() {
        let config = load(&format!(
            "{GROUPS}router_settings:\n  fallbacks:\n    - a: [\"b\"]\ntollgate:\n  hedge_streams: [a]\n"
        ))
        .unwrap();
        let hedged = plans(&config).unwrap();
        assert_eq!(hedged.get("a").map(|to| &**to), Some("b"));
        assert_eq!(hedged.len(), 1);

        let defaults = load(&format!(
            "{GROUPS}router_settings:\n  default_fallbacks: [\"a\", \"b\"]\ntollgate:\n  hedge_streams: [a]\n"
        ))
        .unwrap();
        assert_eq!(
            plans(&defaults).unwrap().get("a").map(|to| &**to),
            Some("b")
        );

        let alone = load(&format!("{GROUPS}tollgate:\n  hedge_streams: [b]\n")).unwrap();
        let error = plans(&alone).unwrap_err();
        assert!(error.contains("\"b\" has no fallback"), "{error}");

        let unknown = load(&format!("{GROUPS}tollgate:\n  hedge_streams: [c]\n")).unwrap_err();
        assert!(unknown.contains("tollgate.hedge_streams[0]"), "{unknown}");
        assert!(plans(&load(GROUPS).unwrap()).unwrap().is_empty());
    }
}
