//! The pure logic of pg_usage_analytics, free of Postgres so it is tested
//! (unit, property and fuzz tests) without a database: model resolution and
//! exact pricing, usage normalization, the LiteLLM catalog import, decimals in PostgreSQL's binary numeric format, the filter parser, CSV writing, input validation and the rollups' action ranking.

pub mod catalog;
pub mod csv;
pub mod filters;
pub mod hll;
pub mod numeric;
pub mod pricing;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod proptests_cost;
pub mod top_actions;
pub mod usage;
pub mod validate;
