//! Health and reflection: served without a token; health follows readiness.

use jobboard::Application;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha;

use crate::support::{TestApp, test_config};

const FEED: &str = "jobboard.v1.EventFeedService";

#[tokio::test]
async fn health_reports_serving_once_started() {
    let app = TestApp::spawn().await;
    app.wait_for_health("", ServingStatus::Serving).await;
    app.wait_for_health(FEED, ServingStatus::Serving).await;
    // The posting services too: their projectors started during `build`.
    app.wait_for_health("jobboard.v1.PostingsService", ServingStatus::Serving)
        .await;
    app.wait_for_health("jobboard.v1.PostingQueryService", ServingStatus::Serving)
        .await;
}

#[tokio::test]
async fn health_is_not_serving_while_a_readiness_step_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let app = Application::build(test_config(dir.path())).await.unwrap();
    let projectors = app.readiness().step("projectors").await;
    let app = TestApp::run(app, Some(dir)).await;
    app.wait_for_health(FEED, ServingStatus::NotServing).await;
    app.wait_for_health("", ServingStatus::NotServing).await;
    projectors.done().await;
    app.wait_for_health(FEED, ServingStatus::Serving).await;
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    let mut app = TestApp::spawn().await;
    app.wait_for_health(FEED, ServingStatus::Serving).await;
    let readiness = app.readiness.clone();
    app.stop().await.expect("clean stop");
    assert!(!readiness.is_serving());
}

#[tokio::test]
async fn reflection_lists_the_served_services() {
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers without a token")
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "jobboard.v1.AccessCountsService",
            "jobboard.v1.AdminService",
            FEED,
            "jobboard.v1.NotificationsService",
            "jobboard.v1.PostingQueryService",
            "jobboard.v1.PostingsService",
            "jobboard.v1.SearchService",
        ]
    );

    // A client resolving the feed's schema gets its file (what grpcurl does before a call).
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(FEED.into())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
}

#[tokio::test]
async fn reflection_v1alpha_answers_too() {
    use v1alpha::server_reflection_client::ServerReflectionClient;
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    assert!(list.service.iter().any(|s| s.name == FEED));
}
