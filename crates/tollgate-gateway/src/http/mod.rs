//! The HTTP surface: the routes, and the handlers that answer them from
//! the [`App`]'s parts.

mod admin;
pub(crate) mod chat;
mod completions;
mod count_tokens;
mod embeddings;
#[cfg(test)]
mod future_size_tests;
mod models;
mod route;
mod shape;

pub(crate) use admin::json_response;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tollgate_breaker::Breakers;
use tollgate_core::{ErrorClass, Failure, Operation};
use tollgate_limits::Store;

use crate::access_log::AccessLog;
use crate::deployment::Groups;
use crate::generation::Generation;
use crate::grace::GracePeriod;
use crate::keys::{Keys, Principal};
use crate::learned::LearnedDeadlines;
use crate::ledger::Ledger;
use crate::log_format::AccessLogFormat;
use crate::log_writer::LogWriter;
use crate::metrics::Metrics;
use crate::providers::ProviderHealth;
use crate::request_body::BodyReader;
use crate::request_id::{RequestIds, X_REQUEST_ID};
use crate::response::GatewayBody;
use crate::stack::Stack;
use route::{Route, route_of};
use shape::OpenAi;
use tollgate_inbound::messages::Messages;
use tollgate_inbound::responses::Responses;

/// What the handlers answer from: built once from the config
/// ([`build`](crate::build)), shared by every request.
pub(crate) struct App {
    pub(crate) groups: Groups,
    pub(crate) models_body: Bytes,
    /// Each model group's mode and public facts (`/model/info`).
    pub(crate) catalog: crate::model_info::ModelCatalog,
    /// The master key and the virtual keys.
    pub(crate) keys: Keys,
    /// The teams the keys belong to.
    pub(crate) teams: crate::teams::Teams,
    /// The end users (a request's `user`) and their limits.
    pub(crate) end_users: crate::end_users::EndUsers,
    pub(crate) max_body: usize,
    /// Every secret of the config, redacted from upstream text before it
    /// reaches a client.
    pub(crate) secrets: tollgate_core::Secrets,
    /// Reads request bodies within their size, time and memory limits.
    pub(crate) body_reader: Arc<BodyReader>,
    /// The deadline of a whole request, retries and fallbacks included.
    pub(crate) request_deadline: Duration,
    pub(crate) stack: Stack,
    pub(crate) breakers: Breakers,
    /// Each deployment's learned stream deadlines.
    pub(crate) learned: LearnedDeadlines,
    /// What `/health/providers` reports.
    pub(crate) providers: ProviderHealth,
    /// What `GET /metrics` shows.
    pub(crate) metrics: Metrics,
    /// Where the rate limits count; `limits_shared` when that is Redis.
    pub(crate) limit_store: Arc<dyn Store>,
    pub(crate) limits_shared: bool,
    /// The spend ledger, when `tollgate.ledger_path` names one.
    pub(crate) ledger: Option<Arc<Ledger>>,
    pub(crate) request_ids: Arc<RequestIds>,
    pub(crate) draining: Arc<AtomicBool>,
    /// Ended by the server when its shutdown's grace period is over.
    pub(crate) grace: GracePeriod,
    /// Where access-log lines go as JSON without `tracing`'s formatter
    /// (`Gateway::write_access_log_to`).
    pub(crate) access_log_writer: Arc<OnceLock<(LogWriter, AccessLogFormat)>>,
    /// Aliases and wildcard groups: how a client's model finds its group.
    pub(crate) routing: crate::routing::ModelRouting,
    /// What a reload carries over and compares.
    pub(crate) generation: Generation,
}

