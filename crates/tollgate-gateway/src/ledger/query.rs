//! Query filters, and their parsing from URL query strings.
//!
//! Parsing is strict, because a filter the ledger silently ignored would
//! report the wrong money: an unknown or repeated parameter, a date that is
//! not a real `YYYY-MM-DD`, or a `limit` that is not a number is a
//! [`QueryError`] naming the parameter (a 400 at the HTTP edge). An empty
//! value (`model=`) counts as absent, as HTML forms send them.

use std::borrow::Cow;
use std::fmt;

use super::day;

/// `logs` rows returned when the query does not say.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// The most `logs` rows one query returns; larger limits are clamped.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// Which rows a query looks at; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RowFilter {
    /// The key name (`api_key` or `key`).
    pub(crate) key: Option<String>,
    /// The end user (`end_user`).
    pub(crate) end_user: Option<String>,
    /// The model group (`model`).
    pub(crate) model: Option<String>,
    /// The deployment (`deployment`).
    pub(crate) deployment: Option<String>,
    /// The request id (`request_id`).
    pub(crate) request_id: Option<String>,
    /// The first UTC day, inclusive, as `YYYY-MM-DD` (`start_date`).
    pub(crate) start_day: Option<String>,
    /// The last UTC day, inclusive, as `YYYY-MM-DD` (`end_date`).
    pub(crate) end_day: Option<String>,
}

/// A `logs` query: rows newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFilter {
    /// Which rows.
    pub(crate) rows: RowFilter,
    /// At most this many rows (at most [`MAX_LIMIT`]).
    pub(crate) limit: u32,
    /// Skip this many rows first.
    pub(crate) offset: u64,
}

impl Default for LogFilter {
    fn default() -> Self {
        LogFilter {
            rows: RowFilter::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// A column `summary` can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GroupBy {
    /// The UTC day.
    Day,
    /// The key name.
    Key,
    /// The model group.
    Model,
    /// The deployment.
    Deployment,
    /// The key's team.
    Team,
    /// The end user.
    EndUser,
}

impl GroupBy {
    /// The name in `group_by` and in the response rows.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Key => "key",
            GroupBy::Model => "model",
            GroupBy::Deployment => "deployment",
            GroupBy::Team => "team",
            GroupBy::EndUser => "end_user",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            GroupBy::Day,
            GroupBy::Key,
            GroupBy::Model,
            GroupBy::Deployment,
            GroupBy::Team,
            GroupBy::EndUser,
        ]
        .into_iter()
        .find(|group| group.as_str() == name)
    }
}

/// `group_by` when the query does not say.
pub(crate) const DEFAULT_GROUP_BY: [GroupBy; 3] = [GroupBy::Day, GroupBy::Key, GroupBy::Model];

/// A `summary` query: sums per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SummaryFilter {
    /// Which rows.
    pub(crate) rows: RowFilter,
    /// The grouping columns, in order, without repeats; never empty.
    pub(crate) group_by: Vec<GroupBy>,
}

impl Default for SummaryFilter {
    fn default() -> Self {
        SummaryFilter {
            rows: RowFilter::default(),
            group_by: DEFAULT_GROUP_BY.to_vec(),
        }
    }
}

/// A query parameter the ledger cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError {
    /// The parameter at fault, as the client spelled it.
    pub(crate) param: Cow<'static, str>,
    /// What is wrong, safe to show the client.
    pub(crate) message: String,
}

impl QueryError {
    fn new(param: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        QueryError {
            param: param.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (parameter `{}`)", self.message, self.param)
    }
}

impl std::error::Error for QueryError {}

impl LogFilter {
    /// Parses `api_key`/`key`, `model`, `deployment`, `request_id`,
    /// `start_date`, `end_date`, `limit` and `offset`.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, QueryError> {
        let mut filter = LogFilter::default();
        let mut rows = RowParser::default();
        let (mut limit, mut offset) = (None, None);
        for (name, value) in pairs(query.unwrap_or(""))? {
            if rows.accept(&name, &value)? {
                continue;
            }
            match name.as_str() {
                "limit" => set_once(&mut limit, "limit", value)?,
                "offset" => set_once(&mut offset, "offset", value)?,
                _ => return Err(unknown(name)),
            }
        }
        filter.rows = rows.finish()?;
        if let Some(limit) = limit {
            let limit: u64 = parse_count("limit", &limit)?;
            filter.limit = u32::try_from(limit).unwrap_or(u32::MAX).min(MAX_LIMIT);
        }
        if let Some(offset) = offset {
            filter.offset = parse_count("offset", &offset)?;
        }
        Ok(filter)
    }
}

