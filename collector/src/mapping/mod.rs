//! From OTLP spans to usage rows. Pure: no I/O. Each span becomes a row, is ignored (no
//! `gen_ai.usage.*` attribute), or is rejected with a reason (reported in `partial_success`).
//!
//! * `request`: every span of an export request, and what became of them ([`map_request`],
//!   [`Mapped`], [`count_spans`]).
//! * `columns`: one span to one row ([`UsageRow`]): which attribute feeds which column, and
//!   the token classes.
//! * `ids`: the row id (the dedupe key) and the user id, and their UUID namespaces.
//! * `metadata`: the bounded request_metadata JSON.
//! * `text`: texts bounded for a column or for request_metadata, and ids as hex.

mod columns;
#[cfg(test)]
mod fixtures;
mod ids;
mod metadata;
mod request;
mod text;

pub use columns::UsageRow;
pub use request::{count_spans, map_request, Mapped, MAX_REASONS};
