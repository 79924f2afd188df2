//! In-database tests (`cargo pgrx test`): what needs a real backend. The
//! end-to-end suites in `tests/` cover roles, sessions and the exporter.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn text(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).unwrap()
    }

    #[pg_test]
    fn tracks_and_prices_a_request() {
        let id = Spi::get_one::<pgrx::Uuid>(
            "SELECT usage_analytics.track_detailed_usage('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'agent-1', \
             'Agent', 'LangChain', 'OpenAI', 'chat', 1234, 567, 850, true, NULL, '{\"action\":\"x\"}', \
             'gpt-4o-2024-08-06')",
        )
        .unwrap()
        .unwrap();
        let (cost, model) = Spi::get_two_with_args::<String, String>(
            "SELECT cost_usd::text, model FROM usage_analytics.agent_usage_detailed WHERE id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(cost.as_deref(), Some("0.008755"));
        // The shipped catalog prices the dated snapshot itself.
        assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            text("SELECT sum(requests)::text FROM usage_analytics.metrics_usage_counters()").as_deref(),
            Some("1")
        );
    }

    #[pg_test]
    fn costs_reach_postgres_as_numeric_in_reads_their_text() {
        use crate::numerics::{decimal_of, to_numeric};
        use std::str::FromStr;
        for text in [
            "0",
            "0.00",
            "1",
            "-1.5",
            "12.5",
            "0.000045",
            "0.008755",
            "10000",
            "9999.9999",
            "100000000",
            "12345678901234567890.123456789",
            "0.0000000000000000000000000001",
            "79228162514264337593543950335",
            "-7.9228162514264337593543950335",
            "1.2300",
            "-0.000000000000000001",
        ] {
            let cost = rust_decimal::Decimal::from_str(text).unwrap();
            let numeric = to_numeric(cost);
            // The same text and the same stored bytes as numeric_in's.
            let same = Spi::get_one_with_args::<bool>(
                "SELECT $1::text = $2::numeric::text AND $1::text = $3 \
                    AND textsend($1::text) = textsend($2::numeric::text) \
                    AND pg_column_size($1) = pg_column_size($2::numeric) \
                    AND numeric_send($1) = numeric_send($2::numeric)",
                &[numeric.clone().into(), text.into(), cost.to_string().into()],
            )
            .unwrap();
            assert_eq!(same, Some(true), "{text}");
            // And read back, from numeric_in's datum too.
            let theirs = Spi::get_one_with_args::<pgrx::AnyNumeric>("SELECT $1::numeric", &[text.into()])
                .unwrap()
                .unwrap();
            for datum in [numeric, theirs] {
                let read = unsafe { decimal_of(datum.into_datum().unwrap()) };
                assert_eq!(read.map(|d| d.to_string()), Some(cost.to_string()), "{text}");
            }
        }
        // What no decimal holds exactly is left to numeric arithmetic.
        for text in [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e-29",
            "1e-70",
            "79228162514264337593543950336",
            "1e40",
        ] {
            let theirs = Spi::get_one_with_args::<pgrx::AnyNumeric>("SELECT $1::numeric", &[text.into()])
                .unwrap()
                .unwrap();
            assert_eq!(
                unsafe { decimal_of(theirs.into_datum().unwrap()) },
                None,
                "{text}"
            );
        }
    }

    /// The counting trigger sums costs in decimals; a cost no decimal holds
    /// (30 fraction digits) and a sum that outgrows one (two costs near
    /// 2^96) must come out exactly as SQL sums them, in every bookkeeping
    /// table, and again after a DELETE of the large ones.
    #[pg_test]
    fn bookkeeping_sums_costs_no_decimal_holds() {
        Spi::run(
            "INSERT INTO usage_analytics.agent_usage_detailed \
                 (user_id, agent_id, provider, model, input_tokens, output_tokens, cost_usd, \"timestamp\") \
             SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'agent-sum', 'openai', 'gpt-4o', 1, 1, c, \
                    '2026-01-01T12:00:00Z' \
               FROM unnest(ARRAY[79228162514264337593543950335, 0.25, 79228162514264337593543950335, \
                                 0.000000000000000000000000000001, 1.5]) AS c",
        )
        .unwrap();
        let raw = "158456325028528675187087900671.750000000000000000000000000001";
        let sums = [
            "SELECT sum(cost_usd)::text FROM usage_analytics.agent_usage_detailed",
            "SELECT sum(total_cost_usd)::text FROM usage_analytics.usage_daily_totals",
            "SELECT sum(cost_usd)::text FROM usage_analytics.usage_daily_user",
            "SELECT sum(cost_usd)::text FROM usage_analytics.metrics_usage_counters()",
        ];
        for sql in sums {
            assert_eq!(text(sql).as_deref(), Some(raw), "{sql}");
        }
        Spi::run("DELETE FROM usage_analytics.agent_usage_detailed WHERE cost_usd > 2").unwrap();
        let left = "1.750000000000000000000000000001";
        for sql in &sums[..3] {
            assert_eq!(text(sql).as_deref(), Some(left), "{sql}");
        }
    }

    #[pg_test]
    fn a_price_change_is_seen_by_the_next_statement_of_the_same_transaction() {
        assert_eq!(
            text("SELECT usage_analytics.calculate_cost('google', NULL, 1000, 1000)::text").as_deref(),
            Some("0.000375")
        );
        Spi::run("UPDATE usage_analytics.provider_default_model SET model = 'gemini-1.5-pro' WHERE provider = 'google'")
            .unwrap();
        assert_eq!(
            text("SELECT usage_analytics.calculate_cost('google', NULL, 1000, 1000)::text").as_deref(),
            Some("0.00625")
        );
    }

    #[pg_test]
    fn unknown_models_stay_unpriced() {
        assert_eq!(
            text("SELECT usage_analytics.calculate_cost('openai', 'no-such-model-9', 10, 10)::text"),
            None
        );
        assert_eq!(
            text("SELECT usage_analytics.resolve_model('openai', 'no-such-model-9')"),
            None
        );
    }

    #[pg_test(error = "track_detailed_usage: invalid input_tokens: must be >= 0, got -1")]
    fn negative_tokens_are_an_error() {
        Spi::run(
            "SELECT usage_analytics.track_detailed_usage(gen_random_uuid(), 'a', NULL, 'f', 'openai', 'chat', \
             -1, 0, 0, true)",
        )
        .unwrap();
    }

    /// Only compiled into test builds: proves a Rust panic inside the
    /// extension becomes an ordinary ERROR (panic = "unwind" + pgrx guards).
    #[pg_extern]
    fn deliberately_panics() -> i32 {
        panic!("deliberate panic inside the extension")
    }

    #[pg_test(error = "deliberate panic inside the extension")]
    fn a_panic_surfaces_as_an_error_not_a_crash() {
        Spi::get_one::<i32>("SELECT tests.deliberately_panics()").unwrap();
    }
}
