//! Numeric datums made from and read as decimals through their stored parts
//! (`core::numeric`): the pricing trigger stores every row's cost, and the
//! counting trigger sums every row's cost, without text or numeric function
//! calls per row.

use pgrx::prelude::*;
use pgrx::varlena::{set_varsize_4b, vardata_any, varsize_any_exhdr};
use pgrx::AnyNumeric;
use rust_decimal::Decimal;
use usage_analytics_core::numeric::{decimal_from_parts, numeric_parts};

// numeric.c's header bits.
const NUMERIC_SIGN_MASK: u16 = 0xC000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SPECIAL: u16 = 0xC000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
const NUMERIC_SHORT_DSCALE_MASK: u16 = 0x1F80;
const NUMERIC_SHORT_DSCALE_SHIFT: u16 = 7;
const NUMERIC_SHORT_WEIGHT_SIGN_MASK: u16 = 0x0040;
const NUMERIC_SHORT_WEIGHT_MASK: u16 = 0x003F;
const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;

/// `d` as a numeric datum in the current memory context, laid out as
/// numeric.c's `make_result` lays it out (the short header whenever the
/// scale and weight fit it).
pub fn numeric_datum(d: Decimal) -> pg_sys::Datum {
    let p = numeric_parts(d);
    let short =
        p.dscale <= NUMERIC_SHORT_DSCALE_MASK >> NUMERIC_SHORT_DSCALE_SHIFT && (-64..=63).contains(&p.weight);
    let header_len = if short { 2 } else { 4 };
    let len = pg_sys::VARHDRSZ + header_len + 2 * p.digits.len();
    unsafe {
        let value = pg_sys::palloc(len) as *mut pg_sys::varlena;
        set_varsize_4b(value, len as i32);
        let data = (value as *mut u8).add(pg_sys::VARHDRSZ);
        if short {
            let header = NUMERIC_SHORT
                | if p.negative { NUMERIC_SHORT_SIGN_MASK } else { 0 }
                | (p.dscale << NUMERIC_SHORT_DSCALE_SHIFT)
                | if p.weight < 0 {
                    NUMERIC_SHORT_WEIGHT_SIGN_MASK
                } else {
                    0
                }
                | (p.weight as u16 & NUMERIC_SHORT_WEIGHT_MASK);
            (data as *mut u16).write_unaligned(header);
        } else {
            let header = if p.negative { NUMERIC_NEG } else { 0 } | (p.dscale & NUMERIC_DSCALE_MASK);
            (data as *mut u16).write_unaligned(header);
            (data.add(2) as *mut i16).write_unaligned(p.weight);
        }
        for (i, digit) in p.digits.iter().enumerate() {
            (data.add(header_len + 2 * i) as *mut i16).write_unaligned(*digit);
        }
        pg_sys::Datum::from(value)
    }
}

/// `d` as an `AnyNumeric`.
pub fn to_numeric(d: Decimal) -> AnyNumeric {
    unsafe { AnyNumeric::from_datum(numeric_datum(d), false) }.expect("not null")
}

/// The decimal a numeric datum holds; `None` for NaN and the infinities, and
/// for a value no decimal holds exactly (the caller then sums it as numeric).
///
/// # Safety
/// `datum` must be a numeric datum.
pub unsafe fn decimal_of(datum: pg_sys::Datum) -> Option<Decimal> {
    let value = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let len = varsize_any_exhdr(value);
    let data = vardata_any(value) as *const u8;
    if len < 2 {
        return None;
    }
    let header = (data as *const u16).read_unaligned();
    let (negative, weight, dscale, digits_at) = match header & NUMERIC_SIGN_MASK {
        NUMERIC_SPECIAL => return None,
        NUMERIC_SHORT => {
            let weight = if header & NUMERIC_SHORT_WEIGHT_SIGN_MASK != 0 {
                !NUMERIC_SHORT_WEIGHT_MASK
            } else {
                0
            } | (header & NUMERIC_SHORT_WEIGHT_MASK);
            (
                header & NUMERIC_SHORT_SIGN_MASK != 0,
                weight as i16,
                (header & NUMERIC_SHORT_DSCALE_MASK) >> NUMERIC_SHORT_DSCALE_SHIFT,
                2,
            )
        }
        sign => {
            if len < 4 {
                return None;
            }
            let weight = (data.add(2) as *const i16).read_unaligned();
            (sign == NUMERIC_NEG, weight, header & NUMERIC_DSCALE_MASK, 4)
        }
    };
    let n = (len - digits_at) / 2;
    let mut digits = [0i16; 8];
    if n > digits.len() {
        return None;
    }
    for (i, digit) in digits.iter_mut().take(n).enumerate() {
        *digit = (data.add(digits_at + 2 * i) as *const i16).read_unaligned();
    }
    decimal_from_parts(negative, weight, dscale, &digits[..n])
}
