//! The projection runtime: one task per projector that follows the log from its checkpoint and
//! commits each batch of view changes together with the checkpoint.
//!
//! A projector task loops: load the committed checkpoint, subscribe to the log after it, and
//! for each batch (the events available at once, up to [`RuntimeOptions::batch_size`]) open one
//! transaction, move the checkpoint (compare-and-set, which also locks its row), apply every
//! event, commit, then publish the checkpoint to [`ProjectionRuntime::wait_for`]. Any error rolls
//! the batch back and, after a backoff, restarts the loop from the checkpoint as committed: the
//! events of a failed batch are read again, never skipped, never applied twice. Shutdown is
//! looked at only between batches, so a batch in flight always commits.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::{ViewDb, ViewTx};
use crate::error::{Error, Result, chain};

/// Turns events into a read model.
///
/// A projector is identified by its name and version; its tables carry the version in their name
/// (`postings_v1`), so a new version can be built beside the old one from the start of the log.
/// It sees every event of the log in global order and ignores (returns `Ok` for) the ones it does
/// not know: they still advance its checkpoint.
///
/// The trait is object safe (through `async_trait`) because the runtime holds projectors of
/// different types in one list; one boxed future per event is noise next to a database write.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the checkpoint key, the metrics label and the `wait_for` argument.
    fn name(&self) -> &'static str;

    /// Version of the view's shape; a new version rebuilds from the start of the log.
    fn version(&self) -> u32;

    /// Creates the projector's tables and indexes if they do not exist (idempotent).
    async fn setup(&self, tx: &mut ViewTx) -> Result<()>;

    /// Applies one event to the view inside the batch's transaction. Errors roll the whole batch
    /// back; it is retried from the checkpoint.
    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()>;
}

/// How the runtime batches and retries.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Most events applied in one transaction.
    pub batch_size: usize,
    /// First and longest wait before retrying after an error (doubling in between).
    pub retry_backoff: (Duration, Duration),
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            retry_backoff: (Duration::from_millis(100), Duration::from_secs(30)),
        }
    }
}

/// What a projector has done, for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectorStatus {
    /// The projector's name.
    pub name: &'static str,
    /// The projector's version.
    pub version: u32,
    /// The last event its view reflects (committed).
    pub checkpoint: Checkpoint,
    /// How many events the checkpoint covers since the view was built, applied or skipped.
    pub events: u64,
    /// When this process last committed a batch.
    pub last_applied_at: Option<DateTime<Utc>>,
    /// When the last event it committed was recorded in the log.
    pub last_event_recorded_at: Option<DateTime<Utc>>,
    /// The last error, until a batch commits again (the projector is retrying while it is set).
    pub last_error: Option<String>,
    /// False once its task has stopped (after shutdown).
    pub running: bool,
}

/// The progress of one projector, shared by its task and the runtime's callers.
struct Tracked {
    name: &'static str,
    version: u32,
    /// The committed checkpoint. Held here (not only by the task) so that it never closes and
    /// waiters always see the last value.
    committed: watch::Sender<Checkpoint>,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    events: u64,
    last_applied_at: Option<DateTime<Utc>>,
    last_event_recorded_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    running: bool,
}

impl Tracked {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // The data is plain counters: a panic elsewhere cannot leave it inconsistent.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Inner {
    projectors: Vec<Arc<Tracked>>,
    /// Number of projector tasks still running.
    running: watch::Sender<usize>,
}

/// The running projectors. Cheap to clone; stops when the shutdown token is cancelled.
#[derive(Clone)]
pub struct ProjectionRuntime {
    inner: Arc<Inner>,
}

impl fmt::Debug for ProjectionRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.inner.projectors.iter().map(|p| p.name).collect();
        f.debug_struct("ProjectionRuntime")
            .field("projectors", &names)
            .finish_non_exhaustive()
    }
}

impl ProjectionRuntime {
    /// Sets up every projector's tables and checkpoint, then starts one task per projector with
    /// the default options. Fails if a setup fails or two projectors share a name.
    pub async fn spawn(
        db: ViewDb,
        store: EventStore,
        projectors: Vec<Arc<dyn Projector>>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        Self::spawn_with(db, store, projectors, RuntimeOptions::default(), shutdown).await
    }

