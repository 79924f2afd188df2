//! Batched, deduplicated writes, acknowledged only after commit.
//!
//! * Requests hand their rows to [`Writer::submit`], which reserves them in a
//!   bounded queue (`--max-queued-spans` permits: a request that does not fit is
//!   refused at once, and answered 503) and waits for the commit.
//! * One dispatcher takes a free writer slot (`--writers`), then every request
//!   waiting (up to `--write-batch-rows` rows, waiting at most `--flush-interval`
//!   for more), and writes them in one transaction: requests arriving while the
//!   writers are busy form the next batch (group commit).
//! * A batch is one statement (built in [`crate::insert_statement`]):
//!   `collector_claim_spans` claims the rows' ids in usage_analytics.collector_spans
//!   (sorted, ON CONFLICT DO NOTHING, so a concurrent claim of the same id waits
//!   and is skipped if it commits), and a multi-row `INSERT … SELECT FROM
//!   unnest(…)` inserts the rows whose ids were claimed. Claims and rows commit or
//!   roll back together: a span is recorded once however often it is sent, and a
//!   rolled-back batch leaves no claim.
//! * A batch refused by the database for one row's data (SQLSTATE class 22 or
//!   23) is split in halves and retried until the offending rows are alone;
//!   those are rejected (partial_success) and the others recorded. Any other
//!   failure (connection, timeout) rolls the batch back and answers its
//!   requests 503: the senders retry, and nothing is acknowledged uncommitted.
//! * The token-class columns are written when the table has them (looked up in
//!   pg_attribute, again every 30 s and after a failure), so the collector
//!   works before and after the extension's upgrade that adds them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::db::{self, DbError};
use crate::insert_statement::{Params, SchemaCache};
use crate::mapping::{UsageRow, MAX_REASONS};
use crate::metrics::Metrics;

/// Writer settings (from the flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub writers: usize,
    pub write_timeout: Duration,
    pub max_queued: usize,
}

/// Why rows were not written.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The in-flight queue is full.
    QueueFull,
    /// The batch failed (database down or slow) or the collector is stopping.
    Unavailable(String),
}

/// What became of a request's rows once committed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows refused by the database (their reasons, at most a few).
    pub rejected: u64,
    pub reasons: Vec<String>,
}

struct Job {
    rows: Vec<UsageRow>,
    done: oneshot::Sender<Result<Written, String>>,
    _permit: OwnedSemaphorePermit,
}

/// The handle requests submit to.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
    queue: Arc<Semaphore>,
    max_queued: usize,
    metrics: Arc<Metrics>,
}

/// Stops the dispatcher: queued batches are written, then it ends.
pub struct Stopper {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Stopper {
    /// Asks the dispatcher to finish and waits for it at most `within`.
    pub async fn stop(self, within: Duration) {
        self.stop.send_replace(true);
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::warn!("queued batches still not written at exit; their senders will retry");
        }
    }
}

impl Writer {
    pub fn start(pool: Pool, settings: Settings, metrics: Arc<Metrics>) -> (Writer, Stopper) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stopping) = watch::channel(false);
        let max_queued = settings.max_queued.max(1);
        let writer = Writer {
            tx,
            queue: Arc::new(Semaphore::new(max_queued)),
            max_queued,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(dispatch(rx, stopping, pool, settings, metrics));
        (writer, Stopper { stop, task })
    }

    /// Queues the rows and waits until they are committed (or the batch failed).
    pub async fn submit(&self, rows: Vec<UsageRow>) -> Result<Written, SubmitError> {
        let n = rows.len();
        // A request larger than the whole queue waits for the queue to empty instead.
        let permits = n.clamp(1, self.max_queued) as u32;
        let permit = self
            .queue
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| SubmitError::QueueFull)?;
        let (done, result) = oneshot::channel();
        self.metrics.add(&self.metrics.queued_spans, n as u64);
        let _queued = Dequeue(&self.metrics, n as u64);
        self.tx
            .send(Job {
                rows,
                done,
                _permit: permit,
            })
            .map_err(|_| SubmitError::Unavailable("the collector is stopping".into()))?;
        match result.await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(SubmitError::Unavailable(e)),
            Err(_) => Err(SubmitError::Unavailable("the collector is stopping".into())),
        }
    }
}

