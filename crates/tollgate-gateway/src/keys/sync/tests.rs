//! Redis as a cache of the truth: the stores' tombstones (memory and a real
//! SQLite file), and two replicas of [`Keys`] on a real `redis-server`
//! that restarts empty. Time is injected (`now_ms`); each sync round is
//! called by the test, never waited for.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tollgate_testkit::RedisServer;

use super::super::key::{KeySource, VirtualKey};
use super::super::store::memory::MemoryStore;
use super::super::store::sqlite::SqliteStore;
use super::super::store::{Change, LocalStore, Tombstone};
use super::super::{GenerateRequest, KeyBackend, Keys, NEGATIVE_TTL, Principal, RedisBackend};
use super::{PAGE, Synced};
use crate::key_format::{sha256, to_hex};
use crate::temp_dir::TempDir;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const MASTER: &str = "sk-master-0123456789";

fn record(name: &str) -> Arc<VirtualKey> {
    Arc::new(VirtualKey::new(
        sha256(name.as_bytes()),
        Some(name.to_owned()),
        KeySource::Generated,
        T0,
    ))
}

fn stores(dir: &TempDir) -> [LocalStore; 2] {
    [
        LocalStore::Memory(MemoryStore::default()),
        LocalStore::Sqlite(Arc::new(SqliteStore::open(&dir.file()).unwrap())),
    ]
}

// ------------------------------------------------------------------ stores

#[tokio::test]
async fn in_every_store_a_tombstone_wins_over_a_record_in_either_order() {
    let dir = TempDir::new("keys-tombstones");
    for store in stores(&dir) {
        let (first, second) = (record("first"), record("second"));
        // Record, then tombstone.
        store
            .apply(vec![
                Change::Put(first.clone()),
                Change::Bury(Tombstone::of(&first, T0)),
            ])
            .await
            .unwrap();
        // Tombstone, then record (a copy found elsewhere, later).
        store
            .apply(vec![Change::Bury(Tombstone::of(&second, T0))])
            .await
            .unwrap();
        store
            .apply(vec![
                Change::Put(second.clone()),
                Change::Put(first.clone()),
            ])
            .await
            .unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.keys.is_empty(), "{store:?}: {:?}", loaded.keys);
        let mut buried: Vec<_> = loaded.tombstones.iter().map(|t| t.hash).collect();
        buried.sort();
        let mut expected = vec![first.hash, second.hash];
        expected.sort();
        assert_eq!(buried, expected, "{store:?}");
        // A new key with a deleted key's alias is a different key: fine.
        let reused = Arc::new(VirtualKey::new(
            sha256(b"another"),
            Some("first".into()),
            KeySource::Generated,
            T0,
        ));
        store.insert(reused.clone()).await.unwrap();
        assert_eq!(store.load().unwrap().keys, [(*reused).clone()], "{store:?}");
    }
}

#[tokio::test]
async fn tombstones_keep_the_earliest_time_and_survive_a_reopen() {
    let dir = TempDir::new("keys-tombstone-reopen");
    let key = record("k");
    for store in stores(&dir) {
        store
            .apply(vec![Change::Bury(Tombstone::of(&key, T0 + 5))])
            .await
            .unwrap();
        store
            .apply(vec![
                Change::Bury(Tombstone::of(&key, T0)),
                Change::Bury(Tombstone::of(&key, T0 + 9)),
            ])
            .await
            .unwrap();
        let tombstones = store.load().unwrap().tombstones;
        assert_eq!(tombstones, [Tombstone::of(&key, T0)], "{store:?}");
    }
    let reopened = SqliteStore::open(&dir.file()).unwrap().load().unwrap();
    assert_eq!(reopened.tombstones, [Tombstone::of(&key, T0)]);
    assert!(reopened.keys.is_empty());
}

