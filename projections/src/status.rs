//! What operators see of the projections, from the database (so every instance, and the replay
//! tool, tells the same): per projector its serving generation and any rebuild, how far each
//! lags behind the log in events and seconds, who holds their leases, and a state.
//!
//! Lag in events is counted, not subtracted (on PostgreSQL positions are not in log order):
//! [`LogCounter`] counts the log once and then only its new tail, and every generation's
//! `events` counts the events its checkpoint covers, so lag is the difference. A rebuild switches
//! exactly at the serving generation's checkpoint, so its target is that generation's count.

use chrono::{DateTime, Utc};
use jobboard_eventstore::{Checkpoint, EventStore};

use crate::db::ViewDb;
use crate::error::Result;
use crate::lease;
use crate::registry::{Generation, GenerationState, u64_to_f64};

/// A serving generation further behind than this many events is catching up, not live.
pub const LIVE_LAG_EVENTS: u64 = 1000;

/// Events per page while counting the log.
const COUNT_PAGE: usize = 5000;

/// The log's length up to a checkpoint, kept current by reading only what was appended since.
#[derive(Clone, Debug, Default)]
pub struct LogCounter {
    at: Checkpoint,
    count: u64,
    first_recorded_at: Option<DateTime<Utc>>,
    head_recorded_at: Option<DateTime<Utc>>,
}

impl LogCounter {
    /// Counts what was appended since the last call (the whole log on the first).
    pub async fn advance(&mut self, store: &EventStore) -> Result<()> {
        loop {
            let page = store.read_all(self.at, COUNT_PAGE).await?;
            let Some(last) = page.events.last() else {
                return Ok(());
            };
            if self.first_recorded_at.is_none() {
                self.first_recorded_at = page.events.first().map(|e| e.metadata.recorded_at);
            }
            self.at = last.checkpoint();
            self.head_recorded_at = Some(last.metadata.recorded_at);
            self.count += page.events.len() as u64;
        }
    }

    /// Events in the log, as far as counted.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// What a projector is doing, as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionState {
    /// The serving generation is within [`LIVE_LAG_EVENTS`] of the log's end and an instance
    /// applies the log to it.
    Live,
    /// The serving generation is further behind, and an instance is applying the log to it.
    CatchingUp,
    /// A new generation is being built beside the serving one.
    Rebuilding,
    /// No instance holds the serving generation's lease: nothing applies the log (no instance of
    /// its version runs), or nothing was ever built.
    Stopped,
}

impl ProjectionState {
    /// A stable lowercase code (`live`, `catching_up`, `rebuilding`, `stopped`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::CatchingUp => "catching_up",
            Self::Rebuilding => "rebuilding",
            Self::Stopped => "stopped",
        }
    }

    /// Every state, for metrics that show each as 0 or 1.
    pub const ALL: [Self; 4] = [
        Self::Live,
        Self::CatchingUp,
        Self::Rebuilding,
        Self::Stopped,
    ];
}

/// One generation, with its lag and lease.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationReport {
    /// The registry's row.
    pub generation: Generation,
    /// Events of the log after its checkpoint.
    pub lag_events: u64,
    /// Time between the last event it covers and the log's newest event (0 when caught up).
    pub lag_seconds: f64,
    /// Whether an instance holds its lease right now.
    pub lease_held: bool,
    /// For a rebuild: where it switches (the serving generation's event count); for the serving
    /// generation: the log's length.
    pub target_events: u64,
    /// Events per second of its current holder.
    pub events_per_sec: Option<f64>,
    /// Seconds until it reaches `target_events` at that rate.
    pub eta_seconds: Option<f64>,
}

/// A projector as operators see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionReport {
    /// The projector's name.
    pub projector: String,
    /// What it is doing.
    pub state: ProjectionState,
    /// The generation serving reads.
    pub serving: Option<GenerationReport>,
    /// A rebuild under way beside it.
    pub rebuild: Option<GenerationReport>,
    /// The log's length as counted.
    pub log_events: u64,
}

