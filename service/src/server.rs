//! The HTTP server: HTTP/1.1 connections (hyper) carrying the axum router, with a
//! header-read timeout, a cap on concurrent connections and graceful shutdown.
//!
//! `axum::serve` has no timeouts at all (hyper's header-read timeout needs a timer,
//! which it does not set), so a client that connects and sends nothing, or trickles
//! a header byte by byte, holds a connection and its task forever. Here:
//!
//! * every connection must deliver a complete request header within
//!   `header_read_timeout`, counted from the moment hyper starts waiting for it
//!   (at accept, and again after each response on a kept-alive connection);
//!   otherwise it is closed without an answer;
//! * at most `max_connections` connections are open at once. A slot is taken
//!   *before* `accept`, so when all are in use further connections wait, unanswered,
//!   in the kernel's listen backlog and are accepted in order as slots free up. They
//!   are not refused: with the header timeout, a waiting scraper is served at most
//!   about one header timeout later even when idle clients hold every slot;
//! * on shutdown the listener is closed (connections still in the backlog are
//!   reset), idle connections are closed, requests in progress finish, and the
//!   server waits at most `shutdown_grace` for them.
//!
//! Also what goes with it in both services: the process around the server ([`run`]:
//! logging, the runtime, the exit status), the signals that start the shutdown
//! ([`shutdown_signal`]) and the /health answer ([`health`]).

use std::fmt::Display;
use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing_subscriber::EnvFilter;

/// Connection limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a complete request header.
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: u32,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
}

/// How long shutdown waits for requests in progress (the services' --help epilogues say so).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often (at most) "connection limit reached" is logged at warn level.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Listens on `addr` (host:port, --listen); the listener and the address it got.
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, local))
}

/// Serves `router` on `listener` until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut last_full_warning: Option<Instant> = None;

    loop {
        // Take a slot before accepting, so that beyond the cap connections wait in the backlog.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_full_warning.is_none_or(|t| t.elapsed() >= FULL_WARNING_INTERVAL) {
                    tracing::warn!(
                        max_connections = max,
                        "connection limit reached; new connections wait until one closes"
                    );
                    last_full_warning = Some(Instant::now());
                } else {
                    tracing::debug!(max_connections = max, "connection limit reached");
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    drop(slot);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        tracing::trace!(%peer, "connection accepted");
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                    // Closes the connection if idle, else after the response in progress.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                // Clients that time out or hang up are routine: not worth more than debug.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::debug!("not accepting connections any more; closing the open ones");
    stop_tx.send_replace(true);
    // Every open connection holds a slot: having them all back means all are closed.
    let all_back = tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(max)).await;
    match all_back {
        Ok(_) => tracing::debug!("all connections closed"),
        Err(_) => tracing::warn!(
            open = max as usize - slots.available_permits(),
            grace = ?limits.shutdown_grace,
            "connections still open after the shutdown grace period; dropping them"
        ),
    };
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The answer to GET /health given the database check's outcome: 200 "ok", or 503
/// "database unavailable" (the reason goes to the log only).
pub fn health(check: Result<(), impl Display>) -> Response {
    const TEXT: &str = "text/plain; charset=utf-8";
    match check {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "ok").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, TEXT)],
                "database unavailable",
            )
                .into_response()
        }
    }
}

