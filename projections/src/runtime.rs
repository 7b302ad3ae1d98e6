//! The projection runtime: per projector, a task that keeps the serving generation of its view
//! up to date and a task that rebuilds a new generation beside it when one is asked for (or the
//! projector's version went up), each only while this instance holds that generation's lease.
//!
//! Serving: take the serving generation's lease (or stand by, looking again every
//! [`RuntimeOptions::poll_interval`]), then follow the log from its checkpoint, committing each
//! batch with the checkpoint (compare-and-set, which also locks the registry row). Any error
//! rolls the batch back and, after a backoff, starts again from the checkpoint as committed: the
//! events of a failed batch are read again, never skipped, never applied twice. A runner whose
//! generation was switched away finds its compare-and-set refused and moves to the new one.
//!
//! Rebuilding: take the building generation's lease, read the log in large pages from its
//! checkpoint (position 0 for a new one, where it stopped for an interrupted one), fold each
//! batch in memory and write it in bulk (`Projector::apply_prepared`, by default
//! `apply_batch`), and switch reads over when it
//! reaches the serving generation's checkpoint (see `runner.rs`). The replaced generation's
//! tables are dropped after [`RuntimeOptions::drop_grace`].
//!
//! Shutdown is looked at only between batches, so a batch in flight always commits.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::db::{Target, ViewDb, ViewTx};
use crate::error::{Error, Result, chain};
use crate::lease::{self, Lease};
use crate::rebuild::{drop_after_grace, request_rebuild, sweep_retired};
use crate::registry::{Generation, GenerationState, u64_to_f64};
use crate::runner::{Committed, Runner, Stop};
use crate::status::{LogCounter, ProjectionReport, report};

/// Turns events into a read model.
///
/// A projector is identified by its name and version. Each build of its view is a *generation*
/// with tables of its own: the projector names every table and index it creates or writes through
/// [`ViewTx::table`] (`postings` becomes `postings_v2_g3`), and readers query the plain name
/// (`postings`), a database view that points at the serving generation's table. So a new version,
/// or a rebuild of the same one, builds beside the serving generation from the start of the log,
/// and reads switch in one transaction when it has caught up (ADR 0007).
///
/// It sees every event of the log in global order and ignores (returns `Ok` for) the ones it does
/// not know: they still advance its checkpoint. Side effects (notifications, pushes) must be
/// skipped while [`ViewTx::replaying`].
///
/// The trait is object safe (through `async_trait`) because the runtime holds projectors of
/// different types in one list.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the registry key, the metrics label and the `wait_for` argument.
    fn name(&self) -> &'static str;

    /// Version of the view's shape; a higher version rebuilds beside the serving one.
    fn version(&self) -> u32;

    /// Creates the generation's tables and indexes (named through [`ViewTx::table`]) if they do
    /// not exist (idempotent).
    ///
    /// While [`ViewTx::replaying`] (a rebuild beside the serving generation) it may leave out
    /// what only readers need, such as secondary indexes: bulk-building them once is cheaper
    /// than maintaining them row by row through the whole log. The runtime calls it again, not
    /// replaying, in the transaction that switches the generation in, and whenever it takes a
    /// serving generation's lease.
    async fn setup(&self, tx: &mut ViewTx) -> Result<()>;

    /// Applies one event to the view inside the batch's transaction. Errors roll the whole batch
    /// back; it is retried from the checkpoint.
    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()>;

    /// The base names of the tables readers query (`["postings", "posting_drafts"]`), each
    /// created as [`ViewTx::table`] names it. The runtime points a database view of each base
    /// name at the serving generation's table, and drops a replaced generation's tables.
    ///
    /// Empty (the default): the projector does not name its tables by generation, so it cannot
    /// be rebuilt beside itself at the same version ([`Error::NotRebuildable`]).
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies a batch of events, in order, inside one transaction. The default applies them one
    /// by one; a projector that can fold a batch in memory and write each row once overrides it
    /// (rebuilds hand it thousands of events at a time).
    async fn apply_batch(&self, tx: &mut ViewTx, events: &[RecordedEvent]) -> Result<()> {
        for event in events {
            self.apply(tx, event).await?;
        }
        Ok(())
    }

    /// The work on each event that needs no database (decoding its payload, serialising what
    /// will be written), which the runtime then does as the event is read, on the reader's
    /// task: so it overlaps the writing of the batch before instead of adding to it. `None`
    /// (the default): nothing to prepare, [`apply_prepared`](Self::apply_prepared) is
    /// [`apply_batch`](Self::apply_batch).
    fn preparer(&self) -> Option<Preparer> {
        None
    }

    /// Applies a batch whose events went through [`preparer`](Self::preparer): `prepared[i]`
    /// is what it returned for `events[i]`. Must do what `apply_batch` does.
    async fn apply_prepared(
        &self,
        tx: &mut ViewTx,
        events: &[RecordedEvent],
        prepared: Vec<Option<Prepared>>,
    ) -> Result<()> {
        let _ = prepared;
        self.apply_batch(tx, events).await
    }
}

