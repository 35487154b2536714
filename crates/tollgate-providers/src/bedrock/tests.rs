//! Unit tests of the Bedrock translation: signing, request, answer, event
//! stream, errors.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Scope};
use tollgate_testkit::bedrock as fake;

use super::eventstream::{DecodeError, Decoder, MAX_MESSAGE_BYTES, crc32};
use super::sigv4::{Credentials, Signer, amz_date};
use super::*;
use crate::events::TranslatedEvents;
use crate::protocol::TranslateStream;
use crate::test_support::{self, client_request};

/// 2024-05-01T09:30:00Z.
const NOW: u64 = 1_714_555_800;

fn config() -> ProviderConfig {
    ProviderConfig::new()
        .aws_credentials(fake::ACCESS_KEY_ID, fake::SECRET_ACCESS_KEY)
        .aws_region(fake::REGION)
}

fn bedrock() -> Bedrock {
    Bedrock::new(&config()).unwrap()
}

fn prepare_with(bedrock: &Bedrock, body: Value) -> (http::request::Parts, Value, Exchange) {
    let mut head = client_request();
    let (out, exchange) = bedrock
        .prepare(&mut head, body.to_string().as_bytes(), NOW)
        .unwrap();
    // Every request leaves with a signature AWS would accept.
    let expected = fake::Expected {
        access_key_id: fake::ACCESS_KEY_ID,
        secret_access_key: fake::SECRET_ACCESS_KEY,
        region: fake::REGION,
        service: "bedrock",
    };
    let mut headers = head.headers.clone();
    headers.insert(
        "host",
        HeaderValue::from_str(head.uri.authority().unwrap().as_str()).unwrap(),
    );
    fake::verify_sigv4(&head.method, &head.uri, &headers, &out, &expected).unwrap();
    (head, serde_json::from_slice(&out).unwrap(), exchange)
}

fn prepare(body: Value) -> (http::request::Parts, Value, Exchange) {
    prepare_with(&bedrock(), body)
}

fn failure_of(body: Value) -> tollgate_core::Failure {
    let mut head = Request::new(()).into_parts().0;
    bedrock()
        .prepare(&mut head, body.to_string().as_bytes(), NOW)
        .unwrap_err()
}

/// The `error.param` a failure answers with.
fn param_of(failure: &tollgate_core::Failure) -> Option<String> {
    let body: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    body["error"]["param"].as_str().map(str::to_owned)
}

fn exchange(stream: bool, include_usage: bool) -> Exchange {
    test_support::exchange(
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        stream,
        include_usage,
    )
}

// --- SigV4 ---------------------------------------------------------------

fn vanilla_signer() -> Signer {
    Signer {
        credentials: Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        },
        region: "us-east-1".into(),
        service: "service",
    }
}

#[test]
fn signatures_match_aws_test_suite_vectors() {
    // AWS's SigV4 test suite: "get-vanilla" and
    // "get-vanilla-query-order-key-case", at 20150830T123600Z.
    for (uri, signature) in [
        (
            "https://example.amazonaws.com/",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ] {
        let mut head = Request::get(uri).body(()).unwrap().into_parts().0;
        vanilla_signer().sign(&mut head, b"", 1_440_938_160);
        assert_eq!(head.headers["x-amz-date"], "20150830T123600Z");
        let authorization = head.headers["authorization"].to_str().unwrap();
        assert_eq!(
            authorization,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={signature}"
            )
        );
        assert!(head.headers["authorization"].is_sensitive());
    }
}

#[test]
fn amz_dates_are_utc_calendar_times() {
    assert_eq!(
        amz_date(0),
        ("19700101".to_owned(), "19700101T000000Z".to_owned())
    );
    assert_eq!(amz_date(NOW).1, "20240501T093000Z");
    // A leap day, one second before midnight.
    assert_eq!(amz_date(951_868_799).1, "20000229T235959Z");
}

