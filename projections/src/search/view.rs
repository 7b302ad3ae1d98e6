//! [`SearchView`] (the handle queries use) and [`SearchRunner`] (the task that follows the log,
//! commits, rebuilds and switches generations).
//!
//! One task drives both generations: it waits on whichever of the serving generation's next batch
//! and the rebuild's next page is ready first, applies it on a blocking thread (tantivy's work is
//! synchronous), commits, and only then publishes the checkpoint to waiters. The rebuild switches
//! in once it has read to the end of the log and reflects at least what the serving generation
//! does, so a reader's checkpoint never goes backwards. Shutdown is looked at between batches and
//! commits whatever is applied, so a batch in flight always lands.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{FutureExt, Stream, StreamExt};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use tantivy::IndexReader;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::error::IndexError;
use super::generation::{Generation, Opened, current, generation_path, generations, set_current};
use super::query;
use super::schema::Fields;
use super::{
    MAX_LIMIT, MAX_RESULTS, PROJECTOR, RebuildProgress, SearchOptions, SearchQuery, SearchResults,
    SearchState, SearchStatus, VERSION,
};
use crate::error::{Error, Result, chain};

/// The generation queries read.
struct Serving {
    reader: IndexReader,
    fields: Fields,
}

/// Where the runner is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunnerState {
    NotStarted,
    Running,
    Stopped,
}

