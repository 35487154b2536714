//! Vertex AI through the gateway: `vertex_ai/` deployments of a LiteLLM
//! config (Claude and Gemini models), served by `tollgate-providers`'
//! Vertex translation over the gateway's client, against the testkit's fake
//! Vertex AI (token endpoint and model routes) on loopback sockets.

mod common;

use common::{Captured, TestGateway, call, chat_body, client, sse_data, streamed_text};
use serde_json::{Value, json};
use tollgate_testkit::vertex::{self as fake, Vertex};
use tollgate_testkit::{Reply, Upstream, anthropic, gemini, openai};

const CLAUDE: &str = "claude-3-5-sonnet@20240620";

/// A deployment of `model` on `vertex`, its key file's JSON read from
/// `VERTEX_KEY_JSON` (as `os.environ/…`, the way a secret is usually set).
fn deployment(group: &str, model: &str, vertex: &Vertex) -> String {
    format!(
        "  - model_name: {group}
    litellm_params:
      model: vertex_ai/{model}
      api_base: {url}
      vertex_project: {project}
      vertex_location: us-east5
      vertex_credentials: os.environ/VERTEX_KEY_JSON
",
        url = vertex.url(),
        project = fake::PROJECT,
    )
}

async fn start(vertex: &Vertex, yaml: &str) -> TestGateway {
    let key = vertex.service_account_json();
    TestGateway::start(yaml, &[("VERTEX_KEY_JSON", key.as_str())]).await
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

fn with_tools(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}],
    })
    .to_string()
}

/// A Claude message with plain (uncached) usage: 25 in, 15 out.
fn claude_message(text: &str) -> Value {
    let mut message = anthropic::message(text);
    message["usage"] = json!({"input_tokens": 25, "output_tokens": 15});
    message
}

