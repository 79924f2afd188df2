-- Cost forecasts (forecast_cost); the exporter's projected budget spend is
-- budgets.sql's own (_budget_state).
--
-- forecast_cost: daily cost (UTC days) from usage_trend('day', filters) --
-- which for admins filtering only by date reads usage_daily_totals (exact,
-- shards summed), else rollups and raw rows under row-level security. The
-- history is the 56 whole days before the origin (from the first day with
-- usage; days without usage count as 0); the origin is today, or the
-- filter's end_date (backtests). Model (additive, fitted by backfitting):
--   y(t) = a + b t + s(dow(t)) + e,  sum of s over the week = 0
--   1. a, b: least squares of y on t;  2. s: mean residual per ISO weekday,
--   centred;  3. a, b refitted on y - s;  4. s recomputed on y - a - b t.
-- Seasonality needs 14 days (else s = 0); the trend 2 days (else the mean).
-- Interval: expected ± 1.96 σ sqrt(1 + 1/n + (t - t̄)² / Sxx), σ the
-- residual standard error (n - 9 degrees of freedom, or n - 2 without
-- seasonality); expected and low are floored at 0.
CREATE FUNCTION usage_analytics.forecast_cost(horizon_days integer DEFAULT 30, filters jsonb DEFAULT '{}')
RETURNS TABLE (day date, expected_cost_usd numeric, low_usd numeric, high_usd numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, usage_analytics, pg_temp
AS $$
DECLARE
    history   constant integer := 56;
    start_ts  timestamptz;
    end_ts    timestamptz;
    origin    date;
    first_day date;
    series    double precision[];
    days      date[];
    n         integer;
BEGIN
    IF horizon_days IS NULL OR horizon_days < 1 OR horizon_days > 366 THEN
        RAISE EXCEPTION 'forecast_cost: horizon_days must be between 1 and 366, got %',
            coalesce(horizon_days::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    filters := coalesce(filters, '{}');
    PERFORM usage_analytics.check_filters(filters);
    start_ts := usage_analytics._filter_timestamp(filters, 'start_date');
    end_ts := usage_analytics._filter_timestamp(filters, 'end_date');
    origin := coalesce((end_ts AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date);
    first_day := greatest(origin - history,
                          (ceil(extract(epoch FROM start_ts) / 86400) * interval '1 day'
                           + '1970-01-01'::timestamp)::date);
    IF first_day < origin THEN
        SELECT array_agg(coalesce(t.cost, 0)::double precision ORDER BY d), array_agg(d::date ORDER BY d)
          INTO series, days
          FROM generate_series(first_day, origin - 1, interval '1 day') d
          LEFT JOIN (SELECT (tr.period_start AT TIME ZONE 'UTC')::date AS day, tr.cost_usd AS cost, tr.requests
                       FROM usage_analytics.usage_trend('day', (filters - 'start_date' - 'end_date')
                                || jsonb_build_object('start_date', first_day::text,
                                                      'end_date', (origin - 1)::text)) tr) t
            ON t.day = d::date;
        -- Start at the first day with usage.
        n := array_position(ARRAY(SELECT x > 0 FROM unnest(series) x), true);
        IF n IS NULL THEN
            series := '{}';
        ELSE
            series := series[n:];
            days := days[n:];
        END IF;
    END IF;
    n := coalesce(cardinality(series), 0);
    RETURN QUERY
    WITH s AS (
        SELECT (o - 1)::double precision AS t, y, extract(isodow FROM d)::integer AS dow
          FROM unnest(series, days) WITH ORDINALITY AS x(y, d, o)
    ), f1 AS (
        SELECT coalesce(regr_slope(y, t), 0) AS b,
               coalesce(regr_intercept(y, t), avg(y), 0) AS a FROM s
    ), s1 AS (
        SELECT w.dow, CASE WHEN n >= 14 THEN w.v - avg(w.v) OVER () ELSE 0 END AS v
          FROM (SELECT s.dow, avg(s.y - f1.a - f1.b * s.t) AS v FROM s, f1 GROUP BY s.dow) w
    ), f2 AS (
        SELECT coalesce(regr_slope(s.y - s1.v, s.t), 0) AS b,
               coalesce(regr_intercept(s.y - s1.v, s.t), avg(s.y), 0) AS a
          FROM s JOIN s1 USING (dow)
    ), s2 AS (
        SELECT w.dow, CASE WHEN n >= 14 THEN w.v - avg(w.v) OVER () ELSE 0 END AS v
          FROM (SELECT s.dow, avg(s.y - f2.a - f2.b * s.t) AS v FROM s, f2 GROUP BY s.dow) w
    ), fit AS (
        SELECT f2.a, f2.b,
               coalesce(sqrt(sum((s.y - f2.a - f2.b * s.t - s2.v) ^ 2)
                             / greatest(count(*) - CASE WHEN n >= 14 THEN 9 ELSE 2 END, 1)), 0) AS sigma,
               avg(s.t) AS tbar,
               sum((s.t - (SELECT avg(t) FROM s)) ^ 2) AS sxx
          FROM f2 LEFT JOIN s ON true LEFT JOIN s2 ON s2.dow = s.dow
         GROUP BY f2.a, f2.b
    ), out AS (
        SELECT (origin + h - 1) AS day,
               fit.a + fit.b * (n + h - 1) + coalesce(s2.v, 0) AS yhat,
               1.959964 * fit.sigma * sqrt(1 + 1.0 / greatest(n, 1)
                   + CASE WHEN fit.sxx > 0 THEN (n + h - 1 - fit.tbar) ^ 2 / fit.sxx ELSE 0 END) AS half
          FROM generate_series(1, horizon_days) h
         CROSS JOIN fit
          LEFT JOIN s2 ON s2.dow = extract(isodow FROM origin + h - 1)::integer
    )
    SELECT o.day, round(greatest(o.yhat, 0)::numeric, 6), round(greatest(o.yhat - o.half, 0)::numeric, 6),
           round(greatest(o.yhat + o.half, 0)::numeric, 6)
      FROM out o
     ORDER BY o.day;
END;
$$;
REVOKE ALL ON FUNCTION usage_analytics.forecast_cost FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_analytics.forecast_cost TO PUBLIC;
