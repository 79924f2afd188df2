//! RFC 4180 CSV writing with spreadsheet formula neutralisation.

/// Characters that make a spreadsheet evaluate a cell as a formula (OWASP
/// "CSV injection"), including the full-width forms `＝＋－＠` (U+FF1D,
/// U+FF0B, U+FF0D, U+FF20) that East Asian spreadsheets also accept: a text
/// cell starting with one gets a leading `'`.
pub const FORMULA_TRIGGERS: &[char] = &[
    '=', '+', '-', '@', '\t', '\r', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// Whether a spreadsheet would read a cell starting with `text` as a formula.
pub fn is_formula_start(text: &str) -> bool {
    text.starts_with(FORMULA_TRIGGERS)
}

/// Whether what follows a `;` would start a formula in a cell of its own:
/// Excel in locales whose list separator is `;` splits a line at every `;`
/// (ignoring the quotes of a field that does not start the line), so
/// `a;=HYPERLINK(…)` would be a formula there. Quotes right after the `;`
/// (doubled in the output) could open a quoted cell, so they are skipped.
pub fn is_formula_after_semicolon(rest: &str) -> bool {
    is_formula_start(rest.trim_start_matches('"'))
}

fn has_formula_after_semicolon(text: &str) -> bool {
    text.match_indices(';')
        .any(|(i, _)| is_formula_after_semicolon(&text[i + 1..]))
}

/// Whether a cell holds free text (neutralised) or a value Postgres
/// formatted itself (numbers, booleans, uuids, timestamps: written as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Text,
    Value,
}

/// Appends one field, quoted when it holds a comma, quote, CR or LF or is empty.
/// `None` (SQL NULL) is an empty field.
///
/// A text cell that would start a formula gets a leading `'`; so does every
/// `;`-separated part of it that would (the `'` goes right after the `;`,
/// and the field is quoted). Spreadsheets show such a cell as text, and the
/// `'` is the only change made to it.
pub fn push_field(out: &mut String, value: Option<&str>, kind: Cell) {
    let Some(value) = value else {
        return;
    };
    let neutralise = kind == Cell::Text && is_formula_start(value);
    let neutralise_parts = kind == Cell::Text && has_formula_after_semicolon(value);
    // An empty string is quoted so that it stays distinct from NULL, as in
    // Postgres' own CSV output.
    // A leading byte-order mark is quoted too: readers drop an unquoted one at
    // the start of a document as an encoding marker.
    let needs_quotes = value.is_empty()
        || value.starts_with('\u{feff}')
        || neutralise && value.starts_with(['\t', '\r'])
        || neutralise_parts
        || value.contains([',', '"', '\r', '\n']);
    if needs_quotes {
        out.push('"');
    }
    if neutralise {
        out.push('\'');
    }
    if neutralise_parts {
        for (i, ch) in value.char_indices() {
            if ch == '"' {
                out.push_str("\"\"");
            } else {
                out.push(ch);
            }
            if ch == ';' && is_formula_after_semicolon(&value[i + 1..]) {
                out.push('\'');
            }
        }
    } else if needs_quotes && value.contains('"') {
        out.push_str(&value.replace('"', "\"\""));
    } else {
        // Without quotes the value holds no '"' (it would need quoting).
        out.push_str(value);
    }
    if needs_quotes {
        out.push('"');
    }
}

/// Appends a whole record terminated by CRLF, as RFC 4180 asks.
pub fn push_record<'a>(out: &mut String, fields: impl IntoIterator<Item = (Option<&'a str>, Cell)>) {
    for (i, (value, kind)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, value, kind);
    }
    out.push_str("\r\n");
}

/// `2024-12-01T10:15:00.123456Z` for a Postgres `timestamptz` (microseconds
/// since 2000-01-01 00:00:00 UTC): ISO 8601 in UTC with all six fractional
/// digits, `infinity` / `-infinity` as Postgres spells them, and
/// `out-of-range` for values chrono cannot represent (beyond year 262143;
/// Postgres itself stops at 294276 AD). Years before 1 AD are astronomical
/// (`-4713` is 4714 BC). The format of the CSV export's timestamp column.
pub fn format_timestamp_micros(micros: i64) -> String {
    let mut out = String::with_capacity(27);
    push_timestamp_micros(&mut out, micros);
    out
}

