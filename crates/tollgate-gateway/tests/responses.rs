//! `POST /v1/responses` passed through to the deployments that serve
//! OpenAI's Responses API themselves (`openai/`, `azure/`), through the
//! whole stack on a loopback socket: the client's request as written, the
//! answer byte for byte (JSON, or the typed events), its exact cost from
//! the Responses usage, a stream cut mid-answer ending with `error` and
//! `response.failed` of the same response, a 503 falling back to a
//! deployment served through the chat bridge, `previous_response_id`. The
//! upstreams are the testkit's fakes, in the shapes of OpenAI's Responses
//! API reference (`tollgate_testkit::responses`).

mod common;

use std::time::Duration;

use common::{TestGateway, call, client, named_events as events, read_to_end, read_until, send};
use serde_json::{Value, json};
use tollgate_testkit::{Gate, Reply, Upstream, openai, responses};

const MASTER_KEY: &str = "sk-tollgate-responses-test-master-key";
const UPSTREAM_KEY: &str = "sk-upstream-responses-key-0123456789";

/// `gpt` (OpenAI, falling back to `compat`, an OpenAI-compatible server
/// served through the chat bridge) and `azure-gpt`, with LiteLLM's prices.
fn config(openai: &Upstream, compat: &Upstream, azure: &Upstream, ledger: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4.1
      api_base: {openai}/v1
      api_key: os.environ/KEY
      input_cost_per_token: 0.000002
      output_cost_per_token: 0.000008
      cache_read_input_token_cost: 0.0000005
    model_info:
      id: gpt-1
  - model_name: compat
    litellm_params:
      model: custom_openai/compat-model
      api_base: {compat}/v1
      api_key: os.environ/KEY
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000005
  - model_name: azure-gpt
    litellm_params:
      model: azure/gpt-4o-prod
      api_base: {azure}
      api_key: os.environ/KEY
      api_version: 2025-04-01-preview
      input_cost_per_token: 0.000003
      output_cost_per_token: 0.00001
router_settings:
  num_retries: 0
  fallbacks:
    - gpt: [\"compat\"]
general_settings:
  master_key: os.environ/MASTER
tollgate:
  ledger_path: {ledger}
",
        openai = openai.url(),
        compat = compat.url(),
        azure = azure.url(),
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    openai: Upstream,
    compat: Upstream,
    azure: Upstream,
    gateway: TestGateway,
    client: common::TestClient,
}

async fn setup_with_grace(grace: Duration) -> Setup {
    let (openai, compat, azure) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite3");
    let yaml = config(&openai, &compat, &azure, &ledger.display().to_string());
    let env = [("KEY", UPSTREAM_KEY), ("MASTER", MASTER_KEY)];
    let gateway = TestGateway::start_with_grace(&yaml, &env, grace).await;
    Setup {
        _dir: dir,
        openai,
        compat,
        azure,
        gateway,
        client: client(),
    }
}

async fn setup() -> Setup {
    setup_with_grace(Duration::from_secs(5)).await
}

fn bearer() -> String {
    format!("Bearer {MASTER_KEY}")
}

impl Setup {
    async fn responses(&self, body: &Value) -> common::Answer {
        let bearer = bearer();
        let headers = [
            ("content-type", "application/json"),
            ("authorization", bearer.as_str()),
        ];
        call(
            &self.client,
            "POST",
            &self.gateway.url("/v1/responses"),
            body.to_string(),
            &headers,
        )
        .await
    }

    /// The ledger's rows for `model` (flushed first).
    async fn ledger(&self, model: &str) -> Vec<Value> {
        self.gateway.gateway.flush_spend().await;
        let bearer = bearer();
        let logs = call(
            &self.client,
            "GET",
            &self
                .gateway
                .url(&format!("/spend/logs?model={model}&limit=100")),
            "",
            &[("authorization", bearer.as_str())],
        )
        .await
        .json();
        logs["data"].as_array().unwrap().clone()
    }
}

/// The stream's wire bytes, as OpenAI sends them.
fn wire(events: &[(String, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| responses::event(name, data))
        .collect()
}

/// 1200 prompt tokens (1024 of them cached), 300 output tokens (128 of them
/// reasoning): at `gpt`'s prices, 176 × 0.000002 + 1024 × 0.0000005 +
/// 300 × 0.000008 = 0.000352 + 0.000512 + 0.0024 = 0.003264, exactly.
fn usage() -> Value {
    responses::usage(1200, 1024, 300, 128)
}
const COST: &str = "0.003264";

fn request(stream: bool) -> Value {
    json!({"model": "gpt", "input": "Say hello", "instructions": "Be brief.",
        "reasoning": {"effort": "low"}, "store": false, "stream": stream,
        "include": ["reasoning.encrypted_content"]})
}

#[tokio::test]
async fn an_openai_answer_passes_through_byte_for_byte_at_its_exact_cost() {
    let s = setup().await;
    let answer_body = responses::completed("Hello!", usage());
    s.openai.push(Reply::json(200, answer_body.clone()));
    let answer = s.responses(&request(false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body, answer_body.to_string(), "untouched");
    assert_eq!(answer.headers["x-tollgate-response-cost"], COST);
    assert_eq!(answer.headers["x-tollgate-model-group"], "gpt");
    // The client's request, as written but for the deployment's model, at
    // OpenAI's `/v1/responses`, with the deployment's key.
    let sent = &s.openai.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/responses");
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    let mut expected = request(false);
    expected["model"] = json!("gpt-4.1");
    assert_eq!(sent.json(), expected);
    // The ledger's row: the same usage and cost.
    let rows = s.ledger("gpt").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["spend"], COST, "{}", rows[0]);
    assert_eq!(rows[0]["prompt_tokens"], 1200, "{}", rows[0]);
    assert_eq!(rows[0]["completion_tokens"], 300, "{}", rows[0]);
}

#[tokio::test]
async fn an_openai_stream_passes_through_byte_for_byte_and_its_completed_event_is_billed() {
    let s = setup().await;
    let events = responses::events(&["Hel", "lo", "!"], usage());
    s.openai.push(responses::stream(&events));
    let answer = s.responses(&request(true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    // Every event as OpenAI sent it, none added: no `[DONE]`, no error.
    assert_eq!(answer.text(), wire(&events));
    let sent = &s.openai.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/responses");
    assert_eq!(sent.json()["stream"], true);
    assert!(
        sent.json().get("stream_options").is_none(),
        "the Responses API reports usage unasked"
    );
    let rows = s.ledger("gpt").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "success", "{}", rows[0]);
    assert_eq!(rows[0]["spend"], COST, "{}", rows[0]);
}

#[tokio::test]
async fn an_azure_deployment_gets_the_request_at_its_responses_api_and_passes_its_answer() {
    let s = setup().await;
    let answer_body = responses::completed("Bonjour", responses::usage(10, 0, 20, 0));
    s.azure.push(Reply::json(200, answer_body.clone()));
    let mut body = request(false);
    body["model"] = json!("azure-gpt");
    let answer = s.responses(&body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body, answer_body.to_string());
    // 10 × 0.000003 + 20 × 0.00001 = 0.00023.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.00023");
    let sent = &s.azure.requests()[0];
    assert_eq!(
        sent.uri.to_string(),
        "/openai/responses?api-version=2025-04-01-preview"
    );
    assert_eq!(sent.headers["api-key"], UPSTREAM_KEY);
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.json()["model"], "gpt-4o-prod");
    assert_eq!(
        sent.json()["include"],
        json!(["reasoning.encrypted_content"])
    );
}

#[tokio::test]
async fn a_passed_through_stream_cut_mid_answer_ends_failed_as_the_same_response() {
    let s = setup().await;
    let events = responses::events(&["Hel", "lo", "!"], usage());
    // Up to the first delta, then the connection breaks; the fallback
    // cannot continue a Responses stream.
    s.openai.push(responses::stream(&events[..5]).cut());
    let answer = s.responses(&request(true)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let text = answer.text();
    assert!(text.starts_with(&wire(&events[..5])), "{text}");
    let got = self::events(&answer.body);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[5..],
        ["error", "response.failed"],
        "never a clean end: {text}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "response.created").count(),
        1
    );
    let (error, failed) = (&got[5].1, &got[6].1);
    assert_eq!(error["type"], "error");
    assert_eq!(error["sequence_number"], 5);
    assert!(error["message"].is_string());
    assert_eq!(failed["sequence_number"], 6);
    assert_eq!(failed["response"]["id"], responses::ID);
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["model"], responses::MODEL);
    assert!(failed["response"]["error"]["code"].is_string());
    assert!(s.compat.requests().is_empty(), "nothing to continue from");
    assert!(!text.contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn a_503_openai_primary_falls_back_to_a_bridged_deployment_which_gets_chat() {
    let s = setup().await;
    s.openai.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    s.compat.push(Reply::json(
        200,
        openai::chat_completion("Hello from compat"),
    ));
    let answer = s.responses(&request(false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.headers["x-tollgate-model-group"], "compat");
    assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
    // Translated back into a response.
    let response = answer.json();
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["output"][0]["content"][0]["text"],
        "Hello from compat"
    );
    // The testkit's usage (10 in, 20 out) at compat's prices: 0.00011.
    assert_eq!(answer.headers["x-tollgate-response-cost"], "0.00011");
    assert_eq!(s.openai.requests()[0].uri.path(), "/v1/responses");
    let sent = &s.compat.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/chat/completions");
    assert_eq!(
        sent.json()["messages"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Say hello"}])
    );

    // A stream: the bridge's typed events, from chat chunks.
    s.compat.push(
        Reply::sse()
            .data_each(openai::chunks(&["Hel", "lo"]))
            .data(openai::usage_chunk(7, 3))
            .done(),
    );
    let answer = s.responses(&request(true)).await;
    let got = events(&answer.body);
    assert_eq!(got[0].0, "response.created", "{}", answer.text());
    let (last, data) = got.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(data["response"]["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(s.compat.requests()[1].uri.path(), "/v1/chat/completions");
}

#[tokio::test]
async fn previous_response_id_goes_to_openai_and_is_refused_by_a_bridged_group() {
    let s = setup().await;
    s.openai
        .push(Reply::json(200, responses::completed("Again", usage())));
    let mut body = request(false);
    body["previous_response_id"] = json!("resp_earlier");
    let answer = s.responses(&body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        s.openai.requests()[0].json()["previous_response_id"],
        "resp_earlier"
    );

    body["model"] = json!("compat");
    let answer = s.responses(&body).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["param"], "previous_response_id");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("previous_response_id")
    );
    assert!(s.compat.requests().is_empty());
}

/// The end of the shutdown's grace period cuts a stream: the gateway's
/// own cut ends it with `error` and `response.failed` of the response the
/// client has — never a second `response.created` — passed through or
/// bridged alike.
#[tokio::test]
async fn a_stream_the_gateway_cuts_ends_with_error_and_response_failed_of_the_same_response() {
    let mut s = setup_with_grace(Duration::from_millis(300)).await;
    let gate = Gate::new();
    let native = responses::events(&["before-the-cut", "never-sent"], usage());
    s.openai.push(
        responses::stream(&native[..5])
            .wait(&gate)
            .raw(wire(&native[5..])),
    );
    let chunks = openai::chunks(&["bridged-before-the-cut", "never-sent"]);
    s.compat.push(
        Reply::sse()
            .data(&chunks[0])
            .data(&chunks[1])
            .wait(&gate)
            .data(&chunks[2])
            .done(),
    );
    let bearer = bearer();
    let headers = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    let mut streams = Vec::new();
    for (model, needle) in [
        ("gpt", "before-the-cut"),
        ("compat", "bridged-before-the-cut"),
    ] {
        let mut body = request(true);
        body["model"] = json!(model);
        let response = send(
            &s.client,
            "POST",
            &s.gateway.url("/v1/responses"),
            body.to_string(),
            &headers,
        )
        .await;
        assert_eq!(response.status(), 200);
        let mut stream = response.into_body();
        let mut seen = Vec::new();
        read_until(&mut stream, &mut seen, needle).await;
        streams.push((stream, seen));
    }
    s.gateway.begin_shutdown();
    for (mut stream, mut seen) in streams {
        read_to_end(&mut stream, &mut seen).await;
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert!(!text.contains("never-sent"), "{text}");
        let got = events(&seen);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == "response.created").count(),
            1,
            "{text}"
        );
        assert_eq!(
            names[names.len() - 2..],
            ["error", "response.failed"],
            "{text}"
        );
        let created = &got[0].1["response"]["id"];
        let (error, failed) = (&got[got.len() - 2].1, &got[got.len() - 1].1);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("shutting down"), "{text}");
        assert_eq!(&failed["response"]["id"], created, "{text}");
        assert_eq!(failed["response"]["status"], "failed");
        // Numbered on from the last event sent.
        let numbers: Vec<u64> = got
            .iter()
            .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{numbers:?}: {text}"
        );
    }
    gate.open();
    s.gateway.finished().await;
}

