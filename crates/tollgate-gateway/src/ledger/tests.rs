//! The ledger end to end: a real SQLite file in a temp directory per test.
//!
//! No test sleeps to wait for the writer: they [`Ledger::flush`], shut down,
//! or wait on the writer's batch signal.

use std::time::Duration;

use ::http::{Response, StatusCode};
use bytes::Bytes;

use super::http::{spend_logs, spend_summary};

use super::*;
use crate::temp_dir::TempDir;

/// A config for a ledger in `dir` that only closes batches on flush or
/// shutdown.
fn quiet_config(dir: &TempDir) -> LedgerConfig {
    LedgerConfig {
        flush_interval: Duration::from_secs(3600),
        ..LedgerConfig::new(dir.file())
    }
}

/// Midnight UTC at the start of `y-m-d`, in unix ms.
fn midnight(y: i64, m: u32, d: u32) -> i64 {
    day::day_start_ms(tollgate_core::time::days_from_civil(y, m, d))
}

fn row(request_id: &str, attempt: u32, ts_ms: i64) -> LedgerRow {
    LedgerRow {
        request_id: request_id.into(),
        attempt,
        ts_ms,
        key: Some("team-a".into()),
        team: None,
        end_user: None,
        model_group: Some("gpt".into()),
        deployment: Some("gpt-east".into()),
        upstream_model: Some("gpt-4o-mini".into()),
        stream: false,
        outcome: Outcome::Success,
        error_class: None,
        prompt_tokens: 10,
        completion_tokens: 5,
        cached_prompt_tokens: 2,
        reasoning_tokens: 1,
        usage_estimated: false,
        cost_picos: Some(1_000_000),
        cost_source: CostSource::PriceTable,
    }
}

fn body_json(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).expect("a JSON body")
}

#[tokio::test]
async fn rows_survive_close_and_reopen() {
    let dir = TempDir::new("ledger-reopen");
    let mut first = row("r1", 1, 1_700_000_000_000);
    first.key = None;
    first.cost_picos = None;
    first.cost_source = CostSource::Unknown;
    first.outcome = Outcome::Failure;
    first.error_class = Some("rate_limited".to_owned());
    first.stream = true;
    first.usage_estimated = true;
    let second = row("r2", 2, 1_700_000_000_001);
    {
        let ledger = Ledger::open(quiet_config(&dir)).unwrap();
        ledger.handle().record(first.clone());
        ledger.handle().record(second.clone());
        ledger.shutdown().unwrap();
    }
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    let rows = ledger.logs(&LogFilter::default()).await.unwrap();
    assert_eq!(rows, [second, first]);
    assert_eq!(ledger.totals().await.unwrap(), (2, 1_000_000));
    ledger.shutdown().unwrap();
}

#[tokio::test]
async fn shutdown_flushes_a_queued_batch() {
    let dir = TempDir::new("ledger-shutdown");
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    let handle = ledger.handle();
    for i in 0..5 {
        handle.record(row(&format!("r{i}"), 1, 1_000 + i));
    }
    ledger.shutdown().unwrap();
    assert_eq!(ledger.stats().rows_written, 5);
    assert_eq!(ledger.stats().batches, 1, "one batch, written at shutdown");
    // Queries still work after shutdown; later rows are dropped and counted.
    assert_eq!(ledger.totals().await.unwrap(), (5, 5_000_000));
    handle.record(row("late", 1, 2_000));
    assert_eq!(handle.dropped(), 1);
    assert!(matches!(ledger.flush(), Err(LedgerError::Closed)));
    ledger.shutdown().unwrap();
}

