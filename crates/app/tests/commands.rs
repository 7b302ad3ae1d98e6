//! The command layer on a real log: every test runs on SQLite and on PostgreSQL, each on a fresh
//! database — the lifecycle, expected versions, idempotent retries, command-id scoping,
//! authorisation, conflict retries, snapshots and rule refusals.

mod support;

use std::collections::BTreeSet;

use jobboard_app::{Caller, CommandOptions, Error, PostingCommands, Role, stream_of};
use jobboard_domain::posting::{
    ApprovePosting, CompleteWithdrawal, CreateDraft, DiscardDraft, Language, PostingContent,
    PostingId, PublishPosting, RequestWithdrawal, ReturnPosting, SaveDraft, SubmitForReview,
};
use jobboard_domain::{Posting, PostingCommand, PostingError, PostingEvent, PostingStatus};
use jobboard_eventstore::Snapshot;
use support::{
    App, Kind, ORG_A, ORG_B, create_draft, ctx, date, decode, employer, fresh_id, jst,
    minimal_content, operator, service,
};
use uuid::Uuid;

jobboard_testkit::on_both_backends!(
    a_posting_goes_from_draft_to_withdrawn_one_version_at_a_time,
    a_stale_expected_version_is_a_conflict_and_writes_nothing,
    a_retried_command_answers_its_first_outcome_after_the_posting_moved_on,
    a_command_id_reused_for_another_posting_or_command_is_refused,
    the_same_command_id_from_two_organisations_is_two_commands,
    create_draft_without_an_id_gets_a_uuid_v7_and_the_callers_organisation,
    an_employer_cannot_touch_another_organisations_posting,
    operator_and_timer_commands_are_refused_to_other_roles,
    a_posting_that_does_not_exist_is_not_found_for_every_role,
    malformed_requests_list_every_field_and_write_nothing,
    concurrent_commands_without_expected_version_all_commit_through_retries,
    concurrent_retries_of_one_command_commit_once_and_all_answer_its_outcome,
    snapshots_are_written_every_interval_and_load_like_a_full_fold,
    refusals_name_the_rule_that_refuses_them,
    events_carry_the_callers_metadata,
    reuse_creates_a_linked_draft_from_a_past_posting_of_the_same_organisation,
    an_instance_whose_cached_posting_fell_behind_answers_as_the_log_says,
);

fn save(name: &str) -> SaveDraft {
    SaveDraft {
        content: PostingContent {
            name: name.to_owned(),
            ..support::complete_content()
        },
    }
}

