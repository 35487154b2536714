//! Teams through the gateway (issue 20's acceptance 1–3, one process;
//! `teams_replicas.rs` has two on one Redis): every `/team/*` route with
//! the fields LiteLLM documents (docs.litellm.ai/docs/proxy/team_budgets
//! and the `/team/*` API reference), a team's models, block and budget
//! applied to its keys together with their own, a team and its spent
//! budget surviving a restart, the team's spend from the ledger.

mod common;

use std::path::{Path, PathBuf};

use common::{Answer, TestClient, TestGateway, call, chat_body, client};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-master-TEAMS-1a2b3c4d5e";
const ENV: [(&str, &str); 2] = [("UPSTREAM_KEY", "sk-up"), ("MASTER_KEY", MASTER_KEY)];

/// Two groups; each `gpt` answer costs $0.00005 (10 × $0.000001 + 20 ×
/// $0.000002).
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
router_settings:
  num_retries: 0
general_settings:
  master_key: os.environ/MASTER_KEY
tollgate:
  ledger_path: {ledger}
  ledger_flush_interval: 0.01
",
        url = upstream.url(),
        ledger = ledger.display()
    )
}

struct Setup {
    upstream: Upstream,
    dir: PathBuf,
    client: TestClient,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        let upstream = Upstream::start().await;
        upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
        let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Setup {
            upstream,
            dir,
            client: client(),
        }
    }

    async fn gateway(&self) -> TestGateway {
        let ledger = self.dir.join("ledger.sqlite3");
        TestGateway::start(&config(&self.upstream, &ledger), &ENV).await
    }

    async fn admin(&self, gateway: &TestGateway, path: &str, body: Value) -> Answer {
        let auth = format!("Bearer {MASTER_KEY}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        call(
            &self.client,
            "POST",
            &gateway.url(path),
            body.to_string(),
            &headers,
        )
        .await
    }

    async fn get(&self, gateway: &TestGateway, path: &str) -> Answer {
        let auth = format!("Bearer {MASTER_KEY}");
        call(
            &self.client,
            "GET",
            &gateway.url(path),
            "",
            &[("authorization", &auth)],
        )
        .await
    }

    async fn key(&self, gateway: &TestGateway, body: Value) -> String {
        let answer = self.admin(gateway, "/key/generate", body).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["key"].as_str().unwrap().to_owned()
    }

    async fn chat(&self, gateway: &TestGateway, key: &str, model: &str) -> Answer {
        let auth = format!("Bearer {key}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let url = gateway.url("/v1/chat/completions");
        call(
            &self.client,
            "POST",
            &url,
            chat_body(model, false),
            &headers,
        )
        .await
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fields of LiteLLM's team object that Tollgate keeps.
const TEAM_FIELDS: [&str; 13] = [
    "team_id",
    "team_alias",
    "models",
    "max_budget",
    "budget_duration",
    "budget_reset_at",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "metadata",
    "blocked",
    "created_at",
    "updated_at",
];

fn assert_team_fields(team: &Value) {
    for field in TEAM_FIELDS {
        assert!(team.get(field).is_some(), "no {field} in {team}");
    }
}

#[tokio::test]
async fn team_routes_answer_in_litellms_shape() {
    let setup = Setup::new("teams-shape").await;
    let gateway = setup.gateway().await;

    // POST /team/new, as docs.litellm.ai/docs/proxy/team_budgets shows it.
    let answer = setup
        .admin(
            &gateway,
            "/team/new",
            json!({"team_id": "search", "team_alias": "Search", "models": ["gpt"],
                   "max_budget": 10, "budget_duration": "30d", "rpm_limit": 100,
                   "tpm_limit": 100000, "max_parallel_requests": 4,
                   "metadata": {"cost_center": "CC-1"}, "members_with_roles": []}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let team = answer.json();
    assert_team_fields(&team);
    assert_eq!(team["team_id"], "search");
    assert_eq!(team["team_alias"], "Search");
    assert_eq!(team["models"], json!(["gpt"]));
    assert_eq!(team["max_budget"], json!(10));
    assert_eq!(team["budget_duration"], "30d");
    assert!(team["budget_reset_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(team["metadata"]["cost_center"], "CC-1");
    assert_eq!(team["blocked"], false);
    assert_eq!(team["spend"], json!(0));

    // An id is made when none is given (a UUID, as LiteLLM's); an id in
    // use is a 400.
    let made = setup.admin(&gateway, "/team/new", json!({})).await.json();
    assert_eq!(made["team_id"].as_str().unwrap().len(), 36, "{made}");
    let taken = setup
        .admin(&gateway, "/team/new", json!({"team_id": "search"}))
        .await;
    assert_eq!(taken.status, 400, "{}", taken.text());
    assert_eq!(taken.openai_error()["param"], "team_id");

    // A key of a team that does not exist is a 400, as in LiteLLM.
    let unknown = setup
        .admin(&gateway, "/key/generate", json!({"team_id": "nope"}))
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    assert!(unknown.text().contains("nope"));
    let key = setup
        .key(
            &gateway,
            json!({"key_alias": "search-app", "team_id": "search"}),
        )
        .await;
    assert_eq!(setup.chat(&gateway, &key, "gpt").await.status, 200);

    // GET /team/info: {team_id, team_info, keys, team_memberships}.
    let info = setup.get(&gateway, "/team/info?team_id=search").await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert!(!info.text().contains(&key), "no key text in /team/info");
    let info = info.json();
    assert_eq!(info["team_id"], "search");
    assert_team_fields(&info["team_info"]);
    assert_eq!(info["team_memberships"], json!([]));
    assert_eq!(info["keys"][0]["key_alias"], "search-app");
    assert_eq!(info["keys"][0]["team_id"], "search");
    let missing = setup.get(&gateway, "/team/info?team_id=nope").await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // GET /team/list: by alias, each with its keys.
    let list = setup.get(&gateway, "/team/list").await;
    assert!(!list.text().contains(&key), "no key text in /team/list");
    let list = list.json();
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let search = listed.iter().find(|t| t["team_id"] == "search").unwrap();
    assert_team_fields(search);
    assert_eq!(search["keys"].as_array().unwrap().len(), 1);

    // POST /team/update: {team_id, data}; fields left out stay.
    let updated = setup
        .admin(
            &gateway,
            "/team/update",
            json!({"team_id": "search", "rpm_limit": 200}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_eq!(updated["team_id"], "search");
    assert_eq!(updated["data"]["rpm_limit"], 200);
    assert_eq!(updated["data"]["team_alias"], "Search");

    // The team's spend, from the ledger.
    let spend = until_spent(&setup, &gateway, "search").await;
    assert_eq!(spend, json!(0.00005));
    let report = setup.get(&gateway, "/global/spend/teams").await;
    assert_eq!(report.status, 200, "{}", report.text());
    let report = report.json();
    assert_eq!(report["teams"], json!(["Search"]));
    assert_eq!(
        report["total_spend_per_team"],
        json!([{"team_id": "Search", "total_spend": 0.00005}])
    );
    let day = &report["daily_spend"][0];
    assert!(day["date"].as_str().unwrap().len() == 10, "{day}");
    assert_eq!(day["Search"], json!(0.00005));

    // Bad input: the OpenAI error shape, and the gateway stays up.
    let auth = format!("Bearer {MASTER_KEY}");
    let garbled = call(
        &setup.client,
        "POST",
        &gateway.url("/team/new"),
        "{not json",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(garbled.status, 400, "{}", garbled.text());
    assert_eq!(garbled.openai_error()["type"], "invalid_request_error");
    let wrong = setup.get(&gateway, "/team/new").await;
    assert_eq!(wrong.status, 405, "{}", wrong.text());
    assert_eq!(wrong.headers["allow"], "POST");
    let negative = setup
        .admin(
            &gateway,
            "/team/update",
            json!({"team_id": "search", "rpm_limit": -1}),
        )
        .await;
    assert_eq!(negative.openai_error()["param"], "rpm_limit");

    // Virtual keys may not use the team routes.
    let refused = call(
        &setup.client,
        "GET",
        &gateway.url("/team/list"),
        "",
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    gateway.shutdown().await;
}

/// Polls `/team/info` until the ledger has the team's spend (it writes
/// every 10 ms here).
async fn until_spent(setup: &Setup, gateway: &TestGateway, team: &str) -> Value {
    let path = format!("/team/info?team_id={team}");
    for _ in 0..200 {
        let spend = setup.get(gateway, &path).await.json()["team_info"]["spend"].clone();
        if spend != json!(0) {
            return spend;
        }
        // Waiting on the ledger's writer thread.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the team's spend never reached the ledger");
}

#[tokio::test]
async fn a_teams_models_block_and_deletion_hold_for_its_keys() {
    let setup = Setup::new("teams-rules").await;
    let gateway = setup.gateway().await;
    let new = setup
        .admin(
            &gateway,
            "/team/new",
            json!({"team_id": "t", "models": ["gpt"]}),
        )
        .await;
    assert_eq!(new.status, 200, "{}", new.text());
    // The key may use both groups; its team only `gpt`: the intersection.
    let key = setup
        .key(
            &gateway,
            json!({"team_id": "t", "models": ["gpt", "other"]}),
        )
        .await;
    assert_eq!(setup.chat(&gateway, &key, "gpt").await.status, 200);
    let other = setup.chat(&gateway, &key, "other").await;
    assert_eq!(other.status, 403, "{}", other.text());
    assert_eq!(other.openai_error()["code"], "model_not_allowed");

    // Blocked: refused with a clear error, never sent upstream.
    let before = setup.upstream.requests().len();
    let blocked = setup
        .admin(&gateway, "/team/block", json!({"team_id": "t"}))
        .await;
    assert_eq!(blocked.json()["blocked"], true);
    let refused = setup.chat(&gateway, &key, "gpt").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.openai_error()["code"], "team_blocked");
    assert!(
        refused.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("'t'")
    );
    assert_eq!(setup.upstream.requests().len(), before);
    setup
        .admin(&gateway, "/team/unblock", json!({"team_id": "t"}))
        .await;
    assert_eq!(setup.chat(&gateway, &key, "gpt").await.status, 200);

    // Deleting the team deletes its keys, as LiteLLM does.
    let deleted = setup
        .admin(&gateway, "/team/delete", json!({"team_ids": ["t"]}))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["deleted_teams"], json!(["t"]));
    assert_eq!(deleted.json()["deleted_keys"].as_array().unwrap().len(), 1);
    assert_eq!(setup.chat(&gateway, &key, "gpt").await.status, 401);
    let again = setup
        .admin(&gateway, "/team/delete", json!({"team_ids": ["t"]}))
        .await;
    assert_eq!(again.status, 404, "{}", again.text());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_team_budget_spent_by_two_keys_stops_both_and_survives_a_restart() {
    let setup = Setup::new("teams-budget").await;
    let gateway = setup.gateway().await;
    // $0.00008 a month for the team: two answers ($0.0001) spend it.
    let new = setup
        .admin(
            &gateway,
            "/team/new",
            json!({"team_id": "t", "max_budget": "0.00008", "budget_duration": "30d"}),
        )
        .await;
    assert_eq!(new.status, 200, "{}", new.text());
    let one = setup.key(&gateway, json!({"team_id": "t"})).await;
    let two = setup
        .key(&gateway, json!({"team_id": "t", "max_budget": 1}))
        .await;
    assert_eq!(setup.chat(&gateway, &one, "gpt").await.status, 200);
    assert_eq!(setup.chat(&gateway, &two, "gpt").await.status, 200);
    for key in [&one, &two] {
        let refused = setup.chat(&gateway, key, "gpt").await;
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(refused.openai_error()["code"], "budget_exceeded");
        assert!(refused.text().contains("team:t"), "{}", refused.text());
    }
    // A key outside the team is not held back.
    let free = setup.key(&gateway, json!({})).await;
    assert_eq!(setup.chat(&gateway, &free, "gpt").await.status, 200);
    gateway.shutdown().await;

    // Started again on the same file: the team is there, its budget spent.
    let gateway = setup.gateway().await;
    gateway.gateway.restore_budgets().await;
    let info = setup.get(&gateway, "/team/info?team_id=t").await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["team_info"]["spend"], json!(0.0001));
    let refused = setup.chat(&gateway, &one, "gpt").await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    // Raising the budget lets the keys through again.
    setup
        .admin(
            &gateway,
            "/team/update",
            json!({"team_id": "t", "max_budget": 1}),
        )
        .await;
    assert_eq!(setup.chat(&gateway, &two, "gpt").await.status, 200);
    gateway.shutdown().await;
}
