//! Whatever the cells hold, a CSV reader gets them back (text cells, with a
//! leading quote where they would be a spreadsheet formula).
#![no_main]
use libfuzzer_sys::fuzz_target;
use usage_analytics_core::csv::{push_record, Cell};

fuzz_target!(|cells: Vec<String>| {
    if cells.is_empty() {
        return;
    }
    let mut out = String::new();
    push_record(&mut out, cells.iter().map(|c| (Some(c.as_str()), Cell::Text)));
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(out.as_bytes());
    let record = reader.records().next().expect("one record").expect("valid CSV");
    assert_eq!(record.len(), cells.len());
    for (read, written) in record.iter().zip(&cells) {
        assert!(read == written || read == format!("'{written}"), "{written:?} came back as {read:?}");
    }
});
