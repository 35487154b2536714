//! [`Team`]: a team's stored record, its deletion ([`Tombstone`]), and the
//! body of `/team/new` and `/team/update` ([`TeamRequest`]).

use std::collections::BTreeMap;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tollgate_core::{ErrorClass, Failure};
use tollgate_limits::{Budget, KeyLimits};

use crate::keys::generate::{
    bad_request, fields, flag, given_names, litellm_duration, metadata, models, money, string,
    whole, whole_u32,
};

/// Version of the record's JSON; a reader refuses newer records rather
/// than misread them.
const RECORD_VERSION: u32 = 1;

/// The most characters of a `team_id` or `team_alias`.
const MAX_ID_CHARS: usize = 256;

/// A team: the limits, budget and models its member keys (keys whose
/// `team_id` is the team's) share, on top of their own.
///
/// As JSON (the Redis value and the SQLite row):
///
/// ```json
/// {"v":1,"team_id":"search","team_alias":"Search","models":["gpt-4o"],
///  "max_budget_picos":100000000000000,"budget_duration_s":2592000,
///  "tpm_limit":100000,"rpm_limit":600,"max_parallel_requests":8,
///  "metadata":{},"blocked":false,"created_at_ms":1767225600000,
///  "updated_at_ms":1767225600000}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Team {
    #[serde(default = "version")]
    v: u32,
    /// LiteLLM's `team_id`: given, or a random UUID.
    pub(crate) team_id: String,
    pub(crate) team_alias: Option<String>,
    /// Model groups the team's keys may use; empty means all.
    pub(crate) models: Vec<String>,
    /// Spend allowed per `budget_duration` (or for good), pico-dollars.
    pub(crate) max_budget_picos: Option<u64>,
    /// The budget window, whole seconds; `None` with a budget: a lifetime
    /// budget.
    pub(crate) budget_duration_s: Option<u64>,
    pub(crate) tpm_limit: Option<u64>,
    pub(crate) rpm_limit: Option<u32>,
    pub(crate) max_parallel_requests: Option<u32>,
    pub(crate) metadata: serde_json::Value,
    /// `/team/block`: every member key is refused until `/team/unblock`.
    pub(crate) blocked: bool,
    /// Unix ms; a tombstone older than this does not delete the team (a
    /// team made again after a deletion, with the same id).
    pub(crate) created_at_ms: i64,
    /// Unix ms of the last change: the newer of two copies wins.
    pub(crate) updated_at_ms: i64,
}

fn version() -> u32 {
    RECORD_VERSION
}

impl Team {
    /// A team with this id and no limits, made at `now_ms`.
    pub(crate) fn new(team_id: String, now_ms: i64) -> Self {
        Team {
            v: RECORD_VERSION,
            team_id,
            team_alias: None,
            models: Vec::new(),
            max_budget_picos: None,
            budget_duration_s: None,
            tpm_limit: None,
            rpm_limit: None,
            max_parallel_requests: None,
            metadata: serde_json::Value::Object(serde_json::Map::new()),
            blocked: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// The record as JSON.
    pub(crate) fn to_json(&self) -> String {
        // Strings, numbers and JSON values always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record from JSON, as [`to_json`](Self::to_json) writes it.
    pub(crate) fn from_json(json: &str) -> Result<Team, String> {
        let team: Team = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if team.v > RECORD_VERSION {
            return Err(format!(
                "team record version {} is newer than this gateway reads",
                team.v
            ));
        }
        Ok(team)
    }

    /// The budget window.
    pub(crate) fn budget_duration(&self) -> Option<Duration> {
        self.budget_duration_s.map(Duration::from_secs)
    }

    /// The name the team's limits count under (and its 429s name):
    /// `team:` and its id.
    pub(crate) fn limits_name(&self) -> String {
        format!("team:{}", self.team_id)
    }

    /// The team's limits, as the rate-limit layer reads them.
    pub(crate) fn limits(&self) -> KeyLimits {
        let mut limits = KeyLimits::new(self.limits_name());
        if let Some(rpm) = self.rpm_limit {
            limits = limits.rpm(rpm);
        }
        if let Some(tpm) = self.tpm_limit {
            limits = limits.tpm(tpm);
        }
        if let Some(parallel) = self.max_parallel_requests {
            limits = limits.max_parallel(parallel);
        }
        if let Some(picos) = self.max_budget_picos {
            limits = limits.max_budget(match self.budget_duration() {
                Some(window) => Budget::per(picos, window),
                None => Budget::lifetime(picos),
            });
        }
        limits
    }

    /// Whether the team's keys may use the model group `model`.
    pub(crate) fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == "*" || m == model)
    }

    /// Whether this is a newer version of the same team than `other`.
    pub(crate) fn newer_than(&self, other: &Team) -> bool {
        (self.created_at_ms, self.updated_at_ms) > (other.created_at_ms, other.updated_at_ms)
    }
}

/// The record that a team was deleted, and when: kept, so that a copy of
/// the team found elsewhere later (a replica's, after Redis lost its data)
/// is not taken for a live team. It deletes the records made before it
/// only: a team made again with the same id lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    pub(crate) team_id: String,
    pub(crate) deleted_at_ms: i64,
}

