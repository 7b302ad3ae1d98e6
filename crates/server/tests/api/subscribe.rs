//! Subscribe: catch-up then live, in order, exactly once; ends with UNAVAILABLE on shutdown.

use std::collections::HashSet;

use jobboard_proto::v1::{Event, SubscribeRequest};
use tokio::time::{Instant, timeout_at};
use tonic::{Code, Streaming};

use jobboard_proto::v1::SubscribeResponse;

use crate::support::{DEADLINE, TestApp, append, unique_stream};

/// The next event of a subscription, failing the test at `deadline`.
async fn next_event(stream: &mut Streaming<SubscribeResponse>, deadline: Instant) -> Event {
    timeout_at(deadline, stream.message())
        .await
        .expect("an event arrives before the deadline")
        .expect("the subscription does not fail")
        .expect("the subscription does not end")
        .event
        .expect("the response carries an event")
}

fn payload_n(event: &Event) -> i64 {
    serde_json::from_str::<serde_json::Value>(&event.payload_json).unwrap()["n"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn subscribe_sees_appended_events_live_in_order_exactly_once() {
    let app = TestApp::spawn().await;
    // Catch-up part: already in the log when the subscription starts.
    for n in 0..3 {
        append(&app.store, &unique_stream("posting"), "Before", n).await;
    }
    let mut subscription = app
        .ops_feed()
        .subscribe(SubscribeRequest { after: None })
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + DEADLINE;
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next_event(&mut subscription, deadline).await);
    }

    // Live part: concurrent writers on several streams while the subscriber waits.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = app.store.clone();
            tokio::spawn(async move {
                let stream = unique_stream("application");
                for i in 0..10 {
                    append(&store, &stream, "Live", 100 + writer * 10 + i).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // A sentinel after every live event: once it arrives, nothing may be missing.
    append(&app.store, &unique_stream("sentinel"), "Sentinel", 999).await;
    loop {
        let event = next_event(&mut subscription, deadline).await;
        let done = event.event_type == "Sentinel";
        received.push(event);
        if done {
            break;
        }
    }

    assert_eq!(received.len(), 3 + 40 + 1, "every event exactly once");
    let ids: HashSet<_> = received
        .iter()
        .map(|e| e.metadata.as_ref().unwrap().event_id.clone())
        .collect();
    assert_eq!(ids.len(), received.len(), "no event twice");
    let positions: Vec<_> = received
        .iter()
        .map(|e| {
            let p = e.position.unwrap();
            (p.tx_id, p.position)
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in log order: {positions:?}"
    );
    let mut numbers: Vec<_> = received.iter().map(payload_n).collect();
    numbers.sort_unstable();
    let expected: Vec<i64> = (0..3).chain(100..140).chain([999]).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test]
async fn subscribe_resumes_strictly_after_a_position() {
    let app = TestApp::spawn().await;
    let stream = unique_stream("posting");
    for n in 0..3 {
        append(&app.store, &stream, "Happened", n).await;
    }
    let mut feed = app.ops_feed();
    let deadline = Instant::now() + DEADLINE;
    let mut all = feed
        .subscribe(SubscribeRequest { after: None })
        .await
        .unwrap()
        .into_inner();
    let second = {
        next_event(&mut all, deadline).await;
        next_event(&mut all, deadline).await
    };
    let mut resumed = feed
        .subscribe(SubscribeRequest {
            after: second.position,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payload_n(&next_event(&mut resumed, deadline).await), 2);
}

#[tokio::test]
async fn subscriptions_end_with_unavailable_when_the_server_stops() {
    let mut app = TestApp::spawn().await;
    append(&app.store, &unique_stream("posting"), "Happened", 1).await;
    let mut subscription = app
        .ops_feed()
        .subscribe(SubscribeRequest { after: None })
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + DEADLINE;
    next_event(&mut subscription, deadline).await;

    // The subscriber is now idle, waiting for live events; stopping must not wait for it.
    let started = Instant::now();
    app.stop().await.expect("clean stop");
    let ended = timeout_at(deadline, subscription.message())
        .await
        .expect("the stream ends before the deadline");
    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown did not wait for the grace period"
    );
}
