//! [`DeploymentLimits`]: where a deployment's `rpm` and `tpm` are counted —
//! the contract between the balancer that asks (`tollgate-balance`) and the
//! store that counts (`tollgate-limits`' `DeploymentRateLimits`), so that
//! neither depends on the other and nothing adapts one to the other.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A deployment's limits: LiteLLM's `litellm_params.rpm` (requests per
/// minute) and `tpm` (tokens per minute, prompt and completion). `None` is
/// no limit; 0 admits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DeploymentQuota {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

impl DeploymentQuota {
    /// Whether it limits anything.
    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// The answer of [`DeploymentLimits::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Whether the attempt may go (and was counted).
    pub admitted: bool,
    /// The limit that refused it (`"rpm"`, `"tpm"`), for logs.
    pub refused_by: Option<&'static str>,
    /// When refused: how long until the deployment has room again. Zero
    /// when admitted.
    pub retry_after: Duration,
    /// Requests left in the current minute, when it has an `rpm`.
    pub requests_left: Option<u64>,
    /// Tokens left in the current minute, when it has a `tpm`.
    pub tokens_left: Option<u64>,
}

/// A future of [`DeploymentLimits::admit`].
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Admission> + Send + 'a>>;

/// Where the deployments' `rpm` and `tpm` are counted — one process's
/// memory, or a store the replicas share. Only deployments with a
/// [`DeploymentQuota`] that [`is_limited`](DeploymentQuota::is_limited) are
/// ever asked about.
///
/// ```
/// use tollgate_core::{DeploymentLimits, DeploymentQuota, Unlimited};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let quota = DeploymentQuota { rpm: Some(1), tpm: None };
/// assert!(Unlimited.admit("gpt-4o/0", quota, 10).await.admitted);
/// # }
/// ```
pub trait DeploymentLimits: Send + Sync + 'static {
    /// Admits an attempt of about `tokens` tokens to `deployment`, counting
    /// the request, or says when it will have room.
    fn admit<'a>(
        &'a self,
        deployment: &'a str,
        quota: DeploymentQuota,
        tokens: u64,
    ) -> AdmitFuture<'a>;

    /// Counts `tokens` an answer of `deployment` used against its `tpm`;
    /// never waits.
    fn record_tokens(&self, deployment: &str, quota: DeploymentQuota, tokens: u64);
}

/// Counts nothing and admits everything: for groups without limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl DeploymentLimits for Unlimited {
    fn admit<'a>(&'a self, _: &'a str, _: DeploymentQuota, _: u64) -> AdmitFuture<'a> {
        Box::pin(std::future::ready(Admission {
            admitted: true,
            ..Admission::default()
        }))
    }

    fn record_tokens(&self, _: &str, _: DeploymentQuota, _: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unlimited_admits_every_attempt_and_counts_nothing() {
        let quota = DeploymentQuota {
            rpm: Some(1),
            tpm: Some(1),
        };
        assert!(quota.is_limited());
        assert!(!DeploymentQuota::default().is_limited());
        for _ in 0..3 {
            let admission = Unlimited.admit("d", quota, 1_000_000).await;
            assert!(admission.admitted);
            assert_eq!(admission.refused_by, None);
            Unlimited.record_tokens("d", quota, 1_000_000);
        }
    }
}
