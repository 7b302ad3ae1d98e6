//! The registry of generations (`projection_generations`): which build of each projector's view
//! serves reads, which is being rebuilt beside it, and where each has got to in the log.
//!
//! Every change of a generation's checkpoint or state happens here, inside the transaction that
//! writes the generation's tables, so the registry and the views never disagree. The switch from
//! a rebuilt generation to serving is one transaction: the states swap and the plain-named
//! database views that readers query are redefined over the new tables (ADR 0007).

use std::fmt;

use chrono::{DateTime, Utc};
use jobboard_eventstore::Checkpoint;
use sqlx::AssertSqlSafe;

use crate::db::{Backend, Param, StoredCheckpoint, ViewDb, ViewRow, ViewTx, signed, unsigned};
use crate::error::{Error, Result};

/// Where a generation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GenerationState {
    /// Being built from the start of the log beside the serving generation; readers do not see it.
    Building,
    /// Serving reads: the plain-named views point at its tables.
    Active,
    /// Replaced by a newer generation; its tables are dropped (or about to be).
    Retired,
}

impl GenerationState {
    /// The code stored in the registry.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    fn parse(code: &str) -> Result<Self> {
        match code {
            "building" => Ok(Self::Building),
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            other => Err(Error::Corrupted(format!("generation state {other:?}"))),
        }
    }
}

impl fmt::Display for GenerationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One build of a projector's view, as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The projector's name.
    pub projector: String,
    /// Its number, counting up per projector from 1.
    pub generation: u64,
    /// The projector version that builds it (the shape of its tables).
    pub version: u32,
    /// What its tables' names end in (`v2_g3`: `postings_v2_g3`).
    pub suffix: String,
    /// Building, active or retired.
    pub state: GenerationState,
    /// The last event its tables reflect, as committed.
    pub checkpoint: Checkpoint,
    /// How many events of the log the checkpoint covers, applied or skipped.
    pub events: u64,
    /// When the log recorded the last event the checkpoint covers.
    pub last_event_at: Option<DateTime<Utc>>,
    /// When it was created (a rebuild asked for, or the first build).
    pub created_at: DateTime<Utc>,
    /// When its row last changed.
    pub updated_at: DateTime<Utc>,
    /// When it started serving.
    pub activated_at: Option<DateTime<Utc>>,
    /// When a newer generation replaced it.
    pub retired_at: Option<DateTime<Utc>>,
    /// When its tables were dropped.
    pub dropped_at: Option<DateTime<Utc>>,
    /// The instance that last took its lease (cleared when that instance let it go).
    pub lease_holder: Option<String>,
    /// When that instance took the lease.
    pub lease_since: Option<DateTime<Utc>>,
    /// `events` when that instance took the lease, for its rate.
    pub lease_events: Option<u64>,
}

impl Generation {
    /// The checkpoint as [`StoredCheckpoint`].
    pub fn stored(&self) -> StoredCheckpoint {
        StoredCheckpoint {
            checkpoint: self.checkpoint,
            events: self.events,
            updated_at: self.updated_at,
        }
    }

    /// Events per second since the current holder took the lease, if it has applied any.
    pub fn rate(&self) -> Option<f64> {
        let since = self.lease_since?;
        let done = self.events.checked_sub(self.lease_events?)?;
        let seconds = (self.updated_at - since).as_seconds_f64();
        (done > 0 && seconds > 0.0).then(|| u64_to_f64(done) / seconds)
    }

    fn from_row(row: &ViewRow) -> Result<Self> {
        let version: i64 = row.get("version")?;
        Ok(Self {
            projector: row.get("projector")?,
            generation: unsigned(row.get("generation")?)?,
            version: u32::try_from(version)
                .map_err(|_| Error::Corrupted(format!("projector version {version}")))?,
            suffix: row.get("suffix")?,
            state: GenerationState::parse(&row.get::<String>("state")?)?,
            checkpoint: Checkpoint {
                tx: unsigned(row.get("tx")?)?,
                position: unsigned(row.get("position")?)?,
            },
            events: unsigned(row.get("events")?)?,
            last_event_at: row.opt_time("last_event_at")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
            activated_at: row.opt_time("activated_at")?,
            retired_at: row.opt_time("retired_at")?,
            dropped_at: row.opt_time("dropped_at")?,
            lease_holder: row.get("lease_holder")?,
            lease_since: row.opt_time("lease_since")?,
            lease_events: row
                .get::<Option<i64>>("lease_events")?
                .map(unsigned)
                .transpose()?,
        })
    }
}

