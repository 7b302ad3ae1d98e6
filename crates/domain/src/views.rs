//! Access counts (R-POST-8): page views of postings, rolled up per posting and business day.
//!
//! A view is not worth an event of its own: callers report views in batches, the application
//! layer sums them for a short while and appends one [`ViewsEvent::PostingViewsCounted`] per
//! business day to that day's stream (`postingviews-YYYYMMDD`), so the log grows with the number
//! of distinct (posting, day) pairs per flush, not with traffic. A read model sums the counts
//! into totals per posting.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::posting::PostingId;

/// The stream category of the roll-ups (`postingviews-{YYYYMMDD}`).
pub const STREAM_PREFIX: &str = "postingviews-";

/// The stream holding the roll-ups of business day `day`.
pub fn stream_of(day: NaiveDate) -> String {
    format!("{STREAM_PREFIX}{}", day.format("%Y%m%d"))
}

/// Views of one posting in one roll-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewCount {
    /// The posting viewed.
    pub posting_id: PostingId,
    /// How many views since the previous roll-up; at least 1.
    pub views: u64,
}

/// The events of a roll-up stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ViewsEvent {
    /// Views counted on `day` since the previous roll-up (R-POST-8).
    PostingViewsCounted {
        /// The business day (Asia/Tokyo) the views fell on.
        day: NaiveDate,
        /// One entry per posting viewed, by posting id.
        counts: Vec<ViewCount>,
    },
}

impl ViewsEvent {
    /// The stable type name; equal to the JSON `type` field.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::PostingViewsCounted { .. } => "PostingViewsCounted",
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

    #[test]
    fn a_day_has_one_stream_named_by_its_date() {
        // R-POST-8: roll-ups per day.
        let day: NaiveDate = "2026-02-03".parse().unwrap();
        assert_eq!(stream_of(day), "postingviews-20260203");
    }
}
