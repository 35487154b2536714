//! The spend ledger across restarts of the real binary (issue 5's
//! acceptance 3): after SIGTERM every record is kept; after `kill -9`, every
//! record the ledger had committed is.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::binary::GatewayProcess as Gateway;
use common::{TestClient, call, chat_body, client};

const REQUESTS: u64 = 25;

fn write_config(dir: &Path, flush_interval_secs: f64) -> PathBuf {
    let path = dir.join("config.yaml");
    let yaml = format!(
        "model_list:
  - model_name: demo
    litellm_params:
      model: mock/demo-model
      mock_response: \"Hello\"
    model_info:
      id: demo-1
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
tollgate:
  ledger_path: {}
  ledger_flush_interval: {flush_interval_secs}
",
        dir.join("ledger.sqlite3").display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn send_requests(client: &TestClient, gateway: &Gateway, n: u64) {
    for i in 0..n {
        let answer = call(
            client,
            "POST",
            &gateway.url("/v1/chat/completions"),
            chat_body("demo", i % 2 == 1),
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
}

/// Successful attempts the ledger holds (read through the gateway).
async fn ledger_successes(client: &TestClient, gateway: &Gateway) -> u64 {
    let summary = call(
        client,
        "GET",
        &gateway.url("/spend/summary?group_by=model"),
        "",
        &[],
    )
    .await
    .json();
    summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["attempts"].as_u64().unwrap() - row["failed_attempts"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_ledger_keeps_every_record_across_sigterm_and_its_commits_across_kill_9() {
    let dir = std::env::temp_dir().join(format!("tollgate-ledger-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client = client();

    // SIGTERM: the gateway drains, then writes what the ledger still holds
    // — with a flush interval of a minute, nothing was written before.
    let config = write_config(&dir, 60.0);
    let gateway = Gateway::start(&config, &dir, &[]);
    send_requests(&client, &gateway, REQUESTS).await;
    gateway.signal("-TERM");
    let (status, log) = gateway.exited_with_log().await;
    assert!(status.success());
    // The JSON access log, written without `tracing`'s formatter: one
    // complete line per request, in order, flushed at exit.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "tollgate::access")
        .collect();
    assert_eq!(access.len() as u64, REQUESTS, "{log}");
    for (i, line) in access.iter().enumerate() {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["message"], "request", "{line}");
        assert_eq!(line["route"], "chat_completions", "{line}");
        assert_eq!(line["model"], "demo", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["outcome"], "ok", "{line}");
        assert_eq!(line["stream"], i % 2 == 1, "{line}");
        assert!(line["completion_tokens"].as_u64().unwrap() > 0, "{line}");
        assert!(line["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");
        assert!(
            line["request_id"].as_str().unwrap().starts_with("tg-"),
            "{line}"
        );
    }
    let config = write_config(&dir, 0.05);
    let gateway = Gateway::start(&config, &dir, &[]);
    assert_eq!(ledger_successes(&client, &gateway).await, REQUESTS);

    // kill -9: nothing runs at exit, so what counts is what was committed —
    // at most one flush interval (50 ms here, 1 s by default) behind the
    // answers. Once the ledger shows the new records, they survive.
    send_requests(&client, &gateway, REQUESTS).await;
    let mut seen = 0;
    for _ in 0..500 {
        seen = ledger_successes(&client, &gateway).await;
        if seen == 2 * REQUESTS {
            break;
        }
        // Waiting on another process's writer thread, not on time itself.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 2 * REQUESTS, "committed within the flush interval");
    gateway.signal("-KILL");
    assert!(!gateway.exited().await.success());
    let gateway = Gateway::start(&config, &dir, &[]);
    assert_eq!(ledger_successes(&client, &gateway).await, 2 * REQUESTS);
    drop(gateway);
    let _ = std::fs::remove_dir_all(dir);
}
