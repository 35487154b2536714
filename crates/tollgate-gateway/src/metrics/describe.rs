//! The help text of every metric family.

use ::metrics::{KeyName, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::names::*;

/// Describes every family registered through the recorder (the cost counter is
/// rendered by hand, with its own help line).
pub(super) fn describe(recorder: &PrometheusRecorder) {
    let counters: &[(&'static str, &'static str)] = &[
        (
            REQUESTS,
            "Client requests by route, model group, status, error class and stream flag, counted when the response ends.",
        ),
        (RETRIES, "Retries made, by model group."),
        (
            FALLBACKS,
            "Requests answered or failed after at least one fallback, by the model group asked for.",
        ),
        (
            CLIENT_DISCONNECTS,
            "Requests whose client hung up before the response ended.",
        ),
        (
            DEPLOYMENT_ATTEMPTS,
            "Upstream attempts by model group, deployment, outcome and error class.",
        ),
        (
            TOKENS,
            "Tokens by model group, deployment and kind (prompt, completion, cached_prompt, reasoning).",
        ),
        (
            COST_UNKNOWN,
            "Upstream attempts billed at an unknown price (not in the cost counter).",
        ),
        (
            BREAKER_TRANSITIONS,
            "Circuit breaker transitions by deployment and the state entered.",
        ),
        (
            RATE_LIMIT_REJECTIONS,
            "Requests rejected by a limit (rpm, tpm, parallel, budget).",
        ),
        (LEDGER_RECORDS, "Spend records written to the ledger."),
        (
            HEDGES,
            "Hedged streams by model group: started (a fallback asked in parallel) and won (its stream was kept).",
        ),
        (
            LEDGER_DROPPED,
            "Spend records the ledger dropped (its queue was full or a write failed).",
        ),
        (
            SHARED_STATE_FALLBACKS,
            "Times shared state (Redis) was unreachable and local state was used instead.",
        ),
        (
            CLIENT_TIMEOUTS,
            "Requests ended because the client was too slow: a request body that stalled \
             (request_body, request_body_idle) or a response not read by the deadline \
             (response_write).",
        ),
        (
            CONNECTIONS_SHED,
            "Client connections closed by a limit, by reason (cap, idle, header_timeout, keepalive_timeout).",
        ),
        (
            CONFIG_RELOADS,
            "Config reloads (SIGHUP, POST /config/reload) by result: success, or failure (the running config kept serving).",
        ),
    ];
    for &(name, help) in counters {
        recorder.describe_counter(
            KeyName::from_const_str(name),
            Some(Unit::Count),
            SharedString::const_str(help),
        );
    }
    let histograms: &[(&'static str, &'static str)] = &[
        (
            REQUEST_DURATION,
            "Whole request time in seconds, from the request to the end of the response.",
        ),
        (
            UPSTREAM_DURATION,
            "Time a request spent waiting on upstreams in seconds, summed over its attempts.",
        ),
        (
            GATEWAY_OVERHEAD,
            "Request time minus upstream time in seconds: what the gateway itself added.",
        ),
        (
            TIME_TO_FIRST_TOKEN,
            "Streams: seconds from the request to the first token sent to the client.",
        ),
        (
            DEPLOYMENT_LATENCY,
            "Seconds from calling a deployment to its first byte, per attempt.",
        ),
    ];
    for &(name, help) in histograms {
        recorder.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds),
            SharedString::const_str(help),
        );
    }
    recorder.describe_gauge(
        KeyName::from_const_str(CONNECTIONS_OPEN),
        None,
        SharedString::const_str("Client connections open, the reserve's included."),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(BREAKER_STATE),
        None,
        SharedString::const_str(
            "Circuit breaker state by deployment: 0 closed, 1 half-open, 2 open.",
        ),
    );
}
