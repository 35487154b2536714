//! The Anthropic layer against the testkit's Anthropic fake, over loopback.

#![cfg(feature = "anthropic")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Chunks, call, chat_request, chunks, client, split, text_of};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{ChatRequest, ErrorClass, Failure, Redactor, RequestBody, Secrets};
use tollgate_providers::ProviderConfig;
use tollgate_providers::anthropic::{Anthropic, AnthropicLayer};
use tollgate_testkit::{Gate, Reply, Upstream, anthropic as fake};
use tower::{Layer, ServiceExt};

const KEY: &str = "sk-ant-api03-tollgate-test-key-0123456789";

fn layer(upstream: &Upstream) -> AnthropicLayer {
    Anthropic::layer(&ProviderConfig::new().api_base(upstream.url()).api_key(KEY)).unwrap()
}

fn ask(stream: bool) -> Value {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn a_completion_is_translated_both_ways() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::json(200, fake::message("Hello!")));
    let service = layer(&upstream).layer(client());

    let (head, body) = call(service, chat_request(&ask(false))).await.unwrap();
    assert_eq!(head.status(), 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["completion_tokens"], fake::OUTPUT_TOKENS);
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );

    let sent = &upstream.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.headers["content-type"], "application/json");
    let sent = sent.json();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 4096);
}

#[tokio::test]
async fn a_stream_is_translated_event_by_event() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().raw(fake::text_stream(&["Hel", "lo", " there"])));
    let service = layer(&upstream).layer(client());

    let (head, body) = call(service, chat_request(&ask(true))).await.unwrap();
    assert_eq!(head.headers()["content-type"], "text/event-stream");
    let (chunks, done) = chunks(&body);
    assert!(done);
    assert_eq!(text_of(&chunks), "Hello there");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], fake::OUTPUT_TOKENS);
    assert_eq!(
        usage["prompt_tokens"],
        fake::INPUT_TOKENS + fake::CACHE_CREATION_TOKENS + fake::CACHE_READ_TOKENS
    );
    let sent = upstream.requests()[0].json();
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none());
}

#[tokio::test]
async fn streamed_tool_calls_round_trip() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().raw(
        fake::start()
            + &fake::tool_use_block(0, "toolu_01", "weather", &["{\"city\"", ": \"Paris\"}"])
            + &fake::stop("tool_use"),
    ));
    upstream.push(Reply::json(200, fake::message("18C in Paris.")));
    let service = layer(&upstream).layer(client());

    let (_, body) = call(service.clone(), chat_request(&ask(true)))
        .await
        .unwrap();
    let (chunks, done) = chunks(&body);
    assert!(done);
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");

    // The client sends the call and its result back.
    let mut next = ask(false);
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "toolu_01", "type": "function", "function": {"name": "weather", "arguments": arguments}},
    ]}));
    messages.push(json!({"role": "tool", "tool_call_id": "toolu_01", "content": "18C"}));
    let (_, body) = call(service, chat_request(&next)).await.unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "18C in Paris.");
    let sent = upstream.requests()[1].json();
    assert_eq!(
        sent["messages"][1]["content"][0]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_01");
}

#[tokio::test]
async fn error_answers_are_classified_failures() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::json(
        529,
        fake::error_body("overloaded_error", "Overloaded"),
    ));
    upstream.push(
        Reply::json(429, fake::error_body("rate_limit_error", "rate limited"))
            .header("retry-after", "3"),
    );
    upstream.push(Reply::json(
        400,
        fake::error_body(
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
        ),
    ));
    let service = layer(&upstream).layer(client());

    let error = call(service.clone(), chat_request(&ask(false)))
        .await
        .unwrap_err();
    let overloaded = Failure::from_error(&*error);
    assert_eq!(overloaded.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(overloaded.subkind(), Some("overloaded"));
    assert!(overloaded.is_retryable() && overloaded.is_fallback_eligible());

    let error = call(service.clone(), chat_request(&ask(true)))
        .await
        .unwrap_err();
    let rate = Failure::from_error(&*error);
    assert_eq!(rate.class(), ErrorClass::RateLimited);
    assert_eq!(rate.retry_after(), Some(Duration::from_secs(3)));

    let error = call(service, chat_request(&ask(false))).await.unwrap_err();
    assert_eq!(
        Failure::from_error(&*error).class(),
        ErrorClass::ContextWindowExceeded
    );
}

#[tokio::test]
async fn an_error_event_before_content_is_an_error_answer() {
    let upstream = Upstream::start().await;
    upstream.push(
        Reply::sse().raw(fake::start() + &fake::error_event("overloaded_error", "Overloaded")),
    );
    let service = layer(&upstream).layer(client());

    let error = call(service, chat_request(&ask(true))).await.unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.subkind(), Some("overloaded"));
    assert!(
        failure.is_retryable(),
        "nothing reached the client: a retry may help"
    );
}

