//! Timers: deadlines found in the log, fired as ordinary commands once the clock reaches them
//! (DESIGN.md, "Time").
//!
//! The schedule is a projection of the log through the domain's `due_timers` and
//! `settled_timers`: `PostingApproved` sets a publication deadline (R-POST-4),
//! `WithdrawalRequested` a withdrawal (R-POST-6), `ModificationApproved` a change's publication
//! (R-POST-5), `PostingPublished` / `ModificationPublished` the expiry (R-POST-7) and the end of
//! modifications (R-POST-5); the events that carry them out, or end the posting, settle them. A
//! due timer sends its command through [`PostingCommands`] like any caller, so firing is
//! logged, authorised (role `service`) and replayable.
//!
//! The monthly referral notice (R-POST-9) is kept here too: the schedule follows which postings
//! are public with which referral end, and from the 21st (Asia/Tokyo) each organisation with
//! postings whose referral period ends that month gets one `MonthlyReferralNoticeIssued` in its
//! `referralnotice-{organisation}` stream, under the command id
//! `timer/monthly_notice/{organisation}/{YYYY-MM}`. The log is read to its end before a notice is
//! written, so a notice issued right after a restart is complete. A service down from the 21st to
//! the end of a month skips that month's notice.
//!
//! **Exactly once.** Each firing carries a deterministic command id,
//! `timer/{kind}/{posting id}/{due at, RFC 3339}`, which the store records in the transaction
//! that appends the event. A second firing — after a restart, or by another instance sharing the
//! PostgreSQL log — is answered as a duplicate and writes nothing.
//!
//! **Limitations.** The schedule is rebuilt at start by following the whole log from its
//! beginning: fine at today's size; a checkpointed deadline projection replaces it when the log
//! grows. Every instance runs its own timers (no lease): duplicates cost a lookup, not an event.
//! The clock is polled every tick rather than slept on, because tests (and a `FixedClock`) move
//! time without tokio knowing; a deadline therefore fires up to one tick late.

use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use jobboard_domain::notice::{self, Month, NoticeEvent, NoticedPosting};
use jobboard_domain::posting::{
    OrganisationId, PostingContent, PostingId, TimerKind, change_reopens, due_timers,
    posting_of_stream, settled_timers,
};
use jobboard_domain::{Clock, PostingEvent};
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::{Caller, CommandContext, Role};
use crate::error::Error;
use crate::postings::{CommandOutcome, PostingCommands, TIMER_SCOPE};
use crate::service_events::{self, ServiceEvent};

/// The subject the timer's commands are recorded with (the events' actor).
pub const TIMER_SUBJECT: &str = "jobboard-timer";

/// Gauge of timers known and not yet fired.
pub const TIMERS_PENDING: &str = "jobboard_timers_pending";

/// Events read per page when [`Timers::fire_due`] catches up with the log.
const PAGE: usize = 1000;

/// How long [`Timers::fire_due`] waits for events held back by an open transaction, and how
/// often it looks again meanwhile.
const HELD_WAIT: Duration = Duration::from_secs(2);
const HELD_BACKOFF: Duration = Duration::from_millis(10);

/// Pauses before following the log again after it failed.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(10);

/// The event types that set or settle a deadline. Only these are decoded, so following the log
/// does not decode every draft's content. A new deadline event must be added here (a test
/// checks that exactly the domain's deadline events are listed).
const TIMER_EVENTS: [&str; 10] = [
    "PostingApproved",
    "WithdrawalRequested",
    "PostingPublished",
    "PostingWithdrawn",
    "ModificationApproved",
    "ModificationPublished",
    "ModificationsLocked",
    "RecruitmentStopped",
    "PostingCancelled",
    "PostingExpired",
];

/// How often [`Timers::run`] looks at the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerOptions {
    /// Time between two looks at the clock: a deadline fires at most this late.
    pub tick: Duration,
}

impl Default for TimerOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
        }
    }
}