/// Lowers the queued-spans gauge when the request is done (or dropped).
struct Dequeue<'a>(&'a Metrics, u64);

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.0
            .queued_spans
            .fetch_sub(self.1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Job>,
    mut stopping: watch::Receiver<bool>,
    pool: Pool,
    settings: Settings,
    metrics: Arc<Metrics>,
) {
    let writers = settings.writers.max(1);
    let slots = Arc::new(Semaphore::new(writers));
    let schema = Arc::new(SchemaCache::default());
    let mut carry: Option<Job> = None;
    let mut closed = false;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let first = match carry.take() {
            Some(job) => job,
            None => {
                let next = if closed {
                    rx.recv().await
                } else {
                    tokio::select! {
                        job = rx.recv() => job,
                        () = stop_requested(&mut stopping) => {
                            // No new requests; what is queued is still written.
                            closed = true;
                            rx.close();
                            rx.recv().await
                        }
                    }
                };
                match next {
                    Some(job) => job,
                    None => break,
                }
            }
        };
        let mut rows = first.rows.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + settings.flush_interval;
        while rows < settings.batch_rows {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) if !settings.flush_interval.is_zero() => {
                    timeout_at(deadline, rx.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            if rows + job.rows.len() > settings.batch_rows {
                carry = Some(job);
                break;
            }
            rows += job.rows.len();
            batch.push(job);
        }
        let (pool, schema, metrics, budget) = (
            pool.clone(),
            schema.clone(),
            metrics.clone(),
            settings.write_timeout,
        );
        tokio::spawn(async move {
            write_batch(batch, &pool, &schema, &metrics, budget).await;
            drop(slot);
        });
    }
    // Wait for the batches in progress.
    let _ = slots.acquire_many(writers as u32).await;
}

