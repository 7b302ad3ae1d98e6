//! Fresh databases for the contract suite: a temporary SQLite file, or a new PostgreSQL database
//! on the local server (dropped again when the test ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use jobboard_eventstore::{Clock, EventStore, StoreOptions};

pub(crate) use jobboard_testkit::Kind;

/// A database that lives as long as the test, with the store's shortcuts.
pub(crate) struct TestDb(jobboard_testkit::TestDb);

impl std::ops::Deref for TestDb {
    type Target = jobboard_testkit::TestDb;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TestDb {
    pub(crate) async fn new(kind: Kind) -> Self {
        Self(jobboard_testkit::TestDb::new(kind, "jobboard_test").await)
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
        if self.kind() == Kind::Postgres {
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