/// The timer layer: follows the log for deadlines and fires those that are due.
#[derive(Debug)]
pub struct Timers {
    store: EventStore,
    commands: PostingCommands,
    clock: Arc<dyn Clock>,
    options: TimerOptions,
    schedule: Mutex<Schedule>,
}

/// The pending deadlines, as of `checkpoint` in the log.
#[derive(Debug, Default)]
struct Schedule {
    /// Every posting that was ever published and is not gone for good, for the monthly
    /// referral notice (R-POST-9).
    published: HashMap<PostingId, PublishedPosting>,
    /// The last month whose notices this instance issued (or found already issued).
    notices_done: Option<Month>,
    /// By due instant; a posting has at most one pending deadline of each kind.
    due: BTreeMap<(DateTime<Utc>, PostingId, TimerKind), Pending>,
    /// Where each (posting, kind) sits in `due`, so a later deadline replaces an earlier one.
    by_posting: HashMap<(PostingId, TimerKind), DateTime<Utc>>,
    /// The last event observed.
    checkpoint: Checkpoint,
}

/// What the monthly notice needs of a published posting: a few fields, not its content.
#[derive(Clone, Debug)]
struct PublishedPosting {
    organisation: OrganisationId,
    title: String,
    referral_period_end: Option<NaiveDate>,
    new_graduate: bool,
    /// False once expired (a later end date may bring it back, R-POST-5).
    public: bool,
}

impl PublishedPosting {
    fn take(&mut self, content: &PostingContent) {
        self.title.clone_from(&content.title);
        self.referral_period_end = content.referral_period_end;
        self.new_graduate = content.new_graduate;
    }
}

#[derive(Clone, Debug)]
struct Pending {
    /// The posting's organisation, from the event's metadata (the timer's caller acts for it).
    organisation: Option<String>,
    /// The event that set the deadline: the firing command's causation id.
    cause: Uuid,
}

/// A deadline that is due.
#[derive(Clone, Debug)]
struct Due {
    due_at: DateTime<Utc>,
    posting_id: PostingId,
    kind: TimerKind,
    pending: Pending,
}

impl Timers {
    /// Timers firing `commands` on `store`'s deadlines at `clock`'s time, looking every second.
    pub fn new(store: EventStore, commands: PostingCommands, clock: Arc<dyn Clock>) -> Self {
        Self::with_options(store, commands, clock, TimerOptions::default())
    }

    /// Timers with the given options.
    pub fn with_options(
        store: EventStore,
        commands: PostingCommands,
        clock: Arc<dyn Clock>,
        options: TimerOptions,
    ) -> Self {
        Self {
            store,
            commands,
            clock,
            options,
            schedule: Mutex::new(Schedule::default()),
        }
    }

