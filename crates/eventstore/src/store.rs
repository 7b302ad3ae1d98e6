//! [`EventStore`]: the one entry point to the log, whatever the backend.
//!
//! It validates appends, seals personal data, computes content digests, hands appends to the group
//! committer, and turns stored rows back into [`RecordedEvent`]s (unsealing and upcasting them).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::Stream;
use tokio::sync::watch;

use crate::commit::Committer;
use crate::error::{Error, Result};
use crate::hash::{self, Content};
use crate::personal::{self, KeyRing, SubjectKey};
use crate::postgres::PgBackend;
use crate::sqlite::SqliteBackend;
use crate::types::{
    AppendOutcome, Checkpoint, CommandMetadata, EventMetadata, ExpectedVersion, LogPage,
    MAX_NAME_LEN, NewEvent, RecordedEvent, Snapshot, StreamId, StreamRange,
};
use crate::upcast::Upcasters;
use crate::verify::VerifyReport;

/// Where the store reads the time it stamps on events.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How a store is opened. `StoreOptions::default()` suits a service.
#[derive(Clone)]
pub struct StoreOptions {
    /// Largest event payload accepted, in bytes of JSON (before personal fields are sealed).
    pub max_payload_bytes: usize,
    /// The time stamped on appended events.
    pub clock: Clock,
    /// Upcasters applied to every event read.
    pub upcasters: Upcasters,
    /// Most appends committed in one transaction.
    pub max_batch_appends: usize,
    /// Transactions committing at once (PostgreSQL; SQLite always has one writer). The default,
    /// half the cores (1 to 4), measured best when the database shares the machine: more
    /// concurrent batches only make smaller batches that compete for the same cores.
    pub write_concurrency: usize,
    /// Connections in the pool (PostgreSQL) or readers (SQLite).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            clock: Arc::new(Utc::now),
            upcasters: Upcasters::default(),
            max_batch_appends: 512,
            write_concurrency: std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .clamp(1, 4),
            max_connections: 16,
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("upcasters", &self.upcasters)
            .field("max_batch_appends", &self.max_batch_appends)
            .field("write_concurrency", &self.write_concurrency)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// An append ready for the database: validated, sealed, digested.
#[derive(Debug)]
pub(crate) struct PreparedAppend {
    pub(crate) stream: StreamId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) meta: CommandMetadata,
    pub(crate) extra: Option<String>,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) events: Vec<PreparedEvent>,
}

#[derive(Debug)]
pub(crate) struct PreparedEvent {
    pub(crate) event_id: uuid::Uuid,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) payload: String,
    pub(crate) personal: bool,
    pub(crate) digest: [u8; 32],
}

/// A row of the events table, as both backends return it.
#[derive(Debug)]
pub(crate) struct StoredRow {
    pub(crate) position: i64,
    pub(crate) tx: i64,
    pub(crate) stream_id: String,
    pub(crate) version: i64,
    pub(crate) event_id: uuid::Uuid,
    pub(crate) event_type: String,
    pub(crate) schema_version: i32,
    pub(crate) payload: String,
    pub(crate) personal: bool,
    pub(crate) command_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) causation_id: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) organisation: Option<String>,
    pub(crate) extra: Option<String>,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) hash: Vec<u8>,
}

impl StoredRow {
    /// The content digest of the row as stored.
    pub(crate) fn digest(&self) -> [u8; 32] {
        Content {
            stream_id: &self.stream_id,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: u32::try_from(self.schema_version).unwrap_or(u32::MAX),
            payload: &self.payload,
            personal: self.personal,
            command_id: self.command_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            causation_id: self.causation_id.as_deref(),
            actor: self.actor.as_deref(),
            organisation: self.organisation.as_deref(),
            extra: self.extra.as_deref(),
            recorded_at_micros: self.recorded_at.timestamp_micros(),
        }
        .digest()
    }
}

/// A snapshot row, as both backends return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredSnapshot {
    pub(crate) version: i64,
    pub(crate) sequence: i64,
    pub(crate) state: String,
    pub(crate) personal: bool,
}

