//! When an approved posting goes public (R-POST-4): 22:00 on the approval day, 00:00 on a later
//! day, never in the past.

use jobboard_proto::v1::PostingStatus;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::support::{Backend, TestApp, date, employer, jst, operator, timestamp};

jobboard_testkit::on_both_backends!(
    publication_is_at_22_00_on_the_approval_day_at_00_00_later_and_never_in_the_past
);

async fn publication_is_at_22_00_on_the_approval_day_at_00_00_later_and_never_in_the_past(
    backend: Backend,
) {
    let app = TestApp::start(backend, jst("2026-01-30T10:00:00")).await;
    let staff = employer();
    let (today, _) = app.submitted(&staff).await;
    let (tomorrow, _) = app.submitted(&staff).await;
    let (yesterday, submitted) = app.submitted(&staff).await;
    let operator = operator();

    // R-POST-4: approved for the approval day, it goes public at 22:00 that evening.
    let approved = app.approve(&today, date(2026, 1, 30)).await.expect("today");
    let posting = app.get(&operator, &today, approved.position).await;
    assert_eq!(posting.status, PostingStatus::Approved as i32);
    assert_eq!(
        posting.publishes_at,
        Some(timestamp(jst("2026-01-30T22:00:00")))
    );

    // R-POST-4: approved for a later day, it goes public at 00:00 of that day.
    let approved = app
        .approve(&tomorrow, date(2026, 1, 31))
        .await
        .expect("tomorrow");
    let posting = app.get(&operator, &tomorrow, approved.position).await;
    assert_eq!(
        posting.publishes_at,
        Some(timestamp(jst("2026-01-31T00:00:00")))
    );

    // R-POST-4: a publish date before the approval day is refused, and nothing changes.
    let status = app
        .approve(&yesterday, date(2026, 1, 29))
        .await
        .expect_err("a past publish date is refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, "R-POST-4");
    assert_eq!(info.domain, "jobboard");
    let posting = app.get(&operator, &yesterday, submitted.position).await;
    assert_eq!(posting.status, PostingStatus::PendingReview as i32);
    assert_eq!(posting.version, 2);

    // And the timers keep to it: the first goes public at 22:00, the second at midnight.
    app.clock.set(jst("2026-01-30T22:00:00"));
    app.wait_for_status(&today, PostingStatus::Published).await;
    app.clock.set(jst("2026-01-31T00:00:00"));
    let posting = app
        .wait_for_status(&tomorrow, PostingStatus::Published)
        .await;
    assert_eq!(
        posting.published_at,
        Some(timestamp(jst("2026-01-31T00:00:00")))
    );
}