/// Handles one request with `app`, the configuration it began with.
pub(crate) async fn handle<B>(
    app: Arc<App>,
    request: Request<B>,
    reload: impl FnOnce() -> (Response<GatewayBody>, Option<ErrorClass>),
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let app = &*app;
    let start = Instant::now();
    let request_id = app.request_ids.for_request(request.headers());
    let route = route_of(request.method(), request.uri().path());
    let mut log = AccessLog::new(request_id.clone(), route.name(), start);
    log.metrics = Some((app.metrics.clone(), route.metrics_label()));
    log.direct = app.access_log_writer.get().cloned();
    log.grace = Some(app.grace.clone());
    if let Err(failure) = crate::door::check_head(&request) {
        log.class = Some(failure.class());
        return finish(route.error_response(&failure), &request_id, log);
    }
    let principal = match route {
        // Liveness and readiness: for probes, without a key.
        Route::Health | Route::Readiness => Ok(Principal::Open),
        _ => app.keys.authenticate(request.headers(), unix_ms()).await,
    };
    let response = match principal {
        Err(failure) => {
            log.class = Some(failure.class());
            route.error_response(&failure)
        }
        // Everything but completions and the model list is for the
        // master key alone.
        Ok(Principal::Virtual(_)) if route.is_admin() => {
            let failure = Failure::new(
                ErrorClass::Auth,
                "This endpoint needs the master key; virtual keys may only make completions \
                 and embeddings and read the models.",
            )
            .with_status(StatusCode::FORBIDDEN)
            .with_code("master_key_required");
            log.class = Some(failure.class());
            failure.to_response()
        }
        Ok(principal) => match route {
            Route::ChatCompletions
            | Route::Completions
            | Route::Embeddings
            | Route::Messages
            | Route::Responses => {
                // Each handler made in the call that takes it: a local
                // moved into `run` would keep its bytes in this future too.
                let answer = match route {
                    Route::Messages => {
                        let log = &mut log;
                        app.grace
                            .run(chat::handle(app, Messages, request, principal, log))
                            .await
                    }
                    Route::Responses => {
                        let log = &mut log;
                        app.grace
                            .run(chat::handle(app, Responses, request, principal, log))
                            .await
                    }
                    _ => {
                        let operation = match route {
                            Route::Completions => completions::OPERATION,
                            Route::Embeddings => embeddings::OPERATION,
                            _ => Operation::ChatCompletions,
                        };
                        let shape = OpenAi(operation);
                        let log = &mut log;
                        app.grace
                            .run(chat::handle(app, shape, request, principal, log))
                            .await
                    }
                };
                answer.unwrap_or_else(|| {
                    log.shutdown = true;
                    route.error_response(&crate::grace::shutdown_failure())
                })
            }
            // The routes below the chat ones are boxed: their futures (a
            // Redis or SQLite round trip, a provider's count) are the largest
            // here, and inline they would set the size of this future, which
            // every chat request moves whole, several times over.
            Route::CountTokens => {
                Box::pin(count_tokens::handle(app, request, principal, &mut log)).await
            }
            Route::ModelRetrieve => {
                models::retrieve(app, request.uri().path(), &principal, &mut log)
            }
            Route::ModelInfo => models::info(app, &principal),
            Route::Keys => Box::pin(admin::keys(app, request, &mut log)).await,
            Route::Teams => Box::pin(admin::teams(app, request, &mut log)).await,
            Route::EndUsers => Box::pin(admin::end_users(app, request, &mut log)).await,
            Route::ConfigReload => {
                let (response, class) = reload();
                log.class = class;
                response
            }
            Route::Models => models::list(app, &principal),
            Route::Health => admin::json_response(
                StatusCode::OK,
                Bytes::from_static(br#"{"status":"healthy"}"#),
            ),
            Route::Readiness => admin::readiness(app),
            Route::CircuitBreakers => admin::circuit_breakers(app),
            Route::Metrics => admin::metrics(app),
            Route::SpendLogs | Route::SpendSummary | Route::SpendKeys | Route::SpendTeams => {
                Box::pin(admin::spend(app, route, request.uri().query())).await
            }
            Route::Providers => admin::json_response(
                StatusCode::OK,
                Bytes::from(
                    app.providers
                        .report(&app.breakers, &app.learned)
                        .to_string(),
                ),
            ),
            Route::MethodNotAllowed => {
                let failure = Failure::new(
                    ErrorClass::BadRequest,
                    format!("method {} is not allowed here", request.method()),
                )
                .with_status(StatusCode::METHOD_NOT_ALLOWED);
                log.class = Some(failure.class());
                failure.to_response()
            }
            Route::NotFound => {
                let failure = Failure::new(
                    ErrorClass::BadRequest,
                    format!(
                        "Unknown request URL: {} {}",
                        request.method(),
                        request.uri().path()
                    ),
                )
                .with_status(StatusCode::NOT_FOUND)
                .with_code("unknown_url");
                log.class = Some(failure.class());
                failure.to_response()
            }
        },
    };
    finish(response, &request_id, log)
}

/// The response with its request id, carrying the request's access-log
/// entry.
fn finish(
    mut response: Response<GatewayBody>,
    request_id: &str,
    mut log: AccessLog,
) -> Response<GatewayBody> {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(X_REQUEST_ID), value);
    }
    log.status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.with_log(log))
}

/// The wall clock, for key expiry.
pub(crate) fn unix_ms() -> i64 {
    tollgate_core::time::unix_ms(std::time::SystemTime::now())
}
