//! Asking for a rebuild, running one to its switch outside the service ([`rebuild`], for
//! `jobboard-replay rebuild` and the benchmark), and dropping replaced generations.
//!
//! A one-off rebuild uses the same runner as the service and cooperates with it through the
//! lease: whoever takes the building generation's lease builds it; the other watches its progress
//! in the registry and takes over if the builder dies. Interrupted, a rebuild resumes from its
//! own committed checkpoint.

use std::time::{Duration, Instant};

use chrono::Utc;
use jobboard_eventstore::EventStore;
use tokio_util::sync::CancellationToken;

use crate::db::{Target, ViewDb};
use crate::error::{Error, Result};
use crate::lease;
use crate::registry::{Generation, GenerationState, u64_to_f64};
use crate::runner::{Committed, Runner, Stop};
use crate::runtime::{Projector, RuntimeOptions};

/// Asks for a rebuild of `projector`: creates a building generation of its version beside the
/// serving one (with its tables), or returns the one already building. `true` when created.
///
/// With nothing serving yet, the first generation is created serving (there is nothing better
/// to serve while it builds). A building generation of an older version is abandoned for this
/// one; a serving or building generation of a newer version refuses ([`Error::Superseded`]).
pub(crate) async fn request_rebuild(
    db: &ViewDb,
    projector: &dyn Projector,
) -> Result<(Generation, bool)> {
    let (name, version) = (projector.name(), projector.version());
    let mut tx = db.begin().await?;
    tx.lock_setup().await?;
    let active = tx.active_generation(name).await?;
    if let Some(active) = &active
        && active.version > version
    {
        return Err(Error::Superseded {
            projector: name,
            version,
            newer: active.version,
        });
    }
    if let Some(building) = tx
        .generation_for_update(name, GenerationState::Building)
        .await?
    {
        if building.version == version {
            tx.commit().await?;
            return Ok((building, false));
        }
        if building.version > version {
            return Err(Error::Superseded {
                projector: name,
                version,
                newer: building.version,
            });
        }
        tracing::info!(
            projector = name,
            generation = building.generation,
            version = building.version,
            "abandoning a rebuild of an older version"
        );
        tx.set_state(name, building.generation, GenerationState::Retired)
            .await?;
    }
    let same_version = active.as_ref().is_some_and(|a| a.version == version);
    if same_version && projector.tables().is_empty() {
        return Err(Error::NotRebuildable(name));
    }
    let state = if active.is_some() {
        GenerationState::Building
    } else {
        GenerationState::Active
    };
    let generation = tx.create_generation(name, version, state).await?;
    tx.set_target(Target {
        suffix: generation.suffix.clone(),
        replaying: state == GenerationState::Building,
    });
    projector.setup(&mut tx).await?;
    if state == GenerationState::Active {
        tx.point_views(projector.tables(), &generation.suffix)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(projector = name, generation = generation.generation, version,
        state = %state, "rebuild requested");
    Ok((generation, true))
}

/// Drops a replaced generation's tables once `options.drop_grace` has passed (reads that
/// started before the switch finish on them). Shutdown first leaves them to
/// [`sweep_retired`].
pub(crate) async fn drop_after_grace(
    db: &ViewDb,
    projector: &dyn Projector,
    retired: &Generation,
    options: &RuntimeOptions,
    shutdown: &CancellationToken,
) -> Result<()> {
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = tokio::time::sleep(options.drop_grace) => {}
    }
    drop_generation(db, projector, retired).await
}

/// Drops the tables of every retired generation of `projector` whose grace has passed and that
/// still has them (a switch whose clean-up was cut short, an abandoned rebuild).
pub(crate) async fn sweep_retired(
    db: &ViewDb,
    projector: &dyn Projector,
    options: &RuntimeOptions,
) -> Result<()> {
    let grace = chrono::Duration::from_std(options.drop_grace).unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    for generation in db.generations(Some(projector.name())).await? {
        let due = generation.retired_at.is_some_and(|at| at + grace <= now);
        if generation.state == GenerationState::Retired && generation.dropped_at.is_none() && due {
            drop_generation(db, projector, &generation).await?;
        }
    }
    Ok(())
}

async fn drop_generation(
    db: &ViewDb,
    projector: &dyn Projector,
    retired: &Generation,
) -> Result<()> {
    let tables = projector.tables();
    if tables.is_empty() {
        tracing::warn!(
            projector = projector.name(),
            generation = retired.generation,
            "the projector names no tables: drop the retired generation's tables by hand"
        );
    }
    let mut tx = db.begin().await?;
    tx.lock_setup().await?;
    tx.drop_generation(projector.name(), retired, tables)
        .await?;
    tx.commit().await?;
    tracing::info!(
        projector = projector.name(),
        generation = retired.generation,
        "retired generation's tables dropped"
    );
    Ok(())
}

/// Where a one-off rebuild is, for a progress bar.
#[derive(Clone, Debug, PartialEq)]
pub struct RebuildProgress {
    /// The projector.
    pub projector: &'static str,
    /// The generation being built.
    pub generation: u64,
    /// Events of the log it covers so far.
    pub events: u64,
    /// Where it switches: the serving generation's events (grows while the service writes);
    /// `None` for a first build, which serves as it goes.
    pub target_events: Option<u64>,
    /// Events per second, over this run.
    pub events_per_sec: f64,
    /// Who builds it: this process (`None`) or another instance.
    pub built_by: Option<String>,
}

