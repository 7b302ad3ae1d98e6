//! The notifications feed and the access counts on SQLite and PostgreSQL: review outcomes and
//! referral notices become notifications with stable ids and cursors, and view roll-ups add up
//! per posting and day (R-POST-3, R-POST-4, R-POST-8, R-POST-9).

mod support;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jobboard_domain::PostingEvent;
use jobboard_domain::notice::{self, NoticeEvent, NoticedPosting};
use jobboard_domain::posting::{OrganisationId, PostingId};
use jobboard_domain::views::{ViewCount, ViewsEvent, stream_of};
use jobboard_eventstore::Checkpoint;
use jobboard_eventstore::{
    AppendOutcome, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StreamId,
};
use jobboard_projections::access::{AccessCountsProjector, AccessCountsView, AccessTotal};
use jobboard_projections::notifications::{
    NotificationKind, NotificationsProjector, NotificationsView,
};
use jobboard_projections::{ProjectionRuntime, Projector, RuntimeOptions};
use support::{Kind, TestDb, WAIT, content, date, drafted, organisation, posting_id, spawn, stop};

jobboard_testkit::on_both_backends!(
    review_outcomes_publications_and_notices_become_notifications_once,
    roll_ups_add_up_per_posting_and_day_and_rank_by_total,
);

