//! Balancing inside a model group: which deployment serves an attempt.
//!
//! A model group (one `model_name`) may have several deployments. For each
//! attempt — the retry layer above asks again for every retry — the group's
//! [`Balancer`] chooses one, from LiteLLM's `router_settings.routing_strategy`
//! and each deployment's `weight`, `rpm`, `tpm` and `order`:
//!
//! 1. **Open breakers and deployments at their limits are left out** while
//!    any deployment is neither. Only the deployment about to be chosen is
//!    looked up, so a healthy group costs one breaker lookup per pick. When
//!    every one is out, one is chosen anyway: an open breaker rejects at
//!    once and [`PickDeployment`](crate::pick::PickDeployment) answers 503
//!    with `Retry-After`, a deployment at its limit answers 429 with
//!    `Retry-After` (or a fallback cascade above moves on). A half-open
//!    breaker counts as available: its probes are how it closes again.
//!    A deployment's `rpm` and `tpm` are limits the replicas share (see
//!    [`usage`] and [`admit`](Balancer::admit)): an attempt is admitted by
//!    the limits' store before it is sent, and a deployment it refuses is
//!    left out until the store said it would have room again.
//! 2. **A retry prefers a deployment this request has not tried** (see
//!    [`Tried`]), as LiteLLM's retries skip the deployments that failed.
//! 3. **`order` first**: only the candidates with the lowest `order` stay;
//!    deployments without one are candidates only when no candidate has one
//!    (LiteLLM's `_get_order_filtered_deployments`).
//! 4. **The strategy** keeps the best-ranked candidates:
//!    - `simple-shuffle` (the default): all of them;
//!    - `least-busy`: those with the fewest requests in flight, counted from
//!      the call until its response future completes (the response head),
//!      errors and cancellations included. A streamed body is no longer
//!      counted once its head has come: counting to its end needs the
//!      stack's response body to carry the [`InFlight`] guard;
//!    - `latency-based-routing`: those with the lowest latency estimate, the
//!      ones never measured first. The estimate is a peak-sensitive moving
//!      average of the time to the response head (for a stream, its first
//!      byte; for a complete answer, the whole answer) that fades while
//!      nothing refreshes it (see [`stats`]). A failure that counts against
//!      the breaker counts as [`FAILURE_PENALTY`](stats::FAILURE_PENALTY),
//!      or the time it took if longer; other failures count for nothing;
//!    - `usage-based-routing` (and `-v2`): those with the most headroom
//!      under their `rpm` and `tpm`, as the smaller fraction of either limit
//!      left after this request, read from the limits' shared counters as
//!      the last admission saw them (see [`usage`]); a deployment without
//!      limits has unlimited headroom. Tokens are estimated at a quarter of
//!      the request body's bytes; the real ones are counted when the answer
//!      ends;
//!    - `cost-based-routing`: the lowest price per prompt plus completion
//!      token (the deployment's `model_info` prices, else the built-in table,
//!      else LiteLLM's snapshot; unknown prices last), so the cheapest
//!      healthy deployment serves and a dearer one only when it is out.
//! 5. **The shuffle**: one of those, in proportion to its weight: `weight`,
//!    else `rpm`, else `tpm`, else equal (see [`strategy::weights`]).
//!
//! The shuffle draws from a golden-ratio (Weyl) sequence, one step per
//! pick, rather than from a random generator: over any run of picks each
//! deployment's share is within a pick or two of its weight (random draws
//! wander by the square root of the count), and the sequence is the same on
//! every run, so tests through the whole gateway are deterministic with no
//! seed to inject. It starts at the first deployment of the file; replicas
//! of the gateway start in step, which only matters for their first few
//! requests.
//!
//! Costs on the request path: no lock is held across an `.await`; counters
//! are atomics; the latency estimate and a limited deployment's counters are
//! read under a short `Mutex` (one per deployment, only under
//! `latency-based-routing` or with limits); a pick allocates nothing for
//! groups of up to [`INLINE`] deployments; a group of one deployment skips
//! all of it, breaker lookups included. A deployment without `rpm` or `tpm`
//! never waits for the limits' store.
//!
//! # When not to use a group
//!
//! The deployments of a group must be interchangeable: the same model
//! behind different keys, regions or providers. Different models belong in
//! different groups joined by fallbacks, whose rules know that a
//! context-window or content-policy error is not fixed by a retry.

