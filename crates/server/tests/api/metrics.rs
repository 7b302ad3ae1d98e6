//! The Prometheus endpoint counts calls by method and code and times them.

use std::net::SocketAddr;

use jobboard_proto::v1::{ReadAllRequest, SubscribeRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{TestApp, eventually};

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

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
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

    let method = r#"method="jobboard.v1.EventFeedService/ReadAll""#;
    let subscribe = r#"method="jobboard.v1.EventFeedService/Subscribe""#;
    eventually("the endpoint shows both calls", || async {
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
    })
    .await;
}