async fn caught_up(runtime: &ProjectionRuntime, projector: &str, at: Checkpoint) {
    runtime
        .wait_for(projector, at, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{projector} catches up: {e:?}"));
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// Appends `payload` events to `stream` the way the command layer stores them: with the owning
/// organisation in the metadata.
async fn append_as(
    store: &EventStore,
    stream: &str,
    org: OrganisationId,
    events: Vec<(&'static str, u32, serde_json::Value)>,
) -> AppendOutcome {
    let events = events
        .into_iter()
        .map(|(t, v, p)| NewEvent::new(t, v, p))
        .collect();
    let metadata = CommandMetadata {
        organisation: Some(org.to_string()),
        ..CommandMetadata::default()
    };
    store
        .append(
            &StreamId::new(stream).unwrap(),
            ExpectedVersion::Any,
            events,
            metadata,
        )
        .await
        .expect("append")
}

async fn posting(
    store: &EventStore,
    id: PostingId,
    org: OrganisationId,
    events: &[PostingEvent],
) -> AppendOutcome {
    let events = events
        .iter()
        .map(|e| {
            (
                e.type_name(),
                e.schema_version(),
                serde_json::to_value(e).unwrap(),
            )
        })
        .collect();
    append_as(store, &format!("posting-{id}"), org, events).await
}

async fn review_outcomes_publications_and_notices_become_notifications_once(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let projectors: Vec<Arc<dyn Projector>> = vec![Arc::new(NotificationsProjector)];
    let (runtime, shutdown) = spawn(&store, &db, projectors, RuntimeOptions::default()).await;
    let view = NotificationsView::new(db.clone());
    let (a, b) = (organisation(1), organisation(2));
    let (id, other) = (posting_id(1), posting_id(2));

    posting(&store, id, a, &[drafted(id, a, "研究員")]).await;
    posting(
        &store,
        id,
        a,
        &[
            PostingEvent::PostingSubmitted {
                content: content("研究員"),
                draft_version: 1,
            },
            PostingEvent::PostingReturned {
                reasons: vec!["給与を明記".into()],
            },
        ],
    )
    .await;
    posting(&store, other, b, &[drafted(other, b, "Engineer")]).await;
    posting(
        &store,
        id,
        a,
        &[PostingEvent::PostingApproved {
            publish_date: date(2026, 2, 1),
            publishes_at: utc("2026-01-31T15:00:00Z"),
        }],
    )
    .await;
    let notice = NoticeEvent::MonthlyReferralNoticeIssued {
        organisation_id: a,
        month: "2026-03".into(),
        postings: vec![NoticedPosting {
            posting_id: id,
            title: "研究員".into(),
            referral_period_end: date(2026, 3, 31),
        }],
    };
    let last = append_as(
        &store,
        &notice::stream_of(a),
        a,
        vec![(
            notice.type_name(),
            1,
            serde_json::to_value(&notice).unwrap(),
        )],
    )
    .await;
    caught_up(&runtime, "notifications", last.checkpoint).await;

    // R-POST-3, R-POST-4, R-POST-9: in log order, with cursors 1, 2, 3 and the posting's title.
    let all = view.after(None, 0, 0).await.unwrap();
    let kinds: Vec<_> = all.iter().map(|n| (n.seq, n.kind)).collect();
    assert_eq!(
        kinds,
        [
            (1, NotificationKind::RegistrationReturned),
            (2, NotificationKind::RegistrationApproved),
            (3, NotificationKind::MonthlyReferralNotice),
        ]
    );
    assert_eq!(all[0].title, "研究員");
    assert_eq!(all[0].detail.reasons, ["給与を明記"]);
    assert_eq!(all[0].organisation_id, a);
    assert_eq!(
        all[1].detail.effective_at,
        Some(utc("2026-01-31T15:00:00Z"))
    );
    assert_eq!(all[2].detail.month.as_deref(), Some("2026-03"));
    assert_eq!(all[2].detail.postings.len(), 1);

    // A consumer resuming after cursor 1 gets the rest; another organisation sees none of them.
    let rest = view.after(Some(a), 1, 10).await.unwrap();
    assert_eq!(rest.iter().map(|n| n.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(view.after(Some(b), 0, 10).await.unwrap().is_empty());

    // A rebuild, blue/green beside the serving view, gives every notification the same id and
    // cursor.
    let (rebuilt, new) = runtime.request_rebuild("notifications").await.unwrap();
    assert!(new);
    support::until(|| async {
        db.current("notifications")
            .await
            .unwrap()
            .active
            .is_some_and(|active| active.generation == rebuilt.generation)
    })
    .await;
    caught_up(&runtime, "notifications", last.checkpoint).await;
    assert_eq!(view.after(None, 0, 0).await.unwrap(), all);
    stop(&runtime, &shutdown).await;
}

async fn roll_ups_add_up_per_posting_and_day_and_rank_by_total(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let projectors: Vec<Arc<dyn Projector>> = vec![Arc::new(AccessCountsProjector)];
    let (runtime, shutdown) = spawn(&store, &db, projectors, RuntimeOptions::default()).await;
    let view = AccessCountsView::new(db.clone());
    let (a, b) = (organisation(1), organisation(2));
    let (p1, p2, p3) = (posting_id(1), posting_id(2), posting_id(3));
    posting(&store, p1, a, &[drafted(p1, a, "one")]).await;
    posting(&store, p2, a, &[drafted(p2, a, "two")]).await;
    posting(&store, p3, b, &[drafted(p3, b, "three")]).await;
    let roll_up = |day: &str, counts: &[(PostingId, u64)]| {
        let event = ViewsEvent::PostingViewsCounted {
            day: day.parse().unwrap(),
            counts: counts
                .iter()
                .map(|&(posting_id, views)| ViewCount { posting_id, views })
                .collect(),
        };
        (event.type_name(), 1, serde_json::to_value(&event).unwrap())
    };
    let feb2 = stream_of("2026-02-02".parse().unwrap());
    let feb3 = stream_of("2026-02-03".parse().unwrap());
    append_as(
        &store,
        &feb2,
        a,
        vec![roll_up("2026-02-02", &[(p1, 3), (p2, 5)])],
    )
    .await;
    append_as(
        &store,
        &feb2,
        a,
        vec![roll_up("2026-02-02", &[(p1, 4), (p3, 1)])],
    )
    .await;
    let last = append_as(&store, &feb3, a, vec![roll_up("2026-02-03", &[(p1, 2)])]).await;
    caught_up(&runtime, "access_counts", last.checkpoint).await;

    // R-POST-8: totals ranked, most viewed first; daily counts kept per posting and day.
    let total = |posting_id, organisation_id: OrganisationId, total| AccessTotal {
        posting_id,
        organisation_id: Some(organisation_id),
        total,
    };
    assert_eq!(
        view.ranking(None, 0).await.unwrap(),
        [total(p1, a, 9), total(p2, a, 5), total(p3, b, 1)]
    );
    assert_eq!(view.ranking(Some(a), 1).await.unwrap(), [total(p1, a, 9)]);
    assert_eq!(
        view.daily(p1).await.unwrap(),
        [(date(2026, 2, 2), 7), (date(2026, 2, 3), 2)]
    );
    stop(&runtime, &shutdown).await;
}
