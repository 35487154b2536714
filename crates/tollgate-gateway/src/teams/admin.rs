//! The team admin API, in LiteLLM's shape: `POST /team/new`,
//! `GET /team/info?team_id=`, `GET /team/list`, `POST /team/update`,
//! `POST /team/block`, `POST /team/unblock`, `POST /team/delete`.
//!
//! Framework-free, like the keys' handlers: each takes the request's parts
//! and returns a complete `application/json` response (errors in the
//! OpenAI shape). The router calls them only for the master key. No answer
//! holds a key's secret: member keys are shown as `/key/list` shows them.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::Failure;
use tollgate_limits::BudgetWindow;

use super::team::id;
use super::{Team, TeamRequest, Teams, unknown_team};
use crate::config::duration;
use crate::keys::generate::{bad_request, fields};
use crate::keys::key::rfc3339;
use crate::keys::view::{View, json, money, query_param};
use crate::keys::{Keys, ListFilter, VirtualKey};
use crate::ledger::Ledger;

/// What the team handlers read and change.
pub(crate) struct Context<'a> {
    pub(crate) teams: &'a Teams,
    pub(crate) keys: &'a Keys,
    pub(crate) ledger: Option<&'a Ledger>,
    pub(crate) now_ms: i64,
}

/// Routes a team admin request: `None` when `path` is not a team endpoint.
pub(crate) async fn handle(
    cx: &Context<'_>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<Response<Bytes>> {
    let allowed = match path {
        "/team/info" | "/team/list" => Method::GET,
        "/team/new" | "/team/update" | "/team/block" | "/team/unblock" | "/team/delete" => {
            Method::POST
        }
        _ => return None,
    };
    if *method != allowed {
        return Some(crate::keys::view::method_not_allowed(path, &allowed));
    }
    let answer = match path {
        "/team/new" => new(cx, body).await,
        "/team/info" => info(cx, query).await,
        "/team/list" => list(cx).await,
        "/team/update" => update(cx, body).await,
        "/team/block" => block(cx, body, true).await,
        "/team/unblock" => block(cx, body, false).await,
        _ => delete(cx, body).await,
    };
    Some(answer.unwrap_or_else(|failure| failure.to_response()))
}

/// A team as the admin API shows it (LiteLLM's team table fields that
/// Tollgate has).
#[derive(Serialize)]
struct TeamView<'a> {
    team_id: &'a str,
    team_alias: Option<&'a str>,
    models: &'a [String],
    /// Exact decimal dollars, as a JSON number.
    max_budget: Option<Box<RawValue>>,
    budget_duration: Option<String>,
    /// When the current budget window ends.
    budget_reset_at: Option<String>,
    tpm_limit: Option<u64>,
    rpm_limit: Option<u32>,
    max_parallel_requests: Option<u32>,
    metadata: &'a serde_json::Value,
    blocked: bool,
    created_at: String,
    updated_at: String,
    /// Exact decimal dollars since the team was made; absent without a
    /// ledger.
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<Box<RawValue>>,
}

impl<'a> TeamView<'a> {
    fn of(team: &'a Team, now_ms: i64, spend: Option<Box<RawValue>>) -> Self {
        TeamView {
            team_id: &team.team_id,
            team_alias: team.team_alias.as_deref(),
            models: &team.models,
            max_budget: team.max_budget_picos.and_then(money),
            budget_duration: team.budget_duration().map(duration::format),
            budget_reset_at: team.budget_duration().and_then(|window| {
                BudgetWindow::at(now_ms, Some(window))
                    .end_unix_ms()
                    .map(rfc3339)
            }),
            tpm_limit: team.tpm_limit,
            rpm_limit: team.rpm_limit,
            max_parallel_requests: team.max_parallel_requests,
            metadata: &team.metadata,
            blocked: team.blocked,
            created_at: rfc3339(team.created_at_ms),
            updated_at: rfc3339(team.updated_at_ms),
            spend,
        }
    }
}

/// `POST /team/new` → the team (LiteLLM answers its team table row).
async fn new(cx: &Context<'_>, body: &[u8]) -> Result<Response<Bytes>, Failure> {
    let request = TeamRequest::from_json(body)?;
    let team = cx.teams.create(request, cx.now_ms).await?;
    let zero = money(0);
    Ok(json(StatusCode::OK, &TeamView::of(&team, cx.now_ms, zero)))
}

/// `GET /team/info?team_id=` → `{"team_id", "team_info": {..., "spend"},
/// "keys": [...], "team_memberships": []}`.
async fn info(cx: &Context<'_>, query: Option<&str>) -> Result<Response<Bytes>, Failure> {
    let team_id = match query_param(query.unwrap_or_default(), "team_id")? {
        Some(id) if !id.trim().is_empty() => id,
        _ => return Err(bad_request("give the team as ?team_id=", Some("team_id"))),
    };
    let team = cx
        .teams
        .info(&team_id)
        .await
        .ok_or_else(|| super::not_found(&team_id))?;
    let keys = member_keys(cx.keys, &team.team_id).await;
    let spend = super::spend::team_spend(cx.ledger, &team).await;
    #[derive(Serialize)]
    struct Info<'a> {
        team_id: &'a str,
        team_info: TeamView<'a>,
        keys: Vec<View<'a>>,
        team_memberships: [(); 0],
    }
    Ok(json(
        StatusCode::OK,
        &Info {
            team_id: &team.team_id,
            team_info: TeamView::of(&team, cx.now_ms, spend),
            keys: keys.iter().map(|key| View::of(key, None)).collect(),
            team_memberships: [],
        },
    ))
}

