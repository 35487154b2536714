//! [`UpstreamError`]: an inner service's unclassified error, paired with
//! its classification.

use std::fmt;

use crate::classify::ClassifyResponse;
use crate::failure::{BoxError, Failure};

/// The inner service failed without an answer (connect, reset, a timeout)
/// and its error carried no classification: this pairs it with one.
///
/// Its [`source`](std::error::Error::source) is the [`Failure`], so
/// [`Failure::find`] and [`Failure::from_error`] find it; the original error
/// stays available as [`cause`](Self::cause) for logs. Upstream *answers*
/// that are failures are returned as a bare boxed `Failure` instead.
///
/// ```
/// use tollgate_core::classify::OpenAiClassifier;
/// use tollgate_core::{BoxError, ErrorClass, Failure, UpstreamError};
///
/// let refused: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
/// let error = UpstreamError::classified(refused, &OpenAiClassifier::new());
/// let failure = Failure::find(&*error).expect("classified");
/// assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
/// assert!(error.downcast_ref::<UpstreamError>().is_some());
/// ```
#[derive(Debug)]
pub struct UpstreamError {
    failure: Failure,
    cause: BoxError,
}

impl UpstreamError {
    /// Pairs `cause` with its classification `failure`.
    pub fn new(failure: Failure, cause: BoxError) -> Self {
        UpstreamError { failure, cause }
    }

    /// The inner service's error as a layer hands it on: untouched when it
    /// (or one of its sources) already holds a [`Failure`], paired with
    /// `classifier`'s verdict on it otherwise.
    pub fn classified(error: BoxError, classifier: &impl ClassifyResponse) -> BoxError {
        if Failure::find(&*error).is_some() {
            return error;
        }
        let failure = classifier.classify_error(&*error);
        Box::new(UpstreamError::new(failure, error))
    }

    /// The classification.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// The inner service's own error.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.cause
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.failure, self.cause)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use crate::classify::OpenAiClassifier;

    #[test]
    fn a_classified_error_passes_untouched() {
        let inner: BoxError = Failure::new(ErrorClass::RateLimited, "slow down").into();
        let error = UpstreamError::classified(inner, &OpenAiClassifier::new());
        assert!(error.downcast_ref::<UpstreamError>().is_none());
        assert_eq!(
            Failure::find(&*error).map(Failure::class),
            Some(ErrorClass::RateLimited)
        );
    }

    #[test]
    fn an_unclassified_error_is_paired_and_shown_with_its_cause() {
        let inner: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        let error = UpstreamError::classified(inner, &OpenAiClassifier::new());
        let paired = error.downcast_ref::<UpstreamError>().expect("paired");
        assert_eq!(paired.failure().class(), ErrorClass::UpstreamUnavailable);
        assert!(paired.cause().is::<std::io::Error>());
        assert!(error.to_string().contains(&paired.cause().to_string()));
    }
}
