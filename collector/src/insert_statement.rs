//! The writer's one statement, shaped to the usage table it finds.
//!
//! * [`insert_sql`]: `collector_claim_spans` claims the rows' ids in
//!   usage_analytics.collector_spans, and a multi-row `INSERT … SELECT FROM unnest(…)`
//!   inserts the rows whose ids were claimed, each column one array parameter.
//! * [`SchemaCache`]: which optional columns (the token classes, service_tier) the table
//!   has, looked up in pg_attribute again every 30 s and after a failed batch, so the
//!   collector works before and after the extension's upgrade that adds them.
//! * [`Params`]: a batch of rows as those arrays, in the statement's parameter order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use deadpool_postgres::Object;
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use usage_analytics_core::usage::TokenUsage;
use uuid::Uuid;

use crate::db::DbError;
use crate::mapping::UsageRow;

/// Optional columns of the usage table the collector fills when they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Optional {
    CacheRead,
    CacheWrite,
    CacheWrite1h,
    Reasoning,
    ServiceTier,
}

const OPTIONAL: &[(Optional, &str, &str)] = &[
    (Optional::CacheRead, "cache_read_tokens", "int4"),
    (Optional::CacheWrite, "cache_write_tokens", "int4"),
    (Optional::CacheWrite1h, "cache_write_1h_tokens", "int4"),
    (Optional::Reasoning, "reasoning_tokens", "int4"),
    (Optional::ServiceTier, "service_tier", "text"),
];

/// The always-present columns, in parameter order after id ($1) and timestamp ($2).
const BASE: &[(&str, &str)] = &[
    ("user_id", "uuid"),
    ("agent_id", "text"),
    ("agent_name", "text"),
    ("framework", "text"),
    ("provider", "text"),
    ("message_type", "text"),
    ("model", "text"),
    ("input_tokens", "int4"),
    ("output_tokens", "int4"),
    ("response_time_ms", "int4"),
    ("success", "bool"),
    ("error_message", "text"),
    ("request_metadata", "jsonb"),
];

/// What the usage table looks like here, and the batch statement for it.
#[derive(Debug)]
pub struct Schema {
    optional: Vec<Optional>,
    pub sql: String,
}

impl Schema {
    fn new(columns: &HashSet<String>) -> Schema {
        let optional: Vec<Optional> = OPTIONAL
            .iter()
            .filter(|(_, name, _)| columns.contains(*name))
            .map(|(o, _, _)| *o)
            .collect();
        Schema {
            sql: insert_sql(&optional),
            optional,
        }
    }
}

/// The batch statement for these optional columns.
fn insert_sql(optional: &[Optional]) -> String {
    let mut cols = vec![("id", "uuid"), ("\"timestamp\"", "timestamptz")];
    cols.extend(BASE.iter().copied());
    for o in optional {
        let (_, name, ty) = OPTIONAL.iter().find(|(x, _, _)| x == o).expect("known column");
        cols.push((name, ty));
    }
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let arrays: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    let aliases: Vec<String> = (1..=cols.len()).map(|i| format!("c{i}")).collect();
    format!(
        "WITH claimed AS MATERIALIZED (\n\
         \x20   SELECT c.id FROM usage_analytics.collector_claim_spans($1::uuid[], $2::timestamptz[]) AS c(id)\n\
         )\n\
         INSERT INTO usage_analytics.agent_usage_detailed ({})\n\
         SELECT {} FROM unnest({}) AS r({})\n\
         WHERE r.c1 IN (SELECT id FROM claimed)",
        names.join(", "),
        aliases.iter().map(|a| format!("r.{a}")).collect::<Vec<_>>().join(", "),
        arrays.join(", "),
        aliases.join(", "),
    )
}

/// How long a looked-up schema is trusted.
const SCHEMA_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct SchemaCache(Mutex<Option<(Instant, Arc<Schema>)>>);

impl SchemaCache {
    pub fn invalidate(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub async fn get(&self, client: &Object) -> Result<Arc<Schema>, DbError> {
        if let Some((at, s)) = &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < SCHEMA_TTL {
                return Ok(s.clone());
            }
        }
        let row = client
            .query_one(
                "SELECT coalesce((SELECT array_agg(attname::text) FROM pg_catalog.pg_attribute \
                   WHERE attrelid = to_regclass('usage_analytics.agent_usage_detailed') \
                     AND attnum > 0 AND NOT attisdropped), '{}'), \
                 to_regprocedure('usage_analytics.collector_claim_spans(uuid[], timestamptz[])') IS NOT NULL",
                &[],
            )
            .await
            .map_err(DbError::Query)?;
        let columns: Vec<String> = row.get(0);
        let claim_exists: bool = row.get(1);
        if columns.is_empty() || !claim_exists {
            return Err(DbError::Missing(
                "usage_analytics.agent_usage_detailed or usage_analytics.collector_claim_spans is missing \
                 (install or update the pg_usage_analytics extension in this database)"
                    .into(),
            ));
        }
        let schema = Arc::new(Schema::new(&columns.into_iter().collect()));
        tracing::debug!(optional = ?schema.optional, "usage table columns looked up");
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), schema.clone()));
        Ok(schema)
    }
}

