//! cqrs-es 0.5 aggregates run on the event store through `CqrsRepository`, on both backends:
//! commands land in the aggregate's stream, cqrs-es metadata reaches the store's metadata
//! columns, a retried command id writes once, snapshots carry the version cqrs-es folded into
//! them, the store's upcasters feed the aggregate, a stale writer loses with cqrs-es' conflict
//! error, and replays stream the events of one aggregate or of one aggregate type.

mod support;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore as _};
use jobboard_eventstore::{
    CommandMetadata, CqrsRepository, EventStore, FnUpcaster, RecordedEvent, StoreOptions, StreamId,
    StreamRange, Upcasters,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{Kind, ManualClock, TestDb, date};

jobboard_testkit::on_both_backends!(
    commands_run_through_cqrs_es_land_in_the_aggregate_stream_and_reload,
    cqrs_es_metadata_lands_in_the_stored_command_metadata_and_comes_back,
    a_command_retried_with_its_command_id_writes_its_events_once,
    concurrent_retries_of_one_command_through_cqrs_es_all_succeed_and_write_once,
    snapshots_record_the_version_cqrs_es_folded_in_and_reload_with_later_events,
    a_snapshot_that_no_longer_deserialises_is_rebuilt_from_the_events,
    an_aggregate_store_keeps_a_snapshot_at_every_commit_and_the_events_too,
    events_stored_at_schema_version_1_reach_the_aggregate_upcast_to_version_2,
    a_writer_that_loaded_a_stale_aggregate_loses_with_aggregate_conflict,
    racing_cqrs_executions_either_commit_or_lose_with_aggregate_conflict,
    an_event_version_that_is_not_an_integer_is_refused_and_writes_nothing,
    replay_streams_one_aggregate_or_every_aggregate_of_a_type_in_log_order,
);

// ---------------------------------------------------------------------------------------------
// The test aggregate: a job posting, created and then renamed.
// ---------------------------------------------------------------------------------------------

/// A job posting.
///
/// Its events carry the state they lead to (the title and the revision), not a change to it.
/// cqrs-es 0.5 folds a command's events into the aggregate once through the `EventSink` and once
/// more when it builds a snapshot (`PersistedEventStore::update_snapshot_with_events`), so an
/// aggregate that counted its events would snapshot some of them twice; with events that carry
/// their resulting state the second fold is harmless, and `revision` always equals the version of
/// the last event folded in, which lets the tests check snapshot versions against snapshot states.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Posting {
    created: bool,
    title: String,
    revision: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum PostingEvent {
    Created { title: String },
    Renamed { title: String, revision: u64 },
}

impl DomainEvent for PostingEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created { .. } => "PostingCreated".into(),
            Self::Renamed { .. } => "PostingRenamed".into(),
        }
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug)]
enum PostingCommand {
    Create {
        title: String,
    },
    Rename {
        title: String,
    },
    /// Renames several times in one command: one command, several events.
    RenameSeveral {
        titles: Vec<String>,
    },
}

#[derive(Debug, PartialEq)]
enum PostingError {
    AlreadyCreated,
    NotCreated,
}

impl fmt::Display for PostingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyCreated => f.write_str("the posting already exists"),
            Self::NotCreated => f.write_str("the posting does not exist"),
        }
    }
}

impl std::error::Error for PostingError {}

