//! `export`: a slice of the log, by position or by recording time, as JSON lines.
//!
//! The log is read page by page with `read_all`, in its global order, and each event is written
//! as it is read, so memory stays at one page whatever the range. On SQLite positions are the
//! log order (`tx` equals `position`), so a position range is read from its first position and
//! ends at its last. On PostgreSQL positions are unique but not in log order (ADR 0002), so the
//! whole readable log is read and filtered; likewise for time ranges on both, as recording times
//! are not in log order either. A file written with `--output` appears only when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};

use crate::log::LogReader;
use crate::{Outcome, db, parse_time, render};

/// The formats `export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
}

/// Options of `export`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// First global position to export (inclusive); default: the start of the log.
    #[arg(long, value_name = "N", conflicts_with_all = ["from_time", "to_time"])]
    from_position: Option<u64>,
    /// Last global position to export (inclusive); default: the end of the log.
    #[arg(long, value_name = "M", conflicts_with_all = ["from_time", "to_time"])]
    to_position: Option<u64>,
    /// Export events recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from_time: Option<DateTime<Utc>>,
    /// Export events recorded at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to_time: Option<DateTime<Utc>>,
    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write to this file instead of standard output (it appears only once complete).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Which events to export.
#[derive(Debug, Clone, Copy)]
enum Range {
    Positions {
        from: u64,
        to: u64,
    },
    Times {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

impl Range {
    fn of(args: &Args) -> anyhow::Result<Self> {
        if args.from_time.is_some() || args.to_time.is_some() {
            let from = args.from_time.unwrap_or(DateTime::<Utc>::MIN_UTC);
            let to = args.to_time.unwrap_or(DateTime::<Utc>::MAX_UTC);
            if from > to {
                bail!(
                    "--from-time {} is after --to-time {}",
                    render::time(from),
                    render::time(to)
                );
            }
            return Ok(Self::Times { from, to });
        }
        let from = args.from_position.unwrap_or(0);
        let to = args.to_position.unwrap_or(u64::MAX);
        if from > to {
            bail!("--from-position {from} is after --to-position {to}");
        }
        Ok(Self::Positions { from, to })
    }

    fn contains(&self, event: &RecordedEvent) -> bool {
        match *self {
            Self::Positions { from, to } => (from..=to).contains(&event.position),
            Self::Times { from, to } => (from..=to).contains(&event.metadata.recorded_at),
        }
    }
}

pub(crate) async fn run(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let range = Range::of(args)?;
    let store = db::open_store(url).await?;
    let result = match &args.output {
        Some(path) => to_file(&store, range, args.format, path).await,
        None => {
            let mut out = BufWriter::new(std::io::stdout());
            export(&store, range, args.format, &mut out)
                .await
                .and_then(|summary| Ok(out.flush().map(|()| summary)?))
        }
    };
    store.close().await;
    let summary = result?;
    if summary.held {
        eprintln!(
            "warning: an open transaction held the log's end back; events committed after it \
             were not exported"
        );
    }
    if let Some(path) = &args.output {
        eprintln!("exported {} events to {}", summary.events, path.display());
    }
    Ok(Outcome::Done)
}

/// What an export wrote.
#[derive(Debug)]
struct Summary {
    events: u64,
    held: bool,
}

/// Exports into `path.partial`, renamed to `path` once complete, so a half-written file never
/// passes for an export.
async fn to_file(
    store: &EventStore,
    range: Range,
    format: Format,
    path: &Path,
) -> anyhow::Result<Summary> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = BufWriter::new(file);
    let written = async {
        let summary = export(store, range, format, &mut out).await?;
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok::<_, anyhow::Error>(summary)
    }
    .await
    .with_context(|| format!("writing {}", partial.display()));
    match written {
        Ok(summary) => {
            std::fs::rename(&partial, path)
                .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
            Ok(summary)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

async fn export(
    store: &EventStore,
    range: Range,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    // Only SQLite's log order is position order (`Checkpoint`: there `tx` equals `position`).
    let position_ordered = store.backend_name() == "sqlite";
    let start = match range {
        Range::Positions { from, .. } if position_ordered && from > 0 => Checkpoint {
            tx: from - 1,
            position: from - 1,
        },
        _ => Checkpoint::START,
    };
    let mut reader = LogReader::new(store, start);
    let mut events = 0u64;
    'read: while let Some(page) = reader.next_page().await? {
        for event in &page {
            if let Range::Positions { to, .. } = range
                && position_ordered
                && event.position > to
            {
                break 'read;
            }
            if range.contains(event) {
                match format {
                    Format::Jsonl => render::write_json_line(out, event)?,
                }
                events += 1;
            }
        }
    }
    Ok(Summary {
        events,
        held: reader.stopped_at_held_end(),
    })
}
