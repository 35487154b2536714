//! Tests of `state.rs`.

use super::*;
use proptest::prelude::*;
use tollgate_core::TimeoutKind;

fn plan(builder: crate::FallbackConfigBuilder) -> Plan {
    Plan::new(&builder.build().unwrap())
}

fn all(_: &str) -> bool {
    true
}

fn unavailable() -> Failure {
    Failure::new(ErrorClass::UpstreamUnavailable, "down")
}

fn tries(step: Step) -> String {
    match step {
        Step::Try(group) => group.to_string(),
        Step::Stop(reason) => format!("stop: {reason:?}"),
    }
}

#[test]
fn each_class_picks_its_list() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["b"])
            .context_window_fallbacks("a", ["long"])
            .content_policy_fallbacks("a", ["lenient"]),
    );
    let cases = [
        (unavailable(), "b"),
        (Failure::timeout(TimeoutKind::FirstByte), "b"),
        (Failure::new(ErrorClass::ContextWindowExceeded, "x"), "long"),
        (Failure::new(ErrorClass::ContentPolicy, "x"), "lenient"),
        (
            Failure::new(ErrorClass::BadRequest, "x"),
            "stop: NotEligible",
        ),
        (Failure::new(ErrorClass::Internal, "x"), "stop: NotEligible"),
    ];
    for (failure, expected) in cases {
        let mut cascade = Cascade::new("a".into());
        assert_eq!(tries(cascade.first(&plan, &all)), "a");
        assert_eq!(
            tries(cascade.failed(&plan, &failure, &all)),
            expected,
            "{failure}"
        );
    }
}

#[test]
fn without_their_own_lists_context_window_uses_the_regular_ones_and_content_policy_stops() {
    let plan = plan(crate::FallbackConfig::builder().fallbacks("a", ["b"]));
    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    let context = Failure::new(ErrorClass::ContextWindowExceeded, "x");
    assert_eq!(tries(cascade.failed(&plan, &context, &all)), "b");

    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    let refusal = Failure::new(ErrorClass::ContentPolicy, "x").with_fallback_eligible(true);
    assert_eq!(
        tries(cascade.failed(&plan, &refusal, &all)),
        "stop: NotEligible"
    );
}

#[test]
fn default_fallbacks_serve_groups_without_a_list_and_nesting_is_depth_first() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["b", "c"])
            .fallbacks("b", ["d"])
            .default_fallbacks(["z"]),
    );
    let mut cascade = Cascade::new("a".into());
    let mut order = vec![tries(cascade.first(&plan, &all))];
    loop {
        match cascade.failed(&plan, &unavailable(), &all) {
            Step::Try(group) => order.push(group.to_string()),
            Step::Stop(reason) => {
                order.push(format!("{reason:?}"));
                break;
            }
        }
    }
    // b's own list before a's next; d and c have no list: the default.
    assert_eq!(order, ["a", "b", "d", "z", "c", "Exhausted"]);
    assert_eq!(cascade.fallbacks(), 4);
}

#[test]
fn max_fallbacks_bounds_the_groups_tried() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["b", "c", "d"])
            .max_fallbacks(2),
    );
    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    assert_eq!(tries(cascade.failed(&plan, &unavailable(), &all)), "b");
    assert_eq!(tries(cascade.failed(&plan, &unavailable(), &all)), "c");
    assert_eq!(
        tries(cascade.failed(&plan, &unavailable(), &all)),
        "stop: MaxFallbacks"
    );
    assert!(!plan.may_fall_back("x") || plan.max_fallbacks > 0);
}

#[test]
fn a_spent_pool_skips_its_groups_but_not_the_others() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["b", "c"])
            .pool("a", "free")
            .pool("b", "free"),
    );
    let pool_limit = Failure::new(ErrorClass::RateLimited, "pool")
        .with_scope(Scope::AccountFreePool)
        .with_fallback_eligible(false);
    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    assert_eq!(tries(cascade.failed(&plan, &pool_limit, &all)), "c");
    assert_eq!(cascade.fallbacks(), 1);

    // Without a pool for the failing group, the failure's own verdict
    // stands.
    let plan = crate::FallbackConfig::builder().fallbacks("a", ["b", "c"]);
    let plan = Plan::new(&plan.build().unwrap());
    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    assert_eq!(
        tries(cascade.failed(&plan, &pool_limit, &all)),
        "stop: NotEligible"
    );
}

#[test]
fn unavailable_groups_are_skipped_and_an_unavailable_origin_is_not_called() {
    let plan = plan(crate::FallbackConfig::builder().fallbacks("a", ["b", "c"]));
    let down = |group: &str| group != "a" && group != "b";
    let mut cascade = Cascade::new("a".into());
    assert_eq!(tries(cascade.first(&plan, &down)), "c");
    assert_eq!(cascade.fallbacks(), 1);

    let none = |_: &str| false;
    let mut cascade = Cascade::new("a".into());
    assert_eq!(tries(cascade.first(&plan, &none)), "stop: NoneAvailable");
}

