//! The event store contract: every test runs against SQLite and against PostgreSQL, each on a
//! fresh database.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use jobboard_eventstore::personal::{self, Personal};
use jobboard_eventstore::{
    Checkpoint, CommandMetadata, Error, EventStore, ExpectedVersion, FnUpcaster, NewEvent,
    RecordedEvent, Snapshot, StoreOptions, StreamId, StreamRange, Upcasters,
};
use serde_json::json;
use support::{Kind, ManualClock, TestDb, date};

jobboard_testkit::on_both_backends!(
    appended_events_read_back_with_their_metadata,
    expected_versions_are_enforced_and_conflicts_write_nothing,
    two_concurrent_appends_at_the_same_version_exactly_one_wins,
    a_retried_command_id_returns_the_first_result_and_writes_once,
    concurrent_retries_of_one_command_write_once,
    racing_instances_keep_every_stream_whole_and_every_command_once,
    a_command_id_reused_for_another_stream_is_refused,
    invalid_appends_are_typed_errors_and_write_nothing,
    a_conflict_in_a_group_never_fails_the_other_appends,
    a_failing_append_in_a_group_never_fails_the_other_appends,
    streams_read_by_version_range_and_as_of_a_time,
    the_whole_log_reads_in_global_order_from_any_checkpoint,
    gap_test_a_subscriber_sees_every_committed_event_once_in_order,
    a_subscriber_catches_up_then_follows_live,
    snapshots_keep_the_latest_version,
    upcasters_apply_on_read_and_stored_events_stay_as_written,
    verify_passes_on_an_untouched_log,
    verify_reports_a_row_altered_in_the_database,
    verify_reports_a_deleted_event,
    erased_subjects_read_as_erased_and_the_chain_still_verifies,
    reopening_runs_migrations_once_and_keeps_the_log,
);

fn stream(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Counted", 1, json!({ "n": n }))
}

async fn append_one(store: &EventStore, s: &str, n: u64) -> jobboard_eventstore::AppendOutcome {
    store
        .append(
            &stream(s),
            ExpectedVersion::Any,
            vec![event(n)],
            CommandMetadata::default(),
        )
        .await
        .unwrap()
}

async fn all_events(store: &EventStore) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let page = store.read_all(after, 500).await.unwrap();
        let Some(last) = page.events.last() else {
            if page.held {
                // Another test's open transaction holds the cluster's horizon back: wait.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            break;
        };
        after = last.checkpoint();
        out.extend(page.events);
    }
    out
}

async fn appended_events_read_back_with_their_metadata(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let meta = CommandMetadata {
        command_id: Some("cmd-1".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        actor: Some("user-7".into()),
        organisation: Some("org-3".into()),
        extra: [("client".to_owned(), "tests".to_owned())].into(),
    };
    let events = vec![
        NewEvent::new("PostingDrafted", 1, json!({"title": "研究員", "n": 1})),
        NewEvent::new("PostingSaved", 2, json!({"title": "Researcher"})),
    ];
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    let outcome = store
        .append(
            &stream("posting-1"),
            ExpectedVersion::NoStream,
            events,
            meta.clone(),
        )
        .await
        .unwrap();
    assert_eq!((outcome.first_version, outcome.stream_version), (1, 2));
    assert_eq!(outcome.positions.len(), 2);
    assert!(outcome.positions[0] < outcome.positions[1]);
    assert!(!outcome.duplicate);

    let read = store
        .read_stream(&stream("posting-1"), StreamRange::all())
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].payload, json!({"title": "研究員", "n": 1}));
    assert_eq!(read[1].event_type, "PostingSaved");
    assert_eq!(read[1].schema_version, 2);
    assert_eq!(read[1].version, 2);
    assert_eq!(read[0].metadata.event_id, ids[0]);
    assert_eq!(read[1].metadata.command, meta);
    assert_eq!(read[1].checkpoint(), outcome.checkpoint);
    assert_eq!(
        store.stream_version(&stream("posting-1")).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        store.stream_version(&stream("posting-2")).await.unwrap(),
        None
    );
}

