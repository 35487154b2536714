//! Config reload without a restart (issue 19, item 3): a reload under load
//! drops no request and no stream; an invalid config leaves the old one
//! serving, logged and counted; a rotated upstream key is used for the next
//! request; an open breaker stays open across a reload that does not touch
//! its deployment. Real loopback sockets; the last test sends `SIGHUP` to
//! the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::binary::GatewayProcess;
use common::{Captured, TestGateway, call, chat_body, client, send, sse_data, streamed_text};
use http_body_util::BodyExt;
use tollgate_gateway::config;
use tollgate_gateway::reload::ConfigFile;
use tollgate_testkit::{Gate, Reply, Upstream, openai};

const MASTER: &str = "sk-master-reload-test";

/// A config with the master key and one OpenAI-compatible deployment per
/// `(group, id, api_base, key)`, retries and breakers as given in `router`.
fn config_yaml(deployments: &[(&str, &str, &str, &str)], router: &str) -> String {
    let mut yaml = format!("general_settings:\n  master_key: {MASTER}\nmodel_list:\n");
    for (group, id, base, key) in deployments {
        yaml.push_str(&format!(
            "  - model_name: {group}\n    litellm_params:\n      model: openai/gpt-4o-mini\n      \
             api_base: {base}/v1\n      api_key: {key}\n    model_info:\n      id: {id}\n"
        ));
    }
    yaml.push_str(router);
    yaml
}

