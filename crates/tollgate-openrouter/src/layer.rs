//! [`OpenRouterLayer`].

use std::sync::Arc;

use tollgate_core::Valid;
use tower::Layer;

use crate::classify::OpenRouterClassifier;
use crate::config::OpenRouterConfig;
use crate::request::Prepare;
use crate::service::OpenRouter;

/// Applies [`OpenRouter`] to a service: OpenRouter's requests and quirks on
/// one side, OpenAI's shape and Tollgate's error classes on the other.
///
/// The configuration is validated where it is loaded ([`Valid`]) and encoded
/// (base URL, header values) once, here; every service the layer makes
/// shares it.
#[derive(Debug, Clone)]
pub struct OpenRouterLayer {
    shared: Arc<Shared>,
}

/// What a layer's services share: read-only after the layer is built.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) prepare: Prepare,
    pub(crate) classifier: OpenRouterClassifier,
    pub(crate) max_body_bytes: usize,
}

impl OpenRouterLayer {
    /// A layer for `config`, checked where it was loaded (see
    /// [`OpenRouterConfig::build`]).
    pub fn new(config: Valid<OpenRouterConfig>) -> Self {
        OpenRouterLayer {
            shared: Arc::new(Shared {
                prepare: Prepare::encode(&config),
                classifier: OpenRouterClassifier::new(),
                max_body_bytes: config.max_body_bytes,
            }),
        }
    }

    /// Classifies with `classifier` (to inject its clock, say).
    pub fn with_classifier(mut self, classifier: OpenRouterClassifier) -> Self {
        Arc::make_mut(&mut self.shared).classifier = classifier;
        self
    }

    /// The classifier the layer decides with; layers above can watch its
    /// streams with the same one.
    pub fn classifier(&self) -> &OpenRouterClassifier {
        &self.shared.classifier
    }
}

impl Default for OpenRouterLayer {
    /// OpenRouter's public API, no key, no attribution headers.
    fn default() -> Self {
        OpenRouterLayer {
            shared: Arc::new(Shared {
                prepare: Prepare::public_api(),
                classifier: OpenRouterClassifier::new(),
                max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            }),
        }
    }
}

impl<S> Layer<S> for OpenRouterLayer {
    type Service = OpenRouter<S>;

    fn layer(&self, inner: S) -> OpenRouter<S> {
        OpenRouter::new(inner, self.shared.clone())
    }
}
