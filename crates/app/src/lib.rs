//! Command handling: load from the log, decide, append; authorisation, retries, timers.
//!
//! The write side between the gRPC server and the event store. A command arrives with a
//! [`CommandContext`] (the authenticated [`Caller`], a client-chosen command id, an optional
//! expected version); [`PostingCommands::execute`] answers a retried command id with its first
//! outcome, loads the posting from the log (snapshot, then the events after it), authorises the
//! caller, lets the domain's aggregate decide, and appends the events with the command id in the
//! same transaction, retrying a bounded number of times when another writer got there first.
//! [`Timers`] find deadlines in the log and fire them as ordinary commands.
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use jobboard_app::{PostingCommands, Timers};
//! use jobboard_domain::{Clock, SystemClock};
//! use jobboard_eventstore::{EventStore, StoreOptions};
//!
//! let store = EventStore::open("sqlite://data/jobboard.db", StoreOptions::default()).await?;
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let commands = PostingCommands::new(store.clone(), clock.clone());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(Timers::new(store, commands.clone(), clock).run(shutdown.clone()));
//! # Ok(()) }
//! ```
//!
//! # Decision: the app drives the aggregate itself, not cqrs-es' `CqrsFramework`
//!
//! *Context.* cqrs-es 0.5 gives us the `Aggregate` trait (`handle`, `apply`) and its
//! given/when/then tests, and `jobboard-eventstore` implements its repository (ADR 0005). But
//! `CqrsFramework::execute` returns only `Result<(), _>`: not the committed stream version nor the
//! global position, which every mutating gRPC call must return (DESIGN.md). It cannot check a
//! client's `expected_version` (it always appends at the version it loaded). It cannot answer a
//! retried command from its first outcome before deciding (a retried `SubmitForReview` would be
//! refused by the posting that has moved on). And with snapshots it applies committed events a
//! second time.
//!
//! *Decision.* The app calls `Aggregate::handle` and `Aggregate::apply` itself against
//! `EventStore`: `command_outcome` first (a retry answers the first outcome), then
//! `load_snapshot` + `read_stream`, authorisation, the expected-version check, `handle` with an
//! `EventSink`, and `append` at the exact loaded version with the command id in the metadata;
//! a conflict without a client expected version reloads and decides again (bounded, jittered);
//! a snapshot is saved after commits that cross a multiple of the interval. Streams stay
//! `{Aggregate::TYPE}-{id}` and events stay the cqrs-es `DomainEvent` names and versions, so the
//! cqrs-es repository and this loop read the same log.
//!
//! *Consequences.* Everything the gRPC contract promises (version, position, ABORTED on a stale
//! `expected_version`, idempotent retries) comes from one loop we own and test on both backends.
//! We give up cqrs-es' `Query` callbacks, which we did not want (read models are fed from the
//! log, ADR 0005). Snapshots are the serde JSON of the aggregate at a known version; one that no
//! longer decodes is ignored and the posting folded from its events.

mod auth;
mod error;
mod postings;
mod timers;

pub use auth::{Caller, CommandContext, Role, UnknownRole};
pub use error::Error;
pub use postings::{
    COMMAND_DURATION_SECONDS, COMMANDS_TOTAL, CommandOptions, CommandOutcome, MAX_COMMAND_ID_CHARS,
    PostingCommands, stream_of,
};
pub use timers::{TIMER_SUBJECT, TIMERS_PENDING, TimerOptions, Timers};
