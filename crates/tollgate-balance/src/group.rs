//! [`Group`]: a model group's deployments and the balancer that chooses
//! among them; [`Groups`]: every group, by name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::extensions::Target;

use crate::balancer::{Balancer, Pick};
use crate::config::{MemberConfig, Strategy};
use crate::tried::Tried;
use tollgate_core::Availability;
use tollgate_core::DeploymentLimits;

/// Every model group, by name: what the [`Balance`](crate::Balance)
/// service looks a request's [`ModelGroup`](tollgate_core::extensions::ModelGroup)
/// up in. `T` is what the chosen deployment adds to the request (see
/// [`GroupMember::extension`]).
pub type Groups<T> = Arc<HashMap<Arc<str>, Arc<Group<T>>, foldhash::fast::RandomState>>;

/// The model group a request was routed to, resolved once by whatever
/// routed it (the gateway's handler, which checked it exists and the key
/// may use it): a request extension that [`Balance`](crate::Balance) uses
/// instead of looking the request's
/// [`ModelGroup`](tollgate_core::extensions::ModelGroup) up again. It only
/// counts while the two name the same group: a fallback cascade that moves
/// the request to another group renames its `ModelGroup`, and that group
/// is looked up.
pub struct ResolvedGroup<T>(pub Arc<Group<T>>);

impl<T> ResolvedGroup<T> {
    /// The group, if it is the one `name`s.
    pub fn named(&self, name: &str) -> Option<&Arc<Group<T>>> {
        (*self.0.name == *name).then_some(&self.0)
    }
}

impl<T> Clone for ResolvedGroup<T> {
    fn clone(&self) -> Self {
        ResolvedGroup(Arc::clone(&self.0))
    }
}

impl<T> std::fmt::Debug for ResolvedGroup<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ResolvedGroup").field(&self.0.name).finish()
    }
}

/// One deployment of a [`Group`], as it is built.
#[derive(Debug, Clone)]
pub struct GroupMember<T> {
    /// The deployment: its group, id and upstream model. Put in the request
    /// and in its response.
    pub target: Target,
    /// Its weight, order and limits. Its `id` is the target's
    /// `deployment_id`.
    pub config: MemberConfig,
    /// What the request to it carries besides the [`Target`] (a request
    /// extension): how the service below reaches it, for instance.
    pub extension: T,
}

/// A model group: its deployments, and the balancer that chooses among
/// them.
pub struct Group<T> {
    name: Arc<str>,
    members: Vec<(Target, T)>,
    balancer: Arc<Balancer>,
}

impl<T> std::fmt::Debug for Group<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self
            .members
            .iter()
            .map(|(target, _)| &*target.deployment_id)
            .collect();
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("deployments", &ids)
            .field("strategy", &self.balancer.strategy())
            .finish_non_exhaustive()
    }
}

impl<T> Group<T> {
    /// A group `name` of `members` (at least one), in file order, balanced
    /// by `strategy`, whose `rpm` and `tpm` are counted in `limits`.
    pub fn new(
        name: Arc<str>,
        strategy: Strategy,
        members: Vec<GroupMember<T>>,
        limits: Arc<dyn DeploymentLimits>,
    ) -> Self {
        let configs: Vec<MemberConfig> = members
            .iter()
            .map(|m| MemberConfig {
                id: Arc::clone(&m.target.deployment_id),
                ..m.config.clone()
            })
            .collect();
        Group {
            name,
            balancer: Arc::new(Balancer::new(strategy, &configs, limits)),
            members: members
                .into_iter()
                .map(|m| (m.target, m.extension))
                .collect(),
        }
    }

    /// Takes what `before` (the same group before a config reload) learned
    /// of each deployment that is `kept` (see [`Balancer::carry_over`]).
    pub fn carry_over(&mut self, before: &Group<T>, kept: impl Fn(&str) -> bool) {
        if let Some(balancer) = Arc::get_mut(&mut self.balancer) {
            balancer.carry_over(&before.balancer, kept);
        }
    }

    /// The group's name (its `model_name`).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The deployment for this attempt (see [`Balancer::pick`]); a
    /// deployment is out when `availability` says it is open (or when it
    /// is known to be at its limit). Only a group of several deployments
    /// looks.
    pub fn pick(&self, availability: &impl Availability, tried: &Tried, tokens: u64) -> Pick {
        self.balancer.pick(tried, tokens, |index| {
            availability.is_open(&self.members[index].0.deployment_id)
        })
    }

    /// Whether any deployment can take a request now: not open (a breaker
    /// whose open time is over lets a probe through).
    pub fn available(&self, availability: &impl Availability) -> bool {
        self.members
            .iter()
            .any(|(target, _)| !availability.is_open(&target.deployment_id))
    }

    /// When the first of its open deployments lets a call through again.
    pub fn next_probe_in(&self, availability: &impl Availability) -> Option<Duration> {
        self.members
            .iter()
            .filter_map(|(target, _)| availability.next_probe_in(&target.deployment_id))
            .min()
    }

    /// The deployments, in file order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&Target, &T)> {
        self.members
            .iter()
            .map(|(target, extension)| (target, extension))
    }

    /// The deployment at `index` (as [`pick`](Self::pick) gives).
    pub fn member(&self, index: usize) -> (&Target, &T) {
        let (target, extension) = &self.members[index];
        (target, extension)
    }

    /// The group's balancer.
    pub fn balancer(&self) -> &Arc<Balancer> {
        &self.balancer
    }
}
