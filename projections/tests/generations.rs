//! Generations on SQLite and PostgreSQL: a rebuild builds beside the serving view while reads
//! keep answering from it and switch when it has caught up; an interrupted rebuild resumes from
//! its own checkpoint; a version bump rebuilds beside the old version; two runtimes on one
//! database apply each event once, and one takes over when the other stops.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use jobboard_projections::postings::{self, PostingsProjector, PostingsView};
use jobboard_projections::{
    Backend, Error, GenerationState, Projector, Result, Role, RuntimeOptions, ViewDb, ViewTx,
};
use sqlx::AssertSqlSafe;
use support::{
    Kind, TestDb, WAIT, all_postings, append, append_raw, content, drafted, organisation,
    posting_id, quick, spawn, stop, until,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

jobboard_testkit::on_both_backends!(
    reads_answer_from_the_serving_view_during_a_rebuild_and_switch_when_it_caught_up,
    an_interrupted_rebuild_resumes_from_its_own_checkpoint,
    a_version_bump_rebuilds_beside_the_old_version_which_serves_until_the_switch,
    two_runtimes_apply_each_event_once_and_one_takes_over_when_the_other_stops,
    a_rebuild_switched_in_elsewhere_is_served_here_even_while_the_log_is_quiet,
);

/// Counts how often each event is applied, non-idempotently (`n = n + 1`), in the generation's
/// own table, and records whether the transaction was replaying.
struct Counter {
    version: u32,
}

#[async_trait]
impl Projector for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn tables(&self) -> &'static [&'static str] {
        &["counter"]
    }

    async fn setup(&self, tx: &mut ViewTx) -> Result<()> {
        let table = tx.table("counter");
        tx.execute_script(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (position BIGINT PRIMARY KEY, n BIGINT NOT NULL, \
             version BIGINT NOT NULL, replaying BIGINT NOT NULL)"
        )))
        .await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        let table = tx.table("counter");
        let replaying = i64::from(tx.replaying());
        tx.execute(
            AssertSqlSafe(format!(
                "INSERT INTO {table} (position, n, version, replaying) VALUES ($1, 1, $2, $3) \
                 ON CONFLICT (position) DO UPDATE SET n = {table}.n + 1"
            )),
            &[
                i64::try_from(event.position).unwrap().into(),
                self.version.into(),
                replaying.into(),
            ],
        )
        .await?;
        Ok(())
    }
}

/// Wraps a projector: while `closed`, a rebuild's batch needs a permit (one per batch) or fails
/// (rolled back, retried after a backoff), so a test can hold a rebuild half-way without holding
/// a transaction open. The serving generation is never held.
struct Gate<P> {
    inner: P,
    closed: AtomicBool,
    permits: Semaphore,
    held: AtomicUsize,
}

impl<P> Gate<P> {
    fn new(inner: P) -> Arc<Self> {
        Arc::new(Self {
            inner,
            closed: AtomicBool::new(true),
            permits: Semaphore::new(0),
            held: AtomicUsize::new(0),
        })
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.permits.add_permits(1_000_000);
    }
}

#[async_trait]
impl<P: Projector> Projector for Gate<P> {
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
        self.inner.apply(tx, event).await
    }

    async fn apply_batch(&self, tx: &mut ViewTx, events: &[RecordedEvent]) -> Result<()> {
        if tx.replaying() && self.closed.load(Ordering::SeqCst) {
            match self.permits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => {
                    self.held.fetch_add(1, Ordering::SeqCst);
                    return Err(Error::Corrupted("the test holds the rebuild here".into()));
                }
            }
        }
        self.inner.apply_batch(tx, events).await
    }
}

/// (rows, largest n) of the counter's serving view.
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

/// Rows in a table (of any generation).
async fn rows_in(db: &ViewDb, table: &str) -> Option<i64> {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    db.fetch_optional(AssertSqlSafe(sql), &[])
        .await
        .ok()
        .flatten()
        .map(|row| row.get("n").unwrap())
}

