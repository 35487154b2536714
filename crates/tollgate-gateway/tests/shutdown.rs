//! The end of a shutdown's grace period (issue 17, item 4): what still runs
//! is cut with an error a client can tell from an answer — a stream's last
//! event, a 503 before the head — and the access log and the spend ledger
//! say `shutdown`, not `client_gone` or `cancelled`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Captured, TestGateway, chat_body, client, openai_config, read_to_end, read_until, send,
    sse_data,
};
use tollgate_testkit::{Gate, Reply, Upstream, openai};

const ENV: &[(&str, &str)] = &[("UPSTREAM_KEY", "sk-test-upstream")];

/// A stream that sends one content chunk, then waits for `gate`.
fn held_stream(gate: &Gate) -> Reply {
    let chunks = openai::chunks(&["before-the-end", " never-sent"]);
    Reply::sse()
        .data(&chunks[0])
        .data(&chunks[1])
        .wait(gate)
        .data(&chunks[2])
        .data(&chunks[3])
        .done()
}

/// Asserts that the last event of a stream is the `shutdown` error, after
/// the content that went out, and without `[DONE]`.
fn assert_ends_with_the_shutdown_event(seen: &[u8]) {
    let events = sse_data(seen);
    let text = String::from_utf8_lossy(seen);
    assert!(text.contains("before-the-end"), "{text}");
    assert!(!text.contains("never-sent"), "{text}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "shutdown", "{text}");
    assert_eq!(last["error"]["type"], "server_error", "{text}");
    assert!(last["error"]["message"].is_string(), "{text}");
}

/// `(request_id, outcome)` of every row of the ledger at `path`.
fn ledger_rows(path: &Path) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = rusqlite::Connection::open(path)
        .unwrap()
        .prepare("SELECT request_id, outcome FROM spend")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

/// The access-log lines in `text`, by request id.
fn access_line(text: &str, request_id: &str) -> serde_json::Value {
    let found: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "tollgate::access" && line["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "one line for {request_id}: {text}");
    found[0].clone()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn the_grace_periods_end_cuts_streams_and_pending_answers_and_records_shutdown() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let dir = temp_dir("grace-end");
    let ledger = dir.join("ledger.sqlite3");
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    let extra = format!("tollgate:\n  ledger_path: {}\n", ledger.display());
    let mut gateway = TestGateway::start_with_grace(
        &openai_config(&upstream.url(), &extra),
        ENV,
        Duration::from_millis(300),
    )
    .await;
    let client = client();
    let url = gateway.url("/v1/chat/completions");

    // A stream that has sent part of its answer.
    upstream.push(held_stream(&gate));
    let response = send(
        &client,
        "POST",
        &url,
        chat_body("gpt-test", true),
        &[("x-request-id", "cut-stream")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "before-the-end").await;

    // A complete answer and a stream, neither of whose heads was sent: the
    // upstream does not answer before the grace period is over.
    upstream.push(
        Reply::json(200, openai::chat_completion("late")).delay_headers(Duration::from_secs(3600)),
    );
    upstream.push(Reply::sse().stall());
    let pending: Vec<_> = [("cut-json", false), ("cut-before-head", true)]
        .into_iter()
        .map(|(id, stream)| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                common::call(
                    &client,
                    "POST",
                    &url,
                    chat_body("gpt-test", stream),
                    &[("x-request-id", id)],
                )
                .await
            })
        })
        .collect();
    // Both reached the upstream before the shutdown begins.
    let mut spins = 0;
    while upstream.requests().len() < 3 {
        spins += 1;
        assert!(spins < 100_000, "the requests never reached the upstream");
        tokio::task::yield_now().await;
    }

    gateway.begin_shutdown();
    read_to_end(&mut stream, &mut seen).await;
    assert_ends_with_the_shutdown_event(&seen);
    for answer in pending {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert_eq!(answer.openai_error()["code"], "shutdown");
        assert_eq!(answer.openai_error()["type"], "server_error");
    }
    gateway.finished().await;

    assert_eq!(
        ledger_rows(&ledger),
        [
            ("cut-before-head".to_owned(), "shutdown".to_owned()),
            ("cut-json".to_owned(), "shutdown".to_owned()),
            ("cut-stream".to_owned(), "shutdown".to_owned()),
        ]
    );
    let text = logs.text();
    for (id, status) in [
        ("cut-stream", 200),
        ("cut-json", 503),
        ("cut-before-head", 503),
    ] {
        let line = access_line(&text, id);
        assert_eq!(line["outcome"], "shutdown", "{line}");
        assert_eq!(line["status"], status, "{line}");
    }
    gate.open();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_sigterm_whose_grace_period_ends_cuts_a_stream_with_the_shutdown_event() {
    let dir = temp_dir("sigterm-grace-end");
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    upstream.push(held_stream(&gate));
    let config = dir.join("config.yaml");
    let ledger = dir.join("ledger.sqlite3");
    let extra = format!(
        "tollgate:\n  ledger_path: {}\n  shutdown_grace_period: 0.3\n",
        ledger.display()
    );
    std::fs::write(&config, openai_config(&upstream.url(), &extra)).unwrap();
    let gateway = common::binary::GatewayProcess::start(&config, &dir, ENV);

    let client = client();
    let response = send(
        &client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", true),
        &[("x-request-id", "sigterm-stream")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "before-the-end").await;

    gateway.signal("-TERM");
    read_to_end(&mut stream, &mut seen).await;
    assert_ends_with_the_shutdown_event(&seen);
    let (status, log) = gateway.exited_with_log().await;
    assert!(status.success(), "{log}");

    assert_eq!(
        ledger_rows(&ledger),
        [("sigterm-stream".to_owned(), "shutdown".to_owned())]
    );
    let line = access_line(&log, "sigterm-stream");
    assert_eq!(line["outcome"], "shutdown", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    gate.open();
    let _ = std::fs::remove_dir_all(&dir);
}