/// What a [`Preparer`] made of an event, for its projector's
/// [`apply_prepared`](Projector::apply_prepared) to take back (`downcast`).
pub type Prepared = Box<dyn std::any::Any + Send>;

/// See [`Projector::preparer`]. It sees every event of the log; `None` for one it ignores. It
/// cannot fail: an event that does not decode is for `apply_prepared` to report, at its place
/// in the batch (a preparer returns the error as its `Prepared`).
pub type Preparer = Arc<dyn Fn(&RecordedEvent) -> Option<Prepared> + Send + Sync>;

/// How the runtime batches, retries and cooperates with other instances.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Most events applied in one transaction while following the log live.
    pub batch_size: usize,
    /// Most events applied in one transaction while rebuilding. Larger batches find more of a
    /// posting's life in one batch, so fewer rows are loaded back and written again; 50,000
    /// events hold some 100 MB in memory.
    pub rebuild_batch_size: usize,
    /// First and longest wait before retrying after an error (doubling in between).
    pub retry_backoff: (Duration, Duration),
    /// How often an instance without a lease looks again: whether the holder died, a rebuild
    /// was asked for, or a switch happened elsewhere. Bounds how long a takeover takes.
    pub poll_interval: Duration,
    /// How long a replaced generation's tables are kept after the switch, for reads that
    /// started before it.
    pub drop_grace: Duration,
    /// How often the status metrics (lag, rebuild progress) are refreshed; `None`: never.
    pub observe_interval: Option<Duration>,
    /// This instance's name in the registry's lease holders (host, process and a random tag by
    /// default).
    pub instance: String,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            rebuild_batch_size: 50_000,
            retry_backoff: (Duration::from_millis(100), Duration::from_secs(30)),
            poll_interval: Duration::from_secs(1),
            drop_grace: Duration::from_secs(5),
            observe_interval: Some(Duration::from_secs(10)),
            instance: instance_name(),
        }
    }
}

/// `host/pid/tag`: which process holds a lease, told apart from another runtime in it.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &tag[..6])
}

/// What this instance does for a projector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It holds the serving generation's lease and applies the log to it.
    Leading,
    /// Another instance leads (or none could yet); this one serves reads and waits.
    Standby,
    /// The serving generation is of a newer version than this instance's code: it serves reads
    /// and applies nothing.
    Superseded,
    /// Its tasks have stopped.
    Stopped,
}

/// A rebuild this instance is running.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalRebuild {
    /// The generation being built.
    pub generation: u64,
    /// Events it covers so far.
    pub events: u64,
    /// Where it will switch: the serving generation's events when its last batch was cut.
    pub target_events: Option<u64>,
    /// Events per second since this instance took it on.
    pub events_per_sec: f64,
}

