//! The SQLite backend: the embedded default, one file under `./data/`.
//!
//! One connection writes (every write transaction starts with `BEGIN IMMEDIATE`), so positions are
//! assigned and committed in order and the global order is plain position order; `tx` equals
//! `position`. Readers use their own connections (WAL lets them read while the writer writes).
//! Subscribers in this process are woken by an in-process signal.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row, Sqlite, SqliteConnection, Transaction};
use tokio::sync::watch;

use crate::commit::{BatchWriter, Written};
use crate::error::{Error, Result};
use crate::personal::{KeyRing, SubjectKey};
use crate::store::{PreparedAppend, RowPage, StoreOptions, StoredRow, StoredSnapshot};
use crate::types::{AppendOutcome, Checkpoint, Snapshot, StreamRange};
use crate::verify::{ChainWalker, VerifyReport};
use crate::{HeldAppend, HeldTransaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Column list of an event row, in [`StoredRow`] order (`tx` is the position).
macro_rules! event_columns {
    () => {
        "global_position, global_position, stream_id, version, event_id, event_type, \
         schema_version, payload, personal, command_id, correlation_id, causation_id, actor, \
         organisation, extra, recorded_at, hash"
    };
}

/// SQLite's limit on bound parameters in one statement.
const MAX_PARAMS: usize = 32_766;

#[derive(Debug)]
pub(crate) struct SqliteBackend {
    writer: SqlitePool,
    readers: SqlitePool,
    signal: Arc<watch::Sender<u64>>,
}

impl SqliteBackend {
    pub(crate) async fn open(
        url: &str,
        options: &StoreOptions,
        signal: watch::Sender<u64>,
    ) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the append is acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        if let Some(dir) = connect.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Config(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // The ping would be one more round trip to the connection's thread per batch, and an
            // in-process connection has no link to test.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(60))
            // A batch dirties some 30 pages (random leaves of the command and stream indexes), so
            // the default of 1000 frames checkpoints every ~35 commits, each checkpoint stalling
            // the writer. With 4000 (a 16 MiB log), checkpoints are a quarter as frequent and,
            // since hot pages are copied once per checkpoint, copy less than half as many pages
            // per commit. Durability does not change: a checkpoint copies frames already synced.
            .connect_with(connect.clone().pragma("wal_autocheckpoint", "4000"))
            .await?;
        MIGRATOR.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect.read_only(true))
            .await?;
        Ok(Self {
            writer,
            readers,
            signal: Arc::new(signal),
        })
    }

    pub(crate) fn writer(&self) -> SqliteWriter {
        SqliteWriter {
            pool: self.writer.clone(),
            signal: Arc::clone(&self.signal),
        }
    }

    pub(crate) async fn read_all(&self, after: Checkpoint, limit: i64) -> Result<RowPage> {
        // Rows have tx = position, so "(tx, position) > after" is "position > bound".
        let bound = if after.tx > after.position {
            after.tx - 1
        } else {
            after.tx
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE global_position > ? ORDER BY global_position LIMIT ?"
        ))
        .bind(i64::try_from(bound).unwrap_or(i64::MAX))
        .bind(limit)
        .try_map(|row: SqliteRow| stored_row(&row))
        .fetch_all(&self.readers)
        .await?;
        Ok(RowPage { rows, held: false })
    }

    pub(crate) async fn read_stream(
        &self,
        stream: &str,
        range: StreamRange,
    ) -> Result<Vec<StoredRow>> {
        let to = range
            .to_version
            .map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
        // Without an as-of time, no subquery: it would visit every event of the stream, and
        // loading an aggregate must cost the same on a long stream as on a new one.
        let sql = if range.as_of.is_some() {
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events
                  WHERE stream_id = ?1 AND version >= ?2 AND version <= ?3
                    AND version < coalesce((SELECT min(version) FROM events
                                             WHERE stream_id = ?1 AND recorded_at > ?4),
                                           9223372036854775807)
                  ORDER BY version"
            )
        } else {
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE stream_id = ?1 AND version >= ?2 AND version <= ?3
                  ORDER BY version"
            )
        };
        let mut query = sqlx::query(sql)
            .bind(stream)
            .bind(i64::try_from(range.from_version).unwrap_or(i64::MAX))
            .bind(to);
        if let Some(as_of) = range.as_of {
            query = query.bind(as_of.timestamp_micros());
        }
        let rows = query
            .try_map(|row: SqliteRow| stored_row(&row))
            .fetch_all(&self.readers)
            .await?;
        Ok(rows)
    }

    pub(crate) async fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = ?")
                .bind(stream)
                .fetch_optional(&self.readers)
                .await?;
        Ok(version
            .filter(|v| *v > 0)
            .map(|v| u64::try_from(v).unwrap_or_default()))
    }

    pub(crate) async fn command_outcome(&self, command_id: &str) -> Result<Option<AppendOutcome>> {
        let mut conn = self.readers.acquire().await?;
        let command: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, first_version, last_version FROM commands WHERE command_id = ?",
        )
        .bind(command_id)
        .fetch_optional(&mut *conn)
        .await?;
        match command {
            Some((stream, first, last)) => Ok(Some(
                duplicate_outcome(&mut conn, &stream, first, last).await?,
            )),
            None => Ok(None),
        }
    }

    pub(crate) async fn sealing_keys(
        &self,
        stream: &str,
        subjects: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<KeyRing> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        for subject in subjects {
            sqlx::query(
                "INSERT INTO subject_keys (subject_id, key, created_at) VALUES (?, ?, ?)
                 ON CONFLICT (subject_id) DO NOTHING",
            )
            .bind(subject)
            .bind(SubjectKey::generate().as_bytes())
            .bind(now.timestamp_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO subject_streams (subject_id, stream_id) VALUES (?, ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(subject)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
        }
        let ring = key_ring_query(&mut tx, subjects).await?;
        tx.commit().await?;
        Ok(ring)
    }

    pub(crate) async fn key_ring(&self, subjects: &BTreeSet<String>) -> Result<KeyRing> {
        let mut conn = self.readers.acquire().await?;
        key_ring_query(&mut conn, subjects).await
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
             VALUES (?, ?, ?, ?, ?, ?)
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
        .bind(now.timestamp_micros())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn load_snapshot(&self, stream: &str) -> Result<Option<StoredSnapshot>> {
        Ok(sqlx::query_as(
            "SELECT version, sequence, state, personal FROM snapshots WHERE stream_id = ?",
        )
        .bind(stream)
        .fetch_optional(&self.readers)
        .await?)
    }

    pub(crate) async fn erase_subject(&self, subject: &str, now: DateTime<Utc>) -> Result<u64> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO subject_keys (subject_id, key, created_at, erased_at) VALUES (?1, NULL, ?2, ?2)
             ON CONFLICT (subject_id) DO UPDATE
               SET key = NULL, erased_at = coalesce(subject_keys.erased_at, excluded.erased_at)",
        )
        .bind(subject)
        .bind(now.timestamp_micros())
        .execute(&mut *tx)
        .await?;
        let streams: i64 =
            sqlx::query_scalar("SELECT count(*) FROM subject_streams WHERE subject_id = ?")
                .bind(subject)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE stream_id IN
               (SELECT stream_id FROM subject_streams WHERE subject_id = ?)",
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
                .fetch_all(&self.readers)
                .await?;
        let mut walker = ChainWalker::new(heads);
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events ORDER BY stream_id, version"
        ))
        .try_map(|row: SqliteRow| stored_row(&row))
        .fetch(&self.readers);
        while let Some(row) = rows.try_next().await? {
            walker.push(&row);
        }
        Ok(walker.finish())
    }

    pub(crate) async fn hold_append(&self, append: PreparedAppend) -> Result<HeldAppend> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut written = write_batch(&mut tx, &[&append], Scope::Held).await?;
        let outcome = match written.pop() {
            Some(Written::Committed(outcome)) => outcome,
            other => {
                return Err(Error::Internal(format!(
                    "held append was not written: {other:?}"
                )));
            }
        };
        Ok(HeldAppend::new(outcome, HeldTransaction::Sqlite(tx), {
            let writer = self.writer();
            Box::new(move || writer.committed())
        }))
    }

    pub(crate) async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

