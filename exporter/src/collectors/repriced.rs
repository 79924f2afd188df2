//! Cost changed by `usage_analytics.reprice()`, from
//! `usage_analytics.metrics_repriced()`: the cost counters only ever grow,
//! so a repricing's change is counted here, up and down apart.

use tokio_postgres::Row;

use super::{Collector, Options, Output, Tier};
use crate::db::{column, DbError, Query};
use crate::exposition::{Desc, Family, MetricType};

pub static REPRICED: Desc = Desc {
    name: "ai_usage_cost_repriced_usd_total",
    kind: MetricType::Counter,
    help: "Change of recorded cost made by repricing, in USD, by direction (up or down).",
    labels: &["direction"],
};

const SQL: &str = "SELECT direction, usd::float8 AS usd FROM usage_analytics.metrics_repriced()";

pub struct Repriced;

impl Collector for Repriced {
    type Data = Vec<(String, f64)>;
    const METRICS: &'static [&'static Desc] = &[&REPRICED];
    const TIER: Tier = Tier::EveryScrape;

    fn queries(_: &Options) -> Vec<Query> {
        vec![Query::new(SQL)]
    }

    fn read(results: &[Vec<Row>]) -> Result<Self::Data, DbError> {
        column::rows(results, 0, "metrics_repriced")?
            .iter()
            .map(|r| Ok((column::text(r, "direction")?, column::float8(r, "usd")?)))
            .collect()
    }

    fn collect(data: &Self::Data, out: &mut Output) {
        let mut f = Family::new(&REPRICED);
        for (direction, usd) in data {
            f.add(&[direction], *usd);
        }
        out.families.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::assert_declared;
    use crate::exposition::encode;

    #[test]
    fn both_directions() {
        let mut out = Output::default();
        Repriced::collect(&vec![("down".into(), 0.0), ("up".into(), 1.25)], &mut out);
        assert_declared::<Repriced>(&out);
        let text = encode(&out.families);
        assert!(
            text.contains("ai_usage_cost_repriced_usd_total{direction=\"up\"} 1.25\n"),
            "{text}"
        );
        assert!(
            text.contains("ai_usage_cost_repriced_usd_total{direction=\"down\"} 0\n"),
            "{text}"
        );
    }
}
