//! [`RetryLayer`].

use std::fmt;
use std::sync::Arc;

use tollgate_core::Valid;
use tollgate_core::classify::OpenAiClassifier;
use tower::Layer;

use crate::budget::RetryBudget;
use crate::config::RetryConfig;
use crate::jitter::RandomJitter;
use crate::service::{Retry, Shared};
use crate::state::Policy;

/// Applies [`Retry`] to a service: retries failed attempts with exponential
/// backoff and full jitter, honouring `Retry-After`, the request's deadline,
/// a per-class policy and a retry budget.
///
/// The layer owns the shared state — the [`RetryBudget`] and the jitter
/// source — built once in [`RetryLayer::new`]; every service it makes
/// ([`Layer::layer`], once per route in axum) draws from the same budget.
///
/// `C` decides what a failed response is (the default understands
/// OpenAI-compatible upstreams); `R` draws the jitter.
pub struct RetryLayer<C = OpenAiClassifier, R = RandomJitter> {
    policy: Policy,
    classifier: C,
    budget: Arc<RetryBudget>,
    jitter: Arc<R>,
}

impl RetryLayer {
    /// A layer with `config` (checked where it was loaded: see
    /// [`Valid`]), the OpenAI classifier and random jitter.
    pub fn new(config: Valid<RetryConfig>) -> Self {
        RetryLayer::from_valid(&config)
    }

    fn from_valid(config: &RetryConfig) -> Self {
        RetryLayer {
            policy: Policy::new(config),
            classifier: OpenAiClassifier::new(),
            budget: Arc::new(RetryBudget::from_valid(&config.budget)),
            jitter: Arc::new(RandomJitter::new()),
        }
    }
}

impl Default for RetryLayer {
    /// A layer with the default [`RetryConfig`] (which is valid: a unit test
    /// says so).
    fn default() -> Self {
        RetryLayer::from_valid(&RetryConfig::default())
    }
}

impl<C, R> RetryLayer<C, R> {
    /// Decides what a failed response is with `classifier` (a provider's own,
    /// say) instead.
    pub fn with_classifier<C2>(self, classifier: C2) -> RetryLayer<C2, R> {
        RetryLayer {
            policy: self.policy,
            classifier,
            budget: self.budget,
            jitter: self.jitter,
        }
    }

    /// Draws the backoff jitter from `jitter` (a fixed `|| 1.0` in tests).
    pub fn with_jitter<R2>(self, jitter: R2) -> RetryLayer<C, R2> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            budget: self.budget,
            jitter: Arc::new(jitter),
        }
    }

    /// Draws retries from `budget`, shared with whoever else holds it (one
    /// budget for several layers), instead of the layer's own.
    pub fn with_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The budget the layer's services draw from.
    pub fn budget(&self) -> &Arc<RetryBudget> {
        &self.budget
    }
}

impl<S, C: Clone, R> Layer<S> for RetryLayer<C, R> {
    type Service = Retry<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        // Only handles to the layer's state are bundled here; the budget
        // and the jitter source stay the layer's.
        Retry::new(
            inner,
            Arc::new(Shared {
                policy: self.policy.clone(),
                classifier: self.classifier.clone(),
                budget: self.budget.clone(),
                jitter: self.jitter.clone(),
            }),
        )
    }
}

impl<C: Clone, R> Clone for RetryLayer<C, R> {
    fn clone(&self) -> Self {
        RetryLayer {
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            budget: self.budget.clone(),
            jitter: self.jitter.clone(),
        }
    }
}

impl<C: fmt::Debug, R> fmt::Debug for RetryLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .field("classifier", &self.classifier)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}
