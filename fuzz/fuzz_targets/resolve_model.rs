//! Model resolution and pricing never panic, and resolve only to known ids.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use usage_analytics_core::pricing::{PriceBook, PricePoint};

fuzz_target!(|input: (&str, &str, u32, u32)| {
    let (provider, model, input_tokens, output_tokens) = input;
    let mut book = PriceBook::default();
    for (provider, model, price) in [("openai", "gpt-4o", "0.0025"), ("openai", "gpt-4o-mini", "0.00015"),
                                     ("anthropic", "claude-3-5-sonnet", "0.003"), ("google", "gemini-1.5-flash", "0.000075")] {
        let price: Decimal = price.parse().unwrap();
        book.add_price(provider, model, PricePoint {
            effective_from: i64::MIN, effective_to: None, input_usd_per_1k: price, output_usd_per_1k: price,
        });
    }
    book.set_default("openai", "gpt-4o-mini");
    if let Some(canonical) = book.resolve(Some(provider), Some(model)) {
        assert!(["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "gemini-1.5-flash"].contains(&canonical.as_str()));
    }
    let cost = book.cost(Some(provider), Some(model), input_tokens.into(), output_tokens.into(), 0).unwrap();
    assert!(cost.is_none_or(|c| c >= Decimal::ZERO));
});
