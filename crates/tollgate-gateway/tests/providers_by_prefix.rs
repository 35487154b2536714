//! LiteLLM configs as written: OpenAI-compatible providers by prefix (their
//! default path and key variable), wildcard groups forwarding the client's
//! model, aliases, disabled deployments, and prices from LiteLLM's snapshot —
//! through the in-process gateway on loopback sockets, against scripted
//! upstreams.

mod common;

use common::{TestGateway, call, chat_body, client};
use serde_json::json;
use tollgate_testkit::{Reply, Upstream, openai};

/// A non-streaming chat request for `model`.
async fn ask(client: &common::TestClient, gateway: &TestGateway, model: &str) -> common::Answer {
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body(model, false),
        &[("content-type", "application/json")],
    )
    .await
}

fn answer_with_usage(prompt: u64, completion: u64) -> Reply {
    let mut body = openai::chat_completion("hello");
    body["usage"] = openai::usage(prompt, completion);
    Reply::json(200, body)
}

#[tokio::test]
async fn prefixes_use_their_base_path_and_key_variable_and_snapshot_prices() {
    let upstream = Upstream::start().await;
    let url = upstream.url();
    let yaml = format!(
        "model_list:
  - model_name: groq-oss
    litellm_params:
      model: groq/openai/gpt-oss-20b
      api_base: {url}/openai/v1
  - model_name: local-llama
    litellm_params:
      model: ollama/llama3
      api_base: {url}
"
    );
    let gateway = TestGateway::start(&yaml, &[("GROQ_API_KEY", "gsk-test-groq-key")]).await;
    let client = client();

    upstream.push(answer_with_usage(1000, 500));
    let answer = ask(&client, &gateway, "groq-oss").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // LiteLLM's snapshot prices groq/openai/gpt-oss-20b at 7.5e-08 in and
    // 3e-07 out: 1000 × 7.5e-08 + 500 × 3e-07 = 0.000225, exactly.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.000225");

    upstream.push(answer_with_usage(10, 5));
    let answer = ask(&client, &gateway, "local-llama").await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].uri.path(), "/openai/v1/chat/completions");
    assert_eq!(
        requests[0].headers["authorization"],
        "Bearer gsk-test-groq-key"
    );
    assert_eq!(requests[0].json()["model"], "openai/gpt-oss-20b");
    // Ollama's OpenAI-compatible API lives under /v1 of the base LiteLLM's
    // docs give; it needs no key.
    assert_eq!(requests[1].uri.path(), "/v1/chat/completions");
    assert!(requests[1].headers.get("authorization").is_none());
    assert_eq!(requests[1].json()["model"], "llama3");
    gateway.shutdown().await;
}

#[tokio::test]
async fn wildcard_groups_forward_the_client_model_and_aliases_resolve() {
    let upstream = Upstream::start().await;
    let url = upstream.url();
    let yaml = format!(
        "model_list:
  - model_name: \"*\"
    litellm_params:
      model: openai/*
      api_base: {url}/v1
      api_key: os.environ/OPENAI_KEY
  - model_name: groq/*
    litellm_params:
      model: groq/*
      api_base: {url}/groq/v1
      api_key: os.environ/OPENAI_KEY
  - model_name: fast
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {url}/v1
      api_key: os.environ/OPENAI_KEY
router_settings:
  model_group_alias: {{ quick: fast }}
"
    );
    let gateway = TestGateway::start(&yaml, &[("OPENAI_KEY", "sk-test")]).await;
    let client = client();
    for model in ["gpt-4.1-nano", "groq/llama-3.3-70b-versatile", "quick"] {
        upstream.push(answer_with_usage(1, 1));
        let answer = ask(&client, &gateway, model).await;
        assert_eq!(answer.status, 200, "{model}: {}", answer.text());
    }
    let requests = upstream.requests();
    let sent: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            (
                r.uri.path().to_owned(),
                r.json()["model"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("/v1/chat/completions".into(), "gpt-4.1-nano".into()),
            (
                "/groq/v1/chat/completions".into(),
                "llama-3.3-70b-versatile".into()
            ),
            ("/v1/chat/completions".into(), "gpt-4o-mini".into()),
        ]
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn disabled_deployments_are_reported_and_the_rest_serve() {
    let yaml = "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
  - model_name: claude
    litellm_params:
      model: mock/claude-stand-in
      mock_response: from the mock
  - model_name: mistral
    litellm_params:
      model: mistral/mistral-small-latest
";
    // No ANTHROPIC_API_KEY, no MISTRAL_API_KEY.
    let gateway = TestGateway::start(yaml, &[]).await;
    let client = client();
    let answer = ask(&client, &gateway, "claude").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("from the mock"), "{}", answer.text());
    // A group with no usable deployment answers unavailable, naming why.
    let answer = ask(&client, &gateway, "mistral").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "upstream_unavailable");
    assert!(
        answer.text().contains("MISTRAL_API_KEY"),
        "{}",
        answer.text()
    );
    let health = call(&client, "GET", &gateway.url("/health/providers"), "", &[]).await;
    let providers = health.json()["providers"].clone();
    let disabled: Vec<(String, String)> = providers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["disabled"].is_null())
        .map(|p| {
            (
                p["provider"].as_str().unwrap().to_owned(),
                p["disabled"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(disabled.len(), 2, "{providers}");
    assert_eq!(disabled[0].0, "anthropic");
    assert!(disabled[0].1.contains("ANTHROPIC_API_KEY"), "{disabled:?}");
    assert_eq!(disabled[1].0, "mistral");
    assert!(disabled[1].1.contains("MISTRAL_API_KEY"), "{disabled:?}");
    assert_eq!(providers[1]["disabled"], json!(null));
    gateway.shutdown().await;
}
