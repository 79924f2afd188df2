//! Input checks for recording usage. Every limit here is documented in the
//! README; a refused call writes nothing.

use std::fmt;

/// Longest accepted identifier (agent_id, framework, provider, message_type, model).
pub const MAX_IDENTIFIER_CHARS: usize = 200;
pub const MAX_AGENT_NAME_CHARS: usize = 500;
pub const MAX_ERROR_MESSAGE_CHARS: usize = 10_000;
/// Largest `request_metadata` accepted, as JSON text.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct InvalidArgument {
    pub argument: &'static str,
    pub problem: String,
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.argument, self.problem)
    }
}

fn invalid(argument: &'static str, problem: impl Into<String>) -> InvalidArgument {
    InvalidArgument {
        argument,
        problem: problem.into(),
    }
}

/// A required identifier: trimmed, non-empty, bounded, free of control
/// characters. `lowercase` normalises enumerations such as provider.
pub fn identifier(
    argument: &'static str,
    value: Option<&str>,
    lowercase: bool,
) -> Result<String, InvalidArgument> {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(invalid(argument, "must not be NULL or empty"));
    }
    let value = optional_text(argument, Some(value), MAX_IDENTIFIER_CHARS)?.unwrap_or_default();
    Ok(if lowercase { value.to_lowercase() } else { value })
}

/// Free text that may be NULL: bounded, and without control characters other
/// than tab and newlines.
pub fn optional_text(
    argument: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, InvalidArgument> {
    let Some(value) = value else {
        return Ok(None);
    };
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(invalid(
            argument,
            format!("is {chars} characters long, the limit is {max_chars}"),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(invalid(
            argument,
            format!("contains the control character U+{:04X}", bad as u32),
        ));
    }
    Ok(Some(value.to_string()))
}

pub fn tokens(input_tokens: Option<i32>, output_tokens: Option<i32>) -> Result<(i32, i32), InvalidArgument> {
    let input = non_negative("input_tokens", input_tokens)?
        .ok_or_else(|| invalid("input_tokens", "must not be NULL"))?;
    let output = non_negative("output_tokens", output_tokens)?
        .ok_or_else(|| invalid("output_tokens", "must not be NULL"))?;
    if input.checked_add(output).is_none() {
        return Err(invalid(
            "output_tokens",
            format!(
                "input_tokens + output_tokens = {} exceeds the integer limit {}",
                input as i64 + output as i64,
                i32::MAX
            ),
        ));
    }
    Ok((input, output))
}

pub fn non_negative(argument: &'static str, value: Option<i32>) -> Result<Option<i32>, InvalidArgument> {
    match value {
        Some(v) if v < 0 => Err(invalid(argument, format!("must be >= 0, got {v}"))),
        other => Ok(other),
    }
}

/// `request_metadata` must be a JSON object of bounded size.
pub fn metadata(value: &serde_json::Value) -> Result<(), InvalidArgument> {
    if !value.is_object() {
        return Err(invalid("request_metadata", "must be a JSON object"));
    }
    let size = serde_json::to_string(value)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(invalid(
            "request_metadata",
            format!("is {size} bytes as JSON, the limit is {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_trimmed_and_checked() {
        assert_eq!(identifier("provider", Some("  OpenAI "), true).unwrap(), "openai");
        assert_eq!(identifier("agent_id", Some("Agent-7"), false).unwrap(), "Agent-7");
        assert_eq!(
            identifier("agent_id", None, false).unwrap_err().argument,
            "agent_id"
        );
        assert_eq!(
            identifier("framework", Some("   "), true).unwrap_err().argument,
            "framework"
        );
        let long = "a".repeat(MAX_IDENTIFIER_CHARS + 1);
        assert!(identifier("agent_id", Some(&long), false)
            .unwrap_err()
            .to_string()
            .contains("limit is 200"));
        assert!(identifier("agent_id", Some("a\u{1}b"), false)
            .unwrap_err()
            .to_string()
            .contains("U+0001"));
    }

    #[test]
    fn tokens_must_be_non_negative_and_fit_an_integer() {
        assert_eq!(tokens(Some(1), Some(2)).unwrap(), (1, 2));
        assert_eq!(tokens(Some(-1), Some(2)).unwrap_err().argument, "input_tokens");
        assert_eq!(tokens(Some(1), Some(-2)).unwrap_err().argument, "output_tokens");
        assert_eq!(tokens(None, Some(2)).unwrap_err().argument, "input_tokens");
        assert!(tokens(Some(i32::MAX), Some(1))
            .unwrap_err()
            .to_string()
            .contains("exceeds the integer limit"));
    }

    #[test]
    fn metadata_must_be_a_bounded_object() {
        assert!(metadata(&json!({"action": "summarize"})).is_ok());
        assert_eq!(metadata(&json!([1, 2])).unwrap_err().argument, "request_metadata");
        assert_eq!(metadata(&json!("text")).unwrap_err().argument, "request_metadata");
        let big = json!({ "blob": "x".repeat(MAX_METADATA_BYTES) });
        assert!(metadata(&big)
            .unwrap_err()
            .to_string()
            .contains("limit is 65536 bytes"));
    }
}
