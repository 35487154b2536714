//! Virtual keys through the gateway (issue 6's acceptance 5): no key, a
//! wrong key, an expired key, a key on a model it may not use and a key
//! over its budget each get the right status and OpenAI error, no upstream
//! sees those requests, and a key's text appears in no log, metric, ledger
//! row or error.

mod common;

use std::path::Path;

use common::{Answer, Captured, TestClient, TestGateway, call, chat_body, client};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-master-SECRET-9f8e7d6c5b4a";

fn config(upstream: &Upstream, ledger: &Path) -> String {
    format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-upstream
      api_base: {url}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: gpt-1
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: other
    litellm_params:
      model: openai/other-upstream
      api_base: {url}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: other-1
router_settings:
  num_retries: 0
  cooldown_time: 0
  fallbacks:
    - gpt: [other]
general_settings:
  master_key: os.environ/MASTER_KEY
tollgate:
  ledger_path: {ledger}
",
        url = upstream.url(),
        ledger = ledger.display()
    )
}

const ENV: [(&str, &str); 2] = [("UPSTREAM_KEY", "sk-up"), ("MASTER_KEY", MASTER_KEY)];

async fn post(client: &TestClient, url: &str, key: Option<&str>, body: String) -> Answer {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    call(client, "POST", url, body, &headers).await
}

