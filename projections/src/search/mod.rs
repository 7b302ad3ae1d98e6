//! The postings search view (R-SRCH-1 to R-SRCH-5): keyword and condition search over a tantivy
//! index that follows the log.
//!
//! - **What is indexed.** Each `posting-<uuid>` stream folded by the domain's own aggregate
//!   ([`Posting`](jobboard_domain::Posting)), read only through its accessors: the public search
//!   sees `public_content()` (which decides what is on public search), an employer's search sees
//!   the latest `content()` in every state, an agency's search sees the postings the
//!   [`ReferralAgencies`] hook names. Lifecycle rules stay in the domain: new events are applied
//!   by its `apply` and show up here without a change.
//! - **Keywords** match as exact substrings, Japanese and English alike, case- and
//!   width-insensitively (character bigrams with positions, see `text.rs`); several keywords must
//!   all match.
//! - **Conditions** (institution type, location substring, employment type, language, recruitment
//!   end range, web application, status) combine with the keywords and with each other.
//! - **Results**: the true total and a page of the first [`MAX_RESULTS`], most recently updated
//!   first, latest recruitment end first, or by BM25 relevance; ties break on the posting id, so
//!   offsets page stably.
//! - **A projection.** [`SearchRunner`] follows the log and commits each batch to the index with
//!   the checkpoint as the commit's payload (no loss, no double application after a crash);
//!   [`SearchView::wait_for`] gives read-your-writes.
//! - **Blue/green rebuild** of its own index: [`SearchView::request_rebuild`] builds a new
//!   generation directory from the start of the log beside the serving one, switches the readers
//!   to it once it has caught up, then deletes the old one; an interrupted rebuild resumes from its
//!   own last commit.
//!
//! ```no_run
//! # async fn demo(store: jobboard_eventstore::EventStore) -> jobboard_projections::Result<()> {
//! use std::time::Duration;
//! use jobboard_projections::search::{Scope, SearchOptions, SearchQuery, SearchView};
//! use tokio_util::sync::CancellationToken;
//!
//! let (view, runner) = SearchView::open("data/search", SearchOptions::default()).await?;
//! let shutdown = CancellationToken::new();
//! tokio::spawn(runner.run(store, shutdown.clone()));
//! # let checkpoint = Default::default();
//! view.wait_for(checkpoint, Duration::from_secs(5)).await?;
//! let mut query = SearchQuery::new(Scope::Public);
//! query.keywords = "Rust エンジニア".into();
//! let results = view.search(&query)?;
//! println!("{} postings, first {:?}", results.total, results.hits.first());
//! shutdown.cancel();
//! view.stopped().await;
//! # Ok(()) }
//! ```

mod error;
mod generation;
mod hook;
mod query;
mod schema;
mod text;
mod view;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{
    EmploymentType, InstitutionType, Language, OrganisationId, PostingContent, PostingId,
};
use jobboard_eventstore::Checkpoint;

pub use self::hook::{AgencyChange, NoReferrals, ReferralAgencies};
pub use self::view::{SearchRunner, SearchView, build};

/// The name the view goes by in logs, metrics and errors.
pub const PROJECTOR: &str = "search";
/// The version of the index's shape (schema, tokenization, stored state). A generation built by
/// another version is rebuilt blue/green on start.
pub const VERSION: u32 = 1;
/// R-SRCH-3: at most this many results are reachable; the total is still counted.
pub const MAX_RESULTS: usize = 1_000;
/// Results per page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 20;
/// Most results in one page.
pub const MAX_LIMIT: usize = 100;

/// Whose view of the postings a search runs in (R-SRCH-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Postings on public search, as the public sees them (`public_content()`).
    Public,
    /// An employer's own postings in every state, as the employer sees them (latest content,
    /// internal name included).
    Employer(OrganisationId),
    /// The postings whose employer requested referrals from this agency (the agency's
    /// organisation), with the employer's latest content.
    Agency(OrganisationId),
}

/// The order of results (R-SRCH-4). Ties break on the posting id, ascending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Most recently updated first (the last event's recorded-at).
    #[default]
    RecentlyUpdated,
    /// Latest recruitment end first; postings without a recruitment period last; then most
    /// recently updated.
    RecruitmentEnd,
    /// Best BM25 match of the keywords first, then most recently updated.
    Relevance,
}

/// An inclusive range of dates; an open end is unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DateRange {
    /// First date in the range.
    pub from: Option<NaiveDate>,
    /// Last date in the range.
    pub to: Option<NaiveDate>,
}

/// Conditions a result must meet (R-SRCH-2); each one left empty does not filter. A list
/// matches any of its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Institution types.
    pub institution_types: Vec<InstitutionType>,
    /// Text that must occur in the location (keywords separated by white space, all required).
    pub location: Option<String>,
    /// Employment types (postings without one never match a non-empty list).
    pub employment_types: Vec<EmploymentType>,
    /// Languages.
    pub languages: Vec<Language>,
    /// The recruitment end date; postings without a recruitment period never match a range.
    pub recruitment_end: DateRange,
    /// Whether web applications are accepted.
    pub web_application: Option<bool>,
    /// Statuses (useful in an employer's scope; the public scope holds only public ones).
    pub statuses: Vec<PostingStatus>,
}

/// A search (R-SRCH-1 to R-SRCH-5). Refining a result is searching again with more conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Whose view it searches.
    pub scope: Scope,
    /// Keywords separated by white space (ASCII or ideographic); each must occur inside the
    /// name (employer scope only), title, description or an additional item. Empty: no keyword
    /// condition.
    pub keywords: String,
    /// Further conditions.
    pub filters: Filters,
    /// The order of results.
    pub order: SortOrder,
    /// Results to skip; nothing past [`MAX_RESULTS`] is returned.
    pub offset: usize,
    /// Results to return, at most [`MAX_LIMIT`].
    pub limit: usize,
}