#[tokio::test]
async fn flushed_rows_are_visible_to_logs() {
    let dir = TempDir::new("ledger-flush");
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    ledger.handle().record(row("r1", 1, 1_000));
    ledger.flush().unwrap();
    let rows = ledger.logs(&LogFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(&*rows[0].request_id, "r1");
    // Nothing pending: a flush is a no-op, not an empty batch.
    ledger.flush().unwrap();
    assert_eq!(ledger.stats().batches, 1);
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    // Nobody reads this queue: the third and later rows find it full.
    let (handle, queue) = writer::channel(2);
    for i in 0..5 {
        handle.record(row("r", i, 0));
    }
    assert_eq!(handle.dropped(), 3);
    assert_eq!(queue.try_iter().count(), 2);
    // A stopped writer (receiver gone) drops too, still without blocking.
    drop(queue);
    handle.record(row("r", 9, 0));
    assert_eq!(handle.dropped(), 4);
}

#[tokio::test]
async fn batch_closes_at_batch_max_rows() {
    let dir = TempDir::new("ledger-max-rows");
    let ledger = Ledger::open(LedgerConfig {
        batch_max_rows: 3,
        ..quiet_config(&dir)
    })
    .unwrap();
    for i in 0..7 {
        ledger.handle().record(row(&format!("r{i}"), 1, i));
    }
    ledger.flush().unwrap();
    // 3 + 3 closed on size, the last row by the flush.
    let stats = ledger.stats();
    assert_eq!((stats.batches, stats.rows_written), (3, 7));
}

#[tokio::test]
async fn batch_closes_after_flush_interval() {
    let dir = TempDir::new("ledger-interval");
    let ledger = Ledger::open(LedgerConfig {
        flush_interval: Duration::from_millis(20),
        ..LedgerConfig::new(dir.file())
    })
    .unwrap();
    ledger.handle().record(row("r1", 1, 0));
    // No flush: the writer's timer must close the batch. The limit only
    // bounds a broken test; the wait ends as soon as the batch commits.
    assert!(ledger.shared().wait_for_batches(1, Duration::from_secs(60)));
    assert_eq!(ledger.totals().await.unwrap().0, 1);
}

#[tokio::test]
async fn a_failed_write_is_retried_with_the_next_batch() {
    let dir = TempDir::new("ledger-retry");
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    let saboteur = rusqlite::Connection::open(dir.file()).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER no_insert BEFORE INSERT ON spend
             BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
        )
        .unwrap();
    ledger.handle().record(row("r1", 1, 0));
    assert!(matches!(
        ledger.flush(),
        Err(LedgerError::Write { rows: 1, .. })
    ));
    assert_eq!(ledger.stats().write_errors, 1);
    saboteur.execute_batch("DROP TRIGGER no_insert;").unwrap();
    ledger.handle().record(row("r2", 1, 1));
    ledger.flush().unwrap();
    let stats = ledger.stats();
    assert_eq!((stats.rows_written, stats.batches), (2, 1));
    assert_eq!(ledger.totals().await.unwrap().0, 2);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = TempDir::new("ledger-schema");
    Ledger::open(quiet_config(&dir))
        .unwrap()
        .shutdown()
        .unwrap();
    let conn = rusqlite::Connection::open(dir.file()).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, store::SCHEMA_VERSION);
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        Ledger::open(quiet_config(&dir)),
        Err(LedgerError::SchemaTooNew { found: 99, .. })
    ));
}

/// Batches above and below the multi-row insert's size (64 rows a
/// statement): every value of every row reads back as written, in order —
/// a value bound to the wrong column or row would show — and each row's
/// `day` is its own, in a statement whose rows straddle midnight too.
#[test]
fn every_value_of_a_large_batch_reads_back_as_written() {
    let dir = TempDir::new("ledger-many");
    let mut conn = store::open_writer(&dir.file()).unwrap();
    let start = midnight(2026, 11, 27);
    let outcomes = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Cancelled,
        Outcome::Shutdown,
    ];
    let rows: Vec<LedgerRow> = (0..133u32)
        .map(|i| {
            let n = u64::from(i);
            // 700 s apart: midnight falls inside the second statement.
            let mut r = row(&format!("r{i}"), i % 3 + 1, start + i64::from(i) * 700_000);
            r.key = (i % 4 != 0).then(|| format!("key-{i}").into());
            r.model_group = Some(format!("group-{i}").into());
            r.deployment = (i % 5 != 0).then(|| format!("deployment-{i}").into());
            r.upstream_model = Some(format!("model-{i}").into());
            r.stream = i % 2 == 0;
            r.outcome = outcomes[i as usize % 4];
            r.error_class = (i % 3 == 0).then(|| format!("class-{i}"));
            r.prompt_tokens = n * 11;
            r.completion_tokens = n * 13 + 1;
            r.cached_prompt_tokens = n * 7 + 2;
            r.reasoning_tokens = n * 5 + 3;
            r.usage_estimated = i % 7 == 0;
            r.cost_picos = (i % 6 != 0).then(|| n * 1_000_003 + (u64::MAX / 2) * (n % 2));
            r.cost_source = match r.cost_picos {
                Some(_) => CostSource::PriceTable,
                None => CostSource::Unknown,
            };
            r
        })
        .collect();
    // Two statements of 64 rows and two of one; then three of one.
    store::insert_batch(&mut conn, &rows[..130]).unwrap();
    store::insert_batch(&mut conn, &rows[130..]).unwrap();
    let all = LogFilter {
        limit: 1000,
        ..LogFilter::default()
    };
    let mut read = store::logs(&conn, &all).unwrap();
    read.reverse();
    assert_eq!(read, rows);
    let days: Vec<String> = conn
        .prepare("SELECT day FROM spend ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<String> = rows.iter().map(|r| day::day_of(r.ts_ms)).collect();
    assert_eq!(days, expected);
    assert_ne!(
        expected[64], expected[127],
        "a statement straddles midnight"
    );
}

