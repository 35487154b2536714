//! The service stack a chat request goes through, below the HTTP edge.
//!
//! ```text
//! Retry              backoff, Retry-After, budget; another deployment per attempt
//!   PickDeployment   one deployment of the model group per attempt, open breakers skipped
//!     CircuitBreaker one breaker per deployment
//!       ProviderService   HTTP upstream or mock; error statuses become Err(Failure)
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use http::Request;
use tollgate_breaker::{Breakers, CircuitBreaker, KeyExtractor};
use tollgate_core::classify::{OpenAiClassifier, OpenAiEos};
use tollgate_retry::{Retry, RetryLayer};
use tower::Layer;

use crate::app::{Deployment, Groups};
use crate::pick::PickDeployment;
use crate::provider::{ProviderBody, ProviderService};
use crate::upstream::UpstreamClient;

/// The stack's service.
pub(crate) type Stack =
    Retry<PickDeployment<CircuitBreaker<ProviderService, DeploymentBreakerKey>>>;

/// The body of the stack's responses.
pub(crate) type StackBody = tollgate_breaker::ResponseBody<ProviderBody, OpenAiEos>;

pub(crate) fn build(
    client: UpstreamClient,
    retry: RetryLayer,
    breakers: Breakers,
    groups: Groups,
) -> Stack {
    let provider = ProviderService::new(client);
    let breaker = CircuitBreaker::new(
        provider,
        DeploymentBreakerKey,
        OpenAiClassifier::new(),
        breakers.clone(),
    );
    retry.layer(PickDeployment::new(breaker, breakers, groups))
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
