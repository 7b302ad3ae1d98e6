//! What happened to a posting: the events of its stream, and the deadlines they set.
//!
//! Events carry everything a read model needs — the content snapshot on submission, the instants
//! computed by R-POST-4 and R-POST-6 — so projections never re-apply a rule.
//!
//! JSON form: one flat object whose `type` field is the event type, e.g.
//! `{"type":"PostingApproved","publish_date":"2026-02-01","publishes_at":"2026-01-31T15:00:00Z"}`.
//! Flat objects read well in a log and let upcasters edit fields without unwrapping. Each event
//! type and schema version has a golden file under `tests/golden/posting/` that must keep
//! deserialising forever; a changed shape gets a new schema version and an upcaster, never an edit.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::commands::{CompleteWithdrawal, PostingCommand, PublishPosting};
use super::content::{Language, OrganisationId, PostingContent, PostingId};

/// Every event of the posting aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PostingEvent {
    /// A posting was created as draft version 1 (R-POST-1, R-POST-2).
    PostingDrafted {
        /// The posting's id (also its aggregate id).
        posting_id: PostingId,
        /// The employer that owns it.
        organisation_id: OrganisationId,
        /// Its language, fixed from now on.
        language: Language,
        /// Its first content.
        content: PostingContent,
        /// Always 1.
        draft_version: u32,
    },
    /// A new draft version was saved (R-POST-2); the log keeps every version.
    DraftSaved {
        /// The whole content of this version.
        content: PostingContent,
        /// This version's number, one more than the previous.
        draft_version: u32,
    },
    /// The draft was thrown away.
    DraftDiscarded,
    /// The draft was submitted for review (R-POST-3).
    PostingSubmitted {
        /// The content under review, as submitted.
        content: PostingContent,
        /// The draft version submitted.
        draft_version: u32,
    },
    /// The operator sent the posting back to the employer (R-POST-3).
    PostingReturned {
        /// Why, as the operator wrote them.
        reasons: Vec<String>,
    },
    /// The operator approved the posting for publication (R-POST-4).
    PostingApproved {
        /// The business date the operator chose.
        publish_date: NaiveDate,
        /// When it goes public: 22:00 JST on an approval-day publish date (or the approval
        /// instant if that is later), otherwise 00:00 JST on the publish date.
        publishes_at: DateTime<Utc>,
    },
    /// The posting went public (R-POST-4).
    PostingPublished {
        /// When it was published (the timer's firing, at or after `publishes_at`).
        published_at: DateTime<Utc>,
    },
    /// The employer asked for the posting to be withdrawn (R-POST-6); it stays public until
    /// `effective_at`.
    WithdrawalRequested {
        /// When the employer asked.
        requested_at: DateTime<Utc>,
        /// When it leaves public search: 22:00 JST on the request's business day, or the request
        /// instant if that is later.
        effective_at: DateTime<Utc>,
    },
    /// The posting left public search (R-POST-6).
    PostingWithdrawn {
        /// When it was withdrawn (the timer's firing, at or after `effective_at`).
        withdrawn_at: DateTime<Utc>,
    },
}

impl PostingEvent {
    /// Every event type, as [`type_name`](Self::type_name) spells it.
    pub const TYPES: [&'static str; 9] = [
        "PostingDrafted",
        "DraftSaved",
        "DraftDiscarded",
        "PostingSubmitted",
        "PostingReturned",
        "PostingApproved",
        "PostingPublished",
        "WithdrawalRequested",
        "PostingWithdrawn",
    ];

    /// The stable event type name, e.g. `PostingApproved`; equal to the JSON `type` field.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::PostingDrafted { .. } => "PostingDrafted",
            Self::DraftSaved { .. } => "DraftSaved",
            Self::DraftDiscarded => "DraftDiscarded",
            Self::PostingSubmitted { .. } => "PostingSubmitted",
            Self::PostingReturned { .. } => "PostingReturned",
            Self::PostingApproved { .. } => "PostingApproved",
            Self::PostingPublished { .. } => "PostingPublished",
            Self::WithdrawalRequested { .. } => "WithdrawalRequested",
            Self::PostingWithdrawn { .. } => "PostingWithdrawn",
        }
    }

    /// The schema version of this event's JSON shape.
    ///
    /// All types are at version 1. When one type's shape changes, its version alone goes up,
    /// with an upcaster from the old version and a new golden file beside the old one.
    pub const fn schema_version(&self) -> u32 {
        1
    }
}

impl DomainEvent for PostingEvent {
    fn event_type(&self) -> String {
        self.type_name().to_owned()
    }

    fn event_version(&self) -> String {
        self.schema_version().to_string()
    }
}

/// A deadline set by an event: at `due_at`, the timer layer sends `kind`'s command to the
/// posting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueTimer {
    /// When the command becomes due; sending it earlier is refused.
    pub due_at: DateTime<Utc>,
    /// Which command to send.
    pub kind: TimerKind,
}

/// The timed commands of a posting. A posting has at most one pending timer of each kind; a
/// later [`due_timer`] of the same kind replaces the earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Send [`PublishPosting`] (R-POST-4).
    PublishPosting,
    /// Send [`CompleteWithdrawal`] (R-POST-6).
    CompleteWithdrawal,
}

impl TimerKind {
    /// The stable name, as in the JSON form: `publish_posting` or `complete_withdrawal`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PublishPosting => "publish_posting",
            Self::CompleteWithdrawal => "complete_withdrawal",
        }
    }

    /// The command the timer sends.
    pub fn command(self) -> PostingCommand {
        match self {
            Self::PublishPosting => PublishPosting.into(),
            Self::CompleteWithdrawal => CompleteWithdrawal.into(),
        }
    }
}

/// The deadline `event` sets, if any: `PostingApproved` sets publication at `publishes_at`
/// (R-POST-4), `WithdrawalRequested` sets withdrawal at `effective_at` (R-POST-6).
///
/// The timer layer projects the log through this function, so deadlines survive restarts and
/// are rebuilt by replay.
pub fn due_timer(event: &PostingEvent) -> Option<DueTimer> {
    match event {
        PostingEvent::PostingApproved { publishes_at, .. } => Some(DueTimer {
            due_at: *publishes_at,
            kind: TimerKind::PublishPosting,
        }),
        PostingEvent::WithdrawalRequested { effective_at, .. } => Some(DueTimer {
            due_at: *effective_at,
            kind: TimerKind::CompleteWithdrawal,
        }),
        _ => None,
    }
}

/// The timer `event` settles, if any: `PostingPublished` settles publication and
/// `PostingWithdrawn` settles withdrawal, so the timer layer can drop them.
pub fn settled_timer(event: &PostingEvent) -> Option<TimerKind> {
    match event {
        PostingEvent::PostingPublished { .. } => Some(TimerKind::PublishPosting),
        PostingEvent::PostingWithdrawn { .. } => Some(TimerKind::CompleteWithdrawal),
        _ => None,
    }
}
