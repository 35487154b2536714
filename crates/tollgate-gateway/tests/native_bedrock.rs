//! AWS Bedrock through the gateway: `bedrock/` deployments of a LiteLLM
//! config, served by `tollgate-providers`' Converse translation over the
//! gateway's client, against the testkit's Bedrock fake on loopback — which
//! recomputes every request's SigV4 signature and refuses (403, as AWS
//! does) one that does not match, so every test here also checks signing.

mod common;

use std::process::Command;

use common::binary::GatewayProcess;
use common::{TestClient, TestGateway, call, client, sse_data, streamed_text};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, bedrock, openai};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIBedrockTestToken";

/// A config with one Bedrock deployment named `bedrock-claude` at the fake,
/// its credentials from the environment as LiteLLM's docs write them, and
/// `extra` appended.
fn config(fake: &Upstream, extra: &str) -> String {
    format!(
        "model_list:
  - model_name: bedrock-claude
    litellm_params:
      model: bedrock/{MODEL}
      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID
      aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY
      aws_session_token: os.environ/AWS_SESSION_TOKEN
      aws_region_name: {region}
      aws_bedrock_runtime_endpoint: {url}
{extra}",
        region = bedrock::REGION,
        url = fake.url(),
    )
}

const ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", bedrock::ACCESS_KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", bedrock::SECRET_ACCESS_KEY),
    ("AWS_SESSION_TOKEN", SESSION_TOKEN),
];

async fn ask(client: &TestClient, gateway: &TestGateway, body: &Value) -> common::Answer {
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        body.to_string(),
        &[("content-type", "application/json")],
    )
    .await
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn tool_request(stream: bool) -> Value {
    json!({
        "model": "bedrock-claude",
        "stream": stream,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
    })
}

