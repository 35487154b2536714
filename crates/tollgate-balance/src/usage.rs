//! What one replica knows of a deployment's `rpm` and `tpm` counters.
//!
//! The counters themselves live in the limits' store — Redis when replicas
//! share one, else this process's memory — and only an admission asks it
//! (one round trip per admitted attempt). Each answer says what the
//! deployment has left; [`Usage`] keeps the last one, so that between
//! admissions the balancer can:
//!
//! - skip a deployment that was refused, until the store said it would
//!   have room again (its `retry_after`), without asking the store;
//! - rank deployments by headroom under `usage-based-routing`, from the
//!   same counters: the last answer, plus what the bucket has refilled
//!   since (a GCRA bucket refills at a steady rate, so this is exact for a
//!   deployment no one else used meanwhile; another replica's use is seen
//!   at the next admission).
//!
//! [`TokenCounter`] counts each answer's tokens against its deployment's
//! `tpm`, in the store and here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::balancer::Balancer;
use tokio::time::Instant;
use tollgate_core::{Admission, DeploymentLimits, DeploymentQuota};

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A deployment's limits and the last word of the store about them.
#[derive(Debug)]
pub(crate) struct Usage {
    quota: DeploymentQuota,
    /// Held for a few arithmetic operations, never across an `.await`.
    seen: Mutex<Seen>,
}

/// The store's last word about a deployment: what each limit had left,
/// and when (the tokens also move when an answer's usage is counted).
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    requests: Option<Level>,
    tokens: Option<Level>,
    /// Refused until then.
    limited_until: Option<Instant>,
}

/// What a bucket had left at a moment.
#[derive(Debug, Clone, Copy)]
struct Level {
    left: f64,
    at: Instant,
}

impl Level {
    /// What the bucket of `limit` a minute has at `now`: it refills one
    /// cell every minute / `limit`, up to `limit`. Full when never seen.
    fn at(level: Option<Level>, limit: u64, now: Instant) -> f64 {
        let limit = limit as f64;
        match level {
            None => limit,
            Some(Level { left, at }) => {
                let minutes = now.saturating_duration_since(at).as_secs_f64() / 60.0;
                (left + minutes * limit).min(limit)
            }
        }
    }
}

impl Usage {
    /// A deployment limited by `quota`, of which nothing is known yet.
    pub(crate) fn new(quota: DeploymentQuota) -> Self {
        Usage {
            quota,
            seen: Mutex::new(Seen::default()),
        }
    }

    pub(crate) fn quota(&self) -> DeploymentQuota {
        self.quota
    }

    fn seen(&self) -> Seen {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the deployment is still known to be at its limit.
    pub(crate) fn limited_for(&self, now: Instant) -> Option<Duration> {
        let until = self.seen().limited_until?;
        Some(until.saturating_duration_since(now)).filter(|wait| !wait.is_zero())
    }

    /// Takes in the store's answer to an admission at `now`.
    pub(crate) fn observe(&self, admission: &Admission, now: Instant) {
        let level = |left: Option<u64>| {
            left.map(|left| Level {
                left: left as f64,
                at: now,
            })
        };
        let seen = Seen {
            requests: level(admission.requests_left),
            tokens: level(admission.tokens_left),
            limited_until: (!admission.admitted).then(|| now + admission.retry_after),
        };
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = seen;
    }

    /// Counts `tokens` an answer used (they went to the store too), so the
    /// headroom reflects them before the next admission.
    pub(crate) fn spend_tokens(&self, tokens: u64, now: Instant) {
        let Some(tpm) = self.quota.tpm else { return };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let left = Level::at(seen.tokens, tpm, now) - tokens as f64;
        seen.tokens = Some(Level { left, at: now });
    }

    /// The smaller fraction of its rpm or tpm the deployment would have
    /// left after a request of `tokens` tokens, at `now`; `INFINITY` for a
    /// deployment without limits (it never runs out), negative past a
    /// limit.
    pub(crate) fn headroom(&self, now: Instant, tokens: u64) -> f64 {
        let seen = self.seen();
        let left = |limit: Option<u64>, level: Option<Level>, cost: u64| match limit {
            None => f64::INFINITY,
            Some(0) => f64::NEG_INFINITY,
            Some(limit) => (Level::at(level, limit, now) - cost as f64) / limit as f64,
        };
        let requests = left(self.quota.rpm, seen.requests, 1);
        let tokens = left(self.quota.tpm, seen.tokens, tokens);
        requests.min(tokens)
    }
}

/// Counts the tokens of each answer against its deployment's `tpm`, as
/// LiteLLM does (from the usage after the answer): in the limits' store,
/// shared by the replicas, and in the balancer's view of the deployment.
#[derive(Clone)]
pub struct TokenCounter {
    limits: Arc<dyn DeploymentLimits>,
    deployments: Arc<FastMap<Arc<str>, Arc<Usage>>>,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("deployments", &self.deployments.len())
            .finish_non_exhaustive()
    }
}

