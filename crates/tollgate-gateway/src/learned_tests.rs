use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn buckets_cover_a_millisecond_to_minutes_in_quarter_doublings() {
    assert_eq!(bucket_of(Duration::ZERO), 0);
    assert_eq!(bucket_of(ms(1)), 0);
    // Every duration is at most its bucket's bound, and above the bound
    // of the bucket before.
    for micros in [1_500u64, 2_000, 7_300, 200_000, 999_999, 30_000_000] {
        let d = Duration::from_micros(micros);
        let i = bucket_of(d);
        assert!(d <= upper_bound(i) + Duration::from_nanos(1), "{d:?}");
        assert!(i == 0 || d > upper_bound(i - 1), "{d:?}");
        // A bound is within 19 % (2^(1/4)) of what it holds.
        assert!(upper_bound(i).as_secs_f64() <= d.as_secs_f64() * 1.19 + 1e-9);
    }
    assert_eq!(bucket_of(Duration::from_secs(100_000)), BUCKETS - 1);
}

#[test]
fn quantiles_need_enough_samples_and_round_up() {
    let sketch = Sketch::default();
    for _ in 0..MIN_SAMPLES - 1 {
        sketch.record(ms(200));
    }
    assert_eq!(sketch.quantile(0.99), None);
    sketch.record(ms(200));
    let p99 = sketch.quantile(0.99).unwrap();
    assert!(p99 >= ms(200) && p99 < ms(240), "{p99:?}");

    // 98 fast and 2 slow: p95 is fast, p99 slow.
    let sketch = Sketch::default();
    for i in 0..100 {
        sketch.record(if i < 98 { ms(100) } else { ms(3_000) });
    }
    assert!(sketch.quantile(0.95).unwrap() < ms(120));
    assert!(sketch.quantile(0.99).unwrap() >= ms(3_000));
}

#[test]
fn the_sketch_forgets_by_halving_and_follows_a_slower_deployment() {
    let sketch = Sketch::default();
    for _ in 0..HALVE_EVERY - 1 {
        sketch.record(ms(100));
    }
    assert_eq!(sketch.samples(), HALVE_EVERY - 1);
    sketch.record(ms(100));
    assert_eq!(sketch.samples(), HALVE_EVERY / 2);
    // The deployment becomes slow: within a few hundred samples the old
    // speed no longer decides the p99.
    for _ in 0..HALVE_EVERY {
        sketch.record(ms(2_000));
    }
    assert!(sketch.quantile(0.5).unwrap() >= ms(2_000));
    assert!(sketch.samples() <= HALVE_EVERY);
}

fn cold() -> Timeouts {
    Timeouts {
        first_byte: Some(Duration::from_secs(10)),
        first_token: Some(Duration::from_secs(15)),
        stream_idle: Some(Duration::from_secs(15)),
        total: Some(Duration::from_secs(30)),
    }
}

#[test]
fn deadlines_are_a_multiple_of_the_p99_between_the_floor_and_the_cold_one() {
    let timings = StreamTimings::default();
    // Cold: nothing learned, the configured deadlines stand.
    assert_eq!(timings.stream_timeouts(cold(), 0), cold());
    for _ in 0..100 {
        timings.record(Phase::Head, ms(50));
        timings.record(Phase::FirstToken, ms(600));
        timings.record(Phase::Gap, ms(20));
    }
    let learned = timings.stream_timeouts(cold(), 0);
    // Head: 4 × ~50 ms is under the 1 s floor.
    assert_eq!(learned.first_byte, Some(HEAD_FLOOR));
    // First token: 4 × p99 (600 ms rounded up to its bucket, < 713 ms).
    let first = learned.first_token.unwrap();
    assert!(first >= ms(2_400) && first < ms(2_860), "{first:?}");
    assert_eq!(learned.stream_idle, Some(GAP_FLOOR));
    assert_eq!(learned.total, cold().total);

    // A long prompt gets its allowance, never past the cold deadline.
    let long = timings.stream_timeouts(cold(), 100 * 1024);
    assert_eq!(long.first_token, Some(first + ms(2_500)));
    let huge = timings.stream_timeouts(cold(), 10 * 1024 * 1024);
    assert_eq!(huge.first_token, cold().first_token);
    assert_eq!(huge.first_byte, cold().first_byte);
    assert_eq!(
        huge.stream_idle,
        Some(GAP_FLOOR),
        "no allowance between tokens"
    );

    // A configured deadline below the floor is kept.
    let tight = Timeouts {
        first_byte: Some(ms(300)),
        ..cold()
    };
    assert_eq!(timings.stream_timeouts(tight, 0).first_byte, Some(ms(300)));
}

#[test]
fn a_reloaded_gateway_keeps_what_it_learned_of_unchanged_deployments() {
    let old = LearnedDeadlines::new([(Arc::from("a"), cold()), (Arc::from("b"), cold())], None);
    old.get("a").unwrap().record(Phase::Head, ms(10));
    let new = LearnedDeadlines::new(
        [(Arc::from("a"), cold()), (Arc::from("c"), cold())],
        Some(&old),
    );
    assert!(Arc::ptr_eq(new.get("a").unwrap(), old.get("a").unwrap()));
    assert_eq!(new.get("c").unwrap().sketch(Phase::Head).samples(), 0);
    assert!(new.get("b").is_none());
}

#[test]
fn the_report_shows_each_phase_against_its_cold_deadline() {
    let learned = LearnedDeadlines::new([(Arc::from("a"), cold())], None);
    for _ in 0..100 {
        learned.get("a").unwrap().record(Phase::FirstToken, ms(200));
    }
    let report = learned.report("a");
    assert!(learned.report("unknown").is_null());
    assert_eq!(report["first_token"]["samples"], 100);
    let deadline = report["first_token"]["deadline_ms"].as_f64().unwrap();
    assert!((800.0..1_100.0).contains(&deadline), "{report}");
    assert_eq!(report["first_token"]["cold_deadline_ms"], 15_000.0);
    assert!(report["head"]["p99_ms"].is_null());
    // Nothing learned: the cold deadline is in effect.
    assert_eq!(report["head"]["deadline_ms"], 10_000.0);
    assert_eq!(report["applied"], true);
    let recorded_only = learned.clone().applied(false).report("a");
    assert_eq!(recorded_only["first_token"]["deadline_ms"], 15_000.0);
    assert_eq!(recorded_only["first_token"]["samples"], 100);
}

#[test]
fn the_gauges_show_the_deadline_in_effect_and_the_learned_p99() {
    let learned = LearnedDeadlines::new([(Arc::from("a\"b"), cold())], None);
    for _ in 0..100 {
        learned
            .get("a\"b")
            .unwrap()
            .record(Phase::FirstToken, ms(200));
    }
    let mut text = String::new();
    learned.render_metrics(&mut text);
    let line = |family: &str, phase: &str| {
        let prefix = format!("{family}{{deployment=\"a\\\"b\",phase=\"{phase}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.parse::<f64>().unwrap())
    };
    assert_eq!(line(LEARNED_DEADLINE, "head"), Some(10.0), "{text}");
    assert_eq!(line(LEARNED_DEADLINE, "first_token"), Some(1.0), "{text}");
    assert_eq!(
        line(LEARNED_DEADLINE, "between_tokens"),
        Some(15.0),
        "{text}"
    );
    assert!(line(LEARNED_P99, "first_token").unwrap() < 0.25, "{text}");
    assert_eq!(line(LEARNED_P99, "head"), None, "{text}");
}
