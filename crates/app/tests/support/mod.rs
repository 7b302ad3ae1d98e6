//! Fixtures for the command-layer tests: a fresh log per test (a temporary SQLite file, or a new
//! PostgreSQL database dropped again at the end), a fixed clock in Tokyo time, callers, content,
//! and shortcuts that walk a posting through its life.

#![allow(dead_code)] // Each test binary uses its own part of the fixtures.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_app::{
    Caller, CommandContext, CommandOptions, CommandOutcome, PostingCommands, Role, TimerOptions,
    Timers, stream_of,
};
use jobboard_domain::posting::{
    AdditionalItem, ApprovePosting, CreateDraft, EmploymentType, InstitutionType, Language,
    OrganisationId, PostingContent, PostingId, RecruitmentPeriod, SubmitForReview,
};
use jobboard_domain::{Clock, FixedClock, PostingCommand, PostingEvent};
use jobboard_eventstore::{EventStore, RecordedEvent, StoreOptions, StreamRange};
use uuid::Uuid;

pub(crate) use jobboard_testkit::Kind;

/// A database that lives as long as the test.
pub(crate) struct TestDb(jobboard_testkit::TestDb);

impl std::ops::Deref for TestDb {
    type Target = jobboard_testkit::TestDb;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TestDb {
    pub(crate) async fn new(kind: Kind) -> Self {
        Self(jobboard_testkit::TestDb::new(kind, "jobboard_app_test").await)
    }

    /// Opens the log (again: a second call is a restart, or a second instance).
    pub(crate) async fn open(&self) -> EventStore {
        EventStore::open(&self.url, StoreOptions::default())
            .await
            .expect("open the store")
    }
}

/// The first employer organisation.
pub(crate) const ORG_A: OrganisationId =
    OrganisationId::new(Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_00aa));
/// Another employer organisation.
pub(crate) const ORG_B: OrganisationId =
    OrganisationId::new(Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_00bb));

/// The log, the clock and the command layer of one test.
pub(crate) struct App {
    pub(crate) db: TestDb,
    pub(crate) store: EventStore,
    pub(crate) clock: Arc<FixedClock>,
    pub(crate) commands: PostingCommands,
}

impl App {
    /// A fresh log, the clock at 2026-01-31 10:00 in Tokyo, default options.
    pub(crate) async fn new(kind: Kind) -> Self {
        Self::with_options(kind, CommandOptions::default()).await
    }

    pub(crate) async fn with_options(kind: Kind, options: CommandOptions) -> Self {
        let db = TestDb::new(kind).await;
        let store = db.open().await;
        let clock = Arc::new(FixedClock::at(jst("2026-01-31T10:00:00")));
        let commands = PostingCommands::with_options(store.clone(), clock.clone(), options);
        Self {
            db,
            store,
            clock,
            commands,
        }
    }

    pub(crate) fn dyn_clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Timers on this app's log and clock, looking every 10 ms.
    pub(crate) fn timers(&self) -> Timers {
        Timers::with_options(
            self.store.clone(),
            self.commands.clone(),
            self.dyn_clock(),
            TimerOptions {
                tick: Duration::from_millis(10),
            },
        )
    }

    /// Runs `command` and panics on refusal.
    pub(crate) async fn ok(
        &self,
        ctx: &CommandContext,
        posting_id: PostingId,
        command: impl Into<PostingCommand>,
    ) -> CommandOutcome {
        let command = command.into();
        let name = command.name();
        self.commands
            .execute(ctx, Some(posting_id), command)
            .await
            .unwrap_or_else(|e| panic!("{name} on {posting_id}: {e:?}"))
    }

    /// Creates a draft with complete content for `org`, under command id `command_id`.
    pub(crate) async fn create(&self, org: OrganisationId, command_id: &str) -> PostingId {
        let outcome = self
            .commands
            .execute(&ctx(employer(org), command_id), None, create_draft(org))
            .await
            .expect("create a draft");
        assert_eq!(outcome.version, 1);
        outcome.posting_id
    }

