//! Whatever the cells hold, a CSV reader gets them back: text cells with a
//! `'` inserted before every part that a spreadsheet would run as a formula
//! (at the start, and after a `;`), and no cell, even split at `;` as Excel
//! does in semicolon locales, starting with a formula character.
#![no_main]
use libfuzzer_sys::fuzz_target;
use usage_analytics_core::csv::{is_formula_after_semicolon, is_formula_start, push_record, Cell};

fn neutralised(text: &str) -> String {
    let mut out = String::new();
    if is_formula_start(text) {
        out.push('\'');
    }
    for (i, ch) in text.char_indices() {
        out.push(ch);
        if ch == ';' && is_formula_after_semicolon(&text[i + 1..]) {
            out.push('\'');
        }
    }
    out
}

fuzz_target!(|cells: Vec<String>| {
    if cells.is_empty() {
        return;
    }
    let mut out = String::new();
    push_record(&mut out, cells.iter().map(|c| (Some(c.as_str()), Cell::Text)));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(out.as_bytes());
    let record = reader.records().next().expect("one record").expect("valid CSV");
    assert_eq!(record.len(), cells.len());
    for (read, written) in record.iter().zip(&cells) {
        assert!(!is_formula_start(read), "{written:?} came back as {read:?}");
        assert_eq!(read, neutralised(written), "{written:?} came back as {read:?}");
    }
    if !cells.iter().any(|c| c.contains(['\r', '\n'])) {
        let mut split = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(b';')
            .quoting(false)
            .flexible(true)
            .from_reader(out.as_bytes());
        for record in split.records() {
            for cell in record.expect("readable").iter() {
                assert!(
                    !is_formula_start(cell.trim_start_matches('"')),
                    "{cells:?} gave the cell {cell:?} split at ';'"
                );
            }
        }
    }
});
