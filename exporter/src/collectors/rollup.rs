//! Freshness of the daily rollups, from
//! `usage_analytics.metrics_rollup_last_success()`. Absent until the first
//! rollup has run (alert on its absence while `ai_usage_exporter_up == 1`).

use tokio_postgres::Row;

use super::{Collector, Options, Output, Tier};
use crate::db::{column, DbError, Query};
use crate::exposition::{Desc, Family, MetricType};

pub static LAST_SUCCESS: Desc = Desc {
    name: "ai_usage_rollup_last_success_timestamp_seconds",
    kind: MetricType::Gauge,
    help: "Unix time of the last successful daily rollup run. Absent while no rollup has ever run.",
    labels: &[],
};

const SQL: &str =
    "SELECT extract(epoch FROM usage_analytics.metrics_rollup_last_success())::float8 AS last_success";

pub struct Rollup;

impl Collector for Rollup {
    /// Unix seconds; `None` when no rollup ever ran.
    type Data = Option<f64>;
    const METRICS: &'static [&'static Desc] = &[&LAST_SUCCESS];
    const TIER: Tier = Tier::EveryScrape;

    fn queries(_: &Options) -> Vec<Query> {
        vec![Query::new(SQL)]
    }

    fn read(results: &[Vec<Row>]) -> Result<Self::Data, DbError> {
        let rows = column::rows(results, 0, "metrics_rollup_last_success")?;
        column::get(
            column::single(rows, "metrics_rollup_last_success")?,
            "last_success",
        )
    }

    fn collect(data: &Self::Data, out: &mut Output) {
        let mut f = Family::new(&LAST_SUCCESS);
        if let Some(ts) = data {
            f.add(&[], *ts);
        }
        out.families.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::assert_declared;
    use crate::exposition::encode;

    fn render(data: Option<f64>) -> String {
        let mut out = Output::default();
        Rollup::collect(&data, &mut out);
        assert_declared::<Rollup>(&out);
        encode(&out.families)
    }

    #[test]
    fn timestamp() {
        assert_eq!(
            render(Some(1_700_000_000.5)),
            concat!(
                "# HELP ai_usage_rollup_last_success_timestamp_seconds Unix time of the last successful daily rollup run. Absent while no rollup has ever run.\n",
                "# TYPE ai_usage_rollup_last_success_timestamp_seconds gauge\n",
                "ai_usage_rollup_last_success_timestamp_seconds 1700000000.5\n",
            )
        );
    }

    #[test]
    fn null_rollup_is_omitted() {
        assert_eq!(render(None), "");
    }
}
