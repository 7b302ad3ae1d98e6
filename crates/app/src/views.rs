//! Access counts (R-POST-8): views reported by callers, summed for a moment and appended as one
//! roll-up event per business day.
//!
//! [`ViewCounter::record`] adds a caller's views to the pending sums and waits for the flush
//! that carries them, so a call that returns `Ok` is in the log (nothing accepted is lost on a
//! crash) while the log grows by one event per day per flush, not per view. A flush runs every
//! [`ViewCounterOptions::flush_every`], or at once when [`ViewCounterOptions::max_pending`]
//! distinct (posting, day) pairs wait; a failed flush fails every call it carried (their views are
//! not counted; the caller may report them again).
//!
//! A retried call counts again: a view is a page impression, and counting one twice on a client's
//! retry is accepted where making every beacon idempotent is not worth its cost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;
use jobboard_domain::Clock;
use jobboard_domain::posting::PostingId;
use jobboard_domain::time::business_date;
use jobboard_domain::views::{ViewCount, ViewsEvent, stream_of};
use jobboard_eventstore::EventStore;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, Role};
use crate::error::Error;
use crate::service_events::{self, ServiceEvent};

/// The actor the roll-ups are recorded with.
pub const VIEWS_SUBJECT: &str = "jobboard-views";

/// Most posting ids one call may report.
pub const MAX_VIEWS_PER_CALL: usize = 1000;

/// How often and how much [`ViewCounter`] flushes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewCounterOptions {
    /// Longest a reported view waits for its roll-up.
    pub flush_every: Duration,
    /// Distinct (posting, day) pairs that trigger a flush before `flush_every` has passed.
    pub max_pending: usize,
}

impl Default for ViewCounterOptions {
    fn default() -> Self {
        Self {
            flush_every: Duration::from_millis(200),
            max_pending: 5_000,
        }
    }
}

/// Sums reported views and appends them as roll-ups. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ViewCounter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: EventStore,
    clock: Arc<dyn Clock>,
    options: ViewCounterOptions,
    pending: Mutex<Pending>,
    flush_now: Notify,
}

/// Views not yet in the log, and the calls waiting for them.
#[derive(Debug, Default)]
struct Pending {
    counts: BTreeMap<(NaiveDate, PostingId), u64>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

impl ViewCounter {
    /// A counter on `store`, dating views by `clock`, flushing in a task until `shutdown` is
    /// cancelled (the last views are flushed then); the task's handle comes with it, for a
    /// shutdown that waits for that last flush.
    pub fn spawn(
        store: EventStore,
        clock: Arc<dyn Clock>,
        options: ViewCounterOptions,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let counter = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                options,
                pending: Mutex::new(Pending::default()),
                flush_now: Notify::new(),
            }),
        };
        let task = tokio::spawn(counter.clone().run(shutdown));
        (counter, task)
    }

    /// Counts one view of each of `posting_ids` (an id may repeat) on today's business date, and
    /// returns once they are in the log. Only the `service` role (the public site) reports views.
    pub async fn record(&self, caller: &Caller, posting_ids: &[PostingId]) -> Result<(), Error> {
        if caller.role != Role::Service {
            return Err(Error::PermissionDenied(
                "views are reported by service callers".into(),
            ));
        }
        if posting_ids.is_empty() || posting_ids.len() > MAX_VIEWS_PER_CALL {
            return Err(Error::invalid(
                "posting_ids",
                format!("must hold 1 to {MAX_VIEWS_PER_CALL} posting ids"),
            ));
        }
        let day = business_date(self.inner.clock.now());
        let (done, flushed) = oneshot::channel();
        let full = {
            let mut pending = self.lock();
            for id in posting_ids {
                *pending.counts.entry((day, *id)).or_default() += 1;
            }
            pending.waiters.push(done);
            pending.counts.len() >= self.inner.options.max_pending
        };
        if full {
            self.inner.flush_now.notify_one();
        }
        match flushed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(Error::internal(format!("counting views failed: {reason}"))),
            Err(_) => Err(Error::internal("the view counter stopped")),
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(self.inner.options.flush_every) => false,
                () = self.inner.flush_now.notified() => false,
            };
            self.flush().await;
            if stopping {
                return;
            }
        }
    }

    /// Appends what is pending, one event per day, and answers the calls it carries.
    async fn flush(&self) {
        let Pending { counts, waiters } = std::mem::take(&mut *self.lock());
        if waiters.is_empty() {
            return;
        }
        let mut by_day: BTreeMap<NaiveDate, Vec<ViewCount>> = BTreeMap::new();
        for ((day, posting_id), views) in counts {
            by_day
                .entry(day)
                .or_default()
                .push(ViewCount { posting_id, views });
        }
        let mut outcome = Ok(());
        for (day, counts) in by_day {
            if let Err(error) = self.append(day, counts).await {
                tracing::warn!(%day, %error, "a view roll-up was not appended");
                outcome = Err(error);
            }
        }
        let answer = outcome.map_err(|e| e.to_string());
        for waiter in waiters {
            // A caller that went away no longer needs the answer.
            let _ = waiter.send(answer.clone());
        }
    }

    async fn append(&self, day: NaiveDate, counts: Vec<ViewCount>) -> Result<(), Error> {
        let event = ViewsEvent::PostingViewsCounted { day, counts };
        service_events::append(
            &self.inner.store,
            ServiceEvent {
                stream: stream_of(day),
                event: &event,
                type_name: event.type_name(),
                schema_version: event.schema_version(),
                actor: VIEWS_SUBJECT,
                // No command id: a roll-up is not a client's command, and no retry of it exists.
                command_id: None,
                organisation: None,
                what: "a view roll-up",
            },
        )
        .await?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Plain sums and senders: a panic elsewhere cannot leave them inconsistent.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
