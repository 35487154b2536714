//! Unit tests of the Anthropic translation: request, answer, stream, errors.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Scope};
use tollgate_testkit::anthropic as fake;

use super::*;
use crate::events::TranslatedEvents;
use crate::protocol::TranslateEvent;
use crate::stream::translate_all;
use crate::test_support::{self, assert_text_stream, client_request, data_events};

fn anthropic() -> Anthropic {
    Anthropic::new(&ProviderConfig::new().api_key("sk-ant-test-key")).unwrap()
}

fn prepare(body: Value) -> (http::request::Parts, Value, Exchange) {
    let mut head = client_request();
    let (out, exchange) = anthropic()
        .prepare(&mut head, body.to_string().as_bytes(), 7)
        .unwrap();
    (head, serde_json::from_slice(&out).unwrap(), exchange)
}

fn exchange(stream: bool, include_usage: bool) -> Exchange {
    test_support::exchange("claude-sonnet-4-5", stream, include_usage)
}

#[test]
fn request_goes_to_messages_with_anthropic_headers() {
    let (head, sent, exchange) = prepare(json!({
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    }));
    assert_eq!(head.uri, "https://api.anthropic.com/v1/messages");
    assert_eq!(head.headers["x-api-key"], "sk-ant-test-key");
    assert!(head.headers["x-api-key"].is_sensitive());
    assert_eq!(head.headers["anthropic-version"], DEFAULT_VERSION);
    assert!(!head.headers.contains_key("authorization"));
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
    assert!(sent.get("stream").is_none());
    assert!(!exchange.stream);
    assert_eq!(&*exchange.model, "claude-sonnet-4-5");
}

#[test]
fn claude_on_vertex_counts_at_count_tokens_and_takes_the_native_body_in_vertex_s_shape() {
    let models = "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models";
    let claude = Anthropic::on_vertex(models, &ProviderConfig::new()).unwrap();
    let (mut head, ()) = Request::post("/v1/messages/count_tokens")
        .body(())
        .unwrap()
        .into_parts();
    claude.count_tokens(&mut head);
    assert_eq!(
        head.uri,
        format!("{models}/count-tokens:rawPredict").as_str()
    );
    // A client's Messages request goes as written in Vertex's body: no
    // model (it is in the URL), Vertex's version inside.
    let native = tollgate_core::extensions::NativeRequest {
        api: tollgate_core::extensions::NativeApi::AnthropicMessages,
        body: Bytes::from_static(
            br#"{"model":"claude","max_tokens":5,"messages":[],"top_k":3,"thinking":{"type":"enabled"}}"#,
        ),
        message_count: 0,
    };
    let exchange = Exchange {
        stream: false,
        include_usage: false,
        model: "claude-3-5-sonnet@20240620".into(),
        created: 0,
    };
    let sent: serde_json::Value =
        serde_json::from_slice(&claude.native(&native, &exchange).unwrap()).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 5,
            "messages": [],
            "top_k": 3,
        })
    );
}

#[test]
fn token_counting_goes_to_count_tokens_with_the_same_credentials() {
    let config = ProviderConfig::new()
        .api_base("https://proxy.example/anthropic")
        .api_key("sk-ant-test-key");
    let layer = Anthropic::layer(&config).unwrap();
    let provider = tower::Layer::layer(&layer, ());
    let (mut head, ()) = Request::post("/v1/messages/count_tokens")
        .header("authorization", "Bearer sk-client-key")
        .body(())
        .unwrap()
        .into_parts();
    provider.protocol().count_tokens(&mut head);
    assert_eq!(
        head.uri,
        "https://proxy.example/anthropic/v1/messages/count_tokens"
    );
    assert_eq!(head.headers["x-api-key"], "sk-ant-test-key");
    assert_eq!(head.headers["anthropic-version"], DEFAULT_VERSION);
    assert!(!head.headers.contains_key("authorization"));
}

