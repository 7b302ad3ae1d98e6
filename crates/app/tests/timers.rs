//! Timers on a real log, on SQLite and on PostgreSQL: deadlines found in the log fire as ordinary
//! commands when the clock reaches them, exactly once across instances and restarts.

mod support;

use std::time::Duration;

use jobboard_app::{PostingCommands, TIMER_SUBJECT, Timers};
use jobboard_domain::PostingStatus;
use jobboard_domain::notice::{self, NoticeEvent};
use jobboard_domain::posting::{
    ApproveModification, ApprovePosting, CreateDraft, Language, OrganisationId, PostingContent,
    PostingId, RequestModification, RequestWithdrawal, SubmitForReview,
};
use jobboard_eventstore::{EventStore, StreamId, StreamRange};
use support::{
    App, Kind, ORG_A, ORG_B, complete_content, ctx, date, employer, eventually, fresh_id, jst,
    operator,
};
use tokio_util::sync::CancellationToken;

jobboard_testkit::on_both_backends!(
    publication_fires_at_its_due_instant_and_not_a_second_before,
    withdrawal_completes_at_22_00_of_the_day_it_was_requested,
    two_timer_instances_firing_together_publish_once,
    running_timers_learn_deadlines_live_and_publish_once,
    a_restarted_timer_fires_pending_deadlines_and_not_fired_ones,
    a_change_takes_effect_then_the_posting_expires_and_locks_across_restarts,
    each_employer_gets_one_monthly_notice_of_its_referral_ends_after_the_20th,
);

