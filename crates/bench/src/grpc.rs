//! The `grpc` benchmark: N clients drive the posting commands over real gRPC connections, as
//! employers and the operator would, and probe how soon the postings view shows a command.
//!
//! Each client acts for an organisation of its own and runs postings through their life until M
//! commands in all are done: CreateDraft, SaveDraft ×3 (bilingual content of ~2 KB), then
//! SubmitForReview as the employer, then ApprovePosting (a publish date a month ahead) as the
//! operator. Every command carries a fresh command id and the version the previous one returned.
//! After every `--lag-every`th command a spawned probe calls GetPosting with `min_position` set to
//! the command's position; the time from the command's response to the probe's response is the
//! view lag. Probes run beside the command stream and are not counted as commands.
//!
//! `--long-stream` measures SaveDraft instead, first on fresh postings (one per client), then on
//! the same postings once grown to `--stream-events` events: snapshots should make both equal.
//!
//! Without `--addr` the service runs in this process on a fresh database (dropped afterwards);
//! with it, an already running server is driven, on whatever database it uses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{Datelike, Days, NaiveDate, Utc};
use hdrhistogram::Histogram;
use jobboard::auth::{Caller, Role, TokenKeys};
use jobboard::config::{AuthConfig, Secret};
use jobboard_eventstore::StoreOptions;
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::posting_query_service_client::PostingQueryServiceClient;
use jobboard_proto::v1::postings_service_client::PostingsServiceClient;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};
use uuid::Uuid;

use crate::{Backend, FreshDb, millis, round};

/// Deadline of every command; generous, so that a slow command is measured, not cut off.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a lag probe; the server waits at most 5 s for `min_position` anyway.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the bench's tokens are valid: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// How often growing the long streams reports its progress (it takes minutes).
const GROWTH_REPORT: Duration = Duration::from_secs(10);

/// Options of the `grpc` benchmark.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Database of the in-process server (default postgres); with `--addr`, only a label for
    /// the report.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Concurrent clients, each with a connection and an organisation of its own.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Commands in all (lag probes not included).
    #[arg(long, default_value_t = 4000)]
    commands: u64,
    /// Drive the server at HOST:PORT instead of starting one in this process.
    #[arg(long)]
    addr: Option<String>,
    /// The server's token signing key (base64), to mint tokens with `--addr`.
    #[arg(long, env = "JOBBOARD_AUTH__SIGNING_KEY", hide_env_values = true)]
    token_key: Option<String>,
    /// The issuer the server expects in tokens (`auth.issuer`).
    #[arg(long, env = "JOBBOARD_AUTH__ISSUER", default_value = "jobboard")]
    issuer: String,
    /// Probe the view lag after every Nth command of each client; 0 turns probes off.
    #[arg(long, default_value_t = 4)]
    lag_every: u64,
    /// Measure SaveDraft on fresh postings, then on the same postings grown to
    /// `--stream-events` events.
    #[arg(long)]
    long_stream: bool,
    /// Events each long stream is grown to.
    #[arg(long, default_value_t = 10_000)]
    stream_events: u64,
    /// Print only the JSON line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs the benchmark and returns its JSON report.
pub(crate) async fn run(args: Args) -> anyhow::Result<Value> {
    let clients = args.clients.max(1);
    let (server, keys, backend, addr) = match &args.addr {
        Some(addr) => {
            let key = args.token_key.clone().context(
                "--addr needs the server's signing key: --token-key or JOBBOARD_AUTH__SIGNING_KEY",
            )?;
            let keys = TokenKeys::load_or_create(&AuthConfig {
                signing_key: Some(Secret::new(key)),
                key_file: std::path::PathBuf::new(),
                issuer: args.issuer.clone(),
            })
            .context("the token key is not usable")?;
            let backend = args.backend.map_or("unknown", Backend::name).to_owned();
            (None, keys, backend, addr.clone())
        }
        None => {
            let server = InProcess::start(&args).await?;
            let keys = server.keys.clone();
            let backend = server.backend.clone();
            let addr = server.addr.to_string();
            (Some(server), keys, backend, addr)
        }
    };
    if !args.json {
        let place = match &server {
            Some(server) => format!("in-process server on {} ({})", addr, server.db.describe()),
            None => format!("server at {addr}"),
        };
        eprintln!(
            "{clients} clients, {} commands, {place}, backend {backend}",
            args.commands
        );
    }
    let result = drive(&args, clients, &addr, &keys, &backend).await;
    if let Some(server) = server {
        server.stop().await;
    }
    result
}

