//! Shared setup of the search view's suites: a fresh log per test (SQLite or PostgreSQL) with a
//! clock the test moves, an index directory, posting events written as the domain's JSON and
//! appended as the command layer stores them, and a referral hook for the agency scope.

#![allow(dead_code, unreachable_pub)]

pub use crate::support::{TestClock, append, date, organisation, posting_id};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use jobboard_domain::PostingEvent;
use jobboard_domain::posting::{
    AdditionalItem, EmploymentType, InstitutionType, Language, OrganisationId, PostingContent,
    PostingId, RecruitmentPeriod,
};
use jobboard_eventstore::{
    AppendOutcome, CommandMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StoreOptions, StreamId,
};
use jobboard_projections::Result;
use jobboard_projections::search::{
    AgencyChange, ReferralAgencies, SearchOptions, SearchQuery, SearchResults, SearchStatus,
    SearchView,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use jobboard_testkit::Kind;

/// How long a test waits for the view before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// A log, a clock on it, and a directory for the index, all as long as the test.
pub struct Env {
    pub store: EventStore,
    pub clock: TestClock,
    pub index_dir: tempfile::TempDir,
    _db: jobboard_testkit::TestDb,
}

impl Env {
    pub async fn new(kind: Kind) -> Self {
        let db = jobboard_testkit::TestDb::new(kind, "jobboard_search_test").await;
        let clock = TestClock::at(Utc.with_ymd_and_hms(2026, 1, 10, 1, 0, 0).unwrap());
        let options = StoreOptions {
            clock: clock.clock(),
            ..StoreOptions::default()
        };
        let store = EventStore::open(&db.url, options)
            .await
            .expect("open the store");
        Self {
            store,
            clock,
            index_dir: tempfile::tempdir().expect("an index directory"),
            _db: db,
        }
    }

    /// Opens the view on this test's index directory and spawns its runner.
    pub async fn start(&self, options: SearchOptions) -> Running {
        let (view, runner) = SearchView::open(self.index_dir.path(), options)
            .await
            .expect("open the search view");
        let shutdown = CancellationToken::new();
        tokio::spawn(runner.run(self.store.clone(), shutdown.clone()));
        Running { view, shutdown }
    }

    /// Appends `events` to the posting's stream one minute after the previous append.
    pub async fn append(&self, id: PostingId, events: &[PostingEvent]) -> AppendOutcome {
        self.clock.advance(60);
        append(&self.store, id, events).await
    }

    /// Appends a raw event to any stream.
    pub async fn append_raw(
        &self,
        stream: &str,
        event_type: &str,
        payload: serde_json::Value,
    ) -> AppendOutcome {
        self.clock.advance(60);
        self.store
            .append(
                &StreamId::new(stream).unwrap(),
                ExpectedVersion::Any,
                vec![NewEvent::new(event_type, 1, payload)],
                CommandMetadata::default(),
            )
            .await
            .expect("append")
    }

    /// How many events the log holds.
    pub async fn log_len(&self) -> u64 {
        let mut after = jobboard_eventstore::Checkpoint::START;
        let mut count = 0;
        loop {
            let page = self
                .store
                .read_all(after, 1000)
                .await
                .expect("read the log");
            let Some(last) = page.events.last() else {
                return count;
            };
            after = last.checkpoint();
            count += page.events.len() as u64;
        }
    }
}

/// A view with its runner.
pub struct Running {
    pub view: SearchView,
    pub shutdown: CancellationToken,
}

impl Running {
    /// Waits until queries see `outcome`.
    pub async fn saw(&self, outcome: &AppendOutcome) {
        self.view
            .wait_for(outcome.checkpoint, WAIT)
            .await
            .expect("the search view catches up");
    }

    /// Stops the runner and waits until it committed and stopped.
    pub async fn stop(self) -> SearchView {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.view.stopped())
            .await
            .expect("the runner stops");
        self.view
    }

    pub fn search(&self, query: &SearchQuery) -> SearchResults {
        self.view.search(query).expect("search")
    }

    /// The ids a query finds, in order.
    pub fn ids(&self, query: &SearchQuery) -> Vec<PostingId> {
        self.search(query)
            .hits
            .iter()
            .map(|h| h.posting_id)
            .collect()
    }

    /// The ids a query finds, as a set.
    pub fn set(&self, query: &SearchQuery) -> BTreeSet<PostingId> {
        self.ids(query).into_iter().collect()
    }

    /// Polls the status until `done` holds.
    pub async fn status_until(
        &self,
        what: &str,
        done: impl Fn(&SearchStatus) -> bool,
    ) -> SearchStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.view.status();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn agency(n: u128) -> OrganisationId {
    uuid::Uuid::from_u128(0x0194_0000_0000_7000_8000_00bb_0000_0000 | n).into()
}

/// Content complete enough to submit, with `title` and `description`.
pub fn content(title: &str, description: &str) -> PostingContent {
    PostingContent {
        name: format!("internal {title}"),
        title: title.to_owned(),
        description: description.to_owned(),
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

pub fn item(title: &str, detail: &str) -> AdditionalItem {
    AdditionalItem {
        title: title.into(),
        detail: detail.into(),
    }
}

pub fn with_end(mut content: PostingContent, end: Option<NaiveDate>) -> PostingContent {
    content.recruitment_period = end.map(|end| RecruitmentPeriod {
        start: date(2026, 1, 1),
        end,
    });
    content
}

pub fn with_terms(
    mut content: PostingContent,
    institution: InstitutionType,
    employment: Option<EmploymentType>,
    location: &str,
    web_application: bool,
) -> PostingContent {
    content.institution_type = Some(institution);
    content.employment_type = employment;
    content.location = location.into();
    content.web_application = web_application;
    content
}

// Events are written as the domain's JSON and read back through its type: the suite keeps
// compiling while the domain adds optional fields to them.

fn event(value: serde_json::Value) -> PostingEvent {
    serde_json::from_value(value).expect("a posting event")
}

pub fn drafted(
    id: PostingId,
    org: OrganisationId,
    language: Language,
    content: &PostingContent,
) -> PostingEvent {
    event(json!({
        "type": "PostingDrafted", "posting_id": id, "organisation_id": org,
        "language": language, "content": content, "draft_version": 1,
    }))
}

pub fn saved(content: &PostingContent, draft_version: u32) -> PostingEvent {
    event(json!({"type": "DraftSaved", "content": content, "draft_version": draft_version}))
}

pub fn submitted(content: &PostingContent) -> PostingEvent {
    event(json!({"type": "PostingSubmitted", "content": content, "draft_version": 1}))
}

pub fn approved() -> PostingEvent {
    event(json!({
        "type": "PostingApproved", "publish_date": "2026-01-20",
        "publishes_at": "2026-01-19T15:00:00Z",
    }))
}

pub fn published() -> PostingEvent {
    event(json!({"type": "PostingPublished", "published_at": "2026-01-19T15:00:00Z"}))
}

pub fn withdrawal_requested() -> PostingEvent {
    event(json!({
        "type": "WithdrawalRequested", "requested_at": "2026-01-25T01:00:00Z",
        "effective_at": "2026-01-25T13:00:00Z",
    }))
}

pub fn withdrawn() -> PostingEvent {
    event(json!({"type": "PostingWithdrawn", "withdrawn_at": "2026-01-25T13:00:00Z"}))
}

/// The events of a posting that is now public.
pub fn public_history(
    id: PostingId,
    org: OrganisationId,
    language: Language,
    content: &PostingContent,
) -> Vec<PostingEvent> {
    vec![
        drafted(id, org, language, content),
        submitted(content),
        approved(),
        published(),
    ]
}

/// Referral requests as the referral feature might record them: `ReferralsRequested` and
/// `ReferralsEnded` on `referral-…` streams, with the posting and the agency in the payload.
pub struct TestReferrals;

impl ReferralAgencies for TestReferrals {
    fn agency_changes(&self, event: &RecordedEvent) -> Result<Vec<AgencyChange>> {
        if !event.stream_id.starts_with("referral-") {
            return Ok(Vec::new());
        }
        let may_refer = match event.event_type.as_str() {
            "ReferralsRequested" => true,
            "ReferralsEnded" => false,
            _ => return Ok(Vec::new()),
        };
        let field = |name: &str| -> Result<uuid::Uuid> {
            event.payload[name]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| jobboard_projections::Error::Decode {
                    position: event.position,
                    reason: format!("no {name}"),
                })
        };
        Ok(vec![AgencyChange {
            posting_id: field("posting_id")?.into(),
            agency_id: field("agency_id")?.into(),
            may_refer,
        }])
    }
}

/// Options with the test referral hook.
pub fn options() -> SearchOptions {
    SearchOptions {
        referrals: Arc::new(TestReferrals),
        indexing_threads: 1,
        indexing_memory_bytes: 20 << 20,
        ..SearchOptions::default()
    }
}
