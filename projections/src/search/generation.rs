//! One generation of the index: a tantivy index in its own directory, the writer that applies
//! events to it, and the checkpoint its last commit carries.
//!
//! The checkpoint (with the view's version and the number of events it covers) is the commit's
//! payload, so the documents, the per-posting states and the checkpoint land in one atomic commit:
//! after a crash the generation reopens at its last commit and reads the log again after exactly
//! the checkpoint that commit names. Documents are replaced by posting id, and an event at or
//! below the stored stream version is skipped, so even a replayed event changes nothing.
//!
//! Layout of the view's directory: `gen-000001/`, `gen-000002/`, … and `CURRENT`, which names the
//! generation that serves queries. A generation above it is a rebuild in progress; one below it is
//! a leftover of a switch whose clean-up was cut short.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use jobboard_domain::PostingEvent;
use jobboard_domain::posting::PostingId;
use jobboard_eventstore::{Checkpoint, RecordedEvent};
use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::IndexWriterOptions;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocSet, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher,
    TERMINATED, TantivyDocument,
};

use super::error::IndexError;
use super::hook::ReferralAgencies;
use super::schema::{Fields, PostingState, schema};
use super::text::{BIGRAMS, Bigrams, CHAR_SET, CharSet, UNIGRAMS, Unigrams};
use super::{SearchOptions, VERSION};
use crate::error::Result;
use crate::postings;

/// The file naming the serving generation.
const CURRENT: &str = "CURRENT";
/// What the payload says it belongs to, so a foreign index is not taken for ours.
const VIEW: &str = "jobboard-search";

/// What a commit records beside the documents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Commit {
    view: String,
    /// The version of the view that built the generation.
    pub(super) version: u32,
    /// The last event the generation reflects.
    pub(super) checkpoint: Checkpoint,
    /// How many events of the log the checkpoint covers (applied or skipped).
    pub(super) events: u64,
}

/// A generation open for writing and reading.
pub(super) struct Generation {
    pub(super) number: u64,
    path: PathBuf,
    writer: IndexWriter,
    pub(super) reader: IndexReader,
    pub(super) fields: Fields,
    /// What the last commit recorded.
    pub(super) committed: Commit,
    /// What has been applied, committed or not.
    applied: (Checkpoint, u64),
    /// The postings applied since the last commit; written to the index at the next commit.
    pending: HashMap<PostingId, Pending>,
    /// When the log recorded the last event applied.
    pub(super) last_recorded_at: Option<DateTime<Utc>>,
    /// Threads for decoding events and building documents.
    threads: usize,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("path", &self.path)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

/// What opening an existing generation found.
pub(super) enum Opened {
    Usable(Box<Generation>),
    /// Built with another schema: the current code can neither query nor extend it.
    OtherSchema,
}

impl Generation {
    /// Creates generation `number` under `root`, empty, at the start of the log.
    pub(super) fn create(
        root: &Path,
        number: u64,
        options: &SearchOptions,
    ) -> Result<Self, IndexError> {
        let path = generation_path(root, number);
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path)?;
        let index = Index::builder()
            .schema(schema())
            .settings(IndexSettings::default())
            .create_in_dir(&path)?;
        let commit = Commit {
            view: VIEW.to_owned(),
            version: VERSION,
            checkpoint: Checkpoint::START,
            events: 0,
        };
        Self::with_index(index, path, number, commit, options)
    }

    /// Opens generation `number` under `root`.
    pub(super) fn open(
        root: &Path,
        number: u64,
        options: &SearchOptions,
    ) -> Result<Opened, IndexError> {
        let path = generation_path(root, number);
        let index = Index::open(MmapDirectory::open(&path).map_err(tantivy::TantivyError::from)?)?;
        if index.schema() != schema() {
            return Ok(Opened::OtherSchema);
        }
        let commit = match index.load_metas()?.payload {
            None => Commit {
                view: VIEW.to_owned(),
                version: VERSION,
                checkpoint: Checkpoint::START,
                events: 0,
            },
            Some(text) => {
                let commit: Commit = serde_json::from_str(&text)
                    .map_err(|e| IndexError::Payload(format!("{text:?}: {e}")))?;
                if commit.view != VIEW {
                    return Err(IndexError::Payload(format!("{text:?} is not this view's")));
                }
                commit
            }
        };
        Self::with_index(index, path, number, commit, options).map(|g| Opened::Usable(Box::new(g)))
    }