async fn drive(
    args: &Args,
    clients: usize,
    addr: &str,
    keys: &TokenKeys,
    backend: &str,
) -> anyhow::Result<Value> {
    let operator = token(
        keys,
        &Caller::new("bench-operator", Role::Operator, "bench-operators"),
    )?;
    let mut pool = Vec::with_capacity(clients);
    for i in 0..clients {
        pool.push(Client::connect(addr, keys, operator.clone(), i, args.lag_every).await?);
    }
    let mut report = json!({
        "bench": "grpc",
        "backend": backend,
        "server": if args.addr.is_some() { "remote" } else { "in-process" },
        "clients": clients,
    });
    if args.long_stream {
        for client in &mut pool {
            client.start_long_stream().await?;
        }
        let (pool_back, fresh) = phase(pool, args.commands, Workload::SaveDraft).await;
        pool = pool_back;
        if !args.json {
            eprintln!("fresh streams: {}", fresh.summary());
        }
        let began = Instant::now();
        let growth_errors;
        (pool, growth_errors) = grow(pool, args.stream_events, args.json).await;
        let growth_seconds = began.elapsed().as_secs_f64();
        let stream_events = pool.iter().map(|c| c.version).min().unwrap_or(0);
        let (_, long) = phase(pool, args.commands, Workload::SaveDraft).await;
        if !args.json {
            eprintln!("{stream_events}-event streams: {}", long.summary());
        }
        long.write(&mut report);
        fresh.write_prefixed(&mut report, "fresh_");
        report["long_stream"] = json!(true);
        report["stream_events"] = json!(stream_events);
        report["growth_seconds"] = json!(round(growth_seconds));
        report["growth_errors"] = json!(growth_errors);
    } else {
        let (_, mix) = phase(pool, args.commands, Workload::PostingMix).await;
        if !args.json {
            eprintln!("{}", mix.summary());
            for (kind, histogram) in &mix.stats.by_kind {
                eprintln!(
                    "  {kind:<16} {:>6} commands  p50 {:>7.3} ms  p99 {:>7.3} ms",
                    histogram.len(),
                    millis(histogram.value_at_quantile(0.5)),
                    millis(histogram.value_at_quantile(0.99)),
                );
            }
        }
        mix.write(&mut report);
    }
    Ok(report)
}

/// What the clients send in a measured phase.
#[derive(Clone, Copy, Debug)]
enum Workload {
    /// Postings through their life: create, save ×3, submit, approve.
    PostingMix,
    /// SaveDraft with the expected version, on each client's one posting.
    SaveDraft,
}