async fn a_posting_goes_from_draft_to_withdrawn_one_version_at_a_time(kind: Kind) {
    let app = App::new(kind).await;
    let owner = employer(ORG_A);
    let created = app
        .commands
        .execute(&ctx(owner.clone(), "create"), None, create_draft(ORG_A))
        .await
        .unwrap();
    let id = created.posting_id;
    let mut outcomes = vec![created];
    outcomes.push(app.ok(&ctx(owner.clone(), "save"), id, save("v2")).await);
    // R-POST-3: a complete draft is submitted for review.
    outcomes.push(
        app.ok(&ctx(owner.clone(), "submit"), id, SubmitForReview)
            .await,
    );
    // R-POST-4: approved on 01-31 for 02-01, public from 00:00 JST on 02-01.
    let approve = ApprovePosting {
        publish_date: date("2026-02-01"),
    };
    outcomes.push(app.ok(&ctx(operator(), "approve"), id, approve).await);
    app.clock.set(jst("2026-02-01T00:00:00"));
    outcomes.push(app.ok(&ctx(service(), "publish"), id, PublishPosting).await);
    // R-POST-6: withdrawal asked at 10:00 takes effect at 22:00 the same day.
    app.clock.set(jst("2026-02-10T10:00:00"));
    outcomes.push(app.ok(&ctx(owner, "withdraw"), id, RequestWithdrawal).await);
    app.clock.set(jst("2026-02-10T22:00:00"));
    outcomes.push(
        app.ok(&ctx(service(), "complete"), id, CompleteWithdrawal)
            .await,
    );

    let versions: Vec<u64> = outcomes.iter().map(|o| o.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
    assert!(outcomes.iter().all(|o| !o.duplicate && o.posting_id == id));
    assert!(
        outcomes
            .windows(2)
            .all(|w| w[0].checkpoint < w[1].checkpoint),
        "each command commits later in the global log: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.stream_id == stream_of(id).as_str())
    );
    assert_eq!(
        app.types(id).await,
        [
            "PostingDrafted",
            "DraftSaved",
            "PostingSubmitted",
            "PostingApproved",
            "PostingPublished",
            "WithdrawalRequested",
            "PostingWithdrawn",
        ]
    );
    let (posting, version) = app.commands.load(id).await.unwrap().unwrap();
    assert_eq!(version, 7);
    assert_eq!(posting.status(), Some(PostingStatus::Withdrawn));
    assert_eq!(posting.published_at(), Some(jst("2026-02-01T00:00:00")));
    assert_eq!(
        posting.withdrawal_effective_at(),
        Some(jst("2026-02-10T22:00:00"))
    );
}

async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    let stale = ctx(employer(ORG_A), "save-1").expecting(0);
    let error = app
        .commands
        .execute(&stale, Some(id), save("stale").into())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected: 0,
                actual: 1
            }
        ),
        "{error:?}"
    );
    assert_eq!(app.version(id).await, 1, "a conflict writes nothing");
    // Nothing was recorded under the command id either: the client may decide again with it.
    let fresh = ctx(employer(ORG_A), "save-1").expecting(1);
    let outcome = app.ok(&fresh, id, save("fresh")).await;
    assert_eq!((outcome.version, outcome.duplicate), (2, false));
}

async fn a_retried_command_answers_its_first_outcome_after_the_posting_moved_on(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    let submit = ctx(employer(ORG_A), "submit-1");
    let first = app.ok(&submit, id, SubmitForReview).await;
    let approve = ApprovePosting {
        publish_date: date("2026-02-01"),
    };
    app.ok(&ctx(operator(), "approve"), id, approve).await;

    // R-POST-3/R-POST-5 would refuse a new SubmitForReview now; the retry is not a new one.
    let retried = app.ok(&submit, id, SubmitForReview).await;
    assert!(retried.duplicate);
    assert_eq!(
        (retried.version, retried.checkpoint, retried.posting_id),
        (first.version, first.checkpoint, first.posting_id)
    );
    // Even with the version the client saw back then.
    let retried = app
        .ok(&submit.clone().expecting(1), id, SubmitForReview)
        .await;
    assert!(retried.duplicate);
    assert_eq!(retried.version, 2);
    assert_eq!(app.version(id).await, 3, "retries write nothing");
    // A CreateDraft retried without an id answers the posting it created.
    let create = ctx(employer(ORG_A), "create");
    let again = app
        .commands
        .execute(&create, None, create_draft(ORG_A))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.posting_id, again.version), (id, 1));
}

async fn a_command_id_reused_for_another_posting_or_command_is_refused(kind: Kind) {
    let app = App::new(kind).await;
    let a = app.create(ORG_A, "create-a").await;
    let b = app.create(ORG_A, "create-b").await;
    let owner = employer(ORG_A);
    app.ok(&ctx(owner.clone(), "save-1"), b, save("b")).await;

    let reused = app
        .commands
        .execute(&ctx(owner.clone(), "save-1"), Some(a), save("a").into())
        .await
        .unwrap_err();
    assert!(matches!(reused, Error::CommandIdReused), "{reused:?}");
    // The create's id names posting a, but a SaveDraft is not the create it was used for.
    let reused = app
        .commands
        .execute(&ctx(owner.clone(), "create-a"), Some(a), save("a").into())
        .await
        .unwrap_err();
    assert!(matches!(reused, Error::CommandIdReused), "{reused:?}");
    // And a create naming another posting than the id's.
    let other = PostingId::new(Uuid::now_v7());
    let reused = app
        .commands
        .execute(&ctx(owner, "create-a"), Some(other), create_draft(ORG_A))
        .await
        .unwrap_err();
    assert!(matches!(reused, Error::CommandIdReused), "{reused:?}");
    assert_eq!(app.version(a).await, 1);
    assert_eq!(app.version(other).await, 0);
}

