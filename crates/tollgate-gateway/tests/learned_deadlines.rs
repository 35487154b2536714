//! Learned stream deadlines and hedged streams (issue 16, items 3 and 5):
//! after a history of fast streams a deployment's deadlines shrink to what
//! it has shown, and a hedged group's slow stream is raced against its
//! fallback. Testkit upstreams reached in memory, the whole gateway stack,
//! paused time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::net::{Net, chat, stream, streamed};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::time::Instant;
use tollgate_gateway::Gateway;
use tollgate_testkit::{Reply, openai};

/// Two groups of one deployment each, `primary` falling back to `backup`
/// (the LiteLLM-style config of `failover.rs`); `tollgate` adds settings.
fn config(tollgate: &str) -> String {
    let group = |name: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/{name}-model\n      api_base: http://{name}.test/v1\n      api_key: os.environ/KEY\n    model_info:\n      id: {name}-1\n"
        )
    };
    format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 2\n  timeout: 30\n  fallbacks:\n    - primary: [\"backup\"]\ntollgate:\n{tollgate}",
        group("primary"),
        group("backup")
    )
}

/// A stream by `model` whose head comes at once and whose first token
/// `first_token` later.
fn stream_after(model: &str, first_token: Duration, parts: &[&str]) -> Reply {
    let mut reply = Reply::sse().raw(": keep-alive\n\n").delay(first_token);
    for mut chunk in openai::chunks(parts) {
        chunk["model"] = json!(model);
        reply = reply.data(chunk);
    }
    reply.data(openai::usage_chunk(7, 3)).done()
}

/// Streams `count` answers from the primary, each with its first token at
/// ~200 ms, so the primary's deployment learns its pace.
async fn teach_fast_first_tokens(net: &Net, gateway: &Gateway, count: usize) {
    for _ in 0..count {
        net.get("primary.test").push(stream_after(
            "primary-model",
            Duration::from_millis(200),
            &["fast"],
        ));
        let response = chat(gateway, "primary", true).await;
        assert_eq!(streamed(response.body()), ("fast".to_owned(), true));
    }
}

/// A gateway on `config(tollgate)` whose primary has streamed `count`
/// fast answers, and whose backup answers `backup` by default.
async fn taught(tollgate: &str, count: usize, backup: Option<Reply>) -> (Net, Gateway) {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    if let Some(backup) = backup {
        net.get("backup.test").set_default(backup);
    }
    let gateway = net.gateway(&config(tollgate));
    teach_fast_first_tokens(&net, &gateway, count).await;
    (net, gateway)
}

async fn get_json(gateway: &Gateway, path: &str) -> Value {
    let request = http::Request::get(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = gateway.handle(request).await.into_body();
    serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap()
}

async fn metrics(gateway: &Gateway) -> String {
    let request = http::Request::get("/metrics")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = gateway.handle(request).await.into_body();
    String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The primary's `learned_stream_deadlines` in `/health/providers`.
async fn learned_report(gateway: &Gateway) -> Value {
    let report = get_json(gateway, "/health/providers").await;
    report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["deployment"] == "primary-1")
        .unwrap()["learned_stream_deadlines"]
        .clone()
}

// Acceptance 6: after 100 answers with first tokens at ~200 ms, a first
// token that has not come by the learned deadline (1 s, the floor, against
// the 15 s default) moves the request to the fallback.
#[tokio::test(start_paused = true)]
async fn a_first_token_later_than_the_learned_deadline_goes_to_the_fallback() {
    let backup = stream("backup-model", &["Hello", " there"]);
    let (net, gateway) = taught("", 100, Some(backup)).await;

    let learned = learned_report(&gateway).await;
    let first_token = &learned["first_token"];
    assert_eq!(first_token["samples"], 100, "{learned}");
    let p99 = first_token["p99_ms"].as_f64().unwrap();
    assert!((200.0..240.0).contains(&p99), "{learned}");
    assert_eq!(first_token["deadline_ms"], 1_000.0, "{learned}");
    assert_eq!(first_token["cold_deadline_ms"], 15_000.0, "{learned}");
    assert_eq!(learned["head"]["samples"], 100, "{learned}");
    let text = metrics(&gateway).await;
    assert!(
        text.contains(
            "tollgate_stream_deadline_seconds{deployment=\"primary-1\",phase=\"first_token\"} 1\n"
        ),
        "{text}"
    );

    net.get("primary.test").set_default(stream_after(
        "primary-model",
        Duration::from_secs(20),
        &["late"],
    ));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(streamed(response.body()), ("Hello there".to_owned(), true));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1_100),
        "{took:?}"
    );
    // The late first token was recorded at the time it waited: one sample
    // towards a slower deadline should the deployment stay slow.
    let learned = learned_report(&gateway).await;
    assert_eq!(learned["first_token"]["samples"], 101, "{learned}");
}

// Acceptance 1's "≤ 5 s once the deployment has a history of fast heads":
// a silent upstream is given up after the learned head deadline.
#[tokio::test(start_paused = true)]
async fn a_silent_stream_with_a_history_of_fast_heads_fails_over_within_5_s() {
    let backup = stream("backup-model", &["Hello", " there"]);
    let (net, gateway) = taught("", 100, Some(backup)).await;
    net.get("primary.test").set_default(
        stream("primary-model", &["too late"]).delay_headers(Duration::from_secs(3600)),
    );
    let asked_before = net.get("primary.test").requests().len();

    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(streamed(response.body()), ("Hello there".to_owned(), true));
    assert!(
        start.elapsed() <= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1), "the head's floor");
    assert_eq!(
        net.get("primary.test").requests().len() - asked_before,
        1,
        "the silent route is asked once"
    );
}

