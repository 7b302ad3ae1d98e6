//! The job-posting aggregate: drafting, review, scheduled publication, modification, withdrawal,
//! stopping, cancelling, expiry and reuse (R-POST-1 to R-POST-7).
//!
//! ```text
//! from                         command               to                   issued by
//! (none)                       CreateDraft           Draft                employer (reuse: R-POST-7)
//! Draft, Returned              SaveDraft             (unchanged)          employer   draft_version + 1
//! Draft, Returned              DiscardDraft          Discarded            employer
//! Draft, Returned              SubmitForReview       PendingReview        employer
//! PendingReview                ReturnPosting         Returned             operator
//! PendingReview                ApprovePosting        Approved             operator
//! Approved                     PublishPosting        Published            timer, when due
//! Published                    RequestWithdrawal     WithdrawalPending    employer
//! WithdrawalPending            CompleteWithdrawal    Withdrawn            timer, when due
//! Approved, Published, Expired RequestModification   (modification pending review)   employer
//! (modification pending)       ReturnModification    (modification returned)         operator
//! (modification pending)       ApproveModification   (modification approved)         operator
//! (modification approved)      PublishModification   (content replaced; Expired may reopen) timer
//! (modification returned)      DiscardModification   (no modification)               employer
//! Published, WithdrawalPending ExpirePosting         Expired              timer, at the end
//! (modifiable_until passed)    LockModifications     (no more modifications)         timer
//! Published                    StopRecruiting        RecruitmentStopped   employer
//! Approved, Published, WithdrawalPending, RecruitmentStopped
//!                              CancelPosting         Cancelled            employer
//! ```
//!
//! A modification is a request beside the posting: the public content stays as it was until the
//! change takes effect (R-POST-5). Deadlines — publication, withdrawal, a change's publication,
//! expiry, the end of modifications — are carried by the events that set them
//! ([`due_timers`]), so the timer layer schedules them from the log.
//!
//! A command on a posting that does not exist is [`PostingError::NotFound`], `CreateDraft` on one
//! that does is [`PostingError::AlreadyExists`], bad content or reasons are
//! [`PostingError::InvalidContent`]. Any other refusal names the rule that refuses it
//! ([`PostingError::Rule`]), so clients get a FAILED_PRECONDITION reason to look up in DOMAIN.md:
//!
//! | command                  | refused when                                      | rule     |
//! |--------------------------|---------------------------------------------------|----------|
//! | `SaveDraft`              | pending review                                    | R-POST-3 |
//! |                          | approved or later (edits are modifications)       | R-POST-5 |
//! |                          | withdrawn, stopped, cancelled, expired, discarded | R-POST-2 |
//! | `DiscardDraft`           | pending review                                    | R-POST-3 |
//! |                          | anything else but draft or returned               | R-POST-2 |
//! | `SubmitForReview`        | pending review, gone for good                     | R-POST-3 |
//! |                          | approved or later (edits are modifications)       | R-POST-5 |
//! | `ReturnPosting`          | not pending review                                | R-POST-3 |
//! | `ApprovePosting`         | not pending review                                | R-POST-3 |
//! |                          | publish date before today (Tokyo) or after the end| R-POST-4 |
//! | `PublishPosting`         | not approved, already published, not yet due      | R-POST-4 |
//! | `RequestWithdrawal`      | a request pending review                          | R-POST-3 |
//! |                          | not published, already requested                  | R-POST-6 |
//! | `CompleteWithdrawal`     | no withdrawal pending, not yet due                | R-POST-6 |
//! | `RequestModification`    | a modification or the posting pending review      | R-POST-3 |
//! |                          | not approved/published/expired, an approved change|          |
//! |                          | waiting, two weeks after the recruitment end      | R-POST-5 |
//! |                          | withdrawal pending                                | R-POST-6 |
//! | `ReturnModification`, `ApproveModification` | no modification pending review | R-POST-5 |
//! |                          | publish date before today (Tokyo)                 | R-POST-4 |
//! | `PublishModification`    | no approved modification, not yet due             | R-POST-5 |
//! | `DiscardModification`    | no returned modification                          | R-POST-5 |
//! | `LockModifications`      | already locked, not yet due                       | R-POST-5 |
//! | `StopRecruiting`, `CancelPosting` | a request pending review                 | R-POST-3 |
//! | `CancelPosting`          | draft or returned (discarded, not cancelled)      | R-POST-2 |
//! | `StopRecruiting`, `CancelPosting` | not in a state it applies to             | R-POST-7 |
//! | `ExpirePosting`          | not public, not yet due                           | R-POST-7 |

