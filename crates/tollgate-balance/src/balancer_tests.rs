//! Tests of the balancer: picks, in-flight counts, tried deployments.

use super::*;
use crate::usage::TokenCounter;
use std::time::Duration;
use tollgate_core::DeploymentLimits;
use tollgate_limits::{DeploymentRateLimits, MemoryStore};

fn deployment(weight: Option<f64>, order: Option<u32>) -> MemberConfig {
    MemberConfig {
        weight,
        order,
        ..MemberConfig::new("m")
    }
}

/// The limits' memory store, as the gateway counts in it.
fn store() -> Arc<dyn DeploymentLimits> {
    Arc::new(DeploymentRateLimits::new(Arc::new(MemoryStore::new())))
}

fn balancer(strategy: Strategy, members: &[MemberConfig]) -> Arc<Balancer> {
    Arc::new(Balancer::new(strategy, members, store()))
}

#[test]
fn the_sequence_splits_by_weight_within_a_pick_or_two() {
    let members = [
        deployment(Some(1.0), None),
        deployment(Some(1.0), None),
        deployment(Some(2.0), None),
    ];
    let balancer = balancer(Strategy::SimpleShuffle, &members);
    let mut counts = [0u32; 3];
    for n in 1..=4000u32 {
        counts[balancer.pick(&Tried::default(), 0, |_| false).index] += 1;
        if n % 400 == 0 {
            // Already even over short runs.
            let expected = [n / 4, n / 4, n / 2];
            for (count, expected) in counts.iter().zip(expected) {
                assert!(count.abs_diff(expected) <= 2, "{counts:?} after {n}");
            }
        }
    }
}

#[test]
fn the_first_pick_is_the_first_deployment() {
    let members = [deployment(None, None), deployment(None, None)];
    let balancer = balancer(Strategy::SimpleShuffle, &members);
    assert_eq!(balancer.pick(&Tried::default(), 0, |_| false).index, 0);
}

#[test]
fn in_flight_counts_until_the_guard_drops() {
    let members = [deployment(None, None), deployment(None, None)];
    let balancer = balancer(Strategy::LeastBusy, &members);
    let pick = balancer.pick(&Tried::default(), 0, |_| false);
    let first = pick.index;
    let held = balancer.begin(&pick);
    for _ in 0..5 {
        let next = balancer.pick(&Tried::default(), 0, |_| false).index;
        assert_ne!(next, first, "the busy one is avoided");
    }
    drop(held);
    let picks: Vec<usize> = (0..4)
        .map(|_| balancer.pick(&Tried::default(), 0, |_| false).index)
        .collect();
    assert!(picks.contains(&first), "idle again: {picks:?}");
}

#[test]
fn tried_is_the_requests_mask_up_to_the_64th_deployment() {
    let shared = tollgate_core::extensions::TriedDeployments::default();
    shared.insert(2);
    shared.clone().insert(63);
    shared.insert(70);
    let mut tried = Tried::from_mask(shared.mask());
    assert!(tried.contains(2) && tried.contains(63), "clones share it");
    assert!(!tried.contains(1) && !tried.contains(70));
    tried.insert(1);
    assert!(tried.contains(1));
}

#[test]
fn open_deployments_are_found_lazily_and_left_out() {
    let members = [deployment(None, None), deployment(None, None)];
    let balancer = balancer(Strategy::SimpleShuffle, &members);
    // The first draw lands on the first deployment: it is open, so the
    // choice is made again without it.
    let asked = std::cell::RefCell::new(Vec::new());
    let pick = balancer.pick(&Tried::default(), 0, |i| {
        asked.borrow_mut().push(i);
        i == 0
    });
    assert_eq!(*asked.borrow(), [0, 1]);
    assert_eq!((pick.index, pick.alternatives), (1, false));
    // A closed one is chosen without a word about the others, which
    // may be fine.
    let asked = std::cell::RefCell::new(Vec::new());
    let pick = balancer.pick(&Tried::default(), 0, |i| {
        asked.borrow_mut().push(i);
        false
    });
    assert_eq!(asked.borrow().len(), 1);
    assert!(pick.alternatives);
    // All open: one anyway, and no alternative.
    let pick = balancer.pick(&Tried::default(), 0, |_| true);
    assert!(!pick.alternatives);
}

