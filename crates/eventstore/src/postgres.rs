//! The PostgreSQL backend: several service instances share one log.
//!
//! Appends go through the `append_batch` function (one round trip per group-committed batch).
//! Readers of the global log order by `(tx_id, global_position)` and only read rows whose
//! transaction id is below the xmin of their own snapshot, which makes reading gap-safe without
//! serialising writers (see `docs/adr/0002-gap-safe-global-order.md`). Subscribers are woken by
//! LISTEN/NOTIFY.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::commit::{BatchWriter, Written};
use crate::error::{Error, Result};
use crate::personal::{KeyRing, SubjectKey};
use crate::store::{PreparedAppend, RowPage, StoreOptions, StoredRow, StoredSnapshot};
use crate::types::{AppendOutcome, Checkpoint, Snapshot, StreamRange};
use crate::verify::{ChainWalker, VerifyReport};
use crate::{HeldAppend, HeldTransaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel appenders notify after a commit.
const CHANNEL: &str = "jobboard_events";

/// Column list of an event row, in [`StoredRow`] order. Each column is cast to the type that
/// [`stored_row`] decodes it as, so that the query itself guarantees the types and decoding can
/// skip sqlx's per-value type check (a measurable share of reading the log). Casting a column to
/// its own type costs nothing.
macro_rules! event_columns {
    () => {
        "global_position::bigint, tx_id::bigint, stream_id::text, version::bigint, \
         event_id::uuid, event_type::text, schema_version::integer, payload::text, \
         personal::boolean, command_id::text, correlation_id::text, causation_id::text, \
         actor::text, organisation::text, extra::text, recorded_at::timestamptz, hash::bytea"
    };
}

#[derive(Debug)]
pub(crate) struct PgBackend {
    pool: PgPool,
    signal: Arc<watch::Sender<u64>>,
    wake_notifier: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl PgBackend {
    pub(crate) async fn open(
        url: &str,
        options: &StoreOptions,
        signal: watch::Sender<u64>,
    ) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(4))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        check_transaction_ids(&pool).await?;

        let signal = Arc::new(signal);
        let wake_notifier = Arc::new(Notify::new());
        let instance: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let tasks = vec![
            tokio::spawn(send_notifications(
                pool.clone(),
                Arc::clone(&wake_notifier),
                Arc::clone(&instance),
            )),
            tokio::spawn(listen(
                pool.clone(),
                Arc::clone(&signal),
                Arc::clone(&instance),
            )),
        ];
        Ok(Self {
            pool,
            signal,
            wake_notifier,
            tasks,
        })
    }

    pub(crate) fn writer(&self) -> PgWriter {
        PgWriter {
            pool: self.pool.clone(),
            signal: Arc::clone(&self.signal),
            wake_notifier: Arc::clone(&self.wake_notifier),
        }
    }

    /// Reads a page of the global log, passing each row through `decode` as it arrives.
    pub(crate) async fn read_all<R>(
        &self,
        after: Checkpoint,
        limit: i64,
        mut decode: impl FnMut(StoredRow) -> Result<R>,
    ) -> Result<RowPage<R>> {
        /// Catching up reads full pages: reserving one up front saves regrowing (and copying)
        /// it as it fills. Bounded, as callers may ask for any number of rows.
        const RESERVED_ROWS: usize = 10_000;
        let (tx, position) = checkpoint_params(after);
        let mut rows = Vec::with_capacity(
            usize::try_from(limit).map_or(RESERVED_ROWS, |n| n.min(RESERVED_ROWS)),
        );
        let mut stream = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events
              WHERE (tx_id, global_position) > ($1, $2)
                AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
              ORDER BY tx_id, global_position
              LIMIT $3"
        ))
        .bind(tx)
        .bind(position)
        .bind(limit)
        .try_map(|row: PgRow| stored_row(&row))
        .fetch(&self.pool);
        while let Some(row) = stream.try_next().await? {
            rows.push(decode(row)?);
        }
        drop(stream);
        let held = if rows.is_empty() {
            // Ordered and limited, so the plan walks the log-order key from the checkpoint
            // and stops at the first row; a bare EXISTS was planned as a scan of the whole log.
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, global_position) > ($1, $2)
                                 ORDER BY tx_id, global_position LIMIT 1)",
            )
            .bind(tx)
            .bind(position)
            .fetch_one(&self.pool)
            .await?
        } else {
            false
        };
        Ok(RowPage { rows, held })
    }

    pub(crate) async fn read_stream(
        &self,
        stream: &str,
        range: StreamRange,
    ) -> Result<Vec<StoredRow>> {
        let from = i64::try_from(range.from_version).unwrap_or(i64::MAX);
        let to = range
            .to_version
            .map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
        // Two statements, not one with an optional clause: a prepared statement's generic plan
        // would evaluate the as-of subquery over the whole stream even when no time is given,
        // and loading an aggregate (snapshot, then the events after it) must cost the same on a
        // stream of 10,000 events as on a new one.
        let sql = if range.as_of.is_some() {
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events
                  WHERE stream_id = $1 AND version >= $2 AND version <= $3
                    AND version < coalesce((SELECT min(version) FROM events
                                             WHERE stream_id = $1 AND recorded_at > $4),
                                           9223372036854775807)
                  ORDER BY version"
            )
        } else {
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE stream_id = $1 AND version >= $2 AND version <= $3
                  ORDER BY version"
            )
        };
        let mut query = sqlx::query(sql).bind(stream).bind(from).bind(to);
        if let Some(as_of) = range.as_of {
            query = query.bind(as_of);
        }
        let rows = query
            .try_map(|row: PgRow| stored_row(&row))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    pub(crate) async fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
                .bind(stream)
                .fetch_optional(&self.pool)
                .await?;
        Ok(version
            .filter(|v| *v > 0)
            .map(|v| u64::try_from(v).unwrap_or_default()))
    }

    pub(crate) async fn command_outcome(&self, command_id: &str) -> Result<Option<AppendOutcome>> {
        let row: Option<(String, i64, i64, i64, Vec<i64>)> = sqlx::query_as(
            "SELECT c.stream_id, c.first_version, c.last_version, max(e.tx_id),
                    array_agg(e.global_position ORDER BY e.version)
               FROM commands c
               JOIN events e ON e.stream_id = c.stream_id
                            AND e.version BETWEEN c.first_version AND c.last_version
              WHERE c.command_id = $1
              GROUP BY c.stream_id, c.first_version, c.last_version",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(stream_id, first, last, tx, positions)| {
            let positions: Vec<u64> = positions
                .into_iter()
                .map(|p| u64::try_from(p).unwrap_or_default())
                .collect();
            AppendOutcome {
                stream_id,
                first_version: to_u64(Some(first)),
                stream_version: to_u64(Some(last)),
                checkpoint: Checkpoint {
                    tx: to_u64(Some(tx)),
                    position: positions.last().copied().unwrap_or_default(),
                },
                positions,
                duplicate: true,
            }
        }))
    }

    pub(crate) async fn sealing_keys(
        &self,
        stream: &str,
        subjects: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<KeyRing> {
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        let fresh: Vec<Vec<u8>> = subjects
            .iter()
            .map(|_| SubjectKey::generate().as_bytes().to_vec())
            .collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO subject_keys (subject_id, key, created_at)
             SELECT s, k, $3 FROM unnest($1::text[], $2::bytea[]) AS u(s, k)
             ORDER BY s ON CONFLICT (subject_id) DO NOTHING",
        )
        .bind(&subjects)
        .bind(&fresh)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO subject_streams (subject_id, stream_id)
             SELECT s, $2 FROM unnest($1::text[]) AS s ORDER BY s ON CONFLICT DO NOTHING",
        )
        .bind(&subjects)
        .bind(stream)
        .execute(&mut *tx)
        .await?;
        let ring = key_ring_query(&mut *tx, &subjects).await?;
        tx.commit().await?;
        Ok(ring)
    }

    pub(crate) async fn key_ring(&self, subjects: &BTreeSet<String>) -> Result<KeyRing> {
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        key_ring_query(&self.pool, &subjects).await
    }

    pub(crate) async fn save_snapshot(
        &self,
        stream: &str,
        snapshot: &Snapshot,
        personal: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO snapshots (stream_id, version, sequence, state, personal, recorded_at)
             VALUES ($1, $2, $3, $4::json, $5, $6)
             ON CONFLICT (stream_id) DO UPDATE
               SET version = excluded.version, sequence = excluded.sequence,
                   state = excluded.state, personal = excluded.personal,
                   recorded_at = excluded.recorded_at
             WHERE snapshots.version < excluded.version",
        )
        .bind(stream)
        .bind(i64::try_from(snapshot.version).unwrap_or(i64::MAX))
        .bind(i64::try_from(snapshot.sequence).unwrap_or(i64::MAX))
        .bind(snapshot.state.to_string())
        .bind(personal)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn load_snapshot(&self, stream: &str) -> Result<Option<StoredSnapshot>> {
        Ok(sqlx::query_as(
            "SELECT version, sequence, state::text AS state, personal FROM snapshots WHERE stream_id = $1",
        )
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(crate) async fn erase_subject(&self, subject: &str, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO subject_keys (subject_id, key, created_at, erased_at)
             VALUES ($1, NULL, $2, $2)
             ON CONFLICT (subject_id) DO UPDATE
               SET key = NULL, erased_at = coalesce(subject_keys.erased_at, excluded.erased_at)",
        )
        .bind(subject)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let streams: i64 =
            sqlx::query_scalar("SELECT count(*) FROM subject_streams WHERE subject_id = $1")
                .bind(subject)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE stream_id IN
               (SELECT stream_id FROM subject_streams WHERE subject_id = $1)",
        )
        .bind(subject)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u64::try_from(streams).unwrap_or_default())
    }

    pub(crate) async fn verify(&self) -> Result<VerifyReport> {
        let heads: Vec<(String, i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT stream_id, version, last_hash FROM streams")
                .fetch_all(&self.pool)
                .await?;
        let mut walker = ChainWalker::new(heads);
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events ORDER BY stream_id, version"
        ))
        .try_map(|row: PgRow| stored_row(&row))
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            walker.push(&row);
        }
        Ok(walker.finish())
    }

    pub(crate) async fn hold_append(&self, append: PreparedAppend) -> Result<HeldAppend> {
        let mut tx = self.pool.begin().await?;
        let mut written = call_append_batch(&mut tx, &[&append]).await?;
        let outcome = match written.pop() {
            Some(Written::Committed(outcome)) => outcome,
            other => {
                return Err(Error::Internal(format!(
                    "held append was not written: {other:?}"
                )));
            }
        };
        Ok(HeldAppend::new(outcome, HeldTransaction::Postgres(tx), {
            let writer = self.writer();
            Box::new(move || writer.committed())
        }))
    }

    pub(crate) async fn close(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.pool.close().await;
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Commits held transactions for tests.
pub(crate) async fn finish_held(tx: Transaction<'static, Postgres>, commit: bool) -> Result<()> {
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(())
}

/// Writes batches through `append_batch`; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct PgWriter {
    pool: PgPool,
    signal: Arc<watch::Sender<u64>>,
    wake_notifier: Arc<Notify>,
}

