//! `state`: an aggregate's state as of a time or a position, folded by the domain's own code.
//!
//! Each event's payload is deserialised into the aggregate's event type and applied with
//! cqrs-es' `Aggregate::apply` to `Default::default()`, as the command layer folds an
//! aggregate, so new event types fold here as soon as the domain knows them. The aggregates that
//! can be folded are listed in [`AGGREGATES`], keyed by stream category (`Aggregate::TYPE`).
//!
//! Personal data: the domain's types hold plain values, so a known personal value is unwrapped
//! from its marker before decoding. An erased one has no value; it is replaced by `"[erased]"`
//! (or `null`, for an optional field that is not text) and reported with its path. An event whose
//! erased field fits neither stops the fold there: the state before it is printed, marked
//! incomplete, with the reason, since guessing a value would misstate history.

use std::io::Write;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use jobboard_domain::Posting;
use jobboard_eventstore::{EventStore, RecordedEvent, StreamId};
use serde::Serialize;
use serde_json::Value;

use crate::history::{StreamChunks, ensure_stream};
use crate::personal::{self, ERASED_TEXT, ErasedField};
use crate::{Outcome, db, parse_stream, parse_time, render};

/// Options of `state`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The stream, e.g. posting-0194d3c0-6b7a-7c3e-9d1e-2f4a5b6c7d8e.
    #[arg(value_parser = parse_stream)]
    stream: StreamId,
    /// The state after the last event recorded at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "at_position")]
    as_of: Option<DateTime<Utc>>,
    /// The state after the stream's last event at or before this global position.
    #[arg(long, value_name = "N")]
    at_position: Option<u64>,
}

/// An aggregate the tool can fold: its stream category and a fresh fold of it.
type Entry = (&'static str, fn() -> Box<dyn Fold>);

/// Every aggregate `state` can fold. One line per aggregate of the domain.
const AGGREGATES: &[Entry] = &[(Posting::TYPE, || {
    Box::new(AggregateFold::<Posting>::default())
})];

/// The stream categories `state` can fold.
pub(crate) fn categories() -> impl Iterator<Item = &'static str> {
    AGGREGATES.iter().map(|(category, _)| *category)
}

/// A fold of one aggregate type, behind a trait object so that [`AGGREGATES`] can list them.
trait Fold {
    /// Decodes `payload` into the aggregate's event type and applies it.
    fn apply(&mut self, payload: Value) -> Result<(), serde_json::Error>;
    /// The state so far, as the aggregate serialises it.
    fn state(&self) -> Result<Value, serde_json::Error>;
}

#[derive(Default)]
struct AggregateFold<A>(A);

impl<A: Aggregate> Fold for AggregateFold<A> {
    fn apply(&mut self, payload: Value) -> Result<(), serde_json::Error> {
        let event: A::Event = serde_json::from_value(payload)?;
        self.0.apply(event);
        Ok(())
    }

    fn state(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&self.0)
    }
}

/// What `state` prints.
#[derive(Debug, Serialize)]
struct Report {
    stream: String,
    aggregate: &'static str,
    as_of: Option<String>,
    at_position: Option<u64>,
    /// The version of the last event folded (0: none).
    version: u64,
    /// That event's global position and recording time.
    position: Option<u64>,
    recorded_at: Option<String>,
    /// False when an event could not be folded because of erased personal data; `stopped_at`
    /// says which, and `state` is the state before it.
    complete: bool,
    stopped_at: Option<Stopped>,
    /// Every erased personal value met, and what the fold saw in its place.
    erased: Vec<ErasedIn>,
    state: Value,
}

