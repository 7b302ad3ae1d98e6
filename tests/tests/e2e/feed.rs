//! The event feed as a subscriber sees it: every event once, in log order, across a graceful
//! restart of the server.

use std::collections::HashSet;

use jobboard_proto::v1 as pb;
use tokio::time::{Instant, timeout_at};
use tonic::{Code, Streaming};

use jobboard::auth::Caller;

use crate::support::{Backend, DEADLINE, TestApp, date, employer, jst, position};

jobboard_testkit::on_both_backends!(a_subscriber_sees_every_event_once_in_order_across_a_restart);

/// Receives events until the one at `last` (a command's committed position) has arrived.
async fn receive_through(
    subscription: &mut Streaming<pb::SubscribeResponse>,
    last: pb::LogPosition,
    received: &mut Vec<pb::Event>,
) {
    let deadline = Instant::now() + DEADLINE;
    let last = (last.tx_id, last.position);
    while received.last().map(position) < Some(last) {
        let event = timeout_at(deadline, subscription.message())
            .await
            .expect("the event arrives before the deadline")
            .expect("the subscription does not fail")
            .expect("the subscription does not end")
            .event
            .expect("the response carries an event");
        received.push(event);
    }
}

/// Runs four commands, one after the other, and returns the last one's position: a draft and
/// its submission, another draft, the first one's approval.
async fn some_commands(app: &TestApp, staff: &Caller) -> pb::LogPosition {
    let (first, _) = app.submitted(staff).await;
    app.create_draft(staff).await;
    let approved = app
        .approve(&first, date(2026, 2, 2))
        .await
        .expect("approve");
    approved.position.expect("a position")
}

async fn a_subscriber_sees_every_event_once_in_order_across_a_restart(backend: Backend) {
    let mut app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let mut received = Vec::new();

    let mut subscription = app
        .feed()
        .subscribe(pb::SubscribeRequest { after: None })
        .await
        .expect("Subscribe")
        .into_inner();
    let last = some_commands(&app, &staff).await;
    receive_through(&mut subscription, last, &mut received).await;

    // A graceful stop ends the subscription with UNAVAILABLE, without a further event.
    app.stop().await;
    let ended = timeout_at(Instant::now() + DEADLINE, subscription.message())
        .await
        .expect("the subscription ends before the deadline");
    let status = ended.expect_err("it ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // A new server on the same database; the subscriber resumes after the last event it saw.
    app.restart().await;
    let resume_after = received.last().and_then(|e| e.position);
    let mut subscription = app
        .feed()
        .subscribe(pb::SubscribeRequest {
            after: resume_after,
        })
        .await
        .expect("Subscribe again")
        .into_inner();
    let last = some_commands(&app, &staff).await;
    receive_through(&mut subscription, last, &mut received).await;

    let log = app.read_all().await;
    let ids = |events: &[pb::Event]| -> Vec<String> {
        events
            .iter()
            .map(|e| e.metadata.as_ref().expect("metadata").event_id.clone())
            .collect()
    };
    assert_eq!(
        ids(&received),
        ids(&log),
        "the subscriber saw the whole log, in its order"
    );
    let unique: HashSet<_> = ids(&received).into_iter().collect();
    assert_eq!(unique.len(), received.len(), "no event twice");
    let positions: Vec<_> = received.iter().map(position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in log order: {positions:?}"
    );
    // Two rounds of four commands, one event each.
    assert_eq!(received.len(), 8);
}
