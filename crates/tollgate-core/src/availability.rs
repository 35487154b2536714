//! [`Availability`]: which deployments can take a call now.

use std::time::Duration;

use crate::failure::{BoxError, Failure};

/// Tells a balancer (`tollgate-balance`) which deployments are out —
/// typically those whose circuit breaker is open — as `tollgate-fallback`'s
/// `Health` tells the cascade which groups are. `tollgate-breaker`'s
/// `Breakers` implements it; a balancer over deployments without breakers
/// uses [`AlwaysAvailable`].
pub trait Availability: Send + Sync + 'static {
    /// Whether calls to `deployment` are rejected at once now (its breaker
    /// is open). A half-open breaker is not: its probes are how it closes.
    fn is_open(&self, deployment: &str) -> bool;

    /// When an open `deployment` lets a call through again, if known.
    fn next_probe_in(&self, deployment: &str) -> Option<Duration> {
        let _ = deployment;
        None
    }

    /// The failure `error` stands for when it is the rejection of a call by
    /// an open deployment (the breaker's `CircuitOpen`), else `None`. Such a
    /// rejection is not a measure of the deployment's latency, and, when no
    /// other deployment is available, goes up at once without a retry.
    fn rejection(error: &BoxError) -> Option<Failure>
    where
        Self: Sized,
    {
        let _ = error;
        None
    }
}

/// Every deployment always available: no breakers below.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAvailable;

impl Availability for AlwaysAvailable {
    fn is_open(&self, _: &str) -> bool {
        false
    }
}

impl<A: Availability> Availability for std::sync::Arc<A> {
    fn is_open(&self, deployment: &str) -> bool {
        (**self).is_open(deployment)
    }

    fn next_probe_in(&self, deployment: &str) -> Option<Duration> {
        (**self).next_probe_in(deployment)
    }

    fn rejection(error: &BoxError) -> Option<Failure> {
        A::rejection(error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::ErrorClass;

    use super::*;

    /// Deployment "down" is open for 5 s; every error is a rejection.
    struct OneDown;

    impl Availability for OneDown {
        fn is_open(&self, deployment: &str) -> bool {
            deployment == "down"
        }

        fn next_probe_in(&self, deployment: &str) -> Option<Duration> {
            self.is_open(deployment).then_some(Duration::from_secs(5))
        }

        fn rejection(_: &BoxError) -> Option<Failure> {
            Some(Failure::new(ErrorClass::UpstreamUnavailable, "open"))
        }
    }

    #[test]
    fn always_available_has_nothing_open_and_no_rejection() {
        let error: BoxError = "boom".into();
        assert!(!AlwaysAvailable.is_open("any"));
        assert_eq!(AlwaysAvailable.next_probe_in("any"), None);
        assert!(AlwaysAvailable::rejection(&error).is_none());
    }

    #[test]
    fn an_arc_answers_as_what_it_holds() {
        let shared = Arc::new(OneDown);
        let error: BoxError = "boom".into();
        assert!(shared.is_open("down"));
        assert!(!shared.is_open("up"));
        assert_eq!(shared.next_probe_in("down"), Some(Duration::from_secs(5)));
        assert_eq!(shared.next_probe_in("up"), None);
        let failure = <Arc<OneDown> as Availability>::rejection(&error).unwrap();
        assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    }
}
