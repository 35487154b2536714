//! The headers a client sees on an answer: the upstream's content type and
//! rate limits (filtered once, by the provider's allow-list), the layers'
//! own (cost, attempts) and the gateway's (model group, deployment, request
//! id) — and nothing else the upstream sent: no cookie, no auth challenge,
//! no host or id of its own, no length the layers may have made wrong.

mod common;

use common::{Answer, TestGateway, call, chat_body, client, openai_config};
use tollgate_testkit::{Reply, Upstream, openai};

const ENV: &[(&str, &str)] = &[("UPSTREAM_KEY", "sk-test-upstream")];

/// What an upstream adds that must stay at the gateway.
fn with_upstream_extras(reply: Reply) -> Reply {
    reply
        .header("set-cookie", "session=upstream-session")
        .header("www-authenticate", "Bearer realm=\"upstream\"")
        .header("server", "upstream.internal")
        .header("openai-organization", "org-upstream")
        .header("x-request-id", "req-upstream")
        .header("connection", "keep-alive")
        .header("x-ratelimit-remaining-requests", "4999")
        .header("x-ratelimit-limit-tokens", "200000")
}

/// The names of `headers`, sorted, without `date` (hyper's own).
fn names(headers: &http::HeaderMap) -> Vec<&str> {
    let mut names: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| *name != "date")
        .collect();
    names.sort_unstable();
    names
}

/// The headers every answer shows (the upstream's allowed ones, the
/// layers' and the gateway's), with `more`, sorted.
fn expected<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let mut names = vec![
        "content-type",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-request-id",
        "x-tollgate-attempted-fallbacks",
        "x-tollgate-attempted-retries",
        "x-tollgate-deployment",
        "x-tollgate-model-group",
    ];
    names.extend_from_slice(more);
    names.sort_unstable();
    names
}

/// The answer a client gets when the upstream sends `reply`.
async fn answer(reply: Reply, stream: bool) -> Answer {
    let upstream = Upstream::start().await;
    upstream.push(with_upstream_extras(reply));
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let answer = call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", stream),
        &[("content-type", "application/json")],
    )
    .await;
    gateway.shutdown().await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer
}

#[tokio::test]
async fn a_json_answer_shows_the_allowed_upstream_headers_and_the_gateways() {
    let answer = answer(Reply::json(200, openai::chat_completion("hello")), false).await;
    assert_eq!(
        names(&answer.headers),
        expected(&["content-length", "x-tollgate-response-cost"])
    );
    let headers = &answer.headers;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "4999");
    assert_ne!(headers["x-request-id"], "req-upstream");
    // The length is the body's, as it reached the client.
    assert_eq!(headers["content-length"], answer.body.len().to_string());
}

#[tokio::test]
async fn a_stream_shows_the_allowed_upstream_headers_and_the_gateways() {
    let chunks = openai::chunks(&["Hel", "lo"]);
    let stream = Reply::sse()
        .data_each(chunks.iter())
        .done()
        .header("content-length", "9999");
    let answer = answer(stream, true).await;
    assert_eq!(
        names(&answer.headers),
        expected(&["cache-control", "transfer-encoding"])
    );
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    assert_eq!(answer.headers["cache-control"], "no-cache");
    assert!(answer.text().ends_with("data: [DONE]\n\n"));
}
