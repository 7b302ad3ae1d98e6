//! [`Runner`]: applies the log to one generation of a projector's view, batch by batch, each
//! batch committed in one transaction with the generation's checkpoint.
//!
//! The work is a pipeline of three tasks, so that reading, decoding and writing overlap instead
//! of taking turns:
//! - a reader task reads ahead of the writer. While serving it follows the log through
//!   `EventStore::subscribe`, woken by commits, never polling the log (a quiet runner only looks
//!   at the registry once per poll interval, for a switch made elsewhere); while rebuilding it
//!   reads large pages with `read_all` and says when it has reached the log's readable end;
//! - a preparing task, if the projector has a `Projector::preparer`, decodes each event for it;
//! - the runner folds and writes each batch while the next is read and prepared.
//!
//! A rebuilding generation never passes the serving generation's checkpoint: each batch is cut at
//! it, and the batch that reaches it exactly switches the two in the same transaction (the
//! serving row locked, so the serving runner cannot move on meanwhile). So reads switch to a view
//! that is exactly as far as the one they leave, and every event is applied by the serving
//! generation of its time exactly once (which is what lets projectors skip side effects while
//! `ViewTx::replaying`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::{Target, ViewDb};
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::registry::{Generation, GenerationState};
use crate::runtime::{Prepared, Preparer, Projector, RuntimeOptions};

/// Events a rebuild's reader asks for per page (the log reads fastest in large pages).
const SCAN_PAGE: usize = 5000;
/// Most events one chunk of a serving reader holds (one page of the subscription).
const FOLLOW_CHUNK: usize = 1000;
/// Chunks read ahead of the writer: a rebuild's batch is several pages.
const READ_AHEAD: usize = 8;
/// How long a rebuild's reader waits before looking again at the log's end.
const END_RECHECK: Duration = Duration::from_millis(50);

/// Why a runner stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Shutdown was asked for; the last batch committed.
    Shutdown,
    /// The generation is no longer in the state it ran in (switched away, or a rebuild
    /// cancelled).
    Retired,
    /// The lease's connection died: another instance may hold it now.
    LeaseLost,
    /// The rebuilt generation now serves; the one it replaced is returned for dropping.
    Switched { retired: Option<Box<Generation>> },
    /// Asked to stop at the log's end, and there.
    Idle,
}

/// What one committed batch did, for progress reports.
#[derive(Clone, Debug)]
pub(crate) struct Committed {
    /// The generation's checkpoint after the batch.
    pub(crate) checkpoint: Checkpoint,
    /// Events the checkpoint covers in all.
    pub(crate) events: u64,
    /// Events in the batch.
    pub(crate) batch: u64,
    /// When the log recorded the batch's last event.
    pub(crate) last_recorded_at: Option<DateTime<Utc>>,
    /// Where a rebuild will switch: the serving generation's event count when the batch was cut.
    pub(crate) target_events: Option<u64>,
    /// The batch's events' commit times, for the lag histogram (serving batches only).
    pub(crate) recorded: Vec<DateTime<Utc>>,
}

/// What the reader task hands the writer.
enum Feed {
    /// Events in log order, each with what the projector's preparer made of it.
    Events(Vec<RecordedEvent>, Vec<Option<Prepared>>),
    /// The log's readable end was reached (rebuild readers only).
    AtEnd,
}

/// Aborts the reader task when the runner stops.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one generation. Borrowed pieces of the runtime (or of a one-off rebuild).
pub(crate) struct Runner<'a> {
    pub(crate) db: &'a ViewDb,
    pub(crate) store: &'a EventStore,
    pub(crate) projector: &'a dyn Projector,
    pub(crate) options: &'a RuntimeOptions,
    pub(crate) shutdown: &'a CancellationToken,
}

