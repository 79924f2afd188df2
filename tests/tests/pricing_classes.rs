//! Token classes, context and service tiers, fine-tunes, caller-supplied
//! costs, catalog import and repricing (interface 0.2.0, "Token classes" and
//! "Pricing"), against a real cluster with the installed extension.
//!
//! Every expected cost comes from `public.oracle_cost`, created by the test in
//! each database: plain SQL numeric arithmetic over the `model_pricing` row in
//! force, never a call to the extension's own functions.

use integration_tests::{cluster, db_error, scalar, text_rows};
use postgres::Client;

/// The independent oracle. For the standard row in force at `at` for
/// (provider, model, tier): above the row's threshold every class uses its
/// above price (a class without one keeps its base price); a missing cache
/// price falls back to the input price in effect, a missing reasoning price
/// to the output price in effect. Returns the cost and the cache savings
/// (cache_read × (input − cache read) in effect). No row: both NULL.
const ORACLE: &str = r#"
CREATE FUNCTION public.oracle_cost(p text, m text, tier text, ts timestamptz,
                                   i bigint, o bigint, cr bigint, cw bigint, cw1 bigint, r bigint,
                                   OUT cost numeric, OUT savings numeric)
LANGUAGE sql STABLE AS $oracle$
  WITH price AS (
    SELECT mp.*, (mp.above_input_tokens IS NOT NULL AND i > mp.above_input_tokens) AS above
      FROM usage_analytics.model_pricing mp
     WHERE mp.provider = p AND mp.model = m AND mp.service_tier = tier
       AND mp.effective_from <= ts AND (mp.effective_to IS NULL OR mp.effective_to > ts)
     ORDER BY mp.effective_from DESC
     LIMIT 1),
  tiered AS (
    SELECT CASE WHEN above THEN coalesce(above_input_usd_per_1k, input_usd_per_1k) ELSE input_usd_per_1k END AS pin,
           CASE WHEN above THEN coalesce(above_output_usd_per_1k, output_usd_per_1k) ELSE output_usd_per_1k END AS pout,
           CASE WHEN above THEN coalesce(above_cache_read_usd_per_1k, cache_read_usd_per_1k)
                ELSE cache_read_usd_per_1k END AS pcr,
           CASE WHEN above THEN coalesce(above_cache_write_usd_per_1k, cache_write_usd_per_1k)
                ELSE cache_write_usd_per_1k END AS pcw,
           CASE WHEN above THEN coalesce(above_cache_write_1h_usd_per_1k, cache_write_1h_usd_per_1k)
                ELSE cache_write_1h_usd_per_1k END AS pcw1,
           CASE WHEN above THEN coalesce(above_reasoning_usd_per_1k, reasoning_usd_per_1k)
                ELSE reasoning_usd_per_1k END AS pr
      FROM price),
  eff AS (
    SELECT pin, pout, coalesce(pcr, pin) AS pcr, coalesce(pcw, pin) AS pcw,
           coalesce(pcw1, pin) AS pcw1, coalesce(pr, pout) AS pr
      FROM tiered)
  SELECT ((i - cr - cw - cw1)::numeric * pin + cr::numeric * pcr + cw::numeric * pcw
          + cw1::numeric * pcw1 + (o - r)::numeric * pout + r::numeric * pr) * 0.001,
         cr::numeric * (pin - pcr) * 0.001
    FROM eff
$oracle$;
"#;

/// A fresh database with the oracle installed, and an owner connection.
fn setup(name: &str) -> (String, Client) {
    let c = cluster();
    let db = c.fresh_db(name);
    let mut client = c.connect(&db);
    client.batch_execute(ORACLE).unwrap();
    (db, client)
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Asserts that two numeric SQL expressions are equal (NULL only equals NULL);
/// returns the expected value as text.
fn same(client: &mut Client, expected: &str, actual: &str, what: &str) -> Option<String> {
    let rows = text_rows(
        client,
        &format!(
            "SELECT e::text, a::text, (e IS NOT DISTINCT FROM a)::text
               FROM (SELECT ({expected})::numeric AS e, ({actual})::numeric AS a) s"
        ),
    );
    let row = &rows[0];
    assert_eq!(
        row[2].as_deref(),
        Some("true"),
        "{what}: expected {:?}, got {:?}",
        row[0],
        row[1]
    );
    row[0].clone()
}

/// The same, with a relative tolerance of 1e-15 (ratios, which are rounded).
fn close(client: &mut Client, expected: &str, actual: &str, what: &str) {
    let rows = text_rows(
        client,
        &format!(
            "SELECT e::text, a::text,
                    ((e IS NULL AND a IS NULL) OR abs(e - a) <= abs(e) * 1e-15)::text
               FROM (SELECT ({expected})::numeric AS e, ({actual})::numeric AS a) s"
        ),
    );
    let row = &rows[0];
    assert_eq!(
        row[2].as_deref(),
        Some("true"),
        "{what}: expected {:?}, got {:?}",
        row[0],
        row[1]
    );
}

/// Runs `sql`, which must fail with SQLSTATE `code` and a message naming
/// one of the `|`-separated `keys`.
fn refused(client: &mut Client, sql: &str, code: &str, keys: &str) -> String {
    let err = client
        .query(sql, &[])
        .err()
        .unwrap_or_else(|| panic!("accepted: {sql}"));
    let (got, message) = db_error(&err);
    assert_eq!(got, code, "{sql}: {message}");
    assert!(
        keys.split('|').any(|k| message.contains(k)),
        "{sql}: message {message:?} names none of {keys}"
    );
    message
}

fn count(client: &mut Client, sql: &str) -> i64 {
    scalar(client, sql).unwrap().parse().unwrap()
}

fn usage_rows(client: &mut Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    )
}

/// Canonical document of (input, output, cache_read, cache_write, cache_write_1h, reasoning).
fn canonical(t: [i64; 6]) -> String {
    format!(
        r#"{{"input_tokens": {}, "output_tokens": {}, "cache_read_tokens": {}, "cache_write_tokens": {}, "cache_write_1h_tokens": {}, "reasoning_tokens": {}}}"#,
        t[0], t[1], t[2], t[3], t[4], t[5]
    )
}

/// `oracle_cost(...)` as a SQL expression; `field` is cost or savings.
fn oracle(provider: &str, model: &str, tier: &str, at: &str, t: [i64; 6], field: &str) -> String {
    format!(
        "(public.oracle_cost({}, {}, {}, {at}, {}, {}, {}, {}, {}, {})).{field}",
        lit(provider),
        lit(model),
        lit(tier),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5]
    )
}

/// Synthetic price rows with every class priced differently (a DBA's
/// direct INSERT), and one with no class prices at all.
const HOUSE_MODELS: &str = "
INSERT INTO usage_analytics.model_pricing
    (provider, model, input_usd_per_1k, output_usd_per_1k, cache_read_usd_per_1k, cache_write_usd_per_1k,
     cache_write_1h_usd_per_1k, reasoning_usd_per_1k, above_input_tokens, above_input_usd_per_1k,
     above_output_usd_per_1k, above_cache_read_usd_per_1k, above_reasoning_usd_per_1k)
VALUES ('openai', 'house-reasoner', 0.002, 0.008, 0.0002, 0.0025, 0.004, 0.012, 1000, 0.004, 0.012, 0.0004, 0.02);
INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k)
VALUES ('openai', 'house-plain', 0.002, 0.008);";

/// Records one request through track_detailed_usage with a usage document.
fn track(client: &mut Client, agent: &str, provider: &str, model: &str, metadata: &str, doc: &str) -> String {
    scalar(
        client,
        &format!(
            "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), {}, NULL, 'langchain', {}, 'chat',
                    NULL, NULL, 25, true, NULL, {}::jsonb, {}, usage => {}::jsonb)::text",
            lit(agent),
            lit(provider),
            lit(metadata),
            lit(model),
            lit(doc)
        ),
    )
    .unwrap()
}