#[tokio::test]
async fn an_error_event_after_content_ends_the_stream_with_a_redacted_error_event() {
    let upstream = Upstream::start().await;
    // A provider that quotes the key back mid-stream, after content went
    // out (the gate opens once the layer has answered).
    let echo = format!("invalid request: the key {KEY} is not allowed here");
    let gate = Gate::new();
    upstream.push(
        Reply::sse()
            .raw(
                fake::start()
                    + &fake::event(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    )
                    + &fake::event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
                    ),
            )
            .wait(&gate)
            .raw(fake::error_event("invalid_request_error", &echo)),
    );
    let service = layer(&upstream).layer(client());
    let mut request = chat_request(&ask(true));
    let secrets: Secrets = [KEY].into_iter().collect();
    request.extensions_mut().insert(Redactor::new(secrets));

    let response = service.oneshot(request).await.unwrap();
    gate.open();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(!text.contains(KEY), "{text}");
    assert!(!text.contains("[DONE]"));
    let (chunks, _) = chunks(&body);
    assert_eq!(text_of(&chunks), "Hel");
    let error = &chunks.last().unwrap()["error"];
    assert!(
        error["message"].as_str().unwrap().contains("[redacted]"),
        "{error}"
    );
}

#[tokio::test]
async fn a_key_echoed_in_an_error_never_reaches_the_failure() {
    let upstream = Upstream::start().await;
    let echo = format!("invalid x-api-key: {KEY}");
    upstream.push(Reply::json(
        401,
        fake::error_body("authentication_error", &echo),
    ));
    upstream.push(Reply::json(
        400,
        fake::error_body("invalid_request_error", &echo),
    ));
    let service = layer(&upstream).layer(client());

    for _ in 0..2 {
        let error = call(service.clone(), chat_request(&ask(false)))
            .await
            .unwrap_err();
        let failure = Failure::from_error(&*error);
        let shown = format!("{failure} {failure:?} {error} {error:?}");
        let body = String::from_utf8(failure.to_openai_body().to_vec()).unwrap();
        assert!(
            !shown.contains(KEY) && !body.contains(KEY),
            "{shown} {body}"
        );
    }
    // Nor does the layer's own debug output show it.
    assert!(!format!("{:?}", layer(&upstream)).contains(KEY));
}

#[tokio::test]
async fn a_continuation_with_a_prefill_yields_the_rest_of_the_answer() {
    let upstream = Upstream::start().await;
    // The first answer breaks after "one, two, " (cut mid-stream) ...
    upstream.push(
        Reply::sse()
            .raw(fake::start() + &fake::event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ) + &fake::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one, two, "}}),
            ))
            .cut(),
    );
    // ... and Anthropic continues the prefill it is given.
    upstream.push(Reply::sse().raw(fake::text_stream(&[" three, four, five."])));
    let service = layer(&upstream).layer(client());
    let question = json!({"model": "claude-sonnet-4-5", "stream": true,
                          "messages": [{"role": "user", "content": "count to five"}]});

    let broken = call(service.clone(), chat_request(&question)).await;
    let first = match broken {
        // A cut surfaces as a body error or an end without [DONE].
        Ok((_, body)) => {
            let (chunks, done) = chunks(&body);
            assert!(!done);
            text_of(&chunks)
        }
        Err(_) => "one, two, ".to_owned(),
    };
    assert_eq!(first, "one, two, ");

    // The request a fallback layer's continuation sends: core's prefill.
    let chat = ChatRequest::parse(Bytes::from(question.to_string())).unwrap();
    let continued = chat.with_assistant_prefill(first.trim_end()).unwrap();
    let request = http::Request::post("/chat/completions")
        .body(RequestBody::new(continued.bytes().clone()))
        .unwrap();
    let (_, body) = call(service, request).await.unwrap();
    let (chunks, done) = chunks(&body);
    assert!(done);
    assert_eq!(
        format!("{}{}", first.trim_end(), text_of(&chunks)),
        "one, two, three, four, five."
    );

    let sent = upstream.requests()[1].json();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap(),
        &json!({"role": "assistant", "content": [{"type": "text", "text": "one, two,"}]})
    );
}

/// The stream `upstream_bytes` through the layer, the upstream sending it in
/// the pieces `cuts` make.
fn through_layer(upstream_bytes: &Bytes, cuts: Vec<usize>) -> Bytes {
    let pieces = split(upstream_bytes, cuts);
    let upstream = tower::service_fn(move |_: http::Request<RequestBody>| {
        let response = http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Chunks(pieces.clone()))
            .unwrap();
        std::future::ready(Ok::<_, tollgate_core::BoxError>(response))
    });
    let service = Anthropic::layer(&ProviderConfig::new())
        .unwrap()
        .layer(upstream);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(call(service, chat_request(&ask(true))))
        .unwrap()
        .1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Through the whole layer (its wait for the first content included), a
    /// stream cut anywhere gives the bytes the uncut stream gives.
    #[test]
    fn the_layer_gives_the_same_stream_for_any_byte_split(
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let stream = Bytes::from(
            fake::start()
                + &fake::text_block(0, &["Bonjour, ", "ça va ?"])
                + &fake::tool_use_block(1, "toolu_1", "f", &["{\"x\":", " [1, 2]}"])
                + &fake::stop("tool_use"),
        );
        let whole = through_layer(&stream, Vec::new());
        let (chunks, done) = chunks(&whole);
        prop_assert!(done);
        prop_assert_eq!(text_of(&chunks), "Bonjour, ça va ?");
        let cuts = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        prop_assert_eq!(through_layer(&stream, cuts), whole);
    }
}
