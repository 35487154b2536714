//! A key's life after `/key/generate` — update, block, regenerate, list —
//! on each backend: memory, a real SQLite file (reopened, as after a
//! restart), and two replicas of [`Keys`] on a real `redis-server`, where
//! a change made on one replica must hold on the other at once (no sync
//! round in between). Time is injected (`now_ms`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tollgate_core::Failure;
use tollgate_testkit::RedisServer;

use super::tests::{MASTER, T0, bearer, replica};
use super::*;
use crate::config::{ConfiguredKey, Secret};
use crate::key_format::to_hex;
use crate::temp_dir::TempDir;

fn memory() -> Keys {
    let config = ConfiguredKey {
        key: Some(Secret::new("sk-config-key-0001")),
        key_alias: "from-config".into(),
        ..ConfiguredKey::default()
    };
    Keys::new(Some(MASTER.into()), &[config], KeyBackend::Memory).unwrap()
}

async fn generate(keys: &Keys, body: Value) -> String {
    let request = GenerateRequest::from_json(body.to_string().as_bytes()).unwrap();
    let generated = keys.generate(request, T0).await.unwrap();
    generated.key.expose().to_owned()
}

async fn authenticate(keys: &Keys, text: &str, now_ms: i64) -> Result<Arc<VirtualKey>, Failure> {
    match keys.authenticate(&bearer(text), now_ms).await? {
        Principal::Virtual(key) => Ok(key),
        other => panic!("expected a virtual key, got {other:?}"),
    }
}

fn change(body: Value) -> GenerateRequest {
    let mut body = body;
    body["key"] = json!("placeholder");
    GenerateRequest::change_from_json(body.to_string().as_bytes())
        .unwrap()
        .1
}

async fn call(
    keys: &Keys,
    method: Method,
    path: &str,
    query: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let response: Response<Bytes> = admin::handle(keys, &method, path, query, &body, T0 + 1)
        .await
        .expect("a key endpoint");
    let status = response.status();
    (status, serde_json::from_slice(response.body()).unwrap())
}

/// A field of the failure's OpenAI error body.
fn error_field(failure: &Failure, field: &str) -> Value {
    let body: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    body["error"][field].clone()
}

#[track_caller]
fn assert_no_secret(text: &str, secret: &str) {
    let body = secret.strip_prefix("sk-").unwrap();
    for window in body.as_bytes().windows(8) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(
            !text.contains(piece),
            "a piece of the key leaked into {text}"
        );
    }
}

// ------------------------------------------------------------------ update

#[tokio::test]
async fn an_update_changes_what_it_names_and_keeps_the_secret_and_name() {
    let keys = memory();
    let text = generate(
        &keys,
        json!({"key_alias": "team-a", "rpm_limit": 10, "models": ["gpt"], "metadata": {"a": 1}}),
    )
    .await;
    let updated = keys
        .update(
            &text,
            change(json!({
                "key_alias": "team-b", "rpm_limit": 20, "tpm_limit": 1000,
                "max_parallel_requests": 2, "max_budget": "1.5", "budget_duration": "1d",
                "duration": "1h", "aliases": {"fast": "gpt"}, "team_id": "t1",
                "user_id": "u1", "metadata": {"b": 2}
            })),
            T0 + 5,
        )
        .await
        .unwrap();
    let key = authenticate(&keys, &text, T0 + 6).await.unwrap();
    assert_eq!(key, updated);
    assert_eq!(key.alias(), Some("team-b"));
    assert_eq!(&*key.name(), "team-a", "the name outlives the alias");
    assert_eq!(key.rpm_limit, Some(20));
    assert_eq!(key.tpm_limit, Some(1000));
    assert_eq!(key.max_parallel_requests, Some(2));
    assert_eq!(key.max_budget_picos, Some(1_500_000_000_000));
    assert_eq!(key.budget_duration, Some(Duration::from_secs(86_400)));
    assert_eq!(key.expires_at_ms, Some(T0 + 5 + 3_600_000));
    assert_eq!(key.models, ["gpt"], "left out: kept");
    assert_eq!(key.resolve_model("fast"), "gpt");
    assert_eq!(key.resolve_model("gpt"), "gpt");
    assert_eq!(
        (key.team_id.as_deref(), key.user_id.as_deref()),
        (Some("t1"), Some("u1"))
    );
    assert_eq!(key.metadata, json!({"b": 2}));
    assert_eq!(key.updated_at_ms, Some(T0 + 5));
    // The duration runs from the update: an hour later the key is expired.
    let expired = authenticate(&keys, &text, T0 + 5 + 3_600_000)
        .await
        .unwrap_err();
    assert_eq!(error_field(&expired, "code"), "expired_api_key");

    // Neither the old alias (still its name) nor the new one is free.
    for alias in ["team-a", "team-b"] {
        let request =
            GenerateRequest::from_json(json!({"key_alias": alias}).to_string().as_bytes()).unwrap();
        let failure = keys.generate(request, T0).await.unwrap_err();
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{alias}");
    }
    let other = generate(&keys, json!({"key_alias": "other"})).await;
    let taken = keys
        .update(&other, change(json!({"key_alias": "team-b"})), T0)
        .await
        .unwrap_err();
    assert_eq!(error_field(&taken, "param"), "key_alias");
    // No such key; a config key.
    let missing = keys
        .update("sk-nope", change(json!({})), T0)
        .await
        .unwrap_err();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let config = keys
        .update("sk-config-key-0001", change(json!({"rpm_limit": 1})), T0)
        .await
        .unwrap_err();
    assert_eq!(config.status(), StatusCode::BAD_REQUEST);
    assert!(config.message().contains("from-config"), "{config}");
}