fn load(yaml: &str) -> config::Config {
    config::load_str(yaml, &|_| None)
        .unwrap_or_else(|error| panic!("test config does not load: {error}"))
        .config
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stream of "Hello" and " world" that holds after its first chunk until
/// `gate` opens.
fn held_stream(gate: &Gate) -> Reply {
    let chunks = openai::chunks(&["Hello", " world"]);
    let mut reply = Reply::sse().data(&chunks[0]).data(&chunks[1]).wait(gate);
    for chunk in &chunks[2..] {
        reply = reply.data(chunk);
    }
    reply.data(openai::usage_chunk(5, 2)).done()
}

/// The bearer token each recorded upstream request carried, in order.
fn bearers(upstream: &Upstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect()
}

/// `tollgate_config_reloads_total{result}` as `/metrics` shows it.
fn reloads(metrics: &str, result: &str) -> u64 {
    let series = format!("tollgate_config_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

async fn metrics_text(client: &common::TestClient, url: &str) -> String {
    let bearer = format!("Bearer {MASTER}");
    let answer = call(client, "GET", url, "", &[("authorization", &bearer)]).await;
    assert_eq!(answer.status, 200);
    answer.text()
}

#[tokio::test]
async fn a_reload_under_load_drops_no_request_and_no_stream() {
    const STREAMS: usize = 4;
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 15;
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    for _ in 0..STREAMS {
        upstream.push(held_stream(&gate));
    }
    upstream.set_default(Reply::json(200, openai::chat_completion("pong")));
    let before = config_yaml(&[("gpt-test", "primary", &upstream.url(), "sk-old")], "");
    let gateway = TestGateway::start(&before, &[]).await;
    let client = client();
    let bearer = format!("Bearer {MASTER}");
    let headers = [("authorization", bearer.as_str())];
    let url = gateway.url("/v1/chat/completions");

    // Streams that are mid-answer when the reload lands.
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let response = send(&client, "POST", &url, chat_body("gpt-test", true), &headers).await;
        assert_eq!(response.status(), 200);
        streams.push(response.into_body());
    }
    upstream.wait_for_requests(STREAMS).await;

    // Requests in a bounded loop on a few connections while it lands.
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..PER_WORKER {
                    let body = chat_body("gpt-test", false);
                    let answer =
                        call(&client, "POST", &url, body, &[("authorization", &bearer)]).await;
                    statuses.push((answer.status, answer.text()));
                }
                statuses
            })
        })
        .collect();
    upstream.wait_for_requests(STREAMS + WORKERS * 2).await;

    // The new config: the key rotated, a group added.
    let after = config_yaml(
        &[
            ("gpt-test", "primary", &upstream.url(), "sk-new"),
            ("gpt-extra", "extra", &upstream.url(), "sk-new"),
        ],
        "",
    );
    let reloaded = gateway.gateway.reload_config(&load(&after)).unwrap();
    assert_eq!((reloaded.kept, reloaded.added, reloaded.removed), (1, 1, 0));
    gate.open();

    for worker in workers {
        for (status, text) in worker.await.unwrap() {
            assert_eq!(status, 200, "{text}");
            assert!(text.contains("pong"), "{text}");
        }
    }
    for mut stream in streams {
        let mut seen = Vec::new();
        while let Some(frame) = stream.frame().await {
            let frame = frame.expect("the stream ends cleanly");
            if let Ok(data) = frame.into_data() {
                seen.extend_from_slice(&data);
            }
        }
        let events = sse_data(&seen);
        assert_eq!(streamed_text(&events), "Hello world");
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    // Requests that began before the reload kept their key; the first one
    // after it has the new one.
    let keys = bearers(&upstream);
    assert!(
        keys[..STREAMS].iter().all(|k| k == "Bearer sk-old"),
        "{keys:?}"
    );
    let answer = call(
        &client,
        "POST",
        &url,
        chat_body("gpt-extra", false),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(bearers(&upstream).last().unwrap(), "Bearer sk-new");
    gateway.shutdown().await;
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn an_invalid_config_leaves_the_old_one_serving_logged_and_counted() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let dir = temp_dir("reload-invalid");
    let path = dir.join("config.yaml");
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("pong")));
    let valid = config_yaml(
        &[("gpt-test", "primary", &upstream.url(), "sk-upstream-1")],
        "",
    );
    std::fs::write(&path, &valid).unwrap();
    let gateway = TestGateway::start(&valid, &[]).await;
    gateway.gateway.reload_from(ConfigFile::new(&path));
    let client = client();
    let bearer = format!("Bearer {MASTER}");
    let headers = [("authorization", bearer.as_str())];

    // Not YAML; then YAML that names an unknown strategy; then a config
    // that loads but cannot be built (a header name with a space).
    let broken = [
        "model_list: [\n".to_owned(),
        format!("{valid}router_settings:\n  routing_strategy: fastest-please\n"),
        valid.replace(
            "      api_key: sk-upstream-1\n",
            "      api_key: sk-upstream-2\n      extra_headers:\n        bad name: x\n",
        ),
    ];
    for (n, text) in broken.iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let answer = call(
            &client,
            "POST",
            &gateway.url("/config/reload"),
            "",
            &headers,
        )
        .await;
        assert_eq!(answer.status, 422, "{}", answer.text());
        let error = answer.openai_error();
        assert_eq!(error["code"], "invalid_config");
        let metrics = metrics_text(&client, &gateway.url("/metrics")).await;
        assert_eq!(reloads(&metrics, "failure"), n as u64 + 1);
        assert_eq!(reloads(&metrics, "success"), 0);

        let url = gateway.url("/v1/chat/completions");
        let answer = call(
            &client,
            "POST",
            &url,
            chat_body("gpt-test", false),
            &headers,
        )
        .await;
        assert_eq!(
            answer.status,
            200,
            "the old config serves: {}",
            answer.text()
        );
        assert_eq!(bearers(&upstream).last().unwrap(), "Bearer sk-upstream-1");
    }
    let log = logs.text();
    assert_eq!(log.matches("config reload failed").count(), 3, "{log}");
    assert!(
        log.contains("routing_strategy"),
        "the error names the key: {log}"
    );
    assert!(!log.contains("sk-upstream"), "no secret in the log: {log}");

    // A valid file again: applied.
    std::fs::write(&path, valid.replace("sk-upstream-1", "sk-upstream-3")).unwrap();
    let answer = call(
        &client,
        "POST",
        &gateway.url("/config/reload"),
        "",
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["deployments"]["kept"], 1);
    let metrics = metrics_text(&client, &gateway.url("/metrics")).await;
    assert_eq!(reloads(&metrics, "success"), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_reload_endpoint_is_for_the_master_key_and_says_what_needs_a_restart() {
    let dir = temp_dir("reload-endpoint");
    let path = dir.join("config.yaml");
    let upstream = Upstream::start().await;
    let before = config_yaml(&[("gpt-test", "primary", &upstream.url(), "sk-1")], "");
    let gateway = TestGateway::start(&before, &[]).await;
    let client = client();
    let url = gateway.url("/config/reload");
    let bearer = format!("Bearer {MASTER}");
    let master = [("authorization", bearer.as_str())];

    let answer = call(&client, "POST", &url, "", &[]).await;
    assert_eq!(answer.status, 401, "{}", answer.text());
    let answer = call(&client, "GET", &url, "", &master).await;
    assert_eq!(answer.status, 405, "{}", answer.text());
    // Started without a file: nothing to read.
    let answer = call(&client, "POST", &url, "", &master).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert_eq!(answer.openai_error()["code"], "no_config_file");

    gateway.gateway.reload_from(ConfigFile::new(&path));
    let after = format!("{before}tollgate:\n  max_connections: 7\n");
    std::fs::write(&path, after).unwrap();
    let answer = call(&client, "POST", &url, "", &master).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["restart_required"],
        serde_json::json!(["tollgate.max_connections"])
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_open_breaker_stays_open_across_a_reload_that_does_not_touch_it() {
    let down = Upstream::start().await;
    down.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    let up = Upstream::start().await;
    up.set_default(Reply::json(200, openai::chat_completion("pong")));
    let moved = Upstream::start().await;
    moved.set_default(Reply::json(200, openai::chat_completion("moved")));
    let router = "router_settings:\n  num_retries: 0\n  allowed_fails: 0\n  cooldown_time: 600\n";
    let before = config_yaml(
        &[
            ("flaky", "flaky-a", &down.url(), "sk-a"),
            ("steady", "steady-b", &up.url(), "sk-b"),
            ("moving", "moving-c", &down.url(), "sk-c"),
        ],
        router,
    );
    let gateway = TestGateway::start(&before, &[]).await;
    let client = client();
    let bearer = format!("Bearer {MASTER}");
    let headers = [("authorization", bearer.as_str())];
    let url = gateway.url("/v1/chat/completions");
    for group in ["flaky", "moving"] {
        let answer = call(&client, "POST", &url, chat_body(group, false), &headers).await;
        assert_eq!(answer.status, 502, "the upstream's 503: {}", answer.text());
    }
    let breakers = |text: String| -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        body["circuit_breakers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["key"].as_str().unwrap().to_owned(), b["state"].clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let states = breakers(
        call(
            &client,
            "GET",
            &gateway.url("/health/circuit-breakers"),
            "",
            &headers,
        )
        .await
        .text(),
    );
    assert_eq!(states["flaky-a"], "open", "{states}");
    assert_eq!(states["moving-c"], "open", "{states}");

    // The steady deployment's key rotates, the moving one gets another
    // upstream, a group is added; the flaky one is untouched.
    let after = config_yaml(
        &[
            ("flaky", "flaky-a", &down.url(), "sk-a"),
            ("steady", "steady-b", &up.url(), "sk-b2"),
            ("moving", "moving-c", &moved.url(), "sk-c"),
            ("added", "added-d", &up.url(), "sk-d"),
        ],
        router,
    );
    gateway.gateway.reload_config(&load(&after)).unwrap();
    let states = breakers(
        call(
            &client,
            "GET",
            &gateway.url("/health/circuit-breakers"),
            "",
            &headers,
        )
        .await
        .text(),
    );
    assert_eq!(states["flaky-a"], "open", "kept, and still open: {states}");
    assert_eq!(
        states["moving-c"], "closed",
        "a new upstream starts fresh: {states}"
    );
    assert_eq!(states["added-d"], "closed", "{states}");

    // The open breaker still keeps requests off its upstream.
    let calls = down.requests().len();
    let answer = call(&client, "POST", &url, chat_body("flaky", false), &headers).await;
    let error = answer.openai_error();
    assert_eq!(answer.status, 503, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("available"),
        "{error}"
    );
    assert_eq!(down.requests().len(), calls, "no call while open");
    let answer = call(&client, "POST", &url, chat_body("moving", false), &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("moved"));
    gateway.shutdown().await;
}

/// Polls the process's `/metrics` until `result` reloads are counted.
async fn wait_for_reloads(
    client: &common::TestClient,
    gateway: &GatewayProcess,
    result: &str,
    count: u64,
) {
    let url = gateway.url("/metrics");
    for _ in 0..500 {
        if reloads(&metrics_text(client, &url).await, result) >= count {
            return;
        }
        // Waiting on another process's signal handler, not on time itself.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {result} reload counted: {}", gateway.log());
}

async fn chat_through(client: &common::TestClient, gateway: &GatewayProcess) -> common::Answer {
    let bearer = format!("Bearer {MASTER}");
    let url = gateway.url("/v1/chat/completions");
    call(
        client,
        "POST",
        &url,
        chat_body("gpt-test", false),
        &[("authorization", &bearer)],
    )
    .await
}

fn write(path: &Path, text: &str) {
    // Written aside and renamed, as a config management tool does: the
    // reload never reads half a file.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_binary_rotates_the_key_and_survives_a_bad_file() {
    let dir = temp_dir("reload-sighup");
    let path = dir.join("config.yaml");
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("pong")));
    let yaml = |key: &str| config_yaml(&[("gpt-test", "primary", &upstream.url(), key)], "");
    write(&path, &yaml("sk-rotate-old"));
    let gateway = GatewayProcess::start(&path, &dir, &[]);
    let client = client();

    assert_eq!(chat_through(&client, &gateway).await.status, 200);
    assert_eq!(bearers(&upstream).last().unwrap(), "Bearer sk-rotate-old");

    write(&path, &yaml("sk-rotate-new"));
    gateway.signal("-HUP");
    wait_for_reloads(&client, &gateway, "success", 1).await;
    assert_eq!(chat_through(&client, &gateway).await.status, 200);
    assert_eq!(bearers(&upstream).last().unwrap(), "Bearer sk-rotate-new");

    write(&path, "model_list: [\n");
    gateway.signal("-HUP");
    wait_for_reloads(&client, &gateway, "failure", 1).await;
    let answer = chat_through(&client, &gateway).await;
    assert_eq!(
        answer.status,
        200,
        "the old config serves: {}",
        answer.text()
    );
    assert_eq!(bearers(&upstream).last().unwrap(), "Bearer sk-rotate-new");

    gateway.signal("-TERM");
    let (status, log) = gateway.exited_with_log().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("config reloaded"), "{log}");
    assert!(log.contains("config reload failed"), "{log}");
    assert!(!log.contains("sk-rotate"), "no key in the log: {log}");
}
