//! Test support: a throw-away log (SQLite file or PostgreSQL database) written with a clock the
//! test sets, posting events built from the domain's types, raw SQL for tampering, and a runner
//! for the real `jobboard-replay` binary.

#![allow(dead_code, unreachable_pub)] // Each test binary uses its own part of the support.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::Aggregate;
use jobboard_domain::posting::{Language, OrganisationId, PostingContent, PostingId};
use jobboard_domain::{Posting, PostingEvent};
use jobboard_eventstore::{
    AppendOutcome, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StoreOptions, StreamId,
};
use serde_json::{Value, json};
use uuid::Uuid;

pub use jobboard_testkit::Kind;

/// The organisation owning the test's postings.
pub const ORG: OrganisationId =
    OrganisationId::new(Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_00aa));

/// The instant every test's clock starts at: 2026-01-31 10:00 in Tokyo.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 1, 0, 0).unwrap()
}

/// A fresh database with the log open on it, stamping events with the test's clock.
pub struct Log {
    pub db: jobboard_testkit::TestDb,
    pub store: EventStore,
    micros: Arc<AtomicI64>,
}

impl Log {
    pub async fn new(kind: Kind) -> Self {
        let db = jobboard_testkit::TestDb::new(kind, "jobboard_replay_test").await;
        let micros = Arc::new(AtomicI64::new(start().timestamp_micros()));
        let clock = Arc::clone(&micros);
        let options = StoreOptions {
            clock: Arc::new(move || {
                DateTime::from_timestamp_micros(clock.load(Ordering::SeqCst)).expect("a time")
            }),
            ..StoreOptions::default()
        };
        let store = EventStore::open(&db.url, options)
            .await
            .expect("open the store");
        Self { db, store, micros }
    }

    /// Sets the time the next appends are recorded at.
    pub fn set_time(&self, t: DateTime<Utc>) {
        self.micros.store(t.timestamp_micros(), Ordering::SeqCst);
    }

    /// Moves the clock on by `minutes`, returning the new time.
    pub fn advance(&self, minutes: i64) -> DateTime<Utc> {
        let t = self.now() + Duration::minutes(minutes);
        self.set_time(t);
        t
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).expect("a time")
    }

    /// Appends one payload to `stream` at the exact next version, as the command layer does.
    pub async fn append(
        &self,
        stream: &StreamId,
        event_type: &str,
        schema_version: u32,
        payload: Value,
    ) -> AppendOutcome {
        let version = self.store.stream_version(stream).await.unwrap();
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let command_id = format!("{ORG}/c-{}", Uuid::new_v4().simple());
        let meta = CommandMetadata {
            command_id: Some(command_id.clone()),
            correlation_id: Some(command_id),
            causation_id: Some("cause-1".into()),
            actor: Some(format!("staff@{ORG}")),
            organisation: Some(ORG.to_string()),
            extra: [("role".to_owned(), "employer".to_owned())].into(),
        };
        self.store
            .append(
                stream,
                expected,
                vec![NewEvent::new(event_type, schema_version, payload)],
                meta,
            )
            .await
            .expect("append")
    }

    /// Appends a payload to a stream of another category (one the domain has no aggregate for).
    pub async fn append_other(&self, stream: &str, event_type: &str, payload: Value) {
        let stream = StreamId::new(stream).unwrap();
        self.append(&stream, event_type, 1, payload).await;
    }

    /// Appends a posting event, serialised by the domain.
    pub async fn append_event(&self, stream: &StreamId, event: &PostingEvent) -> AppendOutcome {
        let payload = serde_json::to_value(event).unwrap();
        self.append(stream, event.type_name(), event.schema_version(), payload)
            .await
    }

    /// Runs raw SQL against the database, as someone with database access would.
    pub async fn execute(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.db.kind() {
            Kind::Postgres => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.db.url)
                    .await
                    .unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
            Kind::Sqlite => {
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.db.url)
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

    /// Runs `jobboard-replay` on this database.
    pub async fn replay(&self, args: &[&str]) -> Run {
        let mut full = vec!["--database-url", self.db.url.as_str()];
        full.extend_from_slice(args);
        replay(&full).await
    }
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the run exited with `code`, showing its output otherwise.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit status {} instead of {code}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts success.
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    /// Standard output as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Standard output as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a line is not JSON ({e}): {line}"))
            })
            .collect()
    }
}

/// Runs `jobboard-replay` with `args`, without a `DATABASE_URL` from the environment.
pub async fn replay(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_jobboard-replay"))
            .args(&args)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run jobboard-replay")
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().expect("an exit status, not a signal"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// A new posting's id and stream.
pub fn new_posting() -> (PostingId, StreamId) {
    let id = PostingId::new(Uuid::now_v7());
    let stream = StreamId::new(format!("{}-{id}", Posting::TYPE)).unwrap();
    (id, stream)
}

/// Content with a name and a title (all a draft needs).
pub fn content(title: &str) -> PostingContent {
    PostingContent {
        name: "2026 postdoc, materials lab".to_owned(),
        title: title.to_owned(),
        ..PostingContent::default()
    }
}

/// A `PostingDrafted`, read from its JSON form so that fields the domain adds later (with
/// defaults) need no change here.
pub fn drafted(id: PostingId, content: &PostingContent) -> PostingEvent {
    serde_json::from_value(json!({
        "type": "PostingDrafted",
        "posting_id": id,
        "organisation_id": ORG,
        "language": Language::Ja,
        "content": content,
        "draft_version": 1,
    }))
    .expect("a PostingDrafted")
}

/// Folds events with the domain's own `apply`, as the expected state of a stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a PostingEvent>) -> Value {
    let mut posting = Posting::default();
    for event in events {
        posting.apply(event.clone());
    }
    serde_json::to_value(posting).unwrap()
}