    /// Follows the log from its start and, every tick, fires each deadline that is due, until
    /// `shutdown` is cancelled. A failure to read the log is logged and followed by another
    /// try from where it stopped; this ends only on shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.options.tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pause = RESUBSCRIBE_MIN;
        loop {
            let after = self.lock().checkpoint;
            let mut events = pin!(self.store.subscribe(after));
            let failure = loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    // Before the log, so a long catch-up does not hold back due deadlines.
                    _ = ticks.tick() => {
                        self.fire_ready().await;
                    }
                    next = events.next() => match next {
                        Some(Ok(event)) => {
                            self.lock().observe(event);
                            pause = RESUBSCRIBE_MIN;
                        }
                        Some(Err(error)) => break Some(error),
                        None => break None,
                    },
                }
            };
            match failure {
                Some(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "timers lost the log; following it again"
                ),
                None => tracing::warn!("the log subscription ended; following it again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RESUBSCRIBE_MAX);
        }
    }

    /// Reads the log up to what is readable now, then fires every deadline due at the clock's
    /// now; returns how many fired (including those another instance had fired already).
    ///
    /// [`run`](Self::run) does this on every tick; tests call it to step time by hand. Errors
    /// are those of reading the log; a firing that fails is logged, and kept for the next call
    /// if the failure may pass (unavailable store, conflict, internal error) or dropped if the
    /// posting refuses it (already published, …).
    pub async fn fire_due(&self) -> Result<usize, Error> {
        self.catch_up().await?;
        Ok(self.fire_ready().await)
    }

    /// How many deadlines are known and not yet fired.
    pub fn pending(&self) -> usize {
        self.lock().due.len()
    }

    async fn catch_up(&self) -> Result<(), Error> {
        let mut held_since = None;
        loop {
            let after = self.lock().checkpoint;
            let page = self
                .store
                .read_all(after, PAGE)
                .await
                .map_err(|e| Error::store(e, "reading the log for deadlines"))?;
            if page.events.is_empty() {
                if !page.held {
                    return Ok(());
                }
                // PostgreSQL: an older transaction is still open and holds committed events
                // back. It is usually a moment; wait a little for it, then leave what it holds
                // to the next call rather than stall the timers.
                let since = *held_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= HELD_WAIT {
                    return Ok(());
                }
                tokio::time::sleep(HELD_BACKOFF).await;
                continue;
            }
            let mut schedule = self.lock();
            for event in page.events {
                schedule.observe(event);
            }
        }
    }

    /// Fires every known deadline that is due now.
    async fn fire_ready(&self) -> usize {
        let now = self.clock.now();
        let ready = self.lock().ready(now);
        let mut fired = 0;
        for due in ready {
            let keep = match self.fire(&due).await {
                Ok(outcome) => {
                    fired += 1;
                    tracing::info!(
                        posting_id = %due.posting_id,
                        kind = due.kind.as_str(),
                        version = outcome.version,
                        duplicate = outcome.duplicate,
                        "timer fired"
                    );
                    false
                }
                // The posting refuses (already published, discarded, …): nothing is left to do.
                Err(Error::Domain(refusal)) => {
                    tracing::debug!(posting_id = %due.posting_id, %refusal, "timer dropped");
                    false
                }
                Err(
                    error @ (Error::Unavailable(_)
                    | Error::Conflict { .. }
                    | Error::Internal { .. }),
                ) => {
                    tracing::warn!(
                        posting_id = %due.posting_id,
                        error = &error as &dyn std::error::Error,
                        "timer failed; trying again on the next tick"
                    );
                    true
                }
                Err(error) => {
                    tracing::error!(
                        posting_id = %due.posting_id,
                        error = &error as &dyn std::error::Error,
                        "timer refused; dropping it"
                    );
                    false
                }
            };
            if !keep {
                self.lock().remove(&due);
            }
        }
        fired += self.issue_notices(now).await;
        let pending = u32::try_from(self.pending()).unwrap_or(u32::MAX);
        metrics::gauge!(TIMERS_PENDING).set(f64::from(pending));
        fired
    }

    /// Issues the monthly referral notices once they are due (R-POST-9): one per organisation
    /// with postings to list, under a deterministic command id, so each is issued once across
    /// restarts and instances. Returns how many were issued (or found issued).
    async fn issue_notices(&self, now: DateTime<Utc>) -> usize {
        let Some(month) = notice::due_month(now) else {
            return 0;
        };
        if self.lock().notices_done == Some(month) {
            return 0;
        }
        // The list must be complete before it is written for good: read the log to its end.
        if let Err(error) = self.catch_up().await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "the monthly notices wait for the log"
            );
            return 0;
        }
        let notices = self.lock().notices(month);
        let mut issued = 0;
        let mut complete = true;
        for (organisation, postings) in notices {
            match self.issue_notice(organisation, month, postings).await {
                Ok(()) => issued += 1,
                Err(error) => {
                    complete = false;
                    tracing::warn!(
                        %organisation,
                        %month,
                        error = &error as &dyn std::error::Error,
                        "a monthly notice failed; trying again on the next tick"
                    );
                }
            }
        }
        if complete {
            self.lock().notices_done = Some(month);
        }
        issued
    }

    async fn issue_notice(
        &self,
        organisation: OrganisationId,
        month: Month,
        postings: Vec<NoticedPosting>,
    ) -> Result<(), Error> {
        let event = NoticeEvent::MonthlyReferralNoticeIssued {
            organisation_id: organisation,
            month: month.to_string(),
            postings,
        };
        let outcome = service_events::append(
            &self.store,
            ServiceEvent {
                stream: notice::stream_of(organisation),
                event: &event,
                type_name: event.type_name(),
                schema_version: event.schema_version(),
                actor: TIMER_SUBJECT,
                command_id: Some(notice_command_id(organisation, month)),
                organisation: Some(organisation.to_string()),
                what: "a monthly notice",
            },
        )
        .await?;
        tracing::info!(
            %organisation,
            %month,
            duplicate = outcome.duplicate,
            "monthly referral notice issued"
        );
        Ok(())
    }

    /// Sends the deadline's command as the timer, under its deterministic command id.
    async fn fire(&self, due: &Due) -> Result<CommandOutcome, Error> {
        let organisation = match &due.pending.organisation {
            Some(organisation) => organisation.clone(),
            // Events appended by this crate always name the organisation; others may not.
            None => self
                .commands
                .load(due.posting_id)
                .await?
                .and_then(|(posting, _)| posting.organisation_id())
                .map_or_else(|| "unknown".to_owned(), |o| o.to_string()),
        };
        let command_id = timer_command_id(due.kind, due.posting_id, due.due_at);
        let mut ctx = CommandContext::new(
            Caller::new(TIMER_SUBJECT, Role::Service, organisation),
            command_id.clone(),
        );
        ctx.causation_id = Some(due.pending.cause.to_string());
        self.commands
            .execute_unscoped(&ctx, command_id, due.posting_id, due.kind.command())
            .await
    }

    fn lock(&self) -> MutexGuard<'_, Schedule> {
        // Every update leaves the schedule consistent before it could panic, so a poisoned lock
        // still guards valid data.
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Schedule {
    /// Takes in the next event of the log.
    fn observe(&mut self, event: RecordedEvent) {
        // The subscription and `catch_up` may both deliver an event; the first one counts.
        if event.checkpoint() <= self.checkpoint {
            return;
        }
        self.checkpoint = event.checkpoint();
        if !TIMER_EVENTS.contains(&event.event_type.as_str()) {
            return;
        }
        let Some(posting_id) = posting_of_stream(&event.stream_id) else {
            return;
        };
        let decoded = match serde_json::from_value::<PostingEvent>(event.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                // One bad event must not stop every other deadline.
                tracing::error!(
                    position = event.position,
                    %error,
                    "a deadline event does not decode; skipping it"
                );
                return;
            }
        };
        self.follow_publication(
            posting_id,
            &decoded,
            event.metadata.command.organisation.as_deref(),
        );
        // Settle first: an event that both settles and sets a kind (none does today) keeps
        // the deadline it sets.
        for kind in settled_timers(&decoded) {
            if let Some(due_at) = self.by_posting.remove(&(posting_id, *kind)) {
                self.due.remove(&(due_at, posting_id, *kind));
            }
        }
        for timer in due_timers(&decoded) {
            let pending = Pending {
                organisation: event.metadata.command.organisation.clone(),
                cause: event.metadata.event_id,
            };
            if let Some(earlier) = self
                .by_posting
                .insert((posting_id, timer.kind), timer.due_at)
            {
                self.due.remove(&(earlier, posting_id, timer.kind));
            }
            self.due
                .insert((timer.due_at, posting_id, timer.kind), pending);
        }
    }

    /// Keeps `published` up to date for the monthly notice (R-POST-9).
    fn follow_publication(
        &mut self,
        posting_id: PostingId,
        event: &PostingEvent,
        organisation: Option<&str>,
    ) {
        match event {
            PostingEvent::PostingPublished {
                content: Some(content),
                ..
            } => {
                // The command layer records the posting's owner on every event.
                let Some(organisation) = organisation.and_then(|o| o.parse().ok()) else {
                    return;
                };
                let mut posting = PublishedPosting {
                    organisation,
                    title: String::new(),
                    referral_period_end: None,
                    new_graduate: false,
                    public: true,
                };
                posting.take(content);
                self.published.insert(posting_id, posting);
            }
            PostingEvent::ModificationPublished {
                content,
                published_at,
                expires_at,
                ..
            } => {
                if let Some(posting) = self.published.get_mut(&posting_id) {
                    posting.take(content);
                    // R-POST-5: a later end reopens an expired posting.
                    if change_reopens(*expires_at, *published_at) {
                        posting.public = true;
                    }
                }
            }
            PostingEvent::PostingExpired { .. } => {
                if let Some(posting) = self.published.get_mut(&posting_id) {
                    posting.public = false;
                }
            }
            PostingEvent::PostingWithdrawn { .. }
            | PostingEvent::RecruitmentStopped { .. }
            | PostingEvent::PostingCancelled { .. } => {
                self.published.remove(&posting_id);
            }
            _ => {}
        }
    }

    /// Each organisation's postings in `month`'s notice, ordered by referral end, then id.
    fn notices(&self, month: Month) -> BTreeMap<OrganisationId, Vec<NoticedPosting>> {
        let mut notices: BTreeMap<OrganisationId, Vec<NoticedPosting>> = BTreeMap::new();
        for (posting_id, posting) in &self.published {
            let Some(end) = posting.referral_period_end else {
                continue;
            };
            if posting.public && notice::is_noticed_by(Some(end), posting.new_graduate, month) {
                notices
                    .entry(posting.organisation)
                    .or_default()
                    .push(NoticedPosting {
                        posting_id: *posting_id,
                        title: posting.title.clone(),
                        referral_period_end: end,
                    });
            }
        }
        for postings in notices.values_mut() {
            postings.sort_by_key(|p| (p.referral_period_end, p.posting_id));
        }
        notices
    }

    /// The deadlines due at `now`, earliest first.
    fn ready(&self, now: DateTime<Utc>) -> Vec<Due> {
        self.due
            .iter()
            .take_while(|((due_at, _, _), _)| *due_at <= now)
            .map(|((due_at, posting_id, kind), pending)| Due {
                due_at: *due_at,
                posting_id: *posting_id,
                kind: *kind,
                pending: pending.clone(),
            })
            .collect()
    }

    /// Forgets a deadline that fired or was dropped, unless a later one replaced it meanwhile.
    fn remove(&mut self, due: &Due) {
        let key = (due.posting_id, due.kind);
        if self.by_posting.get(&key) == Some(&due.due_at) {
            self.by_posting.remove(&key);
            self.due.remove(&(due.due_at, due.posting_id, due.kind));
        }
    }
}

