//! The `jobboard` binary. For now it carries one command, `demo`, which exercises the event log
//! end to end on the embedded default; the gRPC service replaces it.

use anyhow::Context;
use clap::{Parser, Subcommand};
use jobboard_eventstore::{
    Checkpoint, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StoreOptions, StreamId,
    StreamRange, personal,
};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "jobboard",
    version,
    about = "The jobboard event-sourced job board"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Appends a posting's history to the log, reads it back, erases a person and verifies.
    Demo {
        /// Where the log lives: sqlite://… (default ./data/jobboard.db) or postgres://….
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://data/jobboard.db"
        )]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Demo { database_url } => demo(&database_url).await,
    }
}

async fn demo(url: &str) -> anyhow::Result<()> {
    let store = EventStore::open(url, StoreOptions::default())
        .await
        .with_context(|| format!("opening the log at {url}"))?;
    println!("log open on {} ({url})", store.backend_name());

    let run = uuid_like();
    let posting = StreamId::new(format!("posting-demo{run}"))?;
    let application = StreamId::new(format!("application-demo{run}"))?;
    let seeker = format!("seeker-demo{run}");
    let meta = |command: &str| CommandMetadata {
        command_id: Some(format!("{command}-{run}")),
        actor: Some("demo-employer".into()),
        organisation: Some("demo-org".into()),
        ..CommandMetadata::default()
    };

    let drafted = store
        .append(
            &posting,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                "PostingDrafted",
                1,
                json!({"title": "ポスドク研究員 / Postdoctoral researcher", "language": "ja"}),
            )],
            meta("draft"),
        )
        .await?;
    store
        .append(
            &posting,
            ExpectedVersion::Exact(drafted.stream_version),
            vec![NewEvent::new("PostingSubmitted", 1, json!({}))],
            meta("submit"),
        )
        .await?;
    store
        .append(
            &application,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                "ApplicationReceived",
                1,
                json!({
                    "posting": posting.as_str(),
                    "name": personal::mark(&seeker, json!("山田 花子")),
                }),
            )],
            meta("apply"),
        )
        .await?;
    let retried = store
        .append(
            &application,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("ApplicationReceived", 1, json!({}))],
            meta("apply"),
        )
        .await?;
    println!(
        "a retried command is answered from its first outcome: duplicate={}",
        retried.duplicate
    );

    for event in store.read_stream(&posting, StreamRange::all()).await? {
        println!(
            "{} v{} {} at position {} by {}",
            event.stream_id,
            event.version,
            event.event_type,
            event.position,
            event.metadata.command.actor.as_deref().unwrap_or("-"),
        );
    }
    let before = &store.read_stream(&application, StreamRange::all()).await?[0];
    println!("applicant before erasure: {}", before.payload["name"]);
    store.erase_subject(&seeker).await?;
    let after = &store.read_stream(&application, StreamRange::all()).await?[0];
    println!("applicant after erasure:  {}", after.payload["name"]);

    let page = store.read_all(Checkpoint::START, 10_000).await?;
    let report = store.verify().await?;
    println!(
        "log: {} events readable; verify: {} streams, {} events, intact={}",
        page.events.len(),
        report.streams_checked,
        report.events_checked,
        report.is_intact()
    );
    store.close().await;
    Ok(())
}

/// A short run id so the demo can be run again on the same log.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}