/// (label, provider, model, usage document, canonical classes).
const SHAPES: &[(&str, &str, &str, &str, [i64; 6])] = &[
    (
        "OpenAI Chat Completions",
        "openai",
        "gpt-4.1",
        r#"{"prompt_tokens": 1200, "completion_tokens": 800, "total_tokens": 2000,
            "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 500, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}"#,
        [1200, 800, 1000, 0, 0, 500],
    ),
    (
        "OpenAI Responses",
        "openai",
        "gpt-5",
        r#"{"input_tokens": 5000, "input_tokens_details": {"cached_tokens": 4096},
            "output_tokens": 1500, "output_tokens_details": {"reasoning_tokens": 1024}, "total_tokens": 6500}"#,
        [5000, 1500, 4096, 0, 0, 1024],
    ),
    (
        "Anthropic Messages, 5m/1h split",
        "anthropic",
        "claude-sonnet-4-5",
        r#"{"input_tokens": 120, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 9000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
            "output_tokens": 450, "service_tier": "standard"}"#,
        [12120, 450, 9000, 1000, 2000, 0],
    ),
    (
        "Anthropic Messages, no split",
        "anthropic",
        "claude-haiku-4-5",
        r#"{"input_tokens": 50, "cache_creation_input_tokens": 700, "cache_read_input_tokens": 0, "output_tokens": 20}"#,
        [750, 20, 0, 700, 0, 0],
    ),
    (
        "Gemini usageMetadata",
        "google",
        "gemini-2.5-flash",
        r#"{"promptTokenCount": 2000, "cachedContentTokenCount": 1500, "candidatesTokenCount": 300,
            "thoughtsTokenCount": 700, "toolUsePromptTokenCount": 100, "totalTokenCount": 3100,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2000}]}"#,
        [2100, 1000, 1500, 0, 0, 700],
    ),
    (
        "OTel gen_ai.usage.* (cache_creation)",
        "openai",
        "gpt-5",
        r#"{"gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 900,
            "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.cache_creation.input_tokens": 500,
            "gen_ai.usage.reasoning.output_tokens": 300}"#,
        [3000, 900, 1000, 500, 0, 300],
    ),
    (
        "OTel gen_ai.usage.* (cache_write)",
        "anthropic",
        "claude-opus-4-5",
        r#"{"gen_ai.usage.input_tokens": 4000, "gen_ai.usage.output_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 2500, "gen_ai.usage.cache_write.input_tokens": 1000}"#,
        [4000, 100, 2500, 1000, 0, 0],
    ),
    (
        "canonical, reasoning price below output",
        "perplexity",
        "sonar-deep-research",
        r#"{"input_tokens": 800, "output_tokens": 3000, "reasoning_tokens": 2000}"#,
        [800, 3000, 0, 0, 0, 2000],
    ),
    (
        "canonical, every class priced",
        "openai",
        "house-reasoner",
        r#"{"input_tokens": 900, "output_tokens": 400, "cache_read_tokens": 300, "cache_write_tokens": 200,
            "cache_write_1h_tokens": 100, "reasoning_tokens": 150}"#,
        [900, 400, 300, 200, 100, 150],
    ),
    (
        "canonical, no class prices (fallbacks)",
        "openai",
        "house-plain",
        r#"{"input_tokens": 900, "output_tokens": 400, "cache_read_tokens": 300, "cache_write_tokens": 200,
            "cache_write_1h_tokens": 100, "reasoning_tokens": 150}"#,
        [900, 400, 300, 200, 100, 150],
    ),
];

