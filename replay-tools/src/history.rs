//! `history`: a stream's events in version order, decoded, with their metadata; optionally only
//! those recorded up to a time (the stream as it stood then).

use std::io::Write;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use jobboard_eventstore::{EventStore, RecordedEvent, StreamId, StreamRange};

use crate::{Outcome, db, parse_stream, parse_time, render};

/// Versions read per call of `read_stream`, so a long stream is never held whole.
const CHUNK: u64 = 1000;

/// Options of `history`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The stream, e.g. posting-0194d3c0-6b7a-7c3e-9d1e-2f4a5b6c7d8e.
    #[arg(value_parser = parse_stream)]
    stream: StreamId,
    /// Only the events recorded at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    as_of: Option<DateTime<Utc>>,
    /// Print one JSON object per event and line (the shape `export` writes).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let store = db::open_store(url).await?;
    let result = print(&store, args).await;
    store.close().await;
    result
}

async fn print(store: &EventStore, args: &Args) -> anyhow::Result<Outcome> {
    let stream = &args.stream;
    ensure_stream(store, stream, "posting").await?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut count = 0u64;
    let mut chunks = StreamChunks::new(stream, args.as_of);
    while let Some(events) = chunks.next(store).await? {
        for event in &events {
            if args.json {
                render::write_json_line(&mut out, event)?;
            } else {
                if count == 0 {
                    writeln!(out, "{stream}")?;
                    writeln!(out)?;
                }
                render::write_text(&mut out, event)?;
            }
            count += 1;
        }
    }
    out.flush()?;
    if count == 0
        && let Some(as_of) = args.as_of
    {
        eprintln!(
            "no event of {stream} was recorded by {}",
            render::time(as_of)
        );
    }
    Ok(Outcome::Done)
}

/// Fails, naming what stream ids look like (`{category}-<uuid>`), unless `stream` has events.
pub(crate) async fn ensure_stream(
    store: &EventStore,
    stream: &StreamId,
    category: &str,
) -> anyhow::Result<()> {
    if store
        .stream_version(stream)
        .await
        .with_context(|| format!("looking up stream {stream}"))?
        .is_none()
    {
        bail!("stream {stream} has no events (stream ids look like {category}-<uuid>)");
    }
    Ok(())
}

/// Reads a stream a chunk of versions at a time, checking that versions follow each other.
#[derive(Debug)]
pub(crate) struct StreamChunks<'a> {
    stream: &'a StreamId,
    as_of: Option<DateTime<Utc>>,
    next_version: u64,
    finished: bool,
}

impl<'a> StreamChunks<'a> {
    pub(crate) fn new(stream: &'a StreamId, as_of: Option<DateTime<Utc>>) -> Self {
        Self {
            stream,
            as_of,
            next_version: 1,
            finished: false,
        }
    }

    /// The next chunk, or `None` after the last event (as of the time given).
    pub(crate) async fn next(
        &mut self,
        store: &EventStore,
    ) -> anyhow::Result<Option<Vec<RecordedEvent>>> {
        if self.finished {
            return Ok(None);
        }
        let range = StreamRange {
            from_version: self.next_version,
            to_version: Some(self.next_version + CHUNK - 1),
            as_of: self.as_of,
        };
        let events = store
            .read_stream(self.stream, range)
            .await
            .with_context(|| {
                format!("reading {} from version {}", self.stream, self.next_version)
            })?;
        for event in &events {
            // A hole means rows were deleted by hand; folding or showing past it would mislead.
            if event.version != self.next_version {
                bail!(
                    "{} jumps from version {} to version {}: events are missing; run \
                     `jobboard-replay verify`",
                    self.stream,
                    self.next_version - 1,
                    event.version
                );
            }
            self.next_version += 1;
        }
        self.finished = (events.len() as u64) < CHUNK;
        Ok((!events.is_empty()).then_some(events))
    }
}
