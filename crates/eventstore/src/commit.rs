//! Group commit: appends submitted concurrently are written in one transaction, so the cost of a
//! commit (a round trip and an fsync) is shared by everyone waiting for it.
//!
//! Each worker takes the appends queued at that moment (one per stream and per command id; the
//! rest wait for its next round), writes them with one call to the backend, and answers each
//! caller on its own: a conflict or duplicate in one append never affects the others. If the whole
//! transaction fails, the worker retries the appends one by one so that one bad append cannot
//! fail its neighbours.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::store::{PreparedAppend, StoreOptions};
use crate::types::AppendOutcome;

/// What the backend did with one append of a batch.
#[derive(Debug)]
pub(crate) enum Written {
    Committed(AppendOutcome),
    /// The stream was at `actual`, not the expected version; nothing written.
    Conflict {
        actual: u64,
    },
    /// The command id was committed before; the first outcome (its stream may differ).
    Duplicate(AppendOutcome),
    /// Must be tried again in a new transaction (see `append_batch` in the PostgreSQL migration).
    Retry,
}

/// A backend's way of writing a batch in one transaction.
pub(crate) trait BatchWriter: Send + Sync + 'static {
    /// Writes the appends (distinct streams, distinct command ids) in one transaction and returns
    /// one [`Written`] per append, in order.
    fn write(&self, batch: &[&PreparedAppend])
    -> impl Future<Output = Result<Vec<Written>>> + Send;

    /// Wakes subscribers after a commit.
    fn committed(&self);
}

/// Turns a worker yields, at most, for callers to join its batch.
const GATHER_TURNS: u32 = 16;

/// Times an append is retried after transient failures before its caller gets the error.
const MAX_ATTEMPTS: u32 = 20;

struct Job {
    append: PreparedAppend,
    reply: oneshot::Sender<Result<AppendOutcome>>,
    attempts: u32,
}

/// The queue in front of the commit workers.
#[derive(Debug)]
pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<Job>,
    closed: AtomicBool,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("stream", &self.append.stream)
            .finish()
    }
}

impl Committer {
    /// Starts `workers` commit workers writing through `writer`.
    pub(crate) fn start<W: BatchWriter>(writer: W, options: &StoreOptions, workers: usize) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let writer = Arc::new(writer);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let workers = workers.max(1);
        for _ in 0..workers {
            let worker = Worker {
                writer: Arc::clone(&writer),
                queue: Arc::clone(&rx),
                max_batch: options.max_batch_appends.max(1),
                in_flight: Arc::clone(&in_flight),
                workers,
            };
            tokio::spawn(worker.run());
        }
        Self {
            queue,
            closed: AtomicBool::new(false),
            in_flight,
        }
    }

    /// Queues an append and waits for its outcome.
    pub(crate) async fn submit(&self, append: PreparedAppend) -> Result<AppendOutcome> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (reply, outcome) = oneshot::channel();
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let job = Job {
            append,
            reply,
            attempts: 0,
        };
        if self.queue.send(job).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Closed);
        }
        outcome.await.map_err(|_| Error::Closed)?
    }

    /// Refuses new appends and waits (up to 30 s) for queued ones to be answered.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

struct Worker<W> {
    writer: Arc<W>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    max_batch: usize,
    in_flight: Arc<AtomicUsize>,
    workers: usize,
}

