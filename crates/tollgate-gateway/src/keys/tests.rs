//! Virtual keys end to end: generation, authentication, the stores (a real
//! SQLite file per test), the admin handlers, config keys, and the Redis
//! backend against a real `redis-server` per test.
//!
//! Time is injected: every call takes `now_ms`, so expiry and the Redis
//! cache's 5 s are tested without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure};

use super::*;
use crate::config::duration;
use crate::config::{ConfiguredKey, Decimal, Secret};
use crate::key_format::{ct_eq, from_hex, sha256, to_hex};
use crate::temp_dir::TempDir;
use tollgate_testkit::RedisServer;

/// 2026-01-01T00:00:00Z.
pub(super) const T0: i64 = 1_767_225_600_000;
pub(super) const MASTER: &str = "sk-master-0123456789";

// ------------------------------------------------------------------ helpers

pub(super) fn bearer(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    headers
}

fn memory(master: Option<&str>, configured: &[ConfiguredKey]) -> Keys {
    Keys::new(master.map(str::to_owned), configured, KeyBackend::Memory).unwrap()
}

fn request(alias: Option<&str>) -> GenerateRequest {
    GenerateRequest {
        key_alias: alias.map(str::to_owned),
        ..GenerateRequest::default()
    }
}

fn config_key(alias: &str, text: &str) -> ConfiguredKey {
    ConfiguredKey {
        key: Some(Secret::new(text)),
        key_alias: alias.to_owned(),
        ..ConfiguredKey::default()
    }
}

#[track_caller]
fn principal_key(principal: Principal) -> Arc<VirtualKey> {
    match principal {
        Principal::Virtual(key) => key,
        other => panic!("expected a virtual key, got {other:?}"),
    }
}

/// A failure's rendering must never hold `secret`, nor its random part.
#[track_caller]
fn assert_hidden(failure: &Failure, secret: &str) {
    let body = String::from_utf8(failure.to_openai_body().to_vec()).unwrap();
    for text in [body, failure.to_string(), format!("{failure:?}")] {
        assert_no_key(&text, secret);
    }
}

#[track_caller]
fn assert_no_key(text: &str, secret: &str) {
    let body = secret.strip_prefix("sk-").unwrap_or(secret);
    assert!(!text.contains(secret), "the key leaked into {text}");
    // Not even a piece of it: any 8 characters in a row.
    for window in body.as_bytes().windows(8) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(
            !text.contains(piece),
            "a piece of the key leaked into {text}"
        );
    }
}