impl Aggregate for Posting {
    const TYPE: &'static str = "posting";
    type Command = PostingCommand;
    type Event = PostingEvent;
    type Error = PostingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PostingCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PostingError> {
        let titles = match command {
            PostingCommand::Create { title } => {
                if self.created {
                    return Err(PostingError::AlreadyCreated);
                }
                sink.write(PostingEvent::Created { title }, self).await;
                return Ok(());
            }
            PostingCommand::Rename { title } => vec![title],
            PostingCommand::RenameSeveral { titles } => titles,
        };
        if !self.created {
            return Err(PostingError::NotCreated);
        }
        for title in titles {
            // The sink folds each event in at once, so the next one sees the new revision.
            let revision = self.revision + 1;
            sink.write(PostingEvent::Renamed { title, revision }, self)
                .await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PostingEvent) {
        match event {
            PostingEvent::Created { title } => {
                self.created = true;
                self.title = title;
                self.revision = 1;
            }
            PostingEvent::Renamed { title, revision } => {
                self.title = title;
                self.revision = revision;
            }
        }
    }
}

type PostingStore = PersistedEventStore<CqrsRepository, Posting>;
type Postings = CqrsFramework<Posting, PostingStore>;

fn create(title: &str) -> PostingCommand {
    PostingCommand::Create {
        title: title.into(),
    }
}

fn rename(title: &str) -> PostingCommand {
    PostingCommand::Rename {
        title: title.into(),
    }
}

fn rename_several(titles: &[&str]) -> PostingCommand {
    PostingCommand::RenameSeveral {
        titles: titles.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn posting(title: &str, revision: u64) -> Posting {
    Posting {
        created: true,
        title: title.into(),
        revision,
    }
}

fn event_sourced(store: &EventStore) -> PostingStore {
    PersistedEventStore::new_event_store(CqrsRepository::new(store.clone()))
}

fn snapshotting(store: &EventStore, size: usize) -> PostingStore {
    PersistedEventStore::new_snapshot_store(
        CqrsRepository::with_snapshot_size(store.clone(), size),
        size,
    )
}

fn framework(event_store: PostingStore) -> Postings {
    CqrsFramework::new(event_store, vec![], ())
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn posting_stream(id: &str) -> StreamId {
    StreamId::new(format!("posting-{id}")).unwrap()
}

async fn read(store: &EventStore, stream: &StreamId) -> Vec<RecordedEvent> {
    store.read_stream(stream, StreamRange::all()).await.unwrap()
}

/// The aggregate as cqrs-es loads it, with the sequence it believes it is at.
async fn load(event_store: &PostingStore, id: &str) -> (Posting, usize) {
    let context = event_store.load_aggregate(id).await.unwrap();
    (context.aggregate, context.current_sequence)
}

/// The stream's snapshot is at `version`, is cqrs-es' `sequence`th, and holds exactly the state
/// at that version (whose title is `title`).
async fn assert_snapshot(
    store: &EventStore,
    stream: &StreamId,
    version: u64,
    sequence: u64,
    title: &str,
) {
    let snapshot = store
        .load_snapshot(stream)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(
        (snapshot.version, snapshot.sequence),
        (version, sequence),
        "{snapshot:?}"
    );
    assert_eq!(
        snapshot.state,
        serde_json::to_value(posting(title, version)).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

async fn commands_run_through_cqrs_es_land_in_the_aggregate_stream_and_reload(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = framework(event_sourced(&store));
    let stream = posting_stream("p1");
    assert_eq!(
        CqrsRepository::stream_id::<Posting>("p1").unwrap(),
        stream,
        "the stream of an aggregate is {{TYPE}}-{{id}}"
    );

    cqrs.execute("p1", create("Researcher")).await.unwrap();
    cqrs.execute("p1", rename("Senior researcher"))
        .await
        .unwrap();

    // Commands the aggregate refuses fail in cqrs-es and write nothing.
    let err = cqrs.execute("p1", create("Again")).await.unwrap_err();
    assert!(
        matches!(err, AggregateError::UserError(PostingError::AlreadyCreated)),
        "got {err:?}"
    );
    let err = cqrs.execute("p2", rename("Nobody")).await.unwrap_err();
    assert!(
        matches!(err, AggregateError::UserError(PostingError::NotCreated)),
        "got {err:?}"
    );
    assert_eq!(
        store.stream_version(&posting_stream("p2")).await.unwrap(),
        None
    );

    // The events are in the stream, in the serde shape of the event enum, at schema version 1.
    let events = read(&store, &stream).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.stream_id.as_str(),
                e.version,
                e.event_type.as_str(),
                e.schema_version,
                e.payload.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "posting-p1",
                1,
                "PostingCreated",
                1,
                json!({"Created": {"title": "Researcher"}})
            ),
            (
                "posting-p1",
                2,
                "PostingRenamed",
                1,
                json!({"Renamed": {"title": "Senior researcher", "revision": 2}})
            ),
        ]
    );
    // Without metadata, cqrs-es writes none.
    assert_eq!(events[0].metadata.command, CommandMetadata::default());

    // cqrs-es reads the events back as envelopes and folds them into the same state.
    let es = event_sourced(&store);
    let envelopes = es.load_events("p1").await.unwrap();
    let folded: Vec<_> = envelopes
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.sequence, e.payload.clone()))
        .collect();
    assert_eq!(
        folded,
        [
            (
                "p1",
                1,
                PostingEvent::Created {
                    title: "Researcher".into()
                }
            ),
            (
                "p1",
                2,
                PostingEvent::Renamed {
                    title: "Senior researcher".into(),
                    revision: 2
                }
            ),
        ]
    );
    assert_eq!(load(&es, "p1").await, (posting("Senior researcher", 2), 2));
    assert_eq!(load(&es, "p2").await, (Posting::default(), 0));

    // After a restart the aggregate reloads from the log and takes further commands.
    store.close().await;
    drop((cqrs, es, store));
    let store = db.open().await;
    let es = event_sourced(&store);
    assert_eq!(load(&es, "p1").await, (posting("Senior researcher", 2), 2));
    framework(event_sourced(&store))
        .execute("p1", rename("Principal researcher"))
        .await
        .unwrap();
    assert_eq!(
        load(&es, "p1").await,
        (posting("Principal researcher", 3), 3)
    );
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(3));
    assert!(store.verify().await.unwrap().is_intact());
}

