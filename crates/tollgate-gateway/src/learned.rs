//! Learned stream deadlines: how fast each deployment really streams, and
//! the deadlines that follow from it.
//!
//! For every deployment the gateway keeps three small quantile sketches of
//! its streams: time to the response head, time to the first token (the
//! first `data:` event, from sending the request) and the gaps between
//! frames after it. Once a phase has [`MIN_SAMPLES`] samples, its deadline
//! is [`DEADLINE_MULTIPLE`] × the phase's p99, plus, for the head and the
//! first token, an allowance for the prompt's size
//! ([`PREFILL_ALLOWANCE_PER_KIB`]: a long prompt takes longer to read than
//! the typical one the sketch saw), never below the phase's floor
//! ([`HEAD_FLOOR`], [`FIRST_TOKEN_FLOOR`], [`GAP_FLOOR`]) and never above
//! the configured or cold deadline ([`deadlines`](crate::deadlines)).
//!
//! A phase that times out is recorded too, at the time it waited: the
//! sketch would otherwise only ever see answers faster than its own
//! deadline, and a deployment that became slower for good would be cut
//! off forever. With the timeouts recorded, a few of them raise the p99 and
//! so the deadline, until the slower answers fit again.
//!
//! A sketch is a fixed log-scale histogram ([`BUCKETS`] buckets, four per
//! doubling from 1 ms: a quantile is read to within 19 %, rounded up) of
//! atomic counters — recording is two relaxed atomic additions, no lock.
//! It forgets by halving: every [`HALVE_EVERY`] samples each count is
//! halved, so the newest few hundred samples weigh the most.
//!
//! The state lives in one place per deployment, [`LearnedDeadlines`],
//! keyed by the deployment's id (its breaker's key), so a config reload
//! can hand the state of an unchanged deployment to the new gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::FastMap;
use crate::deadlines::Timeouts;
use crate::metrics::{LEARNED_DEADLINE, LEARNED_P99, escape};

/// Samples a phase needs before its deadline is learned rather than cold.
pub(crate) const MIN_SAMPLES: u32 = 20;
/// A learned deadline is this many times the phase's p99.
pub(crate) const DEADLINE_MULTIPLE: u32 = 4;
/// The shortest learned deadline for a stream's response head.
pub(crate) const HEAD_FLOOR: Duration = Duration::from_secs(1);
/// The shortest learned deadline for a stream's first token.
pub(crate) const FIRST_TOKEN_FLOOR: Duration = Duration::from_secs(1);
/// The shortest learned silence between two frames of a stream: a model
/// may pause mid-answer (a tool call's arguments, a long word) far longer
/// than its usual gap, and a cut stream costs a continuation.
pub(crate) const GAP_FLOOR: Duration = Duration::from_secs(5);
/// Added to the learned head and first-token deadlines for each KiB of the
/// request's body (about 250 prompt tokens): 100,000 tokens add ~10 s.
pub(crate) const PREFILL_ALLOWANCE_PER_KIB: Duration = Duration::from_millis(25);

/// Buckets per sketch: four per doubling from 1 ms, the last one open (up
/// to 2^20 ms, ~17 min, before it).
pub(crate) const BUCKETS: usize = 80;
/// Every this many samples a sketch halves its counts.
pub(crate) const HALVE_EVERY: u32 = 512;
const PER_DOUBLING: f64 = 4.0;

/// A streaming quantile sketch of durations: a log-scale histogram of
/// atomic counters that forgets by halving.
#[derive(Debug)]
pub(crate) struct Sketch {
    counts: [AtomicU32; BUCKETS],
    /// Samples since the last halving.
    since_halving: AtomicU32,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
            since_halving: AtomicU32::new(0),
        }
    }
}

/// The bucket a duration falls in: bucket `i` holds durations up to
/// 1 ms × 2^((i+1)/4).
fn bucket_of(duration: Duration) -> usize {
    let ms = duration.as_secs_f64() * 1e3;
    if ms <= 1.0 {
        return 0;
    }
    let index = (ms.log2() * PER_DOUBLING).ceil() as usize;
    index.saturating_sub(1).min(BUCKETS - 1)
}

/// The largest duration bucket `index` holds.
fn upper_bound(index: usize) -> Duration {
    Duration::from_secs_f64(2f64.powf((index + 1) as f64 / PER_DOUBLING) / 1e3)
}

impl Sketch {
    pub(crate) fn record(&self, duration: Duration) {
        self.counts[bucket_of(duration)].fetch_add(1, Ordering::Relaxed);
        // The one recording that reaches the mark halves; a sample that
        // races with it may be halved or not, which a sketch can afford.
        if self.since_halving.fetch_add(1, Ordering::Relaxed) + 1 == HALVE_EVERY {
            for count in &self.counts {
                let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c / 2));
            }
            self.since_halving.fetch_sub(HALVE_EVERY, Ordering::Relaxed);
        }
    }

    /// The weight of the samples it holds (halved ones count half).
    pub(crate) fn samples(&self) -> u32 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0, u32::saturating_add)
    }

    /// The `q` quantile (0 < q ≤ 1), rounded up to its bucket's bound; none
    /// before [`MIN_SAMPLES`].
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: [u32; BUCKETS] =
            std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if total < u64::from(MIN_SAMPLES) {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        counts.iter().enumerate().find_map(|(index, &count)| {
            seen += u64::from(count);
            (seen >= rank).then(|| upper_bound(index))
        })
    }
}

