//! The names of the gateway's metric families and their fixed label sets.

/// Client requests, when their response ends.
pub(crate) const REQUESTS: &str = "tollgate_requests_total";
/// Whole request time, first byte in to last byte out.
pub(crate) const REQUEST_DURATION: &str = "tollgate_request_duration_seconds";
/// Time a request spent waiting on upstreams, summed over its attempts.
pub(crate) const UPSTREAM_DURATION: &str = "tollgate_upstream_duration_seconds";
/// Request time minus upstream time.
pub(crate) const GATEWAY_OVERHEAD: &str = "tollgate_gateway_overhead_seconds";
/// Time to the first token of a stream.
pub(crate) const TIME_TO_FIRST_TOKEN: &str = "tollgate_time_to_first_token_seconds";
/// Retries made.
pub(crate) const RETRIES: &str = "tollgate_retries_total";
/// Requests that went through at least one fallback.
pub(crate) const FALLBACKS: &str = "tollgate_fallbacks_total";
/// Requests whose client hung up before the response ended.
pub(crate) const CLIENT_DISCONNECTS: &str = "tollgate_client_disconnects_total";
/// Upstream attempts by outcome and class.
pub(crate) const DEPLOYMENT_ATTEMPTS: &str = "tollgate_deployment_attempts_total";
/// An attempt's time to the upstream's first byte.
pub(crate) const DEPLOYMENT_LATENCY: &str = "tollgate_deployment_latency_seconds";
/// Tokens by kind.
pub(crate) const TOKENS: &str = "tollgate_tokens_total";
/// Spend in US dollars (float).
pub(crate) const COST_USD: &str = "tollgate_cost_usd_total";
/// Attempts whose price is unknown.
pub(crate) const COST_UNKNOWN: &str = "tollgate_cost_unknown_total";
/// Breaker state: 0 closed, 1 half-open, 2 open.
pub(crate) const BREAKER_STATE: &str = "tollgate_circuit_breaker_state";
/// Breaker transitions by the state entered.
pub(crate) const BREAKER_TRANSITIONS: &str = "tollgate_circuit_breaker_transitions_total";
/// Requests rejected by a limit.
pub(crate) const RATE_LIMIT_REJECTIONS: &str = "tollgate_rate_limit_rejections_total";
/// Records written to the spend ledger.
pub(crate) const LEDGER_RECORDS: &str = "tollgate_ledger_records_total";
/// Records the spend ledger dropped.
pub(crate) const LEDGER_DROPPED: &str = "tollgate_ledger_dropped_total";
/// Times shared state (Redis) was unreachable and local state was used.
pub(crate) const SHARED_STATE_FALLBACKS: &str = "tollgate_shared_state_fallbacks_total";
/// Requests ended because their client was too slow, by phase.
pub(crate) const CLIENT_TIMEOUTS: &str = "tollgate_client_timeouts_total";
/// The `phase` of a response whose client did not take it by the deadline.
pub(crate) const WRITE_TIMEOUT: &str = "response_write";
/// The phases of [`CLIENT_TIMEOUTS`].
pub(crate) const CLIENT_TIMEOUT_PHASES: [&str; 3] = [STALLED_BODY, STALLED_CHUNK, WRITE_TIMEOUT];
/// Client connections closed by a limit, by reason.
pub(crate) const CONNECTIONS_SHED: &str = "tollgate_connections_shed_total";
/// Client connections open.
pub(crate) const CONNECTIONS_OPEN: &str = "tollgate_connections_open";
/// A deployment's stream deadline in effect, by phase (rendered by hand).
pub(crate) const LEARNED_DEADLINE: &str = "tollgate_stream_deadline_seconds";
/// A deployment's learned p99 of a stream phase (rendered by hand).
pub(crate) const LEARNED_P99: &str = "tollgate_stream_phase_p99_seconds";
/// Hedged streams by model group and outcome (`started`, `won`).
pub(crate) const HEDGES: &str = "tollgate_hedges_total";
/// The `outcome`s of [`HEDGES`].
pub(crate) const HEDGE_OUTCOMES: [&str; 2] = ["started", "won"];
/// Config reloads by result.
pub(crate) const CONFIG_RELOADS: &str = "tollgate_config_reloads_total";
/// The `result` labels of [`CONFIG_RELOADS`].
pub(crate) const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];

/// Every metric family the gateway exposes (the README's table lists the same).
#[cfg(test)]
pub(crate) const FAMILIES: &[&str] = &[
    REQUESTS,
    REQUEST_DURATION,
    UPSTREAM_DURATION,
    GATEWAY_OVERHEAD,
    TIME_TO_FIRST_TOKEN,
    RETRIES,
    FALLBACKS,
    CLIENT_DISCONNECTS,
    DEPLOYMENT_ATTEMPTS,
    DEPLOYMENT_LATENCY,
    TOKENS,
    COST_USD,
    COST_UNKNOWN,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    RATE_LIMIT_REJECTIONS,
    LEDGER_RECORDS,
    LEDGER_DROPPED,
    SHARED_STATE_FALLBACKS,
    CLIENT_TIMEOUTS,
    CONNECTIONS_SHED,
    CONNECTIONS_OPEN,
    LEARNED_DEADLINE,
    LEARNED_P99,
    HEDGES,
    CONFIG_RELOADS,
];

/// The histogram buckets, in seconds. 10 s is a boundary: the slow-response
/// alert asks whether p95 is above it.
pub(crate) const LATENCY_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0, 60.0, 120.0,
];

/// The histogram families, all over [`LATENCY_BUCKETS`].
pub(crate) const HISTOGRAMS: [&str; 5] = [
    REQUEST_DURATION,
    UPSTREAM_DURATION,
    GATEWAY_OVERHEAD,
    TIME_TO_FIRST_TOKEN,
    DEPLOYMENT_LATENCY,
];

/// The limits a request can be rejected by.
pub(crate) const LIMITS: [&str; 4] = ["rpm", "tpm", "parallel", "budget"];

/// The `route` label of chat completions (`/v1/chat/completions` and
/// `/chat/completions`). The alerts and the dashboard select on it: pass this,
/// not the access log's `chat_completions`.
pub(crate) const ROUTE_CHAT: &str = "chat";

/// The label for "no error class".
pub(crate) const NO_CLASS: &str = "none";

/// The `phase` label of a request body that stalled past its whole-body
/// deadline.
pub(crate) const STALLED_BODY: &str = "request_body";
/// The `phase` label of a request body that went silent between two
/// chunks.
pub(crate) const STALLED_CHUNK: &str = "request_body_idle";

/// Why a connection was closed by a limit: the `reason` label of
/// `tollgate_connections_shed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShedReason {
    /// Beyond the connection cap: its slot given to a newer connection,
    /// refused, or answered 503 from the reserve.
    Cap,
    /// No request in flight for the idle timeout.
    Idle,
    /// A request head not finished within the header timeout.
    HeaderTimeout,
    /// An HTTP/2 keep-alive ping not answered in time.
    KeepaliveTimeout,
}

impl ShedReason {
    /// Every reason, in label order.
    pub(crate) const ALL: [ShedReason; 4] = [
        ShedReason::Cap,
        ShedReason::Idle,
        ShedReason::HeaderTimeout,
        ShedReason::KeepaliveTimeout,
    ];

    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ShedReason::Cap => "cap",
            ShedReason::Idle => "idle",
            ShedReason::HeaderTimeout => "header_timeout",
            ShedReason::KeepaliveTimeout => "keepalive_timeout",
        }
    }
}
