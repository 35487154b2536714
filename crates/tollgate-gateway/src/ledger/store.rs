//! The SQLite side: opening, schema migrations, batch inserts and queries.
//!
//! Every `u64` (tokens, picos) is stored as the `i64` with the same bits:
//! the identity for every value below 2^63 (about $9.2M in picos), and still
//! exact above it, since reads cast back. Sums never use SQLite's `SUM` on a
//! whole column (it fails on `i64` overflow, and `TOTAL` is a float): they
//! sum the high and low 32-bit halves separately, each at most 2^32 per row,
//! and join them in `i128` in Rust. That is exact for any values while a
//! group has fewer than 2^31 rows.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Row, params, params_from_iter};

use super::day;
use super::{
    CostSource, GroupBy, LedgerError, LedgerRow, LogFilter, Outcome, RowFilter, SummaryFilter,
};

/// How long a connection waits for a lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema migrations, in order: entry `i` takes the file from
/// `user_version` `i` to `i + 1`. Append; never edit a released entry.
pub(super) const MIGRATIONS: &[&str] = &[
    // v1: one row per upstream attempt.
    "CREATE TABLE spend (
        id                   INTEGER PRIMARY KEY,
        request_id           TEXT    NOT NULL,
        attempt              INTEGER NOT NULL,
        ts_ms                INTEGER NOT NULL,  -- unix ms, wall clock
        day                  TEXT    NOT NULL,  -- UTC YYYY-MM-DD of ts_ms
        key_name             TEXT,              -- key alias, never a key
        model_group          TEXT,
        deployment           TEXT,
        upstream_model       TEXT,
        stream               INTEGER NOT NULL,  -- 0 or 1
        outcome              TEXT    NOT NULL,  -- success | failure | cancelled | shutdown
        error_class          TEXT,
        prompt_tokens        INTEGER NOT NULL,
        completion_tokens    INTEGER NOT NULL,
        cached_prompt_tokens INTEGER NOT NULL,
        reasoning_tokens     INTEGER NOT NULL,
        usage_estimated      INTEGER NOT NULL,  -- 0 or 1
        cost_picos           INTEGER,           -- 1e-12 $; NULL = price unknown
        cost_source          TEXT    NOT NULL   -- provider | price_table | free | unknown | not_billed
    );
    CREATE INDEX spend_day_key ON spend (day, key_name);
    CREATE INDEX spend_day_model ON spend (day, model_group);
    -- No index on request_id: ids are random, and keeping such an index
    -- cost 12 µs a row under load, four times the rest of the insert. A
    -- lookup by request id scans (narrow it with start_date/end_date).
    ",
    // v2: the team of the key that made the request. The index is partial:
    // a row without a team costs its insert no index seek.
    "ALTER TABLE spend ADD COLUMN team_id TEXT;
    CREATE INDEX spend_day_team ON spend (day, team_id) WHERE team_id IS NOT NULL;
    ",
    // v3: the end user (the request's `user`); older rows have none.
    "ALTER TABLE spend ADD COLUMN end_user TEXT;
    CREATE INDEX spend_end_user_day ON spend (end_user, day) WHERE end_user IS NOT NULL;
    ",
];

/// The schema version this gateway writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating it and its directory if needed) the ledger file for
/// writing, in WAL mode, and brings its schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LedgerError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let open_error = |source| LedgerError::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    // WAL: readers run beside the writer, and a commit is one append.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::NotWal {
            path: path.to_owned(),
            mode,
        });
    }
    // synchronous=NORMAL in WAL mode: a commit is in the WAL file (the OS
    // page cache) when it returns, so it survives a crash of this process,
    // `kill -9` included; only an OS crash or power loss can lose the last
    // commits before the next checkpoint fsyncs them. FULL would fsync every
    // batch for protection against that, at a cost the ledger does not need.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_error)?;
    tune(&conn).map_err(open_error)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// The page cache: every insert walks the table's and the indexes' B-trees,
/// whose pages must stay cached or come from the OS through a `pread` each.
/// Inserts land at the right edge of each (the day leads every index, and
/// no index is on a random id), so 2 MiB holds them: the writer's CPU a row
/// under the shared bench is the same as with 8 MiB (1.8–2.1 µs), and the
/// 6 MiB more that cache filled under load is not spent (BENCHMARKS.md,
/// "Memory under the shared bench").
fn tune(conn: &Connection) -> rusqlite::Result<()> {
    // Negative: KiB. 2 MiB of pages at most, used as the file grows.
    conn.pragma_update(None, "cache_size", -2_048)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
}

