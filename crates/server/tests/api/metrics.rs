//! The Prometheus endpoint counts calls by method and code and times them.

use std::net::SocketAddr;

use jobboard_proto::v1::{ReadAllRequest, SubscribeRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Bearer, TestApp, eventually};

/// `GET /metrics` over a plain socket (the tests have no HTTP client).
async fn scrape(addr: SocketAddr) -> String {
    let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if socket.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = socket.read_to_string(&mut response).await;
    response
}

/// One test only: the process has one Prometheus recorder, which feeds the newest endpoint, so
/// two tests with endpoints of their own would see each other's calls or none.
#[tokio::test]
async fn metrics_count_calls_and_time_commands_appends_and_projection_lag() {
    let app = TestApp::spawn_with(|config| {
        config.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let addr = app.metrics_addr.expect("metrics are on");
    app.ops_feed()
        .read_all(ReadAllRequest::default())
        .await
        .unwrap();
    app.feed(None)
        .read_all(ReadAllRequest::default())
        .await
        .unwrap_err();
    // A subscription the client walks away from is recorded when the server drops it.
    let subscription = app
        .ops_feed()
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap();
    drop(subscription);
    create_a_draft(&app).await;
    // Listing the projections refreshes their status gauges.
    let admin = jobboard_proto::v1::admin_service_client::AdminServiceClient::with_interceptor(
        app.channel.clone(),
        Bearer(Some(app.token(jobboard::auth::Role::Ops))),
    );

    let method = r#"method="jobboard.v1.EventFeedService/ReadAll""#;
    let subscribe = r#"method="jobboard.v1.EventFeedService/Subscribe""#;
    eventually("the endpoint shows both calls", || async {
        admin
            .clone()
            .list_projections(jobboard_proto::v1::ListProjectionsRequest::default())
            .await
            .unwrap();
        let body = scrape(addr).await;
        let has = |method: &str, code: &str| {
            body.lines().any(|line| {
                line.starts_with("jobboard_grpc_requests_total{")
                    && line.contains(method)
                    && line.contains(&format!(r#"code="{code}""#))
            })
        };
        has(method, "OK")
            && has(method, "UNAUTHENTICATED")
            && has(subscribe, "CANCELLED")
            && body.lines().any(|line| {
                line.starts_with("jobboard_grpc_request_duration_seconds_bucket{")
                    && line.contains(method)
            })
            && has_line(
                &body,
                "jobboard_commands_total{",
                r#"command="CreateDraft",outcome="ok""#,
            )
            && has_line(
                &body,
                "jobboard_command_duration_seconds_bucket{",
                "CreateDraft",
            )
            && has_line(
                &body,
                "jobboard_append_duration_seconds_bucket{",
                "CreateDraft",
            )
            && has_line(&body, "jobboard_projection_lag_seconds_bucket{", "postings")
            && has_line(&body, "jobboard_projection_state{", r#"state="live"} 1"#)
            && has_line(&body, "jobboard_projection_lag_events{", "postings")
            && has_line(&body, "jobboard_projection_lease_held{", "postings")
            && has_line(&body, "jobboard_projection_rebuild_events{", "postings")
    })
    .await;
}

fn has_line(body: &str, prefix: &str, label: &str) -> bool {
    body.lines()
        .any(|line| line.starts_with(prefix) && line.contains(label))
}

/// A command through the postings service, so that the command layer and the projector record.
async fn create_a_draft(app: &TestApp) {
    use jobboard::auth::{Caller, Role};
    use jobboard_proto::v1::postings_service_client::PostingsServiceClient;
    use jobboard_proto::v1::{CreateDraftRequest, Language, PostingContent};

    let employer = Caller::new(
        "alice",
        Role::Employer,
        "0193a8d2-0000-7000-8000-000000000001",
    );
    let token = app
        .keys
        .issue(&employer, std::time::Duration::from_secs(600))
        .unwrap();
    PostingsServiceClient::with_interceptor(app.channel.clone(), Bearer(Some(token)))
        .create_draft(CreateDraftRequest {
            command_id: "metrics-1".into(),
            language: Language::Ja.into(),
            content: Some(PostingContent {
                name: "RSE".into(),
                title: "研究ソフトウェアエンジニア".into(),
                ..PostingContent::default()
            }),
            ..CreateDraftRequest::default()
        })
        .await
        .unwrap();
}
