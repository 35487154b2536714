//! How the key admin API writes its answers: a key as JSON ([`View`]),
//! exact money, and the query string it reads.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::Failure;
use tollgate_cost::Usd;

use super::VirtualKey;
use super::generate::bad_request;
use super::key::rfc3339;
use crate::config::duration;
use crate::key_format::to_hex;

/// A key as the admin API shows it: everything but the key text, unless
/// `key` is given (the answer to `/key/generate` and `/key/regenerate`).
#[derive(Serialize)]
pub(crate) struct View<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    key_alias: Option<&'a str>,
    key_name: String,
    token: String,
    expires: Option<String>,
    models: &'a [String],
    rpm_limit: Option<u32>,
    tpm_limit: Option<u64>,
    max_parallel_requests: Option<u32>,
    /// Exact decimal dollars, as a JSON number.
    max_budget: Option<Box<RawValue>>,
    budget_duration: Option<String>,
    metadata: &'a serde_json::Value,
    created_at: String,
    source: &'static str,
    blocked: bool,
    aliases: &'a std::collections::BTreeMap<String, String>,
    team_id: Option<&'a str>,
    user_id: Option<&'a str>,
    updated_at: Option<String>,
}

impl<'a> View<'a> {
    pub(crate) fn of(record: &'a VirtualKey, key: Option<&'a str>) -> Self {
        View {
            key,
            key_alias: record.alias(),
            key_name: record.name().to_string(),
            token: to_hex(&record.hash),
            expires: record.expires_at_ms.map(rfc3339),
            models: &record.models,
            rpm_limit: record.rpm_limit,
            tpm_limit: record.tpm_limit,
            max_parallel_requests: record.max_parallel_requests,
            max_budget: record.max_budget_picos.and_then(money),
            budget_duration: record.budget_duration.map(duration::format),
            metadata: &record.metadata,
            created_at: rfc3339(record.created_at_ms),
            source: record.source.as_str(),
            blocked: record.blocked,
            aliases: &record.model_aliases,
            team_id: record.team_id.as_deref(),
            user_id: record.user_id.as_deref(),
            updated_at: record.updated_at_ms.map(rfc3339),
        }
    }
}

/// Picodollars as exact decimal dollars, a JSON number.
pub(crate) fn money(picos: u64) -> Option<Box<RawValue>> {
    RawValue::from_string(Usd::from_picos(picos).to_string()).ok()
}

pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response<Bytes> {
    // Serialising strings, numbers and JSON values cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A 405 for `path`, which takes `allowed` requests only.
pub(crate) fn method_not_allowed(path: &str, allowed: &http::Method) -> Response<Bytes> {
    let failure = bad_request(format!("{path} takes {allowed} requests"), None)
        .with_status(StatusCode::METHOD_NOT_ALLOWED);
    let mut response = failure.to_response::<Bytes>();
    if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The percent-decoded value of `name` in a query string.
pub(crate) fn query_param(query: &str, name: &str) -> Result<Option<String>, Failure> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            return percent_decode(value).map(Some).ok_or_else(|| {
                bad_request(format!("{name} is not valid percent-encoding"), Some("key"))
            });
        }
    }
    Ok(None)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