async fn expected_versions_are_enforced_and_conflicts_write_nothing(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let s = stream("posting-9");
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event(1)],
            Default::default(),
        )
        .await
        .unwrap();
    let err = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event(2)],
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { actual: 1, .. }),
        "got {err:?}"
    );
    let err = store
        .append(
            &s,
            ExpectedVersion::Exact(5),
            vec![event(2)],
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { actual: 1, .. }));
    let err = store
        .append(
            &stream("posting-new"),
            ExpectedVersion::Exact(1),
            vec![event(2)],
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { actual: 0, .. }));
    let ok = store
        .append(
            &s,
            ExpectedVersion::Exact(1),
            vec![event(2)],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 2);
    let any = store
        .append(&s, ExpectedVersion::Any, vec![event(3)], Default::default())
        .await
        .unwrap();
    assert_eq!(any.stream_version, 3);
    // The conflicts wrote nothing: three events in all, and no trace of the refused new stream.
    assert_eq!(all_events(&store).await.len(), 3);
    assert_eq!(
        store.stream_version(&stream("posting-new")).await.unwrap(),
        None
    );
    assert!(store.verify().await.unwrap().is_intact());
}

async fn two_concurrent_appends_at_the_same_version_exactly_one_wins(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for round in 0..20u64 {
        let s = stream(&format!("race-{round}"));
        store
            .append(
                &s,
                ExpectedVersion::NoStream,
                vec![event(0)],
                Default::default(),
            )
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            store.append(
                &s,
                ExpectedVersion::Exact(1),
                vec![event(1)],
                Default::default()
            ),
            store.append(
                &s,
                ExpectedVersion::Exact(1),
                vec![event(2)],
                Default::default()
            ),
        );
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert!(matches!(loser, Err(Error::Conflict { actual: 2, .. })));
        assert_eq!(store.stream_version(&s).await.unwrap(), Some(2));
    }
}

async fn a_retried_command_id_returns_the_first_result_and_writes_once(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let s = stream("posting-5");
    let first = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
            CommandMetadata::command("create-5"),
        )
        .await
        .unwrap();
    // The retry carries the same command id (and, as retries do, an expectation now stale).
    let again = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
            CommandMetadata::command("create-5"),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.positions, first.positions);
    assert_eq!(again.checkpoint, first.checkpoint);
    assert_eq!(again.stream_version, 2);
    assert_eq!(all_events(&store).await.len(), 2);

    // After a restart the dedup record is still there.
    store.close().await;
    drop(store);
    let store = db.open().await;
    let third = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![event(1)],
            CommandMetadata::command("create-5"),
        )
        .await
        .unwrap();
    assert!(third.duplicate);
    assert_eq!(third.positions, first.positions);
    assert_eq!(all_events(&store).await.len(), 2);

    // The command layer can ask for the first outcome without appending at all.
    let asked = store.command_outcome("create-5").await.unwrap().unwrap();
    assert!(asked.duplicate);
    assert_eq!(
        (
            asked.stream_id.as_str(),
            asked.first_version,
            asked.stream_version
        ),
        ("posting-5", 1, 2)
    );
    assert_eq!(asked.positions, first.positions);
    assert_eq!(asked.checkpoint, first.checkpoint);
    assert_eq!(store.command_outcome("never-sent").await.unwrap(), None);
}

async fn concurrent_retries_of_one_command_write_once(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    &stream("posting-77"),
                    ExpectedVersion::Any,
                    vec![event(77)],
                    CommandMetadata::command("the-one"),
                )
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.duplicate).count(), 1);
    assert!(
        outcomes
            .iter()
            .all(|o| o.positions == outcomes[0].positions)
    );
    assert_eq!(all_events(&store).await.len(), 1);
}

