//! Posting commands, end to end: validate the request, load the posting from the log, authorise,
//! decide with the domain's aggregate, append (the store answers a retried command id with its
//! first outcome), retry on conflicts, snapshot.
//!
//! Who may send what (DOMAIN.md, "Actors"; `jobboard_domain::posting::commands` says who issues
//! each command, the aggregate itself sees no credentials):
//!
//! ```text
//! command                                    role      and
//! CreateDraft                                employer  created for the caller's organisation
//!                                                      (reuse: the source is the caller's too)
//! SaveDraft, DiscardDraft, SubmitForReview,  employer  the posting belongs to the caller's
//!   RequestWithdrawal, RequestModification,            organisation
//!   DiscardModification, StopRecruiting,
//!   CancelPosting
//! ReturnPosting, ApprovePosting,             operator  any posting (R-POST-3, R-POST-5)
//!   ReturnModification, ApproveModification
//! PublishPosting, CompleteWithdrawal,        service   any posting; the timer, when due
//!   PublishModification, ExpirePosting,                (R-POST-4 to R-POST-7)
//!   LockModifications
//! ```
//!
//! A wrong role is refused before anything is read. A posting of another organisation is refused
//! with a message that says nothing about it; a posting that does not exist is `NotFound` for
//! every caller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use jobboard_domain::posting::{
    CreateDraft, FieldViolation, Language, OrganisationId, PostingContent, PostingId,
    STREAM_PREFIX, posting_of_stream,
};
use jobboard_domain::{
    Clock, Posting, PostingCommand, PostingError, PostingEvent, PostingServices,
};
use jobboard_eventstore::{
    AppendOutcome, Checkpoint, CommandMetadata, EventStore, ExpectedVersion, MAX_NAME_LEN,
    NewEvent, Snapshot, StreamId, StreamRange,
};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{Caller, CommandContext, Role};
use crate::error::Error;
use crate::recent::RecentPostings;

/// Longest client command id, in characters (DESIGN.md: every mutating call takes one).
pub const MAX_COMMAND_ID_CHARS: usize = 200;

/// Longest caller organisation accepted, in bytes: it prefixes the stored command id, which the
/// store limits to [`MAX_NAME_LEN`] bytes, and must leave room for a hashed command id.
const MAX_ORGANISATION_BYTES: usize = 100;

/// The prefix of the timer's command ids (`timer/{kind}/…`); no caller organisation may be
/// spelled like it, or its command ids could pre-empt the timer's.
pub(crate) const TIMER_SCOPE: &str = "timer";

/// Longest retry pause, whatever the attempt.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Counter of commands handled, labelled `command` and `outcome` (`ok`, `duplicate`, `invalid`,
/// `rejected`, `conflict`, `denied`, `error`).
pub const COMMANDS_TOTAL: &str = "jobboard_commands_total";
/// Histogram of command handling time in seconds, labelled `command`.
pub const COMMAND_DURATION_SECONDS: &str = "jobboard_command_duration_seconds";
/// Histogram of the log append alone (group commit included) in seconds, labelled `command`.
pub const APPEND_DURATION_SECONDS: &str = "jobboard_append_duration_seconds";

/// How [`PostingCommands`] retries and snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOptions {
    /// Times a command is decided again after losing a version race to another writer, when
    /// the client sent no expected version. After the last, the answer is a conflict.
    pub max_conflict_retries: u32,
    /// A snapshot is saved after a commit that crosses a multiple of this many events; 0 turns
    /// snapshots off.
    pub snapshot_every: u64,
    /// The first retry's pause; each next retry doubles it (up to 500 ms), jittered by ±50 % so
    /// racing writers do not collide again in step.
    pub retry_backoff: Duration,
    /// Postings this instance committed last that are kept in memory, so that the next command
    /// on each decides without reading the log (see `recent.rs`); 0 reads the log every time.
    pub cached_postings: usize,
}

impl Default for CommandOptions {
    fn default() -> Self {
        Self {
            max_conflict_retries: 5,
            snapshot_every: 100,
            retry_backoff: Duration::from_millis(5),
            cached_postings: 4096,
        }
    }
}

