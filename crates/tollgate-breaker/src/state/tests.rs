//! The state machine, driven with explicit instants: unit tests for each
//! transition and a proptest over random outcome sequences and clock
//! advances.

use super::*;

use proptest::prelude::*;

fn config() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        min_calls: 4,
        failure_rate_threshold: 0.5,
        cooldown: Duration::from_secs(1),
        max_cooldown: Duration::from_secs(8),
        jitter: 0.0,
        half_open_max_probes: 2,
        ..BreakerConfig::default()
    }
}

/// Drives one `KeyState`, recording the transitions.
struct Driver {
    config: BreakerConfig,
    state: KeyState,
    now: Instant,
    changes: Vec<Transition>,
    sample: f64,
}

impl Driver {
    fn new(config: BreakerConfig) -> Self {
        let now = Instant::now();
        Driver {
            state: KeyState::new(&config, now),
            config,
            now,
            changes: Vec::new(),
            sample: 0.0,
        }
    }

    fn admit(&mut self) -> Admission {
        let changes = &mut self.changes;
        self.state
            .admit(&self.config, self.now, &mut |t| changes.push(t))
    }

    fn ticket(&mut self) -> Ticket {
        match self.admit() {
            Admission::Admitted(ticket) => ticket,
            rejected => panic!("expected admission, got {rejected:?}"),
        }
    }

    fn settle(&mut self, ticket: Ticket, outcome: Outcome) {
        let changes = &mut self.changes;
        let sample = self.sample;
        self.state.settle(
            &self.config,
            ticket,
            outcome,
            self.now,
            &mut || sample,
            &mut |t| changes.push(t),
        );
    }

    fn call(&mut self, outcome: Outcome) {
        let ticket = self.ticket();
        self.settle(ticket, outcome);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn view(&self) -> View {
        self.state.view(self.now)
    }
}

const FAIL: Outcome = Outcome::Failure {
    rate_limit_wait: None,
};

#[test]
fn consecutive_failures_open_and_a_success_resets_the_run() {
    let mut d = Driver::new(BreakerConfig {
        min_calls: 100,
        ..config()
    });
    d.call(FAIL);
    d.call(FAIL);
    d.call(Outcome::Success);
    d.call(FAIL);
    d.call(FAIL);
    assert_eq!(d.view().state, State::Closed);
    assert_eq!(d.view().consecutive_failures, 2);
    d.call(FAIL);
    let view = d.view();
    assert_eq!(view.state, State::Open);
    assert_eq!(view.last_reason, Some(Reason::ConsecutiveFailures));
    assert_eq!(view.open_until, Some(d.now + Duration::from_secs(1)));
    assert_eq!(d.changes.len(), 1);
    assert_eq!(
        (d.changes[0].from, d.changes[0].to),
        (State::Closed, State::Open)
    );
}

#[test]
fn the_failure_rate_opens_only_with_enough_calls() {
    let mut d = Driver::new(BreakerConfig {
        consecutive_failures: 0,
        ..config()
    });
    d.call(FAIL);
    d.call(Outcome::Success);
    d.call(FAIL);
    assert_eq!(d.view().state, State::Closed, "3 calls < min_calls");
    d.call(FAIL);
    assert_eq!(d.view().state, State::Open);
    assert_eq!(d.view().last_reason, Some(Reason::FailureRate));
}

#[test]
fn old_calls_slide_out_of_the_window() {
    let mut d = Driver::new(BreakerConfig {
        consecutive_failures: 0,
        ..config()
    });
    for _ in 0..3 {
        d.call(FAIL);
    }
    d.advance(Duration::from_secs(11));
    assert_eq!(d.view().window_calls, 0);
    d.call(FAIL);
    assert_eq!(
        d.view().state,
        State::Closed,
        "one failure in a fresh window"
    );
}

#[test]
fn neither_outcomes_change_nothing() {
    let mut d = Driver::new(config());
    for _ in 0..10 {
        d.call(Outcome::Neither);
    }
    let view = d.view();
    assert_eq!((view.state, view.window_calls), (State::Closed, 0));
}

#[test]
fn open_rejects_until_its_time_then_probes_are_bounded() {
    let mut d = Driver::new(config());
    for _ in 0..3 {
        d.call(FAIL);
    }
    d.advance(Duration::from_millis(400));
    assert_eq!(
        d.admit(),
        Admission::Rejected {
            retry_after: Some(Duration::from_millis(600))
        }
    );
    d.advance(Duration::from_millis(600));
    let first = d.ticket();
    let second = d.ticket();
    assert!(matches!(first, Ticket::Probe(_)));
    assert_eq!(d.admit(), Admission::Rejected { retry_after: None });
    assert_eq!(d.view().state, State::HalfOpen);
    assert_eq!(d.view().probes_in_flight, 2);
    // A cancelled probe frees its slot and decides nothing.
    d.settle(first, Outcome::Neither);
    assert_eq!(d.view().state, State::HalfOpen);
    let third = d.ticket();
    d.settle(third, Outcome::Success);
    assert_eq!(d.view().state, State::Closed);
    assert_eq!(d.view().last_reason, Some(Reason::ProbeSucceeded));
    // The other probe belongs to the HALF_OPEN period that is over.
    d.settle(second, FAIL);
    let view = d.view();
    assert_eq!((view.state, view.probes_in_flight), (State::Closed, 0));
    assert_eq!(view.consecutive_failures, 0, "a fresh start");
}

#[test]
fn failed_probes_double_the_open_time_up_to_the_cap() {
    let mut d = Driver::new(config());
    for _ in 0..3 {
        d.call(FAIL);
    }
    let mut open_times = Vec::new();
    for _ in 0..5 {
        let until = d.view().open_until.unwrap();
        open_times.push(until - d.now);
        d.now = until;
        d.call(FAIL);
    }
    let secs: Vec<u64> = open_times.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 4, 8, 8]);
    // And a success starts over from the base cooldown.
    d.now = d.view().open_until.unwrap();
    d.call(Outcome::Success);
    for _ in 0..3 {
        d.call(FAIL);
    }
    assert_eq!(d.view().open_until, Some(d.now + Duration::from_secs(1)));
}

