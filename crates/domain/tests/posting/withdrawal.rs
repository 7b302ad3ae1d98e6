//! Withdrawal (取り下げ): R-POST-6, effective at 22:00 Tokyo time on the day of the request.

use jobboard_domain::posting::{
    CompleteWithdrawal, DueTimer, PostingEvent, PostingStatus, RequestWithdrawal, TimerKind,
    due_timers, settled_timers,
};

use crate::support::{
    ALL_STATUSES, at, history, jst, refused_by, replay, withdrawal_requested, withdrawn,
};

/// Requesting withdrawal of a published posting at `now` records this request.
fn expect_request(now: &str, effective_at: &str) {
    at(jst(now))
        .given(history(PostingStatus::Published))
        .when(RequestWithdrawal.into())
        .then_expect_events(vec![PostingEvent::WithdrawalRequested {
            requested_at: jst(now),
            effective_at: jst(effective_at),
        }]);
}

#[test]
fn a_withdrawal_requested_at_10_00_takes_effect_at_22_00() {
    // R-POST-6
    expect_request("2026-02-10T10:00:00", "2026-02-10T22:00:00");
}

#[test]
fn a_withdrawal_requested_at_exactly_22_00_takes_effect_then() {
    // R-POST-6
    expect_request("2026-02-10T22:00:00", "2026-02-10T22:00:00");
}

#[test]
fn a_withdrawal_requested_at_22_30_takes_effect_at_once() {
    // R-POST-6: 22:00 has passed, so the request instant itself.
    expect_request("2026-02-10T22:30:00", "2026-02-10T22:30:00");
}

#[test]
fn a_withdrawal_requested_just_after_midnight_waits_for_22_00_that_day() {
    // R-POST-6: the business day is Tokyo's (00:00:01 JST is 15:00:01 UTC the day before).
    expect_request("2026-02-11T00:00:01", "2026-02-11T22:00:00");
}

#[test]
fn a_posting_with_a_pending_withdrawal_is_still_published() {
    // R-POST-6: it leaves public search only when the withdrawal takes effect.
    let posting = replay(history(PostingStatus::WithdrawalPending));
    assert_eq!(posting.status(), Some(PostingStatus::WithdrawalPending));
    assert_eq!(posting.published_at(), Some(jst("2026-02-01T00:00:00")));
    assert_eq!(
        posting.withdrawal_effective_at(),
        Some(jst("2026-02-10T22:00:00"))
    );
}

#[test]
fn only_a_published_posting_can_be_withdrawn() {
    // R-POST-6
    for status in ALL_STATUSES {
        if matches!(
            status,
            PostingStatus::Published | PostingStatus::WithdrawalPending
        ) {
            continue;
        }
        // R-POST-3: while a request is pending review, a withdrawal wish goes to the operator.
        let rule = if status == PostingStatus::PendingReview {
            "R-POST-3"
        } else {
            "R-POST-6"
        };
        let message = refused_by(
            at(jst("2026-02-10T10:00:00"))
                .given(history(status))
                .when(RequestWithdrawal.into()),
            rule,
        );
        let expected = if rule == "R-POST-3" {
            "cannot request a withdrawal while a request is pending review"
        } else {
            "only a published posting"
        };
        assert!(message.starts_with(expected), "{message}");
    }
}

#[test]
fn requesting_withdrawal_twice_is_refused() {
    // R-POST-6
    let message = refused_by(
        at(jst("2026-02-10T11:00:00"))
            .given(history(PostingStatus::WithdrawalPending))
            .when(RequestWithdrawal.into()),
        "R-POST-6",
    );
    assert_eq!(
        message,
        "withdrawal was already requested; it takes effect at 2026-02-10 22:00:00 +09:00"
    );
}

#[test]
fn completing_a_withdrawal_one_second_early_is_refused() {
    // R-POST-6
    let message = refused_by(
        at(jst("2026-02-10T21:59:59"))
            .given(history(PostingStatus::WithdrawalPending))
            .when(CompleteWithdrawal.into()),
        "R-POST-6",
    );
    assert_eq!(
        message,
        "withdrawal is not due until 2026-02-10 22:00:00 +09:00"
    );
}

#[test]
fn completing_a_withdrawal_when_due_withdraws_the_posting() {
    // R-POST-6
    at(jst("2026-02-10T22:00:00"))
        .given(history(PostingStatus::WithdrawalPending))
        .when(CompleteWithdrawal.into())
        .then_expect_events(vec![withdrawn()]);
}

#[test]
fn completing_without_a_pending_withdrawal_is_refused() {
    // R-POST-6: also refuses a second completion.
    for status in ALL_STATUSES {
        if status == PostingStatus::WithdrawalPending {
            continue;
        }
        refused_by(
            at(jst("2026-02-10T23:00:00"))
                .given(history(status))
                .when(CompleteWithdrawal.into()),
            "R-POST-6",
        );
    }
}

#[test]
fn a_withdrawal_request_sets_the_timer_and_withdrawal_settles_it() {
    // R-POST-6: the timer layer finds the deadline in the log.
    assert_eq!(
        due_timers(&withdrawal_requested()),
        [DueTimer {
            due_at: jst("2026-02-10T22:00:00"),
            kind: TimerKind::CompleteWithdrawal,
        }]
    );
    assert_eq!(settled_timers(&withdrawn()), TimerKind::ALL);
    assert_eq!(
        TimerKind::CompleteWithdrawal.command(),
        CompleteWithdrawal.into()
    );
}
