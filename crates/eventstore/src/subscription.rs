//! Subscriptions: catch up from a checkpoint, then follow the log live.
//!
//! The follower reads pages in global order; when it has read everything readable it waits for
//! a commit signal (LISTEN/NOTIFY on PostgreSQL, in-process on SQLite). It never polls in a busy
//! loop: it looks again only on a signal, with a short backoff while an open transaction holds
//! the readable horizon back, and every few seconds when idle (a notification lost with a crashed
//! instance must not stall it).

use std::collections::VecDeque;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;

use crate::error::Result;
use crate::store::{EventStore, HELD_BACKOFF, IDLE_RECHECK};
use crate::types::{Checkpoint, RecordedEvent};

/// Events read per page while catching up.
const PAGE: usize = 1000;

struct Follower {
    store: EventStore,
    after: Checkpoint,
    buffer: VecDeque<RecordedEvent>,
    commits: watch::Receiver<u64>,
    held_wait: Duration,
    failed: bool,
}

pub(crate) fn follow(
    store: EventStore,
    after: Checkpoint,
) -> impl Stream<Item = Result<RecordedEvent>> {
    let commits = store.commit_signal();
    let follower = Follower {
        store,
        after,
        buffer: VecDeque::new(),
        commits,
        held_wait: HELD_BACKOFF.0,
        failed: false,
    };
    futures::stream::unfold(follower, |mut f| async move {
        if f.failed {
            return None;
        }
        match f.next().await {
            Ok(event) => Some((Ok(event), f)),
            Err(error) => {
                f.failed = true;
                Some((Err(error), f))
            }
        }
    })
}

impl Follower {
    async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.after = event.checkpoint();
                return Ok(event);
            }
            // Mark the signal seen before reading, so a commit landing after the read wakes us.
            self.commits.borrow_and_update();
            let page = self.store.read_page(self.after, PAGE).await?;
            if !page.rows.is_empty() {
                self.held_wait = HELD_BACKOFF.0;
                self.buffer.extend(self.store.decode(page.rows).await?);
                continue;
            }
            if page.held {
                tokio::time::sleep(self.held_wait).await;
                self.held_wait = (self.held_wait * 2).min(HELD_BACKOFF.1);
                continue;
            }
            // Closed signal (store dropped) falls back to the idle re-check.
            let _ = tokio::time::timeout(IDLE_RECHECK, self.commits.changed()).await;
        }
    }
}