async fn the_same_command_id_from_two_organisations_is_two_commands(kind: Kind) {
    let app = App::new(kind).await;
    let a = app.create(ORG_A, "same-id").await;
    let b = app.create(ORG_B, "same-id").await;
    assert_ne!(a, b, "organisation B never receives A's outcome");
    for (org, id) in [(ORG_A, a), (ORG_B, b)] {
        let events = app.events(id).await;
        assert_eq!(
            events[0].metadata.command.command_id.as_deref(),
            Some(format!("{org}/same-id").as_str())
        );
        let retried = app
            .commands
            .execute(&ctx(employer(org), "same-id"), None, create_draft(org))
            .await
            .unwrap();
        assert_eq!((retried.posting_id, retried.duplicate), (id, true));
    }
}

async fn create_draft_without_an_id_gets_a_uuid_v7_and_the_callers_organisation(kind: Kind) {
    let app = App::new(kind).await;
    // The command claims organisation B; the caller is A, and A is who owns the posting.
    let outcome = app
        .commands
        .execute(&ctx(employer(ORG_A), "create"), None, create_draft(ORG_B))
        .await
        .unwrap();
    assert_eq!(outcome.posting_id.as_uuid().get_version_num(), 7);
    let (posting, _) = app
        .commands
        .load(outcome.posting_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(posting.posting_id(), Some(outcome.posting_id));
    assert_eq!(posting.organisation_id(), Some(ORG_A));
    // A client-chosen id is kept.
    let chosen = PostingId::new(Uuid::now_v7());
    let outcome = app
        .commands
        .execute(
            &ctx(employer(ORG_A), "create-2"),
            Some(chosen),
            create_draft(ORG_A),
        )
        .await
        .unwrap();
    assert_eq!(outcome.posting_id, chosen);
    // Creating it again is ALREADY_EXISTS, not a silent overwrite.
    let error = app
        .commands
        .execute(
            &ctx(employer(ORG_A), "create-3"),
            Some(chosen),
            create_draft(ORG_A),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Domain(PostingError::AlreadyExists)),
        "{error:?}"
    );
}

async fn an_employer_cannot_touch_another_organisations_posting(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    let intruder = employer(ORG_B);
    let commands: [PostingCommand; 4] = [
        save("taken over").into(),
        DiscardDraft.into(),
        SubmitForReview.into(),
        RequestWithdrawal.into(),
    ];
    for command in commands {
        let name = command.name();
        let error = app
            .commands
            .execute(&ctx(intruder.clone(), &fresh_id()), Some(id), command)
            .await
            .unwrap_err();
        let Error::PermissionDenied(message) = &error else {
            panic!("{name}: expected permission denied, got {error:?}");
        };
        // Never reveal anything of the posting.
        assert!(
            !message.contains("博士") && !message.contains("draft"),
            "{message}"
        );
    }
    assert_eq!(app.version(id).await, 1);
}

async fn operator_and_timer_commands_are_refused_to_other_roles(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    app.ok(&ctx(employer(ORG_A), "submit"), id, SubmitForReview)
        .await;
    let approve = || -> PostingCommand {
        ApprovePosting {
            publish_date: date("2026-02-01"),
        }
        .into()
    };
    let agency = Caller::new("agent-1", Role::Agency, ORG_A.to_string());
    let refused: Vec<(Caller, PostingCommand)> = vec![
        // R-POST-3: only the operator returns or approves a pending request.
        (employer(ORG_A), approve()),
        (
            employer(ORG_A),
            ReturnPosting {
                reasons: vec!["no".into()],
            }
            .into(),
        ),
        (service(), approve()),
        // Publication and withdrawal are the timer's (R-POST-4, R-POST-6).
        (employer(ORG_A), PublishPosting.into()),
        (operator(), PublishPosting.into()),
        (employer(ORG_A), CompleteWithdrawal.into()),
        // Employer commands are the employer's.
        (operator(), save("edited by the operator").into()),
        (agency.clone(), SubmitForReview.into()),
        (agency, create_draft(ORG_A)),
    ];
    for (caller, command) in refused {
        let what = format!("{} by {}", command.name(), caller.role);
        let target = Some(id);
        let error = app
            .commands
            .execute(&ctx(caller, &fresh_id()), target, command)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::PermissionDenied(_)),
            "{what}: {error:?}"
        );
    }
    assert_eq!(app.version(id).await, 2, "refusals write nothing");
    app.ok(&ctx(operator(), "approve"), id, approve()).await;
}

