//! Distinct users per window, from `usage_analytics.metrics_active_users()`
//! (HyperLogLog sketches: the same cost at a million users as at ten). Cached:
//! refreshed at most every --gauge-refresh-interval.

use tokio_postgres::Row;

use super::{Collector, Options, Output, Tier};
use crate::db::{column, DbError, Query};
use crate::exposition::{Desc, Family, MetricType};

pub static ACTIVE_USERS: Desc = Desc {
    name: "ai_usage_active_users",
    kind: MetricType::Gauge,
    help: "Distinct users with at least one request in the window (1h, 24h, 30d). Refreshed at most every --gauge-refresh-interval.",
    labels: &["window"],
};

const SQL: &str = "SELECT \"window\"::text, users::int8 FROM usage_analytics.metrics_active_users()";

pub struct ActiveUsers;

impl Collector for ActiveUsers {
    /// (window, users), in the database's order.
    type Data = Vec<(String, i64)>;
    const METRICS: &'static [&'static Desc] = &[&ACTIVE_USERS];
    const TIER: Tier = Tier::Cached;

    fn queries(_: &Options) -> Vec<Query> {
        vec![Query::new(SQL)]
    }

    fn read(results: &[Vec<Row>]) -> Result<Self::Data, DbError> {
        column::rows(results, 0, "metrics_active_users")?
            .iter()
            .map(|r| Ok((column::text(r, "window")?, column::int8(r, "users")?)))
            .collect()
    }

    fn collect(data: &Self::Data, out: &mut Output) {
        let mut f = Family::new(&ACTIVE_USERS);
        for (window, users) in data {
            f.add(&[window], *users as f64);
        }
        out.families.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::assert_declared;
    use crate::exposition::encode;

    fn render(data: &[(&str, i64)]) -> String {
        let mut out = Output::default();
        let data: Vec<_> = data.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        ActiveUsers::collect(&data, &mut out);
        assert_declared::<ActiveUsers>(&out);
        assert!(out.warnings.is_empty());
        encode(&out.families)
    }

    #[test]
    fn one_series_per_window() {
        assert_eq!(
            render(&[("1h", 2), ("24h", 5), ("30d", 9)]),
            concat!(
                "# HELP ai_usage_active_users Distinct users with at least one request in the window (1h, 24h, 30d). Refreshed at most every --gauge-refresh-interval.\n",
                "# TYPE ai_usage_active_users gauge\n",
                "ai_usage_active_users{window=\"1h\"} 2\n",
                "ai_usage_active_users{window=\"24h\"} 5\n",
                "ai_usage_active_users{window=\"30d\"} 9\n",
            )
        );
    }

    #[test]
    fn nothing_read_nothing_exported() {
        assert_eq!(render(&[]), "");
    }
}
