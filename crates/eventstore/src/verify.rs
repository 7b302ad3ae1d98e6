//! Verification of the hash chains: recomputes every event's hash from its stored content and
//! reports, per broken stream, the first link that does not hold.

use std::collections::HashMap;

use serde::Serialize;

use crate::hash::{self, GENESIS};
use crate::store::StoredRow;

/// The first broken link of one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub stream_id: String,
    /// The version at which the chain first fails to hold.
    pub version: u64,
    /// The global position of that event, when it exists.
    pub position: Option<u64>,
    pub reason: String,
}

/// What [`crate::EventStore::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub streams_checked: u64,
    pub events_checked: u64,
    /// One entry per broken stream, in stream id order.
    pub broken: Vec<BrokenLink>,
}

impl VerifyReport {
    /// True when every chain holds.
    pub fn is_intact(&self) -> bool {
        self.broken.is_empty()
    }
}

/// Walks rows ordered by (stream, version), one stream at a time.
pub(crate) struct ChainWalker {
    /// The head each stream's row in `streams` claims: (version, last hash).
    heads: HashMap<String, (i64, Option<Vec<u8>>)>,
    report: VerifyReport,
    current: Option<StreamState>,
}

struct StreamState {
    stream_id: String,
    version: u64,
    hash: [u8; 32],
    broken: bool,
}

impl ChainWalker {
    pub(crate) fn new(heads: Vec<(String, i64, Option<Vec<u8>>)>) -> Self {
        Self {
            heads: heads
                .into_iter()
                .map(|(stream, version, hash)| (stream, (version, hash)))
                .collect(),
            report: VerifyReport::default(),
            current: None,
        }
    }

    pub(crate) fn push(&mut self, row: &StoredRow) {
        self.report.events_checked += 1;
        if self
            .current
            .as_ref()
            .is_none_or(|s| s.stream_id != row.stream_id)
        {
            self.close_stream();
            self.current = Some(StreamState {
                stream_id: row.stream_id.clone(),
                version: 0,
                hash: GENESIS,
                broken: false,
            });
        }
        let state = self.current.as_mut().expect("a stream is open");
        if state.broken {
            return;
        }
        let version = u64::try_from(row.version).unwrap_or_default();
        let position = u64::try_from(row.position).ok();
        let fail = |reason: String| BrokenLink {
            stream_id: row.stream_id.clone(),
            version,
            position,
            reason,
        };
        if version != state.version + 1 {
            self.report.broken.push(fail(format!(
                "version {} follows version {}: events are missing",
                version, state.version
            )));
            state.broken = true;
            return;
        }
        let expected = hash::link(&state.hash, version, &row.digest());
        if row.hash != expected {
            self.report.broken.push(fail(
                "stored hash does not match the event's content and its predecessor".into(),
            ));
            state.broken = true;
            return;
        }
        state.version = version;
        state.hash = expected;
    }

    /// Checks the finished stream against its head row.
    fn close_stream(&mut self) {
        let Some(state) = self.current.take() else {
            return;
        };
        self.report.streams_checked += 1;
        let head = self.heads.remove(&state.stream_id);
        if state.broken {
            return;
        }
        let claimed = head
            .as_ref()
            .map(|(v, _)| u64::try_from(*v).unwrap_or_default());
        let claimed_hash = head.and_then(|(_, h)| h);
        if claimed != Some(state.version) || claimed_hash.as_deref() != Some(&state.hash[..]) {
            self.report.broken.push(BrokenLink {
                stream_id: state.stream_id,
                version: state.version + 1,
                position: None,
                reason: format!(
                    "the stream's head says version {} but its events end at version {}",
                    claimed.map_or("none".into(), |v| v.to_string()),
                    state.version
                ),
            });
        }
    }

    pub(crate) fn finish(mut self) -> VerifyReport {
        self.close_stream();
        let mut orphans: Vec<_> = self
            .heads
            .drain()
            .filter(|(_, (version, _))| *version > 0)
            .collect();
        orphans.sort();
        for (stream_id, (version, _)) in orphans {
            self.report.streams_checked += 1;
            self.report.broken.push(BrokenLink {
                stream_id,
                version: 1,
                position: None,
                reason: format!("the stream's head says version {version} but it has no events"),
            });
        }
        self.report
            .broken
            .sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        self.report
    }
}