// ------------------------------------------------------------------- block

#[tokio::test]
async fn a_blocked_key_is_refused_with_a_clear_error_until_unblocked() {
    let keys = memory();
    let text = generate(&keys, json!({"key_alias": "noisy"})).await;
    let blocked = keys.set_blocked(&text, true, T0).await.unwrap();
    assert!(blocked.blocked);
    let failure = authenticate(&keys, &text, T0 + 1).await.unwrap_err();
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_field(&failure, "code"), "key_blocked");
    assert!(failure.message().contains("noisy"), "{failure}");
    assert!(failure.message().contains("/key/unblock"), "{failure}");
    assert_no_secret(&failure.to_string(), &text);
    keys.set_blocked(&to_hex(&blocked.hash), false, T0 + 2)
        .await
        .unwrap();
    assert!(!authenticate(&keys, &text, T0 + 3).await.unwrap().blocked);
    let config = keys
        .set_blocked("sk-config-key-0001", true, T0)
        .await
        .unwrap_err();
    assert_eq!(config.status(), StatusCode::BAD_REQUEST);
}

// -------------------------------------------------------------- regenerate

#[tokio::test]
async fn a_regenerated_key_keeps_its_name_and_settings_and_survives_a_restart() {
    let dir = TempDir::new("keys-regenerate");
    let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
    let old = generate(&keys, json!({"rpm_limit": 7, "max_budget": 2})).await;
    let before = authenticate(&keys, &old, T0).await.unwrap();
    let regenerated = keys
        .regenerate(&old, change(json!({"tpm_limit": 99})), T0 + 1)
        .await
        .unwrap();
    let new = regenerated.key.expose().to_owned();
    assert_ne!(new, old);
    assert!(generate::looks_generated(&new));
    let failure = authenticate(&keys, &old, T0 + 2).await.unwrap_err();
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED);
    let after = authenticate(&keys, &new, T0 + 2).await.unwrap();
    assert_eq!(
        after.name(),
        before.name(),
        "an unaliased key keeps its name"
    );
    assert_eq!(after.rpm_limit, Some(7));
    assert_eq!(after.max_budget_picos, before.max_budget_picos);
    assert_eq!(after.tpm_limit, Some(99));
    assert_eq!(after.created_at_ms, before.created_at_ms);
    // Once regenerated, the old secret cannot be regenerated again.
    let again = keys
        .regenerate(&old, GenerateRequest::default(), T0 + 3)
        .await
        .unwrap_err();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    drop(keys);

    let reopened = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
    assert!(authenticate(&reopened, &old, T0 + 4).await.is_err());
    let kept = authenticate(&reopened, &new, T0 + 4).await.unwrap();
    assert_eq!(kept, after, "every field came back from the file");
}