#[test]
fn a_request_is_signed_for_bedrock_with_its_session_token() {
    let bedrock = Bedrock::new(&config().aws_session_token("FwoGZXIvYXdzEXAMPLEtoken")).unwrap();
    let (head, _, _) = prepare_with(
        &bedrock,
        json!({"model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
               "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        head.headers["x-amz-security-token"],
        "FwoGZXIvYXdzEXAMPLEtoken"
    );
    assert!(head.headers["x-amz-security-token"].is_sensitive());
    let authorization = head.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.contains(
            "/20240501/us-east-1/bedrock/aws4_request, \
             SignedHeaders=host;content-type;x-amz-date;x-amz-security-token,"
        ),
        "{authorization}"
    );
    // The client's own bearer key is never forwarded.
    assert!(!authorization.contains("client-key"));
}

#[test]
fn a_signature_made_with_another_secret_is_refused_by_the_fake() {
    let wrong = ProviderConfig::new()
        .aws_credentials(fake::ACCESS_KEY_ID, "not-the-secret")
        .aws_region(fake::REGION);
    let mut head = Request::new(()).into_parts().0;
    let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    let (out, _) = Bedrock::new(&wrong)
        .unwrap()
        .prepare(&mut head, body, NOW)
        .unwrap();
    head.headers.insert(
        "host",
        HeaderValue::from_static("bedrock-runtime.us-east-1.amazonaws.com"),
    );
    let expected = fake::Expected {
        access_key_id: fake::ACCESS_KEY_ID,
        secret_access_key: fake::SECRET_ACCESS_KEY,
        region: fake::REGION,
        service: "bedrock",
    };
    let refusal =
        fake::verify_sigv4(&head.method, &head.uri, &head.headers, &out, &expected).unwrap_err();
    assert_eq!(refusal.kind, "InvalidSignatureException");
}

// --- Configuration -------------------------------------------------------

#[test]
fn the_region_names_the_endpoint_and_settings_are_checked() {
    let (head, _, exchange) = prepare(json!({
        "model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "messages": [{"role": "user", "content": "hi"}],
    }));
    assert_eq!(
        head.uri,
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(head.method, Method::POST);
    assert_eq!(head.headers["content-type"], "application/json");
    assert_eq!(head.headers["accept"], "application/json");
    assert_eq!(
        &*exchange.model,
        "anthropic.claude-3-5-sonnet-20240620-v1:0"
    );

    let custom = config().api_base("http://127.0.0.1:9/bedrock/");
    let (head, _, _) = prepare_with(
        &Bedrock::new(&custom).unwrap(),
        json!({"model": "bedrock/converse/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
               "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        head.uri,
        "http://127.0.0.1:9/bedrock/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0/converse-stream"
    );
    assert_eq!(head.headers["accept"], EVENT_STREAM_CONTENT_TYPE);

    let missing = |config: ProviderConfig| Bedrock::new(&config).unwrap_err();
    assert_eq!(
        missing(ProviderConfig::new().aws_credentials("AKID", "s")),
        InvalidConfig::Missing("aws_region_name")
    );
    assert_eq!(
        missing(ProviderConfig::new().aws_region("us-east-1")),
        InvalidConfig::Missing("aws_access_key_id")
    );
    assert_eq!(
        missing(config().aws_region("us east")),
        InvalidConfig::Invalid("aws_region_name".into())
    );
    assert_eq!(
        missing(config().aws_credentials("AKID/x", "s")),
        InvalidConfig::Invalid("aws_access_key_id".into())
    );
    assert_eq!(
        missing(config().aws_credentials("AKID", "")),
        InvalidConfig::Missing("aws_secret_access_key")
    );
    assert_eq!(
        missing(config().aws_session_token("a\nb")),
        InvalidConfig::Invalid("aws_session_token".into())
    );
    assert!(Bedrock::new(&config().api_base("bedrock.local")).is_err());
    // Secrets never show in debug output.
    let debug = format!("{:?} {:?}", config(), bedrock());
    assert!(!debug.contains(fake::SECRET_ACCESS_KEY), "{debug}");
    assert!(!debug.contains(fake::ACCESS_KEY_ID), "{debug}");
    assert!(Bedrock::layer(&config()).is_ok());
}

// --- Request -------------------------------------------------------------

#[test]
fn system_messages_and_inference_config_are_mapped() {
    let (_, sent, exchange) = prepare(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "Sure: "},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "stream": true,
        "stream_options": {"include_usage": true},
        "seed": 3,
        "user": "u-1",
        "top_k": 5,
        "guardrailConfig": {"guardrailIdentifier": "g-1", "guardrailVersion": "1"},
    }));
    assert_eq!(
        sent["system"],
        json!([{"text": "Be brief."}, {"text": "Cite."}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": [{"text": "hi"}, {"text": "again"}]},
            // The prefill, its trailing space trimmed.
            {"role": "assistant", "content": [{"text": "Sure:"}]},
        ])
    );
    assert_eq!(
        sent["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_eq!(sent["additionalModelRequestFields"], json!({"top_k": 5}));
    assert_eq!(sent["guardrailConfig"]["guardrailIdentifier"], "g-1");
    for dropped in [
        "seed",
        "user",
        "stream",
        "stream_options",
        "model",
        "max_tokens",
    ] {
        assert!(sent.get(dropped).is_none(), "{dropped}");
    }
    assert!(exchange.stream && exchange.include_usage);

    let (_, sent, _) = prepare(json!({
        "model": "m", "max_completion_tokens": 77, "stop": ["a", "b"],
        "messages": [{"role": "user", "content": "x"}],
        "additionalModelRequestFields": {"thinking": {"type": "enabled"}},
    }));
    assert_eq!(
        sent["inferenceConfig"],
        json!({"maxTokens": 77, "stopSequences": ["a", "b"]})
    );
    assert_eq!(
        sent["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled"}})
    );
    let (_, sent, _) =
        prepare(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
    assert!(sent.get("inferenceConfig").is_none());
    assert!(sent.get("system").is_none());
}

#[test]
fn images_become_image_blocks_from_data_urls_only() {
    let (_, sent, _) = prepare(json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": "data:image/jpeg;base64,/9j/4AAQ"},
        ]}],
    }));
    let content = &sent["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );
    assert_eq!(content[2]["image"]["format"], "jpeg");

    let by_url = failure_of(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}),
    );
    assert_eq!(by_url.class(), ErrorClass::BadRequest);
    assert!(by_url.message().contains("base64"), "{}", by_url.message());
    let bmp = failure_of(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]}),
    );
    assert_eq!(bmp.class(), ErrorClass::BadRequest);
    // Images only come from users.
    let system_image = failure_of(
        json!({"model": "m", "messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}),
    );
    assert_eq!(param_of(&system_image).as_deref(), Some("messages"));
}

#[test]
fn tools_tool_calls_and_results_are_translated() {
    let (_, sent, _) = prepare(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "tooluse_2", "type": "function", "function": {"name": "weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "24C"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
    }));
    assert_eq!(
        sent["toolConfig"],
        json!({
            "tools": [{"toolSpec": {"name": "weather", "description": "Weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
            "toolChoice": {"tool": {"name": "weather"}},
        })
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "weather", "input": {}}},
        ]})
    );
    // Both results in one user turn.
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "24C"}]}},
        ]})
    );

    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let choice = |choice: Value| {
        let (_, sent, _) = prepare(json!({"model": "m", "tools": tools, "tool_choice": choice,
            "messages": [{"role": "user", "content": "x"}]}));
        sent.get("toolConfig").cloned()
    };
    assert_eq!(
        choice(json!("auto")).unwrap()["toolChoice"],
        json!({"auto": {}})
    );
    assert_eq!(
        choice(json!("required")).unwrap()["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(
        choice(json!(null)).unwrap()["tools"][0]["toolSpec"]["inputSchema"],
        json!({"json": {"type": "object", "properties": {}}})
    );
    // Converse has no `none`: no tools offered.
    assert_eq!(choice(json!("none")), None);
    // ...unless the history holds tool calls, which need them declared.
    let (_, sent, _) = prepare(json!({"model": "m", "tools": tools, "tool_choice": "none",
    "messages": [
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": ""},
    ]}));
    assert!(sent["toolConfig"].get("toolChoice").is_none());
    assert_eq!(
        sent["messages"][1]["content"][0]["toolResult"]["content"],
        json!([{"text": ""}])
    );
}