/// Commits or rolls back a held transaction.
pub(crate) async fn finish_held(tx: Transaction<'static, Sqlite>, commit: bool) -> Result<()> {
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(())
}

/// Writes batches on the single writer connection.
#[derive(Clone, Debug)]
pub(crate) struct SqliteWriter {
    pool: SqlitePool,
    signal: Arc<watch::Sender<u64>>,
}

impl BatchWriter for SqliteWriter {
    async fn write(&self, batch: &[&PreparedAppend]) -> Result<Vec<Written>> {
        let mut conn = OwnTransaction(Some(self.pool.acquire().await?));
        let written = write_batch(conn.connection(), batch, Scope::Own).await?;
        conn.finished();
        Ok(written)
    }

    fn committed(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Who begins and ends the transaction [`write_batch`] writes in.
#[derive(Clone, Copy)]
enum Scope {
    /// `write_batch` does, in the SQL text of its first and last round trips to the connection's
    /// thread: a batch costs two round trips, where `begin`, each statement and `commit` would
    /// cost one each (a round trip is two thread wake-ups, tens of microseconds under load).
    Own,
    /// The caller holds an open transaction (see [`SqliteBackend::hold_append`]).
    Held,
}

impl Scope {
    /// How the batch's inserts start. In its own transaction a failed insert fails the whole
    /// batch anyway (the committer then retries its appends one by one), so `OR ROLLBACK` ends
    /// the transaction at once; in exchange SQLite keeps no statement journal to undo a single
    /// multi-row statement (by default a temporary file once past 64 KiB, which a batch reaches).
    /// A held transaction must survive for its holder to end, so it keeps the default.
    fn insert(self) -> &'static str {
        match self {
            Self::Own => "INSERT OR ROLLBACK",
            Self::Held => "INSERT",
        }
    }
}

/// The writer connection while [`write_batch`] runs a transaction sqlx does not know of (see
/// [`Scope::Own`]). Dropped before [`OwnTransaction::finished`], after an error or in a cancelled
/// future, it closes the connection, which rolls back whatever is still open, instead of returning
/// it to the pool inside a transaction.
struct OwnTransaction(Option<PoolConnection<Sqlite>>);

impl OwnTransaction {
    fn connection(&mut self) -> &mut SqliteConnection {
        self.0.as_mut().expect("present until finished")
    }

    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for OwnTransaction {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.0 {
            conn.close_on_drop();
        }
    }
}

/// What a batch's decisions depend on, read in one round trip: rows
/// `(0, stream, version, last hash)` of its streams' heads, then
/// `(1, command, stream, first version, last version)` of its command ids already committed.
macro_rules! batch_reads {
    () => {
        "SELECT 0, stream_id, version, last_hash FROM streams
          WHERE stream_id IN (SELECT value FROM json_each(?1));
         SELECT 1, command_id, stream_id, first_version, last_version FROM commands
          WHERE command_id IN (SELECT value FROM json_each(?2))"
    };
}

/// What the batch knows of a stream: its version and last hash.
struct Head {
    version: i64,
    hash: [u8; 32],
}

/// An append that goes in: its index in the batch, its stream's version before it, and the hash
/// of each of its events.
type Accepted = (usize, i64, Vec<[u8; 32]>);

/// Decides and writes a batch of appends (distinct streams, distinct command ids) in one
/// transaction: one round trip reads what the decisions depend on, one writes what they accept.
async fn write_batch(
    conn: &mut SqliteConnection,
    batch: &[&PreparedAppend],
    scope: Scope,
) -> Result<Vec<Written>> {
    let streams: Vec<&str> = batch.iter().map(|a| a.stream.as_str()).collect();
    let commands: Vec<&str> = batch
        .iter()
        .filter_map(|a| a.meta.command_id.as_deref())
        .collect();
    let reads = match scope {
        Scope::Own => concat!("BEGIN IMMEDIATE; ", batch_reads!()),
        Scope::Held => batch_reads!(),
    };
    let rows = sqlx::query(reads)
        .bind(serde_json::to_string(&streams).expect("strings serialise"))
        .bind(serde_json::to_string(&commands).expect("strings serialise"))
        .fetch_all(&mut *conn)
        .await?;
    let mut heads: HashMap<String, Head> = HashMap::with_capacity(batch.len());
    let mut committed_commands: HashMap<String, (String, i64, i64)> = HashMap::new();
    for row in rows {
        if row.try_get::<i64, _>(0)? == 0 {
            let hash: Option<Vec<u8>> = row.try_get(3)?;
            let head = Head {
                version: row.try_get(2)?,
                hash: hash
                    .as_deref()
                    .and_then(crate::hash::from_slice)
                    .unwrap_or(crate::hash::GENESIS),
            };
            heads.insert(row.try_get(1)?, head);
        } else {
            let outcome = (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
            committed_commands.insert(row.try_get(1)?, outcome);
        }
    }

    // Decide each append; chain the hashes of those that go in.
    let mut written: Vec<Option<Written>> = Vec::with_capacity(batch.len());
    let mut accepted: Vec<Accepted> = Vec::new();
    for (i, append) in batch.iter().enumerate() {
        if let Some(command) = &append.meta.command_id
            && let Some((stream, first, last)) = committed_commands.get(command)
        {
            let outcome = duplicate_outcome(&mut *conn, stream, *first, *last).await?;
            written.push(Some(Written::Duplicate(outcome)));
            continue;
        }
        let (version, mut hash) = heads
            .get(append.stream.as_str())
            .map_or((0, crate::hash::GENESIS), |h| (h.version, h.hash));
        let actual = u64::try_from(version).unwrap_or_default();
        if append.expected.required().is_some_and(|v| v != actual) {
            written.push(Some(Written::Conflict { actual }));
            continue;
        }
        let mut hashes = Vec::with_capacity(append.events.len());
        for (k, event) in append.events.iter().enumerate() {
            hash = crate::hash::link(&hash, actual + 1 + k as u64, &event.digest);
            hashes.push(hash);
        }
        accepted.push((i, version, hashes));
        written.push(None);
    }

    let last_position = write_rows(&mut *conn, batch, &accepted, scope).await?;
    // AUTOINCREMENT gives each new row one more than the largest position the table ever held,
    // and this transaction holds the write lock and names no position: its rows got consecutive
    // positions, in insert order, up to `last_position`.
    let inserted: u64 = accepted.iter().map(|(_, _, h)| h.len() as u64).sum();
    let first_position = (last_position + 1).checked_sub(inserted).ok_or_else(|| {
        Error::Internal(format!(
            "{inserted} events inserted but the last position is {last_position}"
        ))
    })?;
    let mut positions = first_position..;
    for (i, version, hashes) in &accepted {
        let append = batch[*i];
        let positions: Vec<u64> = positions.by_ref().take(hashes.len()).collect();
        let last = version + i64::try_from(hashes.len()).unwrap_or(i64::MAX);
        let checkpoint = positions.last().copied().unwrap_or_default();
        written[*i] = Some(Written::Committed(AppendOutcome {
            stream_id: append.stream.to_string(),
            first_version: u64::try_from(version + 1).unwrap_or_default(),
            stream_version: u64::try_from(last).unwrap_or_default(),
            checkpoint: Checkpoint {
                tx: checkpoint,
                position: checkpoint,
            },
            positions,
            duplicate: false,
        }));
    }
    Ok(written
        .into_iter()
        .map(|w| w.expect("every append was decided"))
        .collect())
}

/// Inserts the accepted appends' events and command ids and moves their streams' heads, in one
/// round trip that also commits in [`Scope::Own`]; returns the position of the last event
/// inserted (0 if none).
///
/// The statement text depends only on the scope and the numbers of rows, so sqlx's statement cache
/// (keyed by text) prepares each shape of batch once: preparing the statements of an 8-append batch costs
/// about as much as running them.
async fn write_rows(
    conn: &mut SqliteConnection,
    batch: &[&PreparedAppend],
    accepted: &[Accepted],
    scope: Scope,
) -> Result<u64> {
    let events: usize = accepted.iter().map(|(_, _, h)| h.len()).sum();
    let commands = accepted
        .iter()
        .filter(|(i, _, _)| batch[*i].meta.command_id.is_some())
        .count();
    let mut sql = String::new();
    let insert = scope.insert();
    push_inserts(
        &mut sql,
        &format!(
            "{insert} INTO events (stream_id, version, event_id, event_type, schema_version, \
             payload, personal, command_id, correlation_id, causation_id, actor, organisation, \
             extra, recorded_at, hash) VALUES "
        ),
        15,
        events,
        "",
    );
    push_inserts(
        &mut sql,
        &format!("{insert} INTO streams (stream_id, version, last_hash) VALUES "),
        3,
        accepted.len(),
        " ON CONFLICT (stream_id) DO UPDATE \
           SET version = excluded.version, last_hash = excluded.last_hash",
    );
    push_inserts(
        &mut sql,
        &format!(
            "{insert} INTO commands (command_id, stream_id, first_version, last_version, \
             recorded_at) VALUES "
        ),
        5,
        commands,
        "",
    );
    if events > 0 {
        sql.push_str("SELECT seq FROM sqlite_sequence WHERE name = 'events';\n");
    }
    if let Scope::Own = scope {
        sql.push_str("COMMIT");
    }
    if sql.is_empty() {
        return Ok(0);
    }

    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (i, version, hashes) in accepted {
        let append = batch[*i];
        let meta = &append.meta;
        for (k, (event, hash)) in append.events.iter().zip(hashes).enumerate() {
            query = query
                .bind(append.stream.as_str())
                .bind(version + 1 + i64::try_from(k).unwrap_or(i64::MAX))
                .bind(event.event_id)
                .bind(event.event_type.as_str())
                .bind(i64::from(event.schema_version))
                .bind(event.payload.as_str())
                .bind(event.personal)
                .bind(meta.command_id.as_deref())
                .bind(meta.correlation_id.as_deref())
                .bind(meta.causation_id.as_deref())
                .bind(meta.actor.as_deref())
                .bind(meta.organisation.as_deref())
                .bind(append.extra.as_deref())
                .bind(append.recorded_at.timestamp_micros())
                .bind(hash.as_slice());
        }
    }
    for (i, version, hashes) in accepted {
        query = query
            .bind(batch[*i].stream.as_str())
            .bind(version + i64::try_from(hashes.len()).unwrap_or(i64::MAX))
            .bind(hashes.last().map(|h| h.to_vec()));
    }
    for (i, version, hashes) in accepted {
        let append = batch[*i];
        if let Some(command) = &append.meta.command_id {
            query = query
                .bind(command)
                .bind(append.stream.as_str())
                .bind(version + 1)
                .bind(version + i64::try_from(hashes.len()).unwrap_or(i64::MAX))
                .bind(append.recorded_at.timestamp_micros());
        }
    }
    let last: Option<i64> = match query.fetch_all(&mut *conn).await?.first() {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    Ok(last.map_or(0, |p| u64::try_from(p).unwrap_or_default()))
}

/// Appends to `sql` the statements inserting `rows` rows of `columns` bound values each, with
/// `insert` (an `INSERT … VALUES` prefix) and `tail`: as few statements as SQLite's limit on bound
/// values per statement allows.
fn push_inserts(sql: &mut String, insert: &str, columns: usize, rows: usize, tail: &str) {
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut left = rows;
    while left > 0 {
        let n = left.min(MAX_PARAMS / columns);
        sql.push_str(insert);
        sql.push_str(&vec![row.as_str(); n].join(", "));
        sql.push_str(tail);
        sql.push_str(";\n");
        left -= n;
    }
}

async fn duplicate_outcome(
    conn: &mut SqliteConnection,
    stream: &str,
    first: i64,
    last: i64,
) -> Result<AppendOutcome> {
    let positions: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE stream_id = ? AND version BETWEEN ? AND ?
          ORDER BY version",
    )
    .bind(stream)
    .bind(first)
    .bind(last)
    .fetch_all(conn)
    .await?;
    let positions: Vec<u64> = positions
        .into_iter()
        .map(|p| u64::try_from(p).unwrap_or_default())
        .collect();
    let last_position = positions.last().copied().unwrap_or_default();
    Ok(AppendOutcome {
        stream_id: stream.to_owned(),
        first_version: u64::try_from(first).unwrap_or_default(),
        stream_version: u64::try_from(last).unwrap_or_default(),
        checkpoint: Checkpoint {
            tx: last_position,
            position: last_position,
        },
        positions,
        duplicate: true,
    })
}

fn stored_row(row: &SqliteRow) -> Result<StoredRow, sqlx::Error> {
    let micros: i64 = row.try_get(15)?;
    Ok(StoredRow {
        position: row.try_get(0)?,
        tx: row.try_get(1)?,
        stream_id: row.try_get(2)?,
        version: row.try_get(3)?,
        event_id: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get(6)?,
        payload: row.try_get(7)?,
        personal: row.try_get(8)?,
        command_id: row.try_get(9)?,
        correlation_id: row.try_get(10)?,
        causation_id: row.try_get(11)?,
        actor: row.try_get(12)?,
        organisation: row.try_get(13)?,
        extra: row.try_get(14)?,
        recorded_at: DateTime::from_timestamp_micros(micros).ok_or_else(|| {
            sqlx::Error::Decode(format!("recorded_at {micros} is out of range").into())
        })?,
        hash: row.try_get(16)?,
    })
}

async fn key_ring_query(
    conn: &mut SqliteConnection,
    subjects: &BTreeSet<String>,
) -> Result<KeyRing> {
    let rows: Vec<(String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT subject_id, key FROM subject_keys
          WHERE subject_id IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::to_string(subjects).expect("strings serialise"))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(subject, key)| (subject, key.as_deref().and_then(SubjectKey::from_bytes)))
        .collect())
}
