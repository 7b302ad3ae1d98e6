//! [`PostingsProjector`]: keeps `postings` (one row per posting) and `posting_drafts` (every saved
//! draft version, R-POST-2) from the events of `posting-<uuid>` streams, one pair of tables per
//! generation (named through `ViewTx::table`).
//!
//! A batch is folded in memory and written in bulk: the rows of the postings the batch touches
//! are loaded in one query, each event is applied to its row in order (`fold`), and every row
//! that changed is written once, with one multi-row upsert per table (`UNNEST` of arrays on
//! PostgreSQL, multi-row `VALUES` on SQLite). A live batch of one event takes the same path, so
//! rebuilds and live updates cannot disagree.
//!
//! Applying is idempotent per (posting, stream version): `PostingDrafted` leaves an existing row
//! alone, every other event changes a row only if the row is at an older stream version, and a
//! draft version already saved is kept. Events set the fields they carry (the domain's rule),
//! never increment them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{ModificationStatus, PostingContent, PostingEvent, change_reopens};
use jobboard_eventstore::RecordedEvent;
use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{PROJECTOR, VERSION, decode_event, drafts_table, posting_of, table};
use crate::db::{Backend, Param, ViewRow, ViewTx, signed};
use crate::error::{Error, Result};
use crate::runtime::{Prepared, Preparer, Projector};

/// The tables readers query, by their plain names.
const TABLES: &[&str] = &[table!(), drafts_table!()];

/// Every column of the postings table, in the order rows are written.
const COLUMNS: [&str; 26] = [
    "posting_id",
    "organisation_id",
    "status",
    "language",
    "content",
    "draft_version",
    "version",
    "publish_date",
    "publishes_at",
    "published_at",
    "withdrawal_effective_at",
    "withdrawn_at",
    "return_reasons",
    "created_at",
    "updated_at",
    "reused_from",
    "expires_at",
    "modifiable_until",
    "modifications_locked",
    "ended_at",
    "review_requested_at",
    "modification_status",
    "modification_content",
    "modification_requested_at",
    "modification_return_reasons",
    "modification_effective_at",
];

/// Rows per multi-row statement on SQLite (26 parameters each, far below its limit of 32,766).
const SQLITE_ROWS_PER_STATEMENT: usize = 500;

/// The tables and indexes of one generation: `{t}` the postings table, `{d}` the drafts table.
/// Index names carry the table's name, so generations never share one. The secondary indexes
/// serve readers only (applying finds rows by primary key), so a rebuild leaves them out
/// (`with_indexes` false) and they are built once, in bulk, when the generation switches in.
fn ddl(backend: Backend, t: &str, d: &str, with_indexes: bool) -> String {
    let tables = tables_ddl(backend, t, d);
    if !with_indexes {
        return tables;
    }
    format!(
        "{tables}
        CREATE INDEX IF NOT EXISTS {t}_by_organisation ON {t} (organisation_id, created_at, posting_id);
        CREATE INDEX IF NOT EXISTS {t}_by_created ON {t} (created_at, posting_id);
        CREATE INDEX IF NOT EXISTS {t}_by_status ON {t} (status, created_at, posting_id);
        CREATE INDEX IF NOT EXISTS {t}_review_queue ON {t} (review_requested_at, posting_id)
            WHERE review_requested_at IS NOT NULL;"
    )
}