impl BatchWriter for PgWriter {
    async fn write(&self, batch: &[&PreparedAppend]) -> Result<Vec<Written>> {
        // Called outside a transaction, the function is its own transaction: one round trip.
        let mut conn = self.pool.acquire().await?;
        call_append_batch(&mut conn, batch).await
    }

    fn committed(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
        self.wake_notifier.notify_one();
    }
}

async fn call_append_batch(
    conn: &mut sqlx::PgConnection,
    batch: &[&PreparedAppend],
) -> Result<Vec<Written>> {
    let n = batch.len();
    let events: usize = batch.iter().map(|a| a.events.len()).sum();
    let mut a_stream = Vec::with_capacity(n);
    let mut a_expected = Vec::with_capacity(n);
    let mut a_command = Vec::with_capacity(n);
    let mut a_count = Vec::with_capacity(n);
    let mut a_recorded = Vec::with_capacity(n);
    // The events' metadata repeats their append's, so that the insert joins nothing.
    let mut e_app = Vec::with_capacity(events);
    let mut e_k = Vec::with_capacity(events);
    let mut e_stream = Vec::with_capacity(events);
    let mut e_command = Vec::with_capacity(events);
    let mut e_correlation = Vec::with_capacity(events);
    let mut e_causation = Vec::with_capacity(events);
    let mut e_actor = Vec::with_capacity(events);
    let mut e_organisation = Vec::with_capacity(events);
    let mut e_extra = Vec::with_capacity(events);
    let mut e_recorded = Vec::with_capacity(events);
    let mut e_event_id = Vec::with_capacity(events);
    let mut e_type = Vec::with_capacity(events);
    let mut e_schema = Vec::with_capacity(events);
    let mut e_payload = Vec::with_capacity(events);
    let mut e_personal = Vec::with_capacity(events);
    let mut e_digests = Vec::with_capacity(events * 32);
    for (app, append) in (1_i32..).zip(batch) {
        let meta = &append.meta;
        a_stream.push(append.stream.as_str());
        a_expected.push(
            append
                .expected
                .required()
                .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
        );
        a_command.push(meta.command_id.as_deref());
        a_count.push(i32::try_from(append.events.len()).unwrap_or(i32::MAX));
        a_recorded.push(append.recorded_at);
        for (k, event) in (1_i32..).zip(&append.events) {
            e_app.push(app);
            e_k.push(k);
            e_stream.push(append.stream.as_str());
            e_command.push(meta.command_id.as_deref());
            e_correlation.push(meta.correlation_id.as_deref());
            e_causation.push(meta.causation_id.as_deref());
            e_actor.push(meta.actor.as_deref());
            e_organisation.push(meta.organisation.as_deref());
            e_extra.push(append.extra.as_deref());
            e_recorded.push(append.recorded_at);
            e_event_id.push(event.event_id);
            e_type.push(event.event_type.as_str());
            e_schema.push(i32::try_from(event.schema_version).unwrap_or(i32::MAX));
            e_payload.push(event.payload.as_str());
            e_personal.push(event.personal);
            e_digests.extend_from_slice(&event.digest);
        }
    }
    let rows = sqlx::query(
        "SELECT app, outcome, stream_id, first_version, last_version, tx, positions
           FROM append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                             $17, $18, $19, $20, $21)",
    )
    .bind(&a_stream)
    .bind(&a_expected)
    .bind(&a_command)
    .bind(&a_count)
    .bind(&a_recorded)
    .bind(&e_app)
    .bind(&e_k)
    .bind(&e_stream)
    .bind(&e_command)
    .bind(&e_correlation)
    .bind(&e_causation)
    .bind(&e_actor)
    .bind(&e_organisation)
    .bind(&e_extra)
    .bind(&e_recorded)
    .bind(&e_event_id)
    .bind(&e_type)
    .bind(&e_schema)
    .bind(&e_payload)
    .bind(&e_personal)
    .bind(&e_digests)
    .fetch_all(conn)
    .await?;
    let mut written: Vec<Option<Written>> = (0..n).map(|_| None).collect();
    for row in rows {
        let app: i32 = row.try_get("app")?;
        let slot = usize::try_from(app - 1)
            .ok()
            .and_then(|i| written.get_mut(i))
            .ok_or_else(|| Error::Internal(format!("append_batch answered for append {app}")))?;
        let outcome: i16 = row.try_get("outcome")?;
        let last_version: Option<i64> = row.try_get("last_version")?;
        *slot = Some(match outcome {
            0 | 2 => {
                let positions: Vec<i64> = row.try_get("positions")?;
                let tx: i64 = row.try_get("tx")?;
                let positions: Vec<u64> = positions
                    .into_iter()
                    .map(|p| u64::try_from(p).unwrap_or_default())
                    .collect();
                let outcome_value = AppendOutcome {
                    stream_id: row.try_get("stream_id")?,
                    first_version: to_u64(row.try_get::<Option<i64>, _>("first_version")?),
                    stream_version: to_u64(last_version),
                    checkpoint: Checkpoint {
                        tx: u64::try_from(tx).unwrap_or_default(),
                        position: positions.last().copied().unwrap_or_default(),
                    },
                    positions,
                    duplicate: outcome == 2,
                };
                if outcome == 0 {
                    Written::Committed(outcome_value)
                } else {
                    Written::Duplicate(outcome_value)
                }
            }
            1 => Written::Conflict {
                actual: to_u64(last_version),
            },
            _ => Written::Retry,
        });
    }
    written
        .into_iter()
        .map(|w| w.ok_or_else(|| Error::Internal("append_batch skipped an append".into())))
        .collect()
}