impl Runner<'_> {
    /// Applies the log to `generation` (active: follow it live; building: read it in large
    /// pages and switch on reaching the serving generation) until a [`Stop`] or an error. With
    /// `until_idle`, an active generation read by pages stops at the log's end.
    pub(crate) async fn run(
        &self,
        generation: &Generation,
        lease: &mut Lease,
        until_idle: bool,
        on_commit: &(dyn Fn(&Committed) + Send + Sync),
    ) -> Result<Stop> {
        let building = generation.state == GenerationState::Building;
        let scan = building || until_idle;
        let batch_size = if scan {
            self.options.rebuild_batch_size
        } else {
            self.options.batch_size
        }
        .max(1);
        let target = Target {
            suffix: generation.suffix.clone(),
            replaying: building,
        };
        let mut at = generation.checkpoint;
        let mut events = generation.events;

        let (sender, mut feed) = mpsc::channel(READ_AHEAD);
        let store = self.store.clone();
        let _reader = AbortOnDrop(tokio::spawn(if scan {
            scan_log(store, at, sender).boxed()
        } else {
            follow_log(store, at, sender).boxed()
        }));
        // With a preparer, a stage of its own between reader and writer: the reader reads the
        // next page meanwhile.
        let _preparer = self.projector.preparer().map(|preparer| {
            let (prepared, receiver) = mpsc::channel(READ_AHEAD);
            let read = std::mem::replace(&mut feed, receiver);
            AbortOnDrop(tokio::spawn(prepare_feed(read, preparer, prepared)))
        });

        // Events read but not applied yet (a chunk can be larger than a batch), and what the
        // preparer made of each.
        let mut buffer = Buffer::default();
        let mut end_seen = false;
        let mut failed: Option<Error> = None;
        loop {
            if buffer.events.is_empty() && !end_seen && failed.is_none() {
                let next = tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => return Ok(Stop::Shutdown),
                    next = feed.recv() => Some(next),
                    () = tokio::time::sleep(self.options.poll_interval), if !building => None,
                };
                let Some(next) = next else {
                    // A quiet log: look whether a rebuild elsewhere (`jobboard-replay`, another
                    // instance) switched this generation out, which the next batch's
                    // compare-and-set would tell, but only once an event comes.
                    if !self.still_in_its_state(generation).await? {
                        return Ok(Stop::Retired);
                    }
                    if !lease.holds().await {
                        return Ok(Stop::LeaseLost);
                    }
                    continue;
                };
                buffer.receive(next, &mut end_seen, &mut failed);
            } else if self.shutdown.is_cancelled() {
                return Ok(Stop::Shutdown);
            }
            // Take what is already read, without waiting: a quiet log commits each event at
            // once, a busy one (or a rebuild) in large batches.
            while buffer.events.len() < batch_size && !end_seen && failed.is_none() {
                match feed.try_recv() {
                    Ok(next) => buffer.receive(Some(next), &mut end_seen, &mut failed),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        buffer.receive(None, &mut end_seen, &mut failed);
                    }
                }
            }
            let (batch, prepared) = buffer.take(batch_size);
            // The end counts once everything read before it is applied.
            let at_end = end_seen && buffer.events.is_empty();
            if at_end {
                end_seen = false;
            }
            if !lease.holds().await {
                return Ok(Stop::LeaseLost);
            }
            if !batch.is_empty() || (building && at_end) {
                let outcome = if building {
                    self.commit_building(generation, &target, at, &batch, prepared, at_end)
                        .await?
                } else {
                    self.commit_active(generation, &target, at, &batch, prepared)
                        .await?
                };
                let (mut committed, switched) = match outcome {
                    Outcome::Retired => return Ok(Stop::Retired),
                    Outcome::Committed(committed) => (committed, None),
                    Outcome::Switched(committed, retired) => (committed, Some(retired)),
                };
                if committed.batch > 0 {
                    events += committed.batch;
                    committed.events = events;
                    at = committed.checkpoint;
                    on_commit(&committed);
                }
                if let Some(retired) = switched {
                    return Ok(Stop::Switched { retired });
                }
            }
            if buffer.events.is_empty()
                && let Some(error) = failed.take()
            {
                return Err(error);
            }
            if at_end && until_idle && !building {
                return Ok(Stop::Idle);
            }
        }
    }

    /// Applies a batch to the serving generation and moves its checkpoint.
    async fn commit_active(
        &self,
        generation: &Generation,
        target: &Target,
        from: Checkpoint,
        batch: &[RecordedEvent],
        prepared: Vec<Option<Prepared>>,
    ) -> Result<Outcome> {
        let name = self.projector.name();
        let to = batch.last().map_or(from, RecordedEvent::checkpoint);
        let mut tx = self.db.begin().await?;
        tx.set_target(target.clone());
        let last_recorded_at = batch.last().map(|e| e.metadata.recorded_at);
        if !tx
            .advance(
                name,
                generation.generation,
                GenerationState::Active,
                from,
                to,
                batch.len() as u64,
                last_recorded_at,
            )
            .await?
        {
            drop(tx);
            return self.why_not_moved(generation).await;
        }
        self.projector
            .apply_prepared(&mut tx, batch, prepared)
            .await?;
        tx.commit().await?;
        Ok(Outcome::Committed(committed(to, batch)))
    }

    /// Applies the part of a batch up to the serving generation's checkpoint to a rebuilding
    /// generation; switches the two when the rebuild reaches that checkpoint exactly.
    async fn commit_building(
        &self,
        generation: &Generation,
        target: &Target,
        from: Checkpoint,
        batch: &[RecordedEvent],
        mut prepared: Vec<Option<Prepared>>,
        at_end: bool,
    ) -> Result<Outcome> {
        let name = self.projector.name();
        let mut tx = self.db.begin().await?;
        tx.set_target(target.clone());
        let mut serving = tx.active_generation(name).await?;
        let mut take = cut(batch, serving.as_ref());
        let reached = at_end || take < batch.len() || end_of(batch, take, from) == cap(&serving);
        if reached {
            // Lock the serving row, so its runner cannot move on between this check and the
            // switch, and take whatever it reached meanwhile from the rest of the batch.
            serving = tx
                .generation_for_update(name, GenerationState::Active)
                .await?;
            take = cut(batch, serving.as_ref());
        }
        let to = end_of(batch, take, from);
        let switch = reached
            && match &serving {
                Some(serving) => serving.checkpoint == to,
                // Nothing serves (dropped by hand): serve from here.
                None => true,
            };
        if take == 0 && !switch {
            // Nothing to write, no switch: the serving generation is further on, and this
            // runner has not read that far yet.
            return Ok(Outcome::Committed(rebuilt(from, &[], None)));
        }
        let applied = &batch[..take];
        if let Some(serving) = &serving
            && to > serving.checkpoint
        {
            return Err(Error::Corrupted(format!(
                "rebuild of {name} at {to} is past the serving generation at {}",
                serving.checkpoint
            )));
        }
        if !tx
            .advance(
                name,
                generation.generation,
                GenerationState::Building,
                from,
                to,
                applied.len() as u64,
                applied.last().map(|e| e.metadata.recorded_at),
            )
            .await?
        {
            drop(tx);
            return self.why_not_moved(generation).await;
        }
        prepared.truncate(take);
        self.projector
            .apply_prepared(&mut tx, applied, prepared)
            .await?;
        let target_events = serving.as_ref().map(|s| s.events);
        if !switch {
            tx.commit().await?;
            return Ok(Outcome::Committed(rebuilt(to, applied, target_events)));
        }
        // Serving from here: what setup leaves out of a rebuild (indexes only readers need) is
        // built now, in bulk, in the switching transaction, so reads never meet a generation
        // without them. The serving row stays locked meanwhile; its runner waits that long.
        tx.set_target(Target {
            replaying: false,
            ..target.clone()
        });
        self.projector.setup(&mut tx).await?;
        if let Some(serving) = &serving {
            tx.set_state(name, serving.generation, GenerationState::Retired)
                .await?;
        }
        tx.set_state(name, generation.generation, GenerationState::Active)
            .await?;
        tx.point_views(self.projector.tables(), &generation.suffix)
            .await?;
        tx.commit().await?;
        tracing::info!(
            projector = name,
            generation = generation.generation,
            version = generation.version,
            checkpoint = %to,
            retired = ?serving.as_ref().map(|s| s.generation),
            "rebuilt generation switched in: it serves reads now"
        );
        let retired = serving.map(|mut s| {
            s.state = GenerationState::Retired;
            Box::new(s)
        });
        Ok(Outcome::Switched(
            rebuilt(to, applied, target_events),
            retired,
        ))
    }

    /// Whether `generation` is still in the state this runner runs it in.
    async fn still_in_its_state(&self, generation: &Generation) -> Result<bool> {
        let current = self.db.current(self.projector.name()).await?;
        Ok([current.active, current.building]
            .into_iter()
            .flatten()
            .any(|g| g.generation == generation.generation && g.state == generation.state))
    }

    /// After a compare-and-set that moved nothing: the generation changed state (stop), or
    /// its checkpoint moved under this runner (an error; the runner reloads).
    async fn why_not_moved(&self, generation: &Generation) -> Result<Outcome> {
        if self.still_in_its_state(generation).await? {
            Err(Error::CheckpointMoved {
                projector: self.projector.name(),
                version: generation.version,
            })
        } else {
            Ok(Outcome::Retired)
        }
    }
}

