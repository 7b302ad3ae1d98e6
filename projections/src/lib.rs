//! The projection runtime and the read models it keeps: checkpointed, rebuildable from the log.
//!
//! Read models live in the database that holds the log ([`ViewDb`], opened on the event store's
//! URL), so each batch of a projector's changes commits in one transaction with its checkpoint:
//! a crash never loses or double-applies an event. Each build of a view is a *generation* with
//! tables of its own, listed with its checkpoint in the registry `projection_generations`
//! ([`Generation`]); readers query plain-named database views that point at the serving
//! generation's tables. [`ProjectionRuntime`] keeps the serving generation of each [`Projector`]
//! up to date (following `EventStore::subscribe`, woken by commits) and builds a new generation
//! beside it when a rebuild is asked for or the version went up, switching reads over in one
//! transaction once it has caught up (ADR 0007). Each generation is run by the holder of its
//! lease only (an advisory lock on PostgreSQL, a locked file beside the database on SQLite, so
//! the service and `jobboard-replay` never both write one); the other instances serve reads, wait
//! for checkpoints through the database, and take over within a poll interval when the holder
//! dies.
//! [`rebuild`] runs a rebuild to its switch outside the service; [`report`] tells operators where
//! every projector is.
//!
//! Views: [`postings`] (GetPosting, ListPostings, the review queue, draft versions),
//! [`notifications`] (the notifications feed), [`access`] (access counts, R-POST-8), [`search`]
//! (keyword and condition search of postings: a tantivy index in a directory of its own, with its
//! checkpoint in each index commit and blue/green generations).
//!
//! ```no_run
//! # async fn demo(store: jobboard_eventstore::EventStore) -> jobboard_projections::Result<()> {
//! use std::{sync::Arc, time::Duration};
//! use jobboard_projections::{ProjectionRuntime, ViewDb, postings};
//! use tokio_util::sync::CancellationToken;
//!
//! let url = "sqlite://data/jobboard.db"; // the URL the store was opened with
//! let db = ViewDb::open(url).await?;
//! let shutdown = CancellationToken::new();
//! let runtime = ProjectionRuntime::spawn(
//!     db.clone(),
//!     store,
//!     vec![Arc::new(postings::PostingsProjector)],
//!     shutdown.clone(),
//! )
//! .await?;
//! let view = postings::PostingsView::new(db);
//! # let (outcome_checkpoint, id) = (Default::default(), uuid::Uuid::nil().into());
//! // After a command: wait until the view has its events, then read.
//! runtime
//!     .wait_for(postings::PROJECTOR, outcome_checkpoint, Duration::from_secs(5))
//!     .await?;
//! let posting = view.get(id).await?;
//! // On shutdown: every projector commits its batch, then stops.
//! shutdown.cancel();
//! runtime.stopped().await;
//! # Ok(()) }
//! ```
//!
//! **Invariants:** a generation's tables and its checkpoint change only together; readers see
//! the serving generation only, never a half-built one; every view can be rebuilt from the log
//! beside itself; this crate reads the log only through the event store's public API and writes
//! no table of the store.

pub mod access;
mod db;
mod error;
mod lease;
pub mod notifications;
pub mod postings;
mod rebuild;
mod registry;
mod runner;
mod runtime;
pub mod search;
mod status;

use std::sync::Arc;

pub use db::{Backend, Param, StoredCheckpoint, ViewColumn, ViewDb, ViewRow, ViewTx};
pub use error::{Error, Result};
pub use rebuild::{RebuildOutcome, RebuildProgress, rebuild};
pub use registry::{Current, Generation, GenerationState};
pub use runtime::{
    LocalRebuild, Prepared, Preparer, ProjectionRuntime, Projector, ProjectorStatus, Role,
    RuntimeOptions, instance_name,
};
pub use status::{
    GenerationReport, LIVE_LAG_EVENTS, LogCounter, ProjectionReport, ProjectionState, report,
};

/// Every SQL projector of the service, as the server runs them and `jobboard-replay rebuild`
/// knows them.
pub fn projectors() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(postings::PostingsProjector),
        Arc::new(notifications::NotificationsProjector),
        Arc::new(access::AccessCountsProjector),
    ]
}
