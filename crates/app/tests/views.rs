//! Access counts on a real log, on SQLite and on PostgreSQL: reported views are rolled up per
//! posting and day, and a call returns once its views are in the log (R-POST-8).

mod support;

use std::time::Duration;

use jobboard_app::{Error, ViewCounter, ViewCounterOptions};
use jobboard_domain::posting::PostingId;
use jobboard_domain::views::{ViewsEvent, stream_of};
use jobboard_eventstore::{StreamId, StreamRange};
use support::{App, Kind, ORG_A, date, employer, jst, service};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

jobboard_testkit::on_both_backends!(
    concurrent_calls_share_one_roll_up_per_day_and_return_once_logged,
    only_services_report_views_and_only_some,
);

fn counter(app: &App, shutdown: &CancellationToken) -> ViewCounter {
    ViewCounter::spawn(
        app.store.clone(),
        app.dyn_clock(),
        ViewCounterOptions {
            flush_every: Duration::from_millis(50),
            max_pending: 10_000,
        },
        shutdown.clone(),
    )
    .0
}

async fn roll_ups(app: &App, day: &str) -> Vec<ViewsEvent> {
    let stream = StreamId::new(stream_of(date(day))).unwrap();
    app.store
        .read_stream(&stream, StreamRange::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_value(e.payload).unwrap())
        .collect()
}

async fn concurrent_calls_share_one_roll_up_per_day_and_return_once_logged(kind: Kind) {
    let app = App::new(kind).await;
    let shutdown = CancellationToken::new();
    let views = counter(&app, &shutdown);
    // 23:30 on 02-02 in Tokyo is still 02-02's business day.
    app.clock.set(jst("2026-02-02T23:30:00"));
    let (a, b) = (
        PostingId::new(Uuid::now_v7()),
        PostingId::new(Uuid::now_v7()),
    );
    let site = service();
    let calls = (0..20).map(|i| {
        let views = views.clone();
        let site = site.clone();
        async move {
            let ids = if i % 2 == 0 { vec![a, a] } else { vec![b] };
            views.record(&site, &ids).await
        }
    });
    for result in futures::future::join_all(calls).await {
        result.expect("recorded");
    }
    // Every call returned, so every view is in the log; 20 calls made very few events.
    let events = roll_ups(&app, "2026-02-02").await;
    assert!(!events.is_empty() && events.len() < 20, "{}", events.len());
    let mut totals = std::collections::BTreeMap::new();
    for ViewsEvent::PostingViewsCounted { day, counts } in events {
        assert_eq!(day, date("2026-02-02"));
        for count in counts {
            *totals.entry(count.posting_id).or_insert(0) += count.views;
        }
    }
    assert_eq!(totals.get(&a), Some(&20));
    assert_eq!(totals.get(&b), Some(&10));

    // The next business day starts at 00:00 in Tokyo.
    app.clock.set(jst("2026-02-03T00:00:00"));
    views.record(&site, &[a]).await.unwrap();
    assert_eq!(roll_ups(&app, "2026-02-03").await.len(), 1);
    shutdown.cancel();
}

async fn only_services_report_views_and_only_some(kind: Kind) {
    let app = App::new(kind).await;
    let shutdown = CancellationToken::new();
    let views = counter(&app, &shutdown);
    let id = PostingId::new(Uuid::now_v7());
    let denied = views.record(&employer(ORG_A), &[id]).await;
    assert!(
        matches!(denied, Err(Error::PermissionDenied(_))),
        "{denied:?}"
    );
    let empty = views.record(&service(), &[]).await;
    assert!(matches!(empty, Err(Error::Invalid(_))), "{empty:?}");
    let too_many = vec![id; jobboard_app::MAX_VIEWS_PER_CALL + 1];
    let refused = views.record(&service(), &too_many).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    shutdown.cancel();
}