/// What a carried-out command committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The posting the command acted on (generated for a `CreateDraft` sent without one).
    pub posting_id: PostingId,
    /// The posting's stream, `posting-{id}`.
    pub stream_id: String,
    /// The stream version after the command: the client's next `expected_version`.
    pub version: u64,
    /// Where the command's last event sits in the global log; a query that waits for this
    /// checkpoint reads its own write.
    pub checkpoint: Checkpoint,
    /// True when the command id had already been carried out: this is the first outcome, and
    /// nothing new was written.
    pub duplicate: bool,
}

impl CommandOutcome {
    fn from_append(posting_id: PostingId, appended: AppendOutcome) -> Self {
        Self {
            posting_id,
            stream_id: appended.stream_id,
            version: appended.stream_version,
            checkpoint: appended.checkpoint,
            duplicate: appended.duplicate,
        }
    }
}

/// The posting commands of the write side. Cheap to clone; clones share the store and options.
#[derive(Clone, Debug)]
pub struct PostingCommands {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: EventStore,
    services: PostingServices,
    recent: RecentPostings,
    options: CommandOptions,
}

/// What a command comes to on one state of its posting.
enum Decided {
    /// Append these events with this metadata, expecting the version the state was folded to.
    Append(Vec<NewEvent>, CommandMetadata),
    /// The command was carried out before: its first outcome.
    AlreadyDone(CommandOutcome),
}

/// What a caller's role lets it do, once checked against the command.
enum Access {
    /// An employer acting for its organisation.
    Employer(OrganisationId),
    /// An operator, or the timer: no ownership to check.
    Any,
}

/// The stored command id, and whether this crate scoped it.
enum StoreCommandId {
    /// `{organisation}/{command id}`, made from the context.
    Scoped,
    /// Chosen whole by this crate (the timer's deterministic ids).
    Given(String),
}