async fn a_posting_that_does_not_exist_is_not_found_for_every_role(kind: Kind) {
    let app = App::new(kind).await;
    let missing = PostingId::new(Uuid::now_v7());
    let attempts: Vec<(Caller, PostingCommand)> = vec![
        (employer(ORG_A), save("x").into()),
        (operator(), approve_for("2026-02-01")),
        (service(), PublishPosting.into()),
    ];
    for (caller, command) in attempts {
        let error = app
            .commands
            .execute(&ctx(caller, &fresh_id()), Some(missing), command)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Domain(PostingError::NotFound)),
            "{error:?}"
        );
    }
    assert!(app.commands.load(missing).await.unwrap().is_none());
}

fn approve_for(day: &str) -> PostingCommand {
    ApprovePosting {
        publish_date: date(day),
    }
    .into()
}

async fn malformed_requests_list_every_field_and_write_nothing(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    let owner = employer(ORG_A);
    let cases = [
        ("", Some(id), "command_id"),
        ("tab\there", Some(id), "command_id"),
        (&*"x".repeat(201), Some(id), "command_id"),
        ("fine", None, "posting_id"),
        ("fine", Some(PostingId::new(Uuid::nil())), "posting_id"),
    ];
    for (command_id, posting_id, field) in cases {
        let error = app
            .commands
            .execute(
                &ctx(owner.clone(), command_id),
                posting_id,
                save("x").into(),
            )
            .await
            .unwrap_err();
        let Error::Invalid(violations) = &error else {
            panic!("{command_id:?}: expected invalid, got {error:?}");
        };
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, field);
    }
    // Every problem at once, so the client fixes them in one round trip.
    let mut both = ctx(owner.clone(), "");
    both.correlation_id = Some(String::new());
    let error = app
        .commands
        .execute(&both, None, save("x").into())
        .await
        .unwrap_err();
    let fields: Vec<&str> = error
        .violations()
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["command_id", "correlation_id", "posting_id"]);
    // 200 characters of Japanese are 600 bytes: accepted, and stored within the store's limit.
    let long = "あ".repeat(200);
    let outcome = app.ok(&ctx(owner, &long), id, save("long id")).await;
    assert_eq!(outcome.version, 2);
    assert_eq!(app.version(id).await, 2);
}

async fn concurrent_commands_without_expected_version_all_commit_through_retries(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    let names = ["one", "two", "three", "four"];
    let saves = names.map(|name| {
        let commands = app.commands.clone();
        tokio::spawn(async move {
            commands
                .execute(&ctx(employer(ORG_A), name), Some(id), save(name).into())
                .await
        })
    });
    let mut versions = BTreeSet::new();
    for handle in saves {
        let outcome = handle.await.unwrap().expect("every writer commits");
        assert!(!outcome.duplicate);
        versions.insert(outcome.version);
    }
    assert_eq!(versions, BTreeSet::from([2, 3, 4, 5]));
    // No lost write: every save is in the stream once, each decided on the one before it.
    let events = app.events(id).await;
    let mut saved = Vec::new();
    for (i, event) in events.iter().enumerate().skip(1) {
        let PostingEvent::DraftSaved {
            content,
            draft_version,
        } = decode(event)
        else {
            panic!("expected DraftSaved, got {}", event.event_type);
        };
        assert_eq!(u64::from(draft_version), u64::try_from(i).unwrap() + 1);
        saved.push(content.name);
    }
    saved.sort();
    let mut expected = names.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(saved, expected);
}