/// `GET /team/list` → every team, by alias, each with its keys (never
/// their secrets) and LiteLLM's `team_memberships` (always empty).
async fn list(cx: &Context<'_>) -> Result<Response<Bytes>, Failure> {
    let teams = cx.teams.list().await;
    let all_keys = cx.keys.list(&ListFilter::default()).await;
    #[derive(Serialize)]
    struct Listed<'a> {
        #[serde(flatten)]
        team: TeamView<'a>,
        keys: Vec<View<'a>>,
        team_memberships: [(); 0],
    }
    let listed: Vec<Listed<'_>> = teams
        .iter()
        .map(|team| Listed {
            team: TeamView::of(team, cx.now_ms, None),
            keys: all_keys
                .iter()
                .filter(|key| key.team_id.as_deref() == Some(team.team_id.as_str()))
                .map(|key| View::of(key, None))
                .collect(),
            team_memberships: [],
        })
        .collect();
    Ok(json(StatusCode::OK, &listed))
}

/// `POST /team/update` with `team_id` and the settings to change →
/// `{"team_id", "data": {...}}`, as LiteLLM answers.
async fn update(cx: &Context<'_>, body: &[u8]) -> Result<Response<Bytes>, Failure> {
    let team_id = target(body)?;
    let mut request = TeamRequest::from_json(body)?;
    request.team_id = None;
    let team = cx
        .teams
        .update(&team_id, request, "team.update", cx.now_ms)
        .await?;
    #[derive(Serialize)]
    struct Updated<'a> {
        team_id: &'a str,
        data: TeamView<'a>,
    }
    Ok(json(
        StatusCode::OK,
        &Updated {
            team_id: &team.team_id,
            data: TeamView::of(&team, cx.now_ms, None),
        },
    ))
}

/// `POST /team/block` and `/team/unblock` with `{"team_id"}` → the team.
async fn block(cx: &Context<'_>, body: &[u8], blocked: bool) -> Result<Response<Bytes>, Failure> {
    let team_id = target(body)?;
    let request = TeamRequest {
        blocked: Some(blocked),
        ..TeamRequest::default()
    };
    let action = if blocked {
        "team.block"
    } else {
        "team.unblock"
    };
    let team = cx
        .teams
        .update(&team_id, request, action, cx.now_ms)
        .await?;
    Ok(json(StatusCode::OK, &TeamView::of(&team, cx.now_ms, None)))
}

/// `POST /team/delete` with `{"team_ids": [...]}` → `{"deleted_teams":
/// [...], "deleted_keys": [...]}`. As LiteLLM does, the teams' keys are
/// deleted with them (after every team is checked to exist).
async fn delete(cx: &Context<'_>, body: &[u8]) -> Result<Response<Bytes>, Failure> {
    let fields = fields(body)?;
    let ids: Vec<String> = match fields.get("team_ids").map(|raw| raw.get()) {
        Some(raw) if raw != "null" => serde_json::from_str(raw)
            .map_err(|_| bad_request("team_ids must be a list of team ids", Some("team_ids")))?,
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Err(bad_request(
            "give the teams to delete as \"team_ids\"",
            Some("team_ids"),
        ));
    }
    cx.teams.check_exist(&ids).await?;
    let mut members = Vec::new();
    for id in &ids {
        members.extend(
            member_keys(cx.keys, id)
                .await
                .iter()
                .map(|key| crate::key_format::to_hex(&key.hash)),
        );
    }
    let deleted_keys = if members.is_empty() {
        Vec::new()
    } else {
        cx.keys.delete(&members, cx.now_ms).await?
    };
    let deleted_teams = cx.teams.delete(&ids, cx.now_ms).await?;
    #[derive(Serialize)]
    struct Deleted {
        deleted_teams: Vec<String>,
        deleted_keys: Vec<String>,
    }
    Ok(json(
        StatusCode::OK,
        &Deleted {
            deleted_teams,
            deleted_keys,
        },
    ))
}

/// The body's `team_id`.
fn target(body: &[u8]) -> Result<String, Failure> {
    match fields(body)?.get("team_id").map(|raw| raw.get()) {
        Some(raw) if raw != "null" => id(raw, "team_id"),
        _ => Err(bad_request("give the team as \"team_id\"", Some("team_id"))),
    }
}

/// The keys whose `team_id` is `team_id`, newest first.
async fn member_keys(keys: &Keys, team_id: &str) -> Vec<Arc<VirtualKey>> {
    let filter = ListFilter {
        team_id: Some(team_id.to_owned()),
        ..ListFilter::default()
    };
    keys.list(&filter).await
}

/// Refuses a key admin call (`/key/generate`, `/key/update`,
/// `/key/regenerate`) whose body names a team that does not exist, as
/// LiteLLM does (a 400).
///
/// # Errors
///
/// 400 naming the team.
pub(crate) async fn check_key_team(teams: &Teams, body: &[u8]) -> Result<(), Failure> {
    // A body that is not an object is the key handler's to refuse.
    let Ok(fields) = fields(body) else {
        return Ok(());
    };
    let Some(raw) = fields.get("team_id").map(|raw| raw.get()) else {
        return Ok(());
    };
    let Some(team_id) = crate::keys::generate::string(raw) else {
        return Ok(());
    };
    match teams.info(&team_id).await {
        Some(_) => Ok(()),
        None => Err(unknown_team(&team_id)),
    }
}
