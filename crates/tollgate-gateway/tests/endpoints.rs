//! The routes beside chat (issue 15 items 1, 2, 5, 6): `/v1/embeddings`,
//! `/v1/completions`, `/v1/models/{id}` and `/model/info`, through the
//! whole gateway — fallback, retry, limits, keys, cost and the ledger, bad
//! input.
//!
//! Real loopback sockets: testkit upstreams, the gateway served by
//! `tollgate_gateway::serve`. The upstream answers are OpenAI's shapes from
//! its API reference ("Embeddings → Create embeddings", "The embedding
//! object"; "Completions → Create completion", "The completion object").

mod common;

use common::{Answer, TestClient, TestGateway, call, client, sse_data};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-master-0123456789abcdef";
const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";

/// `embed` (primary, falls back to `embed-backup`), `text` (legacy
/// completions through `text-completion-openai/`, falls back to
/// `text-backup`) and `chat`, each at its own price.
fn config(primary: &Upstream, backup: &Upstream, ledger: &std::path::Path, extra: &str) -> String {
    format!(
        "model_list:
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {p}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: embed-1
      input_cost_per_token: 0.0000001
  - model_name: embed-backup
    litellm_params:
      model: openai/text-embedding-3-large
      api_base: {b}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: embed-backup-1
      input_cost_per_token: 0.0000003
  - model_name: text
    litellm_params:
      model: text-completion-openai/gpt-3.5-turbo-instruct
      api_base: {p}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: text-1
      input_cost_per_token: 0.0000015
      output_cost_per_token: 0.000002
  - model_name: text-backup
    litellm_params:
      model: openai/backup-instruct
      api_base: {b}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: text-backup-1
      mode: completion
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000001
  - model_name: chat
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {p}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: chat-1
router_settings:
  num_retries: 0
  cooldown_time: 0
  fallbacks:
    - embed: [\"embed-backup\"]
    - text: [\"text-backup\"]
tollgate:
  ledger_path: {ledger}
{extra}",
        p = primary.url(),
        b = backup.url(),
        ledger = ledger.display()
    )
}

/// A fresh directory for one test's ledger.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Setup {
    primary: Upstream,
    backup: Upstream,
    gateway: TestGateway,
    client: TestClient,
    _dir: std::path::PathBuf,
}

async fn setup(name: &str, extra: &str) -> Setup {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let dir = temp_dir(name);
    let yaml = config(&primary, &backup, &dir.join("ledger.sqlite3"), extra);
    let gateway = TestGateway::start(
        &yaml,
        &[("UPSTREAM_KEY", UPSTREAM_KEY), ("MASTER_KEY", MASTER_KEY)],
    )
    .await;
    Setup {
        primary,
        backup,
        gateway,
        client: client(),
        _dir: dir,
    }
}

impl Setup {
    async fn post(&self, path: &str, body: impl ToString, key: Option<&str>) -> Answer {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        call(
            &self.client,
            "POST",
            &self.gateway.url(path),
            body.to_string(),
            &headers,
        )
        .await
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        call(&self.client, "GET", &self.gateway.url(path), "", &headers).await
    }

    /// The ledger's rows for the model group `model`.
    async fn spend_rows(&self, model: &str, key: Option<&str>) -> Vec<Value> {
        self.gateway.gateway.flush_spend().await;
        let logs = self
            .get(&format!("/spend/logs?model={model}&limit=100"), key)
            .await;
        assert_eq!(logs.status, 200, "{}", logs.text());
        logs.json()["data"].as_array().unwrap().clone()
    }
}

/// An embeddings answer, as raw text: floats written with more digits than
/// an `f32` or `f64` keeps, so that any decode and re-encode would show.
const FLOAT_EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255392551422137,-0.009327292,1e-7]},{"object":"embedding","index":1,"embedding":[-0.0028842222,0.01234567890123456789,0]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":12,"total_tokens":12}}"#;

/// The same as base64 (little-endian `f32`s), as OpenAI sends
/// `encoding_format: "base64"`.
const BASE64_EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPwAAAEAAAEBA"}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#;

fn embeddings_reply(body: &'static str) -> Reply {
    Reply::bytes(200, "application/json", body)
}

fn unavailable() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

/// A legacy completion answer (OpenAI's "The completion object").
fn text_completion(text: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    })
}

/// A streamed legacy completion's chunk.
fn text_chunk(text: &str, finish: Option<&str>) -> Value {
    json!({
        "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
    })
}

fn cost(answer: &Answer) -> &str {
    answer.headers["x-tollgate-response-cost"].to_str().unwrap()
}

