//! Modification requests (R-POST-5): proposed beside the public content, reviewed like a
//! registration (R-POST-3), published by R-POST-4's timing, closed two weeks after the end.

use jobboard_domain::posting::{
    ApproveModification, DiscardModification, DueTimer, LockModifications, ModificationStatus,
    PostingCommand, PostingEvent, PostingStatus, PublishModification, RequestModification,
    RequestWithdrawal, ReturnModification, SaveDraft, TimerKind, due_timers, settled_timers,
};

use crate::support::{
    ALL_STATUSES, at, complete_content, date, expired, history, jst, modification_approved,
    modification_published, modification_requested, modified_content, published_then, refused_by,
    replay,
};

fn request(content: jobboard_domain::posting::PostingContent) -> PostingCommand {
    RequestModification { content }.into()
}

#[test]
fn a_published_posting_is_changed_through_a_modification_request() {
    // R-POST-5
    at(jst("2026-02-05T10:00:00"))
        .given(history(PostingStatus::Published))
        .when(request(modified_content()))
        .then_expect_events(vec![modification_requested()]);
}

#[test]
fn the_public_content_stays_until_the_change_takes_effect() {
    // R-POST-5: requested and approved changes are not public yet.
    for events in [
        published_then([modification_requested()]),
        published_then([modification_requested(), modification_approved()]),
    ] {
        let posting = replay(events);
        assert_eq!(posting.public_content(), Some(&complete_content()));
        assert_eq!(posting.status(), Some(PostingStatus::Published));
        assert_eq!(
            posting.modification().map(|m| &m.content),
            Some(&modified_content())
        );
    }
    let posting = replay(published_then([
        modification_requested(),
        modification_approved(),
        modification_published(),
    ]));
    assert_eq!(posting.public_content(), Some(&modified_content()));
    assert_eq!(posting.modification(), None);
    assert_eq!(posting.expires_at(), Some(jst("2026-05-01T00:00:00")));
}

#[test]
fn editing_while_a_modification_is_pending_review_is_refused() {
    // R-POST-3: the employer cannot touch a request under review, nor ask for withdrawal.
    let pending = published_then([modification_requested()]);
    let message = refused_by(
        at(jst("2026-02-05T11:00:00"))
            .given(pending.clone())
            .when(request(complete_content())),
        "R-POST-3",
    );
    assert!(message.contains("already pending review"), "{message}");
    refused_by(
        at(jst("2026-02-05T11:00:00"))
            .given(pending.clone())
            .when(DiscardModification.into()),
        "R-POST-3",
    );
    refused_by(
        at(jst("2026-02-05T11:00:00"))
            .given(pending)
            .when(RequestWithdrawal.into()),
        "R-POST-3",
    );
}

#[test]
fn the_operator_returns_a_modification_and_the_employer_sends_a_new_one() {
    // R-POST-5 reviewed like R-POST-3: returned, then replaced.
    at(jst("2026-02-05T15:00:00"))
        .given(published_then([modification_requested()]))
        .when(
            ReturnModification {
                reasons: vec!["給与を明記してください".to_owned()],
            }
            .into(),
        )
        .then_expect_events(vec![PostingEvent::ModificationReturned {
            reasons: vec!["給与を明記してください".to_owned()],
        }]);
    refused_by(
        at(jst("2026-02-05T15:00:00"))
            .given(history(PostingStatus::Published))
            .when(
                ReturnModification {
                    reasons: vec!["x".to_owned()],
                }
                .into(),
            ),
        "R-POST-5",
    );
    let returned = published_then([
        modification_requested(),
        PostingEvent::ModificationReturned {
            reasons: vec!["給与を明記してください".to_owned()],
        },
    ]);
    let posting = replay(returned.clone());
    let modification = posting.modification().expect("kept after return");
    assert_eq!(modification.status, ModificationStatus::Returned);
    assert_eq!(modification.return_reasons, ["給与を明記してください"]);
    assert!(!posting.review_pending());
    at(jst("2026-02-06T09:00:00"))
        .given(returned.clone())
        .when(request(modified_content()))
        .then_expect_events(vec![PostingEvent::ModificationRequested {
            content: modified_content(),
            requested_at: jst("2026-02-06T09:00:00"),
        }]);
    at(jst("2026-02-06T09:00:00"))
        .given(returned)
        .when(DiscardModification.into())
        .then_expect_events(vec![PostingEvent::ModificationDiscarded]);
}

