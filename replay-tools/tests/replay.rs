//! `jobboard-replay` against a real log, on SQLite and on PostgreSQL: each test seeds a fresh
//! database through the store's API (with recording times it sets) and runs the binary.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_domain::PostingEvent;
use jobboard_domain::posting::PostingContent;
use jobboard_eventstore::personal::mark;
use jobboard_eventstore::{AppendOutcome, StreamId};
use jobboard_projections::postings::{self, PostingsProjector};
use jobboard_projections::{ProjectionRuntime, ViewDb};
use serde_json::{Value, json};
use support::{Kind, Log, ORG, content, drafted, fold, new_posting, start};
use tokio_util::sync::CancellationToken;

jobboard_testkit::on_both_backends!(
    history_lists_a_stream_in_order_with_its_metadata_and_as_of_a_time,
    state_is_the_domain_fold_at_a_position_or_as_of_a_time,
    export_writes_exactly_the_requested_slice_as_json_lines,
    status_reports_each_checkpoint_and_its_lag,
    rebuild_builds_a_new_generation_beside_the_serving_one_and_switches,
    verify_passes_an_intact_log_and_names_the_first_tampered_event,
    erased_personal_data_reads_as_erased_in_history_export_and_state,
);

/// Posting A's story, with posting B's events in between.
struct Story {
    stream: StreamId,
    events: Vec<PostingEvent>,
    /// What each of A's appends committed, and when it was recorded.
    appended: Vec<(AppendOutcome, DateTime<Utc>)>,
    other: StreamId,
    /// Every append of the log in the order it was made: (stream, outcome, recorded at).
    log: Vec<(StreamId, AppendOutcome, DateTime<Utc>)>,
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// A: drafted, saved, submitted, approved, an hour apart; B: drafted and saved in between.
async fn seed(log: &Log) -> Story {
    let (a, stream) = new_posting();
    let (b, other) = new_posting();
    let events = vec![
        drafted(a, &content("Researcher v1")),
        PostingEvent::DraftSaved {
            content: content("Researcher v2"),
            draft_version: 2,
        },
        PostingEvent::PostingSubmitted {
            content: content("Researcher v2"),
            draft_version: 2,
        },
        PostingEvent::PostingApproved {
            publish_date: date("2026-02-02"),
            publishes_at: "2026-02-01T15:00:00Z".parse().unwrap(),
        },
    ];
    let mut story = Story {
        stream: stream.clone(),
        events: events.clone(),
        appended: Vec::new(),
        other: other.clone(),
        log: Vec::new(),
    };
    for (i, event) in events.iter().enumerate() {
        let at = log.now();
        let outcome = log.append_event(&stream, event).await;
        story.appended.push((outcome.clone(), at));
        story.log.push((stream.clone(), outcome, at));
        log.advance(20);
        // B's events sit between A's in the log.
        let b_event = match i {
            0 => Some(drafted(b, &content("Engineer"))),
            2 => Some(PostingEvent::DraftSaved {
                content: content("Engineer II"),
                draft_version: 2,
            }),
            _ => None,
        };
        if let Some(b_event) = b_event {
            let at = log.now();
            let outcome = log.append_event(&other, &b_event).await;
            story.log.push((other.clone(), outcome, at));
        }
        log.advance(40);
    }
    story
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn history_lists_a_stream_in_order_with_its_metadata_and_as_of_a_time(kind: Kind) {
    let log = Log::new(kind).await;
    let story = seed(&log).await;
    let stream = story.stream.as_str();

    let lines = log
        .replay(&["history", stream, "--json"])
        .await
        .ok()
        .json_lines();
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        let (outcome, recorded_at) = &story.appended[i];
        let event = &story.events[i];
        assert_eq!(line["stream"], stream);
        assert_eq!(line["version"], i as u64 + 1);
        assert_eq!(line["position"], outcome.positions[0]);
        assert_eq!(line["tx"], outcome.checkpoint.tx);
        assert_eq!(line["type"], event.type_name());
        assert_eq!(line["schema_version"], event.schema_version());
        assert_eq!(line["recorded_at"], time(*recorded_at));
        assert_eq!(line["payload"], serde_json::to_value(event).unwrap());
        let meta = &line["metadata"];
        assert_eq!(meta["actor"], format!("staff@{ORG}"));
        assert_eq!(meta["organisation"], ORG.to_string());
        assert_eq!(meta["causation_id"], "cause-1");
        assert!(
            meta["command_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{ORG}/c-"))
        );
        assert_eq!(meta["correlation_id"], meta["command_id"]);
        assert_eq!(meta["extra"]["role"], "employer");
        assert_eq!(line["hash"].as_str().unwrap().len(), 64);
    }

