use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::series::TOKEN_KINDS;
use super::*;

fn topology() -> Vec<(Arc<str>, Vec<Arc<str>>)> {
    vec![
        (Arc::from("demo"), vec![Arc::from("demo-primary")]),
        (
            Arc::from("backup"),
            vec![Arc::from("backup-a"), Arc::from("backup-b")],
        ),
    ]
}

fn request(group: Option<&str>, status: u16, total: Duration) -> RequestMetrics<'_> {
    RequestMetrics {
        route: "chat",
        model_group: group,
        status,
        class: None,
        stream: false,
        total,
        upstream: None,
        time_to_first_token: None,
        retries: 0,
        fallbacks: 0,
        client_gone: false,
    }
}

fn attempt<'a>(group: &'a str, deployment: &'a str) -> AttemptMetrics<'a> {
    AttemptMetrics {
        model_group: group,
        deployment,
        outcome: "success",
        class: None,
        upstream: Duration::from_millis(100),
        first_byte: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_prompt_tokens: 0,
        reasoning_tokens: 0,
        cost_usd: None,
        cost_source: "unknown",
    }
}

/// The value of the sample named exactly `series` (`name{labels}`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

#[track_caller]
fn assert_value(text: &str, series: &str, expected: f64) {
    match value(text, series) {
        Some(actual) => assert_eq!(actual, expected, "{series}\n{text}"),
        None => panic!("no sample {series} in\n{text}"),
    }
}

/// Every `(label, value)` pair of every sample line.
fn label_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, _)) = rest.rsplit_once('}') else {
            continue;
        };
        for pair in labels.split("\",") {
            let (key, value) = pair.split_once("=\"").expect("a label pair");
            pairs.push((key.to_owned(), value.trim_end_matches('"').to_owned()));
        }
    }
    pairs
}