#[tokio::test]
async fn a_version_1_file_gains_the_team_column_and_keeps_its_rows() {
    let dir = TempDir::new("ledger-v1");
    let path = dir.file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(store::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO spend (request_id, attempt, ts_ms, day, key_name, stream, outcome,
                prompt_tokens, completion_tokens, cached_prompt_tokens, reasoning_tokens,
                usage_estimated, cost_picos, cost_source)
             VALUES ('old', 1, 1000, '1970-01-01', 'k', 0, 'success', 1, 1, 0, 0, 0, 7,
                'price_table')",
            [],
        )
        .unwrap();
    }
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    let mut new = row("new", 1, 2_000);
    new.team = Some("search".into());
    ledger.handle().record(new.clone());
    ledger.flush().unwrap();
    let rows = ledger.logs(&LogFilter::default()).await.unwrap();
    assert_eq!(rows[0], new);
    assert_eq!(
        (&*rows[1].request_id, rows[1].team.as_deref()),
        ("old", None)
    );
    assert_eq!(
        ledger.team_billed_since("search", 0).await.unwrap(),
        1_000_000
    );
    assert_eq!(ledger.team_billed_since("search", 2_001).await.unwrap(), 0);
    let by_team = SummaryFilter {
        group_by: vec![GroupBy::Team],
        ..SummaryFilter::default()
    };
    let groups: Vec<_> = ledger
        .summary(&by_team)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.group[0].1.clone(), row.spend_picos))
        .collect();
    assert_eq!(groups, [(None, 7), (Some("search".to_owned()), 1_000_000)]);
    ledger.shutdown().unwrap();
}

/// Rows over two days, two keys, two models, two deployments.
fn fixture() -> Vec<LedgerRow> {
    let day1 = midnight(2026, 11, 27);
    let day2 = midnight(2026, 11, 28);
    let mut rows = Vec::new();
    // r1: a failed attempt then a success, on day 1, team-a, gpt.
    let mut failed = row("r1", 1, day1 + 1_000);
    failed.outcome = Outcome::Failure;
    failed.error_class = Some("rate_limited".to_owned());
    failed.cost_picos = Some(0);
    failed.cost_source = CostSource::NotBilled;
    failed.prompt_tokens = 0;
    failed.completion_tokens = 0;
    rows.push(failed);
    let mut fallback = row("r1", 2, day1 + 2_000);
    fallback.deployment = Some("gpt-west".into());
    fallback.cost_picos = Some(296_660_000);
    rows.push(fallback);
    // r2: day 1, team-b, claude, unknown price, estimated usage.
    let mut unknown = row("r2", 1, day1 + 3_000);
    unknown.key = Some("team-b".into());
    unknown.model_group = Some("claude".into());
    unknown.deployment = Some("claude-1".into());
    unknown.cost_picos = None;
    unknown.cost_source = CostSource::Unknown;
    unknown.usage_estimated = true;
    rows.push(unknown);
    // r3: the last millisecond of day 1; r4: the first of day 2.
    let mut late = row("r3", 1, day2 - 1);
    late.cost_picos = Some(12_500_000_000_000);
    rows.push(late);
    let mut early = row("r4", 1, day2);
    early.cost_picos = Some(1);
    early.outcome = Outcome::Cancelled;
    rows.push(early);
    rows
}

