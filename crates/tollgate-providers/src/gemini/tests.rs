//! Unit tests of the Gemini translation: request, answer, stream, errors.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Scope};
use tollgate_testkit::gemini as fake;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::events::TranslatedEvents;
use crate::protocol::TranslateEvent;
use crate::stream::translate_all;
use crate::test_support::{self, assert_text_stream, chunks, client_request, data_events};

const KEY: &str = "AIzaSy-gemini-unit-test-key-0123456789";

fn gemini() -> Gemini {
    Gemini::new(&ProviderConfig::new().api_key(KEY)).unwrap()
}

fn prepare(body: Value) -> (http::request::Parts, Value, Exchange) {
    let mut head = client_request();
    let (out, exchange) = gemini()
        .prepare(&mut head, body.to_string().as_bytes(), 7)
        .unwrap();
    (head, serde_json::from_slice(&out).unwrap(), exchange)
}

fn refused(body: Value) -> tollgate_core::Failure {
    let (mut head, ()) = Request::post("/").body(()).unwrap().into_parts();
    gemini()
        .prepare(&mut head, body.to_string().as_bytes(), 7)
        .unwrap_err()
}

fn exchange(stream: bool, include_usage: bool) -> Exchange {
    test_support::exchange("gemini-2.5-flash", stream, include_usage)
}

/// The request, as the fake (Gemini's rules) reads it.
fn recorded(head: &http::request::Parts, sent: &Value) -> tollgate_testkit::RecordedRequest {
    tollgate_testkit::RecordedRequest {
        method: head.method.clone(),
        uri: head.uri.path_and_query().unwrap().as_str().parse().unwrap(),
        version: head.version,
        headers: head.headers.clone(),
        body: Bytes::from(sent.to_string()),
        received_at: tokio::time::Instant::now(),
    }
}

