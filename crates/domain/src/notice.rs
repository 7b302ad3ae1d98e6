//! The monthly referral-period notice (R-POST-9): after the 20th of each month, every employer is
//! told once of its public postings whose referral period (紹介期限) ends that month; new-graduate
//! postings (学卒求人) are left out.
//!
//! The notice is not a decision on one posting but a digest over an organisation's postings, so
//! it has its own stream per organisation (`referralnotice-{organisation}`) and one event per
//! month ([`stream_of`]). Which postings it lists is [`is_noticed`]; when it is due is [`due_at`].
//! The timer layer gathers the postings from the log and appends the event under a deterministic
//! command id, so each organisation gets each month's notice once, whatever restarts or
//! instances.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::posting::{OrganisationId, PostingContent, PostingId};
use crate::time::{at_business_time, business_date};

/// The day of the month after which the notice goes out: it is due at 00:00 (Asia/Tokyo) on the
/// day after (R-POST-9: "after the 20th").
pub const AFTER_DAY: u32 = 20;

/// The stream category of the notices (`referralnotice-{organisation}`).
pub const STREAM_PREFIX: &str = "referralnotice-";

/// The stream holding `organisation`'s notices.
pub fn stream_of(organisation: OrganisationId) -> String {
    format!("{STREAM_PREFIX}{organisation}")
}

/// A calendar month, `2026-03` in text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// The month, 1 to 12.
    pub month: u32,
}

impl Month {
    /// The business month (Asia/Tokyo) `instant` falls in.
    pub fn of(instant: DateTime<Utc>) -> Self {
        let date = business_date(instant);
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// Whether `date` falls in this month.
    pub fn contains(self, date: NaiveDate) -> bool {
        date.year() == self.year && date.month() == self.month
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// When `month`'s notice is due: 00:00 (Asia/Tokyo) on the 21st (R-POST-9).
pub fn due_at(month: Month) -> DateTime<Utc> {
    let day = NaiveDate::from_ymd_opt(month.year, month.month, AFTER_DAY + 1)
        .unwrap_or_else(|| panic!("{month} has a 21st"));
    at_business_time(day, 0, 0)
}

/// The month whose notice is due at `now`, if any: from the 21st to the end of the month.
pub fn due_month(now: DateTime<Utc>) -> Option<Month> {
    let month = Month::of(now);
    (now >= due_at(month)).then_some(month)
}

/// Whether a public posting with `content` belongs in `month`'s notice (R-POST-9): its referral
/// period ends in that month and it is not a new-graduate posting.
pub fn is_noticed(content: &PostingContent, month: Month) -> bool {
    is_noticed_by(content.referral_period_end, content.new_graduate, month)
}

/// [`is_noticed`] on the two fields it reads, for callers that keep only those.
pub fn is_noticed_by(
    referral_period_end: Option<NaiveDate>,
    new_graduate: bool,
    month: Month,
) -> bool {
    !new_graduate && referral_period_end.is_some_and(|end| month.contains(end))
}

/// One posting a notice lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticedPosting {
    /// The posting.
    pub posting_id: PostingId,
    /// Its public title.
    pub title: String,
    /// The last day referrals are accepted.
    pub referral_period_end: NaiveDate,
}

/// The events of a notice stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum NoticeEvent {
    /// An organisation was told of its postings whose referral period ends this month.
    MonthlyReferralNoticeIssued {
        /// The employer notified.
        organisation_id: OrganisationId,
        /// The month, `2026-03`.
        month: String,
        /// The postings, ordered by referral end, then id.
        postings: Vec<NoticedPosting>,
    },
}

impl NoticeEvent {
    /// The stable type name; equal to the JSON `type` field.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::MonthlyReferralNoticeIssued { .. } => "MonthlyReferralNoticeIssued",
        }
    }

    /// The schema version of this event's JSON shape.
    pub const fn schema_version(&self) -> u32 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jst(local: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{local}+09:00"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_notice_is_due_from_00_00_on_the_21st_to_the_end_of_the_month() {
        // R-POST-9: "after the 20th", in Tokyo.
        let march = Month {
            year: 2026,
            month: 3,
        };
        assert_eq!(due_at(march), jst("2026-03-21T00:00:00"));
        assert_eq!(due_month(jst("2026-03-20T23:59:59")), None);
        assert_eq!(due_month(jst("2026-03-21T00:00:00")), Some(march));
        assert_eq!(due_month(jst("2026-03-31T23:59:59")), Some(march));
        // 2026-03-31T15:00Z is already April 1st in Tokyo: April's is not due yet.
        assert_eq!(due_month(jst("2026-04-01T00:00:00")), None);
        assert_eq!(march.to_string(), "2026-03");
    }

    #[test]
    fn only_postings_whose_referral_ends_that_month_and_not_new_graduates_are_noticed() {
        // R-POST-9
        let march = Month {
            year: 2026,
            month: 3,
        };
        let ending = |end: &str, new_graduate| PostingContent {
            referral_period_end: Some(date(end)),
            new_graduate,
            ..PostingContent::default()
        };
        assert!(is_noticed(&ending("2026-03-31", false), march));
        assert!(is_noticed(&ending("2026-03-01", false), march));
        assert!(!is_noticed(&ending("2026-03-31", true), march));
        assert!(!is_noticed(&ending("2026-04-01", false), march));
        assert!(!is_noticed(&ending("2025-03-31", false), march));
        assert!(!is_noticed(&PostingContent::default(), march));
    }
}