    /// [`spawn`](Self::spawn) with options.
    pub async fn spawn_with(
        db: ViewDb,
        store: EventStore,
        projectors: Vec<Arc<dyn Projector>>,
        options: RuntimeOptions,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let mut prepared = Vec::with_capacity(projectors.len());
        for (i, projector) in projectors.iter().enumerate() {
            let name = projector.name();
            if projectors[..i].iter().any(|p| p.name() == name) {
                return Err(Error::DuplicateProjector(name));
            }
            let mut tx = db.begin().await?;
            tx.lock_setup().await?;
            projector.setup(&mut tx).await?;
            let stored = tx.ensure_checkpoint(name, projector.version()).await?;
            tx.commit().await?;
            let tracked = Arc::new(Tracked {
                name,
                version: projector.version(),
                committed: watch::Sender::new(stored.checkpoint),
                progress: Mutex::new(Progress {
                    events: stored.events,
                    running: true,
                    ..Progress::default()
                }),
            });
            prepared.push((tracked, Arc::clone(projector)));
        }
        let inner = Arc::new(Inner {
            projectors: prepared.iter().map(|(t, _)| Arc::clone(t)).collect(),
            running: watch::Sender::new(prepared.len()),
        });
        for (tracked, projector) in prepared {
            let worker = Worker {
                tracked,
                projector,
                db: db.clone(),
                store: store.clone(),
                options: options.clone(),
                shutdown: shutdown.clone(),
            };
            let inner = Arc::clone(&inner);
            tokio::spawn(async move {
                let _done = Done(inner, Arc::clone(&worker.tracked));
                worker.run().await;
            });
        }
        Ok(Self { inner })
    }

    /// Returns once `projector`'s committed checkpoint is at or past `at_least` (read-your-writes:
    /// pass the checkpoint a command returned), or [`Error::Timeout`] after `timeout`.
    /// [`Error::Stopped`] if the runtime stops first, [`Error::UnknownProjector`] for a name not
    /// running here.
    pub async fn wait_for(
        &self,
        projector: &str,
        at_least: Checkpoint,
        timeout: Duration,
    ) -> Result<()> {
        let tracked = self.find(projector)?;
        let mut committed = tracked.committed.subscribe();
        let mut running = self.inner.running.subscribe();
        let reached = async {
            tokio::select! {
                // The sender lives in `tracked`: this channel cannot close.
                r = committed.wait_for(|c| *c >= at_least) => r.is_ok(),
                _ = running.wait_for(|n| *n == 0) => false,
            }
        };
        match tokio::time::timeout(timeout, reached).await {
            Ok(true) => Ok(()),
            // Stopped: the last batch may still have reached it.
            Ok(false) if *tracked.committed.borrow() >= at_least => Ok(()),
            Ok(false) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout {
                projector: projector.to_owned(),
                wanted: at_least,
                reached: *tracked.committed.borrow(),
                timeout,
            }),
        }
    }

    /// The committed checkpoint of `projector`.
    pub fn checkpoint(&self, projector: &str) -> Result<Checkpoint> {
        Ok(*self.find(projector)?.committed.borrow())
    }

    /// What every projector has done, in the order they were given.
    pub fn status(&self) -> Vec<ProjectorStatus> {
        self.inner
            .projectors
            .iter()
            .map(|t| {
                let progress = t.progress();
                ProjectorStatus {
                    name: t.name,
                    version: t.version,
                    checkpoint: *t.committed.borrow(),
                    events: progress.events,
                    last_applied_at: progress.last_applied_at,
                    last_event_recorded_at: progress.last_event_recorded_at,
                    last_error: progress.last_error.clone(),
                    running: progress.running,
                }
            })
            .collect()
    }

    /// Returns once every projector task has stopped (after the shutdown token was cancelled,
    /// each commits the batch it is in, then stops).
    pub async fn stopped(&self) {
        let mut running = self.inner.running.subscribe();
        // The sender lives in `inner`, which `self` keeps: the channel cannot close.
        let _ = running.wait_for(|n| *n == 0).await;
    }

    fn find(&self, projector: &str) -> Result<&Arc<Tracked>> {
        self.inner
            .projectors
            .iter()
            .find(|t| t.name == projector)
            .ok_or_else(|| Error::UnknownProjector(projector.to_owned()))
    }
}

/// Marks a projector task as ended when dropped, also when it panics.
struct Done(Arc<Inner>, Arc<Tracked>);