async fn body_json(response: Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

// ------------------------------------------------------------------ hashing and key text

#[test]
fn ct_eq_compares_every_byte() {
    let a = sha256(b"sk-one");
    let mut b = a;
    assert!(ct_eq(&a, &b));
    for i in [0, 15, 31] {
        b = a;
        b[i] ^= 0x01;
        assert!(!ct_eq(&a, &b), "differs at byte {i}");
    }
    assert!(!ct_eq(&a, &sha256(b"sk-two")));
}

#[test]
fn hashes_are_sha256_in_lowercase_hex() {
    let hash = sha256(b"abc");
    assert_eq!(
        to_hex(&hash),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(from_hex(&to_hex(&hash)), Some(hash));
    assert_eq!(from_hex(&to_hex(&hash).to_uppercase()), Some(hash));
    assert_eq!(from_hex("abc"), None);
    assert_eq!(from_hex(&"g".repeat(64)), None);
}

#[test]
fn generated_keys_are_sk_and_43_base64url_characters() {
    let rng = ring::rand::SystemRandom::new();
    let a = generate::new_key_text(&rng).unwrap();
    let b = generate::new_key_text(&rng).unwrap();
    for key in [&a, &b] {
        let text = key.expose();
        assert_eq!(text.len(), 46, "{text}");
        assert!(generate::looks_generated(text));
        assert_eq!(format!("{key:?}"), "<redacted>");
    }
    assert_ne!(a, b);
    assert!(!generate::looks_generated("sk-short"));
    assert!(!generate::looks_generated(&format!(
        "pk-{}",
        "a".repeat(43)
    )));
    assert!(!generate::looks_generated(&format!(
        "sk-{}=",
        "a".repeat(42)
    )));
}

#[test]
fn name_is_the_alias_else_a_hash_prefix() {
    let hash = sha256(b"sk-x");
    let named = VirtualKey::new(hash, Some("team-a".into()), KeySource::Generated, T0);
    assert_eq!(&*named.name(), "team-a");
    let anonymous = VirtualKey::new(hash, None, KeySource::Generated, T0);
    assert_eq!(&*anonymous.name(), &format!("key-{}", &to_hex(&hash)[..12]));
}

#[test]
fn allows_model_helper() {
    let mut key = VirtualKey::new(sha256(b"k"), None, KeySource::Generated, T0);
    assert!(key.allows_model("anything"), "no list means every model");
    key.models = vec!["demo".into(), "fast".into()];
    assert!(key.allows_model("demo"));
    assert!(!key.allows_model("gpt-4o"));
    key.models = vec!["*".into()];
    assert!(key.allows_model("gpt-4o"));
    assert!(Principal::Master.allows_model("x"));
    key.models = vec!["demo".into()];
    assert!(!Principal::Virtual(Arc::new(key)).allows_model("x"));
}

#[test]
fn rfc3339_renders_utc() {
    assert_eq!(key::rfc3339(T0), "2026-01-01T00:00:00Z");
    assert_eq!(key::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(key::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(
        key::rfc3339(T0 + 30 * 86_400_000 + 3_723_000),
        "2026-01-31T01:02:03Z"
    );
}

// ------------------------------------------------------------------ durations

#[test]
fn litellm_durations() {
    let secs = |text: &str| duration::parse(text).map(|d| d.as_secs());
    assert_eq!(secs("30s"), Ok(30));
    assert_eq!(secs("30m"), Ok(1_800));
    assert_eq!(secs("30h"), Ok(108_000));
    assert_eq!(secs("30d"), Ok(2_592_000));
    assert_eq!(secs("2w"), Ok(1_209_600));
    assert_eq!(secs("1mo"), Ok(2_592_000));
    assert_eq!(secs("3mo"), Ok(7_776_000));
    assert_eq!(
        secs("45"),
        Ok(45),
        "a bare number is seconds, as in LiteLLM"
    );
    assert_eq!(secs(" 7d "), Ok(604_800));
    assert_eq!(secs("daily"), Ok(86_400));
    assert_eq!(secs("Monthly"), Ok(2_592_000));
    for bad in ["", "d", "30x", "30dx", "-1d", "1.5h", "30 d", "mo"] {
        assert_eq!(
            duration::parse(bad),
            Err(duration::DurationError::Syntax),
            "{bad:?}"
        );
    }
    assert_eq!(duration::parse("0d"), Err(duration::DurationError::Zero));
    assert_eq!(
        duration::parse("101000d"),
        Err(duration::DurationError::TooLong)
    );
    assert_eq!(
        duration::parse("99999999999999999999999s"),
        Err(duration::DurationError::TooLong)
    );

    let round_trip = |text: &str| duration::format(duration::parse(text).unwrap());
    assert_eq!(round_trip("30d"), "30d");
    assert_eq!(round_trip("1mo"), "30d");
    assert_eq!(round_trip("24h"), "1d");
    assert_eq!(round_trip("90m"), "90m");
    assert_eq!(round_trip("61s"), "61s");
}

// ------------------------------------------------------------------ authentication

#[tokio::test]
async fn generate_then_authenticate() {
    let keys = memory(Some(MASTER), &[]);
    let generated = keys.generate(request(Some("team-a")), T0).await.unwrap();
    let text = generated.key.expose();
    assert!(text.starts_with("sk-"));
    let key = principal_key(keys.authenticate(&bearer(text), T0).await.unwrap());
    assert_eq!(&*key.name(), "team-a");
    assert_eq!(key.source, KeySource::Generated);
    assert_eq!(key.hash, sha256(text.as_bytes()));
    assert!(!format!("{generated:?}").contains(text));
}

#[tokio::test]
async fn x_api_key_and_api_key_headers_work_too() {
    let keys = memory(Some(MASTER), &[]);
    let text = keys.generate(request(None), T0).await.unwrap().key;
    for name in ["x-api-key", "api-key"] {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(text.expose()).unwrap());
        let principal = keys.authenticate(&headers, T0).await.unwrap();
        assert!(principal.virtual_key().is_some(), "{name}");
    }
    let mut lower = HeaderMap::new();
    lower.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {}", text.expose())).unwrap(),
    );
    assert!(keys.authenticate(&lower, T0).await.is_ok());
}

#[tokio::test]
async fn wrong_key_is_401_and_never_echoed() {
    let keys = memory(Some(MASTER), &[]);
    keys.generate(request(None), T0).await.unwrap();
    let wrong = "sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let failure = keys.authenticate(&bearer(wrong), T0).await.unwrap_err();
    assert_eq!(failure.class(), ErrorClass::Auth);
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED);
    assert!(failure.message().starts_with("Incorrect API key provided"));
    assert_hidden(&failure, wrong);
    let odd = "not-even-a-key";
    let failure = keys.authenticate(&bearer(odd), T0).await.unwrap_err();
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED);
    assert!(!failure.message().contains(odd));
}

#[tokio::test]
async fn missing_key_is_401() {
    let keys = memory(Some(MASTER), &[]);
    let failure = keys.authenticate(&HeaderMap::new(), T0).await.unwrap_err();
    assert_eq!(failure.class(), ErrorClass::Auth);
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED);
    assert!(failure.message().starts_with("Missing API key"));
    // A scheme other than Bearer, or an empty key, is no key.
    let mut basic = HeaderMap::new();
    basic.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    let failure = keys.authenticate(&basic, T0).await.unwrap_err();
    assert!(failure.message().starts_with("Missing API key"));
    let failure = keys.authenticate(&bearer(""), T0).await.unwrap_err();
    assert!(failure.message().starts_with("Missing API key"));
}

#[tokio::test]
async fn expired_key_is_401_naming_the_alias() {
    let keys = memory(Some(MASTER), &[]);
    let generated = keys
        .generate(
            GenerateRequest {
                key_alias: Some("short-lived".into()),
                duration: Some(Duration::from_secs(3600)),
                ..GenerateRequest::default()
            },
            T0,
        )
        .await
        .unwrap();
    let text = generated.key.expose();
    assert_eq!(generated.record.expires_at_ms, Some(T0 + 3_600_000));
    let one_ms_before = T0 + 3_600_000 - 1;
    assert!(
        keys.authenticate(&bearer(text), one_ms_before)
            .await
            .is_ok()
    );
    let failure = keys
        .authenticate(&bearer(text), T0 + 3_600_000)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        failure.message(),
        "The API key short-lived expired at 2026-01-01T01:00:00Z."
    );
    assert_hidden(&failure, text);
}

