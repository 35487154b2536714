//! The cached handles: one [`GroupSeries`] per model group, one [`PairSeries`]
//! per (group, deployment), one [`DeploymentSeries`] per deployment.
//!
//! A label set is registered with the recorder once, on first use (or at
//! startup, for the configured topology); after that its handle is found with
//! a read-locked lookup keyed by borrowed or `Copy` values, so recording
//! allocates nothing.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::FastMap;
use ::metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::{
    BREAKER_STATE, BREAKER_TRANSITIONS, BreakerStateLabel, CLIENT_DISCONNECTS, COST_UNKNOWN,
    DEPLOYMENT_ATTEMPTS, DEPLOYMENT_LATENCY, FALLBACKS, GATEWAY_OVERHEAD, METADATA,
    REQUEST_DURATION, REQUESTS, RETRIES, TIME_TO_FIRST_TOKEN, TOKENS, UPSTREAM_DURATION,
};

/// The token kinds, in the order [`PairSeries::add_tokens`] takes them.
pub(super) const TOKEN_KINDS: [&str; 4] = ["prompt", "completion", "cached_prompt", "reasoning"];

/// A map of cached handles.
pub(super) type Map<K, V> = RwLock<FastMap<K, V>>;

/// Read-locks a map; a panic elsewhere never poisons metrics.
pub(super) fn read<K, V>(map: &Map<K, V>) -> RwLockReadGuard<'_, FastMap<K, V>> {
    map.read().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the entry for `key`, creating it with `make` the first time.
///
/// The common case takes the read lock only. Locks are always taken outer map
/// first, so nested calls cannot deadlock.
pub(super) fn with_entry<K, V, Q, R>(
    map: &Map<K, V>,
    key: &Q,
    make: impl FnOnce() -> (K, V),
    f: impl FnOnce(&V) -> R,
) -> R
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
{
    if let Some(value) = read(map).get(key) {
        return f(value);
    }
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(value) = map.get(key) {
        return f(value);
    }
    let (key, value) = make();
    let result = f(&value);
    map.insert(key, value);
    result
}

/// The labels of one `tollgate_requests_total` series besides the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct RequestKey {
    pub(super) route: &'static str,
    pub(super) status: u16,
    pub(super) class: &'static str,
    pub(super) stream: bool,
}

/// The series of one model group.
pub(super) struct GroupSeries {
    name: Arc<str>,
    requests: Map<RequestKey, Counter>,
    durations: Map<(&'static str, bool), Histogram>,
    /// By stream flag: `[false, true]`.
    pub(super) upstream: [Histogram; 2],
    /// By stream flag: `[false, true]`.
    pub(super) overhead: [Histogram; 2],
    pub(super) time_to_first_token: Histogram,
    pub(super) retries: Counter,
    pub(super) fallbacks: Counter,
    pub(super) client_disconnects: Counter,
    /// By deployment id.
    pub(super) deployments: Map<Arc<str>, PairSeries>,
}

impl GroupSeries {
    /// Registers the group's series that need no other label at zero.
    pub(super) fn new(recorder: &PrometheusRecorder, name: Arc<str>) -> Self {
        let group = || Label::new("model_group", name.to_string());
        let by_stream = |family: &'static str| {
            [false, true].map(|stream| {
                histogram(
                    recorder,
                    family,
                    vec![
                        group(),
                        Label::from_static_parts("stream", stream_label(stream)),
                    ],
                )
            })
        };
        GroupSeries {
            requests: Map::default(),
            durations: Map::default(),
            upstream: by_stream(UPSTREAM_DURATION),
            overhead: by_stream(GATEWAY_OVERHEAD),
            time_to_first_token: histogram(recorder, TIME_TO_FIRST_TOKEN, vec![group()]),
            retries: counter(recorder, RETRIES, vec![group()]),
            fallbacks: counter(recorder, FALLBACKS, vec![group()]),
            client_disconnects: counter(recorder, CLIENT_DISCONNECTS, vec![group()]),
            deployments: Map::default(),
            name,
        }
    }

    /// Runs `f` on the request counter of `key`.
    pub(super) fn with_request<R>(
        &self,
        recorder: &PrometheusRecorder,
        key: RequestKey,
        f: impl FnOnce(&Counter) -> R,
    ) -> R {
        let make = || {
            let labels = vec![
                Label::from_static_parts("route", key.route),
                Label::new("model_group", self.name.to_string()),
                Label::new("status", key.status.to_string()),
                Label::from_static_parts("class", key.class),
                Label::from_static_parts("stream", stream_label(key.stream)),
            ];
            (key, counter(recorder, REQUESTS, labels))
        };
        with_entry(&self.requests, &key, make, f)
    }