#[test]
fn request_goes_to_generate_content_with_the_key_header() {
    let (head, sent, exchange) = prepare(json!({
        "model": "gemini/gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
    }));
    assert_eq!(
        head.uri,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(head.headers["x-goog-api-key"], KEY);
    assert!(head.headers["x-goog-api-key"].is_sensitive());
    assert!(!head.headers.contains_key("authorization"));
    assert_eq!(head.headers["accept"], "application/json");
    assert_eq!(
        sent,
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
    assert!(!exchange.stream);
    assert_eq!(&*exchange.model, "gemini-2.5-flash");
    fake::check_request(&recorded(&head, &sent), KEY).unwrap();
}

#[test]
fn a_stream_goes_to_stream_generate_content_with_alt_sse() {
    let (head, sent, exchange) = prepare(json!({
        "model": "models/gemini-2.5-pro",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    }));
    assert_eq!(
        head.uri,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    assert_eq!(head.headers["accept"], "text/event-stream");
    assert!(exchange.stream && exchange.include_usage);
    fake::check_request(&recorded(&head, &sent), KEY).unwrap();
    assert!(fake::check_request(&recorded(&head, &sent), "another-key").is_err());
}

#[test]
fn the_base_and_models_url_come_from_the_config() {
    // A base with a path is used as LiteLLM uses it; a bare host gets
    // Gemini's version path.
    let proxy = Gemini::new(&ProviderConfig::new().api_base("http://127.0.0.1:9/proxy/")).unwrap();
    assert_eq!(
        proxy.uri("m", false).unwrap(),
        "http://127.0.0.1:9/proxy/models/m:generateContent"
    );
    let host = Gemini::new(&ProviderConfig::new().api_base("http://127.0.0.1:9/")).unwrap();
    assert_eq!(
        host.uri("m", false).unwrap(),
        "http://127.0.0.1:9/v1beta/models/m:generateContent"
    );
    assert!(!proxy.headers.map().contains_key("x-goog-api-key"));
    let versioned =
        Gemini::new(&ProviderConfig::new().api_base("https://gw.example/v1beta")).unwrap();
    assert_eq!(
        versioned.uri("m", true).unwrap(),
        "https://gw.example/v1beta/models/m:streamGenerateContent?alt=sse"
    );
    let vertex = Gemini::with_models_url(
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models",
        &ProviderConfig::new()
            .bearer_token("ya29.vertex-token")
            .header("x-goog-user-project", "p"),
    )
    .unwrap();
    assert_eq!(
        vertex.uri("gemini-2.5-flash", false).unwrap(),
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(vertex.headers.map()["x-goog-user-project"], "p");
    assert_eq!(
        vertex.headers.map()["authorization"],
        "Bearer ya29.vertex-token"
    );
    assert!(!vertex.headers.map().contains_key("x-goog-api-key"));
    assert!(
        Gemini::with_models_url(
            "https://x/models",
            &ProviderConfig::new().bearer_token("a\nb")
        )
        .is_err()
    );
    assert!(
        Gemini::new(&ProviderConfig::new().api_base("generativelanguage.googleapis.com")).is_err()
    );
    assert!(Gemini::new(&ProviderConfig::new().api_key("a\nb")).is_err());
    assert!(!format!("{:?}", gemini()).contains(KEY));
}

#[test]
fn system_and_parameters_are_mapped() {
    let (_, sent, _) = prepare(json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ],
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 3,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "stop": "END",
        "n": 2,
        "user": "u-1",
        "logprobs": true,
        "parallel_tool_calls": true,
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cached_content": "cachedContents/abc",
    }));
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}, {"text": "No emoji."}]})
    );
    assert_eq!(
        sent["contents"],
        json!([
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ])
    );
    assert_eq!(
        sent["generationConfig"],
        json!({"maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "topK": 40, "seed": 3,
               "presencePenalty": 0.5, "frequencyPenalty": 0.25, "stopSequences": ["END"],
               "candidateCount": 2})
    );
    assert_eq!(sent["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert_eq!(sent["cachedContent"], "cachedContents/abc");
    for dropped in [
        "user",
        "logprobs",
        "parallel_tool_calls",
        "model",
        "messages",
    ] {
        assert!(sent.get(dropped).is_none(), "{dropped}");
    }
    let (_, sent, _) = prepare(json!({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 50,
        "stop": ["a", "b"],
        "reasoning_effort": "low",
    }));
    assert_eq!(
        sent["generationConfig"],
        json!({"maxOutputTokens": 50, "stopSequences": ["a", "b"],
               "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
    );
}

#[test]
fn response_format_becomes_a_mime_type_and_a_cleaned_schema() {
    let (_, sent, _) = prepare(json!({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "strict": {"type": "boolean"},
                "items": {"type": "array", "items": {"type": "object", "additionalProperties": false,
                          "properties": {"n": {"type": "integer"}}}},
            },
        }}},
    }));
    assert_eq!(
        sent["generationConfig"],
        json!({"responseMimeType": "application/json", "responseSchema": {
            "type": "object",
            "properties": {
                // A property named like a removed key stays.
                "strict": {"type": "boolean"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            },
        }})
    );
    let (_, sent, _) = prepare(json!({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"},
        "reasoning_effort": "none",
    }));
    assert_eq!(
        sent["generationConfig"],
        json!({"responseMimeType": "application/json",
               "thinkingConfig": {"thinkingBudget": 0, "includeThoughts": false}})
    );
}

#[test]
fn images_become_inline_or_file_data() {
    let (_, sent, _) = prepare(json!({
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": "https://example.com/cat.JPG?size=2"},
            {"type": "image_url", "image_url": {"url": "gs://bucket/dog.webp"}},
        ]}],
    }));
    assert_eq!(
        sent["contents"][0]["parts"],
        json!([
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2"}},
            {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/dog.webp"}},
        ])
    );
}

#[test]
fn tools_calls_and_results_are_translated() {
    let (head, sent, _) = prepare(json!({
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1__thought__c2ln", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1__thought__c2ln", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sunny"}]},
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather now",
             "parameters": {"type": "object", "additionalProperties": false,
                            "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "time",
             "parameters": {"type": "object", "properties": {}}}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    }));
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "weather", "args": {}}},
        ]})
    );
    // Both results in one user turn, named after the calls they answer.
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "weather", "response": {"content": "sunny"}}},
        ]})
    );
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [
            {"name": "weather", "description": "Weather now",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "time"},
        ]}])
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
    );
    fake::check_request(&recorded(&head, &sent), KEY).unwrap();
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let (_, sent, _) = prepare(json!({
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [], "tool_choice": choice,
        }));
        assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], mode);
        assert!(sent.get("tools").is_none());
    }
}