/// Reports every projector with a generation in the database (and each of `expected` without
/// one, as stopped), advancing `counter` first.
pub async fn report(
    db: &ViewDb,
    store: &EventStore,
    counter: &mut LogCounter,
    expected: &[&str],
) -> Result<Vec<ProjectionReport>> {
    counter.advance(store).await?;
    let generations = db.generations(None).await?;
    let mut names: Vec<String> = generations
        .iter()
        .filter(|g| g.state != GenerationState::Retired)
        .map(|g| g.projector.clone())
        .chain(expected.iter().map(|n| (*n).to_owned()))
        .collect();
    names.sort();
    names.dedup();
    let mut reports = Vec::with_capacity(names.len());
    for name in names {
        let mine = |state| {
            generations
                .iter()
                .find(|g| g.projector == name && g.state == state)
                .cloned()
        };
        let serving = match mine(GenerationState::Active) {
            Some(g) => Some(generation_report(db, counter, g, None).await?),
            None => None,
        };
        let rebuild = match mine(GenerationState::Building) {
            Some(g) => {
                let target = serving.as_ref().map(|s| s.generation.events);
                Some(generation_report(db, counter, g, target).await?)
            }
            None => None,
        };
        let state = match (&serving, &rebuild) {
            (_, Some(_)) => ProjectionState::Rebuilding,
            (Some(s), None) if !s.lease_held => ProjectionState::Stopped,
            (Some(s), None) if s.lag_events > LIVE_LAG_EVENTS => ProjectionState::CatchingUp,
            (Some(_), None) => ProjectionState::Live,
            (None, None) => ProjectionState::Stopped,
        };
        reports.push(ProjectionReport {
            projector: name,
            state,
            serving,
            rebuild,
            log_events: counter.count,
        });
    }
    Ok(reports)
}

async fn generation_report(
    db: &ViewDb,
    counter: &LogCounter,
    generation: Generation,
    target: Option<u64>,
) -> Result<GenerationReport> {
    let lag_events = counter.count.saturating_sub(generation.events);
    let lag_seconds = match (
        counter.head_recorded_at,
        generation.last_event_at.or(counter.first_recorded_at),
    ) {
        (Some(head), Some(since)) if lag_events > 0 => (head - since).as_seconds_f64().max(0.0),
        _ => 0.0,
    };
    let lease_held = db
        .lease_held(&lease::key(&generation.projector, generation.generation))
        .await?;
    let target_events = target.unwrap_or(counter.count).max(generation.events);
    let events_per_sec = generation.rate().filter(|_| lease_held);
    let eta_seconds = events_per_sec
        .map(|rate| u64_to_f64(target_events.saturating_sub(generation.events)) / rate);
    Ok(GenerationReport {
        generation,
        lag_events,
        lag_seconds,
        lease_held,
        target_events,
        events_per_sec,
        eta_seconds,
    })
}

impl ProjectionReport {
    /// Sets the status gauges of this projector (`leading`: whether this instance leads it).
    pub fn record_metrics(&self, leading: bool) {
        let projector = self.projector.clone();
        for state in ProjectionState::ALL {
            let value = if state == self.state { 1.0 } else { 0.0 };
            metrics::gauge!("jobboard_projection_state", "projector" => projector.clone(),
                "state" => state.as_str())
            .set(value);
        }
        metrics::gauge!("jobboard_projection_lease_held", "projector" => projector.clone())
            .set(if leading { 1.0 } else { 0.0 });
        if let Some(serving) = &self.serving {
            metrics::gauge!("jobboard_projection_lag_events", "projector" => projector.clone())
                .set(u64_to_f64(serving.lag_events));
            metrics::gauge!("jobboard_projection_staleness_seconds", "projector" => projector.clone())
                .set(serving.lag_seconds);
            metrics::gauge!("jobboard_projection_generation", "projector" => projector.clone())
                .set(u64_to_f64(serving.generation.generation));
        }
        let (done, target, rate) = self.rebuild.as_ref().map_or((0, 0, 0.0), |r| {
            (
                r.generation.events,
                r.target_events,
                r.events_per_sec.unwrap_or(0.0),
            )
        });
        metrics::gauge!("jobboard_projection_rebuild_events", "projector" => projector.clone())
            .set(u64_to_f64(done));
        metrics::gauge!("jobboard_projection_rebuild_target_events", "projector" => projector.clone())
            .set(u64_to_f64(target));
        metrics::gauge!("jobboard_projection_rebuild_events_per_second", "projector" => projector)
            .set(rate);
    }
}