impl PostingCommands {
    /// Commands on `store`, deciding at `clock`'s time, with default options.
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self::with_options(store, clock, CommandOptions::default())
    }

    /// Commands on `store`, deciding at `clock`'s time.
    pub fn with_options(store: EventStore, clock: Arc<dyn Clock>, options: CommandOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                services: PostingServices::new(clock),
                recent: RecentPostings::new(options.cached_postings),
                options,
            }),
        }
    }

    /// The store the commands append to.
    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    /// Carries out `command` on posting `posting_id` for `ctx.caller`.
    ///
    /// `posting_id` may be `None` only for `CreateDraft`, which then gets a new UUID v7; the
    /// command's own `posting_id` and `organisation_id` are replaced by the posting id and the
    /// caller's organisation, so an employer can only ever create its own postings.
    ///
    /// A command id already carried out for this organisation answers its first outcome with
    /// `duplicate` set and writes nothing, even if the posting has moved on since and would now
    /// refuse the command.
    pub async fn execute(
        &self,
        ctx: &CommandContext,
        posting_id: Option<PostingId>,
        command: PostingCommand,
    ) -> Result<CommandOutcome, Error> {
        self.execute_with(ctx, StoreCommandId::Scoped, posting_id, command)
            .await
    }

    /// Like [`execute`](Self::execute), with `store_command_id` stored as is instead of the
    /// organisation-scoped id: for the timer, whose ids are deterministic across instances.
    pub(crate) async fn execute_unscoped(
        &self,
        ctx: &CommandContext,
        store_command_id: String,
        posting_id: PostingId,
        command: PostingCommand,
    ) -> Result<CommandOutcome, Error> {
        let id = StoreCommandId::Given(store_command_id);
        self.execute_with(ctx, id, Some(posting_id), command).await
    }

    /// Creates a new draft from the content of `source`, a past posting of the caller's own
    /// organisation, linked to it (R-POST-7): its latest content and language, draft version 1.
    /// `posting_id` is the new posting's id, generated when `None`.
    ///
    /// A source of another organisation is refused like any other of its postings, one that
    /// does not exist is `NotFound`. A retried command id answers its first outcome.
    pub async fn reuse(
        &self,
        ctx: &CommandContext,
        posting_id: Option<PostingId>,
        source: PostingId,
    ) -> Result<CommandOutcome, Error> {
        let probe = PostingCommand::CreateDraft(CreateDraft {
            posting_id: source,
            organisation_id: OrganisationId::new(Uuid::nil()),
            language: Language::Ja,
            content: PostingContent::default(),
            reused_from: Some(source),
        });
        let access = authorize_role(&ctx.caller, &probe)?;
        let Some((past, _)) = self.load(source).await? else {
            return Err(Error::Domain(PostingError::NotFound));
        };
        authorize_posting(&access, &past, false)?;
        let (Some(language), Some(content)) = (past.language(), past.content()) else {
            return Err(Error::Domain(PostingError::NotFound));
        };
        let command = PostingCommand::CreateDraft(CreateDraft {
            // Both replaced by `execute` with the new id and the caller's organisation.
            posting_id: source,
            organisation_id: OrganisationId::new(Uuid::nil()),
            language,
            content: content.clone(),
            reused_from: Some(source),
        });
        self.execute(ctx, posting_id, command).await
    }

    /// The posting as the log has it now, with its version; `None` if it was never created.
    pub async fn load(&self, posting_id: PostingId) -> Result<Option<(Posting, u64)>, Error> {
        let (posting, version) = self.load_stream(&stream_of(posting_id)).await?;
        Ok((version > 0).then_some((posting, version)))
    }

    async fn execute_with(
        &self,
        ctx: &CommandContext,
        id: StoreCommandId,
        posting_id: Option<PostingId>,
        command: PostingCommand,
    ) -> Result<CommandOutcome, Error> {
        let name = command.name();
        let span = tracing::info_span!(
            "command",
            command = name,
            posting_id = tracing::field::Empty,
            command_id = %ctx.command_id,
        );
        let started = Instant::now();
        async move {
            let result = self.decide_and_append(ctx, id, posting_id, command).await;
            finish(name, &result, started.elapsed());
            result
        }
        .instrument(span)
        .await
    }

    async fn decide_and_append(
        &self,
        ctx: &CommandContext,
        id: StoreCommandId,
        requested: Option<PostingId>,
        command: PostingCommand,
    ) -> Result<CommandOutcome, Error> {
        let is_create = matches!(command, PostingCommand::CreateDraft(_));
        let store_command_id = match id {
            StoreCommandId::Scoped => {
                validate(ctx, requested, is_create, true)?;
                scoped_command_id(&ctx.caller.organisation, &ctx.command_id)
            }
            StoreCommandId::Given(id) => {
                validate(ctx, requested, is_create, false)?;
                id
            }
        };
        let access = authorize_role(&ctx.caller, &command)?;
        // Only CreateDraft passes validation without an id; generate it once, so conflict
        // retries (and the store's command-id record) see the same posting.
        let posting_id = requested.unwrap_or_else(|| PostingId::new(Uuid::now_v7()));
        tracing::Span::current().record("posting_id", tracing::field::display(posting_id));
        let command = match (command, &access) {
            (PostingCommand::CreateDraft(mut create), Access::Employer(organisation)) => {
                create.posting_id = posting_id;
                create.organisation_id = *organisation;
                PostingCommand::CreateDraft(create)
            }
            (command, _) => command,
        };
        let dedup = Dedup {
            command_id: &store_command_id,
            requested,
            is_create,
        };
        let stream = stream_of(posting_id);
        // A retried command must answer its first outcome, even when the posting has moved on.
        // The store already answers that on append (the command id is claimed with the events),
        // so the common path costs no look-up; only the answers a retry can get instead of an
        // append — a refusal (a second SubmitForReview), a stale expected version, another
        // posting (a CreateDraft without an id) — look the command id up before answering.
        let mut attempt = 0;
        let mut use_cache = true;
        loop {
            let cached = use_cache.then(|| self.inner.recent.get(&stream)).flatten();
            let from_cache = cached.is_some();
            let (mut posting, version) = match cached {
                Some(cached) => cached,
                None => self.load_stream(&stream).await?,
            };
            let decided = self
                .decide_on(ctx, &dedup, &access, &command, &mut posting, version)
                .await;
            let (new_events, meta) = match decided {
                Ok(Decided::Append(new_events, meta)) => (new_events, meta),
                // Anything but an append is answered on the log's state, never on a cached one,
                // which may be behind it.
                _ if from_cache => {
                    self.inner.recent.forget(&stream);
                    use_cache = false;
                    continue;
                }
                Ok(Decided::AlreadyDone(first)) => return Ok(first),
                Err(error) => return Err(error),
            };
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            let append_began = Instant::now();
            let appended = self
                .inner
                .store
                .append(&stream, expected, new_events, meta)
                .await;
            metrics::histogram!(APPEND_DURATION_SECONDS, "command" => command.name())
                .record(append_began.elapsed().as_secs_f64());
            match appended {
                Ok(appended) => {
                    // The store matched the id on this stream; a create's id still cannot
                    // answer another command, nor the other way round.
                    if appended.duplicate && !dedup.same_kind(appended.first_version) {
                        return Err(Error::CommandIdReused);
                    }
                    if !appended.duplicate {
                        // `posting` now holds the committed state: `handle` applied each event
                        // as it recorded it.
                        self.inner
                            .recent
                            .put(&stream, &posting, appended.stream_version);
                        self.snapshot_if_due(&stream, &posting, version, &appended)
                            .await;
                    }
                    return Ok(CommandOutcome::from_append(posting_id, appended));
                }
                Err(jobboard_eventstore::Error::Conflict { actual, .. }) => {
                    self.inner.recent.forget(&stream);
                    if let Some(expected) = ctx.expected_version {
                        if let Some(first) = self.first_outcome(&dedup).await? {
                            return Ok(first);
                        }
                        return Err(Error::Conflict { expected, actual });
                    }
                    if attempt >= self.inner.options.max_conflict_retries {
                        return Err(Error::Conflict {
                            expected: version,
                            actual,
                        });
                    }
                    attempt += 1;
                    tracing::debug!(attempt, actual, "lost a version race; deciding again");
                    tokio::time::sleep(backoff(self.inner.options.retry_backoff, attempt)).await;
                }
                Err(jobboard_eventstore::Error::CommandIdReused { .. }) => {
                    // Two attempts of one CreateDraft without an id generate different postings;
                    // the one that committed first is the answer to both.
                    return match self.first_outcome(&dedup).await? {
                        Some(first) => Ok(first),
                        None => Err(Error::CommandIdReused),
                    };
                }
                Err(e) => return Err(Error::store(e, &format!("appending to {stream}"))),
            }
        }
    }

    /// Decides `command` on `posting` at `version`: the events to append, the first outcome of
    /// a command carried out before, or the reason it is refused.
    async fn decide_on(
        &self,
        ctx: &CommandContext,
        dedup: &Dedup<'_>,
        access: &Access,
        command: &PostingCommand,
        posting: &mut Posting,
        version: u64,
    ) -> Result<Decided, Error> {
        if !posting.exists() && !dedup.is_create {
            return Err(Error::Domain(PostingError::NotFound));
        }
        authorize_posting(access, posting, dedup.is_create)?;
        if let Some(expected) = ctx.expected_version
            && expected != version
        {
            // A retry finds the version its first attempt moved on: that outcome answers.
            if let Some(first) = self.first_outcome(dedup).await? {
                return Ok(Decided::AlreadyDone(first));
            }
            // The client decided on a view that is no longer current: only it can decide
            // again, so no retry.
            return Err(Error::Conflict {
                expected,
                actual: version,
            });
        }
        let events = match decide(posting, command.clone(), &self.inner.services).await {
            Ok(events) => events,
            Err(refusal) => {
                // A concurrent attempt of this very command may have committed after the
                // check above, and be the reason for the refusal: its outcome is the answer.
                if let Some(first) = self.first_outcome(dedup).await? {
                    return Ok(Decided::AlreadyDone(first));
                }
                return Err(Error::Domain(refusal));
            }
        };
        let new_events = events.iter().map(new_event).collect::<Result<_, _>>()?;
        let meta = metadata(ctx, dedup.command_id, posting.organisation_id());
        Ok(Decided::Append(new_events, meta))
    }

    /// The first outcome of the command id, if it was carried out already.
    async fn first_outcome(&self, dedup: &Dedup<'_>) -> Result<Option<CommandOutcome>, Error> {
        let Some(first) = self
            .inner
            .store
            .command_outcome(dedup.command_id)
            .await
            .map_err(|e| Error::store(e, "looking up a command id"))?
        else {
            return Ok(None);
        };
        let stored = posting_of_stream(&first.stream_id);
        let same_posting = match (stored, dedup.requested) {
            (Some(stored), Some(requested)) => stored == requested,
            // A CreateDraft without an id accepts whichever posting its first attempt created.
            (Some(_), None) => true,
            (None, _) => false,
        };
        match stored {
            Some(posting_id) if same_posting && dedup.same_kind(first.first_version) => {
                Ok(Some(CommandOutcome::from_append(posting_id, first)))
            }
            _ => Err(Error::CommandIdReused),
        }
    }

    /// Folds the posting from its latest snapshot (if any) and the events after it.
    async fn load_stream(&self, stream: &StreamId) -> Result<(Posting, u64), Error> {
        let store = &self.inner.store;
        let snapshot = match store.load_snapshot(stream).await {
            Ok(snapshot) => snapshot,
            Err(e) if e.is_unavailable() => return Err(Error::Unavailable(e)),
            // A snapshot is a cache: one that cannot be read is folded from the events instead.
            Err(error) => {
                tracing::warn!(
                    %stream,
                    error = &error as &dyn std::error::Error,
                    "ignoring an unreadable snapshot"
                );
                None
            }
        };
        let (mut posting, mut version) = match snapshot {
            Some(snapshot) => match serde_json::from_value::<Posting>(snapshot.state) {
                Ok(posting) => (posting, snapshot.version),
                Err(error) => {
                    // The aggregate's shape changed since the snapshot was taken.
                    tracing::warn!(%stream, %error, "ignoring a snapshot that no longer decodes");
                    (Posting::default(), 0)
                }
            },
            None => (Posting::default(), 0),
        };
        let events = store
            .read_stream(stream, StreamRange::from(version + 1))
            .await
            .map_err(|e| Error::store(e, &format!("reading {stream}")))?;
        for recorded in events {
            if recorded.version != version + 1 {
                return Err(Error::internal(format!(
                    "{stream} jumps from version {version} to {}",
                    recorded.version
                )));
            }
            let event = serde_json::from_value::<PostingEvent>(recorded.payload).map_err(|e| {
                Error::internal_from(
                    format!("event {} of {stream} does not decode", recorded.version),
                    e,
                )
            })?;
            posting.apply(event);
            version = recorded.version;
        }
        Ok((posting, version))
    }

    /// Saves a snapshot when the commit from `before` to the appended version crossed a multiple
    /// of the snapshot interval. Failures are only logged: the log is the truth, a snapshot only
    /// saves reading it.
    async fn snapshot_if_due(
        &self,
        stream: &StreamId,
        posting: &Posting,
        before: u64,
        appended: &AppendOutcome,
    ) {
        let every = self.inner.options.snapshot_every;
        if every == 0 || before / every == appended.stream_version / every {
            return;
        }
        let state = match serde_json::to_value(posting) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%stream, %error, "could not encode a snapshot");
                return;
            }
        };
        let snapshot = Snapshot {
            version: appended.stream_version,
            state,
            sequence: appended.stream_version / every,
        };
        if let Err(error) = self.inner.store.save_snapshot(stream, snapshot).await {
            tracing::warn!(
                %stream,
                error = &error as &dyn std::error::Error,
                "could not save a snapshot"
            );
        }
    }
}

