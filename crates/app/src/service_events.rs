//! Appending the service's own events (monthly notices, view roll-ups): events no client
//! commanded, recorded under a service subject with the `service` role.

use std::collections::BTreeMap;

use jobboard_eventstore::{
    AppendOutcome, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StreamId,
};
use serde::Serialize;

use crate::{Error, Role};

/// One event the service itself writes, and where.
pub(crate) struct ServiceEvent<'a, E> {
    /// Its stream's name.
    pub(crate) stream: String,
    /// The event, with its type name and schema version.
    pub(crate) event: &'a E,
    pub(crate) type_name: &'static str,
    pub(crate) schema_version: u32,
    /// The service subject that writes it (`jobboard-timer`, `jobboard-views`).
    pub(crate) actor: &'static str,
    /// A deterministic id, so that every instance and restart writes it once; `None` for an
    /// event no retry can repeat.
    pub(crate) command_id: Option<String>,
    pub(crate) organisation: Option<String>,
    /// What is being written, for error messages ("a monthly notice").
    pub(crate) what: &'static str,
}

/// Appends `event` to its stream at any version.
pub(crate) async fn append<E: Serialize>(
    store: &EventStore,
    event: ServiceEvent<'_, E>,
) -> Result<AppendOutcome, Error> {
    let what = event.what;
    let payload = serde_json::to_value(event.event)
        .map_err(|e| Error::internal_from(format!("encoding {what}"), e))?;
    let stream = StreamId::new(event.stream)
        .map_err(|e| Error::internal_from(format!("naming the stream of {what}"), e))?;
    let metadata = CommandMetadata {
        command_id: event.command_id,
        actor: Some(event.actor.to_owned()),
        organisation: event.organisation,
        extra: BTreeMap::from([("role".to_owned(), Role::Service.to_string())]),
        ..CommandMetadata::default()
    };
    let new_event = NewEvent::new(event.type_name, event.schema_version, payload);
    store
        .append(&stream, ExpectedVersion::Any, vec![new_event], metadata)
        .await
        .map_err(|e| Error::store(e, &format!("appending {what}")))
}
