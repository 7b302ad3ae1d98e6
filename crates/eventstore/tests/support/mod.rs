//! Fresh databases for the contract suite: a temporary SQLite file, or a new PostgreSQL database
//! on the local server (dropped again when the test ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use jobboard_eventstore::{Clock, EventStore, StoreOptions};

/// The PostgreSQL server the tests use: `JOBBOARD_TEST_POSTGRES`, else the local one.
pub(crate) fn postgres_admin_url() -> String {
    std::env::var("JOBBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// A database that lives as long as the test.
pub(crate) struct TestDb {
    pub(crate) url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub(crate) async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}/log.db", dir.path().display());
                Self {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("jobboard_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = match <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    Ok(conn) => conn,
                    Err(e) => panic!(
                        "PostgreSQL is not reachable at {admin} ({e}). The PostgreSQL half of the \
                         suite always runs: start the server with `pg_ctlcluster 15 main start` \
                         (or point JOBBOARD_TEST_POSTGRES at one)"
                    ),
                };
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = match admin.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("JOBBOARD_TEST_POSTGRES must end in /DATABASE"),
                };
                Self {
                    url,
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    pub(crate) async fn open(&self) -> EventStore {
        self.open_with(StoreOptions::default()).await
    }

    pub(crate) async fn open_with(&self, options: StoreOptions) -> EventStore {
        EventStore::open(&self.url, options)
            .await
            .expect("open the store")
    }

    /// Runs raw SQL against the database (to tamper with it, as an attacker would).
    pub(crate) async fn execute(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.pg_name.is_some() {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
                .await
                .unwrap();
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .unwrap()
                .rows_affected()
        } else {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url)
                .await
                .unwrap();
            sqlx::query(sql)
                .execute(&mut conn)
                .await
                .unwrap()
                .rows_affected()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
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

/// A clock the test moves by hand (microseconds since the epoch).
#[derive(Clone)]
pub(crate) struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub(crate) fn at(t: DateTime<Utc>) -> Self {
        Self(Arc::new(AtomicI64::new(t.timestamp_micros())))
    }

    pub(crate) fn set(&self, t: DateTime<Utc>) {
        self.0.store(t.timestamp_micros(), Ordering::SeqCst);
    }

    pub(crate) fn clock(&self) -> Clock {
        let micros = Arc::clone(&self.0);
        Arc::new(move || {
            DateTime::from_timestamp_micros(micros.load(Ordering::SeqCst)).expect("valid time")
        })
    }
}

/// A business date at noon UTC.
pub(crate) fn date(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

/// Generates one test per backend from each async fn taking a [`Kind`].
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Kind::Postgres).await
                }
            )*
        }
    };
}