#[test]
fn a_file_from_before_updates_gets_the_new_columns() {
    let dir = TempDir::new("keys-old-columns");
    let path = dir.file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE virtual_keys (hash TEXT PRIMARY KEY, alias TEXT UNIQUE, models TEXT NOT NULL,
            rpm_limit INTEGER, tpm_limit INTEGER, max_parallel_requests INTEGER,
            max_budget_picos INTEGER, budget_duration_s INTEGER, expires_at_ms INTEGER,
            metadata TEXT NOT NULL, created_at_ms INTEGER NOT NULL);",
    )
    .unwrap();
    let hash = to_hex(&crate::key_format::sha256(b"sk-old"));
    conn.execute(
        "INSERT INTO virtual_keys VALUES (?1, 'old', '[]', 5, NULL, NULL, NULL, NULL, NULL, '{}', 1)",
        [&hash],
    )
    .unwrap();
    drop(conn);
    let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(path)).unwrap();
    let key = keys.read().known.values().next().cloned().unwrap();
    assert_eq!(
        (key.alias(), &*key.name(), key.rpm_limit),
        (Some("old"), "old", Some(5))
    );
    assert!(!key.blocked && key.model_aliases.is_empty() && key.team_id.is_none());
}

// -------------------------------------------------------------- the routes