mod stats;
mod strategy;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tollgate_limits::{DeploymentQuota, DeploymentRateLimits};

use crate::config::{DeploymentConfig, RoutingStrategy};

pub(crate) use strategy::Strategy;
use strategy::View;
pub(crate) use usage::TokenCounter;
use usage::Usage;

/// The largest group whose picks need no allocation.
pub(crate) const INLINE: usize = 16;

/// 2⁶⁴ divided by the golden ratio: `n * GOLDEN` (wrapping) is the
/// fractional part of `n / φ` in 64-bit fixed point, the most evenly spread
/// sequence of its kind.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Chooses the deployment of one model group for each attempt; owns the
/// group's live statistics. Built once per group with the gateway.
#[derive(Debug)]
pub(crate) struct Balancer {
    strategy: Strategy,
    members: Box<[Member]>,
    /// The position in the golden-ratio sequence: one step per pick.
    turn: AtomicU64,
    /// Where the deployments' `rpm` and `tpm` are counted.
    limits: DeploymentRateLimits,
    /// Whether any deployment has an `rpm` or a `tpm`.
    has_limits: bool,
}

/// What the balancer knows of one deployment.
#[derive(Debug)]
struct Member {
    id: Arc<str>,
    weight: f64,
    order: Option<u32>,
    /// With `rpm` or `tpm`: their counters as last seen.
    usage: Option<Arc<Usage>>,
    /// Shared with the same deployment's member in the configurations
    /// before and after a reload: requests in flight settle on it.
    stats: Arc<stats::Stats>,
    /// Dollars per prompt plus completion token, for `cost-based-routing`
    /// (infinite when unknown).
    cost: f64,
}

/// The outcome of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pick {
    /// The chosen deployment's position in its group.
    pub(crate) index: usize,
    /// Whether another deployment of the group is not known to be open: if
    /// the chosen one's breaker rejects anyway (a half-open breaker whose
    /// probes are all out, or one that opened since), another attempt may
    /// go elsewhere. `false` means every other one was found open.
    pub(crate) alternatives: bool,
    /// When the strategy read the clock for it, if it did: the call's start
    /// for [`begin`](Balancer::begin), which then needs no second reading.
    at: Option<Instant>,
}