/// Resolves once a stop is asked for (never when the sender is gone without asking).
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    loop {
        let stop = *stopping.borrow_and_update();
        if stop {
            return;
        }
        if stopping.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Writes the jobs' rows and tells each job its outcome.
async fn write_batch(
    batch: Vec<Job>,
    pool: &Pool,
    schema: &SchemaCache,
    metrics: &Metrics,
    budget: Duration,
) {
    // Each id once: a request resent while the first copy is still queued is a duplicate.
    let mut seen = HashSet::with_capacity(batch.iter().map(|j| j.rows.len()).sum());
    let mut rows: Vec<(usize, &UsageRow)> = Vec::with_capacity(seen.capacity());
    let mut in_batch_duplicates = 0u64;
    for (j, job) in batch.iter().enumerate() {
        for row in &job.rows {
            if seen.insert(row.id) {
                rows.push((j, row));
            } else {
                in_batch_duplicates += 1;
            }
        }
    }
    let started = Instant::now();
    let result = write_rows(pool, schema, &rows, budget).await;
    metrics.observe_batch(started.elapsed());
    match result {
        Ok(outcome) => {
            let rejected = outcome.rejected.len() as u64;
            metrics.add(&metrics.spans_recorded, outcome.inserted);
            metrics.add(&metrics.spans_rejected, rejected);
            metrics.add(
                &metrics.spans_duplicate,
                rows.len() as u64 - outcome.inserted - rejected + in_batch_duplicates,
            );
            let mut per_job: Vec<Written> = batch.iter().map(|_| Written::default()).collect();
            for (i, reason) in outcome.rejected {
                let w = &mut per_job[rows[i].0];
                w.rejected += 1;
                if w.reasons.len() < MAX_REASONS {
                    w.reasons.push(format!("span row {}: {reason}", rows[i].1.id));
                }
            }
            for (job, written) in batch.into_iter().zip(per_job) {
                let _ = job.done.send(Ok(written));
            }
        }
        Err(e) => {
            metrics.add(&metrics.batch_errors, 1);
            schema.invalidate();
            tracing::warn!(error = %e, rows = rows.len(), "batch write failed; answering 503");
            let msg = format!("database unavailable: {e}");
            for job in batch {
                let _ = job.done.send(Err(msg.clone()));
            }
        }
    }
}

struct RowsOutcome {
    inserted: u64,
    /// (index into the rows, reason)
    rejected: Vec<(usize, String)>,
}

/// Whether the database refused the batch because of the data of some row.
fn is_data_error(e: &DbError) -> bool {
    e.sqlstate()
        .is_some_and(|s| s.starts_with("22") || s.starts_with("23"))
}

/// Inserts the rows; on a data error, splits until the offending rows are alone.
async fn write_rows(
    pool: &Pool,
    schema: &SchemaCache,
    rows: &[(usize, &UsageRow)],
    budget: Duration,
) -> Result<RowsOutcome, DbError> {
    let mut out = RowsOutcome {
        inserted: 0,
        rejected: Vec::new(),
    };
    let mut pending = vec![(0, rows.len())];
    while let Some((lo, hi)) = pending.pop() {
        if lo == hi {
            continue;
        }
        let part: Vec<&UsageRow> = rows[lo..hi].iter().map(|(_, r)| *r).collect();
        match insert(pool, schema, &part, budget).await {
            Ok(n) => out.inserted += n,
            Err(e) if is_data_error(&e) => {
                if hi - lo == 1 {
                    if e.sqlstate() == Some("23505") {
                        // The row exists though its claim was forgotten: a duplicate.
                        continue;
                    }
                    let reason = match &e {
                        DbError::Query(q) => q
                            .as_db_error()
                            .map_or_else(|| e.to_string(), |d| d.message().to_string()),
                        other => other.to_string(),
                    };
                    out.rejected.push((lo, reason));
                } else {
                    let mid = lo + (hi - lo) / 2;
                    pending.push((mid, hi));
                    pending.push((lo, mid));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One transaction: claim the ids, insert the claimed rows, commit. The number inserted.
async fn insert(
    pool: &Pool,
    schema: &SchemaCache,
    rows: &[&UsageRow],
    budget: Duration,
) -> Result<u64, DbError> {
    let deadline = Instant::now() + budget;
    let client = db::acquire(pool, deadline, budget).await?;
    let result = match timeout_at(deadline, insert_on(&client, schema, rows, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(DbError::Timeout(budget)),
    };
    if let Err(e) = &result {
        // A server-side error leaves an aborted transaction that ROLLBACK ends; anything
        // else (timeout, lost connection) leaves the connection in an unknown state.
        let recovered = matches!(e, DbError::Query(q) if q.as_db_error().is_some())
            && matches!(
                timeout_at(
                    deadline.max(Instant::now() + Duration::from_secs(1)),
                    client.batch_execute("ROLLBACK")
                )
                .await,
                Ok(Ok(()))
            );
        if !recovered {
            db::discard(client);
        }
    }
    result
}

async fn insert_on(
    client: &Object,
    schema: &SchemaCache,
    rows: &[&UsageRow],
    deadline: Instant,
) -> Result<u64, DbError> {
    let schema = schema.get(client).await?;
    let stmt = client.prepare_cached(&schema.sql).await.map_err(DbError::Query)?;
    let left_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1);
    client
        .batch_execute(&format!("BEGIN; SET LOCAL statement_timeout = {left_ms}"))
        .await
        .map_err(DbError::Query)?;
    let params = Params::new(rows, &schema);
    let refs = params.refs();
    let n = client.execute(&stmt, &refs).await.map_err(DbError::Query)?;
    client.batch_execute("COMMIT").await.map_err(DbError::Query)?;
    Ok(n)
}
