//! The values that cross the store's API: stream ids, expected versions, new and recorded events,
//! checkpoints in the global order, and append outcomes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest stream id accepted.
pub const MAX_STREAM_ID_LEN: usize = 200;
/// Longest event type, command id, correlation id, causation id, actor or organisation accepted.
pub const MAX_NAME_LEN: usize = 200;

/// The id of one stream: `category-id`, e.g. `posting-0192c3…`.
///
/// Letters, digits and `-_.:@` only, at most [`MAX_STREAM_ID_LEN`] characters, so ids are safe in
/// logs, URLs and file names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Parses a stream id, rejecting empty, over-long or oddly spelled ones.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("must not be empty")
        } else if id.len() > MAX_STREAM_ID_LEN {
            Some("must be at most 200 characters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
        {
            Some("may hold only letters, digits and - _ . : @")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidStreamId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    /// The stream id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`: the kind of thing the stream is about.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(&self.0, |(c, _)| c)
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(id: String) -> Result<Self> {
        Self::new(id)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the appender believes the stream's version to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version (versions start at 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// The version the stream must be at, if any (`NoStream` is version 0).
    pub(crate) fn required(self) -> Option<u64> {
        match self {
            Self::Any => None,
            Self::NoStream => Some(0),
            Self::Exact(v) => Some(v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// One event to append. Personal fields are marked inside the payload (see [`crate::personal`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// An event with a fresh time-ordered id.
    pub fn new(
        event_type: impl Into<String>,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version,
            payload,
        }
    }
}

/// Who and what caused an append; copied onto every event it writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMetadata {
    /// Client-chosen id of the command; a second append with it returns the first outcome.
    pub command_id: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// The subject of the caller's credentials.
    pub actor: Option<String>,
    pub organisation: Option<String>,
    /// Anything else worth keeping with the events (string keys and values).
    pub extra: BTreeMap<String, String>,
}

impl CommandMetadata {
    /// Metadata carrying only a command id.
    pub fn command(command_id: impl Into<String>) -> Self {
        Self {
            command_id: Some(command_id.into()),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let named = [
            ("command_id", &self.command_id),
            ("correlation_id", &self.correlation_id),
            ("causation_id", &self.causation_id),
            ("actor", &self.actor),
            ("organisation", &self.organisation),
        ];
        for (field, value) in named {
            if let Some(v) = value
                && (v.is_empty() || v.len() > MAX_NAME_LEN)
            {
                return Err(Error::InvalidEvent {
                    index: 0,
                    reason: format!("metadata {field} must be 1 to {MAX_NAME_LEN} bytes"),
                });
            }
        }
        Ok(())
    }
}

/// The metadata of a recorded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub event_id: Uuid,
    pub command: CommandMetadata,
    /// When the store accepted the event (microsecond precision).
    pub recorded_at: DateTime<Utc>,
}

/// A point in the log's global order.
///
/// Events are ordered by `(tx, position)`: `tx` identifies the transaction that appended the event
/// and `position` is its unique global number. On PostgreSQL `tx` is the transaction id, which is
/// what makes reading gap-safe (see `docs/adr/0002-gap-safe-global-order.md`); on SQLite, where
/// commits are serial, it equals `position`. A reader resumes *after* a checkpoint.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    pub tx: u64,
    pub position: u64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Self = Self { tx: 0, position: 0 };
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tx, self.position)
    }
}

impl FromStr for Checkpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config(format!("checkpoint {s:?} is not of the form TX/POSITION"));
        let (tx, position) = s.split_once('/').ok_or_else(bad)?;
        Ok(Self {
            tx: tx.parse().map_err(|_| bad())?,
            position: position.parse().map_err(|_| bad())?,
        })
    }
}

/// An event as stored: decoded, decrypted where its key lives, upcast to the current schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: u64,
    pub tx: u64,
    pub stream_id: String,
    /// 1 for the first event of a stream.
    pub version: u64,
    pub event_type: String,
    /// The schema version after upcasting (what `payload` now conforms to).
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    /// SHA-256 over the event's content and the previous event's hash in its stream.
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// Where a reader that has handled this event resumes.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx: self.tx,
            position: self.position,
        }
    }
}

/// A page of the global log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogPage {
    /// The events, in global order.
    pub events: Vec<RecordedEvent>,
    /// Committed events exist past the checkpoint that cannot be read yet: a transaction that
    /// sorts before them is still open (PostgreSQL only). Read again shortly.
    pub held: bool,
}

/// What an append committed (or, for a retried command id, what its first attempt committed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    pub stream_id: String,
    /// Version of the first event written.
    pub first_version: u64,
    /// The stream's version after the append (its last event's version).
    pub stream_version: u64,
    /// Global positions of the events, in order.
    pub positions: Vec<u64>,
    /// Checkpoint of the last event: a reader past it has seen the whole append.
    pub checkpoint: Checkpoint,
    /// True when the command id had already been committed and nothing new was written.
    pub duplicate: bool,
}

/// Which part of a stream to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamRange {
    /// First version to return (versions start at 1; 0 reads from the start too).
    pub from_version: u64,
    /// Last version to return, inclusive.
    pub to_version: Option<u64>,
    /// Only the events recorded at or before this time, as the stream stood then.
    pub as_of: Option<DateTime<Utc>>,
}

impl StreamRange {
    /// The whole stream.
    pub fn all() -> Self {
        Self::default()
    }

    /// From a version (inclusive) to the end.
    pub fn from(version: u64) -> Self {
        Self {
            from_version: version,
            ..Self::default()
        }
    }

    /// The stream as it stood at a point in time.
    pub fn as_of(at: DateTime<Utc>) -> Self {
        Self {
            as_of: Some(at),
            ..Self::default()
        }
    }
}

/// A stored snapshot of a stream's folded state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The version of the last event folded into `state`.
    pub version: u64,
    pub state: serde_json::Value,
    /// A caller-defined counter (cqrs-es counts its snapshots).
    pub sequence: u64,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::hash::to_hex(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        crate::hash::from_hex(&text).ok_or_else(|| D::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_checked() {
        assert!(StreamId::new("posting-0192").is_ok());
        assert!(StreamId::new("").is_err());
        assert!(StreamId::new("has space").is_err());
        assert!(StreamId::new("x".repeat(201)).is_err());
        assert_eq!(StreamId::new("posting-a-b").unwrap().category(), "posting");
    }

    #[test]
    fn checkpoints_order_by_tx_then_position() {
        let a = Checkpoint { tx: 5, position: 9 };
        let b = Checkpoint { tx: 6, position: 2 };
        assert!(a < b);
        assert_eq!("5/9".parse::<Checkpoint>().unwrap(), a);
        assert!("5".parse::<Checkpoint>().is_err());
    }
}
