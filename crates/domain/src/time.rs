//! Time as the domain sees it: a clock that tests control, and business time in Asia/Tokyo.
//!
//! Business rules speak of local times ("22:00 on the approval day", DOMAIN.md). Japan has had no
//! daylight saving time since 1951, so Asia/Tokyo is the fixed offset UTC+9 and needs no time-zone
//! database: a [`FixedOffset`] is exact, and every local time maps to exactly one instant.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};

/// Seconds east of UTC of business time (Asia/Tokyo, UTC+9, no DST).
const BUSINESS_OFFSET_SECONDS: i32 = 9 * 3600;

/// The offset of business time, Asia/Tokyo: UTC+9.
pub const BUSINESS_OFFSET: FixedOffset = match FixedOffset::east_opt(BUSINESS_OFFSET_SECONDS) {
    Some(offset) => offset,
    None => panic!("UTC+9 is a valid offset"),
};

/// The source of "now" for everything that decides by time.
///
/// Code that applies a rule reads time only through a `Clock` (DESIGN.md, "Time"), so tests can
/// stand on any instant, and timers fire as ordinary, replayable commands. Share one as
/// `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock, for production.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move, for tests.
///
/// Interior mutability lets a test keep one `Arc<FixedClock>` and move time while the code under
/// test holds the same clock as an `Arc<dyn Clock>`.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<DateTime<Utc>>,
}

impl FixedClock {
    /// A clock that reads `instant` until it is set or advanced.
    pub fn at(instant: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(instant),
        }
    }

    /// Moves the clock to `instant` (backwards too: tests may need it).
    pub fn set(&self, instant: DateTime<Utc>) {
        *self.lock() = instant;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.lock();
        *now += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // The guarded value is a plain instant, always valid; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still safe to use.
        self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

/// The business date (Asia/Tokyo) on which `instant` falls.
///
/// 2026-01-30T15:00:00Z is already 2026-01-31 in Tokyo.
pub fn business_date(instant: DateTime<Utc>) -> NaiveDate {
    instant.with_timezone(&BUSINESS_OFFSET).date_naive()
}

/// The instant of `hour:minute` business time (Asia/Tokyo) on `date`.
///
/// # Panics
///
/// If `hour` > 23 or `minute` > 59: callers pass the times named by rules, never user input.
pub fn at_business_time(date: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let local = date
        .and_hms_opt(hour, minute, 0)
        .unwrap_or_else(|| panic!("{hour:02}:{minute:02} is not a time of day"));
    // A fixed offset has no gaps or folds, so the local time is exactly one instant.
    (local - TimeDelta::seconds(i64::from(BUSINESS_OFFSET_SECONDS))).and_utc()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 instant")
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn business_date_turns_over_at_midnight_tokyo_which_is_15_00_utc() {
        assert_eq!(
            business_date(utc("2026-01-30T14:59:59Z")),
            date("2026-01-30")
        );
        assert_eq!(
            business_date(utc("2026-01-30T15:00:00Z")),
            date("2026-01-31")
        );
    }

    #[test]
    fn at_business_time_is_nine_hours_ahead_of_utc() {
        assert_eq!(
            at_business_time(date("2026-01-31"), 22, 0),
            utc("2026-01-31T13:00:00Z")
        );
        // Midnight in Tokyo is the previous UTC day, across the month end too.
        assert_eq!(
            at_business_time(date("2026-02-01"), 0, 0),
            utc("2026-01-31T15:00:00Z")
        );
        assert_eq!(
            at_business_time(date("2026-01-31"), 22, 0),
            utc("2026-01-31T22:00:00+09:00")
        );
    }

    #[test]
    fn at_business_time_and_business_date_agree() {
        let day = date("2026-03-31");
        for (hour, minute) in [(0, 0), (8, 59), (9, 0), (22, 0), (23, 59)] {
            assert_eq!(business_date(at_business_time(day, hour, minute)), day);
        }
    }

    #[test]
    #[should_panic(expected = "24:00 is not a time of day")]
    fn at_business_time_refuses_hour_24() {
        at_business_time(date("2026-01-31"), 24, 0);
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = Arc::new(FixedClock::at(utc("2026-01-31T00:00:00Z")));
        let shared: Arc<dyn Clock> = clock.clone();
        assert_eq!(shared.now(), utc("2026-01-31T00:00:00Z"));
        clock.advance(TimeDelta::minutes(90));
        assert_eq!(shared.now(), utc("2026-01-31T01:30:00Z"));
        clock.set(utc("2025-12-31T23:59:59Z"));
        assert_eq!(shared.now(), utc("2025-12-31T23:59:59Z"));
    }

    #[test]
    fn system_clock_reads_the_machine_clock() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(before <= now && now <= Utc::now());
    }
}