/// Runs one measured phase: every client works until `commands` commands in all were sent.
async fn phase(pool: Vec<Client>, commands: u64, workload: Workload) -> (Vec<Client>, Phase) {
    let budget = Arc::new(Budget {
        sent: AtomicU64::new(0),
        total: commands,
    });
    let start = Arc::new(tokio::sync::Barrier::new(pool.len() + 1));
    let tasks: Vec<_> = pool
        .into_iter()
        .map(|mut client| {
            let budget = Arc::clone(&budget);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                match workload {
                    Workload::PostingMix => client.posting_mix(&budget).await,
                    Workload::SaveDraft => client.save_drafts(&budget).await,
                }
                client
            })
        })
        .collect();
    start.wait().await;
    let began = Instant::now();
    let mut pool = Vec::with_capacity(tasks.len());
    for task in tasks {
        pool.push(task.await.expect("a client task panicked"));
    }
    let seconds = began.elapsed().as_secs_f64();
    let mut phase = Phase {
        commands: budget.sent.load(Ordering::Relaxed).min(commands),
        seconds,
        stats: Stats::default(),
        lag: Histogram::new(3).expect("histogram"),
        lag_errors: BTreeMap::new(),
        lag_stale: 0,
    };
    // Only now wait for the probes: they ran beside the commands and are not part of their time.
    for client in &mut pool {
        phase.stats.merge(std::mem::take(&mut client.stats));
        for probe in std::mem::take(&mut client.probes) {
            match probe.await.expect("a probe panicked") {
                Probe::Seen { micros, stale } => {
                    phase.lag.record(micros.max(1)).expect("in range");
                    phase.lag_stale += u64::from(stale);
                }
                Probe::Failed(code, message) => {
                    count_error(
                        &mut phase.lag_errors,
                        &mut phase.stats.samples,
                        code,
                        message,
                    );
                }
            }
        }
    }
    (pool, phase)
}

/// Grows each client's posting to `events` events with SaveDrafts of small content; all streams
/// grow at once, each with one writer (concurrent SaveDrafts on one stream would only conflict).
/// Returns the errors by code, apart from the measured phases'.
async fn grow(pool: Vec<Client>, events: u64, quiet: bool) -> (Vec<Client>, BTreeMap<String, u64>) {
    let target = events;
    let done = Arc::new(AtomicU64::new(0));
    let total: u64 = pool.iter().map(|c| target.saturating_sub(c.version)).sum();
    let tasks: Vec<_> = pool
        .into_iter()
        .map(|mut client| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                client.grow(target, &done).await;
                client
            })
        })
        .collect();
    let began = Instant::now();
    let mut last_report = Instant::now();
    while !tasks.iter().all(JoinHandle::is_finished) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !quiet && last_report.elapsed() >= GROWTH_REPORT {
            last_report = Instant::now();
            let n = done.load(Ordering::Relaxed);
            eprintln!(
                "growing streams: {n}/{total} SaveDrafts, {:.0}/s",
                n as f64 / began.elapsed().as_secs_f64()
            );
        }
    }
    let mut pool = Vec::with_capacity(tasks.len());
    let mut errors = Stats::default();
    for task in tasks {
        let mut client = task.await.expect("a client task panicked");
        errors.merge(std::mem::take(&mut client.stats));
        pool.push(client);
    }
    if !quiet && !errors.errors.is_empty() {
        eprintln!(
            "errors while growing: {:?}, first messages {:?}",
            errors.errors, errors.samples
        );
    }
    (pool, errors.errors)
}

/// The commands of a phase, shared by its clients.
struct Budget {
    sent: AtomicU64,
    total: u64,
}

impl Budget {
    /// Claims one command; false once all were claimed.
    fn take(&self) -> bool {
        self.sent.fetch_add(1, Ordering::Relaxed) < self.total
    }
}

/// One simulated client: a connection, an employer organisation, and the operator's token.
struct Client {
    postings: PostingsServiceClient<Channel>,
    queries: PostingQueryServiceClient<Channel>,
    employer: MetadataValue<Ascii>,
    operator: MetadataValue<Ascii>,
    content: ContentMaker,
    lag_every: u64,
    /// Commands that succeeded, for picking which ones to probe.
    succeeded: u64,
    /// The long-stream posting and its version.
    posting: Option<String>,
    version: u64,
    stats: Stats,
    probes: Vec<JoinHandle<Probe>>,
}

