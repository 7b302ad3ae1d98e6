//! The search view as a projection, on SQLite and PostgreSQL logs: it resumes from the checkpoint
//! its last index commit carries, rebuilds blue/green while queries keep answering, and resumes
//! an interrupted rebuild from the rebuild's own commit (searches keep answering throughout).

mod search_support;
mod support;

use std::time::Duration;

use jobboard_domain::posting::{Language, PostingId};
use jobboard_eventstore::{AppendOutcome, Checkpoint};
use jobboard_projections::Error;
use jobboard_projections::search::{Scope, SearchOptions, SearchQuery, SearchState, SearchView};
use search_support::{Env, Kind, content, options, organisation, posting_id, public_history};

jobboard_testkit::on_both_backends!(
    restart_resumes_from_the_commit_checkpoint_without_applying_twice,
    foreign_streams_are_skipped_and_a_bad_posting_event_stops_the_view,
    blue_green_rebuild_keeps_answering_and_switches_once_caught_up,
    an_interrupted_rebuild_resumes_from_its_own_commit,
    live_changes_commit_at_most_once_per_interval_and_all_at_shutdown,
);

/// Publishes postings `from..to` (four events each) and returns the last append.
async fn publish(env: &Env, from: u128, to: u128) -> AppendOutcome {
    let mut last = None;
    for n in from..to {
        let id = posting_id(n);
        let body = content(&format!("研究員 {n}"), "Research position");
        last = Some(
            env.append(
                id,
                &public_history(id, organisation(1), Language::Ja, &body),
            )
            .await,
        );
    }
    last.expect("at least one posting")
}

fn everything() -> SearchQuery {
    let mut query = SearchQuery::new(Scope::Public);
    query.limit = 100;
    query
}

fn employer() -> SearchQuery {
    let mut query = SearchQuery::new(Scope::Employer(organisation(1)));
    query.limit = 100;
    query
}

async fn restart_resumes_from_the_commit_checkpoint_without_applying_twice(kind: Kind) {
    let env = Env::new(kind).await;
    let running = env.start(options()).await;
    let first = publish(&env, 1, 6).await;
    running.saw(&first).await;
    let view = running.stop().await;
    let stopped = view.status();
    assert_eq!(stopped.checkpoint, first.checkpoint);
    assert_eq!(stopped.events, 20);
    assert!(!stopped.running);
    assert!(matches!(view.request_rebuild(), Err(Error::Stopped)));
    drop(view);

    // While it is down, the log moves on: one more posting and an update of an old one.
    let second = publish(&env, 6, 8).await;
    let update = env
        .append(posting_id(1), &[search_support::withdrawal_requested()])
        .await;
    assert!(update.checkpoint > second.checkpoint);

    // Reopened, it starts exactly where its last commit left it...
    let (view, runner) = SearchView::open(env.index_dir.path(), options())
        .await
        .unwrap();
    let reopened = view.status();
    assert_eq!(reopened.checkpoint, first.checkpoint);
    assert_eq!(reopened.events, 20);
    assert_eq!(reopened.generation, stopped.generation);
    assert_eq!(view.search(&everything()).unwrap().total, 5);
    // ...and reads only what came after it: every event of the log counted once.
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(runner.run(env.store.clone(), shutdown.clone()));
    view.wait_for(update.checkpoint, search_support::WAIT)
        .await
        .unwrap();
    let status = view.status();
    assert_eq!(status.events, env.log_len().await);
    assert_eq!(status.events, 29);
    assert_eq!(status.state, SearchState::Live);
    // One document per posting, the update applied once (first by recency).
    let found = view.search(&everything()).unwrap();
    assert_eq!(found.total, 7);
    assert_eq!(found.hits[0].posting_id, posting_id(1));
    assert_eq!(found.hits[0].version, 5);
    shutdown.cancel();
    view.stopped().await;

    // A second runner on the same directory is refused while the first holds it.
    let (_held, _runner) = SearchView::open(env.index_dir.path(), options())
        .await
        .unwrap();
    assert!(
        SearchView::open(env.index_dir.path(), options())
            .await
            .is_err()
    );
}

