//! The same service on PostgreSQL: a fresh database, dropped after the test.

use jobboard::Application;
use jobboard_proto::v1::{ReadAllRequest, SubscribeRequest};
use tokio::time::{Instant, timeout_at};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{DEADLINE, TestApp, append, test_config, unique_stream};

/// The PostgreSQL server the tests use: `JOBBOARD_TEST_POSTGRES`, else the local one.
fn admin_url() -> String {
    std::env::var("JOBBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that lives as long as the test.
struct FreshDatabase {
    url: String,
    name: String,
}

impl FreshDatabase {
    async fn create() -> Self {
        let admin = admin_url();
        let name = format!("jobboard_server_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = match <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) => panic!(
                "PostgreSQL is not reachable at {admin} ({e}). Start it with \
                 `pg_ctlcluster 15 main start` (or point JOBBOARD_TEST_POSTGRES at a server)"
            ),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let (server, _) = admin
            .rsplit_once('/')
            .expect("JOBBOARD_TEST_POSTGRES ends in /DATABASE");
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url()).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn the_feed_serves_a_postgres_log() {
    let database = FreshDatabase::create().await;
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