#[derive(Debug, Serialize)]
struct Stopped {
    version: u64,
    position: u64,
    event_type: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ErasedIn {
    version: u64,
    #[serde(flatten)]
    field: ErasedField,
    /// What the fold saw instead: `"[erased]"` or `null`; absent where the fold stopped.
    folded_as: Option<Value>,
}

pub(crate) async fn run(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let category = args.stream.category();
    let Some((aggregate, new_fold)) = AGGREGATES.iter().find(|(c, _)| *c == category) else {
        let supported: Vec<String> = categories().map(|c| format!("{c}-…")).collect();
        bail!(
            "cannot fold stream {}: its category {category:?} has no aggregate here; supported \
             categories: {}",
            args.stream,
            supported.join(", ")
        );
    };
    let store = db::open_store(url).await?;
    let result = fold(&store, args, aggregate, new_fold()).await;
    store.close().await;
    let report = result?;
    if report.version == 0 {
        eprintln!("{} had no events at that point", args.stream);
    }
    if let Some(stopped) = &report.stopped_at {
        eprintln!(
            "warning: the state stops before version {} ({}): {}",
            stopped.version, stopped.event_type, stopped.reason
        );
    }
    let mut out = std::io::BufWriter::new(std::io::stdout());
    serde_json::to_writer_pretty(&mut out, &report)?;
    writeln!(out)?;
    out.flush()?;
    Ok(Outcome::Done)
}

async fn fold(
    store: &EventStore,
    args: &Args,
    aggregate: &'static str,
    mut fold: Box<dyn Fold>,
) -> anyhow::Result<Report> {
    let stream = &args.stream;
    ensure_stream(store, stream, aggregate).await?;
    let mut report = Report {
        stream: stream.to_string(),
        aggregate,
        as_of: args.as_of.map(render::time),
        at_position: args.at_position,
        version: 0,
        position: None,
        recorded_at: None,
        complete: true,
        stopped_at: None,
        erased: Vec::new(),
        state: Value::Null,
    };
    let mut chunks = StreamChunks::new(stream, args.as_of);
    'read: while let Some(events) = chunks.next(store).await? {
        for event in events {
            // A stream's positions grow with its versions (ADR 0002), so the events at or before
            // a position are a prefix of the stream.
            if args.at_position.is_some_and(|n| event.position > n) {
                break 'read;
            }
            match apply(fold.as_mut(), &event, &mut report.erased)? {
                Applied::Yes => {
                    report.version = event.version;
                    report.position = Some(event.position);
                    report.recorded_at = Some(render::time(event.metadata.recorded_at));
                }
                Applied::StoppedByErasure(reason) => {
                    report.complete = false;
                    report.stopped_at = Some(Stopped {
                        version: event.version,
                        position: event.position,
                        event_type: event.event_type,
                        reason,
                    });
                    break 'read;
                }
            }
        }
    }
    report.state = fold
        .state()
        .with_context(|| format!("serialising the state of {stream}"))?;
    Ok(report)
}

enum Applied {
    Yes,
    /// The event holds erased data the aggregate's types cannot hold without its value.
    StoppedByErasure(String),
}

/// Applies one event, trying the readings of its personal data in turn: as stored (for types
/// that understand the markers), then with known values unwrapped and erased ones as
/// `"[erased]"`, then as `null`.
fn apply(
    fold: &mut dyn Fold,
    event: &RecordedEvent,
    erased_seen: &mut Vec<ErasedIn>,
) -> anyhow::Result<Applied> {
    let undecodable = |error: serde_json::Error| {
        anyhow::Error::new(error).context(format!(
            "event version {} of {} ({} schema {}, position {}) does not decode into the \
             aggregate's events; is this jobboard-replay older than the service that wrote it?",
            event.version, event.stream_id, event.event_type, event.schema_version, event.position
        ))
    };
    let first_error = match fold.apply(event.payload.clone()) {
        Ok(()) => return Ok(Applied::Yes),
        Err(error) => error,
    };
    if !personal::has_markers(&event.payload) {
        return Err(undecodable(first_error));
    }
    let erased = personal::erased_fields(&event.payload);
    let substitutes = [Value::String(ERASED_TEXT.to_owned()), Value::Null];
    for substitute in &substitutes {
        if fold
            .apply(personal::plain(&event.payload, substitute))
            .is_ok()
        {
            erased_seen.extend(erased.into_iter().map(|field| ErasedIn {
                version: event.version,
                field,
                folded_as: Some(substitute.clone()),
            }));
            return Ok(Applied::Yes);
        }
        if erased.is_empty() {
            // Only known personal values: the substitute was never used, one try is enough.
            break;
        }
    }
    if erased.is_empty() {
        return Err(undecodable(first_error));
    }
    let paths: Vec<&str> = erased.iter().map(|f| f.path.as_str()).collect();
    let reason = format!(
        "it holds erased personal data ({}) that the aggregate cannot fold without its value",
        paths.join(", ")
    );
    erased_seen.extend(erased.into_iter().map(|field| ErasedIn {
        version: event.version,
        field,
        folded_as: None,
    }));
    Ok(Applied::StoppedByErasure(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_is_listed_once() {
        let mut categories: Vec<_> = AGGREGATES.iter().map(|(c, _)| *c).collect();
        categories.sort_unstable();
        categories.dedup();
        assert_eq!(categories.len(), AGGREGATES.len());
        assert!(categories.contains(&"posting"));
    }

    #[test]
    fn a_fresh_fold_is_the_aggregates_default() {
        let (_, new_fold) = AGGREGATES[0];
        assert_eq!(
            new_fold().state().unwrap(),
            serde_json::to_value(Posting::default()).unwrap()
        );
    }
}
