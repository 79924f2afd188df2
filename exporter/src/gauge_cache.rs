//! The cache of the expensive gauges (the series of the `Tier::Cached`
//! collectors, today ai_usage_active_users and ai_usage_top_user_cost_usd),
//! kept apart from the scrape so its rules can be tested without a database:
//!
//! * a refresh is due when none was attempted yet, or when the last attempt,
//!   successful or not, started at least one refresh interval ago. So after a
//!   failure the next attempt waits a whole interval: a broken or slow gauge
//!   query costs the database at most one attempt per interval, never one per
//!   scrape;
//! * a failed refresh keeps the last good values; they are served marked stale
//!   (with their age) until a refresh works again.
//!
//! Times are those at which the scrapes started, passed in by the caller.

use std::time::Duration;

use tokio::time::Instant;

/// What a scrape serves from the cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served<'a, T> {
    /// The last good gauges, if a refresh ever worked.
    pub gauges: Option<&'a T>,
    /// The last refresh attempt failed: `gauges` predate it.
    pub stale: bool,
    /// Seconds between the start of the scrape that read `gauges` and `now`.
    pub age_seconds: Option<f64>,
    /// Failed refreshes since the start.
    pub refresh_errors_total: u64,
}

#[derive(Debug)]
struct Good<T> {
    at: Instant,
    gauges: T,
}

/// The gauge cache. See the module documentation.
#[derive(Debug)]
pub struct GaugeCache<T> {
    interval: Duration,
    good: Option<Good<T>>,
    last_attempt: Option<Instant>,
    last_failed: bool,
    errors_total: u64,
}

impl<T> GaugeCache<T> {
    pub fn new(interval: Duration) -> Self {
        GaugeCache {
            interval,
            good: None,
            last_attempt: None,
            last_failed: false,
            errors_total: 0,
        }
    }

    /// Whether a scrape starting at `now` should refresh the gauges.
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.last_attempt
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    /// A refresh by the scrape that started at `at` worked.
    pub fn succeeded(&mut self, at: Instant, gauges: T) {
        self.last_attempt = Some(at);
        self.last_failed = false;
        self.good = Some(Good { at, gauges });
    }

    /// A refresh by the scrape that started at `at` failed: keep the last good values.
    pub fn failed(&mut self, at: Instant) {
        self.last_attempt = Some(at);
        self.last_failed = true;
        self.errors_total += 1;
    }

    /// Whether the last refresh attempt failed.
    pub fn is_stale(&self) -> bool {
        self.last_failed
    }

    /// What a scrape that started at `now` serves.
    pub fn served(&self, now: Instant) -> Served<'_, T> {
        Served {
            gauges: self.good.as_ref().map(|g| &g.gauges),
            stale: self.last_failed,
            age_seconds: self
                .good
                .as_ref()
                .map(|g| now.saturating_duration_since(g.at).as_secs_f64()),
            refresh_errors_total: self.errors_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges(users: i64) -> Vec<(String, i64)> {
        vec![("1h".into(), users)]
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn empty_cache_refreshes_and_serves_nothing() {
        let t0 = Instant::now();
        let c = GaugeCache::<()>::new(secs(30));
        assert!(c.refresh_due(t0));
        let s = c.served(t0);
        assert_eq!(s.gauges, None);
        assert!(!s.stale);
        assert_eq!(s.age_seconds, None);
        assert_eq!(s.refresh_errors_total, 0);
    }

    #[test]
    fn good_values_are_served_until_the_interval_is_over() {
        let t0 = Instant::now();
        let mut c = GaugeCache::new(secs(30));
        c.succeeded(t0, gauges(7));
        assert!(!c.refresh_due(t0 + secs(29)));
        assert!(c.refresh_due(t0 + secs(30)));
        let s = c.served(t0);
        assert_eq!(s.gauges, Some(&gauges(7)));
        assert_eq!(s.age_seconds, Some(0.0));
        assert!(!s.stale);
        assert_eq!(c.served(t0 + secs(12)).age_seconds, Some(12.0));
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_good_values_marked_stale() {
        let t0 = Instant::now();
        let mut c = GaugeCache::new(secs(30));
        c.succeeded(t0, gauges(7));
        c.failed(t0 + secs(30));
        let s = c.served(t0 + secs(31));
        assert_eq!(s.gauges, Some(&gauges(7)));
        assert!(s.stale);
        assert!(c.is_stale());
        assert_eq!(s.age_seconds, Some(31.0));
        assert_eq!(s.refresh_errors_total, 1);
    }

    #[test]
    fn after_a_failure_the_retry_waits_a_whole_interval() {
        let t0 = Instant::now();
        let mut c = GaugeCache::new(secs(30));
        c.succeeded(t0, gauges(1));
        c.failed(t0 + secs(30));
        // Scrapes every 5 s: no retry before t0 + 60 s.
        for s in (35..60).step_by(5) {
            assert!(!c.refresh_due(t0 + secs(s)), "retried at {s}s");
        }
        assert!(c.refresh_due(t0 + secs(60)));
        c.failed(t0 + secs(60));
        assert!(!c.refresh_due(t0 + secs(89)));
        assert_eq!(c.served(t0 + secs(60)).refresh_errors_total, 2);

        // Recovery: fresh values, no longer stale, the error count stays.
        c.succeeded(t0 + secs(90), gauges(2));
        let s = c.served(t0 + secs(95));
        assert_eq!(s.gauges, Some(&gauges(2)));
        assert!(!s.stale);
        assert_eq!(s.age_seconds, Some(5.0));
        assert_eq!(s.refresh_errors_total, 2);
    }

    #[test]
    fn a_first_refresh_that_fails_is_stale_with_nothing_to_serve() {
        let t0 = Instant::now();
        let mut c = GaugeCache::<()>::new(secs(30));
        c.failed(t0);
        assert!(!c.refresh_due(t0 + secs(1)));
        let s = c.served(t0 + secs(1));
        assert_eq!(s.gauges, None);
        assert!(s.stale);
        assert_eq!(s.age_seconds, None);
    }

    #[test]
    fn interval_zero_refreshes_on_every_scrape_even_after_failures() {
        let t0 = Instant::now();
        let mut c = GaugeCache::new(Duration::ZERO);
        c.failed(t0);
        assert!(c.refresh_due(t0));
        c.succeeded(t0 + secs(1), gauges(3));
        assert!(c.refresh_due(t0 + secs(1)));
    }
}
