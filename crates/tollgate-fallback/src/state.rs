//! The cascade's decisions, as pure logic: which group to try next after a
//! failure, and which group to ask to continue a broken stream. No I/O, no
//! time: the service and the body act on what these say.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tollgate_core::extensions::{AllowedGroups, RequestFallbacks};
use tollgate_core::{ErrorClass, Failure, Scope};

use crate::config::{FallbackConfig, GroupFallbacks};
use crate::error::StopReason;

/// A model group's name, shared: it becomes each attempt's
/// [`ModelGroup`](tollgate_core::extensions::ModelGroup) without a copy.
pub(crate) type Group = Arc<str>;

/// The rules of a [`FallbackConfig`], indexed for lookups.
#[derive(Debug)]
pub(crate) struct Plan {
    fallbacks: HashMap<Group, Box<[Group]>>,
    context_window: HashMap<Group, Box<[Group]>>,
    content_policy: HashMap<Group, Box<[Group]>>,
    default: Box<[Group]>,
    targets: HashMap<Group, Meta>,
    pub(crate) max_fallbacks: u32,
    pub(crate) max_continuations: u32,
    pub(crate) max_commit_bytes: usize,
}

#[derive(Debug)]
struct Meta {
    pool: Option<Group>,
    prefill: bool,
}

/// The lists a request named in its body (LiteLLM's client-side
/// fallbacks), in place of the plan's lists of the same kind: the requested
/// group's list is the body's, and no other group has one of that kind (the
/// body's groups are tried in order, LiteLLM's loop over them, without the
/// config's nesting).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requested<'a> {
    origin: &'a str,
    lists: Option<&'a RequestFallbacks>,
}

impl<'a> Requested<'a> {
    /// `group`'s list of the kind `kind` picks, when the body named that
    /// kind.
    fn list(
        self,
        group: &str,
        kind: fn(&'a RequestFallbacks) -> Option<&'a [Group]>,
    ) -> Option<&'a [Group]> {
        let list = kind(self.lists?)?;
        Some(if group == self.origin { list } else { &[] })
    }
}

fn index(lists: &[GroupFallbacks]) -> HashMap<Group, Box<[Group]>> {
    lists
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(group, list)| {
            let list = list.iter().map(|g| Group::from(g.as_str())).collect();
            (Group::from(group.as_str()), list)
        })
        .collect()
}

impl Plan {
    pub(crate) fn new(config: &FallbackConfig) -> Self {
        Plan {
            fallbacks: index(&config.fallbacks),
            context_window: index(&config.context_window_fallbacks),
            content_policy: index(&config.content_policy_fallbacks),
            default: config
                .default_fallbacks
                .iter()
                .map(|g| Group::from(g.as_str()))
                .collect(),
            targets: config
                .targets
                .iter()
                .map(|(group, info)| {
                    let meta = Meta {
                        pool: info.pool.as_deref().map(Group::from),
                        prefill: info.supports_assistant_prefill,
                    };
                    (Group::from(group.as_str()), meta)
                })
                .collect(),
            max_fallbacks: config.max_fallbacks,
            max_continuations: config.max_continuations,
            max_commit_bytes: config.max_commit_bytes,
        }
    }

    /// Whether any failure of `group` could lead to another group: when not,
    /// a request needs no copy kept for a second attempt.
    pub(crate) fn may_fall_back(&self, group: &str) -> bool {
        self.max_fallbacks > 0
            && (!self.default.is_empty()
                || self.fallbacks.contains_key(group)
                || self.context_window.contains_key(group)
                || self.content_policy.contains_key(group))
    }

    fn pool(&self, group: &str) -> Option<&Group> {
        self.targets.get(group)?.pool.as_ref()
    }

    fn takes_prefill(&self, group: &str) -> bool {
        self.targets.get(group).is_none_or(|meta| meta.prefill)
    }

    /// The body's `fallbacks`, else `fallbacks[group]`, else
    /// `default_fallbacks`.
    fn generic<'a>(&'a self, group: &str, requested: Requested<'a>) -> &'a [Group] {
        requested
            .list(group, |lists| lists.fallbacks.as_deref())
            .or_else(|| self.fallbacks.get(group).map(|list| &list[..]))
            .unwrap_or(&self.default[..])
    }

