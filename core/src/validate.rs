//! Input checks for recording usage. Every limit here is documented in the
//! README; a refused call writes nothing.

use std::fmt;

/// Longest accepted identifier (agent_id, framework, provider, message_type, model).
pub const MAX_IDENTIFIER_CHARS: usize = 200;
pub const MAX_AGENT_NAME_CHARS: usize = 500;
pub const MAX_ERROR_MESSAGE_CHARS: usize = 10_000;
/// Largest `request_metadata` accepted, as JSON text.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects accepted in `request_metadata`
/// (the object itself is level 1). serde_json refuses to parse more than 128
/// levels, so deeper documents must be refused before they reach it.
pub const MAX_METADATA_DEPTH: usize = 32;

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

/// A required identifier: trimmed, non-empty, bounded to
/// `MAX_IDENTIFIER_CHARS`, free of every control character (tab, CR and LF
/// included, wherever they are: they are not trimmed away). `lowercase`
/// normalises enumerations such as provider.
pub fn identifier(
    argument: &'static str,
    value: Option<&str>,
    lowercase: bool,
) -> Result<String, InvalidArgument> {
    if let Some(raw) = value {
        check_text(argument, raw, usize::MAX, Controls::None)?;
    }
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(invalid(argument, "must not be NULL or empty"));
    }
    check_text(argument, value, MAX_IDENTIFIER_CHARS, Controls::None)?;
    Ok(if lowercase {
        value.to_lowercase()
    } else {
        value.to_string()
    })
}

/// An identifier that may be NULL (the `model` argument): bounded to
/// `MAX_IDENTIFIER_CHARS` and free of every control character, returned as
/// given.
pub fn optional_identifier(
    argument: &'static str,
    value: Option<&str>,
) -> Result<Option<String>, InvalidArgument> {
    usage_row_text(argument, value, MAX_IDENTIFIER_CHARS)?;
    Ok(value.map(str::to_string))
}

