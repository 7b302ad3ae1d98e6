//! The same service on PostgreSQL: a fresh database, dropped after the test.

use jobboard::Application;
use jobboard_proto::v1::{ReadAllRequest, SubscribeRequest};
use jobboard_testkit::{Kind, TestDb};
use tokio::time::{Instant, timeout_at};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{DEADLINE, TestApp, append, test_config, unique_stream};

#[tokio::test]
async fn the_feed_serves_a_postgres_log() {
    let database = TestDb::new(Kind::Postgres, "jobboard_server_test").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database_url = database.url.clone();
    let app = Application::build(config)
        .await
        .expect("builds on PostgreSQL");
    assert_eq!(app.store().backend_name(), "postgres");
    let mut app = TestApp::run(app, Some(dir)).await;
    app.wait_for_health("jobboard.v1.EventFeedService", ServingStatus::Serving)
        .await;

    let stream = unique_stream("posting");
    for n in 0..3 {
        append(&app.store, &stream, "Happened", n).await;
    }
    let page = app
        .ops_feed()
        .read_all(ReadAllRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 3);
    assert_eq!(page.next, page.events[2].position);

    let mut subscription = app
        .ops_feed()
        .subscribe(SubscribeRequest { after: page.next })
        .await
        .unwrap()
        .into_inner();
    append(&app.store, &stream, "Happened", 3).await;
    let deadline = Instant::now() + DEADLINE;
    let live = timeout_at(deadline, subscription.message())
        .await
        .expect("the live event arrives")
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert_eq!(live.version, 4);

    drop(subscription);
    app.stop().await.expect("clean stop");
}
