//! Job-board domain: aggregates, commands, events and the rules of DOMAIN.md; no I/O.
//!
//! Aggregates are cqrs-es 0.5 [`Aggregate`](cqrs_es::Aggregate)s: they decide which events a
//! command records and rebuild their state from events, nothing more. Storage, transport,
//! authorisation and timers live in other crates; the only outside input is time, read through a
//! [`Clock`] that tests control.
//!
//! - [`posting`]: the job-posting aggregate (R-POST-1 to R-POST-7).
//! - [`notice`]: the monthly referral-period notice (R-POST-9).
//! - [`views`]: access counts, rolled up per posting and day (R-POST-8).
//! - [`time`]: the clock and business time (Asia/Tokyo).
//!
//! Rules are cited by their DOMAIN.md id where they are enforced (`// R-POST-4`) and in the test
//! that proves them, so `grep R-POST-4` finds both.

pub mod notice;
pub mod posting;
pub mod time;
pub mod views;

pub use posting::{
    Posting, PostingCommand, PostingError, PostingEvent, PostingServices, PostingStatus,
};
pub use time::{Clock, FixedClock, SystemClock};