/// Three instances on one database, each committing up to three batches at once, race on a few
/// hot streams (existing and new) with exact expected versions, and some commands are sent twice
/// at the same time. Whatever interleaving the database picks, every stream's versions are whole
/// and in log order, each accepted append is in the log exactly once, each command id is written
/// once and answered alike for every sender, and the hash chain verifies.
async fn racing_instances_keep_every_stream_whole_and_every_command_once(kind: Kind) {
    const TASKS: usize = 12;
    const APPENDS: usize = 25;
    let db = TestDb::new(kind).await;
    let options = StoreOptions {
        write_concurrency: 3,
        ..StoreOptions::default()
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(db.open_with(options.clone()).await);
    }
    let hot = ["race-a", "race-b", "race-c"];
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = instances[t % instances.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for n in 0..APPENDS {
                // Tasks go in pairs that send the same commands (one write, two equal answers);
                // pairs race on the hot streams and, every fifth append, to create a new one.
                let pair = t / 2;
                let s = if n % 5 == 4 {
                    stream(&format!("race-new-{}-{n}", pair / 2))
                } else {
                    stream(hot[(pair + n) % hot.len()])
                };
                let command = format!("race-cmd-{pair}-{n}");
                let events = vec![event(n as u64), event(1000 + n as u64)];
                loop {
                    let expected = match store.stream_version(&s).await.unwrap() {
                        None => ExpectedVersion::NoStream,
                        Some(v) => ExpectedVersion::Exact(v),
                    };
                    match store
                        .append(
                            &s,
                            expected,
                            events.clone(),
                            CommandMetadata::command(&command),
                        )
                        .await
                    {
                        Ok(outcome) => {
                            accepted.push((command.clone(), outcome));
                            break;
                        }
                        Err(Error::Conflict { .. }) => continue,
                        Err(other) => panic!("task {t}, append {n}: {other}"),
                    }
                }
            }
            accepted
        }));
    }
    let mut by_command: HashMap<String, Vec<jobboard_eventstore::AppendOutcome>> = HashMap::new();
    for task in tasks {
        for (command, outcome) in task.await.unwrap() {
            by_command.entry(command).or_default().push(outcome);
        }
    }
    let store = &instances[0];
    let log = all_events(store).await;

    for (command, outcomes) in &by_command {
        assert_eq!(
            outcomes.iter().filter(|o| !o.duplicate).count(),
            1,
            "{command} was written once: {outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .all(|o| o.positions == outcomes[0].positions),
            "{command}: every sender is told the same positions"
        );
        let written: Vec<u64> = log
            .iter()
            .filter(|e| e.metadata.command.command_id.as_deref() == Some(command.as_str()))
            .map(|e| e.position)
            .collect();
        assert_eq!(written, outcomes[0].positions, "{command} in the log");
    }
    assert_eq!(
        log.len(),
        by_command.len() * 2,
        "the log holds exactly the accepted appends"
    );

    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for e in &log {
        let last = last_version.entry(e.stream_id.as_str()).or_default();
        assert_eq!(
            e.version,
            *last + 1,
            "{} is whole and in log order",
            e.stream_id
        );
        *last = e.version;
    }
    for (s, version) in &last_version {
        assert_eq!(
            store.stream_version(&stream(s)).await.unwrap(),
            Some(*version),
            "the head of {s}"
        );
    }
    assert!(store.verify().await.unwrap().is_intact());
    for instance in instances {
        instance.close().await;
    }
}

async fn a_command_id_reused_for_another_stream_is_refused(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    store
        .append(
            &stream("a-1"),
            ExpectedVersion::Any,
            vec![event(1)],
            CommandMetadata::command("c"),
        )
        .await
        .unwrap();
    let err = store
        .append(
            &stream("b-1"),
            ExpectedVersion::Any,
            vec![event(1)],
            CommandMetadata::command("c"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::CommandIdReused { first_stream, .. } if first_stream == "a-1"),
        "got {err:?}"
    );
    assert_eq!(all_events(&store).await.len(), 1);
}

