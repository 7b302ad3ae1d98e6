//! The projection runtime on SQLite and PostgreSQL: a view and its checkpoint commit together,
//! each event is applied once across failures and restarts, read-your-writes waits, unknown
//! events move the checkpoint, and shutdown commits the batch in flight.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jobboard_domain::PostingEvent;
use jobboard_eventstore::{Checkpoint, RecordedEvent};
use jobboard_projections::postings::{self, PostingsProjector, PostingsView};
use jobboard_projections::{
    Error, Projector, Result, RuntimeOptions, StoredCheckpoint, ViewDb, ViewTx,
};
use serde_json::json;
use sqlx::AssertSqlSafe;
use support::{
    Kind, TestDb, WAIT, all_postings, append, append_raw, caught_up, content, drafted,
    organisation, posting_id, spawn, spawn_postings, stop,
};
use tokio::sync::Notify;

jobboard_testkit::on_both_backends!(
    a_restarted_view_equals_a_rebuild_and_applies_each_event_once,
    wait_for_returns_once_the_checkpoint_is_committed_and_times_out_otherwise,
    unknown_event_types_and_foreign_streams_advance_the_checkpoint,
    an_undecodable_posting_event_stops_the_projector_without_skipping_it,
    graceful_shutdown_commits_the_batch_in_flight,
);

/// Counts how often each event is applied, in a way that is not idempotent (`n = n + 1`), so an
/// event applied twice shows as 2.
struct Counter;

#[async_trait]
impl Projector for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["counter"]
    }

    async fn setup(&self, tx: &mut ViewTx) -> Result<()> {
        let table = tx.table("counter");
        tx.execute_script(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (position BIGINT PRIMARY KEY, n BIGINT NOT NULL)"
        )))
        .await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        let position = i64::try_from(event.position).unwrap();
        let table = tx.table("counter");
        tx.execute(
            AssertSqlSafe(format!(
                "INSERT INTO {table} (position, n) VALUES ($1, 1) \
                 ON CONFLICT (position) DO UPDATE SET n = {table}.n + 1"
            )),
            &[position.into()],
        )
        .await?;
        Ok(())
    }
}

/// (rows, largest n) of the counter's table.
async fn counted(db: &ViewDb) -> (u64, i64) {
    let row = db
        .fetch_optional(
            "SELECT COUNT(*) AS counted, MAX(n) AS most FROM counter",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    let rows: i64 = row.get("counted").unwrap();
    let most: Option<i64> = row.get("most").unwrap();
    (u64::try_from(rows).unwrap(), most.unwrap_or(0))
}

/// Wraps a projector to fail once (after writing, so the write must roll back) and to pause
/// inside a batch until the test lets it go on.
struct Flaky<P> {
    inner: P,
    calls: AtomicUsize,
    fail_on_call: Option<usize>,
    failed: AtomicBool,
    pause_on_call: Option<usize>,
    paused: Notify,
    resume: Notify,
}

impl<P> Flaky<P> {
    fn new(inner: P, fail_on_call: Option<usize>, pause_on_call: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicUsize::new(0),
            fail_on_call,
            failed: AtomicBool::new(false),
            pause_on_call,
            paused: Notify::new(),
            resume: Notify::new(),
        })
    }
}

#[async_trait]
impl<P: Projector> Projector for Flaky<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn version(&self) -> u32 {
        self.inner.version()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }

    async fn setup(&self, tx: &mut ViewTx) -> Result<()> {
        self.inner.setup(tx).await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.apply(tx, event).await?;
        if Some(call) == self.pause_on_call {
            self.paused.notify_one();
            self.resume.notified().await;
        }
        if Some(call) == self.fail_on_call && !self.failed.swap(true, Ordering::SeqCst) {
            return Err(Error::Corrupted("injected failure".into()));
        }
        Ok(())
    }
}

fn quick_retries(batch_size: usize) -> RuntimeOptions {
    support::quick(batch_size)
}