/// The two tables of a generation, with their primary keys (which applying needs).
fn tables_ddl(backend: Backend, t: &str, d: &str) -> String {
    match backend {
        Backend::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                posting_id              TEXT    PRIMARY KEY,
                organisation_id         TEXT    NOT NULL,
                status                  TEXT    NOT NULL,
                language                TEXT    NOT NULL,
                content                 TEXT    NOT NULL,
                draft_version           INTEGER NOT NULL,
                version                 INTEGER NOT NULL,
                publish_date            TEXT,
                publishes_at            INTEGER,
                published_at            INTEGER,
                withdrawal_effective_at INTEGER,
                withdrawn_at            INTEGER,
                return_reasons          TEXT    NOT NULL,
                created_at              INTEGER NOT NULL,
                updated_at              INTEGER NOT NULL,
                reused_from             TEXT,
                expires_at              INTEGER,
                modifiable_until        INTEGER,
                modifications_locked    INTEGER NOT NULL DEFAULT 0,
                ended_at                INTEGER,
                review_requested_at     INTEGER,
                modification_status     TEXT,
                modification_content    TEXT,
                modification_requested_at INTEGER,
                modification_return_reasons TEXT,
                modification_effective_at INTEGER
            );
            CREATE TABLE IF NOT EXISTS {d} (
                posting_id    TEXT    NOT NULL,
                draft_version INTEGER NOT NULL,
                content       TEXT    NOT NULL,
                saved_at      INTEGER NOT NULL,
                PRIMARY KEY (posting_id, draft_version)
            );"
        ),
        // `COLLATE "C"` orders ids by bytes, as SQLite does, and keeps keyset comparisons cheap.
        Backend::Postgres => format!(
            r#"CREATE TABLE IF NOT EXISTS {t} (
                posting_id              TEXT COLLATE "C" PRIMARY KEY,
                organisation_id         TEXT COLLATE "C" NOT NULL,
                status                  TEXT        NOT NULL,
                language                TEXT        NOT NULL,
                content                 JSON        NOT NULL,
                draft_version           BIGINT      NOT NULL,
                version                 BIGINT      NOT NULL,
                publish_date            DATE,
                publishes_at            TIMESTAMPTZ,
                published_at            TIMESTAMPTZ,
                withdrawal_effective_at TIMESTAMPTZ,
                withdrawn_at            TIMESTAMPTZ,
                return_reasons          JSON        NOT NULL,
                created_at              TIMESTAMPTZ NOT NULL,
                updated_at              TIMESTAMPTZ NOT NULL,
                reused_from             TEXT,
                expires_at              TIMESTAMPTZ,
                modifiable_until        TIMESTAMPTZ,
                modifications_locked    BOOLEAN     NOT NULL DEFAULT false,
                ended_at                TIMESTAMPTZ,
                review_requested_at     TIMESTAMPTZ,
                modification_status     TEXT,
                modification_content    JSON,
                modification_requested_at TIMESTAMPTZ,
                modification_return_reasons JSON,
                modification_effective_at TIMESTAMPTZ
            );
            CREATE TABLE IF NOT EXISTS {d} (
                posting_id    TEXT COLLATE "C" NOT NULL,
                draft_version BIGINT      NOT NULL,
                content       JSON        NOT NULL,
                saved_at      TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (posting_id, draft_version)
            );"#
        ),
    }
}

/// Projects posting events into `postings` and `posting_drafts`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostingsProjector;

#[async_trait]
impl Projector for PostingsProjector {
    fn name(&self) -> &'static str {
        PROJECTOR
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    async fn setup(&self, tx: &mut ViewTx) -> Result<()> {
        let ddl = ddl(
            tx.backend(),
            &tx.table(table!()),
            &tx.table(drafts_table!()),
            !tx.replaying(),
        );
        tx.execute_script(AssertSqlSafe(ddl)).await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        self.apply_batch(tx, std::slice::from_ref(event)).await
    }

    async fn apply_batch(&self, tx: &mut ViewTx, events: &[RecordedEvent]) -> Result<()> {
        let mut decoded = Vec::new();
        for event in events {
            if let Some(posting) = posting_event(event)? {
                decoded.push(posting);
            }
        }
        apply_decoded(tx, decoded).await
    }

    fn preparer(&self) -> Option<Preparer> {
        Some(Arc::new(|event| {
            posting_event(event)
                .transpose()
                .map(|prepared| Box::new(prepared) as Prepared)
        }))
    }

