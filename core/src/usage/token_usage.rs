//! One request's tokens in the canonical classes ([`TokenUsage`]), their
//! invariants ([`TokenUsage::validate`]) and bound ([`MAX_TOKENS`]), and the
//! error every usage check returns ([`UsageError`]).

use serde_json::Value;
use std::fmt;

/// The largest token count in any class: a Postgres `integer`.
pub const MAX_TOKENS: i64 = i32::MAX as i64;

/// One request's tokens in the canonical classes.
///
/// Fields are `i64` so that the 0.1 `bigint` API (`calculate_cost(…, bigint,
/// bigint)`) fits; [`normalize_usage`](super::normalize_usage) only produces
/// values in `0..=MAX_TOKENS`, and [`TokenUsage::validate`] checks only signs
/// and the class invariants (pricing accepts any non-negative `i64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub reasoning_tokens: i64,
}

/// The canonical keys, in column order.
pub const CANONICAL_KEYS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
];

/// Why a usage document (or a [`TokenUsage`]) was refused. `key` names the
/// offending key (nested keys joined by `.`); the extension raises SQLSTATE
/// 22023 with the `Display` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    pub key: String,
    pub message: String,
}

impl UsageError {
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> UsageError {
        UsageError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "usage: {}", self.message)
        } else {
            write!(f, "usage key \"{}\": {}", self.key, self.message)
        }
    }
}

impl std::error::Error for UsageError {}

impl TokenUsage {
    /// Only input and output tokens (the 0.1 model).
    pub fn input_output(input_tokens: i64, output_tokens: i64) -> TokenUsage {
        TokenUsage {
            input_tokens,
            output_tokens,
            ..TokenUsage::default()
        }
    }

    /// The classes as (canonical key, value), in column order.
    pub fn classes(&self) -> [(&'static str, i64); 6] {
        [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cache_read_tokens", self.cache_read_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("cache_write_1h_tokens", self.cache_write_1h_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ]
    }

    /// Every class non-negative, cache reads and writes within the input and
    /// reasoning within the output (the table's CHECKs). No upper bound: the
    /// 0.1 `bigint` cost API takes any `i64` (see [`MAX_TOKENS`] for the
    /// columns' bound, which `normalize_usage` enforces).
    pub fn validate(&self) -> Result<(), UsageError> {
        for (key, value) in self.classes() {
            if value < 0 {
                return Err(UsageError::new(key, format!("must be >= 0, got {value}")));
            }
        }
        let cached = i128::from(self.cache_read_tokens)
            + i128::from(self.cache_write_tokens)
            + i128::from(self.cache_write_1h_tokens);
        if cached > i128::from(self.input_tokens) {
            return Err(UsageError::new(
                "cache_read_tokens",
                format!(
                    "cache_read_tokens ({}) + cache_write_tokens ({}) + cache_write_1h_tokens ({}) \
                     exceed input_tokens ({})",
                    self.cache_read_tokens,
                    self.cache_write_tokens,
                    self.cache_write_1h_tokens,
                    self.input_tokens
                ),
            ));
        }
        if self.reasoning_tokens > self.output_tokens {
            return Err(UsageError::new(
                "reasoning_tokens",
                format!(
                    "{} reasoning tokens exceed output_tokens ({})",
                    self.reasoning_tokens, self.output_tokens
                ),
            ));
        }
        Ok(())
    }

    /// The canonical document: all six keys, always present (0 included).
    pub fn to_canonical_json(&self) -> Value {
        Value::Object(
            self.classes()
                .into_iter()
                .map(|(key, value)| (key.to_string(), Value::from(value)))
                .collect(),
        )
    }
}

impl fmt::Display for TokenUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} input tokens ({} cache reads, {} cache writes, {} 1-hour cache writes) and {} output \
             tokens ({} reasoning)",
            self.input_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.output_tokens,
            self.reasoning_tokens
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::usage::test_fixtures::usage;

    #[test]
    fn validate_checks_every_class() {
        assert!(usage(1, 1, 0, 0, 0, 0).validate().is_ok());
        assert_eq!(
            usage(1, -1, 0, 0, 0, 0).validate().unwrap_err().key,
            "output_tokens"
        );
        assert_eq!(
            usage(1, 1, 0, 0, -1, 0).validate().unwrap_err().key,
            "cache_write_1h_tokens"
        );
        assert!(usage(i64::MAX, 0, i64::MAX, 0, 0, 0).validate().is_ok());
        assert!(usage(i64::MAX, 0, i64::MAX, 1, 0, 0).validate().is_err());
    }
}
