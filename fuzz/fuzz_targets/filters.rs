//! The filter parser never panics; whatever it accepts is known keys only,
//! and its SQL holds placeholders, never the values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use usage_analytics_core::filters::{Filters, KNOWN_KEYS};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(filters) = Filters::parse(Some(&value)) {
        if let Some(object) = value.as_object() {
            assert!(object.keys().all(|k| KNOWN_KEYS.contains(&k.as_str())));
        }
        let sql = filters.where_sql();
        assert!(sql.chars().all(|c| c.is_ascii_alphanumeric() || " _$\"(),<>=%'".contains(c)), "{sql}");
    }
});