#[test]
fn a_native_request_goes_as_written_with_the_exchanges_model_and_stream() {
    use tollgate_core::extensions::{NativeApi, NativeRequest};
    let written = json!({"model": "claude", "max_tokens": 9, "top_k": 3, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]});
    let native = NativeRequest {
        api: NativeApi::AnthropicMessages,
        body: Bytes::from(written.to_string()),
        message_count: 2,
    };
    let sent = anthropic().native(&native, &exchange(true, true)).unwrap();
    let mut want = written.clone();
    want["model"] = json!("claude-sonnet-4-5");
    want.as_object_mut().unwrap().remove("thinking");
    want.as_object_mut().unwrap().remove("context_management");
    assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap(), want);
    let sent = anthropic()
        .native(&native, &exchange(false, false))
        .unwrap();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert!(sent.get("stream").is_none());
    let garbage = NativeRequest {
        body: Bytes::from_static(b"[1]"),
        ..native
    };
    assert!(
        anthropic()
            .native(&garbage, &exchange(false, false))
            .is_none()
    );
}

#[test]
fn base_version_and_extra_headers_come_from_the_config() {
    let config = ProviderConfig::new()
        .api_base("http://127.0.0.1:9/proxy/")
        .api_version("2024-01-01")
        .header("anthropic-beta", "prompt-caching-2024-07-31");
    let anthropic = Anthropic::new(&config).unwrap();
    assert!(
        matches!(&anthropic.target, Target::Messages(uri) if uri == "http://127.0.0.1:9/proxy/v1/messages")
    );
    let headers = anthropic.headers.map();
    assert_eq!(headers["anthropic-version"], "2024-01-01");
    assert_eq!(headers["anthropic-beta"], "prompt-caching-2024-07-31");
    assert!(!headers.contains_key("x-api-key"));
    let full = ProviderConfig::new().api_base("https://gw.example/v1/messages");
    assert!(matches!(
        Anthropic::new(&full).unwrap().target,
        Target::Messages(uri) if uri == "https://gw.example/v1/messages"
    ));
    assert!(Anthropic::new(&ProviderConfig::new().api_base("api.anthropic.com")).is_err());
    assert!(Anthropic::new(&ProviderConfig::new().api_key("a\nb")).is_err());
}

#[test]
fn system_is_lifted_and_params_are_mapped() {
    let (_, sent, exchange) = prepare(json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 100,
        "stop": "END",
        "temperature": 0.5,
        "user": "u-1",
        "stream": true,
        "stream_options": {"include_usage": true},
        "seed": 3,
        "top_k": 5,
    }));
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["top_k"], 5);
    for dropped in [
        "stream_options",
        "seed",
        "stop",
        "user",
        "max_completion_tokens",
    ] {
        assert!(sent.get(dropped).is_none(), "{dropped}");
    }
    assert!(exchange.stream && exchange.include_usage);

    let (_, sent, _) = prepare(json!({
        "model": "m", "max_completion_tokens": 77, "stop": ["a", "b"],
        "messages": [{"role": "user", "content": "x"}],
    }));
    assert_eq!(sent["max_tokens"], 77);
    assert_eq!(sent["stop_sequences"], json!(["a", "b"]));

    let config = ProviderConfig::new().default_max_tokens(64000);
    let mut head = Request::new(()).into_parts().0;
    let (out, _) = Anthropic::new(&config)
        .unwrap()
        .prepare(
            &mut head,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            0,
        )
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap()["max_tokens"],
        64000
    );
}

#[test]
fn cache_control_passes_through_system_parts_and_tools() {
    let cache = json!({"type": "ephemeral"});
    let (_, sent, _) = prepare(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "long context", "cache_control": cache}]},
            {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": cache}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": cache}],
    }));
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "long context", "cache_control": cache}])
    );
    assert_eq!(sent["messages"][0]["content"][0]["cache_control"], cache);
    assert_eq!(sent["tools"][0]["cache_control"], cache);
}

#[test]
fn images_become_image_blocks() {
    let (_, sent, _) = prepare(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}],
    }));
    let content = &sent["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        content[2],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
}

#[test]
fn tools_tool_calls_and_results_are_translated() {
    let (_, sent, _) = prepare(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "24C"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
    }));
    assert_eq!(
        sent["tools"],
        json!([{"name": "weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
        ]})
    );
    // Both results in one user turn.
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
        ]})
    );
    assert!(sent.get("parallel_tool_calls").is_none());

    for (choice, expected) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
    ] {
        let (_, sent, _) = prepare(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
        );
        assert_eq!(sent["tool_choice"], expected);
    }
}

#[test]
fn a_trailing_assistant_message_is_a_prefill() {
    // What a fallback layer's continuation sends: the answer so far last.
    let (_, sent, _) = prepare(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "count to five"},
            {"role": "assistant", "content": "one, two, "},
        ],
    }));
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [{"type": "text", "text": "one, two,"}]})
    );
}

