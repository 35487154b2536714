//! Deployment `rpm` limits shared by two replicas through one real Redis
//! (issue 21, item 1): exact under a concurrent burst split between the
//! replicas, the next deployment or a fallback answering for one at its
//! limit, 429 with `Retry-After` when a whole group is at its limits, and a
//! Redis outage that degrades to each replica's own count and shares again
//! once Redis is back.
//!
//! Two gateways in this process that share nothing but Redis (each builds
//! its own store, balancers and metrics from the config), a real
//! `redis-server`, testkit upstreams; all on loopback. Real time: Redis has
//! its own clock. Every limit here is 10 a minute or less, so a request
//! comes back after 6 s or more, far longer than any burst takes.

mod common;

use std::collections::HashMap;

use common::{Answer, TestClient, TestGateway, call, chat_body, client};
use tollgate_testkit::{RedisServer, Reply, Upstream, openai};

const ENV: [(&str, &str); 1] = [("UPSTREAM_KEY", "sk-upstream-secret")];

/// One testkit upstream per deployment, answering 200.
struct Upstreams(HashMap<&'static str, Upstream>);

impl Upstreams {
    async fn start(names: &[&'static str]) -> Upstreams {
        let mut upstreams = HashMap::new();
        for &name in names {
            let upstream = Upstream::start().await;
            upstream.set_default(Reply::json(200, openai::chat_completion(name)));
            upstreams.insert(name, upstream);
        }
        Upstreams(upstreams)
    }

    /// Requests upstream `name` received.
    fn seen(&self, name: &str) -> usize {
        self.0[name].requests().len()
    }

    /// A deployment of `group` with id `name` on its upstream, with extra
    /// `litellm_params` lines.
    fn deployment(&self, group: &str, name: &str, params: &str) -> String {
        format!(
            "  - model_name: {group}\n    litellm_params:\n      model: openai/{name}\n      api_base: {}/v1\n      api_key: os.environ/UPSTREAM_KEY\n{params}    model_info:\n      id: {name}\n",
            self.0[name].url()
        )
    }
}

/// Two replicas of `model_list` sharing `redis`, with `router` lines added
/// to their `router_settings`.
///
/// Their rate-limit calls to Redis may take 2 s (`tollgate.redis_timeout`)
/// rather than 50 ms: two gateways, their upstreams and the client share
/// this test's two threads, and a call that falls back to local state —
/// right when Redis is slow — counts on one replica only.
async fn replicas(
    redis: &RedisServer,
    model_list: &str,
    router: &str,
) -> (TestGateway, TestGateway) {
    let yaml = format!(
        "model_list:\n{model_list}router_settings:\n  num_retries: 0\n  redis_host: 127.0.0.1\n  redis_port: {}\n{router}tollgate:\n  redis_timeout: 2\n",
        redis.port()
    );
    (
        TestGateway::start(&yaml, &ENV).await,
        TestGateway::start(&yaml, &ENV).await,
    )
}

async fn chat(client: &TestClient, replica: &TestGateway, group: &str) -> Answer {
    call(
        client,
        "POST",
        &replica.url("/v1/chat/completions"),
        chat_body(group, false),
        &[("content-type", "application/json")],
    )
    .await
}

/// `n` requests to `group` all at once, alternating between the replicas.
async fn burst(
    client: &TestClient,
    a: &TestGateway,
    b: &TestGateway,
    group: &str,
    n: usize,
) -> Vec<Answer> {
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let url = if i % 2 == 0 { a } else { b }.url("/v1/chat/completions");
        let body = chat_body(group, false);
        requests.spawn(async move {
            call(
                &client,
                "POST",
                &url,
                body,
                &[("content-type", "application/json")],
            )
            .await
        });
    }
    requests.join_all().await
}

/// The deployment that answered.
fn deployment(answer: &Answer) -> &str {
    answer.headers["x-tollgate-deployment"].to_str().unwrap()
}

async fn metric(client: &TestClient, replica: &TestGateway, series: &str) -> f64 {
    let text = call(client, "GET", &replica.url("/metrics"), "", &[])
        .await
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_rpm_holds_exactly_across_replicas_and_the_next_one_answers() {
    let redis = RedisServer::start().await;
    let upstreams = Upstreams::start(&["one", "two"]).await;
    // Weighted by rpm: "two" has none (weight 0), so every request goes to
    // "one" while it has room.
    let model_list = upstreams.deployment("gpt", "one", "      rpm: 10\n")
        + &upstreams.deployment("gpt", "two", "");
    let (a, b) = replicas(&redis, &model_list, "").await;
    let client = client();

    let answers = burst(&client, &a, &b, "gpt", 30).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(
        upstreams.seen("one"),
        10,
        "one limit of 10 for both replicas"
    );
    assert_eq!(
        upstreams.seen("two"),
        20,
        "the rest went to the next deployment"
    );
    let by_one = answers.iter().filter(|a| deployment(a) == "one").count();
    assert_eq!(by_one, 10);
    // Both replicas sent to "one": the limit is shared, not split.
    let a_to_one = answers
        .iter()
        .step_by(2)
        .filter(|a| deployment(a) == "one")
        .count();
    assert!(a_to_one > 0 && a_to_one < 10, "A sent {a_to_one} to one");
    for replica in [&a, &b] {
        let fallbacks = metric(&client, replica, "tollgate_shared_state_fallbacks_total").await;
        assert_eq!(fallbacks, 0.0, "Redis answered every time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_at_its_limits_answers_429_with_retry_after_or_falls_back() {
    let redis = RedisServer::start().await;
    let upstreams = Upstreams::start(&["c1", "c2", "p1", "backup"]).await;
    let model_list = upstreams.deployment("capped", "c1", "      rpm: 3\n")
        + &upstreams.deployment("capped", "c2", "      rpm: 2\n")
        + &upstreams.deployment("primary", "p1", "      rpm: 2\n")
        + &upstreams.deployment("backup", "backup", "");
    let (a, b) = replicas(
        &redis,
        &model_list,
        "  fallbacks:\n    - primary: [backup]\n",
    )
    .await;
    let client = client();

    // Five requests fit the group "capped" (3 + 2); the other five are
    // refused, none of them upstream.
    let answers = burst(&client, &a, &b, "capped", 10).await;
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert_eq!(refused.len(), 5);
    assert_eq!((upstreams.seen("c1"), upstreams.seen("c2")), (3, 2));
    for answer in refused {
        assert_eq!(answer.status, 429, "{}", answer.text());
        let error = answer.openai_error();
        assert_eq!(error["type"], "rate_limit_error");
        assert!(
            error["message"].as_str().unwrap().contains("rpm/tpm limit"),
            "{error}"
        );
        // The first to have room again: c2's next request (rpm 2: in at
        // most 30 s) or c1's (rpm 3: in at most 20 s), whichever comes
        // first; never longer than a minute.
        let retry_after: u64 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
    }

    // A group with a fallback: its requests past the limit are answered
    // by the fallback group.
    for i in 0..6 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let answer = chat(&client, replica, "primary").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let expected = if i < 2 { "p1" } else { "backup" };
        assert_eq!(deployment(&answer), expected, "request {i}");
        if i >= 2 {
            assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
        }
    }
    assert_eq!((upstreams.seen("p1"), upstreams.seen("backup")), (2, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_limits_are_counted_locally_while_redis_is_away_and_shared_again() {
    let mut redis = RedisServer::start().await;
    let upstreams = Upstreams::start(&["during", "spare", "after", "spare-later"]).await;
    let model_list = upstreams.deployment("gpt", "during", "      rpm: 4\n")
        + &upstreams.deployment("gpt", "spare", "")
        + &upstreams.deployment("later", "after", "      rpm: 4\n")
        + &upstreams.deployment("later", "spare-later", "");
    let (a, b) = replicas(&redis, &model_list, "").await;
    let client = client();

    redis.kill();
    // No request fails: each replica counts the limit on its own, so
    // together they send up to twice the limit.
    for i in 0..20 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let answer = chat(&client, replica, "gpt").await;
        assert_eq!(answer.status, 200, "request {i}: {}", answer.text());
    }
    assert_eq!(upstreams.seen("during"), 8, "4 by each replica");
    for replica in [&a, &b] {
        let fallbacks = metric(&client, replica, "tollgate_shared_state_fallbacks_total").await;
        assert!(fallbacks >= 4.0, "each admission fell back: {fallbacks}");
    }

    // Redis is back (empty): one limit for both replicas again.
    redis.restart().await;
    let answers = burst(&client, &a, &b, "later", 12).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(upstreams.seen("after"), 4, "one shared limit of 4");
}

/// Script calls Redis ran (`EVALSHA` and `EVAL`), failed ones excluded: a
/// process's first `EVALSHA` of a script Redis does not have yet fails, and
/// is made again after a `SCRIPT LOAD`.
async fn script_calls(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .map(|line| {
            let field = |name: &str| -> u64 {
                line.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(name)?.parse().ok())
                    .unwrap_or(0)
            };
            field("calls=") - field("failed_calls=") - field("rejected_calls=")
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_admitted_attempt_and_none_for_a_deployment_known_to_be_full() {
    let redis = RedisServer::start().await;
    let upstreams = Upstreams::start(&["one", "two"]).await;
    let model_list = upstreams.deployment("gpt", "one", "      rpm: 10\n")
        + &upstreams.deployment("gpt", "two", "");
    let (a, _b) = replicas(&redis, &model_list, "").await;
    let client = client();
    for i in 0..15 {
        let answer = chat(&client, &a, "gpt").await;
        assert_eq!(answer.status, 200, "request {i}: {}", answer.text());
    }
    assert_eq!((upstreams.seen("one"), upstreams.seen("two")), (10, 5));
    // Ten admissions and the refusal of the eleventh; the four after it
    // went to "two" without asking (it has no limits), "one" being known
    // to be full for 6 s.
    assert_eq!(script_calls(&redis).await, 11);
}