/// The secondary indexes (the primary key's left out) on `table`, sorted.
async fn secondary_indexes(db: &ViewDb, table: &str) -> Vec<String> {
    let sql = match db.backend() {
        Backend::Postgres => {
            "SELECT indexname AS name FROM pg_indexes WHERE tablename = $1 \
             AND schemaname = current_schema() AND indexname NOT LIKE '%_pkey'"
        }
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 \
             AND name NOT LIKE 'sqlite_autoindex_%'"
        }
    };
    let mut names: Vec<String> = db
        .fetch_all(sql, &[table.into()])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("name").unwrap())
        .collect();
    names.sort();
    names
}

/// Appends `n` postings' worth of history (three events each, one per append).
async fn history(store: &EventStore, from: u128, n: u128) -> Checkpoint {
    let mut last = Checkpoint::START;
    for i in from..from + n {
        let id = posting_id(i);
        for event in [
            drafted(id, organisation(i % 3), "Postdoc"),
            jobboard_domain::PostingEvent::DraftSaved {
                content: content(&format!("Postdoc {i}")),
                draft_version: 2,
            },
            jobboard_domain::PostingEvent::PostingSubmitted {
                content: content(&format!("Postdoc {i}")),
                draft_version: 2,
            },
        ] {
            last = append(store, id, &[event]).await.checkpoint;
        }
    }
    last
}

async fn reads_answer_from_the_serving_view_during_a_rebuild_and_switch_when_it_caught_up(
    kind: Kind,
) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let last = history(&store, 1, 12).await;
    let gate = Gate::new(PostingsProjector);
    let (runtime, shutdown) = spawn(&store, &db, vec![gate.clone()], quick(500)).await;
    runtime
        .wait_for(postings::PROJECTOR, last, WAIT)
        .await
        .unwrap();
    let view = PostingsView::new(db.clone());
    let before = all_postings(&view).await;
    assert_eq!(before.len(), 12);
    let serving = db
        .current(postings::PROJECTOR)
        .await
        .unwrap()
        .active
        .unwrap();

    let (building, created) = runtime.request_rebuild(postings::PROJECTOR).await.unwrap();
    assert!(created);
    assert_eq!(building.state, GenerationState::Building);
    let (again, created) = runtime.request_rebuild(postings::PROJECTOR).await.unwrap();
    assert!(!created, "a second request joins the rebuild under way");
    assert_eq!(again.generation, building.generation);

    // Let two batches of 7 events through, then hold the rebuild half-way.
    gate.permits.add_permits(2);
    // Wait on what the permits let through: refusals counted before them say nothing.
    until(|| async {
        db.current(postings::PROJECTOR)
            .await
            .unwrap()
            .building
            .is_some_and(|g| g.events >= 14)
    })
    .await;
    let held = db
        .current(postings::PROJECTOR)
        .await
        .unwrap()
        .building
        .unwrap();
    assert_eq!(held.events, 14, "two batches committed");
    let new_table = format!("postings_{}", building.suffix);
    let partial = rows_in(&db, &new_table)
        .await
        .expect("the new table exists");
    assert!(
        (1..12).contains(&partial),
        "the new generation is half-built ({partial} rows)"
    );
    assert_eq!(
        secondary_indexes(&db, &new_table).await,
        Vec::<String>::new(),
        "a rebuilding generation is written without the indexes only readers need"
    );
    // Reads answer from the serving generation, complete, and keep following the log.
    assert_eq!(all_postings(&view).await, before);
    let status = runtime.status()[0].clone();
    assert_eq!(status.generation, Some(serving.generation));
    let rebuild = status.rebuild.expect("this runtime rebuilds it");
    assert_eq!(rebuild.generation, building.generation);
    let live = history(&store, 13, 1).await;
    runtime
        .wait_for(postings::PROJECTOR, live, WAIT)
        .await
        .unwrap();
    assert_eq!(all_postings(&view).await.len(), 13);
    assert_eq!(
        db.current(postings::PROJECTOR)
            .await
            .unwrap()
            .active
            .unwrap()
            .generation,
        serving.generation,
        "no switch before the rebuild caught up"
    );

    gate.open();
    until(|| async {
        db.current(postings::PROJECTOR)
            .await
            .unwrap()
            .active
            .is_some_and(|g| g.generation == building.generation)
    })
    .await;
    let built = secondary_indexes(&db, &new_table).await;
    assert_eq!(
        built,
        ["by_created", "by_organisation", "by_status", "review_queue"]
            .map(|index| format!("{new_table}_{index}")),
        "the switch built the indexes readers need"
    );
    let after = all_postings(&view).await;
    assert_eq!(after.len(), 13);
    assert_eq!(
        after[1..],
        before[..],
        "the rebuilt view equals the old one"
    );
    let more = history(&store, 14, 1).await;
    runtime
        .wait_for(postings::PROJECTOR, more, WAIT)
        .await
        .unwrap();
    assert_eq!(all_postings(&view).await.len(), 14, "the new view follows");

    // The old generation is retired and its tables dropped after the grace.
    until(|| async {
        db.generations(Some(postings::PROJECTOR))
            .await
            .unwrap()
            .iter()
            .any(|g| g.generation == serving.generation && g.dropped_at.is_some())
    })
    .await;
    let old_table = format!("postings_{}", serving.suffix);
    assert_eq!(rows_in(&db, &old_table).await, None, "{old_table} dropped");
    stop(&runtime, &shutdown).await;
}

