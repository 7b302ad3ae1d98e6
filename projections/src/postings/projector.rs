//! [`PostingsProjector`]: keeps `postings_v2` (one row per posting) and `posting_drafts_v2`
//! (every saved draft version, R-POST-2) from the events of `posting-<uuid>` streams.
//!
//! Each event is one statement. Applying is idempotent per (posting, stream version): the insert
//! of `PostingDrafted` does nothing if the row exists, and every update is guarded by
//! `version < $event_version`, so an event the row already reflects changes nothing. Events set
//! the fields they carry (the domain's rule), never increment them.

use async_trait::async_trait;
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{ModificationStatus, PostingEvent, PostingId};
use jobboard_eventstore::RecordedEvent;
use serde::Deserialize;

use super::{PROJECTOR, VERSION, drafts_table, table};
use crate::db::{Backend, Param, ViewTx, signed};
use crate::error::{Error, Result};
use crate::runtime::Projector;

/// The stream category of postings (`posting-<uuid>`, cqrs-es' `Posting::TYPE`).
const STREAM_PREFIX: &str = "posting-";

/// The indexes of both backends: an employer's list, the operators' list of everything, and the
/// operators' list by status (the review queue); each in the lists' newest-first order.
macro_rules! indexes {
    () => {
        concat!(
            "CREATE INDEX IF NOT EXISTS ",
            table!(),
            "_by_organisation ON ",
            table!(),
            " (organisation_id, created_at, posting_id);",
            "CREATE INDEX IF NOT EXISTS ",
            table!(),
            "_by_created ON ",
            table!(),
            " (created_at, posting_id);",
            "CREATE INDEX IF NOT EXISTS ",
            table!(),
            "_by_status ON ",
            table!(),
            " (status, created_at, posting_id);",
            "CREATE INDEX IF NOT EXISTS ",
            table!(),
            "_review_queue ON ",
            table!(),
            " (review_requested_at, posting_id) WHERE review_requested_at IS NOT NULL;",
        )
    };
}

const SQLITE_DDL: &str = concat!(
    "CREATE TABLE IF NOT EXISTS ",
    table!(),
    " (
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
    CREATE TABLE IF NOT EXISTS ",
    drafts_table!(),
    " (
        posting_id    TEXT    NOT NULL,
        draft_version INTEGER NOT NULL,
        content       TEXT    NOT NULL,
        saved_at      INTEGER NOT NULL,
        PRIMARY KEY (posting_id, draft_version)
    );",
    indexes!(),
);

// `COLLATE "C"` orders ids by bytes, as SQLite does, and keeps keyset comparisons cheap.
const POSTGRES_DDL: &str = concat!(
    "CREATE TABLE IF NOT EXISTS ",
    table!(),
    r#" (
        posting_id              TEXT COLLATE "C" PRIMARY KEY,
        organisation_id         TEXT COLLATE "C" NOT NULL,
        status                  TEXT        NOT NULL,
        language                TEXT        NOT NULL,
        content                 JSONB       NOT NULL,
        draft_version           BIGINT      NOT NULL,
        version                 BIGINT      NOT NULL,
        publish_date            DATE,
        publishes_at            TIMESTAMPTZ,
        published_at            TIMESTAMPTZ,
        withdrawal_effective_at TIMESTAMPTZ,
        withdrawn_at            TIMESTAMPTZ,
        return_reasons          JSONB       NOT NULL,
        created_at              TIMESTAMPTZ NOT NULL,
        updated_at              TIMESTAMPTZ NOT NULL,
        reused_from             TEXT,
        expires_at              TIMESTAMPTZ,
        modifiable_until        TIMESTAMPTZ,
        modifications_locked    BOOLEAN     NOT NULL DEFAULT false,
        ended_at                TIMESTAMPTZ,
        review_requested_at     TIMESTAMPTZ,
        modification_status     TEXT,
        modification_content    JSONB,
        modification_requested_at TIMESTAMPTZ,
        modification_return_reasons JSONB,
        modification_effective_at TIMESTAMPTZ
    );
    CREATE TABLE IF NOT EXISTS "#,
    drafts_table!(),
    r#" (
        posting_id    TEXT COLLATE "C" NOT NULL,
        draft_version BIGINT      NOT NULL,
        content       JSONB       NOT NULL,
        saved_at      TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (posting_id, draft_version)
    );"#,
    indexes!(),
);

const INSERT_DRAFTED: &str = concat!(
    "INSERT INTO ",
    table!(),
    " (posting_id, organisation_id, status, language, content, draft_version, version, \
     return_reasons, created_at, updated_at, reused_from) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) ON CONFLICT (posting_id) DO NOTHING"
);

