//! [`DeploymentRateLimits`]: per-deployment rpm and tpm, for a balancer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tollgate_core::{Admission, AdmitFuture, DeploymentLimits, DeploymentQuota};

use crate::check::{settle_soon, store_key};
use crate::error::Limit;
use crate::gcra::{Decision, Quota};
use crate::store::{Claim, Store};

/// What a deployment with a limit of 0 is told to wait: a minute (it never
/// has room, but the configuration may change).
const ZERO_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What a deployment can still take at once under its rpm and tpm (`None`
/// where it has no such limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headroom {
    /// Requests it could take now.
    pub requests: Option<u64>,
    /// Tokens it could take now.
    pub tokens: Option<u64>,
}

/// The answer to [`DeploymentRateLimits::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentAdmission {
    /// Whether the request was admitted (and counted).
    pub admitted: bool,
    /// The limit that refused it: [`Limit::Requests`] or
    /// [`Limit::Tokens`] (the requests when both did).
    pub refused_by: Option<Limit>,
    /// When refused: how long until the same request would fit. Zero when
    /// admitted.
    pub retry_after: Duration,
    /// What is left after this request.
    pub headroom: Headroom,
}

/// Per-deployment rpm and tpm over the same [`Store`] as the key limits
/// (under keys of their own), shared by every replica when the store is.
///
/// - **rpm** is checked and counted when a request is sent:
///   [`admit`](Self::admit) takes one request cell, atomically, or refuses;
/// - **tpm** is counted from the usage after the answer
///   ([`record_tokens`](Self::record_tokens)), as LiteLLM counts it; a
///   request is admitted while the deployment's tokens have room for its
///   estimate (LiteLLM's `usage-based-routing-v2` rule). Requests in
///   flight are not counted yet, so a burst may overshoot the tpm by their
///   tokens; the upstream's own limit is the backstop.
///
/// Both are GCRA buckets of one minute ([`gcra`](crate::gcra)): a
/// deployment with rpm 60 takes 60 at once, then one a second. A check of
/// both is one store operation ([`Store::gcra_all`]): on Redis, one round
/// trip per admitted request.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_core::DeploymentQuota;
/// use tollgate_limits::{DeploymentRateLimits, Limit, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limits = DeploymentRateLimits::new(Arc::new(MemoryStore::new()));
/// let quota = DeploymentQuota { rpm: Some(2), tpm: Some(1000) };
/// assert!(limits.admit("gpt-4o/0", quota, 600).await.admitted);
/// limits.record_tokens("gpt-4o/0", quota, 700);
/// // 300 tokens left: a request of about 600 does not fit...
/// let refused = limits.admit("gpt-4o/0", quota, 600).await;
/// assert_eq!(refused.refused_by, Some(Limit::Tokens));
/// // ...one of 300 does, and takes the second request of the minute.
/// let admitted = limits.admit("gpt-4o/0", quota, 300).await;
/// assert_eq!(admitted.headroom.requests, Some(0));
/// # }
/// ```
#[derive(Clone)]
pub struct DeploymentRateLimits {
    store: Arc<dyn Store>,
}

impl DeploymentRateLimits {
    /// Limits kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        DeploymentRateLimits { store }
    }

    /// Admits one request of about `tokens` tokens to `deployment_id` when
    /// its rpm has a request left and its tpm room for `tokens` (capped at
    /// the tpm: a request larger than the whole limit goes when the
    /// deployment is idle), counting the request; or refuses it, counting
    /// nothing. One store operation.
    pub async fn admit(
        &self,
        deployment_id: &str,
        quota: DeploymentQuota,
        tokens: u64,
    ) -> DeploymentAdmission {
        if let Some(refused) = zero_limit(quota) {
            return refused;
        }
        let (rpm_key, tpm_key) = quota_keys(deployment_id, quota);
        let mut claims = Vec::with_capacity(2);
        if let (Some(rpm), Some(key)) = (quota.rpm, &rpm_key) {
            claims.push(Claim {
                key,
                quota: Quota::per_minute(rpm),
                need: 1,
                take: 1,
            });
        }
        if let (Some(tpm), Some(key)) = (quota.tpm, &tpm_key) {
            claims.push(Claim {
                key,
                quota: Quota::per_minute(tpm),
                need: tokens.min(tpm),
                take: 0,
            });
        }
        let decisions = self.store.gcra_all(&claims, Instant::now()).await;
        let mut decisions = decisions.iter();
        let requests = quota.rpm.and_then(|_| decisions.next());
        let tokens = quota.tpm.and_then(|_| decisions.next());
        admission(requests, tokens)
    }

    /// What `deployment_id` can still take at once (a look: nothing is
    /// taken). One store operation.
    pub async fn headroom(&self, deployment_id: &str, quota: DeploymentQuota) -> Headroom {
        if quota.rpm == Some(0) || quota.tpm == Some(0) {
            return zero_limit(quota).map(|a| a.headroom).unwrap_or_default();
        }
        let (rpm_key, tpm_key) = quota_keys(deployment_id, quota);
        let claims: Vec<Claim<'_>> = [(quota.rpm, &rpm_key), (quota.tpm, &tpm_key)]
            .into_iter()
            .filter_map(|(limit, key)| {
                Some(Claim {
                    key: key.as_deref()?,
                    quota: Quota::per_minute(limit?),
                    need: 0,
                    take: 0,
                })
            })
            .collect();
        let decisions = self.store.gcra_all(&claims, Instant::now()).await;
        let mut left = decisions.iter().map(|d| d.remaining);
        Headroom {
            requests: quota.rpm.and_then(|_| left.next()),
            tokens: quota.tpm.and_then(|_| left.next()),
        }
    }

    /// Counts `tokens` that an answer of `deployment_id` used against its
    /// tpm (nothing without one), whatever the limit says. Done at once on
    /// a store that answers at once ([`MemoryStore`](crate::MemoryStore)),
    /// else on a tokio task: the caller never waits for it.
    pub fn record_tokens(&self, deployment_id: &str, quota: DeploymentQuota, tokens: u64) {
        let Some(tpm) = quota.tpm.filter(|&tpm| tpm > 0) else {
            return;
        };
        if tokens == 0 {
            return;
        }
        let store = self.store.clone();
        let key = store_key("deployment-tpm", deployment_id);
        let delta = i64::try_from(tokens).unwrap_or(i64::MAX);
        settle_soon(async move {
            store
                .adjust(&key, Quota::per_minute(tpm), delta, Instant::now())
                .await;
        });
    }
}