#[test]
fn an_approved_change_takes_effect_by_the_publication_rule() {
    // R-POST-5 with R-POST-4: a later date at 00:00, the approval day at 22:00.
    at(jst("2026-02-06T10:00:00"))
        .given(published_then([modification_requested()]))
        .when(
            ApproveModification {
                publish_date: date("2026-02-08"),
            }
            .into(),
        )
        .then_expect_events(vec![modification_approved()]);
    at(jst("2026-02-06T10:00:00"))
        .given(published_then([modification_requested()]))
        .when(
            ApproveModification {
                publish_date: date("2026-02-06"),
            }
            .into(),
        )
        .then_expect_events(vec![PostingEvent::ModificationApproved {
            publish_date: date("2026-02-06"),
            effective_at: jst("2026-02-06T22:00:00"),
        }]);
    refused_by(
        at(jst("2026-02-06T10:00:00"))
            .given(published_then([modification_requested()]))
            .when(
                ApproveModification {
                    publish_date: date("2026-02-05"),
                }
                .into(),
            ),
        "R-POST-4",
    );
}

#[test]
fn the_change_is_published_at_its_minute_not_before() {
    // R-POST-5: the timer publishes the change when due.
    let approved = published_then([modification_requested(), modification_approved()]);
    let message = refused_by(
        at(jst("2026-02-07T23:59:59"))
            .given(approved.clone())
            .when(PublishModification.into()),
        "R-POST-5",
    );
    assert!(message.contains("2026-02-08 00:00:00 +09:00"), "{message}");
    at(jst("2026-02-08T00:00:00"))
        .given(approved)
        .when(PublishModification.into())
        .then_expect_events(vec![modification_published()]);
}

#[test]
fn modifications_need_a_complete_content() {
    // R-POST-5 reviewed like R-POST-3: the proposal must be a complete posting.
    let content = jobboard_domain::posting::PostingContent {
        location: String::new(),
        ..modified_content()
    };
    let refusal = crate::support::refusal(
        at(jst("2026-02-05T10:00:00"))
            .given(history(PostingStatus::Published))
            .when(request(content)),
    );
    assert_eq!(
        refusal.violations()[0].field,
        "content.location",
        "{refusal:?}"
    );
}

#[test]
fn a_modification_is_refused_two_weeks_after_the_recruitment_end() {
    // R-POST-5: the period ends 2026-03-31; modifications close at 00:00 on 04-15.
    let events = {
        let mut events = history(PostingStatus::Published);
        events.push(expired());
        events
    };
    at(jst("2026-04-14T23:59:59"))
        .given(events.clone())
        .when(request(modified_content()))
        .then_expect_events(vec![PostingEvent::ModificationRequested {
            content: modified_content(),
            requested_at: jst("2026-04-14T23:59:59"),
        }]);
    let message = refused_by(
        at(jst("2026-04-15T00:00:00"))
            .given(events)
            .when(request(modified_content())),
        "R-POST-5",
    );
    assert!(message.contains("2026-04-15 00:00:00 +09:00"), "{message}");
}

#[test]
fn the_lock_timer_closes_modifications_at_the_deadline() {
    // R-POST-5: the deadline is a timer too, so the read side sees the lock.
    refused_by(
        at(jst("2026-04-14T23:59:59"))
            .given(history(PostingStatus::Expired))
            .when(LockModifications.into()),
        "R-POST-5",
    );
    at(jst("2026-04-15T00:00:00"))
        .given(history(PostingStatus::Expired))
        .when(LockModifications.into())
        .then_expect_events(vec![PostingEvent::ModificationsLocked {
            locked_at: jst("2026-04-15T00:00:00"),
        }]);
    let mut locked = history(PostingStatus::Expired);
    locked.push(PostingEvent::ModificationsLocked {
        locked_at: jst("2026-04-15T00:00:00"),
    });
    assert!(replay(locked.clone()).modifications_locked());
    refused_by(
        at(jst("2026-04-15T00:00:01"))
            .given(locked)
            .when(request(modified_content())),
        "R-POST-5",
    );
}

