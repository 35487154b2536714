//! LiteLLM's duration strings: `budget_duration` and `duration` (`"30s"`,
//! `"30m"`, `"30h"`, `"30d"`, `"1w"`, `"1mo"`).
//!
//! LiteLLM documents seconds, minutes, hours and days, and its parser
//! (`duration_in_seconds`) also reads weeks (`w`), months (`mo`), a bare
//! number as seconds, and the words `hourly`, `daily`, `weekly`, `monthly`.
//! Tollgate reads all of them, with two differences: a month is always 30
//! days (LiteLLM resets `mo` budgets on calendar months), and the whole text
//! must match (LiteLLM ignores anything after the unit, so `"30dx"` would be
//! 30 days there and is an error here).

use std::time::Duration;

/// Seconds in each unit, longest suffix first so `mo` is not read as `m`.
const UNITS: [(&str, u64); 6] = [
    ("mo", 30 * 86_400),
    ("s", 1),
    ("m", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 7 * 86_400),
];

/// The longest duration accepted: 100 years, far past any budget window
/// or key lifetime, and small enough that `now + duration` in unix
/// milliseconds never overflows.
const MAX_SECS: u64 = 100 * 365 * 86_400;

/// Why a text is not a LiteLLM duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    /// Not `<number><unit>`.
    #[error("expected a duration such as \"30s\", \"30m\", \"30h\", \"30d\", \"1w\" or \"1mo\"")]
    Syntax,
    /// Zero, which would expire a key at once or never let a budget fill.
    #[error("must be more than 0")]
    Zero,
    /// Longer than 100 years.
    #[error("is too long (at most 100 years)")]
    TooLong,
}

/// Parses a LiteLLM duration (see the module docs).
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let text = match text.to_ascii_lowercase().as_str() {
        "hourly" => "1h",
        "daily" => "24h",
        "weekly" => "7d",
        "monthly" => "30d",
        _ => text,
    };
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::Syntax);
    }
    let per_unit = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, secs)| *secs)
            .ok_or(DurationError::Syntax)?
    };
    // More digits than a u64 holds is "too long", not a syntax error.
    let count: u64 = digits.parse().map_err(|_| DurationError::TooLong)?;
    let secs = count.checked_mul(per_unit).ok_or(DurationError::TooLong)?;
    match secs {
        0 => Err(DurationError::Zero),
        secs if secs > MAX_SECS => Err(DurationError::TooLong),
        secs => Ok(Duration::from_secs(secs)),
    }
}

/// Writes a duration back in LiteLLM's form, in the largest unit that
/// divides it (`30d`, `12h`, `90m`, `45s`); what the admin API answers.
pub(crate) fn format(duration: Duration) -> String {
    let secs = duration.as_secs();
    for (unit, per) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(per) {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}