/// Appends `format_timestamp_micros(micros)` to `out` without allocating.
pub fn push_timestamp_micros(out: &mut String, micros: i64) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;
    match micros {
        i64::MIN => out.push_str("-infinity"),
        i64::MAX => out.push_str("infinity"),
        _ => {
            let seconds = micros.div_euclid(1_000_000) + PG_EPOCH_UNIX_SECONDS;
            let fraction = micros.rem_euclid(1_000_000);
            // Field by field: chrono's format strings are parsed on every call.
            match chrono::DateTime::from_timestamp(seconds, 0) {
                Some(t) => {
                    let _ = write!(
                        out,
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
                        t.year(),
                        t.month(),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    );
                }
                None => out.push_str("out-of-range"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &str, kind: Cell) -> String {
        let mut out = String::new();
        push_field(&mut out, Some(value), kind);
        out
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(field("plain", Cell::Text), "plain");
        assert_eq!(field("a,b", Cell::Text), "\"a,b\"");
        assert_eq!(field("say \"hi\"", Cell::Text), "\"say \"\"hi\"\"\"");
        assert_eq!(field("line\nbreak", Cell::Text), "\"line\nbreak\"");
        assert_eq!(field("ünïcødé 🚀", Cell::Text), "ünïcødé 🚀");
    }

    #[test]
    fn neutralises_formulas_in_text_only() {
        assert_eq!(field("=SUM(A1:A9)", Cell::Text), "'=SUM(A1:A9)");
        assert_eq!(field("+1", Cell::Text), "'+1");
        assert_eq!(field("-2", Cell::Text), "'-2");
        assert_eq!(field("@cmd", Cell::Text), "'@cmd");
        assert_eq!(field("\tx", Cell::Text), "\"'\tx\"");
        assert_eq!(field("=1,2", Cell::Text), "\"'=1,2\"");
        assert_eq!(field("-0.5", Cell::Value), "-0.5");
        assert_eq!(field("\r=1", Cell::Text), "\"'\r=1\"");
        assert_eq!(field("'=already", Cell::Text), "'=already");
        assert_eq!(field(" =spaced", Cell::Text), " =spaced");
    }

    #[test]
    fn neutralises_full_width_formula_characters() {
        for (text, expected) in [
            ("\u{FF1D}SUM(A1)", "'\u{FF1D}SUM(A1)"),
            ("\u{FF0B}1", "'\u{FF0B}1"),
            ("\u{FF0D}1", "'\u{FF0D}1"),
            ("\u{FF20}cmd", "'\u{FF20}cmd"),
        ] {
            assert_eq!(field(text, Cell::Text), expected);
            assert_eq!(field(text, Cell::Value), text);
        }
        // Other full-width text is left alone.
        assert_eq!(field("\u{FF21}bc", Cell::Text), "\u{FF21}bc");
    }

    #[test]
    fn neutralises_formulas_after_semicolons() {
        assert_eq!(
            field("a;=HYPERLINK(\"http://x\",\"y\")", Cell::Text),
            "\"a;'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(field("a;+1;b;-2", Cell::Text), "\"a;'+1;b;'-2\"");
        assert_eq!(field("=a;@b", Cell::Text), "\"'=a;'@b\"");
        assert_eq!(field("x;\u{FF1D}1", Cell::Text), "\"x;'\u{FF1D}1\"");
        assert_eq!(field("x;\t=1", Cell::Text), "\"x;'\t=1\"");
        assert_eq!(field("x;;=1", Cell::Text), "\"x;;'=1\"");
        assert_eq!(field("x;\"=1", Cell::Text), "\"x;'\"\"=1\"");
        // A trailing `;`, or one followed by anything else, is harmless.
        assert_eq!(field("a;b; c;", Cell::Text), "a;b; c;");
        assert_eq!(field("a;=b", Cell::Value), "a;=b");
    }

    #[test]
    fn null_is_an_empty_field_and_records_end_with_crlf() {
        let mut out = String::new();
        push_record(
            &mut out,
            [
                (Some("a"), Cell::Text),
                (None, Cell::Value),
                (Some("1"), Cell::Value),
            ],
        );
        assert_eq!(out, "a,,1\r\n");
    }

    #[test]
    fn round_trips_through_a_csv_reader() {
        let values = ["x", "a,b", "q\"uote", "multi\r\nline", "", "🚀", " lead"];
        let mut out = String::new();
        push_record(&mut out, values.iter().map(|v| (Some(*v), Cell::Text)));
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        let read: Vec<&str> = record.iter().collect();
        assert_eq!(read, values);
    }

    #[test]
    fn formats_postgres_timestamps_as_iso_8601_utc() {
        let cases: &[(i64, &str)] = &[
            (0, "2000-01-01T00:00:00.000000Z"),
            (1, "2000-01-01T00:00:00.000001Z"),
            (-1, "1999-12-31T23:59:59.999999Z"),
            (-946_684_800_000_000, "1970-01-01T00:00:00.000000Z"),
            (786_536_100_123_456, "2024-12-03T10:15:00.123456Z"),
            (789_004_799_999_999, "2024-12-31T23:59:59.999999Z"),
            // Postgres' lowest timestamptz, 4714-11-24 00:00:00+00 BC.
            (-211_813_488_000_000_000, "-4713-11-24T00:00:00.000000Z"),
            (-63_113_904_000_000_000, "0000-01-01T00:00:00.000000Z"),
            (252_455_615_999_999_999, "9999-12-31T23:59:59.999999Z"),
            (252_455_616_000_000_000, "10000-01-01T00:00:00.000000Z"),
            (i64::MIN, "-infinity"),
            (i64::MAX, "infinity"),
            (i64::MAX - 1, "out-of-range"),
            (i64::MIN + 1, "out-of-range"),
        ];
        for (micros, expected) in cases {
            assert_eq!(format_timestamp_micros(*micros), *expected, "{micros}");
        }
        let mut out = String::from("x,");
        push_timestamp_micros(&mut out, 0);
        assert_eq!(out, "x,2000-01-01T00:00:00.000000Z");
    }
}
