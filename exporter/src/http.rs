//! HTTP endpoints: /metrics, /health and a landing page.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::exposition::CONTENT_TYPE;
use crate::scrape::Scraper;

pub fn router(scraper: Scraper) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(scraper)
}

async fn metrics(State(scraper): State<Scraper>) -> Response {
    let body = scraper.scrape().await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

async fn health(State(scraper): State<Scraper>) -> Response {
    usage_analytics_service::server::health(scraper.health().await)
}

const LANDING: &str = concat!(
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<title>usage-analytics-exporter</title></head><body>\n",
    "<h1>usage-analytics-exporter</h1>\n",
    "<p>Prometheus exporter for the pg_usage_analytics PostgreSQL extension, version ",
    env!("CARGO_PKG_VERSION"),
    ".</p>\n<ul>\n",
    "<li><a href=\"metrics\">/metrics</a> &mdash; usage metrics in the Prometheus text format</li>\n",
    "<li><a href=\"health\">/health</a> &mdash; 200 when the database answers, 503 otherwise</li>\n",
    "</ul>\n</body></html>\n"
);

async fn landing() -> Html<&'static str> {
    Html(LANDING)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::Config;
    use crate::db;
    use crate::scrape::Settings;

    fn scraper_for(url: &str, timeout_ms: u64) -> Scraper {
        let cfg = Config::try_parse_from([
            "x",
            "--database-url",
            url,
            "--query-timeout",
            &timeout_ms.to_string(),
        ])
        .unwrap();
        let pool = db::build_pool(&cfg, db::parse_target(url).unwrap()).unwrap();
        Scraper::new(
            pool,
            Settings {
                query_timeout: cfg.query_timeout,
                gauge_refresh_interval: cfg.gauge_refresh_interval,
                top_users: cfg.top_users_clamped(),
            },
        )
    }

    async fn serve(scraper: Scraper) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = usage_analytics_service::server::Limits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(1),
        };
        tokio::spawn(usage_analytics_service::server::serve(
            listener,
            router(scraper),
            limits,
            std::future::pending(),
        ));
        addr
    }

    /// (status line, headers lowercased, body) of one GET.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let (status, headers) = head.split_once("\r\n").unwrap();
        (status.to_string(), headers.to_lowercase(), body.to_string())
    }

    /// A port with nothing listening: connecting is refused at once.
    async fn refused_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn database_down_gives_up_0_health_503_and_landing_page() {
        let port = refused_port().await;
        let addr = serve(scraper_for(&format!("postgres://u@127.0.0.1:{port}/db"), 500)).await;

        let (status, headers, body) = get(addr, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        assert!(
            headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{headers}"
        );
        assert!(body.contains("ai_usage_exporter_up 0\n"), "{body}");
        assert!(
            body.contains("ai_usage_exporter_scrape_errors_total 1\n"),
            "{body}"
        );
        assert!(
            body.contains("# HELP ai_usage_exporter_scrape_duration_seconds "),
            "{body}"
        );
        assert!(!body.contains("ai_usage_requests_total"), "{body}");
        let (_, _, body) = get(addr, "/metrics").await;
        assert!(
            body.contains("ai_usage_exporter_scrape_errors_total 2\n"),
            "{body}"
        );

        let (status, _, body) = get(addr, "/health").await;
        assert!(status.contains("503"), "{status}");
        assert_eq!(body, "database unavailable");

        let (status, headers, body) = get(addr, "/").await;
        assert!(status.contains("200"), "{status}");
        assert!(headers.contains("text/html"), "{headers}");
        assert!(
            body.contains("href=\"metrics\"") && body.contains("href=\"health\""),
            "{body}"
        );

        let (status, _, _) = get(addr, "/nope").await;
        assert!(status.contains("404"), "{status}");
    }

    #[tokio::test]
    async fn silent_database_times_out_and_concurrent_scrapes_share_one_result() {
        // Accepts connections (kernel backlog) but never answers the startup message.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let addr = serve(scraper_for(&format!("postgres://u@127.0.0.1:{port}/db"), 300)).await;

        let started = Instant::now();
        let scrapes: Vec<_> = (0..8).map(|_| tokio::spawn(get(addr, "/metrics"))).collect();
        let mut bodies = Vec::new();
        for s in scrapes {
            bodies.push(s.await.unwrap().2);
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
        let errors: Vec<u64> = bodies
            .iter()
            .map(|b| {
                assert!(b.contains("ai_usage_exporter_up 0\n"), "{b}");
                let line = b
                    .lines()
                    .find(|l| l.starts_with("ai_usage_exporter_scrape_errors_total "))
                    .unwrap();
                line.rsplit(' ').next().unwrap().parse().unwrap()
            })
            .collect();
        // Eight requests, but the scrapes were serialized and coalesced: at most two ran.
        assert!(errors.iter().all(|&e| e <= 2), "{errors:?}");

        let t = Instant::now();
        let (status, _, _) = get(addr, "/health").await;
        assert!(status.contains("503"), "{status}");
        assert!(t.elapsed() < Duration::from_millis(1000), "{:?}", t.elapsed());
        drop(silent);
    }
}