impl SearchQuery {
    /// Everything in `scope`, in the default order, first page.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            keywords: String::new(),
            filters: Filters::default(),
            order: SortOrder::default(),
            offset: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// One posting found.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The posting.
    pub posting_id: PostingId,
    /// Its employer.
    pub organisation_id: OrganisationId,
    /// Where it is in its life.
    pub status: PostingStatus,
    /// Its language.
    pub language: Language,
    /// The content the scope sees: the public content in the public scope, the latest content
    /// otherwise. The internal name is blank outside the employer's scope (R-POST-1).
    pub content: PostingContent,
    /// The version of its stream the index reflects.
    pub version: u64,
    /// When the log recorded its last event.
    pub updated_at: DateTime<Utc>,
    /// Its BM25 score, when ordered by relevance.
    pub score: Option<f32>,
}

/// A page of results.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchResults {
    /// How many postings match, counted beyond [`MAX_RESULTS`] (R-SRCH-3).
    pub total: u64,
    /// The page.
    pub hits: Vec<SearchHit>,
    /// The offset of the next page, while one is reachable.
    pub next_offset: Option<usize>,
    /// The results reflect the log at least up to here.
    pub checkpoint: Checkpoint,
}

/// How the view indexes. `SearchOptions::default()` suits a service.
#[derive(Clone)]
pub struct SearchOptions {
    /// Most events applied as one batch while following the live log.
    pub live_batch: usize,
    /// While following the live log, at most one commit per this interval: the batches that
    /// arrive in between are applied at once and committed together when it ends. A commit
    /// writes a segment and wakes the merger, so committing every batch of a busy log cost a
    /// fifth of the service's CPU; queries (and `wait_for`) see a change at most this much later.
    pub live_commit_interval: Duration,
    /// Events read per page while catching up or rebuilding.
    pub catch_up_page: usize,
    /// While catching up or rebuilding, commit after this many events (and when caught up). A
    /// commit indexes each posting changed since the previous one once, however many of its
    /// events it covers, so fewer, larger commits index faster; an interruption loses at most
    /// this much work.
    pub commit_every: u64,
    /// ... or once this many postings changed since the last commit: their states wait in
    /// memory until then (a few KB each).
    pub commit_postings: usize,
    /// Indexing threads per generation's writer.
    pub indexing_threads: usize,
    /// Indexing memory per generation's writer, in bytes (split among its threads; at least
    /// 15 MB per thread). A segment is written when it fills.
    pub indexing_memory_bytes: usize,
    /// A pause between the pages of a rebuild, to leave the machine to live traffic.
    pub rebuild_pause: Duration,
    /// First and longest wait before retrying after an error (doubling in between).
    pub retry_backoff: (Duration, Duration),
    /// Which agencies may refer to which postings (R-SRCH-5).
    pub referrals: Arc<dyn ReferralAgencies>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            live_batch: 500,
            live_commit_interval: Duration::from_millis(50),
            catch_up_page: 2_000,
            commit_every: 200_000,
            commit_postings: 50_000,
            indexing_threads: std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .clamp(1, 4),
            indexing_memory_bytes: 256 << 20,
            rebuild_pause: Duration::ZERO,
            retry_backoff: (Duration::from_millis(100), Duration::from_secs(30)),
            referrals: Arc::new(NoReferrals),
        }
    }
}

impl fmt::Debug for SearchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchOptions")
            .field("live_batch", &self.live_batch)
            .field("live_commit_interval", &self.live_commit_interval)
            .field("catch_up_page", &self.catch_up_page)
            .field("commit_every", &self.commit_every)
            .field("commit_postings", &self.commit_postings)
            .field("indexing_threads", &self.indexing_threads)
            .field("indexing_memory_bytes", &self.indexing_memory_bytes)
            .field("rebuild_pause", &self.rebuild_pause)
            .field("retry_backoff", &self.retry_backoff)
            .finish_non_exhaustive()
    }
}

/// What the view is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchState {
    /// The serving generation is reading the log's backlog (first start, or after downtime);
    /// queries answer from what it has so far.
    CatchingUp,
    /// The serving generation follows the log as it commits.
    Live,
    /// A new generation is being built beside the serving one, which keeps answering.
    Rebuilding(RebuildProgress),
}

/// How far a rebuild has come.
#[derive(Clone, Debug, PartialEq)]
pub struct RebuildProgress {
    /// The generation being built.
    pub generation: u64,
    /// The last event its last commit reflects.
    pub checkpoint: Checkpoint,
    /// The events that commit covers.
    pub events: u64,
    /// Its log position as a fraction of the serving generation's (0 to 1; an estimate, since
    /// positions need not be dense).
    pub fraction: f64,
}

/// The view's progress, for operators.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchStatus {
    /// The version of the serving generation's shape (may be older than [`VERSION`] while a
    /// rebuild replaces it).
    pub version: u32,
    /// The serving generation.
    pub generation: u64,
    /// The last event queries see.
    pub checkpoint: Checkpoint,
    /// The events that checkpoint covers.
    pub events: u64,
    /// Live, catching up, or rebuilding.
    pub state: SearchState,
    /// How long the newest event of the last live batch waited to become searchable.
    pub lag: Option<Duration>,
    /// When the log recorded the last event the serving generation committed.
    pub last_event_recorded_at: Option<DateTime<Utc>>,
    /// The last error, until a batch commits again (the runner is retrying while it is set).
    pub last_error: Option<String>,
    /// True while the runner runs.
    pub running: bool,
}
