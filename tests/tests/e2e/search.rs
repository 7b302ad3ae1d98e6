//! Search over gRPC (R-SRCH-1 to R-SRCH-5): Japanese substrings, conditions, scopes by role, and
//! a blue/green rebuild of the index while searches keep answering.

use jobboard_proto::v1 as pb;
use jobboard_proto::v1::PostingStatus;
use tonic::Code;

use crate::support::{Backend, Caller, TestApp, date, employer, jst, operator, ops, poll, service};

jobboard_testkit::on_both_backends!(
    the_public_finds_published_postings_and_employers_their_own,
    the_index_rebuilds_beside_itself_while_searches_keep_answering,
);

async fn search(
    app: &TestApp,
    caller: &Caller,
    request: pb::SearchPostingsRequest,
) -> Result<pb::SearchPostingsResponse, tonic::Status> {
    app.search(caller)
        .search_postings(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn the_public_finds_published_postings_and_employers_their_own(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (published, _) = app.submitted(&staff).await;
    let (draft, _) = app.create_draft(&staff).await;
    app.approve(&published, date(2026, 2, 1))
        .await
        .expect("approve");
    app.clock.set(jst("2026-02-01T00:00:00"));
    let posting = app
        .wait_for_status(&published, PostingStatus::Published)
        .await;

    // R-SRCH-1: a keyword inside the Japanese title, even one character, matches. The index
    // follows the log on its own: wait until it has the publication.
    let found = poll("the published posting is searchable", || async {
        let result = search(
            &app,
            &service(),
            pb::SearchPostingsRequest {
                keywords: "研究".into(),
                ..Default::default()
            },
        )
        .await
        .expect("SearchPostings");
        (result.total_count > 0).then_some(result)
    })
    .await;
    // R-SRCH-5: the public scope holds the published posting only, not the draft.
    assert_eq!(found.total_count, 1);
    assert_eq!(found.hits[0].posting_id, published);
    assert_eq!(found.hits[0].version, posting.version);
    // R-SRCH-1 and R-SRCH-2: a one-character keyword inside the text, with a condition; the
    // same keyword under another institution type finds nothing.
    let one_char = search(
        &app,
        &operator(),
        pb::SearchPostingsRequest {
            keywords: "究".into(),
            institution_types: vec![pb::InstitutionType::University.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(one_char.total_count, 1);
    let other_condition = search(
        &app,
        &service(),
        pb::SearchPostingsRequest {
            keywords: "研究".into(),
            institution_types: vec![pb::InstitutionType::Company.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(other_condition.total_count, 0);

    // The employer's own scope holds its postings in every state, the draft too.
    let own = search(
        &app,
        &staff,
        pb::SearchPostingsRequest {
            scope: pb::SearchScope::Own.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut ids: Vec<_> = own.hits.iter().map(|h| h.posting_id.clone()).collect();
    ids.sort();
    let mut expected = vec![published.clone(), draft.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let stranger = search(
        &app,
        &employer(),
        pb::SearchPostingsRequest {
            scope: pb::SearchScope::Own.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stranger.total_count, 0);

    // Scopes follow roles; bad conditions list their fields.
    let denied = search(
        &app,
        &staff,
        pb::SearchPostingsRequest {
            scope: pb::SearchScope::Agency.into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("an employer is no agency");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let invalid = search(
        &app,
        &service(),
        pb::SearchPostingsRequest {
            institution_types: vec![42],
            keywords: "x".repeat(201),
            ..Default::default()
        },
    )
    .await
    .expect_err("bad conditions");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid.message().contains("institution_types[0]"),
        "{}",
        invalid.message()
    );
    assert!(
        invalid.message().contains("keywords"),
        "{}",
        invalid.message()
    );
}

async fn the_index_rebuilds_beside_itself_while_searches_keep_answering(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    for _ in 0..5 {
        app.create_draft(&staff).await;
    }
    let own = || pb::SearchPostingsRequest {
        scope: pb::SearchScope::Own.into(),
        ..Default::default()
    };
    poll("the drafts are searchable", || async {
        let found = search(&app, &staff, own()).await.expect("SearchPostings");
        (found.total_count == 5).then_some(())
    })
    .await;
    let mut admin = app.admin(&ops());
    let listed = |list: &pb::ListProjectionsResponse| {
        list.projections
            .iter()
            .find(|p| p.name == "search")
            .cloned()
            .expect("the search index is listed")
    };
    let before = listed(
        &admin
            .list_projections(pb::ListProjectionsRequest::default())
            .await
            .expect("ListProjections")
            .into_inner(),
    );
    let serving = before.serving.expect("a serving generation").generation;

    let asked = admin
        .rebuild_projection(pb::RebuildProjectionRequest {
            projector: "search".into(),
        })
        .await
        .expect("RebuildProjection")
        .into_inner();
    assert!(asked.created);
    let building = asked.generation.expect("the generation being built");
    assert_eq!(building.generation, serving + 1);
    assert_eq!(building.state, pb::GenerationState::Building as i32);

    // Searches answer all along, with every posting; the rebuilt generation takes over.
    poll("the rebuilt index serves", || {
        let mut admin = admin.clone();
        let app = &app;
        let staff = &staff;
        async move {
            let found = search(app, staff, own())
                .await
                .expect("search during the rebuild");
            assert_eq!(found.total_count, 5, "no result is lost while rebuilding");
            let list = admin
                .list_projections(pb::ListProjectionsRequest::default())
                .await
                .expect("ListProjections")
                .into_inner();
            let now = listed(&list);
            (now.rebuild.is_none()
                && now.serving.is_some_and(|s| s.generation > serving)
                && now.state == pb::ProjectionState::Live as i32)
                .then_some(())
        }
    })
    .await;
    let denied = app
        .admin(&operator())
        .rebuild_projection(pb::RebuildProjectionRequest {
            projector: "search".into(),
        })
        .await
        .expect_err("operators do not administer the service");
    assert_eq!(denied.code(), Code::PermissionDenied);
}