    // As of a time between A's second and third events: the first two.
    let between = time(story.appended[1].1 + chrono::Duration::minutes(30));
    let lines = log
        .replay(&["history", stream, "--as-of", &between, "--json"])
        .await
        .ok()
        .json_lines();
    let versions: Vec<_> = lines.iter().map(|l| l["version"].clone()).collect();
    assert_eq!(versions, [json!(1), json!(2)]);
    // A time written in Tokyo time means the same instant.
    let tokyo = (story.appended[1].1 + chrono::Duration::minutes(30))
        .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap())
        .to_rfc3339();
    let same = log
        .replay(&["history", stream, "--as-of", &tokyo, "--json"])
        .await
        .ok();
    assert_eq!(same.json_lines(), lines);

    // Exactly at an event's recording time includes it.
    let at_third = time(story.appended[2].1);
    let lines = log
        .replay(&["history", stream, "--as-of", &at_third, "--json"])
        .await
        .ok()
        .json_lines();
    assert_eq!(lines.len(), 3);

    // Before the stream began: nothing, and a note saying so.
    let before = time(start() - chrono::Duration::days(1));
    let run = log
        .replay(&["history", stream, "--as-of", &before])
        .await
        .ok();
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no event of"), "{}", run.stderr);

    // Text for people: every event with its type, actor and payload.
    let run = log.replay(&["history", stream]).await.ok();
    let text = &run.stdout;
    for (i, event) in story.events.iter().enumerate() {
        let (outcome, recorded_at) = &story.appended[i];
        let heading = format!(
            "v{}  position {} (checkpoint {})  {}  {}  schema {}",
            i + 1,
            outcome.positions[0],
            outcome.checkpoint,
            time(*recorded_at),
            event.type_name(),
            event.schema_version()
        );
        assert!(text.contains(&heading), "missing {heading:?} in\n{text}");
    }
    assert!(text.contains(&format!("actor staff@{ORG}  organisation {ORG}")));
    assert!(text.contains("\"title\": \"Researcher v2\""));
    assert!(
        !text.contains("Engineer"),
        "B's events leaked into A's history"
    );

    // A stream that does not exist is an error, not an empty history.
    let run = log
        .replay(&["history", "posting-00000000-0000-7000-8000-000000000000"])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("has no events"), "{}", run.stderr);
}

