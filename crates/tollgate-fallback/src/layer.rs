//! [`FallbackLayer`].

use std::fmt;
use std::sync::Arc;

use tollgate_core::Valid;
use tollgate_core::classify::OpenAiClassifier;
use tower::Layer;

use crate::config::FallbackConfig;

use crate::health::{AlwaysAvailable, Health};
use crate::service::{Fallback, Shared};
use crate::state::Plan;

/// Applies [`Fallback`] to a service: runs each request through a cascade of
/// model groups, with streams that commit at their first content and are
/// continued elsewhere when they break after it.
///
/// The layer holds the rules (built once, in [`FallbackLayer::new`]), the
/// [`Health`] source and the classifier; every service it makes
/// ([`Layer::layer`], once per route in axum) shares them. The cascade keeps
/// no state between requests.
///
/// `H` tells which groups are available (by default, all); `C` decides what
/// a failed response is (the default understands OpenAI-compatible
/// upstreams).
pub struct FallbackLayer<H = AlwaysAvailable, C = OpenAiClassifier> {
    plan: Arc<Plan>,
    health: Arc<H>,
    classifier: C,
}

impl FallbackLayer {
    /// A layer with `config`, every group available, and the OpenAI
    /// classifier.
    ///
    /// `config` was checked where it was loaded (see [`Valid`]).
    pub fn new(config: Valid<FallbackConfig>) -> Self {
        FallbackLayer::from_valid(&config)
    }

    fn from_valid(config: &FallbackConfig) -> Self {
        FallbackLayer {
            plan: Arc::new(Plan::new(config)),
            health: Arc::new(AlwaysAvailable),
            classifier: OpenAiClassifier::new(),
        }
    }
}

impl Default for FallbackLayer {
    /// A layer with no fallback lists: streams still commit at their first
    /// content and are continued on their own group when they break.
    fn default() -> Self {
        FallbackLayer::from_valid(&FallbackConfig::default())
    }
}

impl<H, C> FallbackLayer<H, C> {
    /// Skips the groups `health` says are unavailable (the gateway's circuit
    /// breakers, say).
    pub fn with_health<H2: Health>(self, health: H2) -> FallbackLayer<H2, C> {
        FallbackLayer {
            plan: self.plan,
            health: Arc::new(health),
            classifier: self.classifier,
        }
    }

    /// Decides what a failed response is with `classifier` (a provider's own,
    /// say) instead.
    pub fn with_classifier<C2>(self, classifier: C2) -> FallbackLayer<H, C2> {
        FallbackLayer {
            plan: self.plan,
            health: self.health,
            classifier,
        }
    }
}

impl<S, H, C: Clone> Layer<S> for FallbackLayer<H, C> {
    type Service = Fallback<S, H, C>;

    fn layer(&self, inner: S) -> Self::Service {
        // Only handles to the layer's rules and health source are bundled
        // here.
        Fallback::new(
            inner,
            Arc::new(Shared {
                plan: self.plan.clone(),
                health: self.health.clone(),
                classifier: self.classifier.clone(),
            }),
        )
    }
}

impl<H, C: Clone> Clone for FallbackLayer<H, C> {
    fn clone(&self) -> Self {
        FallbackLayer {
            plan: self.plan.clone(),
            health: self.health.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<H, C: fmt::Debug> fmt::Debug for FallbackLayer<H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("plan", &self.plan)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