    async fn apply_prepared(
        &self,
        tx: &mut ViewTx,
        events: &[RecordedEvent],
        prepared: Vec<Option<Prepared>>,
    ) -> Result<()> {
        if prepared.len() != events.len() {
            return self.apply_batch(tx, events).await;
        }
        let mut decoded = Vec::new();
        for (event, prepared) in events.iter().zip(prepared) {
            let Some(prepared) = prepared else {
                continue;
            };
            let posting = match prepared.downcast::<Result<Decoded>>() {
                Ok(posting) => *posting,
                // Not this preparer's: decode here.
                Err(_) => match posting_event(event).transpose() {
                    Some(posting) => posting,
                    None => continue,
                },
            };
            decoded.push(posting?);
        }
        apply_decoded(tx, decoded).await
    }
}

/// Folds the batch's posting events into their rows in memory and writes every row it changed,
/// and every draft version it saved, once.
async fn apply_decoded(tx: &mut ViewTx, decoded: Vec<Decoded>) -> Result<()> {
    if decoded.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = decoded
        .iter()
        .map(|d| d.id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut rows: HashMap<String, Slot> = load(tx, &ids)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.posting_id.clone(),
                Slot {
                    row: Some(row),
                    dirty: false,
                    loaded: true,
                },
            )
        })
        .collect();
    let mut drafts = Vec::new();
    for posting in decoded {
        let slot = rows.entry(posting.id.clone()).or_insert(Slot {
            row: None,
            dirty: false,
            loaded: false,
        });
        if fold(&mut slot.row, &mut drafts, posting)? {
            slot.dirty = true;
        }
    }
    let (mut inserted, mut updated) = (Vec::new(), Vec::new());
    for slot in rows.into_values().filter(|slot| slot.dirty) {
        if let Some(row) = slot.row {
            if slot.loaded {
                updated.push(row);
            } else {
                inserted.push(row);
            }
        }
    }
    let mut seen = HashSet::new();
    drafts.retain(|d: &Draft| seen.insert((d.posting_id.clone(), d.draft_version)));
    write(tx, &inserted, &updated, &drafts).await
}

/// A posting event of the batch, decoded.
struct Decoded {
    id: String,
    version: i64,
    at: DateTime<Utc>,
    event: PostingEvent,
    /// The JSON of the content the event carries (drafted, saved, submitted, published or
    /// requested as a modification), serialised with the decoding: the costly part of a fold.
    content: Option<String>,
}

/// A row as loaded, and whether the batch changed it.
struct Slot {
    row: Option<Row>,
    dirty: bool,
    /// The row was in the table when the batch began.
    loaded: bool,
}

/// The event as this view applies it, or `None` for an event it does not handle.
fn posting_event(event: &RecordedEvent) -> Result<Option<Decoded>> {
    let posting_id = match posting_of(event) {
        None => return Ok(None),
        Some(Some(posting_id)) => posting_id,
        // A posting stream whose events do not decode still stops the view (below).
        Some(None) => {
            tracing::warn!(
                stream = %event.stream_id,
                position = event.position,
                "skipping an event of a stream that is not a posting's"
            );
            return Ok(None);
        }
    };
    let decoded = decode_event(event)?;
    Ok(Some(Decoded {
        id: posting_id.to_string(),
        version: signed(event.version)?,
        at: event.metadata.recorded_at,
        content: carried_content(&decoded).map(json).transpose()?,
        event: decoded,
    }))
}

/// The content an event carries, if any.
fn carried_content(event: &PostingEvent) -> Option<&PostingContent> {
    match event {
        PostingEvent::PostingDrafted { content, .. }
        | PostingEvent::DraftSaved { content, .. }
        | PostingEvent::PostingSubmitted { content, .. }
        | PostingEvent::ModificationRequested { content, .. }
        | PostingEvent::ModificationPublished { content, .. } => Some(content),
        PostingEvent::PostingPublished { content, .. } => content.as_ref(),
        _ => None,
    }
}

