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

use super::commands::{
    CompleteWithdrawal, ExpirePosting, LockModifications, PostingCommand, PublishModification,
    PublishPosting,
};
use super::content::{Language, OrganisationId, PostingContent, PostingId};

/// Every event of the posting aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PostingEvent {
    /// A posting was created as draft version 1 (R-POST-1, R-POST-2).
    ///
    /// Schema v2 added `reused_from`; v1 payloads lack it and read as a fresh draft.
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
        /// The past posting whose content it reuses (R-POST-7), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reused_from: Option<PostingId>,
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
    ///
    /// Schema v2 added `content`, `expires_at` and `modifiable_until`; v1 payloads lack them,
    /// so a posting published under v1 sets no expiry or modification deadline.
    PostingPublished {
        /// When it was published (the timer's firing, at or after `publishes_at`).
        published_at: DateTime<Utc>,
        /// The content that went public.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<PostingContent>,
        /// When it expires: 00:00 JST the day after its recruitment period ends (R-POST-7).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        /// The last instant a modification may be requested: two weeks after the recruitment
        /// period ended (R-POST-5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        modifiable_until: Option<DateTime<Utc>>,
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
    /// The employer proposed a change to the approved or published posting (R-POST-5).
    ModificationRequested {
        /// The whole proposed content.
        content: PostingContent,
        /// When the employer asked.
        requested_at: DateTime<Utc>,
    },
    /// The operator sent the modification request back (R-POST-5, R-POST-3).
    ModificationReturned {
        /// Why, as the operator wrote them.
        reasons: Vec<String>,
    },
    /// The operator approved the modification request (R-POST-5, timing by R-POST-4).
    ModificationApproved {
        /// The business date the operator chose.
        publish_date: NaiveDate,
        /// When the change goes public, by the rule of R-POST-4.
        effective_at: DateTime<Utc>,
    },
    /// The approved change became the posting's content (R-POST-5).
    ModificationPublished {
        /// The posting's content from now on.
        content: PostingContent,
        /// When it took effect (the timer's firing, at or after `effective_at`).
        published_at: DateTime<Utc>,
        /// When the posting expires under the new content (R-POST-7).
        expires_at: Option<DateTime<Utc>>,
        /// The last instant a modification may be requested under the new content (R-POST-5).
        modifiable_until: Option<DateTime<Utc>>,
    },
    /// The employer dropped a returned modification request.
    ModificationDiscarded,
    /// Two weeks passed after the recruitment period ended: no more modifications (R-POST-5).
    ModificationsLocked {
        /// When the lock was recorded (the timer's firing).
        locked_at: DateTime<Utc>,
    },
    /// The employer stopped recruiting (募集停止, R-POST-7); off public search at once.
    RecruitmentStopped {
        /// When.
        stopped_at: DateTime<Utc>,
    },
    /// The employer cancelled the posting (求人取消, R-POST-7); off public search at once.
    PostingCancelled {
        /// When.
        cancelled_at: DateTime<Utc>,
    },
    /// The recruitment period ended (R-POST-7); off public search.
    PostingExpired {
        /// When it was recorded (the timer's firing, at or after the expiry instant).
        expired_at: DateTime<Utc>,
    },
}

impl PostingEvent {
    /// Every event type, as [`type_name`](Self::type_name) spells it.
    pub const TYPES: [&'static str; 18] = [
        "PostingDrafted",
        "DraftSaved",
        "DraftDiscarded",
        "PostingSubmitted",
        "PostingReturned",
        "PostingApproved",
        "PostingPublished",
        "WithdrawalRequested",
        "PostingWithdrawn",
        "ModificationRequested",
        "ModificationReturned",
        "ModificationApproved",
        "ModificationPublished",
        "ModificationDiscarded",
        "ModificationsLocked",
        "RecruitmentStopped",
        "PostingCancelled",
        "PostingExpired",
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
            Self::ModificationRequested { .. } => "ModificationRequested",
            Self::ModificationReturned { .. } => "ModificationReturned",
            Self::ModificationApproved { .. } => "ModificationApproved",
            Self::ModificationPublished { .. } => "ModificationPublished",
            Self::ModificationDiscarded => "ModificationDiscarded",
            Self::ModificationsLocked { .. } => "ModificationsLocked",
            Self::RecruitmentStopped { .. } => "RecruitmentStopped",
            Self::PostingCancelled { .. } => "PostingCancelled",
            Self::PostingExpired { .. } => "PostingExpired",
        }
    }

    /// The schema version of this event's JSON shape.
    ///
    /// A type's version goes up alone when its shape changes, with [`reads_as_version`] lifting the
    /// old version and a new golden file beside the old one.
    pub const fn schema_version(&self) -> u32 {
        match self {
            Self::PostingDrafted { .. } | Self::PostingPublished { .. } => 2,
            _ => 1,
        }
    }
}

