//! Native providers through the gateway: `anthropic/` and `azure/`
//! deployments of a LiteLLM config, served by `tollgate-providers`'
//! translations over the gateway's client, against the testkit's fakes of
//! Anthropic's Messages API and Azure OpenAI on loopback sockets.

mod common;

use common::{TestGateway, call, chat_body, client, sse_data, streamed_text};
use tollgate_testkit::{Reply, Upstream, anthropic, azure, openai};

const ANTHROPIC_KEY: &str = "sk-ant-api03-native-provider-test-key-0123456789";
const AZURE_KEY: &str = "azure-native-provider-test-key-9f8e7d6c5b4a";

async fn ask(
    client: &common::TestClient,
    gateway: &TestGateway,
    model: &str,
    stream: bool,
) -> common::Answer {
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body(model, stream),
        &[("content-type", "application/json")],
    )
    .await
}

#[tokio::test]
async fn an_anthropic_deployment_answers_in_openai_shape_with_its_exact_cost() {
    let upstream = Upstream::start().await;
    let url = upstream.url();
    let yaml = format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {url}
      api_key: os.environ/ANTHROPIC_API_KEY
"
    );
    let gateway = TestGateway::start(&yaml, &[("ANTHROPIC_API_KEY", ANTHROPIC_KEY)]).await;
    let client = client();

    upstream.push(Reply::json(200, anthropic::message("Hello there")));
    let answer = ask(&client, &gateway, "claude", false).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // Anthropic's numbers: 25 uncached, 1000 written to and 2000 read from
    // the cache, 15 out.
    assert_eq!(body["usage"]["completion_tokens"], 15);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        2000
    );
    // LiteLLM's prices for claude-sonnet-4-5-20250929: 3e-06 in, 3e-07 a
    // cache read, 3.75e-06 a cache write, 1.5e-05 out: 25 × 3e-06 +
    // 2000 × 3e-07 + 1000 × 3.75e-06 + 15 × 1.5e-05 = 0.00465, exactly.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.00465");

    let request = &upstream.requests()[0];
    assert_eq!(request.uri.path(), "/v1/messages");
    assert_eq!(request.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert!(request.headers.get("authorization").is_none());
    let sent = request.json();
    assert_eq!(sent["model"], "claude-sonnet-4-5-20250929");
    // The client sent no max_tokens: the model's, from LiteLLM's facts.
    assert_eq!(sent["max_tokens"], 64000);
    assert_eq!(sent["messages"][0]["role"], "user");

    upstream.push(Reply::sse().raw(anthropic::text_stream(&["Hel", "lo", " there"])));
    let answer = ask(&client, &gateway, "claude", true).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "Hello there");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_overloaded_anthropic_is_answered_by_a_fallback_on_another_provider() {
    let claude = Upstream::start().await;
    let openai_upstream = Upstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {claude}
      api_key: {ANTHROPIC_KEY}
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {openai}/v1
      api_key: sk-openai-fallback-test
router_settings:
  num_retries: 1
  retry_after: 0
  fallbacks: [{{claude: [gpt]}}]
",
        claude = claude.url(),
        openai = openai_upstream.url(),
    );
    let gateway = TestGateway::start(&yaml, &[]).await;
    let client = client();
    let overloaded = anthropic::error_body("overloaded_error", "Overloaded");
    claude.set_default(Reply::json(529, overloaded));
    openai_upstream.push(Reply::json(
        200,
        openai::chat_completion("from the fallback"),
    ));

    let answer = ask(&client, &gateway, "claude", false).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the fallback"
    );
    // Overloaded is retryable: asked again before the fallback answered.
    assert_eq!(claude.requests().len(), 2);
    assert_eq!(openai_upstream.requests().len(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_key_anthropic_echoes_in_an_error_never_reaches_the_client() {
    let upstream = Upstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {url}
      api_key: {ANTHROPIC_KEY}
",
        url = upstream.url()
    );
    let gateway = TestGateway::start(&yaml, &[]).await;
    let client = client();
    let echo = format!("invalid x-api-key: {ANTHROPIC_KEY}");
    upstream.push(Reply::json(
        401,
        anthropic::error_body("authentication_error", &echo),
    ));
    let answer = ask(&client, &gateway, "claude", false).await;
    // The gateway's own key was refused: not the client's fault.
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "upstream_auth_failed");
    assert!(!answer.text().contains(ANTHROPIC_KEY), "{}", answer.text());
    assert!(!answer.text().contains("native-provider-test-key"));
    for (name, value) in &answer.headers {
        let value = value.to_str().unwrap_or_default();
        assert!(
            !value.contains("native-provider-test-key"),
            "{name}: {value}"
        );
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_azure_deployment_uses_its_url_key_and_version_and_refuses_filtered_answers() {
    let upstream = Upstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: azure-gpt
    litellm_params:
      model: azure/my-gpt4o-deployment
      api_base: {url}
      api_version: 2024-10-21
      api_key: os.environ/AZURE_API_KEY
",
        url = upstream.url()
    );
    let gateway = TestGateway::start(&yaml, &[("AZURE_API_KEY", AZURE_KEY)]).await;
    let client = client();

    upstream.push(Reply::json(
        200,
        openai::chat_completion("hello from azure"),
    ));
    let answer = ask(&client, &gateway, "azure-gpt", false).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "hello from azure"
    );
    let request = &upstream.requests()[0];
    assert_eq!(
        request.uri.path(),
        "/openai/deployments/my-gpt4o-deployment/chat/completions"
    );
    assert_eq!(request.uri.query(), Some("api-version=2024-10-21"));
    assert_eq!(request.headers["api-key"], AZURE_KEY);
    assert!(request.headers.get("authorization").is_none());

    // Azure's content filter: a refusal with its reason, never an empty
    // success.
    upstream.push(Reply::json(400, azure::content_filter_error("violence")));
    let answer = ask(&client, &gateway, "azure-gpt", false).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    // Azure's own code, as an Azure client knows it.
    assert_eq!(error["code"], "content_filter", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("violence"),
        "{error}"
    );

    upstream.push(Reply::json(200, azure::filtered_completion("hate")));
    let answer = ask(&client, &gateway, "azure-gpt", false).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "content_filter", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("hate"),
        "{error}"
    );
    gateway.shutdown().await;
}