#[test]
fn requests_bedrock_cannot_take_are_bad_requests() {
    let message = json!([{"role": "user", "content": "x"}]);
    for (body, param) in [
        (
            json!({"model": "m", "messages": message, "n": 2}),
            Some("n"),
        ),
        (
            json!({"model": "m", "messages": message, "response_format": {"type": "json_object"}}),
            Some("response_format"),
        ),
        (json!({"messages": message}), Some("model")),
        (
            json!({"model": "bedrock/", "messages": message}),
            Some("model"),
        ),
        (json!({"model": "m"}), Some("messages")),
        (json!({"model": "m", "messages": [1]}), Some("messages")),
        (
            json!({"model": "m", "messages": [{"content": "x"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{"}}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": message, "tools": {}}),
            Some("tools"),
        ),
        (
            json!({"model": "m", "messages": message, "tools": [{"type": "code_interpreter"}]}),
            Some("tools"),
        ),
        (
            json!({"model": "m", "messages": message, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            Some("tool_choice"),
        ),
        (
            json!({"model": "m", "messages": message, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function"}}),
            Some("tool_choice"),
        ),
        (
            json!({"model": "m", "messages": message, "max_tokens": -1}),
            Some("max_tokens"),
        ),
        (
            json!({"model": "m", "messages": message, "temperature": "hot"}),
            Some("temperature"),
        ),
        (
            json!({"model": "m", "messages": message, "stop": 5}),
            Some("stop"),
        ),
    ] {
        let failure = failure_of(body.clone());
        assert_eq!(failure.class(), ErrorClass::BadRequest, "{body}");
        assert_eq!(param_of(&failure).as_deref(), param, "{body}");
    }
    let mut head = Request::new(()).into_parts().0;
    let failure = bedrock().prepare(&mut head, b"not json", NOW).unwrap_err();
    assert_eq!(failure.class(), ErrorClass::BadRequest);
}

// --- Answer --------------------------------------------------------------

fn answer(body: &Value) -> Value {
    let out = bedrock()
        .answer(&exchange(false, false), Bytes::from(body.to_string()))
        .unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn an_answer_becomes_a_chat_completion_with_bedrock_usage() {
    let body = answer(&fake::converse("Hello there"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["created"], 7);
    assert_eq!(body["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let prompt = fake::INPUT_TOKENS + fake::CACHE_READ_TOKENS + fake::CACHE_WRITE_TOKENS;
    assert_eq!(body["usage"]["prompt_tokens"], prompt);
    assert_eq!(body["usage"]["completion_tokens"], fake::OUTPUT_TOKENS);
    assert_eq!(body["usage"]["total_tokens"], prompt + fake::OUTPUT_TOKENS);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        fake::CACHE_READ_TOKENS
    );
    assert_eq!(
        body["usage"]["cache_creation_input_tokens"],
        fake::CACHE_WRITE_TOKENS
    );
    // Two answers, two ids.
    assert_ne!(answer(&fake::converse("x"))["id"], body["id"]);
}

#[test]
fn tool_use_and_reasoning_blocks_are_translated() {
    let body = answer(&fake::tool_use_converse(
        "tooluse_abc",
        "weather",
        json!({"city": "Paris"}),
    ));
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check.");
    assert_eq!(message["tool_calls"][0]["id"], "tooluse_abc");
    assert_eq!(message["tool_calls"][0]["type"], "function");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "weather");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    let thinking = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "sig"}}},
            {"text": "42"},
        ]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
    });
    let body = answer(&thinking);
    assert_eq!(body["choices"][0]["message"]["reasoning_content"], "Hmm.");
    assert_eq!(body["choices"][0]["message"]["content"], "42");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["total_tokens"], 7);
}

#[test]
fn a_guardrail_refusal_is_a_content_policy_failure_with_its_reason() {
    let failure = bedrock()
        .answer(
            &exchange(false, false),
            Bytes::from(
                fake::guardrail_converse("Sorry, the model cannot answer this question.")
                    .to_string(),
            ),
        )
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert_eq!(failure.status(), StatusCode::BAD_REQUEST);
    assert!(failure.message().contains("guardrail_intervened"));
    assert!(failure.message().contains("cannot answer this question"));
    let body: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    assert_eq!(body["error"]["code"], "content_filter");
}

#[test]
fn unreadable_answers_and_json_to_a_stream_request_fail() {
    for body in ["not json", "{}", r#"{"output":{}}"#] {
        let failure = bedrock()
            .answer(&exchange(false, false), Bytes::from(body))
            .unwrap_err();
        assert_eq!(failure.subkind(), Some("malformed_response"), "{body}");
    }
    let failure = bedrock()
        .answer(
            &exchange(true, false),
            Bytes::from(fake::converse("x").to_string()),
        )
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    let mut headers = HeaderMap::new();
    assert!(!bedrock().is_stream(&headers));
    headers.insert(
        "content-type",
        HeaderValue::from_static(EVENT_STREAM_CONTENT_TYPE),
    );
    assert!(bedrock().is_stream(&headers));
}

// --- Event stream --------------------------------------------------------

/// The OpenAI events a whole stream translates to.
fn translate_chunks(
    chunks: impl IntoIterator<Item = Bytes>,
    include_usage: bool,
) -> Result<Bytes, tollgate_core::Failure> {
    let mut state = BedrockStream::new(&exchange(true, include_usage), "chatcmpl-test".into());
    let mut out = TranslatedEvents::new();
    for chunk in chunks {
        state.push(chunk, &mut out)?;
    }
    assert!(state.finished() || out.is_empty() || !out.as_bytes().ends_with(b"[DONE]\n\n"));
    Ok(out.take_all())
}

fn data_events(out: &[u8]) -> Vec<Value> {
    std::str::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn a_stream_is_translated_event_by_event_with_usage_last() {
    let out = translate_chunks(fake::text_stream(&["Hel", "lo", " there"]), true).unwrap();
    assert!(out.ends_with(b"data: [DONE]\n\n"));
    let events = data_events(&out);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(text_of(&events), "Hello there");
    assert_eq!(events[0]["id"], "chatcmpl-test");
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    let finish = &events[events.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &events[events.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], fake::OUTPUT_TOKENS);
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        fake::CACHE_READ_TOKENS
    );

    let out = translate_chunks(fake::text_stream(&["x"]), false).unwrap();
    assert!(data_events(&out).iter().all(|e| e.get("usage").is_none()));
}

#[test]
fn each_message_goes_out_as_it_arrives() {
    let mut state = BedrockStream::new(&exchange(true, false), "id".into());
    let mut out = TranslatedEvents::new();
    let messages = fake::text_stream(&["Hel", "lo"]);
    state.push(messages[0].clone(), &mut out).unwrap();
    assert!(!state.committed(), "a role chunk commits nothing");
    state.push(messages[1].clone(), &mut out).unwrap();
    assert!(state.committed());
    assert_eq!(text_of(&data_events(out.as_bytes())), "Hel");
    // Half a message waits for the rest; nothing is re-sent.
    let (head, tail) = messages[2].split_at(10);
    let before = out.len();
    state.push(Bytes::copy_from_slice(head), &mut out).unwrap();
    assert_eq!(out.len(), before);
    state.push(Bytes::copy_from_slice(tail), &mut out).unwrap();
    assert_eq!(text_of(&data_events(out.as_bytes())), "Hello");
    for message in &messages[3..] {
        state.push(message.clone(), &mut out).unwrap();
    }
    assert!(state.finished());
    // Bytes after the end are ignored.
    let after = out.len();
    state.push(fake::start(), &mut out).unwrap();
    assert_eq!(out.len(), after);
}

#[test]
fn streamed_tool_calls_become_tool_call_deltas() {
    let out = translate_chunks(
        fake::tool_stream("tooluse_1", "weather", &["{\"city\":", "\"Paris\"}"]),
        false,
    )
    .unwrap();
    let events = data_events(&out);
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls[0][0]["id"], "tooluse_1");
    assert_eq!(calls[0][0]["type"], "function");
    assert_eq!(calls[0][0]["function"]["name"], "weather");
    assert_eq!(calls[0][0]["index"], 0);
    let arguments: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"city":"Paris"}"#);
    assert_eq!(text_of(&events), "Let me check.");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn reasoning_deltas_and_unknown_events_are_handled() {
    let messages = vec![
        fake::start(),
        fake::event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm"}}}),
        ),
        fake::event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}}),
        ),
        fake::event("somethingNew", &json!({})),
        // A tool delta for a block never started is dropped.
        fake::event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}),
        ),
        fake::event(
            "contentBlockStart",
            &json!({"contentBlockIndex": 1, "start": {}}),
        ),
    ];
    let out = translate_chunks(messages, false).unwrap();
    let events = data_events(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["choices"][0]["delta"]["reasoning_content"], "Hmm");
}