impl Client {
    async fn connect(
        addr: &str,
        keys: &TokenKeys,
        operator: MetadataValue<Ascii>,
        index: usize,
        lag_every: u64,
    ) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("cannot connect to the gRPC server at {addr}"))?;
        let organisation = Uuid::new_v4();
        let employer = token(
            keys,
            &Caller::new(
                format!("bench-employer-{index}"),
                Role::Employer,
                organisation.to_string(),
            ),
        )?;
        Ok(Self {
            postings: PostingsServiceClient::new(channel.clone()),
            queries: PostingQueryServiceClient::new(channel),
            employer,
            operator,
            content: ContentMaker::new(index),
            lag_every,
            succeeded: 0,
            posting: None,
            version: 0,
            stats: Stats::default(),
            probes: Vec::new(),
        })
    }

    /// Postings through their life until the budget is spent; a refused command abandons its
    /// posting, as a client that cannot tell the posting's state would.
    async fn posting_mix(&mut self, budget: &Budget) {
        let publish_date = tokyo_today() + Days::new(30);
        'postings: while budget.take() {
            let Some((posting, mut version)) = self.create_draft().await else {
                continue;
            };
            for _ in 0..3 {
                if !budget.take() {
                    break 'postings;
                }
                let content = self.content.full();
                match self.save_draft(&posting, Some(version), content).await {
                    Some(v) => version = v,
                    None => continue 'postings,
                }
            }
            if !budget.take() {
                break;
            }
            let Some(v) = self.submit(&posting, version).await else {
                continue;
            };
            if !budget.take() {
                break;
            }
            self.approve(&posting, v, publish_date).await;
        }
    }

    /// Creates the posting a long-stream run works on (not measured).
    async fn start_long_stream(&mut self) -> anyhow::Result<()> {
        let began = Instant::now();
        let request = request(self.create_request(), &self.employer);
        let outcome = self.postings.create_draft(request).await;
        match outcome {
            Ok(response) => {
                let response = response.into_inner();
                self.version = response.result.map_or(0, |r| r.version);
                self.posting = Some(response.posting_id);
                Ok(())
            }
            Err(status) => bail!(
                "CreateDraft failed after {:?}: {:?} {}",
                began.elapsed(),
                status.code(),
                status.message()
            ),
        }
    }

    /// SaveDrafts of full content on the client's posting until the budget is spent.
    async fn save_drafts(&mut self, budget: &Budget) {
        let posting = self.posting.clone().expect("start_long_stream ran");
        // After a failure the version is unknown: the next save goes without an expectation
        // and tells it, as a client reloading the posting would learn it.
        let mut expected = Some(self.version);
        while budget.take() {
            let content = self.content.full();
            match self.save_draft(&posting, expected, content).await {
                Some(v) => {
                    self.version = v;
                    expected = Some(v);
                }
                None => expected = None,
            }
        }
    }

    /// Grows the client's posting to `target` events with small SaveDrafts (not measured; a
    /// failure is still counted as an error).
    async fn grow(&mut self, target: u64, done: &AtomicU64) {
        let posting = self.posting.clone().expect("start_long_stream ran");
        let mut expected = Some(self.version);
        while self.version < target {
            let request = request(
                pb::SaveDraftRequest {
                    command_id: Uuid::new_v4().to_string(),
                    posting_id: posting.clone(),
                    expected_version: expected,
                    content: Some(self.content.small()),
                },
                &self.employer,
            );
            match self.postings.save_draft(request).await {
                Ok(response) => {
                    let version = response.into_inner().result.map_or(0, |r| r.version);
                    self.version = self.version.max(version);
                    expected = Some(self.version);
                }
                Err(status) => {
                    self.stats.error(status);
                    expected = None;
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn create_request(&mut self) -> pb::CreateDraftRequest {
        pb::CreateDraftRequest {
            command_id: Uuid::new_v4().to_string(),
            posting_id: String::new(),
            language: pb::Language::Ja.into(),
            content: Some(self.content.first()),
        }
    }

    async fn create_draft(&mut self) -> Option<(String, u64)> {
        let request = request(self.create_request(), &self.employer);
        let began = Instant::now();
        let outcome = self.postings.create_draft(request).await;
        let response = self.finish("CreateDraft", began, outcome)?;
        let result = response.result.as_ref()?;
        let version = result.version;
        self.probe(&response.posting_id, result);
        Some((response.posting_id, version))
    }

    async fn save_draft(
        &mut self,
        posting: &str,
        expected_version: Option<u64>,
        content: pb::PostingContent,
    ) -> Option<u64> {
        let request = request(
            pb::SaveDraftRequest {
                command_id: Uuid::new_v4().to_string(),
                posting_id: posting.to_owned(),
                expected_version,
                content: Some(content),
            },
            &self.employer,
        );
        let began = Instant::now();
        let outcome = self.postings.save_draft(request).await;
        let result = self.finish("SaveDraft", began, outcome)?.result?;
        self.probe(posting, &result);
        Some(result.version)
    }

    async fn submit(&mut self, posting: &str, version: u64) -> Option<u64> {
        let request = request(
            pb::SubmitForReviewRequest {
                command_id: Uuid::new_v4().to_string(),
                posting_id: posting.to_owned(),
                expected_version: Some(version),
            },
            &self.employer,
        );
        let began = Instant::now();
        let outcome = self.postings.submit_for_review(request).await;
        let result = self.finish("SubmitForReview", began, outcome)?.result?;
        self.probe(posting, &result);
        Some(result.version)
    }

    async fn approve(&mut self, posting: &str, version: u64, publish_date: NaiveDate) {
        let request = request(
            pb::ApprovePostingRequest {
                command_id: Uuid::new_v4().to_string(),
                posting_id: posting.to_owned(),
                expected_version: Some(version),
                publish_date: Some(date(publish_date)),
            },
            &self.operator,
        );
        let began = Instant::now();
        let outcome = self.postings.approve_posting(request).await;
        if let Some(result) = self
            .finish("ApprovePosting", began, outcome)
            .and_then(|r| r.result)
        {
            self.probe(posting, &result);
        }
    }

    /// Records a command's latency, or its error; a success without a result is an error too.
    fn finish<R: HasResult>(
        &mut self,
        kind: &'static str,
        began: Instant,
        outcome: Result<Response<R>, Status>,
    ) -> Option<R> {
        match outcome {
            Ok(response) => {
                let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                let response = response.into_inner();
                if response.result().is_none() {
                    self.stats.error(Status::internal(format!(
                        "{kind} answered without a result"
                    )));
                    return None;
                }
                self.stats.record(kind, micros);
                Some(response)
            }
            Err(status) => {
                self.stats.error(status);
                None
            }
        }
    }

    /// Every `lag_every`th success: a spawned GetPosting with the command's position, timed from
    /// now (the command's response).
    fn probe(&mut self, posting: &str, result: &pb::CommandResult) {
        self.succeeded += 1;
        if self.lag_every == 0 || !self.succeeded.is_multiple_of(self.lag_every) {
            return;
        }
        let responded = Instant::now();
        let mut queries = self.queries.clone();
        let mut request = request(
            pb::GetPostingRequest {
                posting_id: posting.to_owned(),
                min_position: result.position,
            },
            &self.employer,
        );
        request.set_timeout(PROBE_TIMEOUT);
        let version = result.version;
        self.probes.push(tokio::spawn(async move {
            match queries.get_posting(request).await {
                Ok(response) => {
                    let micros = u64::try_from(responded.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let seen = response.into_inner().posting.map_or(0, |p| p.version);
                    Probe::Seen {
                        micros,
                        stale: seen < version,
                    }
                }
                Err(status) => Probe::Failed(status.code(), status.message().to_owned()),
            }
        }));
    }
}

/// The outcome of one lag probe.
enum Probe {
    /// The view answered after `micros`; `stale` if it showed an older version than the
    /// command wrote (read-your-writes broken).
    Seen {
        micros: u64,
        stale: bool,
    },
    Failed(Code, String),
}

/// The command responses, which all carry a `CommandResult`.
trait HasResult {
    fn result(&self) -> Option<&pb::CommandResult>;
}

macro_rules! has_result {
    ($($response:ty),*) => {$(
        impl HasResult for $response {
            fn result(&self) -> Option<&pb::CommandResult> {
                self.result.as_ref()
            }
        }
    )*};
}

has_result!(
    pb::CreateDraftResponse,
    pb::SaveDraftResponse,
    pb::SubmitForReviewResponse,
    pb::ApprovePostingResponse
);

/// Latencies (µs) by command and errors by gRPC code.
#[derive(Default)]
struct Stats {
    by_kind: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    /// The first message of each error code, to show what went wrong.
    samples: BTreeMap<String, String>,
}

impl Stats {
    fn record(&mut self, kind: &'static str, micros: u64) {
        self.by_kind
            .entry(kind)
            .or_insert_with(|| Histogram::new(3).expect("histogram"))
            .record(micros.max(1))
            .expect("in range");
    }

    fn error(&mut self, status: Status) {
        count_error(
            &mut self.errors,
            &mut self.samples,
            status.code(),
            status.message().to_owned(),
        );
    }

    fn merge(&mut self, other: Self) {
        for (kind, histogram) in other.by_kind {
            match self.by_kind.get_mut(kind) {
                Some(mine) => mine.add(histogram).expect("same bounds"),
                None => {
                    self.by_kind.insert(kind, histogram);
                }
            }
        }
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, message) in other.samples {
            self.samples.entry(code).or_insert(message);
        }
    }

    fn all(&self) -> Histogram<u64> {
        let mut all = Histogram::new(3).expect("histogram");
        for histogram in self.by_kind.values() {
            all.add(histogram).expect("same bounds");
        }
        all
    }
}

fn count_error(
    errors: &mut BTreeMap<String, u64>,
    samples: &mut BTreeMap<String, String>,
    code: Code,
    message: String,
) {
    let code = format!("{code:?}");
    samples.entry(code.clone()).or_insert(message);
    *errors.entry(code).or_default() += 1;
}

/// The measurements of one phase.
struct Phase {
    commands: u64,
    seconds: f64,
    stats: Stats,
    lag: Histogram<u64>,
    lag_errors: BTreeMap<String, u64>,
    lag_stale: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.commands as f64 / self.seconds
    }

    fn summary(&self) -> String {
        let all = self.stats.all();
        let mut line = format!(
            "{} commands in {:.2} s: {:.0}/s, p50 {:.3} ms, p99 {:.3} ms; view lag ({} probes) \
             p50 {:.3} ms, p99 {:.3} ms",
            self.commands,
            self.seconds,
            self.rate(),
            millis(all.value_at_quantile(0.5)),
            millis(all.value_at_quantile(0.99)),
            self.lag.len(),
            millis(self.lag.value_at_quantile(0.5)),
            millis(self.lag.value_at_quantile(0.99)),
        );
        if !self.stats.errors.is_empty() || !self.lag_errors.is_empty() {
            line.push_str(&format!(
                "\n  errors {:?}, probe errors {:?}, first messages {:?}",
                self.stats.errors, self.lag_errors, self.stats.samples
            ));
        }
        line
    }

    fn write(&self, report: &mut Value) {
        self.write_prefixed(report, "");
        let by_command: serde_json::Map<String, Value> = self
            .stats
            .by_kind
            .iter()
            .map(|(kind, h)| {
                let value = json!({
                    "count": h.len(),
                    "p50_ms": millis(h.value_at_quantile(0.5)),
                    "p99_ms": millis(h.value_at_quantile(0.99)),
                });
                ((*kind).to_owned(), value)
            })
            .collect();
        report["by_command"] = Value::Object(by_command);
    }

    fn write_prefixed(&self, report: &mut Value, prefix: &str) {
        let all = self.stats.all();
        let fields = [
            ("commands", json!(self.commands)),
            ("seconds", json!(round(self.seconds))),
            ("commands_per_sec", json!(round(self.rate()))),
            ("p50_ms", json!(millis(all.value_at_quantile(0.5)))),
            ("p99_ms", json!(millis(all.value_at_quantile(0.99)))),
            ("p999_ms", json!(millis(all.value_at_quantile(0.999)))),
            ("max_ms", json!(millis(all.max()))),
            ("lag_probes", json!(self.lag.len())),
            ("lag_p50_ms", json!(millis(self.lag.value_at_quantile(0.5)))),
            (
                "lag_p99_ms",
                json!(millis(self.lag.value_at_quantile(0.99))),
            ),
            ("lag_max_ms", json!(millis(self.lag.max()))),
            ("lag_stale", json!(self.lag_stale)),
            ("errors", json!(self.stats.errors)),
            ("lag_errors", json!(self.lag_errors)),
        ];
        for (name, value) in fields {
            report[format!("{prefix}{name}")] = value;
        }
    }
}

/// The service started in this process on a fresh database of its own.
struct InProcess {
    addr: SocketAddr,
    keys: TokenKeys,
    backend: String,
    db: FreshDb,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), jobboard::Error>>,
    _data_dir: tempfile::TempDir,
}

impl InProcess {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let backend = args.backend.unwrap_or(Backend::Postgres);
        let db = FreshDb::create(backend, StoreOptions::default()).await?;
        let data_dir = tempfile::tempdir()?;
        let mut config = jobboard::Config::ephemeral(data_dir.path());
        config.database_url = db.url();
        // The key is generated into the data directory unless one is given; either way the
        // bench signs its tokens with the server's own keys.
        config.auth.signing_key = args.token_key.clone().map(Secret::new);
        config.auth.issuer = args.issuer.clone();
        let app = match jobboard::Application::build(config).await {
            Ok(app) => app,
            Err(error) => {
                db.drop().await;
                return Err(error).context("the service did not start");
            }
        };
        let addr = app.grpc_addr();
        let keys = app.token_keys().clone();
        let backend = app.store().backend_name().to_owned();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            keys,
            backend,
            db,
            stop,
            task,
            _data_dir: data_dir,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("the service stopped with an error: {error}"),
            Err(error) => eprintln!("the service task failed: {error}"),
        }
        self.db.drop().await;
    }
}

