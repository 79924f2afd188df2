//! How a model name as sent is read: the wrappers SDKs, gateways and clouds
//! add ([`strip_wrappers`]), separator folding ([`normalize`]) and which
//! suffixes are versions of a known id ([`matches_with_version_suffix`]).
//! [`PriceBook::resolve`](super::PriceBook::resolve) applies these rules.

/// Prefixes that SDKs, gateways and clouds put before a model id
/// (`openai:gpt-4o`, `anthropic.claude-3-haiku-…`, `google-gla:gemini-…`).
const VENDOR_PREFIXES: &[&str] = &[
    "openai",
    "anthropic",
    "google",
    "google-gla",
    "google-vertex",
    "vertex_ai",
    "vertexai",
    "gemini",
    "perplexity",
    "bedrock",
    "azure",
    "meta",
    "groq",
    "mistral",
    "together",
];

/// AWS cross-region inference profiles: `us.anthropic.claude-…`.
const REGION_PREFIXES: &[&str] = &["us", "eu", "apac", "global"];

/// Drops what wraps a model id: paths (`openai/gpt-4o`, `models/gemini-…`),
/// a `vendor:` prefix, `:0`/`:free` suffixes and `us.anthropic.` prefixes.
pub(crate) fn strip_wrappers(lowered: &str) -> &str {
    let mut s = lowered.rsplit('/').next().unwrap_or(lowered).trim();
    if let Some((head, tail)) = s.split_once(':') {
        if VENDOR_PREFIXES.contains(&head.trim()) {
            s = tail.trim();
        }
    }
    if let Some((head, _)) = s.split_once(':') {
        s = head.trim();
    }
    if let Some((head, tail)) = s.split_once('.') {
        if REGION_PREFIXES.contains(&head)
            && tail
                .split_once('.')
                .is_some_and(|(v, _)| VENDOR_PREFIXES.contains(&v))
        {
            s = tail;
        }
    }
    if let Some((head, tail)) = s.split_once('.') {
        if VENDOR_PREFIXES.contains(&head) {
            s = tail;
        }
    }
    s
}

/// Dots, underscores, spaces and `@` become dashes, so `claude-3.5-sonnet`,
/// `claude_3_5_sonnet` and `claude-3-5-sonnet@20240620` compare equal.
pub fn normalize(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for ch in id.trim().chars() {
        let ch = match ch {
            '.' | '_' | ' ' | '@' => '-',
            other => other.to_ascii_lowercase(),
        };
        if ch == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(ch);
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `candidate` is `known` itself or `known` followed by dated/version
/// suffixes only (`-2024-08-06`, `-20241022`, `-0125`, `-002`, `-latest`, `-v2`).
/// A first suffix of one or two digits is a point release, not a version.
pub(crate) fn matches_with_version_suffix(candidate: &str, known: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(known) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    let mut tokens = rest.split('-');
    // The first suffix is a date or version (`2024`, `20241022`, `0125`,
    // `002`, `latest`, `v2`), never a point release (`gpt-4.1`, `gpt-4-1`).
    let first_is_version = tokens
        .next()
        .is_some_and(|first| is_version_token(first) && (first.len() >= 3 || first.starts_with('v')));
    first_is_version && tokens.all(is_version_token)
}

fn is_version_token(token: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(token) || token == "latest" || token.strip_prefix('v').is_some_and(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_separators() {
        assert_eq!(normalize("Claude 3.5__Sonnet@2024"), "claude-3-5-sonnet-2024");
        assert_eq!(normalize("--x--"), "x");
    }
}
