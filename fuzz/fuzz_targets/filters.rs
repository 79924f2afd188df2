//! The filter parser never panics. Whatever it accepts holds known keys
//! only, with the values the extension's accessors hand to SQL well formed:
//! trimmed bounded text, canonical UUIDs, an escaped ILIKE pattern, and a
//! rollup choice that follows ROLLUP_KEYS. The depth scanner agrees with the
//! parsed document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use usage_analytics_core::filters::{
    Filters, KNOWN_KEYS, MAX_SEARCH_CHARS, MAX_TEXT_FILTER_CHARS, ROLLUP_KEYS,
};
use usage_analytics_core::validate::{json_text_depth, nesting_depth};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(json_text_depth(text), nesting_depth(&value), "{text}");
    }
    let Ok(filters) = Filters::parse(Some(&value)) else {
        return;
    };
    let object = value.as_object();
    if let Some(object) = object {
        assert!(object.keys().all(|k| KNOWN_KEYS.contains(&k.as_str())));
    }
    let keys = filters.keys();
    assert!(
        keys.iter().all(|k| object.is_some_and(|o| o.contains_key(*k))),
        "{keys:?}"
    );
    assert_eq!(
        filters.rollup_compatible(),
        keys.iter().all(|k| ROLLUP_KEYS.contains(k))
    );
    for text in [
        &filters.agent_id,
        &filters.framework,
        &filters.provider,
        &filters.model,
        &filters.message_type,
    ]
    .into_iter()
    .flatten()
    {
        assert!(!text.is_empty() && text.trim() == text && !text.contains('\0'));
        assert!(text.chars().count() <= MAX_TEXT_FILTER_CHARS);
    }
    for id in [&filters.user_id, &filters.after_id].into_iter().flatten() {
        assert_eq!(uuid_text(id), *id);
    }
    if let Some(pattern) = &filters.search {
        let inner = pattern
            .strip_prefix('%')
            .and_then(|p| p.strip_suffix('%'))
            .expect("%…%");
        let mut chars = inner.chars();
        let mut literal = 0;
        while let Some(c) = chars.next() {
            match c {
                '\\' => assert!(matches!(chars.next(), Some('%' | '_' | '\\')), "{pattern}"),
                '%' | '_' => panic!("unescaped wildcard in {pattern}"),
                _ => {}
            }
            literal += 1;
        }
        assert!(literal <= MAX_SEARCH_CHARS);
    }
    assert!(filters.after_id.is_none() || filters.after_timestamp.is_some());
});

/// The canonical (lower-case, hyphenated) form of a UUID, checked by hand.
fn uuid_text(id: &str) -> String {
    assert_eq!(id.len(), 36, "{id}");
    for (i, c) in id.char_indices() {
        if [8, 13, 18, 23].contains(&i) {
            assert_eq!(c, '-', "{id}");
        } else {
            assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
        }
    }
    id.to_string()
}
