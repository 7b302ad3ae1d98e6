//! Command handling: load from the log, decide, append; authorisation, retries, timers.
//!
//! The write side between the gRPC server and the event store. A command arrives with a
//! [`CommandContext`] (the authenticated [`Caller`], a client-chosen command id, an optional
//! expected version); [`PostingCommands::execute`] loads the posting from the log (snapshot, then
//! the events after it), authorises the caller, lets the domain's aggregate decide, and appends
//! the events with the command id in the same transaction, retrying a bounded number of times
//! when another writer got there first. A retried command id is answered by the store on append
//! with its first outcome; the app looks the id up only when the retry is refused or meets a
//! stale expected version.
//! [`Timers`] find deadlines in the log and fire them as ordinary commands (and issue the monthly
//! referral notices); [`ViewCounter`] rolls reported page views up per posting and day.
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
//! Why the app drives the aggregate itself rather than through cqrs-es' `CqrsFramework`:
//! `docs/adr/0006-commands-drive-the-aggregate.md`.

mod auth;
mod error;
mod postings;
mod recent;
mod service_events;
mod timers;
mod views;

pub use auth::{Caller, CommandContext, Role, UnknownRole};
pub use error::Error;
pub use postings::{
    APPEND_DURATION_SECONDS, COMMAND_DURATION_SECONDS, COMMANDS_TOTAL, CommandOptions,
    CommandOutcome, MAX_COMMAND_ID_CHARS, PostingCommands, command_id_violations, stream_of,
};
pub use timers::{TIMER_SUBJECT, TIMERS_PENDING, TimerOptions, Timers};
pub use views::{MAX_VIEWS_PER_CALL, VIEWS_SUBJECT, ViewCounter, ViewCounterOptions};
