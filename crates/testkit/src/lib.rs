//! Throw-away databases for the test suites: a temporary SQLite file, or a fresh PostgreSQL
//! database on the local server, dropped again when the test ends.
//!
//! The PostgreSQL half of every suite always runs: when the server does not answer, the test
//! fails and says how to start it. `JOBBOARD_TEST_POSTGRES` points the suites at another server.

use std::path::Path;

/// The PostgreSQL server the tests use: `JOBBOARD_TEST_POSTGRES`, else the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("JOBBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A temporary SQLite file.
    Sqlite,
    /// A new database on the PostgreSQL server.
    Postgres,
}

/// A database that lives as long as the test.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to open it with (`sqlite://…` or `postgres://…`).
    pub url: String,
    kind: Kind,
    pg_name: Option<String>,
    dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database; a PostgreSQL one is named `{prefix}_{uuid}` so that a leftover from a
    /// killed run tells which suite made it.
    pub async fn new(kind: Kind, prefix: &str) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}/log.db", dir.path().display());
                Self {
                    url,
                    kind,
                    pg_name: None,
                    dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
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
                    kind,
                    pg_name: Some(name),
                    dir: None,
                }
            }
        }
    }

    /// The backend it is on.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The temporary directory of a SQLite database (for other files a test needs beside it).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
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
                .expect("a runtime to drop the test database");
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

/// Generates one test per backend (`sqlite::name`, `postgres::name`) from each async fn of the
/// calling module that takes a [`Kind`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Kind::Postgres).await
                }
            )*
        }
    };
}
