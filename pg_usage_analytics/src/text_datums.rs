//! Texts borrowed from datums. A usage row's texts are nearly always stored
//! inline and uncompressed: those are read in place. pgrx's `&str` reading
//! makes a guarded call into PostgreSQL (pg_detoast_datum_packed) for every
//! text, and the two triggers read some twenty texts a row.

use pgrx::prelude::*;
use pgrx::varlena::{text_to_rust_str_unchecked, varatt_is_1b_e, varatt_is_4b_c};
use std::cell::Cell;

thread_local! {
    static UTF8_DATABASE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether this database's encoding is UTF-8 (texts are then valid `str`s).
fn utf8_database() -> bool {
    UTF8_DATABASE.with(|utf8| match utf8.get() {
        Some(known) => known,
        None => {
            let known = unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32;
            utf8.set(Some(known));
            known
        }
    })
}

/// The text of a non-null text datum, borrowed for as long as the datum
/// lives; read in place unless it is toasted or compressed, or the database
/// is not UTF-8 (then as pgrx reads it).
///
/// # Safety
/// `datum` is a non-null text datum that outlives `'a`.
pub unsafe fn borrowed_text<'a>(datum: pg_sys::Datum) -> &'a str {
    let value = datum.cast_mut_ptr::<pg_sys::varlena>();
    if utf8_database() && !varatt_is_1b_e(value) && !varatt_is_4b_c(value) {
        return text_to_rust_str_unchecked(value);
    }
    <&'a str>::from_datum(datum, false).expect("a non-null text")
}