/// What a projector has done in this instance, for operators.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectorStatus {
    /// The projector's name.
    pub name: &'static str,
    /// The projector's version (this instance's code).
    pub version: u32,
    /// The serving generation, as last seen here.
    pub generation: Option<u64>,
    /// The last event the serving view reflects (committed), as last seen here.
    pub checkpoint: Checkpoint,
    /// How many events the checkpoint covers since the view was built, applied or skipped.
    pub events: u64,
    /// What this instance does for it.
    pub role: Role,
    /// A rebuild this instance runs, if any.
    pub rebuild: Option<LocalRebuild>,
    /// When this process last committed a batch.
    pub last_applied_at: Option<DateTime<Utc>>,
    /// When the last event it committed was recorded in the log.
    pub last_event_recorded_at: Option<DateTime<Utc>>,
    /// The last error, until a batch commits again (the projector is retrying while it is set).
    pub last_error: Option<String>,
    /// False once its tasks have stopped (after shutdown).
    pub running: bool,
}

/// The progress of one projector, shared by its tasks and the runtime's callers.
struct Tracked {
    projector: Arc<dyn Projector>,
    name: &'static str,
    version: u32,
    /// The serving generation's committed checkpoint as known here: moved by this instance's
    /// commits, or read from the registry while another instance leads. Held here (not only by
    /// the task) so that it never closes and waiters always see the last value.
    committed: watch::Sender<Checkpoint>,
    /// Whether this instance leads the serving generation (so `committed` is current without
    /// asking the database).
    leading: AtomicBool,
    /// Wakes the tasks: a rebuild was asked for here, or a switch handed the serving lease over.
    wake: Notify,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    generation: Option<u64>,
    events: u64,
    role: Option<Role>,
    rebuild: Option<LocalRebuild>,
    rebuild_started: Option<(Instant, u64)>,
    last_applied_at: Option<DateTime<Utc>>,
    last_event_recorded_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    tasks: usize,
}

impl Tracked {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // The data is plain counters: a panic elsewhere cannot leave it inconsistent.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the known serving checkpoint forward to `to` (never back), waking `wait_for`.
    fn advance(&self, to: Checkpoint) {
        self.committed.send_if_modified(|at| {
            let newer = to > *at;
            if newer {
                *at = to;
            }
            newer
        });
    }

    /// Takes in what a serving generation reached: its checkpoint and progress.
    fn saw(&self, generation: &Generation) {
        self.advance(generation.checkpoint);
        let mut progress = self.progress();
        if progress.generation != Some(generation.generation) || progress.events < generation.events
        {
            progress.generation = Some(generation.generation);
            progress.events = generation.events;
        }
    }

    fn set_role(&self, role: Role) {
        self.progress().role = Some(role);
        self.leading.store(role == Role::Leading, Ordering::SeqCst);
    }
}

struct Inner {
    projectors: Vec<Arc<Tracked>>,
    db: ViewDb,
    store: EventStore,
    options: RuntimeOptions,
    /// Number of projector tasks still running.
    running: watch::Sender<usize>,
    /// The log's length, counted once and then by its tail, for lag in events.
    counter: tokio::sync::Mutex<LogCounter>,
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
            .field("instance", &self.inner.options.instance)
            .finish_non_exhaustive()
    }
}

/// What a task should do next.
enum Next {
    /// Look again at once.
    Again,
    /// Look again after the poll interval (or when woken).
    Poll,
    /// Stop: shutdown.
    Stop,
}