async fn stored(db: &ViewDb, projector: &str) -> StoredCheckpoint {
    db.checkpoint(projector)
        .await
        .unwrap()
        .expect("a checkpoint row")
}

/// Runs `flaky` alone until it has failed once and paused, shuts down while it is paused, and
/// checks that it stopped before `last` with its checkpoint committed.
async fn stop_mid_way<P: Projector>(
    store: &jobboard_eventstore::EventStore,
    db: &ViewDb,
    flaky: Arc<Flaky<P>>,
    last: Checkpoint,
) {
    let (runtime, shutdown) = spawn(store, db, vec![flaky.clone()], quick_retries(4)).await;
    tokio::time::timeout(WAIT, flaky.paused.notified())
        .await
        .expect("the projector reaches its pause");
    shutdown.cancel();
    flaky.resume.notify_one();
    stop(&runtime, &shutdown).await;
    let name = flaky.name();
    assert!(flaky.failed.load(Ordering::SeqCst), "{name} failed once");
    let at = stored(db, name).await.checkpoint;
    assert!(at < last, "{name} stopped mid-way, at {at}");
    assert_eq!(at, runtime.checkpoint(name).unwrap());
}

async fn a_restarted_view_equals_a_rebuild_and_applies_each_event_once(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;

    // One event per append, so each outcome's checkpoint is one event's.
    let mut checkpoints = Vec::new();
    for n in 1..=15 {
        let id = posting_id(n);
        t.clock.advance(1);
        let mut history = vec![
            drafted(id, organisation(n % 3), "Postdoc"),
            PostingEvent::DraftSaved {
                content: content(&format!("Postdoc {n}")),
                draft_version: 2,
            },
        ];
        if n % 2 == 0 {
            history.push(PostingEvent::PostingSubmitted {
                content: content(&format!("Postdoc {n}")),
                draft_version: 2,
            });
        }
        if n % 4 == 0 {
            history.push(PostingEvent::PostingReturned {
                reasons: vec![format!("reason {n}")],
            });
        }
        for event in history {
            checkpoints.push(append(&store, id, &[event]).await.checkpoint);
        }
    }
    let last = *checkpoints.last().unwrap();

    // First runs, one projector each: it fails once mid-batch (after writing), retries from its
    // checkpoint, and is stopped while paused inside a later batch.
    stop_mid_way(
        &store,
        &db,
        Flaky::new(PostingsProjector, Some(6), Some(20)),
        last,
    )
    .await;
    stop_mid_way(&store, &db, Flaky::new(Counter, Some(9), Some(14)), last).await;
    let counter = stored(&db, "counter").await;
    assert_eq!(
        counted(&db).await,
        (counter.events, 1),
        "committed events applied once"
    );

    // More events while stopped, then a second run to the end.
    for n in [2, 4] {
        let id = posting_id(n);
        let approve = PostingEvent::PostingApproved {
            publish_date: support::date(2026, 2, 1),
            publishes_at: "2026-01-31T15:00:00Z".parse().unwrap(),
        };
        let resubmit = PostingEvent::PostingSubmitted {
            content: content("again"),
            draft_version: 2,
        };
        let events = if n == 4 {
            vec![resubmit, approve]
        } else {
            vec![approve]
        };
        for event in events {
            checkpoints.push(append(&store, id, &[event]).await.checkpoint);
        }
    }
    let last = *checkpoints.last().unwrap();
    let total = checkpoints.len() as u64;
    let projectors: Vec<Arc<dyn Projector>> = vec![Arc::new(PostingsProjector), Arc::new(Counter)];
    let (runtime, shutdown) = spawn(&store, &db, projectors, quick_retries(4)).await;
    for name in [postings::PROJECTOR, "counter"] {
        runtime.wait_for(name, last, WAIT).await.unwrap();
    }
    stop(&runtime, &shutdown).await;
    assert_eq!(
        counted(&db).await,
        (total, 1),
        "every event applied exactly once"
    );
    for name in [postings::PROJECTOR, "counter"] {
        let stored = stored(&db, name).await;
        assert_eq!((stored.checkpoint, stored.events), (last, total), "{name}");
    }
    let view = PostingsView::new(db.clone());
    let resumed = all_postings(&view).await;
    assert_eq!(resumed.len(), 15);
    let p4 = resumed
        .iter()
        .find(|r| r.posting_id == posting_id(4))
        .unwrap();
    assert_eq!((p4.draft_version, p4.version), (2, 6));

    // A rebuild from the start of the log, beside it, gives the same view.
    let (runtime, shutdown) = spawn_postings(&store, &db).await;
    let (rebuilt, new) = runtime.request_rebuild(postings::PROJECTOR).await.unwrap();
    assert!(new);
    support::until(|| async {
        db.checkpoint(postings::PROJECTOR).await.unwrap().is_some()
            && db
                .current(postings::PROJECTOR)
                .await
                .unwrap()
                .active
                .unwrap()
                .generation
                == rebuilt.generation
    })
    .await;
    caught_up(&runtime, last).await;
    stop(&runtime, &shutdown).await;
    assert_eq!(all_postings(&view).await, resumed);
    assert_eq!(stored(&db, postings::PROJECTOR).await.events, total);
}

