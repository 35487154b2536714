//! The Bedrock layer against the testkit's Bedrock fake, over loopback:
//! the fake recomputes every request's SigV4 signature and refuses a
//! mismatch, and frames its event streams with real CRCs.

#![cfg(feature = "bedrock")]

mod common;

use common::{call, chat_request, chunks, client, text_of};
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure};
use tollgate_providers::ProviderConfig;
use tollgate_providers::bedrock::{Bedrock, BedrockLayer};
use tollgate_testkit::{Reply, Upstream, bedrock as fake};
use tower::Layer;

const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";

fn layer(upstream: &Upstream, secret: &str) -> BedrockLayer {
    Bedrock::layer(
        &ProviderConfig::new()
            .api_base(upstream.url())
            .aws_credentials(fake::ACCESS_KEY_ID, secret)
            .aws_session_token("IQoJb3JpZ2luX2VjEXAMPLE/token+=")
            .aws_region(fake::REGION),
    )
    .unwrap()
}

fn ask(stream: bool, text: &str) -> Value {
    json!({"model": MODEL, "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]})
}

#[tokio::test]
async fn signed_completions_and_streams_reach_converse() {
    let upstream = fake::upstream().await;
    upstream.push(Reply::json(200, fake::converse("Hello")));
    upstream.push(fake::stream_reply(fake::text_stream(&["Hel", "lo"])));
    let service = layer(&upstream, fake::SECRET_ACCESS_KEY).layer(client());

    let (head, body) = call(service.clone(), chat_request(&ask(false, "hi")))
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    assert_eq!(body["usage"]["completion_tokens"], fake::OUTPUT_TOKENS);

    let (_, body) = call(service, chat_request(&ask(true, "hi"))).await.unwrap();
    let (chunks, done) = chunks(&body);
    assert!(done);
    assert_eq!(text_of(&chunks), "Hello");
    assert_eq!(
        chunks.last().unwrap()["usage"]["prompt_tokens"],
        fake::INPUT_TOKENS + fake::CACHE_READ_TOKENS + fake::CACHE_WRITE_TOKENS
    );

    let requests = upstream.requests();
    assert_eq!(
        requests[0].uri.path(),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        requests[1].uri.path(),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    let sent = requests[0].json();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        requests[0].headers["x-amz-security-token"],
        "IQoJb3JpZ2luX2VjEXAMPLE/token+="
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_fake_as_aws_would() {
    let upstream = fake::upstream().await;
    upstream.push(Reply::json(200, fake::converse("never sent")));
    let service = layer(&upstream, "wrong-secret").layer(client());
    let error = call(service, chat_request(&ask(false, "hi")))
        .await
        .unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::Auth);
    assert!(!failure.message().contains("wrong-secret"));
}

#[tokio::test]
async fn errors_before_content_are_classified_failures() {
    let upstream = fake::upstream().await;
    upstream.push(fake::error(
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    ));
    upstream.push(fake::error(
        400,
        "ValidationException",
        "Input is too long for requested model.",
    ));
    upstream.push(fake::stream_reply([
        fake::start(),
        fake::exception("serviceUnavailableException", "Bedrock is unavailable"),
    ]));
    let service = layer(&upstream, fake::SECRET_ACCESS_KEY).layer(client());
    for (stream, class) in [
        (false, ErrorClass::RateLimited),
        (false, ErrorClass::ContextWindowExceeded),
        (true, ErrorClass::UpstreamUnavailable),
    ] {
        let error = call(service.clone(), chat_request(&ask(stream, "hi")))
            .await
            .unwrap_err();
        assert_eq!(Failure::from_error(&*error).class(), class);
    }
}

#[tokio::test]
async fn a_stream_broken_after_content_ends_with_an_error_event() {
    let upstream = fake::upstream().await;
    let mut messages = vec![fake::start()];
    messages.extend(fake::text_block(0, &["Partial"]));
    // A frame whose CRC does not match: the stream cannot be trusted.
    let mut corrupt = fake::event(
        "contentBlockDelta",
        &json!({"contentBlockIndex": 0, "delta": {"text": "x"}}),
    )
    .to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    messages.push(corrupt.into());
    upstream.push(fake::stream_reply(messages));
    let service = layer(&upstream, fake::SECRET_ACCESS_KEY).layer(client());
    let (_, body) = call(service, chat_request(&ask(true, "hi"))).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Partial"));
    assert!(text.contains("CRC"), "{text}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn a_stream_cut_into_odd_pieces_on_the_wire_reads_the_same() {
    let upstream = fake::upstream().await;
    let bytes = fake::concat(&fake::tool_stream(
        "tooluse_1",
        "weather",
        &["{\"city\":", " \"Paris\"}"],
    ));
    // 7-byte pieces: no message boundary falls on a piece's.
    let pieces = (0..bytes.len())
        .step_by(7)
        .map(|at| bytes.slice(at..(at + 7).min(bytes.len())));
    upstream.push(fake::stream_reply(pieces));
    upstream.push(fake::stream_reply([bytes]));
    let service = layer(&upstream, fake::SECRET_ACCESS_KEY).layer(client());
    let (_, cut) = call(service.clone(), chat_request(&ask(true, "hi")))
        .await
        .unwrap();
    let (_, whole) = call(service, chat_request(&ask(true, "hi"))).await.unwrap();
    let without_ids = |body: &[u8]| {
        let (chunks, done) = chunks(body);
        assert!(done);
        chunks
            .into_iter()
            .map(|mut c| {
                c["id"] = Value::Null;
                c
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_ids(&cut), without_ids(&whole));
    assert_eq!(text_of(&without_ids(&cut)), "Let me check.");
}
