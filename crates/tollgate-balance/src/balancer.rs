//! [`Balancer`]: the choice of a deployment within one group, and the
//! group's live statistics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{MemberConfig, Strategy};
use crate::stats;
use crate::strategy::{self, View};
use crate::tried::Tried;
use crate::usage::Usage;
use tollgate_core::DeploymentLimits;

/// The largest group whose picks need no allocation.
pub const INLINE: usize = 16;

/// 2⁶⁴ divided by the golden ratio: `n * GOLDEN` (wrapping) is the
/// fractional part of `n / φ` in 64-bit fixed point, the most evenly spread
/// sequence of its kind.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Chooses the deployment of one model group for each attempt; owns the
/// group's live statistics. Built once per group.
pub struct Balancer {
    strategy: Strategy,
    members: Box<[Member]>,
    /// The position in the golden-ratio sequence: one step per pick.
    turn: AtomicU64,
    /// Where the deployments' `rpm` and `tpm` are counted.
    limits: Arc<dyn DeploymentLimits>,
    /// Whether any deployment has an `rpm` or a `tpm`.
    has_limits: bool,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("strategy", &self.strategy)
            .field("members", &self.members)
            .field("has_limits", &self.has_limits)
            .finish_non_exhaustive()
    }
}

/// What the balancer knows of one deployment.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: Arc<str>,
    weight: f64,
    order: Option<u32>,
    /// With `rpm` or `tpm`: their counters as last seen.
    pub(crate) usage: Option<Arc<Usage>>,
    /// Shared with the same deployment's member in the configurations
    /// before and after a reload: requests in flight settle on it.
    stats: Arc<stats::Stats>,
    /// Dollars per prompt plus completion token, for `cost-based-routing`
    /// (infinite when unknown).
    cost: f64,
}

/// The outcome of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The chosen deployment's position in its group.
    pub index: usize,
    /// Whether another deployment of the group is not known to be open: if
    /// the chosen one's breaker rejects anyway (a half-open breaker whose
    /// probes are all out, or one that opened since), another attempt may
    /// go elsewhere. `false` means every other one was found open.
    pub alternatives: bool,
    /// When the strategy read the clock for it, if it did: the call's start
    /// for [`begin`](Balancer::begin), which then needs no second reading.
    at: Option<Instant>,
}

impl Balancer {
    /// A balancer for the deployments `members`, in file order, whose
    /// `rpm` and `tpm` are counted in `limits`.
    pub fn new(
        strategy: Strategy,
        members: &[MemberConfig],
        limits: Arc<dyn DeploymentLimits>,
    ) -> Self {
        let measures: Vec<_> = members
            .iter()
            .map(|d| (d.weight, d.quota.rpm, d.quota.tpm))
            .collect();
        let members = strategy::weights(&measures)
            .zip(members)
            .map(|(weight, d)| {
                let quota = d.quota;
                Member {
                    id: Arc::clone(&d.id),
                    weight,
                    order: d.order,
                    usage: quota.is_limited().then(|| Arc::new(Usage::new(quota))),
                    stats: Arc::default(),
                    cost: match d.cost {
                        Some(cost) if !cost.is_nan() => cost,
                        _ => f64::INFINITY,
                    },
                }
            })
            .collect::<Box<[Member]>>();
        Balancer {
            strategy,
            has_limits: members.iter().any(|m| m.usage.is_some()),
            members,
            turn: AtomicU64::new(0),
            limits,
        }
    }

    /// Takes what `before` (the balancer of the same group before a config
    /// reload) learned of each deployment that is `kept`: its latency and
    /// requests in flight, and its `rpm`/`tpm` counters when its quota is
    /// the same.
    pub fn carry_over(&mut self, before: &Balancer, kept: impl Fn(&str) -> bool) {
        for member in self.members.iter_mut().filter(|m| kept(&m.id)) {
            let Some(old) = before.members.iter().find(|old| old.id == member.id) else {
                continue;
            };
            member.stats = old.stats.clone();
            if let (Some(usage), Some(old_usage)) = (&member.usage, &old.usage)
                && usage.quota() == old_usage.quota()
            {
                member.usage = Some(old_usage.clone());
            }
        }
    }