#[test]
fn an_extension_reopens_an_expired_posting() {
    // R-POST-5: within two weeks of the end, a later end date brings it back to public search.
    let posting = replay({
        let mut events = history(PostingStatus::Expired);
        events.extend([
            modification_requested(),
            modification_approved(),
            PostingEvent::ModificationPublished {
                content: modified_content(),
                published_at: jst("2026-04-03T00:00:00"),
                expires_at: Some(jst("2026-05-01T00:00:00")),
                modifiable_until: Some(jst("2026-05-15T00:00:00")),
            },
        ]);
        events
    });
    assert_eq!(posting.status(), Some(PostingStatus::Published));
    assert_eq!(posting.public_content(), Some(&modified_content()));
}

#[test]
fn shortening_the_end_to_today_is_a_modification_that_expires_the_posting() {
    // R-POST-6: a shortened end date goes through review and takes effect after it; the expiry
    // it sets is already due, so the posting expires at once (R-POST-7).
    let shortened = jobboard_domain::posting::PostingContent {
        recruitment_period: Some(jobboard_domain::posting::RecruitmentPeriod {
            start: date("2026-02-01"),
            end: date("2026-02-09"),
        }),
        ..complete_content()
    };
    let approved = published_then([
        PostingEvent::ModificationRequested {
            content: shortened.clone(),
            requested_at: jst("2026-02-09T10:00:00"),
        },
        PostingEvent::ModificationApproved {
            publish_date: date("2026-02-10"),
            effective_at: jst("2026-02-10T22:00:00"),
        },
    ]);
    let change = PostingEvent::ModificationPublished {
        content: shortened,
        published_at: jst("2026-02-10T22:00:00"),
        expires_at: Some(jst("2026-02-10T00:00:00")),
        modifiable_until: Some(jst("2026-02-24T00:00:00")),
    };
    at(jst("2026-02-10T22:00:00"))
        .given(approved.clone())
        .when(PublishModification.into())
        .then_expect_events(vec![change.clone()]);
    let mut events = approved;
    events.push(change);
    at(jst("2026-02-10T22:00:00"))
        .given(events)
        .when(jobboard_domain::posting::ExpirePosting.into())
        .then_expect_events(vec![PostingEvent::PostingExpired {
            expired_at: jst("2026-02-10T22:00:00"),
        }]);
}

#[test]
fn approved_and_published_changes_set_and_settle_their_timers() {
    // R-POST-5, R-POST-7: the timer layer finds every deadline in the log.
    assert_eq!(
        due_timers(&modification_approved()),
        [DueTimer {
            due_at: jst("2026-02-08T00:00:00"),
            kind: TimerKind::PublishModification,
        }]
    );
    assert_eq!(
        due_timers(&modification_published()),
        [
            DueTimer {
                due_at: jst("2026-05-01T00:00:00"),
                kind: TimerKind::ExpirePosting,
            },
            DueTimer {
                due_at: jst("2026-05-15T00:00:00"),
                kind: TimerKind::LockModifications,
            },
        ]
    );
    assert_eq!(
        settled_timers(&modification_published()),
        [TimerKind::PublishModification]
    );
}

#[test]
fn only_approved_published_or_expired_postings_take_modifications() {
    // R-POST-5 (R-POST-3 while pending review, R-POST-6 while a withdrawal is pending).
    for status in ALL_STATUSES {
        let rule = match status {
            PostingStatus::Approved | PostingStatus::Published | PostingStatus::Expired => continue,
            PostingStatus::PendingReview => "R-POST-3",
            PostingStatus::WithdrawalPending => "R-POST-6",
            _ => "R-POST-5",
        };
        refused_by(
            at(jst("2026-02-11T09:00:00"))
                .given(history(status))
                .when(request(modified_content())),
            rule,
        );
    }
    // And a draft is edited by saving, never by a modification.
    at(jst("2026-02-11T09:00:00"))
        .given(history(PostingStatus::Draft))
        .when(
            SaveDraft {
                content: modified_content(),
            }
            .into(),
        )
        .then_expect_events(vec![PostingEvent::DraftSaved {
            content: modified_content(),
            draft_version: 2,
        }]);
}
