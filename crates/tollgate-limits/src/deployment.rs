//! [`DeploymentRateLimits`]: per-deployment rpm and tpm, for routing.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::check::store_key;
use crate::gcra::Quota;
use crate::store::Store;

/// What a deployment can still take at once under its rpm and tpm limits
/// (`None` where it has no such limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headroom {
    /// Requests it could take now.
    pub requests: Option<u64>,
    /// Tokens it could take now.
    pub tokens: Option<u64>,
}

/// Per-deployment rpm and tpm (LiteLLM's `litellm_params.rpm`/`tpm`) over
/// the same [`Store`] as the key limits, for a balancer doing usage-based
/// routing: ask [`would_admit`](Self::would_admit) (or compare
/// [`headroom`](Self::headroom)) while picking, [`record`](Self::record)
/// what was sent.
///
/// Advisory, not a lock: two replicas may both see room for the last
/// request, and `record` counts what was sent even past the limit (the
/// upstream enforces its own). Record the request when it is sent, and
/// its tokens (the estimate, or the real usage when it ends) as they are
/// known — `record` calls add up.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_limits::{DeploymentRateLimits, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let deployments = DeploymentRateLimits::new(Arc::new(MemoryStore::new()));
/// assert!(deployments.would_admit("gpt-4o/0", Some(2), Some(1000), 600).await);
/// deployments.record("gpt-4o/0", Some(2), Some(1000), 1, 600).await;
/// // 400 tokens left: a 600-token request would not fit.
/// assert!(!deployments.would_admit("gpt-4o/0", Some(2), Some(1000), 600).await);
/// assert!(deployments.would_admit("gpt-4o/0", Some(2), Some(1000), 400).await);
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

    /// What `deployment_id` can still take at once (a look, nothing taken).
    pub async fn headroom(
        &self,
        deployment_id: &str,
        rpm: Option<u32>,
        tpm: Option<u64>,
    ) -> Headroom {
        let now = Instant::now();
        let requests = match rpm {
            None => None,
            Some(0) => Some(0),
            Some(rpm) => Some(
                self.peek(
                    &store_key("deployment-rpm", deployment_id),
                    u64::from(rpm),
                    now,
                )
                .await,
            ),
        };
        let tokens = match tpm {
            None => None,
            Some(0) => Some(0),
            Some(tpm) => Some(
                self.peek(&store_key("deployment-tpm", deployment_id), tpm, now)
                    .await,
            ),
        };
        Headroom { requests, tokens }
    }

    /// Whether `deployment_id` has room for one more request of `tokens`
    /// under its limits (a request larger than the whole tpm limit fits
    /// when the deployment is idle).
    pub async fn would_admit(
        &self,
        deployment_id: &str,
        rpm: Option<u32>,
        tpm: Option<u64>,
        tokens: u64,
    ) -> bool {
        let headroom = self.headroom(deployment_id, rpm, tpm).await;
        let requests_fit = headroom.requests.is_none_or(|left| left >= 1);
        let tokens_fit = match (headroom.tokens, tpm) {
            (Some(left), Some(tpm)) => tpm > 0 && left >= tokens.min(tpm),
            _ => true,
        };
        requests_fit && tokens_fit
    }

    /// Counts `requests` requests and `tokens` tokens against
    /// `deployment_id`'s limits, whatever they say.
    pub async fn record(
        &self,
        deployment_id: &str,
        rpm: Option<u32>,
        tpm: Option<u64>,
        requests: u64,
        tokens: u64,
    ) {
        let now = Instant::now();
        if let Some(rpm) = rpm.filter(|&rpm| rpm > 0)
            && requests > 0
        {
            let key = store_key("deployment-rpm", deployment_id);
            let delta = i64::try_from(requests).unwrap_or(i64::MAX);
            self.store
                .adjust(&key, Quota::per_minute(u64::from(rpm)), delta, now)
                .await;
        }
        if let Some(tpm) = tpm.filter(|&tpm| tpm > 0)
            && tokens > 0
        {
            let key = store_key("deployment-tpm", deployment_id);
            let delta = i64::try_from(tokens).unwrap_or(i64::MAX);
            self.store
                .adjust(&key, Quota::per_minute(tpm), delta, now)
                .await;
        }
    }

    async fn peek(&self, key: &str, limit: u64, now: Instant) -> u64 {
        let decision = self.store.gcra(key, Quota::per_minute(limit), 0, now).await;
        if decision.allowed {
            decision.remaining
        } else {
            0
        }
    }
}

impl fmt::Debug for DeploymentRateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentRateLimits")
            .finish_non_exhaustive()
    }
}
