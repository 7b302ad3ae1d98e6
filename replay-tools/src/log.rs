//! Reading the global log page by page, up to its readable end, never holding more than a page.
//!
//! On PostgreSQL the readable end can be held back by a transaction still open anywhere in the
//! cluster (ADR 0002): committed events past it are invisible, and only an empty page says so
//! (`LogPage::held`). So a short page is not taken as the end: the reader reads on until a page
//! comes back empty and not held. While the end is held it waits, at most [`END_PATIENCE`] after
//! first reaching the end, then stops and says so; and it reads at most [`PAGES_PAST_END`] more
//! pages that hold events, so a run ends promptly while the service keeps writing.

use std::time::{Duration, Instant};

use anyhow::Context;
use jobboard_eventstore::{Checkpoint, EventStore, RecordedEvent};

/// Events read per call of `read_all`.
pub(crate) const PAGE: usize = 1000;

/// How long to keep reading once the log's end was first reached: waiting for an open
/// transaction that holds it back, or following a log the service keeps writing.
const END_PATIENCE: Duration = Duration::from_secs(10);

/// How many pages with events to read once the end was first reached: the events committed (or
/// released by the horizon) meanwhile. A log that keeps growing must not keep the reader going.
const PAGES_PAST_END: u32 = 3;

/// A forward reader of the log from a checkpoint.
#[derive(Debug)]
pub(crate) struct LogReader<'a> {
    store: &'a EventStore,
    after: Checkpoint,
    /// When a page first came back short: the end of the log as it was then.
    end_reached: Option<Instant>,
    /// Pages with events read since.
    pages_past_end: u32,
    finished: bool,
    held: bool,
}

impl<'a> LogReader<'a> {
    /// Reads the events after `after`.
    pub(crate) fn new(store: &'a EventStore, after: Checkpoint) -> Self {
        Self {
            store,
            after,
            end_reached: None,
            pages_past_end: 0,
            finished: false,
            held: false,
        }
    }

    /// The next page of events, or `None` at the log's readable end.
    pub(crate) async fn next_page(&mut self) -> anyhow::Result<Option<Vec<RecordedEvent>>> {
        if self.finished {
            return Ok(None);
        }
        let mut wait = Duration::from_millis(10);
        loop {
            let page = self
                .store
                .read_all(self.after, PAGE)
                .await
                .with_context(|| format!("reading the log after {}", self.after))?;
            if let Some(last) = page.events.last() {
                self.after = last.checkpoint();
                if let Some(since) = self.end_reached {
                    self.pages_past_end += 1;
                    self.finished =
                        self.pages_past_end >= PAGES_PAST_END || since.elapsed() >= END_PATIENCE;
                } else if page.events.len() < PAGE {
                    self.end_reached = Some(Instant::now());
                }
                return Ok(Some(page.events));
            }
            let since = *self.end_reached.get_or_insert_with(Instant::now);
            if !page.held || since.elapsed() >= END_PATIENCE {
                self.finished = true;
                self.held = page.held;
                return Ok(None);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    /// True when reading stopped because an open transaction held the log's end back: events
    /// committed after it were not read.
    pub(crate) fn stopped_at_held_end(&self) -> bool {
        self.held
    }
}

/// The event at `checkpoint`, if the checkpoint names one.
///
/// The log has no read by position, but `read_all` after the checkpoint's predecessor in the
/// log's `(tx, position)` order returns exactly it: nothing sorts between `(tx, p - 1)` and
/// `(tx, p)`.
pub(crate) async fn event_at(
    store: &EventStore,
    checkpoint: Checkpoint,
) -> anyhow::Result<Option<RecordedEvent>> {
    if checkpoint.position == 0 {
        return Ok(None);
    }
    let before = Checkpoint {
        tx: checkpoint.tx,
        position: checkpoint.position - 1,
    };
    let page = store
        .read_all(before, 1)
        .await
        .with_context(|| format!("reading the event at checkpoint {checkpoint}"))?;
    Ok(page
        .events
        .into_iter()
        .next()
        .filter(|event| event.checkpoint() == checkpoint))
}
