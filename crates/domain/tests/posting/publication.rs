//! Approval and scheduled publication: R-POST-4, with Tokyo business time at every boundary.

use jobboard_domain::posting::{
    ApprovePosting, DueTimer, PostingEvent, PostingStatus, PublishPosting, TimerKind, due_timers,
    settled_timers,
};

use crate::support::{
    ALL_STATUSES, approved, at, date, history, jst, published, published_at, refused_by, replay,
};

fn approve(publish_date: &str) -> jobboard_domain::PostingCommand {
    ApprovePosting {
        publish_date: date(publish_date),
    }
    .into()
}

/// Approving a pending posting at `now` for `publish_date` records this approval.
fn expect_approval(now: &str, publish_date: &str, publishes_at: &str) {
    at(jst(now))
        .given(history(PostingStatus::PendingReview))
        .when(approve(publish_date))
        .then_expect_events(vec![PostingEvent::PostingApproved {
            publish_date: date(publish_date),
            publishes_at: jst(publishes_at),
        }]);
}

#[test]
fn approving_for_today_before_22_00_publishes_at_22_00() {
    // R-POST-4: approval day → 22:00 that day.
    expect_approval("2026-01-31T21:59:00", "2026-01-31", "2026-01-31T22:00:00");
}

#[test]
fn approving_for_today_at_exactly_22_00_publishes_at_22_00() {
    // R-POST-4
    expect_approval("2026-01-31T22:00:00", "2026-01-31", "2026-01-31T22:00:00");
}

#[test]
fn approving_for_today_after_22_00_publishes_at_once() {
    // R-POST-4: 22:00 has passed, so publication is due at the approval instant itself.
    expect_approval("2026-01-31T23:30:00", "2026-01-31", "2026-01-31T23:30:00");
}

#[test]
fn approving_for_tomorrow_publishes_at_midnight_tokyo() {
    // R-POST-4: any later date → 00:00 of that date; here across the month end.
    expect_approval("2026-01-31T10:00:00", "2026-02-01", "2026-02-01T00:00:00");
    // 00:00 JST on 02-01 is still 01-31 in UTC.
    assert_eq!(
        jst("2026-02-01T00:00:00").to_rfc3339(),
        "2026-01-31T15:00:00+00:00"
    );
}

#[test]
fn approving_for_tomorrow_late_in_the_evening_still_waits_for_midnight() {
    // R-POST-4: the 22:00 rule is for the approval day only.
    expect_approval("2026-01-31T23:30:00", "2026-02-01", "2026-02-01T00:00:00");
}

#[test]
fn approving_for_a_later_date_publishes_at_its_midnight_across_the_year_end() {
    // R-POST-4
    expect_approval("2025-12-31T09:00:00", "2026-01-05", "2026-01-05T00:00:00");
}

#[test]
fn approving_for_a_past_date_is_refused() {
    // R-POST-4: a publish date must be today or later.
    let message = refused_by(
        at(jst("2026-01-31T00:00:00"))
            .given(history(PostingStatus::PendingReview))
            .when(approve("2026-01-30")),
        "R-POST-4",
    );
    assert_eq!(
        message,
        "publish date 2026-01-30 is before today (2026-01-31, Asia/Tokyo)"
    );
}

#[test]
fn today_is_the_tokyo_date_not_the_utc_date() {
    // R-POST-4: at 08:00 JST on 02-01 it is still 01-31 in UTC, but "today" is 02-01.
    let now = "2026-02-01T08:00:00";
    assert_eq!(jst(now).date_naive(), date("2026-01-31"));
    refused_by(
        at(jst(now))
            .given(history(PostingStatus::PendingReview))
            .when(approve("2026-01-31")),
        "R-POST-4",
    );
    expect_approval(now, "2026-02-01", "2026-02-01T22:00:00");
}

#[test]
fn publishing_one_second_before_it_is_due_is_refused() {
    // R-POST-4: due at 00:00:00 JST on 02-01; 23:59:59 the evening before is too early.
    let message = refused_by(
        at(jst("2026-01-31T23:59:59"))
            .given(history(PostingStatus::Approved))
            .when(PublishPosting.into()),
        "R-POST-4",
    );
    assert_eq!(
        message,
        "publication is not due until 2026-02-01 00:00:00 +09:00"
    );
}

#[test]
fn publishing_at_the_due_instant_publishes() {
    // R-POST-4
    at(jst("2026-02-01T00:00:00"))
        .given(history(PostingStatus::Approved))
        .when(PublishPosting.into())
        .then_expect_events(vec![published()]);
}

#[test]
fn a_late_timer_publishes_at_its_firing_instant() {
    // R-POST-4: the event records when it actually went public.
    at(jst("2026-02-01T00:05:00"))
        .given(history(PostingStatus::Approved))
        .when(PublishPosting.into())
        .then_expect_events(vec![published_at(jst("2026-02-01T00:05:00"))]);
}

#[test]
fn an_approval_after_22_00_for_today_can_be_published_at_the_same_instant() {
    // R-POST-4: "publish at once" means the timer is already due.
    let now = jst("2026-01-31T23:30:00");
    let mut events = history(PostingStatus::PendingReview);
    events.push(PostingEvent::PostingApproved {
        publish_date: date("2026-01-31"),
        publishes_at: now,
    });
    at(now)
        .given(events)
        .when(PublishPosting.into())
        .then_expect_events(vec![published_at(now)]);
}

#[test]
fn publishing_twice_is_refused() {
    // R-POST-4: the aggregate refuses a second publication, whatever the timers do.
    for status in [
        PostingStatus::Published,
        PostingStatus::WithdrawalPending,
        PostingStatus::Withdrawn,
    ] {
        let message = refused_by(
            at(jst("2026-02-20T00:00:00"))
                .given(history(status))
                .when(PublishPosting.into()),
            "R-POST-4",
        );
        assert!(message.contains("already been published"), "{message}");
    }
}

#[test]
fn publishing_an_unapproved_posting_is_refused() {
    // R-POST-4: only an approved posting is published.
    for status in ALL_STATUSES {
        let ever_published = replay(history(status)).published_at().is_some();
        if status == PostingStatus::Approved || ever_published {
            continue;
        }
        let message = refused_by(
            at(jst("2026-02-20T00:00:00"))
                .given(history(status))
                .when(PublishPosting.into()),
            "R-POST-4",
        );
        assert!(message.starts_with("only an approved posting"), "{message}");
    }
}

#[test]
fn approval_sets_the_publish_timer_and_publication_settles_it() {
    // R-POST-4: the timer layer finds the deadline in the log.
    assert_eq!(
        due_timers(&approved()),
        [DueTimer {
            due_at: jst("2026-02-01T00:00:00"),
            kind: TimerKind::PublishPosting,
        }]
    );
    assert_eq!(settled_timers(&published()), [TimerKind::PublishPosting]);
    assert_eq!(TimerKind::PublishPosting.command(), PublishPosting.into());
    let posting = replay(history(PostingStatus::Approved));
    assert_eq!(posting.publishes_at(), Some(jst("2026-02-01T00:00:00")));
    for event in history(PostingStatus::Draft) {
        assert_eq!(due_timers(&event), []);
    }
}