    /// A posting of ORG_A, submitted and approved for `publish_date` (R-POST-3, R-POST-4).
    pub(crate) async fn approved(&self, publish_date: &str) -> PostingId {
        let id = self.create(ORG_A, &fresh_id()).await;
        self.ok(&ctx(employer(ORG_A), &fresh_id()), id, SubmitForReview)
            .await;
        self.ok(
            &ctx(operator(), &fresh_id()),
            id,
            ApprovePosting {
                publish_date: date(publish_date),
            },
        )
        .await;
        id
    }

    /// Every event of the posting's stream.
    pub(crate) async fn events(&self, posting_id: PostingId) -> Vec<RecordedEvent> {
        self.store
            .read_stream(&stream_of(posting_id), StreamRange::all())
            .await
            .expect("read the stream")
    }

    /// The event types of the posting's stream, in order.
    pub(crate) async fn types(&self, posting_id: PostingId) -> Vec<String> {
        self.events(posting_id)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// The posting's current version (0 if it does not exist).
    pub(crate) async fn version(&self, posting_id: PostingId) -> u64 {
        self.commands
            .load(posting_id)
            .await
            .expect("load")
            .map_or(0, |(_, v)| v)
    }
}

/// Decodes a recorded event.
pub(crate) fn decode(event: &RecordedEvent) -> PostingEvent {
    serde_json::from_value(event.payload.clone()).expect("a posting event")
}

pub(crate) fn employer(org: OrganisationId) -> Caller {
    Caller::new(format!("staff@{org}"), Role::Employer, org.to_string())
}

pub(crate) fn operator() -> Caller {
    Caller::new("reviewer-1", Role::Operator, "operator")
}

pub(crate) fn service() -> Caller {
    Caller::new("publisher", Role::Service, "jobboard")
}

pub(crate) fn ctx(caller: Caller, command_id: &str) -> CommandContext {
    CommandContext::new(caller, command_id)
}

/// A command id no other command of the test uses.
pub(crate) fn fresh_id() -> String {
    format!("c-{}", Uuid::new_v4().simple())
}

/// A CreateDraft for `org` with complete content; the command layer fills in the posting id.
pub(crate) fn create_draft(org: OrganisationId) -> PostingCommand {
    CreateDraft {
        posting_id: PostingId::new(Uuid::nil()),
        organisation_id: org,
        language: Language::Ja,
        content: complete_content(),
        reused_from: None,
    }
    .into()
}

/// The instant of a Tokyo wall-clock time, written `2026-01-31T22:00:00`.
pub(crate) fn jst(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{local}+09:00"))
        .unwrap_or_else(|e| panic!("{local}: {e}"))
        .with_timezone(&Utc)
}

pub(crate) fn date(s: &str) -> NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The smallest content a draft may have (R-POST-2).
pub(crate) fn minimal_content() -> PostingContent {
    PostingContent {
        name: "2026 postdoc, materials lab".to_owned(),
        title: "博士研究員（材料科学）".to_owned(),
        ..PostingContent::default()
    }
}

/// Content complete enough to submit (R-POST-3).
pub(crate) fn complete_content() -> PostingContent {
    PostingContent {
        name: "2026 postdoc, materials lab".to_owned(),
        title: "博士研究員（材料科学）".to_owned(),
        description: "薄膜材料の合成と評価に従事していただきます。".to_owned(),
        additional_items: vec![AdditionalItem {
            title: "応募書類".to_owned(),
            detail: "履歴書、研究業績リスト".to_owned(),
        }],
        employment_terms: "任期2年、年俸制".to_owned(),
        location: "茨城県つくば市".to_owned(),
        institution_type: Some(InstitutionType::PublicResearchInstitute),
        recruitment_period: Some(RecruitmentPeriod {
            start: date("2026-02-01"),
            end: date("2026-03-31"),
        }),
        referral_period_end: Some(date("2026-03-31")),
        web_application: true,
        direct_application: false,
        employment_type: Some(EmploymentType::FixedTerm),
        new_graduate: false,
    }
}

/// Polls `check` until it holds, failing after `within`: never sleep-and-hope.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