async fn generate(client: &TestClient, gateway: &TestGateway, body: Value) -> String {
    let answer = post(
        client,
        &gateway.url("/key/generate"),
        Some(MASTER_KEY),
        body.to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["key"].as_str().unwrap().to_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An upstream that answers every request, and a gateway on it whose
/// ledger (and keys) live in a fresh directory.
async fn start(name: &str) -> (Upstream, std::path::PathBuf, TestGateway) {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
    let dir = temp_dir(name);
    let config = config(&upstream, &dir.join("ledger.sqlite3"));
    let gateway = TestGateway::start(&config, &ENV).await;
    (upstream, dir, gateway)
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn refused_keys_get_the_right_error_and_never_reach_an_upstream() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let (upstream, dir, gateway) = start("keys-refused").await;
    let ledger = dir.join("ledger.sqlite3");
    let client = client();
    let chat = gateway.url("/v1/chat/completions");

    let only_gpt = generate(
        &client,
        &gateway,
        json!({"key_alias": "only-gpt", "models": ["gpt"]}),
    )
    .await;
    // $0.00001 of budget: the first answer ($0.00005) uses it up.
    let small_budget = generate(
        &client,
        &gateway,
        json!({"key_alias": "small-budget", "max_budget": 0.00001, "budget_duration": "30d"}),
    )
    .await;
    let mut answers = Vec::new();

    // No key, a wrong key: 401, authentication_error.
    for key in [None, Some("sk-not-a-key-of-this-gateway-0000000000000000")] {
        let answer = post(&client, &chat, key, chat_body("gpt", false)).await;
        assert_eq!(answer.status, 401, "{}", answer.text());
        assert_eq!(answer.openai_error()["type"], "authentication_error");
        answers.push(answer);
    }
    // A model the key may not use: 403, naming the key by its alias.
    let answer = post(&client, &chat, Some(&only_gpt), chat_body("other", false)).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "model_not_allowed");
    assert!(error["message"].as_str().unwrap().contains("only-gpt"));
    answers.push(answer);
    // Its own model works.
    let answer = post(&client, &chat, Some(&only_gpt), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answers.push(answer);
    // Nor does a fallback answer with it: `gpt` fails, `other` is not
    // asked (the master key's request would have been answered by it).
    upstream.push(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    let answer = post(&client, &chat, Some(&only_gpt), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    answers.push(answer);
    // Over budget: the first answer spends it, the next is refused.
    let answer = post(&client, &chat, Some(&small_budget), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answers.push(answer);
    let answer = post(&client, &chat, Some(&small_budget), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 429, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "budget_exceeded");
    assert!(answer.headers.contains_key("retry-after"));
    answers.push(answer);
    // A virtual key is no master key.
    let answer = call(
        &client,
        "GET",
        &gateway.url("/spend/logs"),
        "",
        &[("authorization", &format!("Bearer {only_gpt}"))],
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    answers.push(answer);

    // Only the two answered requests and the failed one went upstream.
    assert_eq!(upstream.requests().len(), 3);

    // The keys' text is nowhere: not in answers, logs, metrics or the ledger.
    gateway.gateway.flush_spend().await;
    let auth = format!("Bearer {MASTER_KEY}");
    let auth = [("authorization", auth.as_str())];
    let metrics = call(&client, "GET", &gateway.url("/metrics"), "", &auth)
        .await
        .text();
    assert!(
        metrics.contains("tollgate_rate_limit_rejections_total{limit=\"budget\"} 1"),
        "the budget refusal is counted"
    );
    let spend = call(&client, "GET", &gateway.url("/spend/logs"), "", &auth)
        .await
        .text();
    assert!(
        spend.contains("only-gpt") && spend.contains("small-budget"),
        "{spend}"
    );
    let info = call(
        &client,
        "GET",
        &gateway.url(&format!("/key/info?key={only_gpt}")),
        "",
        &auth,
    )
    .await
    .text();
    // Its spend, exact, from the ledger (LiteLLM's `info.spend`).
    let budget_info = call(
        &client,
        "GET",
        &gateway.url(&format!("/key/info?key={small_budget}")),
        "",
        &auth,
    )
    .await
    .text();
    assert!(budget_info.contains(r#""spend":0.00005"#), "{budget_info}");
    // Spend per key, most first (LiteLLM's /global/spend/keys).
    let per_key = call(
        &client,
        "GET",
        &gateway.url("/global/spend/keys"),
        "",
        &auth,
    )
    .await;
    assert_eq!(per_key.status, 200, "{}", per_key.text());
    let rows = per_key.json();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["key_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"small-budget") && names.contains(&"only-gpt"),
        "{rows:?}"
    );
    let small = rows
        .iter()
        .find(|r| r["key_name"] == "small-budget")
        .unwrap();
    assert_eq!(small["key_alias"], "small-budget");
    assert_eq!(small["api_key"].as_str().unwrap().len(), 64);
    assert!(
        per_key.text().contains(r#""total_spend":0.00005"#),
        "{}",
        per_key.text()
    );
    let spends: Vec<f64> = rows
        .iter()
        .map(|r| r["total_spend"].as_f64().unwrap())
        .collect();
    assert!(
        spends.windows(2).all(|w| w[0] >= w[1]),
        "most first: {spends:?}"
    );
    let one = call(
        &client,
        "GET",
        &gateway.url("/global/spend/keys?limit=1"),
        "",
        &auth,
    )
    .await;
    assert_eq!(one.json().as_array().unwrap().len(), 1);
    let bad = call(
        &client,
        "GET",
        &gateway.url("/global/spend/keys?limit=0"),
        "",
        &auth,
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let per_key = per_key.text();
    let everything = [
        logs.text(),
        metrics,
        spend,
        info,
        budget_info,
        per_key,
        answers
            .iter()
            .map(Answer::text)
            .collect::<Vec<_>>()
            .join("\n"),
        answers
            .iter()
            .map(|a| format!("{:?}", a.headers))
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read(&ledger)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default(),
    ];
    for (place, text) in everything.iter().enumerate() {
        for key in [&only_gpt, &small_budget, &MASTER_KEY.to_owned()] {
            assert!(!text.contains(key.as_str()), "a key in place {place}");
        }
    }
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_expired_key_is_refused_after_a_restart_too() {
    let (upstream, dir, gateway) = start("keys-expired").await;
    let ledger = dir.join("ledger.sqlite3");
    let client = client();
    let key = generate(
        &client,
        &gateway,
        json!({"key_alias": "short-lived", "duration": "1h"}),
    )
    .await;
    let chat = gateway.url("/v1/chat/completions");
    assert_eq!(
        post(&client, &chat, Some(&key), chat_body("gpt", false))
            .await
            .status,
        200
    );
    gateway.shutdown().await;

    // An hour later, as far as the key is concerned: its expiry in the past.
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    let changed = conn
        .execute(
            "UPDATE virtual_keys SET expires_at_ms = 1000 WHERE alias = 'short-lived'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let gateway = TestGateway::start(&config(&upstream, &ledger), &ENV).await;
    let chat = gateway.url("/v1/chat/completions");
    let before = upstream.requests().len();
    let answer = post(&client, &chat, Some(&key), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 401, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "expired_api_key");
    assert!(error["message"].as_str().unwrap().contains("short-lived"));
    assert!(!answer.text().contains(&key));
    assert_eq!(upstream.requests().len(), before, "not sent upstream");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_budget_spent_before_a_restart_stays_spent() {
    let (upstream, dir, gateway) = start("keys-budget-restart").await;
    let ledger = dir.join("ledger.sqlite3");
    let client = client();
    // $0.00008 a month; each answer costs $0.00005 (10 × $0.000001 + 20 ×
    // $0.000002).
    let key = generate(
        &client,
        &gateway,
        json!({"key_alias": "monthly", "max_budget": "0.00008", "budget_duration": "30d"}),
    )
    .await;
    let chat = gateway.url("/v1/chat/completions");
    let answer = post(&client, &chat, Some(&key), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    gateway.shutdown().await;

    // Started again, as the binary does: the ledger's $0.00005 counts.
    let gateway = TestGateway::start(&config(&upstream, &ledger), &ENV).await;
    gateway.gateway.restore_budgets().await;
    let chat = gateway.url("/v1/chat/completions");
    let answer = post(&client, &chat, Some(&key), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = post(&client, &chat, Some(&key), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 429, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "budget_exceeded");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_request_abandoned_before_its_answer_is_charged_to_the_budget() {
    let (upstream, dir, gateway) = start("keys-abandoned").await;
    let client = client();
    // $0.00001: the prompt estimate of one abandoned request (about 25
    // tokens at $0.000001) is more.
    let key = generate(
        &client,
        &gateway,
        json!({"key_alias": "impatient", "max_budget": "0.00001", "budget_duration": "1d"}),
    )
    .await;
    upstream.push(
        Reply::json(200, openai::chat_completion("too late"))
            .delay_headers(std::time::Duration::from_secs(3600)),
    );
    let request = http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body(
            "gpt", false,
        ))))
        .unwrap();
    // The client goes away once the upstream has the request.
    let answer = gateway.gateway.handle(request);
    tokio::select! {
        _ = answer => panic!("the upstream was told to wait an hour"),
        _ = upstream.wait_for_requests(1) => {}
    }
    // The attempt was recorded as cancelled with an estimate, and the
    // estimate went to the key's budget.
    let chat = gateway.url("/v1/chat/completions");
    let answer = post(&client, &chat, Some(&key), chat_body("gpt", false)).await;
    assert_eq!(answer.status, 429, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "budget_exceeded");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A key's own `aliases` (LiteLLM's per-key model aliases) name a model
/// group for that key alone.
#[tokio::test]
async fn a_keys_model_aliases_name_groups_for_it_alone() {
    let (_upstream, dir, gateway) = start("keys-aliases").await;
    let client = client();
    let chat = gateway.url("/v1/chat/completions");
    let aliased = generate(
        &client,
        &gateway,
        json!({"models": ["gpt"], "aliases": {"house-model": "gpt"}}),
    )
    .await;
    let answer = post(
        &client,
        &chat,
        Some(&aliased),
        chat_body("house-model", false),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Another key has no such name.
    let other = generate(&client, &gateway, json!({})).await;
    let answer = post(
        &client,
        &chat,
        Some(&other),
        chat_body("house-model", false),
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "model_not_found");
    let _ = std::fs::remove_dir_all(dir);
}
