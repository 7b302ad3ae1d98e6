//! `rebuild`: rebuilds projections blue/green, straight against the database, through the same
//! runtime code the service runs (`jobboard_projections::rebuild`).
//!
//! The new generation is built beside the serving one while the service (if it runs) keeps
//! answering from the old one; reads switch when the new one has caught up, and the old tables
//! are dropped. The service may run meanwhile: whoever holds the building generation's lease
//! builds it, and this tool shows the other's progress instead (and takes over if it stops).
//! Interrupted (ctrl-c, a killed process), a rebuild resumes where it stopped when run again, by
//! this tool or by the service.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use jobboard_projections::{Projector, RebuildProgress, RuntimeOptions};
use tokio_util::sync::CancellationToken;

use crate::{Outcome, db};

/// Options of `rebuild`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The projector to rebuild, e.g. `postings` (`status` lists them).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    projector: Option<String>,
    /// Rebuild every SQL projector, one after another.
    #[arg(long)]
    all: bool,
    /// Seconds to keep the replaced generation's tables after the switch, for reads that
    /// started before it.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    drop_grace: f64,
    /// Events per transaction.
    #[arg(long, default_value_t = RuntimeOptions::default().rebuild_batch_size)]
    batch_size: usize,
}

pub(crate) async fn run(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let known = jobboard_projections::projectors();
    let chosen: Vec<_> = match &args.projector {
        Some(name) => {
            let Some(projector) = known.iter().find(|p| p.name() == name) else {
                let names: Vec<_> = known.iter().map(|p| p.name()).collect();
                bail!(
                    "no projector named {name:?}; the projectors are: {}",
                    names.join(", ")
                );
            };
            vec![projector.clone()]
        }
        None => known,
    };
    let drop_grace = Duration::try_from_secs_f64(args.drop_grace)
        .context("--drop-grace must be a number of seconds, 0 or more")?;
    let store = db::open_store(url).await?;
    let views = db::open_views(url).await?;
    let options = RuntimeOptions {
        rebuild_batch_size: args.batch_size.max(1),
        drop_grace,
        observe_interval: None,
        ..RuntimeOptions::default()
    };
    let shutdown = CancellationToken::new();
    let interrupt = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let mut result = Ok(Outcome::Done);
    for projector in chosen {
        if let Err(error) = one(&views, &store, projector.as_ref(), &options, &shutdown).await {
            result = Err(error);
            break;
        }
    }
    views.close().await;
    store.close().await;
    result
}

async fn one(
    views: &jobboard_projections::ViewDb,
    store: &jobboard_eventstore::EventStore,
    projector: &dyn Projector,
    options: &RuntimeOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let name = projector.name();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {human_pos}/{human_len} events, {per_sec}, ETA {eta} {msg}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    bar.set_prefix(name);
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = |p: &RebuildProgress| {
        bar.set_length(p.target_events.unwrap_or(p.events).max(p.events));
        bar.set_position(p.events);
        bar.set_message(match &p.built_by {
            Some(holder) => format!("(built by {holder}, {:.0} events/s)", p.events_per_sec),
            None => format!("(generation {})", p.generation),
        });
    };
    let outcome =
        jobboard_projections::rebuild(views, store, projector, options, shutdown, &progress).await;
    bar.finish_and_clear();
    match outcome {
        Ok(outcome) => {
            let who = if outcome.built_elsewhere {
                "built by another instance".to_owned()
            } else {
                let seconds = outcome.elapsed.as_secs_f64();
                format!(
                    "{} events applied here in {seconds:.1}s ({:.0} events/s)",
                    outcome.applied_here,
                    if seconds > 0.0 {
                        outcome.applied_here as f64 / seconds
                    } else {
                        0.0
                    }
                )
            };
            println!(
                "{name}: generation {} (v{}) serves, {} events, at {}; {who}",
                outcome.generation.generation,
                outcome.generation.version,
                outcome.events,
                outcome.generation.checkpoint
            );
            Ok(())
        }
        Err(jobboard_projections::Error::Stopped) => {
            bail!("{name}: interrupted; run the same command again to resume where it stopped")
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!("rebuilding {name}"))),
    }
}
