//! The search view's input for the agency scope (R-SRCH-5): which agencies may refer job
//! seekers to which postings.
//!
//! No event records referral requests yet (they come with the referral feature), so the search
//! view takes them through this hook: the indexer shows it every event of the log, in order, and
//! keeps the agencies it reports in the posting's indexed state, committed with the checkpoint
//! like everything else. The referral feature will implement the hook over its events; until
//! then [`NoReferrals`] reports none and the agency scope finds nothing.

use jobboard_domain::posting::{OrganisationId, PostingId};
use jobboard_eventstore::RecordedEvent;

use crate::error::Result;

/// One change to the agencies that may refer job seekers to a posting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgencyChange {
    /// The posting.
    pub posting_id: PostingId,
    /// The agency (its organisation, as the caller's token names it).
    pub agency_id: OrganisationId,
    /// True when the employer requested referrals from the agency, false when it ended them.
    pub may_refer: bool,
}

/// Tells the search view which agencies may refer to which postings (R-SRCH-5).
///
/// Called for every event of the log, in global order, on the projection's task; it must be
/// deterministic (a rebuild calls it again on the same events) and quick (it holds up
/// indexing). An error stops the view at that event, which it retries, like an event that does
/// not decode.
pub trait ReferralAgencies: Send + Sync + 'static {
    /// The changes `event` makes, in order; empty for events it does not care about.
    fn agency_changes(&self, event: &RecordedEvent) -> Result<Vec<AgencyChange>>;
}

/// No referrals recorded: the hook to use until the referral feature exists.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReferrals;

impl ReferralAgencies for NoReferrals {
    fn agency_changes(&self, _event: &RecordedEvent) -> Result<Vec<AgencyChange>> {
        Ok(Vec::new())
    }
}