async fn an_interrupted_rebuild_resumes_from_its_own_checkpoint(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let mut last = Checkpoint::START;
    for n in 0..40 {
        last = append_raw(
            &store,
            &format!("thing-{n}"),
            "Happened",
            serde_json::json!({}),
        )
        .await
        .checkpoint;
    }
    let counter = Counter { version: 1 };
    let options = RuntimeOptions {
        rebuild_batch_size: 5,
        drop_grace: Duration::ZERO,
        ..quick(500)
    };
    // The first build, to the end of the log.
    let never = CancellationToken::new();
    let first = jobboard_projections::rebuild(&db, &store, &counter, &options, &never, &|_| {})
        .await
        .unwrap();
    assert_eq!(first.events, 40);
    assert_eq!(counted(&db).await, (40, 1));

    // A rebuild stopped after its second batch, as a killed process would leave it.
    let interrupt = CancellationToken::new();
    let batches = AtomicUsize::new(0);
    let stopped =
        jobboard_projections::rebuild(&db, &store, &counter, &options, &interrupt, &|p| {
            assert!(p.target_events == Some(40));
            if batches.fetch_add(1, Ordering::SeqCst) == 1 {
                interrupt.cancel();
            }
        })
        .await;
    assert!(matches!(stopped, Err(Error::Stopped)), "{stopped:?}");
    let building = db
        .current("counter")
        .await
        .unwrap()
        .building
        .expect("the rebuild is still there");
    assert_eq!(building.events, 10, "two batches of five committed");
    assert!(building.checkpoint > Checkpoint::START && building.checkpoint < last);

    // Run again: it resumes there, applies each remaining event once, and switches.
    let resumed = jobboard_projections::rebuild(&db, &store, &counter, &options, &never, &|_| {})
        .await
        .unwrap();
    assert_eq!(resumed.generation.generation, building.generation);
    assert_eq!(
        resumed.applied_here, 30,
        "the committed part is not applied again"
    );
    assert_eq!(resumed.events, 40);
    assert_eq!(
        counted(&db).await,
        (40, 1),
        "every event once, in the new view"
    );
    let replayed = db
        .fetch_optional("SELECT COUNT(*) AS n FROM counter WHERE replaying = 1", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        replayed.get::<i64>("n").unwrap(),
        40,
        "a rebuild applies as a replay: no side effects"
    );
}

