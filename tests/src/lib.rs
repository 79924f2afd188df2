//! End-to-end test support: a real PostgreSQL 15 cluster started by the
//! tests themselves (initdb as the postgres user, private port and socket
//! directory, pg_cron preloaded), with the installed extension.

use postgres::{Client, NoTls};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database pg_cron runs its jobs in (cron.database_name).
pub const CRON_DB: &str = "cron_test";

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id -u postgres");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres uid");
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id -g postgres");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres gid");
    (uid, gid)
}

/// A free TCP port on 127.0.0.1 (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_as_postgres(program: &str, args: &[&str]) {
    let (uid, gid) = postgres_ids();
    let status = Command::new(program)
        .args(args)
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

impl Cluster {
    /// initdb a new cluster under target/it/ (not started).
    pub fn init(name: &str) -> Cluster {
        let dir = workspace_root()
            .join("target/it")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let data = dir.join("data");
        run_as_postgres(
            &format!("{PG_BIN}/initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_cron'\ncron.database_name = '{CRON_DB}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n\
             logging_collector = off\ntimezone = 'UTC'\n",
            dir.display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        Cluster { port, dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the postmaster as a child that dies with this process
    /// (PR_SET_PDEATHSIG), from a thread that lives as long as the process.
    fn spawn_tied_to_process(&self) {
        let (uid, gid) = postgres_ids();
        let data = self.data_dir();
        let log = std::fs::File::create(self.dir.join("postgres.log")).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut cmd = Command::new(format!("{PG_BIN}/postgres"));
            cmd.arg("-D")
                .arg(&data)
                .uid(uid)
                .gid(gid)
                .stdout(Stdio::null())
                .stderr(log);
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut postmaster: Child = cmd.spawn().expect("spawn postgres");
            tx.send(()).unwrap();
            // This thread must outlive the tests: the postmaster's parent-death
            // signal fires when the spawning thread exits.
            let _ = postmaster.wait();
        });
        rx.recv().unwrap();
    }

    /// pg_ctl start: for clusters a test stops and restarts on purpose.
    pub fn pg_ctl_start(&self) {
        let log = self.dir.join("postgres.log");
        run_as_postgres(
            &format!("{PG_BIN}/pg_ctl"),
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        self.wait_ready();
    }

    /// pg_ctl stop with mode fast or immediate.
    pub fn pg_ctl_stop(&self, mode: &str) {
        run_as_postgres(
            &format!("{PG_BIN}/pg_ctl"),
            &["-D", self.data_dir().to_str().unwrap(), "-m", mode, "-w", "stop"],
        );
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Client::connect(&self.url("postgres", "postgres"), NoTls) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("cluster did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn url(&self, db: &str, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={db} user={user} connect_timeout=10",
            self.port
        )
    }

    pub fn connect(&self, db: &str) -> Client {
        self.connect_as(db, "postgres")
    }

    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        Client::connect(&self.url(db, user), NoTls).unwrap_or_else(|e| panic!("connect {db} as {user}: {e}"))
    }

    /// A new database with the extension installed, named after the test.
    pub fn fresh_db(&self, name: &str) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let db = format!("t_{}_{}", name, SEQ.fetch_add(1, Ordering::SeqCst));
        let mut admin = self.connect("postgres");
        admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        self.connect(&db)
            .batch_execute("CREATE EXTENSION pg_usage_analytics CASCADE")
            .unwrap();
        db
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Only clusters started with pg_ctl are still running here; the
        // shared one dies with the process.
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = Command::new(format!("{PG_BIN}/pg_ctl"))
                .args(["-D", self.data_dir().to_str().unwrap(), "-m", "immediate", "stop"])
                .uid(postgres_ids().0)
                .gid(postgres_ids().1)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The cluster shared by the tests of one test binary.
pub fn cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = Cluster::init("shared");
        cluster.spawn_tied_to_process();
        cluster.wait_ready();
        cluster
            .connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {CRON_DB}"))
            .unwrap();
        cluster
    })
}

/// The `SQLSTATE` and message of a database error, for assertions.
pub fn db_error(err: &postgres::Error) -> (String, String) {
    match err.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => (String::new(), err.to_string()),
    }
}

