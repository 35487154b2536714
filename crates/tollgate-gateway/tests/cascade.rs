//! The fallback cascade through the whole gateway (issue 7's acceptance),
//! against testkit upstreams reached in memory, under paused time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::net::{Net, chat, completion, stream, streamed, unavailable};
use common::sse_data;
use serde_json::Value;
use tokio::time::Instant;
use tollgate_testkit::{Reply, openai};

/// A group `name` of one OpenAI-compatible deployment at `host`.
fn group(name: &str, host: &str, extra_params: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: openai/{name}-model\n      api_base: http://{host}/v1\n      api_key: os.environ/KEY\n{extra_params}    model_info:\n      id: {name}-1\n"
    )
}

fn header<'a>(response: &'a http::Response<Bytes>, name: &str) -> &'a str {
    response.headers()[name].to_str().unwrap()
}

fn json(response: &http::Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

const CASCADE: &str = "router_settings:\n  fallbacks:\n    - primary: [\"backup\"]\n";

fn two_groups(router: &str, primary_params: &str) -> String {
    format!(
        "model_list:\n{}{}{router}",
        group("primary", "primary.test", primary_params),
        group("backup", "backup.test", "")
    )
}

// 1. A 429 with Retry-After: the next attempt waits at least that long.
#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_waited_for_then_the_fallback_answers() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(
        Reply::json(
            429,
            openai::error_body("slow down", "requests", Some("rate_limit_exceeded")),
        )
        .header("retry-after", "2"),
    );
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&two_groups(&format!("{CASCADE}  num_retries: 2\n"), ""));
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tollgate-model-group"), "backup");
    assert_eq!(header(&response, "x-tollgate-attempted-fallbacks"), "1");
    let attempts = net.get("primary.test").requests();
    assert!(attempts.len() <= 3, "bounded: {}", attempts.len());
    for pair in attempts.windows(2) {
        assert!(pair[1].received_at - pair[0].received_at >= Duration::from_secs(2));
    }
}

// 2 and 11. A persistent 503: a bounded number of attempts, then the
// fallback answers — named as such, with its own usage.
#[tokio::test(start_paused = true)]
async fn a_persistent_503_ends_in_the_fallbacks_answer() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(unavailable());
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&two_groups(&format!("{CASCADE}  num_retries: 3\n"), ""));
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(net.get("primary.test").requests().len(), 4, "1 + 3 retries");
    let body = json(&response);
    assert_eq!(body["model"], "backup-model");
    assert_eq!(body["choices"][0]["message"]["content"], "from the backup");
    assert_eq!(body["usage"]["total_tokens"], 30);
    assert_eq!(header(&response, "x-tollgate-deployment"), "backup-1");
}

// 3. Refused, or reset before headers.
#[tokio::test(start_paused = true)]
async fn refused_and_reset_are_answered_by_a_retry_or_the_fallback() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let refused = format!(
        "model_list:\n{}{}{CASCADE}",
        group("primary", "refused.test", ""),
        group("backup", "backup.test", "")
    );
    let response = chat(&net.gateway(&refused), "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tollgate-model-group"), "backup");

    net.get("primary.test").push(Reply::reset());
    net.get("primary.test")
        .push(completion("primary-model", "second try"));
    let gateway = net.gateway(&two_groups(CASCADE, ""));
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tollgate-model-group"), "primary");
    assert_eq!(header(&response, "x-tollgate-attempted-retries"), "1");
}

// 4. A primary that accepts and never answers: the fallback answers after
// the first timeout, long before a provider would give up.
#[tokio::test(start_paused = true)]
async fn a_silent_primary_fails_over_after_its_timeout() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(
        completion("primary-model", "too late").delay_headers(Duration::from_secs(3600)),
    );
    net.get("backup.test")
        .set_default(completion("backup-model", "from the backup"));
    let gateway = net.gateway(&two_groups(CASCADE, "      timeout: 10\n"));
    let start = Instant::now();
    let response = chat(&gateway, "primary", false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(
        net.get("primary.test").requests().len(),
        1,
        "not asked again"
    );
    assert_eq!(header(&response, "x-tollgate-model-group"), "backup");
}

// 5. No first token within stream_timeout: fails over.
#[tokio::test(start_paused = true)]
async fn a_stream_without_its_first_token_in_time_fails_over() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(
        Reply::sse()
            .raw(": keep-alive\n\n")
            .delay(Duration::from_secs(3600))
            .done(),
    );
    net.get("backup.test")
        .set_default(stream("backup-model", &["Hello", " there"]));
    let gateway = net.gateway(&two_groups(CASCADE, "      stream_timeout: 5\n"));
    let start = Instant::now();
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(streamed(response.body()), ("Hello there".to_owned(), true));
}

// 6. A stream cut after some content is continued by a prefill-capable
// target; the client gets the whole answer.
#[tokio::test(start_paused = true)]
async fn a_cut_stream_is_continued_to_one_whole_answer() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    let chunks = openai::chunks(&["The capital", " of France"]);
    net.get("primary.test").push(
        Reply::sse()
            .data(&chunks[0])
            .data(&chunks[1])
            .data(&chunks[2])
            .cut(),
    );
    net.get("primary.test").set_default(unavailable());
    net.get("backup.test")
        .set_default(stream("backup-model", &[" is Paris."]));
    let gateway = net.gateway(&two_groups(&format!("{CASCADE}  num_retries: 0\n"), ""));
    let response = chat(&gateway, "primary", true).await;
    assert_eq!(
        streamed(response.body()),
        ("The capital of France is Paris.".to_owned(), true)
    );
    // The backup was asked to continue the text already sent.
    let continuation = net.get("backup.test").requests()[0].json();
    let messages = continuation["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["role"], "assistant");
    assert_eq!(messages.last().unwrap()["content"], "The capital of France");
}