async fn cqrs_es_metadata_lands_in_the_stored_command_metadata_and_comes_back(kind: Kind) {
    let db = TestDb::new(kind).await;
    let clock = ManualClock::at(date(2025, 3, 1));
    let store = db
        .open_with(StoreOptions {
            clock: clock.clock(),
            ..StoreOptions::default()
        })
        .await;
    let cqrs = framework(event_sourced(&store));
    let stream = posting_stream("m1");

    let create_meta = meta(&[
        ("command_id", "cmd-create-1"),
        ("correlation_id", "corr-1"),
        ("actor", "user-7"),
        ("organisation", "org-3"),
        ("client", "tests"),
    ]);
    cqrs.execute_with_metadata("m1", create("Researcher"), create_meta.clone())
        .await
        .unwrap();
    clock.set(date(2025, 3, 2));
    let rename_meta = meta(&[
        ("command_id", "cmd-rename-1"),
        ("correlation_id", "corr-1"),
        ("causation_id", "cmd-create-1"),
        ("actor", "user-8"),
        ("organisation", "org-3"),
        ("client", "tests"),
        ("reason", "typo"),
    ]);
    cqrs.execute_with_metadata(
        "m1",
        rename_several(&["Reseacher", "Researcher II"]),
        rename_meta.clone(),
    )
    .await
    .unwrap();

    let events = read(&store, &stream).await;
    assert_eq!(events.len(), 3);
    let created = CommandMetadata {
        command_id: Some("cmd-create-1".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: None,
        actor: Some("user-7".into()),
        organisation: Some("org-3".into()),
        extra: [("client".to_owned(), "tests".to_owned())].into(),
    };
    assert_eq!(events[0].metadata.command, created);
    let renamed = CommandMetadata {
        command_id: Some("cmd-rename-1".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cmd-create-1".into()),
        actor: Some("user-8".into()),
        organisation: Some("org-3".into()),
        extra: [
            ("client".to_owned(), "tests".to_owned()),
            ("reason".to_owned(), "typo".to_owned()),
        ]
        .into(),
    };
    // Every event of a command carries the command's metadata.
    assert_eq!(events[1].metadata.command, renamed);
    assert_eq!(events[2].metadata.command, renamed);
    assert_eq!(events[0].metadata.recorded_at, date(2025, 3, 1));
    assert_eq!(events[2].metadata.recorded_at, date(2025, 3, 2));

    // cqrs-es gets the metadata back, with the store's event id, position and time added.
    let envelopes = event_sourced(&store).load_events("m1").await.unwrap();
    assert_eq!(envelopes.len(), 3);
    for (envelope, event) in envelopes.iter().zip(&events) {
        let mut expected = if event.version == 1 {
            create_meta.clone()
        } else {
            rename_meta.clone()
        };
        expected.insert("event_id".into(), event.metadata.event_id.to_string());
        expected.insert("position".into(), event.position.to_string());
        expected.insert(
            "recorded_at".into(),
            event.metadata.recorded_at.to_rfc3339(),
        );
        assert_eq!(envelope.metadata, expected);
    }
    assert_eq!(
        envelopes[0].metadata["recorded_at"],
        date(2025, 3, 1).to_rfc3339()
    );
}

async fn a_command_retried_with_its_command_id_writes_its_events_once(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = framework(event_sourced(&store));
    let es = event_sourced(&store);
    let stream = posting_stream("r1");

    cqrs.execute_with_metadata("r1", create("Lab"), meta(&[("command_id", "create-1")]))
        .await
        .unwrap();
    cqrs.execute_with_metadata(
        "r1",
        rename("Lab lead"),
        meta(&[("command_id", "rename-1")]),
    )
    .await
    .unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(2));

    // The retry: cqrs-es reloads the posting (now at 2), handles the rename again and persists
    // its event as sequence 3. The store finds rename-1 committed and returns its first outcome,
    // so the repository answers Ok and nothing is written.
    cqrs.execute_with_metadata(
        "r1",
        rename("Lab lead"),
        meta(&[("command_id", "rename-1")]),
    )
    .await
    .unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(2));
    // The command id decides, not the content: a different rename under rename-1 writes nothing.
    cqrs.execute_with_metadata(
        "r1",
        rename("Something else"),
        meta(&[("command_id", "rename-1")]),
    )
    .await
    .unwrap();
    assert_eq!(read(&store, &stream).await.len(), 2);
    assert_eq!(load(&es, "r1").await, (posting("Lab lead", 2), 2));

    // A retried command the aggregate now refuses fails in the handler, before the store sees it.
    let err = cqrs
        .execute_with_metadata("r1", create("Lab"), meta(&[("command_id", "create-1")]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AggregateError::UserError(PostingError::AlreadyCreated)),
        "got {err:?}"
    );

    // A new command id writes again.
    cqrs.execute_with_metadata(
        "r1",
        rename("Lab head"),
        meta(&[("command_id", "rename-2")]),
    )
    .await
    .unwrap();
    let events = read(&store, &stream).await;
    let ids: Vec<_> = events
        .iter()
        .map(|e| e.metadata.command.command_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["create-1", "rename-1", "rename-2"]);
    assert_eq!(load(&es, "r1").await, (posting("Lab head", 3), 3));
}

