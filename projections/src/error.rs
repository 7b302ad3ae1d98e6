//! The projections' error type: every way opening, projecting, waiting or querying can fail.

use std::time::Duration;

use jobboard_eventstore::{Checkpoint, RecordedEvent};

/// What went wrong in the projection runtime or a view.
///
/// `Timeout`, `InvalidPageToken` and `UnknownProjector` are the caller's (the server maps them to
/// DEADLINE_EXCEEDED, INVALID_ARGUMENT and NOT_FOUND or INTERNAL); the rest are failures whose
/// details belong in the log, not in answers to clients: the database variants say only
/// "database error" and keep the driver's error as their source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL names no supported backend.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Two projectors with the same name were handed to the runtime.
    #[error("projector {0} was registered twice")]
    DuplicateProjector(&'static str),
    /// No projector of that name runs in this runtime.
    #[error("no projector named {0:?} is running")]
    UnknownProjector(String),
    /// The projector did not reach the checkpoint in time (read-your-writes gave up).
    #[error("projector {projector} did not reach {wanted} within {timeout:?}; it is at {reached}")]
    Timeout {
        projector: String,
        wanted: Checkpoint,
        reached: Checkpoint,
        timeout: Duration,
    },
    /// The runtime was shut down before the projector reached the checkpoint.
    #[error("the projection runtime has stopped")]
    Stopped,
    /// A page token that no list call of this view handed out.
    #[error("invalid page token")]
    InvalidPageToken,
    /// An event a projector handles does not decode into the domain's type; the projector stops
    /// at it (and retries) rather than skip it.
    #[error("event at position {position} cannot be decoded: {reason}")]
    Decode { position: u64, reason: String },
    /// A view row holds a value its reader cannot interpret (a bug, or a table edited by hand).
    #[error("a view row cannot be read: {0}")]
    Corrupted(String),
    /// The generation's checkpoint is not where this runner left it: another process advanced
    /// it. The batch was rolled back; the runner reloads it.
    #[error("the checkpoint of projector {projector} v{version} moved under it")]
    CheckpointMoved {
        projector: &'static str,
        version: u32,
    },
    /// A rebuild at the same version needs a projector that names its tables by generation
    /// (`Projector::tables`).
    #[error(
        "projector {0} does not name its tables by generation, so it cannot be rebuilt beside itself"
    )]
    NotRebuildable(&'static str),
    /// A newer version of the projector serves or is being built; this (older) code must not
    /// build over it.
    #[error("projector {projector} v{version} is superseded by v{newer} in this database")]
    Superseded {
        projector: &'static str,
        version: u32,
        newer: u32,
    },
    /// The rebuild was abandoned (a rebuild of a newer version replaced it) before it switched.
    #[error("the rebuild of projector {projector} (generation {generation}) was abandoned")]
    RebuildAbandoned {
        projector: &'static str,
        generation: u64,
    },
    /// A lease's lock file (SQLite) could not be opened or locked.
    #[error("lease file {path}")]
    LeaseFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading the event log failed.
    #[error("event log error")]
    Store(#[from] jobboard_eventstore::Error),
    /// The runtime's tables could not be migrated.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database failed or could not be reached.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// True when the database or the log could not be reached (worth answering UNAVAILABLE).
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
            Self::Store(e) => e.is_unavailable(),
            Self::Stopped => true,
            _ => false,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error and its sources, joined with ": ", for logs and operator status.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// An event's payload as `T`. A payload that does not decode stops the projector (retried,
/// visible in its status and logs) rather than being skipped, which would leave the view
/// silently wrong.
pub(crate) fn decode_payload<T: for<'de> serde::Deserialize<'de>>(
    event: &RecordedEvent,
) -> Result<T> {
    T::deserialize(&event.payload).map_err(|e| Error::Decode {
        position: event.position,
        reason: format!("{} payload: {e}", event.event_type),
    })
}