fn to_u64(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or_default()
}

fn checkpoint_params(after: Checkpoint) -> (i64, i64) {
    (
        i64::try_from(after.tx).unwrap_or(i64::MAX),
        i64::try_from(after.position).unwrap_or(i64::MAX),
    )
}

/// Decodes a row selected with [`event_columns!`], whose casts fix the column types.
fn stored_row(row: &PgRow) -> Result<StoredRow, sqlx::Error> {
    Ok(StoredRow {
        position: row.try_get_unchecked(0)?,
        tx: row.try_get_unchecked(1)?,
        stream_id: row.try_get_unchecked(2)?,
        version: row.try_get_unchecked(3)?,
        event_id: row.try_get_unchecked(4)?,
        event_type: row.try_get_unchecked(5)?,
        schema_version: row.try_get_unchecked(6)?,
        payload: row.try_get_unchecked(7)?,
        personal: row.try_get_unchecked(8)?,
        command_id: row.try_get_unchecked(9)?,
        correlation_id: row.try_get_unchecked(10)?,
        causation_id: row.try_get_unchecked(11)?,
        actor: row.try_get_unchecked(12)?,
        organisation: row.try_get_unchecked(13)?,
        extra: row.try_get_unchecked(14)?,
        recorded_at: row.try_get_unchecked(15)?,
        hash: row.try_get_unchecked(16)?,
    })
}

