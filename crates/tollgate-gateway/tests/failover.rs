//! Failover that rescues every request, sooner (issue 16's acceptance):
//! per-attempt timeouts under a separate request deadline, silence told
//! apart from a reset, interactive stream deadlines, and breakers that let a
//! recovered deployment back in. Testkit upstreams reached in memory, the
//! whole gateway stack, paused time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::net::{Net, chat, chat_with, completion, stream, streamed, unavailable};
use tokio::time::Instant;
use tollgate_testkit::{Reply, openai};

/// A group `name` of one OpenAI-compatible deployment at `host`.
fn group(name: &str, host: &str, extra_params: &str, model_info: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/{name}-model\n      api_base: http://{host}/v1\n      api_key: os.environ/KEY\n{extra_params}    model_info:\n      id: {name}-1\n{model_info}"
    )
}

/// The LiteLLM-style config: 2 retries, `timeout: 30`, one
/// fallback, no `stream_timeout`; `router` adds router settings.
fn litellm_style(router: &str, primary_info: &str) -> String {
    format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 2\n  timeout: 30\n  fallbacks:\n    - primary: [\"backup\"]\n{router}",
        group("primary", "primary.test", "", primary_info),
        group("backup", "backup.test", "", "")
    )
}

/// A reply whose head never comes (within any test's horizon).
fn silent() -> Reply {
    completion("primary-model", "too late").delay_headers(Duration::from_secs(3600))
}

fn header<'a>(response: &'a http::Response<Bytes>, name: &str) -> &'a str {
    response.headers()[name].to_str().unwrap()
}

// Acceptance 5: down for 60 s under a request every 4 s, `cooldown_time: 5`.
#[tokio::test(start_paused = true)]
async fn a_recovered_deployment_serves_again_within_a_cooldown_or_two() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(unavailable());
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&litellm_style("  cooldown_time: 5\n", ""));
    let start = Instant::now();
    let recovery = start + Duration::from_secs(60);
    let mut recovered = false;
    let mut back_at = None;
    for slot in 0..40u32 {
        tokio::time::sleep_until(start + Duration::from_secs(4) * slot).await;
        if !recovered && Instant::now() >= recovery {
            net.get("primary.test")
                .set_default(completion("primary-model", "back"));
            recovered = true;
        }
        let response = chat(&gateway, "primary", false).await;
        assert_eq!(
            response.status(),
            200,
            "slot {slot}: every request is answered"
        );
        if header(&response, "x-tollgate-model-group") == "primary" {
            assert!(recovered, "slot {slot}: the primary answered while down");
            back_at.get_or_insert(Instant::now());
        }
    }
    let back_at = back_at.expect("the primary serves again");
    assert!(
        back_at - recovery <= Duration::from_secs(15),
        "serving again {:?} after recovering",
        back_at - recovery
    );
    // While open, the primary sees at most one probe per open period: after
    // the five failures in a row that open the breaker (its default), the
    // primary's requests are a cooldown (less jitter) apart.
    let asked: Vec<Instant> = net
        .get("primary.test")
        .requests()
        .iter()
        .map(|r| r.received_at)
        .filter(|at| *at < recovery)
        .collect();
    let opened = 4;
    assert!(
        asked.len() > opened + 2,
        "the breaker probes during the outage"
    );
    for pair in asked[opened..].windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(4500),
            "two probes {:?} apart: {:?}",
            pair[1] - pair[0],
            asked.iter().map(|at| *at - start).collect::<Vec<_>>()
        );
    }
    assert!(asked.len() - opened <= 60 / 5, "{asked:?}");
}

// Acceptance 1, not streaming: `timeout: 30` bounds the silent attempt, not
// the request; the fallback answers with the time left.
#[tokio::test(start_paused = true)]
async fn a_silent_upstream_costs_one_attempt_timeout_then_the_fallback_answers() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(silent());
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&litellm_style("", ""));
    let start = Instant::now();
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tollgate-model-group"), "backup");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(30),
        "one attempt's timeout"
    );
    assert_eq!(net.get("primary.test").requests().len(), 1, "asked once");
}

