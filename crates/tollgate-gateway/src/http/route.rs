//! [`Route`]: which endpoint a request is for.

use http::{Method, Response};
use tollgate_core::Failure;
use tollgate_inbound::Protocol;
use tollgate_inbound::messages::Messages;

use crate::response::GatewayBody;

/// An endpoint of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic's Messages API.
    Messages,
    /// Anthropic's token counting.
    CountTokens,
    /// OpenAI's Responses API.
    Responses,
    Models,
    ModelRetrieve,
    ModelInfo,
    Health,
    Readiness,
    CircuitBreakers,
    Providers,
    Keys,
    Teams,
    /// `/customer/*`, `/end_user/*` and `/global/spend/end_users`.
    EndUsers,
    Metrics,
    SpendLogs,
    SpendSummary,
    SpendKeys,
    SpendTeams,
    ConfigReload,
    MethodNotAllowed,
    NotFound,
}

impl Route {
    /// Endpoints for the master key only.
    pub(super) fn is_admin(self) -> bool {
        !matches!(
            self,
            Route::ChatCompletions
                | Route::Completions
                | Route::Embeddings
                | Route::Messages
                | Route::CountTokens
                | Route::Responses
                | Route::Models
                | Route::ModelRetrieve
                | Route::ModelInfo
                | Route::Health
                | Route::Readiness
                | Route::MethodNotAllowed
                | Route::NotFound
        )
    }

    /// The `route` label of the request metrics.
    pub(super) fn metrics_label(self) -> &'static str {
        match self {
            Route::ChatCompletions => crate::metrics::ROUTE_CHAT,
            other => other.name(),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Completions => "completions",
            Route::Embeddings => "embeddings",
            Route::Messages => "messages",
            Route::CountTokens => "count_tokens",
            Route::Responses => "responses",
            Route::Models => "models",
            Route::ModelRetrieve => "model_retrieve",
            Route::ModelInfo => "model_info",
            Route::Health => "health",
            Route::Readiness => "readiness",
            Route::CircuitBreakers => "circuit_breakers",
            Route::Providers => "providers",
            Route::Keys => "keys",
            Route::Teams => "teams",
            Route::EndUsers => "end_users",
            Route::Metrics => "metrics",
            Route::SpendLogs => "spend_logs",
            Route::SpendSummary => "spend_summary",
            Route::SpendKeys => "spend_keys",
            Route::SpendTeams => "spend_teams",
            Route::ConfigReload => "config_reload",
            Route::MethodNotAllowed | Route::NotFound => "other",
        }
    }
}

impl Route {
    /// A failure in the route's error shape: Anthropic's on its routes,
    /// OpenAI's everywhere else.
    pub(super) fn error_response(self, failure: &Failure) -> Response<GatewayBody> {
        match self {
            Route::Messages | Route::CountTokens => Messages::error_response(failure),
            _ => failure.to_response(),
        }
    }
}

pub(super) fn route_of(method: &Method, path: &str) -> Route {
    let (route, allowed) = match path {
        "/v1/chat/completions" | "/chat/completions" => (Route::ChatCompletions, Method::POST),
        "/v1/completions" | "/completions" => (Route::Completions, Method::POST),
        "/v1/embeddings" | "/embeddings" => (Route::Embeddings, Method::POST),
        "/v1/messages" | "/messages" => (Route::Messages, Method::POST),
        "/v1/messages/count_tokens" | "/messages/count_tokens" => {
            (Route::CountTokens, Method::POST)
        }
        "/v1/responses" | "/responses" => (Route::Responses, Method::POST),
        "/v1/models" | "/models" => (Route::Models, Method::GET),
        "/model/info" | "/v1/model/info" => (Route::ModelInfo, Method::GET),
        _ if super::models::MODEL_PREFIXES
            .iter()
            .any(|prefix| path.len() > prefix.len() && path.starts_with(prefix)) =>
        {
            (Route::ModelRetrieve, Method::GET)
        }
        "/health" | "/health/liveliness" | "/health/liveness" => (Route::Health, Method::GET),
        "/health/readiness" => (Route::Readiness, Method::GET),
        "/health/circuit-breakers" => (Route::CircuitBreakers, Method::GET),
        "/health/providers" => (Route::Providers, Method::GET),
        "/metrics" => (Route::Metrics, Method::GET),
        // The key endpoints check their own methods.
        "/key/generate" | "/key/info" | "/key/delete" | "/key/list" | "/key/update"
        | "/key/regenerate" | "/key/block" | "/key/unblock" => return Route::Keys,
        // So do the team endpoints.
        "/team/new" | "/team/info" | "/team/list" | "/team/update" | "/team/block"
        | "/team/unblock" | "/team/delete" => return Route::Teams,
        "/spend/logs" => (Route::SpendLogs, Method::GET),
        "/spend/summary" => (Route::SpendSummary, Method::GET),
        "/global/spend/keys" => (Route::SpendKeys, Method::GET),
        "/global/spend/teams" => (Route::SpendTeams, Method::GET),
        "/config/reload" => (Route::ConfigReload, Method::POST),
        // The end-user endpoints check their own methods.
        _ if crate::end_users::admin::is_end_user_path(path) => return Route::EndUsers,
        _ => return Route::NotFound,
    };
    if *method == allowed || (allowed == Method::GET && *method == Method::HEAD) {
        route
    } else {
        Route::MethodNotAllowed
    }
}
