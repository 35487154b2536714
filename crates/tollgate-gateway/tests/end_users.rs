//! End users through the gateway (issue 20, item 3): the request's `user`
//! limited and budgeted apart from its key, LiteLLM's `/customer/*` routes
//! in its shapes, `max_end_user_budget` for everyone, and spend per end
//! user from the ledger, kept through a restart.

mod common;

use std::path::Path;

use common::{Answer, TestClient, TestGateway, call, client};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-master-END-USERS-7c1d";
const ENV: [(&str, &str); 2] = [("UPSTREAM_KEY", "sk-up"), ("MASTER_KEY", MASTER_KEY)];

/// Each answer costs $0.00005 (10 prompt tokens at $0.000001, 20
/// completion tokens at $0.000002).
fn config(upstream: &Upstream, ledger: &Path, litellm_settings: &str) -> String {
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
router_settings:
  num_retries: 0
{litellm_settings}general_settings:
  master_key: os.environ/MASTER_KEY
tollgate:
  ledger_path: {ledger}
",
        url = upstream.url(),
        ledger = ledger.display()
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(name: &str, litellm_settings: &str) -> (Upstream, std::path::PathBuf, TestGateway) {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
    let dir = temp_dir(name);
    let config = config(&upstream, &dir.join("ledger.sqlite3"), litellm_settings);
    let gateway = TestGateway::start(&config, &ENV).await;
    (upstream, dir, gateway)
}

async fn admin(
    client: &TestClient,
    gateway: &TestGateway,
    method: &str,
    path: &str,
    body: Value,
) -> Answer {
    let auth = format!("Bearer {MASTER_KEY}");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    call(
        client,
        method,
        &gateway.url(path),
        body,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
    )
    .await
}

/// `GET /customer/info` for `user`.
async fn customer_info(client: &TestClient, gateway: &TestGateway, user: &str) -> Answer {
    let path = format!("/customer/info?end_user_id={user}");
    admin(client, gateway, "GET", &path, Value::Null).await
}

/// A chat request for the end user `user`, with the key `key`.
async fn chat_as(client: &TestClient, gateway: &TestGateway, key: &str, user: &str) -> Answer {
    let body = json!({
        "model": "gpt",
        "user": user,
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    let auth = format!("Bearer {key}");
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        body.to_string(),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
    )
    .await
}

async fn generate_key(client: &TestClient, gateway: &TestGateway) -> String {
    let answer = admin(
        client,
        gateway,
        "POST",
        "/key/generate",
        json!({"key_alias": "app"}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_end_user_over_their_rpm_gets_429_while_another_end_user_of_the_key_is_served() {
    let (upstream, dir, gateway) = start("end-users-rpm", "").await;
    let client = client();
    let key = generate_key(&client, &gateway).await;
    let made = admin(
        &client,
        &gateway,
        "POST",
        "/customer/new",
        json!({"user_id": "alice", "rpm_limit": 1}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());

    assert_eq!(chat_as(&client, &gateway, &key, "alice").await.status, 200);
    let sent = upstream.requests().len();
    let limited = chat_as(&client, &gateway, &key, "alice").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.headers["retry-after"], "60");
    let error = limited.openai_error();
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("end_user:alice"),
        "{error}"
    );
    assert_eq!(upstream.requests().len(), sent, "not sent upstream");
    // Another end user of the same key is served, and so is the key alone.
    assert_eq!(chat_as(&client, &gateway, &key, "bob").await.status, 200);
    let anonymous = call(
        &client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        common::chat_body("gpt", false),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(anonymous.status, 200);

    // Anthropic's Messages name the end user in metadata.user_id, and are
    // refused in Anthropic's shape.
    let messages = json!({
        "model": "gpt", "max_tokens": 16, "metadata": {"user_id": "alice"},
        "messages": [{"role": "user", "content": "Hi"}],
    });
    let refused = call(
        &client,
        "POST",
        &gateway.url("/v1/messages"),
        messages.to_string(),
        &[("x-api-key", &key), ("content-type", "application/json")],
    )
    .await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.json()["type"], "error");
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");

    // The ledger names the end user of each attempt.
    gateway.gateway.flush_spend().await;
    let logs = admin(
        &client,
        &gateway,
        "GET",
        "/spend/logs?end_user=bob",
        Value::Null,
    )
    .await;
    let rows = logs.json()["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{}", logs.text());
    assert_eq!(rows[0]["end_user"], "bob");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_customer_routes_answer_in_litellms_shapes() {
    let (_upstream, dir, gateway) = start("end-users-routes", "").await;
    let client = client();
    let key = generate_key(&client, &gateway).await;

    let made = admin(
        &client,
        &gateway,
        "POST",
        "/customer/new",
        json!({"user_id": "carol", "alias": "Carol", "max_budget": 0.5, "budget_duration": "30d",
               "tpm_limit": 1000, "rpm_limit": 10}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let body = made.json();
    for field in [
        "user_id",
        "blocked",
        "alias",
        "spend",
        "allowed_model_region",
        "default_model",
        "budget_id",
        "litellm_budget_table",
        "object_permission_id",
        "object_permission",
    ] {
        assert!(
            body.get(field).is_some(),
            "CustomerResponse.{field} in {body}"
        );
    }
    assert_eq!(body["user_id"], "carol");
    assert_eq!(body["blocked"], false);
    assert_eq!(body["spend"], 0);
    let table = &body["litellm_budget_table"];
    assert_eq!(table["max_budget"], 0.5);
    assert_eq!(table["budget_duration"], "30d");
    assert_eq!(
        (table["rpm_limit"].as_u64(), table["tpm_limit"].as_u64()),
        (Some(10), Some(1000))
    );
    assert!(table["budget_reset_at"].is_string() && table["created_at"].is_string());

    // Spend, exact, after one answer.
    assert_eq!(chat_as(&client, &gateway, &key, "carol").await.status, 200);
    gateway.gateway.flush_spend().await;
    let info = customer_info(&client, &gateway, "carol").await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert!(
        info.text().contains(r#""spend":0.00005"#),
        "{}",
        info.text()
    );
    // The /end_user/ spelling is the same route.
    let alias = admin(
        &client,
        &gateway,
        "GET",
        "/end_user/info?end_user_id=carol",
        Value::Null,
    )
    .await;
    assert_eq!(alias.json(), info.json());

    let updated = admin(
        &client,
        &gateway,
        "POST",
        "/customer/update",
        json!({"user_id": "carol", "rpm_limit": 3}),
    )
    .await;
    assert_eq!(updated.json()["litellm_budget_table"]["rpm_limit"], 3);
    assert_eq!(updated.json()["alias"], "Carol");

    // Blocked: refused with a 403 before any upstream; unblocked: served.
    let blocked = admin(
        &client,
        &gateway,
        "POST",
        "/customer/block",
        json!({"user_ids": ["carol", "dave"]}),
    )
    .await;
    let users = blocked.json()["blocked_users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u["blocked"] == true));
    let refused = chat_as(&client, &gateway, &key, "carol").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.openai_error()["code"], "end_user_blocked");
    let unblocked = admin(
        &client,
        &gateway,
        "POST",
        "/customer/unblock",
        json!({"user_ids": ["carol"]}),
    )
    .await;
    assert_eq!(unblocked.json(), json!({"blocked_users": ["dave"]}));
    assert_eq!(chat_as(&client, &gateway, &key, "carol").await.status, 200);

    let list = admin(&client, &gateway, "GET", "/customer/list", Value::Null).await;
    let ids: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["carol", "dave"]);

    // The spend report: POST, top end users, most first.
    assert_eq!(chat_as(&client, &gateway, &key, "erin").await.status, 200);
    gateway.gateway.flush_spend().await;
    let report = admin(
        &client,
        &gateway,
        "POST",
        "/global/spend/end_users",
        Value::Null,
    )
    .await;
    assert_eq!(report.status, 200, "{}", report.text());
    let rows = report.json();
    assert_eq!(rows[0]["end_user"], "carol");
    assert_eq!(rows[0]["total_count"], 2);
    assert_eq!(rows[1]["end_user"], "erin");
    assert!(
        report.text().contains(r#""total_spend":0.0001"#),
        "{}",
        report.text()
    );

    let deleted = admin(
        &client,
        &gateway,
        "POST",
        "/customer/delete",
        json!({"user_ids": ["dave"]}),
    )
    .await;
    assert_eq!(deleted.json()["deleted_customers"], 1);
    let gone = customer_info(&client, &gateway, "dave").await;
    assert_eq!(gone.status, 404);

    // Admin only; the right method; a refused field says so.
    let as_key = call(
        &client,
        "GET",
        &gateway.url("/customer/list"),
        "",
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(as_key.status, 403);
    let wrong = admin(&client, &gateway, "GET", "/customer/new", Value::Null).await;
    assert_eq!(wrong.status, 405);
    let refused = admin(
        &client,
        &gateway,
        "POST",
        "/customer/new",
        json!({"user_id": "x", "budget_id": "free"}),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.openai_error()["param"], "budget_id");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn max_end_user_budget_holds_for_every_end_user_and_through_a_restart() {
    // $0.00008 each: a second answer ($0.00005 each) goes over it.
    let settings = "litellm_settings:\n  max_end_user_budget: 0.00008\n";
    let (upstream, dir, gateway) = start("end-users-default-budget", settings).await;
    let client = client();
    let key = generate_key(&client, &gateway).await;
    for _ in 0..2 {
        assert_eq!(chat_as(&client, &gateway, &key, "frank").await.status, 200);
    }
    let over = chat_as(&client, &gateway, &key, "frank").await;
    assert_eq!(over.status, 429, "{}", over.text());
    assert_eq!(over.openai_error()["code"], "budget_exceeded");
    assert!(
        over.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("end_user:frank")
    );
    // Another end user has a budget of their own.
    assert_eq!(chat_as(&client, &gateway, &key, "gina").await.status, 200);
    gateway.shutdown().await;

    // Started again, as the binary does: the ledger's spend counts.
    let config = config(&upstream, &dir.join("ledger.sqlite3"), settings);
    let gateway = TestGateway::start(&config, &ENV).await;
    gateway.gateway.restore_budgets().await;
    let over = chat_as(&client, &gateway, &key, "frank").await;
    assert_eq!(over.status, 429, "{}", over.text());
    assert_eq!(chat_as(&client, &gateway, &key, "gina").await.status, 200);
    let info = customer_info(&client, &gateway, "frank").await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert!(info.text().contains(r#""spend":0.0001"#), "{}", info.text());
    assert_eq!(info.json()["litellm_budget_table"]["max_budget"], 0.00008);
    assert!(info.json()["litellm_budget_table"]["budget_reset_at"].is_null());
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
