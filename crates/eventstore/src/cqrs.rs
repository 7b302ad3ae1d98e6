//! cqrs-es 0.5's `PersistedEventRepository` on top of the event store, so cqrs-es aggregates
//! run on the log with its concurrency check, command-id dedup, snapshots and upcasters.
//!
//! Stream ids are `{Aggregate::TYPE}-{aggregate id}`. The command id travels in the cqrs-es
//! metadata map under `command_id` (with `correlation_id`, `causation_id`, `actor` and
//! `organisation`); the dedup record therefore commits in the same transaction as the events,
//! which cqrs-es' own repositories cannot do.

use std::collections::{BTreeMap, HashMap};

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use serde_json::Value;

use crate::error::Error;
use crate::store::{EventStore, HELD_BACKOFF};
use crate::types::{
    Checkpoint, CommandMetadata, ExpectedVersion, NewEvent, RecordedEvent, Snapshot, StreamId,
    StreamRange,
};

/// Events per page when replaying a whole aggregate type.
const REPLAY_PAGE: usize = 1000;

/// The event store seen as a cqrs-es repository.
#[derive(Clone, Debug)]
pub struct CqrsRepository {
    store: EventStore,
    snapshot_size: Option<usize>,
}

impl CqrsRepository {
    /// A repository for `PersistedEventStore::new_event_store` or `new_aggregate_store`.
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            snapshot_size: None,
        }
    }

    /// A repository for `PersistedEventStore::new_snapshot_store(repo, size)`: pass the same
    /// size, because cqrs-es hands over a snapshot without saying how many of the committed
    /// events it folds in, and the repository must record the right version with it.
    pub fn with_snapshot_size(store: EventStore, size: usize) -> Self {
        Self {
            store,
            snapshot_size: Some(size.max(1)),
        }
    }

    /// The stream of an aggregate instance: `{TYPE}-{id}`.
    ///
    /// `TYPE` may not contain `-`: otherwise `posting` + `draft-1` and `posting-draft` + `1`
    /// would share a stream.
    pub fn stream_id<A: Aggregate>(aggregate_id: &str) -> Result<StreamId, PersistenceError> {
        if A::TYPE.is_empty() || A::TYPE.contains('-') {
            return Err(unknown(Error::InvalidStreamId {
                id: A::TYPE.to_owned(),
                reason: "an aggregate type must be non-empty and free of '-'",
            }));
        }
        StreamId::new(format!("{}-{aggregate_id}", A::TYPE)).map_err(unknown)
    }

    /// How many of `n` new events, after `current`, a cqrs-es snapshot folds in (cqrs-es'
    /// `SourceOfTruth::commit_snapshot_with_addl_events`).
    fn snapshot_covers(&self, current: usize, n: usize) -> usize {
        match self.snapshot_size {
            None => n,
            Some(size) => {
                let next_at = size - (current % size);
                if n < next_at {
                    0
                } else {
                    let after = n - next_at;
                    next_at + after - (after % size)
                }
            }
        }
    }
}