#[test]
fn bad_requests_are_refused_in_openai_shape() {
    let anthropic = anthropic();
    let mut head = Request::new(()).into_parts().0;
    for (body, param) in [
        (&b"not json"[..], None),
        (br#"{"messages":[]}"#, Some("model")),
        (br#"{"model":"m"}"#, Some("messages")),
        (br#"{"model":"m","n":2,"messages":[]}"#, Some("n")),
        (
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}"#,
            Some("messages"),
        ),
        (
            br#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
            Some("messages"),
        ),
    ] {
        let failure = anthropic.prepare(&mut head, body, 0).unwrap_err();
        assert_eq!(failure.class(), ErrorClass::BadRequest);
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST);
        let rendered: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(rendered["error"]["param"].as_str(), param);
    }
}

#[test]
fn a_message_becomes_a_chat_completion_with_cache_usage() {
    let body = Bytes::from(fake::message("Hello!").to_string());
    let answer: Value =
        serde_json::from_slice(&anthropic().answer(&exchange(false, false), body).unwrap())
            .unwrap();
    assert_eq!(answer["id"], fake::ID);
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["created"], 7);
    assert_eq!(answer["model"], fake::MODEL);
    assert_eq!(
        answer["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello!"})
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let prompt = fake::INPUT_TOKENS + fake::CACHE_CREATION_TOKENS + fake::CACHE_READ_TOKENS;
    assert_eq!(
        answer["usage"],
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": fake::OUTPUT_TOKENS,
            "total_tokens": prompt + fake::OUTPUT_TOKENS,
            "prompt_tokens_details": {"cached_tokens": fake::CACHE_READ_TOKENS, "cache_creation_tokens": fake::CACHE_CREATION_TOKENS},
            "cache_creation_input_tokens": fake::CACHE_CREATION_TOKENS,
            "cache_read_input_tokens": fake::CACHE_READ_TOKENS,
        })
    );
}

#[test]
fn tool_use_becomes_tool_calls() {
    let body = fake::tool_use_message("toolu_1", "weather", json!({"city": "Paris"}));
    let answer = anthropic()
        .answer(&exchange(false, false), Bytes::from(body.to_string()))
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check.");
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let mut body = fake::message("x");
        body["stop_reason"] = json!(stop);
        let answer = anthropic()
            .answer(&exchange(false, false), Bytes::from(body.to_string()))
            .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["choices"][0]["finish_reason"], finish, "{stop}");
    }
}

fn translate(stream: &str, include_usage: bool) -> Bytes {
    translate_all(
        AnthropicStream::new(&exchange(true, include_usage)),
        [Bytes::from(stream.to_owned())],
    )
    .unwrap()
}

#[test]
fn a_text_stream_becomes_chunks_ending_with_done() {
    let out = translate(&fake::text_stream(&["Hel", "lo"]), false);
    assert_text_stream(&out, &["Hel", "lo"], fake::ID, fake::MODEL);
}

#[test]
fn usage_chunk_only_when_asked() {
    let out = translate(&fake::text_stream(&["Hi"]), true);
    let events = data_events(&out);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], fake::OUTPUT_TOKENS);
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        fake::CACHE_READ_TOKENS
    );
    assert_eq!(
        usage["usage"]["cache_creation_input_tokens"],
        fake::CACHE_CREATION_TOKENS
    );
}

