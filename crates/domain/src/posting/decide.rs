//! The posting's decisions (which event a command records, or which rule refuses it) and its
//! fold (how each event changes the state). The table of refusals is in the module docs above.

use chrono::{DateTime, Days, NaiveDate, Utc};

use super::commands::{
    ApproveModification, ApprovePosting, CreateDraft, PostingCommand, RequestModification,
    ReturnModification, ReturnPosting, SaveDraft,
};
use super::content::{self, FieldViolation, PostingContent};
use super::{
    EVENING_HOUR, Modification, ModificationStatus, Posting, PostingError, PostingEvent,
    PostingState, PostingStatus, change_reopens,
};
use crate::time::{BUSINESS_OFFSET, at_business_time, business_date};

/// How long after the recruitment period ends a modification may still be requested (R-POST-5).
const MODIFIABLE_DAYS_AFTER_END: u64 = 14;

impl Posting {
    /// Decides what `command` does at `now`: the one event it records, or why it is refused.
    pub(super) fn decide(
        &self,
        command: PostingCommand,
        now: DateTime<Utc>,
    ) -> Result<PostingEvent, PostingError> {
        use PostingCommand as C;
        let Some(s) = &self.state else {
            return match command {
                C::CreateDraft(create) => create_draft(create),
                _ => Err(PostingError::NotFound),
            };
        };
        match command {
            C::CreateDraft(_) => Err(PostingError::AlreadyExists),
            C::SaveDraft(SaveDraft { content }) => s.save_draft(content),
            C::DiscardDraft(_) => s.discard_draft(),
            C::SubmitForReview(_) => s.submit_for_review(),
            C::ReturnPosting(ReturnPosting { reasons }) => s.return_posting(reasons),
            C::ApprovePosting(ApprovePosting { publish_date }) => s.approve(publish_date, now),
            C::PublishPosting(_) => s.publish(now),
            C::RequestWithdrawal(_) => s.request_withdrawal(now),
            C::CompleteWithdrawal(_) => s.complete_withdrawal(now),
            C::RequestModification(RequestModification { content }) => {
                s.request_modification(content, now)
            }
            C::ReturnModification(ReturnModification { reasons }) => s.return_modification(reasons),
            C::ApproveModification(ApproveModification { publish_date }) => {
                s.approve_modification(publish_date, now)
            }
            C::PublishModification(_) => s.publish_modification(now),
            C::DiscardModification(_) => s.discard_modification(),
            C::LockModifications(_) => s.lock_modifications(now),
            C::StopRecruiting(_) => s.stop_recruiting(now),
            C::CancelPosting(_) => s.cancel(now),
            C::ExpirePosting(_) => s.expire(now),
        }
    }
}

fn create_draft(create: CreateDraft) -> Result<PostingEvent, PostingError> {
    let CreateDraft {
        posting_id,
        organisation_id,
        language,
        content,
        reused_from,
    } = create;
    // R-POST-2: a draft needs only its name and title (and sane sizes).
    check(content.draft_violations())?;
    if reused_from == Some(posting_id) {
        return Err(PostingError::rule(
            "R-POST-7",
            "a posting cannot be created from itself",
        ));
    }
    Ok(PostingEvent::PostingDrafted {
        posting_id,
        organisation_id,
        language,
        content,
        draft_version: 1,
        reused_from,
    })
}

impl PostingState {
    /// Whether a registration or modification request waits for the operator (R-POST-3).
    pub(super) fn review_pending(&self) -> bool {
        self.status == PostingStatus::PendingReview
            || self
                .modification
                .as_ref()
                .is_some_and(|m| m.status == ModificationStatus::PendingReview)
    }