#[test]
fn jitter_shortens_the_open_time_by_at_most_its_fraction() {
    let config = BreakerConfig {
        jitter: 0.25,
        ..config()
    };
    assert_eq!(open_duration(&config, 2, 0.0), Duration::from_secs(4));
    assert_eq!(open_duration(&config, 2, 1.0), Duration::from_secs(3));
    assert_eq!(open_duration(&config, 40, 0.0), Duration::from_secs(8));
}

#[test]
fn a_rate_limit_wait_opens_for_that_long_capped() {
    let mut d = Driver::new(BreakerConfig {
        max_rate_limit_open: Duration::from_secs(30),
        ..config()
    });
    d.call(Outcome::Success);
    d.call(Outcome::Failure {
        rate_limit_wait: Some(Duration::from_secs(7)),
    });
    let view = d.view();
    assert_eq!(view.state, State::Open);
    assert_eq!(view.last_reason, Some(Reason::RateLimited));
    assert_eq!(view.open_until, Some(d.now + Duration::from_secs(7)));

    d.state.reset(d.now, &mut |_| {});
    d.call(Outcome::Failure {
        rate_limit_wait: Some(Duration::from_secs(3600)),
    });
    assert_eq!(d.view().open_until, Some(d.now + Duration::from_secs(30)));

    let mut off = Driver::new(BreakerConfig {
        open_on_rate_limit: false,
        ..config()
    });
    off.call(Outcome::Failure {
        rate_limit_wait: Some(Duration::from_secs(7)),
    });
    assert_eq!(off.view().state, State::Closed);
}

#[test]
fn calls_admitted_before_a_transition_do_not_count_after_it() {
    let mut d = Driver::new(config());
    let slow_call = d.ticket();
    for _ in 0..3 {
        d.call(FAIL);
    }
    d.advance(Duration::from_secs(1));
    d.call(Outcome::Success);
    assert_eq!(d.view().state, State::Closed);
    d.settle(slow_call, FAIL);
    assert_eq!(d.view().window_calls, 0);
    assert_eq!(d.view().consecutive_failures, 0);
}

#[test]
fn forced_opens_and_resets_are_transitions_like_any() {
    let mut d = Driver::new(config());
    let until = d.now + Duration::from_secs(60);
    d.state.force_open(until, d.now, &mut |t| d.changes.push(t));
    assert_eq!(d.view().open_until, Some(until));
    d.state.reset(d.now, &mut |t| d.changes.push(t));
    assert_eq!(d.view().state, State::Closed);
    let reasons: Vec<Reason> = d.changes.iter().map(|t| t.reason).collect();
    assert_eq!(reasons, [Reason::Forced, Reason::Reset]);
}

#[test]
fn a_late_record_never_overwrites_a_newer_bucket() {
    let origin = Instant::now();
    let window = Window::new(Duration::from_secs(4), 4, origin);
    window.record(origin + Duration::from_secs(4), true);
    // Same bucket, one window earlier: a call recorded very late.
    window.record(origin, false);
    assert_eq!(window.counts(origin + Duration::from_secs(4)), (1, 1));
}

#[test]
fn counts_saturate_instead_of_overflowing_into_the_epoch() {
    let origin = Instant::now();
    let window = Window::new(Duration::from_secs(1), 1, origin);
    let bucket = &window.buckets[0];
    bucket.store(pack(0, COUNT_MAX, COUNT_MAX), Ordering::Relaxed);
    window.record(origin, true);
    assert_eq!(window.counts(origin), (COUNT_MAX as u32, COUNT_MAX as u32));
}