async fn wait_for_returns_once_the_checkpoint_is_committed_and_times_out_otherwise(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let slow = Flaky::new(PostingsProjector, None, Some(1));
    let (runtime, shutdown) = spawn(&store, &db, vec![slow.clone()], quick_retries(10)).await;
    let name = postings::PROJECTOR;

    runtime
        .wait_for(name, Checkpoint::START, Duration::ZERO)
        .await
        .expect("the start is always reached");

    // The projector holds its first batch open: applied, not committed, so not reached.
    let id = posting_id(1);
    let outcome = append(&store, id, &[drafted(id, organisation(1), "Postdoc")]).await;
    tokio::time::timeout(WAIT, slow.paused.notified())
        .await
        .unwrap();
    let early = runtime
        .wait_for(name, outcome.checkpoint, Duration::from_millis(50))
        .await;
    match early {
        Err(Error::Timeout {
            projector,
            wanted,
            reached,
            ..
        }) => {
            assert_eq!(projector, name);
            assert_eq!(wanted, outcome.checkpoint);
            assert_eq!(reached, Checkpoint::START);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    // A waiter already waiting returns as soon as the batch commits.
    let waiter = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.wait_for(name, outcome.checkpoint, WAIT).await })
    };
    slow.resume.notify_one();
    waiter.await.unwrap().expect("reached once committed");
    assert_eq!(runtime.checkpoint(name).unwrap(), outcome.checkpoint);
    let row = PostingsView::new(db.clone()).get(id).await.unwrap();
    assert!(row.is_some(), "a query after wait_for sees the write");

    let beyond = Checkpoint {
        tx: 1 << 40,
        position: 1 << 40,
    };
    assert!(matches!(
        runtime.wait_for(name, beyond, Duration::from_millis(50)).await,
        Err(Error::Timeout { reached, .. }) if reached == outcome.checkpoint
    ));
    assert!(matches!(
        runtime.wait_for("nonsense", Checkpoint::START, WAIT).await,
        Err(Error::UnknownProjector(_))
    ));

    stop(&runtime, &shutdown).await;
    // Stopped: waiting is refused at once rather than running into the timeout.
    assert!(matches!(
        runtime.wait_for(name, beyond, WAIT).await,
        Err(Error::Stopped)
    ));
    runtime
        .wait_for(name, outcome.checkpoint, WAIT)
        .await
        .expect("what was reached stays reached");
}