#[tokio::test]
async fn a_bedrock_deployment_answers_signed_requests_in_openai_shape_with_its_exact_cost() {
    let fake = bedrock::upstream().await;
    let gateway = TestGateway::start(&config(&fake, ""), &ENV).await;
    let client = client();

    fake.push(Reply::json(200, bedrock::converse("Hello there")));
    let answer = ask(&client, &gateway, &chat("bedrock-claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // Bedrock's numbers: 30 uncached, 400 read from and 100 written to the
    // cache, 12 out.
    assert_eq!(body["usage"]["prompt_tokens"], 530);
    assert_eq!(body["usage"]["completion_tokens"], 12);
    assert_eq!(body["usage"]["total_tokens"], 542);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 400);
    // LiteLLM's prices for anthropic.claude-3-5-sonnet-20240620-v1:0: 3e-06
    // in, 3e-07 a cache read, 3.75e-06 a cache write, 1.5e-05 out: 30 ×
    // 3e-06 + 400 × 3e-07 + 100 × 3.75e-06 + 12 × 1.5e-05 = 0.000765.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.000765");

    let request = &fake.requests()[0];
    assert_eq!(
        request.uri.path(),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(request.headers["x-amz-security-token"], SESSION_TOKEN);
    let authorization = request.headers["authorization"].to_str().unwrap();
    assert!(authorization.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={}/",
        bedrock::ACCESS_KEY_ID
    )));
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    let sent = request.json();
    assert_eq!(
        sent["messages"][0]["content"],
        json!([{"text": "Say hello"}])
    );
    assert!(sent.get("model").is_none(), "the model is in the URL");

    fake.push(bedrock::stream_reply(bedrock::text_stream(&[
        "Hel", "lo", " there",
    ])));
    let mut body = chat("bedrock-claude", true);
    body["stream_options"] = json!({"include_usage": true});
    let answer = ask(&client, &gateway, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(streamed_text(&events), "Hello there");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 12);
    assert_eq!(usage["usage"]["prompt_tokens"], 530);
    assert_eq!(
        fake.requests()[1].uri.path(),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn tool_calls_round_trip_as_json_and_as_a_stream() {
    let fake = bedrock::upstream().await;
    let gateway = TestGateway::start(&config(&fake, ""), &ENV).await;
    let client = client();

    fake.push(Reply::json(
        200,
        bedrock::tool_use_converse(
            "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
            "weather",
            json!({"city": "Paris"}),
        ),
    ));
    let answer = ask(&client, &gateway, &tool_request(false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let sent = fake.requests()[0].json();
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "weather"
    );

    // The result goes back as a toolResult in the next turn.
    fake.push(Reply::json(200, bedrock::converse("18°C and sunny.")));
    let mut next = tool_request(false);
    next["messages"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        body["choices"][0]["message"].clone(),
        {"role": "tool", "tool_call_id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "content": "18C, sunny"},
    ]);
    let answer = ask(&client, &gateway, &next).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let sent = fake.requests()[1].json();
    assert_eq!(
        sent["messages"][1]["content"][1]["toolUse"]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"],
        json!({"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "content": [{"text": "18C, sunny"}]})
    );

    fake.push(bedrock::stream_reply(bedrock::tool_stream(
        "tooluse_1",
        "weather",
        &["{\"city\"", ": \"Paris\"}"],
    )));
    let answer = ask(&client, &gateway, &tool_request(true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["id"], "tooluse_1");
    assert_eq!(calls[0]["function"]["name"], "weather");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"city": "Paris"}"#);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_throttled_bedrock_is_retried_then_answered_by_a_fallback_on_another_provider() {
    let fake = bedrock::upstream().await;
    let openai_upstream = Upstream::start().await;
    let extra = format!(
        "  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {}/v1
      api_key: sk-openai-fallback-test
router_settings:
  num_retries: 1
  retry_after: 0
  fallbacks: [{{bedrock-claude: [gpt]}}]
",
        openai_upstream.url()
    );
    let gateway = TestGateway::start(&config(&fake, &extra), &ENV).await;
    fake.set_default(bedrock::error(
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    ));
    openai_upstream.push(Reply::json(
        200,
        openai::chat_completion("from the fallback"),
    ));

    let answer = ask(&client(), &gateway, &chat("bedrock-claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the fallback"
    );
    // Throttling is retryable: asked again before the fallback answered.
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(openai_upstream.requests().len(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_too_long_input_goes_to_the_context_window_fallback() {
    let fake = bedrock::upstream().await;
    let big = Upstream::start().await;
    let other = Upstream::start().await;
    let extra = format!(
        "  - model_name: big
    litellm_params:
      model: openai/gpt-4.1
      api_base: {big}/v1
      api_key: sk-big-test
  - model_name: other
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {other}/v1
      api_key: sk-other-test
router_settings:
  num_retries: 2
  retry_after: 0
  fallbacks: [{{bedrock-claude: [other]}}]
  context_window_fallbacks: [{{bedrock-claude: [big]}}]
",
        big = big.url(),
        other = other.url(),
    );
    let gateway = TestGateway::start(&config(&fake, &extra), &ENV).await;
    fake.push(bedrock::error(
        400,
        "ValidationException",
        "Input is too long for requested model.",
    ));
    big.push(Reply::json(
        200,
        openai::chat_completion("from the big model"),
    ));

    let answer = ask(&client(), &gateway, &chat("bedrock-claude", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from the big model"
    );
    // Not retried (the same input is as long the second time), not sent to
    // the regular fallbacks.
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(big.requests().len(), 1);
    assert_eq!(other.requests().len(), 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_guardrail_refusal_reaches_the_client_with_its_reason() {
    let fake = bedrock::upstream().await;
    let openai_upstream = Upstream::start().await;
    let extra = format!(
        "  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {}/v1
      api_key: sk-openai-fallback-test
router_settings:
  fallbacks: [{{bedrock-claude: [gpt]}}]
",
        openai_upstream.url()
    );
    let gateway = TestGateway::start(&config(&fake, &extra), &ENV).await;
    let client = client();
    fake.push(Reply::json(
        200,
        bedrock::guardrail_converse(
            "Sorry, this request is blocked by the travel-policy guardrail.",
        ),
    ));
    let answer = ask(&client, &gateway, &chat("bedrock-claude", false)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "content_filter", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("guardrail_intervened"), "{message}");
    assert!(message.contains("travel-policy guardrail"), "{message}");

    // In a stream, before any content: the same refusal.
    let mut refused = vec![bedrock::start()];
    refused.extend(bedrock::stop("guardrail_intervened"));
    fake.push(bedrock::stream_reply(refused));
    let answer = ask(&client, &gateway, &chat("bedrock-claude", true)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "content_filter");
    // No fallback hid either refusal (DECISIONS 1).
    assert_eq!(openai_upstream.requests().len(), 0);
    gateway.shutdown().await;
}

/// Everything secret the deployment holds, and what a signature shows.
fn leaked(text: &str) -> Option<&'static str> {
    [
        bedrock::SECRET_ACCESS_KEY,
        bedrock::ACCESS_KEY_ID,
        SESSION_TOKEN,
        "Signature=",
        "AWS4-HMAC-SHA256",
    ]
    .into_iter()
    .find(|secret| text.contains(secret))
}

#[tokio::test]
async fn no_key_token_or_signature_reaches_the_log_or_a_response() {
    let fake = bedrock::upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&fake, "router_settings:\n  num_retries: 0\n")).unwrap();
    let mut env = ENV.to_vec();
    env.push(("RUST_LOG", "debug"));
    let gateway = GatewayProcess::start(&path, dir.path(), &env);
    let client = client();
    let post = |body: Value| {
        let url = gateway.url("/v1/chat/completions");
        let client = &client;
        async move {
            call(
                client,
                "POST",
                &url,
                body.to_string(),
                &[("content-type", "application/json")],
            )
            .await
        }
    };

    fake.push(Reply::json(200, bedrock::converse("fine")));
    let answers = vec![
        post(chat("bedrock-claude", false)).await,
        // AWS echoing what it was sent in an error message.
        {
            fake.push(bedrock::error(
                403,
                "UnrecognizedClientException",
                &format!(
                    "The security token included in the request is invalid: {SESSION_TOKEN} {}",
                    bedrock::SECRET_ACCESS_KEY
                ),
            ));
            post(chat("bedrock-claude", false)).await
        },
        {
            fake.push(bedrock::error(
                400,
                "ValidationException",
                &format!(
                    "Bad key {} and secret {}",
                    bedrock::ACCESS_KEY_ID,
                    bedrock::SECRET_ACCESS_KEY
                ),
            ));
            post(chat("bedrock-claude", false)).await
        },
        {
            fake.push(bedrock::stream_reply([
                bedrock::start(),
                bedrock::exception(
                    "throttlingException",
                    &format!("slow down {}", bedrock::SECRET_ACCESS_KEY),
                ),
            ]));
            post(chat("bedrock-claude", true)).await
        },
        call(&client, "GET", &gateway.url("/health/providers"), "", &[]).await,
    ];
    assert_eq!(answers[0].status, 200, "{}", answers[0].text());
    // The gateway's own credentials were refused: not the client's fault.
    assert_eq!(answers[1].status, 502, "{}", answers[1].text());
    assert_eq!(answers[1].openai_error()["code"], "upstream_auth_failed");
    assert_eq!(answers[2].status, 400, "{}", answers[2].text());
    assert_eq!(answers[3].status, 429, "{}", answers[3].text());
    for answer in &answers {
        assert_eq!(leaked(&answer.text()), None, "{}", answer.text());
        for (name, value) in &answer.headers {
            let value = value.to_str().unwrap_or_default();
            assert_eq!(leaked(value), None, "{name}: {value}");
        }
    }
    assert_eq!(
        fake.requests().len(),
        4,
        "every request was signed and answered"
    );
    let log = gateway.log();
    assert!(
        log.contains("bedrock-claude"),
        "the log says something: {log}"
    );
    assert_eq!(leaked(&log), None, "{log}");
}

/// `tollgate check-config` on `fixture` with `env` as the only environment:
/// whether it passed, and what it printed.
fn check_config(fixture: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litellm-configs")
        .join(fixture);
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.arg("check-config").arg(path).args(args).env_clear();
    if let Some(profile) = std::env::var_os("LLVM_PROFILE_FILE") {
        command.env("LLVM_PROFILE_FILE", profile);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn check_config_accepts_litellm_bedrock_configs_and_names_missing_credentials() {
    let env = [
        ("CUSTOM_AWS_ACCESS_KEY_ID", "AKIACUSTOMEXAMPLE01"),
        ("CUSTOM_AWS_SECRET_ACCESS_KEY", "custom/secret/EXAMPLEKEY"),
        ("CUSTOM_AWS_REGION_NAME", "eu-central-1"),
        ("AWS_ACCESS_KEY_ID", bedrock::ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", bedrock::SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let (ok, text) = check_config("bedrock.yaml", &[], &env);
    assert!(ok, "{text}");
    assert!(text.contains("3 deployments, 0 warnings"), "{text}");
    // `bedrock/converse/` is LiteLLM's route marker, not part of the model.
    assert!(
        text.contains("bedrock anthropic.claude-3-5-sonnet-20240620-v1:0"),
        "{text}"
    );
    for group in [
        "bedrock-claude-v1",
        "bedrock-claude-sonnet",
        "bedrock-llama",
    ] {
        assert!(text.contains(group), "{group}: {text}");
    }
    assert_eq!(leaked(&text), None, "{text}");
    assert!(!text.contains("custom/secret"), "{text}");

    // Without the AWS variables, the deployment relying on them starts
    // disabled, naming what is missing; `--strict` makes that an error.
    let custom: Vec<(&str, &str)> = env[..3].to_vec();
    let (ok, text) = check_config("bedrock.yaml", &[], &custom);
    assert!(ok, "{text}");
    assert!(text.contains("aws_region_name"), "{text}");
    assert!(text.contains("aws_access_key_id"), "{text}");
    let (ok, text) = check_config("bedrock.yaml", &["--strict"], &custom);
    assert!(!ok, "{text}");
}