async fn invalid_appends_are_typed_errors_and_write_nothing(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db
        .open_with(StoreOptions {
            max_payload_bytes: 100,
            ..StoreOptions::default()
        })
        .await;
    let s = stream("posting-1");
    let empty = store
        .append(&s, ExpectedVersion::Any, vec![], Default::default())
        .await;
    assert!(matches!(empty, Err(Error::EmptyAppend)));
    assert!(matches!(
        StreamId::new("bad stream"),
        Err(Error::InvalidStreamId { .. })
    ));
    let big = NewEvent::new("Big", 1, json!({ "text": "x".repeat(200) }));
    let too_big = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![event(1), big],
            Default::default(),
        )
        .await;
    assert!(
        matches!(
            too_big,
            Err(Error::PayloadTooLarge {
                index: 1,
                limit: 100,
                ..
            })
        ),
        "got {too_big:?}"
    );
    let untyped = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![NewEvent::new("", 1, json!({}))],
            Default::default(),
        )
        .await;
    assert!(matches!(untyped, Err(Error::InvalidEvent { index: 0, .. })));
    let bad_marker = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "X",
                1,
                json!({ "$personal": { "value": 1 } }),
            )],
            Default::default(),
        )
        .await;
    assert!(matches!(bad_marker, Err(Error::InvalidEvent { .. })));
    let bad_meta = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![event(1)],
            CommandMetadata::command(""),
        )
        .await;
    assert!(matches!(bad_meta, Err(Error::InvalidEvent { .. })));
    assert!(all_events(&store).await.is_empty());
    assert_eq!(store.stream_version(&s).await.unwrap(), None);
}

async fn a_conflict_in_a_group_never_fails_the_other_appends(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for i in 0..64 {
        append_one(&store, &format!("g-{i}"), 0).await;
    }
    // 64 appends at once: even ones expect the right version, odd ones a wrong one. Whatever
    // batches they share, every good append commits and every bad one conflicts.
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let expected = if i % 2 == 0 { 1 } else { 7 };
            store
                .append(
                    &stream(&format!("g-{i}")),
                    ExpectedVersion::Exact(expected),
                    vec![event(i)],
                    CommandMetadata::command(format!("group-{i}")),
                )
                .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(result.unwrap().stream_version, 2);
        } else {
            assert!(matches!(result, Err(Error::Conflict { actual: 1, .. })));
        }
    }
    assert_eq!(all_events(&store).await.len(), 64 + 32);
    // A conflicting command did not consume its command id: it can be retried correctly.
    let retried = store
        .append(
            &stream("g-1"),
            ExpectedVersion::Exact(1),
            vec![event(1)],
            CommandMetadata::command("group-1"),
        )
        .await
        .unwrap();
    assert!(!retried.duplicate);
}

async fn a_failing_append_in_a_group_never_fails_the_other_appends(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    // Two appends reuse one event id (the database refuses the second); 30 others are fine.
    let reused = NewEvent::new("Counted", 1, json!({ "n": -1 }));
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let store = store.clone();
        let event = if i < 2 { reused.clone() } else { event(i) };
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    &stream(&format!("f-{i}")),
                    ExpectedVersion::NoStream,
                    vec![event],
                    Default::default(),
                )
                .await
        }));
    }
    let mut failed = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(outcome) => assert_eq!(outcome.stream_version, 1),
            Err(e) => {
                assert!(i < 2, "append {i} failed: {e:?}");
                assert!(matches!(e, Error::Database(_)), "got {e:?}");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1);
    let events = all_events(&store).await;
    assert_eq!(events.len(), 31);
    // The global read and the stream reads agree on every position.
    for e in &events {
        let read = store
            .read_stream(&stream(&e.stream_id), StreamRange::all())
            .await
            .unwrap();
        assert_eq!(read[0].position, e.position);
    }
    assert!(store.verify().await.unwrap().is_intact());
}