#[tokio::test]
async fn embeddings_pass_through_byte_for_byte_with_their_exact_cost() {
    let s = setup("endpoints-embed", "").await;
    s.primary.push(embeddings_reply(FLOAT_EMBEDDINGS));
    let asked = json!({"model": "embed", "input": ["first", "second"], "dimensions": 3});
    let answer = s.post("/v1/embeddings", &asked, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Not one byte of the vectors changed on the way.
    assert_eq!(answer.text(), FLOAT_EMBEDDINGS);
    // 12 prompt tokens at 0.0000001.
    assert_eq!(cost(&answer), "0.0000012");
    assert_eq!(answer.headers["x-tollgate-model-group"], "embed");
    assert_eq!(answer.headers["x-tollgate-deployment"], "embed-1");
    let sent = &s.primary.requests()[0];
    assert_eq!(sent.uri.path(), "/v1/embeddings");
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    let sent = sent.json();
    assert_eq!(sent["model"], "text-embedding-3-small");
    assert_eq!(sent["dimensions"], 3);
    assert_eq!(sent["input"], json!(["first", "second"]));

    // Base64 vectors and token-array input, on the route without /v1.
    s.primary.push(embeddings_reply(BASE64_EMBEDDINGS));
    let asked = json!({"model": "embed", "input": [[1, 2, 3]], "encoding_format": "base64"});
    let answer = s.post("/embeddings", &asked, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), BASE64_EMBEDDINGS);
    assert_eq!(cost(&answer), "0.0000005");
    let sent = s.primary.requests()[1].json();
    assert_eq!(sent["encoding_format"], "base64");
    assert_eq!(sent["input"], json!([[1, 2, 3]]));

    // Both in the ledger, exactly.
    let rows = s.spend_rows("embed", None).await;
    let mut spent: Vec<&str> = rows.iter().map(|r| r["spend"].as_str().unwrap()).collect();
    spent.sort_unstable();
    assert_eq!(spent, ["0.0000005", "0.0000012"], "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["prompt_tokens"].as_u64().unwrap() > 0),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_503_primary_is_answered_by_its_fallback_on_each_route() {
    let s = setup("endpoints-fallback", "").await;
    // Embeddings.
    s.primary.push(unavailable());
    s.backup.push(embeddings_reply(FLOAT_EMBEDDINGS));
    let answer = s
        .post(
            "/v1/embeddings",
            json!({"model": "embed", "input": "hi"}),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), FLOAT_EMBEDDINGS);
    assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
    assert_eq!(answer.headers["x-tollgate-model-group"], "embed-backup");
    // 12 tokens at the backup's 0.0000003.
    assert_eq!(cost(&answer), "0.0000036");
    assert_eq!(s.backup.requests()[0].uri.path(), "/v1/embeddings");

    // A legacy completion.
    s.primary.push(unavailable());
    s.backup
        .push(Reply::json(200, text_completion("from the backup", 4, 3)));
    let asked = json!({"model": "text", "prompt": "Say hi", "max_tokens": 5});
    let answer = s.post("/v1/completions", &asked, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["choices"][0]["text"], "from the backup");
    assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
    assert_eq!(cost(&answer), "0.000007");
    assert_eq!(s.backup.requests()[1].uri.path(), "/v1/completions");

    // A streamed one: the primary fails before its first text.
    s.primary.push(unavailable());
    s.backup.push(
        Reply::sse()
            .data(text_chunk("Hel", None))
            .data(text_chunk("lo", Some("stop")))
            .data(openai::usage_chunk(4, 2))
            .done(),
    );
    let asked = json!({"model": "text", "prompt": "Say hi", "stream": true});
    let answer = s.post("/completions", &asked, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = sse_data(&answer.body);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let text: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|e| e["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Hello");
    // The client did not ask for usage: the chunk the gateway asked for is
    // not passed on, and the upstream was asked for it.
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "{events:?}"
    );
    assert_eq!(
        s.backup.requests()[2].json()["stream_options"]["include_usage"],
        true
    );
    // Priced all the same: 4 + 2 tokens at the backup's 0.000001.
    s.gateway.gateway.flush_spend().await;
    let rows = s.spend_rows("text-backup", None).await;
    let spent: Vec<&str> = rows.iter().map(|r| r["spend"].as_str().unwrap()).collect();
    assert!(spent.contains(&"0.000006"), "{rows:?}");
}