/// The pause before retry `attempt` (1-based): `base` doubled per attempt, capped, jittered by
/// ±50 %.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    // Random enough to spread racing writers; no need for a random-number crate.
    let permille = u32::try_from(Uuid::new_v4().as_u64_pair().0 % 1000).unwrap_or(500);
    doubled.min(MAX_BACKOFF) * (500 + permille) / 1000
}

/// What identifies a command for deduplication.
struct Dedup<'a> {
    /// The id as stored.
    command_id: &'a str,
    /// The posting id the request named (`None`: a CreateDraft that asked for a new id).
    requested: Option<PostingId>,
    is_create: bool,
}

impl Dedup<'_> {
    /// Whether an outcome whose events began at `first_version` can answer this command. Only
    /// CreateDraft writes version 1 of a posting stream, so an id first used for a create cannot
    /// answer another command, and the other way round.
    fn same_kind(&self, first_version: u64) -> bool {
        self.is_create == (first_version == 1)
    }
}

/// The stream of a posting: `posting-{id}`.
pub fn stream_of(posting_id: PostingId) -> StreamId {
    StreamId::new(format!("{STREAM_PREFIX}{posting_id}"))
        .expect("a hyphenated uuid after `posting-` is a valid stream id")
}

/// The command id as stored: `{organisation}/{command id}`, so one organisation can never hit,
/// and so read, another's outcome. Ids that would exceed the store's limit keep the organisation
/// and replace the client's part by its SHA-256.
fn scoped_command_id(organisation: &str, command_id: &str) -> String {
    let scoped = format!("{organisation}/{command_id}");
    if scoped.len() <= MAX_NAME_LEN {
        return scoped;
    }
    let digest = Sha256::digest(command_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{organisation}/sha256:{hex}")
}

/// What is wrong with a client's command id (field `command_id`); empty when it is fine.
///
/// Public so that the edge can report a bad command id together with the rest of a request's
/// problems; `execute` checks it again.
pub fn command_id_violations(command_id: &str) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let mut problem = |description: &str| {
        violations.push(FieldViolation {
            field: "command_id".to_owned(),
            description: description.to_owned(),
        });
    };
    let chars = command_id.chars().count();
    if chars == 0 {
        problem("must not be empty");
    } else if chars > MAX_COMMAND_ID_CHARS {
        problem("must be at most 200 characters");
    }
    if command_id.chars().any(char::is_control) {
        problem("must not contain control characters");
    }
    violations
}

