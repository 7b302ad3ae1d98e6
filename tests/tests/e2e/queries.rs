//! The read side's own promises: a bounded read-your-writes wait, stable pages, and callers whose
//! scope is not there yet.

use std::time::Duration;

use jobboard::auth::{Caller, Role};
use jobboard_proto::v1 as pb;
use tokio::time::Instant;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{Backend, TestApp, employer, jst};

jobboard_testkit::on_both_backends!(
    a_read_your_writes_wait_ends_with_deadline_exceeded_before_the_calls_deadline,
    lists_are_paged_with_tokens_tied_to_their_filters,
    agencies_cannot_read_postings_until_referrals_exist,
);

async fn a_read_your_writes_wait_ends_with_deadline_exceeded_before_the_calls_deadline(
    backend: Backend,
) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (id, _) = app.create_draft(&staff).await;
    // A position the log will not reach during this test.
    let beyond = pb::LogPosition {
        tx_id: 1 << 60,
        position: 1 << 60,
    };
    let mut request = tonic::Request::new(pb::GetPostingRequest {
        posting_id: id,
        min_position: Some(beyond),
    });
    // Long enough that a loaded machine still starts the handler well before it passes.
    let deadline = Duration::from_secs(2);
    request.set_timeout(deadline);
    let started = Instant::now();
    let status = app
        .queries(Some(&staff))
        .get_posting(request)
        .await
        .expect_err("the view never gets there");
    // The service answers itself, before the transports cancel the call at its deadline.
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("did not reach"), "{status:?}");
    assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
}

async fn lists_are_paged_with_tokens_tied_to_their_filters(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let mut created = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let (id, result) = app.create_draft(&staff).await;
        created.push(id);
        last = result.position;
    }
    let mut queries = app.queries(Some(&staff));
    let first = queries
        .list_postings(pb::ListPostingsRequest {
            page_size: 2,
            min_position: last,
            ..pb::ListPostingsRequest::default()
        })
        .await
        .expect("the first page")
        .into_inner();
    assert_eq!(first.postings.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = queries
        .list_postings(pb::ListPostingsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..pb::ListPostingsRequest::default()
        })
        .await
        .expect("the second page")
        .into_inner();
    assert!(second.next_page_token.is_empty(), "the last page");
    // Newest first, every posting once.
    let listed: Vec<_> = first
        .postings
        .iter()
        .chain(&second.postings)
        .map(|p| p.posting_id.clone())
        .collect();
    created.reverse();
    assert_eq!(listed, created);

    // The token of an unfiltered list does not continue a filtered one.
    let status = queries
        .list_postings(pb::ListPostingsRequest {
            page_size: 2,
            page_token: first.next_page_token,
            status: Some(pb::PostingStatus::Draft.into()),
            ..pb::ListPostingsRequest::default()
        })
        .await
        .expect_err("a token of another list is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = status.get_details_bad_request().expect("BadRequest");
    assert_eq!(violations.field_violations[0].field, "page_token");
}

async fn agencies_cannot_read_postings_until_referrals_exist(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let (id, _) = app.create_draft(&employer()).await;
    // R-SRCH-5: an agency sees only postings it was asked to refer to; none exist yet.
    let agency = Caller::new("agent", Role::Agency, "agency-1");
    let mut queries = app.queries(Some(&agency));
    let status = queries
        .get_posting(pb::GetPostingRequest {
            posting_id: id,
            min_position: None,
        })
        .await
        .expect_err("GetPosting is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = queries
        .list_postings(pb::ListPostingsRequest::default())
        .await
        .expect_err("ListPostings is refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}