#[tokio::test]
async fn a_completion_stream_cut_after_its_first_text_ends_with_an_error_event() {
    let s = setup("endpoints-cut", "").await;
    s.primary
        .push(Reply::sse().data(text_chunk("Once upon", None)).cut());
    let asked = json!({"model": "text", "prompt": "Tell a story", "stream": true});
    let answer = s.post("/v1/completions", &asked, None).await;
    assert_eq!(answer.status, 200);
    let events = sse_data(&answer.body);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{events:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&events[0]).unwrap()["choices"][0]["text"],
        "Once upon"
    );
    // No continuation was asked of the fallback: a prefill of messages
    // cannot continue a legacy completion.
    assert!(s.backup.requests().is_empty());
}

/// Generates a virtual key allowed `models`.
async fn key_for(s: &Setup, models: &[&str]) -> String {
    let answer = s
        .post(
            "/key/generate",
            json!({"models": models, "key_alias": "embed-only"}),
            Some(MASTER_KEY),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_key_limited_to_one_model_reaches_no_other_through_any_route() {
    let s = setup(
        "endpoints-keys",
        "general_settings:\n  master_key: os.environ/MASTER_KEY\n",
    )
    .await;
    let key = key_for(&s, &["embed"]).await;
    s.primary.push(embeddings_reply(FLOAT_EMBEDDINGS));
    let ok = s
        .post(
            "/v1/embeddings",
            json!({"model": "embed", "input": "x"}),
            Some(&key),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    for (path, body) in [
        (
            "/v1/embeddings",
            json!({"model": "embed-backup", "input": "x"}),
        ),
        ("/v1/completions", json!({"model": "text", "prompt": "x"})),
        (
            "/completions",
            json!({"model": "text-backup", "prompt": "x", "stream": true}),
        ),
    ] {
        let refused = s.post(path, &body, Some(&key)).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert_eq!(refused.openai_error()["code"], "model_not_allowed");
        assert!(!refused.text().contains(&key));
    }
    // Only the one answer reached an upstream.
    assert_eq!(s.primary.requests().len(), 1);
    assert!(s.backup.requests().is_empty());
    // The models it may see, and no other.
    let info = s.get("/model/info", Some(&key)).await;
    assert_eq!(info.status, 200, "{}", info.text());
    let names: Vec<Value> = info.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_name"].clone())
        .collect();
    assert_eq!(names, [json!("embed")]);
    assert!(
        info.json()["data"][0]["litellm_params"]
            .get("api_base")
            .is_none()
    );
    let hidden = s.get("/v1/models/text", Some(&key)).await;
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.openai_error()["code"], "model_not_found");
    let own = s.get("/v1/models/embed", Some(&key)).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json()["id"], "embed");
    // Without a key: refused.
    assert_eq!(s.get("/model/info", None).await.status, 401);
    // The master key sees every group's public facts, and no secret.
    let all = s.get("/v1/model/info", Some(MASTER_KEY)).await;
    assert_eq!(all.json()["data"].as_array().unwrap().len(), 5);
    assert!(!all.text().contains(UPSTREAM_KEY));
    assert!(!all.text().contains(MASTER_KEY));
    assert_eq!(
        all.json()["data"][0]["litellm_params"]["api_base"],
        format!("{}/v1", s.primary.url())
    );
    // A key's rate limit holds on the new routes as on chat.
    let answer = s
        .post(
            "/key/generate",
            json!({"models": ["text"], "rpm_limit": 1, "key_alias": "one-a-minute"}),
            Some(MASTER_KEY),
        )
        .await;
    let limited = answer.json()["key"].as_str().unwrap().to_owned();
    s.primary
        .push(Reply::json(200, text_completion("once", 2, 1)));
    let prompt = json!({"model": "text", "prompt": "x"});
    let first = s.post("/v1/completions", &prompt, Some(&limited)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = s.post("/v1/completions", &prompt, Some(&limited)).await;
    assert_eq!(second.status, 429, "{}", second.text());
    assert!(second.headers.contains_key("retry-after"));
    second.openai_error();
    // The key's spend is in the ledger under its name.
    let rows = s.spend_rows("embed", Some(MASTER_KEY)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["key"], "embed-only", "{rows:?}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_gateway_stays_up() {
    let s = setup(
        "endpoints-bad",
        "general_settings:\n  max_request_size_mb: 0.01\n",
    )
    .await;
    // Past the request-size limit (about 10 KB): refused before any upstream.
    let big = json!({"model": "embed", "input": "x".repeat(20_000)});
    let answer = s.post("/v1/embeddings", &big, None).await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    answer.openai_error();
    let cases: [(&str, String, u16, &str); 9] = [
        ("/v1/embeddings", "{not json".into(), 400, "could not parse"),
        (
            "/v1/embeddings",
            json!({"model": "embed", "messages": [{"role": "user", "content": "x"}]}).to_string(),
            400,
            "'input'",
        ),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": {"a": 1}}).to_string(),
            400,
            "invalid 'input'",
        ),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": []}).to_string(),
            400,
            "must not be empty",
        ),
        (
            "/v1/embeddings",
            json!({"model": "nope", "input": "x"}).to_string(),
            404,
            "does not exist",
        ),
        (
            "/v1/embeddings",
            json!({"model": "chat", "input": "x"}).to_string(),
            400,
            "not an embedding model",
        ),
        (
            "/v1/completions",
            json!({"model": "embed", "prompt": "x"}).to_string(),
            400,
            "is an embedding model",
        ),
        (
            "/v1/completions",
            json!({"model": "text", "messages": []}).to_string(),
            400,
            "'prompt'",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "embed", "messages": [{"role": "user", "content": "x"}]}).to_string(),
            400,
            "/v1/embeddings",
        ),
    ];
    for (path, body, status, needle) in cases {
        let answer = s.post(path, body.clone(), None).await;
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.text());
        let error = answer.openai_error();
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{path} {body}: {error}"
        );
    }
    // The wrong method, and an unknown model's page.
    let wrong = s.get("/v1/embeddings", None).await;
    assert_eq!(wrong.status, 405);
    wrong.openai_error();
    let unknown = s.get("/v1/models/no-such-model", None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.openai_error()["param"], "model");
    // Nothing reached an upstream, and the gateway still answers.
    assert!(s.primary.requests().is_empty());
    s.primary.push(embeddings_reply(FLOAT_EMBEDDINGS));
    let answer = s
        .post(
            "/v1/embeddings",
            json!({"model": "embed", "input": "x"}),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The metrics count each route under its own label.
    let metrics = s.get("/metrics", None).await.text();
    assert!(
        metrics.contains(r#"route="embeddings",model_group="embed",status="200""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="completions""#), "{metrics}");
}

/// Embeddings of `body` through a gateway of `yaml` (one provider's group).
async fn embeddings_through(yaml: &str, env: &[(&str, &str)], body: Value) -> Answer {
    let gateway = TestGateway::start(yaml, env).await;
    call(
        &client(),
        "POST",
        &gateway.url("/v1/embeddings"),
        body.to_string(),
        &[("content-type", "application/json")],
    )
    .await
}

#[tokio::test]
async fn openrouter_embeddings_go_to_its_embeddings_path_untouched() {
    let upstream = Upstream::start().await;
    // The default reply: OpenRouter's model-list check at start may ask too.
    upstream.set_default(embeddings_reply(FLOAT_EMBEDDINGS));
    let yaml = format!(
        "model_list:
  - model_name: or-embed
    litellm_params:
      model: openrouter/openai/text-embedding-3-small
      api_base: {}/api/v1
      api_key: os.environ/OPENROUTER_API_KEY
    model_info:
      id: or-embed-1
      mode: embedding
      input_cost_per_token: 0.0000001
",
        upstream.url()
    );
    let env = [("OPENROUTER_API_KEY", UPSTREAM_KEY)];
    let answer = embeddings_through(&yaml, &env, json!({"model": "or-embed", "input": "x"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), FLOAT_EMBEDDINGS);
    assert_eq!(cost(&answer), "0.0000012");
    let sent = upstream
        .requests()
        .into_iter()
        .find(|r| r.uri.path() == "/api/v1/embeddings")
        .expect("the embeddings path was asked");
    assert_eq!(sent.json()["model"], "openai/text-embedding-3-small");
}

#[tokio::test]
async fn azure_embeddings_go_to_the_deployments_embeddings_url_untouched() {
    let upstream = Upstream::start().await;
    upstream.push(embeddings_reply(BASE64_EMBEDDINGS));
    let yaml = format!(
        "model_list:
  - model_name: az-embed
    litellm_params:
      model: azure/embed-prod
      api_base: {}
      api_key: os.environ/AZURE_API_KEY
      api_version: 2024-10-21
    model_info:
      id: az-embed-1
      mode: embedding
      input_cost_per_token: 0.0000001
",
        upstream.url()
    );
    let env = [("AZURE_API_KEY", UPSTREAM_KEY)];
    let asked = json!({"model": "az-embed", "input": ["x"], "encoding_format": "base64"});
    let answer = embeddings_through(&yaml, &env, asked).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), BASE64_EMBEDDINGS);
    assert_eq!(cost(&answer), "0.0000005");
    let sent = &upstream.requests()[0];
    assert_eq!(
        sent.uri.path_and_query().unwrap().as_str(),
        "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21"
    );
    assert_eq!(sent.headers["api-key"], UPSTREAM_KEY);
    assert_eq!(sent.json()["encoding_format"], "base64");
}