/// A count as a gauge or rate value (exact below 2^53, far beyond any log).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn u64_to_f64(value: u64) -> f64 {
    value as f64
}

/// The columns of a generation row. `CAST` keeps `version` one type on both backends.
const COLUMNS: &str = "projector, generation, CAST(version AS BIGINT) AS version, suffix, state, \
     tx, position, events, last_event_at, created_at, updated_at, activated_at, retired_at, \
     dropped_at, lease_holder, lease_since, lease_events";

/// A projector's serving and building generations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    /// The generation serving reads.
    pub active: Option<Generation>,
    /// A rebuild in progress beside it.
    pub building: Option<Generation>,
}

impl ViewDb {
    /// Every generation of every projector (or of `projector`), oldest first, retired ones too.
    pub async fn generations(&self, projector: Option<&str>) -> Result<Vec<Generation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM projection_generations WHERE ($1 IS NULL OR projector = $1) \
             ORDER BY projector, generation"
        );
        let rows = self
            .fetch_all(AssertSqlSafe(sql), &[projector.into()])
            .await?;
        rows.iter().map(Generation::from_row).collect()
    }

    /// The serving and building generations of `projector`.
    pub async fn current(&self, projector: &str) -> Result<Current> {
        let sql = format!(
            "SELECT {COLUMNS} FROM projection_generations \
             WHERE projector = $1 AND state <> 'retired'"
        );
        let rows = self
            .fetch_all(AssertSqlSafe(sql), &[projector.into()])
            .await?;
        let mut current = Current::default();
        for row in &rows {
            let generation = Generation::from_row(row)?;
            match generation.state {
                GenerationState::Active => current.active = Some(generation),
                GenerationState::Building => current.building = Some(generation),
                GenerationState::Retired => {}
            }
        }
        Ok(current)
    }

    /// The committed checkpoint of the generation of `projector` that serves reads, if any.
    pub async fn checkpoint(&self, projector: &str) -> Result<Option<StoredCheckpoint>> {
        Ok(self.current(projector).await?.active.map(|g| g.stored()))
    }
}

