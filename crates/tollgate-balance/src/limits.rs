//! [`DeploymentLimits`]: where a deployment's `rpm` and `tpm` are counted.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::Quota;

/// The answer of [`DeploymentLimits::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Whether the attempt may go.
    pub admitted: bool,
    /// The limit that refused it (`"rpm"`, `"tpm"`), for logs.
    pub refused_by: Option<&'static str>,
    /// When refused: how long until the deployment has room again.
    pub retry_after: Duration,
    /// Requests left in the current minute, when it has an `rpm`.
    pub requests_left: Option<u64>,
    /// Tokens left in the current minute, when it has a `tpm`.
    pub tokens_left: Option<u64>,
}

/// A future of [`DeploymentLimits::admit`].
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Admission> + Send + 'a>>;

/// Where the deployments' `rpm` and `tpm` are counted — one process's
/// memory, or a store the replicas share (the gateway adapts
/// `tollgate-limits`' `DeploymentRateLimits`). Only deployments with a
/// [`Quota`] are ever asked about.
pub trait DeploymentLimits: Send + Sync + 'static {
    /// Admits an attempt of about `tokens` tokens to `deployment`, counting
    /// the request, or says when it will have room.
    fn admit<'a>(&'a self, deployment: &'a str, quota: Quota, tokens: u64) -> AdmitFuture<'a>;

    /// Counts `tokens` an answer of `deployment` used against its `tpm`;
    /// never waits.
    fn record_tokens(&self, deployment: &str, quota: Quota, tokens: u64);
}

/// Counts nothing and admits everything: for groups without limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl DeploymentLimits for Unlimited {
    fn admit<'a>(&'a self, _: &'a str, _: Quota, _: u64) -> AdmitFuture<'a> {
        Box::pin(std::future::ready(Admission {
            admitted: true,
            ..Admission::default()
        }))
    }

    fn record_tokens(&self, _: &str, _: Quota, _: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unlimited_admits_every_attempt_and_counts_nothing() {
        let quota = Quota {
            rpm: Some(1),
            tpm: Some(1),
        };
        for _ in 0..3 {
            let admission = Unlimited.admit("d", quota, 1_000_000).await;
            assert!(admission.admitted);
            assert_eq!(admission.refused_by, None);
            Unlimited.record_tokens("d", quota, 1_000_000);
        }
    }
}