proptest! {
    /// The window agrees with a naive list of timestamped outcomes.
    #[test]
    fn the_window_counts_what_a_naive_model_counts(
        buckets in 1u32..8,
        steps in proptest::collection::vec((0u64..1500, any::<bool>()), 1..80),
    ) {
        let width = Duration::from_millis(250);
        let origin = Instant::now();
        let window = Window::new(width * buckets, buckets, origin);
        let mut now = origin;
        let mut log: Vec<(u64, bool)> = Vec::new();
        for (advance_ms, failed) in steps {
            now += Duration::from_millis(advance_ms);
            window.record(now, failed);
            let epoch = ((now - origin).as_nanos() / width.as_nanos()) as u64;
            log.push((epoch, failed));
            let live = log.iter().filter(|(e, _)| epoch - e < u64::from(buckets));
            let calls = live.clone().count() as u32;
            let failures = live.filter(|(_, f)| *f).count() as u32;
            prop_assert_eq!(window.counts(now), (calls, failures));
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Admit,
    Settle {
        pick: usize,
        outcome: u8,
        wait_ms: u64,
    },
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Admit),
        3 => (any::<usize>(), 0u8..4, 0u64..5000)
            .prop_map(|(pick, outcome, wait_ms)| Step::Settle { pick, outcome, wait_ms }),
        2 => (0u64..3000).prop_map(Step::Advance),
    ]
}

fn machine_config() -> impl Strategy<Value = BreakerConfig> {
    (
        0u32..5,
        1u32..6,
        0.2f64..=1.0,
        1u32..4,
        1u32..3,
        any::<bool>(),
        prop_oneof![Just(0.0), 0.0f64..=1.0],
    )
        .prop_map(
            |(consecutive, min_calls, rate, probes, successes, on_rate_limit, jitter)| {
                BreakerConfig {
                    consecutive_failures: consecutive,
                    min_calls,
                    failure_rate_threshold: rate,
                    half_open_max_probes: probes,
                    success_threshold: successes,
                    open_on_rate_limit: on_rate_limit,
                    jitter,
                    cooldown: Duration::from_secs(1),
                    max_cooldown: Duration::from_secs(8),
                    max_rate_limit_open: Duration::from_secs(4),
                    ..BreakerConfig::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over any sequence of calls, outcomes and clock advances:
    /// - no more probes are in flight than configured;
    /// - OPEN admits nothing before its time, and says how long is left;
    /// - a probe's success (the last one needed) closes the breaker;
    /// - open times stay within their escalating, capped, jittered bounds.
    #[test]
    fn the_state_machine_keeps_its_invariants(
        config in machine_config(),
        sample in 0.0f64..1.0,
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        let mut d = Driver::new(config.clone());
        d.sample = sample;
        let mut outstanding: Vec<Ticket> = Vec::new();
        // The generation the model expects: one per transition.
        let mut generation = 0u64;
        for step in steps {
            let before = d.view();
            let seen = d.changes.len();
            match step {
                Step::Advance(ms) => d.advance(Duration::from_millis(ms)),
                Step::Admit => {
                    let admission = d.admit();
                    if let Some(until) = before.open_until && d.now < until {
                        prop_assert_eq!(
                            admission,
                            Admission::Rejected { retry_after: Some(until - d.now) },
                            "OPEN admitted a call before its time"
                        );
                    }
                    if let Admission::Admitted(ticket) = admission {
                        outstanding.push(ticket);
                    }
                }
                Step::Settle { pick, outcome, wait_ms } => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let ticket = outstanding.swap_remove(pick % outstanding.len());
                    let outcome = match outcome {
                        0 => Outcome::Success,
                        1 => FAIL,
                        2 => Outcome::Failure {
                            rate_limit_wait: Some(Duration::from_millis(wait_ms)),
                        },
                        _ => Outcome::Neither,
                    };
                    d.settle(ticket, outcome);
                    let after = d.view();
                    if let Ticket::Probe(g) = ticket
                        && g == generation
                        && before.state == State::HalfOpen
                        && outcome == Outcome::Success
                        && config.success_threshold == 1
                    {
                        prop_assert_eq!(after.state, State::Closed, "a probe success did not close");
                    }
                }
            }
            for change in &d.changes[seen..] {
                generation += 1;
                if change.to == State::Open && change.reason == Reason::ProbeFailed {
                    let k = d.view().reopenings;
                    let full = config.cooldown
                        .saturating_mul(1u32.checked_shl(k).unwrap_or(u32::MAX))
                        .min(config.max_cooldown);
                    let open_for = change.open_until.unwrap() - change.at;
                    prop_assert!(open_for <= full.max(config.max_rate_limit_open));
                    prop_assert!(open_for >= full.mul_f64(1.0 - config.jitter));
                }
            }
            let probes = outstanding.iter().filter(|t| matches!(t, Ticket::Probe(_))).count() as u32;
            prop_assert!(probes <= config.half_open_max_probes, "too many probes in flight");
            prop_assert_eq!(d.view().probes_in_flight, probes);
        }
    }
}