impl Balancer {
    /// A balancer for the deployments `members`, in file order, whose
    /// `rpm` and `tpm` are counted in `limits`.
    pub(crate) fn new(
        strategy: RoutingStrategy,
        members: &[&DeploymentConfig],
        limits: DeploymentRateLimits,
    ) -> Self {
        let measures: Vec<_> = members.iter().map(|d| (d.weight, d.rpm, d.tpm)).collect();
        let members = strategy::weights(&measures)
            .zip(members)
            .map(|(weight, d)| {
                let quota = DeploymentQuota {
                    rpm: d.rpm,
                    tpm: d.tpm,
                };
                Member {
                    id: Arc::from(d.id.as_str()),
                    weight,
                    order: d.order,
                    usage: quota.is_limited().then(|| Arc::new(Usage::new(quota))),
                    stats: Arc::default(),
                    cost: 0.0,
                }
            })
            .collect::<Box<[Member]>>();
        Balancer {
            strategy: Strategy::from_config(strategy),
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
    pub(crate) fn carry_over(&mut self, before: &Balancer, kept: impl Fn(&str) -> bool) {
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
    pub(crate) fn with_costs(mut self, costs: impl IntoIterator<Item = f64>) -> Self {
        for (member, cost) in self.members.iter_mut().zip(costs) {
            member.cost = if cost.is_nan() { f64::INFINITY } else { cost };
        }
        self
    }

    /// The strategy it follows.
    pub(crate) fn strategy(&self) -> Strategy {
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
    pub(crate) fn pick(&self, tried: &Tried, tokens: u64, is_open: impl Fn(usize) -> bool) -> Pick {
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
    pub(crate) fn limited_for(&self, index: usize, now: Instant) -> Option<Duration> {
        self.members[index].usage.as_ref()?.limited_for(now)
    }

    /// The shortest wait until one of the deployments known to be at their
    /// limits has room again: a client's `Retry-After` when all are.
    pub(crate) fn shortest_wait(&self, now: Instant) -> Option<Duration> {
        (0..self.members.len())
            .filter_map(|index| self.limited_for(index, now))
            .min()
    }

    /// Whether an attempt on deployment `index` must be admitted by the
    /// limits first (it has an `rpm` or a `tpm`).
    pub(crate) fn is_limited_member(&self, index: usize) -> bool {
        self.members[index].usage.is_some()
    }

    /// Whether any deployment has a limit (its attempts need a token
    /// estimate).
    pub(crate) fn has_limits(&self) -> bool {
        self.has_limits
    }

    /// Admits an attempt of about `tokens` tokens to deployment `index`
    /// under its `rpm` and `tpm` (one round trip to the limits' store),
    /// counting the request; `false` when it is at its limit, which the
    /// following picks then know. Always `true` for a deployment without
    /// limits, which never asks.
    pub(crate) async fn admit(&self, index: usize, tokens: u64) -> bool {
        let member = &self.members[index];
        let Some(usage) = &member.usage else {
            return true;
        };
        let admission = self.limits.admit(&member.id, usage.quota(), tokens).await;
        usage.observe(&admission, Instant::now());
        if !admission.admitted {
            tracing::debug!(
                deployment = %member.id,
                limit = admission.refused_by.map(|l| l.as_str()),
                retry_after_ms = admission.retry_after.as_millis() as u64,
                "deployment at its limit; left out until it has room"
            );
        }
        admission.admitted
    }

    /// The deployments with a `tpm`, by id, with their counters: where a
    /// [`TokenCounter`] counts their answers' tokens.
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
    pub(crate) fn begin(self: &Arc<Self>, pick: &Pick) -> InFlight {
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
pub(crate) enum Outcome {
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
pub(crate) struct InFlight {
    balancer: Arc<Balancer>,
    index: usize,
    /// When the call began, if its latency is wanted.
    started: Option<Instant>,
}

impl InFlight {
    /// Records how the call ended, from `outcome`, which is only asked
    /// under `latency-based-routing` (the other strategies classify
    /// nothing). Once; later calls do nothing.
    pub(crate) fn settle(&mut self, outcome: impl FnOnce() -> Outcome) {
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

/// The deployments of its group one request has tried.
///
/// It lives in the [`PickDeployment`](crate::pick::PickDeployment) service
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
pub(crate) struct Tried {
    mask: u64,
    last_attempt: Option<u32>,
}

impl Tried {
    /// Begins attempt number `attempt`, forgetting earlier requests.
    pub(crate) fn begin(&mut self, attempt: u32) {
        if self.last_attempt.is_none_or(|last| attempt <= last) {
            self.mask = 0;
        }
        self.last_attempt = Some(attempt);
    }

    /// Whether this request tried deployment `index`.
    pub(crate) fn contains(&self, index: usize) -> bool {
        index < 64 && self.mask & (1 << index) != 0
    }

    /// Remembers that this request tried deployment `index`.
    pub(crate) fn insert(&mut self, index: usize) {
        if index < 64 {
            self.mask |= 1 << index;
        }
    }

    /// Remembers that this request tried the deployments of `mask` (bit
    /// `i`: deployment `i`), as [`bit`](Self::bit) spells them.
    pub(crate) fn insert_mask(&mut self, mask: u64) {
        self.mask |= mask;
    }

    /// Deployment `index` as a bit of a mask (none past the 64th).
    pub(crate) fn bit(index: usize) -> u64 {
        if index < 64 { 1 << index } else { 0 }
    }
}

/// About how many tokens a request body of `bytes` bytes holds (four bytes
/// a token, the usual rule of thumb for English and JSON).
pub(crate) fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

#[cfg(test)]
mod tests;