#[test]
fn continuations_ask_the_same_group_then_the_fallbacks_once_each() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["b", "c", "d"])
            .supports_assistant_prefill("b", false)
            .max_continuations(3),
    );
    let cut = Failure::new(ErrorClass::UpstreamUnavailable, "cut");
    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    cascade.answered(&"a".into());
    cascade.broke(&plan, &cut);
    assert_eq!(
        cascade.next_continuation(&plan, &cut, &all).as_deref(),
        Some("a")
    );
    // `a` broke again after more content: it is not asked twice; `b`
    // takes no prefill.
    cascade.broke(&plan, &cut);
    assert_eq!(
        cascade.next_continuation(&plan, &cut, &all).as_deref(),
        Some("c")
    );
    let rejected = Failure::new(ErrorClass::BadRequest, "prefill");
    cascade.continuation_failed(&plan, &rejected);
    assert_eq!(
        cascade.next_continuation(&plan, &cut, &all).as_deref(),
        Some("d")
    );
    assert_eq!(cascade.next_continuation(&plan, &cut, &all), None);
    assert_eq!(cascade.continuations(), 3);
}

#[test]
fn a_refusal_mid_stream_is_continued_only_by_its_own_list() {
    let plan = plan(crate::FallbackConfig::builder().fallbacks("a", ["b"]));
    let refusal = Failure::new(ErrorClass::ContentPolicy, "flagged");
    let mut cascade = Cascade::new("a".into());
    cascade.first(&plan, &all);
    assert_eq!(cascade.next_continuation(&plan, &refusal, &all), None);
}

fn arb_failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        Just(unavailable()),
        Just(Failure::timeout(TimeoutKind::FirstByte)),
        Just(Failure::new(ErrorClass::ContextWindowExceeded, "x")),
        Just(Failure::new(ErrorClass::ContentPolicy, "x")),
        Just(Failure::new(ErrorClass::BadRequest, "x")),
        Just(
            Failure::new(ErrorClass::RateLimited, "pool")
                .with_scope(Scope::AccountFreePool)
                .with_fallback_eligible(false)
        ),
    ]
}

const GROUPS: [&str; 6] = ["g0", "g1", "g2", "g3", "g4", "g5"];

fn arb_list() -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(GROUPS.to_vec(), 0..4)
        .prop_shuffle()
        .prop_map(|l| l.into_iter().map(String::from).collect())
}

proptest! {
    /// Whatever the rules and failures: no group is tried twice, no
    /// unavailable group and no group of a spent pool is tried, the
    /// fallback limit holds, and the cascade ends.
    #[test]
    fn the_cascade_never_repeats_and_respects_its_limits(
        lists in proptest::collection::vec((0..6usize, arb_list(), arb_list(), arb_list()), 0..6),
        default in arb_list(),
        max_fallbacks in 0..6u32,
        down in proptest::collection::vec(any::<bool>(), 6),
        pools in proptest::collection::vec(proptest::option::of(0..2u8), 6),
        failures in proptest::collection::vec(arb_failure(), 8),
    ) {
        let mut config = crate::FallbackConfig { max_fallbacks, default_fallbacks: default, ..Default::default() };
        for (group, fallbacks, context, policy) in lists {
            let group = GROUPS[group].to_owned();
            let strip = |l: Vec<String>| l.into_iter().filter(|g| *g != group).collect::<Vec<_>>();
            if !config.fallbacks.iter().any(|(g, _)| *g == group) {
                config.fallbacks.push((group.clone(), strip(fallbacks)));
                config.context_window_fallbacks.push((group.clone(), strip(context)));
                config.content_policy_fallbacks.push((group.clone(), strip(policy)));
            }
        }
        for (group, pool) in GROUPS.iter().zip(&pools) {
            if let Some(pool) = pool {
                config.targets.entry(group.to_string()).or_default().pool = Some(format!("p{pool}"));
            }
        }
        config.validate().unwrap();
        let plan = Plan::new(&config);
        let available = |group: &str| !down[GROUPS.iter().position(|g| *g == group).unwrap()];
        let pool_of = |group: &str| pools[GROUPS.iter().position(|g| *g == group).unwrap()];

        let mut cascade = Cascade::new("g0".into());
        let mut tried: Vec<String> = Vec::new();
        let mut spent = Vec::new();
        let mut step = cascade.first(&plan, &available);
        for failure in &failures {
            let Step::Try(group) = step else { break };
            prop_assert!(available(&group), "{group} is down");
            prop_assert!(!tried.contains(&group.to_string()), "{group} twice");
            prop_assert!(pool_of(&group).is_none_or(|p| !spent.contains(&p)), "{group}'s pool is spent");
            tried.push(group.to_string());
            if failure.scope() == Some(Scope::AccountFreePool)
                && let Some(pool) = pool_of(&group) {
                spent.push(pool);
            }
            step = cascade.failed(&plan, failure, &available);
        }
        let fallbacks = tried.iter().filter(|g| *g != "g0").count() as u32;
        prop_assert!(fallbacks <= max_fallbacks);
        prop_assert!(cascade.fallbacks() >= fallbacks);
    }
}

