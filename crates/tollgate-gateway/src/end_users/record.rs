//! [`EndUser`]: one registered end user as it is stored, and the changes
//! `/customer/new` and `/customer/update` make to it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::Failure;
use tollgate_limits::{Budget, KeyLimits};

use crate::keys::generate::{
    bad_request, fields, flag, given_names, label, litellm_duration, money, string, whole,
    whole_u32,
};

/// The prefix of an end user's name in the rate limits' store, so that an
/// end user called like a key never shares its counters.
pub(crate) const LIMITS_PREFIX: &str = "end_user:";

/// A registered end user: LiteLLM's `LiteLLM_EndUserTable` row with its
/// budget row folded in. Stored as JSON (in Redis and in SQLite); a deleted
/// end user is kept as a tombstone (`deleted`, no settings) so that a copy
/// found later cannot bring it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndUser {
    /// The request's `user` value this row is for.
    pub(crate) user_id: String,
    #[serde(default)]
    pub(crate) alias: Option<String>,
    #[serde(default)]
    pub(crate) blocked: bool,
    #[serde(default)]
    pub(crate) rpm_limit: Option<u32>,
    #[serde(default)]
    pub(crate) tpm_limit: Option<u64>,
    #[serde(default)]
    pub(crate) max_parallel_requests: Option<u32>,
    /// Exact, in pico-dollars.
    #[serde(default)]
    pub(crate) max_budget_picos: Option<u64>,
    #[serde(default)]
    pub(crate) budget_duration_s: Option<u64>,
    pub(crate) created_at_ms: i64,
    /// When an admin last changed it: the newer copy wins.
    pub(crate) updated_at_ms: i64,
    #[serde(default)]
    pub(crate) deleted: bool,
}

impl EndUser {
    /// A new end user with no settings.
    pub(crate) fn new(user_id: String, now_ms: i64) -> Self {
        EndUser {
            user_id,
            alias: None,
            blocked: false,
            rpm_limit: None,
            tpm_limit: None,
            max_parallel_requests: None,
            max_budget_picos: None,
            budget_duration_s: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            deleted: false,
        }
    }

    /// The tombstone left by deleting this end user at `now_ms`.
    pub(crate) fn tombstone(&self, now_ms: i64) -> Self {
        EndUser {
            deleted: true,
            updated_at_ms: now_ms.max(self.updated_at_ms + 1),
            ..EndUser::new(self.user_id.clone(), self.created_at_ms)
        }
    }

    /// The stored form.
    pub(crate) fn to_json(&self) -> String {
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form; `None` for text that is not one.
    pub(crate) fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// `budget_duration`, as a duration.
    pub(crate) fn budget_duration(&self) -> Option<Duration> {
        self.budget_duration_s.map(Duration::from_secs)
    }

    /// Whether any rate limit or budget of its own is set (LiteLLM shows a
    /// `litellm_budget_table` then).
    pub(crate) fn has_limits(&self) -> bool {
        self.rpm_limit.is_some()
            || self.tpm_limit.is_some()
            || self.max_parallel_requests.is_some()
            || self.max_budget_picos.is_some()
    }
}

/// The budget an end user counts against: their own `max_budget` (per
/// `budget_duration`), else `default_picos` (`max_end_user_budget`, for
/// the end user's lifetime, as LiteLLM applies it).
pub(crate) fn budget_of(record: Option<&EndUser>, default_picos: Option<u64>) -> Option<Budget> {
    match record.and_then(|r| r.max_budget_picos.map(|max| (max, r.budget_duration()))) {
        Some((max, Some(window))) => Some(Budget::per(max, window)),
        Some((max, None)) => Some(Budget::lifetime(max)),
        None => default_picos.map(Budget::lifetime),
    }
}

/// The limits a request of `user` counts against, beside its key's.
pub(crate) fn limits_of(
    user: &str,
    record: Option<&EndUser>,
    default_picos: Option<u64>,
) -> KeyLimits {
    let mut limits = KeyLimits::new(Arc::<str>::from(format!("{LIMITS_PREFIX}{user}")));
    if let Some(record) = record {
        limits.rpm = record.rpm_limit;
        limits.tpm = record.tpm_limit;
        limits.max_parallel = record.max_parallel_requests;
    }
    limits.max_budget = budget_of(record, default_picos);
    limits
}

/// What `/customer/new` or `/customer/update` asks for: the end user, and
/// each setting given (`null` counts as not given).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) user_id: String,
    pub(crate) alias: Option<String>,
    pub(crate) blocked: Option<bool>,
    pub(crate) rpm_limit: Option<u32>,
    pub(crate) tpm_limit: Option<u64>,
    pub(crate) max_parallel_requests: Option<u32>,
    pub(crate) max_budget_picos: Option<u64>,
    pub(crate) budget_duration_s: Option<u64>,
}

