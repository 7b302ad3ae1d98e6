//! The projection runtime and the read models it keeps: checkpointed, rebuildable from the log.
//!
//! Read models live in the database that holds the log ([`ViewDb`], opened on the event store's
//! URL), so each batch of a projector's changes commits in one transaction with its checkpoint
//! (`projection_checkpoints`, keyed by projector name and version): a crash never loses or
//! double-applies an event. [`ProjectionRuntime`] runs one task per [`Projector`], following the
//! log through `EventStore::subscribe` (woken by commits, no polling) from the committed
//! checkpoint, and lets queries wait for a checkpoint (read-your-writes).
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
//! **Invariants:** a view table and its checkpoint change only together; a view can be dropped
//! (with its checkpoint row) and rebuilt from the log; this crate reads the log only through the
//! event store's public API and writes no table of the store.

pub mod access;
mod db;
mod error;
pub mod notifications;
pub mod postings;
mod runtime;
pub mod search;

pub use db::{Backend, Param, StoredCheckpoint, ViewColumn, ViewDb, ViewRow, ViewTx};
pub use error::{Error, Result};
pub use runtime::{ProjectionRuntime, Projector, ProjectorStatus, RuntimeOptions};