impl ViewTx {
    /// One generation, locked until the transaction ends (PostgreSQL; SQLite's write
    /// transaction holds the whole database already).
    pub(crate) async fn generation_for_update(
        &mut self,
        projector: &str,
        state: GenerationState,
    ) -> Result<Option<Generation>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM projection_generations WHERE projector = $1 AND state = $2{lock}"
        );
        let row = self
            .fetch_optional(
                AssertSqlSafe(sql),
                &[projector.into(), state.as_str().into()],
            )
            .await?;
        row.map(|row| Generation::from_row(&row)).transpose()
    }

    /// The serving generation, read without a lock.
    pub(crate) async fn active_generation(
        &mut self,
        projector: &str,
    ) -> Result<Option<Generation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM projection_generations \
             WHERE projector = $1 AND state = 'active'"
        );
        let row = self
            .fetch_optional(AssertSqlSafe(sql), &[projector.into()])
            .await?;
        row.map(|row| Generation::from_row(&row)).transpose()
    }

    /// A new generation of `projector` at the start of the log, numbered after every earlier one.
    /// Call it after [`lock_setup`](Self::lock_setup), which keeps two instances from numbering
    /// at once.
    pub(crate) async fn create_generation(
        &mut self,
        projector: &str,
        version: u32,
        state: GenerationState,
    ) -> Result<Generation> {
        let row = self
            .fetch_optional(
                "SELECT COALESCE(MAX(generation), 0) AS last FROM projection_generations \
                 WHERE projector = $1",
                &[projector.into()],
            )
            .await?
            .ok_or_else(|| Error::Corrupted("MAX returned no row".into()))?;
        let number = unsigned(row.get("last")?)? + 1;
        let suffix = format!("v{version}_g{number}");
        let now = Utc::now();
        let activated = (state == GenerationState::Active).then_some(now);
        self.execute(
            "INSERT INTO projection_generations (projector, generation, version, suffix, state, \
             tx, position, events, created_at, updated_at, activated_at) \
             VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $6, $6, $7)",
            &[
                projector.into(),
                signed(number)?.into(),
                version.into(),
                suffix.as_str().into(),
                state.as_str().into(),
                now.into(),
                activated.into(),
            ],
        )
        .await?;
        self.generation_for_update(projector, state)
            .await?
            .ok_or_else(|| Error::Corrupted("the generation just created is gone".into()))
    }

    /// Moves the generation's checkpoint from `from` to `to`, adding `events`, if it is still at
    /// `from` and still in `state`; returns whether it was. Written first in a batch, it also
    /// locks the row, so a second runner of the same generation waits, then finds the checkpoint
    /// moved and rolls back instead of applying the same events again; a runner of a generation
    /// that was switched away finds its state changed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn advance(
        &mut self,
        projector: &str,
        generation: u64,
        state: GenerationState,
        from: Checkpoint,
        to: Checkpoint,
        events: u64,
        last_event_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let moved = self
            .execute(
                "UPDATE projection_generations \
                 SET tx = $6, position = $7, events = events + $8, updated_at = $9, \
                 last_event_at = COALESCE($10, last_event_at) \
                 WHERE projector = $1 AND generation = $2 AND state = $3 \
                 AND tx = $4 AND position = $5",
                &[
                    projector.into(),
                    signed(generation)?.into(),
                    state.as_str().into(),
                    signed(from.tx)?.into(),
                    signed(from.position)?.into(),
                    signed(to.tx)?.into(),
                    signed(to.position)?.into(),
                    signed(events)?.into(),
                    Utc::now().into(),
                    last_event_at.into(),
                ],
            )
            .await?;
        Ok(moved == 1)
    }

    /// Sets a generation's state (`retired` also stamps `retired_at`, `active` `activated_at`).
    pub(crate) async fn set_state(
        &mut self,
        projector: &str,
        generation: u64,
        state: GenerationState,
    ) -> Result<()> {
        let now = Utc::now();
        self.execute(
            "UPDATE projection_generations SET state = $3, updated_at = $4, \
             activated_at = CASE WHEN $3 = 'active' THEN $4 ELSE activated_at END, \
             retired_at = CASE WHEN $3 = 'retired' THEN $4 ELSE retired_at END \
             WHERE projector = $1 AND generation = $2",
            &[
                projector.into(),
                signed(generation)?.into(),
                state.as_str().into(),
                now.into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Points the plain-named views of `tables` (what readers query) at the tables of the
    /// generation with `suffix`. In the switch's transaction, readers see the old tables or the
    /// new ones, never a mix and never a half-built one.
    pub(crate) async fn point_views(&mut self, tables: &[&str], suffix: &str) -> Result<()> {
        for base in tables {
            let script = format!(
                "DROP VIEW IF EXISTS {base}; CREATE VIEW {base} AS SELECT * FROM {base}_{suffix}"
            );
            self.execute_script(AssertSqlSafe(script)).await?;
        }
        Ok(())
    }

    /// Drops the tables of a retired generation and notes it.
    pub(crate) async fn drop_generation(
        &mut self,
        projector: &str,
        generation: &Generation,
        tables: &[&str],
    ) -> Result<()> {
        for base in tables {
            let sql = format!("DROP TABLE IF EXISTS {base}_{}", generation.suffix);
            self.execute_script(AssertSqlSafe(sql)).await?;
        }
        self.execute(
            "UPDATE projection_generations SET dropped_at = $3 \
             WHERE projector = $1 AND generation = $2",
            &[
                projector.into(),
                signed(generation.generation)?.into(),
                Utc::now().into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Records that `holder` took the generation's lease (and the events done so far, for its
    /// rate).
    pub(crate) async fn record_lease(
        &mut self,
        projector: &str,
        generation: u64,
        holder: &str,
    ) -> Result<()> {
        self.execute(
            "UPDATE projection_generations SET lease_holder = $3, lease_since = $4, \
             lease_events = events WHERE projector = $1 AND generation = $2",
            &[
                projector.into(),
                signed(generation)?.into(),
                holder.into(),
                Param::from(Utc::now()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Records that `holder` let the lease go, unless another instance has taken it since.
    pub(crate) async fn clear_lease(
        &mut self,
        projector: &str,
        generation: u64,
        holder: &str,
    ) -> Result<()> {
        self.execute(
            "UPDATE projection_generations SET lease_holder = NULL, lease_since = NULL, \
             lease_events = NULL WHERE projector = $1 AND generation = $2 AND lease_holder = $3",
            &[projector.into(), signed(generation)?.into(), holder.into()],
        )
        .await?;
        Ok(())
    }
}