async fn foreign_streams_are_skipped_and_a_bad_posting_event_stops_the_view(kind: Kind) {
    let env = Env::new(kind).await;
    let running = env.start(options()).await;
    env.append_raw(
        "posting-not-a-uuid",
        "PostingDrafted",
        serde_json::json!({}),
    )
    .await;
    env.append_raw("account-1", "AccountOpened", serde_json::json!({}))
        .await;
    let id = posting_id(1);
    env.append_raw(
        &format!("posting-{id}"),
        "SomethingNew",
        serde_json::json!({}),
    )
    .await;
    let good = publish(&env, 1, 2).await;
    running.saw(&good).await;
    assert_eq!(running.search(&everything()).total, 1);

    // A posting event whose payload does not decode stops the view at it, visibly.
    let bad = env
        .append_raw(
            &format!("posting-{}", posting_id(2)),
            "PostingDrafted",
            serde_json::json!({"type": "PostingDrafted", "posting_id": 7}),
        )
        .await;
    let status = running
        .status_until("the decode error", |s| s.last_error.is_some())
        .await;
    assert!(
        status
            .last_error
            .unwrap()
            .contains(&bad.positions[0].to_string())
    );
    assert!(status.checkpoint < bad.checkpoint);
    let waited = running
        .view
        .wait_for(bad.checkpoint, Duration::from_millis(300))
        .await;
    assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
    running.stop().await;
}

/// Options that make a rebuild take a while: small pages, a commit per page, a pause between.
fn slow_rebuild(pause: Duration) -> SearchOptions {
    SearchOptions {
        catch_up_page: 40,
        commit_every: 40,
        rebuild_pause: pause,
        ..options()
    }
}

fn generation_dirs(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.index_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    names.sort();
    names
}

