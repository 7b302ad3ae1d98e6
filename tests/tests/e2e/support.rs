//! The harness: a fresh database per test (SQLite in a temporary directory, or a new PostgreSQL
//! database dropped afterwards), the real server on 127.0.0.1:0 with a `FixedClock`, clients
//! with real tokens, and polling with deadlines.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
pub(crate) use jobboard::auth::Caller;
use jobboard::auth::{Role, TokenKeys};
use jobboard::{Application, Config};
use jobboard_domain::FixedClock;
use jobboard_domain::time::BUSINESS_OFFSET;
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::access_counts_service_client::AccessCountsServiceClient;
use jobboard_proto::v1::admin_service_client::AdminServiceClient;
use jobboard_proto::v1::event_feed_service_client::EventFeedServiceClient;
use jobboard_proto::v1::notifications_service_client::NotificationsServiceClient;
use jobboard_proto::v1::posting_query_service_client::PostingQueryServiceClient;
use jobboard_proto::v1::postings_service_client::PostingsServiceClient;
use jobboard_proto::v1::search_service_client::SearchServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// How long any awaited condition may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// How often the server's timers look at the clock: short, so a moved clock takes effect fast.
pub(crate) const TICK: Duration = Duration::from_millis(20);

pub(crate) use jobboard_testkit::Kind as Backend;

/// A database, and the server's data directory, that outlive server restarts and are dropped
/// with the test.
struct TestDb {
    url: String,
    dir: tempfile::TempDir,
    _db: jobboard_testkit::TestDb,
}

impl TestDb {
    async fn new(backend: Backend) -> Self {
        let db = jobboard_testkit::TestDb::new(backend, "jobboard_e2e").await;
        Self {
            url: db.url.clone(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            _db: db,
        }
    }
}

/// One running instance of the server.
struct Running {
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), jobboard::Error>>>,
}

impl Running {
    /// Starts a server on `db` reading `clock`; also returns the keys it verifies tokens with.
    async fn start(db: &TestDb, clock: &Arc<FixedClock>) -> (Self, TokenKeys) {
        let mut config = Config::ephemeral(db.dir.path());
        config.database_url = db.url.clone();
        // No configured key: the server generates one into the data directory, which a restart
        // reads again, so tokens minted before a restart stay valid.
        config.timer_tick = TICK;
        let app = Application::build_with_clock(config, clock.clone())
            .await
            .expect("the application builds");
        let addr = app.grpc_addr();
        let keys = app.token_keys().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("an endpoint")
            .connect_lazy();
        let running = Self {
            channel,
            shutdown: Some(shutdown),
            task: Some(task),
        };
        running.wait_until_serving().await;
        (running, keys)
    }