    /// Runs `f` on the request duration histogram of a route and stream flag.
    pub(super) fn with_duration<R>(
        &self,
        recorder: &PrometheusRecorder,
        route: &'static str,
        stream: bool,
        f: impl FnOnce(&Histogram) -> R,
    ) -> R {
        let make = || {
            let labels = vec![
                Label::from_static_parts("route", route),
                Label::new("model_group", self.name.to_string()),
                Label::from_static_parts("stream", stream_label(stream)),
            ];
            (
                (route, stream),
                histogram(recorder, REQUEST_DURATION, labels),
            )
        };
        with_entry(&self.durations, &(route, stream), make, f)
    }

    /// Runs `f` on the series of one of the group's deployments.
    pub(super) fn with_deployment<R>(
        &self,
        recorder: &PrometheusRecorder,
        deployment: &str,
        f: impl FnOnce(&PairSeries) -> R,
    ) -> R {
        let make = || {
            let deployment: Arc<str> = Arc::from(deployment);
            let pair = PairSeries::new(recorder, self.name.clone(), deployment.clone());
            (deployment, pair)
        };
        with_entry(&self.deployments, deployment, make, f)
    }
}

/// The series of one deployment serving one model group.
pub(super) struct PairSeries {
    group: Arc<str>,
    deployment: Arc<str>,
    attempts: Map<(&'static str, &'static str), Counter>,
    /// By [`TOKEN_KINDS`].
    tokens: [Counter; 4],
    pub(super) cost_usd: FloatCounter,
    pub(super) cost_unknown: Counter,
}

impl PairSeries {
    fn new(recorder: &PrometheusRecorder, group: Arc<str>, deployment: Arc<str>) -> Self {
        let labels = || {
            vec![
                Label::new("model_group", group.to_string()),
                Label::new("deployment", deployment.to_string()),
            ]
        };
        let tokens = TOKEN_KINDS.map(|kind| {
            let mut labels = labels();
            labels.push(Label::from_static_parts("kind", kind));
            counter(recorder, TOKENS, labels)
        });
        PairSeries {
            attempts: Map::default(),
            tokens,
            cost_usd: FloatCounter::default(),
            cost_unknown: counter(recorder, COST_UNKNOWN, labels()),
            group,
            deployment,
        }
    }

    /// Runs `f` on the attempt counter of an outcome and class.
    pub(super) fn with_attempt<R>(
        &self,
        recorder: &PrometheusRecorder,
        outcome: &'static str,
        class: &'static str,
        f: impl FnOnce(&Counter) -> R,
    ) -> R {
        let make = || {
            let labels = vec![
                Label::new("model_group", self.group.to_string()),
                Label::new("deployment", self.deployment.to_string()),
                Label::from_static_parts("outcome", outcome),
                Label::from_static_parts("class", class),
            ];
            (
                (outcome, class),
                counter(recorder, DEPLOYMENT_ATTEMPTS, labels),
            )
        };
        with_entry(&self.attempts, &(outcome, class), make, f)
    }

    /// Adds tokens, by [`TOKEN_KINDS`].
    pub(super) fn add_tokens(&self, tokens: [u64; 4]) {
        for (counter, n) in self.tokens.iter().zip(tokens) {
            if n > 0 {
                counter.increment(n);
            }
        }
    }
}

/// The series of one deployment, whatever group it serves.
pub(super) struct DeploymentSeries {
    pub(super) latency: Histogram,
    pub(super) state: Gauge,
    /// By [`BreakerStateLabel::ALL`] (the state entered).
    pub(super) transitions: [Counter; 3],
}

impl DeploymentSeries {
    /// Registers the deployment's series at zero (a closed breaker).
    pub(super) fn new(recorder: &PrometheusRecorder, deployment: &str) -> Self {
        let label = || Label::new("deployment", deployment.to_owned());
        let state =
            recorder.register_gauge(&Key::from_parts(BREAKER_STATE, vec![label()]), &METADATA);
        state.set(f64::from(BreakerStateLabel::Closed.value()));
        DeploymentSeries {
            latency: histogram(recorder, DEPLOYMENT_LATENCY, vec![label()]),
            state,
            transitions: BreakerStateLabel::ALL.map(|to| {
                counter(
                    recorder,
                    BREAKER_TRANSITIONS,
                    vec![label(), Label::from_static_parts("to", to.as_str())],
                )
            }),
        }
    }
}

/// A monotonic float counter: `f64` bits in an atomic, added with a CAS loop.
#[derive(Debug, Default)]
pub(super) struct FloatCounter(AtomicU64);

impl FloatCounter {
    /// Adds `value`; negative, zero and non-finite values are ignored (a
    /// counter never goes down).
    pub(super) fn add(&self, value: f64) {
        if !(value > 0.0 && value.is_finite()) {
            return;
        }
        // The closure always returns `Some`, so this never fails.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The current total.
    pub(super) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

pub(super) fn counter(
    recorder: &PrometheusRecorder,
    name: &'static str,
    labels: Vec<Label>,
) -> Counter {
    recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
}

fn histogram(recorder: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Histogram {
    recorder.register_histogram(&Key::from_parts(name, labels), &METADATA)
}

const fn stream_label(stream: bool) -> &'static str {
    if stream { "true" } else { "false" }
}