#[tokio::test(start_paused = true)]
async fn when_nothing_can_continue_the_error_names_the_cut() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    let chunks = openai::chunks(&["The capital"]);
    net.get("primary.test")
        .set_default(Reply::sse().data(&chunks[0]).data(&chunks[1]).cut());
    // The only fallback rejects an assistant prefill.
    net.get("backup.test").set_default(Reply::json(
        400,
        openai::error_body("prefill is not supported", "invalid_request_error", None),
    ));
    let gateway = net.gateway(&two_groups(&format!("{CASCADE}  num_retries: 0\n"), ""));
    let response = chat(&gateway, "primary", true).await;
    let events = sse_data(response.body());
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "stream_interrupted");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("upstream_unavailable"), "{message}");
    assert!(!message.contains("prefill"), "{message}");
}

// 7. A stall mid-answer: detected within the idle timeout, continued.
#[tokio::test(start_paused = true)]
async fn a_stall_mid_answer_is_detected_and_continued() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    let chunks = openai::chunks(&["Hello"]);
    net.get("primary.test").push(
        Reply::sse()
            .data(&chunks[0])
            .data(&chunks[1])
            .delay(Duration::from_secs(3600))
            .done(),
    );
    net.get("primary.test").set_default(unavailable());
    net.get("backup.test")
        .set_default(stream("backup-model", &[" world"]));
    let yaml = two_groups(
        &format!("{CASCADE}  num_retries: 0\ntollgate:\n  stream_idle_timeout: 4\n"),
        "",
    );
    let start = Instant::now();
    let response = chat(&net.gateway(&yaml), "primary", true).await;
    assert_eq!(streamed(response.body()), ("Hello world".to_owned(), true));
    assert!(start.elapsed() >= Duration::from_secs(4));
    assert!(start.elapsed() < Duration::from_secs(5));
}

fn context_window_error() -> Reply {
    Reply::json(
        400,
        openai::error_body(
            "This model's maximum context length is 8192 tokens.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
    )
}

// 8. Context window: one attempt, then the context-window fallback; else the
// regular fallbacks; with none, the 400 reaches the client.
#[tokio::test(start_paused = true)]
async fn a_context_window_error_goes_to_the_bigger_model() {
    let net = Net::new(&["primary.test", "backup.test", "big.test"]).await;
    net.get("primary.test").set_default(context_window_error());
    net.get("backup.test")
        .set_default(completion("backup-model", "backup"));
    net.get("big.test")
        .set_default(completion("big-model", "big"));
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  fallbacks:\n    - primary: [\"backup\"]\n  context_window_fallbacks:\n    - primary: [\"big\"]\n",
        group("primary", "primary.test", ""),
        group("backup", "backup.test", ""),
        group("big", "big.test", "")
    );
    let response = chat(&net.gateway(&yaml), "primary", false).await;
    assert_eq!(json(&response)["model"], "big-model");
    assert_eq!(net.get("primary.test").requests().len(), 1);

    // Without context_window_fallbacks, the regular fallbacks apply.
    let response = chat(&net.gateway(&two_groups(CASCADE, "")), "primary", false).await;
    assert_eq!(json(&response)["model"], "backup-model");
    assert_eq!(net.get("primary.test").requests().len(), 2);

    // With no fallback at all, the 400 reaches the client.
    let alone = format!("model_list:\n{}", group("primary", "primary.test", ""));
    let response = chat(&net.gateway(&alone), "primary", false).await;
    assert_eq!(response.status(), 400);
    assert_eq!(json(&response)["error"]["code"], "context_length_exceeded");
    assert_eq!(net.get("primary.test").requests().len(), 3);
}

// 9. Content policy: exactly one attempt, and the reason reaches the client.
#[tokio::test(start_paused = true)]
async fn a_content_policy_refusal_reaches_the_client_with_its_reason() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(Reply::json(
        400,
        openai::error_body(
            "Your request was rejected as a result of our safety system.",
            "invalid_request_error",
            Some("content_policy_violation"),
        ),
    ));
    net.get("backup.test")
        .set_default(completion("backup-model", "backup"));
    let response = chat(&net.gateway(&two_groups(CASCADE, "")), "primary", false).await;
    assert_eq!(response.status(), 400);
    let error = &json(&response)["error"];
    assert_eq!(error["code"], "content_policy_violation");
    assert!(error["message"].as_str().unwrap().contains("safety system"));
    assert_eq!(net.get("primary.test").requests().len(), 1);
    assert!(net.get("backup.test").requests().is_empty());
}

// 10. A primary down for a while: served by the fallback, not hit by every
// request while its breaker is open, back on the primary after recovery.
#[tokio::test(start_paused = true)]
async fn a_primary_that_recovers_gets_its_traffic_back() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    net.get("primary.test").set_default(unavailable());
    net.get("backup.test")
        .set_default(completion("backup-model", "backup"));
    let router = format!("{CASCADE}  num_retries: 0\n  allowed_fails: 1\n  cooldown_time: 30\n");
    let gateway = net.gateway(&two_groups(&router, ""));
    for _ in 0..10 {
        let response = chat(&gateway, "primary", false).await;
        assert_eq!(header(&response, "x-tollgate-model-group"), "backup");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // Two failures opened its breaker; the other requests went straight on.
    assert_eq!(net.get("primary.test").requests().len(), 2);

    net.get("primary.test")
        .set_default(completion("primary-model", "primary"));
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..3 {
        let response = chat(&gateway, "primary", false).await;
        assert_eq!(header(&response, "x-tollgate-model-group"), "primary");
        assert_eq!(header(&response, "x-tollgate-attempted-fallbacks"), "0");
    }
}
