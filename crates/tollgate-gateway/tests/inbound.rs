//! Anthropic's Messages API (`/v1/messages`) and OpenAI's Responses API
//! (`/v1/responses`) through the gateway on a loopback socket, over the
//! same chat stack as `/v1/chat/completions`: fallback, a stream cut mid
//! answer, exact cost, bad input in each route's error shape. The
//! upstreams are the testkit's OpenAI-compatible fakes.

mod common;

use common::{TestGateway, call, client, named_events as events};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-tollgate-inbound-test-master-key";

/// `primary` (falling back to `backup`) and `solo`, OpenAI-compatible, with
/// LiteLLM's prices per token. Not `openai/`: OpenAI's own API gets
/// `/v1/responses` as written (`tests/responses.rs`), these the chat
/// bridge.
fn config(primary: &Upstream, backup: &Upstream, ledger: &std::path::Path) -> String {
    format!(
        "model_list:
  - model_name: primary
    litellm_params:
      model: custom_openai/primary-model
      api_base: {primary}/v1
      api_key: os.environ/KEY
      input_cost_per_token: 0.000002
      output_cost_per_token: 0.00001
  - model_name: backup
    litellm_params:
      model: custom_openai/backup-model
      api_base: {backup}/v1
      api_key: os.environ/KEY
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000005
  - model_name: embed
    litellm_params:
      model: openai/embed-model
      api_base: {primary}/v1
      api_key: os.environ/KEY
    model_info:
      mode: embedding
router_settings:
  num_retries: 0
  fallbacks:
    - primary: [\"backup\"]
general_settings:
  master_key: os.environ/MASTER
  max_request_size_mb: 0.002
tollgate:
  ledger_path: {ledger}
",
        primary = primary.url(),
        backup = backup.url(),
        ledger = ledger.display(),
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    primary: Upstream,
    backup: Upstream,
    gateway: TestGateway,
    client: common::TestClient,
}

async fn setup() -> Setup {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(&primary, &backup, &dir.path().join("ledger.sqlite3"));
    let gateway = TestGateway::start(
        &yaml,
        &[
            ("KEY", "sk-upstream-key-0123456789"),
            ("MASTER", MASTER_KEY),
        ],
    )
    .await;
    Setup {
        _dir: dir,
        primary,
        backup,
        gateway,
        client: client(),
    }
}

impl Setup {
    async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> common::Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        call(
            &self.client,
            "POST",
            &self.gateway.url(path),
            body.to_string(),
            &all,
        )
        .await
    }

    /// With the master key as Claude Code sends it: `x-api-key`.
    async fn messages(&self, body: Value) -> common::Answer {
        self.post("/v1/messages", body, &[("x-api-key", MASTER_KEY)])
            .await
    }

    async fn responses(&self, body: Value) -> common::Answer {
        let bearer = format!("Bearer {MASTER_KEY}");
        self.post("/v1/responses", body, &[("authorization", &bearer)])
            .await
    }
}

fn anthropic_request(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}]})
}

fn stream_of(parts: &[&str]) -> Reply {
    Reply::sse()
        .data_each(openai::chunks(parts))
        .data(openai::usage_chunk(7, 3))
        .done()
}

fn unavailable() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