    /// With each member's price (dollars per prompt plus completion token,
    /// in file order), which `cost-based-routing` ranks by.
    pub fn with_costs(mut self, costs: impl IntoIterator<Item = f64>) -> Self {
        for (member, cost) in self.members.iter_mut().zip(costs) {
            member.cost = if cost.is_nan() { f64::INFINITY } else { cost };
        }
        self
    }

    /// The strategy it follows.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Chooses a deployment for an attempt of about `tokens` tokens, given
    /// which deployments this request tried and which are open.
    ///
    /// `is_open` is asked lazily, about the deployment about to be chosen
    /// only: when it is open (or known to be at its limit), the choice is
    /// made again without it (with the next draw). A healthy group costs one
    /// breaker lookup per pick, a group with `k` deployments out at most
    /// `k + 1`.
    pub fn pick(&self, tried: &Tried, tokens: u64, is_open: impl Fn(usize) -> bool) -> Pick {
        let count = self.members.len();
        if count <= 1 {
            return Pick {
                index: 0,
                alternatives: false,
                at: None,
            };
        }
        // Only the strategies that read the clock pay for it.
        let now = match self.strategy {
            Strategy::LatencyBased | Strategy::UsageBased => Some(Instant::now()),
            Strategy::SimpleShuffle | Strategy::LeastBusy | Strategy::CostBased => None,
        };
        let view = |index: usize| {
            let member = &self.members[index];
            View {
                weight: member.weight,
                order: member.order,
                open: false,
                tried: tried.contains(index),
                score: self.score(member, now, tokens),
            }
        };
        let choose = |views: &mut [View]| loop {
            let draw = self
                .turn
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(GOLDEN);
            let index = strategy::choose(views, draw);
            // Already known out: every deployment is.
            if views[index].open || !(is_open(index) || self.is_limited(index)) {
                let alternatives = views.iter().enumerate().any(|(i, v)| i != index && !v.open);
                return Pick {
                    index,
                    alternatives,
                    at: now,
                };
            }
            views[index].open = true;
        };
        if count <= INLINE {
            let mut views = [View::IDLE; INLINE];
            for (index, slot) in views[..count].iter_mut().enumerate() {
                *slot = view(index);
            }
            choose(&mut views[..count])
        } else {
            let mut views: Vec<View> = (0..count).map(view).collect();
            choose(&mut views)
        }
    }

    /// The strategy's reading of a deployment, lower is better; `now` is
    /// set for the strategies that read the clock.
    fn score(&self, member: &Member, now: Option<Instant>, tokens: u64) -> f64 {
        match (self.strategy, now) {
            (Strategy::LeastBusy, _) => f64::from(member.stats.in_flight()),
            (Strategy::CostBased, _) => member.cost,
            // Never measured: tried before any measured one.
            (Strategy::LatencyBased, Some(now)) => member.stats.latency(now).unwrap_or(-1.0),
            (Strategy::UsageBased, Some(now)) => -member
                .usage
                .as_ref()
                .map_or(f64::INFINITY, |usage| usage.headroom(now, tokens)),
            _ => 0.0,
        }
    }

    /// Whether deployment `index` is known to be at its limit (the clock
    /// is only read for a deployment with limits).
    fn is_limited(&self, index: usize) -> bool {
        self.members[index]
            .usage
            .as_ref()
            .is_some_and(|usage| usage.limited_for(Instant::now()).is_some())
    }

    /// How long deployment `index` is still known to be at its limit.
    pub fn limited_for(&self, index: usize, now: Instant) -> Option<Duration> {
        self.members[index].usage.as_ref()?.limited_for(now)
    }

    /// The shortest wait until one of the deployments known to be at their
    /// limits has room again: a client's `Retry-After` when all are.
    pub fn shortest_wait(&self, now: Instant) -> Option<Duration> {
        (0..self.members.len())
            .filter_map(|index| self.limited_for(index, now))
            .min()
    }