async fn a_version_bump_rebuilds_beside_the_old_version_which_serves_until_the_switch(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let mut last = Checkpoint::START;
    for n in 0..20 {
        last = append_raw(
            &store,
            &format!("thing-{n}"),
            "Happened",
            serde_json::json!({}),
        )
        .await
        .checkpoint;
    }
    let v1: Vec<Arc<dyn Projector>> = vec![Arc::new(Counter { version: 1 })];
    let (runtime, shutdown) = spawn(&store, &db, v1, quick(500)).await;
    runtime.wait_for("counter", last, WAIT).await.unwrap();
    stop(&runtime, &shutdown).await;

    // The new code (v2) starts: v1 keeps serving while v2 builds.
    let gate = Gate::new(Counter { version: 2 });
    let (runtime, shutdown) = spawn(&store, &db, vec![gate.clone()], quick(500)).await;
    until(|| async { gate.held.load(Ordering::SeqCst) >= 1 }).await;
    let current = db.current("counter").await.unwrap();
    assert_eq!(current.active.as_ref().unwrap().version, 1);
    assert_eq!(current.building.as_ref().unwrap().version, 2);
    let version = |db: ViewDb| async move {
        db.fetch_optional("SELECT MIN(version) AS v FROM counter", &[])
            .await
            .unwrap()
            .unwrap()
            .get::<i64>("v")
            .unwrap()
    };
    assert_eq!(version(db.clone()).await, 1, "reads see v1 while v2 builds");
    assert_eq!(runtime.status()[0].role, Role::Standby);

    gate.open();
    until(|| async {
        db.current("counter")
            .await
            .unwrap()
            .active
            .is_some_and(|g| g.version == 2)
    })
    .await;
    assert_eq!(version(db.clone()).await, 2, "reads switched to v2");
    assert_eq!(counted(&db).await, (20, 1));
    until(|| async { runtime.status()[0].role == Role::Leading }).await;
    let next = append_raw(&store, "thing-x", "Happened", serde_json::json!({})).await;
    runtime
        .wait_for("counter", next.checkpoint, WAIT)
        .await
        .unwrap();
    assert_eq!(counted(&db).await, (21, 1));
    stop(&runtime, &shutdown).await;

    // Old code started again does not build over the newer version: it only serves reads.
    let v1: Vec<Arc<dyn Projector>> = vec![Arc::new(Counter { version: 1 })];
    let (old, shutdown) = spawn(&store, &db, v1, quick(500)).await;
    until(|| async { old.status()[0].role == Role::Superseded }).await;
    let more = append_raw(&store, "thing-y", "Happened", serde_json::json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        counted(&db).await,
        (21, 1),
        "the old version applies nothing"
    );
    assert!(
        old.wait_for("counter", more.checkpoint, Duration::from_millis(100))
            .await
            .is_err()
    );
    stop(&old, &shutdown).await;
}

