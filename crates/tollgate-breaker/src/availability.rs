//! [`Breakers`] as a balancer's [`Availability`]: a deployment whose breaker
//! is open is out.

use std::time::Duration;

use tollgate_core::{Availability, BoxError, Failure};

use crate::breakers::Breakers;
use crate::error::CircuitOpen;

/// Tells a balancer (`tollgate-balance`) which deployments' breakers are
/// open, keyed by deployment id. A key without a breaker (never
/// registered, never called) is never open; a half-open breaker is not open
/// either: its probes are how it closes. The rejection it recognizes is
/// [`CircuitOpen`].
impl Availability for Breakers {
    fn is_open(&self, deployment: &str) -> bool {
        self.is_open_now(deployment)
    }

    fn next_probe_in(&self, deployment: &str) -> Option<Duration> {
        self.snapshot(deployment)?.next_probe_in()
    }

    fn rejection(error: &BoxError) -> Option<Failure> {
        error
            .downcast_ref::<CircuitOpen>()
            .map(|open| open.failure().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_is_out_until_its_probe_and_its_rejection_is_known() {
        let breakers = Breakers::default();
        breakers.register("d/0");
        assert!(!breakers.is_open("d/0"));
        assert!(!breakers.is_open("unknown"));
        assert_eq!(Availability::next_probe_in(&breakers, "unknown"), None);

        assert!(breakers.force_open("d/0", Duration::from_secs(5)));
        assert!(breakers.is_open("d/0"));
        let probe = Availability::next_probe_in(&breakers, "d/0").expect("open");
        assert!(probe <= Duration::from_secs(5));

        let rejection: BoxError = Box::new(CircuitOpen::new("d/0".into(), Some(probe)));
        assert!(<Breakers as Availability>::rejection(&rejection).is_some());
        let other: BoxError = "boom".into();
        assert!(<Breakers as Availability>::rejection(&other).is_none());

        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!breakers.is_open("d/0"), "half-open: its probes may go");
    }
}