async fn unknown_event_types_and_foreign_streams_advance_the_checkpoint(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let (runtime, shutdown) = spawn_postings(&store, &db).await;
    let id = posting_id(1);

    append_raw(&store, "account-1", "AccountOpened", json!({ "name": "x" })).await;
    // A stream that shares the prefix but names no posting id is another writer's, not a posting.
    append_raw(
        &store,
        "posting-demo-1",
        "PostingDrafted",
        json!({ "type": "PostingDrafted", "title": "not ours" }),
    )
    .await;
    append(&store, id, &[drafted(id, organisation(1), "Postdoc")]).await;
    let unknown = append_raw(
        &store,
        &format!("posting-{id}"),
        "PostingRenamed",
        json!({ "type": "PostingRenamed", "title": "?" }),
    )
    .await;
    caught_up(&runtime, unknown.checkpoint).await;
    let status = &runtime.status()[0];
    assert_eq!((status.checkpoint, status.events), (unknown.checkpoint, 4));
    assert_eq!(status.last_error, None);
    let view = PostingsView::new(db.clone());
    assert_eq!(view.get(id).await.unwrap().unwrap().version, 1);

    // The next known event of the stream still applies.
    let saved = append(
        &store,
        id,
        &[PostingEvent::DraftSaved {
            content: content("Renamed"),
            draft_version: 2,
        }],
    )
    .await;
    caught_up(&runtime, saved.checkpoint).await;
    let row = view.get(id).await.unwrap().unwrap();
    assert_eq!((row.version, row.draft_version), (3, 2));
    stop(&runtime, &shutdown).await;
    let stored = stored(&db, postings::PROJECTOR).await;
    assert_eq!((stored.checkpoint, stored.events), (saved.checkpoint, 5));
}

async fn an_undecodable_posting_event_stops_the_projector_without_skipping_it(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let projectors: Vec<Arc<dyn Projector>> = vec![Arc::new(PostingsProjector)];
    let (runtime, shutdown) = spawn(&store, &db, projectors, quick_retries(10)).await;
    let id = posting_id(1);
    let good = append(&store, id, &[drafted(id, organisation(1), "Postdoc")]).await;
    caught_up(&runtime, good.checkpoint).await;
    let bad = append_raw(
        &store,
        &format!("posting-{id}"),
        "DraftSaved",
        json!({ "type": "DraftSaved", "draft_version": "two" }),
    )
    .await;

    let deadline = tokio::time::Instant::now() + WAIT;
    let error = loop {
        if let Some(error) = runtime.status()[0].last_error.clone() {
            break error;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(error.contains("cannot be decoded"), "{error}");
    assert!(
        runtime
            .wait_for(
                postings::PROJECTOR,
                bad.checkpoint,
                Duration::from_millis(200)
            )
            .await
            .is_err()
    );
    assert_eq!(
        runtime.checkpoint(postings::PROJECTOR).unwrap(),
        good.checkpoint
    );
    stop(&runtime, &shutdown).await;
}

async fn graceful_shutdown_commits_the_batch_in_flight(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let mut checkpoints = Vec::new();
    for n in 1..=30 {
        let id = posting_id(n);
        let outcome = append(&store, id, &[drafted(id, organisation(1), "Postdoc")]).await;
        checkpoints.push(outcome.checkpoint);
    }
    let counter = Flaky::new(Counter, None, Some(3));
    let (runtime, shutdown) = spawn(&store, &db, vec![counter.clone()], quick_retries(10)).await;
    tokio::time::timeout(WAIT, counter.paused.notified())
        .await
        .unwrap();

    // Shutdown arrives while the third event of the first batch is being applied.
    shutdown.cancel();
    counter.resume.notify_one();
    stop(&runtime, &shutdown).await;

    let stored = stored(&db, "counter").await;
    assert!(
        stored.checkpoint >= checkpoints[2],
        "the batch in flight committed"
    );
    assert!(
        stored.checkpoint < checkpoints[29],
        "no batch started after shutdown"
    );
    assert_eq!(counted(&db).await, (stored.events, 1));
    let status = &runtime.status()[0];
    assert!(!status.running);
    assert_eq!(
        (status.checkpoint, status.events),
        (stored.checkpoint, stored.events)
    );
}
