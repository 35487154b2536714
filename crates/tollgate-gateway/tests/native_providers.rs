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