async fn streams_read_by_version_range_and_as_of_a_time(kind: Kind) {
    let db = TestDb::new(kind).await;
    let clock = ManualClock::at(date(2026, 2, 27));
    let store = db
        .open_with(StoreOptions {
            clock: clock.clock(),
            ..StoreOptions::default()
        })
        .await;
    let s = stream("posting-3");
    for (n, day) in [(1, 27), (2, 28)] {
        clock.set(date(2026, 2, day));
        append_one(&store, "posting-3", n).await;
    }
    for (n, day) in [(3, 1), (4, 2)] {
        clock.set(date(2026, 3, day));
        append_one(&store, "posting-3", n).await;
    }
    let versions =
        |events: Vec<RecordedEvent>| events.iter().map(|e| e.version).collect::<Vec<_>>();
    assert_eq!(
        versions(store.read_stream(&s, StreamRange::from(3)).await.unwrap()),
        [3, 4]
    );
    let middle = StreamRange {
        from_version: 2,
        to_version: Some(3),
        as_of: None,
    };
    assert_eq!(
        versions(store.read_stream(&s, middle).await.unwrap()),
        [2, 3]
    );
    // "What did this look like on March 1st?" (end of that day, UTC).
    let march_first = date(2026, 3, 1) + chrono::Duration::hours(11);
    let then = store
        .read_stream(&s, StreamRange::as_of(march_first))
        .await
        .unwrap();
    assert_eq!(versions(then.clone()), [1, 2, 3]);
    assert_eq!(then[2].metadata.recorded_at, date(2026, 3, 1));
    assert!(
        store
            .read_stream(&s, StreamRange::as_of(date(2026, 1, 1)))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_whole_log_reads_in_global_order_from_any_checkpoint(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for i in 0..30 {
        append_one(&store, &format!("s-{}", i % 4), i).await;
    }
    let all = all_events(&store).await;
    assert_eq!(all.len(), 30);
    assert!(
        all.windows(2)
            .all(|w| w[0].checkpoint() < w[1].checkpoint())
    );
    let ns: Vec<u64> = all
        .iter()
        .map(|e| e.payload["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..30).collect::<Vec<_>>());
    let rest = store
        .read_all(all[9].checkpoint(), 1000)
        .await
        .unwrap()
        .events;
    assert_eq!(rest.len(), 20);
    assert_eq!(rest[0].position, all[10].position);
}

/// The gap test: 16 writers append 20,000 events while one transaction stays open (and commits
/// late) and another rolls back, and a subscriber follows the log the whole time.
async fn gap_test_a_subscriber_sees_every_committed_event_once_in_order(kind: Kind) {
    const WRITERS: u64 = 16;
    const PER_WRITER: u64 = 1250;
    let db = TestDb::new(kind).await;
    let store = db.open().await;

    let subscriber = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut feed = Box::pin(store.subscribe(Checkpoint::START));
            // Every committed event: the writers', plus the late commit's one.
            while (seen.len() as u64) < WRITERS * PER_WRITER + 1 {
                let event = tokio::time::timeout(Duration::from_secs(60), feed.next())
                    .await
                    .expect("the subscriber kept receiving")
                    .expect("the feed does not end")
                    .expect("no read error");
                seen.push(event);
            }
            // Nothing else arrives: in particular nothing of the rolled-back transaction.
            let extra = tokio::time::timeout(Duration::from_millis(500), feed.next()).await;
            assert!(
                extra.is_err(),
                "unexpected event after the last commit: {extra:?}"
            );
            seen
        })
    };

    // Hold one transaction open, and one that will roll back, before the writers start.
    let late = store
        .hold_append(
            &stream("late-1"),
            vec![NewEvent::new("Late", 1, json!({"late": true}))],
            Default::default(),
        )
        .await
        .unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    append_one(&store, &format!("w{w}-{}", i % 10), w * PER_WRITER + i).await;
                }
            })
        })
        .collect();
    let release = {
        async move {
            // SQLite has one writer, so the others wait behind the held transaction; on
            // PostgreSQL they commit past it and readers must wait for it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            late.commit().await.unwrap()
        }
    };
    let late_outcome = release.await;
    let doomed = store
        .hold_append(
            &stream("doomed-1"),
            vec![NewEvent::new("Doomed", 1, json!({"doomed": true}))],
            Default::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    doomed.rollback().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let seen = subscriber.await.unwrap();

    // Exactly once each, in the log's order, per-stream versions ascending, nothing rolled back.
    let positions: HashSet<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), seen.len(), "an event was delivered twice");
    assert!(
        seen.windows(2)
            .all(|w| w[0].checkpoint() < w[1].checkpoint())
    );
    assert!(seen.iter().all(|e| e.stream_id != "doomed-1"));
    assert!(seen.iter().any(|e| e.position == late_outcome.positions[0]));
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for e in &seen {
        let last = versions.entry(&e.stream_id).or_default();
        assert_eq!(e.version, *last + 1, "stream {} out of order", e.stream_id);
        *last = e.version;
    }
    let ns: HashSet<u64> = seen
        .iter()
        .filter_map(|e| e.payload["n"].as_u64())
        .collect();
    assert_eq!(ns.len() as u64, WRITERS * PER_WRITER);
    // And a fresh reader of the finished log sees exactly the same sequence.
    let replay = all_events(&store).await;
    assert_eq!(
        replay.iter().map(|e| e.position).collect::<Vec<_>>(),
        seen.iter().map(|e| e.position).collect::<Vec<_>>()
    );
}

