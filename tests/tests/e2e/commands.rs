//! How commands fail and retry: every bad field at once, rules by their id, retried command ids
//! answered from their first outcome, concurrent writers on one version.

use jobboard_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{Backend, TestApp, command_id, content, date, employer, jst, position};

jobboard_testkit::on_both_backends!(
    a_malformed_create_draft_lists_every_bad_field_and_writes_nothing,
    saving_a_draft_while_it_is_pending_review_fails_with_r_post_3,
    a_retried_command_id_answers_its_first_outcome_and_appends_once,
    of_two_concurrent_saves_on_one_version_exactly_one_wins_the_other_is_aborted,
);

async fn a_malformed_create_draft_lists_every_bad_field_and_writes_nothing(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let before = app.read_all().await;

    let mut bad = content("   ");
    bad.recruitment_period = Some(pb::RecruitmentPeriod {
        start: Some(date(2026, 2, 30)),
        end: Some(date(2026, 3, 31)),
    });
    let status = app
        .postings(Some(&staff))
        .create_draft(pb::CreateDraftRequest {
            command_id: command_id(),
            posting_id: String::new(),
            language: pb::Language::Unspecified.into(),
            content: Some(bad),
        })
        .await
        .expect_err("the request is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<_> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    // R-POST-1 (language, dates) and R-POST-2 (a draft needs its title), in one answer.
    assert_eq!(
        fields,
        [
            "content.recruitment_period.start",
            "content.title",
            "language"
        ]
    );

    let after = app.read_all().await;
    assert_eq!(after.len(), before.len(), "nothing was appended");
    let listed = app
        .queries(Some(&staff))
        .list_postings(pb::ListPostingsRequest::default())
        .await
        .expect("ListPostings")
        .into_inner();
    assert!(listed.postings.is_empty(), "{listed:?}");
}

async fn saving_a_draft_while_it_is_pending_review_fails_with_r_post_3(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (id, submitted) = app.submitted(&staff).await;

    let status = app
        .postings(Some(&staff))
        .save_draft(pb::SaveDraftRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: Some(submitted.version),
            content: Some(content("edited while under review")),
        })
        .await
        .expect_err("R-POST-3 refuses the edit");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo details");
    // R-POST-3: only the operator acts on a pending registration request.
    assert_eq!(info.reason, "R-POST-3");
    let posting = app.get(&staff, &id, submitted.position).await;
    assert_eq!(posting.status, pb::PostingStatus::PendingReview as i32);
    assert_eq!(posting.version, submitted.version);
}

async fn a_retried_command_id_answers_its_first_outcome_and_appends_once(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (id, _) = app.create_draft(&staff).await;
    let request = pb::SubmitForReviewRequest {
        command_id: command_id(),
        posting_id: id.clone(),
        expected_version: None,
    };
    let mut postings = app.postings(Some(&staff));
    let submit = |request: pb::SubmitForReviewRequest| {
        let mut postings = postings.clone();
        async move {
            postings
                .submit_for_review(request)
                .await
                .expect("SubmitForReview")
                .into_inner()
                .result
                .expect("a result")
        }
    };
    let first = submit(request.clone()).await;
    // The retry arrives after the posting moved on; a fresh SubmitForReview would now be refused
    // (R-POST-3), but a retry is answered from its first outcome.
    let retried = submit(request).await;
    assert!(!first.duplicate);
    assert!(retried.duplicate);
    assert_eq!(retried.version, first.version);
    assert_eq!(retried.position, first.position);
    assert_eq!(retried.stream_id, first.stream_id);

    let fresh = postings
        .submit_for_review(pb::SubmitForReviewRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
        })
        .await
        .expect_err("a new submission is refused");
    assert_eq!(fresh.code(), Code::FailedPrecondition);

    let events = app
        .feed()
        .read_stream(pb::ReadStreamRequest {
            stream_id: first.stream_id.clone(),
            ..pb::ReadStreamRequest::default()
        })
        .await
        .expect("ReadStream")
        .into_inner()
        .events;
    let submissions: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "PostingSubmitted")
        .collect();
    assert_eq!(submissions.len(), 1, "the log holds the submission once");
    let first_position = first.position.expect("a position");
    assert_eq!(
        position(submissions[0]),
        (first_position.tx_id, first_position.position)
    );
}

async fn of_two_concurrent_saves_on_one_version_exactly_one_wins_the_other_is_aborted(
    backend: Backend,
) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (id, created) = app.create_draft(&staff).await;
    let save = |title: &'static str| {
        let mut postings = app.postings(Some(&staff));
        let request = pb::SaveDraftRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: Some(created.version),
            content: Some(content(title)),
        };
        async move { postings.save_draft(request).await }
    };
    let (left, right) = tokio::join!(tokio::spawn(save("left")), tokio::spawn(save("right")));
    let outcomes = [left.expect("no panic"), right.expect("no panic")];
    let won: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let lost: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{outcomes:?}");
    assert_eq!(lost[0].code(), Code::Aborted, "{:?}", lost[0]);
    assert!(
        lost[0].message().contains("expected version 1"),
        "{:?}",
        lost[0]
    );
    let winner = won[0].get_ref().result.clone().expect("a result");
    assert_eq!(winner.version, 2);
    let posting = app.get(&staff, &id, winner.position).await;
    assert_eq!(posting.version, 2);
    assert_eq!(posting.draft_version, 2);
}