impl TokenCounter {
    /// A counter for the deployments of `balancers` that have a `tpm`;
    /// `None` when none has.
    pub fn new<'a>(
        limits: Arc<dyn DeploymentLimits>,
        balancers: impl IntoIterator<Item = &'a Balancer>,
    ) -> Option<TokenCounter> {
        let deployments: FastMap<_, _> = balancers
            .into_iter()
            .flat_map(Balancer::tpm_counters)
            .collect();
        (!deployments.is_empty()).then(|| TokenCounter {
            limits,
            deployments: Arc::new(deployments),
        })
    }

    /// Counts `tokens` used by an answer of `deployment`; never waits (the
    /// store is written on a task when it is Redis).
    pub fn count(&self, deployment: &str, tokens: u64) {
        let Some(usage) = self.deployments.get(deployment) else {
            return;
        };
        if tokens == 0 {
            return;
        }
        usage.spend_tokens(tokens, Instant::now());
        self.limits.record_tokens(deployment, usage.quota(), tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(admitted: bool, retry_after: u64, requests: u64, tokens: u64) -> Admission {
        Admission {
            admitted,
            refused_by: (!admitted).then_some("rpm"),
            retry_after: Duration::from_secs(retry_after),
            requests_left: Some(requests),
            tokens_left: Some(tokens),
        }
    }

    #[test]
    fn a_refusal_is_remembered_until_its_retry_after() {
        let usage = Usage::new(DeploymentQuota {
            rpm: Some(10),
            tpm: Some(1000),
        });
        let now = Instant::now();
        assert_eq!(usage.limited_for(now), None, "nothing known yet");
        usage.observe(&answer(false, 6, 0, 1000), now);
        assert_eq!(usage.limited_for(now), Some(Duration::from_secs(6)));
        assert_eq!(
            usage.limited_for(now + Duration::from_secs(5)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(usage.limited_for(now + Duration::from_secs(6)), None);
        usage.observe(&answer(true, 0, 3, 1000), now);
        assert_eq!(usage.limited_for(now), None, "an admission clears it");
    }

    #[test]
    fn headroom_refills_between_answers_and_counts_spent_tokens() {
        let usage = Usage::new(DeploymentQuota {
            rpm: Some(10),
            tpm: Some(1000),
        });
        let now = Instant::now();
        // Never seen: full, less this request.
        assert_eq!(usage.headroom(now, 100), 0.9);
        usage.observe(&answer(true, 0, 4, 1000), now);
        // 4 requests left, 3 after this one: 0.3 of the rpm.
        assert!((usage.headroom(now, 0) - 0.3).abs() < 1e-9);
        // 6 s later one more request came back.
        let later = now + Duration::from_secs(6);
        assert!((usage.headroom(later, 0) - 0.4).abs() < 1e-9);
        // 900 tokens used: 100 left, a request of 100 leaves nothing.
        usage.spend_tokens(900, later);
        assert!(usage.headroom(later, 100).abs() < 1e-9);
        assert!(usage.headroom(later, 200) < 0.0);
        // Used past the limit: the overshoot drains before there is room.
        usage.spend_tokens(300, later);
        let drained = later + Duration::from_secs(12);
        assert!(usage.headroom(drained, 0).abs() < 1e-9);
        let unlimited = Usage::new(DeploymentQuota::default());
        assert_eq!(unlimited.headroom(now, u64::MAX), f64::INFINITY);
        unlimited.spend_tokens(5, now);
        let zero = Usage::new(DeploymentQuota {
            rpm: Some(0),
            tpm: None,
        });
        assert_eq!(zero.headroom(now, 0), f64::NEG_INFINITY);
    }
}
