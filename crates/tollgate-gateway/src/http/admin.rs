//! The admin and probe endpoints: keys, spend, metrics, breakers,
//! readiness.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use tollgate_core::{ErrorClass, Failure};

use super::App;
use super::route::Route;
use crate::access_log::AccessLog;
use crate::response::GatewayBody;

/// The method, URI and body of a key or team admin request; an error
/// response when there is no master key (virtual keys and teams need one)
/// or the body cannot be read.
async fn admin_request<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Result<(http::Method, http::Uri, Bytes), Response<GatewayBody>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failure = if app.keys.is_open() {
        Failure::new(
            ErrorClass::BadRequest,
            "Virtual keys need a master key: set general_settings.master_key.",
        )
        .with_status(StatusCode::FORBIDDEN)
        .with_code("master_key_required")
    } else {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        match super::chat::read_request(app, request).await {
            Ok(body) => return Ok((method, uri, body)),
            Err(failure) => failure,
        }
    };
    log.class = Some(failure.class());
    Err(failure.to_response())
}

/// The key endpoints (`/key/generate`, `/key/info`, `/key/list`, `/key/update`, ...).
pub(super) async fn keys<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (method, uri, body) = match admin_request(app, request, log).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    if matches!(
        uri.path(),
        "/key/generate" | "/key/update" | "/key/regenerate"
    ) && method == http::Method::POST
        && let Err(failure) = crate::teams::admin::check_key_team(&app.teams, &body).await
    {
        log.class = Some(failure.class());
        return failure.to_response();
    }
    let answer = match (uri.path(), &app.ledger) {
        // With the ledger, a key's info has its spend.
        ("/key/info", Some(ledger)) if method == http::Method::GET => {
            Some(crate::keys::admin::info(&app.keys, uri.query(), Some(ledger)).await)
        }
        (path, _) => {
            crate::keys::admin::handle(
                &app.keys,
                &method,
                path,
                uri.query(),
                &body,
                super::unix_ms(),
            )
            .await
        }
    };
    match answer {
        Some(response) => response.map(GatewayBody::full),
        None => Failure::new(ErrorClass::Internal, "no such key endpoint").to_response(),
    }
}

/// The team endpoints (`/team/new`, `/team/info`, `/team/list`,
/// `/team/update`, `/team/block`, `/team/unblock`, `/team/delete`).
pub(super) async fn teams<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (method, uri, body) = match admin_request(app, request, log).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let cx = crate::teams::admin::Context {
        teams: &app.teams,
        keys: &app.keys,
        ledger: app.ledger.as_deref(),
        now_ms: super::unix_ms(),
    };
    match crate::teams::admin::handle(&cx, &method, uri.path(), uri.query(), &body).await {
        Some(response) => {
            if !response.status().is_success() {
                log.class = Some(if response.status().is_server_error() {
                    ErrorClass::Internal
                } else {
                    ErrorClass::BadRequest
                });
            }
            response.map(GatewayBody::full)
        }
        None => Failure::new(ErrorClass::Internal, "no such team endpoint").to_response(),
    }
}

/// The end-user endpoints (`/customer/*`, `/end_user/*`,
/// `/global/spend/end_users`).
pub(super) async fn end_users<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (method, uri, body) = match admin_request(app, request, log).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    crate::end_users::admin::handle(
        &app.end_users,
        &app.keys,
        app.ledger.as_deref(),
        &method,
        &uri,
        &body,
        super::unix_ms(),
    )
    .await
    .map(GatewayBody::full)
}

/// `GET /spend/logs`, `GET /spend/summary`, `GET /global/spend/keys` and
/// `GET /global/spend/teams`.
pub(super) async fn spend(app: &App, route: Route, query: Option<&str>) -> Response<GatewayBody> {
    let Some(ledger) = &app.ledger else {
        return Failure::new(
            ErrorClass::BadRequest,
            "this gateway keeps no spend ledger (set tollgate.ledger_path)",
        )
        .with_status(StatusCode::NOT_FOUND)
        .to_response();
    };
    let response = match route {
        Route::SpendLogs => crate::ledger::http::spend_logs(ledger, query).await,
        Route::SpendKeys => crate::keys::spend::spend_keys(&app.keys, ledger, query).await,
        Route::SpendTeams => {
            crate::teams::spend::spend_teams(&app.teams, ledger, super::unix_ms()).await
        }
        _ => crate::ledger::http::spend_summary(ledger, query).await,
    };
    response.map(GatewayBody::full)
}

/// `GET /metrics`: the Prometheus text exposition, with the ledger's
/// counters brought up to date first.
pub(super) fn metrics(app: &App) -> Response<GatewayBody> {
    if let Some(ledger) = &app.ledger {
        let stats = ledger.stats();
        app.metrics.ledger_totals(stats.rows_written, stats.dropped);
    }
    let mut response = Response::new(GatewayBody::full(app.metrics.render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub(super) fn circuit_breakers(app: &App) -> Response<GatewayBody> {
    let body = json!({ "circuit_breakers": app.breakers.snapshots() });
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

pub(super) fn readiness(app: &App) -> Response<GatewayBody> {
    if app.draining.load(Ordering::Relaxed) {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(br#"{"status":"draining"}"#),
        )
    } else {
        let body = json!({"status": "ready", "model_groups": app.groups.len()});
        json_response(StatusCode::OK, Bytes::from(body.to_string()))
    }
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<GatewayBody> {
    let mut response = Response::new(GatewayBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