    /// The body's `context_window_fallbacks`, else
    /// `context_window_fallbacks[group]`, else the generic list.
    fn context_window<'a>(&'a self, group: &str, requested: Requested<'a>) -> &'a [Group] {
        requested
            .list(group, |lists| lists.context_window.as_deref())
            .or_else(|| self.context_window.get(group).map(|list| &list[..]))
            .unwrap_or_else(|| self.generic(group, requested))
    }

    fn content_policy<'a>(&'a self, group: &str, requested: Requested<'a>) -> &'a [Group] {
        requested
            .list(group, |lists| lists.content_policy.as_deref())
            .or_else(|| self.content_policy.get(group).map(|list| &list[..]))
            .unwrap_or(&[])
    }

    /// The list a failure of `group` before any content moves on to, or why
    /// it does not move on. The failure's own verdict
    /// ([`Failure::is_fallback_eligible`]) decides, except for the two
    /// classes with lists of their own and for pool-wide rate limits.
    fn rule<'a>(
        &'a self,
        group: &str,
        failure: &Failure,
        requested: Requested<'a>,
    ) -> Result<&'a [Group], StopReason> {
        match failure.class() {
            // Only an explicit list hides a refusal behind another model.
            ErrorClass::ContentPolicy => match self.content_policy(group, requested) {
                [] => Err(StopReason::NotEligible),
                list => Ok(list),
            },
            ErrorClass::ContextWindowExceeded if failure.is_fallback_eligible() => {
                Ok(self.context_window(group, requested))
            }
            _ if failure.is_fallback_eligible() => Ok(self.generic(group, requested)),
            // The pool is exhausted, not the world: groups outside it may
            // answer (the failure itself says "not eligible" because the
            // next group of the same pool would not).
            _ if is_pool_wide(failure) && self.pool(group).is_some() => {
                Ok(self.generic(group, requested))
            }
            _ => Err(StopReason::NotEligible),
        }
    }

    /// The list a break after content moves on to. The class decides, not
    /// the failure's own verdict: a provider marks a failure after content as
    /// "not for another target" because the client has the first part of
    /// the answer, which is exactly what a continuation takes care of.
    fn break_rule<'a>(
        &'a self,
        group: &str,
        cause: &Failure,
        requested: Requested<'a>,
    ) -> &'a [Group] {
        match cause.class() {
            ErrorClass::ContentPolicy => self.content_policy(group, requested),
            ErrorClass::ContextWindowExceeded => self.context_window(group, requested),
            class if class.fallback_eligible() || class == ErrorClass::StreamInterrupted => {
                self.generic(group, requested)
            }
            _ => &[],
        }
    }
}

fn is_pool_wide(failure: &Failure) -> bool {
    failure.scope() == Some(Scope::AccountFreePool)
}

/// Whether asking the group whose stream broke to continue may help: the
/// break was the transport's or the upstream's passing trouble, not a
/// verdict on the content, and not its pool running dry.
fn same_group_may_continue(cause: &Failure) -> bool {
    matches!(
        cause.class(),
        ErrorClass::RateLimited
            | ErrorClass::Timeout
            | ErrorClass::UpstreamUnavailable
            | ErrorClass::StreamInterrupted
    ) && !is_pool_wide(cause)
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Call this group.
    Try(Group),
    /// Stop, and hand the last outcome up.
    Stop(StopReason),
}

