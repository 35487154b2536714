//! The end users' two stores: a copy never overwrites a newer one, in the
//! SQLite table or in Redis (a real `redis-server`), and a row this gateway
//! cannot read is skipped, not taken for an end user.

use std::time::Duration;

use tollgate_testkit::RedisServer;

use super::{Redis, Sqlite};
use crate::end_users::record::EndUser;
use crate::temp_dir::TempDir;

fn alice(rpm: u32, updated_at_ms: i64) -> EndUser {
    let mut record = EndUser::new("alice".into(), 1_000);
    record.rpm_limit = Some(rpm);
    record.updated_at_ms = updated_at_ms;
    record
}

#[tokio::test]
async fn the_table_keeps_the_newest_copy_and_skips_rows_it_cannot_read() {
    let dir = TempDir::new("end-users-store");
    let path = dir.file();
    let table = Sqlite::open(&path).unwrap();
    table.put_async(alice(10, 2_000)).await.unwrap();
    table.put(&alice(5, 1_500)).unwrap();
    let loaded = table.load().unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].rpm_limit, Some(10), "an older copy does not win");
    table.put(&alice(20, 3_000)).unwrap();
    assert_eq!(table.load().unwrap()[0].rpm_limit, Some(20));

    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO end_users (user_id, record, updated_at_ms) VALUES ('bob', '{x', 1)",
            [],
        )
        .unwrap();
    let loaded = Sqlite::open(&path).unwrap().load().unwrap();
    assert_eq!(
        loaded
            .iter()
            .map(|u| u.user_id.as_str())
            .collect::<Vec<_>>(),
        ["alice"]
    );
}

#[tokio::test]
async fn redis_keeps_the_newest_copy() {
    let server = RedisServer::start().await;
    let client = redis::Client::open(server.url()).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
    let redis = Redis::new(manager, "test:", Duration::from_secs(2));

    assert!(redis.get("alice").await.unwrap().is_none());
    redis.put(&alice(10, 2_000)).await.unwrap();
    redis.put(&alice(5, 1_500)).await.unwrap();
    assert_eq!(
        redis.get("alice").await.unwrap().unwrap().rpm_limit,
        Some(10)
    );
    let mut bob = EndUser::new("bob".into(), 1_000);
    bob.blocked = true;
    redis.put(&bob).await.unwrap();
    let mut all = redis.all().await.unwrap();
    all.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(all.len(), 2);
    assert!(all[1].blocked);
}
