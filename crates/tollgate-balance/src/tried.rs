//! [`Tried`]: the deployments one request has tried.

/// The deployments of its group one request has tried.
///
/// It lives in the [`Balance`](crate::Balance) service
/// that made the request's first call: the retry layer keeps that very
/// service to resend with (tower's `Retry` and `tollgate-retry` both do), so
/// its retries see what the earlier attempts chose, with no allocation, no
/// atomics and nothing added to the request. A clone starts empty, and an
/// attempt that does not follow the previous one (its [`Attempt`] number is
/// not higher) starts a new request — so a service reused for unrelated
/// requests forgets between them.
///
/// Deployments past the 64th of a group are not remembered (never
/// preferred against, never avoided).
///
/// [`Attempt`]: tollgate_core::extensions::Attempt
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    mask: u64,
    last_attempt: Option<u32>,
}

impl Tried {
    /// Begins attempt number `attempt`, forgetting earlier requests.
    pub fn begin(&mut self, attempt: u32) {
        if self.last_attempt.is_none_or(|last| attempt <= last) {
            self.mask = 0;
        }
        self.last_attempt = Some(attempt);
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

    /// Remembers that this request tried the deployments of `mask` (bit
    /// `i`: deployment `i`), as [`bit`](Self::bit) spells them.
    pub fn insert_mask(&mut self, mask: u64) {
        self.mask |= mask;
    }

    /// Deployment `index` as a bit of a mask (none past the 64th).
    pub fn bit(index: usize) -> u64 {
        if index < 64 { 1 << index } else { 0 }
    }
}
