//! The postings view on SQLite and PostgreSQL: it follows a posting through its life, and lists
//! page newest first with filters and stable keyset tokens.

mod support;

use chrono::{DateTime, Utc};
use jobboard_domain::posting::{Language, PostingId};
use jobboard_domain::{PostingEvent, PostingStatus};
use jobboard_projections::Error;
use jobboard_projections::postings::{PostingPage, PostingsView};
use support::{
    Kind, TestDb, all_postings, append, caught_up, content, date, drafted, organisation,
    posting_id, spawn_postings, stop,
};

jobboard_testkit::on_both_backends!(
    the_view_follows_a_posting_through_its_lifecycle,
    modifications_drafts_and_the_review_queue_follow_the_log,
    lists_page_newest_first_with_filters_and_stable_tokens,
);

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

async fn the_view_follows_a_posting_through_its_lifecycle(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let (runtime, shutdown) = spawn_postings(&store, &db).await;
    let view = PostingsView::new(db.clone());
    let (id, org) = (posting_id(1), organisation(1));

    // Each step appends, waits for the view (read-your-writes), and reads the row back.
    let step = async |events: &[PostingEvent]| {
        let at = t.clock.advance(60);
        let outcome = append(&store, id, events).await;
        caught_up(&runtime, outcome.checkpoint).await;
        let row = view
            .get(id)
            .await
            .unwrap()
            .expect("the posting is in the view");
        assert_eq!(row.version, outcome.stream_version);
        assert_eq!(row.updated_at, at);
        row
    };

    let row = step(&[drafted(id, org, "Postdoc")]).await;
    let created_at = row.created_at;
    assert_eq!(created_at, row.updated_at);
    assert_eq!(row.posting_id, id);
    assert_eq!(row.organisation_id, org);
    assert_eq!(row.status, PostingStatus::Draft);
    assert_eq!(row.language, Language::En);
    assert_eq!(row.content, content("Postdoc"));
    assert_eq!(row.draft_version, 1);
    assert!(row.return_reasons.is_empty());
    assert_eq!(row.publish_date, None);
    assert_eq!(row.publishes_at, None);

    let revised = content("Postdoc, revised");
    let row = step(&[PostingEvent::DraftSaved {
        content: revised.clone(),
        draft_version: 2,
    }])
    .await;
    assert_eq!((row.status, row.draft_version), (PostingStatus::Draft, 2));
    assert_eq!(row.content, revised);
    assert_eq!(row.created_at, created_at);

    let row = step(&[PostingEvent::PostingSubmitted {
        content: revised.clone(),
        draft_version: 2,
    }])
    .await;
    assert_eq!(row.status, PostingStatus::PendingReview);

    let reasons = vec!["Please state the salary range.".to_owned()];
    let row = step(&[PostingEvent::PostingReturned {
        reasons: reasons.clone(),
    }])
    .await;
    assert_eq!(row.status, PostingStatus::Returned);
    assert_eq!(row.return_reasons, reasons);

    // Two events in one append: both apply, in order.
    let final_content = content("Postdoc, with salary");
    let row = step(&[
        PostingEvent::DraftSaved {
            content: final_content.clone(),
            draft_version: 3,
        },
        PostingEvent::PostingSubmitted {
            content: final_content.clone(),
            draft_version: 3,
        },
    ])
    .await;
    assert_eq!(row.status, PostingStatus::PendingReview);
    assert_eq!((row.version, row.draft_version), (6, 3));
    assert_eq!(row.content, final_content);

    let publishes_at = utc("2026-01-31T15:00:00Z");
    let row = step(&[PostingEvent::PostingApproved {
        publish_date: date(2026, 2, 1),
        publishes_at,
    }])
    .await;
    assert_eq!(row.status, PostingStatus::Approved);
    assert_eq!(row.publish_date, Some(date(2026, 2, 1)));
    assert_eq!(row.publishes_at, Some(publishes_at));

    // A v1 publication (no content, no deadlines) keeps the submitted content.
    let published_at = utc("2026-01-31T15:00:00.012345Z");
    let row = step(&[PostingEvent::PostingPublished {
        published_at,
        content: None,
        expires_at: None,
        modifiable_until: None,
    }])
    .await;
    assert_eq!(row.status, PostingStatus::Published);
    assert_eq!(row.published_at, Some(published_at));
    assert_eq!(row.content, final_content);
    assert_eq!(row.expires_at, None);

    let effective_at = utc("2026-02-10T13:00:00Z");
    let row = step(&[PostingEvent::WithdrawalRequested {
        requested_at: utc("2026-02-10T01:00:00Z"),
        effective_at,
    }])
    .await;
    assert_eq!(row.status, PostingStatus::WithdrawalPending);
    assert_eq!(row.withdrawal_effective_at, Some(effective_at));

    let withdrawn_at = utc("2026-02-10T13:00:00.5Z");
    let row = step(&[PostingEvent::PostingWithdrawn { withdrawn_at }]).await;
    assert_eq!(row.status, PostingStatus::Withdrawn);
    assert_eq!(row.withdrawn_at, Some(withdrawn_at));
    assert_eq!(row.version, 10);
    assert_eq!(row.ended_at, Some(withdrawn_at));
    assert_eq!(
        row.draft_version, 3,
        "draft versions are set, never counted"
    );
    assert_eq!(row.created_at, created_at);
    assert_eq!(
        row.return_reasons, reasons,
        "the last return's reasons stay"
    );
    assert_eq!(row.publishes_at, Some(publishes_at));

    // A discarded draft.
    let other = posting_id(2);
    append(&store, other, &[drafted(other, org, "Technician")]).await;
    let outcome = append(&store, other, &[PostingEvent::DraftDiscarded]).await;
    caught_up(&runtime, outcome.checkpoint).await;
    let row = view.get(other).await.unwrap().unwrap();
    assert_eq!((row.status, row.version), (PostingStatus::Discarded, 2));

    assert_eq!(view.get(posting_id(99)).await.unwrap(), None);
    stop(&runtime, &shutdown).await;
}

