//! Cost accounting through the whole gateway (issue 5's acceptance 2):
//! the spend ledger's total is exactly the sum of the answers' costs, and
//! failed attempts are in it as attempts with nothing billed.
//!
//! Real loopback sockets: testkit upstreams, the gateway served by
//! `tollgate_gateway::serve`.

mod common;

use common::{TestGateway, call, chat_body, client, sse_data};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, openai};

/// `input_cost_per_token` / `output_cost_per_token` of the two groups, in
/// pico-dollars (1e-12 $): the prices below, exactly.
const PRIMARY_IN: u64 = 2_500_000; // 0.0000025
const PRIMARY_OUT: u64 = 10_000_000; // 0.00001
const BACKUP_IN: u64 = 150_000; // 0.00000015
const BACKUP_OUT: u64 = 600_000; // 0.0000006

fn config(primary: &Upstream, backup: &Upstream, ledger: &std::path::Path) -> String {
    format!(
        "model_list:
  - model_name: primary
    litellm_params:
      model: openai/primary-model
      api_base: {}/v1
      api_key: os.environ/KEY
    model_info:
      id: primary-1
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: backup
    litellm_params:
      model: openai/backup-model
      api_base: {}/v1
      api_key: os.environ/KEY
    model_info:
      id: backup-1
      input_cost_per_token: 0.00000015
      output_cost_per_token: 0.0000006
router_settings:
  num_retries: 0
  cooldown_time: 0
  fallbacks:
    - primary: [\"backup\"]
tollgate:
  ledger_path: {}
",
        primary.url(),
        backup.url(),
        ledger.display()
    )
}

fn stream_reply(prompt: u64, completion: u64) -> Reply {
    Reply::sse()
        .data_each(openai::chunks(&["Hel", "lo"]))
        .data(openai::usage_chunk(prompt, completion))
        .done()
}

fn unavailable() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

/// A fresh directory for one test's ledger.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Exact decimal text of pico-dollars, as the gateway writes money.
fn picos_text(picos: u64) -> String {
    let whole = picos / 1_000_000_000_000;
    let frac = picos % 1_000_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:012}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[tokio::test]
async fn the_ledger_total_is_the_sum_of_the_answers_costs() {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let dir = temp_dir("spend-e2e");
    let ledger = dir.join("ledger.sqlite3");
    let gateway =
        TestGateway::start(&config(&primary, &backup, &ledger), &[("KEY", "sk-up")]).await;
    let client = client();

    // Twelve requests: complete answers, streams (the client asks for usage
    // on every other one), and answers the primary fails with a 503 so the
    // backup gives them.
    let mut expected_picos: u64 = 0;
    let mut failed_attempts = 0;
    for i in 0..12u64 {
        let stream = i % 3 == 1;
        let fails_over = i % 3 == 2;
        let (prompt, completion) = (10 + i, 20 + 2 * i);
        if fails_over {
            primary.push(unavailable());
            failed_attempts += 1;
            let mut body = openai::chat_completion("from the backup");
            body["usage"] = openai::usage(prompt, completion);
            backup.push(Reply::json(200, body));
        } else if stream {
            primary.push(stream_reply(prompt, completion));
        } else {
            let mut body = openai::chat_completion("from the primary");
            body["usage"] = openai::usage(prompt, completion);
            primary.push(Reply::json(200, body));
        }
        let mut body: Value = serde_json::from_str(&chat_body("primary", stream)).unwrap();
        let client_asks_usage = stream && i % 2 == 0;
        if client_asks_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let answer = call(
            &client,
            "POST",
            &gateway.url("/v1/chat/completions"),
            body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let (price_in, price_out) = if fails_over {
            (BACKUP_IN, BACKUP_OUT)
        } else {
            (PRIMARY_IN, PRIMARY_OUT)
        };
        let cost = prompt * price_in + completion * price_out;
        expected_picos += cost;
        if stream {
            // The stream carries the usage chunk only when the client asked.
            let events = sse_data(&answer.body);
            let usage_chunks = events.iter().filter(|e| e.contains("\"usage\":{")).count();
            assert_eq!(usage_chunks, usize::from(client_asks_usage), "{events:?}");
        } else {
            // A complete answer says what it cost, exactly.
            assert_eq!(
                answer.headers["x-tollgate-response-cost"].to_str().unwrap(),
                picos_text(cost),
                "request {i}"
            );
        }
    }
    // Every streamed request asked the upstream for its usage.
    for request in primary.requests() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        if body["stream"] == json!(true) {
            assert_eq!(body["stream_options"]["include_usage"], json!(true));
        }
    }

    gateway.gateway.flush_spend().await;
    let summary = call(
        &client,
        "GET",
        &gateway.url("/spend/summary?group_by=model"),
        "",
        &[],
    )
    .await
    .json();
    let rows = summary["data"].as_array().unwrap();
    let total: u64 = rows
        .iter()
        .map(|row| row["spend_picos"].as_u64().unwrap())
        .sum();
    assert_eq!(total, expected_picos, "{summary}");
    let group = |name: &str| rows.iter().find(|r| r["model"] == name).unwrap().clone();
    // Every request tried the primary; the failed ones went on to the backup.
    assert_eq!(group("primary")["requests"], 12, "{summary}");
    assert_eq!(
        group("primary")["failed_attempts"],
        failed_attempts,
        "{summary}"
    );
    assert_eq!(group("backup")["requests"], failed_attempts, "{summary}");
    assert_eq!(group("backup")["failed_attempts"], 0, "{summary}");

    // The failed attempts: recorded, nothing billed.
    let logs = call(
        &client,
        "GET",
        &gateway.url("/spend/logs?model=primary&limit=1000"),
        "",
        &[],
    )
    .await
    .json();
    let failures: Vec<&Value> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["outcome"] == "failure")
        .collect();
    assert_eq!(failures.len() as u64, failed_attempts);
    for row in failures {
        assert_eq!(row["spend"], "0", "{row}");
        assert_eq!(row["spend_picos"], 0, "{row}");
        assert_eq!(row["cost_source"], "not_billed", "{row}");
        assert_eq!(row["error_class"], "upstream_unavailable", "{row}");
    }
    // Each answer's request id joins its attempts: the failed one and the
    // backup's answer share one.
    let all = call(
        &client,
        "GET",
        &gateway.url("/spend/logs?limit=1000"),
        "",
        &[],
    )
    .await
    .json();
    let rows = all["data"].as_array().unwrap();
    for failure in rows.iter().filter(|r| r["outcome"] == "failure") {
        let id = &failure["request_id"];
        assert!(
            rows.iter().any(|r| &r["request_id"] == id
                && r["outcome"] == "success"
                && r["model"] == "backup"),
            "{id} was answered by the backup"
        );
    }
    // The same attempts, as the providers' health sees them.
    let health = call(&client, "GET", &gateway.url("/health/providers"), "", &[])
        .await
        .json();
    let provider = |id: &str| {
        health["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["deployment"] == id)
            .unwrap()
            .clone()
    };
    let primary = provider("primary-1");
    assert_eq!(primary["recent"]["attempts"], 12, "{health}");
    assert_eq!(primary["recent"]["failures"], failed_attempts, "{health}");
    assert_eq!(primary["last_error"]["class"], "upstream_unavailable");
    assert!(primary["last_success_unix_ms"].as_i64().unwrap() > 0);
    let backup = provider("backup-1");
    assert_eq!(backup["recent"]["attempts"], failed_attempts, "{health}");
    assert_eq!(backup["recent"]["error_rate"], 0.0, "{health}");
    assert!(backup["last_error"].is_null(), "{health}");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn spend_endpoints_need_the_master_key_and_never_show_it() {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let dir = temp_dir("spend-auth");
    let yaml = format!(
        "{}general_settings:\n  master_key: sk-master-secret\n",
        config(&primary, &backup, &dir.join("ledger.sqlite3"))
    );
    let gateway = TestGateway::start(&yaml, &[("KEY", "sk-up")]).await;
    let client = client();
    primary.push(Reply::json(200, openai::chat_completion("hi")));
    let auth = [("authorization", "Bearer sk-master-secret")];
    let answer = call(
        &client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("primary", false),
        &auth,
    )
    .await;
    assert_eq!(answer.status, 200);
    gateway.gateway.flush_spend().await;
    for path in ["/spend/logs", "/spend/summary"] {
        let refused = call(&client, "GET", &gateway.url(path), "", &[]).await;
        assert_eq!(refused.status, 401, "{path}");
        let answer = call(&client, "GET", &gateway.url(path), "", &auth).await;
        assert_eq!(answer.status, 200, "{path}");
        let text = answer.text();
        assert!(
            !text.contains("sk-master-secret") && !text.contains("sk-up"),
            "{text}"
        );
    }
    let bad = call(
        &client,
        "GET",
        &gateway.url("/spend/logs?start_date=yesterday"),
        "",
        &auth,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.openai_error()["param"], "start_date");
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
