//! What can go wrong inside the search index, and how it reaches callers as the crate's
//! [`Error`].
//!
//! The crate's error has no variant for an index on disk, so these failures travel as
//! [`Error::Corrupted`] with the whole chain in the message: like a bad view row, they are the
//! operator's to look into and the caller sees only an internal error.

use crate::error::{Error, chain};

/// A failure of the index files, the index library or a stored posting state.
#[derive(Debug, thiserror::Error)]
pub(super) enum IndexError {
    /// tantivy failed (I/O, a lock, a corrupt segment, …).
    #[error("search index error")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory or its generation pointer could not be read or written.
    #[error("search index directory error")]
    Io(#[from] std::io::Error),
    /// A stored posting state does not decode (the domain's `Posting` changed shape without
    /// keeping its old form readable; a rebuild re-reads the log).
    #[error("stored posting state cannot be read")]
    State(#[source] serde_json::Error),
    /// The index's commit payload is not one this version wrote.
    #[error("search index commit payload cannot be read: {0}")]
    Payload(String),
}

impl From<IndexError> for Error {
    fn from(error: IndexError) -> Self {
        Error::Corrupted(chain(&error))
    }
}
