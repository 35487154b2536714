//! Two gateway processes sharing one Redis (issue 6's acceptance 2–4): one
//! combined per-key rate limit, keys generated on one replica working on the
//! other, breakers opened on one replica open on the other, and no request
//! failing while Redis is away. Issue 17's item 3: Redis restarted empty
//! loses no key, and a deleted key stays deleted.
//!
//! The real binary twice, a real `redis-server`, a testkit upstream; all on
//! loopback.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::binary::GatewayProcess as Replica;
use common::{TestClient, call, chat_body, client};
use serde_json::{Value, json};
use tollgate_testkit::{RedisServer, Reply, Upstream, openai};

const MASTER_KEY: &str = "sk-master-replicas-test";

const ENV: [(&str, &str); 2] = [
    ("UPSTREAM_KEY", "sk-upstream-secret"),
    ("TOLLGATE_TEST_MASTER_KEY", MASTER_KEY),
];

/// Two replicas of one config, each in a directory of its own.
struct Cluster {
    a: Replica,
    b: Replica,
    dir: PathBuf,
}

impl Cluster {
    fn start(name: &str, redis: &RedisServer, upstream: &Upstream, extra: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = dir.join("config.yaml");
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(
            &config,
            format!(
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
{extra}general_settings:
  master_key: os.environ/TOLLGATE_TEST_MASTER_KEY
",
                upstream.url(),
                redis.port()
            ),
        )
        .unwrap();
        Cluster {
            a: Replica::start(&config, &dir.join("a"), &ENV),
            b: Replica::start(&config, &dir.join("b"), &ENV),
            dir,
        }
    }

