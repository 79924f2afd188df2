//! How the extension reports bad input: SQLSTATE 22023 with a message
//! naming the argument (never an internal error or a Rust backtrace).

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

pub fn raise_invalid(message: impl std::fmt::Display) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message.to_string()
    );
}
