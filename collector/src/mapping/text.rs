//! Texts bounded for a column or for request_metadata, and byte strings as hex.

/// Free text for a column: at most `max_chars` characters, control characters other than
/// tab, CR and LF replaced by a space (they would be refused), never NUL.
pub fn free_text(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Text for request_metadata: bounded, and without NUL (jsonb refuses \u0000).
pub(super) fn meta_text(s: &str, max_chars: usize) -> String {
    s.chars()
        .take(max_chars)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