#[tokio::test]
async fn a_claude_deployment_answers_streams_and_calls_tools_with_one_token() {
    let vertex = Vertex::start().await;
    let yaml = format!("model_list:\n{}", deployment("claude", CLAUDE, &vertex));
    let gateway = start(&vertex, &yaml).await;
    let client = client();

    vertex
        .upstream()
        .push(Reply::json(200, claude_message("Hello there")));
    let answer = ask(&client, &gateway, chat_body("claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 25);
    assert_eq!(body["usage"]["completion_tokens"], 15);
    // LiteLLM's prices for vertex_ai/claude-3-5-sonnet@20240620: 3e-06 in,
    // 1.5e-05 out: 25 × 3e-06 + 15 × 1.5e-05 = 0.0003, exactly.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.0003");
    let request = &vertex.upstream().requests()[0];
    assert_eq!(
        request.uri.path(),
        fake::model_path("us-east5", "anthropic", CLAUDE, "rawPredict")
    );
    let sent = request.json();
    assert_eq!(sent["anthropic_version"], fake::ANTHROPIC_VERSION);
    // The client sent no max_tokens: the model's, from LiteLLM's facts.
    assert_eq!(sent["max_tokens"], 8192);

    vertex
        .upstream()
        .push(Reply::sse().raw(anthropic::text_stream(&["Hel", "lo", " there"])));
    let answer = ask(&client, &gateway, chat_body("claude", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "Hello there");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Tool calls, JSON and streamed.
    vertex.upstream().push(Reply::json(
        200,
        anthropic::tool_use_message("toolu_1", "get_weather", json!({"city": "Paris"})),
    ));
    let answer = ask(&client, &gateway, with_tools("claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_1");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    let sent = vertex.upstream().requests()[2].json();
    assert_eq!(sent["tools"][0]["name"], "get_weather");

    let stream = anthropic::start()
        + &anthropic::tool_use_block(0, "toolu_2", "get_weather", &["{\"city\"", ": \"Paris\"}"])
        + &anthropic::stop("tool_use");
    vertex.upstream().push(Reply::sse().raw(stream));
    let answer = ask(&client, &gateway, with_tools("claude", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    let arguments: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let chunk: Value = serde_json::from_str(e).unwrap();
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(arguments, r#"{"city": "Paris"}"#);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Four completions, one token.
    assert_eq!(vertex.token_requests(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_gemini_deployment_answers_with_its_exact_cost_and_blocks_are_refusals() {
    let vertex = Vertex::start().await;
    let yaml = format!(
        "model_list:\n{}",
        deployment("flash", "gemini-2.0-flash", &vertex)
    );
    let gateway = start(&vertex, &yaml).await;
    let client = client();

    let mut answer_body = gemini::response("Hello from Gemini");
    answer_body["usageMetadata"] =
        json!({"promptTokenCount": 6, "candidatesTokenCount": 4, "totalTokenCount": 10});
    vertex.upstream().push(Reply::json(200, answer_body));
    let answer = ask(&client, &gateway, chat_body("flash", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from Gemini"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    assert_eq!(body["usage"]["completion_tokens"], 4);
    // LiteLLM's prices for vertex_ai/gemini-2.0-flash: 1.5e-07 in, 6e-07
    // out: 6 × 1.5e-07 + 4 × 6e-07 = 0.0000033, exactly.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.0000033");
    assert_eq!(
        vertex.upstream().requests()[0].uri.path(),
        fake::model_path("us-east5", "google", "gemini-2.0-flash", "generateContent")
    );

    vertex
        .upstream()
        .push(Reply::sse().raw(gemini::text_stream(&["Hel", "lo"])));
    let answer = ask(&client, &gateway, chat_body("flash", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "Hello");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let request = &vertex.upstream().requests()[1];
    assert_eq!(request.uri.query(), Some("alt=sse"));

    // A blocked prompt is a refusal naming its reason, never an empty
    // success.
    vertex.upstream().push(Reply::json(
        200,
        gemini::blocked_prompt("PROHIBITED_CONTENT"),
    ));
    let answer = ask(&client, &gateway, chat_body("flash", false)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "content_filter", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("PROHIBITED_CONTENT"),
        "{error}"
    );
    assert_eq!(vertex.token_requests(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_vertex_quota_error_is_retried_then_answered_by_a_fallback_on_another_provider() {
    let vertex = Vertex::start().await;
    let backup = Upstream::start().await;
    let yaml = format!(
        "model_list:
{claude}  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {backup}/v1
      api_key: sk-openai-fallback-test
router_settings:
  num_retries: 1
  retry_after: 0
  fallbacks: [{{claude: [gpt]}}]
",
        claude = deployment("claude", CLAUDE, &vertex),
        backup = backup.url(),
    );
    let gateway = start(&vertex, &yaml).await;
    let client = client();
    vertex.upstream().set_default(fake::google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude-3-5-sonnet.",
    ));
    backup.push(Reply::json(
        200,
        openai::chat_completion("from the fallback"),
    ));

    let answer = ask(&client, &gateway, chat_body("claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the fallback"
    );
    // Rate limited is retryable: asked again before the fallback answered.
    assert_eq!(vertex.upstream().requests().len(), 2);
    assert_eq!(backup.requests().len(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_prompt_too_long_goes_to_the_context_window_fallback() {
    let vertex = Vertex::start().await;
    let yaml = format!(
        "model_list:
{claude}{gemini}router_settings:
  context_window_fallbacks: [{{claude: [long]}}]
",
        claude = deployment("claude", CLAUDE, &vertex),
        gemini = deployment("long", "gemini-2.0-flash", &vertex),
    );
    let gateway = start(&vertex, &yaml).await;
    let client = client();
    vertex.upstream().push(Reply::json(
        400,
        anthropic::error_body(
            "invalid_request_error",
            "prompt is too long: 215000 tokens > 200000 maximum",
        ),
    ));
    vertex
        .upstream()
        .push(Reply::json(200, gemini::response("from the long context")));

    let answer = ask(&client, &gateway, chat_body("claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the long context"
    );
    let requests = vertex.upstream().requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].uri.path().contains("/publishers/anthropic/"));
    assert!(requests[1].uri.path().contains("/publishers/google/"));
    gateway.shutdown().await;
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn no_token_key_or_assertion_reaches_the_logs_or_the_client() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let vertex = Vertex::start().await;
    let yaml = format!("model_list:\n{}", deployment("claude", CLAUDE, &vertex));
    let gateway = start(&vertex, &yaml).await;
    let client = client();

    vertex
        .upstream()
        .push(Reply::json(200, claude_message("ok")));
    let ok = ask(&client, &gateway, chat_body("claude", false)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // Vertex refusing the token it was given: the gateway's credentials,
    // not the client's fault.
    vertex.upstream().push(fake::google_error(
        403,
        "PERMISSION_DENIED",
        "Permission 'aiplatform.endpoints.predict' denied",
    ));
    let denied = ask(&client, &gateway, chat_body("claude", false)).await;
    assert_eq!(denied.status, 502, "{}", denied.text());
    // Google refusing the service account.
    let vertex_refusing = Vertex::start().await;
    vertex_refusing.refuse_tokens(Some(Reply::json(
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    )));
    let yaml = format!(
        "model_list:\n{}",
        deployment("refused", CLAUDE, &vertex_refusing)
    );
    let refused_gateway = start(&vertex_refusing, &yaml).await;
    let refused = ask(&client, &refused_gateway, chat_body("refused", false)).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert_eq!(refused.openai_error()["code"], "upstream_auth_failed");
    let health = call(
        &client,
        "GET",
        &refused_gateway.url("/health/providers"),
        String::new(),
        &[],
    )
    .await;

    let tokens = vertex.issued_tokens();
    assert_eq!(tokens.len(), 1);
    let key_line = fake::TEST_PRIVATE_KEY.lines().nth(1).unwrap();
    let logged = logs.text();
    for answer in [&ok, &denied, &refused, &health] {
        let mut shown = answer.text();
        for value in answer.headers.values() {
            shown.push_str(value.to_str().unwrap_or_default());
        }
        for secret in tokens
            .iter()
            .map(String::as_str)
            .chain([key_line, "eyJhbGci"])
        {
            assert!(
                !shown.contains(secret),
                "a secret reached the client: {shown}"
            );
            assert!(!logged.contains(secret), "a secret reached the logs");
        }
    }
    assert!(!logged.is_empty());
    refused_gateway.shutdown().await;
    gateway.shutdown().await;
}

/// Anthropic's Messages API on a Claude-on-Vertex group: the client's
/// request goes as written in Vertex's body (what chat has no room for,
/// `top_k` and `cache_control`, reaches Claude; no `model`, Vertex's
/// version), the answer comes back in Anthropic's shape at its exact cost.
#[tokio::test]
async fn a_messages_request_reaches_claude_on_vertex_as_written() {
    let vertex = Vertex::start().await;
    let yaml = format!("model_list:\n{}", deployment("claude", CLAUDE, &vertex));
    let gateway = start(&vertex, &yaml).await;
    let client = client();
    vertex
        .upstream()
        .push(Reply::json(200, claude_message("Hello there")));
    let body = json!({
        "model": "claude",
        "max_tokens": 100,
        "top_k": 5,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}],
    });
    let answer = call(
        &client,
        "POST",
        &gateway.url("/v1/messages"),
        body.to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let message = answer.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hello there");
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.0003");
    let request = &vertex.upstream().requests()[0];
    assert_eq!(
        request.uri.path(),
        fake::model_path("us-east5", "anthropic", CLAUDE, "rawPredict")
    );
    let sent = request.json();
    assert_eq!(
        sent,
        json!({
            "anthropic_version": fake::ANTHROPIC_VERSION,
            "max_tokens": 100,
            "top_k": 5,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hi"}],
        })
    );
}