    /// R-POST-3: while a request is pending review, the employer cannot act on the posting; a
    /// wish to withdraw goes to the operator.
    fn ensure_no_review_pending(&self, action: &str) -> Result<(), PostingError> {
        if self.review_pending() {
            Err(PostingError::rule(
                "R-POST-3",
                format!(
                    "cannot {action} while a request is pending review; only the operator can \
                     return or approve it"
                ),
            ))
        } else {
            Ok(())
        }
    }

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
            status => {
                return Err(PostingError::rule(
                    "R-POST-2",
                    format!("cannot save a draft: the posting is {}", status.phrase()),
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
            status => {
                return Err(PostingError::rule(
                    "R-POST-3",
                    format!("cannot submit: the posting is {}", status.phrase()),
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
        if let Some(period) = self.content.recruitment_period
            && publish_date > period.end
        {
            return Err(PostingError::rule(
                "R-POST-4",
                format!(
                    "publish date {publish_date} is after the recruitment period ends ({})",
                    period.end
                ),
            ));
        }
        let publishes_at = publication_instant(publish_date, now)?;
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
                let (expires_at, modifiable_until) = deadlines(&self.content);
                Ok(PostingEvent::PostingPublished {
                    published_at: now,
                    content: Some(self.content.clone()),
                    expires_at,
                    modifiable_until,
                })
            }
            (status, _) if self.published_at.is_some() => Err(PostingError::rule(
                "R-POST-4",
                format!(
                    "the posting has already been published; it is {}",
                    status.phrase()
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
        self.ensure_no_review_pending("request a withdrawal")?;
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

    fn request_modification(
        &self,
        content: PostingContent,
        now: DateTime<Utc>,
    ) -> Result<PostingEvent, PostingError> {
        match self
            .modification
            .as_ref()
            .map(|m| (m.status, m.effective_at))
        {
            // R-POST-3: the employer cannot touch a request under review.
            Some((ModificationStatus::PendingReview, _)) => {
                return Err(PostingError::rule(
                    "R-POST-3",
                    "a modification request is already pending review; only the operator can \
                     return or approve it",
                ));
            }
            Some((ModificationStatus::Approved, effective_at)) => {
                return Err(PostingError::rule(
                    "R-POST-5",
                    format!(
                        "an approved modification takes effect at {}; request the next one after",
                        effective_at.map_or_else(|| "its publication".to_owned(), business)
                    ),
                ));
            }
            // A returned request is replaced by the new one.
            Some((ModificationStatus::Returned, _)) | None => {}
        }
        match self.status {
            PostingStatus::Approved | PostingStatus::Published | PostingStatus::Expired => {}
            PostingStatus::WithdrawalPending => {
                return Err(PostingError::rule(
                    "R-POST-6",
                    "the posting is being withdrawn; it can no longer be modified",
                ));
            }
            PostingStatus::PendingReview => {
                return Err(PostingError::rule(
                    "R-POST-3",
                    "the posting is pending review; only the operator can return or approve it",
                ));
            }
            status => {
                return Err(PostingError::rule(
                    "R-POST-5",
                    format!(
                        "only an approved, published or recently expired posting can be \
                         modified; the posting is {}",
                        status.phrase()
                    ),
                ));
            }
        }
        // R-POST-5: no modification once two weeks have passed since the recruitment end.
        let (_, modifiable_until) = deadlines(&self.content);
        if self.modifications_locked || modifiable_until.is_some_and(|until| now >= until) {
            return Err(PostingError::rule(
                "R-POST-5",
                format!(
                    "modifications closed at {}, two weeks after the recruitment period ended",
                    modifiable_until.map_or_else(|| "the deadline".to_owned(), business)
                ),
            ));
        }
        // Reviewed like a registration (R-POST-3): the proposal must be complete.
        check(content.draft_violations())?;
        check(content.submission_violations())?;
        Ok(PostingEvent::ModificationRequested {
            content,
            requested_at: now,
        })
    }

    fn pending_modification(&self, outcome: &str) -> Result<&Modification, PostingError> {
        match &self.modification {
            Some(m) if m.status == ModificationStatus::PendingReview => Ok(m),
            _ => Err(PostingError::rule(
                "R-POST-5",
                format!("no modification request is pending review to be {outcome}"),
            )),
        }
    }

    fn return_modification(&self, reasons: Vec<String>) -> Result<PostingEvent, PostingError> {
        self.pending_modification("returned")?;
        check(content::return_reason_violations(&reasons))?;
        Ok(PostingEvent::ModificationReturned { reasons })
    }

    fn approve_modification(
        &self,
        publish_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<PostingEvent, PostingError> {
        self.pending_modification("approved")?;
        // R-POST-5: publication of the change follows R-POST-4.
        let effective_at = publication_instant(publish_date, now)?;
        Ok(PostingEvent::ModificationApproved {
            publish_date,
            effective_at,
        })
    }

    fn publish_modification(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        match &self.modification {
            Some(Modification {
                status: ModificationStatus::Approved,
                effective_at: Some(effective_at),
                ..
            }) if now < *effective_at => Err(PostingError::rule(
                "R-POST-5",
                format!(
                    "the modification does not take effect until {}",
                    business(*effective_at)
                ),
            )),
            Some(Modification {
                status: ModificationStatus::Approved,
                content,
                ..
            }) => {
                let (expires_at, modifiable_until) = deadlines(content);
                Ok(PostingEvent::ModificationPublished {
                    content: content.clone(),
                    published_at: now,
                    expires_at,
                    modifiable_until,
                })
            }
            _ => Err(PostingError::rule(
                "R-POST-5",
                "no approved modification is waiting to take effect",
            )),
        }
    }

    fn discard_modification(&self) -> Result<PostingEvent, PostingError> {
        match &self.modification {
            Some(m) if m.status == ModificationStatus::Returned => {
                Ok(PostingEvent::ModificationDiscarded)
            }
            Some(m) if m.status == ModificationStatus::PendingReview => Err(PostingError::rule(
                "R-POST-3",
                "a modification request pending review cannot be taken back; only the operator \
                 can return or approve it",
            )),
            _ => Err(PostingError::rule(
                "R-POST-5",
                "only a returned modification request can be discarded",
            )),
        }
    }

    fn lock_modifications(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        if self.modifications_locked {
            return Err(PostingError::rule(
                "R-POST-5",
                "modifications are already closed",
            ));
        }
        match self.modifiable_until {
            Some(until) if now >= until => Ok(PostingEvent::ModificationsLocked { locked_at: now }),
            Some(until) => Err(PostingError::rule(
                "R-POST-5",
                format!("modifications stay open until {}", business(until)),
            )),
            None => Err(PostingError::rule(
                "R-POST-5",
                "the posting has no modification deadline",
            )),
        }
    }

    fn stop_recruiting(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        self.ensure_no_review_pending("stop recruiting")?;
        match self.status {
            PostingStatus::Published => Ok(PostingEvent::RecruitmentStopped { stopped_at: now }),
            status => Err(PostingError::rule(
                "R-POST-7",
                format!(
                    "only a published posting can stop recruiting; the posting is {}",
                    status.phrase()
                ),
            )),
        }
    }

    fn cancel(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        self.ensure_no_review_pending("cancel the posting")?;
        match self.status {
            PostingStatus::Approved
            | PostingStatus::Published
            | PostingStatus::WithdrawalPending
            | PostingStatus::RecruitmentStopped => {
                Ok(PostingEvent::PostingCancelled { cancelled_at: now })
            }
            PostingStatus::Draft | PostingStatus::Returned => Err(PostingError::rule(
                "R-POST-2",
                "a posting that was never approved is discarded, not cancelled",
            )),
            status => Err(PostingError::rule(
                "R-POST-7",
                format!("the posting cannot be cancelled; it is {}", status.phrase()),
            )),
        }
    }

    fn expire(&self, now: DateTime<Utc>) -> Result<PostingEvent, PostingError> {
        match (self.status, self.expires_at) {
            (PostingStatus::Published | PostingStatus::WithdrawalPending, Some(at)) if now < at => {
                Err(PostingError::rule(
                    "R-POST-7",
                    format!("the recruitment period runs until {}", business(at)),
                ))
            }
            (PostingStatus::Published | PostingStatus::WithdrawalPending, Some(_)) => {
                Ok(PostingEvent::PostingExpired { expired_at: now })
            }
            (status, _) => Err(PostingError::rule(
                "R-POST-7",
                format!(
                    "only a public posting with a recruitment end can expire; the posting is {}",
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

    /// Applies an event after `PostingDrafted` (which [`Posting`]'s `apply` handles). Every
    /// field is set to a value the event carries, so applying an event twice changes nothing.
    pub(super) fn apply(&mut self, event: PostingEvent) {
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
            PostingEvent::PostingPublished {
                published_at,
                content,
                expires_at,
                modifiable_until,
            } => {
                self.published_at = Some(published_at);
                if let Some(content) = content {
                    self.content = content;
                }
                self.expires_at = expires_at;
                self.modifiable_until = modifiable_until;
                self.status = PostingStatus::Published;
            }
            PostingEvent::WithdrawalRequested { effective_at, .. } => {
                self.withdrawal_effective_at = Some(effective_at);
                self.status = PostingStatus::WithdrawalPending;
            }
            PostingEvent::PostingWithdrawn { .. } => {
                self.status = PostingStatus::Withdrawn;
                self.modification = None;
            }
            PostingEvent::ModificationRequested {
                content,
                requested_at,
            } => {
                self.modification = Some(Modification {
                    content,
                    status: ModificationStatus::PendingReview,
                    requested_at,
                    return_reasons: Vec::new(),
                    effective_at: None,
                });
            }
            PostingEvent::ModificationReturned { reasons } => {
                if let Some(m) = &mut self.modification {
                    m.status = ModificationStatus::Returned;
                    m.return_reasons = reasons;
                }
            }
            PostingEvent::ModificationApproved { effective_at, .. } => {
                if let Some(m) = &mut self.modification {
                    m.status = ModificationStatus::Approved;
                    m.effective_at = Some(effective_at);
                }
            }
            PostingEvent::ModificationPublished {
                content,
                published_at,
                expires_at,
                modifiable_until,
            } => {
                self.content = content;
                self.modification = None;
                self.expires_at = expires_at;
                self.modifiable_until = modifiable_until;
                // A change that moves the end date later reopens an expired posting (R-POST-5).
                if self.status == PostingStatus::Expired && change_reopens(expires_at, published_at)
                {
                    self.status = PostingStatus::Published;
                }
            }
            PostingEvent::ModificationDiscarded => self.modification = None,
            PostingEvent::ModificationsLocked { .. } => self.modifications_locked = true,
            PostingEvent::RecruitmentStopped { .. } => {
                self.status = PostingStatus::RecruitmentStopped;
                self.modification = None;
            }
            PostingEvent::PostingCancelled { .. } => {
                self.status = PostingStatus::Cancelled;
                self.modification = None;
            }
            PostingEvent::PostingExpired { .. } => self.status = PostingStatus::Expired,
        }
    }
}

/// When a publication (or a change's publication) approved at `now` for `publish_date` takes
/// effect (R-POST-4): 22:00 on the approval day, otherwise 00:00 of the publish date. "Today" is
/// the business date in Tokyo, not the UTC date.
fn publication_instant(
    publish_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, PostingError> {
    let today = business_date(now);
    if publish_date < today {
        Err(PostingError::rule(
            "R-POST-4",
            format!("publish date {publish_date} is before today ({today}, Asia/Tokyo)"),
        ))
    } else if publish_date == today {
        Ok(same_day_evening(now))
    } else {
        Ok(at_business_time(publish_date, 0, 0))
    }
}

/// The expiry (R-POST-7: 00:00 the day after the last recruitment day) and the modification
/// deadline (R-POST-5: two weeks after that) of `content`; unset without a recruitment period.
fn deadlines(content: &PostingContent) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(period) = content.recruitment_period else {
        return (None, None);
    };
    let after = |days| {
        period
            .end
            .checked_add_days(Days::new(days))
            .map(|date| at_business_time(date, 0, 0))
    };
    (after(1), after(1 + MODIFIABLE_DAYS_AFTER_END))
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

fn check(violations: Vec<FieldViolation>) -> Result<(), PostingError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(PostingError::InvalidContent(violations))
    }
}