/// Checks the request's own fields (`Invalid`) and the caller's claims (`PermissionDenied`).
fn validate(
    ctx: &CommandContext,
    posting_id: Option<PostingId>,
    is_create: bool,
    scoped: bool,
) -> Result<(), Error> {
    let mut violations = Vec::new();
    let mut problem = |field: &str, description: &str| {
        violations.push(FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
        });
    };
    for violation in command_id_violations(&ctx.command_id) {
        problem(&violation.field, &violation.description);
    }
    for (field, value) in [
        ("correlation_id", &ctx.correlation_id),
        ("causation_id", &ctx.causation_id),
    ] {
        if let Some(value) = value {
            if value.is_empty() || value.len() > MAX_NAME_LEN {
                problem(field, "must be 1 to 200 bytes");
            }
            if value.chars().any(char::is_control) {
                problem(field, "must not contain control characters");
            }
        }
    }
    match posting_id {
        None if !is_create => problem("posting_id", "must be set"),
        Some(id) if id.as_uuid().is_nil() => problem("posting_id", "must not be the nil uuid"),
        _ => {}
    }
    if !violations.is_empty() {
        return Err(Error::Invalid(violations));
    }
    let caller = &ctx.caller;
    if caller.subject.is_empty() || caller.subject.len() > MAX_NAME_LEN {
        return Err(Error::PermissionDenied(
            "the caller's subject must be 1 to 200 bytes".into(),
        ));
    }
    let organisation = &caller.organisation;
    if scoped
        && (organisation.is_empty()
            || organisation.len() > MAX_ORGANISATION_BYTES
            || organisation.contains('/')
            || organisation.chars().any(char::is_control)
            || organisation == TIMER_SCOPE)
    {
        return Err(Error::PermissionDenied(
            "the caller's organisation must be 1 to 100 bytes without `/` and not `timer`".into(),
        ));
    }
    Ok(())
}