// Acceptance 1, streaming: the cold stream head timeout (10 s) fires first.
#[tokio::test(start_paused = true)]
async fn a_silent_stream_fails_over_by_the_cold_head_timeout() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(silent());
    net.get("backup.test")
        .set_default(stream("backup-model", &["Hello", " there"]));
    let gateway = net.gateway(&litellm_style("", ""));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(streamed(response.body()), ("Hello there".to_owned(), true));
    assert_eq!(net.get("primary.test").requests().len(), 1, "asked once");
}

// Acceptance 2: silence that ends in a close is silence, not a reset.
#[tokio::test(start_paused = true)]
async fn a_silent_upstream_that_closes_is_not_asked_again() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test")
        .set_default(Reply::reset().delay_headers(Duration::from_secs(15)));
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&litellm_style("", ""));
    let start = Instant::now();
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tollgate-model-group"), "backup");
    assert_eq!(header(&response, "x-tollgate-attempted-retries"), "0");
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(net.get("primary.test").requests().len(), 1, "not retried");
}

// A quick reset is still a reset: retried on the same group.
#[tokio::test(start_paused = true)]
async fn a_quick_reset_is_still_retried() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test")
        .push(Reply::reset().delay_headers(Duration::from_secs(2)));
    net.get("primary.test")
        .set_default(completion("primary-model", "second try"));
    let gateway = net.gateway(&litellm_style("", ""));
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tollgate-model-group"), "primary");
    assert_eq!(header(&response, "x-tollgate-attempted-retries"), "1");
}

// The client's `x-tollgate-timeout` shortens the request's deadline, and
// the attempt in flight is held to it.
#[tokio::test(start_paused = true)]
async fn the_client_deadline_header_shortens_the_request() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(silent());
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&litellm_style("", ""));
    let start = Instant::now();
    let response = chat_with(&gateway, "primary", false, &[("x-tollgate-timeout", "12")]).await;
    assert_eq!(response.status(), 504);
    assert_eq!(start.elapsed(), Duration::from_secs(12));
    assert!(net.get("backup.test").requests().is_empty());

    let response = chat_with(
        &gateway,
        "primary",
        false,
        &[("x-tollgate-timeout", "soon")],
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"]["param"], "x-tollgate-timeout", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

// Acceptance 3: a stall mid-answer longer than the (cold) idle timeout is
// continued by the fallback; the request's deadline plays no part.
#[tokio::test(start_paused = true)]
async fn a_stall_mid_answer_is_continued_by_the_fallback_within_the_idle_timeout() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    let chunks = openai::chunks(&["Hello"]);
    net.get("primary.test")
        .push(Reply::sse().data(&chunks[0]).data(&chunks[1]).stall());
    net.get("primary.test").set_default(unavailable());
    net.get("backup.test")
        .set_default(stream("backup-model", &[" world"]));
    let gateway = net.gateway(&litellm_style("", ""));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(streamed(response.body()), ("Hello world".to_owned(), true));
    assert!(
        start.elapsed() >= Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(17),
        "{:?}",
        start.elapsed()
    );
}

/// A stream whose head comes at once and whose first token 20 s later.
fn late_first_token() -> Reply {
    let chunks = openai::chunks(&["Thought", " through"]);
    Reply::sse()
        .raw(": keep-alive\n\n")
        .delay(Duration::from_secs(20))
        .data_each(&chunks)
        .done()
}

// Acceptance 4: no `stream_timeout`; a first token 20 s late loses the
// request to the fallback at 15 s, unless the model reasons.
#[tokio::test(start_paused = true)]
async fn a_late_first_token_fails_over_at_the_interactive_default() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(late_first_token());
    net.get("backup.test")
        .set_default(stream("backup-model", &["Hello", " there"]));
    let gateway = net.gateway(&litellm_style("", ""));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(streamed(response.body()), ("Hello there".to_owned(), true));
}

#[tokio::test(start_paused = true)]
async fn a_reasoning_model_is_waited_for() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(late_first_token());
    net.get("backup.test")
        .set_default(stream("backup-model", &["Hello", " there"]));
    let gateway = net.gateway(&litellm_style("", "      supports_reasoning: true\n"));
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(
        streamed(response.body()),
        ("Thought through".to_owned(), true)
    );
    assert!(net.get("backup.test").requests().is_empty());
}
