//! One access-log line per request, written when its response ends.

mod common;

use common::{Captured, TestGateway, call, chat_body, client, openai_config, send};
use http_body_util::BodyExt;
use tollgate_testkit::{Gate, Reply, Upstream, openai};

fn access_lines(logs: &Captured) -> Vec<serde_json::Value> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "tollgate::access")
        .collect()
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn completed_failed_and_abandoned_requests_are_each_logged_once() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let upstream = Upstream::start().await;
    let env = [("UPSTREAM_KEY", "sk-upstream")];
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), &env).await;
    let url = gateway.url("/v1/chat/completions");
    let client = client();

    upstream.push(Reply::json(200, openai::chat_completion("hi")));
    let ok = call(
        &client,
        "POST",
        &url,
        chat_body("gpt-test", false),
        &[("x-request-id", "req-ok")],
    )
    .await;
    assert_eq!(ok.status, 200);
    let missing = call(
        &client,
        "POST",
        &url,
        chat_body("nope", false),
        &[("x-request-id", "req-404")],
    )
    .await;
    assert_eq!(missing.status, 404);

    // A stream the client abandons half-way.
    let gate = Gate::new();
    let chunks = openai::chunks(&["partial"]);
    upstream.push(
        Reply::sse()
            .data(&chunks[0])
            .data(&chunks[1])
            .wait(&gate)
            .done(),
    );
    let response = send(
        &client,
        "POST",
        &url,
        chat_body("gpt-test", true),
        &[("x-request-id", "req-gone")],
    )
    .await;
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    gate.open();
    gateway.shutdown().await;

    let lines = access_lines(&logs);
    let by_id = |id: &str| {
        let found: Vec<_> = lines.iter().filter(|l| l["request_id"] == id).collect();
        assert_eq!(found.len(), 1, "one line for {id}: {lines:?}");
        found[0].clone()
    };
    let ok = by_id("req-ok");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["model"], "gpt-test");
    assert_eq!(ok["deployment"], "primary");
    assert!(ok["latency_ms"].as_f64().unwrap() >= 0.0);
    let missing = by_id("req-404");
    assert_eq!(missing["outcome"], "error");
    assert_eq!(missing["class"], "model_not_found");
    let gone = by_id("req-gone");
    assert_eq!(gone["outcome"], "client_gone");
    assert_eq!(gone["stream"], true);
    // The abandoned attempt is settled before the line is written: what
    // was relayed is counted (estimated, the stream never sent its usage).
    assert!(gone["completion_tokens"].as_u64().unwrap() > 0, "{gone}");
    assert_eq!(gone["tokens_estimated"], true, "{gone}");
    // Nothing of the prompt or the completion.
    assert!(!logs.text().contains("Say hello"));
    assert!(!logs.text().contains("partial"));
}