    async fn wait_until_serving(&self) {
        let health = HealthClient::new(self.channel.clone());
        eventually("the posting services report SERVING", || {
            let mut health = health.clone();
            async move {
                health
                    .check(HealthCheckRequest {
                        service: "jobboard.v1.PostingsService".into(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
            }
        })
        .await;
    }

    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the server stops within the deadline")
                .expect("the server task does not panic")
                .expect("the server stops cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Adds `authorization: Bearer <token>` when it has a token.
#[derive(Clone, Debug)]
pub(crate) struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}").parse().expect("ascii token");
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

pub(crate) type Postings = PostingsServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type Queries = PostingQueryServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type Feed = EventFeedServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type NotificationsClient =
    NotificationsServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type AccessClient = AccessCountsServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type SearchClient = SearchServiceClient<InterceptedService<Channel, Bearer>>;
pub(crate) type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// The server under test, its database and its clock. Fields drop in order: the server stops
/// before its database goes.
pub(crate) struct TestApp {
    running: Running,
    /// The one clock every decision by time reads; tests move it.
    pub(crate) clock: Arc<FixedClock>,
    keys: TokenKeys,
    db: TestDb,
}

impl TestApp {
    /// A server on a fresh `backend` database, its clock standing at `now`.
    pub(crate) async fn start(backend: Backend, now: DateTime<Utc>) -> Self {
        let db = TestDb::new(backend).await;
        let clock = Arc::new(FixedClock::at(now));
        let (running, keys) = Running::start(&db, &clock).await;
        Self {
            running,
            clock,
            keys,
            db,
        }
    }

    /// Stops the server gracefully (drains calls, projectors checkpoint, databases close).
    pub(crate) async fn stop(&mut self) {
        self.running.stop().await;
    }

    /// Starts a new server on the same database and clock (after [`stop`](Self::stop)).
    pub(crate) async fn restart(&mut self) {
        self.running.stop().await;
        (self.running, self.keys) = Running::start(&self.db, &self.clock).await;
    }

    /// A token the server accepts for `caller`.
    pub(crate) fn token(&self, caller: &Caller) -> String {
        self.keys
            .issue(caller, Duration::from_secs(3600))
            .expect("a token")
    }

    /// The postings command client, as `caller` (or anonymous with `None`).
    pub(crate) fn postings(&self, caller: Option<&Caller>) -> Postings {
        PostingsServiceClient::with_interceptor(self.running.channel.clone(), self.bearer(caller))
    }

    /// The postings query client, as `caller` (or anonymous with `None`).
    pub(crate) fn queries(&self, caller: Option<&Caller>) -> Queries {
        PostingQueryServiceClient::with_interceptor(
            self.running.channel.clone(),
            self.bearer(caller),
        )
    }

    /// The event feed client, as an internal service.
    pub(crate) fn feed(&self) -> Feed {
        EventFeedServiceClient::with_interceptor(
            self.running.channel.clone(),
            self.bearer(Some(&service())),
        )
    }

    /// The notifications client, as `caller`.
    pub(crate) fn notifications(&self, caller: &Caller) -> NotificationsClient {
        NotificationsServiceClient::with_interceptor(
            self.running.channel.clone(),
            self.bearer(Some(caller)),
        )
    }

    /// The access counts client, as `caller`.
    pub(crate) fn access(&self, caller: &Caller) -> AccessClient {
        AccessCountsServiceClient::with_interceptor(
            self.running.channel.clone(),
            self.bearer(Some(caller)),
        )
    }

    /// The search client, as `caller`.
    pub(crate) fn search(&self, caller: &Caller) -> SearchClient {
        SearchServiceClient::with_interceptor(
            self.running.channel.clone(),
            self.bearer(Some(caller)),
        )
    }

    /// The admin client, as `caller`.
    pub(crate) fn admin(&self, caller: &Caller) -> AdminClient {
        AdminServiceClient::with_interceptor(
            self.running.channel.clone(),
            self.bearer(Some(caller)),
        )
    }

    /// A postings client sending `token` as is.
    pub(crate) fn postings_with_token(&self, token: Option<String>) -> Postings {
        PostingsServiceClient::with_interceptor(self.running.channel.clone(), Bearer(token))
    }

    /// A query client sending `token` as is.
    pub(crate) fn queries_with_token(&self, token: Option<String>) -> Queries {
        PostingQueryServiceClient::with_interceptor(self.running.channel.clone(), Bearer(token))
    }

    fn bearer(&self, caller: Option<&Caller>) -> Bearer {
        Bearer(caller.map(|c| self.token(c)))
    }

    /// Creates a draft with complete content as `employer`; its id and result.
    pub(crate) async fn create_draft(&self, employer: &Caller) -> (String, pb::CommandResult) {
        let response = self
            .postings(Some(employer))
            .create_draft(pb::CreateDraftRequest {
                command_id: command_id(),
                posting_id: String::new(),
                language: pb::Language::Ja.into(),
                content: Some(content("ポスドク研究員")),
            })
            .await
            .expect("CreateDraft")
            .into_inner();
        (response.posting_id, response.result.expect("a result"))
    }

    /// Creates a draft and submits it for review as `employer`; its id and the submit's result.
    pub(crate) async fn submitted(&self, employer: &Caller) -> (String, pb::CommandResult) {
        let (id, _) = self.create_draft(employer).await;
        let result = self.submit(employer, &id).await;
        (id, result)
    }

    /// Submits `posting_id` for review as `employer`.
    pub(crate) async fn submit(&self, employer: &Caller, posting_id: &str) -> pb::CommandResult {
        self.postings(Some(employer))
            .submit_for_review(pb::SubmitForReviewRequest {
                command_id: command_id(),
                posting_id: posting_id.into(),
                expected_version: None,
            })
            .await
            .expect("SubmitForReview")
            .into_inner()
            .result
            .expect("a result")
    }

    /// Approves `posting_id` as the operator for publication on `date`.
    pub(crate) async fn approve(
        &self,
        posting_id: &str,
        date: pb::Date,
    ) -> Result<pb::CommandResult, Status> {
        self.postings(Some(&operator()))
            .approve_posting(pb::ApprovePostingRequest {
                command_id: command_id(),
                posting_id: posting_id.into(),
                expected_version: None,
                publish_date: Some(date),
            })
            .await
            .map(|r| r.into_inner().result.expect("a result"))
    }

    /// The posting as `caller` sees it once the view has reached `min_position`.
    pub(crate) async fn get(
        &self,
        caller: &Caller,
        posting_id: &str,
        min_position: Option<pb::LogPosition>,
    ) -> pb::Posting {
        self.queries(Some(caller))
            .get_posting(pb::GetPostingRequest {
                posting_id: posting_id.into(),
                min_position,
            })
            .await
            .expect("GetPosting")
            .into_inner()
            .posting
            .expect("a posting")
    }

    /// Polls the view until `posting_id` is in `status` (the timers act on their own time, and
    /// the view may not even have the posting yet).
    pub(crate) async fn wait_for_status(
        &self,
        posting_id: &str,
        status: pb::PostingStatus,
    ) -> pb::Posting {
        let queries = self.queries(Some(&operator()));
        poll(&format!("{posting_id} is {status:?}"), || {
            let mut queries = queries.clone();
            async move {
                let request = pb::GetPostingRequest {
                    posting_id: posting_id.into(),
                    min_position: None,
                };
                match queries.get_posting(request).await {
                    Ok(response) => {
                        let posting = response.into_inner().posting.expect("a posting");
                        (posting.status == status as i32).then_some(posting)
                    }
                    Err(status) if status.code() == tonic::Code::NotFound => None,
                    Err(status) => panic!("GetPosting failed: {status:?}"),
                }
            }
        })
        .await
    }

    /// Polls the view until `posting_id` satisfies `done` (timers act on their own time).
    pub(crate) async fn poll_posting(
        &self,
        posting_id: &str,
        done: impl Fn(&pb::Posting) -> bool,
    ) -> pb::Posting {
        let queries = self.queries(Some(&operator()));
        let done = &done;
        poll(&format!("{posting_id} reaches the expected state"), || {
            let mut queries = queries.clone();
            async move {
                let request = pb::GetPostingRequest {
                    posting_id: posting_id.into(),
                    min_position: None,
                };
                let posting = queries
                    .get_posting(request)
                    .await
                    .expect("GetPosting")
                    .into_inner()
                    .posting
                    .expect("a posting");
                done(&posting).then_some(posting)
            }
        })
        .await
    }

    /// Every event of the log, from the start, through ReadAll.
    pub(crate) async fn read_all(&self) -> Vec<pb::Event> {
        let mut feed = self.feed();
        let mut after = None;
        let mut events = Vec::new();
        loop {
            let page = feed
                .read_all(pb::ReadAllRequest { after, limit: 0 })
                .await
                .expect("ReadAll")
                .into_inner();
            if page.events.is_empty() && !page.held {
                return events;
            }
            after = page.next;
            events.extend(page.events);
        }
    }
}

/// A fresh command id.
pub(crate) fn command_id() -> String {
    Uuid::new_v4().to_string()
}

/// A staff member of a new employer organisation.
pub(crate) fn employer() -> Caller {
    Caller::new("employer-staff", Role::Employer, Uuid::new_v4().to_string())
}

/// An operator (事務局) staff member.
pub(crate) fn operator() -> Caller {
    Caller::new("operator-staff", Role::Operator, "operator-office")
}

/// Operations staff.
pub(crate) fn ops() -> Caller {
    Caller::new("ops-staff", Role::Ops, "jobboard-ops")
}

/// An internal service.
pub(crate) fn service() -> Caller {
    Caller::new("sync-service", Role::Service, "jobboard-internal")
}

/// Content complete enough to be submitted for review (R-POST-3).
pub(crate) fn content(title: &str) -> pb::PostingContent {
    pb::PostingContent {
        name: format!("{title} (internal)"),
        title: title.into(),
        description: "Research on event-sourced job boards.".into(),
        additional_items: vec![pb::AdditionalItem {
            title: "Lab".into(),
            detail: "Kyoto".into(),
        }],
        employment_terms: "Fixed term, 3 years".into(),
        location: "Kyoto".into(),
        institution_type: pb::InstitutionType::University.into(),
        recruitment_period: Some(pb::RecruitmentPeriod {
            start: Some(date(2026, 2, 1)),
            end: Some(date(2026, 3, 31)),
        }),
        referral_period_end: Some(date(2026, 3, 31)),
        web_application: true,
        direct_application: false,
        employment_type: pb::EmploymentType::FixedTerm.into(),
        new_graduate: false,
    }
}

/// A protobuf date.
pub(crate) fn date(year: i32, month: i32, day: i32) -> pb::Date {
    pb::Date { year, month, day }
}

/// The instant of a business time in Tokyo, `2026-01-31T22:00:00`.
pub(crate) fn jst(local: &str) -> DateTime<Utc> {
    local
        .parse::<NaiveDateTime>()
        .expect("a local date and time")
        .and_local_timezone(BUSINESS_OFFSET)
        .single()
        .expect("a fixed offset maps every local time once")
        .with_timezone(&Utc)
}

/// The protobuf timestamp of an instant.
pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).expect("below 2e9"),
    }
}

/// The (tx_id, position) pair of an event, for ordering.
pub(crate) fn position(event: &pb::Event) -> (u64, u64) {
    let p = event.position.expect("a position");
    (p.tx_id, p.position)
}

/// Polls `attempt` until it yields a value, failing the test after [`DEADLINE`].
pub(crate) async fn poll<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, || {
        let checked = check();
        async move { checked.await.then_some(()) }
    })
    .await;
}