#[test]
fn every_usage_shape_normalizes_and_prices_like_the_oracle() {
    let (_db, mut client) = setup("shapes");
    client.batch_execute(HOUSE_MODELS).unwrap();
    // The oracle itself, checked by hand on the synthetic rows:
    // 300×0.002 + 300×0.0002 + 200×0.0025 + 100×0.004 + 250×0.008 + 150×0.012 = 5.36 per 1K;
    // without class prices: 900×0.002 + 400×0.008 = 5.0 per 1K.
    let t = [900, 400, 300, 200, 100, 150];
    same(
        &mut client,
        "0.00536",
        &oracle("openai", "house-reasoner", "standard", "now()", t, "cost"),
        "oracle",
    );
    same(
        &mut client,
        "0.00054",
        &oracle("openai", "house-reasoner", "standard", "now()", t, "savings"),
        "oracle",
    );
    same(
        &mut client,
        "0.005",
        &oracle("openai", "house-plain", "standard", "now()", t, "cost"),
        "oracle",
    );
    same(
        &mut client,
        "0",
        &oracle("openai", "house-plain", "standard", "now()", t, "savings"),
        "oracle",
    );

    for (label, provider, model, doc, classes) in SHAPES {
        let normalized = text_rows(
            &mut client,
            &format!(
                "SELECT n::text, (n = {}::jsonb)::text FROM usage_analytics.normalize_usage({}, {}::jsonb) n",
                lit(&canonical(*classes)),
                lit(provider),
                lit(doc)
            ),
        );
        assert_eq!(
            normalized[0][1].as_deref(),
            Some("true"),
            "{label}: normalize_usage gave {:?}, expected {}",
            normalized[0][0],
            canonical(*classes)
        );
        let want = oracle(provider, model, "standard", "now()", *classes, "cost");
        let expected = same(
            &mut client,
            &want,
            &format!(
                "usage_analytics.calculate_cost({}, {}, {}::jsonb)",
                lit(provider),
                lit(model),
                lit(doc)
            ),
            &format!("calculate_cost, {label}"),
        );
        assert!(
            expected.is_some(),
            "{label}: {provider}/{model} has no price in force"
        );
        // The canonical document prices the same.
        same(
            &mut client,
            &want,
            &format!(
                "usage_analytics.calculate_cost({}, {}, {}::jsonb, now(), 'standard')",
                lit(provider),
                lit(model),
                lit(&canonical(*classes))
            ),
            &format!("calculate_cost of the canonical document, {label}"),
        );

        let id = track(&mut client, label, provider, model, "{}", doc);
        let row = text_rows(
            &mut client,
            &format!(
                "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                        reasoning_tokens, model, cost_source, service_tier, total_tokens
                   FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
            ),
        );
        let got: Vec<i64> = row[0][..6]
            .iter()
            .map(|v| v.as_deref().unwrap().parse().unwrap())
            .collect();
        assert_eq!(got, classes.to_vec(), "{label}: token columns");
        assert_eq!(row[0][6].as_deref(), Some(*model), "{label}: model");
        assert_eq!(row[0][7].as_deref(), Some("catalog"), "{label}: cost_source");
        assert_eq!(row[0][8].as_deref(), Some("standard"), "{label}: service_tier");
        assert_eq!(
            row[0][9].as_deref(),
            Some((classes[0] + classes[1]).to_string().as_str()),
            "{label}: total_tokens"
        );
        let at =
            format!("(SELECT \"timestamp\" FROM usage_analytics.agent_usage_detailed WHERE id = '{id}')");
        same(
            &mut client,
            &oracle(provider, model, "standard", &at, *classes, "cost"),
            &format!("SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
            &format!("tracked cost, {label}"),
        );
        same(
            &mut client,
            &oracle(provider, model, "standard", &at, *classes, "savings"),
            &format!("SELECT cache_savings_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
            &format!("cache_savings_usd, {label}"),
        );
    }

    // Token counts given next to the document must agree with it; when they do,
    // the row is the same as without them.
    let agree = scalar(
        &mut client,
        "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'agree', NULL, 'langchain', 'openai', 'chat',
                1200, 800, 25, true, NULL, '{}', 'gpt-4.1',
                usage => '{\"prompt_tokens\": 1200, \"completion_tokens\": 800,
                           \"prompt_tokens_details\": {\"cached_tokens\": 1000}}')::text",
    )
    .unwrap();
    same(
        &mut client,
        &oracle(
            "openai",
            "gpt-4.1",
            "standard",
            "now()",
            [1200, 800, 1000, 0, 0, 0],
            "cost",
        ),
        &format!("SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{agree}'"),
        "tracked cost with agreeing counts",
    );
    let before = usage_rows(&mut client);
    for (args, key) in [("999, NULL", "input_tokens"), ("NULL, 7", "output_tokens")] {
        refused(
            &mut client,
            &format!(
                "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'disagree', NULL, 'langchain', 'openai',
                        'chat', {args}, 25, true, NULL, '{{}}', 'gpt-4.1',
                        usage => '{{\"prompt_tokens\": 1000, \"completion_tokens\": 8}}')"
            ),
            "22023",
            key,
        );
    }
    assert_eq!(usage_rows(&mut client), before, "refused calls wrote rows");
}

#[test]
fn above_the_context_threshold_every_class_uses_its_above_price() {
    let (_db, mut client) = setup("context");
    client.batch_execute(HOUSE_MODELS).unwrap();
    // By hand at the synthetic row's threshold 1000 (cache reads 250, writes 125 + 125, reasoning 100):
    // at 1000:  500×0.002 + 250×0.0002 + 125×0.0025 + 125×0.004 + 400×0.008 + 100×0.012 = 6.2625 per 1K;
    // at 1001:  501×0.004 + 250×0.0004 + 125×0.0025 + 125×0.004 + 400×0.012 + 100×0.02  = 9.7165 per 1K
    // (no above price for cache writes: they keep their base price).
    for (input, want) in [(1000, "0.0062625"), (1001, "0.0097165")] {
        let t = [input, 500, 250, 125, 125, 100];
        same(
            &mut client,
            want,
            &oracle("openai", "house-reasoner", "standard", "now()", t, "cost"),
            "oracle",
        );
        same(
            &mut client,
            want,
            &format!(
                "usage_analytics.calculate_cost('openai', 'house-reasoner', {}::jsonb)",
                lit(&canonical(t))
            ),
            &format!("house-reasoner at {input} input tokens"),
        );
    }

    for (provider, model, tiers) in [
        (
            "google",
            "gemini-2.5-pro",
            &["standard", "batch", "flex", "priority"][..],
        ),
        ("anthropic", "claude-haiku-5-5", &["standard", "batch"][..]),
    ] {
        for tier in tiers {
            let threshold = scalar(
                &mut client,
                &format!(
                    "SELECT above_input_tokens FROM usage_analytics.model_pricing
                      WHERE provider = '{provider}' AND model = '{model}' AND service_tier = '{tier}'
                        AND effective_from <= now() AND (effective_to IS NULL OR effective_to > now())
                      ORDER BY effective_from DESC LIMIT 1"
                ),
            )
            .unwrap_or_else(|| panic!("{provider}/{model} {tier} has no context threshold in model_pricing"));
            let threshold: i64 = threshold.parse().unwrap();
            let mut costs = Vec::new();
            for input in [threshold, threshold + 1] {
                let t = [input, 5000, 1000, 500, 500, 1000];
                let cost = same(
                    &mut client,
                    &oracle(provider, model, tier, "now()", t, "cost"),
                    &format!(
                        "usage_analytics.calculate_cost('{provider}', '{model}', {}::jsonb, now(), '{tier}')",
                        lit(&canonical(t))
                    ),
                    &format!("{provider}/{model} {tier} at {input} input tokens"),
                )
                .unwrap_or_else(|| panic!("{provider}/{model} {tier} unpriced"));
                costs.push(cost);
            }
            // One more input token past the threshold costs far more than one token.
            let jump = scalar(
                &mut client,
                &format!(
                    "SELECT ({}::numeric - {}::numeric) > (SELECT 2 * input_usd_per_1k / 1000
                       FROM usage_analytics.model_pricing WHERE provider = '{provider}' AND model = '{model}'
                        AND service_tier = '{tier}' ORDER BY effective_from DESC LIMIT 1)",
                    costs[1], costs[0]
                ),
            );
            assert_eq!(jump.as_deref(), Some("t"), "{provider}/{model} {tier}: {costs:?}");
        }
    }

    // Through track_detailed_usage, a Gemini document one token past the threshold.
    let threshold: i64 = scalar(
        &mut client,
        "SELECT above_input_tokens FROM usage_analytics.model_pricing
          WHERE provider = 'google' AND model = 'gemini-2.5-pro' AND service_tier = 'standard'
          ORDER BY effective_from DESC LIMIT 1",
    )
    .unwrap()
    .parse()
    .unwrap();
    let doc = format!(
        r#"{{"promptTokenCount": {}, "cachedContentTokenCount": 1000, "candidatesTokenCount": 4000, "thoughtsTokenCount": 1000}}"#,
        threshold + 1
    );
    let id = track(
        &mut client,
        "long-context",
        "google",
        "gemini-2.5-pro",
        "{}",
        &doc,
    );
    let at = format!("(SELECT \"timestamp\" FROM usage_analytics.agent_usage_detailed WHERE id = '{id}')");
    let t = [threshold + 1, 5000, 1000, 0, 0, 1000];
    same(
        &mut client,
        &oracle("google", "gemini-2.5-pro", "standard", &at, t, "cost"),
        &format!("SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
        "tracked long-context cost",
    );
    same(
        &mut client,
        &oracle("google", "gemini-2.5-pro", "standard", &at, t, "savings"),
        &format!("SELECT cache_savings_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
        "tracked long-context cache savings",
    );
}

#[test]
fn service_tiers_price_from_their_own_rows_or_not_at_all() {
    let (_db, mut client) = setup("tiers");
    let tiers_of = |client: &mut Client, model: &str| {
        scalar(
            client,
            &format!(
                "SELECT string_agg(DISTINCT service_tier, ',' ORDER BY service_tier)
                   FROM usage_analytics.model_pricing WHERE provider = 'openai' AND model = '{model}'"
            ),
        )
        .unwrap_or_default()
    };
    let gpt5 = tiers_of(&mut client, "gpt-5");
    assert!(
        gpt5.contains("batch") && gpt5.contains("flex"),
        "gpt-5 tiers: {gpt5}"
    );
    let gpt4o = tiers_of(&mut client, "gpt-4o");
    assert!(
        gpt4o.contains("standard") && !gpt4o.contains("flex"),
        "gpt-4o tiers: {gpt4o}"
    );

    let t = [20_000, 3000, 8000, 0, 0, 1200];
    let doc = canonical(t);
    let mut costs = Vec::new();
    for tier in ["standard", "batch", "flex", "priority"] {
        let cost = same(
            &mut client,
            &oracle("openai", "gpt-5", tier, "now()", t, "cost"),
            &format!(
                "usage_analytics.calculate_cost('openai', 'gpt-5', {}::jsonb, now(), '{tier}')",
                lit(&doc)
            ),
            &format!("gpt-5 {tier}"),
        );
        if tier != "priority" {
            assert!(cost.is_some(), "gpt-5 {tier} unpriced");
        }
        costs.push(cost);
    }
    assert_ne!(costs[0], costs[1], "batch priced like standard");

    // No flex row for gpt-4o: unpriced, never the standard price.
    assert!(scalar(
        &mut client,
        &format!(
            "SELECT usage_analytics.calculate_cost('openai', 'gpt-4o', {}::jsonb)",
            lit(&doc)
        )
    )
    .is_some());
    assert_eq!(
        scalar(
            &mut client,
            &format!(
                "SELECT usage_analytics.calculate_cost('openai', 'gpt-4o', {}::jsonb, now(), 'flex')",
                lit(&doc)
            )
        ),
        None,
        "gpt-4o flex must be unpriced"
    );

    // request_metadata.service_tier sets the row's tier and its price.
    let id = track(
        &mut client,
        "batch",
        "openai",
        "gpt-5",
        r#"{"service_tier": "batch"}"#,
        &doc,
    );
    let row = text_rows(
        &mut client,
        &format!(
            "SELECT service_tier, cost_source FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
        ),
    );
    assert_eq!(row[0][0].as_deref(), Some("batch"));
    assert_eq!(row[0][1].as_deref(), Some("catalog"));
    let at = format!("(SELECT \"timestamp\" FROM usage_analytics.agent_usage_detailed WHERE id = '{id}')");
    same(
        &mut client,
        &oracle("openai", "gpt-5", "batch", &at, t, "cost"),
        &format!("SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
        "tracked batch cost",
    );
    same(
        &mut client,
        &oracle("openai", "gpt-5", "batch", &at, t, "savings"),
        &format!("SELECT cache_savings_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
        "tracked batch cache savings",
    );
    let id = track(
        &mut client,
        "flex",
        "openai",
        "gpt-4o",
        r#"{"service_tier": "flex"}"#,
        &doc,
    );
    let row = text_rows(
        &mut client,
        &format!(
            "SELECT service_tier, cost_usd::text, cost_source FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
        ),
    );
    assert_eq!(
        row[0],
        vec![Some("flex".to_string()), None, None],
        "gpt-4o flex row"
    );

    // A bad tier is refused everywhere and writes nothing.
    let before = usage_rows(&mut client);
    refused(
        &mut client,
        &format!(
            "SELECT usage_analytics.calculate_cost('openai', 'gpt-5', {}::jsonb, now(), 'turbo')",
            lit(&doc)
        ),
        "22023",
        "service_tier",
    );
    for metadata in [r#"{"service_tier": "turbo"}"#, r#"{"service_tier": 5}"#] {
        refused(
            &mut client,
            &format!(
                "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'bad-tier', NULL, 'langchain', 'openai',
                        'chat', NULL, NULL, 25, true, NULL, {}::jsonb, 'gpt-5', usage => {}::jsonb)",
                lit(metadata),
                lit(&doc)
            ),
            "22023",
            "service_tier",
        );
    }
    assert_eq!(usage_rows(&mut client), before, "refused calls wrote rows");
}

#[test]
fn fine_tunes_snapshots_point_releases_and_unknown_models() {
    let (_db, mut client) = setup("finetunes");
    let t = [4000, 1000, 1000, 0, 0, 0];
    let doc = canonical(t);
    let fine_tunes = text_rows(
        &mut client,
        "SELECT model, service_tier FROM usage_analytics.model_pricing
          WHERE provider = 'openai' AND model LIKE 'ft:%'
            AND effective_from <= now() AND (effective_to IS NULL OR effective_to > now())
          ORDER BY model, service_tier",
    );
    assert!(fine_tunes.len() >= 2, "no fine-tune prices in model_pricing");
    for row in &fine_tunes {
        let (base, tier) = (row[0].as_deref().unwrap(), row[1].as_deref().unwrap());
        for requested in [
            format!("{base}:acme::abc123"),
            format!("{base}:acme:my-suffix:abc123"),
        ] {
            assert_eq!(
                scalar(
                    &mut client,
                    &format!(
                        "SELECT usage_analytics.resolve_model('openai', {})",
                        lit(&requested)
                    )
                )
                .as_deref(),
                Some(base),
                "resolve_model({requested})"
            );
            let cost = same(
                &mut client,
                &oracle("openai", base, tier, "now()", t, "cost"),
                &format!(
                    "usage_analytics.calculate_cost('openai', {}, {}::jsonb, now(), '{tier}')",
                    lit(&requested),
                    lit(&doc)
                ),
                &format!("{requested} {tier}"),
            );
            assert!(cost.is_some(), "{requested} {tier} unpriced");
        }
    }
    let base = fine_tunes
        .iter()
        .find(|r| r[1].as_deref() == Some("standard"))
        .and_then(|r| r[0].as_deref())
        .expect("a fine-tune with a standard price");
    let id = track(
        &mut client,
        "fine-tune",
        "openai",
        &format!("{base}:acme::job42"),
        "{}",
        &doc,
    );
    let row = text_rows(
        &mut client,
        &format!("SELECT model, cost_source FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
    );
    assert_eq!(row[0][0].as_deref(), Some(base));
    assert_eq!(row[0][1].as_deref(), Some("catalog"));
    let at = format!("(SELECT \"timestamp\" FROM usage_analytics.agent_usage_detailed WHERE id = '{id}')");
    same(
        &mut client,
        &oracle("openai", base, "standard", &at, t, "cost"),
        &format!("SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"),
        "tracked fine-tune cost",
    );

    // A fine-tune of a base without an ft: price is unpriced (never the base's price).
    for base in ["gpt-5", "gpt-4o-mini", "gpt-4.1"] {
        assert_eq!(
            count(
                &mut client,
                &format!("SELECT count(*) FROM usage_analytics.model_pricing WHERE model = 'ft:{base}'")
            ),
            0,
            "precondition: no ft:{base} price"
        );
        let requested = format!("ft:{base}:acme::xyz");
        assert_eq!(
            scalar(
                &mut client,
                &format!(
                    "SELECT usage_analytics.resolve_model('openai', {})",
                    lit(&requested)
                )
            ),
            None,
            "resolve_model({requested})"
        );
        assert_eq!(
            scalar(
                &mut client,
                &format!(
                    "SELECT usage_analytics.calculate_cost('openai', {}, {}::jsonb)",
                    lit(&requested),
                    lit(&doc)
                )
            ),
            None,
            "{requested} must be unpriced"
        );
    }

    // A dated snapshot has its own price; a point release is another model.
    for (requested, canonical_id, other) in [
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13", "gpt-4o"),
        ("gpt-4.1", "gpt-4.1", "gpt-4"),
    ] {
        assert_eq!(
            scalar(
                &mut client,
                &format!("SELECT usage_analytics.resolve_model('openai', '{requested}')")
            )
            .as_deref(),
            Some(canonical_id)
        );
        let own = same(
            &mut client,
            &oracle("openai", canonical_id, "standard", "now()", t, "cost"),
            &format!(
                "usage_analytics.calculate_cost('openai', '{requested}', {}::jsonb)",
                lit(&doc)
            ),
            requested,
        );
        let others = scalar(
            &mut client,
            &format!(
                "SELECT {}",
                oracle("openai", other, "standard", "now()", t, "cost")
            ),
        );
        assert!(own.is_some() && others.is_some());
        assert_ne!(
            own, others,
            "precondition: {canonical_id} and {other} priced differently"
        );
    }

    // Unknown: NULL, never 0, in calculate_cost and in the row.
    for model in ["gpt-9-ultra", "claude-99-opus", "totally-new-model"] {
        assert_eq!(
            scalar(
                &mut client,
                &format!(
                    "SELECT usage_analytics.calculate_cost('openai', '{model}', {}::jsonb)",
                    lit(&doc)
                )
            ),
            None,
            "{model}"
        );
        let id = track(&mut client, "unknown", "openai", model, "{}", &doc);
        let row = text_rows(
            &mut client,
            &format!(
                "SELECT cost_usd::text, cost_source, model, cache_read_tokens::text
                   FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
            ),
        );
        assert_eq!(
            row[0],
            vec![None, None, None, Some("1000".to_string())],
            "{model}"
        );
    }
}

#[test]
fn caller_supplied_costs_are_kept_and_bad_ones_refused() {
    let (_db, mut client) = setup("callercost");
    let insert = |cost: &str| {
        format!(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens,
                  cache_read_tokens, reasoning_tokens, model, cost_usd)
             VALUES (gen_random_uuid(), 'caller', 'autogen', 'openai', 'chat', 1000, 500, 400, 100, 'gpt-4.1', {cost})
             RETURNING cost_usd::text, cost_source"
        )
    };
    for cost in ["0.123456789012345678", "0"] {
        let row = text_rows(&mut client, &insert(cost));
        assert_eq!(row[0][0].as_deref(), Some(cost), "caller cost kept exactly");
        assert_eq!(row[0][1].as_deref(), Some("caller"));
    }
    // Without a cost the same row is priced from the catalog.
    let row = text_rows(&mut client, &insert("DEFAULT"));
    assert_eq!(row[0][1].as_deref(), Some("catalog"));
    same(
        &mut client,
        &oracle(
            "openai",
            "gpt-4.1",
            "standard",
            "now()",
            [1000, 500, 400, 0, 0, 100],
            "cost",
        ),
        &format!("{}::numeric", lit(row[0][0].as_deref().unwrap())),
        "catalog-priced INSERT",
    );
    // Unpriced: cost and cost_source NULL.
    let id = track(
        &mut client,
        "unpriced",
        "other",
        "house-model-nobody-knows",
        "{}",
        r#"{"input_tokens": 10}"#,
    );
    let row = text_rows(
        &mut client,
        &format!(
            "SELECT cost_usd::text, cost_source FROM usage_analytics.agent_usage_detailed WHERE id = '{id}'"
        ),
    );
    assert_eq!(row[0], vec![None, None]);

    let before = usage_rows(&mut client);
    for bad in ["'NaN'", "-0.01", "'Infinity'"] {
        let err = client.query(&insert(bad), &[]).err();
        assert!(err.is_some(), "cost {bad} accepted");
        let (code, message) = db_error(err.as_ref().unwrap());
        assert!(!code.is_empty(), "cost {bad}: {message}");
    }
    assert_eq!(usage_rows(&mut client), before, "refused costs wrote rows");
}

/// Creates `<db>_adm` (usage_analytics_admin) and `<db>_rdr` (usage_analytics_reader).
fn roles(client: &mut Client, db: &str) -> (String, String) {
    let (adm, rdr) = (format!("{db}_adm"), format!("{db}_rdr"));
    client
        .batch_execute(&format!(
            "CREATE ROLE {adm} LOGIN; SELECT usage_analytics.grant_admin('{adm}');
             CREATE ROLE {rdr} LOGIN; GRANT usage_analytics_reader TO {rdr};"
        ))
        .unwrap();
    (adm, rdr)
}

fn import(client: &mut Client, catalog: &str, at: &str) -> Result<serde_json::Value, postgres::Error> {
    client
        .query_one(
            &format!("SELECT usage_analytics.import_price_catalog($1::text::jsonb, 'litellm', '{at}')"),
            &[&catalog],
        )
        .map(|row| row.get(0))
}

fn summary_count(summary: &serde_json::Value, key: &str) -> i64 {
    summary[key]
        .as_i64()
        .unwrap_or_else(|| panic!("summary {summary} has no integer {key}"))
}

#[test]
fn import_price_catalog_keeps_history_and_exact_numbers() {
    let (db, mut owner) = setup("import");
    let (adm, rdr) = roles(&mut owner, &db);
    let mut admin = cluster().connect_as(&db, &adm);
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/fixtures/litellm_sample.json"
    ))
    .unwrap();
    let entries = serde_json::from_str::<serde_json::Value>(&sample)
        .unwrap()
        .as_object()
        .unwrap()
        .len() as i64;
    let prices = |c: &mut Client| count(c, "SELECT count(*) FROM usage_analytics.model_pricing");

    let before = prices(&mut owner);
    let first = import(&mut admin, &sample, "2099-01-01 00:00:00+00").unwrap();
    let (added, changed, unchanged, skipped) = (
        summary_count(&first, "added"),
        summary_count(&first, "changed"),
        summary_count(&first, "unchanged"),
        summary_count(&first, "skipped"),
    );
    assert!(added >= 0 && changed >= 0 && unchanged >= 0, "{first}");
    assert_eq!(added + changed + unchanged + skipped, entries, "{first}");
    // Two embedding models and sample_spec are not chat models.
    assert!(skipped >= 3, "{first}");
    let after_first = prices(&mut owner);
    assert!(
        after_first - before >= added + changed,
        "{first}: {before} -> {after_first} rows"
    );
    if added + changed == 0 {
        assert_eq!(after_first, before);
    }

    // Every first-party chat entry is in force afterwards at exactly its price × 1000.
    let wrong = text_rows(
        &mut owner,
        &format!(
            "WITH cat AS (SELECT key, value, lower(value->>'litellm_provider') AS lp
                            FROM jsonb_each({}::jsonb)
                           WHERE jsonb_typeof(value) = 'object'
                             AND value->>'mode' IN ('chat', 'completion', 'responses')
                             AND lower(value->>'litellm_provider') IN
                                 ('openai', 'anthropic', 'gemini', 'mistral', 'deepseek', 'xai', 'perplexity')),
                  e AS (SELECT CASE lp WHEN 'gemini' THEN 'google' ELSE lp END AS provider,
                               CASE WHEN key LIKE lp || '/%' THEN substr(key, length(lp) + 2) ELSE key END AS model,
                               value
                          FROM cat)
             SELECT e.provider || '/' || e.model, p.input_usd_per_1k::text, p.output_usd_per_1k::text,
                    p.cache_read_usd_per_1k::text
               FROM e
               LEFT JOIN LATERAL (SELECT * FROM usage_analytics.model_pricing mp
                                   WHERE mp.provider = e.provider AND mp.model = e.model
                                     AND mp.service_tier = 'standard'
                                     AND mp.effective_from <= '2099-01-02' AND (mp.effective_to IS NULL
                                          OR mp.effective_to > '2099-01-02')
                                   ORDER BY mp.effective_from DESC LIMIT 1) p ON true
              WHERE e.model NOT LIKE '%/%'
                AND (p.input_usd_per_1k IS DISTINCT FROM (e.value->>'input_cost_per_token')::numeric * 1000
                     OR p.output_usd_per_1k IS DISTINCT FROM (e.value->>'output_cost_per_token')::numeric * 1000
                     OR (e.value ? 'cache_read_input_token_cost'
                         AND p.cache_read_usd_per_1k IS DISTINCT FROM
                             (e.value->>'cache_read_input_token_cost')::numeric * 1000))",
            lit(&sample)
        ),
    );
    assert!(
        wrong.is_empty(),
        "prices in force differ from the catalog: {wrong:?}"
    );

    // The same document later: nothing added or changed, no rows written.
    let second = import(&mut admin, &sample, "2099-02-01 00:00:00+00").unwrap();
    assert_eq!(summary_count(&second, "added"), 0, "{second}");
    assert_eq!(summary_count(&second, "changed"), 0, "{second}");
    assert_eq!(prices(&mut owner), after_first, "{second}");

    // A new model: exact per-1K prices (1.5e-06 per token = 0.0015 per 1K).
    let new_model = r#"{"acme-exact-1": {"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 1.5e-06, "output_cost_per_token": 3.75e-06,
        "cache_read_input_token_cost": 1.5e-07}}"#;
    let third = import(&mut admin, new_model, "2099-02-15 00:00:00+00").unwrap();
    assert_eq!(summary_count(&third, "added"), 1, "{third}");
    let exact = text_rows(
        &mut owner,
        "SELECT (input_usd_per_1k = 0.0015 AND output_usd_per_1k = 0.00375 AND cache_read_usd_per_1k = 0.00015)::text,
                input_usd_per_1k::text, output_usd_per_1k::text, cache_read_usd_per_1k::text
           FROM usage_analytics.model_pricing WHERE provider = 'openai' AND model = 'acme-exact-1'",
    );
    assert_eq!(exact.len(), 1, "{exact:?}");
    assert_eq!(exact[0][0].as_deref(), Some("true"), "{exact:?}");

    // One price changed: exactly one new row from effective_from; history kept.
    let t = [10_000, 2000, 0, 0, 0, 0];
    let doc = canonical(t);
    owner
        .batch_execute(&format!(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model, \"timestamp\")
             VALUES (gen_random_uuid(), 'before-change', 'autogen', 'openai', 'chat', {}, {}, 'gpt-4.1',
                     '2099-02-28 12:00:00+00')",
            t[0], t[1]
        ))
        .unwrap();
    let old_cost = same(
        &mut owner,
        &oracle(
            "openai",
            "gpt-4.1",
            "standard",
            "'2099-02-28 12:00:00+00'",
            t,
            "cost",
        ),
        "SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'before-change'",
        "row recorded before the change",
    )
    .unwrap();
    let mut changed_doc: serde_json::Value = serde_json::from_str(&sample).unwrap();
    let old_input = changed_doc["gpt-4.1"]["input_cost_per_token"].clone();
    changed_doc["gpt-4.1"]["input_cost_per_token"] = serde_json::json!(1.5e-06);
    assert_ne!(old_input, changed_doc["gpt-4.1"]["input_cost_per_token"]);
    let before_change = prices(&mut owner);
    let fourth = import(&mut admin, &changed_doc.to_string(), "2099-03-01 00:00:00+00").unwrap();
    assert_eq!(summary_count(&fourth, "changed"), 1, "{fourth}");
    assert_eq!(summary_count(&fourth, "added"), 0, "{fourth}");
    let new_rows = text_rows(
        &mut owner,
        "SELECT provider, model, service_tier, input_usd_per_1k::text FROM usage_analytics.model_pricing
          WHERE effective_from = '2099-03-01 00:00:00+00' ORDER BY service_tier <> 'standard', service_tier",
    );
    assert_eq!(
        prices(&mut owner),
        before_change + new_rows.len() as i64,
        "{fourth}: {new_rows:?}"
    );
    assert!(!new_rows.is_empty(), "{fourth}: no new price row");
    assert!(
        new_rows.iter().all(|r| r[1].as_deref() == Some("gpt-4.1")),
        "{fourth}: {new_rows:?}"
    );
    let tiers = count(
        &mut owner,
        "SELECT count(DISTINCT service_tier) FROM usage_analytics.model_pricing WHERE model = 'gpt-4.1'",
    );
    assert!(new_rows.len() as i64 <= tiers, "{fourth}: {new_rows:?}");
    assert_eq!(new_rows[0][2].as_deref(), Some("standard"), "{new_rows:?}");
    same(
        &mut owner,
        "0.0015",
        &lit(new_rows[0][3].as_deref().unwrap()),
        "new input price",
    );
    same(
        &mut owner,
        &old_cost,
        "SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'before-change'",
        "row recorded before keeps its cost",
    );
    let at_old = same(
        &mut owner,
        &old_cost,
        &format!(
            "usage_analytics.calculate_cost('openai', 'gpt-4.1', {}::jsonb, '2099-02-28 12:00:00+00')",
            lit(&doc)
        ),
        "calculate_cost before the change",
    );
    let at_new = same(
        &mut owner,
        &oracle(
            "openai",
            "gpt-4.1",
            "standard",
            "'2099-03-02 00:00:00+00'",
            t,
            "cost",
        ),
        &format!(
            "usage_analytics.calculate_cost('openai', 'gpt-4.1', {}::jsonb, '2099-03-02 00:00:00+00')",
            lit(&doc)
        ),
        "calculate_cost after the change",
    );
    assert_ne!(at_old, at_new);

    // Malformed documents are refused whole, naming the key, writing nothing.
    let before_bad = prices(&mut owner);
    let audits = |c: &mut Client| {
        count(
            c,
            "SELECT count(*) FROM usage_analytics.admin_audit_log WHERE action = 'import_price_catalog'",
        )
    };
    let audited = audits(&mut owner);
    let valid_change = r#""gpt-4.1": {"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06}"#;
    for (bad, key) in [
        (
            format!(
                r#"{{{valid_change}, "bad-model-x": {{"litellm_provider": "openai", "mode": "chat",
                    "input_cost_per_token": "abc", "output_cost_per_token": 1e-06}}}}"#
            ),
            "bad-model-x",
        ),
        (format!(r#"{{{valid_change}, "weird-entry": 5}}"#), "weird-entry"),
        ("[1, 2]".to_string(), "catalog"),
    ] {
        let sql = format!(
            "SELECT usage_analytics.import_price_catalog({}::jsonb, 'litellm', '2099-04-01')",
            lit(&bad)
        );
        refused(&mut admin, &sql, "22023", key);
    }
    assert_eq!(prices(&mut owner), before_bad, "a refused import wrote prices");
    refused(
        &mut admin,
        "SELECT usage_analytics.import_price_catalog('{}', 'openrouter', '2099-04-01')",
        "22023",
        "format",
    );

    // Not an admin: 42501.
    let mut reader = cluster().connect_as(&db, &rdr);
    let err = import(&mut reader, new_model, "2099-05-01").unwrap_err();
    assert_eq!(db_error(&err).0, "42501", "{:?}", db_error(&err));
    assert_eq!(prices(&mut owner), before_bad);
    assert!(audited >= 4, "import_price_catalog audited {audited} times");
    assert_eq!(audits(&mut owner), audited, "refused imports audited as done");
}

