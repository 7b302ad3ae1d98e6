//! The whole posting lifecycle over gRPC, as an employer and an operator live it, with the
//! service restarted between deadlines: draft, save twice, submit, edit refused, return, edit,
//! resubmit, approve, published at its minute, modification requested and approved, the change
//! public at its minute, withdrawal at 22:00, reuse as a new draft (R-POST-1 to R-POST-7).

use jobboard_proto::v1 as pb;
use jobboard_proto::v1::PostingStatus;
use tonic::Code;

use crate::support::{
    Backend, TestApp, command_id, content, date, employer, jst, operator, timestamp,
};

jobboard_testkit::on_both_backends!(the_whole_lifecycle_walks_from_draft_to_reuse_across_restarts);

fn rule_of(status: &tonic::Status) -> String {
    status
        .message()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn the_whole_lifecycle_walks_from_draft_to_reuse_across_restarts(backend: Backend) {
    let mut app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let mut postings = app.postings(Some(&staff));
    let mut reviewer = app.postings(Some(&operator()));

    // R-POST-2: a draft saved twice; every version stays readable.
    let (id, _) = app.create_draft(&staff).await;
    for title in ["研究員 (v2)", "研究員 (v3)"] {
        postings
            .save_draft(pb::SaveDraftRequest {
                command_id: command_id(),
                posting_id: id.clone(),
                expected_version: None,
                content: Some(content(title)),
            })
            .await
            .expect("SaveDraft");
    }
    // R-POST-3: submitted; editing is refused while the request is pending.
    let submitted = app.submit(&staff, &id).await;
    let refused = postings
        .save_draft(pb::SaveDraftRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
            content: Some(content("研究員 (too late)")),
        })
        .await
        .expect_err("editing while pending review");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(rule_of(&refused), "R-POST-3");
    let queue = app
        .queries(Some(&operator()))
        .list_review_queue(pb::ListReviewQueueRequest {
            min_position: submitted.position,
            ..Default::default()
        })
        .await
        .expect("ListReviewQueue")
        .into_inner();
    assert_eq!(queue.postings.len(), 1);
    assert_eq!(queue.postings[0].posting_id, id);

    // Returned with reasons, edited, resubmitted.
    reviewer
        .return_posting(pb::ReturnPostingRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
            reasons: vec!["給与を明記してください".into()],
        })
        .await
        .expect("ReturnPosting");
    postings
        .save_draft(pb::SaveDraftRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
            content: Some(content("研究員 (v4, 給与あり)")),
        })
        .await
        .expect("SaveDraft after the return");
    app.submit(&staff, &id).await;

    // R-POST-4: approved on 01-30 for 02-01, so public at 00:00 JST on 02-01.
    let approved = app.approve(&id, date(2026, 2, 1)).await.expect("approve");
    let posting = app.get(&staff, &id, approved.position).await;
    assert_eq!(posting.status, PostingStatus::Approved as i32);
    let versions = app
        .queries(Some(&staff))
        .list_draft_versions(pb::ListDraftVersionsRequest {
            posting_id: id.clone(),
            min_position: approved.position,
        })
        .await
        .expect("ListDraftVersions")
        .into_inner()
        .versions;
    let titles: Vec<_> = versions
        .iter()
        .map(|v| (v.draft_version, v.content.as_ref().unwrap().title.as_str()))
        .collect();
    assert_eq!(
        titles,
        [
            (1, "ポスドク研究員"),
            (2, "研究員 (v2)"),
            (3, "研究員 (v3)"),
            (4, "研究員 (v4, 給与あり)"),
        ]
    );

    // A restart before the deadline: the timer is found again in the log.
    app.stop().await;
    app.restart().await;
    app.clock.set(jst("2026-02-01T00:00:00"));
    let posting = app.wait_for_status(&id, PostingStatus::Published).await;
    assert_eq!(
        posting.published_at,
        Some(timestamp(jst("2026-02-01T00:00:00")))
    );
    assert_eq!(
        posting.expires_at,
        Some(timestamp(jst("2026-04-01T00:00:00")))
    );

    // R-POST-5: the modification waits beside the public content.
    let mut postings = app.postings(Some(&staff));
    let mut reviewer = app.postings(Some(&operator()));
    app.clock.set(jst("2026-02-05T10:00:00"));
    let mut changed = content("研究員 (v5, 延長)");
    changed.recruitment_period.as_mut().unwrap().end = Some(date(2026, 4, 30));
    let requested = postings
        .request_modification(pb::RequestModificationRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
            content: Some(changed),
        })
        .await
        .expect("RequestModification")
        .into_inner()
        .result
        .expect("a result");
    let posting = app.get(&staff, &id, requested.position).await;
    assert_eq!(
        posting.content.as_ref().unwrap().title,
        "研究員 (v4, 給与あり)"
    );
    let modification = posting.modification.expect("a pending modification");
    assert_eq!(
        modification.status,
        pb::ModificationStatus::PendingReview as i32
    );
    let refused = postings
        .request_withdrawal(pb::RequestWithdrawalRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
        })
        .await
        .expect_err("withdrawal while a modification is pending");
    assert_eq!(rule_of(&refused), "R-POST-3");

    // Approved for today: the change takes effect at 22:00 (R-POST-4).
    let approved = reviewer
        .approve_modification(pb::ApproveModificationRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
            publish_date: Some(date(2026, 2, 5)),
        })
        .await
        .expect("ApproveModification")
        .into_inner()
        .result
        .expect("a result");
    let posting = app.get(&staff, &id, approved.position).await;
    let modification = posting.modification.expect("an approved modification");
    assert_eq!(
        modification.effective_at,
        Some(timestamp(jst("2026-02-05T22:00:00")))
    );
    app.stop().await;
    app.restart().await;
    app.clock.set(jst("2026-02-05T22:00:00"));
    let posting = app.poll_posting(&id, |p| p.modification.is_none()).await;
    assert_eq!(posting.content.as_ref().unwrap().title, "研究員 (v5, 延長)");
    assert_eq!(
        posting.expires_at,
        Some(timestamp(jst("2026-05-01T00:00:00")))
    );

    // R-POST-6: withdrawal asked at 10:00 takes effect at 22:00 that day.
    let mut postings = app.postings(Some(&staff));
    app.clock.set(jst("2026-02-10T10:00:00"));
    postings
        .request_withdrawal(pb::RequestWithdrawalRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
        })
        .await
        .expect("RequestWithdrawal");
    app.clock.set(jst("2026-02-10T22:00:00"));
    let posting = app.wait_for_status(&id, PostingStatus::Withdrawn).await;
    assert_eq!(
        posting.withdrawn_at,
        Some(timestamp(jst("2026-02-10T22:00:00")))
    );

    // R-POST-7: the withdrawn posting is reused as a new draft, linked to it.
    let reused = postings
        .reuse_posting(pb::ReusePostingRequest {
            command_id: command_id(),
            posting_id: String::new(),
            source_posting_id: id.clone(),
        })
        .await
        .expect("ReusePosting")
        .into_inner();
    let copy = app
        .get(&staff, &reused.posting_id, reused.result.unwrap().position)
        .await;
    assert_eq!(copy.status, PostingStatus::Draft as i32);
    assert_eq!(copy.reused_from, id);
    assert_eq!(copy.draft_version, 1);
    assert_eq!(copy.content.unwrap().title, "研究員 (v5, 延長)");
}