/// A bearer token for `caller`, ready for the `authorization` header.
fn token(keys: &TokenKeys, caller: &Caller) -> anyhow::Result<MetadataValue<Ascii>> {
    let jwt = keys.issue(caller, TOKEN_TTL)?;
    Ok(format!("Bearer {jwt}").parse()?)
}

fn request<T>(message: T, token: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request.set_timeout(COMMAND_TIMEOUT);
    request
}

/// Today in Asia/Tokyo (UTC+9 all year).
fn tokyo_today() -> NaiveDate {
    (Utc::now() + chrono::Duration::hours(9)).date_naive()
}

fn date(day: NaiveDate) -> pb::Date {
    pb::Date {
        year: day.year(),
        month: i32::try_from(day.month()).unwrap_or_default(),
        day: i32::try_from(day.day()).unwrap_or_default(),
    }
}

/// Realistic posting content: a Japanese posting with English passages, ~2 KB in all, changed a
/// little on every save as an employer's edits would.
struct ContentMaker {
    client: usize,
    revision: u64,
    today: NaiveDate,
}

const TITLE: &str =
    "ポスドク研究員（計算材料科学）/ Postdoctoral Researcher, Computational Materials";

const DESCRIPTION: &str = "\
当研究所の計算材料科学グループでは、第一原理計算と機械学習ポテンシャルを用いた次世代電池材料の\
探索に取り組むポスドク研究員を募集します。固体電解質中のイオン伝導機構の解明、界面反応の大規模\
分子動力学シミュレーション、実験グループと連携した材料設計を主な業務とします。スーパーコンピュー\
タ「富岳」をはじめとする計算資源を利用でき、国内外の共同研究先への長期滞在も支援します。\n\
応募資格：博士の学位を有する方（着任時までに取得見込みを含む）。密度汎関数理論に基づく計算の経験、\
Python または C++ によるプログラミングの経験を有すること。英語で論文を執筆し、国際会議で発表できる\
こと。日本語能力は問いませんが、研究所内の事務手続きは日本語で行われるため、支援体制を用意しています。\n\
Our computational materials group is looking for a postdoctoral researcher to explore \
next-generation battery materials with first-principles calculations and machine-learned \
interatomic potentials. You will study ion transport in solid electrolytes, run large-scale \
molecular dynamics of interfaces, and design materials together with our experimental partners. \
Japanese is not required.";