#[tokio::test]
async fn master_key_is_master() {
    let keys = memory(Some(MASTER), &[config_key("team-a", "sk-team-a-key")]);
    assert!(
        keys.authenticate(&bearer(MASTER), T0)
            .await
            .unwrap()
            .is_master()
    );
    // One character off, shorter, longer: all refused.
    for wrong in [
        "sk-master-0123456788",
        "sk-master-012345678",
        "sk-master-01234567890",
    ] {
        let failure = keys.authenticate(&bearer(wrong), T0).await.unwrap_err();
        assert_eq!(failure.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
}

#[tokio::test]
async fn open_only_when_nothing_is_configured() {
    let open = memory(None, &[]);
    assert!(open.is_open());
    let principal = open.authenticate(&HeaderMap::new(), T0).await.unwrap();
    assert!(matches!(principal, Principal::Open));

    let with_master = memory(Some(MASTER), &[]);
    assert!(!with_master.is_open());
    assert!(
        with_master
            .authenticate(&HeaderMap::new(), T0)
            .await
            .is_err()
    );

    let with_config_key = memory(None, &[config_key("team-a", "sk-team-a-key")]);
    assert!(!with_config_key.is_open());
    assert!(
        with_config_key
            .authenticate(&HeaderMap::new(), T0)
            .await
            .is_err()
    );
    assert!(
        with_config_key
            .authenticate(&bearer("sk-team-a-key"), T0)
            .await
            .is_ok()
    );
}

#[test]
fn an_empty_master_key_is_refused() {
    let error = Keys::new(Some(String::new()), &[], KeyBackend::Memory).unwrap_err();
    assert!(matches!(error, KeysError::EmptyMasterKey));
}

// ------------------------------------------------------------------ config keys

#[tokio::test]
async fn config_keys_by_key_and_by_key_format() {
    let by_hash = ConfiguredKey {
        key_hash: Some(sha256(b"sk-team-b-secret")),
        key_alias: "team-b".into(),
        models: vec!["demo".into()],
        rpm_limit: Some(60),
        tpm_limit: Some(100_000),
        max_parallel_requests: Some(4),
        max_budget: Some(Decimal::parse("25.00").unwrap()),
        budget_duration: Some(Duration::from_secs(30 * 86_400)),
        ..ConfiguredKey::default()
    };
    let keys = memory(
        Some(MASTER),
        &[config_key("team-a", "sk-team-a-secret"), by_hash],
    );

    let a = principal_key(
        keys.authenticate(&bearer("sk-team-a-secret"), T0)
            .await
            .unwrap(),
    );
    assert_eq!(&*a.name(), "team-a");
    assert_eq!(a.source, KeySource::Config);
    assert!(a.models.is_empty());

    let b = principal_key(
        keys.authenticate(&bearer("sk-team-b-secret"), T0)
            .await
            .unwrap(),
    );
    assert_eq!(&*b.name(), "team-b");
    assert_eq!(b.models, ["demo"]);
    assert_eq!(b.rpm_limit, Some(60));
    assert_eq!(b.tpm_limit, Some(100_000));
    assert_eq!(b.max_parallel_requests, Some(4));
    assert_eq!(b.max_budget_picos, Some(25_000_000_000_000));
    assert_eq!(b.budget_duration, Some(Duration::from_secs(2_592_000)));
    assert!(!b.allows_model("other"));
}

#[test]
fn config_key_conflicts_are_startup_errors() {
    let same_key = [config_key("a", "sk-same"), config_key("b", "sk-same")];
    let error = Keys::new(None, &same_key, KeyBackend::Memory).unwrap_err();
    assert_eq!(
        error.to_string(),
        "tollgate.keys[1] (b) is the same key as a"
    );
    let same_alias = [config_key("a", "sk-one"), config_key("a", "sk-two")];
    let error = Keys::new(None, &same_alias, KeyBackend::Memory).unwrap_err();
    assert!(matches!(error, KeysError::DuplicateAlias { index: 1, .. }));
    let master = [config_key("a", MASTER)];
    let error = Keys::new(Some(MASTER.into()), &master, KeyBackend::Memory).unwrap_err();
    assert!(matches!(error, KeysError::MasterKeyReused { index: 0, .. }));
    assert!(!error.to_string().contains(MASTER));
    let fine_budget = [ConfiguredKey {
        max_budget: Some(Decimal::parse("0.0000000000001").unwrap()),
        ..config_key("a", "sk-one")
    }];
    let error = Keys::new(None, &fine_budget, KeyBackend::Memory).unwrap_err();
    assert!(matches!(error, KeysError::Budget { index: 0, .. }));
}

#[tokio::test]
async fn config_keys_cannot_be_deleted() {
    let keys = memory(Some(MASTER), &[config_key("team-a", "sk-team-a-secret")]);
    let failure = keys
        .delete(&["sk-team-a-secret".into()], T0)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::BAD_REQUEST);
    assert!(
        failure
            .message()
            .starts_with("team-a is defined in the config file")
    );
    assert_hidden(&failure, "sk-team-a-secret");
    assert!(
        keys.authenticate(&bearer("sk-team-a-secret"), T0)
            .await
            .is_ok()
    );
}

// ------------------------------------------------------------------ generate, info, delete

#[tokio::test]
async fn delete_stops_authentication() {
    let keys = memory(Some(MASTER), &[]);
    let a = keys.generate(request(Some("a")), T0).await.unwrap();
    let b = keys.generate(request(None), T0).await.unwrap();
    let b_name = b.record.name().to_string();
    // By key text and by hash, each once even if given twice.
    let deleted = keys
        .delete(
            &[
                a.key.expose().to_owned(),
                to_hex(&b.record.hash),
                a.key.expose().to_owned(),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(deleted, ["a".to_owned(), b_name]);
    for text in [a.key.expose(), b.key.expose()] {
        let failure = keys.authenticate(&bearer(text), T0).await.unwrap_err();
        assert!(failure.message().starts_with("Incorrect API key"));
    }
    // All or nothing: an unknown key among known ones deletes none.
    let c = keys.generate(request(Some("c")), T0).await.unwrap();
    let failure = keys
        .delete(&[c.key.expose().to_owned(), "sk-unknown".to_owned()], T0)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::NOT_FOUND);
    assert_eq!(failure.message(), "keys[1] is not a known key");
    assert!(keys.authenticate(&bearer(c.key.expose()), T0).await.is_ok());
}

#[tokio::test]
async fn duplicate_alias_is_400() {
    let keys = memory(Some(MASTER), &[config_key("team-a", "sk-team-a-secret")]);
    keys.generate(request(Some("team-b")), T0).await.unwrap();
    for alias in ["team-a", "team-b"] {
        let failure = keys.generate(request(Some(alias)), T0).await.unwrap_err();
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{alias}");
        assert_eq!(
            failure.message(),
            format!("key_alias {alias:?} is already in use")
        );
    }
}

#[tokio::test]
async fn info_by_key_or_hash_never_by_anything_else() {
    let keys = memory(Some(MASTER), &[config_key("team-a", "sk-team-a-secret")]);
    let generated = keys.generate(request(Some("g")), T0).await.unwrap();
    let by_text = keys.info(generated.key.expose()).await.unwrap().unwrap();
    let by_hash = keys
        .info(&to_hex(&generated.record.hash))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_text, by_hash);
    assert_eq!(&*by_text.name(), "g");
    let config = keys.info("sk-team-a-secret").await.unwrap().unwrap();
    assert_eq!(config.source, KeySource::Config);
    assert!(
        keys.info("g").await.unwrap().is_none(),
        "aliases are not keys"
    );
    assert!(keys.info("").await.unwrap().is_none());
}

#[test]
fn generate_body_validation_names_the_field() {
    let cases = [
        (r#"{"rpm_limit": "sixty"}"#, "rpm_limit"),
        (r#"{"rpm_limit": -1}"#, "rpm_limit"),
        (r#"{"rpm_limit": 4294967296}"#, "rpm_limit"),
        (r#"{"rpm_limit": 1.5}"#, "rpm_limit"),
        (r#"{"tpm_limit": true}"#, "tpm_limit"),
        (r#"{"max_parallel_requests": [1]}"#, "max_parallel_requests"),
        (r#"{"max_budget": "lots"}"#, "max_budget"),
        (r#"{"max_budget": -5}"#, "max_budget"),
        (r#"{"max_budget": 1e30}"#, "max_budget"),
        (r#"{"budget_duration": "monthly-ish"}"#, "budget_duration"),
        (r#"{"budget_duration": "0d"}"#, "budget_duration"),
        (r#"{"duration": 3.5}"#, "duration"),
        (r#"{"models": "demo"}"#, "models"),
        (r#"{"models": ["demo", 3]}"#, "models"),
        (r#"{"models": [""]}"#, "models"),
        (r#"{"key_alias": 7}"#, "key_alias"),
        (r#"{"key_alias": ""}"#, "key_alias"),
        (r#"{"key_alias": "sk-looks-like-a-key"}"#, "key_alias"),
        (r#"{"metadata": [1, 2]}"#, "metadata"),
        (r#"{"key": "sk-my-own-key"}"#, "key"),
    ];
    for (body, field) in cases {
        let failure = GenerateRequest::from_json(body.as_bytes()).unwrap_err();
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{body}");
        let rendered: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(rendered["error"]["param"], field, "{body}");
        assert!(
            failure.message().contains(field),
            "{body}: {}",
            failure.message()
        );
        assert!(!failure.message().contains("sk-my-own-key"));
    }
    for body in ["[]", "not json", "\"x\""] {
        let failure = GenerateRequest::from_json(body.as_bytes()).unwrap_err();
        assert_eq!(failure.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

#[test]
fn generate_body_reads_litellm_fields_exactly() {
    let body = br#"{
        "models": ["demo", "fast", "demo"],
        "rpm_limit": 60,
        "tpm_limit": "100000",
        "max_parallel_requests": 4,
        "max_budget": "25.5",
        "budget_duration": "30d",
        "duration": "1mo",
        "key_alias": "team-a",
        "metadata": {"team": "a"},
        "team_id": "ignored",
        "user_id": null,
        "tags": ["ignored"]
    }"#;
    let request = GenerateRequest::from_json(body).unwrap();
    assert_eq!(
        request.models.as_deref(),
        Some(&["demo".to_owned(), "fast".to_owned()][..])
    );
    assert_eq!(request.rpm_limit, Some(60));
    assert_eq!(request.tpm_limit, Some(100_000));
    assert_eq!(request.max_parallel_requests, Some(4));
    assert_eq!(request.max_budget_picos, Some(25_500_000_000_000));
    assert_eq!(
        request.budget_duration,
        Some(Duration::from_secs(2_592_000))
    );
    assert_eq!(request.duration, Some(Duration::from_secs(2_592_000)));
    assert_eq!(request.key_alias.as_deref(), Some("team-a"));
    assert_eq!(request.metadata.as_ref().unwrap()["team"], "a");

    // A JSON number is read from its text, never through a float.
    let number = GenerateRequest::from_json(br#"{"max_budget": 0.1}"#).unwrap();
    assert_eq!(number.max_budget_picos, Some(100_000_000_000));
    let tiny = GenerateRequest::from_json(br#"{"max_budget": 0.000000000003}"#).unwrap();
    assert_eq!(tiny.max_budget_picos, Some(3));
    let seconds = GenerateRequest::from_json(br#"{"duration": 90}"#).unwrap();
    assert_eq!(seconds.duration, Some(Duration::from_secs(90)));

    assert_eq!(
        GenerateRequest::from_json(b"").unwrap(),
        GenerateRequest::default()
    );
    assert_eq!(
        GenerateRequest::from_json(b"{}").unwrap(),
        GenerateRequest::default()
    );
}

// ------------------------------------------------------------------ the admin handlers

#[tokio::test]
async fn admin_generate_info_delete_round_trip() {
    let keys = memory(Some(MASTER), &[]);
    let body = br#"{"key_alias":"team-a","models":["demo"],"rpm_limit":60,"max_budget":25.5,
                    "budget_duration":"30d","duration":"1h","metadata":{"owner":"ops"}}"#;
    let response = admin::handle(&keys, &Method::POST, "/key/generate", None, body, T0)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let generated = body_json(response).await;
    let text = generated["key"].as_str().unwrap().to_owned();
    let token = to_hex(&sha256(text.as_bytes()));
    assert_eq!(generated["key_alias"], "team-a");
    assert_eq!(generated["key_name"], "team-a");
    assert_eq!(generated["token"], token.as_str());
    assert_eq!(generated["expires"], "2026-01-01T01:00:00Z");
    assert_eq!(generated["models"], json!(["demo"]));
    assert_eq!(generated["rpm_limit"], 60);
    assert_eq!(generated["tpm_limit"], Value::Null);
    assert_eq!(generated["max_budget"], 25.5);
    assert_eq!(generated["budget_duration"], "30d");
    assert_eq!(generated["metadata"], json!({"owner": "ops"}));

    for query in [format!("key={text}"), format!("key={token}")] {
        let response = admin::handle(&keys, &Method::GET, "/key/info", Some(&query), b"", T0)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let raw = String::from_utf8(response.body().to_vec()).unwrap();
        assert_no_key(&raw, &text);
        let info: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(info["key"], token.as_str());
        assert_eq!(info["info"]["key_alias"], "team-a");
        assert_eq!(info["info"]["max_budget"], 25.5);
        assert_eq!(info["info"]["source"], "generated");
        assert!(info["info"].get("key").is_none());
    }

    let missing = admin::handle(
        &keys,
        &Method::GET,
        "/key/info",
        Some("key=sk-nope"),
        b"",
        T0,
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let error = body_json(missing).await;
    assert_eq!(error["error"]["code"], "not_found");
    let no_param = admin::handle(&keys, &Method::GET, "/key/info", None, b"", T0)
        .await
        .unwrap();
    assert_eq!(no_param.status(), StatusCode::BAD_REQUEST);

    let delete_body = br#"{"key_aliases":["team-a"]}"#;
    let response = admin::handle(&keys, &Method::POST, "/key/delete", None, delete_body, T0)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response).await,
        json!({"deleted_keys": ["team-a"]})
    );
    assert!(keys.authenticate(&bearer(&text), T0).await.is_err());

    let again = admin::handle(&keys, &Method::POST, "/key/delete", None, delete_body, T0)
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let nothing = admin::handle(&keys, &Method::POST, "/key/delete", None, b"{}", T0)
        .await
        .unwrap();
    assert_eq!(nothing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admin_routes_only_its_paths_and_methods() {
    let keys = memory(Some(MASTER), &[]);
    assert!(
        admin::handle(&keys, &Method::GET, "/v1/models", None, b"", T0)
            .await
            .is_none()
    );
    let wrong = admin::handle(&keys, &Method::GET, "/key/generate", None, b"", T0)
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers()["allow"], "POST");
    let bad = admin::handle(
        &keys,
        &Method::POST,
        "/key/generate",
        None,
        br#"{"rpm_limit":"x"}"#,
        T0,
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(bad).await["error"]["param"], "rpm_limit");
}

// ------------------------------------------------------------------ what is stored

#[tokio::test]
async fn the_memory_store_never_holds_the_key_text() {
    let keys = memory(Some(MASTER), &[]);
    let generated = keys.generate(request(Some("a")), T0).await.unwrap();
    let text = generated.key.expose();
    let LocalStore::Memory(store) = &keys.inner.local else {
        panic!("memory backend");
    };
    let stored = store.load().keys;
    assert_eq!(stored.len(), 1);
    assert_no_key(&format!("{stored:?}"), text);
    let json = serde_json::to_string(&store::Record::of(&stored[0])).unwrap();
    assert_no_key(&json, text);
    assert!(json.contains(&to_hex(&sha256(text.as_bytes()))));
    assert_no_key(&format!("{keys:?}"), text);
}

/// Every column of every row of `virtual_keys`, as text.
fn sqlite_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut select = conn.prepare("SELECT * FROM virtual_keys").unwrap();
    let columns = select.column_count();
    assert_eq!(columns, 17);
    select
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Real(x) => x.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(b) => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                    })
                })
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn the_sqlite_row_never_holds_the_key_text() {
    let dir = TempDir::new("keys-row");
    let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
    let generated = keys
        .generate(
            GenerateRequest {
                key_alias: Some("team-a".into()),
                models: Some(vec!["demo".into()]),
                rpm_limit: Some(60),
                tpm_limit: Some(u64::MAX),
                max_budget_picos: Some(25_500_000_000_000),
                budget_duration: Some(Duration::from_secs(86_400)),
                ..GenerateRequest::default()
            },
            T0,
        )
        .await
        .unwrap();
    let text = generated.key.expose();
    let rows = sqlite_rows(&dir.file());
    assert_eq!(rows.len(), 1);
    for column in &rows[0] {
        assert_no_key(column, text);
    }
    assert_eq!(rows[0][0], to_hex(&sha256(text.as_bytes())));
    assert_eq!(rows[0][1], "team-a");
    assert_eq!(rows[0][2], r#"["demo"]"#);
    assert_eq!(rows[0][6], "25500000000000");
    // The file is in WAL mode, beside whatever else it holds.
    let conn = rusqlite::Connection::open(dir.file()).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 0, "user_version is the ledger's");
}

#[tokio::test]
async fn sqlite_keys_survive_a_reopen() {
    let dir = TempDir::new("keys-reopen");
    let (text, deleted) = {
        let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
        let kept = keys
            .generate(
                GenerateRequest {
                    key_alias: Some("kept".into()),
                    tpm_limit: Some(u64::MAX),
                    max_budget_picos: Some(u64::MAX),
                    duration: Some(Duration::from_secs(86_400)),
                    metadata: Some(serde_json::from_str(r#"{"a":[1,"b"]}"#).unwrap()),
                    ..GenerateRequest::default()
                },
                T0,
            )
            .await
            .unwrap();
        let gone = keys.generate(request(Some("gone")), T0).await.unwrap();
        keys.delete(&[gone.key.expose().to_owned()], T0)
            .await
            .unwrap();
        (kept.key, gone.key)
    };
    let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
    let key = principal_key(keys.authenticate(&bearer(text.expose()), T0).await.unwrap());
    assert_eq!(&*key.name(), "kept");
    assert_eq!(key.tpm_limit, Some(u64::MAX));
    assert_eq!(key.max_budget_picos, Some(u64::MAX));
    assert_eq!(key.expires_at_ms, Some(T0 + 86_400_000));
    assert_eq!(key.created_at_ms, T0);
    assert_eq!(key.metadata, json!({"a": [1, "b"]}));
    assert!(
        keys.authenticate(&bearer(deleted.expose()), T0)
            .await
            .is_err()
    );
    // The alias is still taken after the reopen; the deleted one is free.
    assert!(keys.generate(request(Some("kept")), T0).await.is_err());
    assert!(keys.generate(request(Some("gone")), T0).await.is_ok());
}

#[test]
fn a_stored_alias_that_clashes_with_a_config_key_stops_startup() {
    let dir = TempDir::new("keys-clash");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
        keys.generate(request(Some("team-a")), T0).await.unwrap();
    });
    let configured = [config_key("team-a", "sk-team-a-secret")];
    let error = Keys::new(
        Some(MASTER.into()),
        &configured,
        KeyBackend::Sqlite(dir.file()),
    )
    .unwrap_err();
    assert!(matches!(error, KeysError::AliasClash { .. }), "{error}");
}

// ------------------------------------------------------------------ logs

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_log_line_holds_the_key_text() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests, on other threads, register the same callsites while no
    // subscriber listens; refresh their interest before each step so this
    // one's events are not skipped.
    let refresh = tracing::callsite::rebuild_interest_cache;

    let dir = TempDir::new("keys-logs");
    refresh();
    let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
    let generated = keys
        .generate(
            GenerateRequest {
                key_alias: Some("logged".into()),
                duration: Some(Duration::from_secs(1)),
                ..GenerateRequest::default()
            },
            T0,
        )
        .await
        .unwrap();
    let text = generated.key.expose().to_owned();
    let _ = keys.authenticate(&bearer(&text), T0).await;
    let _ = keys.authenticate(&bearer(&text), T0 + 5_000).await;
    let _ = keys.info(&text).await;
    refresh();
    keys.delete(std::slice::from_ref(&text), T0).await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("key=logged"), "nothing captured: {logs}");
    assert_no_key(&logs, &text);
}

// ------------------------------------------------------------------ Redis

/// A replica's backend: patient enough for a loaded CI machine.
fn redis_backend(server: &RedisServer, fallbacks: &Arc<AtomicU64>) -> RedisBackend {
    let client = redis::Client::open(server.url()).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
    let counted = fallbacks.clone();
    RedisBackend::new(manager, "test:")
        .op_timeout(Duration::from_secs(2))
        .on_fallback(Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        }))
}

pub(super) fn replica(server: &RedisServer, fallbacks: &Arc<AtomicU64>) -> Keys {
    let backend = redis_backend(server, fallbacks);
    Keys::new(Some(MASTER.into()), &[], KeyBackend::Redis(backend)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_generated_on_one_replica_works_on_another_at_once() {
    let server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    let (a, b) = (replica(&server, &fallbacks), replica(&server, &fallbacks));
    let generated = a
        .generate(
            GenerateRequest {
                key_alias: Some("shared".into()),
                rpm_limit: Some(60),
                max_budget_picos: Some(1),
                ..GenerateRequest::default()
            },
            T0,
        )
        .await
        .unwrap();
    let text = generated.key.expose();
    let key = principal_key(b.authenticate(&bearer(text), T0).await.unwrap());
    assert_eq!(&*key.name(), "shared");
    assert_eq!(key.rpm_limit, Some(60));
    assert_eq!(key.max_budget_picos, Some(1));
    assert_eq!(*key, *generated.record);

    // Redis holds the record under the hash, the alias, and the change
    // set's counter and entry (by hash); never the key.
    let hex = to_hex(&sha256(text.as_bytes()));
    let mut stored = server.keys().await;
    stored.sort();
    assert_eq!(
        stored,
        [
            "test:alias:shared".to_owned(),
            format!("test:key:{hex}"),
            "test:keys:changes".to_owned(),
            "test:keys:seq".to_owned(),
        ]
    );
    let record = server.get(&format!("test:key:{hex}")).await.unwrap();
    assert_no_key(&record, text);
    assert_eq!(server.get("test:alias:shared").await.unwrap(), hex);

    // The alias is unique across replicas.
    let failure = b.generate(request(Some("shared")), T0).await.unwrap_err();
    assert_eq!(failure.status(), StatusCode::BAD_REQUEST);
    // Unknown keys are refused, and remembered as unknown for 1 s.
    let unknown = "sk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert!(b.authenticate(&bearer(unknown), T0).await.is_err());
    assert_eq!(b.read().missing.len(), 1);
    assert_eq!(fallbacks.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_deleted_key_stops_on_the_other_replica_at_once() {
    let server = RedisServer::start().await;
    let fallbacks = Arc::new(AtomicU64::new(0));
    let (a, b) = (replica(&server, &fallbacks), replica(&server, &fallbacks));
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    let generated = a.generate(request(Some("doomed")), T0).await.unwrap();
    let text = generated.key.expose();
    assert!(b.authenticate(&bearer(text), T0).await.is_ok());

    assert_eq!(a.delete(&[text.to_owned()], T0).await.unwrap(), ["doomed"]);
    // At once on the replica that deleted it, and on the other: a
    // generated key is checked against Redis on each use.
    assert!(a.authenticate(&bearer(text), T0).await.is_err());
    let failure = b.authenticate(&bearer(text), T0).await.unwrap_err();
    // The lookup kept the deletion: the next sync has nothing to learn.
    let synced = b.sync().await.unwrap();
    assert_eq!(synced.deleted, 0, "{synced:?}");
    assert!(failure.message().starts_with("Incorrect API key"));
    assert!(b.info(text).await.unwrap().is_none());
    // Record and alias gone from Redis; the tombstone kept.
    let hex = to_hex(&sha256(text.as_bytes()));
    let stored = server.keys().await;
    assert!(
        stored.contains(&format!("test:deleted:{hex}")),
        "{stored:?}"
    );
    assert!(
        !stored
            .iter()
            .any(|k| k.starts_with("test:key:") || k.starts_with("test:alias:"))
    );
    // The alias is free again, on any replica.
    assert!(b.generate(request(Some("doomed")), T0).await.is_ok());
    assert_eq!(fallbacks.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_known_keys_working_and_counts_fallbacks() {
    let mut server = RedisServer::start().await;
    let dir = TempDir::new("keys-mirror");
    let fallbacks = Arc::new(AtomicU64::new(0));
    let a = replica(&server, &fallbacks);
    let mirrored = |server: &RedisServer| {
        let backend = redis_backend(server, &fallbacks).mirror(dir.file());
        Keys::new(Some(MASTER.into()), &[], KeyBackend::Redis(backend)).unwrap()
    };
    let b = mirrored(&server);
    let seen = a.generate(request(Some("seen")), T0).await.unwrap();
    let unseen = a.generate(request(Some("unseen")), T0).await.unwrap();
    // B sees one of them (and keeps a copy in its SQLite mirror).
    assert!(b.authenticate(&bearer(seen.key.expose()), T0).await.is_ok());
    let rows = sqlite_rows(&dir.file());
    assert_eq!(rows.len(), 1);
    for column in &rows[0] {
        assert_no_key(column, seen.key.expose());
    }

    server.kill();
    let later = T0 + 60_000;
    // Known keys keep working, from the local copy (neither replica has
    // synced, so each asks Redis, and falls back).
    assert!(
        a.authenticate(&bearer(seen.key.expose()), later)
            .await
            .is_ok()
    );
    assert!(
        b.authenticate(&bearer(seen.key.expose()), later)
            .await
            .is_ok()
    );
    // A key this replica never saw cannot be checked, so it is refused.
    assert!(
        b.authenticate(&bearer(unseen.key.expose()), later)
            .await
            .is_err()
    );
    let counted = fallbacks.load(Ordering::Relaxed);
    assert_eq!(counted, 3);
    assert_eq!(a.fallbacks() + b.fallbacks(), counted);
    // The master key needs no Redis.
    assert!(
        b.authenticate(&bearer(MASTER), later)
            .await
            .unwrap()
            .is_master()
    );
    // Generating and deleting need Redis: 503, not a split view.
    let failure = a.generate(request(None), later).await.unwrap_err();
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    let failure = a
        .delete(&[seen.key.expose().to_owned()], later)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A restarted replica with the mirror knows the key it had seen.
    drop(b);
    let restarted = mirrored(&server);
    assert!(
        restarted
            .authenticate(&bearer(seen.key.expose()), later)
            .await
            .is_ok()
    );
}

#[test]
fn the_negative_cache_is_bounded() {
    let mut cache = Cache::default();
    for i in 0..NEGATIVE_CAPACITY + 10 {
        let hash = sha256(i.to_string().as_bytes());
        cache.remember_missing(hash, T0);
    }
    assert_eq!(cache.missing.len(), NEGATIVE_CAPACITY);
    // Expired answers make room.
    let later = T0 + NEGATIVE_TTL.as_millis() as i64;
    cache.remember_missing(sha256(b"new"), later);
    assert_eq!(cache.missing.len(), 1);
}

#[tokio::test]
async fn keys_from_a_loaded_config() {
    let yaml = "
model_list:
  - model_name: demo
    litellm_params: { model: mock/demo, mock_response: hi }
general_settings:
  master_key: os.environ/MASTER
tollgate:
  keys:
    - key: os.environ/TEAM_A_KEY
      key_alias: team-a
      models: [demo]
      rpm_limit: 60
      max_budget: 25.5
      budget_duration: 30d
    - key_hash: 2bdc7365a94e6334f5bb9e337d946d9b7ff12ab097e76094dfd73ba5036253e1
      key_alias: team-b
";
    let env = |var: &str| match var {
        "MASTER" => Some(MASTER.to_owned()),
        "TEAM_A_KEY" => Some("sk-team-a-from-env".to_owned()),
        _ => None,
    };
    let loaded = crate::config::load_str(yaml, &env).unwrap();
    let master = loaded
        .config
        .general_settings
        .master_key
        .as_ref()
        .map(|secret| secret.expose().to_owned());
    let keys = Keys::new(master, &loaded.config.tollgate.keys, KeyBackend::Memory).unwrap();
    let a = principal_key(
        keys.authenticate(&bearer("sk-team-a-from-env"), T0)
            .await
            .unwrap(),
    );
    assert_eq!(&*a.name(), "team-a");
    assert_eq!(a.max_budget_picos, Some(25_500_000_000_000));
    assert_eq!(a.budget_duration, Some(Duration::from_secs(2_592_000)));
    let b = principal_key(
        keys.authenticate(&bearer("sk-team-b-secret"), T0)
            .await
            .unwrap(),
    );
    assert_eq!(&*b.name(), "team-b");
    assert!(
        keys.authenticate(&bearer(MASTER), T0)
            .await
            .unwrap()
            .is_master()
    );
}

#[tokio::test]
async fn stored_keys_keep_the_gateway_closed_without_a_master_key() {
    let dir = TempDir::new("keys-closed");
    let text = {
        let keys = Keys::new(Some(MASTER.into()), &[], KeyBackend::Sqlite(dir.file())).unwrap();
        keys.generate(request(Some("made")), T0).await.unwrap().key
    };
    // The master key dropped from the config: the stored key still works,
    // a request without a key does not get through.
    let keys = Keys::new(None, &[], KeyBackend::Sqlite(dir.file())).unwrap();
    assert!(!keys.is_open());
    let failure = keys
        .authenticate(&HeaderMap::new(), T0)
        .await
        .expect_err("a key is needed");
    assert_eq!(failure.class(), ErrorClass::Auth);
    let key = principal_key(keys.authenticate(&bearer(text.expose()), T0).await.unwrap());
    assert_eq!(&*key.name(), "made");
    // Nothing stored, nothing configured, no master key: open.
    let empty = TempDir::new("keys-open");
    let keys = Keys::new(None, &[], KeyBackend::Sqlite(empty.file())).unwrap();
    assert!(keys.is_open());
}

#[test]
fn aliases_that_look_like_the_name_of_an_unaliased_key_are_refused() {
    assert!(crate::key_format::check_alias("key-0123456789ab").is_err());
    assert!(crate::key_format::check_alias("key-0123456789AB").is_err());
    assert!(crate::key_format::check_alias("key-team-a").is_ok());
    assert!(crate::key_format::check_alias("key-0123456789abc").is_ok());
}