impl Drop for Done {
    fn drop(&mut self) {
        self.1.progress().running = false;
        self.0.running.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One projector's task.
struct Worker {
    tracked: Arc<Tracked>,
    projector: Arc<dyn Projector>,
    db: ViewDb,
    store: EventStore,
    options: RuntimeOptions,
    shutdown: CancellationToken,
}

impl Worker {
    async fn run(&self) {
        let name = self.tracked.name;
        tracing::info!(
            projector = name,
            version = self.tracked.version,
            "projector started"
        );
        let mut backoff = self.options.retry_backoff.0;
        while !self.shutdown.is_cancelled() {
            match self.follow(&mut backoff).await {
                Ok(()) => break,
                Err(error) => {
                    let text = chain(&error);
                    tracing::warn!(projector = name, error = %text, retry_in = ?backoff,
                        "projector failed; resuming from its committed checkpoint");
                    self.tracked.progress().last_error = Some(text);
                    tokio::select! {
                        () = self.shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.options.retry_backoff.1);
                }
            }
        }
        tracing::info!(projector = name, checkpoint = %*self.tracked.committed.borrow(),
            "projector stopped");
    }

    /// Follows the log from the committed checkpoint until shutdown (`Ok`) or an error.
    async fn follow(&self, backoff: &mut Duration) -> Result<()> {
        let (name, version) = (self.tracked.name, self.tracked.version);
        // Reload rather than trust memory: after a failed commit the batch may or may not have
        // committed, and only the database knows.
        let stored = self
            .db
            .checkpoint(name, version)
            .await?
            .ok_or(Error::CheckpointMoved {
                projector: name,
                version,
            })?;
        let mut at = stored.checkpoint;
        self.tracked.committed.send_replace(at);
        self.tracked.progress().events = stored.events;

        let labels = [
            ("projector", name.to_owned()),
            ("version", version.to_string()),
        ];
        let position = metrics::gauge!("jobboard_projection_position", &labels);
        let lag = metrics::histogram!("jobboard_projection_lag_seconds", &labels);
        let applied = metrics::counter!("jobboard_projection_events_total", &labels);
        position.set(u64_to_f64(at.position));

        let mut events = Box::pin(self.store.subscribe(at));
        loop {
            let first = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(()),
                next = events.next() => next,
            };
            let first = first.unwrap_or(Err(jobboard_eventstore::Error::Closed))?;
            let mut batch = vec![first];
            // Take what is already buffered, without waiting: a quiet log commits each event at
            // once, a busy one in large batches. A read cut short here is not lost: the
            // subscription keeps its in-flight read and resumes it on the next poll.
            let mut failed = None;
            while batch.len() < self.options.batch_size {
                match events.next().now_or_never() {
                    Some(Some(Ok(event))) => batch.push(event),
                    Some(Some(Err(e))) => {
                        failed = Some(e);
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            at = self.commit(at, &batch).await?;
            *backoff = self.options.retry_backoff.0;

            let now = Utc::now();
            let last_recorded = batch.last().map(|e| e.metadata.recorded_at);
            for event in &batch {
                lag.record((now - event.metadata.recorded_at).as_seconds_f64().max(0.0));
            }
            applied.increment(batch.len() as u64);
            position.set(u64_to_f64(at.position));
            {
                let mut progress = self.tracked.progress();
                progress.events += batch.len() as u64;
                progress.last_applied_at = Some(now);
                progress.last_event_recorded_at = last_recorded;
                progress.last_error = None;
            }
            self.tracked.committed.send_replace(at);
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
    }

    /// Applies `batch` and moves the checkpoint from `from` past it, in one transaction.
    async fn commit(&self, from: Checkpoint, batch: &[RecordedEvent]) -> Result<Checkpoint> {
        let (name, version) = (self.tracked.name, self.tracked.version);
        let to = batch.last().map_or(from, RecordedEvent::checkpoint);
        let mut tx = self.db.begin().await?;
        if !tx
            .advance_checkpoint(name, version, from, to, batch.len() as u64)
            .await?
        {
            return Err(Error::CheckpointMoved {
                projector: name,
                version,
            });
        }
        for event in batch {
            self.projector.apply(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(to)
    }
}

/// A position as a gauge value (exact below 2^53, far beyond any log).
#[allow(clippy::cast_precision_loss)]
fn u64_to_f64(value: u64) -> f64 {
    value as f64
}
