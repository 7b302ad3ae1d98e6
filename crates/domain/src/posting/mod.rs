//! The job-posting aggregate: drafting, review, scheduled publication and withdrawal
//! (R-POST-1 to R-POST-4, R-POST-6).
//!
//! ```text
//! from                 command               to                   issued by
//! (none)               CreateDraft           Draft                employer
//! Draft, Returned      SaveDraft             (unchanged)          employer   draft_version + 1
//! Draft, Returned      DiscardDraft          Discarded            employer
//! Draft, Returned      SubmitForReview       PendingReview        employer
//! PendingReview        ReturnPosting         Returned             operator
//! PendingReview        ApprovePosting        Approved             operator
//! Approved             PublishPosting        Published            timer, when due
//! Published            RequestWithdrawal     WithdrawalPending    employer
//! WithdrawalPending    CompleteWithdrawal    Withdrawn            timer, when due
//! ```
//!
//! A command on a posting that does not exist is [`PostingError::NotFound`], `CreateDraft` on one
//! that does is [`PostingError::AlreadyExists`], bad content or reasons are
//! [`PostingError::InvalidContent`]. Any other refusal names the rule that refuses it
//! ([`PostingError::Rule`]), so clients get a FAILED_PRECONDITION reason to look up in DOMAIN.md:
//!
//! | command                  | refused when                                      | rule     |
//! |--------------------------|---------------------------------------------------|----------|
//! | `SaveDraft`              | pending review                                    | R-POST-3 |
//! |                          | approved, published, withdrawal pending           | R-POST-5 |
//! |                          | withdrawn, discarded                              | R-POST-2 |
//! | `DiscardDraft`           | pending review                                    | R-POST-3 |
//! |                          | anything else but draft or returned               | R-POST-2 |
//! | `SubmitForReview`        | pending review, withdrawn, discarded              | R-POST-3 |
//! |                          | approved, published, withdrawal pending           | R-POST-5 |
//! | `ReturnPosting`          | not pending review                                | R-POST-3 |
//! | `ApprovePosting`         | not pending review                                | R-POST-3 |
//! |                          | publish date before today (Tokyo)                 | R-POST-4 |
//! | `PublishPosting`         | not approved, already published, not yet due      | R-POST-4 |
//! | `RequestWithdrawal`      | not published, already requested                  | R-POST-6 |
//! | `CompleteWithdrawal`     | no withdrawal pending, not yet due                | R-POST-6 |
//!
//! R-POST-5 (modification requests) is not built yet; refusing edits after approval with its id
//! already tells the client where changes must go.

mod commands;
mod content;
mod error;
mod events;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

pub use self::commands::{
    ApprovePosting, CompleteWithdrawal, CreateDraft, DiscardDraft, PostingCommand, PublishPosting,
    RequestWithdrawal, ReturnPosting, SaveDraft, SubmitForReview,
};
pub use self::content::{
    AdditionalItem, EmploymentType, FieldViolation, InstitutionType, Language, OrganisationId,
    PostingContent, PostingId, RecruitmentPeriod, limits,
};
pub use self::error::PostingError;
pub use self::events::{DueTimer, PostingEvent, TimerKind, due_timer, settled_timer};
use crate::time::{BUSINESS_OFFSET, Clock, at_business_time, business_date};

/// Hour (Asia/Tokyo) at which same-day publications (R-POST-4) and withdrawals (R-POST-6) take
/// effect.
const EVENING_HOUR: u32 = 22;

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
        }
    }
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

    /// Decides what `command` does at `now`: the one event it records, or why it is refused.
    fn decide(
        &self,
        command: PostingCommand,
        now: DateTime<Utc>,
    ) -> Result<PostingEvent, PostingError> {
        use PostingCommand as C;
        match (&self.state, command) {
            (None, C::CreateDraft(create)) => create_draft(create),
            (Some(_), C::CreateDraft(_)) => Err(PostingError::AlreadyExists),
            (None, _) => Err(PostingError::NotFound),
            (Some(s), C::SaveDraft(SaveDraft { content })) => s.save_draft(content),
            (Some(s), C::DiscardDraft(DiscardDraft)) => s.discard_draft(),
            (Some(s), C::SubmitForReview(SubmitForReview)) => s.submit_for_review(),
            (Some(s), C::ReturnPosting(ReturnPosting { reasons })) => s.return_posting(reasons),
            (Some(s), C::ApprovePosting(ApprovePosting { publish_date })) => {
                s.approve(publish_date, now)
            }
            (Some(s), C::PublishPosting(PublishPosting)) => s.publish(now),
            (Some(s), C::RequestWithdrawal(RequestWithdrawal)) => s.request_withdrawal(now),
            (Some(s), C::CompleteWithdrawal(CompleteWithdrawal)) => s.complete_withdrawal(now),
        }
    }
}