/// A saved draft version (R-POST-2); a version already there is left alone.
const INSERT_DRAFT_VERSION: &str = concat!(
    "INSERT INTO ",
    drafts_table!(),
    " (posting_id, draft_version, content, saved_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (posting_id, draft_version) DO NOTHING"
);

/// The columns a modification request sets, cleared when it is taken in or dropped.
macro_rules! clear_modification {
    () => {
        "modification_status = NULL, modification_content = NULL, \
         modification_requested_at = NULL, modification_return_reasons = NULL, \
         modification_effective_at = NULL"
    };
}

/// An update of the posting `$1` to stream version `$2` at `$3`, setting `$sets` (parameters
/// from `$4`), unless the row already reflects that version.
macro_rules! update {
    ($($sets:expr),+ $(,)?) => {
        concat!(
            "UPDATE ",
            table!(),
            " SET ",
            $($sets,)+
            ", version = $2, updated_at = $3 WHERE posting_id = $1 AND version < $2"
        )
    };
}

/// Projects posting events into `postings_v2` and `posting_drafts_v2`.
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

    async fn setup(&self, tx: &mut ViewTx) -> Result<()> {
        let ddl = match tx.backend() {
            Backend::Sqlite => SQLITE_DDL,
            Backend::Postgres => POSTGRES_DDL,
        };
        tx.execute_script(ddl).await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        let Some(stream_key) = event.stream_id.strip_prefix(STREAM_PREFIX) else {
            return Ok(());
        };
        // A type this version does not know (added later) is skipped; the checkpoint moves on.
        if !PostingEvent::TYPES.contains(&event.event_type.as_str()) {
            return Ok(());
        }
        // The command layer writes postings only under `posting-{uuid}`; another key is some
        // other writer's stream that merely shares the prefix, not a posting this view could
        // show. Skipping it keeps one foreign stream from stalling the view; a posting stream
        // whose events do not decode still stops it (below).
        let Ok(posting_id) = stream_key.parse::<PostingId>() else {
            tracing::warn!(
                stream = %event.stream_id,
                position = event.position,
                "skipping an event of a stream that is not a posting's"
            );
            return Ok(());
        };
        let decoded = decode(event)?;
        let id: Param = posting_id.to_string().into();
        let version: Param = signed(event.version)?.into();
        let at: Param = event.metadata.recorded_at.into();
        let status = |s: PostingStatus| Param::from(s.as_str());
        let modification = |m: ModificationStatus| Param::from(m.as_str());
        match decoded {
            PostingEvent::PostingDrafted {
                posting_id: _,
                organisation_id,
                language,
                content,
                draft_version,
                reused_from,
            } => {
                let content = Param::json(&content)?;
                let params = [
                    id.clone(),
                    organisation_id.to_string().into(),
                    status(PostingStatus::Draft),
                    language.as_str().into(),
                    content.clone(),
                    draft_version.into(),
                    version,
                    Param::json(&[] as &[String])?,
                    at.clone(),
                    reused_from.map(|r| r.to_string()).into(),
                ];
                tx.execute(INSERT_DRAFTED, &params).await?;
                let draft = [id, draft_version.into(), content, at];
                tx.execute(INSERT_DRAFT_VERSION, &draft).await?;
            }
            PostingEvent::DraftSaved {
                content,
                draft_version,
            } => {
                let content = Param::json(&content)?;
                let sql = update!("content = $4, draft_version = $5");
                let params = [
                    id.clone(),
                    version,
                    at.clone(),
                    content.clone(),
                    draft_version.into(),
                ];
                tx.execute(sql, &params).await?;
                let draft = [id, draft_version.into(), content, at];
                tx.execute(INSERT_DRAFT_VERSION, &draft).await?;
            }
            PostingEvent::DraftDiscarded => {
                let sql = update!("status = $4, ended_at = $3");
                let params = [id, version, at, status(PostingStatus::Discarded)];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::PostingSubmitted {
                content,
                draft_version,
            } => {
                let sql = update!(
                    "status = $4, content = $5, draft_version = $6, review_requested_at = $3"
                );
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::PendingReview),
                    Param::json(&content)?,
                    draft_version.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::PostingReturned { reasons } => {
                let sql = update!("status = $4, return_reasons = $5, review_requested_at = NULL");
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::Returned),
                    Param::json(&reasons)?,
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::PostingApproved {
                publish_date,
                publishes_at,
            } => {
                let sql = update!(
                    "status = $4, publish_date = $5, publishes_at = $6, review_requested_at = NULL"
                );
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::Approved),
                    publish_date.into(),
                    publishes_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::PostingPublished {
                published_at,
                content,
                expires_at,
                modifiable_until,
            } => {
                // A v1 publication carries no content: the submitted content stays.
                let sql = update!(
                    "status = $4, published_at = $5, content = COALESCE($6, content), \
                     expires_at = $7, modifiable_until = $8"
                );
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::Published),
                    published_at.into(),
                    content
                        .map(|c| Param::json(&c))
                        .transpose()?
                        .unwrap_or(Param::Json(None)),
                    expires_at.into(),
                    modifiable_until.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::WithdrawalRequested { effective_at, .. } => {
                let sql = update!("status = $4, withdrawal_effective_at = $5");
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::WithdrawalPending),
                    effective_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::PostingWithdrawn { withdrawn_at } => {
                let sql = update!(
                    "status = $4, withdrawn_at = $5, ended_at = $5, review_requested_at = NULL, ",
                    clear_modification!()
                );
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::Withdrawn),
                    withdrawn_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::ModificationRequested {
                content,
                requested_at,
            } => {
                let sql = update!(
                    "modification_status = $4, modification_content = $5, \
                     modification_requested_at = $6, modification_return_reasons = NULL, \
                     modification_effective_at = NULL, review_requested_at = $6"
                );
                let params = [
                    id,
                    version,
                    at,
                    modification(ModificationStatus::PendingReview),
                    Param::json(&content)?,
                    requested_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::ModificationReturned { reasons } => {
                let sql = update!(
                    "modification_status = $4, modification_return_reasons = $5, \
                     review_requested_at = NULL"
                );
                let params = [
                    id,
                    version,
                    at,
                    modification(ModificationStatus::Returned),
                    Param::json(&reasons)?,
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::ModificationApproved { effective_at, .. } => {
                let sql = update!(
                    "modification_status = $4, modification_effective_at = $5, \
                     review_requested_at = NULL"
                );
                let params = [
                    id,
                    version,
                    at,
                    modification(ModificationStatus::Approved),
                    effective_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::ModificationPublished {
                content,
                published_at,
                expires_at,
                modifiable_until,
            } => {
                // R-POST-5: a later end date reopens an expired posting (as the domain folds).
                let sql = update!(
                    "content = $4, expires_at = $5, modifiable_until = $6, \
                     status = CASE WHEN status = 'expired' AND $5 > $7 THEN 'published' \
                     ELSE status END, \
                     ended_at = CASE WHEN status = 'expired' AND $5 > $7 THEN NULL \
                     ELSE ended_at END, ",
                    clear_modification!()
                );
                let params = [
                    id,
                    version,
                    at,
                    Param::json(&content)?,
                    expires_at.into(),
                    modifiable_until.into(),
                    published_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
            PostingEvent::ModificationDiscarded => {
                let sql = update!(clear_modification!());
                tx.execute(sql, &[id, version, at]).await?;
            }
            PostingEvent::ModificationsLocked { .. } => {
                let sql = update!("modifications_locked = $4");
                tx.execute(sql, &[id, version, at, true.into()]).await?;
            }
            PostingEvent::RecruitmentStopped { stopped_at } => {
                end_at_once(
                    tx,
                    [id, version, at],
                    PostingStatus::RecruitmentStopped,
                    stopped_at,
                )
                .await?;
            }
            PostingEvent::PostingCancelled { cancelled_at } => {
                end_at_once(
                    tx,
                    [id, version, at],
                    PostingStatus::Cancelled,
                    cancelled_at,
                )
                .await?;
            }
            PostingEvent::PostingExpired { expired_at } => {
                let sql = update!("status = $4, ended_at = $5");
                let params = [
                    id,
                    version,
                    at,
                    status(PostingStatus::Expired),
                    expired_at.into(),
                ];
                tx.execute(sql, &params).await?;
            }
        }
        Ok(())
    }
}

/// Stopping and cancelling (R-POST-7): the posting leaves in `ended` at `when`, and a pending
/// request goes with it. `key` is the posting id, event version and recorded-at.
async fn end_at_once(
    tx: &mut ViewTx,
    key: [Param; 3],
    ended: PostingStatus,
    when: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let sql = update!(
        "status = $4, ended_at = $5, review_requested_at = NULL, ",
        clear_modification!()
    );
    let [id, version, at] = key;
    let params = [id, version, at, ended.as_str().into(), when.into()];
    tx.execute(sql, &params).await?;
    Ok(())
}

/// The domain event in `event`'s payload (the flat JSON with a `type` field that the domain
/// serialises). A payload that does not decode stops the projector (retried, visible in its
/// status and logs) rather than being skipped: skipping would leave the view silently wrong.
fn decode(event: &RecordedEvent) -> Result<PostingEvent> {
    let decoded = PostingEvent::deserialize(&event.payload).map_err(|e| Error::Decode {
        position: event.position,
        reason: format!("{} payload: {e}", event.event_type),
    })?;
    if decoded.type_name() != event.event_type {
        return Err(Error::Decode {
            position: event.position,
            reason: format!(
                "event type {} carries a {} payload",
                event.event_type,
                decoded.type_name()
            ),
        });
    }
    Ok(decoded)
}
