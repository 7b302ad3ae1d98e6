//! The postings view: one row per posting with its current state, backing GetPosting and
//! ListPostings.
//!
//! [`PostingsProjector`] (`postings` v3) keeps the table `postings` from the posting events,
//! and `posting_drafts` with every saved draft version (R-POST-2), one pair per generation
//! (`postings_v3_g1`, …); [`PostingsView`] reads the plain names, database views of the serving
//! generation's tables. The row is what the posting aggregate would fold to, plus the stream
//! version and the times the log recorded, so queries never load a stream.

mod projector;
mod view;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_domain::posting::{
    Language, ModificationStatus, OrganisationId, PostingContent, PostingId, STREAM_PREFIX,
    posting_of_stream,
};
use jobboard_domain::{PostingEvent, PostingStatus};
use jobboard_eventstore::RecordedEvent;

pub use self::projector::PostingsProjector;
pub use self::view::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PostingPage, PostingsView};
use crate::error::{Error, Result, decode_payload};

/// The projector's name, for `ProjectionRuntime::wait_for`.
pub const PROJECTOR: &str = "postings";
/// The version of the view's shape; it names the tables. 3: content columns are `json` (kept as
/// written) rather than `jsonb` (parsed into a tree on every write, printed back on every read).
pub const VERSION: u32 = 3;
/// The postings, as readers name them: a view of the serving generation's table.
macro_rules! table {
    () => {
        "postings"
    };
}
pub(crate) use table;
/// The saved draft versions, as readers name them.
macro_rules! drafts_table {
    () => {
        "posting_drafts"
    };
}
pub(crate) use drafts_table;

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
    /// The past posting it was created from (R-POST-7).
    pub reused_from: Option<PostingId>,
    /// When it expires (or expired) under its current content (R-POST-7).
    pub expires_at: Option<DateTime<Utc>>,
    /// The last instant a modification may be requested (R-POST-5).
    pub modifiable_until: Option<DateTime<Utc>>,
    /// Whether modifications are closed for good (R-POST-5).
    pub modifications_locked: bool,
    /// When it left for good (discarded, withdrawn, stopped, cancelled, expired).
    pub ended_at: Option<DateTime<Utc>>,
    /// Since when a registration or modification request waits for the operator (R-POST-3);
    /// the review queue's order.
    pub review_requested_at: Option<DateTime<Utc>>,
    /// The modification request beside the posting, if any (R-POST-5).
    pub modification: Option<ModificationRow>,
}

/// A modification request as the view holds it (R-POST-5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModificationRow {
    /// Where it is in its review.
    pub status: ModificationStatus,
    /// The proposed content; the posting's `content` stays public until it takes effect.
    pub content: PostingContent,
    /// When the employer asked.
    pub requested_at: DateTime<Utc>,
    /// The operator's reasons, once returned.
    pub return_reasons: Vec<String>,
    /// When it takes effect, once approved.
    pub effective_at: Option<DateTime<Utc>>,
}

/// One saved draft version (R-POST-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftVersionRow {
    /// Its number: 1 at creation, one more per save.
    pub draft_version: u32,
    /// The whole content saved.
    pub content: PostingContent,
    /// When it was saved.
    pub saved_at: DateTime<Utc>,
}

/// Whose posting event `event` is, for the views that fold posting events (this one and search):
/// `None` for an event of another stream or of a type this version does not know (added later:
/// skipped, the checkpoint moves on); `Some(None)` for a stream that merely shares the
/// `posting-` prefix without naming a posting (the command layer writes postings only under
/// `posting-{uuid}`: skipping it keeps one foreign stream from stalling a view);
/// `Some(Some(id))` for posting `id`'s event.
pub(crate) fn posting_of(event: &RecordedEvent) -> Option<Option<PostingId>> {
    event.stream_id.strip_prefix(STREAM_PREFIX)?;
    if !PostingEvent::TYPES.contains(&event.event_type.as_str()) {
        return None;
    }
    Some(posting_of_stream(&event.stream_id))
}

/// The domain event in `event`'s payload (the flat JSON with a `type` field the domain
/// serialises), which must be of the event's recorded type. One that does not decode stops the
/// view (see [`decode_payload`]).
pub(crate) fn decode_event(event: &RecordedEvent) -> Result<PostingEvent> {
    let decoded: PostingEvent = decode_payload(event)?;
    if decoded.type_name() != event.event_type {
        return Err(Error::Decode {
            position: event.position,
            reason: format!(
                "event type {} carries a {} payload",
                event.event_type,
                decoded.type_name()
            ),
        });
    }
    Ok(decoded)
}