/// One request's way through the groups: what was tried, what is queued,
/// which pools are spent.
#[derive(Debug)]
pub(crate) struct Cascade {
    origin: Group,
    current: Group,
    /// Groups attempted or skipped, besides the origin: none is tried twice
    /// before content.
    seen: Vec<Group>,
    /// Groups that failed before giving any content.
    failed: Vec<Group>,
    /// Groups to try, in order: the failing group's list goes first, so a
    /// fallback's own fallbacks come before its siblings (LiteLLM's nesting).
    queue: VecDeque<Group>,
    spent_pools: Vec<Group>,
    fallbacks: u32,
    /// The group whose stream broke last: its rules pick the groups that
    /// may continue.
    broken: Option<Group>,
    /// Groups asked to continue a broken stream; each is asked once.
    continued: Vec<Group>,
    continuations: u32,
    /// The groups the request may go to (its key's), when limited.
    pub(crate) allowed: Option<AllowedGroups>,
    /// The fallbacks the request named in its body, if any.
    pub(crate) requested: Option<Arc<RequestFallbacks>>,
}

impl Cascade {
    /// Whether the request may go to `group` (its key's groups), as a
    /// predicate that does not borrow the cascade.
    pub(crate) fn allowed(&self) -> impl Fn(&str) -> bool + use<> {
        let allowed = self.allowed.clone();
        move |group| allowed.as_ref().is_none_or(|a| a.allows(group))
    }

    pub(crate) fn new(origin: Group) -> Self {
        Cascade {
            current: origin.clone(),
            origin,
            seen: Vec::new(),
            failed: Vec::new(),
            queue: VecDeque::new(),
            spent_pools: Vec::new(),
            fallbacks: 0,
            broken: None,
            continued: Vec::new(),
            continuations: 0,
            allowed: None,
            requested: None,
        }
    }

    /// The body's lists (a clone of the `Arc`, so that what they lend does
    /// not borrow the cascade) and the origin they apply to.
    fn requested(&self) -> (Option<Arc<RequestFallbacks>>, Group) {
        (self.requested.clone(), self.origin.clone())
    }

    /// Whether any failure of the requested group could lead to another
    /// group: when not, a request needs no copy kept for a second attempt.
    pub(crate) fn may_fall_back(&self, plan: &Plan) -> bool {
        let from_body = self.requested.as_deref().is_some_and(|lists| {
            plan.max_fallbacks > 0
                && [
                    &lists.fallbacks,
                    &lists.context_window,
                    &lists.content_policy,
                ]
                .into_iter()
                .flatten()
                .any(|list| !list.is_empty())
        });
        from_body || plan.may_fall_back(&self.origin)
    }

    /// The group tried last.
    pub(crate) fn current(&self) -> &Group {
        &self.current
    }

    /// Fallback groups tried so far, the current one included.
    pub(crate) fn fallbacks(&self) -> u32 {
        self.fallbacks
    }

    /// Continuation requests made so far.
    pub(crate) fn continuations(&self) -> u32 {
        self.continuations
    }

    /// The first group: the client's, unless it is unavailable, in which case
    /// its fallbacks are tried as if it had failed.
    pub(crate) fn first(&mut self, plan: &Plan, available: &dyn Fn(&str) -> bool) -> Step {
        if available(&self.origin) {
            return Step::Try(self.origin.clone());
        }
        tracing::debug!(group = %self.origin, "fallback: skipping an unavailable model group");
        let (lists, origin) = self.requested();
        let requested = Requested {
            origin: &origin,
            lists: lists.as_deref(),
        };
        let list = plan.generic(&origin, requested);
        self.enqueue(list);
        match self.pop(plan, available) {
            Step::Try(group) => Step::Try(group),
            Step::Stop(_) => Step::Stop(StopReason::NoneAvailable),
        }
    }

    /// The current group failed before any content reached the client:
    /// where next.
    pub(crate) fn failed(
        &mut self,
        plan: &Plan,
        failure: &Failure,
        available: &dyn Fn(&str) -> bool,
    ) -> Step {
        let group = self.current.clone();
        self.failed.push(group.clone());
        let (lists, origin) = self.requested();
        let requested = Requested {
            origin: &origin,
            lists: lists.as_deref(),
        };
        let list = match plan.rule(&group, failure, requested) {
            Ok(list) => list,
            Err(reason) => return Step::Stop(reason),
        };
        self.spend_pool(plan, &group, failure);
        self.enqueue(list);
        self.pop(plan, available)
    }

