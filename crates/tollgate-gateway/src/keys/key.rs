//! [`VirtualKey`]: what the gateway knows about a key, without the key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::KeysError;
use crate::config::ConfiguredKey;
use crate::key_format::{KeyHash, sha256, to_hex};
use tollgate_core::time::civil_from_days;

/// Where a virtual key was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `tollgate.keys` in the config file: cannot be deleted through the API.
    Config,
    /// `POST /key/generate`.
    Generated,
}

impl KeySource {
    /// `config` or `generated`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            KeySource::Config => "config",
            KeySource::Generated => "generated",
        }
    }
}

/// A virtual key's stored record: its hash, name, limits and lifetime.
///
/// The key text itself is never part of it. [`name`](Self::name) is the
/// only thing about a key that may appear in logs, metrics, the ledger and
/// error messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VirtualKey {
    /// SHA-256 of the key text.
    pub(crate) hash: KeyHash,
    alias: Option<String>,
    /// Cached [`name`](Self::name), so the hot path does not format it.
    name: Arc<str>,
    /// Model groups the key may use; empty (or `*`) means all.
    pub(crate) models: Vec<String>,
    /// Requests per minute.
    pub(crate) rpm_limit: Option<u32>,
    /// Tokens per minute.
    pub(crate) tpm_limit: Option<u64>,
    /// Requests in flight at once.
    pub(crate) max_parallel_requests: Option<u32>,
    /// Spend allowed per `budget_duration` (or in the key's lifetime), in
    /// pico-dollars (1e-12 $).
    pub(crate) max_budget_picos: Option<u64>,
    /// The budget window; `None` with a budget means a lifetime budget.
    pub(crate) budget_duration: Option<Duration>,
    /// When the key stops working, unix ms; `None` never.
    pub(crate) expires_at_ms: Option<i64>,
    /// Free-form metadata from `/key/generate` (a JSON object).
    pub(crate) metadata: serde_json::Value,
    /// When the key was made, unix ms.
    pub(crate) created_at_ms: i64,
    /// Config or generated.
    pub(crate) source: KeySource,
    /// Stopped by `/key/block` until `/key/unblock`.
    pub(crate) blocked: bool,
    /// LiteLLM's `aliases`: a model name this key's clients send → the
    /// model group it stands for.
    pub(crate) model_aliases: BTreeMap<String, String>,
    /// LiteLLM's `team_id`: a label `/key/list` filters on.
    pub(crate) team_id: Option<String>,
    /// LiteLLM's `user_id`: a label `/key/list` filters on.
    pub(crate) user_id: Option<String>,
    /// When an admin call last changed the key, unix ms.
    pub(crate) updated_at_ms: Option<i64>,
}

impl VirtualKey {
    /// A key with this hash and alias and no limits; set the rest through
    /// the fields.
    pub(crate) fn new(
        hash: KeyHash,
        alias: Option<String>,
        source: KeySource,
        created_at_ms: i64,
    ) -> Self {
        let name: Arc<str> = match &alias {
            Some(alias) => Arc::from(alias.as_str()),
            None => Arc::from(format!("key-{}", &to_hex(&hash)[..12])),
        };
        VirtualKey {
            hash,
            alias,
            name,
            models: Vec::new(),
            rpm_limit: None,
            tpm_limit: None,
            max_parallel_requests: None,
            max_budget_picos: None,
            budget_duration: None,
            expires_at_ms: None,
            metadata: serde_json::Value::Object(serde_json::Map::new()),
            created_at_ms,
            source,
            blocked: false,
            model_aliases: BTreeMap::new(),
            team_id: None,
            user_id: None,
            updated_at_ms: None,
        }
    }

    /// The same key under the name `name`: the name a key was made with
    /// stays its name through `/key/update` and `/key/regenerate`, so its
    /// limits, budget and ledger rows stay its own.
    pub(crate) fn named(mut self, name: &str) -> Self {
        if *self.name != *name {
            self.name = Arc::from(name);
        }
        self
    }

    /// Gives the key a new alias (or none); its [`name`](Self::name) stays.
    pub(crate) fn set_alias(&mut self, alias: Option<String>) {
        self.alias = alias;
    }

    /// The same key with another secret: every setting and the name kept,
    /// `hash` the new secret's.
    pub(crate) fn rehashed(&self, hash: KeyHash) -> Self {
        VirtualKey {
            hash,
            ..self.clone()
        }
    }

    /// The model group the client's `model` stands for, through this
    /// key's `aliases`.
    pub(crate) fn resolve_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.model_aliases.get(model).map_or(model, String::as_str)
    }

    /// The config entry `tollgate.keys[index]` as a key.
    pub(crate) fn configured(
        index: usize,
        entry: &ConfiguredKey,
        created_at_ms: i64,
    ) -> Result<VirtualKey, KeysError> {
        let alias = entry.key_alias.clone();
        let hash = match (&entry.key, &entry.key_hash) {
            (Some(secret), _) if secret.expose().is_empty() => {
                return Err(KeysError::EmptyKey { index, alias });
            }
            (Some(secret), _) => sha256(secret.expose().as_bytes()),
            (None, Some(hash)) => *hash,
            (None, None) => return Err(KeysError::EmptyKey { index, alias }),
        };
        let max_budget_picos = match &entry.max_budget {
            None => None,
            Some(budget) => Some(
                budget
                    .to_units(12)
                    .and_then(|picos| u64::try_from(picos).ok())
                    .ok_or_else(|| KeysError::Budget {
                        index,
                        alias: alias.clone(),
                    })?,
            ),
        };
        let mut key = VirtualKey::new(hash, Some(alias), KeySource::Config, created_at_ms);
        key.models = entry.models.clone();
        key.rpm_limit = entry.rpm_limit;
        key.tpm_limit = entry.tpm_limit;
        key.max_parallel_requests = entry.max_parallel_requests;
        key.max_budget_picos = max_budget_picos;
        key.budget_duration = entry.budget_duration;
        Ok(key)
    }

    /// The alias given when the key was made.
    pub(crate) fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }

    /// The alias, else `key-` and the first 12 hex digits of the hash: the
    /// only way a key may be named in logs, metrics, the ledger and errors.
    pub(crate) fn name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// Whether the key may use the model group `model`.
    pub(crate) fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == "*" || m == model)
    }

    /// Whether the key has expired at `now_ms` (unix ms).
    pub(crate) fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// Unix milliseconds as RFC 3339 UTC: `2025-01-31T12:00:00Z`, with
/// `.123` milliseconds when there are any.
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    if millis == 0 {
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
    }
}