async fn key_ring_query<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    subjects: &[&str],
) -> Result<KeyRing> {
    let rows: Vec<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT subject_id, key FROM subject_keys WHERE subject_id = ANY($1)")
            .bind(subjects)
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(subject, key)| (subject, key.as_deref().and_then(SubjectKey::from_bytes)))
        .collect::<HashMap<_, _>>())
}

/// Refuses to run on a cluster whose transaction ids are behind the log (a logical restore into
/// a new cluster resets them): new events would sort before old ones and readers would skip them.
async fn check_transaction_ids(pool: &PgPool) -> Result<()> {
    let (max_tx, next_tx): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT max(tx_id) FROM events),
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
    )
    .fetch_one(pool)
    .await?;
    match max_tx {
        Some(max_tx) if max_tx >= next_tx => Err(Error::Config(format!(
            "the log holds transaction id {max_tx} but this cluster is at {next_tx}: it was \
             restored into a new cluster; advance the cluster's transaction ids past the log's \
             (see docs/adr/0002-gap-safe-global-order.md) before starting"
        ))),
        _ => Ok(()),
    }
}

/// Sends one NOTIFY per burst of local commits, outside the appending transactions (a NOTIFY
/// inside them would serialise their commits on PostgreSQL's notification queue lock).
async fn send_notifications(pool: PgPool, wake: Arc<Notify>, instance: Arc<str>) {
    loop {
        wake.notified().await;
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&*instance)
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "could not notify other instances of a commit");
        }
    }
}

/// Turns other instances' notifications into local commit signals. After a lost connection it
/// signals anyway: notifications may have been missed while it was down.
async fn listen(pool: PgPool, signal: Arc<watch::Sender<u64>>, instance: Arc<str>) {
    let bump = || signal.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for commits; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for commits; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        bump();
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => {
                    if note.payload() != &*instance {
                        bump();
                    }
                }
                Ok(None) => bump(),
                Err(error) => {
                    tracing::warn!(%error, "lost the commit listener; reconnecting");
                    bump();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}
