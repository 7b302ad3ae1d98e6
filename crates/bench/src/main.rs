//! `jobboard-bench`: measures the event log on a fresh database and prints one JSON object as its
//! last line, so scripts (and `just bench`) can compare runs.
//!
//! - `store`: N writers each append one ~300-byte event per append to streams of their own, with
//!   the exact expected version, as command handlers do.
//! - `read-all`: seeds M events, then reads the whole log in global order, decoded into envelopes.
//! - `grpc`: drives the real service over gRPC with a realistic posting mix (see `grpc.rs`).
//! - `search`: builds the postings search index and runs a query mix (see `search.rs`).
//! - `rebuild`: rebuilds a SQL projection blue/green from a seeded log (see `rebuild.rs`).

mod grpc;
mod rebuild;
mod search;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use jobboard_eventstore::{
    Checkpoint, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StoreOptions, StreamId,
};
use serde_json::json;

/// mimalloc, not glibc's malloc: the runtime hands events from reading to preparing to writing
/// tasks, and glibc frees memory allocated on another thread slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "jobboard-bench", about = "Benchmarks for jobboard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append throughput and latency with concurrent writers.
    Store {
        #[command(flatten)]
        target: Target,
        /// Concurrent writers.
        #[arg(long, default_value_t = 32)]
        writers: usize,
        /// Events in all (one per append).
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Streams each writer appends to, in turn.
        #[arg(long, default_value_t = 16)]
        streams_per_writer: u64,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Reading the whole log in global order, decoded.
    ReadAll {
        #[command(flatten)]
        target: Target,
        /// Events to seed and then read.
        #[arg(long, default_value_t = 500_000)]
        events: u64,
        /// Events per page.
        #[arg(long, default_value_t = 5000)]
        page: usize,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Command latency and throughput through the gRPC service, and how soon the postings view
    /// shows each command.
    Grpc(grpc::Args),
    /// Search index build rate and query latency over generated bilingual postings.
    Search(search::Args),
    /// Rebuild throughput of a SQL projection, blue/green up to the switch, with the read-all
    /// rate of the same log as the baseline.
    Rebuild(rebuild::Args),
}

#[derive(clap::Args, Debug)]
struct Target {
    #[arg(long, value_enum, default_value_t = Backend::Postgres)]
    backend: Backend,
    /// Transactions the store commits at once (PostgreSQL).
    #[arg(long)]
    write_concurrency: Option<usize>,
}

impl Target {
    fn options(&self) -> StoreOptions {
        let mut options = StoreOptions::default();
        if let Some(n) = self.write_concurrency {
            options.write_concurrency = n;
        }
        options
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store {
            target,
            writers,
            events,
            streams_per_writer,
            json,
        } => {
            let db = FreshDb::create(target.backend, target.options()).await?;
            let result = store_bench(&db, writers, events, streams_per_writer.max(1), json).await;
            db.drop().await;
            print_result(result?, json)
        }
        Command::ReadAll {
            target,
            events,
            page,
            json,
        } => {
            let db = FreshDb::create(target.backend, target.options()).await?;
            let result = read_all_bench(&db, events, page, json).await;
            db.drop().await;
            print_result(result?, json)
        }
        Command::Grpc(args) => {
            let json_only = args.json;
            print_result(grpc::run(args).await?, json_only)
        }
        Command::Search(args) => {
            let json_only = args.json;
            print_result(search::run(args).await?, json_only)
        }
        Command::Rebuild(args) => {
            let json_only = args.json;
            print_result(rebuild::run(args).await?, json_only)
        }
    }
}

fn print_result(result: serde_json::Value, json_only: bool) -> anyhow::Result<()> {
    if !json_only {
        eprintln!("result:");
    }
    println!("{result}");
    Ok(())
}

/// A ~300-byte event, as a posting command would write.
fn sample_event(writer: usize, n: u64) -> NewEvent {
    NewEvent::new(
        "PostingContentSaved",
        1,
        json!({
            "posting_id": format!("posting-{writer}-{n}"),
            "title": "ポスドク研究員（計算材料科学）/ Postdoctoral researcher",
            "location": "Tsukuba, Ibaraki",
            "employment": "fixed-term",
            "institution_type": "public_research_institute",
            "recruitment_end": "2027-03-31",
            "web_application": true,
            "revision": n,
        }),
    )
}

async fn store_bench(
    db: &FreshDb,
    writers: usize,
    events: u64,
    streams_per_writer: u64,
    quiet: bool,
) -> anyhow::Result<serde_json::Value> {
    let store = db.open().await?;
    let writers = writers.max(1);
    let per_writer = events / writers as u64;
    if !quiet {
        eprintln!(
            "{} writers x {per_writer} appends on {} ({})",
            writers,
            store.backend_name(),
            db.describe()
        );
    }
    let start = Arc::new(tokio::sync::Barrier::new(writers + 1));
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let store = store.clone();
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let streams: Vec<StreamId> = (0..streams_per_writer)
                .map(|s| StreamId::new(format!("posting-w{w}s{s}")).expect("stream id"))
                .collect();
            let mut versions = vec![0u64; streams.len()];
            start.wait().await;
            for n in 0..per_writer {
                let i = usize::try_from(n % streams_per_writer).unwrap_or_default();
                let expected = match versions[i] {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                };
                let began = Instant::now();
                let outcome = store
                    .append(
                        &streams[i],
                        expected,
                        vec![sample_event(w, n)],
                        CommandMetadata {
                            command_id: Some(format!("w{w}-{n}")),
                            actor: Some("bench".into()),
                            organisation: Some("org-bench".into()),
                            ..CommandMetadata::default()
                        },
                    )
                    .await?;
                let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.record(micros.max(1)).expect("in range");
                versions[i] = outcome.stream_version;
            }
            anyhow::Ok(histogram)
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut histogram = Histogram::<u64>::new(3)?;
    for task in tasks {
        histogram.add(task.await??)?;
    }
    let elapsed = began.elapsed();
    store.close().await;
    let appended = per_writer * writers as u64;
    Ok(json!({
        "bench": "store",
        "backend": store.backend_name(),
        "writers": writers,
        "events": appended,
        "seconds": round(elapsed.as_secs_f64()),
        "events_per_sec": round(appended as f64 / elapsed.as_secs_f64()),
        "p50_ms": millis(histogram.value_at_quantile(0.5)),
        "p99_ms": millis(histogram.value_at_quantile(0.99)),
        "p999_ms": millis(histogram.value_at_quantile(0.999)),
        "max_ms": millis(histogram.max()),
    }))
}

async fn read_all_bench(
    db: &FreshDb,
    events: u64,
    page: usize,
    quiet: bool,
) -> anyhow::Result<serde_json::Value> {
    let store = db.open().await?;
    if !quiet {
        eprintln!("seeding {events} events on {}", store.backend_name());
    }
    seed(&store, events).await?;
    // Read the log three times and keep the median run.
    let mut rates = Vec::new();
    for _ in 0..3 {
        let began = Instant::now();
        let mut after = Checkpoint::START;
        let mut read = 0u64;
        loop {
            let batch = store.read_all(after, page).await?;
            let Some(last) = batch.events.last() else {
                if batch.held {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                break;
            };
            after = last.checkpoint();
            read += batch.events.len() as u64;
        }
        if read != events {
            bail!("read {read} events, seeded {events}");
        }
        rates.push(read as f64 / began.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    store.close().await;
    Ok(json!({
        "bench": "read-all",
        "backend": store.backend_name(),
        "events": events,
        "page": page,
        "events_per_sec": round(rates[1]),
        "runs_events_per_sec": rates.iter().map(|r| round(*r)).collect::<Vec<_>>(),
    }))
}

/// Appends `events` events through 16 concurrent writers, 100 events per append.
async fn seed(store: &EventStore, events: u64) -> anyhow::Result<()> {
    const WRITERS: u64 = 16;
    const PER_APPEND: u64 = 100;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let mine = events / WRITERS + u64::from(w < events % WRITERS);
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("seed-{w}"))?;
            let mut done = 0;
            while done < mine {
                let n = PER_APPEND.min(mine - done);
                let batch = (done..done + n)
                    .map(|i| sample_event(usize::try_from(w).unwrap_or_default(), i))
                    .collect();
                store
                    .append(
                        &stream,
                        ExpectedVersion::Any,
                        batch,
                        CommandMetadata::default(),
                    )
                    .await?;
                done += n;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn millis(micros: u64) -> f64 {
    round(micros as f64 / 1000.0)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A database of the benchmark's own: a new PostgreSQL database or a new SQLite file.
struct FreshDb {
    place: Place,
    options: StoreOptions,
}

enum Place {
    Postgres { admin: String, name: String },
    Sqlite { dir: tempfile::TempDir },
}

impl FreshDb {
    async fn create(backend: Backend, options: StoreOptions) -> anyhow::Result<Self> {
        let place = match backend {
            Backend::Sqlite => Place::Sqlite {
                dir: tempfile::tempdir()?,
            },
            Backend::Postgres => {
                let admin = std::env::var("DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let name = format!("jobboard_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .with_context(|| {
                        format!(
                            "PostgreSQL is not reachable at {admin}; start it with \
                             `pg_ctlcluster 15 main start` or set DATABASE_URL"
                        )
                    })?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await?;
                Place::Postgres { admin, name }
            }
        };
        Ok(Self { place, options })
    }

    fn url(&self) -> String {
        match &self.place {
            Place::Postgres { admin, name } => match admin.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => admin.clone(),
            },
            Place::Sqlite { dir } => format!("sqlite://{}/bench.db", dir.path().display()),
        }
    }

    fn describe(&self) -> String {
        match &self.place {
            Place::Postgres { name, .. } => format!("database {name}"),
            Place::Sqlite { dir } => format!("file {}/bench.db", dir.path().display()),
        }
    }

    async fn open(&self) -> anyhow::Result<EventStore> {
        Ok(EventStore::open(&self.url(), self.options.clone()).await?)
    }

    async fn drop(&self) {
        if let Place::Postgres { admin, name } = &self.place
            && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}