/// How a one-off rebuild ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RebuildOutcome {
    /// The generation that serves now.
    pub generation: Generation,
    /// Events it covered when it took over.
    pub events: u64,
    /// Events this process applied (0 when another instance built it).
    pub applied_here: u64,
    /// How long this process worked or waited.
    pub elapsed: Duration,
    /// True when another instance built it (this one watched).
    pub built_elsewhere: bool,
}

/// Rebuilds `projector` beside its serving generation and returns once reads have switched to
/// the new one (or, for a first build, once it has reached the end of the log), dropping the
/// replaced generation's tables after the grace. Resumes a rebuild already under way; if
/// another instance holds its lease, watches its progress (and takes over should it die).
/// `progress` is called after every batch (and every poll while watching). Cancelled through
/// `shutdown`, it stops after the batch in flight; run again, it resumes there.
pub async fn rebuild(
    db: &ViewDb,
    store: &EventStore,
    projector: &dyn Projector,
    options: &RuntimeOptions,
    shutdown: &CancellationToken,
    progress: &(dyn Fn(&RebuildProgress) + Send + Sync),
) -> Result<RebuildOutcome> {
    let name = projector.name();
    let began = Instant::now();
    let (mut generation, _) = request_rebuild(db, projector).await?;
    let mut applied_here = 0;
    loop {
        if shutdown.is_cancelled() {
            return Err(Error::Stopped);
        }
        let key = lease::key(name, generation.generation);
        if let Some(mut lease) = db.try_lease(&key).await? {
            // Fresh from the registry: another instance may have moved it before we took it.
            let Some(current) = find(db, name, generation.generation).await? else {
                return Err(Error::Superseded {
                    projector: name,
                    version: projector.version(),
                    newer: 0,
                });
            };
            if current.state == GenerationState::Retired {
                return Err(Error::RebuildAbandoned {
                    projector: name,
                    generation: current.generation,
                });
            }
            let mut tx = db.begin().await?;
            tx.lock_setup().await?;
            tx.set_target(Target {
                suffix: current.suffix.clone(),
                replaying: current.state == GenerationState::Building,
            });
            projector.setup(&mut tx).await?;
            tx.record_lease(name, current.generation, &options.instance)
                .await?;
            tx.commit().await?;
            let run_start = (Instant::now(), current.events);
            let report = |c: &Committed| {
                let seconds = run_start.0.elapsed().as_secs_f64();
                progress(&RebuildProgress {
                    projector: name,
                    generation: current.generation,
                    events: c.events,
                    target_events: c.target_events,
                    events_per_sec: if seconds > 0.0 {
                        u64_to_f64(c.events.saturating_sub(run_start.1)) / seconds
                    } else {
                        0.0
                    },
                    built_by: None,
                });
            };
            let runner = Runner {
                db,
                store,
                projector,
                options,
                shutdown,
            };
            let until_idle = current.state == GenerationState::Active;
            let stop = runner.run(&current, &mut lease, until_idle, &report).await;
            let mut tx = db.begin().await?;
            tx.clear_lease(name, current.generation, &options.instance)
                .await?;
            tx.commit().await?;
            lease.release().await;
            let after = find(db, name, current.generation).await?;
            if let Some(after) = &after {
                applied_here += after.events.saturating_sub(current.events);
            }
            match stop? {
                Stop::Switched { retired } => {
                    if let Some(retired) = retired {
                        drop_after_grace(db, projector, &retired, options, shutdown).await?;
                    }
                    return done(after, applied_here, began, false);
                }
                Stop::Idle => return done(after, applied_here, began, false),
                Stop::Shutdown => return Err(Error::Stopped),
                Stop::Retired | Stop::LeaseLost => {
                    generation = after.unwrap_or(current);
                    if generation.state == GenerationState::Active {
                        return done(Some(generation), applied_here, began, true);
                    }
                    continue;
                }
            }
        }
        // Someone else builds it: watch, until it serves (or its builder dies and we take over).
        let Some(watched) = find(db, name, generation.generation).await? else {
            return Err(Error::RebuildAbandoned {
                projector: name,
                generation: generation.generation,
            });
        };
        match watched.state {
            GenerationState::Active if generation.state == GenerationState::Building => {
                return done(Some(watched), applied_here, began, true);
            }
            GenerationState::Retired => {
                return Err(Error::RebuildAbandoned {
                    projector: name,
                    generation: watched.generation,
                });
            }
            _ => {}
        }
        let target = db.current(name).await?.active.map(|a| a.events);
        progress(&RebuildProgress {
            projector: name,
            generation: watched.generation,
            events: watched.events,
            target_events: target.filter(|_| watched.state == GenerationState::Building),
            events_per_sec: watched.rate().unwrap_or(0.0),
            built_by: Some(
                watched
                    .lease_holder
                    .clone()
                    .unwrap_or_else(|| "another instance".into()),
            ),
        });
        generation = watched;
        tokio::select! {
            () = shutdown.cancelled() => return Err(Error::Stopped),
            () = tokio::time::sleep(options.poll_interval) => {}
        }
    }
}

async fn find(db: &ViewDb, projector: &str, generation: u64) -> Result<Option<Generation>> {
    Ok(db
        .generations(Some(projector))
        .await?
        .into_iter()
        .find(|g| g.generation == generation))
}

fn done(
    generation: Option<Generation>,
    applied_here: u64,
    began: Instant,
    built_elsewhere: bool,
) -> Result<RebuildOutcome> {
    let generation = generation.ok_or_else(|| {
        Error::Corrupted("the rebuilt generation is gone from the registry".into())
    })?;
    Ok(RebuildOutcome {
        events: generation.events,
        generation,
        applied_here,
        elapsed: began.elapsed(),
        built_elsewhere,
    })
}