async fn two_runtimes_apply_each_event_once_and_one_takes_over_when_the_other_stops(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let (db_a, db_b) = (t.views().await, t.views().await);
    let counter = || -> Vec<Arc<dyn Projector>> { vec![Arc::new(Counter { version: 1 })] };
    let (a, stop_a) = spawn(&store, &db_a, counter(), quick(3)).await;
    let (b, stop_b) = spawn(&store, &db_b, counter(), quick(3)).await;
    let mut total = 0u64;
    let mut last = Checkpoint::START;
    for n in 0..15 {
        last = append_raw(
            &store,
            &format!("thing-{n}"),
            "Happened",
            serde_json::json!({}),
        )
        .await
        .checkpoint;
        total += 1;
    }
    // Both answer read-your-writes waits; exactly one applies.
    a.wait_for("counter", last, WAIT).await.unwrap();
    b.wait_for("counter", last, WAIT).await.unwrap();
    let roles = [a.status()[0].role, b.status()[0].role];
    assert!(
        roles.contains(&Role::Leading) && roles.contains(&Role::Standby),
        "{roles:?}"
    );
    let (leader, leader_stop, follower, follower_stop, follower_db) = if roles[0] == Role::Leading {
        (&a, &stop_a, &b, &stop_b, &db_b)
    } else {
        (&b, &stop_b, &a, &stop_a, &db_a)
    };
    assert!(
        follower.status()[0].last_applied_at.is_none(),
        "the standby applied nothing"
    );

    // The leader stops; the other takes over within seconds and applies what follows.
    stop(leader, leader_stop).await;
    let began = tokio::time::Instant::now();
    until(|| async { follower.status()[0].role == Role::Leading }).await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    for n in 15..30 {
        last = append_raw(
            &store,
            &format!("thing-{n}"),
            "Happened",
            serde_json::json!({}),
        )
        .await
        .checkpoint;
        total += 1;
    }
    follower.wait_for("counter", last, WAIT).await.unwrap();
    assert_eq!(
        counted(follower_db).await,
        (total, 1),
        "every event exactly once"
    );

    if kind == Kind::Postgres {
        // A lost database session (a crashed instance's) frees its lease at once: with a
        // second runtime standing by, it takes over and nothing is applied twice.
        let (c, stop_c) = spawn(&store, &db_a, counter(), quick(3)).await;
        // A few of its polls (50 ms apart): it has tried the lease and found it held.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(c.status()[0].role, Role::Standby);
        follower_db
            .fetch_optional(
                "SELECT pg_terminate_backend(pid) AS done FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap();
        for n in 30..40 {
            last = append_raw(
                &store,
                &format!("thing-{n}"),
                "Happened",
                serde_json::json!({}),
            )
            .await
            .checkpoint;
            total += 1;
        }
        c.wait_for("counter", last, WAIT).await.unwrap();
        follower.wait_for("counter", last, WAIT).await.unwrap();
        assert_eq!(counted(&db_a).await, (total, 1), "every event exactly once");
        stop(&c, &stop_c).await;
    }
    stop(follower, follower_stop).await;
}

async fn a_rebuild_switched_in_elsewhere_is_served_here_even_while_the_log_is_quiet(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let last = history(&store, 1, 3).await;
    let (runtime, shutdown) =
        spawn(&store, &db, vec![Arc::new(PostingsProjector)], quick(500)).await;
    runtime
        .wait_for(postings::PROJECTOR, last, WAIT)
        .await
        .unwrap();
    let serving = runtime.status()[0].generation.expect("a generation serves");

    // `jobboard-replay rebuild` in another process: the log stays quiet meanwhile, so the
    // serving runner has no batch whose compare-and-set would tell it. The runtime may take the
    // new generation's lease first and build it itself (then it switches on its own, and this is
    // not the case under test): rebuild again until the rebuild built one.
    let mut attempts = 0;
    let outcome = loop {
        let outcome = jobboard_projections::rebuild(
            &t.views().await,
            &store,
            &PostingsProjector,
            &quick(500),
            &CancellationToken::new(),
            &|_| {},
        )
        .await
        .unwrap();
        attempts += 1;
        if !outcome.built_elsewhere {
            break outcome;
        }
        assert!(attempts < 10, "the runtime built every rebuild itself");
    };
    assert!(outcome.generation.generation > serving);

    until(|| async {
        let status = runtime.status()[0].clone();
        status.generation == Some(outcome.generation.generation) && status.role == Role::Leading
    })
    .await;
    // And it follows the log there.
    let more = history(&store, 4, 1).await;
    runtime
        .wait_for(postings::PROJECTOR, more, WAIT)
        .await
        .unwrap();
    let view = PostingsView::new(db.clone());
    assert_eq!(all_postings(&view).await.len(), 4);
    stop(&runtime, &shutdown).await;
}