#[test]
fn a_refusal_before_content_fails_and_after_content_finishes_filtered() {
    let mut refused = vec![fake::start()];
    refused.extend(fake::stop("guardrail_intervened"));
    let failure = translate_chunks(refused, false).unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert!(failure.message().contains("guardrail_intervened"));

    let mut late = vec![fake::start()];
    late.extend(fake::text_block(0, &["Some"]));
    late.extend(fake::stop("content_filtered"));
    let out = translate_chunks(late, false).unwrap();
    let events = data_events(&out);
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );
}

#[test]
fn exceptions_mid_stream_are_classified() {
    for (kind, class) in [
        ("throttlingException", ErrorClass::RateLimited),
        (
            "serviceUnavailableException",
            ErrorClass::UpstreamUnavailable,
        ),
        ("modelStreamErrorException", ErrorClass::UpstreamUnavailable),
        ("internalServerException", ErrorClass::UpstreamUnavailable),
        ("validationException", ErrorClass::BadRequest),
    ] {
        let failure =
            translate_chunks([fake::start(), fake::exception(kind, "boom")], false).unwrap_err();
        assert_eq!(failure.class(), class, "{kind}");
    }
    let failure = translate_chunks(
        [fake::exception(
            "validationException",
            "Input is too long for requested model.",
        )],
        false,
    )
    .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContextWindowExceeded);
    // An `error` message carries its code and message in headers.
    let error = fake::message(
        &[
            (":message-type", "error"),
            (":error-code", "ThrottlingException"),
            (":error-message", "slow down"),
        ],
        b"",
    );
    let failure = translate_chunks([error], false).unwrap_err();
    assert_eq!(failure.class(), ErrorClass::RateLimited);
}