/// Runs a service: logs to stderr (RUST_LOG, default info), runs `service` on a runtime of
/// two worker threads (and at most `max_blocking_threads` blocking ones when given),
/// and turns its outcome into the exit status: 0, or 1 with the error logged.
pub fn run(
    service_crate: &str,
    max_blocking_threads: Option<usize>,
    service: impl Future<Output = Result<(), String>>,
) -> ExitCode {
    init_logging(service_crate);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    if let Some(n) = max_blocking_threads {
        builder.max_blocking_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at the level RUST_LOG asks for (default info), in colour on a terminal.
/// `service_crate` is the service's crate name (`env!("CARGO_CRATE_NAME")`): a directive
/// for it (`usage_analytics_exporter=debug`, as the --help epilogue suggests) applies to
/// this crate too, which does part of the service's work.
fn init_logging(service_crate: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(with_shared_directives(&spec, service_crate)).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `spec` plus, for each of its directives whose target is `service_crate` or one of its
/// modules, the same directive for this crate.
fn with_shared_directives(spec: &str, service_crate: &str) -> String {
    let shared = spec.split(',').filter_map(|directive| {
        let rest = directive.trim().strip_prefix(service_crate)?;
        let whole_name = rest.is_empty() || rest.starts_with(['=', ':', '[']);
        whole_name.then(|| format!("{}{rest}", env!("CARGO_CRATE_NAME")))
    });
    std::iter::once(spec.to_string())
        .chain(shared)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    use super::*;

    #[test]
    fn a_directive_for_the_service_covers_this_crate_too() {
        let s = |spec| with_shared_directives(spec, "usage_analytics_exporter");
        assert_eq!(s("info"), "info");
        assert_eq!(
            s("usage_analytics_exporter=debug"),
            "usage_analytics_exporter=debug,usage_analytics_service=debug"
        );
        assert_eq!(
            s("warn,usage_analytics_exporter::server=trace,usage_analytics_exporterx=debug"),
            "warn,usage_analytics_exporter::server=trace,usage_analytics_exporterx=debug,\
             usage_analytics_service::server=trace"
        );
        assert_eq!(
            s("usage_analytics_exporter"),
            "usage_analytics_exporter,usage_analytics_service"
        );
        EnvFilter::try_new(s("usage_analytics_exporter[scrape]=debug")).unwrap();
    }

    /// Upper bound for anything a test waits for.
    const BOUND: Duration = Duration::from_secs(10);

    struct Server {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<()>,
    }

    async fn start(header_read_timeout: Duration, max_connections: u32) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "hello" }));
        let (tx, rx) = oneshot::channel::<()>();
        let limits = Limits {
            header_read_timeout,
            max_connections,
            shutdown_grace: Duration::from_secs(5),
        };
        let task = tokio::spawn(serve(listener, router, limits, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    impl Server {
        async fn shutdown(mut self) {
            let _ = self.stop.take().unwrap().send(());
            timeout(BOUND, self.task)
                .await
                .expect("server stopped within the bound")
                .unwrap();
        }
    }

    /// Reads until the server closes the connection (EOF or reset); returns what was read.
    async fn until_closed(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// One complete GET / on a fresh connection; the response text.
    async fn get_root(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&until_closed(&mut s).await).into_owned()
    }

    #[tokio::test]
    async fn silent_and_trickling_clients_are_closed_after_the_header_timeout() {
        let header_timeout = Duration::from_millis(400);
        let server = start(header_timeout, 64).await;
        let started = Instant::now();

        let mut clients = Vec::new();
        for i in 0..10 {
            let addr = server.addr;
            clients.push(tokio::spawn(async move {
                let s = TcpStream::connect(addr).await.unwrap();
                let (mut rd, mut wr) = s.into_split();
                // Half send nothing; half start a header and add a byte every 50 ms, forever.
                let trickle = tokio::spawn(async move {
                    if i % 2 == 0 {
                        // Keep the write half: dropping it would send FIN.
                        std::future::pending::<()>().await;
                    }
                    let _ = wr.write_all(b"GET / HTTP/1.1\r\nHo").await;
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if wr.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                });
                let got = timeout(BOUND, until_closed(&mut rd))
                    .await
                    .expect("server closed the connection");
                trickle.abort();
                let closed_after = started.elapsed();
                (got, closed_after)
            }));
        }
        for c in clients {
            let (got, closed_after) = c.await.unwrap();
            assert!(
                got.is_empty(),
                "no answer expected: {:?}",
                String::from_utf8_lossy(&got)
            );
            assert!(
                closed_after >= header_timeout - Duration::from_millis(50),
                "{closed_after:?}"
            );
            assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");
        }

        // The server itself is fine.
        assert!(get_root(server.addr).await.ends_with("hello"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn keep_alive_connections_that_go_idle_are_closed_too() {
        let server = start(Duration::from_millis(300), 64).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let t = Instant::now();
        let got = timeout(BOUND, until_closed(&mut s)).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
            "{text}"
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_when_idle_connections_fill_the_cap() {
        let header_timeout = Duration::from_millis(600);
        let server = start(header_timeout, 3).await;
        // Fill every slot with connections that send nothing.
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;

        // A real request is not refused: it waits in the backlog until the header timeout
        // frees a slot, then it is served.
        let t = Instant::now();
        let text = timeout(BOUND, get_root(server.addr)).await.unwrap();
        let waited = t.elapsed();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
            "{text}"
        );
        assert!(
            waited >= Duration::from_millis(300),
            "served at once, so no cap: {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "{waited:?}");

        // The idle connections were closed by the server.
        for mut s in idle {
            let got = timeout(BOUND, until_closed(&mut s)).await.unwrap();
            assert!(got.is_empty());
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn below_the_cap_requests_are_served_at_once() {
        let server = start(Duration::from_secs(5), 4).await;
        let _idle = [
            TcpStream::connect(server.addr).await.unwrap(),
            TcpStream::connect(server.addr).await.unwrap(),
        ];
        let t = Instant::now();
        let text = timeout(BOUND, get_root(server.addr)).await.unwrap();
        assert!(text.ends_with("hello"), "{text}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn graceful_shutdown_closes_idle_connections_and_stops_accepting() {
        // A long header timeout, so only the shutdown can close the idle connection quickly.
        let server = start(Duration::from_secs(30), 8).await;
        let addr = server.addr;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(get_root(addr).await.ends_with("hello"));
        tokio::time::sleep(Duration::from_millis(50)).await;

        let t = Instant::now();
        server.shutdown().await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let got = timeout(BOUND, until_closed(&mut idle)).await.unwrap();
        assert!(got.is_empty());
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    }
}
