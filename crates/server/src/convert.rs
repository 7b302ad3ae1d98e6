//! Hand-written conversions between protobuf messages and the store's values, at the edge.

use chrono::{DateTime, Utc};
use jobboard_eventstore::{Checkpoint, RecordedEvent};
use jobboard_proto::v1 as pb;
use prost_types::Timestamp;

use crate::status::Failure;

/// A protobuf timestamp for `at`.
pub(crate) fn to_timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        // Below 2e9 even during a leap second, so it always fits; the fallback is unreachable.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

/// The instant of a protobuf timestamp; INVALID_ARGUMENT naming `field` if it is out of range.
pub(crate) fn from_timestamp(field: &str, at: &Timestamp) -> Result<DateTime<Utc>, Failure> {
    u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
        .ok_or_else(|| Failure::invalid_field(field, "is not a valid timestamp"))
}

/// The log position of a checkpoint.
pub(crate) fn to_log_position(checkpoint: Checkpoint) -> pb::LogPosition {
    pb::LogPosition {
        tx_id: checkpoint.tx,
        position: checkpoint.position,
    }
}

/// The checkpoint a request's optional position names; unset means the start of the log.
pub(crate) fn from_log_position(position: Option<&pb::LogPosition>) -> Checkpoint {
    position.map_or(Checkpoint::START, |p| Checkpoint {
        tx: p.tx_id,
        position: p.position,
    })
}

/// The wire form of a recorded event.
pub(crate) fn to_event(event: RecordedEvent) -> pb::Event {
    let checkpoint = event.checkpoint();
    let command = event.metadata.command;
    pb::Event {
        position: Some(to_log_position(checkpoint)),
        stream_id: event.stream_id,
        version: event.version,
        event_type: event.event_type,
        schema_version: event.schema_version,
        // `Value`'s Display is compact JSON.
        payload_json: event.payload.to_string(),
        metadata: Some(pb::EventMetadata {
            event_id: event.metadata.event_id.to_string(),
            command_id: command.command_id.unwrap_or_default(),
            correlation_id: command.correlation_id.unwrap_or_default(),
            causation_id: command.causation_id.unwrap_or_default(),
            actor: command.actor.unwrap_or_default(),
            organisation: command.organisation.unwrap_or_default(),
            recorded_at: Some(to_timestamp(event.metadata.recorded_at)),
            extra: command.extra.into_iter().collect(),
        }),
        hash: event.hash.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_bad_ones_name_the_field() {
        let at = DateTime::from_timestamp(1_790_000_000, 123_456_000).unwrap();
        assert_eq!(from_timestamp("as_of", &to_timestamp(at)).unwrap(), at);
        let bad = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        let Failure::InvalidArgument { violations, .. } =
            from_timestamp("as_of", &bad).unwrap_err()
        else {
            panic!("expected INVALID_ARGUMENT");
        };
        assert_eq!(violations[0].field, "as_of");
    }

    #[test]
    fn an_unset_position_is_the_start_of_the_log() {
        assert_eq!(from_log_position(None), Checkpoint::START);
        let checkpoint = Checkpoint { tx: 7, position: 3 };
        assert_eq!(
            from_log_position(Some(&to_log_position(checkpoint))),
            checkpoint
        );
    }
}
