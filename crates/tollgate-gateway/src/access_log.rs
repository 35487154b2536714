//! One structured log line per request.

use std::sync::Arc;

use tokio::time::Instant;
use tollgate_core::ErrorClass;

use tollgate_cost::{RequestTally, TallySnapshot};

use crate::metrics::{Metrics, RequestMetrics};

/// What the access log line says about a request; written once, when the
/// response body ends or is dropped (so a stream is logged when it finishes,
/// and a client that hangs up is logged as such).
///
/// It never holds prompt or completion text, nor any key.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub(crate) request_id: Arc<str>,
    pub(crate) route: &'static str,
    pub(crate) model_group: Option<Arc<str>>,
    pub(crate) deployment: Option<Arc<str>>,
    /// The virtual key's name (its alias or a hash prefix), never the key.
    pub(crate) key: Option<Arc<str>>,
    pub(crate) status: u16,
    pub(crate) class: Option<ErrorClass>,
    pub(crate) stream: bool,
    pub(crate) start: Instant,
    pub(crate) finished: bool,
    /// When the first byte of the body went to the client (streams: the
    /// first token, as the cascade holds a stream back until its first
    /// content).
    pub(crate) first_data: Option<Instant>,
    pub(crate) retries: u32,
    pub(crate) fallbacks: u32,
    /// The metrics to count the request in, with its `route` label.
    pub(crate) metrics: Option<(Metrics, &'static str)>,
    /// The tokens and cost of the request's upstream attempts.
    pub(crate) tally: Option<Arc<RequestTally>>,
}

impl AccessLog {
    pub(crate) fn new(request_id: Arc<str>, route: &'static str, start: Instant) -> Self {
        AccessLog {
            request_id,
            route,
            model_group: None,
            deployment: None,
            key: None,
            status: 0,
            class: None,
            stream: false,
            start,
            finished: false,
            first_data: None,
            retries: 0,
            fallbacks: 0,
            metrics: None,
            tally: None,
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let total = self.start.elapsed();
        let latency_ms = total.as_secs_f64() * 1000.0;
        let tally = self.tally.as_ref().map(|t| t.snapshot());
        if let Some((metrics, route)) = &self.metrics {
            metrics.request(&RequestMetrics {
                route,
                model_group: self.model_group.as_deref(),
                status: self.status,
                class: self.class.map(ErrorClass::as_str),
                stream: self.stream,
                total,
                upstream: tally.filter(|t| t.attempts > 0).map(|t| t.upstream_time),
                time_to_first_token: self
                    .stream
                    .then(|| self.first_data.map(|at| at - self.start))
                    .flatten(),
                retries: self.retries,
                fallbacks: self.fallbacks,
                client_gone: !self.finished,
            });
        }
        let outcome = if !self.finished {
            "client_gone"
        } else if self.class.is_some() {
            "error"
        } else {
            "ok"
        };
        tracing::info!(
            target: "tollgate::access",
            request_id = %self.request_id,
            route = self.route,
            model = self.model_group.as_deref().unwrap_or(""),
            deployment = self.deployment.as_deref().unwrap_or(""),
            key = self.key.as_deref().unwrap_or(""),
            status = self.status,
            class = self.class.map_or("", ErrorClass::as_str),
            stream = self.stream,
            latency_ms = (latency_ms * 1000.0).round() / 1000.0,
            outcome,
            prompt_tokens = tally.map_or(0, |t| t.usage.prompt_tokens),
            completion_tokens = tally.map_or(0, |t| t.usage.completion_tokens),
            tokens_estimated = tally.is_some_and(|t| t.usage.estimated),
            cost = %CostField(tally),
            "request"
        );
    }
}

/// The `cost` field of the line: exact decimal dollars, `unknown` when an
/// attempt's price is not known, empty when nothing was attempted.
struct CostField(Option<TallySnapshot>);

impl std::fmt::Display for CostField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(tally) if tally.cost_unknown => f.write_str("unknown"),
            Some(tally) if tally.attempts > 0 => write!(f, "{}", tally.billed),
            _ => Ok(()),
        }
    }
}
