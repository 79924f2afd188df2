//! Property tests for the pure modules: model resolution, cost arithmetic,
//! the filter parser and the CSV writer.

use crate::csv::{push_record, Cell};
use crate::filters::{Filters, KNOWN_KEYS, ROLLUP_KEYS};
use crate::pricing::test_fixtures::{seed_book, SEED_PRICES};
use crate::pricing::{cost_of, validate_price, PricePoint};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::str::FromStr;

fn seed_model() -> impl Strategy<Value = (&'static str, &'static str, &'static str)> {
    prop::sample::select(SEED_PRICES.to_vec()).prop_map(|(_, model, input, output)| (model, input, output))
}

/// Price in billionths of a dollar per 1K tokens (the seed has at most 6 decimals).
fn nano(price: &str) -> i128 {
    (Decimal::from_str(price).unwrap() * Decimal::from(1_000_000_000))
        .try_into()
        .unwrap()
}

/// A price the catalog accepts: at most 12 decimal places and 1e6 USD per 1K.
fn valid_price() -> impl Strategy<Value = Decimal> {
    (0u32..=12)
        .prop_flat_map(|scale| (0i128..=1_000_000 * 10i128.pow(scale), Just(scale)))
        .prop_map(|(mantissa, scale)| Decimal::from_i128_with_scale(mantissa, scale))
}

/// `price` in units of 1e-12 USD per 1K tokens, as an integer.
fn pico(price: Decimal) -> i128 {
    price.mantissa() * 10i128.pow(12 - price.scale())
}