async fn concurrent_retries_of_one_command_through_cqrs_es_all_succeed_and_write_once(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = Arc::new(framework(event_sourced(&store)));
    cqrs.execute("c1", create("Lab")).await.unwrap();

    // Every retry either loads the posting before the rename committed and then finds its
    // command id committed in the append, or loads it after and finds the same: never a conflict.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let cqrs = Arc::clone(&cqrs);
        tasks.push(tokio::spawn(async move {
            cqrs.execute_with_metadata(
                "c1",
                rename("Lab lead"),
                meta(&[("command_id", "the-rename")]),
            )
            .await
        }));
    }
    for task in tasks {
        let result = task.await.unwrap();
        assert!(result.is_ok(), "got {result:?}");
    }
    let events = read(&store, &posting_stream("c1")).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].metadata.command.command_id.as_deref(),
        Some("the-rename")
    );
    assert_eq!(
        load(&event_sourced(&store), "c1").await,
        (posting("Lab lead", 2), 2)
    );
}

async fn snapshots_record_the_version_cqrs_es_folded_in_and_reload_with_later_events(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = framework(snapshotting(&store, 2));
    let stream = posting_stream("s1");
    cqrs.execute("s1", create("t1")).await.unwrap();
    // cqrs-es snapshots every 2 events: none yet after 1.
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), None);
    cqrs.execute("s1", rename("t2")).await.unwrap();
    assert_snapshot(&store, &stream, 2, 1, "t2").await;
    cqrs.execute("s1", rename("t3")).await.unwrap();
    // The next snapshot is due at 4: the one at 2 stays.
    assert_snapshot(&store, &stream, 2, 1, "t2").await;
    // From version 3, two events: cqrs-es folds in only the first (up to version 4).
    cqrs.execute("s1", rename_several(&["t4", "t5"]))
        .await
        .unwrap();
    assert_snapshot(&store, &stream, 4, 2, "t4").await;
    cqrs.execute("s1", rename("t6")).await.unwrap();
    assert_snapshot(&store, &stream, 6, 3, "t6").await;
    // From version 6, three events: cqrs-es folds in two (up to version 8).
    cqrs.execute("s1", rename_several(&["t7", "t8", "t9"]))
        .await
        .unwrap();
    assert_snapshot(&store, &stream, 8, 4, "t8").await;

    // Loading starts from the snapshot at 8 and folds in event 9.
    let context = snapshotting(&store, 2).load_aggregate("s1").await.unwrap();
    assert_eq!(context.aggregate, posting("t9", 9));
    assert_eq!(context.current_sequence, 9);
    assert_eq!(context.current_snapshot, Some(4));
    // The same state as folding every event.
    assert_eq!(
        load(&event_sourced(&store), "s1").await,
        (posting("t9", 9), 9)
    );
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(9));

    // More commands after a reload build on the snapshot.
    cqrs.execute("s1", rename("t10")).await.unwrap();
    assert_snapshot(&store, &stream, 10, 5, "t10").await;
    cqrs.execute("s1", rename("t11")).await.unwrap();
    assert_eq!(
        load(&snapshotting(&store, 2), "s1").await,
        (posting("t11", 11), 11)
    );
    assert_eq!(read(&store, &stream).await.len(), 11);
}