#[tokio::test]
async fn messages_from_a_503_primary_are_answered_by_its_fallback_at_the_fallbacks_price() {
    let s = setup().await;
    s.primary.set_default(unavailable());
    s.backup.set_default(Reply::json(
        200,
        openai::chat_completion("Hello from the backup"),
    ));
    let answer = s.messages(anthropic_request("primary", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let message = answer.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Hello from the backup"}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(answer.headers["x-tollgate-model-group"], "backup");
    assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
    // The chat request the backup got: the system prompt first.
    let sent = s.backup.requests()[0].json();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["max_tokens"], 256);
    // The testkit's usage (10 in, 20 out) at the backup's prices:
    // 10 × 0.000001 + 20 × 0.000005 = 0.00011, exactly.
    assert_eq!(message["usage"]["input_tokens"], openai::PROMPT_TOKENS);
    assert_eq!(message["usage"]["output_tokens"], openai::COMPLETION_TOKENS);
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.00011");
}

#[tokio::test]
async fn a_messages_stream_has_anthropics_events_and_its_usage() {
    let s = setup().await;
    s.primary.set_default(stream_of(&["Hel", "lo"]));
    let answer = s.messages(anthropic_request("primary", true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let events = events(&answer.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(events[5].1["usage"]["input_tokens"], 7);
    assert_eq!(events[5].1["usage"]["output_tokens"], 3);
    // The upstream was asked for the usage chunk.
    let sent = s.primary.requests()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn a_messages_stream_cut_mid_answer_ends_with_anthropics_error_event() {
    let s = setup().await;
    // Both groups break after their first words: nothing can continue.
    for upstream in [&s.primary, &s.backup] {
        let chunks = openai::chunks(&["Hel", "lo"]);
        upstream.set_default(Reply::sse().data(&chunks[0]).data(&chunks[1]).cut());
    }
    let answer = s.messages(anthropic_request("primary", true)).await;
    assert_eq!(answer.status, 200);
    let events = events(&answer.body);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{}", answer.text());
    assert_eq!(data["type"], "error");
    assert!(data["error"]["type"].is_string());
    assert!(
        !events.iter().any(|(n, _)| n == "message_stop"),
        "never a clean end"
    );
    assert!(!answer.text().contains("sk-upstream-key"));
}

#[tokio::test]
async fn a_messages_stream_cut_mid_answer_is_continued_by_the_fallback() {
    let s = setup().await;
    let chunks = openai::chunks(&["Hel", "lo"]);
    s.primary
        .set_default(Reply::sse().data(&chunks[0]).data(&chunks[1]).cut());
    s.backup.set_default(stream_of(&[" there"]));
    let answer = s.messages(anthropic_request("primary", true)).await;
    let events = events(&answer.body);
    assert_eq!(
        events.last().unwrap().0,
        "message_stop",
        "{}",
        answer.text()
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert!(text.starts_with("Hel"), "{text}");
    assert!(text.ends_with("there"), "{text}");
}

#[tokio::test]
async fn bad_input_on_messages_gets_anthropics_error_shape() {
    let s = setup().await;
    let cases = [
        (
            json!({"model": "primary", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
            "max_tokens",
        ),
        (
            json!({"model": "nope", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
            "nope",
        ),
        (json!([1]), 400, "invalid_request_error", "JSON object"),
        // An embedding group's mode does not take chat, in any shape.
        (
            anthropic_request("embed", false),
            400,
            "invalid_request_error",
            "is an embedding model",
        ),
    ];
    for (body, status, kind, says) in cases {
        let answer = s.messages(body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text());
        let error = answer.json();
        assert_eq!(error["type"], "error", "{}", answer.text());
        assert_eq!(error["error"]["type"], kind);
        assert!(
            error["error"]["message"].as_str().unwrap().contains(says),
            "{}",
            answer.text()
        );
    }
    let answer = call(
        &s.client,
        "POST",
        &s.gateway.url("/v1/messages"),
        "{not json",
        &[("x-api-key", MASTER_KEY)],
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    // Over the size limit (2 KiB here): 413, Anthropic's request_too_large.
    let big = json!({"model": "primary", "max_tokens": 1,
        "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let answer = s.messages(big).await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.json()["error"]["type"], "request_too_large");
    // No key, and a wrong one: Anthropic's authentication error.
    for headers in [vec![], vec![("x-api-key", "sk-wrong-key-0123456789")]] {
        let answer = s
            .post(
                "/v1/messages",
                anthropic_request("primary", false),
                &headers,
            )
            .await;
        assert_eq!(answer.status, 401, "{}", answer.text());
        assert_eq!(answer.json()["error"]["type"], "authentication_error");
        assert!(!answer.text().contains("sk-wrong-key"));
    }
    // Token counting: a clear error, after the model's checks.
    let count = json!({"model": "primary", "messages": [{"role": "user", "content": "x"}]});
    let answer = s
        .post(
            "/v1/messages/count_tokens",
            count,
            &[("x-api-key", MASTER_KEY)],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Token counting needs an Anthropic model")
    );
    let count = json!({"model": "nope", "messages": []});
    let answer = s
        .post(
            "/v1/messages/count_tokens",
            count,
            &[("x-api-key", MASTER_KEY)],
        )
        .await;
    assert_eq!(answer.json()["error"]["type"], "not_found_error");
    assert!(
        s.primary.requests().is_empty(),
        "nothing bad reached an upstream"
    );
    // Still serving.
    s.primary
        .set_default(Reply::json(200, openai::chat_completion("up")));
    assert_eq!(
        s.messages(anthropic_request("primary", false)).await.status,
        200
    );
}

#[tokio::test]
async fn responses_from_a_503_primary_are_answered_by_its_fallback() {
    let s = setup().await;
    s.primary.set_default(unavailable());
    s.backup.set_default(Reply::json(
        200,
        openai::chat_completion("Hello from the backup"),
    ));
    let answer = s
        .responses(json!({"model": "primary", "instructions": "Be brief.", "input": "Say hello"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let response = answer.json();
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["output"][0]["content"][0]["text"],
        "Hello from the backup"
    );
    assert_eq!(answer.headers["x-tollgate-model-group"], "backup");
    assert!(answer.headers.contains_key("x-tollgate-response-cost"));
}

#[tokio::test]
async fn a_responses_stream_has_typed_events_and_a_cut_one_ends_failed() {
    let s = setup().await;
    s.primary.set_default(stream_of(&["Hel", "lo"]));
    let request = json!({"model": "primary", "input": "Say hello", "stream": true});
    let answer = s.responses(request.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let whole = events(&answer.body);
    assert_eq!(whole[0].0, "response.created");
    let (last, data) = whole.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(data["response"]["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(data["response"]["usage"]["input_tokens"], 7);

    for upstream in [&s.primary, &s.backup] {
        let chunks = openai::chunks(&["Hel", "lo"]);
        upstream.set_default(Reply::sse().data(&chunks[0]).data(&chunks[1]).cut());
    }
    let answer = s.responses(request).await;
    let events = events(&answer.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[names.len() - 2..],
        ["error", "response.failed"],
        "{}",
        answer.text()
    );
    assert!(!names.contains(&"response.completed"));
}

#[tokio::test]
async fn bad_input_on_responses_gets_openais_error_shape() {
    let s = setup().await;
    let cases = [
        (
            json!({"model": "primary", "input": "x", "previous_response_id": "resp_1"}),
            400,
            "previous_response_id",
        ),
        (json!({"model": "primary"}), 400, "input"),
        (json!({"model": "nope", "input": "x"}), 404, "nope"),
        (
            json!({"model": "embed", "input": "x"}),
            400,
            "is an embedding model",
        ),
    ];
    for (body, status, says) in cases {
        let answer = s.responses(body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text());
        let error = answer.openai_error();
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{}",
            answer.text()
        );
    }
    assert!(s.primary.requests().is_empty());
}

#[tokio::test]
async fn a_key_limited_to_one_group_reaches_no_other_through_either_route() {
    let s = setup().await;
    s.backup
        .set_default(Reply::json(200, openai::chat_completion("from the backup")));
    let master = format!("Bearer {MASTER_KEY}");
    let generated = s
        .post(
            "/key/generate",
            json!({"key_alias": "only-backup", "models": ["backup"]}),
            &[("authorization", &master)],
        )
        .await;
    assert_eq!(generated.status, 200, "{}", generated.text());
    let key = generated.json()["key"].as_str().unwrap().to_owned();

    let answer = s
        .post(
            "/v1/messages",
            anthropic_request("primary", false),
            &[("x-api-key", &key)],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert_eq!(answer.json()["error"]["type"], "permission_error");
    assert!(answer.text().contains("only-backup") && !answer.text().contains(&key));
    let bearer = format!("Bearer {key}");
    let answer = s
        .post(
            "/v1/responses",
            json!({"model": "primary", "input": "x"}),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "model_not_allowed");
    assert!(s.primary.requests().is_empty());

    // Its own group answers, on both routes, and lands in the ledger under
    // the key's name at the group's price.
    let answer = s
        .post(
            "/v1/messages",
            anthropic_request("backup", false),
            &[("x-api-key", &key)],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = s
        .post(
            "/v1/responses",
            json!({"model": "backup", "input": "x"}),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.00011");
    s.gateway.gateway.flush_spend().await;
    let spend = call(
        &s.client,
        "GET",
        &s.gateway.url("/spend/logs"),
        "",
        &[("authorization", &master)],
    )
    .await;
    let rows = spend.json();
    let rows = rows["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", spend.text()));
    assert_eq!(rows.len(), 2, "{}", spend.text());
    assert!(spend.text().contains("only-backup") && !spend.text().contains(&key));
    assert!(spend.text().contains("0.00011"), "{}", spend.text());

    // Metrics are labelled by route.
    let metrics = call(
        &s.client,
        "GET",
        &s.gateway.url("/metrics"),
        "",
        &[("authorization", &master)],
    )
    .await
    .text();
    assert!(metrics.contains("route=\"messages\""), "{metrics}");
    assert!(metrics.contains("route=\"responses\""), "{metrics}");
}

#[tokio::test]
async fn count_tokens_goes_to_an_anthropic_groups_deployment_as_sent() {
    const ANTHROPIC_KEY: &str = "sk-ant-api03-inbound-count-tokens-0123456789";
    let upstream = Upstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {url}
      api_key: os.environ/ANTHROPIC_API_KEY
general_settings:
  master_key: os.environ/MASTER
",
        url = upstream.url()
    );
    let gateway = TestGateway::start(
        &yaml,
        &[("ANTHROPIC_API_KEY", ANTHROPIC_KEY), ("MASTER", MASTER_KEY)],
    )
    .await;
    let client = client();
    let url = gateway.url("/v1/messages/count_tokens");
    let request = json!({"model": "claude", "system": "Be brief.", "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Hello"}]});
    let headers = [
        ("content-type", "application/json"),
        ("x-api-key", MASTER_KEY),
    ];
    upstream.push(Reply::json(200, json!({"input_tokens": 42})));
    let answer = call(&client, "POST", &url, request.to_string(), &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"input_tokens": 42}));
    let sent = &upstream.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/messages/count_tokens");
    assert_eq!(sent.headers["x-api-key"], ANTHROPIC_KEY);
    assert!(sent.headers.get("authorization").is_none());
    let mut want = request.clone();
    want["model"] = json!("claude-sonnet-4-5-20250929");
    assert_eq!(
        sent.json(),
        want,
        "sent as the client sent it, the model renamed"
    );

    // Anthropic's own error comes back in its shape, the key redacted.
    upstream.push(Reply::json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": format!("bad request for key {ANTHROPIC_KEY}")}}),
    ));
    let answer = call(&client, "POST", &url, request.to_string(), &headers).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    assert!(!answer.text().contains(ANTHROPIC_KEY), "{}", answer.text());
}

#[tokio::test]
async fn messages_to_an_anthropic_group_go_as_written_and_cost_anthropics_usage() {
    const ANTHROPIC_KEY: &str = "sk-ant-api03-inbound-passthrough-0123456789";
    let upstream = Upstream::start().await;
    let yaml = format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5-20250929
      api_base: {url}
      api_key: os.environ/ANTHROPIC_API_KEY
general_settings:
  master_key: os.environ/MASTER
",
        url = upstream.url()
    );
    let gateway = TestGateway::start(
        &yaml,
        &[("ANTHROPIC_API_KEY", ANTHROPIC_KEY), ("MASTER", MASTER_KEY)],
    )
    .await;
    let client = client();
    let url = gateway.url("/v1/messages");
    let headers = [
        ("content-type", "application/json"),
        ("x-api-key", MASTER_KEY),
    ];
    // What chat has no room for: cache_control, top_k (and thinking, which
    // is not sent).
    let request = json!({"model": "claude", "max_tokens": 2048, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}}]}]});
    upstream.push(Reply::json(
        200,
        tollgate_testkit::anthropic::message("Hi there"),
    ));
    let answer = call(&client, "POST", &url, request.to_string(), &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let message = answer.json();
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Hi there"}])
    );
    assert_eq!(message["usage"]["output_tokens"], 15);
    assert_eq!(message["usage"]["cache_read_input_tokens"], 2000);
    // LiteLLM's prices for claude-sonnet-4-5-20250929 on Anthropic's usage:
    // 25 × 3e-06 + 2000 × 3e-07 + 1000 × 3.75e-06 + 15 × 1.5e-05 = 0.00465.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.00465");
    let sent = &upstream.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], ANTHROPIC_KEY);
    let mut want = request.clone();
    want["model"] = json!("claude-sonnet-4-5-20250929");
    // Thinking stays home: its blocks could not come back (DECISIONS 27).
    want.as_object_mut().unwrap().remove("thinking");
    assert_eq!(
        sent.json(),
        want,
        "the client's request, untouched but for the model"
    );

    // Streamed: Anthropic's events, through the stack, as Anthropic's events.
    upstream.push(Reply::sse().raw(tollgate_testkit::anthropic::text_stream(&["Hel", "lo"])));
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let answer = call(&client, "POST", &url, streamed.to_string(), &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = events(&answer.body);
    assert_eq!(
        events.last().unwrap().0,
        "message_stop",
        "{}",
        answer.text()
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    let sent = upstream.requests()[1].json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["top_k"], 5);
    assert_eq!(sent["system"][0]["cache_control"]["type"], "ephemeral");
}