/// The file as the version before tombstones left it: one key.
fn file_before_tombstones(dir: &TempDir, key: &VirtualKey) -> std::path::PathBuf {
    let path = dir.file();
    let store = SqliteStore::open(&path).unwrap();
    store.insert(key).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DROP TABLE virtual_key_tombstones", [])
        .unwrap();
    path
}

#[test]
fn a_file_from_before_tombstones_keeps_its_keys_where_it_is_the_truth() {
    let dir = TempDir::new("keys-before-tombstones");
    let key = record("old");
    let path = file_before_tombstones(&dir, &key);
    let loaded = SqliteStore::open(&path).unwrap().load().unwrap();
    assert_eq!(loaded.keys, [(*key).clone()]);
    assert!(loaded.tombstones.is_empty());
}

#[test]
fn a_mirror_from_before_tombstones_is_dropped_once_to_be_copied_again() {
    let dir = TempDir::new("keys-mirror-before-tombstones");
    let key = record("maybe-deleted");
    let path = file_before_tombstones(&dir, &key);
    let mirror = SqliteStore::open_mirror(&path).unwrap();
    assert!(mirror.load().unwrap().keys.is_empty());
    // Once: rows written since stay.
    mirror.insert(&key).unwrap();
    drop(mirror);
    let reopened = SqliteStore::open_mirror(&path).unwrap();
    assert_eq!(reopened.load().unwrap().keys, [(*key).clone()]);
}

// ------------------------------------------------------------------ replicas

fn bearer(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    headers
}