    fn with_index(
        index: Index,
        path: PathBuf,
        number: u64,
        committed: Commit,
        options: &SearchOptions,
    ) -> Result<Self, IndexError> {
        let tokenizers = index.tokenizers();
        tokenizers.register(BIGRAMS, Bigrams::default());
        tokenizers.register(CHAR_SET, CharSet::default());
        tokenizers.register(UNIGRAMS, Unigrams::default());
        let threads = options.indexing_threads.max(1);
        let writer = index.writer_with_options(
            IndexWriterOptions::builder()
                .num_worker_threads(threads)
                .memory_budget_per_thread(options.indexing_memory_bytes / threads)
                .num_merge_threads(1)
                .build(),
        )?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let fields = Fields::resolve(&index.schema())?;
        Ok(Self {
            number,
            path,
            writer,
            reader,
            fields,
            committed: committed.clone(),
            applied: (committed.checkpoint, committed.events),
            pending: HashMap::new(),
            last_recorded_at: None,
            threads,
        })
    }

    /// Events applied since the last commit.
    pub(super) fn uncommitted(&self) -> u64 {
        self.applied.1 - self.committed.events
    }

    /// Whether enough has been applied since the last commit to commit while catching up: the
    /// events, or the postings held in memory (which bound its memory).
    pub(super) fn commit_due(&self, options: &SearchOptions) -> bool {
        self.uncommitted() >= options.commit_every || self.pending.len() >= options.commit_postings
    }