async fn blue_green_rebuild_keeps_answering_and_switches_once_caught_up(kind: Kind) {
    let env = Env::new(kind).await;
    let running = env.start(slow_rebuild(Duration::from_millis(40))).await;
    let seeded = publish(&env, 1, 61).await;
    running.saw(&seeded).await;
    let before = running.view.status();
    assert_eq!(before.generation, 1);
    assert_eq!(generation_dirs(&env), ["gen-000001"]);

    running.view.request_rebuild().unwrap();
    let rebuilding = running
        .status_until(
            "the rebuild to start",
            |s| matches!(&s.state, SearchState::Rebuilding(p) if p.checkpoint > Checkpoint::START),
        )
        .await;
    assert_eq!(rebuilding.generation, 1, "the old generation still serves");
    assert_eq!(generation_dirs(&env), ["gen-000001", "gen-000002"]);
    // Requested again while it runs: nothing more happens.
    running.view.request_rebuild().unwrap();

    // Queries keep answering in full, and new events keep arriving, while it builds.
    let mut added: Vec<PostingId> = Vec::new();
    let mut answered = 0;
    loop {
        let status = running.view.status();
        let SearchState::Rebuilding(progress) = &status.state else {
            break;
        };
        assert!((0.0..=1.0).contains(&progress.fraction));
        let found = running.search(&everything());
        assert_eq!(found.total, 60 + added.len() as u64, "complete answers");
        answered += 1;
        if added.len() < 3 {
            let n = 100 + added.len() as u128;
            let outcome = publish(&env, n, n + 1).await;
            running.saw(&outcome).await;
            added.push(posting_id(n));
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(
        answered > 3,
        "the rebuild took long enough to be queried during it"
    );

    let after = running
        .status_until("the switch", |s| s.state == SearchState::Live)
        .await;
    assert_eq!(after.generation, 2);
    assert!(after.checkpoint >= before.checkpoint);
    assert_eq!(after.events, env.log_len().await);
    assert_eq!(generation_dirs(&env), ["gen-000002"]);
    let current = std::fs::read_to_string(env.index_dir.path().join("CURRENT")).unwrap();
    assert_eq!(current.trim(), "2");
    // The new generation has everything, and follows the log live.
    assert_eq!(running.search(&everything()).total, 60 + added.len() as u64);
    let outcome = publish(&env, 200, 201).await;
    running.saw(&outcome).await;
    assert_eq!(running.search(&employer()).total, 61 + added.len() as u64);
    assert!(running.set(&everything()).contains(&posting_id(200)));
    running.stop().await;
}

async fn an_interrupted_rebuild_resumes_from_its_own_commit(kind: Kind) {
    let env = Env::new(kind).await;
    let running = env.start(slow_rebuild(Duration::from_millis(150))).await;
    let seeded = publish(&env, 1, 51).await;
    running.saw(&seeded).await;
    running.view.request_rebuild().unwrap();
    running
        .status_until(
            "two rebuild commits",
            |s| matches!(&s.state, SearchState::Rebuilding(p) if p.events >= 80),
        )
        .await;
    let view = running.stop().await;
    let SearchState::Rebuilding(cut) = view.status().state else {
        panic!("still rebuilding when stopped: {:?}", view.status());
    };
    assert!(cut.events < 200, "stopped part way: {cut:?}");
    drop(view);

    // Reopened, the rebuild is found where its last commit left it, not started over.
    let (view, runner) = SearchView::open(env.index_dir.path(), slow_rebuild(Duration::ZERO))
        .await
        .unwrap();
    let status = view.status();
    let SearchState::Rebuilding(resumed) = &status.state else {
        panic!("the rebuild resumes: {status:?}");
    };
    assert_eq!(resumed.generation, cut.generation);
    assert_eq!(resumed.checkpoint, cut.checkpoint);
    assert_eq!(resumed.events, cut.events);
    assert_eq!(status.generation, 1);
    assert_eq!(view.search(&everything()).unwrap().total, 50);

    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(runner.run(env.store.clone(), shutdown.clone()));
    let deadline = std::time::Instant::now() + search_support::WAIT;
    while view.status().state != SearchState::Live {
        assert!(std::time::Instant::now() < deadline, "{:?}", view.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = view.status();
    assert_eq!(done.generation, 2);
    assert_eq!(
        done.events, 200,
        "each event counted once across the interruption"
    );
    assert_eq!(view.search(&everything()).unwrap().total, 50);
    assert_eq!(generation_dirs(&env), ["gen-000002"]);
    shutdown.cancel();
    view.stopped().await;
}

/// Following the live log, the view commits the first change at once, then at most once per
/// `live_commit_interval`: a change that arrives within it waits (here the interval is an hour,
/// so it cannot show), and shutting down commits it.
async fn live_changes_commit_at_most_once_per_interval_and_all_at_shutdown(kind: Kind) {
    let env = Env::new(kind).await;
    let hourly = SearchOptions {
        live_commit_interval: Duration::from_secs(3600),
        ..options()
    };
    let running = env.start(hourly.clone()).await;
    let first = publish(&env, 1, 2).await;
    running.saw(&first).await;
    let second = publish(&env, 2, 3).await;
    assert!(matches!(
        running
            .view
            .wait_for(second.checkpoint, Duration::from_millis(300))
            .await,
        Err(Error::Timeout { .. })
    ));
    assert_eq!(running.search(&everything()).total, 1);

    let view = running.stop().await;
    assert_eq!(
        view.status().checkpoint,
        second.checkpoint,
        "committed at shutdown"
    );
    drop(view);
    let (reopened, _runner) = SearchView::open(env.index_dir.path(), hourly)
        .await
        .unwrap();
    assert_eq!(reopened.search(&everything()).unwrap().total, 2);
}