impl SummaryFilter {
    /// Parses the [`RowFilter`] parameters and `group_by` (a comma-separated
    /// list of `day`, `key`, `model`, `deployment`).
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, QueryError> {
        let mut filter = SummaryFilter::default();
        let mut rows = RowParser::default();
        let mut group_by = None;
        for (name, value) in pairs(query.unwrap_or(""))? {
            if rows.accept(&name, &value)? {
                continue;
            }
            match name.as_str() {
                "group_by" => set_once(&mut group_by, "group_by", value)?,
                _ => return Err(unknown(name)),
            }
        }
        filter.rows = rows.finish()?;
        if let Some(list) = group_by {
            filter.group_by = parse_group_by(&list)?;
        }
        Ok(filter)
    }
}

fn parse_group_by(list: &str) -> Result<Vec<GroupBy>, QueryError> {
    let mut groups = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let group = GroupBy::parse(name).ok_or_else(|| {
            QueryError::new(
                "group_by",
                format!(
                    "unknown group_by `{name}`: expected day, key, model, deployment, team or end_user"
                ),
            )
        })?;
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    if groups.is_empty() {
        groups = DEFAULT_GROUP_BY.to_vec();
    }
    Ok(groups)
}

/// Collects the parameters every query shares.
#[derive(Default)]
struct RowParser {
    /// The key filter and the name it came under (`api_key` or `key`).
    key: Option<(String, &'static str)>,
    end_user: Option<String>,
    model: Option<String>,
    deployment: Option<String>,
    request_id: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

impl RowParser {
    /// Takes the parameter if it is a row filter; `Ok(false)` if it is not.
    fn accept(&mut self, name: &str, value: &str) -> Result<bool, QueryError> {
        let value = value.to_owned();
        match name {
            "api_key" | "key" => {
                let param = if name == "key" { "key" } else { "api_key" };
                if value.is_empty() {
                    return Ok(true);
                }
                if self.key.is_some() {
                    return Err(repeated(param));
                }
                self.key = Some((value, param));
            }
            "model" => set_once(&mut self.model, "model", value)?,
            "end_user" => set_once(&mut self.end_user, "end_user", value)?,
            "deployment" => set_once(&mut self.deployment, "deployment", value)?,
            "request_id" => set_once(&mut self.request_id, "request_id", value)?,
            "start_date" => set_once(&mut self.start_date, "start_date", value)?,
            "end_date" => set_once(&mut self.end_date, "end_date", value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self) -> Result<RowFilter, QueryError> {
        let start = self
            .start_date
            .map(|d| parse_date("start_date", &d))
            .transpose()?;
        let end = self
            .end_date
            .map(|d| parse_date("end_date", &d))
            .transpose()?;
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            return Err(QueryError::new("end_date", "end_date is before start_date"));
        }
        Ok(RowFilter {
            key: self.key.map(|(key, _)| key),
            end_user: self.end_user,
            model: self.model,
            deployment: self.deployment,
            request_id: self.request_id,
            start_day: start.map(day::format_day),
            end_day: end.map(day::format_day),
        })
    }
}

fn parse_date(param: &'static str, text: &str) -> Result<i64, QueryError> {
    day::parse_day(text).ok_or_else(|| {
        QueryError::new(
            param,
            format!("{param} must be a date as YYYY-MM-DD (UTC), got `{text}`"),
        )
    })
}

fn parse_count(param: &'static str, text: &str) -> Result<u64, QueryError> {
    // `u64::from_str` accepts a leading `+`; a count is digits only.
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_count(param, text));
    }
    match text.parse::<u64>() {
        Ok(n) => Ok(n),
        // All digits but too big: as good as infinite.
        Err(_) if !text.is_empty() => Ok(u64::MAX),
        Err(_) => Err(not_a_count(param, text)),
    }
}

fn not_a_count(param: &'static str, text: &str) -> QueryError {
    QueryError::new(
        param,
        format!("{param} must be a non-negative integer, got `{text}`"),
    )
}

/// Stores a non-empty value once; a second non-empty value is an error.
fn set_once(
    slot: &mut Option<String>,
    param: &'static str,
    value: String,
) -> Result<(), QueryError> {
    if value.is_empty() {
        return Ok(());
    }
    if slot.is_some() {
        return Err(repeated(param));
    }
    *slot = Some(value);
    Ok(())
}

fn repeated(param: &'static str) -> QueryError {
    QueryError::new(param, format!("{param} is given more than once"))
}

fn unknown(name: String) -> QueryError {
    let message = format!("unknown query parameter `{name}`");
    QueryError::new(name, message)
}

/// The decoded `name=value` pairs of a query string, in order (`name` alone
/// has an empty value).
fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = percent_decode(name)
            .ok_or_else(|| QueryError::new("query", "a parameter name is not valid UTF-8"))?;
        let value = percent_decode(value).ok_or_else(|| {
            let message = format!("{name} is not valid UTF-8");
            QueryError::new(name.clone(), message)
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX`
/// a byte. A `%` not followed by two hex digits stays as it is (as browsers
/// do); bytes that are not UTF-8 give `None`.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(byte: &u8) -> Option<u8> {
    char::from(*byte).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(percent_decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("team%2Fa%3d1").as_deref(), Some("team/a=1"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn parses_a_full_logs_query() {
        let filter = LogFilter::from_query(Some(
            "api_key=team+a&model=gpt%2D4o&deployment=d1&request_id=r1\
             &start_date=2026-11-01&end_date=2026-11-30&limit=5&offset=10",
        ))
        .unwrap();
        assert_eq!(filter.rows.key.as_deref(), Some("team a"));
        assert_eq!(filter.rows.model.as_deref(), Some("gpt-4o"));
        assert_eq!(filter.rows.deployment.as_deref(), Some("d1"));
        assert_eq!(filter.rows.request_id.as_deref(), Some("r1"));
        assert_eq!(filter.rows.start_day.as_deref(), Some("2026-11-01"));
        assert_eq!(filter.rows.end_day.as_deref(), Some("2026-11-30"));
        assert_eq!((filter.limit, filter.offset), (5, 10));
    }

    #[test]
    fn defaults_and_clamps() {
        assert_eq!(LogFilter::from_query(None).unwrap(), LogFilter::default());
        assert_eq!(
            LogFilter::from_query(Some("")).unwrap().limit,
            DEFAULT_LIMIT
        );
        assert_eq!(
            LogFilter::from_query(Some("limit=5000")).unwrap().limit,
            MAX_LIMIT
        );
        assert_eq!(
            LogFilter::from_query(Some("limit=99999999999999999999999"))
                .unwrap()
                .limit,
            MAX_LIMIT
        );
        // Empty values are absent.
        let filter = LogFilter::from_query(Some("model=&key=&limit=")).unwrap();
        assert_eq!(filter, LogFilter::default());
        assert_eq!(
            LogFilter::from_query(Some("key=k"))
                .unwrap()
                .rows
                .key
                .as_deref(),
            Some("k")
        );
        assert_eq!(
            SummaryFilter::from_query(None).unwrap().group_by,
            DEFAULT_GROUP_BY
        );
    }

    #[test]
    fn group_by_is_ordered_and_deduplicated() {
        let filter =
            SummaryFilter::from_query(Some("group_by=deployment,%20day,deployment")).unwrap();
        assert_eq!(filter.group_by, [GroupBy::Deployment, GroupBy::Day]);
        let filter = SummaryFilter::from_query(Some("group_by=,")).unwrap();
        assert_eq!(filter.group_by, DEFAULT_GROUP_BY);
    }

    fn logs_error(query: &str) -> QueryError {
        LogFilter::from_query(Some(query)).unwrap_err()
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(logs_error("start_date=2026-02-30").param, "start_date");
        assert_eq!(logs_error("end_date=yesterday").param, "end_date");
        assert_eq!(
            logs_error("start_date=2026-11-02&end_date=2026-11-01").param,
            "end_date"
        );
        assert_eq!(logs_error("limit=ten").param, "limit");
        assert_eq!(logs_error("limit=-1").param, "limit");
        assert_eq!(logs_error("limit=+5").param, "limit");
        assert_eq!(logs_error("offset=1.5").param, "offset");
        assert_eq!(logs_error("model=a&model=b").param, "model");
        assert_eq!(logs_error("api_key=a&key=b").param, "key");
        assert_eq!(logs_error("user_id=u").param, "user_id");
        assert_eq!(logs_error("group_by=day").param, "group_by");
        assert_eq!(logs_error("model=%FF").param, "model");
        let error = SummaryFilter::from_query(Some("group_by=day,tenant")).unwrap_err();
        assert_eq!(error.param, "group_by");
        assert!(error.message.contains("tenant"), "{}", error.message);
        assert_eq!(
            SummaryFilter::from_query(Some("limit=5"))
                .unwrap_err()
                .param,
            "limit"
        );
    }
}
