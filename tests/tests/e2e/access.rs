//! Who may call, and what they may see: every call needs a token of this server, and an
//! employer stays inside its own organisation.

use std::time::Duration;

use jobboard::auth::TokenKeys;
use jobboard_proto::v1 as pb;
use tonic::{Code, Status};

use crate::support::{Backend, TestApp, command_id, content, employer, jst};

jobboard_testkit::on_both_backends!(
    calls_without_a_valid_token_are_unauthenticated,
    an_employer_cannot_read_change_or_list_another_organisations_postings,
);

fn assert_code(result: Result<impl std::fmt::Debug, Status>, code: Code, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), code, "{what}: {status:?}"),
        Ok(response) => panic!("{what}: expected {code:?}, got {response:?}"),
    }
}

async fn calls_without_a_valid_token_are_unauthenticated(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (id, created) = app.create_draft(&staff).await;
    // Same issuer and claims, another key: the signature gives it away.
    let forged = TokenKeys::from_secret(&[42u8; 32], "jobboard")
        .issue(&staff, Duration::from_secs(600))
        .expect("a token");
    for (token, why) in [(None, "missing"), (Some(forged), "signature")] {
        let mut postings = app.postings_with_token(token.clone());
        let mut queries = app.queries_with_token(token);
        let results = [
            (
                "CreateDraft",
                postings
                    .create_draft(pb::CreateDraftRequest {
                        command_id: command_id(),
                        language: pb::Language::En.into(),
                        content: Some(content("Postdoc")),
                        ..pb::CreateDraftRequest::default()
                    })
                    .await
                    .map(drop),
            ),
            (
                "SubmitForReview",
                postings
                    .submit_for_review(pb::SubmitForReviewRequest {
                        command_id: command_id(),
                        posting_id: id.clone(),
                        expected_version: None,
                    })
                    .await
                    .map(drop),
            ),
            (
                "GetPosting",
                queries
                    .get_posting(pb::GetPostingRequest {
                        posting_id: id.clone(),
                        min_position: None,
                    })
                    .await
                    .map(drop),
            ),
            (
                "ListPostings",
                queries
                    .list_postings(pb::ListPostingsRequest::default())
                    .await
                    .map(drop),
            ),
        ];
        for (call, result) in results {
            let status = result.expect_err(call);
            assert_eq!(status.code(), Code::Unauthenticated, "{call}: {status:?}");
            assert!(status.message().contains(why), "{call}: {status:?}");
        }
    }
    // Nothing was written by the refused calls: the posting is still at its first version.
    let posting = app.get(&staff, &id, created.position).await;
    assert_eq!(posting.version, 1);
}

async fn an_employer_cannot_read_change_or_list_another_organisations_postings(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let a = employer();
    let b = employer();
    let (a_posting, a_created) = app.create_draft(&a).await;
    // Created after A's, so once the view has B's posting it has A's too.
    let (b_posting, b_created) = app.create_draft(&b).await;

    let mut b_queries = app.queries(Some(&b));
    assert_code(
        b_queries
            .get_posting(pb::GetPostingRequest {
                posting_id: a_posting.clone(),
                min_position: a_created.position,
            })
            .await,
        Code::PermissionDenied,
        "GetPosting of A's posting",
    );
    assert_code(
        app.postings(Some(&b))
            .save_draft(pb::SaveDraftRequest {
                command_id: command_id(),
                posting_id: a_posting.clone(),
                expected_version: None,
                content: Some(content("hijacked")),
            })
            .await,
        Code::PermissionDenied,
        "SaveDraft of A's posting",
    );
    assert_code(
        b_queries
            .list_postings(pb::ListPostingsRequest {
                organisation_id: a.organisation.clone(),
                ..pb::ListPostingsRequest::default()
            })
            .await,
        Code::PermissionDenied,
        "ListPostings of A's organisation",
    );

    // B's own list holds its posting only; A's is untouched.
    let own = b_queries
        .list_postings(pb::ListPostingsRequest {
            min_position: b_created.position,
            ..pb::ListPostingsRequest::default()
        })
        .await
        .expect("B lists its own postings")
        .into_inner();
    let ids: Vec<_> = own.postings.iter().map(|p| p.posting_id.as_str()).collect();
    assert_eq!(ids, [b_posting.as_str()]);
    let posting = app.get(&a, &a_posting, None).await;
    assert_eq!(posting.version, 1);
    assert_eq!(posting.content.unwrap().title, "ポスドク研究員");
}