/// Free text that may be NULL: bounded, and without control characters other
/// than tab and newlines.
pub fn optional_text(
    argument: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<Option<String>, InvalidArgument> {
    usage_row_free_text(argument, value, max_chars)?;
    Ok(value.map(str::to_string))
}

/// The identifier checks for a column of a row written by plain `INSERT` or
/// `COPY` (the insert trigger): NULL passes (the table's constraints decide),
/// otherwise at most `max_chars` characters and no control character at all.
/// Nothing is trimmed or allocated.
pub fn usage_row_text(
    argument: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<(), InvalidArgument> {
    match value {
        Some(value) => check_text(argument, value, max_chars, Controls::None),
        None => Ok(()),
    }
}

/// The free-text checks (`agent_name`, `error_message`) for a row written by
/// plain `INSERT` or `COPY`: NULL passes, otherwise at most `max_chars`
/// characters and no control character other than tab, CR and LF.
pub fn usage_row_free_text(
    argument: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<(), InvalidArgument> {
    match value {
        Some(value) => check_text(argument, value, max_chars, Controls::Layout),
        None => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Controls {
    /// No control character at all.
    None,
    /// Tab, CR and LF only.
    Layout,
}

fn check_text(
    argument: &'static str,
    value: &str,
    max_chars: usize,
    allowed: Controls,
) -> Result<(), InvalidArgument> {
    // Bytes bound characters from above: count only when it may matter.
    if value.len() > max_chars {
        let chars = value.chars().count();
        if chars > max_chars {
            return Err(invalid(
                argument,
                format!("is {chars} characters long, the limit is {max_chars}"),
            ));
        }
    }
    // Printable ASCII, the usual case, holds no control character: told
    // without decoding characters.
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    let permitted = |c: char| allowed == Controls::Layout && matches!(c, '\t' | '\n' | '\r');
    if let Some(bad) = value.chars().find(|&c| c.is_control() && !permitted(c)) {
        return Err(invalid(
            argument,
            format!("contains the control character U+{:04X}", bad as u32),
        ));
    }
    Ok(())
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

/// `request_metadata` must be a JSON object of bounded size and nesting
/// depth (`MAX_METADATA_DEPTH`).
pub fn metadata(value: &serde_json::Value) -> Result<(), InvalidArgument> {
    if !value.is_object() {
        return Err(invalid("request_metadata", "must be a JSON object"));
    }
    json_depth("request_metadata", value, MAX_METADATA_DEPTH)?;
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

/// A JSON value's type as an error message names it: "a string", "null".
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How deeply arrays and objects nest in a value: 0 for a scalar, 1 for
/// `{}` or `[1, 2]`, 2 for `{"a": []}`. Iterative, so any depth is safe.
pub fn nesting_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    walk(value, |depth| {
        deepest = deepest.max(depth);
        true
    });
    deepest
}

/// Refuses a value whose arrays and objects nest more than `max_depth`
/// levels (see `nesting_depth`), naming `argument`. Iterative, and it stops
/// at the first level too deep.
pub fn json_depth(
    argument: &'static str,
    value: &serde_json::Value,
    max_depth: usize,
) -> Result<(), InvalidArgument> {
    if walk(value, |depth| depth <= max_depth) {
        Ok(())
    } else {
        Err(invalid(
            argument,
            format!("nests arrays and objects more than {max_depth} levels deep, the limit is {max_depth}"),
        ))
    }
}

/// Calls `visit` with the depth of every array and object, depth first,
/// without recursion; stops and returns false as soon as `visit` does.
fn walk(value: &serde_json::Value, mut visit: impl FnMut(usize) -> bool) -> bool {
    use serde_json::Value;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, parent_depth)) = stack.pop() {
        let depth = parent_depth + 1;
        match value {
            Value::Array(items) => {
                if !visit(depth) {
                    return false;
                }
                stack.extend(items.iter().map(|v| (v, depth)));
            }
            Value::Object(map) => {
                if !visit(depth) {
                    return false;
                }
                stack.extend(map.values().map(|v| (v, depth)));
            }
            _ => {}
        }
    }
    true
}

/// The deepest nesting of `[` and `{` in JSON text, brackets inside strings
/// not counted: what `nesting_depth` would give for the parsed value, found
/// by one pass over the bytes without parsing (so without recursion) and
/// meant to run before a parser that recurses. Text that is not JSON gets a
/// number too; the parser refuses it afterwards.
pub fn json_text_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses JSON text nested more than `max_depth` levels (see
/// `json_text_depth`), naming `argument`, before it is parsed.
pub fn json_text(argument: &'static str, text: &str, max_depth: usize) -> Result<(), InvalidArgument> {
    let depth = json_text_depth(text);
    if depth > max_depth {
        return Err(invalid(
            argument,
            format!("nests arrays and objects {depth} levels deep, the limit is {max_depth}"),
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
    fn identifiers_refuse_every_control_character() {
        for bad in [
            "a\nb",
            "a\rb",
            "a\tb",
            "agent\n",
            "\tagent",
            " agent\r\n",
            "a\u{0}b",
            "a\u{7f}",
            "a\u{85}b",
            "a\u{9f}",
        ] {
            let err = identifier("agent_id", Some(bad), false).unwrap_err();
            assert_eq!(err.argument, "agent_id", "{bad:?}");
            assert!(err.problem.contains("control character U+"), "{bad:?}: {err}");
            assert_eq!(
                optional_identifier("model", Some(bad)).unwrap_err().argument,
                "model"
            );
            assert_eq!(
                usage_row_text("framework", Some(bad), 200).unwrap_err().argument,
                "framework"
            );
        }
        assert!(identifier("agent_id", Some("a\nb"), false)
            .unwrap_err()
            .to_string()
            .contains("U+000A"));
        // Other whitespace is still trimmed, and inner spaces and Unicode pass.
        assert_eq!(
            identifier("agent_id", Some(" research agent ✓ "), false).unwrap(),
            "research agent ✓"
        );
        assert_eq!(optional_identifier("model", None), Ok(None));
        assert_eq!(
            optional_identifier("model", Some(" gpt-4o ")),
            Ok(Some(" gpt-4o ".to_string()))
        );
        let long = "m".repeat(MAX_IDENTIFIER_CHARS + 1);
        assert!(optional_identifier("model", Some(&long)).is_err());
    }

    #[test]
    fn row_checks_for_insert_and_copy() {
        assert_eq!(usage_row_text("agent_id", None, MAX_IDENTIFIER_CHARS), Ok(()));
        assert_eq!(usage_row_text("agent_id", Some(""), MAX_IDENTIFIER_CHARS), Ok(()));
        assert_eq!(
            usage_row_text("agent_id", Some(&"é".repeat(200)), MAX_IDENTIFIER_CHARS),
            Ok(())
        );
        assert!(
            usage_row_text("agent_id", Some(&"é".repeat(201)), MAX_IDENTIFIER_CHARS)
                .unwrap_err()
                .to_string()
                .contains("is 201 characters long, the limit is 200")
        );
        let message = "line 1\r\n\tline 2";
        assert_eq!(
            usage_row_free_text("error_message", Some(message), MAX_ERROR_MESSAGE_CHARS),
            Ok(())
        );
        assert_eq!(
            usage_row_free_text("agent_name", Some("a\u{1b}[31m"), MAX_AGENT_NAME_CHARS)
                .unwrap_err()
                .problem,
            "contains the control character U+001B"
        );
        assert_eq!(
            optional_text("error_message", Some(message), 100),
            Ok(Some(message.to_string()))
        );
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

    fn deep_text(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn text_depth_counts_brackets_outside_strings() {
        assert_eq!(json_text_depth(""), 0);
        assert_eq!(json_text_depth("42"), 0);
        assert_eq!(json_text_depth("\"[{\""), 0);
        assert_eq!(json_text_depth("{}"), 1);
        assert_eq!(json_text_depth(r#"{"a": [1, {"b": "]]]"}], "c": {}}"#), 3);
        assert_eq!(json_text_depth(r#"["\"[", ["\\"], [[]]]"#), 3);
        assert_eq!(json_text_depth(r#"{"k\\\"{": [[["\u005b"]]]}"#), 4);
        // Not JSON, still a number and no panic.
        assert_eq!(json_text_depth("]]]["), 1);
        assert_eq!(json_text_depth("\"unterminated [["), 0);
    }

    #[test]
    fn text_depth_of_very_deep_documents() {
        assert_eq!(json_text_depth(&deep_text(10_000)), 10_000);
        assert_eq!(json_text_depth(&"{\"a\":".repeat(1_000_000)), 1_000_000);
        let err = json_text("request_metadata", &deep_text(10_000), MAX_METADATA_DEPTH).unwrap_err();
        assert_eq!(err.argument, "request_metadata");
        assert!(
            err.to_string().contains("10000 levels deep, the limit is 32"),
            "{err}"
        );
        assert_eq!(json_text("filters", &deep_text(32), 32), Ok(()));
        // What serde_json itself does with such text: an error, not a value.
        assert!(serde_json::from_str::<serde_json::Value>(&deep_text(10_000)).is_err());
    }

    /// `[[[…]]]` built and taken apart without recursion.
    fn deep_value(depth: usize) -> serde_json::Value {
        let mut value = json!([]);
        for _ in 1..depth {
            value = serde_json::Value::Array(vec![value]);
        }
        value
    }

    fn dismantle(mut value: serde_json::Value) {
        while let serde_json::Value::Array(mut items) = value {
            value = items.pop().unwrap_or_default();
        }
    }

    #[test]
    fn value_depth_without_recursion() {
        // A small stack: any recursion over 10,000 levels would overflow it.
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let value = deep_value(10_000);
                assert_eq!(nesting_depth(&value), 10_000);
                let err = json_depth("filters", &value, 32).unwrap_err();
                assert_eq!(err.argument, "filters");
                assert!(err.to_string().contains("more than 32 levels deep"), "{err}");
                dismantle(value);
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(nesting_depth(&json!(1)), 0);
        assert_eq!(nesting_depth(&json!({"a": [1, {"b": {}}], "c": []})), 4);
        assert_eq!(json_depth("x", &json!({"a": [[]]}), 3), Ok(()));
        assert!(json_depth("x", &json!({"a": [[]]}), 2).is_err());
    }

    #[test]
    fn metadata_depth_is_limited() {
        let mut nested = json!({});
        for _ in 1..MAX_METADATA_DEPTH {
            nested = json!({ "n": nested });
        }
        assert_eq!(nesting_depth(&nested), MAX_METADATA_DEPTH);
        assert_eq!(metadata(&nested), Ok(()));
        let deeper = json!({ "n": nested });
        let err = metadata(&deeper).unwrap_err();
        assert_eq!(err.argument, "request_metadata");
        assert!(err.problem.contains("the limit is 32"), "{err}");
    }
}