/// Opens a read-only connection to a ledger [`open_writer`] has set up.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, LedgerError> {
    let open_error = |source| LedgerError::Open {
        path: path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let open_error = |source| LedgerError::Open {
        path: path.to_owned(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_error)?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(found.max(0) as usize) {
        let tx = conn.transaction().map_err(open_error)?;
        tx.execute_batch(sql).map_err(open_error)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(open_error)?;
        tx.commit().map_err(open_error)?;
        tracing::info!(target: "tollgate::ledger", version, "ledger schema migrated");
    }
    Ok(())
}

/// A `u64` as the `i64` with the same bits (see the module docs).
fn to_sql(n: u64) -> i64 {
    n as i64
}

/// The inverse of [`to_sql`].
fn from_sql(n: i64) -> u64 {
    n as u64
}

/// The columns of an insert, in the order [`bind_row`] binds them.
const INSERT_COLUMNS: &str = "INSERT INTO spend (request_id, attempt, ts_ms, day, key_name,
    model_group, deployment, upstream_model, stream, outcome, error_class, prompt_tokens,
    completion_tokens, cached_prompt_tokens, reasoning_tokens, usage_estimated, cost_picos,
    cost_source, team_id, end_user) VALUES ";

/// Values a row binds.
const ROW_VALUES: usize = 20;

/// Rows per multi-row insert. One statement per row costs SQLite a
/// statement's start and end each (its cursors opened, the table's last
/// rowid sought, the transaction checked); one `VALUES` list of this many
/// rows pays them once (1,280 values, far below SQLite's 32,766).
const ROWS_PER_INSERT: usize = 64;

/// `INSERT … VALUES (?, …), …` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; ROW_VALUES].join(", "));
    format!("{INSERT_COLUMNS}{}", vec![row; rows].join(", "))
}

/// Inserts `rows` in one transaction: all or none.
pub(crate) fn insert_batch(conn: &mut Connection, rows: &[LedgerRow]) -> rusqlite::Result<()> {
    static MANY: OnceLock<String> = OnceLock::new();
    static ONE: OnceLock<String> = OnceLock::new();
    let tx = conn.transaction()?;
    {
        // A batch is a second or so of rows: nearly always one day, whose
        // text is made once.
        let mut day = DayText::default();
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        if chunks.len() > 0 {
            let mut insert = tx.prepare_cached(MANY.get_or_init(|| insert_sql(ROWS_PER_INSERT)))?;
            for chunk in chunks.by_ref() {
                for (at, row) in chunk.iter().enumerate() {
                    bind_row(&mut insert, at * ROW_VALUES, row, day.of(row.ts_ms))?;
                }
                insert.raw_execute()?;
            }
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut insert = tx.prepare_cached(ONE.get_or_init(|| insert_sql(1)))?;
            for row in rest {
                bind_row(&mut insert, 0, row, day.of(row.ts_ms))?;
                insert.raw_execute()?;
            }
        }
    }
    tx.commit()
}

/// The text of the last day asked for, kept.
#[derive(Default)]
struct DayText(Option<(i64, String)>);

impl DayText {
    fn of(&mut self, ts_ms: i64) -> &str {
        let number = day::day_number(ts_ms);
        if self.0.as_ref().is_none_or(|(n, _)| *n != number) {
            self.0 = Some((number, day::format_day(number)));
        }
        self.0.as_ref().map_or("", |(_, text)| text.as_str())
    }
}

/// Binds `row`'s values to the parameters after the first `before`.
fn bind_row(
    insert: &mut rusqlite::Statement<'_>,
    before: usize,
    row: &LedgerRow,
    day: &str,
) -> rusqlite::Result<()> {
    let mut at = before;
    let mut bind = |value: &dyn rusqlite::ToSql| {
        at += 1;
        insert.raw_bind_parameter(at, value)
    };
    bind(&&*row.request_id)?;
    bind(&row.attempt)?;
    bind(&row.ts_ms)?;
    bind(&day)?;
    bind(&row.key.as_deref())?;
    bind(&row.model_group.as_deref())?;
    bind(&row.deployment.as_deref())?;
    bind(&row.upstream_model.as_deref())?;
    bind(&row.stream)?;
    bind(&row.outcome.as_str())?;
    bind(&row.error_class)?;
    bind(&to_sql(row.prompt_tokens))?;
    bind(&to_sql(row.completion_tokens))?;
    bind(&to_sql(row.cached_prompt_tokens))?;
    bind(&to_sql(row.reasoning_tokens))?;
    bind(&row.usage_estimated)?;
    bind(&row.cost_picos.map(to_sql))?;
    bind(&row.cost_source.as_str())?;
    bind(&row.team.as_deref())?;
    bind(&row.end_user.as_deref())
}