impl ProjectionRuntime {
    /// Starts two tasks per projector (serving, rebuilding) with the default options. Fails if
    /// two projectors share a name or the registry cannot be read.
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
        let mut tracked = Vec::with_capacity(projectors.len());
        for (i, projector) in projectors.iter().enumerate() {
            let name = projector.name();
            if projectors[..i].iter().any(|p| p.name() == name) {
                return Err(Error::DuplicateProjector(name));
            }
            let current = db.current(name).await?;
            let (checkpoint, events, generation) = current
                .active
                .as_ref()
                .map_or((Checkpoint::START, 0, None), |g| {
                    (g.checkpoint, g.events, Some(g.generation))
                });
            tracked.push(Arc::new(Tracked {
                projector: Arc::clone(projector),
                name,
                version: projector.version(),
                committed: watch::Sender::new(checkpoint),
                leading: AtomicBool::new(false),
                wake: Notify::new(),
                progress: Mutex::new(Progress {
                    generation,
                    events,
                    tasks: 2,
                    ..Progress::default()
                }),
            }));
        }
        let inner = Arc::new(Inner {
            running: watch::Sender::new(tracked.len() * 2),
            projectors: tracked,
            db,
            store,
            options,
            counter: tokio::sync::Mutex::new(LogCounter::default()),
        });
        for tracked in &inner.projectors {
            // The first generation is created before the tasks run, so that reads work (on an
            // empty view) as soon as `spawn` returns.
            let supervisor = Supervisor {
                inner: Arc::clone(&inner),
                tracked: Arc::clone(tracked),
                shutdown: shutdown.clone(),
                first_lease: Arc::new(Mutex::new(None)),
            };
            let serving = supervisor.ensure_serving().await?;
            if serving.version == tracked.version
                && let Some(lease) = supervisor.take_lease(&serving).await?
            {
                *supervisor
                    .first_lease
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((serving, lease));
            }
            for building in [false, true] {
                let supervisor = supervisor.clone();
                tokio::spawn(async move {
                    let _done = Done(
                        Arc::clone(&supervisor.inner),
                        Arc::clone(&supervisor.tracked),
                    );
                    supervisor.run(building).await;
                });
            }
        }
        if let Some(every) = inner.options.observe_interval {
            let runtime = Self {
                inner: Arc::clone(&inner),
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(error) = runtime.report().await {
                        tracing::debug!(error = %chain(&error), "projection status not refreshed");
                    }
                }
            });
        }
        Ok(Self { inner })
    }

    /// Returns once `projector`'s serving view is at or past `at_least` (read-your-writes: pass
    /// the checkpoint a command returned), or [`Error::Timeout`] after `timeout`. Works on every
    /// instance: one that does not lead the projector watches the committed checkpoint in the
    /// database. [`Error::Stopped`] if the runtime stops first, [`Error::UnknownProjector`] for a
    /// name not running here.
    pub async fn wait_for(
        &self,
        projector: &str,
        at_least: Checkpoint,
        timeout: Duration,
    ) -> Result<()> {
        let tracked = self.find(projector)?;
        if *tracked.committed.borrow() >= at_least {
            return Ok(());
        }
        let mut committed = tracked.committed.subscribe();
        let mut running = self.inner.running.subscribe();
        let reached = async {
            let mut poll = Duration::from_millis(10);
            loop {
                if !tracked.leading.load(Ordering::SeqCst)
                    && let Ok(Some(stored)) = self.inner.db.checkpoint(tracked.name).await
                {
                    tracked.advance(stored.checkpoint);
                }
                if *committed.borrow_and_update() >= at_least {
                    return true;
                }
                tokio::select! {
                    // The sender lives in `tracked`: this channel cannot close.
                    _ = committed.changed() => {}
                    _ = running.wait_for(|n| *n == 0) => return false,
                    () = tokio::time::sleep(poll) => poll = (poll * 2).min(Duration::from_millis(100)),
                }
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

    /// The serving view's committed checkpoint of `projector`, as known here.
    pub fn checkpoint(&self, projector: &str) -> Result<Checkpoint> {
        Ok(*self.find(projector)?.committed.borrow())
    }

    /// What every projector does in this instance, in the order they were given.
    pub fn status(&self) -> Vec<ProjectorStatus> {
        self.inner
            .projectors
            .iter()
            .map(|t| {
                let progress = t.progress();
                let running = progress.tasks > 0;
                ProjectorStatus {
                    name: t.name,
                    version: t.version,
                    generation: progress.generation,
                    checkpoint: *t.committed.borrow(),
                    events: progress.events,
                    role: if running {
                        progress.role.unwrap_or(Role::Standby)
                    } else {
                        Role::Stopped
                    },
                    rebuild: progress.rebuild.clone(),
                    last_applied_at: progress.last_applied_at,
                    last_event_recorded_at: progress.last_event_recorded_at,
                    last_error: progress.last_error.clone(),
                    running,
                }
            })
            .collect()
    }

    /// Every projector's generations, lag and lease holders, as the database has them (whichever
    /// instance runs them), and refreshes the status metrics. Counts the log once, then only its
    /// new tail on later calls.
    pub async fn report(&self) -> Result<Vec<ProjectionReport>> {
        let names: Vec<&str> = self.inner.projectors.iter().map(|t| t.name).collect();
        let mut counter = self.inner.counter.lock().await;
        let reports = report(&self.inner.db, &self.inner.store, &mut counter, &names).await?;
        drop(counter);
        for report in &reports {
            let leading = self
                .find(&report.projector)
                .is_ok_and(|t| t.leading.load(Ordering::SeqCst));
            report.record_metrics(leading);
        }
        Ok(reports)
    }

    /// Asks for a rebuild of `projector` beside its serving generation, from the start of the
    /// log: returns the building generation (an existing one if a rebuild is already under way)
    /// and whether it is new. Whichever instance takes its lease builds it (this one is woken at
    /// once); reads switch when it has caught up.
    pub async fn request_rebuild(&self, projector: &str) -> Result<(Generation, bool)> {
        let tracked = self.find(projector)?;
        let requested = request_rebuild(&self.inner.db, tracked.projector.as_ref()).await?;
        tracked.wake.notify_waiters();
        Ok(requested)
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
        {
            let mut progress = self.1.progress();
            progress.tasks = progress.tasks.saturating_sub(1);
        }
        self.1.leading.store(false, Ordering::SeqCst);
        self.0.running.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One projector's tasks.
#[derive(Clone)]
struct Supervisor {
    inner: Arc<Inner>,
    tracked: Arc<Tracked>,
    shutdown: CancellationToken,
    /// The serving generation's lease if `spawn` took it, for the serving task to start with:
    /// its setup then happens before `spawn` returns, not under the first requests.
    first_lease: Arc<Mutex<Option<(Generation, Lease)>>>,
}

impl Supervisor {
    fn name(&self) -> &'static str {
        self.tracked.name
    }

    fn runner(&self) -> Runner<'_> {
        Runner {
            db: &self.inner.db,
            store: &self.inner.store,
            projector: self.tracked.projector.as_ref(),
            options: &self.inner.options,
            shutdown: &self.shutdown,
        }
    }

    /// The serving task (`building` false) or the rebuilding task, until shutdown.
    async fn run(&self, building: bool) {
        let name = self.name();
        let task = if building { "rebuild" } else { "serve" };
        tracing::debug!(projector = name, task, "projector task started");
        let mut backoff = self.inner.options.retry_backoff.0;
        while !self.shutdown.is_cancelled() {
            let step = if building {
                self.step_build().await
            } else {
                self.step_serve().await
            };
            let wait = match step {
                Ok(Next::Stop) => break,
                Ok(Next::Again) => {
                    backoff = self.inner.options.retry_backoff.0;
                    continue;
                }
                Ok(Next::Poll) => {
                    backoff = self.inner.options.retry_backoff.0;
                    self.inner.options.poll_interval
                }
                Err(error) => {
                    let text = chain(&error);
                    tracing::warn!(projector = name, task, error = %text, retry_in = ?backoff,
                        "projector failed; resuming from its committed checkpoint");
                    self.tracked.progress().last_error = Some(text);
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.inner.options.retry_backoff.1);
                    wait
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                () = self.tracked.wake.notified() => {}
            }
        }
        if !building {
            self.tracked.set_role(Role::Stopped);
        }
        tracing::info!(projector = name, task, checkpoint = %*self.tracked.committed.borrow(),
            "projector task stopped");
    }

    /// Makes sure a serving generation exists: the first build of a projector serves from the
    /// start (there is nothing better to serve), with its tables and views created.
    async fn ensure_serving(&self) -> Result<Generation> {
        let projector = self.tracked.projector.as_ref();
        let mut tx = self.inner.db.begin().await?;
        tx.lock_setup().await?;
        let generation = match tx.active_generation(self.name()).await? {
            Some(generation) => generation,
            None => {
                let generation = tx
                    .create_generation(self.name(), projector.version(), GenerationState::Active)
                    .await?;
                tx.set_target(Target {
                    suffix: generation.suffix.clone(),
                    replaying: false,
                });
                projector.setup(&mut tx).await?;
                tx.point_views(projector.tables(), &generation.suffix)
                    .await?;
                tracing::info!(
                    projector = self.name(),
                    generation = generation.generation,
                    version = generation.version,
                    "first generation created"
                );
                generation
            }
        };
        tx.commit().await?;
        self.tracked.saw(&generation);
        Ok(generation)
    }

    async fn step_serve(&self) -> Result<Next> {
        let first = self
            .first_lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((serving, lease)) = first {
            return self.serve(&serving, lease).await;
        }
        let name = self.name();
        let version = self.tracked.version;
        let current = self.inner.db.current(name).await?;
        let Some(active) = current.active else {
            self.ensure_serving().await?;
            return Ok(Next::Again);
        };
        self.tracked.saw(&active);
        if active.version > version {
            self.tracked.set_role(Role::Superseded);
            return Ok(Next::Poll);
        }
        if active.version < version {
            // A version bump: build this version beside the serving one.
            if current
                .building
                .as_ref()
                .is_none_or(|b| b.version != version)
            {
                let (building, _) =
                    request_rebuild(&self.inner.db, self.tracked.projector.as_ref()).await?;
                tracing::info!(
                    projector = name,
                    generation = building.generation,
                    version,
                    serving_version = active.version,
                    "version bump: rebuilding beside the serving view"
                );
                self.tracked.wake.notify_waiters();
            }
            self.tracked.set_role(Role::Standby);
            return Ok(Next::Poll);
        }
        let Some(lease) = self.take_lease(&active).await? else {
            self.tracked.set_role(Role::Standby);
            return Ok(Next::Poll);
        };
        self.serve(&active, lease).await
    }

    /// Follows the log into the serving generation with its lease, until it stops serving,
    /// the lease is lost, or shutdown.
    async fn serve(&self, active: &Generation, lease: Lease) -> Result<Next> {
        self.tracked.set_role(Role::Leading);
        sweep_retired(
            &self.inner.db,
            self.tracked.projector.as_ref(),
            &self.inner.options,
        )
        .await?;
        let stop = self.run_generation(active, lease, false).await;
        self.tracked.set_role(Role::Standby);
        Ok(match stop? {
            Stop::Shutdown => Next::Stop,
            Stop::Retired | Stop::LeaseLost | Stop::Switched { .. } | Stop::Idle => Next::Again,
        })
    }

    async fn step_build(&self) -> Result<Next> {
        let current = self.inner.db.current(self.name()).await?;
        let Some(building) = current.building else {
            let mut progress = self.tracked.progress();
            progress.rebuild = None;
            progress.rebuild_started = None;
            return Ok(Next::Poll);
        };
        if building.version != self.tracked.version {
            return Ok(Next::Poll);
        }
        let Some(lease) = self.take_lease(&building).await? else {
            self.tracked.progress().rebuild = None;
            return Ok(Next::Poll);
        };
        {
            let mut progress = self.tracked.progress();
            progress.rebuild_started = Some((Instant::now(), building.events));
            progress.rebuild = Some(LocalRebuild {
                generation: building.generation,
                events: building.events,
                target_events: None,
                events_per_sec: 0.0,
            });
        }
        let stop = self.run_generation(&building, lease, true).await;
        if stop.is_ok() {
            // After an error the rebuild is still this instance's to retry: keep showing it.
            let mut progress = self.tracked.progress();
            progress.rebuild = None;
            progress.rebuild_started = None;
        }
        match stop? {
            Stop::Shutdown => Ok(Next::Stop),
            Stop::Switched { retired } => {
                // The serving task takes the new generation's lease now, not at its next look.
                self.tracked.wake.notify_waiters();
                if let Some(retired) = retired {
                    drop_after_grace(
                        &self.inner.db,
                        self.tracked.projector.as_ref(),
                        &retired,
                        &self.inner.options,
                        &self.shutdown,
                    )
                    .await?;
                }
                Ok(Next::Again)
            }
            Stop::Retired | Stop::LeaseLost | Stop::Idle => Ok(Next::Again),
        }
    }

    /// Takes `generation`'s lease if free, makes sure its tables (and, if it serves, the
    /// readers' views) exist, and records the holder.
    async fn take_lease(&self, generation: &Generation) -> Result<Option<Lease>> {
        let key = lease::key(self.name(), generation.generation);
        let Some(lease) = self.inner.db.try_lease(&key).await? else {
            return Ok(None);
        };
        let projector = self.tracked.projector.as_ref();
        let mut tx = self.inner.db.begin().await?;
        tx.lock_setup().await?;
        tx.set_target(Target {
            suffix: generation.suffix.clone(),
            replaying: generation.state == GenerationState::Building,
        });
        projector.setup(&mut tx).await?;
        if generation.state == GenerationState::Active {
            tx.ensure_views(projector.tables(), &generation.suffix)
                .await?;
        }
        tx.record_lease(
            self.name(),
            generation.generation,
            &self.inner.options.instance,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(projector = self.name(), generation = generation.generation,
            state = %generation.state, instance = %self.inner.options.instance, "lease taken");
        Ok(Some(lease))
    }

    /// Runs a generation with its lease, then lets the lease go.
    async fn run_generation(
        &self,
        generation: &Generation,
        mut lease: Lease,
        building: bool,
    ) -> Result<Stop> {
        let name = self.name();
        let labels = [
            ("projector", name.to_owned()),
            ("version", generation.version.to_string()),
        ];
        let position = metrics::gauge!("jobboard_projection_position", &labels);
        let lag = metrics::histogram!("jobboard_projection_lag_seconds", &labels);
        let applied = metrics::counter!("jobboard_projection_events_total", &labels);
        if !building {
            position.set(u64_to_f64(generation.checkpoint.position));
            self.tracked.saw(generation);
        }
        let tracked = &self.tracked;
        let on_commit = |c: &Committed| {
            let now = Utc::now();
            applied.increment(c.batch);
            let mut progress = tracked.progress();
            progress.last_applied_at = Some(now);
            progress.last_error = None;
            if building {
                let started = progress.rebuild_started;
                if let (Some(rebuild), Some((since, start))) = (progress.rebuild.as_mut(), started)
                {
                    rebuild.events = c.events;
                    rebuild.target_events = c.target_events;
                    let seconds = since.elapsed().as_secs_f64();
                    if seconds > 0.0 {
                        rebuild.events_per_sec =
                            u64_to_f64(c.events.saturating_sub(start)) / seconds;
                    }
                }
                return;
            }
            for recorded in &c.recorded {
                lag.record((now - *recorded).as_seconds_f64().max(0.0));
            }
            position.set(u64_to_f64(c.checkpoint.position));
            progress.events = c.events;
            progress.generation = Some(generation.generation);
            progress.last_event_recorded_at = c.last_recorded_at;
            drop(progress);
            tracked.advance(c.checkpoint);
        };
        let stop = self
            .runner()
            .run(generation, &mut lease, false, &on_commit)
            .await;
        if let Ok(Stop::Switched { .. }) = &stop {
            // The rebuilt generation serves now: what it reached is what readers see.
            if let Ok(current) = self.inner.db.current(name).await
                && let Some(active) = current.active
            {
                tracked.saw(&active);
            }
        }
        let mut tx = self.inner.db.begin().await?;
        tx.clear_lease(name, generation.generation, &self.inner.options.instance)
            .await?;
        tx.commit().await?;
        lease.release().await;
        stop
    }
}

impl ViewTx {
    /// Creates the readers' views of `tables` over the generation with `suffix` where they do
    /// not exist yet (after migrating from a database without generations).
    pub(crate) async fn ensure_views(&mut self, tables: &[&str], suffix: &str) -> Result<()> {
        for base in tables {
            let sql = match self.backend() {
                crate::db::Backend::Postgres => {
                    "SELECT COUNT(*) AS n FROM pg_views WHERE viewname = $1 \
                     AND schemaname = current_schema()"
                }
                crate::db::Backend::Sqlite => {
                    "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'view' AND name = $1"
                }
            };
            let row = self.fetch_optional(sql, &[(*base).into()]).await?;
            let exists = match row {
                Some(row) => row.get::<i64>("n")? > 0,
                None => false,
            };
            if !exists {
                self.point_views(&[base], suffix).await?;
            }
        }
        Ok(())
    }
}