/// A page of the global log, as the backends return it: stored rows, or rows already decoded.
#[derive(Debug)]
pub(crate) struct RowPage<R = StoredRow> {
    pub(crate) rows: Vec<R>,
    /// Committed events exist past the checkpoint that cannot be read yet, because a transaction
    /// with a lower id is still open (PostgreSQL only).
    pub(crate) held: bool,
}

#[derive(Debug)]
pub(crate) enum Backend {
    Postgres(PgBackend),
    Sqlite(SqliteBackend),
}

/// Dispatches a call to whichever backend is open.
macro_rules! on_backend {
    ($self:expr, $b:ident => $call:expr) => {
        match &$self.inner.backend {
            Backend::Postgres($b) => $call,
            Backend::Sqlite($b) => $call,
        }
    };
}

struct Inner {
    backend: Backend,
    options: StoreOptions,
    committer: Committer,
    /// Bumped after every commit this process sees (local, or notified by the database).
    commits: watch::Receiver<u64>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("backend", &self.backend)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The event log. Cheap to clone; all clones share one pool and one group committer.
#[derive(Clone, Debug)]
pub struct EventStore {
    inner: Arc<Inner>,
}

impl EventStore {
    /// Opens the store at `url` (`sqlite://…` or `postgres://…`) and runs its migrations.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self> {
        let (commit_tx, commit_rx) = watch::channel(0u64);
        let (backend, committer) = if url.starts_with("postgres:") || url.starts_with("postgresql:")
        {
            let pg = PgBackend::open(url, &options, commit_tx).await?;
            let committer = Committer::start(pg.writer(), &options, options.write_concurrency);
            (Backend::Postgres(pg), committer)
        } else if url.starts_with("sqlite:") {
            let lite = SqliteBackend::open(url, &options, commit_tx).await?;
            let committer = Committer::start(lite.writer(), &options, 1);
            (Backend::Sqlite(lite), committer)
        } else {
            return Err(Error::Config(format!(
                "database url must start with sqlite: or postgres:, got {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                options,
                committer,
                commits: commit_rx,
            }),
        })
    }

