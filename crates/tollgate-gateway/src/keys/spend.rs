//! `GET /global/spend/keys?limit=10`, in LiteLLM's shape: the keys that
//! spent the most, from the exact ledger, most first —
//! `[{"api_key": "<hex hash>", "key_alias": ..., "key_name": ...,
//! "total_spend": 0.00005}]`. A key deleted since (or a config key gone
//! from the config) keeps its row, with `api_key` and `key_alias` null: the
//! ledger knows keys by name only.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::{ErrorClass, Failure};

use super::Keys;
use super::generate::bad_request;
use super::view::{json, query_param};
use crate::key_format::to_hex;
use crate::ledger::{GroupBy, Ledger, SummaryFilter, picos_to_decimal_i128};

/// LiteLLM's default `limit`.
const DEFAULT_LIMIT: usize = 10;
/// The most rows one answer holds.
const MAX_LIMIT: usize = 1000;

#[derive(Serialize)]
struct KeySpend {
    api_key: Option<String>,
    key_alias: Option<String>,
    key_name: String,
    /// Exact decimal dollars, as a JSON number.
    total_spend: Box<RawValue>,
}

/// `GET /global/spend/keys` (see the module docs).
pub(crate) async fn spend_keys(
    keys: &Keys,
    ledger: &Ledger,
    query: Option<&str>,
) -> Response<Bytes> {
    let limit = match query_param(query.unwrap_or_default(), "limit") {
        Ok(None) => DEFAULT_LIMIT,
        Ok(Some(text)) => match text.trim().parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => {
                return bad_request(
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    Some("limit"),
                )
                .to_response();
            }
        },
        Err(failure) => return failure.to_response(),
    };
    let filter = SummaryFilter {
        group_by: vec![GroupBy::Key],
        ..SummaryFilter::default()
    };
    let mut rows = match ledger.summary(&filter).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::error!(%error, "cannot read the spend per key from the ledger");
            return Failure::new(ErrorClass::Internal, "the spend ledger could not be read")
                .to_response();
        }
    };
    rows.sort_by_key(|row| std::cmp::Reverse(row.spend_picos));
    let spends: Vec<KeySpend> = rows
        .iter()
        .filter_map(|row| {
            // Requests made without a key have no name: not a key's spend.
            let name = row.group.first()?.1.clone()?;
            let key = keys.named(&name);
            Some(KeySpend {
                api_key: key.as_ref().map(|key| to_hex(&key.hash)),
                key_alias: key.as_ref().and_then(|key| key.alias().map(str::to_owned)),
                total_spend: RawValue::from_string(picos_to_decimal_i128(row.spend_picos)).ok()?,
                key_name: name,
            })
        })
        .take(limit)
        .collect();
    json(StatusCode::OK, &spends)
}