/// The role that may send `command` (see the module's table).
fn required_role(command: &PostingCommand) -> Role {
    use PostingCommand as C;
    match command {
        C::CreateDraft(_)
        | C::SaveDraft(_)
        | C::DiscardDraft(_)
        | C::SubmitForReview(_)
        | C::RequestWithdrawal(_)
        | C::RequestModification(_)
        | C::DiscardModification(_)
        | C::StopRecruiting(_)
        | C::CancelPosting(_) => Role::Employer,
        // R-POST-3, R-POST-5: only the operator acts on a pending request.
        C::ReturnPosting(_)
        | C::ApprovePosting(_)
        | C::ReturnModification(_)
        | C::ApproveModification(_) => Role::Operator,
        // R-POST-4 to R-POST-7: deadlines take effect when due, by the timer.
        C::PublishPosting(_)
        | C::CompleteWithdrawal(_)
        | C::PublishModification(_)
        | C::ExpirePosting(_)
        | C::LockModifications(_) => Role::Service,
    }
}

/// Refuses a caller whose role may not send `command`; nothing about any posting is read yet.
fn authorize_role(caller: &Caller, command: &PostingCommand) -> Result<Access, Error> {
    let required = required_role(command);
    if caller.role != required {
        return Err(Error::PermissionDenied(format!(
            "{} may be sent only by {required} callers",
            command.name()
        )));
    }
    if required != Role::Employer {
        return Ok(Access::Any);
    }
    caller
        .organisation
        .parse::<OrganisationId>()
        .map(Access::Employer)
        .map_err(|_| {
            Error::PermissionDenied(
                "an employer's credentials must name its organisation id".into(),
            )
        })
}

