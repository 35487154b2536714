//! The service stack a chat request goes through, below the HTTP edge.
//!
//! ```text
//! Fallback               model groups in turn; streams committed at first content, continued after a break
//!   Retry                backoff, Retry-After, budget; another deployment per attempt
//!     PickDeployment     balances the deployments of the group, open breakers left out
//!       CircuitBreaker   one breaker per deployment
//!         ProviderService   HTTP upstream (OpenRouter normalised) or mock; errors become Err(Failure)
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tollgate_breaker::{Breakers, CircuitBreaker, KeyExtractor};
use tollgate_core::classify::{OpenAiClassifier, OpenAiEos};
use tollgate_fallback::{Fallback, FallbackBody, FallbackLayer, Health};
use tollgate_retry::{Retry, RetryLayer};
use tower::Layer;

use crate::app::{Deployment, Groups};
use crate::pick::PickDeployment;
use crate::provider::{ProviderBody, ProviderService};
use crate::upstream::UpstreamClient;

/// The stack below the cascade: one model group.
type GroupStack = Retry<PickDeployment<CircuitBreaker<ProviderService, DeploymentBreakerKey>>>;

/// The stack's service.
pub(crate) type Stack = Fallback<GroupStack, GroupHealth>;

/// The body of the stack's responses.
pub(crate) type StackBody =
    FallbackBody<tollgate_breaker::ResponseBody<ProviderBody, OpenAiEos>, OpenAiEos>;

pub(crate) fn build(
    client: UpstreamClient,
    fallback: FallbackLayer,
    retry: RetryLayer,
    breakers: Breakers,
    groups: Groups,
) -> Stack {
    let health = GroupHealth {
        groups: groups.clone(),
        breakers: breakers.clone(),
    };
    let provider = ProviderService::new(client);
    let breaker = CircuitBreaker::new(
        provider,
        DeploymentBreakerKey,
        OpenAiClassifier::new(),
        breakers.clone(),
    );
    let group = retry.layer(PickDeployment::new(breaker, breakers, groups));
    fallback.with_health(health).layer(group)
}

/// Tells the cascade which model groups can take a request: those with a
/// deployment whose breaker is not open.
#[derive(Debug, Clone)]
pub(crate) struct GroupHealth {
    groups: Groups,
    breakers: Breakers,
}

impl Health for GroupHealth {
    fn available(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.available(&self.breakers))
    }

    fn retry_after(&self, group: &str) -> Option<Duration> {
        self.groups
            .get(group)
            .and_then(|g| g.next_probe_in(&self.breakers))
    }
}

/// Keys the breaker by the chosen deployment's id; a deployment whose
/// breaker is turned off (`cooldown_time: 0`) gets no key, so it is never
/// guarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeploymentBreakerKey;

impl<B> KeyExtractor<B> for DeploymentBreakerKey {
    fn extract<'a>(&'a self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        let deployment = request.extensions().get::<Arc<Deployment>>()?;
        deployment
            .breaker_enabled
            .then(|| Cow::Borrowed(&*deployment.target.deployment_id))
    }
}