/// A row of the postings table, with JSON columns as JSON text.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    posting_id: String,
    organisation_id: String,
    status: String,
    language: String,
    content: String,
    draft_version: i64,
    version: i64,
    publish_date: Option<NaiveDate>,
    publishes_at: Option<DateTime<Utc>>,
    published_at: Option<DateTime<Utc>>,
    withdrawal_effective_at: Option<DateTime<Utc>>,
    withdrawn_at: Option<DateTime<Utc>>,
    return_reasons: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    reused_from: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    modifiable_until: Option<DateTime<Utc>>,
    modifications_locked: bool,
    ended_at: Option<DateTime<Utc>>,
    review_requested_at: Option<DateTime<Utc>>,
    modification_status: Option<String>,
    modification_content: Option<String>,
    modification_requested_at: Option<DateTime<Utc>>,
    modification_return_reasons: Option<String>,
    modification_effective_at: Option<DateTime<Utc>>,
}

impl Row {
    fn clear_modification(&mut self) {
        self.modification_status = None;
        self.modification_content = None;
        self.modification_requested_at = None;
        self.modification_return_reasons = None;
        self.modification_effective_at = None;
    }

    fn from_view(row: &ViewRow) -> Result<Self> {
        let json = |column: &str| -> Result<Option<String>> {
            Ok(row
                .get::<Option<Json<serde_json::Value>>>(column)?
                .map(|v| v.0.to_string()))
        };
        let required = |column: &str| -> Result<String> {
            json(column)?.ok_or_else(|| Error::Corrupted(format!("{column} is null")))
        };
        Ok(Self {
            posting_id: row.get("posting_id")?,
            organisation_id: row.get("organisation_id")?,
            status: row.get("status")?,
            language: row.get("language")?,
            content: required("content")?,
            draft_version: row.get("draft_version")?,
            version: row.get("version")?,
            publish_date: row.get("publish_date")?,
            publishes_at: row.opt_time("publishes_at")?,
            published_at: row.opt_time("published_at")?,
            withdrawal_effective_at: row.opt_time("withdrawal_effective_at")?,
            withdrawn_at: row.opt_time("withdrawn_at")?,
            return_reasons: required("return_reasons")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
            reused_from: row.get("reused_from")?,
            expires_at: row.opt_time("expires_at")?,
            modifiable_until: row.opt_time("modifiable_until")?,
            modifications_locked: row.get("modifications_locked")?,
            ended_at: row.opt_time("ended_at")?,
            review_requested_at: row.opt_time("review_requested_at")?,
            modification_status: row.get("modification_status")?,
            modification_content: json("modification_content")?,
            modification_requested_at: row.opt_time("modification_requested_at")?,
            modification_return_reasons: json("modification_return_reasons")?,
            modification_effective_at: row.opt_time("modification_effective_at")?,
        })
    }

    /// The row's values, in [`COLUMNS`] order, as parameters (SQLite).
    fn params(&self) -> [Param; 26] {
        [
            self.posting_id.as_str().into(),
            self.organisation_id.as_str().into(),
            self.status.as_str().into(),
            self.language.as_str().into(),
            self.content.as_str().into(),
            self.draft_version.into(),
            self.version.into(),
            self.publish_date.into(),
            self.publishes_at.into(),
            self.published_at.into(),
            self.withdrawal_effective_at.into(),
            self.withdrawn_at.into(),
            self.return_reasons.as_str().into(),
            self.created_at.into(),
            self.updated_at.into(),
            self.reused_from.clone().into(),
            self.expires_at.into(),
            self.modifiable_until.into(),
            self.modifications_locked.into(),
            self.ended_at.into(),
            self.review_requested_at.into(),
            self.modification_status.clone().into(),
            self.modification_content.clone().into(),
            self.modification_requested_at.into(),
            self.modification_return_reasons.clone().into(),
            self.modification_effective_at.into(),
        ]
    }
}

