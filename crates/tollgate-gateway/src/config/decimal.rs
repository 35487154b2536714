//! Exact, non-negative decimal numbers for prices.

use std::fmt;
use std::str::FromStr;

/// A non-negative decimal number kept as exact decimal text, for prices such as
/// `input_cost_per_token: 0.00000013`.
///
/// Money must be auditable: a price read through `f64` can come back as
/// `1.2999999999999999e-7`, and sums of such values drift. So the literal is kept as
/// text, normalised to plain positional notation (`1.3e-7` and `0.000000130` both
/// become `0.00000013`, `2` stays `2`), and arithmetic is left to integer code via
/// [`Decimal::to_units`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Canonical text: no sign, no exponent, no leading zeros before the point (other
    /// than a single `0`), no trailing zeros after it, and no point if there is no
    /// fraction. Canonical text makes derived equality mean numeric equality.
    text: String,
}

/// Why a text is not a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not a number in decimal or scientific notation.
    #[error("expected a decimal number such as 0.00000013 or 1.3e-7")]
    Syntax,
    /// Prices cannot be negative.
    #[error("must not be negative")]
    Negative,
    /// The exponent would expand to an absurdly long number.
    #[error("exponent out of range")]
    ExponentRange,
}

/// Exponents past this are typos, not prices; the bound keeps normalisation cheap.
const MAX_EXPONENT: i64 = 1000;

impl Decimal {
    /// Zero.
    pub fn zero() -> Self {
        Decimal {
            text: "0".to_owned(),
        }
    }

    /// Parses `0.00000013`, `1.3e-7`, `2`, `+.5`; rejects negatives, `NaN`, `inf`.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((int_part, frac_part)) => (int_part, frac_part),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part)
        {
            return Err(DecimalError::Syntax);
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(exp) => {
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(DecimalError::Syntax);
                }
                match exp.parse::<i64>() {
                    Ok(value) if value.abs() <= MAX_EXPONENT => value,
                    _ => return Err(DecimalError::ExponentRange),
                }
            }
        };
        // All significant digits in a row; the point sits after `point` of them.
        let digits: String = format!("{int_part}{frac_part}");
        let point = int_part.len() as i64 + exponent;
        let decimal = Self::from_digits(&digits, point);
        if negative && !decimal.is_zero() {
            return Err(DecimalError::Negative);
        }
        Ok(decimal)
    }

    /// Builds the canonical text from a digit string and the position of the point
    /// (which may lie before the first digit or past the last one).
    fn from_digits(digits: &str, point: i64) -> Self {
        let len = digits.len() as i64;
        let (int_digits, frac_digits) = if point <= 0 {
            let zeros = "0".repeat(point.unsigned_abs() as usize);
            (String::new(), format!("{zeros}{digits}"))
        } else if point >= len {
            let zeros = "0".repeat((point - len) as usize);
            (format!("{digits}{zeros}"), String::new())
        } else {
            let (int_digits, frac_digits) = digits.split_at(point as usize);
            (int_digits.to_owned(), frac_digits.to_owned())
        };
        let int_digits = int_digits.trim_start_matches('0');
        let frac_digits = frac_digits.trim_end_matches('0');
        let int_digits = if int_digits.is_empty() {
            "0"
        } else {
            int_digits
        };
        let text = if frac_digits.is_empty() {
            int_digits.to_owned()
        } else {
            format!("{int_digits}.{frac_digits}")
        };
        Decimal { text }
    }

    /// The canonical decimal text, e.g. `"0.00000013"`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the value is exactly zero (free models).
    pub fn is_zero(&self) -> bool {
        self.text == "0"
    }

    /// Digits after the point in the canonical text (`0.00000013` has 8).
    pub fn scale(&self) -> u32 {
        self.text
            .split_once('.')
            .map_or(0, |(_, frac)| frac.len() as u32)
    }

    /// The value multiplied by `10^scale`, if that is a whole number that fits in a
    /// `u128`: `Decimal("0.00000013").to_units(12) == Some(130_000)`. Cost code can
    /// multiply token counts by this and stay in integers.
    pub fn to_units(&self, scale: u32) -> Option<u128> {
        let (int_digits, frac_digits) = self.text.split_once('.').unwrap_or((&self.text, ""));
        let frac_len = frac_digits.len() as u32;
        if frac_len > scale {
            return None;
        }
        let mut units: u128 = 0;
        for digit in int_digits.bytes().chain(frac_digits.bytes()) {
            units = units
                .checked_mul(10)?
                .checked_add(u128::from(digit - b'0'))?;
        }
        units.checked_mul(10u128.checked_pow(scale - frac_len)?)
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Decimal::parse(text)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        Decimal::parse(text)
            .map(|d| d.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn normalises_notation() {
        assert_eq!(canon("0.00000013"), "0.00000013");
        assert_eq!(canon("1.3e-7"), "0.00000013");
        assert_eq!(canon("1.3E-07"), "0.00000013");
        assert_eq!(canon("0.000000130"), "0.00000013");
        assert_eq!(canon("2"), "2");
        assert_eq!(canon("002.500"), "2.5");
        assert_eq!(canon("1e3"), "1000");
        assert_eq!(canon(".5"), "0.5");
        assert_eq!(canon("+0"), "0");
        assert_eq!(canon("-0.0"), "0");
        assert_eq!(
            canon("0.0000001234567890123456789"),
            "0.0000001234567890123456789"
        );
    }

    #[test]
    fn rejects_junk() {
        for bad in [
            "", ".", "e5", "1e", "abc", "NaN", "inf", ".inf", "1.2.3", "1e+", "0x10",
        ] {
            assert_eq!(Decimal::parse(bad), Err(DecimalError::Syntax), "{bad}");
        }
        assert_eq!(Decimal::parse("-1e-7"), Err(DecimalError::Negative));
        assert_eq!(Decimal::parse("1e100000"), Err(DecimalError::ExponentRange));
    }

    #[test]
    fn units() {
        let price = Decimal::parse("1.3e-7").unwrap();
        assert_eq!(price.scale(), 8);
        assert_eq!(price.to_units(12), Some(130_000));
        assert_eq!(price.to_units(7), None);
        assert_eq!(Decimal::parse("15").unwrap().to_units(2), Some(1500));
    }
}