/// A stream phase the gateway learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sending the request to the response head.
    Head,
    /// Sending the request to the first `data:` event.
    FirstToken,
    /// Between two frames after the first token.
    Gap,
}

impl Phase {
    pub(crate) const ALL: [Phase; 3] = [Phase::Head, Phase::FirstToken, Phase::Gap];

    /// The phase's name in reports and metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Head => "head",
            Phase::FirstToken => "first_token",
            Phase::Gap => "between_tokens",
        }
    }

    fn floor(self) -> Duration {
        match self {
            Phase::Head => HEAD_FLOOR,
            Phase::FirstToken => FIRST_TOKEN_FLOOR,
            Phase::Gap => GAP_FLOOR,
        }
    }
}

/// How one deployment's streams have gone: a sketch per phase. The
/// upstream client and the mock provider record into it (a request
/// extension, on streams only).
#[derive(Debug, Default)]
pub(crate) struct StreamTimings {
    head: Sketch,
    first_token: Sketch,
    gap: Sketch,
}

impl StreamTimings {
    pub(crate) fn sketch(&self, phase: Phase) -> &Sketch {
        match phase {
            Phase::Head => &self.head,
            Phase::FirstToken => &self.first_token,
            Phase::Gap => &self.gap,
        }
    }

    pub(crate) fn record(&self, phase: Phase, duration: Duration) {
        self.sketch(phase).record(duration);
    }

    /// The learned deadline of `phase`, if it has enough samples: k × p99
    /// (+ the prompt's allowance), at least the floor, at most `cold`.
    pub(crate) fn deadline(
        &self,
        phase: Phase,
        cold: Duration,
        request_bytes: usize,
    ) -> Option<Duration> {
        let p99 = self.sketch(phase).quantile(0.99)?;
        let allowance = match phase {
            Phase::Head | Phase::FirstToken => {
                PREFILL_ALLOWANCE_PER_KIB.saturating_mul((request_bytes / 1024) as u32)
            }
            Phase::Gap => Duration::ZERO,
        };
        let learned = p99
            .saturating_mul(DEADLINE_MULTIPLE)
            .saturating_add(allowance);
        Some(learned.max(phase.floor()).min(cold))
    }

    /// A stream's deadlines on this deployment: the `cold` ones (configured
    /// or default), shortened where a phase has been learned.
    pub(crate) fn stream_timeouts(&self, cold: Timeouts, request_bytes: usize) -> Timeouts {
        let learn = |phase, cold: Option<Duration>| {
            cold.map(|cold| self.deadline(phase, cold, request_bytes).unwrap_or(cold))
        };
        let first_token = learn(Phase::FirstToken, cold.first_token);
        Timeouts {
            // The head never waits longer than the first token would.
            first_byte: learn(Phase::Head, cold.first_byte)
                .map(|head| first_token.map_or(head, |token| head.min(token))),
            first_token,
            stream_idle: learn(Phase::Gap, cold.stream_idle),
            total: cold.total,
        }
    }

    /// The phase's samples, p95 and p99 and its cold deadline, for reports.
    fn report(&self, phase: Phase, cold: Option<Duration>) -> Value {
        let sketch = self.sketch(phase);
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        json!({
            "samples": sketch.samples(),
            "p95_ms": ms(sketch.quantile(0.95)),
            "p99_ms": ms(sketch.quantile(0.99)),
            "cold_deadline_ms": ms(cold),
        })
    }
}

/// A deployment's learned timings and its cold stream deadlines.
#[derive(Debug, Clone)]
struct Entry {
    timings: Arc<StreamTimings>,
    cold: Timeouts,
}

/// The learned stream timings of every deployment, by id: the one place
/// this runtime state lives.
#[derive(Debug, Clone, Default)]
pub(crate) struct LearnedDeadlines {
    /// In config order, for reports.
    by_deployment: Arc<Vec<(Arc<str>, Entry)>>,
    index: Arc<FastMap<Arc<str>, usize>>,
    /// Whether the learned deadlines are applied
    /// (`tollgate.learn_stream_deadlines`), or only recorded.
    applied: bool,
}

impl LearnedDeadlines {
    /// State for `deployments` (id, cold stream deadlines): what `previous`
    /// learned of a deployment it knows is kept (a reloaded gateway), the
    /// others start cold.
    #[cfg(test)]
    pub(crate) fn new(
        deployments: impl IntoIterator<Item = (Arc<str>, Timeouts)>,
        previous: Option<&LearnedDeadlines>,
    ) -> Self {
        Self::carrying(deployments, previous, |_| true)
    }

