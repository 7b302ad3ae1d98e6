//! The postings this instance committed last, kept in memory so that the next command on each
//! decides without reading the log.
//!
//! A cached posting is a guess, never an authority. It is only used to decide on an append, and
//! the append carries the cached version as its expected version: if anything else (another
//! instance, a repair, a rebuild of history) moved the stream on, the store refuses the append
//! as a conflict, the entry is forgotten and the command is decided again on the log. Any answer
//! other than an append — a refusal, a version mismatch, a missing posting — is likewise given
//! only after reading the log, so a stale entry can delay a command by one retry but never
//! change what it is told.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use jobboard_domain::Posting;
use jobboard_eventstore::StreamId;
use lru::LruCache;

/// Least recently used postings, each with the stream version it was folded to.
pub(crate) struct RecentPostings {
    /// `None` when caching is turned off (capacity 0).
    entries: Option<Mutex<LruCache<StreamId, (Posting, u64)>>>,
}

impl RecentPostings {
    /// Keeps at most `capacity` postings; 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The cached posting of `stream` and its version, if any.
    pub(crate) fn get(&self, stream: &StreamId) -> Option<(Posting, u64)> {
        self.lock()?.get(stream).cloned()
    }

    /// Remembers `posting` at `version`, unless a newer version is cached already (two commands
    /// of this instance may finish out of order).
    pub(crate) fn put(&self, stream: &StreamId, posting: &Posting, version: u64) {
        let Some(mut entries) = self.lock() else {
            return;
        };
        if entries
            .peek(stream)
            .is_none_or(|(_, cached)| *cached < version)
        {
            entries.put(stream.clone(), (posting.clone(), version));
        }
    }

    /// Drops the entry of `stream`: the log has moved past it.
    pub(crate) fn forget(&self, stream: &StreamId) {
        if let Some(mut entries) = self.lock() {
            entries.pop(stream);
        }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, LruCache<StreamId, (Posting, u64)>>> {
        // A panic while holding the lock cannot leave an entry half written (each operation is
        // one call on the map), so a poisoned lock is still sound to use.
        let entries = self.entries.as_ref()?;
        Some(
            entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl std::fmt::Debug for RecentPostings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (len, capacity) = self.lock().map_or((0, 0), |e| (e.len(), e.cap().get()));
        f.debug_struct("RecentPostings")
            .field("len", &len)
            .field("capacity", &capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: u32) -> StreamId {
        StreamId::new(format!("posting-{n}")).unwrap()
    }

    #[test]
    fn keeps_the_newest_version_and_forgets_on_request() {
        let recent = RecentPostings::new(2);
        let posting = Posting::default();
        recent.put(&stream(1), &posting, 3);
        recent.put(&stream(1), &posting, 2);
        assert_eq!(recent.get(&stream(1)).map(|(_, v)| v), Some(3));
        recent.forget(&stream(1));
        assert!(recent.get(&stream(1)).is_none());
    }

    #[test]
    fn holds_at_most_its_capacity_and_nothing_when_off() {
        let recent = RecentPostings::new(2);
        for n in 0..3 {
            recent.put(&stream(n), &Posting::default(), 1);
        }
        assert!(recent.get(&stream(0)).is_none(), "the least recent goes");
        assert!(recent.get(&stream(2)).is_some());

        let off = RecentPostings::new(0);
        off.put(&stream(1), &Posting::default(), 1);
        assert!(off.get(&stream(1)).is_none());
    }
}