/// (agent, provider, model, tier, tokens, caller cost, timestamp offset).
type RepriceRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    [i64; 6],
    Option<&'a str>,
    &'a str,
);

#[test]
fn reprice_rerates_rows_and_keeps_counters_monotonic() {
    let (db, mut owner) = setup("reprice");
    let (adm, rdr) = roles(&mut owner, &db);
    let mut admin = cluster().connect_as(&db, &adm);
    let base = scalar(&mut owner, "SELECT date_trunc('second', now())::text").unwrap();
    let ts = |offset: &str| format!("('{base}'::timestamptz + interval '{offset}')");
    // (agent, provider, model, tier, tokens, caller cost, timestamp offset)
    let rows: &[RepriceRow] = &[
        (
            "in-1",
            "openai",
            "gpt-4.1",
            "standard",
            [1000, 500, 200, 0, 0, 100],
            None,
            "-1 day",
        ),
        (
            "in-2",
            "openai",
            "gpt-4.1",
            "standard",
            [5000, 1000, 0, 0, 0, 0],
            None,
            "-1 day +1 minute",
        ),
        (
            "in-caller",
            "openai",
            "gpt-4.1",
            "standard",
            [1000, 1000, 0, 0, 0, 0],
            Some("0.42"),
            "-1 day +2 minutes",
        ),
        (
            "in-other-model",
            "anthropic",
            "claude-sonnet-4-5",
            "standard",
            [3000, 300, 1000, 500, 0, 0],
            None,
            "-1 day +3 minutes",
        ),
        (
            "out-of-range",
            "openai",
            "gpt-4.1",
            "standard",
            [2000, 100, 0, 0, 0, 0],
            None,
            "-2 days",
        ),
    ];
    for (agent, provider, model, tier, t, cost, offset) in rows {
        owner
            .batch_execute(&format!(
                "INSERT INTO usage_analytics.agent_usage_detailed
                     (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens,
                      cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens,
                      model, service_tier, cost_usd, \"timestamp\")
                 VALUES (gen_random_uuid(), '{agent}', 'autogen', '{provider}', 'chat', {}, {}, {}, {}, {}, {},
                         '{model}', '{tier}', {}, {})",
                t[0],
                t[1],
                t[2],
                t[3],
                t[4],
                t[5],
                cost.unwrap_or("DEFAULT"),
                ts(offset)
            ))
            .unwrap();
    }
    owner
        .batch_execute(&format!(
            "SELECT usage_analytics.rollup_range(({})::date, ({})::date)",
            ts("-3 days"),
            ts("0 days")
        ))
        .unwrap();
    owner
        .batch_execute(
            "CREATE TABLE public.before AS SELECT id, agent_id, cost_usd FROM usage_analytics.agent_usage_detailed",
        )
        .unwrap();
    // Prices go up from before the rows (gpt-4.1 and, outside the filter, claude).
    admin
        .batch_execute(&format!(
            "SELECT usage_analytics.set_model_price('openai', 'gpt-4.1', 0.003, 0.012, effective_from => {});
             SELECT usage_analytics.set_model_price('anthropic', 'claude-sonnet-4-5', 0.006, 0.03, effective_from => {});",
            ts("-3 days"),
            ts("-3 days")
        ))
        .unwrap();
    let repriced = |c: &mut Client, direction: &str| {
        scalar(
            c,
            &format!("SELECT coalesce(sum(usd), 0)::text FROM usage_analytics.metrics_repriced() WHERE direction = '{direction}'"),
        )
        .unwrap()
    };
    let oracle_rows = |agents: &str| {
        format!(
            "SELECT count(*)::numeric AS n,
                    sum((public.oracle_cost(u.provider, u.model, u.service_tier, u.\"timestamp\", u.input_tokens,
                         u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens,
                         u.reasoning_tokens)).cost - b.cost_usd) AS delta
               FROM usage_analytics.agent_usage_detailed u JOIN public.before b USING (id)
              WHERE u.agent_id IN ({agents})"
        )
    };

    for (step, input, output, direction) in [(1, "0.003", "0.012", "up"), (2, "0.0005", "0.002", "down")] {
        if step == 2 {
            admin
                .batch_execute(&format!(
                    "SELECT usage_analytics.set_model_price('openai', 'gpt-4.1', {input}, {output}, effective_from => {})",
                    ts("-2 days -12 hours")
                ))
                .unwrap();
            owner
                .batch_execute(
                    "TRUNCATE public.before;
                     INSERT INTO public.before SELECT id, agent_id, cost_usd FROM usage_analytics.agent_usage_detailed",
                )
                .unwrap();
        }
        let (up0, down0) = (repriced(&mut owner, "up"), repriced(&mut owner, "down"));
        // The oracle's expectation, computed before reprice runs.
        let expected = text_rows(&mut owner, &oracle_rows("'in-1', 'in-2'"));
        let (want_rows, want_delta) = (expected[0][0].clone().unwrap(), expected[0][1].clone().unwrap());
        let result = text_rows(
            &mut admin,
            &format!(
                "SELECT r::text, r->>'rows', r->>'cost_delta_usd'
                   FROM usage_analytics.reprice({}, {}, '{{\"model\": \"gpt-4.1\"}}') r",
                ts("-36 hours"),
                ts("0 days")
            ),
        );
        let result_text = result[0][0].clone().unwrap_or_default();
        let got_rows = lit(result[0][1].as_deref().unwrap_or("NaN"));
        let got_delta = result[0][2].clone().unwrap_or_else(|| "NaN".to_string());
        same(
            &mut owner,
            &want_rows,
            &got_rows,
            &format!("step {step}: rows of {result_text}"),
        );
        same(
            &mut owner,
            &want_delta,
            &lit(&got_delta),
            &format!("step {step}: cost_delta_usd of {result_text}"),
        );
        same(
            &mut owner,
            &want_delta,
            "SELECT sum(u.cost_usd - b.cost_usd) FROM usage_analytics.agent_usage_detailed u JOIN public.before b USING (id)",
            &format!("step {step}: sum of the rows' differences"),
        );
        let sign = scalar(
            &mut owner,
            &format!("SELECT sign({want_delta}::numeric)::int::text"),
        )
        .unwrap();
        assert_eq!(
            sign,
            if direction == "up" { "1" } else { "-1" },
            "step {step}: delta {want_delta}"
        );
        // The re-rated rows equal the oracle, cache savings included.
        for agent in ["in-1", "in-2"] {
            let row = format!("FROM usage_analytics.agent_usage_detailed u WHERE agent_id = '{agent}'");
            let args = "u.provider, u.model, u.service_tier, u.\"timestamp\", u.input_tokens, u.output_tokens,
                        u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens, u.reasoning_tokens";
            same(
                &mut owner,
                &format!("SELECT (public.oracle_cost({args})).cost {row}"),
                &format!("SELECT cost_usd {row}"),
                &format!("step {step}: {agent} cost"),
            );
            same(
                &mut owner,
                &format!("SELECT (public.oracle_cost({args})).savings {row}"),
                &format!("SELECT cache_savings_usd {row}"),
                &format!("step {step}: {agent} cache savings"),
            );
            assert_eq!(
                scalar(&mut owner, &format!("SELECT cost_source {row}")).as_deref(),
                Some("catalog")
            );
        }
        // Caller rows, rows outside the range or the filters: untouched.
        for agent in ["in-caller", "out-of-range", "in-other-model"] {
            same(
                &mut owner,
                &format!("SELECT cost_usd FROM public.before WHERE agent_id = '{agent}'"),
                &format!(
                    "SELECT cost_usd FROM usage_analytics.agent_usage_detailed WHERE agent_id = '{agent}'"
                ),
                &format!("step {step}: {agent} untouched"),
            );
        }
        assert_eq!(
            scalar(
                &mut owner,
                "SELECT cost_source FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'in-caller'"
            )
            .as_deref(),
            Some("caller")
        );
        // The exporter's counters carry the change, and only grow.
        let (up1, down1) = (repriced(&mut owner, "up"), repriced(&mut owner, "down"));
        let (grew, stayed, moved) = if direction == "up" {
            (&up1, (&down0, &down1), &up0)
        } else {
            (&down1, (&up0, &up1), &down0)
        };
        same(
            &mut owner,
            &format!("{}::numeric + abs({want_delta}::numeric)", lit(moved)),
            &lit(grew),
            &format!("step {step}: metrics_repriced {direction}"),
        );
        same(
            &mut owner,
            &lit(stayed.0),
            &lit(stayed.1),
            &format!("step {step}: other direction"),
        );

        // The summary (rollups included) equals the raw rows.
        let summary = "(SELECT usage_analytics.get_usage_summary('{}'))";
        same(
            &mut owner,
            "SELECT sum(cost_usd) FROM usage_analytics.agent_usage_detailed",
            &format!("SELECT ({summary}->>'total_cost_usd')::numeric"),
            &format!("step {step}: total_cost_usd"),
        );
        let by = text_rows(
            &mut owner,
            &format!(
                "SELECT g.k, g.s::text, ({summary}->'{0}'->>g.k)
                   FROM (SELECT {1} AS k, sum(cost_usd) AS s FROM usage_analytics.agent_usage_detailed GROUP BY 1) g
                  WHERE g.s IS DISTINCT FROM ({summary}->'{0}'->>g.k)::numeric
                 UNION ALL
                 SELECT '{0} keys', count(*)::text, (SELECT count(*) FROM jsonb_object_keys({summary}->'{0}'))::text
                   FROM (SELECT DISTINCT {1} FROM usage_analytics.agent_usage_detailed) d
                 HAVING count(*) <> (SELECT count(*) FROM jsonb_object_keys({summary}->'{0}'))",
                "cost_by_provider", "provider"
            ),
        );
        assert!(by.is_empty(), "step {step}: cost_by_provider differs: {by:?}");
        let by = text_rows(
            &mut owner,
            &format!(
                "SELECT g.k, g.s::text, ({summary}->'cost_by_framework'->>g.k)
                   FROM (SELECT framework AS k, sum(cost_usd) AS s FROM usage_analytics.agent_usage_detailed GROUP BY 1) g
                  WHERE g.s IS DISTINCT FROM ({summary}->'cost_by_framework'->>g.k)::numeric"
            ),
        );
        assert!(by.is_empty(), "step {step}: cost_by_framework differs: {by:?}");
    }
    assert!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.admin_audit_log WHERE action = 'reprice'"
        ) >= 2,
        "reprice not audited"
    );

    // A reader may not reprice; bad ranges are refused.
    let mut reader = cluster().connect_as(&db, &rdr);
    refused(
        &mut reader,
        "SELECT usage_analytics.reprice(now() - interval '1 day', now())",
        "42501",
        "reprice",
    );
    for (from, to) in [
        ("now()", "now() - interval '1 day'"),
        ("now()", "now()"),
        ("NULL", "now()"),
        ("now() - interval '1 day'", "NULL"),
        ("'-infinity'", "now()"),
        ("now()", "'infinity'"),
    ] {
        refused(
            &mut admin,
            &format!("SELECT usage_analytics.reprice({from}, {to})"),
            "22023",
            "from_ts|to_ts|range",
        );
    }
}