impl<W: BatchWriter> Worker<W> {
    async fn run(self) {
        let mut carried: VecDeque<Job> = VecDeque::new();
        let mut last_batch = 1;
        loop {
            let mut jobs: Vec<Job> = carried.drain(..).collect();
            // With jobs in hand, never wait for the queue: another worker may hold it while it
            // waits for work that will not come.
            let queue = if jobs.is_empty() {
                Some(self.queue.lock().await)
            } else {
                self.queue.try_lock().ok()
            };
            if let Some(mut queue) = queue {
                if jobs.is_empty() {
                    match queue.recv().await {
                        Some(job) => jobs.push(job),
                        None => return,
                    }
                }
                // The callers answered by the last batch are submitting again right now: give
                // them a few turns to join, up to the last batch's size, so that many callers
                // do not split into a one-append batch and a batch of the rest. A lone caller
                // (last batch of one) does not wait at all. With several workers, a batch takes
                // at most its share of the callers waiting, and the rest is left to the next
                // worker: the workers then alternate with batches of similar size, one writing
                // while the callers of the other submit again.
                let mut turns = GATHER_TURNS;
                while jobs.len() < self.share() {
                    match queue.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) if turns > 0 && jobs.len() < last_batch => {
                            turns -= 1;
                            tokio::task::yield_now().await;
                        }
                        Err(_) => break,
                    }
                }
            }
            last_batch = jobs.len();
            let (batch, later) = split_batch(jobs);
            carried.extend(later);
            carried.extend(self.write(batch).await);
        }
    }

    /// The most appends one batch takes: an even share of every append waiting to be answered
    /// (those queued and those in other workers' batches), within the configured maximum. A lone
    /// worker's share is the maximum: "everything submitted so far" would stop it gathering the
    /// callers that are about to submit again.
    fn share(&self) -> usize {
        if self.workers == 1 {
            return self.max_batch;
        }
        let waiting = self.in_flight.load(Ordering::Acquire);
        waiting.div_ceil(self.workers).clamp(1, self.max_batch)
    }

    /// Writes a batch and answers its jobs; returns the jobs to try again.
    async fn write(&self, batch: Vec<Job>) -> Vec<Job> {
        let appends: Vec<&PreparedAppend> = batch.iter().map(|j| &j.append).collect();
        match self.writer.write(&appends).await {
            Ok(results) => self.answer(batch, results),
            Err(error) if batch.len() > 1 => {
                tracing::warn!(%error, size = batch.len(), "batch failed; retrying its appends one by one");
                let mut again = Vec::new();
                for job in batch {
                    again.extend(Box::pin(self.write(vec![job])).await);
                }
                again
            }
            Err(error) => {
                let mut job = batch.into_iter().next().expect("a batch is never empty");
                job.attempts += 1;
                if is_transient(&error) && job.attempts < MAX_ATTEMPTS {
                    tokio::time::sleep(Duration::from_millis(u64::from(job.attempts))).await;
                    vec![job]
                } else {
                    self.reply(job, Err(error));
                    Vec::new()
                }
            }
        }
    }

    fn answer(&self, batch: Vec<Job>, results: Vec<Written>) -> Vec<Job> {
        let mut retry = Vec::new();
        let mut any_committed = false;
        for (mut job, written) in batch.into_iter().zip(results) {
            let outcome = match written {
                Written::Committed(outcome) => {
                    any_committed = true;
                    Ok(outcome)
                }
                Written::Conflict { actual } => Err(Error::Conflict {
                    stream: job.append.stream.to_string(),
                    expected: job.append.expected,
                    actual,
                }),
                Written::Duplicate(first) if first.stream_id != job.append.stream.as_str() => {
                    Err(Error::CommandIdReused {
                        command_id: job.append.meta.command_id.clone().unwrap_or_default(),
                        first_stream: first.stream_id,
                    })
                }
                Written::Duplicate(first) => Ok(AppendOutcome {
                    duplicate: true,
                    ..first
                }),
                Written::Retry => {
                    job.attempts += 1;
                    if job.attempts < MAX_ATTEMPTS {
                        retry.push(job);
                        continue;
                    }
                    Err(Error::Contended {
                        stream: job.append.stream.to_string(),
                    })
                }
            };
            self.reply(job, outcome);
        }
        if any_committed {
            self.writer.committed();
        }
        retry
    }

    fn reply(&self, job: Job, outcome: Result<AppendOutcome>) {
        // The caller may have gone away; what committed stays committed.
        let _ = job.reply.send(outcome);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Splits jobs into a batch with each stream and command id at most once, and the rest.
fn split_batch(jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    let mut streams = HashSet::new();
    let mut commands = HashSet::new();
    let mut batch = Vec::with_capacity(jobs.len());
    let mut later = Vec::new();
    for job in jobs {
        let command_free = job
            .append
            .meta
            .command_id
            .as_ref()
            .is_none_or(|c| !commands.contains(c));
        if command_free && !streams.contains(&job.append.stream) {
            streams.insert(job.append.stream.clone());
            if let Some(c) = &job.append.meta.command_id {
                commands.insert(c.clone());
            }
            batch.push(job);
        } else {
            later.push(job);
        }
    }
    (batch, later)
}

/// Deadlocks, serialization failures and unique violations from a racing batch go away on retry.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Database(sqlx::Error::Database(db)) => {
            matches!(
                db.code().as_deref(),
                Some("40P01" | "40001" | "23505" | "55P03")
            ) || db.message().contains("database is locked")
        }
        Error::Database(sqlx::Error::PoolTimedOut) => true,
        _ => false,
    }
}