async fn a_subscriber_catches_up_then_follows_live(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for i in 0..5 {
        append_one(&store, "s-1", i).await;
    }
    let mut feed = Box::pin(store.subscribe(Checkpoint::START));
    for i in 0..5u64 {
        let e = feed.next().await.unwrap().unwrap();
        assert_eq!(e.payload["n"], i);
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            append_one(&store, "s-2", 99).await
        })
    };
    let live = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("woken by the commit, well before the idle re-check")
        .unwrap()
        .unwrap();
    assert_eq!(live.payload["n"], 99);
    assert_eq!(live.checkpoint(), writer.await.unwrap().checkpoint);
}

async fn snapshots_keep_the_latest_version(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let s = stream("posting-8");
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    let snap = |version, n| Snapshot {
        version,
        state: json!({ "count": n }),
        sequence: version / 10,
    };
    store.save_snapshot(&s, snap(10, 10)).await.unwrap();
    store.save_snapshot(&s, snap(20, 20)).await.unwrap();
    // An older snapshot arriving late never replaces a newer one.
    store.save_snapshot(&s, snap(15, 15)).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(snap(20, 20)));
}

async fn upcasters_apply_on_read_and_stored_events_stay_as_written(kind: Kind) {
    let db = TestDb::new(kind).await;
    {
        let plain = db.open().await;
        plain
            .append(
                &stream("posting-4"),
                ExpectedVersion::Any,
                vec![NewEvent::new("PostingTitled", 1, json!({"name": "Lab"}))],
                Default::default(),
            )
            .await
            .unwrap();
        plain.close().await;
    }
    let upcasting = db
        .open_with(StoreOptions {
            upcasters: Upcasters::default().with(FnUpcaster::new(
                "PostingTitled",
                1,
                |p| json!({ "title": p["name"], "language": "ja" }),
            )),
            ..StoreOptions::default()
        })
        .await;
    let read = upcasting
        .read_stream(&stream("posting-4"), StreamRange::all())
        .await
        .unwrap();
    assert_eq!(read[0].schema_version, 2);
    assert_eq!(read[0].payload, json!({"title": "Lab", "language": "ja"}));
    assert_eq!(all_events(&upcasting).await[0].schema_version, 2);
    upcasting.close().await;
    // The stored event is untouched: a store without upcasters still reads version 1.
    let plain = db.open().await;
    let raw = plain
        .read_stream(&stream("posting-4"), StreamRange::all())
        .await
        .unwrap();
    assert_eq!(raw[0].schema_version, 1);
    assert_eq!(raw[0].payload, json!({"name": "Lab"}));
    assert!(plain.verify().await.unwrap().is_intact());
}

async fn verify_passes_on_an_untouched_log(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for i in 0..20 {
        append_one(&store, &format!("v-{}", i % 3), i).await;
    }
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.streams_checked, report.events_checked), (3, 20));
}

async fn verify_reports_a_row_altered_in_the_database(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for i in 0..5 {
        append_one(&store, "victim-1", i).await;
        append_one(&store, "bystander-1", i).await;
    }
    let changed = db
        .execute(
            "UPDATE events SET payload = '{\"n\": 1000}' WHERE stream_id = 'victim-1' AND version = 3",
        )
        .await;
    assert_eq!(changed, 1);
    let report = store.verify().await.unwrap();
    assert_eq!(report.broken.len(), 1, "{report:?}");
    let broken = &report.broken[0];
    assert_eq!((broken.stream_id.as_str(), broken.version), ("victim-1", 3));
    assert!(broken.position.is_some());
    // Metadata is covered too.
    db.execute(
        "UPDATE events SET actor = 'mallory' WHERE stream_id = 'bystander-1' AND version = 5",
    )
    .await;
    let report = store.verify().await.unwrap();
    assert_eq!(report.broken.len(), 2);
    assert_eq!(
        (
            report.broken[0].stream_id.as_str(),
            report.broken[0].version
        ),
        ("bystander-1", 5)
    );
}