impl PersistedEventRepository for CqrsRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let stream = Self::stream_id::<A>(aggregate_id)?;
        let from = u64::try_from(last_sequence)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let events = self
            .store
            .read_stream(&stream, StreamRange::from(from))
            .await
            .map_err(persistence)?;
        Ok(events
            .into_iter()
            .map(|e| serialized::<A>(aggregate_id, e))
            .collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let stream = Self::stream_id::<A>(aggregate_id)?;
        let snapshot = self
            .store
            .load_snapshot(&stream)
            .await
            .map_err(persistence)?;
        Ok(snapshot.map(|s| SerializedSnapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: s.state,
            current_sequence: usize::try_from(s.version).unwrap_or(usize::MAX),
            current_snapshot: usize::try_from(s.sequence).unwrap_or(usize::MAX),
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            if let Some((aggregate_id, state, sequence)) = snapshot_update {
                // AggregateStore with nothing new: keep the state at the stream's version.
                let stream = Self::stream_id::<A>(&aggregate_id)?;
                let version = self
                    .store
                    .stream_version(&stream)
                    .await
                    .map_err(persistence)?
                    .unwrap_or(0);
                return self.save(&stream, version, state, sequence).await;
            }
            return Ok(());
        };
        let stream = Self::stream_id::<A>(&first.aggregate_id)?;
        let current = first.sequence.saturating_sub(1);
        let expected = match current {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(u64::try_from(v).unwrap_or(u64::MAX)),
        };
        let new_events = events
            .iter()
            .map(|e| {
                let schema_version = e.event_version.parse::<u32>().map_err(|_| {
                    PersistenceError::DeserializationError(
                        format!(
                            "event_version {:?} of {} must be an integer schema version",
                            e.event_version, e.event_type
                        )
                        .into(),
                    )
                })?;
                Ok(NewEvent::new(
                    e.event_type.clone(),
                    schema_version,
                    e.payload.clone(),
                ))
            })
            .collect::<Result<Vec<_>, PersistenceError>>()?;
        let outcome = self
            .store
            .append(
                &stream,
                expected,
                new_events,
                command_metadata(&first.metadata),
            )
            .await
            .map_err(persistence)?;
        if let Some((_, state, sequence)) = snapshot_update
            && !outcome.duplicate
        {
            let covered = self.snapshot_covers(current, events.len());
            let version = u64::try_from(current + covered).unwrap_or(u64::MAX);
            // The events are committed; a snapshot is only a cache. Failing the command now
            // would make its caller retry a command that already took effect.
            if let Err(error) = self.save(&stream, version, state, sequence).await {
                tracing::warn!(stream = %stream, %error, "snapshot not saved");
            }
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        let (mut feed, stream) = ReplayStream::new(events.len().max(1));
        for event in events {
            feed.push(Ok(event)).await?;
        }
        Ok(stream)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(REPLAY_PAGE);
        let store = self.store.clone();
        let prefix = format!("{}-", A::TYPE);
        tokio::spawn(async move {
            let mut after = Checkpoint::START;
            loop {
                let page = match store.read_all(after, REPLAY_PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = feed.push(Err(persistence(e))).await;
                        return;
                    }
                };
                let Some(last) = page.events.last() else {
                    if page.held {
                        tokio::time::sleep(HELD_BACKOFF.0).await;
                        continue;
                    }
                    return;
                };
                after = last.checkpoint();
                for event in page.events {
                    if let Some(id) = event.stream_id.strip_prefix(&prefix) {
                        let id = id.to_owned();
                        if feed.push(Ok(serialized::<A>(&id, event))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(stream)
    }
}

impl CqrsRepository {
    async fn save(
        &self,
        stream: &StreamId,
        version: u64,
        state: Value,
        sequence: usize,
    ) -> Result<(), PersistenceError> {
        let snapshot = Snapshot {
            version,
            state,
            sequence: u64::try_from(sequence).unwrap_or(u64::MAX),
        };
        self.store
            .save_snapshot(stream, snapshot)
            .await
            .map_err(persistence)
    }
}

/// Known metadata keys go to their columns; the rest is kept as extra metadata.
fn command_metadata(metadata: &Value) -> CommandMetadata {
    let mut extra: BTreeMap<String, String> = match metadata {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    };
    CommandMetadata {
        command_id: extra.remove("command_id"),
        correlation_id: extra.remove("correlation_id"),
        causation_id: extra.remove("causation_id"),
        actor: extra.remove("actor"),
        organisation: extra.remove("organisation"),
        extra,
    }
}

fn serialized<A: Aggregate>(aggregate_id: &str, event: RecordedEvent) -> SerializedEvent {
    let command = event.metadata.command;
    let mut metadata: HashMap<String, String> = command.extra.into_iter().collect();
    let named = [
        ("command_id", command.command_id),
        ("correlation_id", command.correlation_id),
        ("causation_id", command.causation_id),
        ("actor", command.actor),
        ("organisation", command.organisation),
    ];
    for (key, value) in named {
        if let Some(value) = value {
            metadata.insert(key.into(), value);
        }
    }
    metadata.insert("event_id".into(), event.metadata.event_id.to_string());
    metadata.insert(
        "recorded_at".into(),
        event.metadata.recorded_at.to_rfc3339(),
    );
    metadata.insert("position".into(), event.position.to_string());
    SerializedEvent {
        aggregate_id: aggregate_id.to_owned(),
        sequence: usize::try_from(event.version).unwrap_or(usize::MAX),
        aggregate_type: A::TYPE.to_owned(),
        event_type: event.event_type,
        event_version: event.schema_version.to_string(),
        payload: event.payload,
        metadata: serde_json::to_value(metadata).unwrap_or_default(),
    }
}

fn persistence(error: Error) -> PersistenceError {
    match error {
        Error::Conflict { .. } => PersistenceError::OptimisticLockError,
        e if e.is_unavailable() => PersistenceError::ConnectionError(Box::new(e)),
        Error::Corrupted { .. } => PersistenceError::DeserializationError(Box::new(error)),
        e => unknown(e),
    }
}

fn unknown(error: Error) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}