/// (bad document, the key its error must name; `|` separates alternatives).
const BAD_DOCS: &[(&str, &str)] = &[
    (r#"{"input_tokens": -1}"#, "input_tokens"),
    (r#"{"prompt_tokens": 1.5}"#, "prompt_tokens"),
    (r#"{"output_tokens": "12"}"#, "output_tokens"),
    (r#"{"input_tokens": 3000000000}"#, "input_tokens"),
    (
        r#"{"promptTokenCount": 100, "thoughtsTokenCount": -3}"#,
        "thoughtsTokenCount",
    ),
    (
        r#"{"input_tokens": 10, "cache_read_input_tokens": "5"}"#,
        "cache_read_input_tokens",
    ),
    (
        r#"{"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}"#,
        "cached_tokens",
    ),
    (
        r#"{"input_tokens": 10, "input_tokens_details": {"cached_tokens": 11}}"#,
        "cached_tokens",
    ),
    (
        r#"{"completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 11}}"#,
        "reasoning_tokens",
    ),
    (
        r#"{"promptTokenCount": 10, "cachedContentTokenCount": 11}"#,
        "cachedContentTokenCount",
    ),
    (
        r#"{"gen_ai.usage.input_tokens": 10, "gen_ai.usage.cache_read.input_tokens": 11}"#,
        "gen_ai.usage.cache_read.input_tokens",
    ),
    (
        r#"{"gen_ai.usage.output_tokens": 10, "gen_ai.usage.reasoning.output_tokens": 11}"#,
        "gen_ai.usage.reasoning.output_tokens",
    ),
    (
        r#"{"input_tokens": 10, "cache_read_tokens": 11}"#,
        "cache_read_tokens",
    ),
    (
        r#"{"input_tokens": 10, "output_tokens": 5, "reasoning_tokens": 6}"#,
        "reasoning_tokens",
    ),
    (
        r#"{"input_tokens": 10, "cache_creation_input_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 3}}"#,
        "cache_creation",
    ),
    (
        r#"{"prompt_tokens": 10, "promptTokenCount": 10}"#,
        "prompt_tokens|promptTokenCount",
    ),
    (
        r#"{"prompt_tokens": 10, "cache_read_input_tokens": 3}"#,
        "prompt_tokens|cache_read_input_tokens",
    ),
    (
        r#"{"input_tokens": 10, "cache_read_input_tokens": 5, "cache_read_tokens": 3}"#,
        "cache_read_tokens|cache_read_input_tokens",
    ),
    (
        r#"{"gen_ai.usage.input_tokens": 10, "prompt_tokens": 10}"#,
        "prompt_tokens|gen_ai.usage.input_tokens",
    ),
    (r#"[1]"#, "usage"),
];

/// Mixed shapes whose shared-looking keys disagree: silently picking one
/// would lose tokens.
const CONFLICTING_DOCS: &[(&str, &str)] = &[
    (
        r#"{"prompt_tokens": 10, "input_tokens": 20}"#,
        "prompt_tokens|input_tokens",
    ),
    (
        r#"{"input_tokens": 10, "promptTokenCount": 20}"#,
        "input_tokens|promptTokenCount",
    ),
    (
        r#"{"input_tokens": 10, "gen_ai.usage.input_tokens": 20}"#,
        "input_tokens|gen_ai.usage.input_tokens",
    ),
];

fn assert_refused_everywhere(client: &mut Client, docs: &[(&str, &str)]) {
    let before = usage_rows(client);
    for (doc, key) in docs {
        for sql in [
            format!("SELECT usage_analytics.normalize_usage('openai', {}::jsonb)", lit(doc)),
            format!("SELECT usage_analytics.calculate_cost('openai', 'gpt-4.1', {}::jsonb)", lit(doc)),
            format!(
                "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'bad-doc', NULL, 'langchain', 'openai',
                        'chat', NULL, NULL, 25, true, NULL, '{{}}', 'gpt-4.1', usage => {}::jsonb)",
                lit(doc)
            ),
        ] {
            refused(client, &sql, "22023", key);
        }
    }
    assert_eq!(usage_rows(client), before, "refused documents wrote rows");
    let counters = scalar(client, "SELECT count(*) FROM usage_analytics.usage_counters");
    assert_eq!(counters.as_deref(), Some("0"), "refused documents moved counters");
}

#[test]
fn bad_usage_documents_name_the_key_and_write_nothing() {
    let (_db, mut client) = setup("baddocs");
    assert_refused_everywhere(&mut client, BAD_DOCS);
}

#[test]
fn conflicting_mixed_shapes_are_refused() {
    let (_db, mut client) = setup("conflicting");
    assert_refused_everywhere(&mut client, CONFLICTING_DOCS);
}

#[test]
fn summary_class_totals_and_efficiency_equal_raw_sql() {
    let (_db, mut client) = setup("summary");
    for (i, (_label, provider, model, doc, _)) in SHAPES.iter().enumerate() {
        if model.starts_with("house-") {
            continue;
        }
        let metadata = if i % 2 == 0 {
            "{}"
        } else {
            r#"{"service_tier": "batch"}"#
        };
        track(&mut client, &format!("agent-{i}"), provider, model, metadata, doc);
    }
    client
        .batch_execute(
            "INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens,
                  cache_read_tokens, model, cost_usd)
             VALUES (gen_random_uuid(), 'caller', 'autogen', 'openai', 'chat', 700, 70, 100, 'gpt-4.1', 0.0123);
             INSERT INTO usage_analytics.agent_usage_detailed
                 (user_id, agent_id, framework, provider, message_type, input_tokens, output_tokens, model)
             VALUES (gen_random_uuid(), 'unpriced', 'autogen', 'other', 'chat', 500, 50, 'nobody-knows-this-model'),
                    (gen_random_uuid(), 'zero', 'autogen', 'openai', 'chat', 0, 0, 'gpt-4.1');",
        )
        .unwrap();
    // Each catalog-priced row's savings equal the oracle.
    let wrong = text_rows(
        &mut client,
        "SELECT agent_id, cache_savings_usd::text, o.savings::text
           FROM usage_analytics.agent_usage_detailed u,
                LATERAL public.oracle_cost(u.provider, u.model, u.service_tier, u.\"timestamp\", u.input_tokens,
                        u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens,
                        u.reasoning_tokens) o
          WHERE u.cost_source = 'catalog'
            AND (u.cache_savings_usd IS DISTINCT FROM o.savings OR u.cost_usd IS DISTINCT FROM o.cost)",
    );
    assert!(wrong.is_empty(), "rows differ from the oracle: {wrong:?}");
    assert!(
        count(
            &mut client,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE cache_savings_usd > 0"
        ) >= 3
    );

    for filter in [
        "{}",
        r#"{"provider": "openai"}"#,
        r#"{"agent_id": "zero"}"#,
        r#"{"agent_id": "unpriced"}"#,
    ] {
        let rows = format!(
            "FROM usage_analytics.agent_usage_detailed WHERE {}",
            match filter {
                "{}" => "true".to_string(),
                _ => {
                    let v: serde_json::Value = serde_json::from_str(filter).unwrap();
                    let (k, val) = v.as_object().unwrap().iter().next().unwrap();
                    format!("{k} = {}", lit(val.as_str().unwrap()))
                }
            }
        );
        let s = format!("(SELECT usage_analytics.get_usage_summary({}))", lit(filter));
        let exact = [
            ("total_cost_usd", format!("SELECT sum(cost_usd) {rows}")),
            (
                "cache_read_tokens",
                format!("SELECT coalesce(sum(cache_read_tokens), 0) {rows}"),
            ),
            (
                "cache_write_tokens",
                format!("SELECT coalesce(sum(cache_write_tokens + cache_write_1h_tokens), 0) {rows}"),
            ),
            (
                "reasoning_tokens",
                format!("SELECT coalesce(sum(reasoning_tokens), 0) {rows}"),
            ),
            (
                "cache_savings_usd",
                format!("SELECT sum(cache_savings_usd) {rows}"),
            ),
            (
                "unpriced_requests",
                format!("SELECT count(*) FILTER (WHERE cost_usd IS NULL) {rows}"),
            ),
        ];
        for (key, raw) in exact {
            let summary_value = format!("SELECT ({s}->>'{key}')::numeric");
            if key == "total_cost_usd" || key == "cache_savings_usd" {
                // A sum over no priced rows may be reported as NULL or 0.
                same(
                    &mut client,
                    &format!("coalesce(({raw}), 0)"),
                    &format!("coalesce(({summary_value}), 0)"),
                    &format!("{filter}: {key}"),
                );
            } else {
                same(&mut client, &raw, &summary_value, &format!("{filter}: {key}"));
            }
        }
        close(
            &mut client,
            &format!("SELECT sum(cost_usd) / nullif(count(cost_usd), 0) {rows}"),
            &format!("SELECT ({s}->>'cost_per_request_usd')::numeric"),
            &format!("{filter}: cost_per_request_usd"),
        );
        close(
            &mut client,
            &format!(
                "SELECT sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NOT NULL)::numeric
                        / nullif(sum(cost_usd), 0) {rows}"
            ),
            &format!("SELECT ({s}->>'tokens_per_usd')::numeric"),
            &format!("{filter}: tokens_per_usd"),
        );
    }
    // The edge cases really are edge cases.
    let s = |f: &str| format!("SELECT usage_analytics.get_usage_summary('{f}')->>'tokens_per_usd'");
    assert_eq!(scalar(&mut client, &s(r#"{"agent_id": "zero"}"#)), None);
    let s = |f: &str| format!("SELECT usage_analytics.get_usage_summary('{f}')->>'cost_per_request_usd'");
    assert_eq!(scalar(&mut client, &s(r#"{"agent_id": "unpriced"}"#)), None);
}