/// The store command id of `organisation`'s notice for `month`: the same for every instance and
/// restart, so the store keeps one.
fn notice_command_id(organisation: OrganisationId, month: Month) -> String {
    format!("{TIMER_SCOPE}/monthly_notice/{organisation}/{month}")
}

/// The store command id of a firing: the same for every instance and every restart, so the
/// deadline fires once. Not organisation-scoped: `timer` is refused as a caller organisation.
fn timer_command_id(kind: TimerKind, posting_id: PostingId, due_at: DateTime<Utc>) -> String {
    format!(
        "{TIMER_SCOPE}/{}/{posting_id}/{}",
        kind.as_str(),
        due_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filtered_event_types_are_posting_event_types() {
        for name in TIMER_EVENTS {
            assert!(PostingEvent::TYPES.contains(&name), "{name}");
        }
    }

    #[test]
    fn timer_command_ids_are_deterministic_and_fit_the_store() {
        let posting = PostingId::new(Uuid::from_u128(1));
        let at = "2026-01-31T15:00:00Z".parse().unwrap();
        let id = timer_command_id(TimerKind::PublishPosting, posting, at);
        assert_eq!(
            id,
            "timer/publish_posting/00000000-0000-0000-0000-000000000001/2026-01-31T15:00:00Z"
        );
        assert!(id.len() <= jobboard_eventstore::MAX_NAME_LEN);
    }
}