    /// Applies `batch` (the next events of the log, in order) to the postings' states;
    /// [`commit`](Self::commit) writes the documents of the changed ones and makes them visible
    /// and durable. Writing at commit time, not per batch, indexes a posting once however many
    /// of its events the commit covers (a rebuild commits every [`SearchOptions::commit_every`]
    /// events).
    pub(super) fn apply(
        &mut self,
        batch: &[RecordedEvent],
        hook: &dyn ReferralAgencies,
    ) -> Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let searcher = self.reader.searcher();
        let mut decoded = decode_all(batch, self.threads).into_iter();
        for event in batch {
            let decoded = decoded.next().expect("one result per event");
            if let Some(id) = posting_of(event) {
                let entry = entry(&mut self.pending, &searcher, &self.fields, id)?;
                // The stored version makes applying idempotent: an event the state already
                // reflects is skipped.
                if event.version > entry.state.version {
                    let decoded = decoded.expect("posting events are decoded")?;
                    entry.state.posting.apply(decoded);
                    entry.state.version = event.version;
                    entry.state.updated_at = Some(event.metadata.recorded_at);
                    entry.dirty = true;
                }
            }
            for change in hook.agency_changes(event)? {
                let entry = entry(
                    &mut self.pending,
                    &searcher,
                    &self.fields,
                    change.posting_id,
                )?;
                let changed = if change.may_refer {
                    entry.state.agencies.insert(change.agency_id)
                } else {
                    entry.state.agencies.remove(&change.agency_id)
                };
                entry.dirty |= changed;
            }
        }
        self.applied = (last.checkpoint(), self.applied.1 + batch.len() as u64);
        self.last_recorded_at = Some(last.metadata.recorded_at);
        Ok(())
    }

    /// Writes the documents of every posting changed since the last commit and commits them with
    /// the checkpoint as the payload, then makes them visible to the reader. Returns false when
    /// there was nothing to commit.
    pub(super) fn commit(&mut self) -> Result<bool, IndexError> {
        let (checkpoint, events) = self.applied;
        if events == self.committed.events {
            return Ok(false);
        }
        let changed: Vec<Pending> = self
            .pending
            .drain()
            .map(|(_, p)| p)
            .filter(|p| p.dirty)
            .collect();
        // Deletes first, so that every add below comes after the delete of its posting.
        for entry in changed.iter().filter(|e| e.indexed) {
            self.writer
                .delete_term(self.fields.posting_term(entry.state.posting_id));
        }
        // Building documents (normalising, serialising the state) is as much work as indexing
        // them: spread it over the indexing threads' share of the machine.
        let (writer, fields) = (&self.writer, &self.fields);
        let chunk = changed.len().div_ceil(self.threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = changed
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> Result<(), IndexError> {
                        for entry in part {
                            for doc in entry.state.documents(fields)? {
                                writer.add_document(doc)?;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        })?;
        let commit = Commit {
            checkpoint,
            events,
            ..self.committed.clone()
        };
        let payload = serde_json::to_string(&commit).map_err(IndexError::State)?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.reader.reload()?;
        self.committed = commit;
        Ok(true)
    }

    /// Drops everything applied since the last commit (after a failed batch).
    pub(super) fn rollback(&mut self) -> Result<(), IndexError> {
        self.writer.rollback()?;
        self.pending.clear();
        self.applied = (self.committed.checkpoint, self.committed.events);
        Ok(())
    }

    /// Closes the generation (letting running merges finish, so no thread writes into it any
    /// more) and deletes its directory.
    pub(super) fn remove(self) -> Result<(), IndexError> {
        let Self { path, writer, .. } = self;
        writer.wait_merging_threads()?;
        fs::remove_dir_all(path)?;
        Ok(())
    }
}

/// A posting's state since the last commit.
struct Pending {
    state: PostingState,
    /// Whether the committed index holds documents of the posting.
    indexed: bool,
    /// Whether it changed since the last commit.
    dirty: bool,
}

/// Posting `id`'s entry: from what was applied since the last commit, from the index, or new.
fn entry<'p>(
    pending: &'p mut HashMap<PostingId, Pending>,
    searcher: &Searcher,
    fields: &Fields,
    id: PostingId,
) -> Result<&'p mut Pending, IndexError> {
    match pending.entry(id) {
        std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
        std::collections::hash_map::Entry::Vacant(entry) => {
            let stored = stored_state(searcher, fields, id)?;
            Ok(entry.insert(Pending {
                indexed: stored.is_some(),
                state: stored.unwrap_or_else(|| PostingState::new(id)),
                dirty: false,
            }))
        }
    }
}

/// The posting whose stream `event` belongs to, if it is a posting event this version knows
/// (a stream that merely shares the prefix is skipped silently).
fn posting_of(event: &RecordedEvent) -> Option<PostingId> {
    postings::posting_of(event).flatten()
}

/// Decodes the posting events of `batch` (`None` for other events), on up to `threads` threads:
/// decoding JSON is most of the cost of applying an event, and it does not depend on order.
fn decode_all(batch: &[RecordedEvent], threads: usize) -> Vec<Option<Result<PostingEvent>>> {
    let one = |event: &RecordedEvent| posting_of(event).map(|_| postings::decode_event(event));
    if threads <= 1 || batch.len() < 256 {
        return batch.iter().map(one).collect();
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = batch
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The state stored with posting `id`'s documents in the committed index, if it has any.
fn stored_state(
    searcher: &Searcher,
    fields: &Fields,
    id: PostingId,
) -> Result<Option<PostingState>, IndexError> {
    let term = fields.posting_term(id);
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let inverted = segment.inverted_index(fields.posting_id)?;
        let Some(mut postings) = inverted.read_postings(&term, IndexRecordOption::Basic)? else {
            continue;
        };
        let alive = segment.alive_bitset();
        let mut doc = postings.doc();
        while doc != TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                let ord = u32::try_from(ord).expect("fewer than 2^32 segments");
                let found: TantivyDocument = searcher.doc(DocAddress::new(ord, doc))?;
                let bytes = found
                    .get_first(fields.state)
                    .and_then(|v| v.as_bytes())
                    .ok_or_else(|| IndexError::Payload(format!("posting {id} has no state")))?;
                return PostingState::decode(bytes).map(Some);
            }
            doc = postings.advance();
        }
    }
    Ok(None)
}