#[test]
fn a_crc_mismatch_is_a_broken_upstream_never_skipped() {
    let mut messages = fake::text_stream(&["Hello"]);
    // One payload byte flipped: the message CRC no longer matches.
    let mut corrupt = messages[1].to_vec();
    let at = corrupt.len() - 6;
    corrupt[at] ^= 0x01;
    messages[1] = Bytes::from(corrupt);
    let failure = translate_chunks(messages.clone(), false).unwrap_err();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("malformed_event"));
    assert!(failure.message().contains("CRC"));

    // A prelude whose CRC does not match its lengths.
    let mut prelude = fake::start().to_vec();
    prelude[3] ^= 0x01;
    let mut decoder = Decoder::default();
    decoder.push(&prelude);
    assert_eq!(decoder.next_message(), Err(DecodeError::PreludeCrc));
}

/// A prelude with the given lengths and a correct CRC.
fn prelude(total: u32, headers: u32) -> Vec<u8> {
    let mut bytes = total.to_be_bytes().to_vec();
    bytes.extend(headers.to_be_bytes());
    let crc = crc32(&bytes);
    bytes.extend(crc.to_be_bytes());
    bytes
}

/// A whole message of raw header bytes, CRCs right.
fn framed(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = 16 + headers.len() + payload.len();
    let mut bytes = prelude(total as u32, headers.len() as u32);
    bytes.extend(headers);
    bytes.extend(payload);
    let crc = crc32(&bytes);
    bytes.extend(crc.to_be_bytes());
    bytes
}