// ---- Cross-provider flows (issue 14, acceptance 2 and 3) ----

/// A config with an Anthropic group `claude` and an Azure group
/// `azure-gpt`, and `router` as its router settings.
fn claude_and_azure(claude: &Upstream, azure: &Upstream, router: &str) -> String {
    format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {claude}
      api_key: {ANTHROPIC_KEY}
  - model_name: azure-gpt
    litellm_params:
      model: azure/my-gpt4o-deployment
      api_base: {azure}
      api_version: 2024-10-21
      api_key: {AZURE_KEY}
router_settings:
  retry_after: 0
  cooldown_time: 0
{router}",
        claude = claude.url(),
        azure = azure.url(),
    )
}

/// `yaml` with a third group, `spare` (OpenAI-compatible, at `spare`).
fn with_spare(yaml: &str, spare: &Upstream) -> String {
    yaml.replace(
        "model_list:\n",
        &format!(
            "model_list:
  - model_name: spare
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {}/v1
      api_key: sk-spare-test
",
            spare.url()
        ),
    )
}

/// An Anthropic group and an Azure group, each on its fake, behind a
/// gateway with `router` as its router settings; and a client.
async fn flows(router: &str) -> (Upstream, Upstream, TestGateway, common::TestClient) {
    let claude = Upstream::start().await;
    let azure = Upstream::start().await;
    let gateway = TestGateway::start(&claude_and_azure(&claude, &azure, router), &[]).await;
    (claude, azure, gateway, client())
}

/// A chat request for `model` with `extra` members (`"stream": true`,
/// `"tools": …`).
fn body_with(model: &str, extra: serde_json::Value) -> String {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body.to_string()
}

async fn post(client: &common::TestClient, gateway: &TestGateway, body: String) -> common::Answer {
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        body,
        &[("content-type", "application/json")],
    )
    .await
}

/// The text of a 200 answer to a request for `model` with `extra`.
async fn answered(
    client: &common::TestClient,
    gateway: &TestGateway,
    model: &str,
    extra: serde_json::Value,
) -> String {
    let answer = post(client, gateway, body_with(model, extra)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn weather_tool() -> serde_json::Value {
    serde_json::json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    }}])
}