    /// The backend's name: `postgres` or `sqlite`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Appends `events` to `stream` if it is at `expected`; all or nothing.
    ///
    /// Concurrent appends are committed together (group commit). If `meta.command_id` was already
    /// committed, returns the first outcome with `duplicate` set and writes nothing.
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        meta: CommandMetadata,
    ) -> Result<AppendOutcome> {
        let prepared = self.prepare(stream, expected, events, meta).await?;
        self.inner.committer.submit(prepared).await
    }

    async fn prepare(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        meta: CommandMetadata,
    ) -> Result<PreparedAppend> {
        if events.is_empty() {
            return Err(Error::EmptyAppend);
        }
        meta.validate()?;
        let limit = self.inner.options.max_payload_bytes;
        let mut texts = Vec::with_capacity(events.len());
        let mut subjects = BTreeSet::new();
        for (index, event) in events.iter().enumerate() {
            if event.event_type.is_empty() || event.event_type.len() > MAX_NAME_LEN {
                return Err(Error::InvalidEvent {
                    index,
                    reason: format!("event type must be 1 to {MAX_NAME_LEN} bytes"),
                });
            }
            let text = event.payload.to_string();
            if text.len() > limit {
                return Err(Error::PayloadTooLarge {
                    index,
                    size: text.len(),
                    limit,
                });
            }
            let found = personal::subjects_to_seal(&event.payload)
                .map_err(|reason| Error::InvalidEvent { index, reason })?;
            subjects.extend(found.iter().cloned());
            texts.push((text, !found.is_empty()));
        }
        let keys = if subjects.is_empty() {
            HashMap::new()
        } else {
            self.sealing_keys(stream, &subjects).await?
        };
        let extra = (!meta.extra.is_empty())
            .then(|| serde_json::to_string(&meta.extra).expect("string map serialises"));
        let recorded_at = (self.inner.options.clock)().trunc_subsecs(6);
        let mut prepared = Vec::with_capacity(events.len());
        for (event, (text, has_personal)) in events.into_iter().zip(texts) {
            let payload = if has_personal {
                let mut payload = event.payload;
                personal::seal(&mut payload, &keys);
                payload.to_string()
            } else {
                text
            };
            let digest = Content {
                stream_id: stream.as_str(),
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                payload: &payload,
                personal: has_personal,
                command_id: meta.command_id.as_deref(),
                correlation_id: meta.correlation_id.as_deref(),
                causation_id: meta.causation_id.as_deref(),
                actor: meta.actor.as_deref(),
                organisation: meta.organisation.as_deref(),
                extra: extra.as_deref(),
                recorded_at_micros: recorded_at.timestamp_micros(),
            }
            .digest();
            prepared.push(PreparedEvent {
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload,
                personal: has_personal,
                digest,
            });
        }
        Ok(PreparedAppend {
            stream: stream.clone(),
            expected,
            meta,
            extra,
            recorded_at,
            events: prepared,
        })
    }

    /// The keys to seal `subjects`' data with, created on first use; refuses erased subjects.
    async fn sealing_keys(
        &self,
        stream: &StreamId,
        subjects: &BTreeSet<String>,
    ) -> Result<HashMap<String, SubjectKey>> {
        let now = (self.inner.options.clock)();
        let ring = on_backend!(self, b => b.sealing_keys(stream.as_str(), subjects, now).await)?;
        ring.into_iter()
            .map(|(subject, key)| match key {
                Some(key) => Ok((subject, key)),
                None => Err(Error::SubjectErased { subject }),
            })
            .collect()
    }

    /// Reads part of a stream in version order.
    pub async fn read_stream(
        &self,
        stream: &StreamId,
        range: StreamRange,
    ) -> Result<Vec<RecordedEvent>> {
        let rows = on_backend!(self, b => b.read_stream(stream.as_str(), range).await)?;
        self.decode(rows).await
    }

    /// The stream's current version, or `None` if it has no events.
    pub async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        on_backend!(self, b => b.stream_version(stream.as_str()).await)
    }

    /// The outcome of the committed append that carried `command_id`, marked `duplicate`; `None`
    /// if no committed append carried it.
    ///
    /// The command layer asks this before deciding a command again, so a retried command answers
    /// with its first outcome even when the aggregate has moved on and would now refuse it.
    pub async fn command_outcome(&self, command_id: &str) -> Result<Option<AppendOutcome>> {
        on_backend!(self, b => b.command_outcome(command_id).await)
    }

    /// Reads up to `limit` events of the whole log that come after `after`, in global order.
    ///
    /// Gap-safe: an event this returns is never followed, in a later call, by one that belongs
    /// before it. An empty page with `held` set means committed events exist past `after` that
    /// cannot be read yet because an older transaction is still open (PostgreSQL); read again.
    pub async fn read_all(&self, after: Checkpoint, limit: usize) -> Result<LogPage> {
        let limit = page_limit(limit);
        let (events, held) = match &self.inner.backend {
            // Decoding each row as it arrives overlaps decoding with the transfer and frees each
            // row's buffers while they are still in cache.
            Backend::Postgres(b) => {
                let page = b.read_all(after, limit, decode_row).await?;
                (self.finish_decoding(page.rows).await?, page.held)
            }
            Backend::Sqlite(b) => {
                let page = b.read_all(after, limit).await?;
                (self.decode(page.rows).await?, page.held)
            }
        };
        Ok(LogPage { events, held })
    }

    pub(crate) async fn read_page(&self, after: Checkpoint, limit: usize) -> Result<RowPage> {
        let limit = page_limit(limit);
        match &self.inner.backend {
            Backend::Postgres(b) => b.read_all(after, limit, Ok).await,
            Backend::Sqlite(b) => b.read_all(after, limit).await,
        }
    }

    /// Follows the log from `after`: first everything already committed, then each new event as
    /// it commits, in global order, each exactly once. Ends only on an error.
    pub fn subscribe(
        &self,
        after: Checkpoint,
    ) -> impl Stream<Item = Result<RecordedEvent>> + use<> {
        crate::subscription::follow(self.clone(), after)
    }

    /// A receiver that changes whenever an append commits (here or, on PostgreSQL, elsewhere).
    pub(crate) fn commit_signal(&self) -> watch::Receiver<u64> {
        self.inner.commits.clone()
    }

    /// Stores `snapshot` as the stream's latest unless a newer one is already stored.
    pub async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
        let mut state = snapshot.state;
        let subjects = personal::subjects_to_seal(&state)
            .map_err(|reason| Error::InvalidEvent { index: 0, reason })?;
        let has_personal = !subjects.is_empty();
        if has_personal {
            let keys = self.sealing_keys(stream, &subjects).await?;
            personal::seal(&mut state, &keys);
        }
        let now = (self.inner.options.clock)().trunc_subsecs(6);
        let stored = Snapshot { state, ..snapshot };
        on_backend!(self, b => b.save_snapshot(stream.as_str(), &stored, has_personal, now).await)
    }

    /// The stream's latest snapshot, with personal data unsealed (or erased).
    pub async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let Some(stored) = on_backend!(self, b => b.load_snapshot(stream.as_str()).await)? else {
            return Ok(None);
        };
        let has_personal = stored.personal;
        let mut snapshot = Snapshot {
            version: u64::try_from(stored.version).unwrap_or_default(),
            sequence: u64::try_from(stored.sequence).unwrap_or_default(),
            state: serde_json::from_str(&stored.state).map_err(|e| Error::Corrupted {
                position: 0,
                reason: format!("snapshot of {stream} is not JSON: {e}"),
            })?,
        };
        if has_personal {
            let mut subjects = BTreeSet::new();
            personal::sealed_subjects(&snapshot.state, &mut subjects);
            let ring = on_backend!(self, b => b.key_ring(&subjects).await)?;
            // A snapshot that fails to open is only a cache: drop it and fold from the events.
            if personal::unseal(&mut snapshot.state, &ring).is_err() {
                tracing::warn!(stream = %stream, "snapshot does not decrypt; ignoring it");
                return Ok(None);
            }
        }
        Ok(Some(snapshot))
    }

    /// Destroys the data key of `subject` (the erasure of R-RET-1 to R-RET-3, kept replayable as
    /// R-RET-4 requires): its personal fields read as erased from now on, in
    /// every event and snapshot, while the hash chain stays valid. Drops the snapshots of every
    /// stream that held the subject's data. Returns how many streams held it.
    pub async fn erase_subject(&self, subject: &str) -> Result<u64> {
        if subject.is_empty() || subject.len() > MAX_NAME_LEN {
            return Err(Error::InvalidEvent {
                index: 0,
                reason: format!("subject id must be 1 to {MAX_NAME_LEN} bytes"),
            });
        }
        let now = (self.inner.options.clock)();
        on_backend!(self, b => b.erase_subject(subject, now).await)
    }

    /// Walks every stream's hash chain and reports each broken stream's first broken link.
    pub async fn verify(&self) -> Result<VerifyReport> {
        on_backend!(self, b => b.verify().await)
    }

    /// Turns stored rows into events: unseals personal data and applies upcasters.
    pub(crate) async fn decode(&self, rows: Vec<StoredRow>) -> Result<Vec<RecordedEvent>> {
        let mut decoded = Vec::with_capacity(rows.len());
        for row in rows {
            decoded.push(decode_row(row)?);
        }
        self.finish_decoding(decoded).await
    }

    /// Unseals the personal data of decoded rows, loading the keys it needs, and upcasts them.
    async fn finish_decoding(&self, rows: Vec<DecodedRow>) -> Result<Vec<RecordedEvent>> {
        let mut subjects = BTreeSet::new();
        for row in rows.iter().filter(|row| row.personal) {
            personal::sealed_subjects(&row.event.payload, &mut subjects);
        }
        let ring: KeyRing = if subjects.is_empty() {
            KeyRing::new()
        } else {
            on_backend!(self, b => b.key_ring(&subjects).await)?
        };
        let upcasters = &self.inner.options.upcasters;
        rows.into_iter()
            .map(|row| {
                let DecodedRow {
                    mut event,
                    personal,
                } = row;
                if personal {
                    personal::unseal(&mut event.payload, &ring).map_err(|reason| {
                        Error::Corrupted {
                            position: event.position,
                            reason,
                        }
                    })?;
                }
                let payload = std::mem::take(&mut event.payload);
                (event.schema_version, event.payload) =
                    upcasters.apply(&event.event_type, event.schema_version, payload);
                Ok(event)
            })
            .collect()
    }

    /// Waits for in-flight appends to commit and stops taking new ones.
    pub async fn close(&self) {
        self.inner.committer.close().await;
        on_backend!(self, b => b.close().await);
    }

    #[doc(hidden)]
    /// Starts an append inside a transaction that stays open until the returned handle commits or
    /// rolls back. Only for tests that need a slow writer (the gap test); not part of the API.
    pub async fn hold_append(
        &self,
        stream: &StreamId,
        events: Vec<NewEvent>,
        meta: CommandMetadata,
    ) -> Result<crate::HeldAppend> {
        let prepared = self
            .prepare(stream, ExpectedVersion::Any, events, meta)
            .await?;
        on_backend!(self, b => b.hold_append(prepared).await)
    }
}