/// Events read and not applied yet, each with what the preparer made of it.
#[derive(Default)]
struct Buffer {
    events: Vec<RecordedEvent>,
    prepared: Vec<Option<Prepared>>,
}

impl Buffer {
    /// Adds what the reader sent, and sets the runner's flags.
    fn receive(
        &mut self,
        next: Option<jobboard_eventstore::Result<Feed>>,
        end_seen: &mut bool,
        failed: &mut Option<Error>,
    ) {
        match next {
            Some(Ok(Feed::Events(events, prepared))) => {
                self.events.extend(events);
                self.prepared.extend(prepared);
            }
            Some(Ok(Feed::AtEnd)) => *end_seen = true,
            Some(Err(error)) => *failed = Some(error.into()),
            None => *failed = Some(Error::Store(jobboard_eventstore::Error::Closed)),
        }
    }

    /// The first `n` events (or all there are) and what was prepared of them.
    fn take(&mut self, n: usize) -> (Vec<RecordedEvent>, Vec<Option<Prepared>>) {
        let n = n.min(self.events.len());
        (
            self.events.drain(..n).collect(),
            self.prepared.drain(..n).collect(),
        )
    }
}

/// Puts each event the reader sends through `preparer`, and passes it on.
async fn prepare_feed(
    mut read: mpsc::Receiver<jobboard_eventstore::Result<Feed>>,
    preparer: Preparer,
    sender: mpsc::Sender<jobboard_eventstore::Result<Feed>>,
) {
    while let Some(next) = read.recv().await {
        let next = match next {
            Ok(Feed::Events(events, _)) => {
                let prepared = events.iter().map(|event| preparer(event)).collect();
                Ok(Feed::Events(events, prepared))
            }
            other => other,
        };
        if sender.send(next).await.is_err() {
            return;
        }
    }
}

