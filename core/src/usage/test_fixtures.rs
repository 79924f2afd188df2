//! Fixtures the usage unit tests share: a [`TokenUsage`] from six counts, and
//! normalizing a document that must be accepted or refused.

use super::{normalize_usage, TokenUsage, UsageError};
use serde_json::Value;

pub(super) fn usage(i: i64, o: i64, cr: i64, cw: i64, cw1h: i64, r: i64) -> TokenUsage {
    TokenUsage {
        input_tokens: i,
        output_tokens: o,
        cache_read_tokens: cr,
        cache_write_tokens: cw,
        cache_write_1h_tokens: cw1h,
        reasoning_tokens: r,
    }
}

pub(super) fn ok(provider: &str, doc: Value) -> TokenUsage {
    normalize_usage(Some(provider), &doc).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

pub(super) fn err(doc: Value) -> UsageError {
    match normalize_usage(None, &doc) {
        Ok(u) => panic!("{doc} was accepted as {u:?}"),
        Err(e) => e,
    }
}