    /// Starts replica `name` (`a` or `b`) again on its own directory, so on
    /// its own SQLite file; stop the running one first.
    fn start_replica(&self, name: &str) -> Replica {
        Replica::start(&self.dir.join("config.yaml"), &self.dir.join(name), &ENV)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn generate(client: &TestClient, replica: &Replica, body: Value) -> String {
    generate_with_token(client, replica, body).await.0
}

/// A new key and its `token` (the hex hash that names it in Redis).
async fn generate_with_token(
    client: &TestClient,
    replica: &Replica,
    body: Value,
) -> (String, String) {
    let answer = admin(client, replica, "/key/generate", body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    (
        body["key"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

async fn chat(client: &TestClient, replica: &Replica, key: &str) -> common::Answer {
    call(
        client,
        "POST",
        &replica.url("/v1/chat/completions"),
        chat_body("gpt", false),
        &[
            ("authorization", &bearer(key)),
            ("content-type", "application/json"),
        ],
    )
    .await
}

async fn metric(client: &TestClient, replica: &Replica, series: &str) -> f64 {
    let text = call(
        client,
        "GET",
        &replica.url("/metrics"),
        "",
        &[("authorization", &bearer(MASTER_KEY))],
    )
    .await
    .text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn answer_ok(upstream: &Upstream) {
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rpm_limit_holds_across_replicas_and_keys_work_on_both() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    answer_ok(&upstream);
    // Redis calls wait up to 2 s: on a loaded machine the 50 ms default
    // makes a replica fall back to local counting, and the count inexact.
    let cluster = Cluster::start(
        "replicas-rpm",
        &redis,
        &upstream,
        "tollgate:\n  redis_timeout: 2\n",
    );
    let client = client();

    // Generated on A, used on B at once.
    let key = generate(
        &client,
        &cluster.a,
        json!({"key_alias": "team-a", "rpm_limit": 10}),
    )
    .await;
    // A burst of 30, split between the replicas, all at once.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..30 {
        let client = client.clone();
        let key = key.clone();
        let url = if i % 2 == 0 {
            cluster.a.url("/v1/chat/completions")
        } else {
            cluster.b.url("/v1/chat/completions")
        };
        burst.spawn(async move {
            call(
                &client,
                "POST",
                &url,
                chat_body("gpt", false),
                &[
                    ("authorization", &bearer(&key)),
                    ("content-type", "application/json"),
                ],
            )
            .await
        });
    }
    let answers = burst.join_all().await;
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(admitted, 10, "one limit of 10 a minute for both replicas");
    for refused in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert!(refused.headers.contains_key("retry-after"));
        assert_eq!(refused.openai_error()["type"], "rate_limit_error");
    }
    assert_eq!(
        upstream.requests().len(),
        10,
        "refused requests never went upstream"
    );
    // Both replicas served part of the burst.
    let on_b = answers
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|a| a.status == 200)
        .count();
    assert!(on_b > 0 && on_b < 10, "B admitted {on_b}");

    // The key works on B by itself too (another key, fresh limit).
    let other = generate(&client, &cluster.b, json!({"key_alias": "team-b"})).await;
    assert_eq!(chat(&client, &cluster.a, &other).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_replica_is_open_on_the_other_within_a_second() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    let cluster = Cluster::start(
        "replicas-breaker",
        &redis,
        &upstream,
        "  allowed_fails: 0\n  cooldown_time: 60\n",
    );
    let client = client();
    let state = |replica: &Replica| {
        let client = client.clone();
        let url = replica.url("/health/circuit-breakers");
        async move {
            let body = call(
                &client,
                "GET",
                &url,
                "",
                &[("authorization", &bearer(MASTER_KEY))],
            )
            .await
            .json();
            body["circuit_breakers"]
                .as_array()
                .and_then(|all| all.iter().find(|b| b["key"] == "gpt-1"))
                .map(|b| b["state"].as_str().unwrap().to_owned())
                .unwrap_or_else(|| "closed".to_owned())
        }
    };
    assert_eq!(state(&cluster.b).await, "closed");

    let failed = chat(&client, &cluster.a, MASTER_KEY).await;
    assert!(failed.status.is_server_error(), "{}", failed.text());
    assert_eq!(state(&cluster.a).await, "open");
    let opened = tokio::time::Instant::now();
    let mut seen = String::new();
    while opened.elapsed() < Duration::from_secs(1) {
        seen = state(&cluster.b).await;
        if seen == "open" {
            break;
        }
        // Waiting on the other replica's poll of Redis.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen, "open", "B's breaker within a second of A's");
    // B now refuses at once, without asking the upstream.
    let before = upstream.requests().len();
    let refused = chat(&client, &cluster.b, MASTER_KEY).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(upstream.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_redis_is_away_and_sharing_resumes() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    answer_ok(&upstream);
    let cluster = Cluster::start("replicas-outage", &redis, &upstream, "");
    let client = client();
    let key = generate(
        &client,
        &cluster.a,
        json!({"key_alias": "steady", "rpm_limit": 1000, "tpm_limit": 1000000}),
    )
    .await;
    for replica in [&cluster.a, &cluster.b] {
        assert_eq!(chat(&client, replica, &key).await.status, 200);
    }

    redis.kill();
    for i in 0..20 {
        let replica = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        let answer = chat(&client, replica, &key).await;
        assert_eq!(
            answer.status,
            200,
            "request {i} during the outage: {}",
            answer.text()
        );
    }
    for replica in [&cluster.a, &cluster.b] {
        let fallbacks = metric(&client, replica, "tollgate_shared_state_fallbacks_total").await;
        assert!(fallbacks > 0.0, "the fall back to local state is counted");
        assert!(
            replica.log().contains("local"),
            "and logged: {}",
            replica.log()
        );
    }

    // Back: limits are shared again — a key made now on B has one limit.
    redis.restart().await;
    let key = generate(
        &client,
        &cluster.b,
        json!({"key_alias": "after", "rpm_limit": 4}),
    )
    .await;
    let mut admitted = 0;
    for i in 0..8 {
        let replica = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        if chat(&client, replica, &key).await.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4, "one shared limit again");
}

/// The status of a chat request with `key` on each replica, A then B.
async fn statuses(client: &TestClient, cluster: &Cluster, key: &str) -> [u16; 2] {
    [
        chat(client, &cluster.a, key).await.status.as_u16(),
        chat(client, &cluster.b, key).await.status.as_u16(),
    ]
}

/// Polls `ready` every 50 ms for at most `within`: waiting on another
/// process (a replica's background sync with Redis), not on time itself.
async fn eventually<F, Fut>(within: Duration, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if ready().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {within:?}: {what}");
}

/// Checks `expected` for every key in `cases` on both replicas, in rounds
/// for `span`: the answers must hold the whole time, past the 5 s for
/// which replicas once trusted their cache before asking Redis again.
async fn holds_for(span: Duration, client: &TestClient, cluster: &Cluster, cases: &[(&str, u16)]) {
    let deadline = tokio::time::Instant::now() + span;
    let mut round = 0;
    while tokio::time::Instant::now() < deadline {
        for (index, (key, expected)) in cases.iter().enumerate() {
            let got = statuses(client, cluster, key).await;
            assert_eq!(got, [*expected; 2], "key {index}, round {round} (A, B)");
        }
        round += 1;
        // Paces the rounds: the property is checked over time, not waited for.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(round >= 4, "only {round} rounds in {span:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_loses_no_key_on_any_replica() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    answer_ok(&upstream);
    let mut cluster = Cluster::start("replicas-redis-empty", &redis, &upstream, "");
    let client = client();
    let (on_a, _) = generate_with_token(&client, &cluster.a, json!({"key_alias": "on-a"})).await;
    let (on_b, _) = generate_with_token(&client, &cluster.b, json!({})).await;
    // Used on both replicas, as in the issue.
    for key in [&on_a, &on_b] {
        assert_eq!(statuses(&client, &cluster, key).await, [200, 200]);
    }
    // Made on A just before Redis goes, never used on B.
    let (unseen, unseen_token) =
        generate_with_token(&client, &cluster.a, json!({"key_alias": "unseen"})).await;

    // Killed, and a fresh server without persistence on the same port.
    redis.kill();
    redis.restart().await;
    let all = [(on_a.as_str(), 200), (on_b.as_str(), 200)];
    holds_for(Duration::from_secs(7), &client, &cluster, &all).await;
    // A put its keys back into Redis, so B knows the one it never saw.
    let record = format!("tollgate:key:{unseen_token}");
    eventually(
        Duration::from_secs(3),
        "the record is back in Redis",
        || {
            let (redis, record) = (&redis, &record);
            async move { redis.get(record).await.is_some() }
        },
    )
    .await;
    assert_eq!(statuses(&client, &cluster, &unseen).await, [200, 200]);
    let keys = [&on_a, &on_b, &unseen];
    assert_logs(&cluster, &keys);

    // After a replica restart.
    cluster.b.signal("-KILL");
    cluster.b = cluster.start_replica("b");
    for key in [&on_a, &on_b, &unseen] {
        assert_eq!(statuses(&client, &cluster, key).await, [200, 200]);
    }

    // Redis away, a replica restarted meanwhile, Redis back empty.
    redis.kill();
    cluster.a.signal("-KILL");
    cluster.a = cluster.start_replica("a");
    for key in [&on_a, &on_b, &unseen] {
        assert_eq!(statuses(&client, &cluster, key).await, [200, 200]);
    }
    redis.restart().await;
    let all = [
        (on_a.as_str(), 200),
        (on_b.as_str(), 200),
        (unseen.as_str(), 200),
    ];
    holds_for(Duration::from_secs(2), &client, &cluster, &all).await;
    eventually(
        Duration::from_secs(3),
        "the records are back in Redis",
        || {
            let redis = &redis;
            async move {
                redis
                    .keys()
                    .await
                    .iter()
                    .filter(|k| k.starts_with("tollgate:key:"))
                    .count()
                    == 3
            }
        },
    )
    .await;
    assert_logs(&cluster, &keys);
}

/// The replicas said they put keys back, never that one was deleted, and
/// never wrote a key.
fn assert_logs(cluster: &Cluster, keys: &[&String]) {
    let logs = cluster.a.log() + &cluster.b.log();
    assert!(logs.contains("Redis had lost"), "{logs}");
    assert!(!logs.contains("deleted on another replica"), "{logs}");
    for key in keys {
        assert!(!logs.contains(key.as_str()), "a key in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_stays_deleted_across_redis_and_replica_restarts() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    answer_ok(&upstream);
    let mut cluster = Cluster::start("replicas-redis-deleted", &redis, &upstream, "");
    let client = client();
    let delete = |replica: &Replica, key: &str| {
        let (client, url, body) = (
            client.clone(),
            replica.url("/key/delete"),
            json!({ "keys": [key] }).to_string(),
        );
        async move {
            let answer = call(
                &client,
                "POST",
                &url,
                body,
                &[
                    ("authorization", &bearer(MASTER_KEY)),
                    ("content-type", "application/json"),
                ],
            )
            .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
    };
    let (doomed, doomed_token) =
        generate_with_token(&client, &cluster.a, json!({"key_alias": "doomed"})).await;
    let (kept, _) = generate_with_token(&client, &cluster.a, json!({"key_alias": "kept"})).await;
    for key in [&doomed, &kept] {
        assert_eq!(statuses(&client, &cluster, key).await, [200, 200]);
    }

    delete(&cluster.b, &doomed).await;
    assert_eq!(chat(&client, &cluster.b, &doomed).await.status, 401);
    eventually(Duration::from_secs(3), "A learns the deletion", || {
        let (client, cluster, doomed) = (&client, &cluster, &doomed);
        async move { chat(client, &cluster.a, doomed).await.status == 401 }
    })
    .await;

    // Across a Redis restarted empty.
    redis.kill();
    redis.restart().await;
    let cases = [(doomed.as_str(), 401), (kept.as_str(), 200)];
    holds_for(Duration::from_secs(7), &client, &cluster, &cases).await;
    let tombstone = format!("tollgate:deleted:{doomed_token}");
    eventually(
        Duration::from_secs(3),
        "the deletion is back in Redis",
        || {
            let (redis, tombstone) = (&redis, &tombstone);
            async move { redis.get(tombstone).await.is_some() }
        },
    )
    .await;
    assert_eq!(
        redis.get(&format!("tollgate:key:{doomed_token}")).await,
        None
    );
    assert_eq!(redis.get("tollgate:alias:doomed").await, None);

    // Across a replica restart.
    cluster.a.signal("-KILL");
    cluster.a = cluster.start_replica("a");
    assert_eq!(statuses(&client, &cluster, &doomed).await, [401, 401]);
    assert_eq!(statuses(&client, &cluster, &kept).await, [200, 200]);

    // A replica down during a deletion, and Redis emptied before it is back:
    // it comes back with the key in its SQLite file, and must not bring the
    // key back to life.
    let (late, late_token) = generate_with_token(&client, &cluster.a, json!({})).await;
    assert_eq!(statuses(&client, &cluster, &late).await, [200, 200]);
    cluster.a.signal("-KILL");
    delete(&cluster.b, &late).await;
    redis.kill();
    redis.restart().await;
    let tombstone = format!("tollgate:deleted:{late_token}");
    eventually(Duration::from_secs(3), "B puts its deletions back", || {
        let (redis, tombstone) = (&redis, &tombstone);
        async move { redis.get(tombstone).await.is_some() }
    })
    .await;
    cluster.a = cluster.start_replica("a");
    let cases = [
        (late.as_str(), 401),
        (doomed.as_str(), 401),
        (kept.as_str(), 200),
    ];
    holds_for(Duration::from_secs(2), &client, &cluster, &cases).await;
    assert_eq!(redis.get(&format!("tollgate:key:{late_token}")).await, None);
}

/// `POST path` with `body`, as the master key.
async fn admin(client: &TestClient, replica: &Replica, path: &str, body: Value) -> common::Answer {
    call(
        client,
        "POST",
        &replica.url(path),
        body.to_string(),
        &[
            ("authorization", &bearer(MASTER_KEY)),
            ("content-type", "application/json"),
        ],
    )
    .await
}

/// Issue 20's item 1 through the binary: a key rotated, blocked, updated
/// and listed on one replica is so on the other at its next request — no
/// waiting for a sync — and no secret reaches a listing or a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_blocked_or_updated_key_is_so_on_both_replicas_at_once() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    answer_ok(&upstream);
    let cluster = Cluster::start(
        "replicas-lifecycle",
        &redis,
        &upstream,
        "tollgate:\n  redis_timeout: 2\n",
    );
    let client = client();
    // A key's team must exist (as in LiteLLM).
    let team = admin(&client, &cluster.b, "/team/new", json!({"team_id": "t1"})).await;
    assert_eq!(team.status, 200, "{}", team.text());
    let old = generate(
        &client,
        &cluster.a,
        json!({"key_alias": "rotating", "team_id": "t1", "user_id": "u1"}),
    )
    .await;
    assert_eq!(statuses(&client, &cluster, &old).await, [200, 200]);

    // Regenerated on A: the old secret is refused on both at once.
    let answer = admin(&client, &cluster.a, "/key/regenerate", json!({"key": old})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let rotated = answer.json();
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["key_alias"], "rotating");
    assert_eq!(rotated["team_id"], "t1");
    assert_eq!(statuses(&client, &cluster, &old).await, [401, 401]);
    assert_eq!(statuses(&client, &cluster, &new).await, [200, 200]);

    // Blocked on B: refused on A at once, with a clear error.
    let answer = admin(&client, &cluster.b, "/key/block", json!({"key": new})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["blocked"], true);
    let refused = chat(&client, &cluster.a, &new).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let error = refused.openai_error();
    assert_eq!(error["code"], "key_blocked");
    assert!(error["message"].as_str().unwrap().contains("rotating"));
    assert_eq!(statuses(&client, &cluster, &new).await, [401, 401]);
    let answer = admin(&client, &cluster.a, "/key/unblock", json!({"key": new})).await;
    assert_eq!(answer.json()["blocked"], false);
    assert_eq!(statuses(&client, &cluster, &new).await, [200, 200]);

    // Updated on A: B applies the new limit to the very next request.
    let answer = admin(
        &client,
        &cluster.a,
        "/key/update",
        json!({"key": new, "rpm_limit": 1}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["rpm_limit"], 1);
    assert!(answer.json().get("key").is_none());
    assert_eq!(chat(&client, &cluster.b, &new).await.status, 200);
    let limited = chat(&client, &cluster.a, &new).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.headers.contains_key("retry-after"));

    // Listed on B, by team: the hash, never the key.
    for query in ["team_id=t1", "team_id=t1&return_full_object=true"] {
        let answer = call(
            &client,
            "GET",
            &cluster.b.url(&format!("/key/list?{query}")),
            "",
            &[("authorization", &bearer(MASTER_KEY))],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let listed = answer.json();
        assert_eq!(listed["total_count"], 1, "{listed}");
        assert_eq!(listed["current_page"], 1);
        assert_eq!(listed["total_pages"], 1);
        let text = answer.text();
        for secret in [&old, &new] {
            assert!(!text.contains(&secret[3..]), "a key in {text}");
        }
    }
    let answer = call(
        &client,
        "GET",
        &cluster.b.url("/key/list"),
        "",
        &[("authorization", &bearer(&new))],
    )
    .await;
    assert_eq!(answer.status, 403, "admin routes need the master key");

    // Every change is in the audit log (written as it comes: give the
    // replicas' log writers a moment), by the name, never the secret.
    let actions = ["key.regenerate", "key.block", "key.unblock", "key.update"];
    eventually(Duration::from_secs(3), "the audit log is written", || {
        let logs = cluster.a.log() + &cluster.b.log();
        async move { actions.iter().all(|action| logs.contains(action)) }
    })
    .await;
    let logs = cluster.a.log() + &cluster.b.log();
    for key in [&old, &new] {
        assert!(!logs.contains(&key[3..]), "a key in the log");
    }
}

/// A chat request for the end user `user` with `key`.
async fn chat_for(client: &TestClient, replica: &Replica, key: &str, user: &str) -> common::Answer {
    let body = json!({
        "model": "gpt", "user": user,
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    call(
        client,
        "POST",
        &replica.url("/v1/chat/completions"),
        body.to_string(),
        &[
            ("authorization", &bearer(key)),
            ("content-type", "application/json"),
        ],
    )
    .await
}

/// Issue 20's acceptance 1 for end users, through the binary: an end user
/// registered on one replica is limited on both, counted together — over
/// their rpm they get a 429 + Retry-After while another end user of the
/// same key is served — and a block on one replica holds on the other at
/// its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_user_is_limited_and_blocked_on_both_replicas() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    answer_ok(&upstream);
    let mut cluster = Cluster::start(
        "replicas-end-users",
        &redis,
        &upstream,
        "tollgate:\n  redis_timeout: 2\n",
    );
    let client = client();
    let key = generate(&client, &cluster.a, json!({"key_alias": "product"})).await;
    let made = admin(
        &client,
        &cluster.a,
        "/customer/new",
        json!({"user_id": "noisy", "rpm_limit": 2}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());

    assert_eq!(
        chat_for(&client, &cluster.a, &key, "noisy").await.status,
        200
    );
    assert_eq!(
        chat_for(&client, &cluster.b, &key, "noisy").await.status,
        200
    );
    let limited = chat_for(&client, &cluster.a, &key, "noisy").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.openai_error()["code"], "rate_limit_exceeded");
    let limited = chat_for(&client, &cluster.b, &key, "noisy").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    // The quiet end user of the same key is served on both.
    assert_eq!(
        chat_for(&client, &cluster.a, &key, "quiet").await.status,
        200
    );
    assert_eq!(
        chat_for(&client, &cluster.b, &key, "quiet").await.status,
        200
    );

    // Blocked on B: refused on A at once.
    let blocked = admin(
        &client,
        &cluster.b,
        "/customer/block",
        json!({"user_ids": ["quiet"]}),
    )
    .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text());
    let refused = chat_for(&client, &cluster.a, &key, "quiet").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.openai_error()["code"], "end_user_blocked");
    let info = call(
        &client,
        "GET",
        &cluster.a.url("/customer/info?end_user_id=quiet"),
        "",
        &[("authorization", &bearer(MASTER_KEY))],
    )
    .await;
    assert_eq!(info.json()["blocked"], true, "{}", info.text());
    let list = call(
        &client,
        "GET",
        &cluster.b.url("/end_user/list"),
        "",
        &[("authorization", &bearer(MASTER_KEY))],
    )
    .await;
    assert_eq!(
        list.json().as_array().map(Vec::len),
        Some(2),
        "{}",
        list.text()
    );

    // Redis restarted empty: the replicas' copies put the end user back.
    redis.kill();
    redis.restart().await;
    for replica in [&cluster.a, &cluster.b] {
        let refused = chat_for(&client, replica, &key, "quiet").await;
        assert_eq!(refused.status, 403, "{}", refused.text());
    }
    // A replica restarted: its file has them.
    cluster.a.signal("-KILL");
    cluster.a = cluster.start_replica("a");
    let refused = chat_for(&client, &cluster.a, &key, "quiet").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(
        chat_for(&client, &cluster.a, &key, "other").await.status,
        200
    );
}