/// LiteLLM fields Tollgate does not act on and refuses rather than ignore:
/// each would change what a request may do (DECISIONS.md).
const REFUSED: [&str; 6] = [
    "budget_id",
    "allowed_model_region",
    "default_model",
    "model_max_budget",
    "object_permission",
    "budget_reset_at",
];

impl Change {
    /// Reads a `/customer/new` or `/customer/update` body (LiteLLM's
    /// `NewCustomerRequest` / `UpdateCustomerRequest`).
    ///
    /// # Errors
    ///
    /// A 400 naming the field: no `user_id`, a value of the wrong type, a
    /// field Tollgate refuses ([`REFUSED`]), or a starting `spend` (spend
    /// comes from the ledger).
    pub(crate) fn from_json(body: &[u8]) -> Result<Change, Failure> {
        let fields = fields(body)?;
        let user_id = match fields.get("user_id") {
            Some(raw) => label(raw.get(), "user_id")?,
            None => {
                return Err(bad_request(
                    "give the end user as \"user_id\"",
                    Some("user_id"),
                ));
            }
        };
        let mut change = Change {
            user_id,
            ..Change::default()
        };
        for (name, raw) in &fields {
            let raw = raw.get();
            if raw == "null" {
                continue;
            }
            match name.as_str() {
                "alias" => {
                    change.alias = Some(
                        string(raw)
                            .ok_or_else(|| bad_request("alias must be a string", Some("alias")))?,
                    );
                }
                "blocked" => change.blocked = Some(flag(raw, "blocked")?),
                "rpm_limit" => change.rpm_limit = Some(whole_u32(raw, "rpm_limit")?),
                "tpm_limit" => change.tpm_limit = Some(whole(raw, "tpm_limit", u64::MAX)?),
                "max_parallel_requests" => {
                    change.max_parallel_requests = Some(whole_u32(raw, "max_parallel_requests")?);
                }
                "max_budget" => change.max_budget_picos = Some(money(raw, "max_budget")?),
                "budget_duration" => {
                    let window = litellm_duration(raw, "budget_duration")?;
                    change.budget_duration_s = Some(window.as_secs().max(1));
                }
                "spend" if money(raw, "spend")? != 0 => {
                    return Err(bad_request(
                        "spend is counted from the spend ledger and cannot be set",
                        Some("spend"),
                    ));
                }
                refused if REFUSED.contains(&refused) => {
                    return Err(bad_request(
                        format!("{refused} is not supported by Tollgate; see docs/DECISIONS.md"),
                        REFUSED.iter().copied().find(|f| *f == refused),
                    ));
                }
                // user_id (read above), and what has no effect on requests
                // (soft_budget alerts, metadata).
                _ => {}
            }
        }
        Ok(change)
    }

    /// Writes the settings given into `record`, at `now_ms`.
    pub(crate) fn apply_to(&self, record: &mut EndUser, now_ms: i64) {
        record.alias = self.alias.clone().or(record.alias.take());
        record.blocked = self.blocked.unwrap_or(record.blocked);
        record.rpm_limit = self.rpm_limit.or(record.rpm_limit);
        record.tpm_limit = self.tpm_limit.or(record.tpm_limit);
        record.max_parallel_requests = self.max_parallel_requests.or(record.max_parallel_requests);
        record.max_budget_picos = self.max_budget_picos.or(record.max_budget_picos);
        record.budget_duration_s = self.budget_duration_s.or(record.budget_duration_s);
        record.updated_at_ms = now_ms.max(record.updated_at_ms + 1);
    }

    /// The names of the settings given, for the audit log (never values).
    pub(crate) fn fields(&self) -> String {
        given_names([
            ("alias", self.alias.is_some()),
            ("blocked", self.blocked.is_some()),
            ("rpm_limit", self.rpm_limit.is_some()),
            ("tpm_limit", self.tpm_limit.is_some()),
            (
                "max_parallel_requests",
                self.max_parallel_requests.is_some(),
            ),
            ("max_budget", self.max_budget_picos.is_some()),
            ("budget_duration", self.budget_duration_s.is_some()),
        ])
    }
}

/// `{"user_ids": [...]}`, the body of `/customer/delete`, `/block` and
/// `/unblock`.
pub(crate) fn user_ids(body: &[u8]) -> Result<Vec<String>, Failure> {
    #[derive(Deserialize)]
    struct Ids {
        user_ids: Vec<String>,
    }
    let ids: Ids = serde_json::from_slice(body).map_err(|_| {
        bad_request(
            "the body must be {\"user_ids\": [\"...\"]}",
            Some("user_ids"),
        )
    })?;
    if ids.user_ids.is_empty() {
        return Err(bad_request("user_ids must not be empty", Some("user_ids")));
    }
    for id in &ids.user_ids {
        label(&serde_json::to_string(id).unwrap_or_default(), "user_ids")?;
    }
    Ok(ids.user_ids)
}
