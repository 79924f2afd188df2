//! Fixtures the pricing unit tests and the crate's property tests share: the
//! seed's 12 models as a price book, and short constructors for prices.

use super::{ModelRates, PriceBook, PricePoint};
use rust_decimal::Decimal;
use std::str::FromStr;

/// The seed's 12 models, prices per 1K tokens.
pub(crate) const SEED_PRICES: &[(&str, &str, &str, &str)] = &[
    ("openai", "gpt-4o", "0.0025", "0.01"),
    ("openai", "gpt-4o-mini", "0.00015", "0.0006"),
    ("openai", "gpt-4-turbo", "0.01", "0.03"),
    ("openai", "gpt-3.5-turbo", "0.0005", "0.0015"),
    ("anthropic", "claude-3-5-sonnet", "0.003", "0.015"),
    ("anthropic", "claude-3-opus", "0.015", "0.075"),
    ("anthropic", "claude-3-haiku", "0.00025", "0.00125"),
    (
        "perplexity",
        "llama-3.1-sonar-small-128k-online",
        "0.0002",
        "0.0002",
    ),
    (
        "perplexity",
        "llama-3.1-sonar-large-128k-online",
        "0.001",
        "0.001",
    ),
    ("perplexity", "llama-3.1-sonar-huge-128k-online", "0.005", "0.005"),
    ("google", "gemini-1.5-pro", "0.00125", "0.005"),
    ("google", "gemini-1.5-flash", "0.000075", "0.0003"),
];

pub(crate) fn seed_book() -> PriceBook {
    let mut book = PriceBook::default();
    for (provider, model, input, output) in SEED_PRICES {
        book.add_price(
            provider,
            model,
            PricePoint {
                effective_from: i64::MIN,
                effective_to: None,
                input_usd_per_1k: Decimal::from_str(input).unwrap(),
                output_usd_per_1k: Decimal::from_str(output).unwrap(),
            },
        );
    }
    book.set_default("openai", "gpt-4o-mini");
    book.set_default("anthropic", "claude-3-haiku");
    book.set_default("perplexity", "llama-3.1-sonar-small-128k-online");
    book.set_default("google", "gemini-1.5-flash");
    book
}

pub(crate) fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub(crate) fn point(input: Decimal, output: Decimal) -> PricePoint {
    PricePoint {
        effective_from: i64::MIN,
        effective_to: None,
        input_usd_per_1k: input,
        output_usd_per_1k: output,
    }
}

pub(crate) fn rates(input: &str, output: &str) -> ModelRates {
    ModelRates::input_output(dec(input), dec(output))
}
