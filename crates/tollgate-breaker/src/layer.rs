//! [`CircuitBreakerLayer`]: the layer.

use std::fmt;

use tollgate_core::classify::OpenAiClassifier;
use tower::Layer;

use crate::breakers::Breakers;
use tollgate_core::Valid;

use crate::config::BreakerConfig;
use crate::key::WholeService;
use crate::service::CircuitBreaker;

/// Applies per-key circuit breakers to a service.
///
/// The breakers ([`Breakers`]) are built with the layer, once; every service
/// the layer makes shares them, so applying it to many routes or clones
/// never forks a breaker. `layer()` creates no state.
///
/// `K` picks each request's key ([`WholeService`] by default: one breaker
/// for everything the layer wraps; [`key`](Self::key) to key by
/// deployment, host or anything else), `C` judges outcomes
/// ([`OpenAiClassifier`] by default).
pub struct CircuitBreakerLayer<K = WholeService, C = OpenAiClassifier> {
    key: K,
    classifier: C,
    breakers: Breakers,
}

impl CircuitBreakerLayer {
    /// Breakers with `config`, one for the whole wrapped service, judged by the OpenAI
    /// classifier; change either with [`key`](Self::key) and
    /// [`classifier`](Self::classifier).
    ///
    /// `config` was checked where it was loaded (see [`Valid`]).
    pub fn new(config: Valid<BreakerConfig>) -> Self {
        CircuitBreakerLayer::with_breakers(Breakers::new(config))
    }

    /// A layer over breakers built elsewhere (shared by several layers, or
    /// built with [`Breakers::with_jitter`]).
    pub fn with_breakers(breakers: Breakers) -> Self {
        CircuitBreakerLayer {
            key: WholeService,
            classifier: OpenAiClassifier::new(),
            breakers,
        }
    }
}

impl<K, C> CircuitBreakerLayer<K, C> {
    /// Picks each request's key with `key` instead.
    pub fn key<K2>(self, key: K2) -> CircuitBreakerLayer<K2, C> {
        CircuitBreakerLayer {
            key,
            classifier: self.classifier,
            breakers: self.breakers,
        }
    }

    /// Judges outcomes with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<K, C2> {
        CircuitBreakerLayer {
            key: self.key,
            classifier,
            breakers: self.breakers,
        }
    }

    /// The breakers, to read, watch or act on (a cheap clone).
    pub fn breakers(&self) -> Breakers {
        self.breakers.clone()
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for CircuitBreakerLayer<K, C> {
    type Service = CircuitBreaker<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            self.key.clone(),
            self.classifier.clone(),
            self.breakers.clone(),
        )
    }
}

impl<K: Clone, C: Clone> Clone for CircuitBreakerLayer<K, C> {
    fn clone(&self) -> Self {
        CircuitBreakerLayer {
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            breakers: self.breakers.clone(),
        }
    }
}

impl Default for CircuitBreakerLayer {
    /// Breakers with the default [`BreakerConfig`], one for the whole
    /// wrapped service.
    fn default() -> Self {
        CircuitBreakerLayer::with_breakers(Breakers::default())
    }
}

impl<K: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreakerLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("key", &self.key)
            .field("classifier", &self.classifier)
            .field("breakers", &self.breakers)
            .finish()
    }
}
