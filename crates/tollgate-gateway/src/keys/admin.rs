//! The admin API for keys, in LiteLLM's shape: `POST /key/generate`,
//! `GET /key/info?key=...`, `GET /key/list`, `POST /key/update`,
//! `POST /key/regenerate`, `POST /key/block`, `POST /key/unblock`,
//! `POST /key/delete`.
//!
//! Framework-free: each handler takes the request's parts and returns a
//! complete `application/json` response (errors in the OpenAI shape). The
//! router calls them only for requests that carry the master key.
//!
//! The responses of `/key/generate` and `/key/regenerate` are the only ones
//! that ever contain a key's text. `/key/info` takes the key (or its hash) in the query string:
//! whatever logs request URLs must leave that query out.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::Failure;

use super::generate::bad_request;
use super::view::{View, json, money, query_param};
use super::{GenerateRequest, KeySource, Keys, not_found};
use crate::key_format::to_hex;
use crate::ledger::Ledger;

/// Routes a key admin request: `None` when `path` is not one of the key
/// endpoints.
pub(crate) async fn handle(
    keys: &Keys,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    now_ms: i64,
) -> Option<Response<Bytes>> {
    let allowed = match path {
        "/key/info" | "/key/list" => Method::GET,
        "/key/generate" | "/key/delete" | "/key/update" | "/key/regenerate" | "/key/block"
        | "/key/unblock" => Method::POST,
        _ => return None,
    };
    if *method != allowed {
        return Some(super::view::method_not_allowed(path, &allowed));
    }
    Some(match path {
        "/key/generate" => generate(keys, body, now_ms).await,
        "/key/info" => info(keys, query, None).await,
        "/key/list" => super::admin_list::list(keys, query).await,
        "/key/update" => update(keys, body, now_ms).await,
        "/key/regenerate" => regenerate(keys, body, now_ms).await,
        "/key/block" => block(keys, body, true, now_ms).await,
        "/key/unblock" => block(keys, body, false, now_ms).await,
        _ => delete(keys, body, now_ms).await,
    })
}

/// `POST /key/generate`: LiteLLM's body (`models`, `rpm_limit`,
/// `tpm_limit`, `max_parallel_requests`, `max_budget`, `budget_duration`,
/// `duration`, `key_alias`, `metadata`; other fields ignored) → the new key
/// and its settings.
pub(crate) async fn generate(keys: &Keys, body: &[u8], now_ms: i64) -> Response<Bytes> {
    let request = match GenerateRequest::from_json(body) {
        Ok(request) => request,
        Err(failure) => return failure.to_response(),
    };
    match keys.generate(request, now_ms).await {
        Ok(generated) => json(
            StatusCode::OK,
            &View::of(&generated.record, Some(generated.key.expose())),
        ),
        Err(failure) => failure.to_response(),
    }
}

/// `POST /key/update`: `{"key": <key or hex hash>, ...}` with any of
/// `/key/generate`'s settings (and `blocked`); those left out keep their
/// value → the key's settings, without its text.
pub(crate) async fn update(keys: &Keys, body: &[u8], now_ms: i64) -> Response<Bytes> {
    let (target, change) = match GenerateRequest::change_from_json(body) {
        Ok(parsed) => parsed,
        Err(failure) => return failure.to_response(),
    };
    match keys.update(&target, change, now_ms).await {
        Ok(record) => json(StatusCode::OK, &View::of(&record, None)),
        Err(failure) => failure.to_response(),
    }
}

/// `POST /key/regenerate`: `{"key": <key or hex hash>, ...}`, optionally
/// with settings to change → the new key (its only showing) and its
/// settings, as `/key/generate` answers. The old key stops working at once.
pub(crate) async fn regenerate(keys: &Keys, body: &[u8], now_ms: i64) -> Response<Bytes> {
    let (target, change) = match GenerateRequest::change_from_json(body) {
        Ok(parsed) => parsed,
        Err(failure) => return failure.to_response(),
    };
    match keys.regenerate(&target, change, now_ms).await {
        Ok(generated) => json(
            StatusCode::OK,
            &View::of(&generated.record, Some(generated.key.expose())),
        ),
        Err(failure) => failure.to_response(),
    }
}