/// The tool calls of a streamed answer, put together from their deltas:
/// (id, name, arguments) per index, and the last `finish_reason`.
fn streamed_tool_calls(events: &[String]) -> (Vec<(String, String, String)>, String) {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = String::new();
    for data in events.iter().filter(|d| *d != "[DONE]") {
        let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = reason.to_owned();
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if calls.len() <= index {
                calls.resize(index + 1, Default::default());
            }
            let entry = &mut calls[index];
            if let Some(id) = call["id"].as_str() {
                entry.0 = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                entry.1 = name.to_owned();
            }
            entry.2 += call["function"]["arguments"].as_str().unwrap_or_default();
        }
    }
    (calls, finish)
}

#[tokio::test]
async fn anthropic_tool_calls_round_trip_as_json_and_as_a_stream() {
    let (claude, _azure, gateway, client) = flows("").await;

    claude.push(Reply::json(
        200,
        anthropic::tool_use_message(
            "toolu_01",
            "get_weather",
            serde_json::json!({"city": "Paris"}),
        ),
    ));
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"tools": weather_tool()})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let choice = &answer.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, serde_json::json!({"city": "Paris"}));
    // Anthropic got the tool in its own shape.
    let sent = claude.requests()[0].json();
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["required"][0], "city");

    // The tool's result goes back as Anthropic's `tool_result`.
    claude.push(Reply::json(200, anthropic::message("Sunny, 21 °C.")));
    let history = serde_json::json!({"tools": weather_tool(), "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_01", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny, 21"},
    ]});
    let answer = post(&client, &gateway, body_with("claude", history)).await;
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "Sunny, 21 °C."
    );
    let sent = claude.requests()[1].json();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][1]["content"][0]["input"]["city"], "Paris");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_01");

    // Streamed: `input_json_delta`s become `tool_calls` argument deltas.
    claude.push(Reply::sse().raw(
        anthropic::start()
            + &anthropic::text_block(0, &["Let me check."])
            + &anthropic::tool_use_block(
                1,
                "toolu_02",
                "get_weather",
                &["{\"ci", "ty\": \"Par", "is\"}"],
            )
            + &anthropic::stop("tool_use"),
    ));
    let body = body_with(
        "claude",
        serde_json::json!({"tools": weather_tool(), "stream": true}),
    );
    let answer = post(&client, &gateway, body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "Let me check.");
    let (calls, finish) = streamed_tool_calls(&events);
    assert_eq!(finish, "tool_calls");
    assert_eq!(calls.len(), 1, "{events:?}");
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("toolu_02", "get_weather")
    );
    let arguments: serde_json::Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(arguments, serde_json::json!({"city": "Paris"}));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn azure_tool_calls_round_trip_as_json_and_as_a_stream() {
    let (_claude, azure, gateway, client) = flows("").await;

    let mut completion = openai::chat_completion("");
    completion["choices"][0]["message"] = serde_json::json!({"role": "assistant", "content": null,
        "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]});
    completion["choices"][0]["finish_reason"] = serde_json::json!("tool_calls");
    azure.push(Reply::json(200, completion));
    let answer = post(
        &client,
        &gateway,
        body_with("azure-gpt", serde_json::json!({"tools": weather_tool()})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let choice = &answer.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    // Azure takes OpenAI's tools as they are.
    assert_eq!(azure.requests()[0].json()["tools"], weather_tool());

    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        serde_json::json!({"id": openai::ID, "object": "chat.completion.chunk",
            "created": openai::CREATED, "model": openai::MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let null = serde_json::Value::Null;
    azure.push(
        Reply::sse()
            .data(azure::prompt_filter_chunk())
            .data(chunk(serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"index": 0, "id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]}), null.clone()))
            .data(chunk(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), null.clone()))
            .data(chunk(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), null))
            .data(chunk(serde_json::json!({}), serde_json::json!("tool_calls")))
            .done(),
    );
    let body = body_with(
        "azure-gpt",
        serde_json::json!({"tools": weather_tool(), "stream": true}),
    );
    let answer = post(&client, &gateway, body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    let (calls, finish) = streamed_tool_calls(&events);
    assert_eq!(finish, "tool_calls");
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("call_2", "get_weather")
    );
    assert_eq!(calls[0].2, "{\"city\":\"Paris\"}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_azure_is_retried_then_answered_by_anthropic() {
    let router = "  num_retries: 1\n  fallbacks: [{azure-gpt: [claude]}]\n";
    let (claude, azure, gateway, client) = flows(router).await;
    let limited = openai::error_body(
        "Requests to the ChatCompletions_Create Operation have exceeded call rate limit.",
        "rate_limit_exceeded",
        Some("429"),
    );
    azure.set_default(Reply::json(429, limited).header("retry-after", "0"));
    claude.push(Reply::json(200, anthropic::message("from claude")));

    let answer = post(
        &client,
        &gateway,
        body_with("azure-gpt", serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from claude"
    );
    assert_eq!(azure.requests().len(), 2, "asked again before the fallback");
    assert_eq!(claude.requests().len(), 1);
    assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
    assert_eq!(answer.headers["x-tollgate-model-group"], "claude");
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_overloaded_anthropic_stream_is_retried_then_answered_by_azure() {
    let router = "  num_retries: 1\n  fallbacks: [{claude: [azure-gpt]}]\n";
    let (claude, azure, gateway, client) = flows(router).await;
    // Overloaded in the stream's first events: still before any content.
    claude.set_default(
        Reply::sse()
            .raw(anthropic::start() + &anthropic::error_event("overloaded_error", "Overloaded")),
    );
    azure.push(
        Reply::sse()
            .data_each(openai::chunks(&["from ", "azure"]))
            .done(),
    );

    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"stream": true})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "from azure");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(claude.requests().len(), 2);
    assert_eq!(azure.requests().len(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn context_window_errors_go_to_context_window_fallbacks_on_the_other_provider() {
    let claude = Upstream::start().await;
    let azure = Upstream::start().await;
    let spare = Upstream::start().await;
    let router = "  num_retries: 2
  fallbacks: [{claude: [spare]}, {azure-gpt: [spare]}]
  context_window_fallbacks: [{claude: [azure-gpt]}, {azure-gpt: [claude]}]
";
    // A third group, which only the regular fallbacks name.
    let yaml = with_spare(&claude_and_azure(&claude, &azure, router), &spare);
    let gateway = TestGateway::start(&yaml, &[]).await;
    let client = client();

    // Anthropic's "prompt is too long", as its API answers it.
    claude.push(Reply::json(
        400,
        anthropic::error_body(
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
        ),
    ));
    azure.push(Reply::json(200, openai::chat_completion("the long answer")));
    assert_eq!(
        answered(&client, &gateway, "claude", serde_json::json!({})).await,
        "the long answer"
    );
    // Not retried (the prompt will not shrink), not sent to `fallbacks`.
    assert_eq!(claude.requests().len(), 1);
    assert_eq!(spare.requests().len(), 0);

    // Azure's, as OpenAI's: `context_length_exceeded`.
    azure.push(Reply::json(
        400,
        openai::error_body(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
    ));
    claude.push(Reply::json(200, anthropic::message("claude reads it all")));
    assert_eq!(
        answered(&client, &gateway, "azure-gpt", serde_json::json!({})).await,
        "claude reads it all"
    );
    assert_eq!(azure.requests().len(), 2);
    assert_eq!(spare.requests().len(), 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn refusals_reach_the_client_with_their_reason_and_no_fallback_hides_them() {
    let router = "  num_retries: 2\n  fallbacks: [{claude: [azure-gpt]}, {azure-gpt: [claude]}]\n";
    let (claude, azure, gateway, client) = flows(router).await;

    // Claude declines, with nothing said: a refusal, not an empty answer.
    let mut refused = anthropic::message("");
    refused["content"] = serde_json::json!([]);
    refused["stop_reason"] = serde_json::json!("refusal");
    claude.push(Reply::json(200, refused));
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "refusal", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("refusal"),
        "{error}"
    );

    // The same in a stream, before any content.
    claude.push(Reply::sse().raw(anthropic::start() + &anthropic::stop("refusal")));
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"stream": true})),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.text().contains("refusal"), "{}", answer.text());

    // A refusal after some text: the answer with `finish_reason:
    // "content_filter"`, as OpenAI says it.
    let mut partial = anthropic::message("I can't help with that.");
    partial["stop_reason"] = serde_json::json!("refusal");
    claude.push(Reply::json(200, partial));
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["finish_reason"],
        "content_filter"
    );

    // Azure's filter, on the prompt and on the answer, in JSON and streamed.
    azure.push(Reply::json(400, azure::content_filter_error("violence")));
    azure.push(Reply::json(200, azure::filtered_completion("hate")));
    azure.push(
        Reply::sse()
            .data(azure::prompt_filter_chunk())
            .data(azure::filtered_chunk("sexual"))
            .done(),
    );
    for (stream, category) in [(false, "violence"), (false, "hate"), (true, "sexual")] {
        let answer = post(
            &client,
            &gateway,
            body_with("azure-gpt", serde_json::json!({"stream": stream})),
        )
        .await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        let error = answer.openai_error();
        assert_eq!(error["code"], "content_filter", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(category),
            "{error}"
        );
    }
    // Asked once each (a refusal is not retried), and no fallback answered.
    assert_eq!(claude.requests().len(), 3);
    assert_eq!(azure.requests().len(), 3);
    gateway.shutdown().await;
}

/// The events of an Anthropic stream cut after `parts` of text: no stop,
/// no `message_stop`.
fn cut_anthropic_stream(parts: &[&str]) -> String {
    let mut out = anthropic::start()
        + &anthropic::event(
            "content_block_start",
            &serde_json::json!({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}),
        );
    for part in parts {
        out += &anthropic::event(
            "content_block_delta",
            &serde_json::json!({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": part}}),
        );
    }
    out
}

#[tokio::test]
async fn a_cut_anthropic_stream_is_continued_by_prefill_into_one_whole_answer() {
    let router = "  num_retries: 0\n  fallbacks: [{claude: [azure-gpt]}]\n";
    let (claude, azure, gateway, client) = flows(router).await;

    // Cut mid-answer; Anthropic continues its own text from the prefill.
    claude.push(
        Reply::sse()
            .raw(cut_anthropic_stream(&["The capital", " of France "]))
            .cut(),
    );
    claude.push(Reply::sse().raw(anthropic::text_stream(&[" is Paris."])));
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"stream": true})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(
        streamed_text(&events),
        "The capital of France  is Paris.".replace("  ", " ")
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // The continuation ends with the text so far as an assistant turn:
    // Anthropic's prefill (without the trailing space it refuses).
    let sent = claude.requests()[1].json();
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"][0]["text"], "The capital of France");
    assert_eq!(azure.requests().len(), 0);

    // Cut again, and Anthropic down: Azure continues it.
    claude.push(Reply::sse().raw(cut_anthropic_stream(&["One, two,"])).cut());
    claude.set_default(Reply::json(
        529,
        anthropic::error_body("overloaded_error", "Overloaded"),
    ));
    azure.push(Reply::sse().data_each(openai::chunks(&[" three."])).done());
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"stream": true})),
    )
    .await;
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "One, two, three.");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let sent = azure.requests()[0].json();
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        serde_json::json!({"role": "assistant", "content": "One, two,"})
    );
    gateway.shutdown().await;
}

// ---- Fallbacks named in the request body (LiteLLM's client-side fallbacks) ----

const MASTER_KEY: &str = "sk-master-native-flows-0123456789";

#[tokio::test]
async fn fallbacks_in_the_body_replace_the_configured_ones_for_that_request() {
    let claude = Upstream::start().await;
    let azure = Upstream::start().await;
    let spare = Upstream::start().await;
    let router = "  num_retries: 0\n  fallbacks: [{claude: [spare]}]\n";
    let yaml = with_spare(&claude_and_azure(&claude, &azure, router), &spare)
        + "  model_group_alias: {azure-alias: azure-gpt}\n";
    let gateway = TestGateway::start(&yaml, &[]).await;
    let client = client();
    claude.set_default(Reply::json(
        529,
        anthropic::error_body("overloaded_error", "Overloaded"),
    ));
    azure.set_default(Reply::json(200, openai::chat_completion("from azure")));
    spare.set_default(Reply::json(200, openai::chat_completion("from spare")));

    // The body's list (through an alias) instead of the config's.
    let body = body_with(
        "claude",
        serde_json::json!({"fallbacks": ["azure-alias"], "temperature": 0}),
    );
    let answer = post(&client, &gateway, body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from azure"
    );
    assert_eq!(spare.requests().len(), 0);
    // No provider sees the gateway's own member.
    for request in claude.requests().iter().chain(&azure.requests()) {
        let sent = request.json();
        assert!(sent.get("fallbacks").is_none(), "{sent}");
        assert_eq!(sent["temperature"], 0);
    }

    // Streamed, the same.
    azure.push(Reply::sse().data_each(openai::chunks(&["streamed"])).done());
    let body = body_with(
        "claude",
        serde_json::json!({"fallbacks": ["azure-gpt"], "stream": true}),
    );
    let answer = post(&client, &gateway, body).await;
    assert_eq!(streamed_text(&sse_data(&answer.body)), "streamed");

    // Without them, the config's list.
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({})),
    )
    .await;
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from spare"
    );
    // An empty list turns fallbacks off for the request.
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"fallbacks": []})),
    )
    .await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "upstream_unavailable");
    assert_eq!(spare.requests().len(), 1);

    // A model the gateway does not serve: a 400 naming it, no call made.
    let calls = claude.requests().len();
    let body = body_with(
        "claude",
        serde_json::json!({"fallbacks": ["azure-gpt", "gpt-9"]}),
    );
    let answer = post(&client, &gateway, body).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["param"], "fallbacks", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("gpt-9"),
        "{error}"
    );
    // Not a list of names: a 400 too.
    let answer = post(
        &client,
        &gateway,
        body_with("claude", serde_json::json!({"fallbacks": "azure-gpt"})),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(claude.requests().len(), calls);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_virtual_key_reaches_no_model_through_body_fallbacks_it_may_not_use() {
    let claude = Upstream::start().await;
    let azure = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("tollgate-native-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let router = format!(
        "  num_retries: 0\ngeneral_settings:\n  master_key: {MASTER_KEY}\ntollgate:\n  ledger_path: {}\n",
        dir.join("ledger.sqlite3").display()
    );
    let gateway = TestGateway::start(&claude_and_azure(&claude, &azure, &router), &[]).await;
    let client = client();
    let master = format!("Bearer {MASTER_KEY}");
    let generated = call(
        &client,
        "POST",
        &gateway.url("/key/generate"),
        serde_json::json!({"models": ["claude"], "key_alias": "claude-only"}).to_string(),
        &[
            ("authorization", &master),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(generated.status, 200, "{}", generated.text());
    let key = format!("Bearer {}", generated.json()["key"].as_str().unwrap());
    claude.set_default(Reply::json(
        529,
        anthropic::error_body("overloaded_error", "Overloaded"),
    ));
    azure.set_default(Reply::json(200, openai::chat_completion("from azure")));

    let body = body_with("claude", serde_json::json!({"fallbacks": ["azure-gpt"]}));
    let answer = call(
        &client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        body,
        &[
            ("authorization", &key),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["param"], "fallbacks", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("azure-gpt"),
        "{error}"
    );
    assert_eq!(claude.requests().len() + azure.requests().len(), 0);
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_azure_ad_token_is_sent_as_a_bearer_token_when_there_is_no_key() {
    let upstream = Upstream::start().await;
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-test-token.c2lnbmF0dXJl";
    let yaml = |params: &str| {
        format!(
            "model_list:
  - model_name: azure-gpt
    litellm_params:
      model: azure/my-gpt4o-deployment
      api_base: {url}
      api_version: 2024-10-21
{params}",
            url = upstream.url()
        )
    };
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
    for (params, env) in [
        (
            "      azure_ad_token: os.environ/MY_TOKEN\n",
            ("MY_TOKEN", token),
        ),
        // LiteLLM's variable, with nothing in the config.
        ("", ("AZURE_AD_TOKEN", token)),
    ] {
        let gateway = TestGateway::start(&yaml(params), &[env]).await;
        let answer = ask(&client(), &gateway, "azure-gpt", false).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let request = upstream.requests().pop().unwrap();
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {token}").as_str()
        );
        assert!(request.headers.get("api-key").is_none());
        gateway.shutdown().await;
    }
    // A key wins over a token, as in LiteLLM.
    let params = format!("      api_key: {AZURE_KEY}\n      azure_ad_token: {token}\n");
    let gateway = TestGateway::start(&yaml(&params), &[]).await;
    ask(&client(), &gateway, "azure-gpt", false).await;
    let request = upstream.requests().pop().unwrap();
    assert_eq!(request.headers["api-key"], AZURE_KEY);
    assert!(request.headers.get("authorization").is_none());
    gateway.shutdown().await;
}