    /// As [`new`](Self::new), carrying over only what `kept` says is the
    /// same deployment in both configurations (a reload that points an id at
    /// another upstream starts it cold).
    pub(crate) fn carrying(
        deployments: impl IntoIterator<Item = (Arc<str>, Timeouts)>,
        previous: Option<&LearnedDeadlines>,
        kept: impl Fn(&str) -> bool,
    ) -> Self {
        let mut by_deployment = Vec::new();
        let mut index = FastMap::default();
        for (id, cold) in deployments {
            let timings = previous
                .filter(|_| kept(&id))
                .and_then(|p| p.get(&id).cloned())
                .unwrap_or_default();
            index.insert(id.clone(), by_deployment.len());
            by_deployment.push((id, Entry { timings, cold }));
        }
        LearnedDeadlines {
            by_deployment: Arc::new(by_deployment),
            index: Arc::new(index),
            applied: true,
        }
    }

    /// Only records, applies nothing (`learn_stream_deadlines: false`).
    pub(crate) fn applied(mut self, applied: bool) -> Self {
        self.applied = applied;
        self
    }

    /// The deadline of `phase` in effect for a 1 KiB request.
    fn in_effect(&self, timings: &StreamTimings, phase: Phase, cold: Duration) -> Duration {
        if !self.applied {
            return cold;
        }
        timings.deadline(phase, cold, 1024).unwrap_or(cold)
    }

    /// The timings of `deployment`, if it is configured.
    pub(crate) fn get(&self, deployment: &str) -> Option<&Arc<StreamTimings>> {
        let at = *self.index.get(deployment)?;
        Some(&self.by_deployment[at].1.timings)
    }

    /// The `learned` part of `deployment`'s `/health/providers` entry: per
    /// phase its samples, p95, p99 and learned deadline (for a 1 KiB
    /// request) next to the cold one.
    pub(crate) fn report(&self, deployment: &str) -> Value {
        let Some(&at) = self.index.get(deployment) else {
            return Value::Null;
        };
        let Entry { timings, cold } = &self.by_deployment[at].1;
        let phase = |phase, cold: Option<Duration>| {
            let mut report = timings.report(phase, cold);
            report["deadline_ms"] = json!(
                cold.map(|cold| { self.in_effect(timings, phase, cold).as_secs_f64() * 1e3 })
            );
            report
        };
        json!({
            "applied": self.applied,
            "multiple_of_p99": DEADLINE_MULTIPLE,
            "min_samples": MIN_SAMPLES,
            "head": phase(Phase::Head, cold.first_byte),
            "first_token": phase(Phase::FirstToken, cold.first_token),
            "between_tokens": phase(Phase::Gap, cold.stream_idle),
        })
    }

    /// Appends the gauges [`LEARNED_DEADLINE`] (the deadline in effect for
    /// a 1 KiB request: learned, else cold) and [`LEARNED_P99`] (absent
    /// until learned), by deployment and phase.
    pub(crate) fn render_metrics(&self, text: &mut String) {
        use std::fmt::Write as _;

        if self.by_deployment.is_empty() {
            return;
        }
        let cold_of = |cold: &Timeouts, phase| match phase {
            Phase::Head => cold.first_byte,
            Phase::FirstToken => cold.first_token,
            Phase::Gap => cold.stream_idle,
        };
        for (family, help) in [
            (LEARNED_DEADLINE, LEARNED_DEADLINE_HELP),
            (LEARNED_P99, LEARNED_P99_HELP),
        ] {
            let _ = writeln!(text, "# HELP {family} {help}");
            let _ = writeln!(text, "# TYPE {family} gauge");
            for (id, Entry { timings, cold }) in self.by_deployment.iter() {
                for phase in Phase::ALL {
                    let value = if family == LEARNED_DEADLINE {
                        cold_of(cold, phase).map(|cold| self.in_effect(timings, phase, cold))
                    } else {
                        timings.sketch(phase).quantile(0.99)
                    };
                    if let Some(value) = value {
                        let _ = writeln!(
                            text,
                            "{family}{{deployment=\"{}\",phase=\"{}\"}} {}",
                            escape(id),
                            phase.as_str(),
                            value.as_secs_f64()
                        );
                    }
                }
            }
            text.push('\n');
        }
    }
}

const LEARNED_DEADLINE_HELP: &str = "The stream deadline in effect by deployment and phase (head, first_token, \
     between_tokens), in seconds: learned from the deployment's streams, else the configured or cold one.";
const LEARNED_P99_HELP: &str = "The p99 of a deployment's stream phase (head, first_token, between_tokens), in seconds, once learned.";

#[cfg(test)]
#[path = "learned_tests.rs"]
mod tests;
