//! Notifications and access counts over gRPC: a consumer that reconnects with its last cursor
//! neither misses nor repeats a notification; the monthly referral notice arrives after the
//! 20th; page views roll up into a ranking (R-POST-3, R-POST-4, R-POST-8, R-POST-9).

use jobboard_proto::v1 as pb;
use jobboard_proto::v1::{NotificationKind, PostingStatus};
use tonic::Code;

use crate::support::{Backend, TestApp, command_id, date, employer, jst, operator, poll, service};

jobboard_testkit::on_both_backends!(
    a_consumer_resuming_from_its_cursor_misses_and_repeats_nothing,
    views_roll_up_into_a_ranking_of_the_employers_postings,
);

fn kinds(notifications: &[pb::Notification]) -> Vec<(u64, i32)> {
    notifications.iter().map(|n| (n.cursor, n.kind)).collect()
}

async fn a_consumer_resuming_from_its_cursor_misses_and_repeats_nothing(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let mailer = service();

    // A consumer watches from the start.
    let mut watch = app
        .notifications(&mailer)
        .watch_notifications(pb::WatchNotificationsRequest::default())
        .await
        .expect("WatchNotifications")
        .into_inner();

    let (id, _) = app.submitted(&staff).await;
    app.postings(Some(&operator()))
        .return_posting(pb::ReturnPostingRequest {
            command_id: command_id(),
            posting_id: id.clone(),
            expected_version: None,
            reasons: vec!["給与を明記してください".into()],
        })
        .await
        .expect("ReturnPosting");
    let first = watch.message().await.expect("ok").expect("a notification");
    assert_eq!(first.cursor, 1);
    assert_eq!(first.kind, NotificationKind::RegistrationReturned as i32);
    assert_eq!(first.posting_id, id);
    assert_eq!(first.title, "ポスドク研究員");
    assert_eq!(first.reasons, ["給与を明記してください"]);
    assert_eq!(first.organisation_id, staff.organisation);

    // It goes away; meanwhile the posting is approved and published.
    drop(watch);
    app.submit(&staff, &id).await;
    app.approve(&id, date(2026, 2, 1)).await.expect("approve");
    app.clock.set(jst("2026-02-01T00:00:00"));
    app.wait_for_status(&id, PostingStatus::Published).await;

    // Back with its cursor: exactly what it missed, then live.
    let mut watch = app
        .notifications(&mailer)
        .watch_notifications(pb::WatchNotificationsRequest {
            after_cursor: first.cursor,
            organisation_id: String::new(),
        })
        .await
        .expect("WatchNotifications again")
        .into_inner();
    let mut missed = Vec::new();
    for _ in 0..2 {
        missed.push(watch.message().await.expect("ok").expect("a notification"));
    }
    assert_eq!(
        kinds(&missed),
        [
            (2, NotificationKind::RegistrationApproved as i32),
            (3, NotificationKind::Published as i32),
        ]
    );

    // R-POST-9: after the 20th, the employer's referral notice (the fixture's referral period
    // ends on 03-31).
    app.clock.set(jst("2026-03-21T00:00:00"));
    let notice = watch.message().await.expect("ok").expect("the notice");
    assert_eq!(notice.cursor, 4);
    assert_eq!(notice.kind, NotificationKind::MonthlyReferralNotice as i32);
    assert_eq!(notice.month, "2026-03");
    assert_eq!(notice.postings.len(), 1);
    assert_eq!(notice.postings[0].posting_id, id);
    assert_eq!(
        notice.postings[0].referral_period_end,
        Some(date(2026, 3, 31))
    );

    // The employer lists its own; another employer sees nothing of them.
    let own = app
        .notifications(&staff)
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .expect("ListNotifications")
        .into_inner()
        .notifications;
    assert_eq!(
        own.iter().map(|n| n.cursor).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let ids: Vec<_> = own.iter().map(|n| n.notification_id.clone()).collect();
    let again = app
        .notifications(&mailer)
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(
        again
            .iter()
            .map(|n| n.notification_id.clone())
            .collect::<Vec<_>>(),
        ids,
        "ids are stable"
    );
    let stranger = app
        .notifications(&employer())
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert!(stranger.is_empty());
    let denied = app
        .notifications(&employer())
        .list_notifications(pb::ListNotificationsRequest {
            organisation_id: staff.organisation.clone(),
            ..Default::default()
        })
        .await
        .expect_err("another organisation's notifications");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

async fn views_roll_up_into_a_ranking_of_the_employers_postings(backend: Backend) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (popular, _) = app.create_draft(&staff).await;
    let (quiet, _) = app.create_draft(&staff).await;
    let mut site = app.access(&service());
    site.record_posting_views(pb::RecordPostingViewsRequest {
        posting_ids: vec![popular.clone(), popular.clone(), quiet.clone()],
    })
    .await
    .expect("RecordPostingViews");
    site.record_posting_views(pb::RecordPostingViewsRequest {
        posting_ids: vec![popular.clone()],
    })
    .await
    .expect("RecordPostingViews");

    // R-POST-8: listed by total, most viewed first.
    let mut own = app.access(&staff);
    let ranking = poll("the views are counted", || {
        let mut own = own.clone();
        async move {
            let postings = own
                .list_most_viewed_postings(pb::ListMostViewedPostingsRequest::default())
                .await
                .expect("ListMostViewedPostings")
                .into_inner()
                .postings;
            (postings.iter().map(|p| p.total_views).sum::<u64>() == 4).then_some(postings)
        }
    })
    .await;
    let totals: Vec<_> = ranking
        .iter()
        .map(|p| (p.posting_id.as_str(), p.total_views))
        .collect();
    assert_eq!(totals, [(popular.as_str(), 3), (quiet.as_str(), 1)]);

    // Only the site reports views; a malformed id lists its field.
    let denied = own
        .record_posting_views(pb::RecordPostingViewsRequest {
            posting_ids: vec![popular.clone()],
        })
        .await
        .expect_err("employers do not report views");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let invalid = site
        .record_posting_views(pb::RecordPostingViewsRequest {
            posting_ids: vec!["not-a-uuid".into()],
        })
        .await
        .expect_err("a bad id");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid.message().contains("posting_ids[0]"),
        "{}",
        invalid.message()
    );
    // Another employer ranks none of these.
    let other = app
        .access(&employer())
        .list_most_viewed_postings(pb::ListMostViewedPostingsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .postings;
    assert!(other.is_empty());
}