fn create_draft(create: CreateDraft) -> Result<PostingEvent, PostingError> {
    let CreateDraft {
        posting_id,
        organisation_id,
        language,
        content,
    } = create;
    // R-POST-2: a draft needs only its name and title (and sane sizes).
    check(content.draft_violations())?;
    Ok(PostingEvent::PostingDrafted {
        posting_id,
        organisation_id,
        language,
        content,
        draft_version: 1,
    })
}

impl PostingState {
    fn save_draft(&self, content: PostingContent) -> Result<PostingEvent, PostingError> {
        match self.status {
            PostingStatus::Draft | PostingStatus::Returned => {}
            // R-POST-3: the employer cannot edit while the request is pending review.
            PostingStatus::PendingReview => {
                return Err(PostingError::rule(
                    "R-POST-3",
                    "cannot save a draft while the posting is pending review; only the operator \
                     can return or approve it",
                ));
            }
            PostingStatus::Approved
            | PostingStatus::Published
            | PostingStatus::WithdrawalPending => return Err(after_approval("save a draft of")),
            PostingStatus::Withdrawn | PostingStatus::Discarded => {
                return Err(PostingError::rule(
                    "R-POST-2",
                    format!(
                        "cannot save a draft: the posting is {}",
                        self.status.phrase()
                    ),
                ));
            }
        }
        // R-POST-2: every save is a new version; the log keeps them all.
        check(content.draft_violations())?;
        let draft_version = self.draft_version.checked_add(1).ok_or_else(|| {
            PostingError::rule("R-POST-2", "the posting has no draft versions left")
        })?;
        Ok(PostingEvent::DraftSaved {
            content,
            draft_version,
        })
    }

    fn discard_draft(&self) -> Result<PostingEvent, PostingError> {
        match self.status {
            PostingStatus::Draft | PostingStatus::Returned => Ok(PostingEvent::DraftDiscarded),
            // R-POST-3: a pending request cannot be taken back by the employer.
            PostingStatus::PendingReview => Err(PostingError::rule(
                "R-POST-3",
                "cannot discard a posting pending review; only the operator can return or \
                 approve it",
            )),
            status => Err(PostingError::rule(
                "R-POST-2",
                format!(
                    "only a draft or a returned posting can be discarded; the posting is {}",
                    status.phrase()
                ),
            )),
        }
    }

    fn submit_for_review(&self) -> Result<PostingEvent, PostingError> {
        match self.status {
            PostingStatus::Draft | PostingStatus::Returned => {}
            PostingStatus::PendingReview => {
                return Err(PostingError::rule(
                    "R-POST-3",
                    "the posting is already pending review",
                ));
            }
            PostingStatus::Approved
            | PostingStatus::Published
            | PostingStatus::WithdrawalPending => return Err(after_approval("submit")),
            PostingStatus::Withdrawn | PostingStatus::Discarded => {
                return Err(PostingError::rule(
                    "R-POST-3",
                    format!("cannot submit: the posting is {}", self.status.phrase()),
                ));
            }
        }
        // R-POST-3: a registration request must be a complete posting.
        let gaps = self.content.submission_violations();
        if !gaps.is_empty() {
            return Err(PostingError::Incomplete(gaps));
        }
        Ok(PostingEvent::PostingSubmitted {
            content: self.content.clone(),
            draft_version: self.draft_version,
        })
    }

    fn return_posting(&self, reasons: Vec<String>) -> Result<PostingEvent, PostingError> {
        // R-POST-3: only the operator acts on a pending request, and only on a pending one.
        self.ensure_pending_review("returned")?;
        check(content::return_reason_violations(&reasons))?;
        Ok(PostingEvent::PostingReturned { reasons })
    }