/// The prefix of a posting's stream: `{Posting::TYPE}-`, then the posting id.
pub const STREAM_PREFIX: &str = "posting-";

/// The posting a stream names, if it is a posting stream (`posting-{uuid}`).
pub fn posting_of_stream(stream_id: &str) -> Option<PostingId> {
    stream_id.strip_prefix(STREAM_PREFIX)?.parse().ok()
}

mod commands;
mod content;
mod decide;
mod error;
mod events;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

pub use self::commands::{
    ApproveModification, ApprovePosting, CancelPosting, CompleteWithdrawal, CreateDraft,
    DiscardDraft, DiscardModification, ExpirePosting, LockModifications, PostingCommand,
    PublishModification, PublishPosting, RequestModification, RequestWithdrawal,
    ReturnModification, ReturnPosting, SaveDraft, StopRecruiting, SubmitForReview,
};
pub use self::content::{
    AdditionalItem, EmploymentType, FieldViolation, InstitutionType, Language, OrganisationId,
    PostingContent, PostingId, RecruitmentPeriod, limits,
};
pub use self::error::PostingError;
pub use self::events::{
    DueTimer, PostingEvent, TimerKind, change_reopens, due_timers, reads_as_version, settled_timers,
};
use crate::time::Clock;

/// Hour (Asia/Tokyo) at which same-day publications (R-POST-4) and withdrawals (R-POST-6) take
/// effect.
pub(crate) const EVENING_HOUR: u32 = 22;

/// What the posting aggregate needs from outside: only the clock, so decisions are repeatable.
#[derive(Clone, Debug)]
pub struct PostingServices {
    /// The only source of "now" for the aggregate's decisions.
    pub clock: Arc<dyn Clock>,
}

impl PostingServices {
    /// Services reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// Where a posting is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostingStatus {
    /// Being written by the employer; not yet submitted.
    Draft,
    /// Submitted; waiting for the operator, who alone can act on it now (R-POST-3).
    PendingReview,
    /// Sent back by the operator with reasons; editable and resubmittable like a draft.
    Returned,
    /// Approved and scheduled to go public at [`Posting::publishes_at`] (R-POST-4).
    Approved,
    /// Public.
    Published,
    /// Still public; leaves public search at [`Posting::withdrawal_effective_at`] (R-POST-6).
    WithdrawalPending,
    /// Off public search for good.
    Withdrawn,
    /// Thrown away before review; nothing can be done with it any more.
    Discarded,
    /// Recruiting stopped by the employer (募集停止, R-POST-7); off public search.
    RecruitmentStopped,
    /// Cancelled by the employer (求人取消, R-POST-7); off public search for good.
    Cancelled,
    /// Its recruitment period ended (R-POST-7); off public search. A modification that moves
    /// the end date later may still reopen it within two weeks (R-POST-5).
    Expired,
}

impl PostingStatus {
    /// The stable code, as in the JSON form: `pending_review`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::PendingReview => "pending_review",
            Self::Returned => "returned",
            Self::Approved => "approved",
            Self::Published => "published",
            Self::WithdrawalPending => "withdrawal_pending",
            Self::Withdrawn => "withdrawn",
            Self::Discarded => "discarded",
            Self::RecruitmentStopped => "recruitment_stopped",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Whether a posting in this status is on public search (R-SRCH-5).
    pub const fn is_public(self) -> bool {
        matches!(self, Self::Published | Self::WithdrawalPending)
    }

