//! Budgets, from `usage_analytics.metrics_budgets()`: one series per budget
//! (the label is bounded by the number of budgets an admin defined). Cached:
//! spent sums a few ledger rows per budget, refreshed with the other gauges.

use tokio_postgres::Row;

use super::{Collector, Options, Output, Tier};
use crate::db::{column, DbError, Query};
use crate::exposition::{Desc, Family, MetricType};

pub static LIMIT: Desc = Desc {
    name: "ai_usage_budget_limit_usd",
    kind: MetricType::Gauge,
    help: "A budget's limit for its current period, in USD.",
    labels: &["budget"],
};
pub static SPENT: Desc = Desc {
    name: "ai_usage_budget_spent_usd",
    kind: MetricType::Gauge,
    help: "Exact cost recorded in a budget's scope in its current period, in USD.",
    labels: &["budget"],
};
pub static UTILIZATION: Desc = Desc {
    name: "ai_usage_budget_utilization_ratio",
    kind: MetricType::Gauge,
    help: "Spent (plus reserved) over limit for a budget's current period; absent for a zero limit.",
    labels: &["budget"],
};
pub static PROJECTED: Desc = Desc {
    name: "ai_usage_budget_projected_spend_usd",
    kind: MetricType::Gauge,
    help: "Spend projected to the end of a budget's current period, in USD; absent for period total.",
    labels: &["budget"],
};

const SQL: &str = "SELECT budget, limit_usd::float8 AS limit_usd, spent_usd::float8 AS spent_usd, \
       utilization_ratio::float8 AS utilization_ratio, projected_spend_usd::float8 AS projected_spend_usd \
  FROM usage_analytics.metrics_budgets()";

#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub name: String,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub utilization: Option<f64>,
    pub projected_usd: Option<f64>,
}

pub struct Budgets;

impl Collector for Budgets {
    type Data = Vec<Budget>;
    const METRICS: &'static [&'static Desc] = &[&LIMIT, &SPENT, &UTILIZATION, &PROJECTED];
    const TIER: Tier = Tier::Cached;

    fn queries(_: &Options) -> Vec<Query> {
        vec![Query::new(SQL)]
    }

    fn read(results: &[Vec<Row>]) -> Result<Self::Data, DbError> {
        column::rows(results, 0, "metrics_budgets")?
            .iter()
            .map(|r| {
                Ok(Budget {
                    name: column::text(r, "budget")?,
                    limit_usd: column::float8(r, "limit_usd")?,
                    spent_usd: column::float8(r, "spent_usd")?,
                    utilization: column::get(r, "utilization_ratio")?,
                    projected_usd: column::get(r, "projected_spend_usd")?,
                })
            })
            .collect()
    }

    fn collect(data: &Self::Data, out: &mut Output) {
        let (mut limit, mut spent, mut utilization, mut projected) = (
            Family::new(&LIMIT),
            Family::new(&SPENT),
            Family::new(&UTILIZATION),
            Family::new(&PROJECTED),
        );
        for b in data {
            limit.add(&[&b.name], b.limit_usd);
            spent.add(&[&b.name], b.spent_usd);
            if let Some(u) = b.utilization {
                utilization.add(&[&b.name], u);
            }
            if let Some(p) = b.projected_usd {
                projected.add(&[&b.name], p);
            }
        }
        out.families.extend([limit, spent, utilization, projected]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::assert_declared;
    use crate::exposition::encode;

    #[test]
    fn one_series_per_budget_and_absent_ratios_stay_absent() {
        let data = vec![
            Budget {
                name: "team-a".into(),
                limit_usd: 500.0,
                spent_usd: 125.5,
                utilization: Some(0.251),
                projected_usd: Some(400.0),
            },
            Budget {
                name: "free".into(),
                limit_usd: 0.0,
                spent_usd: 0.0,
                utilization: None,
                projected_usd: None,
            },
        ];
        let mut out = Output::default();
        Budgets::collect(&data, &mut out);
        assert_declared::<Budgets>(&out);
        let text = encode(&out.families);
        assert!(
            text.contains("ai_usage_budget_limit_usd{budget=\"team-a\"} 500\n"),
            "{text}"
        );
        assert!(
            text.contains("ai_usage_budget_spent_usd{budget=\"free\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ai_usage_budget_utilization_ratio{budget=\"team-a\"} 0.251\n"),
            "{text}"
        );
        assert!(
            !text.contains("ai_usage_budget_utilization_ratio{budget=\"free\"}"),
            "{text}"
        );
        assert!(
            !text.contains("ai_usage_budget_projected_spend_usd{budget=\"free\"}"),
            "{text}"
        );
    }
}
