//! Team spend from the exact ledger: `/team/info`'s `spend`, and
//! `GET /global/spend/teams` in LiteLLM's shape — the last 30 days per
//! day and per team:
//!
//! ```json
//! {"daily_spend": [{"date": "2026-12-07", "Search": 0.25, "Unassigned": 0.01}],
//!  "teams": ["Search", "Unassigned"],
//!  "total_spend_per_team": [{"team_id": "Search", "total_spend": 0.25}, ...]}
//! ```
//!
//! A team is named by its alias, else its id (LiteLLM names it by alias
//! only); spend made without a team is `Unassigned`, as in LiteLLM. Amounts
//! are exact decimal dollars (LiteLLM rounds them to cents).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::{ErrorClass, Failure};

use super::{Team, Teams};
use crate::keys::view::{json, money};
use crate::ledger::{GroupBy, Ledger, RowFilter, SummaryFilter, day, picos_to_decimal_i128};

/// Days `/global/spend/teams` covers, today included (LiteLLM's 30).
const DAYS: i64 = 30;

/// What the team has spent since it was made, exact; `None` without a
/// ledger, or when it cannot be read.
pub(super) async fn team_spend(ledger: Option<&Ledger>, team: &Team) -> Option<Box<RawValue>> {
    let ledger = ledger?;
    match ledger
        .team_billed_since(&team.team_id, team.created_at_ms)
        .await
    {
        Ok(picos) => money(u64::try_from(picos).unwrap_or(u64::MAX)),
        Err(error) => {
            tracing::warn!(team = %team.team_id, %error, "cannot read a team's spend from the ledger");
            None
        }
    }
}

/// `GET /global/spend/teams` (see the module docs).
pub(crate) async fn spend_teams(teams: &Teams, ledger: &Ledger, now_ms: i64) -> Response<Bytes> {
    let filter = SummaryFilter {
        rows: RowFilter {
            start_day: Some(day::format_day(day::day_number(now_ms) - (DAYS - 1))),
            ..RowFilter::default()
        },
        group_by: vec![GroupBy::Day, GroupBy::Team],
    };
    let rows = match ledger.summary(&filter).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::error!(%error, "cannot read the spend per team from the ledger");
            return Failure::new(ErrorClass::Internal, "the spend ledger could not be read")
                .to_response();
        }
    };
    let label = |id: Option<&String>| -> String {
        match id {
            None => "Unassigned".to_owned(),
            Some(id) => teams
                .known(id)
                .and_then(|team| team.team_alias.clone())
                .unwrap_or_else(|| id.clone()),
        }
    };
    let mut daily: BTreeMap<String, BTreeMap<String, i128>> = BTreeMap::new();
    let mut totals: BTreeMap<String, i128> = BTreeMap::new();
    for row in &rows {
        let mut group = row.group.iter();
        let day = group.next().and_then(|(_, day)| day.clone());
        let team = label(group.next().and_then(|(_, team)| team.as_ref()));
        let Some(day) = day else { continue };
        *daily
            .entry(day)
            .or_default()
            .entry(team.clone())
            .or_default() += row.spend_picos;
        *totals.entry(team).or_default() += row.spend_picos;
    }
    let dollars = |picos: i128| RawValue::from_string(picos_to_decimal_i128(picos)).ok();
    #[derive(Serialize)]
    struct TeamTotal {
        team_id: String,
        total_spend: Option<Box<RawValue>>,
    }
    #[derive(Serialize)]
    struct Body {
        daily_spend: Vec<BTreeMap<String, Box<RawValue>>>,
        teams: Vec<String>,
        total_spend_per_team: Vec<TeamTotal>,
    }
    let daily_spend = daily
        .into_iter()
        .map(|(date, spends)| {
            // Exact numbers: raw JSON, never through a float.
            let mut entry: BTreeMap<String, Box<RawValue>> = spends
                .into_iter()
                .filter_map(|(team, picos)| Some((team, dollars(picos)?)))
                .collect();
            if let Ok(date) = serde_json::value::to_raw_value(&date) {
                entry.insert("date".to_owned(), date);
            }
            entry
        })
        .collect();
    let mut ranked: Vec<(String, i128)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let body = Body {
        daily_spend,
        teams: ranked.iter().map(|(team, _)| team.clone()).collect(),
        total_spend_per_team: ranked
            .into_iter()
            .map(|(team_id, picos)| TeamTotal {
                team_id,
                total_spend: dollars(picos),
            })
            .collect(),
    };
    json(StatusCode::OK, &body)
}
