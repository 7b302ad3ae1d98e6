//! Creating, saving, submitting, returning, approving and discarding: R-POST-1 to R-POST-3,
//! and the refusals that name R-POST-5.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use jobboard_domain::posting::{
    ApprovePosting, CompleteWithdrawal, CreateDraft, DiscardDraft, FieldViolation, Language,
    Posting, PostingCommand, PostingContent, PostingError, PostingEvent, PostingStatus,
    PublishPosting, RequestWithdrawal, ReturnPosting, SaveDraft, SubmitForReview,
};

use crate::support::{
    ALL_STATUSES, ORGANISATION_ID, POSTING_ID, at, complete_content, date, drafted, history, jst,
    minimal_content, refusal, refused_by, replay, returned, submitted,
};

fn now() -> DateTime<Utc> {
    jst("2026-01-30T10:00:00")
}

fn create(content: PostingContent) -> PostingCommand {
    CreateDraft {
        posting_id: POSTING_ID,
        organisation_id: ORGANISATION_ID,
        language: Language::Ja,
        content,
        reused_from: None,
    }
    .into()
}

fn violation(field: &str, description: &str) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.to_owned(),
    }
}

/// Every command except `CreateDraft`, for tests that try them all.
fn every_other_command() -> Vec<PostingCommand> {
    vec![
        SaveDraft {
            content: minimal_content(),
        }
        .into(),
        DiscardDraft.into(),
        SubmitForReview.into(),
        ReturnPosting {
            reasons: vec!["unclear".to_owned()],
        }
        .into(),
        ApprovePosting {
            publish_date: date("2026-02-01"),
        }
        .into(),
        PublishPosting.into(),
        RequestWithdrawal.into(),
        CompleteWithdrawal.into(),
    ]
}

#[test]
fn creating_a_draft_needs_only_name_and_title_and_starts_at_version_1() {
    // R-POST-1, R-POST-2: a draft may be saved with only the required fields.
    at(now())
        .given_no_previous_events()
        .when(create(minimal_content()))
        .then_expect_events(vec![drafted(minimal_content())]);
}

#[test]
fn creating_a_draft_without_a_title_is_refused_with_the_field() {
    // R-POST-2
    let content = PostingContent {
        title: " \u{3000} ".to_owned(),
        ..minimal_content()
    };
    let error = refusal(at(now()).given_no_previous_events().when(create(content)));
    assert_eq!(
        error,
        PostingError::InvalidContent(vec![violation("content.title", "must not be blank")])
    );
    assert_eq!(
        error.to_string(),
        "invalid content: content.title: must not be blank"
    );
}

#[test]
fn creating_a_posting_that_exists_is_refused_in_every_status() {
    for status in ALL_STATUSES {
        let error = refusal(
            at(now())
                .given(history(status))
                .when(create(minimal_content())),
        );
        assert_eq!(error, PostingError::AlreadyExists, "{status:?}");
    }
}

#[test]
fn every_other_command_on_a_missing_posting_is_not_found() {
    for command in every_other_command() {
        let name = command.name();
        let error = refusal(at(now()).given_no_previous_events().when(command));
        assert_eq!(error, PostingError::NotFound, "{name}");
        assert_eq!(error.to_string(), "posting not found");
    }
}

#[test]
fn saving_a_draft_records_the_next_version_each_time() {
    // R-POST-2: every save is a new version; the log keeps them all.
    let second = PostingEvent::DraftSaved {
        content: minimal_content(),
        draft_version: 2,
    };
    at(now())
        .given(vec![drafted(minimal_content()), second])
        .when(
            SaveDraft {
                content: complete_content(),
            }
            .into(),
        )
        .then_expect_events(vec![PostingEvent::DraftSaved {
            content: complete_content(),
            draft_version: 3,
        }]);
}

#[test]
fn saving_keeps_the_content_exactly_as_typed() {
    // R-POST-2: nothing is trimmed or rewritten.
    let content = PostingContent {
        name: "  spaced name\t".to_owned(),
        title: "\u{3000}全角スペース付き".to_owned(),
        ..minimal_content()
    };
    at(now())
        .given(vec![drafted(minimal_content())])
        .when(
            SaveDraft {
                content: content.clone(),
            }
            .into(),
        )
        .then_expect_events(vec![PostingEvent::DraftSaved {
            content,
            draft_version: 2,
        }]);
}

