//! `GET /health/providers`: how each deployment has been doing — its
//! breaker, its last success and last error, its recent latency and
//! error rate, and its learned stream deadlines
//! ([`learned`](crate::learned)).
//!
//! Every upstream attempt is counted here once it ends (from its cost
//! record), in a few time buckets per deployment; a snapshot reads them.
//! The buckets sit behind a `Mutex` held for a few additions, never across
//! an `.await`.

use crate::FastMap;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::time::Instant;
use tollgate_breaker::Breakers;
use tollgate_core::ErrorClass;
use tollgate_core::time::unix_ms;

use crate::learned::LearnedDeadlines;

/// How far back "recent" goes.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);

/// The window is kept in this many buckets: an attempt leaves the window
/// within one bucket's time of `WINDOW`.
const BUCKETS: usize = 10;

const BUCKET_TIME: Duration = Duration::from_secs(WINDOW.as_secs() / BUCKETS as u64);

/// "No error yet" in [`DeploymentHealth::last_error_class`].
const NO_CLASS: u8 = u8::MAX;

/// The health of every configured deployment, by id.
#[derive(Debug, Clone)]
pub(crate) struct ProviderHealth {
    /// In config order, for the report.
    order: Arc<[Listed]>,
    by_deployment: Arc<FastMap<Arc<str>, Arc<DeploymentHealth>>>,
    epoch: Instant,
    /// OpenRouter deployments whose slug OpenRouter does not list.
    pub(crate) unknown_slugs: crate::openrouter_models::UnknownSlugs,
}

impl ProviderHealth {
    /// Health for `deployments`: (deployment id, model group, provider kind,
    /// why it is disabled).
    /// After a reload, the `previous` counts of the deployments that are
    /// `kept` carry over.
    pub(crate) fn new(
        deployments: Vec<Listed>,
        previous: Option<&ProviderHealth>,
        kept: impl Fn(&str) -> bool,
    ) -> Self {
        let by_deployment = deployments
            .iter()
            .map(|(id, ..)| {
                let carried = previous
                    .filter(|_| kept(id))
                    .and_then(|p| p.by_deployment.get(id).cloned());
                (id.clone(), carried.unwrap_or_default())
            })
            .collect();
        ProviderHealth {
            order: deployments.into(),
            by_deployment: Arc::new(by_deployment),
            // The buckets count from it.
            epoch: previous.map_or_else(Instant::now, |p| p.epoch),
            // The slug watcher started with the process keeps writing here.
            unknown_slugs: previous
                .map(|p| p.unknown_slugs.clone())
                .unwrap_or_default(),
        }
    }

    /// Counts one finished attempt of `deployment` (unknown ids are ignored:
    /// only configured deployments are reported).
    pub(crate) fn observe(&self, deployment: &str, outcome: AttemptOutcome, latency: Duration) {
        let Some(health) = self.by_deployment.get(deployment) else {
            return;
        };
        let now_ms = unix_ms(SystemTime::now());
        match outcome {
            AttemptOutcome::Success => health.last_success_ms.store(now_ms, Ordering::Relaxed),
            AttemptOutcome::Failure(class) => {
                health.last_error_ms.store(now_ms, Ordering::Relaxed);
                health
                    .last_error_class
                    .store(class_index(class), Ordering::Relaxed);
            }
            // The client went away: says nothing about the deployment.
            AttemptOutcome::Cancelled => return,
        }
        let tick = self.tick(Instant::now());
        let mut window = health.window.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = &mut window[(tick % BUCKETS as u64) as usize];
        if bucket.tick != tick {
            *bucket = Bucket {
                tick,
                ..Bucket::default()
            };
        }
        bucket.attempts += 1;
        bucket.latency_nanos += latency.as_nanos().min(u128::from(u64::MAX)) as u64;
        if matches!(outcome, AttemptOutcome::Failure(_)) {
            bucket.failures += 1;
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / BUCKET_TIME.as_nanos()) as u64
    }

    /// The report `GET /health/providers` answers with.
    pub(crate) fn report(&self, breakers: &Breakers, learned: &LearnedDeadlines) -> Value {
        let tick = self.tick(Instant::now());
        let providers: Vec<Value> = self
            .order
            .iter()
            .map(|(id, group, provider, disabled)| {
                let health = &self.by_deployment[id];
                let recent = health.recent(tick);
                let breaker = breakers.snapshot(id);
                json!({
                    "deployment": &**id,
                    "model_group": &**group,
                    "provider": provider,
                    "disabled": disabled.as_deref(),
                    "upstream_model_unknown": self.unknown_slugs.contains(id),
                    "breaker": breaker.as_ref().map_or("disabled", |s| s.state.as_str()),
                    "breaker_since_secs": breaker.as_ref().map(|s| s.age().as_secs_f64()),
                    "last_success_unix_ms": health.last_success(),
                    "last_error": health.last_error().map(|(at, class)| json!({
                        "class": class.as_str(),
                        "unix_ms": at,
                    })),
                    "recent": {
                        "window_secs": WINDOW.as_secs(),
                        "attempts": recent.attempts,
                        "failures": recent.failures,
                        "error_rate": recent.error_rate(),
                        "avg_latency_ms": recent.avg_latency_ms(),
                    },
                    "learned_stream_deadlines": learned.report(id),
                })
            })
            .collect();
        json!({ "providers": providers })
    }
}