/// Rows of a query as text columns (NULL as None), for comparisons.
pub fn text_rows(client: &mut Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// A single text value.
pub fn scalar(client: &mut Client, sql: &str) -> Option<String> {
    text_rows(client, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// Eight fixed users, so tests can filter on them.
pub const USERS: [&str; 8] = [
    "a0000000-0000-4000-8000-000000000001",
    "a0000000-0000-4000-8000-000000000002",
    "a0000000-0000-4000-8000-000000000003",
    "a0000000-0000-4000-8000-000000000004",
    "a0000000-0000-4000-8000-000000000005",
    "a0000000-0000-4000-8000-000000000006",
    "a0000000-0000-4000-8000-000000000007",
    "a0000000-0000-4000-8000-000000000008",
];

/// Loads `n` varied rows spread over the `days` UTC days ending today:
/// several users, agents, frameworks, providers, models (some unknown, some
/// absent), message types, ~7% failures, awkward text (quotes, commas,
/// newlines, unicode, spreadsheet formulas) and identical timestamps, through
/// a plain INSERT so the pricing trigger and counters run as in production.
pub fn load_sample(client: &mut Client, n: i64, days: i64) {
    client
        .execute(
            &format!(
                "INSERT INTO usage_analytics.agent_usage_detailed
                   (user_id, agent_id, agent_name, framework, provider, message_type, input_tokens,
                    output_tokens, response_time_ms, success, error_message, request_metadata, model, \"timestamp\")
                 SELECT (ARRAY['{}']::uuid[])[1 + (g * 7 + g / 13) % 8],
                        (ARRAY['research-agent', 'writer', 'coder', 'support bot', 'Q,\"uoted\"', 'ünïcødé-🚀'])[1 + (g * 5) % 6],
                        CASE WHEN g % 9 = 0 THEN NULL ELSE 'Agent ' || (g % 6) END,
                        (ARRAY['langchain', 'autogen', 'perplexity', 'hybrid'])[1 + (g * 3) % 4],
                        p.provider,
                        (ARRAY['chat', 'preset_action', 'tool_execution'])[1 + g % 3],
                        (g * 37) % 5000, (g * 11) % 2000,
                        CASE WHEN g % 17 = 0 THEN NULL ELSE 50 + (g * 97) % 70000 END,
                        g % 14 <> 0,
                        CASE WHEN g % 14 = 0 THEN (ARRAY['rate limited', '=cmd|'' /C calc''!A0', 'bad, \"quoted\"\nline', '+1 oops', '-minus', '@at'])[1 + g % 6] END,
                        jsonb_build_object('action', (ARRAY['summarize', 'search', 'draft', 'review'])[1 + g % 4], 'n', g),
                        (p.models)[1 + g % array_length(p.models, 1)],
                        date_trunc('day', now()) - make_interval(days => ({days} - 1) - (g % {days}))
                          + make_interval(secs => CASE WHEN g % 50 = 0 THEN 3600 ELSE (g * 7919) % 86400 END)
                   FROM generate_series(1, {n}) AS g
                   CROSS JOIN LATERAL (
                        SELECT (ARRAY['openai', 'anthropic', 'perplexity', 'google', 'other'])[1 + g % 5] AS provider
                   ) pp
                   CROSS JOIN LATERAL (
                        SELECT pp.provider,
                               CASE pp.provider
                                 WHEN 'openai' THEN ARRAY['gpt-4o-2024-08-06', 'gpt-4o-mini', 'gpt-4-turbo', NULL, 'gpt-3.5-turbo-0125']
                                 WHEN 'anthropic' THEN ARRAY['claude-3-5-sonnet-20241022', 'claude-3-haiku', 'claude-3.5-sonnet', 'claude-3-opus-latest']
                                 WHEN 'perplexity' THEN ARRAY['llama-3.1-sonar-small-128k-online', 'llama-3.1-sonar-large-128k-online', NULL]
                                 WHEN 'google' THEN ARRAY['gemini-1.5-pro-002', 'gemini-1.5-flash', 'gemini-exp-1206']
                                 ELSE ARRAY['mistral-large', NULL]
                               END AS models
                   ) p",
                USERS.join("','")
            ),
            &[],
        )
        .unwrap();
}

/// A plain HTTP/1.1 GET against 127.0.0.1: (status, body). Bounded by `timeout`.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr.parse().expect("socket address"), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The exporter binary, built by `make integration` before the tests run.
pub fn exporter_binary() -> PathBuf {
    let path = workspace_root().join("target/debug/usage-analytics-exporter");
    assert!(
        path.exists(),
        "build the exporter first: cargo build -p usage-analytics-exporter"
    );
    path
}

/// A running exporter, killed when dropped.
pub struct Exporter {
    pub child: Child,
    pub addr: String,
}

impl Exporter {
    pub fn start(database_url: &str, extra_args: &[&str]) -> Exporter {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(exporter_binary())
            .arg("--database-url")
            .arg(database_url)
            .arg("--listen")
            .arg(&addr)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start exporter");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(&addr, "/", Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "exporter did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Exporter { child, addr }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path, Duration::from_secs(10)).expect("exporter answers")
    }

    pub fn metrics(&self) -> Exposition {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample: metric name, sorted labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A parsed Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub text: String,
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (name, rest) = match line.find('{') {
                Some(i) => (&line[..i], &line[i..]),
                None => line.split_once(' ').unwrap_or((line, "")),
            };
            let (labels, value) = match rest.strip_prefix('{') {
                Some(inner) => parse_labels(inner),
                None => (Vec::new(), rest),
            };
            let value = value.split_whitespace().next().unwrap_or("");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad sample value in {line:?}")),
            };
            samples.push((name.to_string(), labels, value));
        }
        Exposition {
            samples,
            text: text.to_string(),
        }
    }

    /// Sum of the samples of `name` whose labels include all of `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && matching
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l.is_empty())
            .map(|(_, _, v)| *v)
    }
}

/// Parses `k="v",…}` with the exposition escapes (\\, \", \n); returns the
/// labels and the text after the closing brace.
fn parse_labels(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(rest) = s.strip_prefix('}') {
            labels.sort();
            return (labels, rest);
        }
        let (key, rest) = s.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = &rest[end + 1..];
    }
}