#[tokio::test]
async fn the_routes_answer_in_litellms_shapes_and_list_never_shows_a_secret() {
    let keys = memory();
    let (status, generated) = call(
        &keys,
        Method::POST,
        "/key/generate",
        None,
        json!({"key_alias": "a", "team_id": "t1", "user_id": "u1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let a = generated["key"].as_str().unwrap().to_owned();
    let b = generate(&keys, json!({"key_alias": "b", "team_id": "t2"})).await;

    // /key/update: LiteLLM's fields, never the text.
    let (status, updated) = call(
        &keys,
        Method::POST,
        "/key/update",
        None,
        json!({"key": a, "rpm_limit": 3, "blocked": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    for field in [
        "key_alias",
        "key_name",
        "token",
        "expires",
        "models",
        "rpm_limit",
        "tpm_limit",
        "max_parallel_requests",
        "max_budget",
        "budget_duration",
        "metadata",
        "blocked",
        "aliases",
        "team_id",
        "user_id",
    ] {
        assert!(
            updated.get(field).is_some(),
            "{field} missing from {updated}"
        );
    }
    assert_eq!(updated["rpm_limit"], 3);
    assert!(updated.get("key").is_none());

    // /key/block, /key/unblock.
    let (status, blocked) = call(&keys, Method::POST, "/key/block", None, json!({"key": b})).await;
    assert_eq!(
        (status, &blocked["blocked"]),
        (StatusCode::OK, &json!(true))
    );
    let (_, unblocked) = call(&keys, Method::POST, "/key/unblock", None, json!({"key": b})).await;
    assert_eq!(unblocked["blocked"], false);
    let (status, _) = call(&keys, Method::POST, "/key/block", None, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // /key/list: hashes by default, paged, filtered.
    let (status, listed) = call(&keys, Method::GET, "/key/list", Some("size=2"), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["total_count"], 3,
        "two generated, one config: {listed}"
    );
    assert_eq!(
        (
            listed["current_page"].clone(),
            listed["total_pages"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let (_, second) = call(
        &keys,
        Method::GET,
        "/key/list",
        Some("size=2&page=2"),
        Value::Null,
    )
    .await;
    assert_eq!(second["keys"].as_array().unwrap().len(), 1);
    let (_, team) = call(
        &keys,
        Method::GET,
        "/key/list",
        Some("team_id=t1&return_full_object=true"),
        Value::Null,
    )
    .await;
    assert_eq!(team["total_count"], 1);
    assert_eq!(team["keys"][0]["key_alias"], "a");
    assert_eq!(team["keys"][0]["user_id"], "u1");
    let (_, by_user) = call(
        &keys,
        Method::GET,
        "/key/list",
        Some("user_id=u2"),
        Value::Null,
    )
    .await;
    assert_eq!(by_user["total_count"], 0);
    let (_, by_alias) = call(
        &keys,
        Method::GET,
        "/key/list",
        Some("key_alias=b"),
        Value::Null,
    )
    .await;
    assert_eq!(by_alias["keys"].as_array().unwrap().len(), 1);
    let hash = by_alias["keys"][0].as_str().unwrap().to_owned();
    let (_, by_hash) = call(
        &keys,
        Method::GET,
        "/key/list",
        Some(&format!("key_hash={hash}")),
        Value::Null,
    )
    .await;
    assert_eq!(by_hash["total_count"], 1);

    // /key/regenerate: the new text once; the old one refused.
    let (status, regenerated) = call(
        &keys,
        Method::POST,
        "/key/regenerate",
        None,
        json!({"key": b}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{regenerated}");
    let new_b = regenerated["key"].as_str().unwrap().to_owned();
    assert_eq!(regenerated["key_alias"], "b");
    assert!(authenticate(&keys, &b, T0 + 2).await.is_err());
    assert!(authenticate(&keys, &new_b, T0 + 2).await.is_ok());
    let (status, _) = call(
        &keys,
        Method::POST,
        "/key/regenerate",
        None,
        json!({"key": b, "new_key": "sk-mine"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // No secret in any listing.
    let (_, full) = call(
        &keys,
        Method::GET,
        "/key/list",
        Some("return_full_object=true&size=100"),
        Value::Null,
    )
    .await;
    let (_, tokens) = call(&keys, Method::GET, "/key/list", None, Value::Null).await;
    for listing in [full.to_string(), tokens.to_string()] {
        for secret in [&a, &b, &new_b] {
            assert_no_secret(&listing, secret);
        }
        assert!(!listing.contains("sk-config-key-0001"));
    }
    // Methods.
    let (status, _) = call(&keys, Method::POST, "/key/list", None, Value::Null).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

// ------------------------------------------------------------------ Redis

/// Every change made on replica `a` holds on replica `b` at the next
/// request, with no sync round in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_holds_on_the_other_at_once() {
    let server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    let (a, b) = (replica(&server, &fallbacks), replica(&server, &fallbacks));
    let text = generate(&a, json!({"key_alias": "shared", "rpm_limit": 1})).await;
    assert_eq!(
        authenticate(&b, &text, T0).await.unwrap().rpm_limit,
        Some(1)
    );

    a.update(&text, change(json!({"rpm_limit": 2})), T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        authenticate(&b, &text, T0 + 2).await.unwrap().rpm_limit,
        Some(2)
    );

    a.set_blocked(&text, true, T0 + 3).await.unwrap();
    let failure = authenticate(&b, &text, T0 + 4).await.unwrap_err();
    assert_eq!(error_field(&failure, "code"), "key_blocked");
    b.set_blocked(&text, false, T0 + 5).await.unwrap();
    assert!(authenticate(&a, &text, T0 + 6).await.is_ok());

    let new = a
        .regenerate(&text, GenerateRequest::default(), T0 + 7)
        .await
        .unwrap();
    let new = new.key.expose().to_owned();
    for replica in [&a, &b] {
        assert!(
            authenticate(replica, &text, T0 + 8).await.is_err(),
            "the old secret works"
        );
        let key = authenticate(replica, &new, T0 + 8).await.unwrap();
        assert_eq!((&*key.name(), key.rpm_limit), ("shared", Some(2)));
    }
    // The alias moved with the key: a new key cannot take it, on either.
    for replica in [&a, &b] {
        let request = GenerateRequest::from_json(br#"{"key_alias": "shared"}"#).unwrap();
        assert!(replica.generate(request, T0 + 9).await.is_err());
    }
    // A key deleted on `b` while `a` regenerates it is not brought back.
    let doomed = generate(&a, json!({"key_alias": "doomed"})).await;
    b.delete(std::slice::from_ref(&doomed), T0 + 10)
        .await
        .unwrap();
    let failure = a
        .regenerate(&doomed, GenerateRequest::default(), T0 + 11)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::NOT_FOUND);
    // The listing after a sync shows what either replica did.
    let listed = b.list(&ListFilter::default()).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].alias(), Some("shared"));
    assert_eq!(fallbacks.load(Ordering::Relaxed), 0);
}

/// Redis away: a known key keeps working from the local copy, Redis is
/// not asked again within a second, and changes are refused with a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_known_keys_work_and_changes_wait() {
    let mut server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    let keys = replica(&server, &fallbacks);
    let text = generate(&keys, json!({"key_alias": "steady"})).await;
    server.kill();
    assert!(authenticate(&keys, &text, T0).await.is_ok());
    let after_first = fallbacks.load(Ordering::Relaxed);
    assert!(after_first >= 1);
    assert!(authenticate(&keys, &text, T0 + 500).await.is_ok());
    assert_eq!(
        fallbacks.load(Ordering::Relaxed),
        after_first,
        "asked Redis again within 1 s"
    );
    let failure = keys
        .update(&text, change(json!({"rpm_limit": 1})), T0 + 600)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    let failure = keys.set_blocked(&text, true, T0 + 600).await.unwrap_err();
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.restart().await;
    // Redis is asked again after the second, and has lost the key: the
    // replica puts it back.
    assert!(authenticate(&keys, &text, T0 + 2_000).await.is_ok());
    assert!(
        server
            .keys()
            .await
            .iter()
            .any(|name| name.starts_with("test:key:"))
    );
}