/// A deployment as the report names it: (id, model group, provider, why it
/// is disabled).
pub(crate) type Listed = (Arc<str>, Arc<str>, &'static str, Option<Arc<str>>);

/// How an attempt ended, as the health report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    Success,
    Failure(ErrorClass),
    Cancelled,
}

#[derive(Debug)]
struct DeploymentHealth {
    /// Unix ms, 0 for never.
    last_success_ms: AtomicI64,
    last_error_ms: AtomicI64,
    /// An index into [`ErrorClass::ALL`], or [`NO_CLASS`].
    last_error_class: AtomicU8,
    window: Mutex<[Bucket; BUCKETS]>,
}

impl Default for DeploymentHealth {
    fn default() -> Self {
        DeploymentHealth {
            last_success_ms: AtomicI64::new(0),
            last_error_ms: AtomicI64::new(0),
            last_error_class: AtomicU8::new(NO_CLASS),
            window: Mutex::new([Bucket::default(); BUCKETS]),
        }
    }
}

impl DeploymentHealth {
    fn last_success(&self) -> Option<i64> {
        Some(self.last_success_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    fn last_error(&self) -> Option<(i64, ErrorClass)> {
        let at = self.last_error_ms.load(Ordering::Relaxed);
        let class = ErrorClass::ALL
            .get(usize::from(self.last_error_class.load(Ordering::Relaxed)))
            .copied()?;
        (at > 0).then_some((at, class))
    }

    /// The buckets still inside the window at `tick`, summed.
    fn recent(&self, tick: u64) -> Bucket {
        let window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = tick.saturating_sub(BUCKETS as u64 - 1);
        window
            .iter()
            .filter(|b| b.attempts > 0 && (oldest..=tick).contains(&b.tick))
            .fold(Bucket::default(), |sum, b| Bucket {
                tick,
                attempts: sum.attempts + b.attempts,
                failures: sum.failures + b.failures,
                latency_nanos: sum.latency_nanos.saturating_add(b.latency_nanos),
            })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tick: u64,
    attempts: u64,
    failures: u64,
    latency_nanos: u64,
}

impl Bucket {
    fn error_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.failures as f64 / self.attempts as f64)
    }

    fn avg_latency_ms(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.latency_nanos as f64 / self.attempts as f64 / 1e6)
    }
}

fn class_index(class: ErrorClass) -> u8 {
    ErrorClass::ALL
        .iter()
        .position(|c| *c == class)
        .map_or(NO_CLASS, |i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> ProviderHealth {
        ProviderHealth::new(
            vec![
                (Arc::from("a"), Arc::from("g"), "mock", None),
                (Arc::from("b"), Arc::from("g"), "openai", None),
            ],
            None,
            |_| false,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn counts_recent_attempts_and_forgets_old_ones() {
        let health = health();
        let breakers = Breakers::default();
        health.observe("a", AttemptOutcome::Success, Duration::from_millis(100));
        health.observe(
            "a",
            AttemptOutcome::Failure(ErrorClass::RateLimited),
            Duration::from_millis(300),
        );
        health.observe("a", AttemptOutcome::Cancelled, Duration::from_secs(9));
        health.observe("unknown", AttemptOutcome::Success, Duration::ZERO);

        let report = health.report(&breakers, &LearnedDeadlines::default());
        let a = &report["providers"][0];
        assert_eq!(a["deployment"], "a");
        assert_eq!(a["recent"]["attempts"], 2);
        assert_eq!(a["recent"]["failures"], 1);
        assert_eq!(a["recent"]["error_rate"], 0.5);
        assert_eq!(a["recent"]["avg_latency_ms"], 200.0);
        assert_eq!(a["last_error"]["class"], "rate_limited");
        assert!(a["last_success_unix_ms"].as_i64().unwrap() > 0);
        let b = &report["providers"][1];
        assert_eq!(b["recent"]["attempts"], 0);
        assert!(b["recent"]["error_rate"].is_null());
        assert!(b["last_error"].is_null());

        // Past the window, the old attempts are gone; the last error stays.
        tokio::time::advance(WINDOW + BUCKET_TIME).await;
        health.observe("a", AttemptOutcome::Success, Duration::from_millis(50));
        let report = health.report(&breakers, &LearnedDeadlines::default());
        let a = &report["providers"][0];
        assert_eq!(a["recent"]["attempts"], 1);
        assert_eq!(a["recent"]["failures"], 0);
        assert_eq!(a["last_error"]["class"], "rate_limited");
    }

    #[tokio::test(start_paused = true)]
    async fn reports_the_breaker_state() {
        let health = health();
        let breakers = Breakers::default();
        breakers.register("a");
        assert!(breakers.force_open("a", Duration::from_secs(60)));
        let report = health.report(&breakers, &LearnedDeadlines::default());
        assert_eq!(report["providers"][0]["breaker"], "open");
        assert_eq!(report["providers"][1]["breaker"], "disabled");
    }
}
