//! `status`: every projector's checkpoint and its lag behind the log, in events and in seconds.
//!
//! Checkpoints come from the projections' table `projection_checkpoints` (one row per projector
//! name and version, as the runtime commits them). Lag in events is counted, not subtracted: on
//! PostgreSQL positions are unique but not in log order (ADR 0002), so "head minus checkpoint"
//! would be wrong there. One pass over the log from the oldest checkpoint counts every
//! projector's events at once, a page at a time.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use jobboard_projections::ViewDb;
use serde::Serialize;

use crate::log::{LogReader, event_at};
use crate::{Outcome, db, render};

/// Options of `status`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// A projector's committed checkpoint, as its row stores it.
#[derive(Debug)]
struct CheckpointRow {
    name: String,
    version: i32,
    checkpoint: Checkpoint,
    events: i64,
    updated_at: DateTime<Utc>,
}

/// What `status` reports.
#[derive(Debug, Serialize)]
struct Report {
    backend: &'static str,
    /// The newest event of the log (its last in log order), if the log has any.
    head: Option<Head>,
    /// True when an open transaction held the log's end back: the head may be further on.
    head_held: bool,
    projectors: Vec<ProjectorLag>,
}

#[derive(Debug, Serialize)]
struct Head {
    tx: u64,
    position: u64,
    recorded_at: String,
}

#[derive(Debug, Serialize)]
struct ProjectorLag {
    name: String,
    version: i32,
    checkpoint: Checkpoint,
    /// Events the checkpoint covers, as the runtime counts them.
    events: i64,
    /// When the checkpoint was last written.
    updated_at: String,
    /// When the last event it covers was recorded (`None`: it covers none).
    last_event_recorded_at: Option<String>,
    lag_events: u64,
    lag_seconds: f64,
}

/// Per projector, what the pass over the log found after its checkpoint.
#[derive(Debug, Default)]
struct Behind {
    events: u64,
    first_recorded_at: Option<DateTime<Utc>>,
}

pub(crate) async fn run(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let store = db::open_store(url).await?;
    let views = db::open_views(url).await?;
    let report = report(&store, &views).await;
    store.close().await;
    views.close().await;
    let report = report?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &report)?;
    }
    out.flush()?;
    Ok(Outcome::Done)
}

async fn report(store: &EventStore, views: &ViewDb) -> anyhow::Result<Report> {
    let rows = checkpoints(views).await?;
    let Some(oldest) = rows.iter().map(|r| r.checkpoint).min() else {
        return Ok(Report {
            backend: store.backend_name(),
            head: None,
            head_held: false,
            projectors: Vec::new(),
        });
    };
    let mut behind: Vec<Behind> = rows.iter().map(|_| Behind::default()).collect();
    let mut head: Option<RecordedEvent> = None;
    let mut reader = LogReader::new(store, oldest);
    while let Some(page) = reader.next_page().await? {
        for event in &page {
            let at = event.checkpoint();
            for (row, behind) in rows.iter().zip(&mut behind) {
                if at > row.checkpoint {
                    behind.events += 1;
                    behind
                        .first_recorded_at
                        .get_or_insert(event.metadata.recorded_at);
                }
            }
        }
        if let Some(last) = page.into_iter().next_back() {
            head = Some(last);
        }
    }
    if head.is_none() {
        // Nothing after the oldest checkpoint: the head is the event it names, if any.
        head = event_at(store, oldest).await?;
    }
    let mut projectors = Vec::with_capacity(rows.len());
    for (row, behind) in rows.into_iter().zip(behind) {
        let covered = event_at(store, row.checkpoint).await?;
        let covered_at = covered.map(|e| e.metadata.recorded_at);
        let lag_seconds = match (&head, covered_at.or(behind.first_recorded_at)) {
            (Some(head), Some(since)) if behind.events > 0 => (head.metadata.recorded_at - since)
                .as_seconds_f64()
                .max(0.0),
            _ => 0.0,
        };
        projectors.push(ProjectorLag {
            name: row.name,
            version: row.version,
            checkpoint: row.checkpoint,
            events: row.events,
            updated_at: render::time(row.updated_at),
            last_event_recorded_at: covered_at.map(render::time),
            lag_events: behind.events,
            lag_seconds,
        });
    }
    Ok(Report {
        backend: store.backend_name(),
        head: head.map(|e| Head {
            tx: e.tx,
            position: e.position,
            recorded_at: render::time(e.metadata.recorded_at),
        }),
        head_held: reader.stopped_at_held_end(),
        projectors,
    })
}

/// Every checkpoint row, by projector name and version.
async fn checkpoints(views: &ViewDb) -> anyhow::Result<Vec<CheckpointRow>> {
    let context = || "reading the projections' checkpoints (projection_checkpoints)";
    // `ViewDb` reads one checkpoint by name; listing them all is this query over the same
    // table and columns `ViewDb::checkpoint` reads.
    let rows = views
        .fetch_all(
            "SELECT projector, version, tx, position, events, updated_at \
             FROM projection_checkpoints ORDER BY projector, version",
            &[],
        )
        .await
        .with_context(context)?;
    rows.iter()
        .map(|row| {
            let unsigned = |column: &str| -> anyhow::Result<u64> {
                let value: i64 = row.get(column)?;
                u64::try_from(value).with_context(|| format!("{column} {value} is negative"))
            };
            Ok(CheckpointRow {
                name: row.get("projector")?,
                version: row.get("version")?,
                checkpoint: Checkpoint {
                    tx: unsigned("tx")?,
                    position: unsigned("position")?,
                },
                events: row.get("events")?,
                updated_at: row.time("updated_at")?,
            })
        })
        .collect::<anyhow::Result<_>>()
        .with_context(context)
}

fn write_table(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    match &report.head {
        Some(head) => writeln!(
            out,
            "log ({}): head at position {} (checkpoint {}/{}), recorded {}{}",
            report.backend,
            head.position,
            head.tx,
            head.position,
            head.recorded_at,
            if report.head_held {
                "; an open transaction holds newer events back"
            } else {
                ""
            }
        )?,
        None if report.projectors.is_empty() => writeln!(out, "log ({})", report.backend)?,
        None => writeln!(out, "log ({}): empty", report.backend)?,
    }
    if report.projectors.is_empty() {
        return writeln!(
            out,
            "no projector has a checkpoint in this database (the service has not run on it)"
        );
    }
    writeln!(out)?;
    let header = [
        "PROJECTOR",
        "VERSION",
        "CHECKPOINT",
        "EVENTS",
        "LAG EVENTS",
        "LAG SECONDS",
        "LAST EVENT RECORDED",
        "CHECKPOINT UPDATED",
    ];
    let rows: Vec<[String; 8]> = report
        .projectors
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.version.to_string(),
                p.checkpoint.to_string(),
                p.events.to_string(),
                p.lag_events.to_string(),
                format!("{:.3}", p.lag_seconds),
                p.last_event_recorded_at
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                p.updated_at.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(&header.map(str::to_owned))?;
    for row in &rows {
        line(row)?;
    }
    Ok(())
}
