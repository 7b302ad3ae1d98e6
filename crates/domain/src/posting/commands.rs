//! What can be asked of a posting: one struct per command, gathered in [`PostingCommand`].
//!
//! Each command says who issues it. The aggregate does not check the caller (it sees no
//! credentials): the application layer authorises, letting an employer act only on its own
//! organisation's postings and reserving operator and timer commands to them.

use chrono::NaiveDate;

use super::content::{Language, OrganisationId, PostingContent, PostingId};

/// Starts a posting as a draft, version 1 (R-POST-1, R-POST-2).
///
/// Issued by: an employer, for its own organisation. `posting_id` must be the aggregate id the
/// command is sent to; the application layer chooses both (the domain generates no ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateDraft {
    /// The new posting's id.
    pub posting_id: PostingId,
    /// The employer that owns it.
    pub organisation_id: OrganisationId,
    /// Its language, fixed for its whole life.
    pub language: Language,
    /// Its first content; needs only a name and a title (R-POST-2).
    pub content: PostingContent,
    /// The past posting of the same organisation this one reuses, if any (R-POST-7). The
    /// application layer checks the source and copies its content into `content`.
    pub reused_from: Option<PostingId>,
}

/// Saves a new draft version, replacing the content (一時保存, R-POST-2).
///
/// Issued by: the owning employer, while the posting is a draft or returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveDraft {
    /// The whole content, not a patch: every saved version is complete on its own.
    pub content: PostingContent,
}

/// Throws a draft away; it can no longer be edited or submitted.
///
/// Issued by: the owning employer, while the posting is a draft or returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscardDraft;

/// Asks the operator to review the current draft (登録依頼, R-POST-3).
///
/// Issued by: the owning employer, while the posting is a draft or returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitForReview;

/// Sends a posting under review back to the employer with reasons (R-POST-3).
///
/// Issued by: an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnPosting {
    /// Why, at least one, shown to the employer.
    pub reasons: Vec<String>,
}

/// Approves a posting under review for publication on `publish_date` (R-POST-3, R-POST-4).
///
/// Issued by: an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovePosting {
    /// Business date (Asia/Tokyo) of publication: today or later.
    pub publish_date: NaiveDate,
}

/// Publishes an approved posting once it is due (R-POST-4).
///
/// Issued by: the timer layer, at the instant found by [`due_timers`](super::due_timers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishPosting;

/// Asks for a published posting to be taken off public search (取り下げ, R-POST-6).
///
/// Issued by: the owning employer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestWithdrawal;

/// Takes a posting off public search once its withdrawal is due (R-POST-6).
///
/// Issued by: the timer layer, at the instant found by [`due_timers`](super::due_timers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompleteWithdrawal;

/// Proposes a change to an approved or published posting (修正依頼, R-POST-5); the public content
/// stays as it is until the change is approved and takes effect. Also how the recruitment end
/// date is shortened (R-POST-6). A returned proposal may be replaced by a new one.
///
/// Issued by: the owning employer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestModification {
    /// The whole proposed content, complete as for a registration request.
    pub content: PostingContent,
}

/// Sends a modification request back to the employer with reasons (R-POST-5, reviewed like a
/// registration, R-POST-3).
///
/// Issued by: an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnModification {
    /// Why, at least one, shown to the employer.
    pub reasons: Vec<String>,
}

/// Approves a modification request; the change takes effect as R-POST-4 sets (R-POST-5).
///
/// Issued by: an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApproveModification {
    /// Business date (Asia/Tokyo) the change goes public: today or later.
    pub publish_date: NaiveDate,
}

/// Makes an approved modification the public content once it is due (R-POST-5).
///
/// Issued by: the timer layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishModification;

/// Drops a returned modification request; the posting stays as it is public.
///
/// Issued by: the owning employer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscardModification;

/// Closes a posting to modifications two weeks after its recruitment period ended (R-POST-5).
///
/// Issued by: the timer layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockModifications;