/// `POST /key/block` and `/key/unblock`: `{"key": <key or hex hash>}` →
/// the key's settings, `blocked` as asked.
pub(crate) async fn block(keys: &Keys, body: &[u8], blocked: bool, now_ms: i64) -> Response<Bytes> {
    let target = match super::generate::fields(body).and_then(|f| super::generate::target(&f)) {
        Ok(target) => target,
        Err(failure) => return failure.to_response(),
    };
    match keys.set_blocked(&target, blocked, now_ms).await {
        Ok(record) => json(StatusCode::OK, &View::of(&record, None)),
        Err(failure) => failure.to_response(),
    }
}

/// `GET /key/info?key=<key or hex hash>` → `{"key": "<hex hash>", "info":
/// {...}}`, with `info.spend` (exact dollars, LiteLLM's field) from the
/// `ledger` when there is one; 404 when there is no such key.
pub(crate) async fn info(
    keys: &Keys,
    query: Option<&str>,
    ledger: Option<&Ledger>,
) -> Response<Bytes> {
    let key = match query_param(query.unwrap_or_default(), "key") {
        Ok(Some(key)) if !key.trim().is_empty() => key,
        Ok(_) => {
            return bad_request("give the key (or its hash) as ?key=", Some("key")).to_response();
        }
        Err(failure) => return failure.to_response(),
    };
    let record = match keys.info(&key).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return not_found("no such key".to_owned())
                .with_param("key")
                .to_response();
        }
        Err(failure) => return failure.to_response(),
    };
    let spend = match ledger {
        // A config key's name may have billed before this start.
        Some(ledger) => match ledger
            .billed_since(
                &record.name(),
                match record.source {
                    KeySource::Config => 0,
                    KeySource::Generated => record.created_at_ms,
                },
            )
            .await
        {
            Ok(picos) => money(u64::try_from(picos).unwrap_or(u64::MAX)),
            Err(error) => {
                tracing::warn!(key = %record.name(), %error, "cannot read a key's spend from the ledger");
                None
            }
        },
        None => None,
    };
    #[derive(Serialize)]
    struct Info<'a> {
        key: String,
        info: Spent<'a>,
    }
    #[derive(Serialize)]
    struct Spent<'a> {
        #[serde(flatten)]
        view: View<'a>,
        /// Exact decimal dollars, as a JSON number; absent without a ledger.
        #[serde(skip_serializing_if = "Option::is_none")]
        spend: Option<Box<RawValue>>,
    }
    let body = Info {
        key: to_hex(&record.hash),
        info: Spent {
            view: View::of(&record, None),
            spend,
        },
    };
    json(StatusCode::OK, &body)
}

/// `POST /key/delete` with `{"keys": [...]}` (keys or hex hashes) and/or
/// `{"key_aliases": [...]}` → `{"deleted_keys": [names]}`, at `now_ms`
/// (unix ms).
pub(crate) async fn delete(keys: &Keys, body: &[u8], now_ms: i64) -> Response<Bytes> {
    match delete_inner(keys, body, now_ms).await {
        Ok(names) => {
            #[derive(Serialize)]
            struct Deleted {
                deleted_keys: Vec<String>,
            }
            json(
                StatusCode::OK,
                &Deleted {
                    deleted_keys: names,
                },
            )
        }
        Err(failure) => failure.to_response(),
    }
}

async fn delete_inner(keys: &Keys, body: &[u8], now_ms: i64) -> Result<Vec<String>, Failure> {
    let fields = super::generate::fields(body)?;
    let list = |field: &'static str| -> Result<Vec<String>, Failure> {
        match fields.get(field).map(|raw| raw.get()) {
            None | Some("null") => Ok(Vec::new()),
            Some(raw) => serde_json::from_str(raw).map_err(|_| {
                bad_request(format!("{field} must be a list of strings"), Some(field))
            }),
        }
    };
    let mut targets = list("keys")?;
    let aliases = list("key_aliases")?;
    if targets.is_empty() && aliases.is_empty() {
        return Err(bad_request(
            "give the keys to delete as \"keys\" (keys or their hashes) or \"key_aliases\"",
            Some("keys"),
        ));
    }
    for (index, alias) in aliases.iter().enumerate() {
        match keys.find_alias(alias).await? {
            Some(hash) => targets.push(to_hex(&hash)),
            None => {
                return Err(not_found(format!(
                    "key_aliases[{index}]: no key has the alias {alias:?}"
                ))
                .with_param("key_aliases"));
            }
        }
    }
    keys.delete(&targets, now_ms).await
}
