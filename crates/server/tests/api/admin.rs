//! AdminService: only the ops role may call it; it lists the projections as the database has
//! them, and a rebuild asked for over it is built beside the serving view and switched in.

use jobboard::auth::Role;
use jobboard_proto::v1::admin_service_client::AdminServiceClient;
use jobboard_proto::v1::{
    GenerationState, ListProjectionsRequest, ProjectionState, RebuildProjectionRequest,
};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::support::{Bearer, TestApp, append, eventually, unique_stream};

type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

fn admin(app: &TestApp, role: Option<Role>) -> AdminClient {
    AdminServiceClient::with_interceptor(app.channel.clone(), Bearer(role.map(|r| app.token(r))))
}

#[tokio::test]
async fn only_ops_may_administer_and_others_are_refused() {
    let app = TestApp::spawn().await;
    for role in [
        Role::Employer,
        Role::Agency,
        Role::Operator,
        Role::Service,
        Role::Auditor,
    ] {
        let status = admin(&app, Some(role))
            .list_projections(ListProjectionsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
        let status = admin(&app, Some(role))
            .rebuild_projection(RebuildProjectionRequest {
                projector: "postings".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
    }
    let status = admin(&app, None)
        .list_projections(ListProjectionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    admin(&app, Some(Role::Ops))
        .list_projections(ListProjectionsRequest::default())
        .await
        .expect("ops may");
}

#[tokio::test]
async fn list_shows_the_serving_generation_and_a_rebuild_switches_it() {
    let app = TestApp::spawn().await;
    let mut ops = admin(&app, Some(Role::Ops));
    let stream = unique_stream("posting");
    let appended = append(&app.store, &stream, "SomethingElse", 5).await;
    assert!(appended > 0);

    eventually("postings is live and covers the log", || {
        let mut ops = ops.clone();
        async move {
            let list = ops
                .list_projections(ListProjectionsRequest::default())
                .await
                .unwrap()
                .into_inner();
            list.projections.iter().any(|p| {
                p.name == "postings"
                    && p.state == ProjectionState::Live as i32
                    && p.serving.as_ref().is_some_and(|s| {
                        s.lag_events == 0
                            && s.events == list.log_events
                            && s.lease_held
                            && !s.lease_holder.is_empty()
                            && s.state == GenerationState::Active as i32
                    })
            })
        }
    })
    .await;
    let before = ops
        .list_projections(ListProjectionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let postings = |list: &jobboard_proto::v1::ListProjectionsResponse| {
        list.projections
            .iter()
            .find(|p| p.name == "postings")
            .cloned()
            .expect("the postings projector is listed")
    };
    let serving = postings(&before).serving.unwrap();

    let asked = ops
        .rebuild_projection(RebuildProjectionRequest {
            projector: "postings".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let building = asked.generation.unwrap();
    assert!(building.generation > serving.generation);
    assert_eq!(building.state, GenerationState::Building as i32);

    eventually("the rebuilt generation serves", || {
        let mut ops = ops.clone();
        async move {
            let list = ops
                .list_projections(ListProjectionsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let p = postings(&list);
            p.rebuild.is_none()
                && p.serving.as_ref().is_some_and(|s| {
                    s.generation == building.generation && s.events == list.log_events
                })
        }
    })
    .await;

    let status = ops
        .rebuild_projection(RebuildProjectionRequest {
            projector: "nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = ops
        .rebuild_projection(RebuildProjectionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
