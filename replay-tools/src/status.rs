//! `status`: every projector's generations (the one serving reads, and a rebuild under way),
//! their checkpoints and lag behind the log, in events and in seconds, their state and who holds
//! their leases.
//!
//! Checkpoints come from the projections' registry `projection_generations` (one row per
//! generation, as the runtime commits them); lease holders are checked live (PostgreSQL's
//! advisory locks, SQLite's lock files). Lag in events is counted, not subtracted: on
//! PostgreSQL positions are unique but not in log order (ADR 0002), so "head minus checkpoint"
//! would be wrong there. One pass over the log from the oldest checkpoint counts every
//! projector's events at once, a page at a time.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use jobboard_projections::{GenerationState, ViewDb};
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

/// A generation's committed checkpoint, as the registry stores it.
#[derive(Debug)]
struct CheckpointRow {
    name: String,
    version: i32,
    generation: u64,
    serving: bool,
    checkpoint: Checkpoint,
    events: i64,
    updated_at: DateTime<Utc>,
    lease_holder: Option<String>,
    lease_held: bool,
    events_per_sec: Option<f64>,
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
    generation: u64,
    /// `live`, `catching_up` or `stopped` for the serving generation; `rebuilding` for a rebuild
    /// under way beside it.
    state: &'static str,
    /// The instance holding the lease (`host/pid/tag`), if one holds it now.
    lease_holder: Option<String>,
    /// A rebuild's target: the serving generation's events, where it takes over.
    target_events: Option<i64>,
    /// A rebuild's rate (events per second of its holder).
    events_per_sec: Option<f64>,
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
    let serving_events: Vec<(String, i64)> = rows
        .iter()
        .filter(|r| r.serving)
        .map(|r| (r.name.clone(), r.events))
        .collect();
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
        let state = if !row.serving {
            "rebuilding"
        } else if !row.lease_held {
            "stopped"
        } else if behind.events > jobboard_projections::LIVE_LAG_EVENTS {
            "catching_up"
        } else {
            "live"
        };
        let target_events = (!row.serving).then(|| {
            serving_events
                .iter()
                .find(|(name, _)| *name == row.name)
                .map_or(row.events, |(_, events)| *events)
        });
        projectors.push(ProjectorLag {
            name: row.name,
            version: row.version,
            generation: row.generation,
            state,
            lease_holder: row.lease_holder.filter(|_| row.lease_held),
            target_events,
            events_per_sec: row.events_per_sec,
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

/// The serving and building generations, by projector name and generation.
async fn checkpoints(views: &ViewDb) -> anyhow::Result<Vec<CheckpointRow>> {
    let context = || "reading the projections' registry (projection_generations)";
    let generations = views.generations(None).await.with_context(context)?;
    let mut rows = Vec::new();
    for g in generations {
        if g.state == GenerationState::Retired {
            continue;
        }
        let lease_held = views.is_leased(&g).await.with_context(context)?;
        rows.push(CheckpointRow {
            version: i32::try_from(g.version).context("projector version")?,
            generation: g.generation,
            serving: g.state == GenerationState::Active,
            checkpoint: g.checkpoint,
            events: i64::try_from(g.events).context("event count")?,
            updated_at: g.updated_at,
            events_per_sec: g.rate().filter(|_| lease_held),
            lease_holder: g.lease_holder,
            lease_held,
            name: g.projector,
        });
    }
    Ok(rows)
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
        "GENERATION",
        "STATE",
        "PROGRESS",
        "LEASE HOLDER",
        "LAST EVENT RECORDED",
        "CHECKPOINT UPDATED",
    ];
    let rows: Vec<[String; 12]> = report
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
                p.generation.to_string(),
                p.state.to_owned(),
                progress(p),
                p.lease_holder.clone().unwrap_or_else(|| "-".into()),
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

/// A rebuild's progress (`events/target (pct) rate eta`), `-` for a serving generation.
fn progress(p: &ProjectorLag) -> String {
    let Some(target) = p.target_events else {
        return "-".into();
    };
    let done = p.events.min(target);
    #[allow(clippy::cast_precision_loss)]
    let percent = if target > 0 {
        done as f64 * 100.0 / target as f64
    } else {
        100.0
    };
    let mut text = format!("{done}/{target}({percent:.0}%)");
    if let Some(rate) = p.events_per_sec.filter(|r| *r > 0.0) {
        #[allow(clippy::cast_precision_loss)]
        let eta = (target - done) as f64 / rate;
        text.push_str(&format!(",{rate:.0}/s,eta:{eta:.0}s"));
    }
    text
}