#[test]
fn bad_requests_are_refused_in_openai_shape() {
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!([]), None),
        (json!({"messages": user}), Some("model")),
        (json!({"model": "../x", "messages": user}), Some("model")),
        (json!({"model": "g", "messages": "hi"}), Some("messages")),
        (
            json!({"model": "g", "messages": [{"role": "system", "content": "only"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"content": "x"}]}),
            Some("messages"),
        ),
        (json!({"model": "g", "messages": [1]}), Some("messages")),
        (
            json!({"model": "g", "messages": [{"role": "narrator", "content": "x"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "user", "content": 5}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "system", "content": [{"type": "image_url"}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a"}}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]}),
            Some("messages"),
        ),
        (
            json!({"model": "g", "messages": user, "tools": {}}),
            Some("tools"),
        ),
        (
            json!({"model": "g", "messages": user, "tools": [{"type": "code_interpreter"}]}),
            Some("tools"),
        ),
        (
            json!({"model": "g", "messages": user, "tool_choice": "sometimes"}),
            Some("tool_choice"),
        ),
        (
            json!({"model": "g", "messages": user, "tool_choice": {"type": "function"}}),
            Some("tool_choice"),
        ),
        (
            json!({"model": "g", "messages": user, "response_format": {"type": "yaml"}}),
            Some("response_format"),
        ),
        (
            json!({"model": "g", "messages": user, "n": 2, "stream": true}),
            Some("n"),
        ),
    ];
    for (body, param) in cases {
        let failure = refused(body.clone());
        assert_eq!(failure.class(), ErrorClass::BadRequest, "{body}");
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{body}");
        let openai: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(openai["error"]["param"].as_str(), param, "{body}");
    }
    // A tool message may name its function itself.
    let (_, sent, _) = prepare(json!({"model": "g", "messages": [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "unknown", "name": "lookup", "content": ""},
    ]}));
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({"functionResponse": {"name": "lookup", "response": {"content": ""}}})
    );
}

fn answer(body: Value) -> Result<Value, tollgate_core::Failure> {
    gemini()
        .answer(&exchange(false, false), Bytes::from(body.to_string()))
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn an_answer_becomes_a_chat_completion_with_cache_and_thought_usage() {
    let mut body = fake::response("Hello there");
    body["candidates"][0]["content"]["parts"] =
        json!([{"text": "Thinking...", "thought": true}, {"text": "Hello"}, {"text": " there"}]);
    let completion = answer(body).unwrap();
    assert_eq!(completion["id"], fake::RESPONSE_ID);
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["created"], 7);
    assert_eq!(completion["model"], fake::MODEL_VERSION);
    let choice = &completion["choices"][0];
    assert_eq!(choice["message"]["content"], "Hello there");
    assert_eq!(choice["message"]["reasoning_content"], "Thinking...");
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["message"].get("tool_calls").is_none());
    let usage = &completion["usage"];
    assert_eq!(usage["prompt_tokens"], fake::PROMPT_TOKENS);
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        fake::CACHED_TOKENS
    );
    assert_eq!(
        usage["completion_tokens"],
        fake::CANDIDATES_TOKENS + fake::THOUGHTS_TOKENS
    );
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"],
        fake::THOUGHTS_TOKENS
    );
    assert_eq!(usage["total_tokens"], fake::TOTAL_TOKENS);
    // Asked for a stream, answered in JSON: not readable by the client.
    let failure = gemini()
        .answer(
            &exchange(true, false),
            Bytes::from(fake::response("x").to_string()),
        )
        .unwrap_err();
    assert_eq!(failure.subkind(), Some("malformed_response"));
}

