//! `verify`: the store's check of every stream's hash chain (`EventStore::verify`), printed for
//! people or as JSON, with exit status 2 when a chain is broken.

use std::io::Write;

use anyhow::Context;
use jobboard_eventstore::VerifyReport;
use serde::Serialize;

use crate::{Outcome, db};

/// Options of `verify`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Print one JSON document: intact, streams_checked, events_checked, broken[].
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    intact: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
}

pub(crate) async fn run(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let store = db::open_store(url).await?;
    let result = store.verify().await.context("verifying the hash chains");
    store.close().await;
    let report = result?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    if args.json {
        let json = JsonReport {
            intact: report.is_intact(),
            report: &report,
        };
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    out.flush()?;
    Ok(if report.is_intact() {
        Outcome::Done
    } else {
        Outcome::Tampered
    })
}

fn write_text(out: &mut impl Write, report: &VerifyReport) -> std::io::Result<()> {
    writeln!(
        out,
        "checked {} streams, {} events",
        report.streams_checked, report.events_checked
    )?;
    if report.is_intact() {
        return writeln!(out, "intact: every hash chain holds");
    }
    writeln!(
        out,
        "TAMPERED: {} stream(s) with a broken hash chain",
        report.broken.len()
    )?;
    for link in &report.broken {
        let position = link
            .position
            .map_or_else(String::new, |p| format!(" (position {p})"));
        writeln!(
            out,
            "  {}: first broken event is version {}{}: {}",
            link.stream_id, link.version, position, link.reason
        )?;
    }
    Ok(())
}