/// Stops recruiting (募集停止, R-POST-7): the posting leaves public search at once.
///
/// Issued by: the owning employer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopRecruiting;

/// Cancels an approved or published posting (求人取消, R-POST-7): it leaves public search at once
/// and nothing more can be done with it.
///
/// Issued by: the owning employer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CancelPosting;

/// Ends a posting whose recruitment period is over (R-POST-7).
///
/// Issued by: the timer layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpirePosting;

/// Every command of the posting aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostingCommand {
    /// See [`CreateDraft`].
    CreateDraft(CreateDraft),
    /// See [`SaveDraft`].
    SaveDraft(SaveDraft),
    /// See [`DiscardDraft`].
    DiscardDraft(DiscardDraft),
    /// See [`SubmitForReview`].
    SubmitForReview(SubmitForReview),
    /// See [`ReturnPosting`].
    ReturnPosting(ReturnPosting),
    /// See [`ApprovePosting`].
    ApprovePosting(ApprovePosting),
    /// See [`PublishPosting`].
    PublishPosting(PublishPosting),
    /// See [`RequestWithdrawal`].
    RequestWithdrawal(RequestWithdrawal),
    /// See [`CompleteWithdrawal`].
    CompleteWithdrawal(CompleteWithdrawal),
    /// See [`RequestModification`].
    RequestModification(RequestModification),
    /// See [`ReturnModification`].
    ReturnModification(ReturnModification),
    /// See [`ApproveModification`].
    ApproveModification(ApproveModification),
    /// See [`PublishModification`].
    PublishModification(PublishModification),
    /// See [`DiscardModification`].
    DiscardModification(DiscardModification),
    /// See [`LockModifications`].
    LockModifications(LockModifications),
    /// See [`StopRecruiting`].
    StopRecruiting(StopRecruiting),
    /// See [`CancelPosting`].
    CancelPosting(CancelPosting),
    /// See [`ExpirePosting`].
    ExpirePosting(ExpirePosting),
}

impl PostingCommand {
    /// The command's name, e.g. `SaveDraft`, for logs and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::CreateDraft(_) => "CreateDraft",
            Self::SaveDraft(_) => "SaveDraft",
            Self::DiscardDraft(_) => "DiscardDraft",
            Self::SubmitForReview(_) => "SubmitForReview",
            Self::ReturnPosting(_) => "ReturnPosting",
            Self::ApprovePosting(_) => "ApprovePosting",
            Self::PublishPosting(_) => "PublishPosting",
            Self::RequestWithdrawal(_) => "RequestWithdrawal",
            Self::CompleteWithdrawal(_) => "CompleteWithdrawal",
            Self::RequestModification(_) => "RequestModification",
            Self::ReturnModification(_) => "ReturnModification",
            Self::ApproveModification(_) => "ApproveModification",
            Self::PublishModification(_) => "PublishModification",
            Self::DiscardModification(_) => "DiscardModification",
            Self::LockModifications(_) => "LockModifications",
            Self::StopRecruiting(_) => "StopRecruiting",
            Self::CancelPosting(_) => "CancelPosting",
            Self::ExpirePosting(_) => "ExpirePosting",
        }
    }
}

macro_rules! into_command {
    ($($name:ident),* $(,)?) => {
        $(
            impl From<$name> for PostingCommand {
                fn from(command: $name) -> Self {
                    Self::$name(command)
                }
            }
        )*
    };
}

into_command!(
    CreateDraft,
    SaveDraft,
    DiscardDraft,
    SubmitForReview,
    ReturnPosting,
    ApprovePosting,
    PublishPosting,
    RequestWithdrawal,
    CompleteWithdrawal,
    RequestModification,
    ReturnModification,
    ApproveModification,
    PublishModification,
    DiscardModification,
    LockModifications,
    StopRecruiting,
    CancelPosting,
    ExpirePosting,
);