const EMPLOYMENT_TERMS: &str = "\
任期付（1年ごとに更新、最長3年）。年俸制、月額 42万円〜（経験により決定）。裁量労働制、\
週休2日（土日祝）。社会保険完備、住宅手当あり。/ Fixed-term, renewable yearly up to three years; \
annual salary from JPY 420,000 per month; discretionary working hours.";

const LOCATION: &str = "茨城県つくば市千現1-2-1（つくば駅よりバス15分）/ Tsukuba, Ibaraki";

impl ContentMaker {
    fn new(client: usize) -> Self {
        Self {
            client,
            revision: 0,
            today: tokyo_today(),
        }
    }

    /// The content of a new draft: name, title and description only (R-POST-2 allows it).
    fn first(&mut self) -> pb::PostingContent {
        self.revision += 1;
        pb::PostingContent {
            name: format!(
                "2026年度 計算材料 PD公募 c{}-{}",
                self.client, self.revision
            ),
            title: TITLE.into(),
            description: DESCRIPTION.into(),
            ..pb::PostingContent::default()
        }
    }

    /// A complete content (everything submission requires), slightly different every time.
    fn full(&mut self) -> pb::PostingContent {
        self.revision += 1;
        let revision = self.revision;
        let start = self.today + Days::new(7);
        let end = self.today + Days::new(67);
        pb::PostingContent {
            name: format!("2026年度 計算材料 PD公募 c{}-{revision}", self.client),
            title: TITLE.into(),
            description: format!("{DESCRIPTION}\n（第{revision}版 / revision {revision}）"),
            additional_items: vec![
                pb::AdditionalItem {
                    title: "応募書類 / Application documents".into(),
                    detail: "履歴書、研究業績リスト、これまでの研究概要と今後の研究計画（各A4で2枚\
                             以内）、推薦書2通。/ CV, publication list, research statement and \
                             plan (two pages each), two letters of reference."
                        .into(),
                },
                pb::AdditionalItem {
                    title: "選考方法 / Selection".into(),
                    detail: "書類選考の上、オンライン面接（30分の研究発表を含む）を行います。\
                             / Document screening, then an online interview with a 30-minute talk."
                        .into(),
                },
                pb::AdditionalItem {
                    title: "問い合わせ先 / Contact".into(),
                    detail: "計算材料科学グループ 採用担当 recruit-cms@example.jp".into(),
                },
            ],
            employment_terms: EMPLOYMENT_TERMS.into(),
            location: LOCATION.into(),
            institution_type: pb::InstitutionType::PublicResearchInstitute.into(),
            recruitment_period: Some(pb::RecruitmentPeriod {
                start: Some(date(start)),
                end: Some(date(end)),
            }),
            referral_period_end: Some(date(end - Days::new(7))),
            web_application: true,
            direct_application: revision.is_multiple_of(2),
            employment_type: pb::EmploymentType::FixedTerm.into(),
            new_graduate: false,
        }
    }

    /// A small valid draft, for growing long streams quickly.
    fn small(&mut self) -> pb::PostingContent {
        self.revision += 1;
        pb::PostingContent {
            name: format!("PD公募 c{}-{}", self.client, self.revision),
            title: TITLE.into(),
            ..pb::PostingContent::default()
        }
    }
}
