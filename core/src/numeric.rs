//! A decimal in PostgreSQL's binary `numeric` format (what `numeric_send`
//! writes and `numeric_recv` reads, stable across versions): the pricing
//! trigger hands every row's cost to PostgreSQL this way, without printing
//! and re-parsing it.

use rust_decimal::Decimal;

const NBASE: u128 = 10_000;
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

/// `d` in the binary `numeric` format: digit count, weight, sign, display
/// scale (the decimal's own scale, as `numeric_in` of its text gives), then
/// base-10000 digits, most significant first; all big-endian 16-bit.
/// Leading and trailing zero digits are left in: `numeric_recv` strips them.
pub fn numeric_binary(d: Decimal) -> Vec<u8> {
    let scale = d.scale();
    // Pad the fraction to whole base-10000 digits (at most 28 + 3 decimal
    // digits after the point: 10^31 * 2^96 < 2^128).
    let pad = (4 - scale % 4) % 4;
    let mut rest = d.mantissa().unsigned_abs() * 10u128.pow(pad);
    let fraction_digits = ((scale + pad) / 4) as i32;
    let mut digits = Vec::new();
    while rest > 0 {
        digits.push((rest % NBASE) as u16);
        rest /= NBASE;
    }
    digits.reverse();
    let weight = if digits.is_empty() {
        0
    } else {
        digits.len() as i32 - fraction_digits - 1
    };
    let sign = if d.is_sign_negative() && !d.is_zero() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    for field in [digits.len() as u16, weight as i16 as u16, sign, scale as u16] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    for digit in digits {
        out.extend_from_slice(&digit.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    /// The text `numeric_out` prints for a binary numeric (what a reader
    /// of the format sees), to compare with the decimal's own text.
    fn text_of(binary: &[u8]) -> String {
        let field = |i: usize| u16::from_be_bytes([binary[2 * i], binary[2 * i + 1]]);
        let (n, weight, sign, dscale) = (
            field(0) as usize,
            field(1) as i16 as i32,
            field(2),
            field(3) as i32,
        );
        let digits: Vec<u16> = (0..n).map(|i| field(4 + i)).collect();
        let digit_at = |w: i32| -> u16 {
            let i = weight - w;
            if i >= 0 && (i as usize) < n {
                digits[i as usize]
            } else {
                0
            }
        };
        let mut int = String::new();
        for w in (0..=weight.max(0)).rev() {
            int.push_str(&format!("{:04}", digit_at(w)));
        }
        let int = int.trim_start_matches('0');
        let mut frac = String::new();
        for w in 1..=((dscale + 3) / 4) {
            frac.push_str(&format!("{:04}", digit_at(-w)));
        }
        frac.truncate(dscale as usize);
        let sign = if sign == NUMERIC_NEG { "-" } else { "" };
        let int = if int.is_empty() { "0" } else { int };
        if dscale > 0 {
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}{int}")
        }
    }

    #[test]
    fn known_values() {
        // 12.5: one digit before the point (weight 0), one after.
        let d = Decimal::from_str("12.5").unwrap();
        assert_eq!(numeric_binary(d), [0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]);
        // 0.000045 at scale 6: no integer digit; 0000|45(00) → weight -2.
        let d = Decimal::from_str("0.000045").unwrap();
        assert_eq!(numeric_binary(d), [0, 1, 0xff, 0xfe, 0, 0, 0, 6, 0x11, 0x94]);
        // Zero keeps its scale and has no digits.
        assert_eq!(
            numeric_binary(Decimal::from_str("0.00").unwrap()),
            [0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(
            text_of(&numeric_binary(Decimal::from_str("-123456789.0001").unwrap())),
            "-123456789.0001"
        );
    }

    proptest! {
        #[test]
        fn reads_back_as_the_decimal_text(mantissa in any::<i64>(), high in any::<u32>(), scale in 0u32..=28) {
            let m = (i128::from(high) << 64 | i128::from(mantissa as u64)) * if mantissa < 0 { -1 } else { 1 };
            let d = Decimal::from_i128_with_scale(m, scale);
            prop_assert_eq!(text_of(&numeric_binary(d)), d.to_string());
        }
    }
}