/// What the runner has done, for [`SearchView::status`].
#[derive(Debug, Default)]
struct Progress {
    generation: u64,
    version: u32,
    events: u64,
    live: bool,
    rebuild: Option<RebuildProgress>,
    lag: Option<Duration>,
    last_event_recorded_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

struct Shared {
    root: PathBuf,
    serving: RwLock<Arc<Serving>>,
    /// The checkpoint queries see; moves only forward.
    committed: watch::Sender<Checkpoint>,
    runner: watch::Sender<RunnerState>,
    rebuild_requested: AtomicBool,
    rebuild_wake: Notify,
    progress: Mutex<Progress>,
}

impl Shared {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        // Plain values: a panic elsewhere cannot leave them inconsistent.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serving(&self) -> Arc<Serving> {
        Arc::clone(&self.serving.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The search view: queries, read-your-writes, status and rebuild requests. Cheap to clone.
#[derive(Clone)]
pub struct SearchView {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SearchView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchView")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

impl SearchView {
    /// Opens the view's index under `dir` (e.g. `<data_dir>/search`), creating it if needed:
    /// the serving generation answers queries at once; the returned runner brings it up to date
    /// and keeps it so. Resumes an interrupted rebuild, and starts one if the serving
    /// generation was built by another [`VERSION`]. Fails if another process holds the index.
    pub async fn open(
        dir: impl Into<PathBuf>,
        options: SearchOptions,
    ) -> Result<(SearchView, SearchRunner)> {
        let root: PathBuf = dir.into();
        let (opening_root, opening) = (root.clone(), options.clone());
        let (serving, building) =
            tokio::task::spawn_blocking(move || open_generations(&opening_root, &opening))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        let rebuild_wanted = serving.committed.version != VERSION && building.is_none();
        let shared = Arc::new(Shared {
            serving: RwLock::new(Arc::new(Serving {
                reader: serving.reader.clone(),
                fields: serving.fields,
            })),
            committed: watch::Sender::new(serving.committed.checkpoint),
            runner: watch::Sender::new(RunnerState::NotStarted),
            rebuild_requested: AtomicBool::new(rebuild_wanted),
            rebuild_wake: Notify::new(),
            progress: Mutex::new(Progress {
                generation: serving.number,
                version: serving.committed.version,
                events: serving.committed.events,
                ..Progress::default()
            }),
            root,
        });
        if rebuild_wanted {
            tracing::info!(
                view = PROJECTOR,
                built_by = serving.committed.version,
                version = VERSION,
                "the search index was built by another version; rebuilding it"
            );
        }
        let runner = SearchRunner {
            shared: Arc::clone(&shared),
            serving: Arc::new(Mutex::new(serving)),
            building: building.map(|b| Arc::new(Mutex::new(b))),
            options,
            last_live_commit: None,
            live_uncommitted: false,
        };
        runner.publish_rebuild();
        Ok((SearchView { shared }, runner))
    }

    /// Runs `query` on the serving generation (R-SRCH-1 to R-SRCH-5). CPU-bound for a few
    /// milliseconds: async callers run it on a blocking thread.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        // The checkpoint first: the reader is reloaded before a checkpoint is published, so the
        // searcher taken after it reflects at least that much.
        let checkpoint = *self.shared.committed.borrow();
        let serving = self.shared.serving();
        let searcher = serving.reader.searcher();
        let found = query::run(&searcher, &serving.fields, query)?;
        let end = query.offset.saturating_add(query.limit.min(MAX_LIMIT));
        let reachable = usize::try_from(found.total)
            .unwrap_or(usize::MAX)
            .min(MAX_RESULTS);
        Ok(SearchResults {
            total: found.total,
            hits: found.hits,
            next_offset: (end < reachable).then_some(end),
            checkpoint,
        })
    }

    /// Returns once queries see the log at least up to `at_least` (read-your-writes: pass the
    /// checkpoint a command returned), or [`Error::Timeout`] after `timeout`;
    /// [`Error::Stopped`] if the runner stops first.
    pub async fn wait_for(&self, at_least: Checkpoint, timeout: Duration) -> Result<()> {
        let mut committed = self.shared.committed.subscribe();
        let mut runner = self.shared.runner.subscribe();
        let reached = async {
            tokio::select! {
                // The sender lives in `shared`: this channel cannot close.
                r = committed.wait_for(|c| *c >= at_least) => r.is_ok(),
                _ = runner.wait_for(|s| *s == RunnerState::Stopped) => false,
            }
        };
        match tokio::time::timeout(timeout, reached).await {
            Ok(true) => Ok(()),
            Ok(false) if *self.shared.committed.borrow() >= at_least => Ok(()),
            Ok(false) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout {
                projector: PROJECTOR.to_owned(),
                wanted: at_least,
                reached: *self.shared.committed.borrow(),
                timeout,
            }),
        }
    }

    /// Asks for a blue/green rebuild: a new generation is built from the start of the log
    /// beside the serving one, which keeps answering until the new one has caught up. Does
    /// nothing while a rebuild runs. [`Error::Stopped`] once the runner has stopped.
    pub fn request_rebuild(&self) -> Result<()> {
        if *self.shared.runner.borrow() == RunnerState::Stopped {
            return Err(Error::Stopped);
        }
        if self.shared.progress().rebuild.is_some() {
            return Ok(());
        }
        self.shared.rebuild_requested.store(true, Ordering::SeqCst);
        self.shared.rebuild_wake.notify_one();
        Ok(())
    }

    /// What the view is doing.
    pub fn status(&self) -> SearchStatus {
        let progress = self.shared.progress();
        let state = match (&progress.rebuild, progress.live) {
            (Some(rebuild), _) => SearchState::Rebuilding(rebuild.clone()),
            (None, true) => SearchState::Live,
            (None, false) => SearchState::CatchingUp,
        };
        SearchStatus {
            version: progress.version,
            generation: progress.generation,
            checkpoint: *self.shared.committed.borrow(),
            events: progress.events,
            state,
            lag: progress.lag,
            last_event_recorded_at: progress.last_event_recorded_at,
            last_error: progress.last_error.clone(),
            running: *self.shared.runner.borrow() == RunnerState::Running,
        }
    }

    /// Returns once the runner has stopped (after the shutdown token was cancelled it commits
    /// what it applied, then stops).
    pub async fn stopped(&self) {
        let mut runner = self.shared.runner.subscribe();
        // The sender lives in `shared`: the channel cannot close.
        let _ = runner.wait_for(|s| *s == RunnerState::Stopped).await;
    }
}

/// Opens (or creates) the serving generation and any rebuild in progress, removing leftovers.
fn open_generations(
    root: &Path,
    options: &SearchOptions,
) -> Result<(Generation, Option<Generation>), IndexError> {
    std::fs::create_dir_all(root)?;
    let present = generations(root)?;
    let pointed = current(root)?;
    let mut serving = None;
    if let Some(number) = pointed.filter(|n| present.contains(n)) {
        match Generation::open(root, number, options)? {
            Opened::Usable(generation) => serving = Some(*generation),
            Opened::OtherSchema => tracing::warn!(
                view = PROJECTOR,
                generation = number,
                "the serving generation has another schema; building a new one"
            ),
        }
    }
    let mut building = None;
    if let Some(serving) = &serving {
        // The newest generation above the serving one is a rebuild that was cut short.
        if let Some(&number) = present.iter().rev().find(|&&n| n > serving.number) {
            match Generation::open(root, number, options)? {
                Opened::Usable(g) if g.committed.version == VERSION => {
                    tracing::info!(view = PROJECTOR, generation = number,
                        checkpoint = %g.committed.checkpoint, "resuming the interrupted rebuild");
                    building = Some(*g);
                }
                _ => {}
            }
        }
    }
    let keep = [
        serving.as_ref().map(|g| g.number),
        building.as_ref().map(|g| g.number),
    ];
    for number in &present {
        if !keep.contains(&Some(*number)) {
            let path = generation_path(root, *number);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(view = PROJECTOR, path = %path.display(), error = %e,
                    "cannot remove an old search generation");
            }
        }
    }
    let serving = match serving {
        Some(serving) => serving,
        None => {
            let number = present.last().map_or(1, |n| n + 1);
            let generation = Generation::create(root, number, options)?;
            set_current(root, number)?;
            generation
        }
    };
    Ok((serving, building))
}

/// Builds a fresh index under `dir` (which must not hold one) from `events`, given in log
/// order, exactly as a rebuild applies them; returns the checkpoint of the last event. Open it
/// with [`SearchView::open`]; its runner goes on from there. For benchmarks, imports and tools
/// that have the events in hand; blocking.
pub fn build(
    dir: &Path,
    options: &SearchOptions,
    events: impl IntoIterator<Item = RecordedEvent>,
) -> Result<Checkpoint> {
    std::fs::create_dir_all(dir).map_err(IndexError::from)?;
    if !generations(dir).map_err(IndexError::from)?.is_empty() {
        return Err(Error::Config(format!(
            "{} already holds a search index",
            dir.display()
        )));
    }
    let mut generation = Generation::create(dir, 1, options)?;
    let mut page = Vec::with_capacity(options.catch_up_page);
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        page.clear();
        page.extend(events.by_ref().take(options.catch_up_page.max(1)));
        generation.apply(&page, options.referrals.as_ref())?;
        if generation.commit_due(options) {
            generation.commit()?;
        }
    }
    generation.commit()?;
    set_current(dir, 1).map_err(IndexError::from)?;
    Ok(generation.committed.checkpoint)
}

