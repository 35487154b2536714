//! [`Tried`]: the deployments one request has tried.

/// The deployments of its group one request has tried, as the balancer
/// reads them for a pick: a copy of the request's
/// [`TriedDeployments`](tollgate_core::extensions::TriedDeployments) (which
/// the retry layer puts on the request, and [`Balance`](crate::Balance)
/// marks each pick in).
///
/// Deployments past the 64th of a group are not remembered (never
/// preferred against, never avoided).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    mask: u64,
}

impl Tried {
    /// The deployments of `mask` (bit `i`: deployment `i`).
    pub fn from_mask(mask: u64) -> Self {
        Tried { mask }
    }

    /// Whether this request tried deployment `index`.
    pub fn contains(&self, index: usize) -> bool {
        index < 64 && self.mask & (1 << index) != 0
    }

    /// Remembers that this request tried deployment `index`.
    pub fn insert(&mut self, index: usize) {
        if index < 64 {
            self.mask |= 1 << index;
        }
    }
}