async fn concurrent_retries_of_one_command_commit_once_and_all_answer_its_outcome(kind: Kind) {
    let app = App::new(kind).await;
    // A CreateDraft without an id: each attempt generates its own posting id, yet all of them
    // answer the one posting the first to commit created.
    let creates = [(); 4].map(|()| {
        let commands = app.commands.clone();
        tokio::spawn(async move {
            let create = ctx(employer(ORG_A), "create-once");
            commands.execute(&create, None, create_draft(ORG_A)).await
        })
    });
    let mut created = Vec::new();
    for handle in creates {
        created.push(handle.await.unwrap().expect("every attempt answers"));
    }
    let id = created[0].posting_id;
    assert!(created.iter().all(|o| o.posting_id == id && o.version == 1));
    assert_eq!(created.iter().filter(|o| !o.duplicate).count(), 1);

    // R-POST-3 would refuse a second SubmitForReview; concurrent retries of the first are not one.
    let submits = [(); 4].map(|()| {
        let commands = app.commands.clone();
        tokio::spawn(async move {
            let submit = ctx(employer(ORG_A), "submit-once");
            commands
                .execute(&submit, Some(id), SubmitForReview.into())
                .await
        })
    });
    let mut submitted = Vec::new();
    for handle in submits {
        submitted.push(handle.await.unwrap().expect("every attempt answers"));
    }
    assert!(submitted.iter().all(|o| o.version == 2));
    assert_eq!(submitted.iter().filter(|o| !o.duplicate).count(), 1);
    assert_eq!(app.types(id).await, ["PostingDrafted", "PostingSubmitted"]);
}

async fn snapshots_are_written_every_interval_and_load_like_a_full_fold(kind: Kind) {
    let options = CommandOptions {
        snapshot_every: 3,
        ..CommandOptions::default()
    };
    let app = App::with_options(kind, options).await;
    let id = app.create(ORG_A, "create").await;
    let stream = stream_of(id);
    let owner = employer(ORG_A);
    app.ok(&ctx(owner.clone(), "s2"), id, save("v2")).await;
    assert!(app.store.load_snapshot(&stream).await.unwrap().is_none());
    app.ok(&ctx(owner.clone(), "s3"), id, save("v3")).await;
    let snapshot = app.store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(snapshot.version, 3);
    for n in 4..=7 {
        app.ok(
            &ctx(owner.clone(), &format!("s{n}")),
            id,
            save(&format!("v{n}")),
        )
        .await;
    }
    let snapshot = app.store.load_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(snapshot.version, 6, "crossing 6 snapshots; 7 does not");

    let full_fold = || async {
        let mut posting = Posting::default();
        for event in app.events(id).await {
            cqrs_es::Aggregate::apply(&mut posting, decode(&event));
        }
        posting
    };
    let at_six: Posting = serde_json::from_value(snapshot.state.clone()).unwrap();
    assert_eq!(at_six.draft_version(), Some(6));
    let (loaded, version) = app.commands.load(id).await.unwrap().unwrap();
    assert_eq!(version, 7);
    assert_eq!(loaded, full_fold().await);
    assert_eq!(loaded.content().unwrap().name, "v7");

    // A snapshot that no longer decodes is only a cache miss.
    let broken = Snapshot {
        version: 7,
        state: serde_json::json!({"state": "not a posting"}),
        sequence: 99,
    };
    app.store.save_snapshot(&stream, broken).await.unwrap();
    let (loaded, version) = app.commands.load(id).await.unwrap().unwrap();
    assert_eq!((version, loaded), (7, full_fold().await));
    let outcome = app.ok(&ctx(owner, "s8"), id, save("v8")).await;
    assert_eq!(outcome.version, 8);
}