type SharedGeneration = Arc<Mutex<Generation>>;

/// Runs `work` on `generation` on a blocking thread.
async fn blocking<T: Send + 'static>(
    generation: &SharedGeneration,
    work: impl FnOnce(&mut Generation) -> T + Send + 'static,
) -> T {
    let generation = Arc::clone(generation);
    tokio::task::spawn_blocking(move || {
        work(&mut generation.lock().unwrap_or_else(PoisonError::into_inner))
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn lock(generation: &SharedGeneration) -> MutexGuard<'_, Generation> {
    generation.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The task that keeps the view: spawn [`run`](Self::run).
pub struct SearchRunner {
    shared: Arc<Shared>,
    serving: SharedGeneration,
    building: Option<SharedGeneration>,
    options: SearchOptions,
    /// When the serving generation last committed (`None`: not since it opened, so the first
    /// live change commits at once).
    last_live_commit: Option<Instant>,
    /// Live batches applied to the serving generation and not yet committed.
    live_uncommitted: bool,
}

impl std::fmt::Debug for SearchRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchRunner")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

/// Marks the runner stopped when dropped, also when it panics.
struct Done(Arc<Shared>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.runner.send_replace(RunnerState::Stopped);
    }
}

impl SearchRunner {
    /// Follows the log from the committed checkpoints until `shutdown` is cancelled, retrying
    /// from the last commit after any error (with backoff; the error shows in the status).
    pub async fn run(self, store: EventStore, shutdown: CancellationToken) {
        self.shared.runner.send_replace(RunnerState::Running);
        // Declared before the runner so it drops after it: waiters hear "stopped" only once the
        // writers (and their directory locks) are gone, also when the task panics.
        let _done = Done(Arc::clone(&self.shared));
        let mut this = self;
        this.run_until(&store, &shutdown).await;
    }

    async fn run_until(&mut self, store: &EventStore, shutdown: &CancellationToken) {
        tracing::info!(
            view = PROJECTOR,
            generation = lock(&self.serving).number,
            "search view started"
        );
        let mut backoff = self.options.retry_backoff.0;
        while !shutdown.is_cancelled() {
            match self.follow(store, shutdown, &mut backoff).await {
                Ok(()) => break,
                Err(error) => {
                    let text = chain(&error);
                    tracing::warn!(view = PROJECTOR, error = %text, retry_in = ?backoff,
                        "search view failed; resuming from its last commit");
                    self.shared.progress().last_error = Some(text);
                    self.live_uncommitted = false;
                    if let Err(e) = self.rollback().await {
                        tracing::error!(view = PROJECTOR, error = %chain(&e),
                            "search view cannot roll back; stopping");
                        break;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.options.retry_backoff.1);
                }
            }
        }
        tracing::info!(view = PROJECTOR, checkpoint = %*self.shared.committed.borrow(),
            "search view stopped");
    }

    async fn rollback(&self) -> Result<(), IndexError> {
        blocking(&self.serving, Generation::rollback).await?;
        if let Some(building) = &self.building {
            blocking(building, Generation::rollback).await?;
        }
        Ok(())
    }

    /// Follows the log until shutdown (`Ok`) or an error.
    async fn follow(
        &mut self,
        store: &EventStore,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<()> {
        let options = self.options.clone();
        let mut live = Follower::new(lock(&self.serving).committed.checkpoint, Duration::ZERO);
        let mut rebuild = self
            .building
            .as_ref()
            .map(|b| Follower::new(lock(b).committed.checkpoint, options.rebuild_pause));
        loop {
            if self.building.is_none()
                && self.shared.rebuild_requested.swap(false, Ordering::SeqCst)
            {
                self.start_rebuild().await?;
                rebuild = Some(Follower::new(Checkpoint::START, options.rebuild_pause));
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.commit_all().await?;
                    return Ok(());
                }
                () = self.shared.rebuild_wake.notified(), if self.building.is_none() => {}
                () = tokio::time::sleep_until(
                    self.last_live_commit
                        .map_or_else(Instant::now, |at| at + options.live_commit_interval)
                        .into()
                ), if self.live_uncommitted => {
                    self.commit_serving(true).await?;
                }
                batch = live.next_batch(store, &options) => {
                    let caught_up = live.is_live();
                    self.apply_serving(batch?, caught_up).await?;
                    *backoff = options.retry_backoff.0;
                }
                batch = async {
                    match rebuild.as_mut() {
                        Some(follower) => follower.next_batch(store, &options).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let caught_up = rebuild.as_ref().is_some_and(Follower::is_live);
                    if self.apply_rebuild(batch?, caught_up).await? {
                        live = rebuild.take().expect("a rebuild follower");
                    }
                    *backoff = options.retry_backoff.0;
                }
            }
        }
    }

    /// Applies a batch to the serving generation. Caught up, it commits (so queries see it) at
    /// most once per [`SearchOptions::live_commit_interval`], leaving the rest to the follow
    /// loop's timer; catching up, it commits when enough has piled up.
    async fn apply_serving(&mut self, batch: Vec<RecordedEvent>, caught_up: bool) -> Result<()> {
        let hook = Arc::clone(&self.options.referrals);
        let options = self.options.clone();
        let due = blocking(&self.serving, move |g| -> Result<_> {
            g.apply(&batch, hook.as_ref())?;
            Ok(g.commit_due(&options))
        })
        .await?;
        self.shared.progress().live = caught_up;
        let interval_over = self
            .last_live_commit
            .is_none_or(|at| at.elapsed() >= self.options.live_commit_interval);
        if due || (caught_up && interval_over) {
            self.commit_serving(caught_up).await
        } else {
            self.live_uncommitted = caught_up;
            Ok(())
        }
    }

    /// Commits what the serving generation applied and publishes the new checkpoint.
    async fn commit_serving(&mut self, caught_up: bool) -> Result<()> {
        let committed = blocking(&self.serving, |g| -> Result<_> {
            Ok(g.commit()?.then_some((
                g.committed.checkpoint,
                g.committed.events,
                g.last_recorded_at,
            )))
        })
        .await?;
        self.live_uncommitted = false;
        if let Some((checkpoint, events, recorded_at)) = committed {
            // Only a commit that wrote something starts an interval: the first change after a
            // quiet spell commits at once.
            self.last_live_commit = Some(Instant::now());
            let lag = recorded_at.map(|t| (Utc::now() - t).to_std().unwrap_or_default());
            {
                let mut progress = self.shared.progress();
                progress.events = events;
                progress.last_event_recorded_at = recorded_at;
                progress.last_error = None;
                if caught_up {
                    progress.lag = lag;
                }
            }
            metrics::gauge!("jobboard_projection_position", "projector" => PROJECTOR)
                .set(as_f64(checkpoint.position));
            if let (true, Some(lag)) = (caught_up, lag) {
                metrics::histogram!("jobboard_projection_lag_seconds", "projector" => PROJECTOR)
                    .record(lag.as_secs_f64());
            }
            self.shared.committed.send_replace(checkpoint);
            self.publish_rebuild();
        }
        Ok(())
    }

    /// Applies a page to the generation being rebuilt; commits when caught up or when enough
    /// has piled up; switches to it when it has caught up. Returns true when it switched.
    async fn apply_rebuild(&mut self, batch: Vec<RecordedEvent>, caught_up: bool) -> Result<bool> {
        let building = Arc::clone(self.building.as_ref().expect("a rebuild runs"));
        let hook = Arc::clone(&self.options.referrals);
        let options = self.options.clone();
        let checkpoint = blocking(&building, move |g| -> Result<_> {
            g.apply(&batch, hook.as_ref())?;
            if caught_up || g.commit_due(&options) {
                g.commit()?;
            }
            Ok(g.committed.checkpoint)
        })
        .await?;
        self.shared.progress().last_error = None;
        self.publish_rebuild();
        // Only forward: the new generation must reflect everything queries already see.
        if caught_up && checkpoint >= *self.shared.committed.borrow() {
            self.switch().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Creates the next generation, empty, for a rebuild.
    async fn start_rebuild(&mut self) -> Result<()> {
        let root = self.shared.root.clone();
        let number = lock(&self.serving).number + 1;
        let options = self.options.clone();
        let generation =
            tokio::task::spawn_blocking(move || Generation::create(&root, number, &options))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        tracing::info!(
            view = PROJECTOR,
            generation = number,
            "search rebuild started"
        );
        self.building = Some(Arc::new(Mutex::new(generation)));
        self.publish_rebuild();
        Ok(())
    }

    /// Makes the rebuilt generation the serving one: `CURRENT` first (durably), then the
    /// readers, then the checkpoint; the old generation is closed and deleted last, while queries
    /// that still hold its searcher finish on the open files.
    async fn switch(&mut self) -> Result<()> {
        let building = self.building.take().expect("a rebuild runs");
        let (number, serving, checkpoint, events, version, recorded_at) = {
            let g = lock(&building);
            (
                g.number,
                Serving {
                    reader: g.reader.clone(),
                    fields: g.fields,
                },
                g.committed.checkpoint,
                g.committed.events,
                g.committed.version,
                g.last_recorded_at,
            )
        };
        let root = self.shared.root.clone();
        tokio::task::spawn_blocking(move || set_current(&root, number))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map_err(IndexError::from)?;
        *self
            .shared
            .serving
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(serving);
        let old = std::mem::replace(&mut self.serving, building);
        self.shared.committed.send_replace(checkpoint);
        // A request made while this rebuild ran is answered by it: it read the whole log.
        self.shared.rebuild_requested.store(false, Ordering::SeqCst);
        tracing::info!(view = PROJECTOR, generation = number, checkpoint = %checkpoint,
            "search rebuild caught up; queries switched to it");
        // Nothing else holds the old generation once its last blocking task has returned.
        if let Ok(old) = Arc::try_unwrap(old) {
            let old = old.into_inner().unwrap_or_else(PoisonError::into_inner);
            let removed = tokio::task::spawn_blocking(move || old.remove())
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            if let Err(e) = removed {
                // Removed on the next start instead.
                tracing::warn!(view = PROJECTOR, error = %chain(&e),
                    "cannot remove the old search generation");
            }
        }
        // Reported last, so the status says "live" only once the old generation is gone.
        let mut progress = self.shared.progress();
        progress.generation = number;
        progress.version = version;
        progress.events = events;
        progress.live = true;
        progress.rebuild = None;
        progress.last_event_recorded_at = recorded_at;
        Ok(())
    }

    /// Commits whatever either generation applied (at shutdown).
    async fn commit_all(&mut self) -> Result<()> {
        let live = self.shared.progress().live;
        self.commit_serving(live).await?;
        if let Some(building) = &self.building {
            blocking(building, |g| g.commit()).await?;
        }
        self.publish_rebuild();
        Ok(())
    }

    /// Copies the rebuild's progress into the status.
    fn publish_rebuild(&self) {
        let rebuild = self.building.as_ref().map(|b| {
            let g = lock(b);
            let serving = self.shared.committed.borrow().position;
            let fraction = if serving == 0 {
                1.0
            } else {
                (as_f64(g.committed.checkpoint.position) / as_f64(serving)).min(1.0)
            };
            RebuildProgress {
                generation: g.number,
                checkpoint: g.committed.checkpoint,
                events: g.committed.events,
                fraction,
            }
        });
        self.shared.progress().rebuild = rebuild;
    }
}

/// Reads the log for one generation: pages while behind, then the live subscription.
struct Follower {
    after: Checkpoint,
    pause: Duration,
    /// Set once a page came back short: the generation has read to the end of the log.
    live: Option<Pin<Box<dyn Stream<Item = jobboard_eventstore::Result<RecordedEvent>> + Send>>>,
    /// An error the subscription returned after events that were handed out first.
    failed: Option<jobboard_eventstore::Error>,
    paused: bool,
}

impl Follower {
    fn new(after: Checkpoint, pause: Duration) -> Self {
        Self {
            after,
            pause,
            live: None,
            failed: None,
            paused: false,
        }
    }

    fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The next events after the last batch. Cancel-safe: a read cut short is read again (a
    /// page) or resumed (the subscription keeps its in-flight read).
    async fn next_batch(
        &mut self,
        store: &EventStore,
        options: &SearchOptions,
    ) -> Result<Vec<RecordedEvent>> {
        {
            if let Some(e) = self.failed.take() {
                return Err(e.into());
            }
            loop {
                if let Some(stream) = self.live.as_mut() {
                    let first = stream
                        .next()
                        .await
                        .unwrap_or(Err(jobboard_eventstore::Error::Closed))?;
                    let mut batch = vec![first];
                    // Take what is already buffered, without waiting.
                    while batch.len() < options.live_batch.max(1) {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(event))) => batch.push(event),
                            Some(Some(Err(e))) => {
                                self.failed = Some(e);
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    self.after = batch.last().map_or(self.after, RecordedEvent::checkpoint);
                    return Ok(batch);
                }
                if self.paused && !self.pause.is_zero() {
                    tokio::time::sleep(self.pause).await;
                }
                self.paused = false;
                let limit = options.catch_up_page.max(1);
                let page = store.read_all(self.after, limit).await?;
                if page.events.len() < limit && !page.held {
                    // The end of the log as of this read: follow it live from here.
                    let after = page
                        .events
                        .last()
                        .map_or(self.after, RecordedEvent::checkpoint);
                    self.live = Some(Box::pin(store.subscribe(after)));
                }
                if let Some(last) = page.events.last() {
                    self.after = last.checkpoint();
                    self.paused = true;
                    return Ok(page.events);
                }
                if self.live.is_some() {
                    // Nothing new, but the generation has just caught up: say so (the caller
                    // reports it live, or switches a rebuild in).
                    return Ok(Vec::new());
                }
                // An open transaction holds back committed events (PostgreSQL): look again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A position as a gauge value or a ratio (exact below 2^53, far beyond any log).
#[allow(clippy::cast_precision_loss)]
fn as_f64(position: u64) -> f64 {
    position as f64
}