#[test]
fn saving_invalid_content_is_refused_and_records_nothing() {
    // R-POST-2
    let content = PostingContent {
        name: String::new(),
        title: "x".repeat(201),
        ..minimal_content()
    };
    let error = refusal(
        at(now())
            .given(vec![drafted(minimal_content())])
            .when(SaveDraft { content }.into()),
    );
    assert_eq!(
        error.violations(),
        [
            violation("content.name", "must not be blank"),
            violation("content.title", "must be at most 200 characters (has 201)"),
        ]
    );
}

#[test]
fn a_returned_posting_can_be_saved_and_stays_returned() {
    // R-POST-2, R-POST-3: a returned posting is editable like a draft.
    let events = history(PostingStatus::Returned);
    let saved = PostingEvent::DraftSaved {
        content: complete_content(),
        draft_version: 2,
    };
    at(now())
        .given(events.clone())
        .when(
            SaveDraft {
                content: complete_content(),
            }
            .into(),
        )
        .then_expect_events(vec![saved.clone()]);
    let posting = replay(events.into_iter().chain([saved]));
    assert_eq!(posting.status(), Some(PostingStatus::Returned));
    assert_eq!(posting.draft_version(), Some(2));
}

#[test]
fn pending_review_refuses_editing_discarding_and_resubmitting_by_the_employer() {
    // R-POST-3: while a registration request is pending, the employer can neither edit the
    // posting nor take the request back.
    let commands: [PostingCommand; 3] = [
        SaveDraft {
            content: complete_content(),
        }
        .into(),
        DiscardDraft.into(),
        SubmitForReview.into(),
    ];
    for command in commands {
        let name = command.name();
        let message = refused_by(
            at(now())
                .given(history(PostingStatus::PendingReview))
                .when(command),
            "R-POST-3",
        );
        assert!(message.contains("pending review"), "{name}: {message}");
    }
}

#[test]
fn submitting_records_the_current_content_and_draft_version() {
    // R-POST-3: the request snapshots what is under review.
    let saved = PostingEvent::DraftSaved {
        content: complete_content(),
        draft_version: 2,
    };
    at(now())
        .given(vec![drafted(minimal_content()), saved])
        .when(SubmitForReview.into())
        .then_expect_events(vec![PostingEvent::PostingSubmitted {
            content: complete_content(),
            draft_version: 2,
        }]);
}

#[test]
fn submitting_an_incomplete_draft_lists_every_missing_field() {
    // R-POST-3: a registration request must be complete; every gap is reported at once.
    let error = refusal(
        at(now())
            .given(vec![drafted(minimal_content())])
            .when(SubmitForReview.into()),
    );
    assert_eq!(error.rule_id(), Some("R-POST-3"));
    assert!(matches!(error, PostingError::Incomplete(_)));
    assert_eq!(
        error.violations(),
        [
            violation("content.description", "must not be blank"),
            violation("content.employment_terms", "must not be blank"),
            violation("content.location", "must not be blank"),
            violation("content.institution_type", "must be set"),
            violation("content.recruitment_period", "must be set"),
            violation("content.referral_period_end", "must be set"),
        ]
    );
}

#[test]
fn a_returned_posting_can_be_resubmitted() {
    // R-POST-3
    at(now())
        .given(history(PostingStatus::Returned))
        .when(SubmitForReview.into())
        .then_expect_events(vec![submitted()]);
}

#[test]
fn returning_records_the_operators_reasons() {
    // R-POST-3: only the operator returns a pending request.
    at(now())
        .given(history(PostingStatus::PendingReview))
        .when(
            ReturnPosting {
                reasons: vec!["勤務地を具体的に記載してください".to_owned()],
            }
            .into(),
        )
        .then_expect_events(vec![returned()]);
}

#[test]
fn returning_needs_at_least_one_reason_and_no_blank_one() {
    // R-POST-3
    let given = || at(now()).given(history(PostingStatus::PendingReview));
    let none = refusal(given().when(ReturnPosting { reasons: vec![] }.into()));
    assert_eq!(
        none.violations(),
        [violation("reasons", "must give at least one reason")]
    );
    let blank = refusal(
        given().when(
            ReturnPosting {
                reasons: vec!["ok".to_owned(), "  ".to_owned()],
            }
            .into(),
        ),
    );
    assert_eq!(
        blank.violations(),
        [violation("reasons[1]", "must not be blank")]
    );
}

#[test]
fn only_a_posting_pending_review_can_be_returned_or_approved() {
    // R-POST-3: return and approve act on a pending request only.
    for status in ALL_STATUSES {
        if status == PostingStatus::PendingReview {
            continue;
        }
        refused_by(
            at(now()).given(history(status)).when(
                ReturnPosting {
                    reasons: vec!["unclear".to_owned()],
                }
                .into(),
            ),
            "R-POST-3",
        );
        refused_by(
            at(now()).given(history(status)).when(
                ApprovePosting {
                    publish_date: date("2026-02-01"),
                }
                .into(),
            ),
            "R-POST-3",
        );
    }
}