/// Whose bill [`billed_since`] sums: a key's (by name), a team's (by id)
/// or an end user's (the requests' `user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payer {
    Key,
    Team,
    EndUser,
}

/// What the key named, team with the id or end user `name` was billed since
/// `since_ms` (unix ms), in picos; unknown prices count as nothing.
pub(crate) fn billed_since(
    conn: &Connection,
    payer: Payer,
    name: &str,
    since_ms: i64,
) -> rusqlite::Result<u128> {
    // `day >=` with the name lets the (day, key_name), (day, team_id) or
    // (end_user, day) index narrow the rows.
    let column = match payer {
        Payer::Key => "key_name",
        Payer::Team => "team_id",
        Payer::EndUser => "end_user",
    };
    let mut statement = conn.prepare_cached(&format!(
        "SELECT cost_picos FROM spend
         WHERE day >= ?1 AND {column} = ?2 AND ts_ms >= ?3 AND cost_picos IS NOT NULL"
    ))?;
    let rows = statement.query_map(params![day::day_of(since_ms), name, since_ms], |row| {
        row.get::<_, i64>(0)
    })?;
    rows.map(|picos| picos.map(|p| u128::from(from_sql(p))))
        .sum()
}

/// `WHERE ...` for `filter` (empty when it sets nothing), and its values.
fn where_clause(filter: &RowFilter) -> (String, Vec<Value>) {
    let conditions = [
        ("key_name = ?", &filter.key),
        ("end_user = ?", &filter.end_user),
        ("model_group = ?", &filter.model),
        ("deployment = ?", &filter.deployment),
        ("request_id = ?", &filter.request_id),
        ("day >= ?", &filter.start_day),
        ("day <= ?", &filter.end_day),
    ];
    let mut sql = Vec::new();
    let mut values = Vec::new();
    for (condition, value) in conditions {
        if let Some(value) = value {
            sql.push(condition);
            values.push(Value::Text(value.clone()));
        }
    }
    if sql.is_empty() {
        (String::new(), values)
    } else {
        (format!("WHERE {}", sql.join(" AND ")), values)
    }
}

/// The rows matching `filter`, newest first (the last recorded first).
pub(crate) fn logs(conn: &Connection, filter: &LogFilter) -> rusqlite::Result<Vec<LedgerRow>> {
    let (conditions, mut values) = where_clause(&filter.rows);
    let sql = format!(
        "SELECT request_id, attempt, ts_ms, key_name, model_group, deployment, upstream_model,
                stream, outcome, error_class, prompt_tokens, completion_tokens,
                cached_prompt_tokens, reasoning_tokens, usage_estimated, cost_picos, cost_source,
                team_id, end_user
         FROM spend {conditions}
         ORDER BY id DESC
         LIMIT ? OFFSET ?"
    );
    values.push(Value::Integer(i64::from(filter.limit)));
    values.push(Value::Integer(
        i64::try_from(filter.offset).unwrap_or(i64::MAX),
    ));
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(values), read_row)?;
    rows.collect()
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<LedgerRow> {
    Ok(LedgerRow {
        request_id: row.get::<_, String>(0)?.into(),
        attempt: row.get(1)?,
        ts_ms: row.get(2)?,
        key: row.get::<_, Option<String>>(3)?.map(Arc::from),
        model_group: row.get::<_, Option<String>>(4)?.map(Arc::from),
        deployment: row.get::<_, Option<String>>(5)?.map(Arc::from),
        upstream_model: row.get::<_, Option<String>>(6)?.map(Arc::from),
        stream: row.get(7)?,
        outcome: row.get(8)?,
        error_class: row.get(9)?,
        prompt_tokens: from_sql(row.get(10)?),
        completion_tokens: from_sql(row.get(11)?),
        cached_prompt_tokens: from_sql(row.get(12)?),
        reasoning_tokens: from_sql(row.get(13)?),
        usage_estimated: row.get(14)?,
        cost_picos: row.get::<_, Option<i64>>(15)?.map(from_sql),
        cost_source: row.get(16)?,
        team: row.get::<_, Option<String>>(17)?.map(Arc::from),
        end_user: row.get::<_, Option<String>>(18)?.map(Arc::from),
    })
}

impl FromSql for Outcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Outcome::parse(value.as_str()?).ok_or(FromSqlError::InvalidType)
    }
}

impl FromSql for CostSource {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        CostSource::parse(value.as_str()?).ok_or(FromSqlError::InvalidType)
    }
}