#[test]
fn the_decoder_reads_every_header_type_and_refuses_impossible_frames() {
    // The CRC check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let mut headers = Vec::new();
    for (name, kind, value) in [
        ("t", 0u8, &[][..]),
        ("f", 1, &[]),
        ("b", 2, &[1]),
        ("s", 3, &[0, 1]),
        ("i", 4, &[0, 0, 0, 1]),
        ("l", 5, &[0; 8]),
        ("ts", 8, &[0; 8]),
        ("u", 9, &[0; 16]),
    ] {
        headers.push(name.len() as u8);
        headers.extend(name.as_bytes());
        headers.push(kind);
        headers.extend(value);
    }
    // Byte array (6) and string (7): a 2-byte length.
    for (name, kind, value) in [("bytes", 6u8, "raw"), (":event-type", 7, "messageStop")] {
        headers.push(name.len() as u8);
        headers.extend(name.as_bytes());
        headers.push(kind);
        headers.extend((value.len() as u16).to_be_bytes());
        headers.extend(value.as_bytes());
    }
    let mut decoder = Decoder::default();
    decoder.push(&framed(&headers, b"{}"));
    let message = decoder.next_message().unwrap().unwrap();
    assert_eq!(message.event_type.as_deref(), Some("messageStop"));
    assert_eq!(&message.payload[..], b"{}");
    assert_eq!(decoder.next_message(), Ok(None));

    let refused = |bytes: Vec<u8>| {
        let mut decoder = Decoder::default();
        decoder.push(&bytes);
        decoder.next_message()
    };
    assert_eq!(refused(prelude(8, 0)), Err(DecodeError::Length));
    assert_eq!(refused(prelude(20, 8)), Err(DecodeError::Length));
    assert_eq!(
        refused(prelude((MAX_MESSAGE_BYTES + 1) as u32, 0)),
        Err(DecodeError::Length)
    );
    // An unknown value type, a name past the headers, a value cut short.
    assert_eq!(
        refused(framed(&[1, b'x', 42], b"")),
        Err(DecodeError::Header)
    );
    assert_eq!(refused(framed(&[9, b'x'], b"")), Err(DecodeError::Header));
    assert_eq!(
        refused(framed(&[1, b'x', 7, 0, 9, b'y'], b"")),
        Err(DecodeError::Header)
    );
    assert_eq!(
        refused(framed(&[1, b'x', 7, 0], b"")),
        Err(DecodeError::Header)
    );
    // Too few bytes for a prelude: wait.
    assert_eq!(refused(vec![0, 0, 0]), Ok(None));
    // A payload that is not JSON is a malformed event.
    let failure = translate_chunks([Bytes::from(framed(&[], b"not json"))], false).unwrap_err();
    assert_eq!(failure.subkind(), Some("malformed_event"));
    // A far block index is refused before it sizes a table.
    let far = fake::event(
        "contentBlockStart",
        &json!({"contentBlockIndex": 100_000, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
    );
    assert_eq!(
        translate_chunks([far], false).unwrap_err().subkind(),
        Some("malformed_event")
    );
    let no_delta = fake::event("contentBlockDelta", &json!({"contentBlockIndex": 0}));
    assert!(translate_chunks([no_delta], false).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// An event stream cut anywhere, any number of times, translates to
    /// the same bytes as the stream in one piece.
    #[test]
    fn any_byte_split_gives_the_same_output(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16)) {
        let mut messages = vec![fake::start()];
        messages.extend(fake::text_block(0, &["Hé", "llo, ", "wörld"]));
        messages.extend(fake::tool_use_block(1, "tooluse_1", "f", &["{\"a\"", ": 1}"]));
        messages.extend(fake::stop("tool_use"));
        let bytes = fake::concat(&messages);
        let whole = translate_chunks([bytes.clone()], true).unwrap();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(bytes.slice(from..cut));
            from = cut;
        }
        chunks.push(bytes.slice(from..));
        let split = translate_chunks(chunks, true).unwrap();
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(text_of(&data_events(&split)), "Héllo, wörld");
    }
}

#[test]
fn a_stream_fed_one_byte_at_a_time_is_the_whole_stream() {
    let bytes = fake::concat(&fake::text_stream(&["one ", "byte ", "at a time"]));
    let whole = translate_chunks([bytes.clone()], true).unwrap();
    let split = translate_chunks((0..bytes.len()).map(|i| bytes.slice(i..=i)), true).unwrap();
    assert_eq!(split, whole);
    assert_eq!(text_of(&data_events(&split)), "one byte at a time");
}

// --- Errors --------------------------------------------------------------

fn classify(status: u16, kind: Option<&str>, message: &str) -> tollgate_core::Failure {
    let mut headers = HeaderMap::new();
    if let Some(kind) = kind {
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_str(&format!(
                "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ))
            .unwrap(),
        );
    }
    bedrock().classify(
        StatusCode::from_u16(status).unwrap(),
        &headers,
        json!({ "message": message }).to_string().as_bytes(),
    )
}

#[test]
fn errors_are_classified_by_their_type() {
    let throttled = classify(
        429,
        Some("ThrottlingException"),
        "Too many requests, please wait before trying again.",
    );
    assert_eq!(throttled.class(), ErrorClass::RateLimited);
    assert!(throttled.is_retryable());
    assert_eq!(throttled.scope(), Some(Scope::Provider));

    let long = classify(
        400,
        Some("ValidationException"),
        "Input is too long for requested model.",
    );
    assert_eq!(long.class(), ErrorClass::ContextWindowExceeded);
    assert_eq!(param_of(&long).as_deref(), Some("messages"));
    let bad = classify(
        400,
        Some("ValidationException"),
        "Malformed input request: extraneous key [foo]",
    );
    assert_eq!(bad.class(), ErrorClass::BadRequest);
    assert!(bad.message().contains("extraneous key"));

    for kind in ["ServiceUnavailableException", "ModelNotReadyException"] {
        let failure = classify(503, Some(kind), "unavailable");
        assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable, "{kind}");
        assert_eq!(failure.subkind(), Some("overloaded"), "{kind}");
        assert!(failure.is_retryable());
    }
    for kind in [
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    ] {
        let failure = classify(403, Some(kind), "denied");
        assert_eq!(failure.class(), ErrorClass::Auth, "{kind}");
        assert_eq!(failure.status(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(
        classify(404, Some("ResourceNotFoundException"), "Model not found").class(),
        ErrorClass::ModelNotFound
    );
    assert_eq!(
        classify(408, Some("ModelTimeoutException"), "").subkind(),
        Some("upstream_timeout")
    );
    assert_eq!(
        classify(424, Some("ModelErrorException"), "").subkind(),
        Some("server_error")
    );
    assert_eq!(
        classify(400, Some("ServiceQuotaExceededException"), "").class(),
        ErrorClass::RateLimited
    );
    // The type from the body's `__type`, or from the status alone.
    let typed = bedrock().classify(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        br#"{"__type":"com.amazon.coral.validate#ValidationException","message":"prompt is too long"}"#,
    );
    assert_eq!(typed.class(), ErrorClass::ContextWindowExceeded);
    for (status, class) in [
        (429, ErrorClass::RateLimited),
        (403, ErrorClass::Auth),
        (400, ErrorClass::BadRequest),
        (404, ErrorClass::ModelNotFound),
        (408, ErrorClass::UpstreamUnavailable),
        (503, ErrorClass::UpstreamUnavailable),
        (500, ErrorClass::UpstreamUnavailable),
    ] {
        assert_eq!(classify(status, None, "").class(), class, "{status}");
    }
    assert_eq!(
        bedrock()
            .classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"")
            .class(),
        ErrorClass::UpstreamUnavailable
    );
    // Retry-After is kept for a throttle.
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amzn-errortype",
        HeaderValue::from_static("ThrottlingException"),
    );
    headers.insert("retry-after", HeaderValue::from_static("3"));
    let failure = bedrock().classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"{}");
    assert_eq!(
        failure.retry_after(),
        Some(std::time::Duration::from_secs(3))
    );
}

// --- Through the layer ---------------------------------------------------

#[tokio::test]
async fn the_layer_streams_an_event_stream_and_fails_a_broken_one() {
    use http::Response;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt, service_fn};

    let upstream = service_fn(|request: Request<Bytes>| async move {
        let sent: Value = serde_json::from_slice(request.body()).unwrap();
        assert!(request.uri().path().ends_with("/converse-stream"));
        let messages = if sent["messages"][0]["content"][0]["text"] == "throttle" {
            vec![fake::exception("throttlingException", "slow down")]
        } else {
            fake::text_stream(&["Hi", " there"])
        };
        let response = Response::builder()
            .header("content-type", EVENT_STREAM_CONTENT_TYPE)
            .body(Full::new(fake::concat(&messages)));
        Ok::<_, std::convert::Infallible>(response.unwrap())
    });
    let service = Bedrock::layer(&config())
        .unwrap()
        .with_clock(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW))
        .layer(upstream);
    let ask = |text: &str| {
        let body = json!({"model": "bedrock/amazon.nova-lite-v1:0", "stream": true,
                          "messages": [{"role": "user", "content": text}]});
        Request::post("/chat/completions")
            .body(Bytes::from(body.to_string()))
            .unwrap()
    };
    let response = service.clone().oneshot(ask("hello")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(text_of(&data_events(&body)), "Hi there");
    assert!(data_events(&body).iter().all(|e| e["created"] == NOW));

    // Throttled before any content: an error the retry layer can act on.
    let error = service.oneshot(ask("throttle")).await.unwrap_err();
    let failure = tollgate_core::Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::RateLimited);
}