/// The store keys of `deployment_id`'s `rpm` and `tpm` counters, for the
/// limits `quota` sets.
fn quota_keys(deployment_id: &str, quota: DeploymentQuota) -> (Option<String>, Option<String>) {
    (
        quota
            .rpm
            .map(|_| store_key("deployment-rpm", deployment_id)),
        quota
            .tpm
            .map(|_| store_key("deployment-tpm", deployment_id)),
    )
}

/// The refusal of a deployment with a limit of 0, if it has one.
fn zero_limit(quota: DeploymentQuota) -> Option<DeploymentAdmission> {
    let refused_by = if quota.rpm == Some(0) {
        Limit::Requests
    } else if quota.tpm == Some(0) {
        Limit::Tokens
    } else {
        return None;
    };
    Some(DeploymentAdmission {
        admitted: false,
        refused_by: Some(refused_by),
        retry_after: ZERO_LIMIT_RETRY_AFTER,
        headroom: Headroom {
            requests: quota.rpm.map(|_| 0),
            tokens: quota.tpm.map(|_| 0),
        },
    })
}

/// The admission the store's decisions make.
fn admission(requests: Option<&Decision>, tokens: Option<&Decision>) -> DeploymentAdmission {
    let refused = |d: Option<&Decision>| d.filter(|d| !d.allowed).map(|d| d.retry_after);
    let (refused_by, retry_after) = match (refused(requests), refused(tokens)) {
        (Some(wait), tokens) => (Some(Limit::Requests), wait.max(tokens.unwrap_or_default())),
        (None, Some(wait)) => (Some(Limit::Tokens), wait),
        (None, None) => (None, Duration::ZERO),
    };
    DeploymentAdmission {
        admitted: refused_by.is_none(),
        refused_by,
        retry_after,
        headroom: Headroom {
            requests: requests.map(|d| d.remaining),
            tokens: tokens.map(|d| d.remaining),
        },
    }
}

/// The balancer's view (`tollgate-balance`): the same admission, its
/// limit named by [`Limit::as_str`].
impl DeploymentLimits for DeploymentRateLimits {
    fn admit<'a>(
        &'a self,
        deployment: &'a str,
        quota: DeploymentQuota,
        tokens: u64,
    ) -> AdmitFuture<'a> {
        Box::pin(async move {
            let answer = DeploymentRateLimits::admit(self, deployment, quota, tokens).await;
            Admission {
                admitted: answer.admitted,
                refused_by: answer.refused_by.map(Limit::as_str),
                retry_after: answer.retry_after,
                requests_left: answer.headroom.requests,
                tokens_left: answer.headroom.tokens,
            }
        })
    }

    fn record_tokens(&self, deployment: &str, quota: DeploymentQuota, tokens: u64) {
        DeploymentRateLimits::record_tokens(self, deployment, quota, tokens);
    }
}

