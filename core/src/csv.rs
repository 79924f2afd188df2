//! RFC 4180 CSV writing with spreadsheet formula neutralisation.

/// Characters that make a spreadsheet evaluate a cell as a formula (OWASP
/// "CSV injection"): such text cells get a leading `'`.
const FORMULA_TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// Whether a cell holds free text (neutralised) or a value Postgres
/// formatted itself (numbers, booleans, uuids, timestamps: written as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Text,
    Value,
}

/// Appends one field, quoted when it holds a comma, quote, CR or LF or is empty.
/// `None` (SQL NULL) is an empty field.
pub fn push_field(out: &mut String, value: Option<&str>, kind: Cell) {
    let Some(value) = value else {
        return;
    };
    let neutralise = kind == Cell::Text && value.starts_with(FORMULA_TRIGGERS);
    // An empty string is quoted so that it stays distinct from NULL, as in
    // Postgres' own CSV output.
    // A leading byte-order mark is quoted too: readers drop an unquoted one at
    // the start of a document as an encoding marker.
    let needs_quotes = value.is_empty()
        || value.starts_with('\u{feff}')
        || neutralise && value.starts_with(['\t', '\r'])
        || value.contains([',', '"', '\r', '\n']);
    if needs_quotes {
        out.push('"');
    }
    if neutralise {
        out.push('\'');
    }
    if needs_quotes && value.contains('"') {
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
}