/// Picks and admits `n` attempts of `tokens` tokens; how many each
/// deployment took.
async fn admitted(balancer: &Balancer, n: usize, tokens: u64) -> Vec<usize> {
    let mut counts = vec![0; balancer.members.len()];
    for _ in 0..n {
        let pick = balancer.pick(&Tried::default(), tokens, |_| false);
        if balancer.admit(pick.index, tokens).await {
            counts[pick.index] += 1;
        }
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn usage_headroom_steers_by_the_limits_counters() {
    let mut small = deployment(None, None);
    small.id = "small".into();
    small.quota.rpm = Some(2);
    let mut large = deployment(None, None);
    large.id = "large".into();
    large.quota.rpm = Some(10);
    let balancer = balancer(Strategy::UsageBased, &[small, large]);
    // Each fills its own limit; the last two attempts are refused, one
    // by each.
    assert_eq!(admitted(&balancer, 14, 10).await, [2, 10]);
    // Both known to be at their limits: the group waits for the first
    // request to come back (the large one's, in 6 s; the small one's
    // comes in 30 s).
    let now = Instant::now();
    assert_eq!(balancer.shortest_wait(now), Some(Duration::from_secs(6)));
    let pick = balancer.pick(&Tried::default(), 10, |_| false);
    assert!(!pick.alternatives, "every deployment is out");
    // A minute on, both buckets are full again: the most headroom first.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(balancer.shortest_wait(Instant::now()), None);
    let index = balancer.pick(&Tried::default(), 10, |_| false).index;
    assert_eq!(index, 1, "full again: the large one has the most headroom");
}

#[tokio::test(start_paused = true)]
async fn a_deployment_at_its_limit_is_left_out_whatever_the_strategy() {
    let mut limited = deployment(None, None);
    limited.id = "limited".into();
    limited.quota.rpm = Some(3);
    let unlimited = deployment(None, None);
    let balancer = balancer(Strategy::SimpleShuffle, &[limited, unlimited]);
    assert!(balancer.has_limits());
    assert!(balancer.is_limited_member(0) && !balancer.is_limited_member(1));
    // Weighted by rpm, every attempt goes to the limited one (the other
    // has no rpm: weight 0) while it can take them: it takes its 3, is
    // refused once, and is then left out without asking the store.
    assert_eq!(admitted(&balancer, 20, 0).await, [3, 16]);
    assert!(balancer.limited_for(0, Instant::now()).is_some());
    // Its next request comes back in 20 s; then it is refused again.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(balancer.limited_for(0, Instant::now()), None);
    assert_eq!(admitted(&balancer, 4, 0).await, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn tpm_headroom_counts_this_request_and_answers_usage() {
    let mut small = deployment(None, None);
    small.id = "small".into();
    small.quota.tpm = Some(100);
    let unlimited = deployment(None, None);
    let balancer = balancer(Strategy::UsageBased, &[small, unlimited]);
    assert_eq!(balancer.pick(&Tried::default(), 10, |_| false).index, 1);
    let counter = TokenCounter::new(store(), [&*balancer]).expect("a tpm");
    counter.count("small", 90);
    counter.count("elsewhere", 90);
    let usage = balancer.members[0].usage.as_ref().unwrap();
    assert!((usage.headroom(Instant::now(), 0) - 0.1).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn latency_prefers_unmeasured_then_the_fastest_and_penalises_failures() {
    let members = [deployment(None, None), deployment(None, None)];
    let balancer = balancer(Strategy::LatencyBased, &members);
    let call = |took: Duration, outcome: Outcome| {
        let balancer = balancer.clone();
        async move {
            let pick = balancer.pick(&Tried::default(), 0, |_| false);
            let mut in_flight = balancer.begin(&pick);
            tokio::time::advance(took).await;
            in_flight.settle(|| outcome);
            pick.index
        }
    };
    assert_eq!(call(Duration::from_millis(50), Outcome::Answered).await, 0);
    assert_eq!(
        call(Duration::from_millis(10), Outcome::Answered).await,
        1,
        "the unmeasured one next"
    );
    for _ in 0..5 {
        assert_eq!(call(Duration::from_millis(10), Outcome::Answered).await, 1);
    }
    // A fast failure is no reason to send more.
    assert_eq!(call(Duration::from_millis(1), Outcome::Failed).await, 1);
    assert_eq!(call(Duration::from_millis(50), Outcome::Answered).await, 0);
    // The penalty fades while the other keeps answering in 50 ms: the
    // failed one is tried again, after about a minute of traffic.
    let failed_at = tokio::time::Instant::now();
    let mut calls = 0;
    while call(Duration::from_millis(50), Outcome::Answered).await == 0 {
        calls += 1;
        assert!(calls < 10_000, "never tried again");
    }
    let after = failed_at.elapsed();
    assert!(
        after > Duration::from_secs(30) && after < Duration::from_secs(120),
        "{after:?}"
    );
}

#[test]
fn a_reload_carries_over_what_a_kept_deployment_learned() {
    let named = |id: &str| {
        let mut d = deployment(None, None);
        d.id = Arc::from(id);
        d
    };
    let before = balancer(Strategy::LeastBusy, &[named("a"), named("b")]);
    let now = Instant::now();
    before.members[0]
        .stats
        .observe(Duration::from_millis(40), now);
    before.members[1]
        .stats
        .observe(Duration::from_millis(90), now);
    let held = before.begin(&before.pick(&Tried::default(), 0, |_| false));
    assert_eq!(before.members[0].stats.in_flight(), 1);

    let members = [named("b"), named("a"), named("c")];
    let mut after = Balancer::new(Strategy::LeastBusy, &members, store());
    after.carry_over(&before, |id| id != "b");
    // `a` kept, at its new position: its latency and its request in flight.
    assert_eq!(after.members[1].stats.in_flight(), 1);
    assert!(after.members[1].stats.latency(now).is_some());
    // `b` not kept (its upstream changed) and `c` new: fresh.
    assert!(after.members[0].stats.latency(now).is_none());
    assert!(after.members[2].stats.latency(now).is_none());
    // The request that began before the reload settles on the shared count.
    drop(held);
    assert_eq!(after.members[1].stats.in_flight(), 0);
}

#[test]
fn cost_based_routing_picks_the_cheapest_healthy_deployment() {
    let members = [
        deployment(Some(5.0), None),
        deployment(Some(1.0), None),
        deployment(Some(5.0), None),
    ];
    let cheapest = Balancer::new(Strategy::CostBased, &members, store()).with_costs([
        2.0e-6,
        1.0e-6,
        f64::INFINITY,
    ]);
    // Weights do not matter: the cheapest serves every time.
    for _ in 0..50 {
        assert_eq!(cheapest.pick(&Tried::default(), 0, |_| false).index, 1);
    }
    // The cheapest is open: the next cheapest, never the unpriced one.
    for _ in 0..50 {
        assert_eq!(cheapest.pick(&Tried::default(), 0, |i| i == 1).index, 0);
    }
    // Simple-shuffle over the same deployments spreads by weight instead.
    let shuffled = balancer(Strategy::SimpleShuffle, &members);
    let picks: std::collections::HashSet<usize> = (0..50)
        .map(|_| shuffled.pick(&Tried::default(), 0, |_| false).index)
        .collect();
    assert!(picks.len() > 1);
}

#[test]
fn cost_based_routing_reads_each_members_price() {
    let priced = |cost: Option<f64>| MemberConfig {
        cost,
        ..deployment(None, None)
    };
    let members = [priced(Some(3.0e-6)), priced(None), priced(Some(1.0e-6))];
    let balancer = balancer(Strategy::CostBased, &members);
    for _ in 0..20 {
        assert_eq!(balancer.pick(&Tried::default(), 0, |_| false).index, 2);
    }
    // The cheapest is open: the next cheapest, never the unpriced one.
    assert_eq!(balancer.pick(&Tried::default(), 0, |i| i == 2).index, 0);
}