    /// The status in the words of an error message: "the posting is {phrase}".
    const fn phrase(self) -> &'static str {
        match self {
            Self::Draft => "a draft",
            Self::PendingReview => "pending review",
            Self::Returned => "returned",
            Self::Approved => "approved",
            Self::Published => "published",
            Self::WithdrawalPending => "published with a withdrawal pending",
            Self::Withdrawn => "withdrawn",
            Self::Discarded => "discarded",
            Self::RecruitmentStopped => "no longer recruiting",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Every status.
    pub const ALL: [Self; 11] = [
        Self::Draft,
        Self::PendingReview,
        Self::Returned,
        Self::Approved,
        Self::Published,
        Self::WithdrawalPending,
        Self::Withdrawn,
        Self::Discarded,
        Self::RecruitmentStopped,
        Self::Cancelled,
        Self::Expired,
    ];
}

/// A job posting, rebuilt from its events. The default value is a posting that does not exist
/// yet, which only [`CreateDraft`] can start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    state: Option<PostingState>,
}

/// The state of a posting that exists.
///
/// Every event sets fields to values it carries, never increments them: cqrs-es may apply an
/// event twice when it snapshots (ADR 0005), and applying an event twice must change nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PostingState {
    posting_id: PostingId,
    organisation_id: OrganisationId,
    language: Language,
    status: PostingStatus,
    content: PostingContent,
    draft_version: u32,
    publish_date: Option<NaiveDate>,
    publishes_at: Option<DateTime<Utc>>,
    published_at: Option<DateTime<Utc>>,
    withdrawal_effective_at: Option<DateTime<Utc>>,
    /// The posting this one reuses (R-POST-7).
    #[serde(default)]
    reused_from: Option<PostingId>,
    /// A proposed change, while one is under review, returned or waiting to take effect.
    #[serde(default)]
    modification: Option<Modification>,
    /// When the posting expires under its current content (R-POST-7).
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    /// The last instant a modification may be requested (R-POST-5).
    #[serde(default)]
    modifiable_until: Option<DateTime<Utc>>,
    /// Set once the two weeks after the recruitment end have passed (R-POST-5).
    #[serde(default)]
    modifications_locked: bool,
}

/// A modification request (修正依頼, R-POST-5) beside the posting's current content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modification {
    /// The whole proposed content.
    pub content: PostingContent,
    /// Where the request is in its review.
    pub status: ModificationStatus,
    /// When the employer asked.
    pub requested_at: DateTime<Utc>,
    /// The operator's reasons, once returned.
    pub return_reasons: Vec<String>,
    /// When the change takes effect, once approved (R-POST-4's timing).
    pub effective_at: Option<DateTime<Utc>>,
}

/// Where a modification request is in its review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModificationStatus {
    /// Waiting for the operator; the employer cannot touch the posting meanwhile (R-POST-3).
    PendingReview,
    /// Sent back with reasons; the employer may send a new proposal or discard it.
    Returned,
    /// Approved; the change takes effect at `effective_at`.
    Approved,
}

impl ModificationStatus {
    /// The stable code, as in the JSON form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PendingReview => "pending_review",
            Self::Returned => "returned",
            Self::Approved => "approved",
        }
    }
}

impl Posting {
    /// Whether the posting was created (a discarded draft still exists).
    pub fn exists(&self) -> bool {
        self.state.is_some()
    }

    /// The posting's id, once created.
    pub fn posting_id(&self) -> Option<PostingId> {
        self.state.as_ref().map(|s| s.posting_id)
    }

    /// The employer that owns the posting, once created; the application layer authorises
    /// employer commands against it.
    pub fn organisation_id(&self) -> Option<OrganisationId> {
        self.state.as_ref().map(|s| s.organisation_id)
    }

