//! `gemini/` deployments through the gateway: a LiteLLM config's Gemini
//! models served by `tollgate-providers`' Gemini translation over the
//! gateway's client, against the testkit's fake of Google's Gemini API on
//! loopback sockets. Every request the fake gets is checked as Gemini
//! would check it (`gemini::check_request`).

mod common;

use common::{Captured, TestGateway, call, chat_body, client, sse_data, streamed_text};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, gemini, openai};

const GEMINI_KEY: &str = "AIzaSyD-native-gemini-test-key-0123456789";

/// A config with `gemini-flash` on Gemini at `url`, the key from the
/// environment, then `extra` (more deployments, router settings).
fn config(url: &str, extra: &str) -> String {
    format!(
        "model_list:
  - model_name: gemini-flash
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {url}
      api_key: os.environ/GEMINI_API_KEY
{extra}"
    )
}

async fn ask(client: &common::TestClient, gateway: &TestGateway, body: String) -> common::Answer {
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        body,
        &[("content-type", "application/json")],
    )
    .await
}

/// Every request `upstream` got passes Gemini's checks.
fn assert_valid_requests(upstream: &Upstream) {
    for request in upstream.requests() {
        if let Err(refused) = gemini::check_request(&request, GEMINI_KEY) {
            panic!("Gemini would refuse {}: {refused}", request.uri);
        }
    }
}