/// Refuses an employer acting on another organisation's posting, without saying anything about
/// that posting.
fn authorize_posting(access: &Access, posting: &Posting, is_create: bool) -> Result<(), Error> {
    match access {
        Access::Employer(organisation)
            if !is_create && posting.organisation_id() != Some(*organisation) =>
        {
            Err(Error::PermissionDenied(
                "the posting does not belong to the caller's organisation".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// Runs the aggregate's `handle`: the events it records, applied to `posting` as it goes.
async fn decide(
    posting: &mut Posting,
    command: PostingCommand,
    services: &PostingServices,
) -> Result<Vec<PostingEvent>, PostingError> {
    let sink = EventSink::default();
    posting.handle(command, services, &sink).await?;
    Ok(sink.collect().await)
}

fn new_event(event: &PostingEvent) -> Result<NewEvent, Error> {
    let payload = serde_json::to_value(event)
        .map_err(|e| Error::internal_from("encoding a posting event", e))?;
    Ok(NewEvent::new(
        event.type_name(),
        event.schema_version(),
        payload,
    ))
}

fn metadata(
    ctx: &CommandContext,
    store_command_id: &str,
    organisation: Option<OrganisationId>,
) -> CommandMetadata {
    CommandMetadata {
        command_id: Some(store_command_id.to_owned()),
        // The stored id, not the client's: it is unique across organisations and always fits.
        correlation_id: Some(
            ctx.correlation_id
                .clone()
                .unwrap_or_else(|| store_command_id.to_owned()),
        ),
        causation_id: ctx.causation_id.clone(),
        actor: Some(ctx.caller.subject.clone()),
        // The posting's owner, whoever acts: projections and audits filter by it.
        organisation: organisation.map(|o| o.to_string()),
        extra: BTreeMap::from([("role".to_owned(), ctx.caller.role.to_string())]),
    }
}

/// Records the command's metrics and logs its end, inside its span.
fn finish(command: &'static str, result: &Result<CommandOutcome, Error>, elapsed: Duration) {
    let outcome = match result {
        Ok(outcome) if outcome.duplicate => "duplicate",
        Ok(_) => "ok",
        Err(error) => error.outcome(),
    };
    metrics::counter!(COMMANDS_TOTAL, "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!(COMMAND_DURATION_SECONDS, "command" => command)
        .record(elapsed.as_secs_f64());
    match result {
        Ok(outcome) => tracing::info!(
            version = outcome.version,
            position = outcome.checkpoint.position,
            duplicate = outcome.duplicate,
            "command carried out"
        ),
        Err(error @ (Error::Unavailable(_) | Error::Conflict { .. })) => {
            tracing::warn!(error = error as &dyn std::error::Error, "command failed");
        }
        Err(error @ Error::Internal { .. }) => {
            tracing::error!(error = error as &dyn std::error::Error, "command failed");
        }
        Err(error) => tracing::debug!(%error, "command refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_scoped_by_organisation_and_always_fit_the_store() {
        assert_eq!(scoped_command_id("org-a", "c-1"), "org-a/c-1");
        let long = "あ".repeat(MAX_COMMAND_ID_CHARS);
        let scoped = scoped_command_id(&"o".repeat(MAX_ORGANISATION_BYTES), &long);
        assert!(scoped.len() <= MAX_NAME_LEN, "{scoped}");
        assert!(scoped.starts_with(&format!("{}/sha256:", "o".repeat(100))));
        assert_ne!(
            scoped_command_id("org-a", &long),
            scoped_command_id("org-b", &long)
        );
    }

    #[test]
    fn every_command_has_exactly_one_role() {
        use jobboard_domain::posting::{ApprovePosting, PublishPosting, SaveDraft};
        assert_eq!(
            required_role(
                &SaveDraft {
                    content: Default::default()
                }
                .into()
            ),
            Role::Employer
        );
        assert_eq!(
            required_role(
                &ApprovePosting {
                    publish_date: chrono::NaiveDate::MIN
                }
                .into()
            ),
            Role::Operator
        );
        assert_eq!(required_role(&PublishPosting.into()), Role::Service);
    }

    #[test]
    fn backoff_doubles_per_attempt_within_its_jitter_and_stays_capped() {
        let base = Duration::from_millis(10);
        for _ in 0..100 {
            let first = backoff(base, 1);
            assert!(first >= base / 2 && first < base * 3 / 2, "{first:?}");
            let third = backoff(base, 3);
            assert!(third >= base * 2 && third < base * 6, "{third:?}");
            assert!(backoff(base, 40) < MAX_BACKOFF * 3 / 2);
        }
    }
}