async fn verify_reports_a_deleted_event(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    for i in 0..4 {
        append_one(&store, "gap-1", i).await;
        append_one(&store, "tail-1", i).await;
    }
    db.execute("DELETE FROM events WHERE stream_id = 'gap-1' AND version = 2")
        .await;
    db.execute("DELETE FROM events WHERE stream_id = 'tail-1' AND version = 4")
        .await;
    let report = store.verify().await.unwrap();
    let found: Vec<(&str, u64)> = report
        .broken
        .iter()
        .map(|b| (b.stream_id.as_str(), b.version))
        .collect();
    assert_eq!(found, [("gap-1", 3), ("tail-1", 4)], "{report:?}");
}

/// R-RET-4: erasure must not break the audit trail; history stays replayable, with erased
/// personal data shown as erased.
async fn erased_subjects_read_as_erased_and_the_chain_still_verifies(kind: Kind) {
    let db = TestDb::new(kind).await;
    let store = db.open().await;
    let s = stream("application-1");
    let applied = json!({
        "posting": "posting-1",
        "name": personal::mark("seeker-1", json!("山田 花子")),
        "email": personal::mark("seeker-1", json!("hanako@example.jp")),
        "referrer": personal::mark("agent-9", json!("Agent Nine")),
    });
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("ApplicationReceived", 1, applied.clone())],
            Default::default(),
        )
        .await
        .unwrap();
    store
        .save_snapshot(
            &s,
            Snapshot {
                version: 1,
                state: json!({ "name": personal::mark("seeker-1", json!("山田 花子")) }),
                sequence: 1,
            },
        )
        .await
        .unwrap();
    // Before erasure: plaintext on read, ciphertext at rest.
    let read = store.read_stream(&s, StreamRange::all()).await.unwrap();
    assert_eq!(read[0].payload, applied);
    assert_eq!(
        db.execute(
            "UPDATE events SET personal = personal WHERE CAST(payload AS TEXT) LIKE '%山田%'"
        )
        .await,
        0
    );
    assert!(store.load_snapshot(&s).await.unwrap().is_some());

    assert_eq!(store.erase_subject("seeker-1").await.unwrap(), 1);

    let read = store.read_stream(&s, StreamRange::all()).await.unwrap();
    let payload = &read[0].payload;
    assert!(personal::is_erased(&payload["name"]));
    assert!(personal::is_erased(&payload["email"]));
    assert_eq!(payload["posting"], "posting-1");
    let referrer: Personal<String> = serde_json::from_value(payload["referrer"].clone()).unwrap();
    assert_eq!(referrer.value().map(String::as_str), Some("Agent Nine"));
    let name: Personal<String> = serde_json::from_value(payload["name"].clone()).unwrap();
    assert_eq!(
        name,
        Personal::Erased {
            subject: "seeker-1".into()
        }
    );
    assert!(personal::is_erased(
        &all_events(&store).await[0].payload["name"]
    ));
    // The snapshot that held the data is gone; the hash chain still holds.
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    assert!(store.verify().await.unwrap().is_intact());
    // New personal data for an erased subject is refused, and erasing twice is harmless.
    let refused = store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![NewEvent::new(
                "Noted",
                1,
                json!({"x": personal::mark("seeker-1", json!("again"))}),
            )],
            Default::default(),
        )
        .await;
    assert!(matches!(refused, Err(Error::SubjectErased { .. })));
    store.erase_subject("seeker-1").await.unwrap();
}

async fn reopening_runs_migrations_once_and_keeps_the_log(kind: Kind) {
    let db = TestDb::new(kind).await;
    let first = db.open().await;
    append_one(&first, "s-1", 1).await;
    let second = db.open().await;
    append_one(&second, "s-1", 2).await;
    assert_eq!(all_events(&first).await.len(), 2);
    assert_eq!(
        second.stream_version(&stream("s-1")).await.unwrap(),
        Some(2)
    );
}