#[test]
fn streamed_tool_use_becomes_tool_call_deltas() {
    let stream = fake::start()
        + &fake::text_block(0, &["Checking."])
        + &fake::tool_use_block(1, "toolu_9", "weather", &["", "{\"city\": ", "\"Paris\"}"])
        + &fake::stop("tool_use");
    let out = translate(&stream, false);
    let chunks: Vec<Value> = data_events(&out)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(
        calls[0],
        &json!([{"index": 0, "id": "toolu_9", "type": "function", "function": {"name": "weather", "arguments": ""}}])
    );
    let arguments: String = calls[1..]
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    assert!(
        calls[1..]
            .iter()
            .all(|c| c[0]["index"] == 0 && c[0].get("id").is_none())
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn an_error_event_fails_the_stream_classified() {
    let mut state = AnthropicStream::new(&exchange(true, false));
    let mut out = TranslatedEvents::new();
    let failure = translate_all(
        AnthropicStream::new(&exchange(true, false)),
        [Bytes::from(
            fake::start() + &fake::error_event("overloaded_error", "Overloaded"),
        )],
    )
    .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("overloaded"));
    assert!(failure.is_retryable() && failure.is_fallback_eligible());
    // Not committed before content: the layer can still answer an error.
    let start = tollgate_core::sse::Event::new(
        serde_json::to_vec(&json!({"type": "message_start", "message": {"id": "m"}})).unwrap(),
    );
    state.event(&start, &mut out).unwrap();
    assert!(!state.committed() && !state.finished());
}

#[test]
fn a_far_block_index_is_malformed_not_an_allocation() {
    let far = fake::event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 1_000_000_000_000u64,
                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
    );
    let failure = translate_all(
        AnthropicStream::new(&exchange(true, false)),
        [Bytes::from(fake::start() + &far)],
    )
    .unwrap_err();
    assert_eq!(failure.subkind(), Some("malformed_event"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A stream cut anywhere, any number of times, translates to the same
    /// bytes as the stream in one piece.
    #[test]
    fn any_byte_split_gives_the_same_output(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let stream = fake::start()
            + &fake::text_block(0, &["Hé", "llo, ", "wörld"])
            + &fake::tool_use_block(1, "toolu_1", "f", &["{\"a\"", ": 1}"])
            + &fake::stop("tool_use");
        let whole = translate(&stream, true);
        let bytes = Bytes::from(stream);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(bytes.slice(from..cut));
            from = cut;
        }
        chunks.push(bytes.slice(from..));
        let split = translate_all(AnthropicStream::new(&exchange(true, true)), chunks).unwrap();
        prop_assert_eq!(split, whole);
    }
}

fn classify(status: u16, body: Value) -> tollgate_core::Failure {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("7"));
    super::classify::classify(
        StatusCode::from_u16(status).unwrap(),
        &headers,
        body.to_string().as_bytes(),
    )
}

#[test]
fn errors_are_classified() {
    let rate = classify(
        429,
        fake::error_body(
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
    );
    assert_eq!(rate.class(), ErrorClass::RateLimited);
    assert_eq!(rate.retry_after(), Some(std::time::Duration::from_secs(7)));
    assert!(rate.is_retryable());

    let overloaded = classify(529, fake::error_body("overloaded_error", "Overloaded"));
    assert_eq!(overloaded.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(overloaded.subkind(), Some("overloaded"));
    assert_eq!(overloaded.scope(), Some(Scope::Provider));
    assert!(overloaded.is_retryable() && overloaded.is_fallback_eligible());

    let window = classify(
        400,
        fake::error_body(
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
        ),
    );
    assert_eq!(window.class(), ErrorClass::ContextWindowExceeded);
    assert_eq!(
        window.message(),
        "prompt is too long: 208310 tokens > 200000 maximum"
    );
    assert!(window.is_fallback_eligible() && !window.is_retryable());

    let policy = classify(
        400,
        fake::error_body(
            "invalid_request_error",
            "Output blocked by content filtering policy",
        ),
    );
    assert_eq!(policy.class(), ErrorClass::ContentPolicy);
    assert_eq!(
        policy.message(),
        "Output blocked by content filtering policy"
    );

    let bad = classify(
        400,
        fake::error_body(
            "invalid_request_error",
            "messages.0.content: Field required",
        ),
    );
    assert_eq!(bad.class(), ErrorClass::BadRequest);

    let auth = classify(
        401,
        fake::error_body(
            "authentication_error",
            "invalid x-api-key sk-ant-api03-secretsecretsecret",
        ),
    );
    assert_eq!(auth.class(), ErrorClass::Auth);
    assert!(!auth.message().contains("secret"));

    assert_eq!(
        classify(403, fake::error_body("permission_error", "no")).class(),
        ErrorClass::Auth
    );
    assert_eq!(
        classify(404, fake::error_body("not_found_error", "model: claude-x")).class(),
        ErrorClass::ModelNotFound
    );
    assert_eq!(
        classify(402, fake::error_body("billing_error", "no credit")).class(),
        ErrorClass::InsufficientCredits
    );
    assert_eq!(
        classify(413, fake::error_body("request_too_large", "too big")).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        classify(500, fake::error_body("api_error", "oops")).class(),
        ErrorClass::UpstreamUnavailable
    );
    // No body: the status decides.
    let bare =
        super::classify::classify(StatusCode::from_u16(529).unwrap(), &HeaderMap::new(), b"");
    assert_eq!(bare.subkind(), Some("overloaded"));
    let bare =
        super::classify::classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"<html>");
    assert_eq!(bare.class(), ErrorClass::RateLimited);
}

#[test]
fn response_format_json_schema_becomes_output_config_and_json_object_is_refused() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    let (_, sent, _) = prepare(json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "count"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": true}},
        "output_config": {"effort": "low"},
    }));
    assert_eq!(
        sent["output_config"],
        json!({"effort": "low", "format": {"type": "json_schema", "schema": schema}})
    );
    assert!(sent.get("response_format").is_none());
    let (_, sent, _) = prepare(json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "text"},
    }));
    assert!(sent.get("output_config").is_none() && sent.get("response_format").is_none());

    let mut head = Request::new(()).into_parts().0;
    for format in [
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "no schema"}}),
        json!({"type": "grammar"}),
    ] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "response_format": format});
        let failure = anthropic()
            .prepare(&mut head, body.to_string().as_bytes(), 0)
            .unwrap_err();
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{format}");
        let rendered: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(rendered["error"]["param"], "response_format", "{format}");
    }
}

