//! How a posting ends or starts again: stop recruiting, cancel, expiry (R-POST-7) and reuse of a
//! past posting as a new draft (R-POST-7).

use jobboard_domain::posting::{
    CancelPosting, CreateDraft, DueTimer, ExpirePosting, Language, PostingEvent, PostingStatus,
    StopRecruiting, TimerKind, due_timers, settled_timers,
};
use uuid::Uuid;

use crate::support::{
    ALL_STATUSES, ORGANISATION_ID, POSTING_ID, at, complete_content, expired, history, jst,
    modification_requested, published, published_then, refused_by, replay,
};

#[test]
fn stopping_recruitment_takes_a_published_posting_off_public_search_at_once() {
    // R-POST-7
    let now = jst("2026-02-12T09:00:00");
    at(now)
        .given(history(PostingStatus::Published))
        .when(StopRecruiting.into())
        .then_expect_events(vec![PostingEvent::RecruitmentStopped { stopped_at: now }]);
    let posting = replay(history(PostingStatus::RecruitmentStopped));
    assert_eq!(posting.public_content(), None);
    for status in ALL_STATUSES {
        if status == PostingStatus::Published {
            continue;
        }
        let rule = if status == PostingStatus::PendingReview {
            "R-POST-3"
        } else {
            "R-POST-7"
        };
        refused_by(
            at(now).given(history(status)).when(StopRecruiting.into()),
            rule,
        );
    }
}

#[test]
fn cancelling_ends_an_approved_or_public_posting_for_good() {
    // R-POST-7
    let now = jst("2026-02-12T09:00:00");
    for status in [
        PostingStatus::Approved,
        PostingStatus::Published,
        PostingStatus::WithdrawalPending,
        PostingStatus::RecruitmentStopped,
    ] {
        at(now)
            .given(history(status))
            .when(CancelPosting.into())
            .then_expect_events(vec![PostingEvent::PostingCancelled { cancelled_at: now }]);
    }
    // A draft is discarded (R-POST-2); a pending request is the operator's (R-POST-3).
    for (status, rule) in [
        (PostingStatus::Draft, "R-POST-2"),
        (PostingStatus::Returned, "R-POST-2"),
        (PostingStatus::PendingReview, "R-POST-3"),
        (PostingStatus::Withdrawn, "R-POST-7"),
        (PostingStatus::Cancelled, "R-POST-7"),
        (PostingStatus::Expired, "R-POST-7"),
    ] {
        refused_by(
            at(now).given(history(status)).when(CancelPosting.into()),
            rule,
        );
    }
    refused_by(
        at(now)
            .given(published_then([modification_requested()]))
            .when(CancelPosting.into()),
        "R-POST-3",
    );
    assert_eq!(
        settled_timers(&PostingEvent::PostingCancelled { cancelled_at: now }),
        TimerKind::ALL
    );
}

#[test]
fn a_posting_expires_when_its_recruitment_period_ends() {
    // R-POST-7: the period ends 2026-03-31 (inclusive); expiry is 00:00 JST on 04-01.
    assert!(due_timers(&published()).contains(&DueTimer {
        due_at: jst("2026-04-01T00:00:00"),
        kind: TimerKind::ExpirePosting,
    }));
    let message = refused_by(
        at(jst("2026-03-31T23:59:59"))
            .given(history(PostingStatus::Published))
            .when(ExpirePosting.into()),
        "R-POST-7",
    );
    assert!(message.contains("2026-04-01 00:00:00 +09:00"), "{message}");
    at(jst("2026-04-01T00:00:00"))
        .given(history(PostingStatus::Published))
        .when(ExpirePosting.into())
        .then_expect_events(vec![expired()]);
    let posting = replay(history(PostingStatus::Expired));
    assert_eq!(posting.status(), Some(PostingStatus::Expired));
    assert_eq!(posting.public_content(), None);
    // A posting that left public search earlier does not expire again.
    for status in [
        PostingStatus::Withdrawn,
        PostingStatus::Cancelled,
        PostingStatus::RecruitmentStopped,
        PostingStatus::Expired,
    ] {
        refused_by(
            at(jst("2026-04-01T00:00:00"))
                .given(history(status))
                .when(ExpirePosting.into()),
            "R-POST-7",
        );
    }
}

#[test]
fn a_past_posting_is_reused_as_a_new_draft_linked_to_its_source() {
    // R-POST-7: the new draft starts at version 1 with the source's content.
    let new_id = Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_0002).into();
    at(jst("2026-05-01T09:00:00"))
        .given_no_previous_events()
        .when(
            CreateDraft {
                posting_id: new_id,
                organisation_id: ORGANISATION_ID,
                language: Language::Ja,
                content: complete_content(),
                reused_from: Some(POSTING_ID),
            }
            .into(),
        )
        .then_expect_events(vec![PostingEvent::PostingDrafted {
            posting_id: new_id,
            organisation_id: ORGANISATION_ID,
            language: Language::Ja,
            content: complete_content(),
            draft_version: 1,
            reused_from: Some(POSTING_ID),
        }]);
    refused_by(
        at(jst("2026-05-01T09:00:00"))
            .given_no_previous_events()
            .when(
                CreateDraft {
                    posting_id: POSTING_ID,
                    organisation_id: ORGANISATION_ID,
                    language: Language::Ja,
                    content: complete_content(),
                    reused_from: Some(POSTING_ID),
                }
                .into(),
            ),
        "R-POST-7",
    );
}
