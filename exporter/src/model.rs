//! Plain data read from the database, shared by the db and exposition modules.

/// One row of `usage_analytics.metrics_usage_counters()`: lifetime totals for one label set.
/// NULL text columns are read as "" (the contract's "unknown"); NULL numbers as 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    pub provider: String,
    pub framework: String,
    pub agent_id: String,
    pub model: String,
    pub message_type: String,
    /// `None` when the database says NULL; exported as status="error".
    pub success: Option<bool>,
    pub requests: i64,
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub cost_usd: f64,
    pub unpriced_requests: i64,
    pub response_time_count: i64,
    pub response_time_sum_seconds: f64,
    /// Cumulative counts, one per bucket bound; `None` when the column is NULL.
    pub response_time_buckets: Option<Vec<i64>>,
}

/// Everything read on every scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub rows: Vec<UsageRow>,
    /// `metrics_response_time_bucket_bounds()`, seconds.
    pub bucket_bounds: Vec<f64>,
    /// `metrics_rollup_last_success()` as Unix seconds; `None` when no rollup ran.
    pub rollup_last_success: Option<f64>,
}

/// One row of `metrics_top_users(n)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopUser {
    pub rank: i32,
    pub user_id: String,
    pub cost_usd: f64,
}

/// The expensive gauges, refreshed at most every --gauge-refresh-interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// (window, users) from `metrics_active_users()`.
    pub active_users: Vec<(String, i64)>,
    pub top_users: Vec<TopUser>,
}

/// The exporter's own health, always exported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExporterStatus {
    pub up: bool,
    pub scrape_duration_seconds: f64,
    pub scrape_errors_total: u64,
    /// Failed refreshes of the cached gauges since the start.
    pub gauge_refresh_errors_total: u64,
    /// The last gauge refresh failed: the cached gauges predate it.
    pub gauges_stale: bool,
    /// Age of the cached gauges served by this scrape; `None` when none are served.
    pub gauges_age_seconds: Option<f64>,
}