#[test]
fn function_calls_become_tool_calls_carrying_their_signature() {
    let completion = answer(fake::function_call_response(
        "weather",
        json!({"city": "Paris"}),
    ))
    .unwrap();
    let message = &completion["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check.");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_"), "{id}");
    assert_eq!(
        super::response::split_tool_call_id(id).1,
        Some("c2lnbmF0dXJl")
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    // Gemini's own id is kept; two calls get two ids.
    let two = answer(fake::response_of(
        json!([{"functionCall": {"id": "fc-1", "name": "a"}}, {"functionCall": {"name": "b", "args": {}}}]),
        "STOP",
    ))
    .unwrap();
    let calls = &two["choices"][0]["message"]["tool_calls"];
    assert_eq!(calls[0]["id"], "fc-1");
    assert_eq!(calls[0]["function"]["arguments"], "{}");
    assert_ne!(calls[1]["id"], calls[0]["id"]);
}

#[test]
fn finish_reasons_and_candidates_map_to_choices() {
    for (reason, expected) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ] {
        let completion = answer(fake::response_of(json!([{"text": "partial"}]), reason)).unwrap();
        assert_eq!(
            completion["choices"][0]["finish_reason"], expected,
            "{reason}"
        );
    }
    let mut two = fake::response("one");
    two["candidates"].as_array_mut().unwrap().push(
        json!({"content": {"parts": [{"text": "two"}]}, "finishReason": "MAX_TOKENS", "index": 1}),
    );
    let completion = answer(two).unwrap();
    assert_eq!(completion["choices"][1]["index"], 1);
    assert_eq!(completion["choices"][1]["message"]["content"], "two");
    assert_eq!(completion["choices"][1]["finish_reason"], "length");
}

#[test]
fn a_blocked_prompt_or_answer_is_a_refusal_never_an_empty_success() {
    let prompt = answer(fake::blocked_prompt("SAFETY")).unwrap_err();
    assert_eq!(prompt.class(), ErrorClass::ContentPolicy);
    assert_eq!(
        prompt.message(),
        "Gemini blocked the prompt: SAFETY (HARM_CATEGORY_DANGEROUS_CONTENT)"
    );
    assert!(!prompt.is_retryable());
    let stopped = answer(fake::safety_stopped()).unwrap_err();
    assert_eq!(stopped.class(), ErrorClass::ContentPolicy);
    assert_eq!(
        stopped.message(),
        "Gemini blocked the answer: SAFETY (HARM_CATEGORY_SEXUALLY_EXPLICIT)"
    );
    let openai: Value = serde_json::from_slice(&stopped.to_openai_body()).unwrap();
    assert_eq!(openai["error"]["code"], "content_filter");
    // No candidate and no reason: not a success either.
    let empty = answer(json!({"usageMetadata": {"promptTokenCount": 1}})).unwrap_err();
    assert_eq!(empty.subkind(), Some("malformed_response"));
    assert_eq!(
        answer(json!([1])).unwrap_err().subkind(),
        Some("malformed_response")
    );
    let error = answer(fake::rate_limit_error()).unwrap_err();
    assert_eq!(error.class(), ErrorClass::RateLimited);
}

fn translate(stream: &str, include_usage: bool) -> Result<Bytes, tollgate_core::Failure> {
    translate_all(
        GeminiStream::new(&exchange(true, include_usage)),
        [Bytes::from(stream.to_owned())],
    )
}

#[test]
fn a_text_stream_becomes_chunks_ending_with_done() {
    let out = translate(&fake::text_stream(&["Hel", "lo"]), false).unwrap();
    assert_text_stream(&out, &["Hel", "lo"], fake::RESPONSE_ID, fake::MODEL_VERSION);
}

#[test]
fn usage_chunk_only_when_asked_with_the_last_counts() {
    let out = translate(&fake::text_stream(&["Hi", "!"]), true).unwrap();
    let events = data_events(&out);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], fake::TOTAL_TOKENS);
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        fake::CACHED_TOKENS
    );
    assert_eq!(
        usage["usage"]["completion_tokens_details"]["reasoning_tokens"],
        fake::THOUGHTS_TOKENS
    );
}

