//! New key text, and the body of `POST /key/generate`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::value::RawValue;
use tollgate_core::{ErrorClass, Failure};
use tollgate_cost::Usd;

use super::key::VirtualKey;
use crate::config::duration;
use crate::key_format::KEY_PREFIX;

/// Characters of base64url after the prefix: 32 bytes, unpadded.
const KEY_BODY_LEN: usize = 43;

/// A new key's text, which never reaches a log: `Debug` and `Display` are
/// redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyText(String);

impl KeyText {
    /// The key itself, for the one response that returns it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A fresh key: `sk-` and 43 characters of base64url, from 32 bytes of
/// the operating system's CSPRNG.
pub(crate) fn new_key_text(rng: &SystemRandom) -> Result<KeyText, Failure> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| Failure::new(ErrorClass::Internal, "no randomness to generate a key"))?;
    let mut text = String::with_capacity(KEY_PREFIX.len() + KEY_BODY_LEN);
    text.push_str(KEY_PREFIX);
    // Unpadded base64url (RFC 4648 §5).
    URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
    Ok(KeyText(text))
}

/// Whether `text` has the shape of a generated key. Only such texts are
/// looked up in Redis: any other unknown text is refused without a round
/// trip (config keys, whatever their shape, are always known locally).
pub(crate) fn looks_generated(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX).is_some_and(|body| {
        body.len() == KEY_BODY_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What `POST /key/generate` asks for, validated; also the settings of
/// `/key/update` and `/key/regenerate`, where a field left out (or `null`)
/// keeps the key's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GenerateRequest {
    /// `key_alias`.
    pub(crate) key_alias: Option<String>,
    /// `models`: model groups the key may use; empty means all.
    pub(crate) models: Option<Vec<String>>,
    /// `rpm_limit`.
    pub(crate) rpm_limit: Option<u32>,
    /// `tpm_limit`.
    pub(crate) tpm_limit: Option<u64>,
    /// `max_parallel_requests`.
    pub(crate) max_parallel_requests: Option<u32>,
    /// `max_budget`, in pico-dollars, read exactly from the JSON text.
    pub(crate) max_budget_picos: Option<u64>,
    /// `budget_duration`.
    pub(crate) budget_duration: Option<Duration>,
    /// `duration`: how long the key lives.
    pub(crate) duration: Option<Duration>,
    /// `metadata`: a JSON object.
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `aliases`: model name → model group, for this key.
    pub(crate) aliases: Option<BTreeMap<String, String>>,
    /// `team_id`.
    pub(crate) team_id: Option<String>,
    /// `user_id`.
    pub(crate) user_id: Option<String>,
    /// `blocked`.
    pub(crate) blocked: Option<bool>,
}

impl GenerateRequest {
    /// Reads LiteLLM's `/key/generate` body. Unknown fields are ignored
    /// (LiteLLM has many: `tags`, `permissions`...); a field of the wrong
    /// type or out of range is a 400 naming it. An empty body asks for a
    /// key with no limits.
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, Failure> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(GenerateRequest::default());
        }
        let fields = fields(body)?;
        if fields.contains_key("key") {
            return Err(bad_request(
                "choosing the key text is not supported: omit `key` and Tollgate \
                 generates one, or put the key in tollgate.keys in the config file",
                Some("key"),
            ));
        }
        Self::from_fields(&fields)
    }

    /// Reads the body of `/key/update` or `/key/regenerate`: the key it is
    /// for (`key`: the key or its hex hash) and the settings to change.
    pub(crate) fn change_from_json(body: &[u8]) -> Result<(String, Self), Failure> {
        let fields = fields(body)?;
        let target = target(&fields)?;
        if fields.contains_key("new_key") {
            return Err(bad_request(
                "choosing the new key text is not supported: omit `new_key` and Tollgate \
                 generates one",
                Some("new_key"),
            ));
        }
        Ok((target, Self::from_fields(&fields)?))
    }

    fn from_fields(fields: &BTreeMap<String, Box<RawValue>>) -> Result<Self, Failure> {
        let mut out = GenerateRequest::default();
        for (name, raw) in fields {
            let raw = raw.get();
            if raw == "null" {
                continue;
            }
            match name.as_str() {
                "key_alias" => out.key_alias = Some(alias(raw)?),
                "models" => out.models = Some(models(raw)?),
                "rpm_limit" => out.rpm_limit = Some(whole_u32(raw, "rpm_limit")?),
                "tpm_limit" => out.tpm_limit = Some(whole(raw, "tpm_limit", u64::MAX)?),
                "max_parallel_requests" => {
                    out.max_parallel_requests = Some(whole_u32(raw, "max_parallel_requests")?);
                }
                "max_budget" => out.max_budget_picos = Some(money(raw, "max_budget")?),
                "budget_duration" => {
                    out.budget_duration = Some(litellm_duration(raw, "budget_duration")?)
                }
                "duration" => out.duration = Some(litellm_duration(raw, "duration")?),
                "metadata" => out.metadata = Some(metadata(raw)?),
                "aliases" => out.aliases = Some(aliases(raw)?),
                "team_id" => out.team_id = Some(label(raw, "team_id")?),
                "user_id" => out.user_id = Some(label(raw, "user_id")?),
                "blocked" => out.blocked = Some(flag(raw, "blocked")?),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl GenerateRequest {
    /// Writes the settings given into `key`, at `now_ms` (unix ms): a
    /// `duration` runs from now.
    pub(crate) fn apply_to(self, key: &mut VirtualKey, now_ms: i64) {
        if let Some(alias) = self.key_alias {
            key.set_alias(Some(alias));
        }
        key.rpm_limit = self.rpm_limit.or(key.rpm_limit);
        key.max_parallel_requests = self.max_parallel_requests.or(key.max_parallel_requests);
        key.models = self.models.unwrap_or(std::mem::take(&mut key.models));
        key.tpm_limit = self.tpm_limit.or(key.tpm_limit);
        key.max_budget_picos = self.max_budget_picos.or(key.max_budget_picos);
        key.budget_duration = self.budget_duration.or(key.budget_duration);
        if let Some(duration) = self.duration {
            let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
            key.expires_at_ms = Some(now_ms.saturating_add(ms));
        }
        if let Some(metadata) = self.metadata {
            key.metadata = serde_json::Value::Object(metadata);
        }
        if let Some(aliases) = self.aliases {
            key.model_aliases = aliases;
        }
        key.team_id = self.team_id.or(key.team_id.take());
        key.user_id = self.user_id.or(key.user_id.take());
        key.blocked = self.blocked.unwrap_or(key.blocked);
    }
}

/// The body as a JSON object of raw values: each number keeps its text,
/// so `max_budget: 25.10` is read as exactly 25.10 dollars, never through
/// a float.
pub(crate) fn fields(body: &[u8]) -> Result<BTreeMap<String, Box<RawValue>>, Failure> {
    serde_json::from_slice(body).map_err(|_| bad_request("the body must be a JSON object", None))
}

/// The `key` field: the key, or its hex hash, that an admin call is for.
pub(crate) fn target(fields: &BTreeMap<String, Box<RawValue>>) -> Result<String, Failure> {
    fields
        .get("key")
        .and_then(|raw| string(raw.get()))
        .filter(|key| !key.trim().is_empty())
        .ok_or_else(|| bad_request("give the key (or its hash) as \"key\"", Some("key")))
}

/// A 400 with `param` naming the field.
pub(crate) fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Failure {
    let failure = Failure::new(ErrorClass::BadRequest, message.into());
    match param {
        Some(param) => failure.with_param(param),
        None => failure,
    }
}

/// A JSON string, or `None` when `raw` is not one.
pub(crate) fn string(raw: &str) -> Option<String> {
    serde_json::from_str::<String>(raw).ok()
}

fn alias(raw: &str) -> Result<String, Failure> {
    let field = Some("key_alias");
    let alias = string(raw).ok_or_else(|| bad_request("key_alias must be a string", field))?;
    crate::key_format::check_alias(&alias)
        .map_err(|why| bad_request(format!("key_alias {why}"), field))?;
    Ok(alias)
}

/// A non-empty string of at most 256 characters: a team or user id.
pub(crate) fn label(raw: &str, field: &'static str) -> Result<String, Failure> {
    string(raw)
        .filter(|text| !text.trim().is_empty() && text.chars().count() <= 256)
        .ok_or_else(|| {
            bad_request(
                format!("{field} must be a string of 1 to 256 characters"),
                Some(field),
            )
        })
}

/// LiteLLM's `aliases`: `{"model name": "model group"}`.
fn aliases(raw: &str) -> Result<BTreeMap<String, String>, Failure> {
    let field = Some("aliases");
    let map: BTreeMap<String, String> = serde_json::from_str(raw)
        .map_err(|_| bad_request("aliases must map model names to model group names", field))?;
    if map
        .iter()
        .any(|(from, to)| from.trim().is_empty() || to.trim().is_empty())
    {
        return Err(bad_request("aliases must not contain an empty name", field));
    }
    Ok(map)
}

pub(crate) fn models(raw: &str) -> Result<Vec<String>, Failure> {
    let field = Some("models");
    let list: Vec<String> = serde_json::from_str(raw)
        .map_err(|_| bad_request("models must be a list of model group names", field))?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for model in list {
        if model.trim().is_empty() {
            return Err(bad_request("models must not contain an empty name", field));
        }
        if !out.contains(&model) {
            out.push(model);
        }
    }
    Ok(out)
}

/// A whole number from 0 to `max`, as a JSON number or a string of digits
/// (pydantic, and so LiteLLM, accepts both).
pub(crate) fn whole(raw: &str, field: &'static str, max: u64) -> Result<u64, Failure> {
    let text = string(raw).unwrap_or_else(|| raw.to_owned());
    let text = text.trim();
    let wrong = || {
        bad_request(
            format!("{field} must be a whole number from 0 to {max}"),
            Some(field),
        )
    };
    if text.starts_with('-') && text.len() > 1 {
        return Err(bad_request(
            format!("{field} must not be negative"),
            Some(field),
        ));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong());
    }
    text.parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(wrong)
}

pub(crate) fn whole_u32(raw: &str, field: &'static str) -> Result<u32, Failure> {
    let n = whole(raw, field, u32::MAX.into())?;
    // `whole` capped it at u32::MAX.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The names of the `fields` given (`true`), comma-separated: what an
/// admin change names in the audit log (never the values: metadata may
/// hold anything).
pub(crate) fn given_names<const N: usize>(fields: [(&'static str, bool); N]) -> String {
    let names: Vec<&str> = fields
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
    names.join(",")
}

/// `true` or `false`.
pub(crate) fn flag(raw: &str, field: &'static str) -> Result<bool, Failure> {
    serde_json::from_str(raw)
        .map_err(|_| bad_request(format!("{field} must be true or false"), Some(field)))
}

/// `metadata`: a JSON object, kept as it is.
pub(crate) fn metadata(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    serde_json::from_str(raw)
        .map_err(|_| bad_request("metadata must be a JSON object", Some("metadata")))
}

/// Dollars as a JSON number or a string (`25.5`, `"25.5"`), exactly.
pub(crate) fn money(raw: &str, field: &'static str) -> Result<u64, Failure> {
    let text = string(raw).unwrap_or_else(|| raw.to_owned());
    let text = text.trim();
    if text.starts_with('-') {
        return Err(bad_request(
            format!("{field} must not be negative"),
            Some(field),
        ));
    }
    Usd::parse(text).map(Usd::picos).map_err(|_| {
        bad_request(
            format!(
                "{field} must be an amount of dollars, such as 25.5 or \"25.5\", up to 18446744"
            ),
            Some(field),
        )
    })
}

pub(crate) fn litellm_duration(raw: &str, field: &'static str) -> Result<Duration, Failure> {
    let text = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::String(text)) => text,
        // LiteLLM reads a bare number as seconds.
        Ok(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    duration::parse(&text).map_err(|error| bad_request(format!("{field}: {error}"), Some(field)))
}
