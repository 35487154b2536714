//! The end-user admin API, in LiteLLM's shapes (its OpenAPI schema,
//! "Customer Management"): `POST /customer/new`, `GET /customer/info?end_user_id=`,
//! `POST /customer/update`, `POST /customer/delete`, `GET /customer/list`,
//! `POST /customer/block`, `POST /customer/unblock`, each also as
//! `/end_user/...`; and `POST /global/spend/end_users`.
//!
//! An end user answers as LiteLLM's `CustomerResponse`: `user_id`,
//! `blocked`, `alias`, `spend` (exact dollars from the ledger, in the
//! budget's current window), `allowed_model_region`, `default_model`,
//! `budget_id` (always `null`: budgets are not shared rows here), and
//! `litellm_budget_table` (`max_budget`, `budget_duration`, `rpm_limit`,
//! `tpm_limit`, `max_parallel_requests`, `budget_reset_at`, `created_at`;
//! `null` without a limit or a default budget).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::Failure;

use super::record::{self, Change, EndUser};
use super::{EndUsers, spend};
use crate::config::duration;
use crate::keys::Keys;
use crate::keys::generate::bad_request;
use crate::keys::view::{json, method_not_allowed, money, query_param};
use crate::ledger::Ledger;

/// Whether `path` is one of the end-user endpoints.
pub(crate) fn is_end_user_path(path: &str) -> bool {
    endpoint(path).is_some() || path == "/global/spend/end_users"
}

/// `/customer/new` and `/end_user/new` → `new`.
fn endpoint(path: &str) -> Option<&str> {
    path.strip_prefix("/customer/")
        .or_else(|| path.strip_prefix("/end_user/"))
        .filter(|name| {
            matches!(
                *name,
                "new" | "info" | "update" | "delete" | "list" | "block" | "unblock"
            )
        })
}

/// Answers an end-user admin request (the master key checked before).
pub(crate) async fn handle(
    end_users: &EndUsers,
    keys: &Keys,
    ledger: Option<&Ledger>,
    method: &Method,
    uri: &http::Uri,
    body: &[u8],
    now_ms: i64,
) -> Response<Bytes> {
    let (path, query) = (uri.path(), uri.query());
    let name = endpoint(path).unwrap_or("spend");
    let allowed = match name {
        "info" | "list" => Method::GET,
        _ => Method::POST,
    };
    if *method != allowed {
        return method_not_allowed(path, &allowed);
    }
    let view = Viewer {
        end_users,
        ledger,
        now_ms,
    };
    let answer = match name {
        "new" | "update" => match Change::from_json(body) {
            Ok(change) if name == "new" => view.one(end_users.create(&change, now_ms).await).await,
            Ok(change) => view.one(end_users.update(&change, now_ms).await).await,
            Err(failure) => Err(failure),
        },
        "info" => info(&view, query).await,
        "list" => {
            let records = end_users.list(now_ms).await;
            let mut out = Vec::with_capacity(records.len());
            for record in &records {
                out.push(view.of(Some(record), &record.user_id).await);
            }
            Ok(json(StatusCode::OK, &out))
        }
        "delete" => match record::user_ids(body) {
            Ok(ids) => end_users.delete(&ids, now_ms).await.map(|count| {
                #[derive(Serialize)]
                struct Deleted {
                    deleted_customers: usize,
                    message: String,
                }
                json(
                    StatusCode::OK,
                    &Deleted {
                        deleted_customers: count,
                        message: format!("Successfully deleted customers with ids: {ids:?}"),
                    },
                )
            }),
            Err(failure) => Err(failure),
        },
        "block" | "unblock" => block(&view, body, name == "block").await,
        _ => match ledger {
            Some(ledger) => Ok(spend::spend_end_users(keys, ledger, body, now_ms).await),
            None => Err(no_ledger()),
        },
    };
    answer.unwrap_or_else(|failure| failure.to_response())
}

/// `GET /customer/info?end_user_id=`: a registered end user, or one the
/// ledger has seen (as LiteLLM records every `user` it serves); 404 for
/// neither.
async fn info(view: &Viewer<'_>, query: Option<&str>) -> Result<Response<Bytes>, Failure> {
    let user = query_param(query.unwrap_or_default(), "end_user_id")?
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| bad_request("give the end user as ?end_user_id=", Some("end_user_id")))?;
    let record = view.end_users.current(&user, view.now_ms).await;
    let seen = match (&record, view.ledger) {
        (None, Some(ledger)) => spend::has_rows(ledger, &user).await,
        _ => false,
    };
    if record.is_none() && !seen {
        return Err(super::not_registered(&user).with_param("end_user_id"));
    }
    Ok(json(
        StatusCode::OK,
        &view.of(record.as_deref(), &user).await,
    ))
}

