//! Token usage in the canonical classes (OpenTelemetry GenAI semantics), and
//! the normalization of what providers and SDKs report into them.
//!
//! Canonical classes, as in the `agent_usage_detailed` columns:
//! * `input_tokens` counts every input token, cached ones included;
//! * `cache_read_tokens`, `cache_write_tokens` (5-minute / default cache
//!   writes) and `cache_write_1h_tokens` are parts of `input_tokens`;
//! * `output_tokens` counts every output token, reasoning included;
//! * `reasoning_tokens` is a part of `output_tokens`.
//!
//! So `cache_read + cache_write + cache_write_1h <= input` and
//! `reasoning <= output` ([`TokenUsage::validate`]).
//!
//! # Shapes recognised by [`normalize_usage`]
//! The shape of a document is decided by its keys alone; the signature keys
//! of different shapes never mix (a document with keys of two shapes is an
//! error naming both). A document whose only keys are `input_tokens` and
//! `output_tokens` means the same in the canonical, OpenAI Responses and
//! Anthropic shapes, and is read as canonical.
//!
//! | shape | signature keys |
//! |---|---|
//! | canonical | `cache_read_tokens`, `cache_write_tokens`, `cache_write_1h_tokens`, `reasoning_tokens` (and the shared `input_tokens`, `output_tokens`) |
//! | OpenAI Chat Completions | `prompt_tokens`, `completion_tokens`, `prompt_tokens_details`, `completion_tokens_details`, `prompt_cache_hit_tokens`, `prompt_cache_miss_tokens` |
//! | OpenAI Responses | `input_tokens_details`, `output_tokens_details` |
//! | Anthropic Messages | `cache_read_input_tokens`, `cache_creation_input_tokens`, `cache_creation`, `server_tool_use`, `service_tier` |
//! | Gemini `usageMetadata` | `promptTokenCount`, `candidatesTokenCount`, `cachedContentTokenCount`, `thoughtsTokenCount`, `toolUsePromptTokenCount`, `totalTokenCount`, `promptTokensDetails`, `candidatesTokensDetails`, `cacheTokensDetails`, `toolUsePromptTokensDetails`, `trafficType` |
//! | OTel attributes | any key starting with `gen_ai.usage.` |
//!
//! `total_tokens` belongs to both OpenAI shapes. An empty document `{}` is the
//! canonical zero usage.
//!
//! # Strictness
//! * The canonical shape is ours, so it is strict: a key that is not one of
//!   the six canonical keys is an error naming it (a typo such as
//!   `cache_reads_tokens` must not silently cost nothing).
//! * Provider shapes are open: providers add fields (`server_tool_use`,
//!   `audio_tokens`, `trafficType`, …), so keys the shape does not price are
//!   ignored, and totals (`total_tokens`, `totalTokenCount`) are not checked.
//!   For OTel, every key not starting with `gen_ai.usage.` is ignored (a
//!   span's whole attribute map may be passed), and so are unknown
//!   `gen_ai.usage.*` keys.
//! * A document with no key of any shape (`{"foo": 1}`), or that is not a
//!   JSON object, is an error.
//!
//! # Values
//! A token count is a JSON number with an integer value (`12`, also `12.0`
//! and `1.2e1`), from 0 to [`MAX_TOKENS`] (2^31 − 1, a Postgres `integer`),
//! and so is every derived class (Anthropic's input + cache reads + cache
//! writes, Gemini's candidates + thoughts). `null` is the same as a missing
//! key: 0. Anything else (`1.5`, `-1`, `"12"`, `true`, objects where a count
//! belongs) is an error naming the key, as is an inconsistent document
//! (cached > prompt, reasoning > completion, a 5m/1h split that disagrees
//! with its total, …). Errors name the key as written in the document, with
//! nested keys joined by `.` (`prompt_tokens_details.cached_tokens`).
//!
//! # Files
//! * `token_usage.rs`: [`TokenUsage`], its invariants and [`UsageError`].
//! * `shapes.rs`: telling the shapes apart ([`detect_shape`]).
//! * `normalize.rs`: reading each shape into the canonical classes
//!   ([`normalize_usage`]).

mod normalize;
mod shapes;
#[cfg(test)]
mod test_fixtures;
mod token_usage;

pub use normalize::normalize_usage;
pub use shapes::{detect_shape, UsageShape};
pub use token_usage::{TokenUsage, UsageError, CANONICAL_KEYS, MAX_TOKENS};