/// The batch's columns as arrays, one per parameter.
pub struct Params<'a> {
    ids: Vec<Uuid>,
    ts: Vec<SystemTime>,
    user_id: Vec<Uuid>,
    text: [Vec<Option<&'a str>>; 7],
    int: Vec<Vec<i32>>,
    response_time: Vec<Option<i32>>,
    success: Vec<bool>,
    metadata: Vec<&'a serde_json::Value>,
    tier: Option<Vec<&'a str>>,
}

/// A token count for an integer column (normalize_usage bounds every class to it).
fn token_column(tokens: i64) -> i32 {
    i32::try_from(tokens).expect("token counts are bounded by core::usage::MAX_TOKENS")
}

impl<'a> Params<'a> {
    pub fn new(rows: &[&'a UsageRow], schema: &Schema) -> Params<'a> {
        let n = rows.len();
        let col = |f: fn(&'a UsageRow) -> Option<&'a str>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let tokens = |class: fn(&TokenUsage) -> i64| -> Vec<i32> {
            rows.iter().map(|r| token_column(class(&r.tokens))).collect()
        };
        let mut int = vec![tokens(|t| t.input_tokens), tokens(|t| t.output_tokens)];
        for o in &schema.optional {
            int.extend(match o {
                Optional::CacheRead => Some(tokens(|t| t.cache_read_tokens)),
                Optional::CacheWrite => Some(tokens(|t| t.cache_write_tokens)),
                Optional::CacheWrite1h => Some(tokens(|t| t.cache_write_1h_tokens)),
                Optional::Reasoning => Some(tokens(|t| t.reasoning_tokens)),
                Optional::ServiceTier => None,
            });
        }
        Params {
            ids: rows.iter().map(|r| r.id).collect(),
            ts: rows.iter().map(|r| r.timestamp).collect(),
            user_id: rows.iter().map(|r| r.user_id).collect(),
            text: [
                col(|r| Some(r.agent_id.as_str())),
                col(|r| r.agent_name.as_deref()),
                col(|r| r.framework.as_deref()),
                col(|r| r.provider.as_deref()),
                col(|r| r.message_type.as_deref()),
                col(|r| r.model.as_deref()),
                col(|r| r.error_message.as_deref()),
            ],
            int,
            response_time: rows.iter().map(|r| r.response_time_ms).collect(),
            success: rows.iter().map(|r| r.success).collect(),
            metadata: rows.iter().map(|r| &r.metadata).collect(),
            tier: schema
                .optional
                .contains(&Optional::ServiceTier)
                .then(|| rows.iter().map(|r| r.service_tier).collect::<Vec<_>>())
                .filter(|v| v.len() == n),
        }
    }

    /// In the statement's parameter order (see [`insert_sql`]).
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        let [agent_id, agent_name, framework, provider, message_type, model, error_message] = &self.text;
        let mut out: Vec<&(dyn ToSql + Sync)> = vec![
            &self.ids,
            &self.ts,
            &self.user_id,
            agent_id,
            agent_name,
            framework,
            provider,
            message_type,
            model,
            &self.int[0],
            &self.int[1],
            &self.response_time,
            &self.success,
            error_message,
            &self.metadata,
        ];
        for ints in &self.int[2..] {
            out.push(ints);
        }
        if let Some(tier) = &self.tier {
            out.push(tier);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_lists_the_columns_it_has() {
        let sql = insert_sql(&[]);
        assert!(
            sql.contains("collector_claim_spans($1::uuid[], $2::timestamptz[])"),
            "{sql}"
        );
        assert!(sql.contains("$15::jsonb[]"), "{sql}");
        assert!(!sql.contains("$16"), "{sql}");
        assert!(!sql.contains("cache_read_tokens"), "{sql}");
        assert!(sql.contains("WHERE r.c1 IN (SELECT id FROM claimed)"), "{sql}");

        let all: HashSet<String> = OPTIONAL.iter().map(|(_, n, _)| n.to_string()).collect();
        let schema = Schema::new(&all);
        assert_eq!(schema.optional.len(), 5);
        assert!(schema.sql.contains(
            "cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, service_tier"
        ));
        assert!(schema.sql.contains("$19::int4[], $20::text[]"), "{}", schema.sql);
    }

    #[test]
    fn parameters_match_the_statement() {
        let row = UsageRow {
            id: Uuid::from_u128(1),
            timestamp: SystemTime::UNIX_EPOCH,
            user_id: Uuid::nil(),
            agent_id: "a".into(),
            agent_name: None,
            framework: None,
            provider: Some("openai".into()),
            message_type: None,
            model: None,
            tokens: Default::default(),
            service_tier: "flex",
            response_time_ms: Some(5),
            success: true,
            error_message: None,
            metadata: serde_json::json!({}),
        };
        for cols in [
            vec![],
            OPTIONAL.iter().map(|(_, n, _)| n.to_string()).collect::<Vec<_>>(),
        ] {
            let schema = Schema::new(&cols.into_iter().collect());
            let params = Params::new(&[&row, &row], &schema);
            let n = schema.sql.matches("[]").count() - 2; // the claim's two arrays
            assert_eq!(params.refs().len(), n, "{}", schema.sql);
        }
    }
}