#[test]
fn a_streamed_function_call_is_one_whole_tool_call_delta() {
    let stream = fake::function_call_stream("Checking.", "weather", json!({"city": "Paris"}));
    let chunks = chunks(&translate(&stream, false).unwrap());
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["type"], "function");
    assert_eq!(calls[0][0]["function"]["name"], "weather");
    assert_eq!(calls[0][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert!(calls[0][0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn thoughts_stream_as_reasoning_content() {
    let stream = fake::event(&fake::response_of(
        json!([{"text": "hmm", "thought": true}, {"text": "Yes."}]),
        "STOP",
    ));
    let chunks = chunks(&translate(&stream, false).unwrap());
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"reasoning_content": "hmm"})
    );
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": "Yes."}));
}

#[test]
fn refusals_and_error_events_fail_the_stream_classified() {
    let blocked = translate(
        &fake::event(&fake::blocked_prompt("PROHIBITED_CONTENT")),
        false,
    )
    .unwrap_err();
    assert_eq!(blocked.class(), ErrorClass::ContentPolicy);
    assert!(blocked.message().contains("PROHIBITED_CONTENT"));
    let stopped = translate(&fake::event(&fake::safety_stopped()), false).unwrap_err();
    assert_eq!(stopped.class(), ErrorClass::ContentPolicy);
    // After content, a safety stop is OpenAI's `content_filter` finish.
    let late = fake::partial_stream(&["Once upon"]) + &fake::event(&fake::safety_stopped());
    let chunks = chunks(&translate(&late, false).unwrap());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "content_filter"
    );

    let overloaded = translate(
        &(fake::partial_stream(&["a"]) + &fake::error_event(503, "UNAVAILABLE", "overloaded")),
        false,
    )
    .unwrap_err();
    assert_eq!(overloaded.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(overloaded.subkind(), Some("overloaded"));
    let limited = translate(
        &fake::error_event(429, "RESOURCE_EXHAUSTED", "quota"),
        false,
    )
    .unwrap_err();
    assert_eq!(limited.class(), ErrorClass::RateLimited);
    let unreadable = translate("data: {not json\r\n\r\n", false).unwrap_err();
    assert_eq!(unreadable.subkind(), Some("malformed_event"));

    // A usage-only event says nothing and commits nothing.
    let mut state = GeminiStream::new(&exchange(true, false));
    let mut out = TranslatedEvents::new();
    let usage_only = tollgate_core::sse::Event::new(
        serde_json::to_vec(&json!({"usageMetadata": {"promptTokenCount": 3}})).unwrap(),
    );
    state.event(&usage_only, &mut out).unwrap();
    assert!(out.is_empty() && !state.committed() && !state.finished());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A stream cut anywhere, any number of times, translates to the same
    /// bytes as the stream in one piece.
    #[test]
    fn any_byte_split_gives_the_same_output(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let stream = fake::partial_stream(&["Hé", "llo, "])
            + &fake::function_call_stream("wörld", "f", json!({"a": 1}));
        let whole = translate(&stream, true).unwrap();
        let bytes = Bytes::from(stream);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in at {
            pieces.push(bytes.slice(from..cut));
            from = cut;
        }
        pieces.push(bytes.slice(from..));
        let split = translate_all(GeminiStream::new(&exchange(true, true)), pieces).unwrap();
        // Tool-call ids are fresh per translation: compare the rest.
        let text = |out: &Bytes| -> Vec<Value> {
            chunks(out).into_iter().map(|mut c| {
                if let Some(call) = c.pointer_mut("/choices/0/delta/tool_calls/0") {
                    call["id"] = json!("id");
                }
                c
            }).collect()
        };
        prop_assert_eq!(text(&split), text(&whole));
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
    let rate = classify(429, fake::rate_limit_error());
    assert_eq!(rate.class(), ErrorClass::RateLimited);
    // RetryInfo wins over the header.
    assert_eq!(rate.retry_after(), Some(Duration::from_secs(1)));
    assert!(rate.is_retryable());

    let overloaded = classify(503, fake::overloaded_error());
    assert_eq!(overloaded.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(overloaded.subkind(), Some("overloaded"));
    assert_eq!(overloaded.scope(), Some(Scope::Provider));
    assert_eq!(overloaded.retry_after(), Some(Duration::from_secs(7)));
    assert!(overloaded.is_retryable() && overloaded.is_fallback_eligible());

    let window = classify(400, fake::context_window_error());
    assert_eq!(window.class(), ErrorClass::ContextWindowExceeded);
    assert!(
        window
            .message()
            .contains("exceeds the maximum number of tokens")
    );
    assert!(window.is_fallback_eligible() && !window.is_retryable());

    // Only a 400 says an invalid key with its message.
    let echo = fake::error_body(
        503,
        "UNAVAILABLE",
        "API key not valid? overloaded",
        json!([]),
    );
    assert_eq!(classify(503, echo).subkind(), Some("overloaded"));
    let key = classify(400, fake::invalid_key_error());
    assert_eq!(key.class(), ErrorClass::Auth);
    assert_eq!(key.status(), StatusCode::BAD_GATEWAY);
    let echoed = classify(
        403,
        fake::error_body(
            403,
            "PERMISSION_DENIED",
            "key AIzaSyD-secretsecretsecretsecret denied",
            json!([]),
        ),
    );
    assert_eq!(echoed.class(), ErrorClass::Auth);
    assert!(!echoed.message().contains("secret"));

    let bad = classify(
        400,
        fake::error_body(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
            json!([]),
        ),
    );
    assert_eq!(bad.class(), ErrorClass::BadRequest);
    assert_eq!(bad.message(), "Invalid JSON payload received.");
    assert_eq!(
        classify(
            404,
            fake::error_body(404, "NOT_FOUND", "models/x is not found", json!([]))
        )
        .class(),
        ErrorClass::ModelNotFound
    );
    assert_eq!(
        classify(
            504,
            fake::error_body(504, "DEADLINE_EXCEEDED", "", json!([]))
        )
        .subkind(),
        Some("upstream_timeout")
    );
    assert_eq!(
        classify(500, fake::error_body(500, "INTERNAL", "oops", json!([]))).subkind(),
        Some("server_error")
    );
    // Wrapped in an array, as some endpoints send it.
    assert_eq!(
        classify(429, json!([fake::rate_limit_error()])).class(),
        ErrorClass::RateLimited
    );
    // No body: the status decides.
    for (status, class) in [
        (400, ErrorClass::BadRequest),
        (401, ErrorClass::Auth),
        (403, ErrorClass::Auth),
        (404, ErrorClass::ModelNotFound),
        (429, ErrorClass::RateLimited),
        (503, ErrorClass::UpstreamUnavailable),
        (504, ErrorClass::UpstreamUnavailable),
        (502, ErrorClass::UpstreamUnavailable),
    ] {
        let bare = super::classify::classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            b"<html>",
        );
        assert_eq!(bare.class(), class, "{status}");
    }
}

#[tokio::test]
async fn through_the_layer_a_json_answer_and_a_stream() {
    let upstream = service_fn(|request: Request<Bytes>| async move {
        let stream = request.uri().path().ends_with(":streamGenerateContent");
        let response = if stream {
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(fake::text_stream(&["Hel", "lo"]))))
        } else {
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(fake::response("Hello").to_string())))
        };
        Ok::<_, std::convert::Infallible>(response.unwrap())
    });
    let service = Gemini::layer(&ProviderConfig::new().api_key(KEY))
        .unwrap()
        .layer(upstream);
    let ask = |stream: bool| {
        let body = json!({"model": "gemini/gemini-2.5-flash", "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        Request::post("/chat/completions")
            .body(Bytes::from(body.to_string()))
            .unwrap()
    };
    let response = service.clone().oneshot(ask(false)).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["choices"][0]["message"]["content"], "Hello");
    let response = service.oneshot(ask(true)).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text: String = chunks(&body)
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Hello");
    assert!(body.ends_with(b"data: [DONE]\n\n"));
}
