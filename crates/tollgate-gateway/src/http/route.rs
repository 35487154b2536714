//! [`Route`]: which endpoint a request is for.

use http::Method;

/// An endpoint of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
    ModelRetrieve,
    ModelInfo,
    Health,
    Readiness,
    CircuitBreakers,
    Providers,
    Keys,
    Metrics,
    SpendLogs,
    SpendSummary,
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
            Route::Models => "models",
            Route::ModelRetrieve => "model_retrieve",
            Route::ModelInfo => "model_info",
            Route::Health => "health",
            Route::Readiness => "readiness",
            Route::CircuitBreakers => "circuit_breakers",
            Route::Providers => "providers",
            Route::Keys => "keys",
            Route::Metrics => "metrics",
            Route::SpendLogs => "spend_logs",
            Route::SpendSummary => "spend_summary",
            Route::ConfigReload => "config_reload",
            Route::MethodNotAllowed | Route::NotFound => "other",
        }
    }
}

pub(super) fn route_of(method: &Method, path: &str) -> Route {
    let (route, allowed) = match path {
        "/v1/chat/completions" | "/chat/completions" => (Route::ChatCompletions, Method::POST),
        "/v1/completions" | "/completions" => (Route::Completions, Method::POST),
        "/v1/embeddings" | "/embeddings" => (Route::Embeddings, Method::POST),
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
        "/key/generate" | "/key/info" | "/key/delete" => return Route::Keys,
        "/spend/logs" => (Route::SpendLogs, Method::GET),
        "/spend/summary" => (Route::SpendSummary, Method::GET),
        "/config/reload" => (Route::ConfigReload, Method::POST),
        _ => return Route::NotFound,
    };
    if *method == allowed || (allowed == Method::GET && *method == Method::HEAD) {
        route
    } else {
        Route::MethodNotAllowed
    }
}