fn ids(page: &PostingPage) -> Vec<PostingId> {
    page.postings.iter().map(|p| p.posting_id).collect()
}

async fn lists_page_newest_first_with_filters_and_stable_tokens(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let (runtime, shutdown) = spawn_postings(&store, &db).await;
    let view = PostingsView::new(db.clone());
    let (a, b) = (organisation(1), organisation(2));
    let p = posting_id;

    // Created at t0 .. t4; p2, p3 and p6 share t1, so the posting id breaks the tie.
    let mut last = Default::default();
    for (n, org, tick, submit) in [
        (1, a, 0, false),
        (2, a, 1, true),
        (3, a, 0, false),
        (6, b, 0, true),
        (4, a, 1, true),
        (5, a, 1, false),
        (7, b, 1, false),
    ] {
        t.clock.advance(tick);
        let mut events = vec![drafted(p(n), org, &format!("Posting {n}"))];
        if submit {
            events.push(PostingEvent::PostingSubmitted {
                content: content(&format!("Posting {n}")),
                draft_version: 1,
            });
        }
        last = append(&store, p(n), &events).await.checkpoint;
    }
    caught_up(&runtime, last).await;

    let everything = all_postings(&view).await;
    let order: Vec<_> = everything.iter().map(|r| r.posting_id).collect();
    assert_eq!(order, [p(7), p(5), p(4), p(6), p(3), p(2), p(1)]);

    // An organisation's postings, two at a time.
    let page1 = view.list(Some(a), None, 2, None).await.unwrap();
    assert_eq!(ids(&page1), [p(5), p(4)]);
    let token = page1.next_page_token.clone().expect("more pages");

    // A posting created meanwhile sorts before page 1: later pages neither repeat nor skip.
    t.clock.advance(1);
    let newer = append(&store, p(8), &[drafted(p(8), a, "Posting 8")]).await;
    caught_up(&runtime, newer.checkpoint).await;
    let page2 = view.list(Some(a), None, 2, Some(&token)).await.unwrap();
    assert_eq!(ids(&page2), [p(3), p(2)]);
    let page3 = view
        .list(Some(a), None, 2, page2.next_page_token.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&page3), [p(1)]);
    assert_eq!(page3.next_page_token, None);
    // The same token gives the same page again.
    let again = view.list(Some(a), None, 2, Some(&token)).await.unwrap();
    assert_eq!(again, page2);

    let pending = Some(PostingStatus::PendingReview);
    let review = view.list(None, pending, 0, None).await.unwrap();
    assert_eq!(ids(&review), [p(4), p(6), p(2)]);
    assert!(
        review
            .postings
            .iter()
            .all(|r| r.status == PostingStatus::PendingReview)
    );
    let review_a = view.list(Some(a), pending, 0, None).await.unwrap();
    assert_eq!(ids(&review_a), [p(4), p(2)]);
    let drafts_b = view
        .list(Some(b), Some(PostingStatus::Draft), 0, None)
        .await
        .unwrap();
    assert_eq!(ids(&drafts_b), [p(7)]);
    let nobody = view
        .list(Some(organisation(9)), None, 0, None)
        .await
        .unwrap();
    assert_eq!(nobody.postings, []);
    assert_eq!(nobody.next_page_token, None);

    // Page size 0 is the default, oversized pages are cut; an empty token is the first page.
    let all = view.list(None, None, 0, Some("")).await.unwrap();
    assert_eq!(all.postings.len(), 8);
    assert_eq!(all.next_page_token, None);
    assert_eq!(view.list(None, None, 100_000, None).await.unwrap(), all);

    for bad in ["garbage!", "cDE6MTI6eA", &token[..token.len() - 3]] {
        let result = view.list(Some(a), None, 2, Some(bad)).await;
        assert!(
            matches!(result, Err(Error::InvalidPageToken)),
            "{bad}: {result:?}"
        );
    }
    stop(&runtime, &shutdown).await;
}