// Learning can be turned off: the cold deadlines stand, the timings are
// still recorded and reported.
#[tokio::test(start_paused = true)]
async fn learn_stream_deadlines_false_keeps_the_cold_deadlines() {
    let backup = stream("backup-model", &["Hello"]);
    let (net, gateway) = taught("  learn_stream_deadlines: false\n", 30, Some(backup)).await;
    net.get("primary.test").set_default(stream_after(
        "primary-model",
        Duration::from_secs(3),
        &["slow but in time"],
    ));
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(
        streamed(response.body()),
        ("slow but in time".to_owned(), true)
    );
    let learned = learned_report(&gateway).await;
    assert_eq!(learned["applied"], false, "{learned}");
    assert_eq!(learned["first_token"]["deadline_ms"], 15_000.0, "{learned}");
}

/// The ledger's attempts of the request `response` answered, as (model
/// group, outcome), by group.
async fn attempts(gateway: &Gateway, response: &http::Response<Bytes>) -> Vec<(String, String)> {
    gateway.flush_spend().await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    let logs = get_json(gateway, &format!("/spend/logs?request_id={id}")).await;
    let mut attempts: Vec<(String, String)> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |field: &str| r[field].as_str().unwrap().to_owned();
            (text("model"), text("outcome"))
        })
        .collect();
    attempts.sort();
    attempts
}

fn pairs(expected: [(&str, &str); 2]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The `tollgate` settings of a hedged primary with a ledger.
fn hedged(ledger: &std::path::Path) -> String {
    format!(
        "  hedge_streams: [\"primary\"]\n  ledger_path: {}\n  ledger_flush_interval: 0.01\n",
        ledger.display()
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hedges(text: &str, outcome: &str) -> f64 {
    let prefix = format!("tollgate_hedges_total{{model_group=\"primary\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap())
}

// Item 5: no first token by the learned p95 (~215 ms) starts the fallback
// in parallel; the faster stream is kept whole, the other cancelled, both
// attempts are on the ledger.
#[tokio::test(start_paused = true)]
async fn a_hedged_stream_keeps_whichever_streams_first() {
    let dir = temp_dir("hedge");
    let (net, gateway) = taught(&hedged(&dir.join("ledger.sqlite3")), 100, None).await;
    let p95 = learned_report(&gateway).await["first_token"]["p95_ms"]
        .as_f64()
        .unwrap();
    let p95 = Duration::from_secs_f64(p95 / 1e3);
    assert_eq!(hedges(&metrics(&gateway).await, "started"), 0.0);

    // The primary is slow (600 ms, within its 1 s deadline), the backup
    // quick: the hedge wins at p95.
    net.get("primary.test").push(stream_after(
        "primary-model",
        Duration::from_millis(600),
        &["primary"],
    ));
    net.get("backup.test")
        .push(stream("backup-model", &["Hello", " from the backup"]));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    // Answered when the hedge started (timers fire on whole milliseconds).
    let took = start.elapsed();
    assert!(
        took >= p95 && took <= p95 + Duration::from_millis(2),
        "{took:?} vs {p95:?}"
    );
    assert_eq!(response.headers()["x-tollgate-model-group"], "backup");
    assert_eq!(
        streamed(response.body()),
        ("Hello from the backup".to_owned(), true)
    );
    assert_eq!(
        attempts(&gateway, &response).await,
        pairs([("backup", "success"), ("primary", "cancelled")])
    );
    let text = metrics(&gateway).await;
    assert_eq!(hedges(&text, "started"), 1.0);
    assert_eq!(hedges(&text, "won"), 1.0);

    // The primary is a little late, the backup slower still: the primary's
    // stream is kept, the hedge cancelled.
    net.get("primary.test").push(stream_after(
        "primary-model",
        Duration::from_millis(300),
        &["the", " primary"],
    ));
    net.get("backup.test").push(stream_after(
        "backup-model",
        Duration::from_secs(2),
        &["backup"],
    ));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(response.headers()["x-tollgate-model-group"], "primary");
    assert_eq!(streamed(response.body()), ("the primary".to_owned(), true));
    assert_eq!(
        attempts(&gateway, &response).await,
        pairs([("backup", "cancelled"), ("primary", "success")])
    );
    let text = metrics(&gateway).await;
    assert_eq!(hedges(&text, "started"), 2.0);
    assert_eq!(hedges(&text, "won"), 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

// A group not in `hedge_streams` is never hedged: its slow stream is waited
// for, within its deadline, and the fallback is not asked.
#[tokio::test(start_paused = true)]
async fn streams_are_not_hedged_unless_the_group_asks() {
    let backup = stream("backup-model", &["backup"]);
    let (net, gateway) = taught("", 100, Some(backup)).await;
    net.get("primary.test").push(stream_after(
        "primary-model",
        Duration::from_millis(600),
        &["primary"],
    ));
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(streamed(response.body()), ("primary".to_owned(), true));
    assert!(net.get("backup.test").requests().is_empty());
    assert_eq!(hedges(&metrics(&gateway).await, "started"), 0.0);
}