/// The directory of generation `number`.
pub(super) fn generation_path(root: &Path, number: u64) -> PathBuf {
    root.join(format!("gen-{number:06}"))
}

/// The generations present under `root`, in ascending order.
pub(super) fn generations(root: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("gen-"))
            .and_then(|n| n.parse().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The serving generation `CURRENT` names, if any.
pub(super) fn current(root: &Path) -> io::Result<Option<u64>> {
    match fs::read_to_string(root.join(CURRENT)) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{CURRENT} holds {text:?}, not a generation number"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Points `CURRENT` at generation `number`, atomically and durably: a crash leaves either the
/// old or the new pointer.
pub(super) fn set_current(root: &Path, number: u64) -> io::Result<()> {
    let temporary = root.join(format!("{CURRENT}.tmp"));
    let mut file = fs::File::create(&temporary)?;
    writeln!(file, "{number}")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, root.join(CURRENT))?;
    fs::File::open(root)?.sync_all()
}

#[cfg(test)]
mod tests {
    use jobboard_eventstore::{CommandMetadata, EventMetadata};
    use serde_json::json;

    use super::*;
    use crate::search::NoReferrals;

    fn recorded(position: u64, version: u64, payload: serde_json::Value) -> RecordedEvent {
        let event = PostingEvent::deserialize(&payload).expect("a posting event");
        RecordedEvent {
            position,
            tx: position,
            stream_id: format!("posting-{}", id()),
            version,
            event_type: event.type_name().to_owned(),
            schema_version: event.schema_version(),
            payload,
            metadata: EventMetadata {
                event_id: uuid::Uuid::from_u64_pair(position, 0),
                command: CommandMetadata::default(),
                recorded_at: DateTime::from_timestamp(
                    1_800_000_000 + i64::try_from(position).unwrap(),
                    0,
                )
                .unwrap(),
            },
            hash: [0; 32],
        }
    }

    fn id() -> PostingId {
        uuid::Uuid::from_u128(7).into()
    }

    fn documents(generation: &Generation) -> u64 {
        generation.reader.searcher().num_docs()
    }

    #[test]
    fn an_event_the_state_already_reflects_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let options = SearchOptions::default();
        let mut generation = Generation::create(dir.path(), 1, &options).unwrap();
        let content = json!({"name": "n", "title": "研究員", "description": "", "additional_items": [],
            "employment_terms": "", "location": "", "institution_type": null,
            "recruitment_period": null, "referral_period_end": null, "web_application": false,
            "direct_application": false});
        let drafted = recorded(
            1,
            1,
            json!({"type": "PostingDrafted", "posting_id": id(),
            "organisation_id": uuid::Uuid::from_u128(9), "language": "ja", "content": content,
            "draft_version": 1}),
        );
        let discarded = recorded(2, 2, json!({"type": "DraftDiscarded"}));
        generation
            .apply(&[drafted.clone(), discarded], &NoReferrals)
            .unwrap();
        assert!(generation.commit().unwrap());
        let stored = stored_state(&generation.reader.searcher(), &generation.fields, id())
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(documents(&generation), 1);

        // Replayed (as after a crash between an apply and its commit): the draft stays discarded.
        generation.apply(&[drafted], &NoReferrals).unwrap();
        assert!(generation.commit().unwrap());
        let again = stored_state(&generation.reader.searcher(), &generation.fields, id())
            .unwrap()
            .unwrap();
        assert_eq!(again, stored);
        assert_eq!(documents(&generation), 1, "replaced, not added");
        assert_eq!(generation.committed.events, 3);

        // Reopened, the commit's payload says where to resume.
        drop(generation);
        let Opened::Usable(reopened) = Generation::open(dir.path(), 1, &options).unwrap() else {
            panic!("the generation reopens");
        };
        assert_eq!(
            reopened.committed.checkpoint,
            Checkpoint { tx: 1, position: 1 }
        );
        assert_eq!(reopened.committed.events, 3);
    }
}