/// `POST /customer/block` → `{"blocked_users": [end users]}`;
/// `/customer/unblock` → `{"blocked_users": [ids still blocked]}`.
async fn block(view: &Viewer<'_>, body: &[u8], blocked: bool) -> Result<Response<Bytes>, Failure> {
    let ids = record::user_ids(body)?;
    let changed = view
        .end_users
        .set_blocked(&ids, blocked, view.now_ms)
        .await?;
    if blocked {
        #[derive(Serialize)]
        struct Blocked<'a> {
            blocked_users: Vec<CustomerView<'a>>,
        }
        let mut users = Vec::with_capacity(changed.len());
        for record in &changed {
            users.push(view.of(Some(record), &record.user_id).await);
        }
        return Ok(json(
            StatusCode::OK,
            &Blocked {
                blocked_users: users,
            },
        ));
    }
    #[derive(Serialize)]
    struct StillBlocked {
        blocked_users: Vec<String>,
    }
    let still = view
        .end_users
        .list(view.now_ms)
        .await
        .iter()
        .filter(|r| r.blocked)
        .map(|r| r.user_id.clone())
        .collect();
    Ok(json(
        StatusCode::OK,
        &StillBlocked {
            blocked_users: still,
        },
    ))
}

fn no_ledger() -> Failure {
    bad_request(
        "this gateway keeps no spend ledger (set tollgate.ledger_path)",
        None,
    )
    .with_status(StatusCode::NOT_FOUND)
}

/// Renders end users with their spend.
struct Viewer<'a> {
    end_users: &'a EndUsers,
    ledger: Option<&'a Ledger>,
    now_ms: i64,
}

/// LiteLLM's `CustomerResponse`.
#[derive(Serialize)]
struct CustomerView<'a> {
    user_id: &'a str,
    blocked: bool,
    alias: Option<&'a str>,
    /// Exact decimal dollars, as a JSON number.
    spend: Box<RawValue>,
    allowed_model_region: Option<()>,
    default_model: Option<()>,
    budget_id: Option<()>,
    litellm_budget_table: Option<BudgetView>,
    object_permission_id: Option<()>,
    object_permission: Option<()>,
}

/// LiteLLM's `LiteLLM_BudgetTableFull`, for this end user alone.
#[derive(Serialize)]
struct BudgetView {
    budget_id: Option<()>,
    soft_budget: Option<()>,
    max_budget: Option<Box<RawValue>>,
    max_parallel_requests: Option<u32>,
    tpm_limit: Option<u64>,
    rpm_limit: Option<u32>,
    model_max_budget: Option<()>,
    budget_duration: Option<String>,
    allowed_models: Option<()>,
    budget_reset_at: Option<String>,
    created_at: String,
}

impl<'a> Viewer<'a> {
    async fn one(
        &self,
        record: Result<std::sync::Arc<EndUser>, Failure>,
    ) -> Result<Response<Bytes>, Failure> {
        let record = record?;
        Ok(json(
            StatusCode::OK,
            &self.of(Some(&record), &record.user_id).await,
        ))
    }

    async fn of<'r>(&self, record: Option<&'r EndUser>, user: &'r str) -> CustomerView<'r> {
        let budget = self.end_users.budget_of(record);
        let spent = match self.ledger {
            Some(ledger) => spend::spend_of(ledger, user, budget.as_ref(), self.now_ms).await,
            None => 0,
        };
        let table =
            (record.is_some_and(EndUser::has_limits) || budget.is_some()).then(|| BudgetView {
                budget_id: None,
                soft_budget: None,
                max_budget: budget.and_then(|b| money(b.max_picos)),
                max_parallel_requests: record.and_then(|r| r.max_parallel_requests),
                tpm_limit: record.and_then(|r| r.tpm_limit),
                rpm_limit: record.and_then(|r| r.rpm_limit),
                model_max_budget: None,
                budget_duration: budget.and_then(|b| b.duration).map(duration::format),
                allowed_models: None,
                budget_reset_at: budget
                    .and_then(|b| b.window_at(self.now_ms).end_unix_ms())
                    .map(crate::keys::key::rfc3339),
                created_at: crate::keys::key::rfc3339(
                    record.map_or(self.now_ms, |r| r.created_at_ms),
                ),
            });
        CustomerView {
            user_id: user,
            blocked: record.is_some_and(|r| r.blocked),
            alias: record.and_then(|r| r.alias.as_deref()),
            spend: money(spent).unwrap_or_default(),
            allowed_model_region: None,
            default_model: None,
            budget_id: None,
            litellm_budget_table: table,
            object_permission_id: None,
            object_permission: None,
        }
    }
}
