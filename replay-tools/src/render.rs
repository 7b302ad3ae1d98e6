//! How events and times are printed: one JSON shape for an event (`history --json` and `export`
//! write the same lines, so auditors parse one format), and the text form people read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use jobboard_eventstore::RecordedEvent;
use serde::Serialize;
use serde_json::Value;

use crate::personal;

/// A time as every output prints it: RFC 3339, UTC, microseconds (the log's precision).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An event as one JSON object. Personal data stays as the store returns it: erased values are
/// `{"$erased": {"subject": …}}`, known ones `{"$personal": {"subject": …, "value": …}}`.
#[derive(Debug, Serialize)]
pub(crate) struct EventRecord<'a> {
    pub(crate) position: u64,
    /// With `position`, the event's place in the log's global order (`tx/position`).
    pub(crate) tx: u64,
    pub(crate) stream: &'a str,
    pub(crate) version: u64,
    #[serde(rename = "type")]
    pub(crate) event_type: &'a str,
    pub(crate) schema_version: u32,
    pub(crate) recorded_at: String,
    pub(crate) metadata: Metadata<'a>,
    /// The event's link in its stream's hash chain, hex.
    pub(crate) hash: String,
    pub(crate) payload: &'a Value,
}

/// Who and what caused an event.
#[derive(Debug, Serialize)]
pub(crate) struct Metadata<'a> {
    pub(crate) event_id: String,
    pub(crate) command_id: Option<&'a str>,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) causation_id: Option<&'a str>,
    pub(crate) actor: Option<&'a str>,
    pub(crate) organisation: Option<&'a str>,
    pub(crate) extra: &'a BTreeMap<String, String>,
}

impl<'a> EventRecord<'a> {
    pub(crate) fn new(event: &'a RecordedEvent) -> Self {
        let command = &event.metadata.command;
        Self {
            position: event.position,
            tx: event.tx,
            stream: &event.stream_id,
            version: event.version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at: time(event.metadata.recorded_at),
            metadata: Metadata {
                event_id: event.metadata.event_id.to_string(),
                command_id: command.command_id.as_deref(),
                correlation_id: command.correlation_id.as_deref(),
                causation_id: command.causation_id.as_deref(),
                actor: command.actor.as_deref(),
                organisation: command.organisation.as_deref(),
                extra: &command.extra,
            },
            hash: hex(&event.hash),
            payload: &event.payload,
        }
    }
}

/// Writes `event` as one line of JSON.
pub(crate) fn write_json_line(out: &mut impl Write, event: &RecordedEvent) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &EventRecord::new(event))?;
    out.write_all(b"\n")
}

/// Writes `event` for people: a heading line, its metadata, erased fields, the payload.
pub(crate) fn write_text(out: &mut impl Write, event: &RecordedEvent) -> io::Result<()> {
    let command = &event.metadata.command;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "v{}  position {} (checkpoint {})  {}  {}  schema {}",
        event.version,
        event.position,
        event.checkpoint(),
        time(event.metadata.recorded_at),
        event.event_type,
        event.schema_version
    )?;
    writeln!(
        out,
        "    actor {}  organisation {}",
        or_dash(&command.actor),
        or_dash(&command.organisation)
    )?;
    writeln!(
        out,
        "    command {}  correlation {}  causation {}",
        or_dash(&command.command_id),
        or_dash(&command.correlation_id),
        or_dash(&command.causation_id)
    )?;
    let mut ids = format!("    event id {}", event.metadata.event_id);
    for (key, value) in &command.extra {
        let _ = write!(ids, "  {key} {value}");
    }
    writeln!(out, "{ids}")?;
    for field in personal::erased_fields(&event.payload) {
        writeln!(
            out,
            "    erased: {} (personal data of subject {})",
            if field.path.is_empty() {
                "the whole payload"
            } else {
                &field.path
            },
            field.subject
        )?;
    }
    let payload = serde_json::to_string_pretty(&personal::for_display(&event.payload))?;
    for line in payload.lines() {
        writeln!(out, "    {line}")?;
    }
    writeln!(out)
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_print_in_utc_with_microseconds() {
        let t = Utc.with_ymd_and_hms(2026, 1, 31, 13, 0, 0).unwrap();
        assert_eq!(time(t), "2026-01-31T13:00:00.000000Z");
    }

    #[test]
    fn hashes_print_as_hex() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