#[test]
fn requests_are_counted_with_exact_values() {
    let metrics = Metrics::new();
    let mut ok = request(Some("demo"), 200, Duration::from_secs(2));
    ok.upstream = Some(Duration::from_millis(1500));
    ok.retries = 2;
    ok.fallbacks = 1;
    metrics.request(&ok);
    metrics.request(&request(Some("demo"), 200, Duration::from_secs(12)));
    let mut failed = request(Some("demo"), 502, Duration::from_millis(250));
    failed.class = Some("upstream_unavailable");
    failed.client_gone = true;
    metrics.request(&failed);

    let text = metrics.render();
    assert_value(
        &text,
        r#"tollgate_requests_total{route="chat",model_group="demo",status="200",class="none",stream="false"}"#,
        2.0,
    );
    assert_value(
        &text,
        r#"tollgate_requests_total{route="chat",model_group="demo",status="502",class="upstream_unavailable",stream="false"}"#,
        1.0,
    );
    let duration = r#"route="chat",model_group="demo",stream="false""#;
    assert_value(
        &text,
        &format!(r#"tollgate_request_duration_seconds_bucket{{{duration},le="0.25"}}"#),
        1.0,
    );
    assert_value(
        &text,
        &format!(r#"tollgate_request_duration_seconds_bucket{{{duration},le="10"}}"#),
        2.0,
    );
    assert_value(
        &text,
        &format!(r#"tollgate_request_duration_seconds_bucket{{{duration},le="20"}}"#),
        3.0,
    );
    assert_value(
        &text,
        &format!(r#"tollgate_request_duration_seconds_bucket{{{duration},le="+Inf"}}"#),
        3.0,
    );
    assert_value(
        &text,
        &format!("tollgate_request_duration_seconds_sum{{{duration}}}"),
        14.25,
    );
    assert_value(
        &text,
        &format!("tollgate_request_duration_seconds_count{{{duration}}}"),
        3.0,
    );

    let group = r#"model_group="demo",stream="false""#;
    assert_value(
        &text,
        &format!("tollgate_upstream_duration_seconds_sum{{{group}}}"),
        1.5,
    );
    assert_value(
        &text,
        &format!("tollgate_upstream_duration_seconds_count{{{group}}}"),
        1.0,
    );
    assert_value(
        &text,
        &format!("tollgate_gateway_overhead_seconds_sum{{{group}}}"),
        0.5,
    );
    assert_value(
        &text,
        &format!(r#"tollgate_gateway_overhead_seconds_bucket{{{group},le="0.5"}}"#),
        1.0,
    );
    assert_value(&text, r#"tollgate_retries_total{model_group="demo"}"#, 2.0);
    assert_value(
        &text,
        r#"tollgate_fallbacks_total{model_group="demo"}"#,
        1.0,
    );
    assert_value(
        &text,
        r#"tollgate_client_disconnects_total{model_group="demo"}"#,
        1.0,
    );
}

#[test]
fn streams_record_time_to_first_token() {
    let metrics = Metrics::new();
    let mut stream = request(Some("demo"), 200, Duration::from_secs(3));
    stream.stream = true;
    stream.time_to_first_token = Some(Duration::from_millis(40));
    metrics.request(&stream);

    let text = metrics.render();
    assert_value(
        &text,
        r#"tollgate_requests_total{route="chat",model_group="demo",status="200",class="none",stream="true"}"#,
        1.0,
    );
    assert_value(
        &text,
        r#"tollgate_time_to_first_token_seconds_bucket{model_group="demo",le="0.025"}"#,
        0.0,
    );
    assert_value(
        &text,
        r#"tollgate_time_to_first_token_seconds_bucket{model_group="demo",le="0.05"}"#,
        1.0,
    );
    assert_value(
        &text,
        r#"tollgate_time_to_first_token_seconds_count{model_group="demo"}"#,
        1.0,
    );
    // No upstream time was given: no upstream or overhead sample either.
    assert_value(
        &text,
        r#"tollgate_upstream_duration_seconds_count{model_group="demo",stream="true"}"#,
        0.0,
    );
}

#[test]
fn requests_without_a_group_get_an_empty_label() {
    let metrics = Metrics::new();
    let mut unknown = request(None, 404, Duration::from_millis(1));
    unknown.route = "models";
    unknown.class = Some("model_not_found");
    metrics.request(&unknown);

    let text = metrics.render();
    assert_value(
        &text,
        r#"tollgate_requests_total{route="models",model_group="",status="404",class="model_not_found",stream="false"}"#,
        1.0,
    );
}

#[test]
fn attempts_count_outcomes_tokens_cost_and_latency() {
    let metrics = Metrics::new();
    let mut priced = attempt("demo", "demo-primary");
    priced.first_byte = Some(Duration::from_millis(30));
    priced.prompt_tokens = 10;
    priced.completion_tokens = 5;
    priced.cached_prompt_tokens = 4;
    priced.reasoning_tokens = 2;
    priced.cost_usd = Some(0.25);
    priced.cost_source = "price_table";
    metrics.attempt(&priced);
    priced.cost_usd = Some(0.5);
    priced.cost_source = "provider";
    metrics.attempt(&priced);
    let mut unpriced = attempt("demo", "demo-primary");
    unpriced.prompt_tokens = 1;
    metrics.attempt(&unpriced);
    let mut failed = attempt("demo", "demo-primary");
    failed.outcome = "failure";
    failed.class = Some("timeout");
    failed.cost_source = "not_billed";
    metrics.attempt(&failed);

    let text = metrics.render();
    let pair = r#"model_group="demo",deployment="demo-primary""#;
    assert_value(
        &text,
        &format!(r#"tollgate_deployment_attempts_total{{{pair},outcome="success",class="none"}}"#),
        3.0,
    );
    assert_value(
        &text,
        &format!(
            r#"tollgate_deployment_attempts_total{{{pair},outcome="failure",class="timeout"}}"#
        ),
        1.0,
    );
    for (kind, expected) in TOKEN_KINDS.into_iter().zip([21.0, 10.0, 8.0, 4.0]) {
        assert_value(
            &text,
            &format!(r#"tollgate_tokens_total{{{pair},kind="{kind}"}}"#),
            expected,
        );
    }
    assert_value(&text, &format!("tollgate_cost_usd_total{{{pair}}}"), 0.75);
    assert!(
        text.contains("# TYPE tollgate_cost_usd_total counter\n"),
        "{text}"
    );
    // The not-billed failure is not an unknown price.
    assert_value(
        &text,
        &format!("tollgate_cost_unknown_total{{{pair}}}"),
        1.0,
    );
    let deployment = r#"deployment="demo-primary""#;
    assert_value(
        &text,
        &format!(r#"tollgate_deployment_latency_seconds_bucket{{{deployment},le="0.05"}}"#),
        2.0,
    );
    assert_value(
        &text,
        &format!("tollgate_deployment_latency_seconds_count{{{deployment}}}"),
        2.0,
    );
}

#[test]
fn float_cost_ignores_values_that_would_break_a_counter() {
    let metrics = Metrics::new();
    for cost in [0.125, -1.0, f64::NAN, f64::INFINITY, 0.0] {
        let mut priced = attempt("demo", "d");
        priced.cost_usd = Some(cost);
        priced.cost_source = "provider";
        metrics.attempt(&priced);
    }
    assert_value(
        &metrics.render(),
        r#"tollgate_cost_usd_total{model_group="demo",deployment="d"}"#,
        0.125,
    );
}

#[test]
fn breakers_report_state_and_transitions() {
    let metrics = Metrics::new();
    metrics.register_topology(&topology());
    let text = metrics.render();
    assert_value(
        &text,
        r#"tollgate_circuit_breaker_state{deployment="backup-a"}"#,
        0.0,
    );

    metrics.breaker_transition(
        "backup-a",
        BreakerStateLabel::Closed,
        BreakerStateLabel::Open,
    );
    metrics.breaker_transition(
        "backup-a",
        BreakerStateLabel::Open,
        BreakerStateLabel::HalfOpen,
    );
    metrics.breaker_transition(
        "backup-a",
        BreakerStateLabel::HalfOpen,
        BreakerStateLabel::Open,
    );
    let text = metrics.render();
    assert_value(
        &text,
        r#"tollgate_circuit_breaker_state{deployment="backup-a"}"#,
        2.0,
    );
    let to = |state: &str| {
        format!(
            r#"tollgate_circuit_breaker_transitions_total{{deployment="backup-a",to="{state}"}}"#
        )
    };
    assert_value(&text, &to("open"), 2.0);
    assert_value(&text, &to("half_open"), 1.0);
    assert_value(&text, &to("closed"), 0.0);

    metrics.breaker_state("backup-a", BreakerStateLabel::HalfOpen);
    assert_value(
        &metrics.render(),
        r#"tollgate_circuit_breaker_state{deployment="backup-a"}"#,
        1.0,
    );
}

#[test]
fn limits_ledger_and_shared_state_are_counted() {
    let metrics = Metrics::new();
    metrics.rate_limited("rpm");
    metrics.rate_limited("rpm");
    metrics.rate_limited("budget");
    metrics.ledger_totals(5, 2);
    metrics.shared_state_fallback();

    let text = metrics.render();
    assert_value(
        &text,
        r#"tollgate_rate_limit_rejections_total{limit="rpm"}"#,
        2.0,
    );
    assert_value(
        &text,
        r#"tollgate_rate_limit_rejections_total{limit="budget"}"#,
        1.0,
    );
    assert_value(
        &text,
        r#"tollgate_rate_limit_rejections_total{limit="tpm"}"#,
        0.0,
    );
    assert_value(
        &text,
        r#"tollgate_rate_limit_rejections_total{limit="parallel"}"#,
        0.0,
    );
    assert_value(&text, "tollgate_ledger_records_total", 5.0);
    assert_value(&text, "tollgate_ledger_dropped_total", 2.0);
    assert_value(&text, "tollgate_shared_state_fallbacks_total", 1.0);
}

#[test]
fn two_metrics_are_independent() {
    let one = Metrics::new();
    let two = Metrics::new();
    one.request(&request(Some("demo"), 200, Duration::from_secs(1)));
    one.ledger_totals(3, 0);
    let clone = two.clone();
    clone.ledger_totals(1, 0);

    let series = r#"tollgate_requests_total{route="chat",model_group="demo",status="200",class="none",stream="false"}"#;
    assert_value(&one.render(), series, 1.0);
    assert_eq!(value(&two.render(), series), None);
    assert_value(&one.render(), "tollgate_ledger_records_total", 3.0);
    assert_value(&two.render(), "tollgate_ledger_records_total", 1.0);
}

#[test]
fn every_family_is_present_after_topology() {
    let metrics = Metrics::new();
    metrics.register_topology(&topology());
    // The learned p99 shows once a phase has been learned.
    let learned = crate::learned::LearnedDeadlines::new(
        [(
            Arc::from("demo-primary"),
            crate::deadlines::Timeouts {
                first_byte: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        )],
        None,
    );
    for _ in 0..crate::learned::MIN_SAMPLES {
        let timings = learned.get("demo-primary").unwrap();
        timings.record(crate::learned::Phase::Head, Duration::from_millis(40));
    }
    metrics.watch_gauges(Box::new(move |text| learned.render_metrics(text)));
    let text = metrics.render();

    let typed: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let expected: BTreeSet<&str> = FAMILIES.iter().copied().collect();
    assert_eq!(typed, expected);
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no help\n{text}"
        );
        let sample = text.lines().any(|line| {
            !line.starts_with('#')
                && line
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
        });
        assert!(sample, "{family} has no sample\n{text}");
    }
    // Every histogram is a real histogram over the latency buckets, 10 s included.
    for family in HISTOGRAMS {
        assert!(
            text.contains(&format!("# TYPE {family} histogram\n")),
            "{family}\n{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("{family}_bucket{{"))
                    && line.contains(r#"le="10"}"#)),
            "{family} has no le=\"10\" bucket\n{text}"
        );
    }
    // Registering again adds nothing.
    metrics.register_topology(&topology());
    assert_eq!(metrics.render().lines().count(), text.lines().count());
}

#[test]
fn label_values_come_only_from_what_was_passed() {
    let metrics = Metrics::new();
    metrics.register_topology(&topology());
    let mut failed = request(Some("backup"), 503, Duration::from_millis(3));
    failed.class = Some("upstream_unavailable");
    failed.stream = true;
    metrics.request(&failed);
    let mut cancelled = attempt("backup", "backup-b");
    cancelled.outcome = "cancelled";
    cancelled.first_byte = Some(Duration::from_millis(1));
    metrics.attempt(&cancelled);
    metrics.breaker_transition(
        "backup-b",
        BreakerStateLabel::Closed,
        BreakerStateLabel::Open,
    );
    metrics.rate_limited("tpm");

    let mut allowed: BTreeSet<&str> = [
        // Passed in.
        "demo",
        "backup",
        "demo-primary",
        "backup-a",
        "backup-b",
        "503",
        "upstream_unavailable",
        "cancelled",
        // Fixed sets.
        "chat",
        "200",
        "none",
        "success",
        "true",
        "false",
        "closed",
        "half_open",
        "open",
    ]
    .into_iter()
    .collect();
    allowed.extend(TOKEN_KINDS);
    allowed.extend(LIMITS);
    allowed.extend(CLIENT_TIMEOUT_PHASES);
    allowed.extend(HEDGE_OUTCOMES);
    allowed.extend(crate::metrics::ShedReason::ALL.map(|reason| reason.as_str()));
    allowed.extend(RELOAD_RESULTS);

    let text = metrics.render();
    let pairs = label_pairs(&text);
    assert!(!pairs.is_empty());
    for (key, value) in pairs {
        if key == "le" {
            continue;
        }
        assert!(
            allowed.contains(value.as_str()),
            "unexpected {key}={value:?}\n{text}"
        );
    }
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    let mut priced = attempt("a\"b", "c\\d");
    priced.cost_usd = Some(1.0);
    priced.cost_source = "provider";
    metrics.attempt(&priced);
    assert_value(
        &metrics.render(),
        r#"tollgate_cost_usd_total{model_group="a\"b",deployment="c\\d"}"#,
        1.0,
    );
}
