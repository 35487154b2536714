//! [`Health`]: which model groups are worth trying now.

use std::sync::Arc;
use std::time::Duration;

/// Tells the cascade whether a model group can serve a request now, so that
/// it skips groups whose every deployment is known to be down instead of
/// spending an attempt (and the client's time) on them.
///
/// The gateway implements it with its circuit breakers. `available` must
/// return `true` again once a probe would be admitted (a breaker's cooldown
/// has run out): a group reported unavailable is never called, so it could
/// never be seen to recover otherwise.
///
/// Closures `Fn(&str) -> bool` are `Health`s:
///
/// ```
/// use tollgate_fallback::FallbackLayer;
///
/// let down = ["gpt-4o"];
/// let layer = FallbackLayer::default().with_health(move |group: &str| !down.contains(&group));
/// # let _ = layer;
/// ```
pub trait Health: Send + Sync + 'static {
    /// Whether a request to `group` may succeed now.
    fn available(&self, group: &str) -> bool;

    /// When an unavailable `group` may be tried again, if known: the
    /// `Retry-After` of the failure the cascade returns when nothing at all
    /// was available.
    fn retry_after(&self, group: &str) -> Option<Duration> {
        let _ = group;
        None
    }
}

impl<F> Health for F
where
    F: Fn(&str) -> bool + Send + Sync + 'static,
{
    fn available(&self, group: &str) -> bool {
        self(group)
    }
}

impl<H: Health + ?Sized> Health for Arc<H> {
    fn available(&self, group: &str) -> bool {
        (**self).available(group)
    }

    fn retry_after(&self, group: &str) -> Option<Duration> {
        (**self).retry_after(group)
    }
}

/// The default [`Health`]: every group is always worth a try (the inner
/// service's own failures, a breaker's fast rejection among them, move the
/// cascade on).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAvailable;

impl Health for AlwaysAvailable {
    fn available(&self, _group: &str) -> bool {
        true
    }
}