    fn approve(
        &self,
        publish_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<PostingEvent, PostingError> {
        // R-POST-3: only the operator acts on a pending request, and only on a pending one.
        self.ensure_pending_review("approved")?;
        // R-POST-4: publication on the approval day is at 22:00, on a later day at 00:00. "Today"
        // is the business date in Tokyo, not the UTC date.
        let today = business_date(now);
        let publishes_at = if publish_date < today {
            return Err(PostingError::rule(
                "R-POST-4",
                format!("publish date {publish_date} is before today ({today}, Asia/Tokyo)"),
            ));
        } else if publish_date == today {
            same_day_evening(now)
        } else {
            at_business_time(publish_date, 0, 0)
        };
        Ok(PostingEvent::PostingApproved {
            publish_date,
            publishes_at,
        })
    }

    fn publish(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        // R-POST-4: publication happens when due, once.
        match (self.status, self.publishes_at) {
            (PostingStatus::Approved, Some(publishes_at)) if now < publishes_at => {
                Err(PostingError::rule(
                    "R-POST-4",
                    format!("publication is not due until {}", business(publishes_at)),
                ))
            }
            (PostingStatus::Approved, Some(_)) => {
                Ok(PostingEvent::PostingPublished { published_at: now })
            }
            (
                PostingStatus::Published
                | PostingStatus::WithdrawalPending
                | PostingStatus::Withdrawn,
                _,
            ) => Err(PostingError::rule(
                "R-POST-4",
                format!(
                    "the posting has already been published; it is {}",
                    self.status.phrase()
                ),
            )),
            (status, _) => Err(PostingError::rule(
                "R-POST-4",
                format!(
                    "only an approved posting can be published; the posting is {}",
                    status.phrase()
                ),
            )),
        }
    }

    fn request_withdrawal(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        match (self.status, self.withdrawal_effective_at) {
            // R-POST-6: off public search at 22:00 of the day it was requested.
            (PostingStatus::Published, _) => Ok(PostingEvent::WithdrawalRequested {
                requested_at: now,
                effective_at: same_day_evening(now),
            }),
            (PostingStatus::WithdrawalPending, Some(effective_at)) => Err(PostingError::rule(
                "R-POST-6",
                format!(
                    "withdrawal was already requested; it takes effect at {}",
                    business(effective_at)
                ),
            )),
            (status, _) => Err(PostingError::rule(
                "R-POST-6",
                format!(
                    "only a published posting can be withdrawn; the posting is {}",
                    status.phrase()
                ),
            )),
        }
    }

    fn complete_withdrawal(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        // R-POST-6: the posting stays public until the withdrawal is due.
        match (self.status, self.withdrawal_effective_at) {
            (PostingStatus::WithdrawalPending, Some(effective_at)) if now < effective_at => {
                Err(PostingError::rule(
                    "R-POST-6",
                    format!("withdrawal is not due until {}", business(effective_at)),
                ))
            }
            (PostingStatus::WithdrawalPending, Some(_)) => {
                Ok(PostingEvent::PostingWithdrawn { withdrawn_at: now })
            }
            (status, _) => Err(PostingError::rule(
                "R-POST-6",
                format!(
                    "no withdrawal is pending; the posting is {}",
                    status.phrase()
                ),
            )),
        }
    }

    fn ensure_pending_review(&self, outcome: &str) -> Result<(), PostingError> {
        if self.status == PostingStatus::PendingReview {
            Ok(())
        } else {
            Err(PostingError::rule(
                "R-POST-3",
                format!(
                    "only a posting pending review can be {outcome}; the posting is {}",
                    self.status.phrase()
                ),
            ))
        }
    }

    /// Applies an event after `PostingDrafted` (which [`Posting::apply`] handles).
    fn apply(&mut self, event: PostingEvent) {
        match event {
            PostingEvent::PostingDrafted { .. } => {}
            PostingEvent::DraftSaved {
                content,
                draft_version,
            } => {
                self.content = content;
                self.draft_version = draft_version;
            }
            PostingEvent::DraftDiscarded => self.status = PostingStatus::Discarded,
            PostingEvent::PostingSubmitted {
                content,
                draft_version,
            } => {
                self.content = content;
                self.draft_version = draft_version;
                self.status = PostingStatus::PendingReview;
            }
            PostingEvent::PostingReturned { .. } => self.status = PostingStatus::Returned,
            PostingEvent::PostingApproved {
                publish_date,
                publishes_at,
            } => {
                self.publish_date = Some(publish_date);
                self.publishes_at = Some(publishes_at);
                self.status = PostingStatus::Approved;
            }
            PostingEvent::PostingPublished { published_at } => {
                self.published_at = Some(published_at);
                self.status = PostingStatus::Published;
            }
            PostingEvent::WithdrawalRequested { effective_at, .. } => {
                self.withdrawal_effective_at = Some(effective_at);
                self.status = PostingStatus::WithdrawalPending;
            }
            PostingEvent::PostingWithdrawn { .. } => self.status = PostingStatus::Withdrawn,
        }
    }
}

/// R-POST-5: once approved, a posting changes only through a modification request.
fn after_approval(action: &str) -> PostingError {
    PostingError::rule(
        "R-POST-5",
        format!("cannot {action} an approved posting; changes go through a modification request"),
    )
}

/// 22:00 (Tokyo) on `now`'s business day, or `now` itself when that is already past: an action
/// that "takes effect at 22:00 today" and arrives later takes effect at once (R-POST-4, R-POST-6).
fn same_day_evening(now: DateTime<Utc>) -> DateTime<Utc> {
    at_business_time(business_date(now), EVENING_HOUR, 0).max(now)
}

/// An instant in business time, for messages: `2026-01-31 22:00:00 +09:00`.
fn business(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&BUSINESS_OFFSET)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

fn check(violations: Vec<content::FieldViolation>) -> Result<(), PostingError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(PostingError::InvalidContent(violations))
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
