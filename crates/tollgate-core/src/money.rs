//! Exact money: [`Usd`], an integer count of pico-dollars, and the one
//! place pico-dollars become decimal text ([`write_picos`]).

use std::fmt;
use std::str::FromStr;

/// Pico-dollars in a dollar (1 pico-dollar = 10⁻¹² $).
pub const PICOS_PER_DOLLAR: u64 = 1_000_000_000_000;

/// Writes `picos` pico-dollars as plain decimal dollars, without trailing
/// zeros and without a float: `0`, `12.5`, `-0.5`, `0.00029666`. Takes an
/// `i128` so that sums of many amounts (and, should one ever be needed, a
/// negative one) are written the same way as one [`Usd`].
///
/// ```
/// let mut text = String::new();
/// tollgate_core::write_picos(&mut text, 296_660_000).unwrap();
/// assert_eq!(text, "0.00029666");
/// ```
pub fn write_picos(out: &mut impl fmt::Write, picos: i128) -> fmt::Result {
    if picos < 0 {
        out.write_char('-')?;
    }
    let picos = picos.unsigned_abs();
    let per_dollar = u128::from(PICOS_PER_DOLLAR);
    let (whole, frac) = (picos / per_dollar, picos % per_dollar);
    if frac == 0 {
        return write!(out, "{whole}");
    }
    // Twelve digits, then the trailing zeros cut.
    let mut buf = [b'0'; 12];
    let mut rest = frac;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let len = 12 - buf.iter().rev().take_while(|&&b| b == b'0').count();
    let digits = std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?;
    write!(out, "{whole}.{digits}")
}

/// An exact amount of US dollars, in pico-dollars (10⁻¹² $).
///
/// Per-token prices are tiny decimals — $0.01875 per million tokens is
/// $0.00000001875 per token, 18,750 pico-dollars — and a float cannot hold
/// them exactly, so costs are kept as an integer count of pico-dollars:
/// every price with up to 12 decimal places is exact, and sums and products
/// of them are exact. A `u64` holds up to $18,446,744.073709551615; the
/// arithmetic saturates (or, with the `checked_` methods, reports) past it.
///
/// Text in and out is plain decimal: [`parse`](Usd::parse) reads decimal
/// or scientific text (`0.00029666`, `1.3e-7`) as providers write it, and
/// [`Display`](fmt::Display) writes decimal text without a float ever being
/// involved (`0.00029666`, `0`, `12.5`). Serde reads and writes the same
/// text, as a string.
///
/// ```
/// use tollgate_core::Usd;
///
/// let per_token = Usd::parse("1.3e-7").unwrap();
/// assert_eq!(per_token.picos(), 130_000);
/// let cost = per_token.saturating_mul(412);
/// assert_eq!(cost.to_string(), "0.00005356");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(u64);

impl Usd {
    /// Nothing.
    pub const ZERO: Usd = Usd(0);

    /// The largest amount a `Usd` holds.
    pub const MAX: Usd = Usd(u64::MAX);

    /// An amount of `picos` pico-dollars.
    pub const fn from_picos(picos: u64) -> Usd {
        Usd(picos)
    }

    /// The amount in pico-dollars.
    pub const fn picos(self) -> u64 {
        self.0
    }