async fn state_is_the_domain_fold_at_a_position_or_as_of_a_time(kind: Kind) {
    let log = Log::new(kind).await;
    let story = seed(&log).await;
    let stream = story.stream.as_str();

    // At the position of A's third event: B's event after it does not matter, A's fourth is out.
    let third = story.appended[2].0.positions[0];
    let report = log
        .replay(&["state", stream, "--at-position", &third.to_string()])
        .await
        .ok()
        .json();
    assert_eq!(report["state"], fold(&story.events[..3]));
    assert_eq!(report["version"], 3);
    assert_eq!(report["position"], third);
    assert_eq!(report["complete"], true);
    assert_eq!(report["aggregate"], "posting");
    // One short of it: the third is out too.
    let report = log
        .replay(&["state", stream, "--at-position", &(third - 1).to_string()])
        .await
        .ok()
        .json();
    assert_eq!(report["state"], fold(&story.events[..2]));

    // As of a time between the second and third events.
    let between = time(story.appended[1].1 + chrono::Duration::minutes(30));
    let report = log
        .replay(&["state", stream, "--as-of", &between])
        .await
        .ok()
        .json();
    assert_eq!(report["state"], fold(&story.events[..2]));
    assert_eq!(report["version"], 2);
    assert_eq!(report["recorded_at"], time(story.appended[1].1));
    // The points differ in state, so the comparisons above can fail.
    assert_ne!(fold(&story.events[..2]), fold(&story.events[..3]));
    assert_ne!(fold(&story.events[..1]), fold(&story.events[..2]));

    // Without a point: the state now, which is what the command layer would load.
    let report = log.replay(&["state", stream]).await.ok().json();
    assert_eq!(report["state"], fold(&story.events));
    assert_ne!(report["state"], fold(&story.events[..3]));

    // Before the first event: the aggregate's default, said on stderr.
    let before = time(start() - chrono::Duration::days(1));
    let run = log
        .replay(&["state", stream, "--as-of", &before])
        .await
        .ok();
    assert_eq!(run.json()["version"], 0);
    assert_eq!(run.json()["state"], fold([]));
    assert!(run.stderr.contains("had no events"), "{}", run.stderr);

    // Streams of other categories: a clear refusal naming what is supported.
    log.append_other(
        "application-1",
        "ApplicationReceived",
        json!({"posting": stream}),
    )
    .await;
    let run = log.replay(&["state", "application-1"]).await.expect_code(1);
    assert!(
        run.stderr.contains("\"application\"") && run.stderr.contains("posting-"),
        "{}",
        run.stderr
    );

    // Both points at once are refused.
    let run = log
        .replay(&["state", stream, "--as-of", &between, "--at-position", "3"])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

async fn export_writes_exactly_the_requested_slice_as_json_lines(kind: Kind) {
    let log = Log::new(kind).await;
    let story = seed(&log).await;

    // The whole log, in log order, every field there.
    let all = log.replay(&["export"]).await.ok().json_lines();
    let expected: Vec<(String, u64)> = story
        .log
        .iter()
        .map(|(stream, outcome, _)| (stream.to_string(), outcome.positions[0]))
        .collect();
    let got: Vec<(String, u64)> = all
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let keys: Vec<&str> = all[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "position",
        "tx",
        "stream",
        "version",
        "type",
        "schema_version",
        "recorded_at",
        "metadata",
        "hash",
        "payload",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(
        all[0]["payload"],
        serde_json::to_value(&story.events[0]).unwrap()
    );

    // A position range: exactly the events whose position lies in it, bounds included.
    let positions: Vec<u64> = expected.iter().map(|(_, p)| *p).collect();
    let (from, to) = (positions[1], positions[4]);
    let slice = log
        .replay(&[
            "export",
            "--from-position",
            &from.to_string(),
            "--to-position",
            &to.to_string(),
            "--format",
            "jsonl",
        ])
        .await
        .ok()
        .json_lines();
    let got: Vec<u64> = slice
        .iter()
        .map(|l| l["position"].as_u64().unwrap())
        .collect();
    let wanted: Vec<u64> = positions
        .iter()
        .copied()
        .filter(|p| (from..=to).contains(p))
        .collect();
    assert_eq!(got, wanted);
    assert_eq!(got.len(), 4);
    assert_eq!(slice, all[1..5]);

    // A time range, to a file: the events recorded within it, bounds included.
    let (t_from, t_to) = (story.log[2].2, story.log[4].2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slice.jsonl");
    let run = log
        .replay(&[
            "export",
            "--from-time",
            &time(t_from),
            "--to-time",
            &time(t_to),
            "--output",
            file.to_str().unwrap(),
        ])
        .await
        .ok();
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("exported 3 events"), "{}", run.stderr);
    let written = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all[2..5]);
    assert!(!dir.path().join("slice.jsonl.partial").exists());

    // Ranges that cannot hold anything are refused.
    let run = log
        .replay(&["export", "--from-position", "5", "--to-position", "2"])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("is after"), "{}", run.stderr);
    let run = log
        .replay(&[
            "export",
            "--from-position",
            "1",
            "--from-time",
            &time(t_from),
        ])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

async fn status_reports_each_checkpoint_and_its_lag(kind: Kind) {
    let log = Log::new(kind).await;
    let (a, stream) = new_posting();
    let mut appended = Vec::new();
    let events = [
        drafted(a, &content("Researcher")),
        PostingEvent::DraftSaved {
            content: content("Researcher II"),
            draft_version: 2,
        },
        PostingEvent::PostingSubmitted {
            content: content("Researcher II"),
            draft_version: 2,
        },
    ];
    for event in &events {
        appended.push((log.now(), log.append_event(&stream, event).await));
        log.advance(10);
    }

    // The real projector catches up with the three events and stops.
    let views = ViewDb::open(&log.db.url).await.unwrap();
    let shutdown = CancellationToken::new();
    let runtime = ProjectionRuntime::spawn(
        views.clone(),
        log.store.clone(),
        vec![Arc::new(PostingsProjector)],
        shutdown.clone(),
    )
    .await
    .unwrap();
    let covered = appended[2].1.checkpoint;
    runtime
        .wait_for(postings::PROJECTOR, covered, Duration::from_secs(20))
        .await
        .unwrap();
    shutdown.cancel();
    runtime.stopped().await;
    // A projector that never got anywhere: its first generation at the start of the log.
    let mut tx = views.begin().await.unwrap();
    tx.execute(
        "INSERT INTO projection_generations (projector, generation, version, suffix, state, \
         tx, position, events, created_at, updated_at) \
         VALUES ($1, 1, $2, 'v1_g1', 'active', 0, 0, 0, $3, $3)",
        &["dashboard".into(), 1u32.into(), log.now().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    views.close().await;

    // Two more events the postings projector has not seen.
    let approved = PostingEvent::PostingApproved {
        publish_date: date("2026-02-02"),
        publishes_at: "2026-02-01T15:00:00Z".parse().unwrap(),
    };
    let fourth = log.append_event(&stream, &approved).await;
    let last_time = log.advance(15);
    let (b, other) = new_posting();
    let head = log
        .append_event(&other, &drafted(b, &content("Engineer")))
        .await;

    let report = log.replay(&["status", "--json"]).await.ok().json();
    assert_eq!(report["backend"], log.store.backend_name());
    assert_eq!(report["head"]["position"], head.positions[0]);
    assert_eq!(report["head"]["tx"], head.checkpoint.tx);
    assert_eq!(report["head"]["recorded_at"], time(last_time));
    assert_eq!(report["head_held"], false);
    let projectors = report["projectors"].as_array().unwrap();
    assert_eq!(projectors.len(), 2);
    let (dashboard, postings_row) = (&projectors[0], &projectors[1]);

    assert_eq!(postings_row["name"], postings::PROJECTOR);
    assert_eq!(postings_row["version"], postings::VERSION);
    assert_eq!(
        postings_row["checkpoint"],
        json!({"tx": covered.tx, "position": covered.position})
    );
    assert_eq!(postings_row["events"], 3);
    assert_eq!(postings_row["lag_events"], 2);
    assert_eq!(postings_row["last_event_recorded_at"], time(appended[2].0));
    let lag = (last_time - appended[2].0).as_seconds_f64();
    assert_eq!(postings_row["lag_seconds"].as_f64().unwrap(), lag);
    assert!(fourth.checkpoint > covered);

    assert_eq!(postings_row["generation"], 1);
    assert_eq!(postings_row["state"], "stopped", "no instance runs it");
    assert_eq!(postings_row["lease_holder"], Value::Null);

    assert_eq!(dashboard["name"], "dashboard");
    assert_eq!(dashboard["lag_events"], 5);
    assert_eq!(dashboard["last_event_recorded_at"], Value::Null);
    // It covers nothing: its lag runs from the first event of the log.
    let lag = (last_time - appended[0].0).as_seconds_f64();
    assert_eq!(dashboard["lag_seconds"].as_f64().unwrap(), lag);

    // The table, for people.
    let table = log.replay(&["status"]).await.ok().stdout;
    assert!(table.contains("PROJECTOR"), "{table}");
    assert!(table.contains("LAG EVENTS"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{} ", postings::PROJECTOR)))
        .unwrap_or_else(|| panic!("no postings row in\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let wanted = [
        postings::PROJECTOR.to_owned(),
        postings::VERSION.to_string(),
        covered.to_string(),
        "3".to_owned(),
        "2".to_owned(),
        format!("{:.3}", (last_time - appended[2].0).as_seconds_f64()),
    ];
    assert_eq!(cells[..6], wanted);
    assert!(
        table.contains(&format!("head at position {}", head.positions[0])),
        "{table}"
    );

    // Once the projector is back and caught up, it lags no more.
    let views = ViewDb::open(&log.db.url).await.unwrap();
    let shutdown = CancellationToken::new();
    let runtime = ProjectionRuntime::spawn(
        views.clone(),
        log.store.clone(),
        vec![Arc::new(PostingsProjector)],
        shutdown.clone(),
    )
    .await
    .unwrap();
    runtime
        .wait_for(
            postings::PROJECTOR,
            head.checkpoint,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    shutdown.cancel();
    runtime.stopped().await;
    views.close().await;
    let report = log.replay(&["status", "--json"]).await.ok().json();
    assert_eq!(report["projectors"][1]["lag_events"], 0);
    assert_eq!(report["projectors"][1]["lag_seconds"], 0.0);
    assert_eq!(report["projectors"][1]["events"], 5);
}

async fn verify_passes_an_intact_log_and_names_the_first_tampered_event(kind: Kind) {
    let log = Log::new(kind).await;
    let story = seed(&log).await;

    let run = log.replay(&["verify"]).await.ok();
    assert!(
        run.stdout.contains("checked 2 streams, 6 events"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("intact"), "{}", run.stdout);
    let report = log.replay(&["verify", "--json"]).await.ok().json();
    assert_eq!(report["intact"], true);
    assert_eq!(report["events_checked"], 6);

    // Someone with database access rewrites the title of A's second event.
    let cast = match kind {
        Kind::Postgres => "CAST(replace(CAST(payload AS TEXT), 'Researcher v2', 'Forged') AS JSON)",
        Kind::Sqlite => "replace(payload, 'Researcher v2', 'Forged')",
    };
    let changed = log
        .execute(&format!(
            "UPDATE events SET payload = {cast} WHERE stream_id = '{}' AND version = 2",
            story.stream
        ))
        .await;
    assert_eq!(changed, 1);

    let run = log.replay(&["verify"]).await.expect_code(2);
    let position = story.appended[1].0.positions[0];
    let line = format!(
        "  {}: first broken event is version 2 (position {position}): ",
        story.stream
    );
    assert!(run.stdout.contains("TAMPERED"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&line),
        "missing {line:?} in\n{}",
        run.stdout
    );
    assert!(!run.stdout.contains(story.other.as_str()), "{}", run.stdout);

    let report = log
        .replay(&["verify", "--json"])
        .await
        .expect_code(2)
        .json();
    assert_eq!(report["intact"], false);
    assert_eq!(report["broken"].as_array().unwrap().len(), 1);
    assert_eq!(report["broken"][0]["stream_id"], story.stream.as_str());
    assert_eq!(report["broken"][0]["version"], 2);
    assert_eq!(report["broken"][0]["position"], position);

    // The forged event still reads: history shows what is stored now, for the audit.
    let lines = log
        .replay(&["history", story.stream.as_str(), "--json"])
        .await
        .ok()
        .json_lines();
    assert_eq!(lines[1]["payload"]["content"]["title"], "Forged");
}

/// R-RET-4: erasure does not break the audit trail; history stays replayable, with the erased
/// personal data marked as erased.
async fn erased_personal_data_reads_as_erased_in_history_export_and_state(kind: Kind) {
    let log = Log::new(kind).await;
    let (a, stream) = new_posting();
    let s = stream.as_str();
    // A draft whose description is a person's text, and an approval whose date is personal:
    // text can stand in for an erased string, nothing can stand in for an erased date.
    let saved = PostingEvent::DraftSaved {
        content: PostingContent {
            description: "Contact 山田 太郎 directly".into(),
            ..content("Researcher v2")
        },
        draft_version: 2,
    };
    let approved = PostingEvent::PostingApproved {
        publish_date: date("2026-02-02"),
        publishes_at: "2026-02-01T15:00:00Z".parse().unwrap(),
    };
    let events = [
        drafted(a, &content("Researcher v1")),
        saved,
        PostingEvent::PostingSubmitted {
            content: content("Researcher v2"),
            draft_version: 2,
        },
        approved,
    ];
    let mut payloads: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    payloads[1]["content"]["description"] =
        mark("seeker-1", payloads[1]["content"]["description"].clone());
    payloads[3]["publish_date"] = mark("seeker-2", payloads[3]["publish_date"].clone());
    for (event, payload) in events.iter().zip(&payloads) {
        log.append(
            &stream,
            event.type_name(),
            event.schema_version(),
            payload.clone(),
        )
        .await;
        log.advance(10);
    }
    log.append_other(
        "application-1",
        "ApplicationReceived",
        json!({"name": mark("seeker-1", json!("山田 太郎"))}),
    )
    .await;

    // Before erasure, the domain folds the known values.
    let report = log.replay(&["state", s]).await.ok().json();
    assert_eq!(report["state"], fold(&events));
    assert_eq!(report["complete"], true);
    assert_eq!(report["erased"], json!([]));

    log.store.erase_subject("seeker-1").await.unwrap();

    // history: `[erased]` for people, the store's marker in JSON, never an error.
    let run = log.replay(&["history", s]).await.ok();
    assert!(
        run.stdout.contains("\"description\": \"[erased]\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("erased: /content/description (personal data of subject seeker-1)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("山田"), "{}", run.stdout);
    let lines = log
        .replay(&["history", s, "--json"])
        .await
        .ok()
        .json_lines();
    assert_eq!(
        lines[1]["payload"]["content"]["description"],
        json!({"$erased": {"subject": "seeker-1"}})
    );
    let run = log.replay(&["history", "application-1"]).await.ok();
    assert!(
        run.stdout.contains("\"name\": \"[erased]\""),
        "{}",
        run.stdout
    );
    let export = log.replay(&["export"]).await.ok();
    assert!(!export.stdout.contains("山田"), "{}", export.stdout);
    assert!(export.stdout.contains("$erased"), "{}", export.stdout);

    // state: the erased text reads `[erased]`, and the report says where it was.
    let report = log.replay(&["state", s]).await.ok().json();
    assert_eq!(report["complete"], true);
    assert_eq!(report["version"], 4);
    assert_eq!(
        report["erased"],
        json!([{"version": 2, "path": "/content/description", "subject": "seeker-1",
                "folded_as": "[erased]"}])
    );
    let mut expected = events[..2].to_vec();
    if let PostingEvent::DraftSaved { content, .. } = &mut expected[1] {
        content.description = "[erased]".into();
    }
    expected.extend_from_slice(&events[2..]);
    assert_eq!(report["state"], fold(&expected));

    // An erased date cannot be folded: the state before it, marked incomplete, exit 0.
    log.store.erase_subject("seeker-2").await.unwrap();
    let run = log.replay(&["state", s]).await.ok();
    let report = run.json();
    assert_eq!(report["complete"], false);
    assert_eq!(report["version"], 3);
    assert_eq!(report["stopped_at"]["version"], 4);
    assert_eq!(report["stopped_at"]["event_type"], "PostingApproved");
    assert_eq!(report["state"], fold(&expected[..3]));
    assert_eq!(report["erased"][1]["path"], "/publish_date");
    assert_eq!(report["erased"][1]["folded_as"], Value::Null);
    assert!(
        run.stderr.contains("stops before version 4"),
        "{}",
        run.stderr
    );

    // Erasure destroys keys, not rows: the chains still hold.
    log.replay(&["verify"]).await.ok();
}

async fn rebuild_builds_a_new_generation_beside_the_serving_one_and_switches(kind: Kind) {
    let log = Log::new(kind).await;
    let story = seed(&log).await;
    let events = story.log.len();

    // Nothing built yet: the first generation serves from the start.
    let run = log
        .replay(&["rebuild", "postings", "--drop-grace", "0"])
        .await
        .ok();
    assert!(
        run.stdout.contains(&format!(
            "postings: generation 1 (v{}) serves, {events} events",
            postings::VERSION
        )),
        "{}",
        run.stdout
    );
    // Again: a second generation beside the first, switched in, the first dropped.
    let run = log
        .replay(&["rebuild", "--all", "--drop-grace", "0"])
        .await
        .ok();
    assert!(
        run.stdout.contains(&format!(
            "postings: generation 2 (v{}) serves, {events} events",
            postings::VERSION
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("{events} events applied here")),
        "{}",
        run.stdout
    );
    let views = ViewDb::open(&log.db.url).await.unwrap();
    let generations = views.generations(Some("postings")).await.unwrap();
    assert_eq!(generations.len(), 2);
    assert!(generations[0].dropped_at.is_some(), "{generations:?}");
    let view = jobboard_projections::postings::PostingsView::new(views.clone());
    let page = view.list(None, None, 50, None).await.unwrap();
    assert_eq!(page.postings.len(), 2, "both postings of the log");
    views.close().await;

    let report = log.replay(&["status", "--json"]).await.ok().json();
    let row = report["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "postings")
        .expect("postings is listed");
    assert_eq!(row["generation"], 2);
    assert_eq!(row["lag_events"], 0);
    assert_eq!(row["state"], "stopped", "no service runs it");

    let run = log.replay(&["rebuild", "nonsense"]).await.expect_code(1);
    assert!(
        run.stderr.contains("no projector named \"nonsense\""),
        "{}",
        run.stderr
    );
}