async fn modifications_drafts_and_the_review_queue_follow_the_log(kind: Kind) {
    let t = TestDb::new(kind).await;
    let store = t.store().await;
    let db = t.views().await;
    let (runtime, shutdown) = spawn_postings(&store, &db).await;
    let view = PostingsView::new(db.clone());
    let org = organisation(1);
    let (first, second) = (posting_id(1), posting_id(2));

    // R-POST-2: every saved version stays readable.
    t.clock.advance(60);
    append(&store, first, &[drafted(first, org, "v1")]).await;
    t.clock.advance(60);
    append(
        &store,
        first,
        &[PostingEvent::DraftSaved {
            content: content("v2"),
            draft_version: 2,
        }],
    )
    .await;
    let versions = |rows: Vec<jobboard_projections::postings::DraftVersionRow>| {
        rows.into_iter()
            .map(|d| (d.draft_version, d.content.title))
            .collect::<Vec<_>>()
    };

    // R-POST-3: the queue holds pending requests, oldest first.
    let submit = |title: &str| PostingEvent::PostingSubmitted {
        content: content(title),
        draft_version: 2,
    };
    let early = t.clock.advance(60);
    append(&store, first, &[submit("v2")]).await;
    t.clock.advance(60);
    append(&store, second, &[drafted(second, org, "other")]).await;
    t.clock.advance(60);
    let outcome = append(
        &store,
        second,
        &[PostingEvent::PostingSubmitted {
            content: content("other"),
            draft_version: 1,
        }],
    )
    .await;
    caught_up(&runtime, outcome.checkpoint).await;
    assert_eq!(
        versions(view.draft_versions(first).await.unwrap()),
        [(1, "v1".to_owned()), (2, "v2".to_owned())]
    );
    let queue = view.review_queue(0, None).await.unwrap();
    let queued: Vec<_> = queue.iter().map(|r| r.posting_id).collect();
    assert_eq!(queued, [first, second]);
    assert_eq!(queue[0].review_requested_at, Some(early));
    let next = view.review_queue(1, Some((early, first))).await.unwrap();
    assert_eq!(
        next.iter().map(|r| r.posting_id).collect::<Vec<_>>(),
        [second]
    );

    // Approved and published: off the queue, with deadlines.
    t.clock.advance(60);
    append(
        &store,
        first,
        &[
            PostingEvent::PostingApproved {
                publish_date: date(2026, 2, 1),
                publishes_at: utc("2026-01-31T15:00:00Z"),
            },
            PostingEvent::PostingPublished {
                published_at: utc("2026-01-31T15:00:00Z"),
                content: Some(content("v2")),
                expires_at: Some(utc("2026-03-31T15:00:00Z")),
                modifiable_until: Some(utc("2026-04-14T15:00:00Z")),
            },
        ],
    )
    .await;

    // R-POST-5: a modification waits beside the public content, and queues for review.
    let asked = utc("2026-02-05T01:00:00Z");
    t.clock.advance(60);
    let outcome = append(
        &store,
        first,
        &[PostingEvent::ModificationRequested {
            content: content("v3"),
            requested_at: asked,
        }],
    )
    .await;
    caught_up(&runtime, outcome.checkpoint).await;
    let row = view.get(first).await.unwrap().unwrap();
    assert_eq!(row.content.title, "v2", "the public content stays");
    assert_eq!(row.expires_at, Some(utc("2026-03-31T15:00:00Z")));
    let modification = row.modification.expect("pending");
    assert_eq!(modification.content.title, "v3");
    assert_eq!(modification.requested_at, asked);
    assert_eq!(
        modification.status,
        jobboard_domain::posting::ModificationStatus::PendingReview
    );
    let queued: Vec<_> = view
        .review_queue(0, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.posting_id)
        .collect();
    assert_eq!(queued, [second, first], "the modification asked later");

    t.clock.advance(60);
    let outcome = append(
        &store,
        first,
        &[
            PostingEvent::ModificationApproved {
                publish_date: date(2026, 2, 8),
                effective_at: utc("2026-02-07T15:00:00Z"),
            },
            PostingEvent::ModificationPublished {
                content: content("v3"),
                published_at: utc("2026-02-07T15:00:00Z"),
                expires_at: Some(utc("2026-04-30T15:00:00Z")),
                modifiable_until: Some(utc("2026-05-14T15:00:00Z")),
            },
            PostingEvent::PostingExpired {
                expired_at: utc("2026-04-30T15:00:00Z"),
            },
            PostingEvent::ModificationsLocked {
                locked_at: utc("2026-05-14T15:00:00Z"),
            },
        ],
    )
    .await;
    caught_up(&runtime, outcome.checkpoint).await;
    let row = view.get(first).await.unwrap().unwrap();
    assert_eq!(row.content.title, "v3");
    assert_eq!(row.modification, None);
    assert_eq!(row.status, PostingStatus::Expired);
    assert_eq!(row.ended_at, Some(utc("2026-04-30T15:00:00Z")));
    assert!(row.modifications_locked);
    assert_eq!(row.review_requested_at, None);

    // R-POST-7: cancelling ends a posting at once.
    let outcome = append(
        &store,
        second,
        &[
            PostingEvent::PostingApproved {
                publish_date: date(2026, 2, 1),
                publishes_at: utc("2026-01-31T15:00:00Z"),
            },
            PostingEvent::PostingCancelled {
                cancelled_at: utc("2026-01-31T16:00:00Z"),
            },
        ],
    )
    .await;
    caught_up(&runtime, outcome.checkpoint).await;
    let row = view.get(second).await.unwrap().unwrap();
    assert_eq!(row.status, PostingStatus::Cancelled);
    assert!(view.review_queue(0, None).await.unwrap().is_empty());
    stop(&runtime, &shutdown).await;
}
