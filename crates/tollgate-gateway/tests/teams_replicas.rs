//! Teams on two gateway processes sharing one Redis (issue 20's
//! acceptance 1–2): a team made on one replica holds on the other, its
//! budget spent through keys on both stops both, a block made on one is
//! refused on the other, a restarted replica keeps the team and its spent
//! budget, and a Redis outage keeps the team's keys served while changes
//! wait; Redis back empty gets the team back from the replicas.
//!
//! The real binary twice, a real `redis-server`, a testkit upstream; all on
//! loopback.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::binary::GatewayProcess as Replica;
use common::{Answer, TestClient, call, chat_body, client};
use serde_json::{Value, json};
use tollgate_testkit::{RedisServer, Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-master-teams-replicas";
const ENV: [(&str, &str); 2] = [
    ("UPSTREAM_KEY", "sk-upstream-secret"),
    ("TOLLGATE_TEST_MASTER_KEY", MASTER_KEY),
];

/// Writes the config (each `gpt` answer costs $0.00005) and makes a
/// directory per replica (its ledger and its copy of the teams).
fn prepare(name: &str, redis: &RedisServer, upstream: &Upstream) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for replica in ["a", "b"] {
        std::fs::create_dir_all(dir.join(replica)).unwrap();
    }
    let yaml = format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-upstream
      api_base: {}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: gpt-1
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
router_settings:
  num_retries: 0
  redis_host: 127.0.0.1
  redis_port: {}
tollgate:
  redis_timeout: 2
general_settings:
  master_key: os.environ/TOLLGATE_TEST_MASTER_KEY
",
        upstream.url(),
        redis.port()
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    dir
}

fn replica(dir: &Path, name: &str) -> Replica {
    Replica::start(&dir.join("config.yaml"), &dir.join(name), &ENV)
}

async fn admin(client: &TestClient, at: &Replica, path: &str, body: Value) -> Answer {
    let auth = format!("Bearer {MASTER_KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    call(client, "POST", &at.url(path), body.to_string(), &headers).await
}

async fn info(client: &TestClient, at: &Replica, team: &str) -> Answer {
    let auth = format!("Bearer {MASTER_KEY}");
    let url = at.url(&format!("/team/info?team_id={team}"));
    call(client, "GET", &url, "", &[("authorization", &auth)]).await
}

async fn key(client: &TestClient, at: &Replica, team: &str) -> String {
    let answer = admin(client, at, "/key/generate", json!({"team_id": team})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["key"].as_str().unwrap().to_owned()
}

async fn chat(client: &TestClient, at: &Replica, key: &str) -> Answer {
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let url = at.url("/v1/chat/completions");
    call(client, "POST", &url, chat_body("gpt", false), &headers).await
}

/// Asks `check` until it holds, for at most `within`: for what another
/// process does on its own clock (a replica's sync round).
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < within {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_budget_spent_on_two_replicas_stops_both_and_survives_a_restart() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
    let dir = prepare("teams-replicas-budget", &redis, &upstream);
    let (mut a, b) = (replica(&dir, "a"), replica(&dir, "b"));
    let client = client();

    // Made on A; at once a team on B too (B reads it from Redis).
    let made = admin(
        &client,
        &a,
        "/team/new",
        json!({"team_id": "t", "team_alias": "T", "max_budget": "0.00008",
               "budget_duration": "30d"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let on_a = key(&client, &a, "t").await;
    let on_b = key(&client, &b, "t").await;
    let shown = info(&client, &b, "t").await.json();
    assert_eq!(shown["team_info"]["team_alias"], "T");
    assert_eq!(shown["team_info"]["max_budget"], json!(0.00008));

    // $0.0001 spent through two keys on two replicas: both stop, on both.
    assert_eq!(chat(&client, &a, &on_a).await.status, 200);
    assert_eq!(chat(&client, &b, &on_b).await.status, 200);
    for (at, key) in [(&a, &on_b), (&b, &on_a)] {
        let refused = chat(&client, at, key).await;
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(refused.openai_error()["code"], "budget_exceeded");
        assert!(refused.text().contains("team:t"));
    }

    // A block made on B is refused on A within a sync round.
    let blocked = admin(&client, &b, "/team/block", json!({"team_id": "t"})).await;
    assert_eq!(blocked.status, 200, "{}", blocked.text());
    eventually(Duration::from_secs(3), "A refuses the blocked team", || {
        let (client, a, on_a) = (&client, &a, &on_a);
        async move {
            let refused = chat(client, a, on_a).await;
            refused.status == 403 && refused.openai_error()["code"] == "team_blocked"
        }
    })
    .await;

    // A restarted replica has the team (blocked) and its spent budget.
    a.signal("-KILL");
    a = replica(&dir, "a");
    let refused = chat(&client, &a, &on_a).await;
    assert_eq!(refused.openai_error()["code"], "team_blocked");
    admin(&client, &a, "/team/unblock", json!({"team_id": "t"})).await;
    let refused = chat(&client, &a, &on_a).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.openai_error()["code"], "budget_exceeded");
    assert_eq!(
        upstream.requests().len(),
        2,
        "no refused request went upstream"
    );
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_team_keys_are_served_and_redis_gets_the_team_back() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
    let dir = prepare("teams-replicas-outage", &redis, &upstream);
    let (a, b) = (replica(&dir, "a"), replica(&dir, "b"));
    let client = client();
    let made = admin(
        &client,
        &a,
        "/team/new",
        json!({"team_id": "steady", "rpm_limit": 1000}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let team_key = key(&client, &a, "steady").await;
    for at in [&a, &b] {
        assert_eq!(chat(&client, at, &team_key).await.status, 200);
    }

    redis.kill();
    for i in 0..10 {
        let at = if i % 2 == 0 { &a } else { &b };
        let answer = chat(&client, at, &team_key).await;
        assert_eq!(answer.status, 200, "request {i}: {}", answer.text());
    }
    // Changes wait for Redis: made on one replica only, they would split
    // the replicas' view.
    let change = admin(
        &client,
        &b,
        "/team/update",
        json!({"team_id": "steady", "rpm_limit": 1}),
    )
    .await;
    assert_eq!(change.status, 503, "{}", change.text());
    let new = admin(&client, &a, "/team/new", json!({"team_id": "later"})).await;
    assert_eq!(new.status, 503, "{}", new.text());

    // Back empty: the replicas put the team back.
    redis.restart().await;
    eventually(Duration::from_secs(5), "the team is back in Redis", || {
        let redis = &redis;
        async move { redis.keys().await.iter().any(|k| k == "tollgate:teams") }
    })
    .await;
    let change = admin(
        &client,
        &b,
        "/team/update",
        json!({"team_id": "steady", "rpm_limit": 500}),
    )
    .await;
    assert_eq!(change.status, 200, "{}", change.text());
    eventually(Duration::from_secs(3), "A has B's change", || {
        let (client, a) = (&client, &a);
        async move { info(client, a, "steady").await.json()["team_info"]["rpm_limit"] == 500 }
    })
    .await;
    for at in [&a, &b] {
        assert_eq!(chat(&client, at, &team_key).await.status, 200);
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
