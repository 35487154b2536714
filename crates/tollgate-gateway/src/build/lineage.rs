//! [`Lineage`]: the configuration a new one is built after, and which of
//! its deployments are kept.

use std::sync::Arc;

use crate::FastMap;
use crate::generation::Identity;
use crate::http::App;

/// The configuration a new one is built after, if any: which deployments it
/// keeps.
pub(crate) struct Lineage<'a> {
    previous: Option<&'a App>,
    identities: &'a FastMap<Arc<str>, Identity>,
}

impl<'a> Lineage<'a> {
    pub(crate) fn new(
        previous: Option<&'a App>,
        identities: &'a FastMap<Arc<str>, Identity>,
    ) -> Self {
        Lineage {
            previous,
            identities,
        }
    }

    /// The running configuration, when this build is a reload.
    pub(crate) fn previous(&self) -> Option<&'a App> {
        self.previous
    }

    /// Whether deployment `id` is the same one in both configurations, so
    /// that its learned state carries over.
    pub(crate) fn kept(&self, id: &str) -> bool {
        self.previous.is_some_and(|previous| {
            let before = previous.generation.identities.get(id);
            before.is_some() && before == self.identities.get(id)
        })
    }
}
