//! The ledger's UTC days as text.
//!
//! The ledger files each row under its UTC day (`YYYY-MM-DD`), and the query
//! API takes `start_date`/`end_date` in the same form. The calendar itself
//! is core's ([`tollgate_core::time`]).

use std::fmt::Write as _;

use tollgate_core::time::{MS_PER_DAY, civil_from_days, days_from_civil};

/// The day number (days since 1970-01-01, UTC) of a unix-ms timestamp.
pub(crate) fn day_number(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MS_PER_DAY)
}

/// The unix-ms timestamp of midnight UTC starting day `day`.
#[cfg(test)]
pub(crate) fn day_start_ms(day: i64) -> i64 {
    day.saturating_mul(MS_PER_DAY)
}

/// `YYYY-MM-DD` for day number `days`.
///
/// Years 0 to 9999 have four digits, so these strings sort like the days
/// they name; that is what lets the ledger compare its `day` column as text.
pub(crate) fn format_day(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The UTC day of a unix-ms timestamp, as `YYYY-MM-DD`.
pub(crate) fn day_of(ts_ms: i64) -> String {
    format_day(day_number(ts_ms))
}

/// RFC 3339 UTC with milliseconds: `2026-11-27T23:59:59.999Z`.
pub(crate) fn format_timestamp(ts_ms: i64) -> String {
    let mut out = day_of(ts_ms);
    let ms_of_day = ts_ms.rem_euclid(MS_PER_DAY);
    let (secs, ms) = (ms_of_day / 1000, ms_of_day % 1000);
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}.{ms:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out
}

/// Parses a strict `YYYY-MM-DD` (four-digit year, real calendar date) into a
/// day number.
pub(crate) fn parse_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &bytes[range];
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(i64::from(year), month, day))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(-1), "1969-12-31");
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            format_timestamp(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn day_boundary_is_utc_midnight() {
        let midnight = day_start_ms(days_from_civil(2026, 11, 28));
        assert_eq!(day_of(midnight - 1), "2026-11-27");
        assert_eq!(format_timestamp(midnight - 1), "2026-11-27T23:59:59.999Z");
        assert_eq!(day_of(midnight), "2026-11-28");
        assert_eq!(format_timestamp(midnight), "2026-11-28T00:00:00.000Z");
    }

    #[test]
    fn civil_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            if (0..=9999).contains(&y) {
                assert_eq!(parse_day(&format_day(days)), Some(days));
            }
        }
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(parse_day("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-1-01",
            "2026/01/01",
            "26-01-01",
            "2026-01-01T00",
            "+026-01-01",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        assert!(parse_day("2000-02-29").is_some());
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        let _ = format_timestamp(i64::MAX);
        let _ = format_timestamp(i64::MIN);
    }
}