/// A saved draft version (R-POST-2).
#[derive(Clone, Debug, PartialEq)]
struct Draft {
    posting_id: String,
    draft_version: i64,
    content: String,
    saved_at: DateTime<Utc>,
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Corrupted(format!("a value does not serialise to JSON: {e}")))
}

/// Applies one event to its posting's row (`None`: not in the view). Returns whether the row
/// changed; saved draft versions go to `drafts`.
fn fold(slot: &mut Option<Row>, drafts: &mut Vec<Draft>, posting: Decoded) -> Result<bool> {
    let Decoded {
        id,
        version,
        at,
        event,
        content: carried,
    } = posting;
    // The content the event carries, serialised when the event was prepared.
    let content_json = || {
        carried
            .clone()
            .ok_or_else(|| Error::Corrupted("an event's content was not prepared".into()))
    };
    if let PostingEvent::PostingDrafted {
        posting_id: _,
        organisation_id,
        language,
        content: _,
        draft_version,
        reused_from,
    } = &event
    {
        let content = content_json()?;
        drafts.push(Draft {
            posting_id: id.clone(),
            draft_version: i64::from(*draft_version),
            content: content.clone(),
            saved_at: at,
        });
        if slot.is_some() {
            return Ok(false);
        }
        *slot = Some(Row {
            posting_id: id,
            organisation_id: organisation_id.to_string(),
            status: PostingStatus::Draft.as_str().to_owned(),
            language: language.as_str().to_owned(),
            content,
            draft_version: i64::from(*draft_version),
            version,
            publish_date: None,
            publishes_at: None,
            published_at: None,
            withdrawal_effective_at: None,
            withdrawn_at: None,
            return_reasons: "[]".to_owned(),
            created_at: at,
            updated_at: at,
            reused_from: reused_from.map(|r| r.to_string()),
            expires_at: None,
            modifiable_until: None,
            modifications_locked: false,
            ended_at: None,
            review_requested_at: None,
            modification_status: None,
            modification_content: None,
            modification_requested_at: None,
            modification_return_reasons: None,
            modification_effective_at: None,
        });
        return Ok(true);
    }
    if let PostingEvent::DraftSaved {
        content: _,
        draft_version,
    } = &event
    {
        // The draft version is kept even if the row is missing or ahead (as the view always did).
        drafts.push(Draft {
            posting_id: id.clone(),
            draft_version: i64::from(*draft_version),
            content: content_json()?,
            saved_at: at,
        });
    }
    let Some(row) = slot.as_mut() else {
        return Ok(false);
    };
    if row.version >= version {
        return Ok(false);
    }
    let status = |s: PostingStatus| s.as_str().to_owned();
    let modification = |m: ModificationStatus| Some(m.as_str().to_owned());
    match event {
        PostingEvent::PostingDrafted { .. } => unreachable!("handled above"),
        PostingEvent::DraftSaved {
            content: _,
            draft_version,
        } => {
            row.content = content_json()?;
            row.draft_version = i64::from(draft_version);
        }
        PostingEvent::DraftDiscarded => {
            row.status = status(PostingStatus::Discarded);
            row.ended_at = Some(at);
        }
        PostingEvent::PostingSubmitted {
            content: _,
            draft_version,
        } => {
            row.status = status(PostingStatus::PendingReview);
            row.content = content_json()?;
            row.draft_version = i64::from(draft_version);
            row.review_requested_at = Some(at);
        }
        PostingEvent::PostingReturned { reasons } => {
            row.status = status(PostingStatus::Returned);
            row.return_reasons = json(&reasons)?;
            row.review_requested_at = None;
        }
        PostingEvent::PostingApproved {
            publish_date,
            publishes_at,
        } => {
            row.status = status(PostingStatus::Approved);
            row.publish_date = Some(publish_date);
            row.publishes_at = Some(publishes_at);
            row.review_requested_at = None;
        }
        PostingEvent::PostingPublished {
            published_at,
            content,
            expires_at,
            modifiable_until,
        } => {
            row.status = status(PostingStatus::Published);
            row.published_at = Some(published_at);
            // A v1 publication carries no content: the submitted content stays.
            if content.is_some() {
                row.content = content_json()?;
            }
            row.expires_at = expires_at;
            row.modifiable_until = modifiable_until;
        }
        PostingEvent::WithdrawalRequested { effective_at, .. } => {
            row.status = status(PostingStatus::WithdrawalPending);
            row.withdrawal_effective_at = Some(effective_at);
        }
        PostingEvent::PostingWithdrawn { withdrawn_at } => {
            row.status = status(PostingStatus::Withdrawn);
            row.withdrawn_at = Some(withdrawn_at);
            row.ended_at = Some(withdrawn_at);
            row.review_requested_at = None;
            row.clear_modification();
        }
        PostingEvent::ModificationRequested {
            content: _,
            requested_at,
        } => {
            row.modification_status = modification(ModificationStatus::PendingReview);
            row.modification_content = Some(content_json()?);
            row.modification_requested_at = Some(requested_at);
            row.modification_return_reasons = None;
            row.modification_effective_at = None;
            row.review_requested_at = Some(requested_at);
        }
        PostingEvent::ModificationReturned { reasons } => {
            row.modification_status = modification(ModificationStatus::Returned);
            row.modification_return_reasons = Some(json(&reasons)?);
            row.review_requested_at = None;
        }
        PostingEvent::ModificationApproved { effective_at, .. } => {
            row.modification_status = modification(ModificationStatus::Approved);
            row.modification_effective_at = Some(effective_at);
            row.review_requested_at = None;
        }
        PostingEvent::ModificationPublished {
            content: _,
            published_at,
            expires_at,
            modifiable_until,
        } => {
            // R-POST-5: a later end date reopens an expired posting (as the domain folds).
            let reopens = row.status == PostingStatus::Expired.as_str()
                && change_reopens(expires_at, published_at);
            row.content = content_json()?;
            row.expires_at = expires_at;
            row.modifiable_until = modifiable_until;
            if reopens {
                row.status = status(PostingStatus::Published);
                row.ended_at = None;
            }
            row.clear_modification();
        }
        PostingEvent::ModificationDiscarded => row.clear_modification(),
        PostingEvent::ModificationsLocked { .. } => row.modifications_locked = true,
        PostingEvent::RecruitmentStopped { stopped_at } => {
            end_at_once(row, PostingStatus::RecruitmentStopped, stopped_at);
        }
        PostingEvent::PostingCancelled { cancelled_at } => {
            end_at_once(row, PostingStatus::Cancelled, cancelled_at);
        }
        PostingEvent::PostingExpired { expired_at } => {
            row.status = status(PostingStatus::Expired);
            row.ended_at = Some(expired_at);
        }
    }
    row.version = version;
    row.updated_at = at;
    Ok(true)
}

