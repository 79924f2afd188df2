//! Decimals as PostgreSQL's `numeric` holds them: sign, weight, display
//! scale and base-10000 digits. The pricing trigger stores every row's cost
//! from these parts, and the counting trigger sums the stored costs as
//! decimals read from them, without printing, parsing or calling numeric
//! functions per row.

use rust_decimal::Decimal;

const NBASE: u128 = 10_000;

/// A numeric value as PostgreSQL stores it (numeric.c's `make_result`):
/// leading and trailing zero digits stripped; zero has no digits, weight 0
/// and is positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumericParts {
    pub negative: bool,
    /// The power of 10000 of the first digit.
    pub weight: i16,
    /// Decimal digits after the point, as displayed.
    pub dscale: u16,
    /// Base-10000 digits, most significant first.
    pub digits: Vec<i16>,
}

/// `d`'s parts, its display scale its own scale (as `numeric_in` of its text
/// gives).
pub fn numeric_parts(d: Decimal) -> NumericParts {
    let scale = d.scale();
    // Pad the fraction to whole base-10000 digits (at most 28 + 3 decimal
    // digits after the point: 10^31 * 2^96 < 2^128).
    let pad = (4 - scale % 4) % 4;
    let mut rest = d.mantissa().unsigned_abs() * 10u128.pow(pad);
    let mut fraction_digits = ((scale + pad) / 4) as i32;
    // Trailing zero digits are not stored.
    while rest > 0 && rest.is_multiple_of(NBASE) {
        rest /= NBASE;
        fraction_digits -= 1;
    }
    let mut digits = Vec::new();
    while rest > 0 {
        digits.push((rest % NBASE) as i16);
        rest /= NBASE;
    }
    digits.reverse();
    let zero = digits.is_empty();
    NumericParts {
        negative: d.is_sign_negative() && !zero,
        weight: if zero {
            0
        } else {
            (digits.len() as i32 - fraction_digits - 1) as i16
        },
        dscale: scale as u16,
        digits,
    }
}

/// The decimal a stored numeric holds, at its display scale; `None` when
/// it does not fit one (a display scale over 28, or more than 96 bits).
pub fn decimal_from_parts(negative: bool, weight: i16, dscale: u16, digits: &[i16]) -> Option<Decimal> {
    if dscale > 28 || digits.len() > 8 {
        return None;
    }
    let mut mantissa: i128 = 0;
    for &digit in digits {
        mantissa = mantissa * NBASE as i128 + i128::from(digit);
    }
    // The digits read as an integer: the last one stands at 10000^(weight -
    // (n - 1)), so the integer is scaled by 4 decimal places per digit
    // after the point (a negative scale when it stands left of the point).
    let fraction_digits = digits.len() as i32 - i32::from(weight) - 1;
    let mut scale = 4 * fraction_digits;
    // Digits past the display scale are zeros: dropped exactly.
    while scale > i32::from(dscale) {
        if mantissa % 10 != 0 {
            return None;
        }
        mantissa /= 10;
        scale -= 1;
    }
    // Up to the display scale (from a negative scale too).
    while scale < i32::from(dscale) {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    if negative {
        mantissa = -mantissa;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale as u32).ok()
}

/// `a + b` when a decimal holds the sum exactly: where the exact sum needs
/// more than 96 bits, rust_decimal rounds it to a smaller scale instead.
pub fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let sum = a.checked_add(b)?;
    (sum.scale() == a.scale().max(b.scale())).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    /// The text `numeric_out` prints for stored parts (what a reader of
    /// the format sees), to compare with the decimal's own text.
    fn text_of(p: &NumericParts) -> String {
        let (weight, dscale) = (i32::from(p.weight), i32::from(p.dscale));
        let n = p.digits.len();
        let digit_at = |w: i32| -> i16 {
            let i = weight - w;
            if i >= 0 && (i as usize) < n {
                p.digits[i as usize]
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
        let sign = if p.negative { "-" } else { "" };
        let int = if int.is_empty() { "0" } else { int };
        if dscale > 0 {
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}{int}")
        }
    }

    fn parts(negative: bool, weight: i16, dscale: u16, digits: &[i16]) -> NumericParts {
        NumericParts {
            negative,
            weight,
            dscale,
            digits: digits.to_vec(),
        }
    }

    #[test]
    fn known_values() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        // 12.5: one digit before the point (weight 0), one after.
        assert_eq!(numeric_parts(d("12.5")), parts(false, 0, 1, &[12, 5000]));
        // 0.000045 at scale 6: no integer digit; 0000|45(00) → weight -2.
        assert_eq!(numeric_parts(d("0.000045")), parts(false, -2, 6, &[4500]));
        // Zero keeps its scale, has no digits and no sign.
        assert_eq!(numeric_parts(d("0.00")), parts(false, 0, 2, &[]));
        assert_eq!(numeric_parts(d("-0.0")), parts(false, 0, 1, &[]));
        // Trailing zero digits are not stored: 20000 is 2 at weight 1.
        assert_eq!(numeric_parts(d("20000")), parts(false, 1, 0, &[2]));
        assert_eq!(numeric_parts(d("-1.00000000")), parts(true, 0, 8, &[1]));
        assert_eq!(text_of(&numeric_parts(d("-123456789.0001"))), "-123456789.0001");
        // Read back at the display scale, whatever the digits.
        assert_eq!(decimal_from_parts(false, -2, 6, &[4500]), Some(d("0.000045")));
        assert_eq!(decimal_from_parts(false, 1, 2, &[2]), Some(d("20000.00")));
        assert_eq!(decimal_from_parts(true, 0, 0, &[7]), Some(d("-7")));
        assert_eq!(decimal_from_parts(false, 0, 3, &[]), Some(d("0.000")));
        // Beyond a decimal: too many fraction digits, too large.
        assert_eq!(decimal_from_parts(false, -1, 29, &[1]), None);
        assert_eq!(decimal_from_parts(false, 8, 0, &[1]), None);
        assert_eq!(
            decimal_from_parts(false, 8, 0, &[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn exact_add_refuses_a_rounded_sum() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(exact_add(d("0.25"), d("1.5")), Some(d("1.75")));
        assert_eq!(exact_add(d("0.25"), d("-1.5")).unwrap().to_string(), "-1.25");
        // 5.0…0 (28 fraction digits) twice: the 29-digit sum only fits
        // rounded to 27 fraction digits.
        let five = Decimal::from_i128_with_scale(5 * 10i128.pow(28), 28);
        assert!(five.checked_add(five).is_some());
        assert_eq!(exact_add(five, five), None);
        assert_eq!(exact_add(Decimal::MAX, Decimal::ONE), None);
    }

    proptest! {
        #[test]
        fn reads_back_as_the_decimal_text(mantissa in any::<i64>(), high in any::<u32>(), scale in 0u32..=28) {
            let m = (i128::from(high) << 64 | i128::from(mantissa as u64)) * if mantissa < 0 { -1 } else { 1 };
            let d = Decimal::from_i128_with_scale(m, scale);
            let p = numeric_parts(d);
            prop_assert_eq!(text_of(&p), d.to_string());
            // Read back: the same value at the same scale.
            let back = decimal_from_parts(p.negative, p.weight, p.dscale, &p.digits).unwrap();
            prop_assert_eq!(back.to_string(), d.to_string());
        }
    }
}
