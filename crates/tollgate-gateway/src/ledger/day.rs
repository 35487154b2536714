//! UTC civil dates from unix milliseconds, without a date crate.
//!
//! The ledger files each row under its UTC day (`YYYY-MM-DD`), and the query
//! API takes `start_date`/`end_date` in the same form. The conversions are
//! Howard Hinnant's `days_from_civil`/`civil_from_days` (proleptic Gregorian
//! calendar), exact for every `i64` millisecond timestamp.

use std::fmt::Write as _;

/// Milliseconds in a UTC day (no leap seconds: unix time has none).
const MS_PER_DAY: i64 = 86_400_000;

/// The day number (days since 1970-01-01, UTC) of a unix-ms timestamp.
pub(crate) fn day_number(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MS_PER_DAY)
}

/// The unix-ms timestamp of midnight UTC starting day `day`.
#[cfg(test)]
pub(crate) fn day_start_ms(day: i64) -> i64 {
    day.saturating_mul(MS_PER_DAY)
}

/// The day number of the civil date `year-month-day`.
///
/// `month` is 1..=12 and `day` 1..=31; out-of-range values give a
/// meaningless (but not panicking) result, so validate first.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date `(year, month, day)` of day number `days`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=12, 1..=31).
    (year, month as u32, day as u32)
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
