//! The gateway's Prometheus metrics.
//!
//! Each [`Metrics`] owns its own [`PrometheusRecorder`]; nothing is installed as
//! the global recorder, so several gateways in one process (the tests run many)
//! never share a series. The handles of a label set are registered on first use
//! and cached: after that, recording is a read-locked map lookup and an atomic
//! add, with no allocation.
//!
//! Label values come from the config (model group and deployment ids) or from
//! fixed sets (routes, statuses, error classes, outcomes, token kinds, limits):
//! never a request id, a key or a model name a client sent. Every family is
//! described in the README's "Metrics" table; [`FAMILIES`] lists their names.
//!
//! Histograms are Prometheus histograms over [`LATENCY_BUCKETS`] (seconds).
//! `tollgate_cost_usd_total` counts float dollars, which the `metrics` crate's
//! integer counters cannot hold: it is kept here as `f64` bits in an atomic and
//! appended to the exposition by [`Metrics::render`].

mod breaker_state;
mod describe;
mod names;
mod series;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub(crate) use breaker_state::BreakerStateLabel;
use describe::describe;
pub(crate) use names::*;
use series::{DeploymentSeries, GroupSeries, Map, RequestKey, counter, with_entry};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Writes gauges in the Prometheus text format (see
/// [`Metrics::watch_gauges`]).
pub(crate) type ExtraGauges = Box<dyn Fn(&mut String) + Send + Sync>;

/// What one client request did, recorded once when its response ends.
#[derive(Debug, Clone)]
pub(crate) struct RequestMetrics<'a> {
    /// The route: `chat`, `models`, ...
    pub(crate) route: &'static str,
    /// The configured model group, or `None` (label `""`). Never a name the
    /// client sent that is not in the config.
    pub(crate) model_group: Option<&'a str>,
    /// The status the client got.
    pub(crate) status: u16,
    /// `ErrorClass::as_str()` of the failure, `None` on success.
    pub(crate) class: Option<&'static str>,
    /// Whether the client asked for a stream.
    pub(crate) stream: bool,
    /// The whole request.
    pub(crate) total: Duration,
    /// Time spent waiting on upstreams (sum of attempts), if any was called.
    pub(crate) upstream: Option<Duration>,
    /// Streams: time to the first token.
    pub(crate) time_to_first_token: Option<Duration>,
    /// Retries made.
    pub(crate) retries: u32,
    /// Fallback groups tried.
    pub(crate) fallbacks: u32,
    /// Whether the client hung up before the response ended.
    pub(crate) client_gone: bool,
}

/// What one upstream attempt did.
#[derive(Debug, Clone)]
pub(crate) struct AttemptMetrics<'a> {
    /// The model group the attempt served.
    pub(crate) model_group: &'a str,
    /// The deployment id called.
    pub(crate) deployment: &'a str,
    /// `success`, `failure` or `cancelled`.
    pub(crate) outcome: &'static str,
    /// `ErrorClass::as_str()` of a failure.
    pub(crate) class: Option<&'static str>,
    /// This attempt, call to body end. No family reads it yet: requests
    /// record the sum of their attempts in `tollgate_upstream_duration_seconds`.
    #[allow(
        dead_code,
        reason = "kept in the API for a per-attempt duration family"
    )]
    pub(crate) upstream: Duration,
    /// Time to the upstream's first byte, if one came.
    pub(crate) first_byte: Option<Duration>,
    /// Prompt tokens.
    pub(crate) prompt_tokens: u64,
    /// Completion tokens.
    pub(crate) completion_tokens: u64,
    /// Prompt tokens served from a cache.
    pub(crate) cached_prompt_tokens: u64,
    /// Reasoning tokens.
    pub(crate) reasoning_tokens: u64,
    /// The attempt's cost in dollars; `None` when the price is unknown.
    pub(crate) cost_usd: Option<f64>,
    /// `provider`, `price_table`, `free`, `unknown` or `not_billed`.
    pub(crate) cost_source: &'static str,
}