async fn refusals_name_the_rule_that_refuses_them(kind: Kind) {
    let app = App::new(kind).await;
    let owner = employer(ORG_A);
    // R-POST-3: an incomplete draft cannot be submitted; the gaps are listed.
    let sparse = CreateDraft {
        posting_id: PostingId::new(Uuid::nil()),
        organisation_id: ORG_A,
        language: Language::En,
        content: minimal_content(),
        reused_from: None,
    };
    let id = app
        .commands
        .execute(&ctx(owner.clone(), "create"), None, sparse.into())
        .await
        .unwrap()
        .posting_id;
    let error = app
        .commands
        .execute(
            &ctx(owner.clone(), &fresh_id()),
            Some(id),
            SubmitForReview.into(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.rule_id(), Some("R-POST-3"), "{error:?}");
    assert!(
        error
            .violations()
            .iter()
            .any(|v| v.field == "content.description")
    );

    // R-POST-3: no editing while the request is pending review.
    app.ok(&ctx(owner.clone(), "save"), id, save("complete"))
        .await;
    app.ok(&ctx(owner.clone(), "submit"), id, SubmitForReview)
        .await;
    let error = app
        .commands
        .execute(
            &ctx(owner.clone(), &fresh_id()),
            Some(id),
            save("edit").into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Domain(PostingError::Rule {
                rule: "R-POST-3",
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(error.rule_id(), Some("R-POST-3"));

    // Invalid content is the request's fault, not a rule's: INVALID_ARGUMENT.
    let error = app
        .commands
        .execute(
            &ctx(operator(), &fresh_id()),
            Some(id),
            ReturnPosting { reasons: vec![] }.into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Domain(PostingError::InvalidContent(_))),
        "{error:?}"
    );
    assert_eq!(error.violations()[0].field, "reasons");

    // R-POST-4: not published before it is due.
    app.ok(&ctx(operator(), "approve"), id, approve_for("2026-02-01"))
        .await;
    let error = app
        .commands
        .execute(
            &ctx(service(), &fresh_id()),
            Some(id),
            PublishPosting.into(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.rule_id(), Some("R-POST-4"), "{error:?}");
    assert_eq!(app.version(id).await, 4, "refusals write nothing");
}

async fn events_carry_the_callers_metadata(kind: Kind) {
    let app = App::new(kind).await;
    let id = app.create(ORG_A, "create").await;
    let mut submit = ctx(employer(ORG_A), "submit");
    submit.causation_id = Some("ui-click-7".into());
    app.ok(&submit, id, SubmitForReview).await;
    let mut approve = ctx(operator(), "approve");
    approve.correlation_id = Some("review-session-1".into());
    app.ok(&approve, id, approve_for("2026-02-01")).await;

    let events = app.events(id).await;
    let meta: Vec<_> = events.iter().map(|e| &e.metadata.command).collect();
    let a = ORG_A.to_string();
    assert_eq!(meta[1].command_id.as_deref(), Some(&*format!("{a}/submit")));
    assert_eq!(
        meta[1].correlation_id, meta[1].command_id,
        "defaults to the command id"
    );
    assert_eq!(meta[1].causation_id.as_deref(), Some("ui-click-7"));
    assert_eq!(meta[1].actor.as_deref(), Some(&*format!("staff@{a}")));
    assert_eq!(
        meta[1].extra.get("role").map(String::as_str),
        Some("employer")
    );
    // The posting's organisation, even when the operator acts.
    assert_eq!(meta[2].organisation.as_deref(), Some(a.as_str()));
    assert_eq!(meta[2].actor.as_deref(), Some("reviewer-1"));
    assert_eq!(meta[2].command_id.as_deref(), Some("operator/approve"));
    assert_eq!(meta[2].correlation_id.as_deref(), Some("review-session-1"));
    assert_eq!(
        meta[2].extra.get("role").map(String::as_str),
        Some("operator")
    );
    assert!(
        meta.iter()
            .all(|m| m.organisation.as_deref() == Some(a.as_str()))
    );
}

async fn reuse_creates_a_linked_draft_from_a_past_posting_of_the_same_organisation(kind: Kind) {
    // R-POST-7: any past posting of the organisation, here an approved one, is the source.
    let app = App::new(kind).await;
    let source = app.approved("2026-02-01").await;
    let reuse_ctx = ctx(employer(ORG_A), "reuse-1");
    let outcome = app
        .commands
        .reuse(&reuse_ctx, None, source)
        .await
        .expect("reuse");
    assert_eq!(outcome.version, 1);
    assert_ne!(outcome.posting_id, source);
    let (copy, _) = app
        .commands
        .load(outcome.posting_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copy.status(), Some(PostingStatus::Draft));
    assert_eq!(copy.reused_from(), Some(source));
    assert_eq!(copy.organisation_id(), Some(ORG_A));
    assert_eq!(copy.content(), Some(&support::complete_content()));
    assert_eq!(copy.draft_version(), Some(1));

    // A retry answers the same draft.
    let again = app.commands.reuse(&reuse_ctx, None, source).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.posting_id, outcome.posting_id);

    // Another organisation's posting cannot be reused, nor by an operator.
    let denied = app
        .commands
        .reuse(&ctx(employer(ORG_B), "reuse-2"), None, source)
        .await;
    assert!(
        matches!(denied, Err(Error::PermissionDenied(_))),
        "{denied:?}"
    );
    let denied = app
        .commands
        .reuse(&ctx(operator(), "reuse-3"), None, source)
        .await;
    assert!(
        matches!(denied, Err(Error::PermissionDenied(_))),
        "{denied:?}"
    );
    let missing = app
        .commands
        .reuse(
            &ctx(employer(ORG_A), "reuse-4"),
            None,
            Uuid::now_v7().into(),
        )
        .await;
    assert!(
        matches!(missing, Err(Error::Domain(PostingError::NotFound))),
        "{missing:?}"
    );
}

/// Two instances on one log, each keeping the postings it wrote in memory. When the other moved a
/// posting on, the first instance's cached copy is behind: every answer it gives is still the one
/// the log gives — an append without expected version commits (after one store conflict), an
/// expected version that matches the log (not the cache) is accepted, a stale one is a conflict
/// naming the log's version, and a refusal follows the log's state.
async fn an_instance_whose_cached_posting_fell_behind_answers_as_the_log_says(kind: Kind) {
    let app = App::new(kind).await;
    let other = PostingCommands::new(app.store.clone(), app.dyn_clock());
    let id = app.create(ORG_A, "create").await;
    app.ok(&ctx(employer(ORG_A), "a-1"), id, save("here")).await;

    // The other instance moves the posting on: v3.
    let moved = other
        .execute(&ctx(employer(ORG_A), "b-1"), Some(id), save("there").into())
        .await
        .unwrap();
    assert_eq!(moved.version, 3);

    // No expected version: this instance's copy (v2) is refused by the store, read again, and
    // the save commits on top of the other instance's.
    let outcome = app
        .ok(&ctx(employer(ORG_A), "a-2"), id, save("here again"))
        .await;
    assert_eq!(outcome.version, 4);

    let moved = other
        .execute(
            &ctx(employer(ORG_A), "b-2"),
            Some(id),
            save("there again").into(),
        )
        .await
        .unwrap();
    assert_eq!(moved.version, 5);
    // The client read v5 (from the other instance): accepted, though this cache says v4.
    let outcome = app
        .ok(
            &ctx(employer(ORG_A), "a-3").expecting(5),
            id,
            save("current"),
        )
        .await;
    assert_eq!(outcome.version, 6);
    // A really stale expectation is a conflict naming the log's version.
    other
        .execute(
            &ctx(employer(ORG_A), "b-3"),
            Some(id),
            save("and again").into(),
        )
        .await
        .unwrap();
    let error = app
        .commands
        .execute(
            &ctx(employer(ORG_A), "a-4").expecting(6),
            Some(id),
            save("late").into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected: 6,
                actual: 7
            }
        ),
        "{error:?}"
    );

    // The other instance submits it for review; a save here is refused as the log's state says
    // (R-POST-3: a posting pending review cannot be saved), not decided on the cached draft.
    other
        .execute(
            &ctx(employer(ORG_A), "b-4"),
            Some(id),
            SubmitForReview.into(),
        )
        .await
        .unwrap();
    let refused = app
        .commands
        .execute(
            &ctx(employer(ORG_A), "a-5"),
            Some(id),
            save("in review").into(),
        )
        .await;
    let direct = other
        .execute(
            &ctx(employer(ORG_A), "b-5"),
            Some(id),
            save("in review").into(),
        )
        .await;
    assert_eq!(format!("{refused:?}"), format!("{direct:?}"));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(app.version(id).await, 8, "the refusals wrote nothing");
}