fn names(list: &[&str]) -> Option<Arc<[Arc<str>]>> {
    Some(list.iter().map(|g| Arc::from(*g)).collect())
}

/// A cascade from `a` with the body's lists.
fn requested(lists: RequestFallbacks) -> Cascade {
    let mut cascade = Cascade::new("a".into());
    cascade.requested = Some(Arc::new(lists));
    cascade
}

#[test]
fn body_fallbacks_replace_the_configured_ones_and_are_tried_in_order() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["config"])
            .fallbacks("x", ["nested"])
            .default_fallbacks(["z"]),
    );
    let mut cascade = requested(RequestFallbacks {
        fallbacks: names(&["x", "y"]),
        ..RequestFallbacks::default()
    });
    assert!(cascade.may_fall_back(&plan));
    assert_eq!(tries(cascade.first(&plan, &all)), "a");
    // The body's list, in its order: neither the config's list for `a`,
    // nor `x`'s own, nor the defaults.
    assert_eq!(tries(cascade.failed(&plan, &unavailable(), &all)), "x");
    assert_eq!(tries(cascade.failed(&plan, &unavailable(), &all)), "y");
    assert_eq!(
        tries(cascade.failed(&plan, &unavailable(), &all)),
        "stop: Exhausted"
    );
}

#[test]
fn body_lists_of_each_kind_and_an_empty_one_turning_a_kind_off() {
    let plan = plan(
        crate::FallbackConfig::builder()
            .fallbacks("a", ["config"])
            .context_window_fallbacks("a", ["config-long"]),
    );
    // The body names a context-window list only: other failures keep the
    // config's list, context-window errors take the body's.
    let lists = RequestFallbacks {
        context_window: names(&["long"]),
        content_policy: names(&["lenient"]),
        ..RequestFallbacks::default()
    };
    let context = Failure::new(ErrorClass::ContextWindowExceeded, "x");
    let refusal = Failure::new(ErrorClass::ContentPolicy, "x");
    for (failure, expected) in [
        (unavailable(), "config"),
        (context, "long"),
        (refusal, "lenient"),
    ] {
        let mut cascade = requested(lists.clone());
        cascade.first(&plan, &all);
        assert_eq!(tries(cascade.failed(&plan, &failure, &all)), expected);
    }
    // `fallbacks: []` in the body: none for this request.
    let mut cascade = requested(RequestFallbacks {
        fallbacks: names(&[]),
        ..RequestFallbacks::default()
    });
    cascade.first(&plan, &all);
    assert_eq!(
        tries(cascade.failed(&plan, &unavailable(), &all)),
        "stop: Exhausted"
    );
    // Nothing configured, nothing non-empty in the body: no copy kept.
    let bare = plan_without_lists();
    assert!(!cascade.may_fall_back(&bare));
}

fn plan_without_lists() -> Plan {
    plan(crate::FallbackConfig::builder())
}

#[test]
fn body_fallbacks_skip_groups_the_key_may_not_use_and_serve_a_broken_stream() {
    let plan = plan_without_lists();
    let mut cascade = requested(RequestFallbacks {
        fallbacks: names(&["secret", "open"]),
        ..RequestFallbacks::default()
    });
    cascade.allowed = Some(AllowedGroups(["a", "open"].map(Arc::from).into()));
    let allowed = cascade.allowed();
    let available = move |group: &str| allowed(group);
    assert_eq!(tries(cascade.first(&plan, &available)), "a");
    assert_eq!(
        tries(cascade.failed(&plan, &unavailable(), &available)),
        "open"
    );

    // A stream of `a` broke after content: the body's list continues it.
    let mut cascade = requested(RequestFallbacks {
        fallbacks: names(&["b"]),
        ..RequestFallbacks::default()
    });
    cascade.first(&plan, &all);
    cascade.broke(&plan, &unavailable());
    let next = cascade.next_continuation(&plan, &unavailable(), &all);
    assert_eq!(next.as_deref(), Some("a"));
    cascade.continuation_failed(&plan, &unavailable());
    let next = cascade.next_continuation(&plan, &unavailable(), &all);
    assert_eq!(next.as_deref(), Some("b"));
}