    /// Whether the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Reads decimal (`0.00029666`, `12`, `.5`) or scientific (`1.3e-7`,
    /// `2.5E+1`) text, as JSON numbers and price strings are written.
    ///
    /// A value with more than 12 fractional digits (finer than a
    /// pico-dollar) is rounded half-up to the nearest pico-dollar:
    /// `0.0000000000015` is 2 pico-dollars, `0.0000000000014999` is 1.
    ///
    /// # Errors
    ///
    /// Empty or malformed text, a negative value (any leading `-`, `-0`
    /// included), `NaN` or infinities, and values over [`Usd::MAX`].
    pub fn parse(text: &str) -> Result<Usd, ParseUsdError> {
        let bytes = text.as_bytes();
        match bytes.first() {
            None => return Err(ParseUsdError::Empty),
            Some(b'-') => return Err(ParseUsdError::Negative),
            _ => {}
        }
        let bytes = bytes.strip_prefix(b"+").unwrap_or(bytes);
        let digits_end = |from: usize| {
            from + bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let int_end = digits_end(0);
        let int = &bytes[..int_end];
        let (frac, rest) = match bytes.get(int_end) {
            Some(b'.') => {
                let frac_end = digits_end(int_end + 1);
                (&bytes[int_end + 1..frac_end], &bytes[frac_end..])
            }
            _ => (&bytes[..0], &bytes[int_end..]),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(ParseUsdError::Invalid);
        }
        let exponent: i64 = match rest {
            [] => 0,
            [b'e' | b'E', exp @ ..] => parse_exponent(exp)?,
            _ => return Err(ParseUsdError::Invalid),
        };
        // The value is D × 10^(exponent − frac.len()) for the digit string D
        // = int ++ frac, so in pico-dollars it is D × 10^shift.
        let shift = exponent
            .saturating_sub(frac.len() as i64)
            .saturating_add(12);
        let leading_zeros = int.iter().chain(frac).take_while(|&&b| b == b'0').count();
        let count = int.len() + frac.len() - leading_zeros;
        if count == 0 {
            return Ok(Usd::ZERO);
        }
        let mut digits = int
            .iter()
            .chain(frac)
            .skip(leading_zeros)
            .map(|b| u64::from(b - b'0'));
        // How many leading digits of D make the whole pico-dollars.
        let whole = count as i64 + shift;
        if whole > 20 {
            return Err(ParseUsdError::Overflow);
        }
        let mut picos: u64 = 0;
        let mut taken = 0i64;
        while taken < whole {
            let digit = digits.next().unwrap_or(0);
            picos = picos
                .checked_mul(10)
                .and_then(|p| p.checked_add(digit))
                .ok_or(ParseUsdError::Overflow)?;
            taken += 1;
        }
        // Half-up: the first digit dropped decides. When even the first
        // digit of D lies two places or more below a pico, it rounds to 0.
        let round_up = whole >= 0 && digits.next().is_some_and(|d| d >= 5);
        if round_up {
            picos = picos.checked_add(1).ok_or(ParseUsdError::Overflow)?;
        }
        Ok(Usd(picos))
    }

    /// `self + other`, or `None` past [`Usd::MAX`].
    pub const fn checked_add(self, other: Usd) -> Option<Usd> {
        match self.0.checked_add(other.0) {
            Some(sum) => Some(Usd(sum)),
            None => None,
        }
    }

    /// `self + other`, at most [`Usd::MAX`].
    pub const fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// The price of `tokens` tokens at `self` per token, or `None` past
    /// [`Usd::MAX`].
    pub const fn checked_mul(self, tokens: u64) -> Option<Usd> {
        match self.0.checked_mul(tokens) {
            Some(product) => Some(Usd(product)),
            None => None,
        }
    }

    /// The price of `tokens` tokens at `self` per token, at most
    /// [`Usd::MAX`].
    pub const fn saturating_mul(self, tokens: u64) -> Usd {
        Usd(self.0.saturating_mul(tokens))
    }

    /// The amount in dollars as a float, **for metrics only** (gauges and
    /// counters want an `f64`): it is not exact, and nothing that is summed
    /// or recorded may go through it.
    pub fn as_f64_dollars(self) -> f64 {
        (self.0 / PICOS_PER_DOLLAR) as f64 + (self.0 % PICOS_PER_DOLLAR) as f64 / 1e12
    }
}

/// Reads the digits of an exponent (after the `e`), saturating far past any
/// value that could matter.
fn parse_exponent(text: &[u8]) -> Result<i64, ParseUsdError> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseUsdError::Invalid);
    }
    let value = digits.iter().fold(0i64, |acc, &b| {
        acc.saturating_mul(10)
            .saturating_add(i64::from(b - b'0'))
            .min(1 << 40)
    });
    Ok(if negative { -value } else { value })
}

impl fmt::Display for Usd {
    /// Plain decimal dollars, without trailing zeros: `0.00029666`, `0`,
    /// `12.5` ([`write_picos`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_picos(f, i128::from(self.0))
    }
}

