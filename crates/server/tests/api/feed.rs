//! ReadStream and ReadAll over events appended through the store.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use jobboard_eventstore::{CommandMetadata, ExpectedVersion, NewEvent, StreamId};
use jobboard_proto::v1::{LogPosition, ReadAllRequest, ReadStreamRequest};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{TestApp, append, eventually, unique_stream};

#[tokio::test]
async fn read_stream_returns_the_events_in_version_order_with_their_metadata() {
    let app = TestApp::spawn().await;
    let stream = unique_stream("posting");
    let id = StreamId::new(stream.clone()).unwrap();
    let meta = CommandMetadata {
        command_id: Some("draft-1".into()),
        correlation_id: Some("flow-1".into()),
        actor: Some("employer-user".into()),
        organisation: Some("org-1".into()),
        extra: [("channel".to_owned(), "web".to_owned())].into(),
        ..CommandMetadata::default()
    };
    let payload = serde_json::json!({"title": "研究員", "hours": 40});
    app.store
        .append(
            &id,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("PostingDrafted", 1, payload.clone()),
                NewEvent::new("PostingSubmitted", 1, serde_json::json!({})),
            ],
            meta,
        )
        .await
        .unwrap();
    let stored = app
        .store
        .read_stream(&id, jobboard_eventstore::StreamRange::all())
        .await
        .unwrap();

    let events = app
        .ops_feed()
        .read_stream(ReadStreamRequest {
            stream_id: stream.clone(),
            ..ReadStreamRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;

    assert_eq!(events.len(), 2);
    let first = &events[0];
    assert_eq!(first.stream_id, stream);
    assert_eq!((first.version, events[1].version), (1, 2));
    assert_eq!(first.event_type, "PostingDrafted");
    assert_eq!(first.schema_version, 1);
    let decoded: serde_json::Value = serde_json::from_str(&first.payload_json).unwrap();
    assert_eq!(decoded, payload);
    let position = first.position.unwrap();
    assert_eq!(
        (position.tx_id, position.position),
        (stored[0].tx, stored[0].position)
    );
    assert_eq!(first.hash, stored[0].hash.to_vec());
    let metadata = first.metadata.as_ref().unwrap();
    assert_eq!(metadata.event_id, stored[0].metadata.event_id.to_string());
    assert_eq!(metadata.command_id, "draft-1");
    assert_eq!(metadata.correlation_id, "flow-1");
    assert_eq!(metadata.causation_id, "");
    assert_eq!(metadata.actor, "employer-user");
    assert_eq!(metadata.organisation, "org-1");
    assert_eq!(
        metadata.extra.get("channel").map(String::as_str),
        Some("web")
    );
    let recorded = metadata.recorded_at.unwrap();
    assert_eq!(recorded.seconds, stored[0].metadata.recorded_at.timestamp());

    let tail = app
        .ops_feed()
        .read_stream(ReadStreamRequest {
            stream_id: stream,
            from_version: 2,
            ..ReadStreamRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].event_type, "PostingSubmitted");
}

#[tokio::test]
async fn read_stream_as_of_shows_the_stream_as_it_was() {
    let app = TestApp::spawn().await;
    let stream = unique_stream("posting");
    append(&app.store, &stream, "PostingDrafted", 1).await;
    let id = StreamId::new(stream.clone()).unwrap();
    let first_recorded = app
        .store
        .read_stream(&id, jobboard_eventstore::StreamRange::all())
        .await
        .unwrap()[0]
        .metadata
        .recorded_at;
    // The second event must be recorded strictly later than the first.
    eventually("the clock moved past the first event", || async {
        Utc::now() > first_recorded + chrono::Duration::milliseconds(1)
    })
    .await;
    append(&app.store, &stream, "PostingSubmitted", 2).await;

    let as_of = prost_types::Timestamp {
        seconds: first_recorded.timestamp(),
        nanos: i32::try_from(first_recorded.timestamp_subsec_nanos()).unwrap(),
    };
    let events = app
        .ops_feed()
        .read_stream(ReadStreamRequest {
            stream_id: stream,
            as_of: Some(as_of),
            ..ReadStreamRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["PostingDrafted"]);
}

#[tokio::test]
async fn read_stream_of_an_unknown_stream_is_not_found() {
    let app = TestApp::spawn().await;
    let status = app
        .ops_feed()
        .read_stream(ReadStreamRequest {
            stream_id: unique_stream("posting"),
            ..ReadStreamRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            ReadStreamRequest {
                stream_id: "has spaces".into(),
                ..ReadStreamRequest::default()
            },
            "stream_id",
        ),
        (
            ReadStreamRequest {
                stream_id: unique_stream("posting"),
                from_version: 5,
                to_version: Some(2),
                ..ReadStreamRequest::default()
            },
            "to_version",
        ),
        (
            ReadStreamRequest {
                stream_id: unique_stream("posting"),
                as_of: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
                ..ReadStreamRequest::default()
            },
            "as_of",
        ),
    ];
    for (request, field) in cases {
        let status = app.ops_feed().read_stream(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad_request = status.get_details_bad_request().expect("field violations");
        assert_eq!(bad_request.field_violations[0].field, field);
    }
}

#[tokio::test]
async fn read_all_pages_through_the_log_with_next() {
    let app = TestApp::spawn().await;
    let streams = [unique_stream("posting"), unique_stream("application")];
    for n in 0..5 {
        append(
            &app.store,
            &streams[usize::try_from(n % 2).unwrap()],
            "Happened",
            n,
        )
        .await;
    }
    let mut feed = app.ops_feed();
    let mut after: Option<LogPosition> = None;
    let mut seen = Vec::new();
    loop {
        let page = feed
            .read_all(ReadAllRequest { after, limit: 2 })
            .await
            .unwrap()
            .into_inner();
        assert!(page.events.len() <= 2);
        assert!(!page.held, "SQLite never holds the horizon");
        if page.events.is_empty() {
            assert_eq!(
                page.next, after,
                "an empty page resumes where it was asked to"
            );
            break;
        }
        let last = page.events.last().unwrap().position;
        assert_eq!(page.next, last);
        seen.extend(page.events);
        after = page.next;
    }
    let payloads: Vec<i64> = seen
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload_json).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(payloads, [0, 1, 2, 3, 4]);
    let positions: Vec<_> = seen
        .iter()
        .map(|e| {
            let p = e.position.unwrap();
            (p.tx_id, p.position)
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let ids: HashSet<_> = seen
        .iter()
        .map(|e| e.metadata.as_ref().unwrap().event_id.clone())
        .collect();
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn read_all_caps_the_page_at_1000() {
    let app = TestApp::spawn().await;
    let stream = StreamId::new(unique_stream("bulk")).unwrap();
    let events = (0..1001)
        .map(|n| NewEvent::new("Happened", 1, serde_json::json!({ "n": n })))
        .collect();
    app.store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            events,
            CommandMetadata::default(),
        )
        .await
        .unwrap();
    for limit in [0, 5000] {
        let page = tokio::time::timeout(
            Duration::from_secs(20),
            app.ops_feed()
                .read_all(ReadAllRequest { after: None, limit }),
        )
        .await
        .unwrap()
        .unwrap()
        .into_inner();
        assert_eq!(page.events.len(), 1000, "limit {limit}");
    }
}
