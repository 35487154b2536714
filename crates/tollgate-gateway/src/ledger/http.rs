//! The ledger's HTTP endpoints, framework-free: the router passes the query
//! string and gets a complete response. The master-key check is the
//! router's.
//!
//! - [`spend_logs`]: `{"data":[row, ...]}`, newest first;
//! - [`spend_summary`]: `{"group_by":[...],"data":[group, ...]}`.
//!
//! Money appears twice in each row: `spend`, exact decimal dollars as a
//! string (`"0.00029666"`), and `spend_picos`, the integer in pico-dollars;
//! both are `null` in a log row whose price is unknown. A bad parameter is
//! a 400 with an OpenAI-shaped error naming it in `error.param`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use tollgate_core::{ErrorClass, Failure};

use super::{
    Ledger, LedgerError, LedgerRow, LogFilter, QueryError, SummaryFilter, SummaryRow, day,
    picos_to_decimal, picos_to_decimal_i128,
};

/// `GET /spend/logs`: the cost records matching the query (`api_key`/`key`,
/// `model`, `deployment`, `request_id`, `start_date`, `end_date`, `limit`,
/// `offset`), newest first.
pub(crate) async fn spend_logs(ledger: &Ledger, query: Option<&str>) -> Response<Bytes> {
    let filter = match LogFilter::from_query(query) {
        Ok(filter) => filter,
        Err(error) => return bad_request(error),
    };
    match ledger.logs(&filter).await {
        Ok(rows) => json(&LogsBody {
            data: rows.iter().map(LogEntry::from).collect(),
        }),
        Err(error) => internal(&error),
    }
}

/// `GET /spend/summary`: sums per group (`group_by`, default
/// `day,key,model`) of the rows matching the query (the `logs` filters but
/// `limit` and `offset`).
pub(crate) async fn spend_summary(ledger: &Ledger, query: Option<&str>) -> Response<Bytes> {
    let filter = match SummaryFilter::from_query(query) {
        Ok(filter) => filter,
        Err(error) => return bad_request(error),
    };
    match ledger.summary(&filter).await {
        Ok(rows) => json(&SummaryBody {
            group_by: filter.group_by.iter().map(|group| group.as_str()).collect(),
            data: rows.iter().map(SummaryEntry).collect(),
        }),
        Err(error) => internal(&error),
    }
}

#[derive(Serialize)]
struct LogsBody<'a> {
    data: Vec<LogEntry<'a>>,
}

#[derive(Serialize)]
struct LogEntry<'a> {
    request_id: &'a str,
    attempt: u32,
    ts_ms: i64,
    timestamp: String,
    day: String,
    key: Option<&'a str>,
    team_id: Option<&'a str>,
    end_user: Option<&'a str>,
    model: Option<&'a str>,
    deployment: Option<&'a str>,
    upstream_model: Option<&'a str>,
    stream: bool,
    outcome: &'static str,
    error_class: Option<&'a str>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_prompt_tokens: u64,
    reasoning_tokens: u64,
    usage_estimated: bool,
    spend: Option<String>,
    spend_picos: Option<u64>,
    cost_source: &'static str,
}

impl<'a> From<&'a LedgerRow> for LogEntry<'a> {
    fn from(row: &'a LedgerRow) -> Self {
        LogEntry {
            request_id: &row.request_id,
            attempt: row.attempt,
            ts_ms: row.ts_ms,
            timestamp: day::format_timestamp(row.ts_ms),
            day: day::day_of(row.ts_ms),
            key: row.key.as_deref(),
            team_id: row.team.as_deref(),
            end_user: row.end_user.as_deref(),
            model: row.model_group.as_deref(),
            deployment: row.deployment.as_deref(),
            upstream_model: row.upstream_model.as_deref(),
            stream: row.stream,
            outcome: row.outcome.as_str(),
            error_class: row.error_class.as_deref(),
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            cached_prompt_tokens: row.cached_prompt_tokens,
            reasoning_tokens: row.reasoning_tokens,
            usage_estimated: row.usage_estimated,
            spend: row.cost_picos.map(picos_to_decimal),
            spend_picos: row.cost_picos,
            cost_source: row.cost_source.as_str(),
        }
    }
}

#[derive(Serialize)]
struct SummaryBody<'a> {
    group_by: Vec<&'static str>,
    data: Vec<SummaryEntry<'a>>,
}

/// A summary row: its group columns by name, then the sums. Sums past
/// `u64` stay exact: serde_json writes `u128`/`i128` digits as they are.
struct SummaryEntry<'a>(&'a SummaryRow);

impl Serialize for SummaryEntry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.0;
        let mut map = serializer.serialize_map(Some(row.group.len() + 14))?;
        for (group, value) in &row.group {
            map.serialize_entry(group.as_str(), value)?;
        }
        map.serialize_entry("requests", &row.requests)?;
        map.serialize_entry("attempts", &row.attempts)?;
        map.serialize_entry("failed_attempts", &row.failed_attempts)?;
        map.serialize_entry("cancelled_attempts", &row.cancelled_attempts)?;
        map.serialize_entry("shutdown_attempts", &row.shutdown_attempts)?;
        map.serialize_entry("prompt_tokens", &row.prompt_tokens)?;
        map.serialize_entry("completion_tokens", &row.completion_tokens)?;
        map.serialize_entry("cached_prompt_tokens", &row.cached_prompt_tokens)?;
        map.serialize_entry("reasoning_tokens", &row.reasoning_tokens)?;
        map.serialize_entry("spend", &picos_to_decimal_i128(row.spend_picos))?;
        map.serialize_entry("spend_picos", &row.spend_picos)?;
        map.serialize_entry("unknown_cost_attempts", &row.unknown_cost_attempts)?;
        map.serialize_entry("estimated_usage_attempts", &row.estimated_usage_attempts)?;
        map.end()
    }
}

fn json(body: &impl Serialize) -> Response<Bytes> {
    // Serialising these plain structs cannot fail.
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut response = Response::new(bytes);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn bad_request(error: QueryError) -> Response<Bytes> {
    Failure::new(ErrorClass::BadRequest, error.message)
        .with_param(error.param)
        .to_response()
}

fn internal(error: &LedgerError) -> Response<Bytes> {
    tracing::error!(target: "tollgate::ledger", %error, "spend ledger query failed");
    Failure::new(ErrorClass::Internal, "the spend ledger could not be read")
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
        .to_response()
}