/// Stopping and cancelling (R-POST-7): the posting leaves in `ended` at `when`, and a pending
/// request goes with it.
fn end_at_once(row: &mut Row, ended: PostingStatus, when: DateTime<Utc>) {
    row.status = ended.as_str().to_owned();
    row.ended_at = Some(when);
    row.review_requested_at = None;
    row.clear_modification();
}

/// The rows of `ids` in this generation's table, in one query (PostgreSQL) or a few (SQLite).
async fn load(tx: &mut ViewTx, ids: &[String]) -> Result<Vec<Row>> {
    let columns = COLUMNS.join(", ");
    let t = tx.table(table!());
    if let Some(conn) = tx.as_postgres() {
        let sql = format!("SELECT {columns} FROM {t} WHERE posting_id = ANY($1)");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(conn)
            .await?;
        return rows
            .into_iter()
            .map(|row| Row::from_view(&ViewRow::postgres(row)))
            .collect();
    }
    let mut loaded = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {columns} FROM {t} WHERE posting_id IN ({})",
            placeholders.join(", ")
        );
        let params: Vec<Param> = chunk.iter().map(|id| id.as_str().into()).collect();
        for row in tx.fetch_all(AssertSqlSafe(sql), &params).await? {
            loaded.push(Row::from_view(&row)?);
        }
    }
    Ok(loaded)
}

