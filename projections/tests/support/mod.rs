//! Shared test setup: a fresh database per test (a temporary SQLite file, or a new PostgreSQL
//! database dropped when the test ends), a clock the test moves, and posting events built with
//! the domain's types and appended as the command layer would.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use jobboard_domain::PostingEvent;
use jobboard_domain::posting::{
    InstitutionType, Language, OrganisationId, PostingContent, PostingId, RecruitmentPeriod,
};
use jobboard_eventstore::{
    AppendOutcome, Checkpoint, CommandMetadata, EventStore, ExpectedVersion, NewEvent,
    StoreOptions, StreamId,
};
use jobboard_projections::postings::{self, PostingRow, PostingsView};
use jobboard_projections::{ProjectionRuntime, Projector, RuntimeOptions, ViewDb};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a projector before failing.
pub const WAIT: Duration = Duration::from_secs(20);

pub use jobboard_testkit::Kind;

/// A database that lives as long as the test, with the log and a clock on it.
pub struct TestDb {
    pub url: String,
    pub clock: TestClock,
    _db: jobboard_testkit::TestDb,
}

impl TestDb {
    pub async fn new(kind: Kind) -> Self {
        let clock = TestClock::at(Utc.with_ymd_and_hms(2026, 1, 10, 1, 0, 0).unwrap());
        let db = jobboard_testkit::TestDb::new(kind, "jobboard_projections_test").await;
        Self {
            url: db.url.clone(),
            clock,
            _db: db,
        }
    }

    /// The event store on this database, stamping events with the test's clock.
    pub async fn store(&self) -> EventStore {
        let options = StoreOptions {
            clock: self.clock.clock(),
            ..StoreOptions::default()
        };
        EventStore::open(&self.url, options)
            .await
            .expect("open the store")
    }

    /// The views' pool on this database.
    pub async fn views(&self) -> ViewDb {
        ViewDb::open(&self.url).await.expect("open the views")
    }
}

/// A clock the test sets by hand (microseconds since the epoch).
#[derive(Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        Self(Arc::new(AtomicI64::new(t.timestamp_micros())))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        self.0.store(t.timestamp_micros(), Ordering::SeqCst);
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0.load(Ordering::SeqCst)).unwrap()
    }

    /// Moves the clock on by `seconds`.
    pub fn advance(&self, seconds: i64) -> DateTime<Utc> {
        self.0.fetch_add(seconds * 1_000_000, Ordering::SeqCst);
        self.now()
    }

    pub fn clock(&self) -> jobboard_eventstore::Clock {
        let micros = Arc::clone(&self.0);
        Arc::new(move || DateTime::from_timestamp_micros(micros.load(Ordering::SeqCst)).unwrap())
    }
}

/// Starts a runtime with `projectors`.
pub async fn spawn(
    store: &EventStore,
    db: &ViewDb,
    projectors: Vec<Arc<dyn Projector>>,
    options: RuntimeOptions,
) -> (ProjectionRuntime, CancellationToken) {
    let shutdown = CancellationToken::new();
    let runtime = ProjectionRuntime::spawn_with(
        db.clone(),
        store.clone(),
        projectors,
        options,
        shutdown.clone(),
    )
    .await
    .expect("spawn the runtime");
    (runtime, shutdown)
}

/// Starts a runtime with the postings projector alone.
pub async fn spawn_postings(
    store: &EventStore,
    db: &ViewDb,
) -> (ProjectionRuntime, CancellationToken) {
    let projectors: Vec<Arc<dyn Projector>> = vec![Arc::new(postings::PostingsProjector)];
    spawn(store, db, projectors, quick(500)).await
}

/// Cancels the runtime and waits until every projector has committed and stopped.
pub async fn stop(runtime: &ProjectionRuntime, shutdown: &CancellationToken) {
    shutdown.cancel();
    tokio::time::timeout(WAIT, runtime.stopped())
        .await
        .expect("the runtime stops");
}

pub fn posting_id(n: u128) -> PostingId {
    uuid::Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_0000 | n).into()
}

pub fn organisation(n: u128) -> OrganisationId {
    uuid::Uuid::from_u128(0x0194_0000_0000_7000_8000_00aa_0000_0000 | n).into()
}

pub fn stream(id: PostingId) -> StreamId {
    StreamId::new(format!("posting-{id}")).unwrap()
}

/// Appends `events` to the posting's stream, as the command layer would store them.
pub async fn append(store: &EventStore, id: PostingId, events: &[PostingEvent]) -> AppendOutcome {
    let events = events
        .iter()
        .map(|e| {
            NewEvent::new(
                e.type_name(),
                e.schema_version(),
                serde_json::to_value(e).unwrap(),
            )
        })
        .collect();
    store
        .append(
            &stream(id),
            ExpectedVersion::Any,
            events,
            CommandMetadata::default(),
        )
        .await
        .expect("append")
}

/// Appends an event the postings projector does not know.
pub async fn append_raw(
    store: &EventStore,
    stream: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> AppendOutcome {
    store
        .append(
            &StreamId::new(stream).unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new(event_type, 1, payload)],
            CommandMetadata::default(),
        )
        .await
        .expect("append")
}

/// Content complete enough to submit.
pub fn content(title: &str) -> PostingContent {
    PostingContent {
        name: format!("internal {title}"),
        title: title.to_owned(),
        description: "Synthesis and characterisation of thin-film materials.".into(),
        employment_terms: "Fixed term, two years".into(),
        location: "Tsukuba, Ibaraki".into(),
        institution_type: Some(InstitutionType::University),
        recruitment_period: Some(RecruitmentPeriod {
            start: date(2026, 2, 1),
            end: date(2026, 3, 31),
        }),
        referral_period_end: Some(date(2026, 3, 31)),
        web_application: true,
        ..PostingContent::default()
    }
}

pub fn drafted(id: PostingId, org: OrganisationId, title: &str) -> PostingEvent {
    PostingEvent::PostingDrafted {
        posting_id: id,
        organisation_id: org,
        language: Language::En,
        content: content(title),
        draft_version: 1,
        reused_from: None,
    }
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
pub async fn until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Options for tests: quick retries, polls and drops.
pub fn quick(batch_size: usize) -> RuntimeOptions {
    RuntimeOptions {
        batch_size,
        rebuild_batch_size: 7,
        retry_backoff: (Duration::from_millis(10), Duration::from_millis(50)),
        poll_interval: Duration::from_millis(50),
        drop_grace: Duration::from_millis(50),
        observe_interval: None,
        ..RuntimeOptions::default()
    }
}

/// Waits until the postings view has reached `at`.
pub async fn caught_up(runtime: &ProjectionRuntime, at: Checkpoint) {
    runtime
        .wait_for(postings::PROJECTOR, at, WAIT)
        .await
        .expect("the postings view catches up");
}

/// Every row of the postings view, newest first, read page by page.
pub async fn all_postings(view: &PostingsView) -> Vec<PostingRow> {
    let mut rows = Vec::new();
    let mut token = None;
    loop {
        let page = view
            .list(None, None, 7, token.as_deref())
            .await
            .expect("list");
        rows.extend(page.postings);
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return rows,
        }
    }
}