#[tokio::test]
async fn a_gemini_deployment_answers_in_openai_shape_with_its_usage_and_exact_cost() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(
        &config(&upstream.url(), ""),
        &[("GEMINI_API_KEY", GEMINI_KEY)],
    )
    .await;
    let client = client();

    upstream.push(Reply::json(200, gemini::response("Hello there")));
    let answer = ask(&client, &gateway, chat_body("gemini-flash", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // Gemini's numbers: 1200 prompt tokens of which 1000 cached, 15
    // answer and 40 thought tokens (a completion of 55), 1255 in all.
    assert_eq!(body["usage"]["prompt_tokens"], gemini::PROMPT_TOKENS);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        gemini::CACHED_TOKENS
    );
    assert_eq!(body["usage"]["completion_tokens"], 55);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        gemini::THOUGHTS_TOKENS
    );
    assert_eq!(body["usage"]["total_tokens"], gemini::TOTAL_TOKENS);
    // LiteLLM's prices for gemini/gemini-2.5-flash: 3e-07 in, 3e-08 a
    // cached token, 2.5e-06 out (thoughts too): 200 × 3e-07 + 1000 × 3e-08
    // + 55 × 2.5e-06 = 0.0002275, exactly.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.0002275");

    let request = &upstream.requests()[0];
    assert_eq!(
        request.uri.path(),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(request.headers["x-goog-api-key"], GEMINI_KEY);
    assert!(request.headers.get("authorization").is_none());
    assert_eq!(
        request.json()["contents"],
        json!([{"role": "user", "parts": [{"text": "Say hello"}]}])
    );

    upstream.push(Reply::sse().raw(gemini::text_stream(&["Hel", "lo", " there"])));
    let body = json!({"model": "gemini-flash", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Say hello"}]});
    let answer = ask(&client, &gateway, body.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "Hello there");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], gemini::TOTAL_TOKENS);
    let request = &upstream.requests()[1];
    assert_eq!(
        request.uri.path(),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(request.uri.query(), Some("alt=sse"));
    assert_valid_requests(&upstream);
    gateway.shutdown().await;
}

#[tokio::test]
async fn tool_calls_round_trip_in_json_and_in_a_stream() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(
        &config(&upstream.url(), ""),
        &[("GEMINI_API_KEY", GEMINI_KEY)],
    )
    .await;
    let client = client();
    let tools = json!([{"type": "function", "function": {
        "name": "weather", "description": "Current weather",
        "parameters": {"type": "object", "additionalProperties": false,
                       "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);

    upstream.push(Reply::json(
        200,
        gemini::function_call_response("weather", json!({"city": "Paris"})),
    ));
    let first = json!({"model": "gemini-flash", "tools": tools, "tool_choice": "required",
                       "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let answer = ask(&client, &gateway, first.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = body["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    let sent = upstream.requests()[0].json();
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    );

    // The client answers the call by its id: Gemini gets a function
    // response named after it, and the call back with its signature.
    upstream.push(Reply::json(200, gemini::response("21 °C in Paris.")));
    let second = json!({"model": "gemini-flash", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 21}"},
    ]});
    let answer = ask(&client, &gateway, second.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "21 °C in Paris."
    );
    let sent = upstream.requests()[1].json();
    assert_eq!(
        sent["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "weather", "args": {"city": "Paris"}},
               "thoughtSignature": "c2lnbmF0dXJl"})
    );
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"temp_c": 21}}}]})
    );

    upstream.push(Reply::sse().raw(gemini::function_call_stream(
        "Checking.",
        "weather",
        json!({"city": "Rome"}),
    )));
    let streamed = json!({"model": "gemini-flash", "tools": tools, "stream": true,
                          "messages": [{"role": "user", "content": "Weather in Rome?"}]});
    let answer = ask(&client, &gateway, streamed.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .expect("a tool call delta");
    assert_eq!(call[0]["function"]["name"], "weather");
    assert_eq!(call[0]["function"]["arguments"], "{\"city\":\"Rome\"}");
    assert!(call[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_valid_requests(&upstream);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_gemini_is_retried_then_answered_by_a_fallback_on_another_provider() {
    let upstream = Upstream::start().await;
    let openai_upstream = Upstream::start().await;
    let extra = format!(
        "  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {openai}/v1
      api_key: sk-openai-fallback-test
router_settings:
  num_retries: 1
  retry_after: 0
  fallbacks: [{{gemini-flash: [gpt]}}]
",
        openai = openai_upstream.url(),
    );
    let gateway = TestGateway::start(
        &config(&upstream.url(), &extra),
        &[("GEMINI_API_KEY", GEMINI_KEY)],
    )
    .await;
    let client = client();
    // Gemini's 429 without its `RetryInfo` (whose delay the retry would
    // honour): the test does not wait.
    let mut limited = gemini::rate_limit_error();
    limited["error"]["details"] = json!([]);
    upstream.set_default(Reply::json(429, limited));
    openai_upstream.push(Reply::json(
        200,
        openai::chat_completion("from the fallback"),
    ));

    let answer = ask(&client, &gateway, chat_body("gemini-flash", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the fallback"
    );
    // Rate limited is retryable: asked again before the fallback answered.
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(openai_upstream.requests().len(), 1);
    assert_valid_requests(&upstream);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_context_window_error_goes_to_the_context_window_fallbacks() {
    let upstream = Upstream::start().await;
    let big = Upstream::start().await;
    let regular = Upstream::start().await;
    let extra = format!(
        "  - model_name: big
    litellm_params:
      model: openai/gpt-4.1
      api_base: {big}/v1
      api_key: sk-big-test
  - model_name: regular
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {regular}/v1
      api_key: sk-regular-test
router_settings:
  num_retries: 2
  fallbacks: [{{gemini-flash: [regular]}}]
  context_window_fallbacks: [{{gemini-flash: [big]}}]
",
        big = big.url(),
        regular = regular.url(),
    );
    let gateway = TestGateway::start(
        &config(&upstream.url(), &extra),
        &[("GEMINI_API_KEY", GEMINI_KEY)],
    )
    .await;
    let client = client();
    upstream.push(Reply::json(400, gemini::context_window_error()));
    big.push(Reply::json(
        200,
        openai::chat_completion("from the big one"),
    ));

    let answer = ask(&client, &gateway, chat_body("gemini-flash", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the big one"
    );
    // Not retried: the same prompt would not fit the second time.
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(big.requests().len(), 1);
    assert!(regular.requests().is_empty());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_safety_block_reaches_the_client_as_a_refusal_with_its_reason() {
    let upstream = Upstream::start().await;
    let backup = Upstream::start().await;
    let extra = format!(
        "  - model_name: backup
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {backup}/v1
      api_key: sk-backup-test
router_settings:
  fallbacks: [{{gemini-flash: [backup]}}]
",
        backup = backup.url(),
    );
    let gateway = TestGateway::start(
        &config(&upstream.url(), &extra),
        &[("GEMINI_API_KEY", GEMINI_KEY)],
    )
    .await;
    let client = client();

    upstream.push(Reply::json(200, gemini::blocked_prompt("SAFETY")));
    let answer = ask(&client, &gateway, chat_body("gemini-flash", false)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "content_filter", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("prompt: SAFETY"), "{error}");
    assert!(
        message.contains("HARM_CATEGORY_DANGEROUS_CONTENT"),
        "{error}"
    );

    // A stream the filter stops before its first word: an error, not an
    // empty stream.
    upstream.push(Reply::sse().raw(gemini::event(&gemini::safety_stopped())));
    let answer = ask(&client, &gateway, chat_body("gemini-flash", true)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "content_filter", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("HARM_CATEGORY_SEXUALLY_EXPLICIT"),
        "{error}"
    );
    // No fallback hides a refusal (DECISIONS 1).
    assert!(backup.requests().is_empty());
    assert_valid_requests(&upstream);
    gateway.shutdown().await;
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn the_key_reaches_no_log_line_error_or_response() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let upstream = Upstream::start().await;
    let extra = "router_settings:\n  num_retries: 0\n  cooldown_time: 0\n";
    let gateway = TestGateway::start(
        &config(&upstream.url(), extra),
        &[("GEMINI_API_KEY", GEMINI_KEY)],
    )
    .await;
    let client = client();
    let leak = format!("API key not valid: {GEMINI_KEY}");

    upstream.push(Reply::json(
        400,
        gemini::error_body(400, "INVALID_ARGUMENT", &leak, json!([])),
    ));
    let echo = format!("backend said: {GEMINI_KEY}");
    upstream.push(Reply::json(
        503,
        gemini::error_body(503, "UNAVAILABLE", &echo, json!([])),
    ));
    upstream.push(
        Reply::sse()
            .raw(gemini::partial_stream(&["a"]) + &gemini::error_event(500, "INTERNAL", &echo)),
    );
    upstream.push(Reply::json(200, gemini::response("fine")).header("x-echo", GEMINI_KEY));
    let mut answers = Vec::new();
    for stream in [false, false, true, false] {
        answers.push(ask(&client, &gateway, chat_body("gemini-flash", stream)).await);
    }
    // The gateway's own key was refused: not the client's fault.
    assert_eq!(answers[0].status, 502, "{}", answers[0].text());
    assert_eq!(answers[0].openai_error()["code"], "upstream_auth_failed");
    assert_eq!(answers[1].status, 502, "{}", answers[1].text());
    // The error event comes in the stream's first read or after it: an
    // error answer or an error event, either way an error.
    assert!(
        answers[2].text().contains("\"error\""),
        "{}",
        answers[2].text()
    );
    assert_eq!(answers[3].status, 200);
    assert_eq!(upstream.requests().len(), 4);
    gateway.shutdown().await;

    let secret = "native-gemini-test-key";
    for answer in &answers {
        assert!(!answer.text().contains(secret), "{}", answer.text());
        for (name, value) in &answer.headers {
            let value = value.to_str().unwrap_or_default();
            assert!(!value.contains(secret), "{name}: {value}");
        }
    }
    let log = logs.text();
    assert!(!log.is_empty());
    assert!(!log.contains(secret), "the key reached the log:\n{log}");
}
