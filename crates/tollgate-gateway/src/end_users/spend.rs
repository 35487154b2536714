//! End users' spend, from the exact ledger: a customer's `spend`, and
//! LiteLLM's report `POST /global/spend/end_users`.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tollgate_core::{ErrorClass, Failure};
use tollgate_limits::Budget;

use crate::keys::Keys;
use crate::keys::generate::bad_request;
use crate::keys::view::json;
use crate::ledger::{GroupBy, Ledger, LogFilter, RowFilter, SummaryFilter, picos_to_decimal_i128};

/// LiteLLM's report covers the last 30 days when not told otherwise.
const DEFAULT_DAYS: i64 = 30;
/// And its top 100.
const TOP: usize = 100;

/// Every end user the ledger has a row for.
pub(super) async fn seen(ledger: &Ledger) -> Vec<String> {
    let filter = SummaryFilter {
        group_by: vec![GroupBy::EndUser],
        ..SummaryFilter::default()
    };
    match ledger.summary(&filter).await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|row| row.group.into_iter().next()?.1)
            .collect(),
        Err(error) => {
            tracing::error!(%error, "the end users could not be read from the ledger");
            Vec::new()
        }
    }
}

/// Whether the ledger has any row for `user`.
pub(super) async fn has_rows(ledger: &Ledger, user: &str) -> bool {
    let filter = LogFilter {
        rows: RowFilter {
            end_user: Some(user.to_owned()),
            ..RowFilter::default()
        },
        limit: 1,
        offset: 0,
    };
    ledger
        .logs(&filter)
        .await
        .is_ok_and(|rows| !rows.is_empty())
}

/// What `user` spent in their budget's current window (all their spend
/// without a windowed budget), in picos; as LiteLLM's `spend`, which its
/// budget reset sets back to 0.
pub(super) async fn spend_of(
    ledger: &Ledger,
    user: &str,
    budget: Option<&Budget>,
    now_ms: i64,
) -> u64 {
    let since = budget.map_or(0, |b| b.window_at(now_ms).start_unix_ms());
    match ledger.billed_to_end_user_since(user, since).await {
        Ok(picos) => u64::try_from(picos).unwrap_or(u64::MAX),
        Err(error) => {
            tracing::warn!(end_user = %user, %error, "an end user's spend could not be read from the ledger");
            0
        }
    }
}

/// LiteLLM's `GlobalEndUsersSpend`: all optional.
#[derive(Deserialize, Default)]
struct Query {
    api_key: Option<String>,
    #[serde(rename = "startTime")]
    start_time: Option<String>,
    #[serde(rename = "endTime")]
    end_time: Option<String>,
}

#[derive(Serialize)]
struct Row {
    end_user: String,
    total_count: u64,
    /// Exact decimal dollars, as a JSON number.
    total_spend: Box<RawValue>,
}

/// `POST /global/spend/end_users` with an optional `{"api_key", "startTime",
/// "endTime"}` → `[{"end_user", "total_count", "total_spend"}]`, the 100
/// end users who spent the most, most first; the last 30 days by default.
/// Times are read to the day (UTC): `2024-05-01` or `2024-05-01T...`.
pub(crate) async fn spend_end_users(
    keys: &Keys,
    ledger: &Ledger,
    body: &[u8],
    now_ms: i64,
) -> Response<Bytes> {
    match report(keys, ledger, body, now_ms).await {
        Ok(rows) => json(StatusCode::OK, &rows),
        Err(failure) => failure.to_response(),
    }
}

async fn report(
    keys: &Keys,
    ledger: &Ledger,
    body: &[u8],
    now_ms: i64,
) -> Result<Vec<Row>, Failure> {
    let query: Query = if body.iter().all(u8::is_ascii_whitespace) {
        Query::default()
    } else {
        serde_json::from_slice(body).map_err(|_| {
            bad_request(
                "the body must be {\"api_key\", \"startTime\", \"endTime\"}, each optional",
                None,
            )
        })?
    };
    let day = |text: Option<String>, param: &'static str| -> Result<Option<String>, Failure> {
        let Some(text) = text else { return Ok(None) };
        let date = text.get(..10).unwrap_or(&text);
        crate::ledger::day::parse_day(date)
            .map(|n| Some(crate::ledger::day::format_day(n)))
            .ok_or_else(|| bad_request(format!("{param} must be a date, YYYY-MM-DD"), Some(param)))
    };
    let start = day(query.start_time, "startTime")?
        .unwrap_or_else(|| crate::ledger::day::day_of(now_ms - DEFAULT_DAYS * 86_400_000));
    let end = day(query.end_time, "endTime")?;
    let key = match query.api_key {
        None => None,
        Some(text) => match keys.info(&text).await? {
            Some(record) => Some(record.name().to_string()),
            None => return Err(bad_request("api_key: no such key", Some("api_key"))),
        },
    };
    let filter = SummaryFilter {
        rows: RowFilter {
            key,
            start_day: Some(start),
            end_day: end,
            ..RowFilter::default()
        },
        group_by: vec![GroupBy::EndUser],
    };
    let mut rows = ledger.summary(&filter).await.map_err(|error| {
        tracing::error!(%error, "cannot read the spend per end user from the ledger");
        Failure::new(ErrorClass::Internal, "the spend ledger could not be read")
    })?;
    rows.sort_by_key(|row| std::cmp::Reverse(row.spend_picos));
    Ok(rows
        .iter()
        .filter_map(|row| {
            // Requests without a `user` are no end user's.
            let end_user = row.group.first()?.1.clone()?;
            Some(Row {
                end_user,
                total_count: row.requests,
                total_spend: RawValue::from_string(picos_to_decimal_i128(row.spend_picos)).ok()?,
            })
        })
        .take(TOP)
        .collect())
}