    /// The posting's language, once created.
    pub fn language(&self) -> Option<Language> {
        self.state.as_ref().map(|s| s.language)
    }

    /// Where the posting is in its life, once created.
    pub fn status(&self) -> Option<PostingStatus> {
        self.state.as_ref().map(|s| s.status)
    }

    /// The latest saved (or submitted) content, once created.
    pub fn content(&self) -> Option<&PostingContent> {
        self.state.as_ref().map(|s| &s.content)
    }

    /// The content the public sees, while the posting is on public search (published, and not
    /// yet withdrawn, stopped, cancelled or expired; R-SRCH-5); `None` otherwise. Search indexes
    /// this, not [`content`](Self::content), which may hold an edit still under review.
    pub fn public_content(&self) -> Option<&PostingContent> {
        self.state
            .as_ref()
            .filter(|s| s.status.is_public())
            .map(|s| &s.content)
    }

    /// The latest draft version (1 at creation, R-POST-2), once created.
    pub fn draft_version(&self) -> Option<u32> {
        self.state.as_ref().map(|s| s.draft_version)
    }

    /// The publish date chosen at approval (R-POST-4).
    pub fn publish_date(&self) -> Option<NaiveDate> {
        self.state.as_ref().and_then(|s| s.publish_date)
    }

    /// When the posting goes (or went) public, set at approval (R-POST-4).
    pub fn publishes_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.publishes_at)
    }

    /// When the posting was published (R-POST-4).
    pub fn published_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.published_at)
    }

    /// When a requested withdrawal takes (or took) effect (R-POST-6).
    pub fn withdrawal_effective_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.withdrawal_effective_at)
    }

    /// The past posting this one was created from (R-POST-7).
    pub fn reused_from(&self) -> Option<PostingId> {
        self.state.as_ref().and_then(|s| s.reused_from)
    }

    /// The modification request beside the posting, if any (R-POST-5).
    pub fn modification(&self) -> Option<&Modification> {
        self.state.as_ref().and_then(|s| s.modification.as_ref())
    }

    /// When the posting expires under its current content (R-POST-7).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|s| s.expires_at)
    }

    /// Whether modifications are closed for good (R-POST-5).
    pub fn modifications_locked(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.modifications_locked)
    }

    /// Whether a registration or modification request is waiting for the operator (R-POST-3).
    pub fn review_pending(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(PostingState::review_pending)
    }
}

impl Aggregate for Posting {
    /// Streams are `posting-{posting id}` (ADR 0005: the type may not contain `-`).
    const TYPE: &'static str = "posting";
    type Command = PostingCommand;
    type Event = PostingEvent;
    type Error = PostingError;
    type Services = PostingServices;

    async fn handle(
        &mut self,
        command: PostingCommand,
        services: &PostingServices,
        sink: &EventSink<Self>,
    ) -> Result<(), PostingError> {
        let event = self.decide(command, services.clock.now())?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PostingEvent) {
        match event {
            PostingEvent::PostingDrafted {
                posting_id,
                organisation_id,
                language,
                content,
                draft_version,
                reused_from,
            } => {
                self.state = Some(PostingState {
                    posting_id,
                    organisation_id,
                    language,
                    status: PostingStatus::Draft,
                    content,
                    draft_version,
                    publish_date: None,
                    publishes_at: None,
                    published_at: None,
                    withdrawal_effective_at: None,
                    reused_from,
                    modification: None,
                    expires_at: None,
                    modifiable_until: None,
                    modifications_locked: false,
                });
            }
            // A stream always starts with PostingDrafted (decide guarantees it and the store's
            // hash chain keeps it so); `apply` cannot fail, so anything before it is ignored.
            event => {
                if let Some(state) = &mut self.state {
                    state.apply(event);
                }
            }
        }
    }
}