impl Tombstone {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn from_json(json: &str) -> Result<Tombstone, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    /// Whether this deletion ends `team` (made at or before it).
    pub(crate) fn ends(&self, team: &Team) -> bool {
        self.deleted_at_ms >= team.created_at_ms
    }

    /// The later of two deletions of one id.
    pub(crate) fn later(self, other: Option<&Tombstone>) -> Tombstone {
        match other {
            Some(other) if other.deleted_at_ms > self.deleted_at_ms => other.clone(),
            _ => self,
        }
    }
}

/// What `/team/new` and `/team/update` ask for, validated; a field left out
/// (or `null`) keeps its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TeamRequest {
    pub(crate) team_id: Option<String>,
    pub(crate) team_alias: Option<String>,
    pub(crate) models: Option<Vec<String>>,
    pub(crate) max_budget_picos: Option<u64>,
    pub(crate) budget_duration: Option<Duration>,
    pub(crate) tpm_limit: Option<u64>,
    pub(crate) rpm_limit: Option<u32>,
    pub(crate) max_parallel_requests: Option<u32>,
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) blocked: Option<bool>,
}

impl TeamRequest {
    /// Reads LiteLLM's body. Unknown fields are ignored (LiteLLM has many:
    /// `members_with_roles`, `organization_id`, `tags`...); a field of the
    /// wrong type or out of range is a 400 naming it.
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, Failure> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(TeamRequest::default());
        }
        Self::from_fields(&fields(body)?)
    }

    fn from_fields(fields: &BTreeMap<String, Box<RawValue>>) -> Result<Self, Failure> {
        let mut out = TeamRequest::default();
        for (name, raw) in fields {
            let raw = raw.get();
            if raw == "null" {
                continue;
            }
            match name.as_str() {
                "team_id" => out.team_id = Some(id(raw, "team_id")?),
                "team_alias" => out.team_alias = Some(id(raw, "team_alias")?),
                "models" => out.models = Some(models(raw)?),
                "max_budget" => out.max_budget_picos = Some(money(raw, "max_budget")?),
                "budget_duration" => {
                    out.budget_duration = Some(litellm_duration(raw, "budget_duration")?);
                }
                "tpm_limit" => out.tpm_limit = Some(whole(raw, "tpm_limit", u64::MAX)?),
                "rpm_limit" => out.rpm_limit = Some(whole_u32(raw, "rpm_limit")?),
                "max_parallel_requests" => {
                    out.max_parallel_requests = Some(whole_u32(raw, "max_parallel_requests")?);
                }
                "metadata" => out.metadata = Some(metadata(raw)?),
                "blocked" => out.blocked = Some(flag(raw, "blocked")?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The names of the settings given, for the audit log (never their
    /// values: metadata may hold anything).
    pub(crate) fn changed_fields(&self) -> String {
        given_names([
            ("team_alias", self.team_alias.is_some()),
            ("models", self.models.is_some()),
            ("max_budget", self.max_budget_picos.is_some()),
            ("budget_duration", self.budget_duration.is_some()),
            ("tpm_limit", self.tpm_limit.is_some()),
            ("rpm_limit", self.rpm_limit.is_some()),
            (
                "max_parallel_requests",
                self.max_parallel_requests.is_some(),
            ),
            ("metadata", self.metadata.is_some()),
            ("blocked", self.blocked.is_some()),
        ])
    }

    /// Writes the settings given into `team`, changed at `now_ms`.
    pub(crate) fn apply_to(self, team: &mut Team, now_ms: i64) {
        if let Some(alias) = self.team_alias {
            team.team_alias = Some(alias);
        }
        if let Some(models) = self.models {
            team.models = models;
        }
        team.max_budget_picos = self.max_budget_picos.or(team.max_budget_picos);
        if let Some(window) = self.budget_duration {
            team.budget_duration_s = Some(window.as_secs().max(1));
        }
        team.tpm_limit = self.tpm_limit.or(team.tpm_limit);
        team.rpm_limit = self.rpm_limit.or(team.rpm_limit);
        team.max_parallel_requests = self.max_parallel_requests.or(team.max_parallel_requests);
        if let Some(metadata) = self.metadata {
            team.metadata = serde_json::Value::Object(metadata);
        }
        team.blocked = self.blocked.unwrap_or(team.blocked);
        team.updated_at_ms = now_ms.max(team.created_at_ms);
    }
}

/// A `team_id` or `team_alias`: 1 to 256 characters, no control
/// characters (it names the team in logs, metrics and Redis keys).
pub(crate) fn id(raw: &str, field: &'static str) -> Result<String, Failure> {
    string(raw)
        .filter(|text| {
            !text.trim().is_empty()
                && text.chars().count() <= MAX_ID_CHARS
                && !text.chars().any(char::is_control)
        })
        .ok_or_else(|| {
            bad_request(
                format!(
                    "{field} must be a string of 1 to {MAX_ID_CHARS} characters, \
                     without control characters"
                ),
                Some(field),
            )
        })
}

/// A random version 4 UUID, as LiteLLM makes team ids.
pub(crate) fn new_team_id(rng: &SystemRandom) -> Result<String, Failure> {
    let mut b = [0u8; 16];
    rng.fill(&mut b)
        .map_err(|_| Failure::new(ErrorClass::Internal, "no randomness to make a team id"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_litellm_fields_and_refuses_bad_ones() {
        let request = TeamRequest::from_json(
            br#"{"team_id":"search","team_alias":"Search","models":["demo"],
                 "max_budget":"2.5","budget_duration":"30d","tpm_limit":1000,
                 "rpm_limit":"60","max_parallel_requests":4,"metadata":{"a":1},
                 "members_with_roles":[]}"#,
        )
        .unwrap();
        assert_eq!(request.team_id.as_deref(), Some("search"));
        assert_eq!(request.max_budget_picos, Some(2_500_000_000_000));
        assert_eq!(
            request.budget_duration,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(request.rpm_limit, Some(60));
        for (body, param) in [
            (&br#"{"team_id":""}"#[..], "team_id"),
            (br#"{"max_budget":-1}"#, "max_budget"),
            (br#"{"rpm_limit":1.5}"#, "rpm_limit"),
            (br#"{"models":"demo"}"#, "models"),
            (br#"{"team_alias":"a\nb"}"#, "team_alias"),
        ] {
            let failure = TeamRequest::from_json(body).unwrap_err();
            let body = String::from_utf8_lossy(&failure.to_openai_body()).into_owned();
            assert!(body.contains(&format!(r#""param":"{param}""#)), "{body}");
        }
    }

    #[test]
    fn a_record_round_trips_and_a_tombstone_ends_only_older_teams() {
        let mut team = Team::new("t".into(), 1000);
        team.max_budget_picos = Some(5);
        team.budget_duration_s = Some(60);
        assert_eq!(Team::from_json(&team.to_json()).unwrap(), team);
        let deleted = Tombstone {
            team_id: "t".into(),
            deleted_at_ms: 1000,
        };
        assert!(deleted.ends(&team));
        assert!(!deleted.ends(&Team::new("t".into(), 1001)));
        let limits = team.limits();
        assert_eq!(&*limits.name, "team:t");
        assert_eq!(
            limits.max_budget,
            Some(Budget::per(5, Duration::from_secs(60)))
        );
    }

    #[test]
    fn team_ids_are_version_4_uuids() {
        let id = new_team_id(&SystemRandom::new()).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }
}
