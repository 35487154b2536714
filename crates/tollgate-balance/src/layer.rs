//! [`BalanceLayer`]: puts a [`Balance`] over a service.

use tower::Layer;

use crate::group::Groups;
use crate::service::Balance;

/// Balances the requests to the wrapped service over the deployments of
/// its model groups (see [`Balance`]).
#[derive(Debug)]
pub struct BalanceLayer<A, T> {
    availability: A,
    groups: Groups<T>,
}

impl<A, T> BalanceLayer<A, T> {
    /// A layer over `groups`, leaving out the deployments `availability`
    /// says are open.
    pub fn new(availability: A, groups: Groups<T>) -> Self {
        BalanceLayer {
            availability,
            groups,
        }
    }
}

impl<A: Clone, T> Clone for BalanceLayer<A, T> {
    fn clone(&self) -> Self {
        BalanceLayer::new(self.availability.clone(), self.groups.clone())
    }
}

impl<S, A: Clone, T> Layer<S> for BalanceLayer<A, T> {
    type Service = Balance<S, A, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Balance::new(inner, self.availability.clone(), self.groups.clone())
    }
}