/// The schema version a stored payload of `event_type` written at `stored_version` reads as
/// today: the upcast of posting events.
///
/// Both shape changes so far only added optional fields (`PostingDrafted` v2: `reused_from`;
/// `PostingPublished` v2: `content`, `expires_at`, `modifiable_until`), which an older payload
/// lacks and which deserialise as unset: the payload needs no rewriting, only its version moves.
/// A change that renames or reshapes a field needs a payload upcaster registered with the store.
pub fn reads_as_version(event_type: &str, stored_version: u32) -> u32 {
    match (event_type, stored_version) {
        ("PostingDrafted" | "PostingPublished", 1) => 2,
        _ => stored_version,
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
/// later [`due_timers`] entry of the same kind replaces the earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Send [`PublishPosting`] (R-POST-4).
    PublishPosting,
    /// Send [`CompleteWithdrawal`] (R-POST-6).
    CompleteWithdrawal,
    /// Send [`PublishModification`] (R-POST-5).
    PublishModification,
    /// Send [`ExpirePosting`] (R-POST-7).
    ExpirePosting,
    /// Send [`LockModifications`] (R-POST-5).
    LockModifications,
}

impl TimerKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::PublishPosting,
        Self::CompleteWithdrawal,
        Self::PublishModification,
        Self::ExpirePosting,
        Self::LockModifications,
    ];

    /// The stable name, as in the JSON form: `publish_posting`, `complete_withdrawal`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PublishPosting => "publish_posting",
            Self::CompleteWithdrawal => "complete_withdrawal",
            Self::PublishModification => "publish_modification",
            Self::ExpirePosting => "expire_posting",
            Self::LockModifications => "lock_modifications",
        }
    }

    /// The command the timer sends.
    pub fn command(self) -> PostingCommand {
        match self {
            Self::PublishPosting => PublishPosting.into(),
            Self::CompleteWithdrawal => CompleteWithdrawal.into(),
            Self::PublishModification => PublishModification.into(),
            Self::ExpirePosting => ExpirePosting.into(),
            Self::LockModifications => LockModifications.into(),
        }
    }
}

/// Whether a published change with this end reopens an expired posting: it does when the new
/// recruitment end lies after the change's publication (R-POST-5; the domain's fold, the timers
/// and the views all decide it here).
pub fn change_reopens(expires_at: Option<DateTime<Utc>>, published_at: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|end| end > published_at)
}

/// The deadlines `event` sets: `PostingApproved` sets publication (R-POST-4),
/// `WithdrawalRequested` withdrawal (R-POST-6), `ModificationApproved` the change's publication
/// (R-POST-5), and `PostingPublished` / `ModificationPublished` expiry (R-POST-7) and the end of
/// modifications (R-POST-5) from the recruitment period now public.
///
/// The timer layer projects the log through this function, so deadlines survive restarts and
/// are rebuilt by replay.
pub fn due_timers(event: &PostingEvent) -> Vec<DueTimer> {
    let at = |due_at: DateTime<Utc>, kind| DueTimer { due_at, kind };
    match event {
        PostingEvent::PostingApproved { publishes_at, .. } => {
            vec![at(*publishes_at, TimerKind::PublishPosting)]
        }
        PostingEvent::WithdrawalRequested { effective_at, .. } => {
            vec![at(*effective_at, TimerKind::CompleteWithdrawal)]
        }
        PostingEvent::ModificationApproved { effective_at, .. } => {
            vec![at(*effective_at, TimerKind::PublishModification)]
        }
        PostingEvent::PostingPublished {
            expires_at,
            modifiable_until,
            ..
        }
        | PostingEvent::ModificationPublished {
            expires_at,
            modifiable_until,
            ..
        } => {
            let expiry = expires_at.map(|t| at(t, TimerKind::ExpirePosting));
            let lock = modifiable_until.map(|t| at(t, TimerKind::LockModifications));
            expiry.into_iter().chain(lock).collect()
        }
        _ => Vec::new(),
    }
}

/// The deadlines `event` settles, so the timer layer can drop them: each firing settles its own
/// kind, and a posting that leaves for good (withdrawn, stopped, cancelled) settles all of them.
pub fn settled_timers(event: &PostingEvent) -> &'static [TimerKind] {
    match event {
        PostingEvent::PostingPublished { .. } => &[TimerKind::PublishPosting],
        PostingEvent::ModificationPublished { .. } => &[TimerKind::PublishModification],
        PostingEvent::ModificationsLocked { .. } => &[TimerKind::LockModifications],
        PostingEvent::PostingExpired { .. } => {
            &[TimerKind::ExpirePosting, TimerKind::CompleteWithdrawal]
        }
        PostingEvent::PostingWithdrawn { .. }
        | PostingEvent::RecruitmentStopped { .. }
        | PostingEvent::PostingCancelled { .. } => &TimerKind::ALL,
        _ => &[],
    }
}