/// Writes the changed rows and the saved draft versions (kept if there): `inserted` are new to the
/// table, `updated` were loaded from it in this transaction.
///
/// On PostgreSQL new rows are plainly inserted and loaded ones plainly updated, and a draft
/// version is inserted where none exists: no `ON CONFLICT`, whose speculative insertion costs
/// an extra write-ahead log record per row. That is safe because nothing else writes this
/// generation while the batch's transaction is open: its runner holds the generation's lease,
/// and the batch's compare-and-set on the checkpoint (the first statement) locks the
/// generation's registry row until the commit, so a second writer would wait there and then
/// find the checkpoint moved.
async fn write(tx: &mut ViewTx, inserted: &[Row], updated: &[Row], drafts: &[Draft]) -> Result<()> {
    let t = tx.table(table!());
    let d = tx.table(drafts_table!());
    if let Some(conn) = tx.as_postgres() {
        if !inserted.is_empty() {
            write_rows_postgres(conn, &t, RowWrite::Insert, inserted).await?;
        }
        if !updated.is_empty() {
            write_rows_postgres(conn, &t, RowWrite::Update, updated).await?;
        }
        if !drafts.is_empty() {
            let sql = format!(
                "INSERT INTO {d} (posting_id, draft_version, content, saved_at) \
                 SELECT p, v, c::json, s FROM UNNEST($1::text[], $2::int8[], $3::text[], \
                 $4::timestamptz[]) AS u(p, v, c, s) \
                 WHERE NOT EXISTS \
                   (SELECT 1 FROM {d} x WHERE x.posting_id = u.p AND x.draft_version = u.v)"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(
                    drafts
                        .iter()
                        .map(|d| d.posting_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(drafts.iter().map(|d| d.draft_version).collect::<Vec<_>>())
                .bind(
                    drafts
                        .iter()
                        .map(|d| d.content.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(drafts.iter().map(|d| d.saved_at).collect::<Vec<_>>())
                .execute(conn)
                .await?;
        }
        return Ok(());
    }
    let columns = COLUMNS.join(", ");
    let updates: Vec<String> = COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let upsert = format!(
        "ON CONFLICT (posting_id) DO UPDATE SET {}",
        updates.join(", ")
    );
    let rows: Vec<&Row> = inserted.iter().chain(updated).collect();
    for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let (values, params) = values(chunk.iter().map(|row| row.params().to_vec()));
        let sql = format!("INSERT INTO {t} ({columns}) VALUES {values} {upsert}");
        tx.execute(AssertSqlSafe(sql), &params).await?;
    }
    for chunk in drafts.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let (values, params) = values(chunk.iter().map(|draft| {
            vec![
                draft.posting_id.as_str().into(),
                draft.draft_version.into(),
                draft.content.as_str().into(),
                draft.saved_at.into(),
            ]
        }));
        let sql = format!(
            "INSERT INTO {d} (posting_id, draft_version, content, saved_at) VALUES {values} \
             ON CONFLICT (posting_id, draft_version) DO NOTHING"
        );
        tx.execute(AssertSqlSafe(sql), &params).await?;
    }
    Ok(())
}

/// `($1, $2), ($3, $4), …` for rows of parameters, and the parameters in order.
fn values(rows: impl Iterator<Item = Vec<Param>>) -> (String, Vec<Param>) {
    let mut text = String::new();
    let mut params = Vec::new();
    for row in rows {
        text.push_str(if params.is_empty() { "(" } else { ", (" });
        for (i, param) in row.into_iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            params.push(param);
            text.push_str(&format!("${}", params.len()));
        }
        text.push(')');
    }
    (text, params)
}

/// How [`write_rows_postgres`] writes its rows.
#[derive(Clone, Copy)]
enum RowWrite {
    /// The rows are new to the table.
    Insert,
    /// The rows are in the table (by posting id).
    Update,
}

/// One `INSERT … SELECT … FROM UNNEST(arrays)`, or one `UPDATE … FROM` the same, for all the
/// rows: one round trip, one parse, whatever the batch's size.
async fn write_rows_postgres(
    conn: &mut sqlx::PgConnection,
    table: &str,
    how: RowWrite,
    rows: &[Row],
) -> Result<()> {
    let columns = COLUMNS.join(", ");
    let values = format!(
        "SELECT posting_id, organisation_id, status, language, content::json, draft_version, \
         version, publish_date, publishes_at, published_at, withdrawal_effective_at, \
         withdrawn_at, return_reasons::json, created_at, updated_at, reused_from, expires_at, \
         modifiable_until, modifications_locked, ended_at, review_requested_at, \
         modification_status, modification_content::json, modification_requested_at, \
         modification_return_reasons::json, modification_effective_at \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], \
         $7::int8[], $8::date[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], \
         $12::timestamptz[], $13::text[], $14::timestamptz[], $15::timestamptz[], $16::text[], \
         $17::timestamptz[], $18::timestamptz[], $19::bool[], $20::timestamptz[], \
         $21::timestamptz[], $22::text[], $23::text[], $24::timestamptz[], $25::text[], \
         $26::timestamptz[]) AS u({columns})"
    );
    let sql = match how {
        RowWrite::Insert => format!("INSERT INTO {table} ({columns}) {values}"),
        RowWrite::Update => {
            let set: Vec<String> = COLUMNS[1..]
                .iter()
                .map(|c| format!("{c} = v.{c}"))
                .collect();
            format!(
                "UPDATE {table} t SET {} FROM ({values}) v WHERE t.posting_id = v.posting_id",
                set.join(", ")
            )
        }
    };
    let text = |f: fn(&Row) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let opt_text = |f: fn(&Row) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    let time = |f: fn(&Row) -> Option<DateTime<Utc>>| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(AssertSqlSafe(sql))
        .bind(text(|r| &r.posting_id))
        .bind(text(|r| &r.organisation_id))
        .bind(text(|r| &r.status))
        .bind(text(|r| &r.language))
        .bind(text(|r| &r.content))
        .bind(rows.iter().map(|r| r.draft_version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.publish_date).collect::<Vec<_>>())
        .bind(time(|r| r.publishes_at))
        .bind(time(|r| r.published_at))
        .bind(time(|r| r.withdrawal_effective_at))
        .bind(time(|r| r.withdrawn_at))
        .bind(text(|r| &r.return_reasons))
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(opt_text(|r| r.reused_from.as_deref()))
        .bind(time(|r| r.expires_at))
        .bind(time(|r| r.modifiable_until))
        .bind(
            rows.iter()
                .map(|r| r.modifications_locked)
                .collect::<Vec<_>>(),
        )
        .bind(time(|r| r.ended_at))
        .bind(time(|r| r.review_requested_at))
        .bind(opt_text(|r| r.modification_status.as_deref()))
        .bind(opt_text(|r| r.modification_content.as_deref()))
        .bind(time(|r| r.modification_requested_at))
        .bind(opt_text(|r| r.modification_return_reasons.as_deref()))
        .bind(time(|r| r.modification_effective_at))
        .execute(conn)
        .await?;
    Ok(())
}