#[test]
fn a_refusal_with_nothing_said_is_a_content_policy_failure() {
    let mut body = fake::message("");
    body["stop_reason"] = json!("refusal");
    body["content"] = json!([]);
    let failure = anthropic()
        .answer(&exchange(false, false), Bytes::from(body.to_string()))
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert!(
        failure.message().contains("refusal"),
        "{}",
        failure.message()
    );
    assert!(!failure.is_retryable());

    // In a stream, before any content: a failure the layer answers with.
    let refused = fake::start() + &fake::stop("refusal");
    let failure = translate_all(
        AnthropicStream::new(&exchange(true, false)),
        [Bytes::from(refused)],
    )
    .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);

    // After content, the finish says it: `content_filter`.
    let partial = fake::start() + &fake::text_block(0, &["I can"]) + &fake::stop("refusal");
    let events = data_events(&translate(&partial, false));
    assert!(
        events
            .iter()
            .any(|e| e.contains(r#""finish_reason":"content_filter""#)),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

/// A real stream with bytes overwritten at `edits`, or arbitrary bytes.
fn garbled(edits: &[(prop::sample::Index, u8)], noise: &[u8]) -> Vec<u8> {
    if !noise.is_empty() && edits.is_empty() {
        return noise.to_vec();
    }
    let mut bytes = (fake::start()
        + &fake::text_block(0, &["Hi"])
        + &fake::tool_use_block(1, "t", "f", &["{\"a\":", "1}"])
        + &fake::error_event("overloaded_error", "x")
        + &fake::stop("refusal"))
        .into_bytes();
    for (at, byte) in edits {
        let at = at.index(bytes.len());
        bytes[at] = *byte;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever Anthropic (or something in its place) sends — a garbled
    /// stream, random bytes, any status — the translation answers or fails
    /// classified, and never panics (`fuzz/fuzz_targets/provider_translations.rs`
    /// runs the same through the layer, longer).
    #[test]
    fn any_bytes_translate_or_fail_classified(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        noise in proptest::collection::vec(any::<u8>(), 0..256),
        chunk in 1usize..64,
        status in 100u16..600,
    ) {
        let bytes = Bytes::from(garbled(&edits, &noise));
        let anthropic = anthropic();
        let _ = anthropic.answer(&exchange(false, false), bytes.clone());
        let status = StatusCode::from_u16(status).unwrap();
        let failure = anthropic.classify(status, &HeaderMap::new(), &bytes);
        let rendered: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        prop_assert!(rendered["error"]["message"].is_string());
        let mut stream = anthropic.stream(&exchange(true, true));
        let mut out = TranslatedEvents::new();
        for piece in bytes.chunks(chunk) {
            if crate::protocol::TranslateStream::push(&mut stream, Bytes::copy_from_slice(piece), &mut out).is_err() {
                break;
            }
        }
        // What was written is OpenAI's: JSON objects, `[DONE]` last.
        let text = String::from_utf8(out.as_bytes().to_vec()).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        for (i, event) in events.iter().enumerate() {
            let data = event.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                prop_assert_eq!(i, events.len() - 1);
            } else {
                prop_assert!(serde_json::from_str::<Value>(data).unwrap().is_object());
            }
        }
    }
}
