//! The append-only event log of jobboard, on SQLite (embedded) and PostgreSQL (shared).
//!
//! One contract, two backends chosen by URL. The store knows no aggregate: it keeps typed
//! envelopes (stream, version, type, schema version, JSON payload, metadata) and guarantees
//!
//! - optimistic concurrency per stream and command-id idempotency, both decided inside the
//!   transaction that writes the events;
//! - a gap-safe global order: a reader never skips an event that commits after it read past its
//!   place (see `docs/adr/0002-gap-safe-global-order.md`);
//! - group commit: concurrent appends share a transaction, and a conflict in one of them never
//!   fails the others;
//! - a tamper-evident hash chain per stream, checked by [`EventStore::verify`];
//! - crypto-shredding of personal data ([`personal`]), upcasting on read ([`Upcasters`]) and
//!   snapshots; and an implementation of cqrs-es' `PersistedEventRepository` ([`CqrsRepository`]).
//!
//! ```no_run
//! # async fn demo() -> jobboard_eventstore::Result<()> {
//! use jobboard_eventstore::*;
//! let store = EventStore::open("sqlite://data/jobboard.db", StoreOptions::default()).await?;
//! let stream = StreamId::new("posting-42")?;
//! let event = NewEvent::new("PostingDrafted", 1, serde_json::json!({"title": "Researcher"}));
//! let outcome = store
//!     .append(&stream, ExpectedVersion::NoStream, vec![event], CommandMetadata::command("c-1"))
//!     .await?;
//! assert_eq!(outcome.stream_version, 1);
//! # Ok(()) }
//! ```

mod commit;
mod cqrs;
mod error;
mod hash;
pub mod personal;
mod postgres;
mod sqlite;
mod store;
mod subscription;
mod types;
mod upcast;
mod verify;

pub use cqrs::CqrsRepository;
pub use error::{Error, Result};
pub use store::{Clock, EventStore, StoreOptions};
pub use types::{
    AppendOutcome, Checkpoint, CommandMetadata, EventMetadata, ExpectedVersion, LogPage,
    MAX_NAME_LEN, MAX_STREAM_ID_LEN, NewEvent, RecordedEvent, Snapshot, StreamId, StreamRange,
};
pub use upcast::{FnUpcaster, Upcaster, Upcasters};
pub use verify::{BrokenLink, VerifyReport};

/// An append whose transaction is still open (see [`EventStore::hold_append`]).
#[doc(hidden)]
pub struct HeldAppend {
    outcome: AppendOutcome,
    transaction: HeldTransaction,
    committed: Box<dyn Fn() + Send + Sync>,
}

pub(crate) enum HeldTransaction {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl HeldAppend {
    pub(crate) fn new(
        outcome: AppendOutcome,
        transaction: HeldTransaction,
        committed: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            outcome,
            transaction,
            committed,
        }
    }

    /// What the append will have written once committed.
    pub fn outcome(&self) -> &AppendOutcome {
        &self.outcome
    }

    /// Commits the held transaction.
    pub async fn commit(self) -> Result<AppendOutcome> {
        let Self {
            outcome,
            transaction,
            committed,
        } = self;
        transaction.finish(true).await?;
        committed();
        Ok(outcome)
    }

    /// Rolls the held transaction back: none of its events ever existed.
    pub async fn rollback(self) -> Result<()> {
        self.transaction.finish(false).await
    }
}

impl HeldTransaction {
    async fn finish(self, commit: bool) -> Result<()> {
        match self {
            Self::Postgres(tx) => postgres::finish_held(tx, commit).await,
            Self::Sqlite(tx) => sqlite::finish_held(tx, commit).await,
        }
    }
}

impl std::fmt::Debug for HeldAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldAppend")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}
