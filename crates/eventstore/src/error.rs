//! The event store's error type: every way an append, read or maintenance call can fail.

use crate::types::ExpectedVersion;

/// What went wrong in the event store.
///
/// Validation and conflict variants are the caller's to handle; they are raised before anything is
/// written. `Database` wraps the driver error, which callers should log but never show to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream is not at the version the append expected; nothing was written.
    #[error("stream {stream} is at version {actual}, append expected {expected}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// An append carried no events.
    #[error("an append must carry at least one event")]
    EmptyAppend,
    /// A stream id is empty, too long or has characters outside the allowed set.
    #[error("invalid stream id {id:?}: {reason}")]
    InvalidStreamId { id: String, reason: &'static str },
    /// An event's payload is larger than the configured limit.
    #[error("event {index} payload is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    /// An event or its metadata is malformed (empty type, over-long field, bad personal marker).
    #[error("invalid event {index}: {reason}")]
    InvalidEvent { index: usize, reason: String },
    /// A command id was first used for a different stream.
    #[error("command id {command_id:?} was already used for stream {first_stream}")]
    CommandIdReused {
        command_id: String,
        first_stream: String,
    },
    /// New personal data was offered for a data subject whose key was destroyed.
    #[error("personal data of subject {subject} was erased; no new data can be stored for it")]
    SubjectErased { subject: String },
    /// A stored row could not be decoded although its key exists: the log was altered or damaged.
    #[error("event at position {position} cannot be decoded: {reason}")]
    Corrupted { position: u64, reason: String },
    /// Appends to this stream kept racing with other transactions; nothing was written and the
    /// append may be retried.
    #[error("appends to stream {stream} kept racing with other writers; nothing was written")]
    Contended { stream: String },
    /// The database answered something the store's invariants rule out (a bug, or a database
    /// changed by hand).
    #[error("internal error: {0}")]
    Internal(String),
    /// The database URL names no supported backend, or an option is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be migrated.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database failed or could not be reached.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The store is shutting down and takes no more appends.
    #[error("the event store is closed")]
    Closed,
}

impl Error {
    /// True when the database could not be reached (worth answering UNAVAILABLE and retrying).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            ),
            Self::Closed | Self::Contended { .. } => true,
            _ => false,
        }
    }
}

/// Shorthand for results of the event store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
