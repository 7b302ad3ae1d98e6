//! The postings view: one row per posting with its current state, backing GetPosting and
//! ListPostings.
//!
//! [`PostingsProjector`] (`postings` v1) keeps the table `postings_v1` from the posting events;
//! [`PostingsView`] reads it. The row is what the posting aggregate would fold to, plus the
//! stream version and the times the log recorded, so queries never load a stream.

mod projector;
mod view;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{Language, OrganisationId, PostingContent, PostingId};

pub use self::projector::PostingsProjector;
pub use self::view::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PostingPage, PostingsView};

/// The projector's name, for `ProjectionRuntime::wait_for`.
pub const PROJECTOR: &str = "postings";
/// The version of the view's shape; it names the table.
pub const VERSION: u32 = 1;
/// The table the current version keeps.
macro_rules! table {
    () => {
        "postings_v1"
    };
}
pub(crate) use table;

/// A posting as the view holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingRow {
    /// The posting's id.
    pub posting_id: PostingId,
    /// The employer that owns it.
    pub organisation_id: OrganisationId,
    /// Where it is in its life.
    pub status: PostingStatus,
    /// Its language.
    pub language: Language,
    /// The latest saved or submitted content.
    pub content: PostingContent,
    /// The latest draft version.
    pub draft_version: u32,
    /// The version of the posting's stream this row reflects (its last event's).
    pub version: u64,
    /// The publish date chosen at approval.
    pub publish_date: Option<NaiveDate>,
    /// When it goes (or went) public, set at approval.
    pub publishes_at: Option<DateTime<Utc>>,
    /// When it was published.
    pub published_at: Option<DateTime<Utc>>,
    /// When a requested withdrawal takes (or took) effect.
    pub withdrawal_effective_at: Option<DateTime<Utc>>,
    /// When it was withdrawn.
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// The reasons of the latest return, empty if it was never returned. Kept after the posting
    /// moves on, so they describe the current state only while `status` is `Returned`.
    pub return_reasons: Vec<String>,
    /// When the log recorded its first event.
    pub created_at: DateTime<Utc>,
    /// When the log recorded its last event.
    pub updated_at: DateTime<Utc>,
}