/// One gateway's metrics: cheap to clone, shared by every request.
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// By model group ("" for requests without one).
    groups: Map<Arc<str>, GroupSeries>,
    /// By deployment id.
    deployments: Map<Arc<str>, DeploymentSeries>,
    rate_limits: Map<&'static str, Counter>,
    ledger_records: Counter,
    ledger_dropped: Counter,
    shared_state_fallbacks: Counter,
    /// By [`CLIENT_TIMEOUT_PHASES`], in order.
    client_timeouts: [Counter; 3],
    /// By [`ShedReason`] (in `ShedReason::ALL` order).
    connections_shed: [Counter; 4],
    connections_open: ::metrics::Gauge,
    /// Gauges kept elsewhere (the deployments' learned stream deadlines),
    /// appended to the exposition by their owner; a reload swaps them.
    extra_gauges: arc_swap::ArcSwapOption<ExtraGauges>,
    /// By [`RELOAD_RESULTS`], in order.
    config_reloads: [Counter; 2],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new, empty set of metrics with its own recorder. The families without
    /// config-dependent labels are registered at zero at once.
    pub(crate) fn new() -> Metrics {
        // Only empty buckets are refused, and ours are a non-empty constant.
        let recorder = HISTOGRAMS
            .into_iter()
            .try_fold(PrometheusBuilder::new(), |builder, name| {
                builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), &LATENCY_BUCKETS)
            })
            .expect("LATENCY_BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);

        let rate_limits = Map::default();
        for limit in LIMITS {
            with_entry(
                &rate_limits,
                &limit,
                || (limit, rate_limit(&recorder, limit)),
                |_| (),
            );
        }
        let ledger_records = counter(&recorder, LEDGER_RECORDS, Vec::new());
        let ledger_dropped = counter(&recorder, LEDGER_DROPPED, Vec::new());
        let shared_state_fallbacks = counter(&recorder, SHARED_STATE_FALLBACKS, Vec::new());
        let client_timeouts = CLIENT_TIMEOUT_PHASES.map(|phase| {
            counter(
                &recorder,
                CLIENT_TIMEOUTS,
                vec![Label::from_static_parts("phase", phase)],
            )
        });
        let connections_shed = ShedReason::ALL.map(|reason| {
            counter(
                &recorder,
                CONNECTIONS_SHED,
                vec![Label::from_static_parts("reason", reason.as_str())],
            )
        });
        let connections_open = recorder.register_gauge(
            &::metrics::Key::from_static_name(CONNECTIONS_OPEN),
            &METADATA,
        );
        connections_open.set(0.0);
        let config_reloads = RELOAD_RESULTS.map(|result| {
            counter(
                &recorder,
                CONFIG_RELOADS,
                vec![Label::from_static_parts("result", result)],
            )
        });
        Metrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                groups: Map::default(),
                deployments: Map::default(),
                rate_limits,
                ledger_records,
                ledger_dropped,
                shared_state_fallbacks,
                client_timeouts,
                connections_shed,
                connections_open,
                extra_gauges: arc_swap::ArcSwapOption::empty(),
                config_reloads,
            }),
        }
    }

    /// Registers zero-valued series for the configured groups and deployments:
    /// a scrape right after start shows every family. Calling it again (a
    /// reloaded config) only adds what is new.
    pub(crate) fn register_topology(&self, groups: &[(Arc<str>, Vec<Arc<str>>)]) {
        for (group, deployments) in groups {
            self.with_group(group, |series| {
                let recorder = &self.inner.recorder;
                for stream in [false, true] {
                    let key = RequestKey {
                        route: ROUTE_CHAT,
                        status: 200,
                        class: NO_CLASS,
                        stream,
                    };
                    series.with_request(recorder, key, |_| ());
                    series.with_duration(recorder, ROUTE_CHAT, stream, |_| ());
                }
                for deployment in deployments {
                    series.with_deployment(recorder, deployment, |pair| {
                        pair.with_attempt(recorder, "success", NO_CLASS, |_| ());
                    });
                }
            });
            for deployment in deployments {
                self.with_deployment(deployment, |_| ());
            }
            for outcome in HEDGE_OUTCOMES {
                let _ = self.hedge_counter(group, outcome);
            }
        }
    }

    /// Appends what `render` writes to every exposition, in place of what
    /// was appended so far: gauges whose values live with their owner (the
    /// running configuration's learned stream deadlines).
    pub(crate) fn watch_gauges(&self, render: ExtraGauges) {
        self.inner.extra_gauges.store(Some(Arc::new(render)));
    }

    /// Counts a hedged stream of `group`: `started` or `won` (the hedge
    /// answered first).
    pub(crate) fn hedge(&self, group: &str, outcome: &'static str) {
        self.hedge_counter(group, outcome).increment(1);
    }

    fn hedge_counter(&self, group: &str, outcome: &'static str) -> Counter {
        let labels = vec![
            Label::new("model_group", group.to_owned()),
            Label::from_static_parts("outcome", outcome),
        ];
        counter(&self.inner.recorder, HEDGES, labels)
    }

    /// The Prometheus text exposition of every series (runs upkeep first).
    pub(crate) fn render(&self) -> String {
        self.run_upkeep();
        let mut text = self.inner.handle.render();
        self.render_costs(&mut text);
        if let Some(render) = self.inner.extra_gauges.load_full() {
            render(&mut text);
        }
        text
    }

    /// Drains recorded histogram samples into their buckets. Call it every few
    /// seconds so the samples do not pile up between scrapes.
    pub(crate) fn run_upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// Runs [`Self::run_upkeep`] every `every` on the current runtime, until
    /// every clone of these metrics is gone.
    pub(crate) fn spawn_upkeep(&self, runtime: &tokio::runtime::Handle, every: Duration) {
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match inner.upgrade() {
                    Some(inner) => inner.handle.run_upkeep(),
                    None => return,
                }
            }
        });
    }

    /// Follows the breakers' state changes into the state gauge and the
    /// transition counter, on the current runtime, until the breakers are
    /// gone.
    pub(crate) fn spawn_breaker_watch(
        &self,
        runtime: &tokio::runtime::Handle,
        breakers: &tollgate_breaker::Breakers,
    ) {
        let mut changes = breakers.subscribe();
        let metrics = self.clone();
        runtime.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match changes.recv().await {
                    Ok(change) => metrics.breaker_transition(
                        &change.key,
                        BreakerStateLabel::from(change.from),
                        BreakerStateLabel::from(change.to),
                    ),
                    // Missed changes: the counter is short by `n`, and the
                    // next change sets the gauge right again.
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "breaker state changes missed by the metrics");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// Records one client request, when its response ends.
    pub(crate) fn request(&self, r: &RequestMetrics<'_>) {
        let group = r.model_group.unwrap_or("");
        let recorder = &self.inner.recorder;
        self.with_group(group, |series| {
            let key = RequestKey {
                route: r.route,
                status: r.status,
                class: r.class.unwrap_or(NO_CLASS),
                stream: r.stream,
            };
            series.with_request(recorder, key, |requests| requests.increment(1));
            series.with_duration(recorder, r.route, r.stream, |duration| {
                duration.record(r.total.as_secs_f64());
            });
            if let Some(upstream) = r.upstream {
                let stream = usize::from(r.stream);
                series.upstream[stream].record(upstream.as_secs_f64());
                series.overhead[stream].record(r.total.saturating_sub(upstream).as_secs_f64());
            }
            if let Some(first_token) = r.time_to_first_token {
                series.time_to_first_token.record(first_token.as_secs_f64());
            }
            if r.retries > 0 {
                series.retries.increment(u64::from(r.retries));
            }
            if r.fallbacks > 0 {
                series.fallbacks.increment(1);
            }
            if r.client_gone {
                series.client_disconnects.increment(1);
            }
        });
    }

    /// Records one upstream attempt: its outcome, tokens, cost and first-byte
    /// latency.
    pub(crate) fn attempt(&self, a: &AttemptMetrics<'_>) {
        let recorder = &self.inner.recorder;
        self.with_group(a.model_group, |series| {
            series.with_deployment(recorder, a.deployment, |pair| {
                let class = a.class.unwrap_or(NO_CLASS);
                pair.with_attempt(recorder, a.outcome, class, |attempts| {
                    attempts.increment(1);
                });
                pair.add_tokens([
                    a.prompt_tokens,
                    a.completion_tokens,
                    a.cached_prompt_tokens,
                    a.reasoning_tokens,
                ]);
                match a.cost_usd {
                    Some(cost) => pair.cost_usd.add(cost),
                    // An attempt nobody bills (a failure before any token) has
                    // no price to miss.
                    None if a.cost_source == "not_billed" => {}
                    None => pair.cost_unknown.increment(1),
                }
            });
        });
        if let Some(first_byte) = a.first_byte {
            self.with_deployment(a.deployment, |series| {
                series.latency.record(first_byte.as_secs_f64());
            });
        }
    }

    /// Sets a deployment's breaker state gauge.
    #[cfg(test)]
    pub(crate) fn breaker_state(&self, deployment: &str, state: BreakerStateLabel) {
        self.with_deployment(deployment, |series| {
            series.state.set(f64::from(state.value()));
        });
    }

    /// Counts a breaker transition (by the state entered) and sets the state
    /// gauge to `to`.
    pub(crate) fn breaker_transition(
        &self,
        deployment: &str,
        from: BreakerStateLabel,
        to: BreakerStateLabel,
    ) {
        if from == to {
            return;
        }
        self.with_deployment(deployment, |series| {
            series.transitions[to.index()].increment(1);
            series.state.set(f64::from(to.value()));
        });
    }

    /// Counts a request rejected by a limit: `rpm`, `tpm`, `parallel` or
    /// `budget`.
    pub(crate) fn rate_limited(&self, limit: &'static str) {
        let recorder = &self.inner.recorder;
        with_entry(
            &self.inner.rate_limits,
            &limit,
            || (limit, rate_limit(recorder, limit)),
            |counter| counter.increment(1),
        );
    }

    /// Sets the ledger's counters to its own running totals (the ledger
    /// counts on its writer thread; a scrape copies the totals).
    pub(crate) fn ledger_totals(&self, written: u64, dropped: u64) {
        self.inner.ledger_records.absolute(written);
        self.inner.ledger_dropped.absolute(dropped);
    }

    /// Counts a config reload: applied, or refused (the running config
    /// kept serving).
    pub(crate) fn config_reload(&self, applied: bool) {
        self.inner.config_reloads[usize::from(!applied)].increment(1);
    }

    /// Counts a fall back from shared (Redis) state to local state.
    pub(crate) fn shared_state_fallback(&self) {
        self.inner.shared_state_fallbacks.increment(1);
    }

    /// Counts a request ended because its client was too slow: `phase` is
    /// one of [`CLIENT_TIMEOUT_PHASES`].
    pub(crate) fn client_timeout(&self, phase: &'static str) {
        if let Some(at) = CLIENT_TIMEOUT_PHASES.iter().position(|p| *p == phase) {
            self.inner.client_timeouts[at].increment(1);
        }
    }

    /// Counts a client connection closed by a limit.
    pub(crate) fn connection_shed(&self, reason: ShedReason) {
        self.inner.connections_shed[reason as usize].increment(1);
    }

    /// Sets the number of open client connections.
    pub(crate) fn connections_open(&self, open: usize) {
        // Exact up to 2^53 connections.
        #[allow(clippy::cast_precision_loss, reason = "far below 2^53")]
        self.inner.connections_open.set(open as f64);
    }

    fn with_group<R>(&self, group: &str, f: impl FnOnce(&GroupSeries) -> R) -> R {
        let recorder = &self.inner.recorder;
        with_entry(
            &self.inner.groups,
            group,
            || {
                let name: Arc<str> = Arc::from(group);
                (name.clone(), GroupSeries::new(recorder, name))
            },
            f,
        )
    }

    fn with_deployment<R>(&self, deployment: &str, f: impl FnOnce(&DeploymentSeries) -> R) -> R {
        let recorder = &self.inner.recorder;
        with_entry(
            &self.inner.deployments,
            deployment,
            || {
                (
                    Arc::from(deployment),
                    DeploymentSeries::new(recorder, deployment),
                )
            },
            f,
        )
    }

    /// Appends the float counter `tollgate_cost_usd_total`, sorted by labels.
    fn render_costs(&self, text: &mut String) {
        use std::fmt::Write as _;

        let mut samples = Vec::new();
        for (group, series) in series::read(&self.inner.groups).iter() {
            for (deployment, pair) in series::read(&series.deployments).iter() {
                samples.push((group.clone(), deployment.clone(), pair.cost_usd.get()));
            }
        }
        if samples.is_empty() {
            return;
        }
        samples.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let _ = writeln!(text, "# HELP {COST_USD} {COST_USD_HELP}");
        let _ = writeln!(text, "# TYPE {COST_USD} counter");
        for (group, deployment, value) in samples {
            let _ = writeln!(
                text,
                "{COST_USD}{{model_group=\"{}\",deployment=\"{}\"}} {value}",
                escape(&group),
                escape(&deployment),
            );
        }
        text.push('\n');
    }
}

/// The help line of [`COST_USD`], which is rendered by hand.
const COST_USD_HELP: &str = "Spend in US dollars by model group and deployment, from provider-reported \
     costs or the price table (the spend ledger is the exact record).";

fn rate_limit(recorder: &PrometheusRecorder, limit: &'static str) -> Counter {
    counter(
        recorder,
        RATE_LIMIT_REJECTIONS,
        vec![Label::from_static_parts("limit", limit)],
    )
}

/// Escapes a label value for the text exposition format.
pub(crate) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}
