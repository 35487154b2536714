//! Exact money text: pico-dollars (1e-12 $) rendered as decimal dollars.
//!
//! The ledger never holds money as a float. Amounts are integer picos in the
//! store and in sums (`i128`), and become text only at the edge, by integer
//! division: `296_660_000` picos is `"0.00029666"`.

use tollgate_core::write_picos;

/// `picos` as decimal dollars, without trailing zeros: `0`, `1`, `12.5`,
/// `0.000000000001`.
pub(crate) fn picos_to_decimal(picos: u64) -> String {
    picos_to_decimal_i128(i128::from(picos))
}

/// [`picos_to_decimal`] for sums (and, should one ever be needed, negative
/// amounts: `-0.5`).
pub(crate) fn picos_to_decimal_i128(picos: i128) -> String {
    let mut out = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write_picos(&mut out, picos);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::PICOS_PER_DOLLAR;

    #[test]
    fn renders_exact_decimals() {
        assert_eq!(picos_to_decimal(0), "0");
        assert_eq!(picos_to_decimal(PICOS_PER_DOLLAR), "1");
        assert_eq!(picos_to_decimal(1), "0.000000000001");
        assert_eq!(picos_to_decimal(12_500_000_000_000), "12.5");
        assert_eq!(picos_to_decimal(296_660_000), "0.00029666");
        assert_eq!(picos_to_decimal(100_000_000_010), "0.10000000001");
        assert_eq!(picos_to_decimal(u64::MAX), "18446744.073709551615");
    }

    #[test]
    fn renders_wide_sums_and_signs() {
        assert_eq!(picos_to_decimal_i128(0), "0");
        assert_eq!(picos_to_decimal_i128(-500_000_000_000), "-0.5");
        assert_eq!(
            picos_to_decimal_i128(3 * i128::from(u64::MAX)),
            "55340232.221128654845"
        );
        assert_eq!(
            picos_to_decimal_i128(i128::MAX),
            "170141183460469231731687303.715884105727"
        );
        assert_eq!(
            picos_to_decimal_i128(i128::MIN),
            "-170141183460469231731687303.715884105728"
        );
    }
}