/// Arbitrary JSON, with strings full of brackets, quotes and backslashes.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[\\[\\]{}\"\\\\a-z\\n]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[\\[{\"\\\\a-z]{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The CSV timestamp is chrono's own ISO 8601 rendering in UTC.
    #[test]
    fn csv_timestamps_match_chrono(micros in -63_113_904_000_000_000i64..252_455_616_000_000_000) {
        let unix = chrono::DateTime::from_timestamp_micros(micros + 946_684_800_000_000).unwrap();
        prop_assert_eq!(
            crate::csv::format_timestamp_micros(micros),
            unix.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        );
    }

    /// Any instant printed as Postgres or an SDK would print it, in any
    /// offset, parses back to that instant.
    #[test]
    fn filter_timestamps_round_trip(
        unix_micros in -30_000_000_000_000_000i64..250_000_000_000_000_000,
        offset_minutes in -959i32..=959,
        separator in prop::sample::select(vec!["T", " "]),
        zone_style in 0..5usize,
        key in prop::sample::select(vec!["start_date", "end_date", "after_timestamp"]),
    ) {
        use chrono::{DateTime, FixedOffset};
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let instant = DateTime::from_timestamp_micros(unix_micros).unwrap().with_timezone(&offset);
        let zone = match zone_style {
            0 => instant.format("%:z").to_string(),
            1 => instant.format("%z").to_string(),
            2 if offset_minutes % 60 == 0 => format!("{:+03}", offset_minutes / 60),
            3 if offset_minutes == 0 => "Z".to_string(),
            _ => format!(" {}", instant.format("%:z")),
        };
        let text = format!("{}{separator}{}{zone}", instant.format("%Y-%m-%d"), instant.format("%H:%M:%S%.6f"));
        let filters = Filters::parse(Some(&serde_json::json!({ key: text })));
        prop_assert!(filters.is_ok(), "{}: {:?}", text, filters);
        let filters = filters.unwrap();
        let parsed = match key {
            "start_date" => filters.start,
            "end_date" => filters.end,
            _ => filters.after_timestamp,
        };
        prop_assert_eq!(parsed, Some(unix_micros - 946_684_800_000_000), "{}", text);
    }

    #[test]
    fn text_depth_matches_the_parsed_depth(value in json_value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let depth = crate::validate::nesting_depth(&value);
        prop_assert_eq!(crate::validate::json_text_depth(&text), depth, "{}", text);
        prop_assert_eq!(crate::validate::json_depth("x", &value, depth).is_ok(), true);
        prop_assert_eq!(depth > 0 && crate::validate::json_depth("x", &value, depth - 1).is_ok(), false);
    }

    #[test]
    fn identifiers_never_hold_control_characters(value in "(?s).{0,40}", lowercase in any::<bool>()) {
        let has_control = value.chars().any(char::is_control);
        match crate::validate::identifier("agent_id", Some(&value), lowercase) {
            Ok(accepted) => {
                prop_assert!(!has_control);
                prop_assert!(!accepted.chars().any(char::is_control));
                prop_assert!(!accepted.is_empty());
            }
            Err(e) => prop_assert!(has_control || value.trim().is_empty(), "{}", e),
        }
        prop_assert_eq!(
            crate::validate::usage_row_text("agent_id", Some(&value), 100).is_err(),
            has_control
        );
    }

    #[test]
    fn valid_prices_cost_exactly(
        input_price in valid_price(),
        output_price in valid_price(),
        input in 0..=i64::from(i32::MAX),
        output in 0..=i64::from(i32::MAX),
    ) {
        prop_assert_eq!(validate_price(&input_price), Ok(()));
        let price = PricePoint {
            effective_from: 0,
            effective_to: None,
            input_usd_per_1k: input_price,
            output_usd_per_1k: output_price,
        };
        let cost = cost_of(&price, input, output);
        prop_assert!(cost.is_ok(), "{:?}", cost);
        let cost = cost.unwrap();
        // Independent reference: integers in units of 1e-15 USD.
        let femto = i128::from(input) * pico(input_price) + i128::from(output) * pico(output_price);
        let mut mantissa = femto;
        let mut scale = 15;
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        prop_assert_eq!(cost.mantissa(), mantissa);
        prop_assert_eq!(cost.scale(), if mantissa == 0 { 0 } else { scale });
    }

    #[test]
    fn cost_is_exact_or_refused(
        input_price in (any::<u64>(), 0u32..=28).prop_map(|(m, s)| Decimal::from_i128_with_scale(m.into(), s)),
        output_price in (any::<u64>(), 0u32..=28).prop_map(|(m, s)| Decimal::from_i128_with_scale(m.into(), s)),
        input in 0..=i64::MAX,
        output in 0..=i64::MAX,
    ) {
        let price = PricePoint {
            effective_from: 0,
            effective_to: None,
            input_usd_per_1k: input_price,
            output_usd_per_1k: output_price,
        };
        if let Ok(cost) = cost_of(&price, input, output) {
            // Exact: cost × 1000 × 10^s equals the integer sum of the products.
            let scale = input_price.scale().max(output_price.scale()).max(cost.scale());
            let at = |d: Decimal, extra: u32| -> Option<i128> {
                d.mantissa().checked_mul(10i128.checked_pow(scale + extra - d.scale())?)
            };
            let lhs = at(cost, 3);
            let rhs = i128::from(input).checked_mul(at(input_price, 0).unwrap())
                .zip(i128::from(output).checked_mul(at(output_price, 0).unwrap()))
                .and_then(|(a, b)| a.checked_add(b));
            if let (Some(lhs), Some(rhs)) = (lhs, rhs) {
                prop_assert_eq!(lhs, rhs);
            }
        }
    }
    #[test]
    fn resolution_never_panics_and_is_case_insensitive(provider in ".{0,20}", model in ".{0,60}") {
        let book = seed_book();
        let resolved = book.resolve(Some(&provider), Some(&model));
        prop_assert_eq!(resolved, book.resolve(Some(&provider.to_uppercase()), Some(&model.to_uppercase())));
    }

    #[test]
    fn dated_suffixes_resolve_to_the_model(
        (model, _, _) in seed_model(),
        date in prop::sample::select(vec!["-2024-08-06", "-20241022", "-0125", "-002", "-latest", "@20240620"]),
        upper in any::<bool>(),
    ) {
        let sent = format!("{model}{date}");
        let sent = if upper { sent.to_uppercase() } else { sent };
        let book = seed_book();
        prop_assert_eq!(book.resolve(Some("any"), Some(&sent)), Some(model));
    }

    #[test]
    fn cost_equals_a_reference_and_is_additive(
        (model, input_price, output_price) in seed_model(),
        a in 0i64..1_000_000_000, b in 0i64..1_000_000_000,
        c in 0i64..1_000_000_000, d in 0i64..1_000_000_000,
    ) {
        let book = seed_book();
        let cost = |i: i64, o: i64| book.cost(None, Some(model), i, o, 0).unwrap().unwrap();
        // Reference: integer arithmetic in 1e-12 dollars.
        let reference = Decimal::from_i128_with_scale(
            a as i128 * nano(input_price) + c as i128 * nano(output_price), 12).normalize();
        prop_assert_eq!(cost(a, c), reference);
        prop_assert_eq!(cost(a + b, c + d), cost(a, c) + cost(b, d));
        prop_assert!(cost(a, c) >= Decimal::ZERO);
    }

    #[test]
    fn filter_parser_never_panics_and_rejects_unknown_keys(
        key in "[a-z_]{1,16}",
        value in prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            ".{0,40}".prop_map(serde_json::Value::String),
        ],
    ) {
        let document = serde_json::json!({ key.clone(): value });
        let parsed = Filters::parse(Some(&document));
        if !KNOWN_KEYS.contains(&key.as_str()) {
            prop_assert_eq!(parsed.unwrap_err().key, key);
        } else if let Ok(filters) = parsed {
            // At most the one key given filters anything.
            let keys = filters.keys();
            prop_assert!(keys.is_empty() || keys == [key.as_str()], "{:?}", keys);
        } else {
            prop_assert_eq!(parsed.unwrap_err().key, key);
        }
    }

    /// Whatever combination of keys is given, the rollups are used exactly
    /// when every key that filters something is one they keep.
    #[test]
    fn rollup_compatible_iff_every_key_is_a_rollup_key(
        chosen in prop::sample::subsequence(KNOWN_KEYS.to_vec(), 0..=KNOWN_KEYS.len()),
    ) {
        let mut document = serde_json::Map::new();
        for key in &chosen {
            let value = match *key {
                "start_date" | "end_date" | "after_timestamp" => serde_json::json!("2024-12-01 00:37:00+01"),
                "user_id" | "after_id" => serde_json::json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                "success" => serde_json::json!(true),
                _ => serde_json::json!("x"),
            };
            document.insert(key.to_string(), value);
        }
        let parsed = Filters::parse(Some(&serde_json::Value::Object(document)));
        if chosen.contains(&"after_id") && !chosen.contains(&"after_timestamp") {
            prop_assert_eq!(parsed.unwrap_err().key, "after_id");
        } else {
            let filters = parsed.unwrap();
            prop_assert_eq!(filters.keys(), chosen.clone());
            prop_assert_eq!(filters.rollup_compatible(), chosen.iter().all(|k| ROLLUP_KEYS.contains(k)));
        }
    }

    #[test]
    fn csv_round_trips_through_a_reader(fields in prop::collection::vec(".{0,30}", 1..8)) {
        let mut out = String::new();
        push_record(&mut out, fields.iter().map(|f| (Some(f.as_str()), Cell::Value)));
        let mut reader = ::csv::ReaderBuilder::new().has_headers(false).from_reader(out.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        let read: Vec<String> = record.iter().map(str::to_string).collect();
        prop_assert_eq!(read, fields);
    }

    #[test]
    fn csv_text_cells_are_never_formulas(text in csv_text()) {
        let mut out = String::new();
        push_record(&mut out, [(Some(text.as_str()), Cell::Text)]);
        let mut reader = ::csv::ReaderBuilder::new().has_headers(false).from_reader(out.as_bytes());
        let cell = reader.records().next().unwrap().unwrap().get(0).unwrap().to_string();
        prop_assert!(!cell.starts_with(TRIGGERS), "{:?} came back as {:?}", text, cell);
        prop_assert!(
            !cell.match_indices(';').any(|(i, _)| cell[i + 1..].trim_start_matches('"').starts_with(TRIGGERS)),
            "{:?}", cell
        );
        prop_assert_eq!(cell, neutralised(&text));
    }

    /// Excel in a `;` locale reads a comma-separated export split at every
    /// `;`, honouring quotes only at the start of a line: no such cell starts
    /// a formula either. (Line breaks inside a field are outside this model.)
    #[test]
    fn csv_text_cells_split_at_semicolons_are_never_formulas(
        texts in prop::collection::vec(csv_text(), 1..4),
    ) {
        let texts: Vec<String> = texts.into_iter().map(|t| t.replace(['\r', '\n'], " ")).collect();
        let mut out = String::new();
        push_record(&mut out, std::iter::once((Some("00000000-0000-0000-0000-000000000000"), Cell::Value))
            .chain(texts.iter().map(|t| (Some(t.as_str()), Cell::Text))));
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(b';')
            .quoting(false)
            .flexible(true)
            .from_reader(out.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                // A leading quote may open a quoted cell: look past it.
                prop_assert!(!cell.trim_start_matches('"').starts_with(TRIGGERS), "{:?} gave the cell {:?}", texts, cell);
            }
        }
    }
}

/// Formula characters, ASCII and full-width, written out independently of
/// the writer's own list.
const TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// Text heavy in the characters that matter to the CSV writer.
fn csv_text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '=', '+', '-', '@', '\t', '\r', '\n', ';', ',', '"', '\'', ' ', '＝', '＋', '－', '＠', 'a',
        '\u{feff}',
    ]);
    prop::collection::vec(prop_oneof![3 => special, 1 => any::<char>()], 0..24).prop_map(String::from_iter)
}

/// What a CSV reader must get back for a text cell: the text, with a `'`
/// before it if it starts with a formula character and after every `;` that
/// is followed by one (possibly after quotes).
fn neutralised(text: &str) -> String {
    let mut out = String::new();
    if text.starts_with(TRIGGERS) {
        out.push('\'');
    }
    for (i, ch) in text.char_indices() {
        out.push(ch);
        if ch == ';' && text[i + 1..].trim_start_matches('"').starts_with(TRIGGERS) {
            out.push('\'');
        }
    }
    out
}