    fn spend_pool(&mut self, plan: &Plan, group: &str, failure: &Failure) {
        if is_pool_wide(failure)
            && let Some(pool) = plan.pool(group)
            && !self.spent_pools.contains(pool)
        {
            self.spent_pools.push(pool.clone());
        }
    }

    fn pool_spent(&self, plan: &Plan, group: &str) -> bool {
        plan.pool(group)
            .is_some_and(|pool| self.spent_pools.contains(pool))
    }

    /// Whether `group` was attempted or skipped already. The origin always
    /// was: not keeping it in a list spares the common request, answered by
    /// its own group, an allocation.
    fn seen(&self, group: &Group) -> bool {
        *group == self.origin || self.seen.contains(group)
    }

    fn enqueue(&mut self, list: &[Group]) {
        for group in list.iter().rev() {
            if self.seen(group) {
                continue;
            }
            if let Some(at) = self.queue.iter().position(|g| g == group) {
                self.queue.remove(at);
            }
            self.queue.push_front(group.clone());
        }
    }

    fn pop(&mut self, plan: &Plan, available: &dyn Fn(&str) -> bool) -> Step {
        while let Some(group) = self.queue.pop_front() {
            if self.seen(&group) {
                continue;
            }
            if self.pool_spent(plan, &group) {
                tracing::debug!(%group, "fallback: skipping a model group of an exhausted pool");
                self.seen.push(group);
                continue;
            }
            if self.fallbacks >= plan.max_fallbacks {
                self.queue.push_front(group);
                return Step::Stop(StopReason::MaxFallbacks);
            }
            self.seen.push(group.clone());
            if !available(&group) {
                tracing::debug!(%group, "fallback: skipping an unavailable model group");
                continue;
            }
            self.fallbacks += 1;
            self.current = group.clone();
            return Step::Try(group);
        }
        Step::Stop(StopReason::Exhausted)
    }

    /// The current group answered: a continuation starts from it.
    pub(crate) fn answered(&mut self, group: &Group) {
        self.current = group.clone();
    }

    /// The stream of the current group broke after content (`cause`): the
    /// pool it drew from may be spent.
    pub(crate) fn broke(&mut self, plan: &Plan, cause: &Failure) {
        let group = self.current.clone();
        self.spend_pool(plan, &group, cause);
        self.broken = Some(group);
    }

    /// The next group to ask to continue the stream that broke with `cause`
    /// (see [`broke`](Self::broke)): that group again (the retry layer below may pick
    /// another of its deployments), then the groups its rules name for the
    /// cause, then what was still queued. Each group is asked once; groups
    /// that failed, cannot take a prefill, or are unavailable are skipped.
    pub(crate) fn next_continuation(
        &mut self,
        plan: &Plan,
        cause: &Failure,
        available: &dyn Fn(&str) -> bool,
    ) -> Option<Group> {
        if self.continuations >= plan.max_continuations {
            return None;
        }
        let broke = self.broken.clone().unwrap_or_else(|| self.current.clone());
        let same = same_group_may_continue(cause).then_some(&broke);
        let (lists, origin) = self.requested();
        let requested = Requested {
            origin: &origin,
            lists: lists.as_deref(),
        };
        let candidates = same
            .into_iter()
            .chain(plan.break_rule(&broke, cause, requested))
            .chain(self.queue.iter());
        let mut chosen = None;
        for group in candidates {
            if self.continued.contains(group)
                || self.failed.contains(group)
                || !plan.takes_prefill(group)
                || self.pool_spent(plan, group)
            {
                continue;
            }
            if !available(group) {
                tracing::debug!(%group, "fallback: skipping an unavailable model group");
                continue;
            }
            chosen = Some(group.clone());
            break;
        }
        let group = chosen?;
        self.continued.push(group.clone());
        self.continuations += 1;
        self.current = group.clone();
        Some(group)
    }

    /// A continuation request to the current group failed before it gave
    /// any content (a 400 there is the group refusing the prefill): it is not
    /// asked again.
    pub(crate) fn continuation_failed(&mut self, plan: &Plan, failure: &Failure) {
        let group = self.current.clone();
        self.spend_pool(plan, &group, failure);
        self.failed.push(group);
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