/// Events as read, with nothing prepared yet.
fn unprepared(events: Vec<RecordedEvent>) -> Feed {
    let prepared = events.iter().map(|_| None).collect();
    Feed::Events(events, prepared)
}

/// What committing a batch did.
enum Outcome {
    Committed(Committed),
    Switched(Committed, Option<Box<Generation>>),
    Retired,
}

/// A serving generation's batch, with each event's commit time for the lag histogram.
fn committed(to: Checkpoint, batch: &[RecordedEvent]) -> Committed {
    Committed {
        recorded: batch.iter().map(|e| e.metadata.recorded_at).collect(),
        ..rebuilt(to, batch, None)
    }
}

/// A rebuilding generation's batch: no lag is measured on a replay, so its tens of thousands of
/// commit times are not collected.
fn rebuilt(to: Checkpoint, batch: &[RecordedEvent], target_events: Option<u64>) -> Committed {
    Committed {
        checkpoint: to,
        events: 0,
        batch: batch.len() as u64,
        last_recorded_at: batch.last().map(|e| e.metadata.recorded_at),
        target_events,
        recorded: Vec::new(),
    }
}

/// How many events of `batch` lie at or before the serving generation's checkpoint.
fn cut(batch: &[RecordedEvent], serving: Option<&Generation>) -> usize {
    match serving {
        Some(serving) => batch.partition_point(|e| e.checkpoint() <= serving.checkpoint),
        None => batch.len(),
    }
}

/// The checkpoint after the first `take` events of `batch`, starting from `from`.
fn end_of(batch: &[RecordedEvent], take: usize, from: Checkpoint) -> Checkpoint {
    take.checked_sub(1)
        .map_or(from, |last| batch[last].checkpoint())
}

fn cap(serving: &Option<Generation>) -> Checkpoint {
    serving
        .as_ref()
        .map_or(Checkpoint::START, |serving| serving.checkpoint)
}

/// A serving reader: the subscription's events in chunks, as they come.
async fn follow_log(
    store: EventStore,
    after: Checkpoint,
    sender: mpsc::Sender<jobboard_eventstore::Result<Feed>>,
) {
    let mut events = Box::pin(store.subscribe(after));
    loop {
        let first = match events.next().await {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
            None => return,
        };
        let mut chunk = vec![first];
        let mut failed = None;
        // What the subscription has buffered, without waiting: a read cut short here is not
        // lost, the subscription resumes it on the next poll.
        while chunk.len() < FOLLOW_CHUNK {
            match events.next().now_or_never() {
                Some(Some(Ok(event))) => chunk.push(event),
                Some(Some(Err(error))) => {
                    failed = Some(error);
                    break;
                }
                Some(None) | None => break,
            }
        }
        if sender.send(Ok(unprepared(chunk))).await.is_err() {
            return;
        }
        if let Some(error) = failed {
            let _ = sender.send(Err(error)).await;
            return;
        }
    }
}

/// A rebuild's reader: large pages of `read_all`, and [`Feed::AtEnd`] whenever a page comes back
/// empty and not held (the readable end of the log, for now); then it looks again shortly.
async fn scan_log(
    store: EventStore,
    mut after: Checkpoint,
    sender: mpsc::Sender<jobboard_eventstore::Result<Feed>>,
) {
    let mut wait = Duration::from_millis(5);
    loop {
        let page = match store.read_all(after, SCAN_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        if let Some(last) = page.events.last() {
            after = last.checkpoint();
            wait = Duration::from_millis(5);
            if sender.send(Ok(unprepared(page.events))).await.is_err() {
                return;
            }
            continue;
        }
        if page.held {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(END_RECHECK);
            continue;
        }
        if sender.send(Ok(Feed::AtEnd)).await.is_err() {
            return;
        }
        tokio::time::sleep(END_RECHECK).await;
    }
}