    /// Whether an attempt on deployment `index` must be admitted by the
    /// limits first (it has an `rpm` or a `tpm`).
    pub fn is_limited_member(&self, index: usize) -> bool {
        self.members[index].usage.is_some()
    }

    /// Whether any deployment has a limit (its attempts need a token
    /// estimate).
    pub fn has_limits(&self) -> bool {
        self.has_limits
    }

    /// Admits an attempt of about `tokens` tokens to deployment `index`
    /// under its `rpm` and `tpm` (one round trip to the limits' store),
    /// counting the request; `false` when it is at its limit, which the
    /// following picks then know. Always `true` for a deployment without
    /// limits, which never asks.
    pub async fn admit(&self, index: usize, tokens: u64) -> bool {
        let member = &self.members[index];
        let Some(usage) = &member.usage else {
            return true;
        };
        let admission = self.limits.admit(&member.id, usage.quota(), tokens).await;
        usage.observe(&admission, Instant::now());
        if !admission.admitted {
            tracing::debug!(
                deployment = %member.id,
                limit = admission.refused_by,
                retry_after_ms = admission.retry_after.as_millis() as u64,
                "deployment at its limit; left out until it has room"
            );
        }
        admission.admitted
    }

    /// The deployments with a `tpm`, by id, with their counters: where a
    /// [`TokenCounter`](crate::TokenCounter) counts their answers' tokens.
    pub(crate) fn tpm_counters(&self) -> impl Iterator<Item = (Arc<str>, Arc<Usage>)> + '_ {
        self.members.iter().filter_map(|member| {
            let usage = member.usage.as_ref()?;
            usage
                .quota()
                .tpm
                .map(|_| (member.id.clone(), Arc::clone(usage)))
        })
    }

    /// Counts the call `pick` chose; the returned guard keeps it in flight
    /// until it is dropped.
    pub fn begin(self: &Arc<Self>, pick: &Pick) -> InFlight {
        let member = &self.members[pick.index];
        member.stats.begin();
        let started = match self.strategy {
            Strategy::LatencyBased => Some(pick.at.unwrap_or_else(Instant::now)),
            Strategy::SimpleShuffle
            | Strategy::LeastBusy
            | Strategy::UsageBased
            | Strategy::CostBased => None,
        };
        InFlight {
            balancer: Arc::clone(self),
            index: pick.index,
            started,
        }
    }
}

/// How an attempt ended, for the latency estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response head came (a success, or a stream whose end is yet to
    /// be seen).
    Answered,
    /// A failure that says the deployment is unhealthy (it counts against
    /// its breaker).
    Failed,
    /// Nothing to learn: a failure caused by the request, or the breaker
    /// rejected the call before it left.
    Unmeasured,
}

/// A call in flight to one deployment: counted until dropped.
#[derive(Debug)]
pub struct InFlight {
    balancer: Arc<Balancer>,
    index: usize,
    /// When the call began, if its latency is wanted.
    started: Option<Instant>,
}

impl InFlight {
    /// Records how the call ended, from `outcome`, which is only asked
    /// under `latency-based-routing` (the other strategies classify
    /// nothing). Once; later calls do nothing.
    pub fn settle(&mut self, outcome: impl FnOnce() -> Outcome) {
        let Some(started) = self.started.take() else {
            return;
        };
        let now = Instant::now();
        let took = now.saturating_duration_since(started);
        let sample = match outcome() {
            Outcome::Answered => took,
            Outcome::Failed => took.max(stats::FAILURE_PENALTY),
            Outcome::Unmeasured => return,
        };
        self.balancer.members[self.index].stats.observe(sample, now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.balancer.members[self.index].stats.end();
    }
}

/// About how many tokens a request body of `bytes` bytes holds (four bytes
/// a token, the usual rule of thumb for English and JSON).
pub fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

#[cfg(test)]
#[path = "balancer_tests.rs"]
mod tests;
