//! The real exporter binary's HTTP hardening: slow and silent clients are closed after
//! --http-header-timeout, and --max-connections makes further clients wait (not fail).
//! No database is needed: the connection string points at a port nobody listens on, and
//! the landing page and /metrics (ai_usage_exporter_up 0) answer without one. Loopback
//! only; every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use integration_tests::{free_port, http_get, Exporter};

fn no_database() -> String {
    format!("postgres://nobody@127.0.0.1:{}/none", free_port())
}

/// Reads until the server closes the connection (EOF, reset, or the bound runs out);
/// returns what was read and whether the server closed it.
fn until_closed(s: &mut TcpStream, bound: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (got, false)
            }
            Err(_) => return (got, true),
        }
    }
}

#[test]
fn silent_and_trickling_clients_are_closed_after_the_header_timeout() {
    let exporter = Exporter::start(&no_database(), &["--http-header-timeout", "1s"]);
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(&exporter.addr).unwrap())
        .collect();
    let trickling: Vec<_> = (0..5)
        .map(|_| {
            let addr = exporter.addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHo");
                let t = Instant::now();
                // One byte every 100 ms until the server hangs up (bounded at 10 s).
                while t.elapsed() < Duration::from_secs(10) {
                    if s.write_all(b"x").is_err() {
                        return t.elapsed();
                    }
                    let mut buf = [0u8; 64];
                    match s.read(&mut buf) {
                        Ok(0) => return t.elapsed(),
                        Ok(_) => panic!("answered an incomplete request"),
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return t.elapsed(),
                    }
                }
                panic!("a trickling client was not closed within 10 s");
            })
        })
        .collect();

    for s in &mut silent {
        let (got, closed) = until_closed(s, Duration::from_secs(10));
        assert!(closed, "a silent client was not closed within 10 s");
        assert!(got.is_empty());
    }
    let silent_closed = started.elapsed();
    assert!(silent_closed >= Duration::from_millis(900), "{silent_closed:?}");
    assert!(silent_closed < Duration::from_secs(5), "{silent_closed:?}");
    for t in trickling {
        let after = t.join().unwrap();
        assert!(after < Duration::from_secs(5), "{after:?}");
    }

    // Still serving.
    let (status, body) = exporter.get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("ai_usage_exporter_up 0"), "{body}");
    assert!(body.contains("ai_usage_exporter_cache_stale 0"), "{body}");
}

#[test]
fn a_scrape_waits_for_a_slot_when_idle_clients_fill_the_cap() {
    let exporter = Exporter::start(
        &no_database(),
        &["--http-header-timeout", "1s", "--max-connections", "2"],
    );
    // Exporter::start's probe connection has been served and closed; fill both slots.
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&exporter.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let t = Instant::now();
    let (status, body) = http_get(&exporter.addr, "/", Duration::from_secs(10)).expect("served");
    let waited = t.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        waited >= Duration::from_millis(400),
        "served at once: no cap? {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    for s in &mut idle {
        assert!(until_closed(s, Duration::from_secs(10)).1);
    }
}

#[test]
fn sigterm_stops_the_exporter_promptly_with_idle_clients_connected() {
    let mut exporter = Exporter::start(&no_database(), &["--http-header-timeout", "30s"]);
    let _idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&exporter.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let pid = exporter.child.id() as libc::pid_t;
    // SAFETY: kill(2) on the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let t = Instant::now();
    loop {
        if let Some(status) = exporter.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not stopped 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
