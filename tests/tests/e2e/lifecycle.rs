//! A posting's whole life over gRPC, with the service's clock under the test's control:
//! drafted, saved, submitted, approved, published by the timer at its instant, withdrawn.

use jobboard_proto::v1 as pb;
use jobboard_proto::v1::PostingStatus;

use crate::support::{
    Backend, TestApp, command_id, content, date, employer, jst, operator, timestamp,
};

jobboard_testkit::on_both_backends!(
    a_posting_is_drafted_reviewed_published_on_time_and_withdrawn_at_22_00
);

async fn a_posting_is_drafted_reviewed_published_on_time_and_withdrawn_at_22_00(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let mut postings = app.postings(Some(&staff));

    // R-POST-1, R-POST-2: a draft, then two saved versions, each on the version it read.
    let (id, created) = app.create_draft(&staff).await;
    assert_eq!((created.version, created.duplicate), (1, false));
    assert_eq!(created.stream_id, format!("posting-{id}"));
    let mut version = created.version;
    for title in ["研究員 (v2)", "研究員 (v3)"] {
        let saved = postings
            .save_draft(pb::SaveDraftRequest {
                command_id: command_id(),
                posting_id: id.clone(),
                expected_version: Some(version),
                content: Some(content(title)),
            })
            .await
            .expect("SaveDraft")
            .into_inner()
            .result
            .expect("a result");
        assert_eq!(saved.version, version + 1);
        version = saved.version;
    }

    // R-POST-3: the registration request.
    let submitted = app.submit(&staff, &id).await;
    assert_eq!(submitted.version, 4);

    // R-POST-4: approved on 01-30 for 02-02, a later day, so public at 00:00 JST on 02-02.
    let approved = app.approve(&id, date(2026, 2, 2)).await.expect("approve");
    let posting = app.get(&staff, &id, approved.position).await;
    assert_eq!(posting.status, PostingStatus::Approved as i32);
    assert_eq!(posting.version, 5);
    assert_eq!(posting.draft_version, 3);
    assert_eq!(posting.content.as_ref().unwrap().title, "研究員 (v3)");
    assert_eq!(
        posting.publishes_at,
        Some(timestamp(jst("2026-02-02T00:00:00")))
    );
    assert_eq!(posting.published_at, None);

    // One second before, the deadline is not due. To know the timers have really looked at the
    // moved clock (twice) rather than sleep and hope, two witness postings of another employer
    // are approved for "today" at 23:59:59, which makes them due at once: each is published by a
    // timer pass at this clock. Passes run one after the other and fire everything due, so once
    // the second witness is public, a pass that saw the clock at 23:59:59 has finished, and had
    // the posting been due it would be public now too.
    let witnesses = employer();
    let (first_witness, _) = app.submitted(&witnesses).await;
    let (second_witness, _) = app.submitted(&witnesses).await;
    app.clock.set(jst("2026-02-01T23:59:59"));
    for witness in [&first_witness, &second_witness] {
        app.approve(witness, date(2026, 2, 1))
            .await
            .expect("approve a witness");
        app.wait_for_status(witness, PostingStatus::Published).await;
    }
    let posting = app.get(&staff, &id, None).await;
    assert_eq!(
        posting.status,
        PostingStatus::Approved as i32,
        "not due yet"
    );

    // At the instant, the timer publishes it.
    app.clock.set(jst("2026-02-02T00:00:00"));
    let posting = app.wait_for_status(&id, PostingStatus::Published).await;
    assert_eq!(
        posting.published_at,
        Some(timestamp(jst("2026-02-02T00:00:00")))
    );

    // R-POST-6: withdrawal requested at 10:00 takes effect at 22:00 the same day.
    app.clock.set(jst("2026-02-02T10:00:00"));
    let requested = postings
        .request_withdrawal(pb::RequestWithdrawalRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: Some(posting.version),
        })
        .await
        .expect("RequestWithdrawal")
        .into_inner()
        .result
        .expect("a result");
    let posting = app.get(&staff, &id, requested.position).await;
    assert_eq!(posting.status, PostingStatus::WithdrawalPending as i32);
    assert_eq!(
        posting.withdrawal_effective_at,
        Some(timestamp(jst("2026-02-02T22:00:00")))
    );

    app.clock.set(jst("2026-02-02T22:00:00"));
    let posting = app.wait_for_status(&id, PostingStatus::Withdrawn).await;
    assert_eq!(
        posting.withdrawn_at,
        Some(timestamp(jst("2026-02-02T22:00:00")))
    );

    // The employer's own list shows it, withdrawn; the witnesses belong to someone else.
    let list = app
        .queries(Some(&staff))
        .list_postings(pb::ListPostingsRequest::default())
        .await
        .expect("ListPostings")
        .into_inner();
    let listed: Vec<_> = list
        .postings
        .iter()
        .map(|p| (p.posting_id.as_str(), p.status))
        .collect();
    assert_eq!(listed, [(id.as_str(), PostingStatus::Withdrawn as i32)]);
    assert!(list.next_page_token.is_empty());
    // The operator sees every organisation's postings.
    let all = app
        .queries(Some(&operator()))
        .list_postings(pb::ListPostingsRequest::default())
        .await
        .expect("ListPostings as the operator")
        .into_inner();
    assert_eq!(all.postings.len(), 3);
}
