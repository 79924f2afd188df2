//! Today's (UTC) most expensive users, from
//! `usage_analytics.metrics_top_users(n)` with n = --top-users (at most 100,
//! so the `user_id` label stays bounded). Cached: refreshed at most every
//! --gauge-refresh-interval.

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::{Collector, Options, Output, Tier};
use crate::db::{column, DbError, Query};
use crate::exposition::{Desc, Family, MetricType};

pub static TOP_USER_COST: Desc = Desc {
    name: "ai_usage_top_user_cost_usd",
    kind: MetricType::Gauge,
    help: "Cost in USD today (UTC) of the top users by cost; rank 1 is the most expensive. Refreshed at most every --gauge-refresh-interval.",
    labels: &["user_id", "rank"],
};

const SQL: &str =
    "SELECT rank::int4, user_id::text, cost_usd::float8 FROM usage_analytics.metrics_top_users($1)";

/// One row of `metrics_top_users(n)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopUser {
    pub rank: i32,
    pub user_id: String,
    pub cost_usd: f64,
}

pub struct TopUsers;

impl Collector for TopUsers {
    type Data = Vec<TopUser>;
    const METRICS: &'static [&'static Desc] = &[&TOP_USER_COST];
    const TIER: Tier = Tier::Cached;

    /// None with --top-users 0.
    fn queries(opts: &Options) -> Vec<Query> {
        if opts.top_users == 0 {
            return Vec::new();
        }
        let n = i32::try_from(opts.top_users).unwrap_or(i32::MAX);
        vec![Query::new(SQL).param(n, Type::INT4)]
    }

    fn read(results: &[Vec<Row>]) -> Result<Self::Data, DbError> {
        let Some(rows) = results.first() else {
            return Ok(Vec::new());
        };
        rows.iter()
            .map(|r| {
                Ok(TopUser {
                    rank: column::int4(r, "rank")?,
                    user_id: column::text(r, "user_id")?,
                    cost_usd: column::float8(r, "cost_usd")?,
                })
            })
            .collect()
    }

    fn collect(data: &Self::Data, out: &mut Output) {
        let mut f = Family::new(&TOP_USER_COST);
        for u in data {
            f.add(&[&u.user_id, &u.rank.to_string()], u.cost_usd);
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
    fn ranked_series() {
        let mut out = Output::default();
        TopUsers::collect(
            &vec![
                TopUser {
                    rank: 1,
                    user_id: "00000000-0000-0000-0000-000000000001".into(),
                    cost_usd: 1.25,
                },
                TopUser {
                    rank: 2,
                    user_id: "00000000-0000-0000-0000-000000000002".into(),
                    cost_usd: 0.000625,
                },
            ],
            &mut out,
        );
        assert_declared::<TopUsers>(&out);
        assert_eq!(
            encode(&out.families),
            concat!(
                "# HELP ai_usage_top_user_cost_usd Cost in USD today (UTC) of the top users by cost; rank 1 is the most expensive. Refreshed at most every --gauge-refresh-interval.\n",
                "# TYPE ai_usage_top_user_cost_usd gauge\n",
                "ai_usage_top_user_cost_usd{user_id=\"00000000-0000-0000-0000-000000000001\",rank=\"1\"} 1.25\n",
                "ai_usage_top_user_cost_usd{user_id=\"00000000-0000-0000-0000-000000000002\",rank=\"2\"} 0.000625\n",
            )
        );
    }

    #[test]
    fn top_users_zero_runs_no_query_and_exports_nothing() {
        assert!(TopUsers::queries(&Options { top_users: 0 }).is_empty());
        assert_eq!(TopUsers::queries(&Options { top_users: 10 }).len(), 1);
        assert_eq!(TopUsers::read(&[]).unwrap(), vec![]);
        let mut out = Output::default();
        TopUsers::collect(&vec![], &mut out);
        assert_eq!(encode(&out.families), "");
    }
}