async fn a_snapshot_that_no_longer_deserialises_is_rebuilt_from_the_events(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = framework(snapshotting(&store, 2));
    let stream = posting_stream("d1");
    cqrs.execute("d1", create("t1")).await.unwrap();
    cqrs.execute("d1", rename_several(&["t2", "t3", "t4"]))
        .await
        .unwrap();
    let before = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!((before.version, before.sequence), (4, 1));

    // The aggregate's shape changed since the snapshot was taken.
    assert_eq!(
        db.execute(r#"UPDATE snapshots SET state = '{"legacy": true}'"#)
            .await,
        1
    );
    assert_eq!(
        load(&snapshotting(&store, 2), "d1").await,
        (posting("t4", 4), 4)
    );

    // cqrs-es starts counting snapshots afresh; the new one replaces the stale one.
    cqrs.execute("d1", rename("t5")).await.unwrap();
    cqrs.execute("d1", rename("t6")).await.unwrap();
    let after = store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!((after.version, after.sequence), (6, 1));
    assert_eq!(after.state, serde_json::to_value(posting("t6", 6)).unwrap());
    assert_eq!(
        load(&snapshotting(&store, 2), "d1").await,
        (posting("t6", 6), 6)
    );
}

async fn an_aggregate_store_keeps_a_snapshot_at_every_commit_and_the_events_too(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let aggregate_store =
        || PersistedEventStore::new_aggregate_store(CqrsRepository::new(store.clone()));
    let cqrs = framework(aggregate_store());
    let stream = posting_stream("a1");

    let steps = [
        (create("t1"), posting("t1", 1)),
        (rename("t2"), posting("t2", 2)),
        (rename_several(&["t3", "t4"]), posting("t4", 4)),
    ];
    for (sequence, (command, state)) in (1u64..).zip(steps) {
        cqrs.execute("a1", command).await.unwrap();
        let snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
        assert_eq!(snapshot.version, state.revision);
        assert_eq!(snapshot.sequence, sequence);
        assert_eq!(snapshot.state, serde_json::to_value(&state).unwrap());
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            Some(state.revision)
        );
    }

    // The aggregate loads from its snapshot alone, at the stream's version.
    let context = aggregate_store().load_aggregate("a1").await.unwrap();
    assert_eq!(context.aggregate, posting("t4", 4));
    assert_eq!(context.current_sequence, 4);
    assert_eq!(context.current_snapshot, Some(3));
    // And the events are all in the log.
    assert_eq!(
        load(&event_sourced(&store), "a1").await,
        (posting("t4", 4), 4)
    );
    let types: Vec<_> = read(&store, &stream)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "PostingCreated",
            "PostingRenamed",
            "PostingRenamed",
            "PostingRenamed"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// A listing, at two schema versions of its one event: `name` (1), then `title` and `language`
// (2). Both aggregates share the type, hence the stream.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
struct ListingV1 {
    name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum ListingEventV1 {
    Titled { name: String },
}

impl DomainEvent for ListingEventV1 {
    fn event_type(&self) -> String {
        "ListingTitled".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Aggregate for ListingV1 {
    const TYPE: &'static str = "listing";
    type Command = String;
    type Event = ListingEventV1;
    type Error = PostingError;
    type Services = ();

    async fn handle(
        &mut self,
        name: String,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PostingError> {
        sink.write(ListingEventV1::Titled { name }, self).await;
        Ok(())
    }

    fn apply(&mut self, ListingEventV1::Titled { name }: ListingEventV1) {
        self.name = name;
    }
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Listing {
    title: String,
    language: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum ListingEvent {
    Titled { title: String, language: String },
}

impl DomainEvent for ListingEvent {
    fn event_type(&self) -> String {
        "ListingTitled".into()
    }
    fn event_version(&self) -> String {
        "2".into()
    }
}

impl Aggregate for Listing {
    const TYPE: &'static str = "listing";
    type Command = (String, String);
    type Event = ListingEvent;
    type Error = PostingError;
    type Services = ();

    async fn handle(
        &mut self,
        (title, language): (String, String),
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PostingError> {
        sink.write(ListingEvent::Titled { title, language }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, ListingEvent::Titled { title, language }: ListingEvent) {
        self.title = title;
        self.language = language;
    }
}

async fn events_stored_at_schema_version_1_reach_the_aggregate_upcast_to_version_2(kind: Kind) {
    let db = TestDb::new(kind).await;
    let stream = StreamId::new("listing-l1").unwrap();
    {
        let plain = db.open().await;
        let v1 = CqrsFramework::new(
            PersistedEventStore::<_, ListingV1>::new_event_store(CqrsRepository::new(
                plain.clone(),
            )),
            vec![],
            (),
        );
        v1.execute("l1", "Lab".to_owned()).await.unwrap();
        let stored = read(&plain, &stream).await;
        assert_eq!(stored[0].schema_version, 1);
        assert_eq!(stored[0].payload, json!({"Titled": {"name": "Lab"}}));
        plain.close().await;
    }

    let upcasting = db
        .open_with(StoreOptions {
            upcasters: Upcasters::default().with(FnUpcaster::new(
                "ListingTitled",
                1,
                |p: Value| json!({"Titled": {"title": p["Titled"]["name"], "language": "ja"}}),
            )),
            ..StoreOptions::default()
        })
        .await;
    let repo = CqrsRepository::new(upcasting.clone());
    // cqrs-es is handed the event in its upcast shape, at event version 2.
    let serialized = repo.get_events::<Listing>("l1").await.unwrap();
    assert_eq!(serialized.len(), 1);
    assert_eq!(serialized[0].event_type, "ListingTitled");
    assert_eq!(serialized[0].event_version, "2");
    assert_eq!(
        serialized[0].payload,
        json!({"Titled": {"title": "Lab", "language": "ja"}})
    );
    let listings = PersistedEventStore::<_, Listing>::new_event_store(repo);
    let context = listings.load_aggregate("l1").await.unwrap();
    assert_eq!(
        context.aggregate,
        Listing {
            title: "Lab".into(),
            language: "ja".into()
        }
    );

    // New events are written at version 2, which no upcaster touches.
    let cqrs = CqrsFramework::new(listings, vec![], ());
    cqrs.execute("l1", ("Laboratory".to_owned(), "en".to_owned()))
        .await
        .unwrap();
    let events =
        PersistedEventStore::<_, Listing>::new_event_store(CqrsRepository::new(upcasting.clone()))
            .load_events("l1")
            .await
            .unwrap();
    let payloads: Vec<_> = events.into_iter().map(|e| e.payload).collect();
    assert_eq!(
        payloads,
        [
            ListingEvent::Titled {
                title: "Lab".into(),
                language: "ja".into()
            },
            ListingEvent::Titled {
                title: "Laboratory".into(),
                language: "en".into()
            },
        ]
    );
    upcasting.close().await;

    // Without the upcaster, the stored version-1 event does not fit the version-2 aggregate.
    let plain = db.open().await;
    let raw: Vec<_> = read(&plain, &stream)
        .await
        .into_iter()
        .map(|e| (e.schema_version, e.payload))
        .collect();
    assert_eq!(
        raw,
        [
            (1, json!({"Titled": {"name": "Lab"}})),
            (
                2,
                json!({"Titled": {"title": "Laboratory", "language": "en"}})
            ),
        ]
    );
    let err =
        PersistedEventStore::<_, Listing>::new_event_store(CqrsRepository::new(plain.clone()))
            .load_aggregate("l1")
            .await
            .err()
            .expect("the version-1 event does not deserialise as version 2");
    assert!(
        matches!(err, AggregateError::DeserializationError(_)),
        "got {err:?}"
    );
    assert!(plain.verify().await.unwrap().is_intact());
}

async fn a_writer_that_loaded_a_stale_aggregate_loses_with_aggregate_conflict(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = framework(event_sourced(&store));
    let stream = posting_stream("x1");
    cqrs.execute("x1", create("Lab")).await.unwrap();

    // Two writers load the posting at version 1 and handle a rename each, exactly as
    // `CqrsFramework::execute` does; the first to commit wins.
    let es = event_sourced(&store);
    let mut first = es.load_aggregate("x1").await.unwrap();
    let mut second = es.load_aggregate("x1").await.unwrap();
    let mut handled = Vec::new();
    for (context, title) in [(&mut first, "First"), (&mut second, "Second")] {
        let sink = EventSink::default();
        context
            .aggregate
            .handle(rename(title), &(), &sink)
            .await
            .unwrap();
        handled.push(sink.collect().await);
    }
    let second_events = handled.pop().unwrap();
    let first_events = handled.pop().unwrap();
    es.commit(first_events, first, meta(&[("command_id", "rename-first")]))
        .await
        .unwrap();
    let err = es
        .commit(
            second_events,
            second,
            meta(&[("command_id", "rename-second")]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AggregateError::AggregateConflict),
        "got {err:?}"
    );
    assert_eq!(load(&es, "x1").await, (posting("First", 2), 2));

    // The loser's command id was not used up: its retry through the framework commits.
    cqrs.execute_with_metadata(
        "x1",
        rename("Second"),
        meta(&[("command_id", "rename-second")]),
    )
    .await
    .unwrap();
    assert_eq!(load(&es, "x1").await, (posting("Second", 3), 3));

    // At the repository, a stale sequence is cqrs-es' optimistic lock error, and writes nothing.
    let repo = CqrsRepository::new(store.clone());
    for stale in [1, 2, 3, 5] {
        let event = SerializedEvent::new(
            "x1".into(),
            stale,
            Posting::TYPE.into(),
            "PostingRenamed".into(),
            "1".into(),
            json!({"Renamed": {"title": "Stale", "revision": stale}}),
            json!({}),
        );
        let err = repo.persist::<Posting>(&[event], None).await.unwrap_err();
        assert!(
            matches!(err, PersistenceError::OptimisticLockError),
            "sequence {stale}: got {err:?}"
        );
    }
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(3));
    assert!(store.verify().await.unwrap().is_intact());
}

async fn racing_cqrs_executions_either_commit_or_lose_with_aggregate_conflict(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = Arc::new(framework(event_sourced(&store)));
    let mut conflicts = 0;
    for round in 0..10 {
        let id = format!("race{round}");
        cqrs.execute(&id, create("Lab")).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(4));
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let (cqrs, barrier, id) = (Arc::clone(&cqrs), Arc::clone(&barrier), id.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let title = format!("Writer {writer}");
                let command_id = format!("{id}-{writer}");
                let result = cqrs
                    .execute_with_metadata(
                        &id,
                        rename(&title),
                        meta(&[("command_id", &command_id)]),
                    )
                    .await;
                (title, result)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (title, Ok(())) => winners.push(title),
                (_, Err(AggregateError::AggregateConflict)) => conflicts += 1,
                (_, Err(e)) => panic!("a racing writer failed otherwise: {e:?}"),
            }
        }
        assert!(!winners.is_empty());
        // Every winner's rename is in the stream, each at its own version, and nothing else.
        let events = read(&store, &posting_stream(&id)).await;
        assert_eq!(events.len(), 1 + winners.len());
        let (state, version) = load(&event_sourced(&store), &id).await;
        assert_eq!(state.revision, u64::try_from(version).unwrap());
        assert_eq!(version, 1 + winners.len());
        assert!(winners.contains(&state.title));
    }
    // Four writers released together onto one version: losers are the rule, not luck.
    assert!(conflicts > 0, "no writer ever lost a race");
}

async fn an_event_version_that_is_not_an_integer_is_refused_and_writes_nothing(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let repo = CqrsRepository::new(store.clone());
    // cqrs-es' own examples version events "1.0"; the store keeps integer schema versions.
    let event = SerializedEvent::new(
        "v1".into(),
        1,
        Posting::TYPE.into(),
        "PostingCreated".into(),
        "1.0".into(),
        json!({"Created": {"title": "Lab"}}),
        json!({}),
    );
    let err = repo.persist::<Posting>(&[event], None).await.unwrap_err();
    assert!(
        matches!(err, PersistenceError::DeserializationError(_)),
        "got {err:?}"
    );
    assert_eq!(
        store.stream_version(&posting_stream("v1")).await.unwrap(),
        None
    );
}

async fn replay_streams_one_aggregate_or_every_aggregate_of_a_type_in_log_order(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let cqrs = framework(event_sourced(&store));
    cqrs.execute("q1", create("One")).await.unwrap();
    cqrs.execute("q2", create("Two")).await.unwrap();
    // Another aggregate type in the same log is left out of a posting replay.
    CqrsFramework::new(
        PersistedEventStore::<_, Listing>::new_event_store(CqrsRepository::new(store.clone())),
        vec![],
        (),
    )
    .execute("q1", ("Listing".to_owned(), "en".to_owned()))
    .await
    .unwrap();
    cqrs.execute("q1", rename_several(&["One b", "One c"]))
        .await
        .unwrap();
    cqrs.execute("q2", rename("Two b")).await.unwrap();

    let repo = CqrsRepository::new(store.clone());
    let mut replay = repo.stream_all_events::<Posting>().await.unwrap();
    let mut all = Vec::new();
    while let Some(envelope) = replay.next::<Posting>(&[]).await {
        let envelope = envelope.unwrap();
        all.push((envelope.aggregate_id, envelope.sequence));
    }
    let expected = [("q1", 1), ("q2", 1), ("q1", 2), ("q1", 3), ("q2", 2)];
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, sequence)| ((*id).to_owned(), *sequence))
        .collect();
    assert_eq!(all, expected);

    let mut replay = repo.stream_events::<Posting>("q1").await.unwrap();
    let mut one = Vec::new();
    while let Some(envelope) = replay.next::<Posting>(&[]).await {
        let envelope = envelope.unwrap();
        one.push((envelope.sequence, envelope.payload));
    }
    assert_eq!(
        one,
        [
            (
                1,
                PostingEvent::Created {
                    title: "One".into()
                }
            ),
            (
                2,
                PostingEvent::Renamed {
                    title: "One b".into(),
                    revision: 2
                }
            ),
            (
                3,
                PostingEvent::Renamed {
                    title: "One c".into(),
                    revision: 3
                }
            ),
        ]
    );
}