fn page_limit(limit: usize) -> i64 {
    i64::try_from(limit.max(1)).unwrap_or(i64::MAX)
}

/// A row decoded into an event whose payload is still sealed (if `personal`) and not upcast.
#[derive(Debug)]
struct DecodedRow {
    event: RecordedEvent,
    personal: bool,
}

/// Parses a row's payload, metadata and hash; unsealing and upcasting are done per page, by
/// [`EventStore::finish_decoding`], because unsealing needs the keys of the whole page.
fn decode_row(row: StoredRow) -> Result<DecodedRow> {
    let position = u64::try_from(row.position).unwrap_or_default();
    let payload = serde_json::from_str(&row.payload).map_err(|e| Error::Corrupted {
        position,
        reason: format!("payload is not JSON: {e}"),
    })?;
    let extra = match row.extra.as_deref() {
        Some(text) => serde_json::from_str(text).map_err(|e| Error::Corrupted {
            position,
            reason: format!("metadata is not a string map: {e}"),
        })?,
        None => Default::default(),
    };
    let hash = hash::from_slice(&row.hash).ok_or_else(|| Error::Corrupted {
        position,
        reason: "hash is not 32 bytes".into(),
    })?;
    let event = RecordedEvent {
        position,
        tx: u64::try_from(row.tx).unwrap_or_default(),
        version: u64::try_from(row.version).unwrap_or_default(),
        stream_id: row.stream_id,
        event_type: row.event_type,
        schema_version: u32::try_from(row.schema_version).unwrap_or_default(),
        payload,
        metadata: EventMetadata {
            event_id: row.event_id,
            command: CommandMetadata {
                command_id: row.command_id,
                correlation_id: row.correlation_id,
                causation_id: row.causation_id,
                actor: row.actor,
                organisation: row.organisation,
                extra,
            },
            recorded_at: row.recorded_at,
        },
        hash,
    };
    Ok(DecodedRow {
        event,
        personal: row.personal,
    })
}

/// How long a subscriber waits between looks while a lower transaction holds the log back.
pub(crate) const HELD_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(2), Duration::from_millis(100));

/// How often an idle subscriber re-reads even without a signal (a commit notification lost with
/// a crashed instance must not stall it forever).
pub(crate) const IDLE_RECHECK: Duration = Duration::from_secs(5);