#[test]
fn editing_or_resubmitting_after_approval_points_to_modification_requests() {
    // R-POST-5: once approved, changes go through a modification request.
    for status in [
        PostingStatus::Approved,
        PostingStatus::Published,
        PostingStatus::WithdrawalPending,
    ] {
        let save = SaveDraft {
            content: complete_content(),
        };
        for command in [save.into(), PostingCommand::from(SubmitForReview)] {
            let message = refused_by(at(now()).given(history(status)).when(command), "R-POST-5");
            assert!(message.contains("modification request"), "{message}");
        }
    }
}

#[test]
fn a_draft_or_a_returned_posting_can_be_discarded() {
    // R-POST-2
    for status in [PostingStatus::Draft, PostingStatus::Returned] {
        at(now())
            .given(history(status))
            .when(DiscardDraft.into())
            .then_expect_events(vec![PostingEvent::DraftDiscarded]);
    }
}

#[test]
fn discarding_is_refused_once_the_posting_left_the_employers_hands() {
    // R-POST-2 (drafts only), R-POST-3 (not while pending review).
    for (status, rule) in [
        (PostingStatus::PendingReview, "R-POST-3"),
        (PostingStatus::Approved, "R-POST-2"),
        (PostingStatus::Published, "R-POST-2"),
        (PostingStatus::WithdrawalPending, "R-POST-2"),
        (PostingStatus::Withdrawn, "R-POST-2"),
        (PostingStatus::Discarded, "R-POST-2"),
    ] {
        refused_by(
            at(now()).given(history(status)).when(DiscardDraft.into()),
            rule,
        );
    }
}

#[test]
fn a_discarded_posting_still_exists_but_accepts_no_command() {
    let events = history(PostingStatus::Discarded);
    assert!(replay(events.clone()).exists());
    for command in every_other_command() {
        let name = command.name();
        let error = refusal(at(now()).given(events.clone()).when(command));
        assert!(error.rule_id().is_some(), "{name}: {error:?}");
    }
}

#[test]
fn read_helpers_follow_the_lifecycle() {
    let missing = replay([]);
    assert!(!missing.exists());
    assert_eq!(missing.status(), None);
    assert_eq!(missing.organisation_id(), None);

    for status in ALL_STATUSES {
        let posting = replay(history(status));
        assert!(posting.exists());
        assert_eq!(posting.status(), Some(status));
        assert_eq!(posting.posting_id(), Some(POSTING_ID));
        assert_eq!(posting.organisation_id(), Some(ORGANISATION_ID));
        assert_eq!(posting.language(), Some(Language::Ja));
    }

    let withdrawn = replay(history(PostingStatus::Withdrawn));
    assert_eq!(withdrawn.publish_date(), Some(date("2026-02-01")));
    assert_eq!(withdrawn.publishes_at(), Some(jst("2026-02-01T00:00:00")));
    assert_eq!(withdrawn.published_at(), Some(jst("2026-02-01T00:00:00")));
    assert_eq!(
        withdrawn.withdrawal_effective_at(),
        Some(jst("2026-02-10T22:00:00"))
    );
    assert_eq!(withdrawn.content(), Some(&complete_content()));
}

#[test]
fn applying_every_event_twice_leaves_the_same_state() {
    // cqrs-es may apply an event twice when it snapshots (ADR 0005): apply must be idempotent.
    let mut events = history(PostingStatus::Withdrawn);
    events.insert(
        1,
        PostingEvent::DraftSaved {
            content: complete_content(),
            draft_version: 2,
        },
    );
    let once = replay(events.clone());
    let mut twice = Posting::default();
    for event in events {
        twice.apply(event.clone());
        twice.apply(event);
    }
    assert_eq!(twice, once);
}

#[test]
fn the_aggregate_state_survives_a_snapshot_round_trip() {
    // Snapshots store the aggregate as JSON; it must come back equal.
    let posting = replay(history(PostingStatus::WithdrawalPending));
    let json = serde_json::to_value(&posting).expect("serialise");
    let back: Posting = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, posting);
}

#[test]
fn a_rule_error_reads_rule_then_message() {
    // R-POST-3
    let error = refusal(
        at(now())
            .given(history(PostingStatus::PendingReview))
            .when(SubmitForReview.into()),
    );
    assert_eq!(error.rule_id(), Some("R-POST-3"));
    assert_eq!(
        error.to_string(),
        "R-POST-3: the posting is already pending review"
    );
}