/// A replica on `server`; its copy in the SQLite file `mirror`, else in
/// memory.
fn replica(server: &RedisServer, fallbacks: &Arc<AtomicU64>, mirror: Option<&Path>) -> Keys {
    let client = redis::Client::open(server.url()).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
    let counted = fallbacks.clone();
    let mut backend = RedisBackend::new(manager, "test:")
        .op_timeout(Duration::from_secs(2))
        .on_fallback(Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
    if let Some(path) = mirror {
        backend = backend.mirror(path);
    }
    Keys::new(Some(MASTER.into()), &[], KeyBackend::Redis(backend)).unwrap()
}

async fn generate(keys: &Keys, alias: Option<&str>) -> String {
    let request = GenerateRequest {
        key_alias: alias.map(str::to_owned),
        ..GenerateRequest::default()
    };
    let generated = keys.generate(request, T0).await.unwrap();
    generated.key.expose().to_owned()
}

async fn works(keys: &Keys, text: &str, now_ms: i64) -> bool {
    matches!(
        keys.authenticate(&bearer(text), now_ms).await,
        Ok(Principal::Virtual(_))
    )
}

fn record_key(text: &str) -> String {
    format!("test:key:{}", to_hex(&sha256(text.as_bytes())))
}

fn tombstone_key(text: &str) -> String {
    format!("test:deleted:{}", to_hex(&sha256(text.as_bytes())))
}

/// Kills the server and starts a fresh one, without data, on its port.
async fn restart_empty(server: &mut RedisServer) {
    server.kill();
    server.restart().await;
    assert!(server.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_loses_no_key_and_replicas_put_theirs_back() {
    let mut server = RedisServer::start().await;
    let dir = TempDir::new("keys-redis-empty");
    let fallbacks = Arc::new(AtomicU64::new(0));
    let a = replica(&server, &fallbacks, Some(&dir.file()));
    let b = replica(&server, &fallbacks, None);
    let on_a = generate(&a, Some("on-a")).await;
    let on_b = generate(&b, None).await;
    // Each replica copies every key at its sync, used or not.
    a.sync().await.unwrap();
    let synced = b.sync().await.unwrap();
    assert_eq!(synced.learned, 1, "{synced:?}");
    // Made on A after B's last sync: only A has it.
    let late = generate(&a, Some("late")).await;

    restart_empty(&mut server).await;
    // B cannot know the late key until A puts it back...
    assert!(!works(&b, &late, T0).await);
    // Known keys work at once (Redis lacking them is no deletion), and
    // each use puts its key back...
    for keys in [&a, &b] {
        assert!(works(keys, &on_a, T0).await);
        assert!(works(keys, &on_b, T0).await);
    }
    assert!(works(&a, &late, T0).await);
    // ...as A's next sync would: Redis has no epoch, so A writes one and
    // puts back its whole copy (here, already back).
    let synced = a.sync().await.unwrap();
    assert_eq!(synced.restored, 0, "{synced:?}");
    for text in [&on_a, &on_b, &late] {
        assert!(server.get(&record_key(text)).await.is_some());
    }
    assert_eq!(
        server.get("test:alias:late").await,
        Some(to_hex(&sha256(late.as_bytes())))
    );
    let after_negative_ttl = T0 + NEGATIVE_TTL.as_millis() as i64;
    assert!(works(&b, &late, after_negative_ttl).await);
    // B's sync finds the new epoch, puts back what Redis lacks (nothing
    // now), and reads every change.
    let synced = b.sync().await.unwrap();
    assert_eq!(synced.restored, 0, "{synced:?}");
    assert_eq!(fallbacks.load(Ordering::Relaxed), 0);

    // A restarted on its mirror, while Redis is empty again: its keys
    // work before any sync (Redis lacking them is no deletion), and the
    // lookup itself puts them back.
    restart_empty(&mut server).await;
    drop(a);
    let a = replica(&server, &fallbacks, Some(&dir.file()));
    for text in [&on_a, &on_b, &late] {
        assert!(works(&a, text, T0).await);
        assert!(server.get(&record_key(text)).await.is_some());
    }
    assert_eq!(a.sync().await.unwrap().restored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_outlives_redis_and_the_replica_that_missed_it() {
    let mut server = RedisServer::start().await;
    let (dir_a, dir_b) = (TempDir::new("keys-del-a"), TempDir::new("keys-del-b"));
    let fallbacks = Arc::new(AtomicU64::new(0));
    let a = replica(&server, &fallbacks, Some(&dir_a.file()));
    let b = replica(&server, &fallbacks, Some(&dir_b.file()));
    let doomed = generate(&a, Some("doomed")).await;
    let kept = generate(&a, Some("kept")).await;
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    assert!(works(&b, &doomed, T0).await);

    // B is down while A deletes the key; then Redis loses everything.
    drop(b);
    a.delete(std::slice::from_ref(&doomed), T0 + 1)
        .await
        .unwrap();
    restart_empty(&mut server).await;
    // B comes back with the key in its mirror, and syncs first: the worst
    // order. Redis has no tombstone yet, so B puts the record back...
    let b = replica(&server, &fallbacks, Some(&dir_b.file()));
    let synced = b.sync().await.unwrap();
    assert_eq!(synced.restored, 2, "{synced:?}");
    // ...until A's sync puts its tombstone back, which deletes the record
    // and frees the alias in Redis...
    let synced = a.sync().await.unwrap();
    assert_eq!(synced.reburied, 1, "{synced:?}");
    assert!(server.get(&record_key(&doomed)).await.is_none());
    assert!(server.get("test:alias:doomed").await.is_none());
    let tombstone = server.get(&tombstone_key(&doomed)).await.unwrap();
    assert!(tombstone.contains(&format!("\"deleted_at_ms\":{}", T0 + 1)));
    // ...and B's next sync brings the deletion to B.
    let synced = b.sync().await.unwrap();
    assert_eq!(synced.deleted, 1, "{synced:?}");
    for keys in [&a, &b] {
        assert!(!works(keys, &doomed, T0).await);
        assert!(works(keys, &kept, T0).await);
    }

    // Both restart after another empty Redis: the deletion is in both
    // mirrors now, whoever syncs first.
    drop((a, b));
    restart_empty(&mut server).await;
    let b = replica(&server, &fallbacks, Some(&dir_b.file()));
    let a = replica(&server, &fallbacks, Some(&dir_a.file()));
    assert!(!works(&b, &doomed, T0).await);
    assert_eq!(
        b.sync().await.unwrap(),
        Synced {
            restored: 1,
            reburied: 1,
            ..Synced::default()
        }
    );
    assert_eq!(a.sync().await.unwrap(), Synced::default());
    for keys in [&a, &b] {
        assert!(!works(keys, &doomed, T0).await);
        assert!(works(keys, &kept, T0).await);
        assert!(keys.info(&doomed).await.unwrap().is_none());
    }
    // The alias is free for a new key, once.
    assert!(
        a.generate(
            GenerateRequest {
                key_alias: Some("doomed".into()),
                ..GenerateRequest::default()
            },
            T0
        )
        .await
        .is_ok()
    );
    assert_eq!(fallbacks.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_put_back_is_as_expired_as_it_was() {
    let mut server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    let a = replica(&server, &fallbacks, None);
    let request = GenerateRequest {
        duration: Some(Duration::from_secs(3600)),
        ..GenerateRequest::default()
    };
    let text = a
        .generate(request, T0)
        .await
        .unwrap()
        .key
        .expose()
        .to_owned();
    a.sync().await.unwrap();
    restart_empty(&mut server).await;
    assert_eq!(a.sync().await.unwrap().restored, 1);

    // A replica that never saw it reads it from Redis.
    let b = replica(&server, &fallbacks, None);
    assert!(works(&b, &text, T0 + 3_599_999).await);
    let failure = b
        .authenticate(&bearer(&text), T0 + 3_600_000)
        .await
        .unwrap_err();
    assert!(
        failure
            .message()
            .contains("expired at 2026-01-01T01:00:00Z")
    );
    assert!(!works(&a, &text, T0 + 3_600_000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reads_every_page_of_changes() {
    let server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    let a = replica(&server, &fallbacks, None);
    let mut texts = Vec::new();
    for _ in 0..PAGE + 3 {
        texts.push(generate(&a, None).await);
    }
    a.delete(&texts[..2], T0).await.unwrap();
    let b = replica(&server, &fallbacks, None);
    let synced = b.sync().await.unwrap();
    assert_eq!(synced.learned, PAGE + 1, "{synced:?}");
    // Known to B now, so its copy answers when Redis does not: freeze
    // Redis to prove it (one fallback, then Redis is left alone for 1 s).
    server.signal("-STOP");
    assert!(works(&b, &texts[2], T0).await);
    assert!(works(&b, &texts[PAGE + 2], T0).await);
    assert!(!works(&b, &texts[0], T0).await);
    server.signal("-CONT");
    assert_eq!(fallbacks.load(Ordering::Relaxed), 1);
    assert_eq!(b.sync().await.unwrap(), Synced::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_written_before_the_change_set_are_copied_to_every_replica() {
    let server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    // As the version before epochs left Redis: a record and its alias.
    let old = replica(&server, &fallbacks, None);
    let text = generate(&old, Some("old")).await;
    drop(old);
    let hex = to_hex(&sha256(text.as_bytes()));
    let conn = redis::Client::open(server.url()).unwrap();
    let mut conn = conn.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg("test:keys:changes")
        .arg("test:keys:seq")
        .arg("test:keys:epoch")
        .query_async(&mut conn)
        .await
        .unwrap();

    let a = replica(&server, &fallbacks, None);
    let synced = a.sync().await.unwrap();
    assert_eq!(synced.learned, 1, "{synced:?}");
    let changes: Vec<String> = redis::cmd("ZRANGE")
        .arg("test:keys:changes")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(changes, [hex]);
    // Known to the local copy, which answers while Redis is frozen.
    server.signal("-STOP");
    assert!(works(&a, &text, T0).await);
    server.signal("-CONT");
    assert_eq!(fallbacks.load(Ordering::Relaxed), 1);
}
