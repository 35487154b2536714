//! The service stack a chat request goes through, below the HTTP edge.
//!
//! ```text
//! RateLimit              the key's rpm, tpm, parallel requests and budget; settled when the response ends
//! Hedge                  a slow stream of a hedged group asks its fallback in parallel
//! Fallback               model groups in turn; streams committed at first content, continued after a break
//!   Retry                backoff, Retry-After, budget; another deployment per attempt
//!     Balance            balances the deployments of the group, open breakers left out
//!       CircuitBreaker   one breaker per deployment
//!         Cost           one cost record per upstream attempt: usage, price, the ledger, the limits' UsageReport
//!           ProviderService   HTTP upstream (OpenRouter normalised) or mock; errors become Err(Failure)
//! ```

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::{Extensions, Request};
use tollgate_balance::{Balance, BalanceLayer};
use tollgate_breaker::{Breakers, CircuitBreaker, KeyExtractor};
use tollgate_core::classify::{OpenAiClassifier, OpenAiEos};
use tollgate_cost::{Cost, CostLayer};
use tollgate_fallback::{Fallback, FallbackLayer, Health};
use tollgate_limits::{RateLimit, RateLimitLayer};
use tollgate_retry::{Retry, RetryLayer};
use tower::Layer;

use crate::deployment::{Deployment, Groups};
use crate::hedge::{Hedge, HedgePlans};
use crate::provider::{ProviderBody, ProviderService};
use crate::upstream::UpstreamClient;

/// An empty extension map with room for the extensions a request gathers
/// on its way down the stack (the handler's, the cascade's, the
/// balancer's, the cost layer's: about ten). A clone of it is allocated
/// once at that size, where a fresh map grows three times on the way, each
/// time a rehash: every request starts from one. (An answer's map, which
/// hyper makes, is left to grow: moving its extensions into a roomy one
/// costs more than the growth.)
pub(crate) fn roomy_extensions() -> Extensions {
    static ROOMY: LazyLock<Extensions> = LazyLock::new(|| {
        // Types of their own, to make room with; `clear` keeps the room.
        #[derive(Clone)]
        struct Room<const N: usize>;
        let mut extensions = Extensions::new();
        extensions.insert(Room::<0>);
        extensions.insert(Room::<1>);
        extensions.insert(Room::<2>);
        extensions.insert(Room::<3>);
        extensions.insert(Room::<4>);
        extensions.insert(Room::<5>);
        extensions.insert(Room::<6>);
        extensions.insert(Room::<7>);
        extensions.clear();
        extensions
    });
    ROOMY.clone()
}

/// The stack below the cascade: one model group.
pub(crate) type GroupStack = Retry<Balance<Breaker, Breakers, Arc<Deployment>>>;

/// One deployment's breaker over its provider.
pub(crate) type Breaker = CircuitBreaker<Cost<ProviderService>, DeploymentBreakerKey>;

/// The stack's service.
pub(crate) type Stack = RateLimit<Hedge<Fallback<GroupStack, GroupHealth>>>;

/// The body of the stack's responses.
pub(crate) type StackBody = tollgate_limits::ResponseBody<
    tollgate_fallback::ResponseBody<
        tollgate_breaker::ResponseBody<
            tollgate_cost::ResponseBody<ProviderBody, OpenAiEos>,
            OpenAiEos,
        >,
        OpenAiEos,
    >,
>;

// One argument per configured layer: bundling them would only rename the list.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    client: UpstreamClient,
    fallback: FallbackLayer,
    retry: RetryLayer,
    breakers: Breakers,
    groups: Groups,
    cost: CostLayer,
    limits: RateLimitLayer,
    hedges: (HedgePlans, crate::metrics::Metrics),
) -> Stack {
    let health = GroupHealth {
        groups: groups.clone(),
        breakers: breakers.clone(),
    };
    // Below the breaker: only calls that reach an upstream are attempts.
    let provider = cost.layer(ProviderService::new(client));
    let breaker = CircuitBreaker::new(
        provider,
        DeploymentBreakerKey,
        OpenAiClassifier::new(),
        breakers.clone(),
    );
    let balance = BalanceLayer::new(breakers, groups.clone());
    let group = retry.layer(balance.layer(breaker));
    let cascade = fallback.with_health(health).layer(group);
    let (plans, metrics) = hedges;
    let hedge = Hedge::new(cascade, plans, groups, metrics);
    limits.layer(hedge)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roomy_extensions_start_empty_and_take_what_is_inserted() {
        let mut extensions = roomy_extensions();
        assert!(extensions.is_empty());
        extensions.insert(7u32);
        extensions.insert("name");
        assert_eq!(extensions.len(), 2);
        assert_eq!(extensions.get::<u32>(), Some(&7));
        // A clone for the next request is empty again.
        assert!(roomy_extensions().is_empty());
    }
}