/// One group's sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SummaryRow {
    /// The group: each `group_by` column, in order, with its value (`None`
    /// for rows without one, such as requests made without a key).
    pub(crate) group: Vec<(GroupBy, Option<String>)>,
    /// Distinct request ids in the group. A request whose attempts fall in
    /// two groups counts in both, so these do not add up across groups.
    pub(crate) requests: u64,
    /// Attempts (rows).
    pub(crate) attempts: u64,
    /// Attempts with outcome `failure`.
    pub(crate) failed_attempts: u64,
    /// Attempts with outcome `cancelled`.
    pub(crate) cancelled_attempts: u64,
    /// Attempts with outcome `shutdown`.
    pub(crate) shutdown_attempts: u64,
    /// Sum of prompt tokens.
    pub(crate) prompt_tokens: u128,
    /// Sum of completion tokens.
    pub(crate) completion_tokens: u128,
    /// Sum of cached prompt tokens.
    pub(crate) cached_prompt_tokens: u128,
    /// Sum of reasoning tokens.
    pub(crate) reasoning_tokens: u128,
    /// Sum of known costs, pico-dollars.
    pub(crate) spend_picos: i128,
    /// Attempts without a known cost (not in `spend_picos`).
    pub(crate) unknown_cost_attempts: u64,
    /// Attempts whose usage is the gateway's estimate.
    pub(crate) estimated_usage_attempts: u64,
}

const fn column(group: GroupBy) -> &'static str {
    match group {
        GroupBy::Day => "day",
        GroupBy::Key => "key_name",
        GroupBy::Model => "model_group",
        GroupBy::Deployment => "deployment",
        GroupBy::Team => "team_id",
        GroupBy::EndUser => "end_user",
    }
}

/// `SUM` of the high and the low 32-bit halves of `column` (two result
/// columns); see the module docs.
fn split_sum(column: &str) -> String {
    format!("SUM(({column} >> 32) & 4294967295), SUM({column} & 4294967295)")
}

/// Joins the two halves [`split_sum`] returns (`NULL` when no row had a
/// value).
fn join_sum(row: &Row<'_>, first: usize) -> rusqlite::Result<i128> {
    let high: Option<i64> = row.get(first)?;
    let low: Option<i64> = row.get(first + 1)?;
    Ok((i128::from(high.unwrap_or(0)) << 32) + i128::from(low.unwrap_or(0)))
}

fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, Option<i64>>(index)?.unwrap_or(0).max(0) as u64)
}

/// Sums per group of the rows matching `filter`, ordered by the group
/// columns.
pub(crate) fn summary(
    conn: &Connection,
    filter: &SummaryFilter,
) -> rusqlite::Result<Vec<SummaryRow>> {
    let (conditions, values) = where_clause(&filter.rows);
    let groups = filter
        .group_by
        .iter()
        .map(|group| column(*group))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {groups},
                COUNT(DISTINCT request_id),
                COUNT(*),
                SUM(outcome = 'failure'),
                SUM(outcome = 'cancelled'),
                SUM(outcome = 'shutdown'),
                {prompt}, {completion}, {cached}, {reasoning}, {cost},
                SUM(cost_picos IS NULL),
                SUM(usage_estimated)
         FROM spend {conditions}
         GROUP BY {groups}
         ORDER BY {groups}",
        prompt = split_sum("prompt_tokens"),
        completion = split_sum("completion_tokens"),
        cached = split_sum("cached_prompt_tokens"),
        reasoning = split_sum("reasoning_tokens"),
        cost = split_sum("cost_picos"),
    );
    let width = filter.group_by.len();
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(values), |row| {
        let mut group = Vec::with_capacity(width);
        for (index, name) in filter.group_by.iter().enumerate() {
            group.push((*name, row.get(index)?));
        }
        let at = |offset: usize| width + offset;
        Ok(SummaryRow {
            group,
            requests: count(row, at(0))?,
            attempts: count(row, at(1))?,
            failed_attempts: count(row, at(2))?,
            cancelled_attempts: count(row, at(3))?,
            shutdown_attempts: count(row, at(4))?,
            prompt_tokens: join_sum(row, at(5))? as u128,
            completion_tokens: join_sum(row, at(7))? as u128,
            cached_prompt_tokens: join_sum(row, at(9))? as u128,
            reasoning_tokens: join_sum(row, at(11))? as u128,
            spend_picos: join_sum(row, at(13))?,
            unknown_cost_attempts: count(row, at(15))?,
            estimated_usage_attempts: count(row, at(16))?,
        })
    })?;
    rows.collect()
}

/// The number of rows and the sum of their known costs, in picos.
#[cfg(test)]
pub(crate) fn totals(conn: &Connection) -> rusqlite::Result<(u64, i128)> {
    let sql = format!("SELECT COUNT(*), {} FROM spend", split_sum("cost_picos"));
    conn.query_row(&sql, [], |row| Ok((count(row, 0)?, join_sum(row, 1)?)))
}