async fn ledger_with(dir: &TempDir, rows: Vec<LedgerRow>) -> Ledger {
    let ledger = Ledger::open(quiet_config(dir)).unwrap();
    for row in rows {
        ledger.handle().record(row);
    }
    ledger.flush().unwrap();
    ledger
}

fn filter(query: &str) -> LogFilter {
    LogFilter::from_query(Some(query)).unwrap()
}

fn ids(rows: &[LedgerRow]) -> Vec<(String, u32)> {
    rows.iter()
        .map(|row| (row.request_id.to_string(), row.attempt))
        .collect()
}

fn id(request_id: &str, attempt: u32) -> (String, u32) {
    (request_id.to_owned(), attempt)
}

#[tokio::test]
async fn logs_filter_and_page_newest_first() {
    let dir = TempDir::new("ledger-logs");
    let ledger = ledger_with(&dir, fixture()).await;
    let all = ledger.logs(&LogFilter::default()).await.unwrap();
    assert_eq!(
        ids(&all),
        [
            id("r4", 1),
            id("r3", 1),
            id("r2", 1),
            id("r1", 2),
            id("r1", 1)
        ]
    );
    let by_key = ledger.logs(&filter("api_key=team-b")).await.unwrap();
    assert_eq!(ids(&by_key), [id("r2", 1)]);
    let by_model = ledger.logs(&filter("model=gpt")).await.unwrap();
    assert_eq!(by_model.len(), 4);
    let by_deployment = ledger.logs(&filter("deployment=gpt-west")).await.unwrap();
    assert_eq!(ids(&by_deployment), [id("r1", 2)]);
    let by_request = ledger.logs(&filter("request_id=r1")).await.unwrap();
    assert_eq!(ids(&by_request), [id("r1", 2), id("r1", 1)]);
    let page = ledger.logs(&filter("limit=2&offset=1")).await.unwrap();
    assert_eq!(ids(&page), [id("r3", 1), id("r2", 1)]);
    let none = ledger.logs(&filter("key=nobody")).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn day_boundaries_are_utc() {
    let dir = TempDir::new("ledger-days");
    let ledger = ledger_with(&dir, fixture()).await;
    // 2026-11-27T23:59:59.999Z is on the 27th, 2026-11-28T00:00:00Z on the 28th.
    let day2 = ledger
        .logs(&filter("start_date=2026-11-28&end_date=2026-11-28"))
        .await
        .unwrap();
    assert_eq!(ids(&day2), [id("r4", 1)]);
    let day1 = ledger.logs(&filter("end_date=2026-11-27")).await.unwrap();
    assert_eq!(day1.len(), 4);
    assert_eq!(&*day1[0].request_id, "r3");
    let after = ledger.logs(&filter("start_date=2026-11-29")).await.unwrap();
    assert!(after.is_empty());
    let response = spend_logs(&ledger, Some("request_id=r3")).await;
    let body = body_json(&response);
    assert_eq!(body["data"][0]["timestamp"], "2026-11-27T23:59:59.999Z");
    assert_eq!(body["data"][0]["day"], "2026-11-27");
}

#[tokio::test]
async fn summary_groups_give_exact_sums() {
    let dir = TempDir::new("ledger-summary");
    let ledger = ledger_with(&dir, fixture()).await;
    let by_day = ledger
        .summary(&SummaryFilter {
            group_by: vec![GroupBy::Day],
            ..SummaryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_day.len(), 2);
    let first = &by_day[0];
    assert_eq!(first.group, [(GroupBy::Day, Some("2026-11-27".to_owned()))]);
    assert_eq!(first.requests, 3);
    assert_eq!(first.attempts, 4);
    assert_eq!(first.failed_attempts, 1);
    assert_eq!(first.cancelled_attempts, 0);
    assert_eq!(first.prompt_tokens, 30);
    assert_eq!(first.completion_tokens, 15);
    assert_eq!(first.cached_prompt_tokens, 8);
    assert_eq!(first.reasoning_tokens, 4);
    assert_eq!(first.spend_picos, 12_500_296_660_000);
    assert_eq!(first.unknown_cost_attempts, 1);
    assert_eq!(first.estimated_usage_attempts, 1);
    assert_eq!(by_day[1].spend_picos, 1);
    assert_eq!(by_day[1].cancelled_attempts, 1);
    assert_eq!(first.shutdown_attempts + by_day[1].shutdown_attempts, 0);

    let by_key_and_deployment = SummaryFilter::from_query(Some(
        "group_by=key,deployment&model=gpt&end_date=2026-11-27",
    ))
    .unwrap();
    let rows = ledger.summary(&by_key_and_deployment).await.unwrap();
    let groups: Vec<_> = rows
        .iter()
        .map(|row| (row.group.clone(), row.attempts, row.spend_picos))
        .collect();
    let team_a = || (GroupBy::Key, Some("team-a".to_owned()));
    let deployment = |name: &str| (GroupBy::Deployment, Some(name.to_owned()));
    assert_eq!(
        groups,
        [
            (
                vec![team_a(), deployment("gpt-east")],
                2,
                12_500_000_000_000
            ),
            (vec![team_a(), deployment("gpt-west")], 1, 296_660_000),
        ]
    );
}

#[tokio::test]
async fn big_values_stay_exact() {
    let dir = TempDir::new("ledger-big");
    let mut rows = Vec::new();
    for attempt in 0..3 {
        let mut big = row("big", attempt, 5);
        big.cost_picos = Some(u64::MAX);
        big.prompt_tokens = u64::MAX;
        rows.push(big);
    }
    let mut just_over = row("over", 1, 6);
    just_over.cost_picos = Some(1 << 63);
    rows.push(just_over);
    let ledger = ledger_with(&dir, rows).await;
    let read = ledger.logs(&filter("request_id=big")).await.unwrap();
    assert!(read.iter().all(|row| row.cost_picos == Some(u64::MAX)));
    assert!(read.iter().all(|row| row.prompt_tokens == u64::MAX));
    let expected = 3 * i128::from(u64::MAX) + (1 << 63);
    assert_eq!(ledger.totals().await.unwrap(), (4, expected));
    let summary = ledger.summary(&SummaryFilter::default()).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].spend_picos, expected);
    assert_eq!(summary[0].prompt_tokens, 3 * u128::from(u64::MAX) + 10);
    let response = spend_summary(&ledger, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = std::str::from_utf8(response.body()).unwrap();
    assert!(
        text.contains(&format!(r#""spend":"{}""#, picos_to_decimal_i128(expected))),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#""spend_picos":{expected}"#)),
        "{text}"
    );
    assert_eq!(picos_to_decimal_i128(expected), "64563604.257983430653");
}

#[tokio::test]
async fn http_renders_json_with_exact_spend() {
    let dir = TempDir::new("ledger-http");
    let ledger = ledger_with(&dir, fixture()).await;
    let response = spend_logs(&ledger, Some("request_id=r1&limit=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = body_json(&response);
    let entry = &body["data"][0];
    assert_eq!(entry["request_id"], "r1");
    assert_eq!(entry["attempt"], 2);
    assert_eq!(entry["spend"], "0.00029666");
    assert_eq!(entry["spend_picos"], 296_660_000);
    assert_eq!(entry["cost_source"], "price_table");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    let unknown = body_json(&spend_logs(&ledger, Some("key=team-b")).await);
    assert_eq!(unknown["data"][0]["spend"], serde_json::Value::Null);
    assert_eq!(unknown["data"][0]["spend_picos"], serde_json::Value::Null);

    let response = spend_summary(&ledger, Some("group_by=model,day")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(&response);
    assert_eq!(body["group_by"], serde_json::json!(["model", "day"]));
    let first = &body["data"][0];
    assert_eq!(first["model"], "claude");
    assert_eq!(first["day"], "2026-11-27");
    assert_eq!(first["spend"], "0");
    assert_eq!(first["unknown_cost_attempts"], 1);
    let gpt_day1 = &body["data"][1];
    assert_eq!(gpt_day1["spend"], "12.50029666");
    assert_eq!(gpt_day1["spend_picos"], 12_500_296_660_000_u64);
    assert!(gpt_day1.get("key").is_none());
}

#[tokio::test]
async fn bad_queries_are_400s_naming_the_param() {
    let dir = TempDir::new("ledger-bad");
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    let cases = [
        (true, "start_date=2026-13-01", "start_date"),
        (true, "end_date=tomorrow", "end_date"),
        (true, "limit=many", "limit"),
        (true, "offset=-3", "offset"),
        (true, "team=x", "team"),
        (false, "group_by=day,user", "group_by"),
        (
            false,
            "start_date=2026-11-02&end_date=2026-11-01",
            "end_date",
        ),
        (false, "limit=10", "limit"),
    ];
    for (logs, query, param) in cases {
        let response = if logs {
            spend_logs(&ledger, Some(query)).await
        } else {
            spend_summary(&ledger, Some(query)).await
        };
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = body_json(&response);
        assert_eq!(body["error"]["type"], "invalid_request_error", "{query}");
        assert_eq!(body["error"]["param"], param, "{query}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn attempts_cut_by_the_shutdown_are_kept_apart_from_those_clients_left() {
    let dir = TempDir::new("ledger-shutdown");
    let mut rows = vec![
        row("left", 1, 1_000),
        row("cut", 1, 2_000),
        row("cut", 2, 3_000),
    ];
    rows[0].outcome = Outcome::Cancelled;
    rows[1].outcome = Outcome::Shutdown;
    rows[2].outcome = Outcome::Shutdown;
    let ledger = ledger_with(&dir, rows).await;
    let summary = ledger.summary(&SummaryFilter::default()).await.unwrap();
    let total = |f: fn(&SummaryRow) -> u64| summary.iter().map(f).sum::<u64>();
    assert_eq!(total(|r| r.cancelled_attempts), 1);
    assert_eq!(total(|r| r.shutdown_attempts), 2);
    assert_eq!(total(|r| r.failed_attempts), 0);
    let read = ledger.logs(&LogFilter::default()).await.unwrap();
    let outcomes: Vec<_> = read.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Shutdown, Outcome::Shutdown, Outcome::Cancelled],
        "newest first, read back as written"
    );
    let response = spend_summary(&ledger, Some("group_by=key")).await;
    assert_eq!(body_json(&response)["data"][0]["shutdown_attempts"], 2);
}

/// A file written before the `end_user` column keeps its rows, which have
/// no end user, and takes new rows with one.
#[tokio::test]
async fn a_version_1_file_is_migrated_to_the_end_user_column() {
    let dir = TempDir::new("ledger-v1");
    std::fs::create_dir_all(dir.file().parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(dir.file()).unwrap();
    conn.execute_batch(store::MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO spend (request_id, attempt, ts_ms, day, key_name, stream, outcome,
            prompt_tokens, completion_tokens, cached_prompt_tokens, reasoning_tokens,
            usage_estimated, cost_picos, cost_source)
         VALUES ('old', 1, 1000, '1970-01-01', 'team-a', 0, 'success', 1, 1, 0, 0, 0, 5,
            'price_table')",
        [],
    )
    .unwrap();
    drop(conn);
    let ledger = Ledger::open(quiet_config(&dir)).unwrap();
    let mut new = row("new", 1, 2_000);
    new.end_user = Some("alice".into());
    ledger.handle().record(new);
    ledger.flush().unwrap();
    let rows = ledger.logs(&LogFilter::default()).await.unwrap();
    let users: Vec<_> = rows.iter().map(|r| r.end_user.as_deref()).collect();
    assert_eq!(users, [Some("alice"), None]);
    assert_eq!(
        ledger.billed_to_end_user_since("alice", 0).await.unwrap(),
        1_000_000
    );
    let by_user = SummaryFilter {
        group_by: vec![GroupBy::EndUser],
        ..SummaryFilter::default()
    };
    let sums: Vec<_> = ledger
        .summary(&by_user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.group[0].1.clone(), s.spend_picos))
        .collect();
    assert_eq!(sums, [(None, 5), (Some("alice".to_owned()), 1_000_000)]);
}