impl fmt::Debug for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Usd({self})")
    }
}

impl FromStr for Usd {
    type Err = ParseUsdError;

    fn from_str(text: &str) -> Result<Usd, ParseUsdError> {
        Usd::parse(text)
    }
}

impl std::iter::Sum for Usd {
    /// The saturating sum.
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Usd::saturating_add)
    }
}

/// Why text is not an amount of [`Usd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseUsdError {
    /// The text is empty.
    #[error("an amount of dollars cannot be empty")]
    Empty,
    /// The text is not a decimal or scientific number (`NaN` and infinities
    /// included).
    #[error("an amount of dollars must be a decimal number")]
    Invalid,
    /// The amount is negative.
    #[error("an amount of dollars cannot be negative")]
    Negative,
    /// The amount is over [`Usd::MAX`].
    #[error("the amount of dollars is too large")]
    Overflow,
}

impl serde::Serialize for Usd {
    /// As a decimal string (`"0.00029666"`).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Usd {
    /// From a decimal or scientific string (`"0.00029666"`, `"2.5e-6"`), or
    /// from an integer. A float (a YAML or JSON number with a fraction,
    /// read by a format that has no exact text for it) is read through its
    /// shortest round-trip decimal form, which is the text that was written
    /// for any price of up to 15 significant digits; prefer strings where
    /// the format allows.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Usd, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Usd;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of dollars as a decimal string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Usd, E> {
                Usd::parse(text.trim()).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, dollars: u64) -> Result<Usd, E> {
                dollars
                    .checked_mul(PICOS_PER_DOLLAR)
                    .map(Usd)
                    .ok_or_else(|| E::custom(ParseUsdError::Overflow))
            }

            fn visit_i64<E: serde::de::Error>(self, dollars: i64) -> Result<Usd, E> {
                let dollars =
                    u64::try_from(dollars).map_err(|_| E::custom(ParseUsdError::Negative))?;
                self.visit_u64(dollars)
            }

            fn visit_f64<E: serde::de::Error>(self, dollars: f64) -> Result<Usd, E> {
                // `{}` writes the shortest text that reads back as the same
                // float: the decimal the config file had.
                Usd::parse(&dollars.to_string()).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picos(text: &str) -> u64 {
        Usd::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .picos()
    }

    #[test]
    fn parses_decimal_and_scientific_text_exactly() {
        let cases = [
            ("0", 0),
            ("0.0", 0),
            ("000", 0),
            ("0e5", 0),
            ("1", 1_000_000_000_000),
            ("12.5", 12_500_000_000_000),
            ("0.00029666", 296_660_000),
            ("0.00000013", 130_000),
            ("0.000000025", 25_000),
            ("1.3e-7", 130_000),
            ("1.3E-7", 130_000),
            ("2.5e-06", 2_500_000),
            ("1.875e-8", 18_750),
            ("0.01875e-6", 18_750),
            ("2.5e+1", 25_000_000_000_000),
            ("25E0", 25_000_000_000_000),
            (".5", 500_000_000_000),
            ("5.", 5_000_000_000_000),
            ("+3", 3_000_000_000_000),
            ("0.000000000001", 1),
            ("1e-12", 1),
            ("18446744.073709551615", u64::MAX),
            ("0.0000000000000000000000000000000000001", 0),
            ("1e-999999999999999999999", 0),
        ];
        for (text, expected) in cases {
            assert_eq!(picos(text), expected, "{text}");
        }
    }

    #[test]
    fn rounds_past_the_pico_half_up() {
        assert_eq!(picos("0.0000000000015"), 2);
        assert_eq!(picos("0.0000000000014999"), 1);
        assert_eq!(picos("0.0000000000005"), 1);
        assert_eq!(picos("0.00000000000049999999"), 0);
        assert_eq!(picos("1.5e-12"), 2);
        assert_eq!(picos("4.9e-13"), 0);
        assert_eq!(picos("5e-13"), 1);
        assert_eq!(picos("5e-14"), 0);
        assert_eq!(picos("0.0000000000009999999999999"), 1);
        assert_eq!(picos("2.0000000000005"), 2_000_000_000_001);
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        use ParseUsdError::*;
        let cases = [
            ("", Empty),
            ("-1", Negative),
            ("-0", Negative),
            ("-0.5e-3", Negative),
            ("NaN", Invalid),
            ("nan", Invalid),
            ("inf", Invalid),
            ("Infinity", Invalid),
            (".", Invalid),
            ("e5", Invalid),
            ("1e", Invalid),
            ("1e+", Invalid),
            ("1.2.3", Invalid),
            ("1 ", Invalid),
            (" 1", Invalid),
            ("0x10", Invalid),
            ("1,5", Invalid),
            ("18446744.073709551616", Overflow),
            ("1e30", Overflow),
            ("99999999999999999999999", Overflow),
        ];
        for (text, error) in cases {
            assert_eq!(Usd::parse(text), Err(error), "{text}");
        }
    }

    #[test]
    fn displays_plain_decimal_text() {
        let cases = [
            (0, "0"),
            (1, "0.000000000001"),
            (296_660_000, "0.00029666"),
            (6_900_000, "0.0000069"),
            (12_500_000_000_000, "12.5"),
            (3_000_000_000_000, "3"),
            (u64::MAX, "18446744.073709551615"),
        ];
        for (picos, text) in cases {
            let usd = Usd::from_picos(picos);
            assert_eq!(usd.to_string(), text);
            assert_eq!(Usd::parse(text), Ok(usd));
        }
        assert_eq!(format!("{:?}", Usd::from_picos(5)), "Usd(0.000000000005)");
    }

    #[test]
    fn writes_wide_sums_and_signs() {
        let text = |picos: i128| {
            let mut out = String::new();
            write_picos(&mut out, picos).unwrap();
            out
        };
        assert_eq!(text(0), "0");
        assert_eq!(text(-500_000_000_000), "-0.5");
        assert_eq!(text(100_000_000_010), "0.10000000001");
        assert_eq!(text(3 * i128::from(u64::MAX)), "55340232.221128654845");
    }

    #[test]
    fn arithmetic_is_exact_and_bounded() {
        let price = Usd::parse("0.00000085").unwrap();
        assert_eq!(price.saturating_mul(286), Usd::parse("0.0002431").unwrap());
        assert_eq!(
            Usd::parse("0.00005356")
                .unwrap()
                .checked_add(Usd::parse("0.0002431").unwrap()),
            Some(Usd::parse("0.00029666").unwrap())
        );
        assert_eq!(Usd::MAX.checked_add(Usd::from_picos(1)), None);
        assert_eq!(Usd::MAX.saturating_add(Usd::from_picos(1)), Usd::MAX);
        assert_eq!(Usd::from_picos(2).checked_mul(u64::MAX), None);
        assert_eq!(Usd::from_picos(2).saturating_mul(u64::MAX), Usd::MAX);
        let total: Usd = [Usd::from_picos(1), Usd::from_picos(2)].into_iter().sum();
        assert_eq!(total.picos(), 3);
        assert!((Usd::parse("12.5").unwrap().as_f64_dollars() - 12.5).abs() < 1e-12);
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let usd = Usd::parse("0.00029666").unwrap();
        assert_eq!(serde_json::to_string(&usd).unwrap(), r#""0.00029666""#);
        assert_eq!(serde_json::from_str::<Usd>(r#""0.00029666""#).unwrap(), usd);
        assert_eq!(
            serde_json::from_str::<Usd>(r#""1.3e-7""#).unwrap().picos(),
            130_000
        );
        // Numbers from config files: integers exactly, floats through their
        // shortest text.
        assert_eq!(
            serde_json::from_str::<Usd>("2").unwrap().picos(),
            2_000_000_000_000
        );
        assert_eq!(
            serde_json::from_str::<Usd>("2.5e-06").unwrap().picos(),
            2_500_000
        );
        assert_eq!(
            serde_json::from_str::<Usd>("0.00000013").unwrap().picos(),
            130_000
        );
        assert!(serde_json::from_str::<Usd>(r#""-1""#).is_err());
        assert!(serde_json::from_str::<Usd>("-1").is_err());
    }
}
