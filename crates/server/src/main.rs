//! The `jobboard` binary: `serve` runs the service, `token` mints a bearer token with the
//! configured key, `config` prints the effective configuration, and `demo` walks through the
//! event log on its own. All of it is a thin shell over the `jobboard` library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jobboard::auth::{Caller, Role, TokenKeys};
use jobboard::config::{Config, Overrides};
use jobboard::{Application, telemetry};
use jobboard_eventstore::{
    Checkpoint, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StoreOptions, StreamId,
    StreamRange, personal,
};
use serde_json::json;

/// mimalloc, not glibc's malloc: the runtime hands events from reading to preparing to writing
/// tasks, and glibc frees memory allocated on another thread slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "jobboard",
    version,
    about = "The jobboard event-sourced job board"
)]
struct Cli {
    /// A TOML configuration file; `JOBBOARD_*` environment variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the gRPC service until SIGTERM or ctrl-c.
    Serve {
        /// The gRPC address (overrides `listen` and `JOBBOARD_LISTEN`).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Prints a bearer token signed with the configured key.
    Token {
        /// employer, agency, operator, service, auditor or ops.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The organisation the caller acts for: an employer's organisation id (a UUID), or the
        /// operator's office, agency or service the caller belongs to.
        #[arg(long)]
        org: String,
        /// Who the caller is.
        #[arg(long)]
        subject: String,
        /// How long the token is valid: a number with s, m, h or d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Prints the effective configuration (secrets redacted) and exits.
    Config {
        /// The gRPC address (overrides `listen` and `JOBBOARD_LISTEN`).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Appends a posting's history to the log, reads it back, erases a person and verifies.
    Demo {
        /// Where the log lives: sqlite://… (default ./data/demo.db, apart from the service's log,
        /// which is immutable) or postgres://….
        #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/demo.db")]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let load = |listen: Option<String>| {
        Config::load(cli.config.as_deref(), &Overrides { listen })
            .context("loading the configuration")
    };
    match cli.command {
        Command::Serve { listen } => {
            let config = load(listen)?;
            telemetry::init_logging(config.log_format);
            serve(config).await
        }
        Command::Token {
            role,
            org,
            subject,
            ttl,
        } => {
            let config = load(None)?;
            telemetry::init_logging(config.log_format);
            token(&config, role, org, subject, ttl)
        }
        Command::Config { listen } => {
            print!("{}", load(listen)?.to_redacted_toml());
            Ok(())
        }
        Command::Demo { database_url } => {
            telemetry::init_logging(jobboard::config::LogFormat::Text);
            demo(&database_url).await
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config)
        .await
        .context("starting the service")?;
    app.run_until_stopped(shutdown_signal())
        .await
        .context("running the service")
}

fn token(
    config: &Config,
    role: Role,
    organisation: String,
    subject: String,
    ttl: Duration,
) -> anyhow::Result<()> {
    let keys = TokenKeys::load_or_create(&config.auth)?;
    let caller = Caller::new(subject, role, organisation);
    println!("{}", keys.issue(&caller, ttl)?);
    Ok(())
}

/// Parses a role name, listing the valid ones when it is not one of them.
fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|_| {
        let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!(
            "unknown role {text:?}; expected one of {}",
            names.join(", ")
        )
    })
}

/// Completes on ctrl-c or SIGTERM. A signal that cannot be watched never fires, rather than
/// stopping the service at once.
async fn shutdown_signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("ctrl-c received"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch ctrl-c");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
                tracing::info!("SIGTERM received");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Parses `90s`, `30m`, `24h` or `7d`.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} must be a number followed by s, m, h or d"))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        "d" => number.checked_mul(86_400),
        _ => return Err(format!("{text:?} must end in s, m, h or d")),
    };
    match seconds {
        Some(0) => Err("the ttl must be positive".into()),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("{text:?} is too long")),
    }
}

async fn demo(url: &str) -> anyhow::Result<()> {
    let store = EventStore::open(url, StoreOptions::default())
        .await
        .with_context(|| format!("opening the log at {url}"))?;
    println!("log open on {} ({url})", store.backend_name());

    let run = uuid_like();
    // A `demo-` category of their own: these events are not the domain's, and a `posting-`
    // stream that names no posting would stop the postings projector of a service sharing the
    // log (it never skips an event it cannot read).
    let posting = StreamId::new(format!("demo-posting-{run}"))?;
    let application = StreamId::new(format!("demo-application-{run}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_a_unit() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("24").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