async fn count(store: &EventStore, posting_id: PostingId, event_type: &str) -> usize {
    store
        .read_stream(&jobboard_app::stream_of(posting_id), StreamRange::all())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

async fn status(app: &App, posting_id: PostingId) -> Option<PostingStatus> {
    let (posting, _) = app.commands.load(posting_id).await.unwrap()?;
    posting.status()
}

async fn publication_fires_at_its_due_instant_and_not_a_second_before(kind: Kind) {
    let app = App::new(kind).await;
    // R-POST-4: approved on 01-31 for 02-01, so public at 00:00 JST on 02-01.
    let id = app.approved("2026-02-01").await;
    let timers = app.timers();

    app.clock.set(jst("2026-01-31T23:59:59"));
    assert_eq!(timers.fire_due().await.unwrap(), 0);
    assert_eq!(timers.pending(), 1);
    assert_eq!(status(&app, id).await, Some(PostingStatus::Approved));

    app.clock.set(jst("2026-02-01T00:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 1);
    assert_eq!(timers.pending(), 0);
    let (posting, version) = app.commands.load(id).await.unwrap().unwrap();
    assert_eq!(posting.status(), Some(PostingStatus::Published));
    assert_eq!(posting.published_at(), Some(jst("2026-02-01T00:00:00")));
    assert_eq!(version, 4);

    // The firing is an ordinary, attributed command.
    let events = app.events(id).await;
    let meta = &events[3].metadata.command;
    assert_eq!(
        meta.command_id.as_deref(),
        Some(&*format!("timer/publish_posting/{id}/2026-01-31T15:00:00Z"))
    );
    assert_eq!(meta.actor.as_deref(), Some(TIMER_SUBJECT));
    assert_eq!(meta.extra.get("role").map(String::as_str), Some("service"));
    assert_eq!(meta.organisation.as_deref(), Some(&*ORG_A.to_string()));
    let approval = events[2].metadata.event_id.to_string();
    assert_eq!(meta.causation_id.as_deref(), Some(approval.as_str()));

    app.clock.set(jst("2026-02-02T00:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 0, "fired once");
    assert_eq!(count(&app.store, id, "PostingPublished").await, 1);
    // The publication, read back from the log, sets expiry and the end of modifications
    // (R-POST-7, R-POST-5).
    assert_eq!(timers.pending(), 2);
}

async fn withdrawal_completes_at_22_00_of_the_day_it_was_requested(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.approved("2026-02-01").await;
    let timers = app.timers();
    app.clock.set(jst("2026-02-01T00:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 1);

    // R-POST-6: asked at 10:00, off public search at 22:00 the same day.
    app.clock.set(jst("2026-02-10T10:00:00"));
    app.ok(&ctx(employer(ORG_A), "withdraw"), id, RequestWithdrawal)
        .await;
    app.clock.set(jst("2026-02-10T21:59:59"));
    assert_eq!(timers.fire_due().await.unwrap(), 0);
    assert_eq!(
        status(&app, id).await,
        Some(PostingStatus::WithdrawalPending)
    );
    app.clock.set(jst("2026-02-10T22:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 1);
    assert_eq!(status(&app, id).await, Some(PostingStatus::Withdrawn));
    // Once the log shows the withdrawal, every deadline of the posting is settled.
    assert_eq!(timers.fire_due().await.unwrap(), 0);
    assert_eq!(timers.pending(), 0);
}

async fn two_timer_instances_firing_together_publish_once(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.approved("2026-02-01").await;
    let (a, b) = (app.timers(), app.timers());
    app.clock.set(jst("2026-02-01T00:00:00"));
    let (fired_a, fired_b) = tokio::join!(a.fire_due(), b.fire_due());
    // R-POST-4: each instance fires the deadline unless the other's publication reached its
    // schedule first (then it is already settled there); a second firing is answered as a
    // duplicate of the first. Either way the posting is published once.
    let fired = fired_a.unwrap() + fired_b.unwrap();
    assert!((1..=2).contains(&fired), "fired {fired} times");
    assert_eq!(count(&app.store, id, "PostingPublished").await, 1);
    assert_eq!(app.version(id).await, 4);
}

async fn running_timers_learn_deadlines_live_and_publish_once(kind: Kind) {
    let app = App::new(kind).await;
    let shutdown = CancellationToken::new();
    let runs =
        [app.timers(), app.timers()].map(|timers| tokio::spawn(timers.run(shutdown.clone())));
    // Approved after the timers started: they learn the deadline by following the log.
    let id = app.approved("2026-02-01").await;
    app.clock.set(jst("2026-02-01T00:00:00"));
    eventually(
        Duration::from_secs(20),
        "the posting is published",
        || async { status(&app, id).await == Some(PostingStatus::Published) },
    )
    .await;
    shutdown.cancel();
    for run in runs {
        run.await.expect("timers stop on shutdown");
    }
    assert_eq!(count(&app.store, id, "PostingPublished").await, 1);
}

async fn a_restarted_timer_fires_pending_deadlines_and_not_fired_ones(kind: Kind) {
    let app = App::new(kind).await;
    let early = app.approved("2026-02-01").await;
    let late = app.approved("2026-02-02").await;
    app.clock.set(jst("2026-02-01T00:00:00"));
    let before = app.timers();
    assert_eq!(before.fire_due().await.unwrap(), 1);
    assert_eq!(before.pending(), 1);
    drop(before);
    app.store.close().await;

    // The restart: a new store, command layer and timers on the same database.
    let store = app.db.open().await;
    let commands = PostingCommands::new(store.clone(), app.dyn_clock());
    let after = Timers::new(store.clone(), commands, app.dyn_clock());
    assert_eq!(
        after.fire_due().await.unwrap(),
        0,
        "the fired one stays fired"
    );
    app.clock.set(jst("2026-02-02T00:00:00"));
    assert_eq!(after.fire_due().await.unwrap(), 1, "the pending one fires");
    assert_eq!(count(&store, early, "PostingPublished").await, 1);
    assert_eq!(count(&store, late, "PostingPublished").await, 1);
}

/// A new store, command layer and timers on the app's database: a restart.
async fn restart(app: &App) -> (EventStore, Timers) {
    let store = app.db.open().await;
    let commands = PostingCommands::new(store.clone(), app.dyn_clock());
    (store.clone(), Timers::new(store, commands, app.dyn_clock()))
}

async fn a_change_takes_effect_then_the_posting_expires_and_locks_across_restarts(kind: Kind) {
    // R-POST-5, R-POST-7: every deadline fires at its instant, once, whatever restarts between.
    let app = App::new(kind).await;
    let id = app.approved("2026-02-01").await;
    app.clock.set(jst("2026-02-01T00:00:00"));
    assert_eq!(app.timers().fire_due().await.unwrap(), 1);

    // The change: the period now ends on 04-30 instead of 03-31.
    app.clock.set(jst("2026-02-05T10:00:00"));
    let mut changed = complete_content();
    changed.recruitment_period.as_mut().unwrap().end = date("2026-04-30");
    app.ok(
        &ctx(employer(ORG_A), &fresh_id()),
        id,
        RequestModification { content: changed },
    )
    .await;
    app.ok(
        &ctx(operator(), &fresh_id()),
        id,
        ApproveModification {
            publish_date: date("2026-02-08"),
        },
    )
    .await;

    let (store, timers) = restart(&app).await;
    app.clock.set(jst("2026-02-07T23:59:59"));
    assert_eq!(timers.fire_due().await.unwrap(), 0, "not a second early");
    app.clock.set(jst("2026-02-08T00:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 1);
    assert_eq!(count(&store, id, "ModificationPublished").await, 1);

    // The old end (03-31) no longer expires it; the new one does, at 00:00 on 05-01.
    let (store, timers) = restart(&app).await;
    app.clock.set(jst("2026-04-01T00:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 0);
    assert_eq!(status(&app, id).await, Some(PostingStatus::Published));
    app.clock.set(jst("2026-05-01T00:00:00"));
    assert_eq!(timers.fire_due().await.unwrap(), 1);
    assert_eq!(status(&app, id).await, Some(PostingStatus::Expired));

    // Two weeks later modifications close, once, even with two instances racing.
    let (store2, timers2) = restart(&app).await;
    app.clock.set(jst("2026-05-15T00:00:00"));
    let (a, b) = tokio::join!(timers.fire_due(), timers2.fire_due());
    // Each fires, unless it read the other's lock from the log first: either way, one lock.
    let fired = a.unwrap() + b.unwrap();
    assert!((1..=2).contains(&fired), "{fired} fired");
    assert_eq!(count(&store, id, "ModificationsLocked").await, 1);
    assert_eq!(count(&store2, id, "PostingExpired").await, 1);
    assert_eq!(timers.pending(), 0);
}

/// A posting of `org` with `content`, published at 00:00 on 2026-02-01 by the timers.
async fn published(app: &App, org: OrganisationId, content: PostingContent) -> PostingId {
    app.clock.set(jst("2026-01-31T10:00:00"));
    let create = CreateDraft {
        posting_id: PostingId::new(uuid::Uuid::nil()),
        organisation_id: org,
        language: Language::Ja,
        content,
        reused_from: None,
    };
    let id = app
        .commands
        .execute(&ctx(employer(org), &fresh_id()), None, create.into())
        .await
        .expect("create")
        .posting_id;
    app.ok(&ctx(employer(org), &fresh_id()), id, SubmitForReview)
        .await;
    app.ok(
        &ctx(operator(), &fresh_id()),
        id,
        ApprovePosting {
            publish_date: date("2026-02-01"),
        },
    )
    .await;
    app.clock.set(jst("2026-02-01T00:00:00"));
    app.timers().fire_due().await.unwrap();
    id
}

async fn notices(store: &EventStore, org: OrganisationId) -> Vec<NoticeEvent> {
    let stream = StreamId::new(notice::stream_of(org)).unwrap();
    store
        .read_stream(&stream, StreamRange::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_value(e.payload).unwrap())
        .collect()
}

async fn each_employer_gets_one_monthly_notice_of_its_referral_ends_after_the_20th(kind: Kind) {
    // R-POST-9
    let app = App::new(kind).await;
    let ends = |end: &str, new_graduate| PostingContent {
        referral_period_end: Some(date(end)),
        new_graduate,
        ..complete_content()
    };
    let a_march = published(&app, ORG_A, ends("2026-03-31", false)).await;
    published(&app, ORG_A, ends("2026-03-31", true)).await; // new graduates: left out
    published(&app, ORG_A, ends("2026-04-30", false)).await; // another month
    let withdrawn = published(&app, ORG_A, ends("2026-03-10", false)).await;
    let b_march = published(&app, ORG_B, ends("2026-03-15", false)).await;
    app.clock.set(jst("2026-02-10T10:00:00"));
    app.ok(
        &ctx(employer(ORG_A), &fresh_id()),
        withdrawn,
        RequestWithdrawal,
    )
    .await;
    app.clock.set(jst("2026-02-10T22:00:00"));
    app.timers().fire_due().await.unwrap();

    let timers = app.timers();
    app.clock.set(jst("2026-03-20T23:59:59"));
    timers.fire_due().await.unwrap();
    assert!(
        notices(&app.store, ORG_A).await.is_empty(),
        "not before the 21st"
    );

    app.clock.set(jst("2026-03-21T00:00:00"));
    timers.fire_due().await.unwrap();
    let listed = |notices: &[NoticeEvent]| -> Vec<(String, Vec<PostingId>)> {
        notices
            .iter()
            .map(
                |NoticeEvent::MonthlyReferralNoticeIssued {
                     month, postings, ..
                 }| {
                    (
                        month.clone(),
                        postings.iter().map(|p| p.posting_id).collect(),
                    )
                },
            )
            .collect()
    };
    assert_eq!(
        listed(&notices(&app.store, ORG_A).await),
        [("2026-03".to_owned(), vec![a_march])]
    );
    assert_eq!(
        listed(&notices(&app.store, ORG_B).await),
        [("2026-03".to_owned(), vec![b_march])]
    );

    // Once: a later tick, a restarted instance and a second instance write nothing more.
    app.clock.set(jst("2026-03-25T09:00:00"));
    timers.fire_due().await.unwrap();
    let (store, restarted) = restart(&app).await;
    restarted.fire_due().await.unwrap();
    assert_eq!(notices(&store, ORG_A).await.len(), 1);
    assert_eq!(notices(&store, ORG_B).await.len(), 1);
}