/// One group mixing an `openai/` deployment (first, by `order`) and one
/// served through the chat bridge: the 503 of the first is retried on the
/// second, which gets the request translated into chat, and the client a
/// response translated back.
#[tokio::test]
async fn a_mixed_group_retries_a_503_openai_deployment_on_a_bridged_one() {
    let (openai_up, compat_up) = (Upstream::start().await, Upstream::start().await);
    openai_up.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    compat_up.push(Reply::json(200, openai::chat_completion("Bridged")));
    let yaml = format!(
        "model_list:
  - model_name: mixed
    litellm_params:
      model: openai/gpt-4.1
      api_base: {}/v1
      api_key: os.environ/KEY
      order: 1
  - model_name: mixed
    litellm_params:
      model: custom_openai/compat-model
      api_base: {}/v1
      api_key: os.environ/KEY
      order: 2
router_settings:
  num_retries: 1
  retry_after: 0
",
        openai_up.url(),
        compat_up.url(),
    );
    let gateway = TestGateway::start(&yaml, &[("KEY", UPSTREAM_KEY)]).await;
    let mut body = request(false);
    body["model"] = json!("mixed");
    let answer = call(
        &client(),
        "POST",
        &gateway.url("/v1/responses"),
        body.to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.headers["x-tollgate-attempted-retries"], "1");
    let response = answer.json();
    assert_eq!(response["object"], "response");
    assert_eq!(response["output"][0]["content"][0]["text"], "Bridged");
    let tried = &openai_up.requests()[0];
    assert_eq!(tried.uri.path(), "/v1/responses");
    assert_eq!(tried.json()["model"], "gpt-4.1");
    let sent = &compat_up.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/chat/completions");
    assert_eq!(sent.json()["model"], "compat-model");
    assert!(sent.json()["messages"].is_array());
}