impl fmt::Debug for DeploymentRateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentRateLimits")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn limits() -> DeploymentRateLimits {
        DeploymentRateLimits::new(Arc::new(MemoryStore::new()))
    }

    const RPM_10: DeploymentQuota = DeploymentQuota {
        rpm: Some(10),
        tpm: None,
    };

    #[tokio::test(start_paused = true)]
    async fn rpm_admits_the_burst_then_one_per_interval() {
        let limits = limits();
        for left in (0..10).rev() {
            let admitted = limits.admit("d", RPM_10, 0).await;
            assert!(admitted.admitted);
            assert_eq!(admitted.headroom.requests, Some(left));
        }
        let refused = limits.admit("d", RPM_10, 0).await;
        assert_eq!(refused.refused_by, Some(Limit::Requests));
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert_eq!(refused.headroom.tokens, None);
        // A refusal takes nothing: the next cell comes back on time.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(limits.admit("d", RPM_10, 0).await.admitted);
        assert!(!limits.admit("d", RPM_10, 0).await.admitted);
        // Deployments count apart.
        assert!(limits.admit("other", RPM_10, 0).await.admitted);
    }

    #[tokio::test(start_paused = true)]
    async fn tpm_counts_the_usage_after_the_answer_and_checks_the_estimate() {
        let limits = limits();
        let quota = DeploymentQuota {
            rpm: None,
            tpm: Some(1000),
        };
        // Admitting looks at the tokens, counts none of them.
        for _ in 0..3 {
            let admitted = limits.admit("d", quota, 900).await;
            assert!(admitted.admitted);
            assert_eq!(admitted.headroom.tokens, Some(1000));
        }
        limits.record_tokens("d", quota, 700);
        assert_eq!(limits.headroom("d", quota).await.tokens, Some(300));
        let refused = limits.admit("d", quota, 400).await;
        assert_eq!(refused.refused_by, Some(Limit::Tokens));
        // 100 tokens short, 60 ms each.
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        assert!(limits.admit("d", quota, 300).await.admitted);
        // Past the limit: nothing fits until the overshoot drains, not
        // even an estimate of 0.
        limits.record_tokens("d", quota, 2000);
        let refused = limits.admit("d", quota, 0).await;
        assert_eq!(refused.refused_by, Some(Limit::Tokens));
        assert_eq!(refused.retry_after, Duration::from_secs(102));
        // A request larger than the whole limit goes once it is idle.
        tokio::time::advance(Duration::from_secs(162)).await;
        assert!(limits.admit("d", quota, 50_000).await.admitted);
    }

    #[tokio::test(start_paused = true)]
    async fn both_limits_take_the_request_only_when_both_fit() {
        let limits = limits();
        let quota = DeploymentQuota {
            rpm: Some(2),
            tpm: Some(100),
        };
        limits.record_tokens("d", quota, 80);
        let refused = limits.admit("d", quota, 50).await;
        assert_eq!(refused.refused_by, Some(Limit::Tokens));
        assert_eq!(
            refused.headroom,
            Headroom {
                requests: Some(2),
                tokens: Some(20)
            },
            "the request cell was not taken"
        );
        let admitted = limits.admit("d", quota, 20).await;
        assert!(admitted.admitted);
        assert_eq!(admitted.headroom.requests, Some(1));
        limits.admit("d", quota, 0).await;
        // Both refuse: the requests' limit is named, the longer wait given.
        limits.record_tokens("d", quota, 1000);
        let refused = limits.admit("d", quota, 0).await;
        assert_eq!(refused.refused_by, Some(Limit::Requests));
        assert!(refused.retry_after > Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn the_balancers_view_is_the_same_admission_with_its_limit_named() {
        let limits: Arc<dyn DeploymentLimits> = Arc::new(limits());
        let quota = DeploymentQuota {
            rpm: Some(1),
            tpm: Some(100),
        };
        let admitted = limits.admit("d", quota, 10).await;
        assert!(admitted.admitted);
        assert_eq!(
            (admitted.requests_left, admitted.tokens_left),
            (Some(0), Some(100))
        );
        limits.record_tokens("d", quota, 100);
        let refused = limits.admit("d", quota, 10).await;
        assert_eq!(refused.refused_by, Some("rpm"));
        assert!(refused.retry_after > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_of_zero_admits_nothing_and_no_limit_everything() {
        let limits = limits();
        let zero = DeploymentQuota {
            rpm: Some(0),
            tpm: Some(10),
        };
        let refused = limits.admit("d", zero, 0).await;
        assert_eq!(refused.refused_by, Some(Limit::Requests));
        assert_eq!(refused.retry_after, ZERO_LIMIT_RETRY_AFTER);
        assert_eq!(
            limits.headroom("d", zero).await,
            Headroom {
                requests: Some(0),
                tokens: Some(0)
            }
        );
        let no_tokens = DeploymentQuota {
            rpm: None,
            tpm: Some(0),
        };
        assert_eq!(
            limits.admit("d", no_tokens, 0).await.refused_by,
            Some(Limit::Tokens)
        );
        let unlimited = DeploymentQuota::default();
        assert!(!unlimited.is_limited());
        let admitted = limits.admit("d", unlimited, u64::MAX).await;
        assert!(admitted.admitted);
        assert_eq!(admitted.headroom, Headroom::default());
        limits.record_tokens("d", unlimited, 5);
        assert_eq!(limits.headroom("d", unlimited).await, Headroom::default());
    }
}
