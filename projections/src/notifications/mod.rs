//! The notifications feed: what a mail or messaging service tells employers — review outcomes,
//! publications, the monthly referral notice (R-POST-3 to R-POST-5, R-POST-9).
//!
//! [`NotificationsProjector`] (`notifications` v1) turns those events into rows of
//! `notifications` (a view over the serving generation's table), each with a stable id (the id of the event it comes from) and a cursor
//! (`seq`, 1, 2, 3, … in log order). A consumer remembers the last cursor it handled and asks for
//! the rows after it ([`NotificationsView::after`]): reconnecting neither misses nor repeats one,
//! and a rebuild of the view gives every notification the same id and cursor again, since both
//! come from the log's own order. The feed is a read model: it sends nothing itself, so replays
//! and rebuilds never notify anyone twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jobboard_domain::notice::{self, NoticeEvent, NoticedPosting};
use jobboard_domain::posting::{OrganisationId, PostingEvent, PostingId, posting_of_stream};
use jobboard_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use crate::db::{Backend, Param, ViewDb, ViewRow, ViewTx, signed, unsigned};
use crate::error::{Error, Result, decode_payload};
use crate::runtime::Projector;

/// The projector's name, for `ProjectionRuntime::wait_for`.
pub const PROJECTOR: &str = "notifications";
/// The version of the view's shape; it names the tables.
pub const VERSION: u32 = 1;

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The operator returned a registration request (R-POST-3).
    RegistrationReturned,
    /// The operator approved a registration request (R-POST-4).
    RegistrationApproved,
    /// The posting went public (R-POST-4).
    Published,
    /// The operator returned a modification request (R-POST-5).
    ModificationReturned,
    /// The operator approved a modification request (R-POST-5).
    ModificationApproved,
    /// An approved modification took effect (R-POST-5).
    ModificationPublished,
    /// Postings whose referral period ends this month (R-POST-9).
    MonthlyReferralNotice,
}

impl NotificationKind {
    /// The stable code, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RegistrationReturned => "registration_returned",
            Self::RegistrationApproved => "registration_approved",
            Self::Published => "published",
            Self::ModificationReturned => "modification_returned",
            Self::ModificationApproved => "modification_approved",
            Self::ModificationPublished => "modification_published",
            Self::MonthlyReferralNotice => "monthly_referral_notice",
        }
    }
}

/// What a notification says beyond its kind; which fields are set depends on the kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationDetail {
    /// The operator's reasons (returns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// When the approved posting or change goes public (approvals, publications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
    /// The month of a referral notice, `2026-03`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// The postings of a referral notice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postings: Vec<NoticedPosting>,
}

/// One notification as the view holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRow {
    /// The cursor: 1, 2, 3, … in log order; ask for the rows after the last one handled.
    pub seq: u64,
    /// Stable id (the source event's id): the same across reconnects and rebuilds.
    pub notification_id: String,
    /// The employer to tell.
    pub organisation_id: OrganisationId,
    /// What it is about.
    pub kind: NotificationKind,
    /// The posting, for posting notifications.
    pub posting_id: Option<PostingId>,
    /// The posting's title when the event was recorded (empty for referral notices).
    pub title: String,
    /// The rest.
    pub detail: NotificationDetail,
    /// When the source event was recorded.
    pub created_at: DateTime<Utc>,
}

/// The table of notifications (a view over the serving generation's table, for readers).
const TABLE: &str = "notifications";
/// The latest title of each posting, for the notifications that name it.
const TITLES: &str = "notification_titles";
const TABLES: &[&str] = &[TABLE, TITLES];

/// The tables of one generation: `t` the notifications, `titles` the posting titles.
fn ddl(backend: Backend, t: &str, titles: &str) -> String {
    match backend {
        Backend::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                seq             INTEGER PRIMARY KEY,
                notification_id TEXT    NOT NULL UNIQUE,
                organisation_id TEXT    NOT NULL,
                kind            TEXT    NOT NULL,
                posting_id      TEXT,
                title           TEXT    NOT NULL,
                detail          TEXT    NOT NULL,
                created_at      INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {t}_by_organisation ON {t} (organisation_id, seq);
            CREATE TABLE IF NOT EXISTS {titles} (posting_id TEXT PRIMARY KEY, title TEXT NOT NULL);"
        ),
        Backend::Postgres => format!(
            r#"CREATE TABLE IF NOT EXISTS {t} (
                seq             BIGINT      PRIMARY KEY,
                notification_id TEXT        NOT NULL UNIQUE,
                organisation_id TEXT COLLATE "C" NOT NULL,
                kind            TEXT        NOT NULL,
                posting_id      TEXT,
                title           TEXT        NOT NULL,
                detail          JSONB       NOT NULL,
                created_at      TIMESTAMPTZ NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {t}_by_organisation ON {t} (organisation_id, seq);
            CREATE TABLE IF NOT EXISTS {titles} (
                posting_id TEXT COLLATE "C" PRIMARY KEY,
                title TEXT NOT NULL
            );"#
        ),
    }
}

/// A new notification, the next cursor; an event already turned into one is left alone.
fn insert_sql(t: &str) -> String {
    // SQLite needs a WHERE before an upsert's ON CONFLICT to parse an INSERT … SELECT.
    format!(
        "INSERT INTO {t} \
         (seq, notification_id, organisation_id, kind, posting_id, title, detail, created_at) \
         SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5, $6, $7 FROM {t} \
         WHERE true ON CONFLICT (notification_id) DO NOTHING"
    )
}

fn upsert_title_sql(titles: &str) -> String {
    format!(
        "INSERT INTO {titles} (posting_id, title) VALUES ($1, $2) \
         ON CONFLICT (posting_id) DO UPDATE SET title = excluded.title"
    )
}

async fn upsert_title(tx: &mut ViewTx, posting_id: PostingId, title: String) -> Result<()> {
    let sql = upsert_title_sql(&tx.table(TITLES));
    tx.execute(
        AssertSqlSafe(sql),
        &[posting_id.to_string().into(), title.into()],
    )
    .await?;
    Ok(())
}

/// Projects review outcomes, publications and referral notices into `notifications`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotificationsProjector;

#[async_trait]
impl Projector for NotificationsProjector {
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
        let ddl = ddl(tx.backend(), &tx.table(TABLE), &tx.table(TITLES));
        tx.execute_script(AssertSqlSafe(ddl)).await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        if event.stream_id.starts_with(notice::STREAM_PREFIX) {
            return apply_notice(tx, event).await;
        }
        let Some(posting_id) = posting_of_stream(&event.stream_id) else {
            return Ok(());
        };
        if !PostingEvent::TYPES.contains(&event.event_type.as_str()) {
            return Ok(());
        }
        let decoded: PostingEvent = decode_payload(event)?;
        let (kind, detail) = match decoded {
            PostingEvent::PostingDrafted { content, .. }
            | PostingEvent::DraftSaved { content, .. }
            | PostingEvent::PostingSubmitted { content, .. } => {
                upsert_title(tx, posting_id, content.title).await?;
                return Ok(());
            }
            PostingEvent::PostingReturned { reasons } => (
                NotificationKind::RegistrationReturned,
                NotificationDetail {
                    reasons,
                    ..NotificationDetail::default()
                },
            ),
            PostingEvent::PostingApproved { publishes_at, .. } => (
                NotificationKind::RegistrationApproved,
                effective(publishes_at),
            ),
            PostingEvent::PostingPublished { published_at, .. } => {
                (NotificationKind::Published, effective(published_at))
            }
            PostingEvent::ModificationReturned { reasons } => (
                NotificationKind::ModificationReturned,
                NotificationDetail {
                    reasons,
                    ..NotificationDetail::default()
                },
            ),
            PostingEvent::ModificationApproved { effective_at, .. } => (
                NotificationKind::ModificationApproved,
                effective(effective_at),
            ),
            PostingEvent::ModificationPublished {
                content,
                published_at,
                ..
            } => {
                upsert_title(tx, posting_id, content.title).await?;
                (
                    NotificationKind::ModificationPublished,
                    effective(published_at),
                )
            }
            _ => return Ok(()),
        };
        // The command layer records the posting's owner on every event, whoever acted.
        let Some(organisation) = event
            .metadata
            .command
            .organisation
            .as_deref()
            .and_then(|o| o.parse::<OrganisationId>().ok())
        else {
            tracing::warn!(
                position = event.position,
                "a posting event names no organisation; no notification"
            );
            return Ok(());
        };
        let sql = format!(
            "SELECT title FROM {} WHERE posting_id = $1",
            tx.table(TITLES)
        );
        let title = tx
            .fetch_optional(AssertSqlSafe(sql), &[posting_id.to_string().into()])
            .await?
            .map(|row| row.get::<String>("title"))
            .transpose()?
            .unwrap_or_default();
        insert(
            tx,
            event,
            organisation,
            kind,
            Some(posting_id),
            title,
            &detail,
        )
        .await
    }
}

fn effective(at: DateTime<Utc>) -> NotificationDetail {
    NotificationDetail {
        effective_at: Some(at),
        ..NotificationDetail::default()
    }
}

async fn apply_notice(tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
    if event.event_type != "MonthlyReferralNoticeIssued" {
        return Ok(());
    }
    let NoticeEvent::MonthlyReferralNoticeIssued {
        organisation_id,
        month,
        postings,
    } = decode_payload(event)?;
    let detail = NotificationDetail {
        month: Some(month),
        postings,
        ..NotificationDetail::default()
    };
    let kind = NotificationKind::MonthlyReferralNotice;
    insert(
        tx,
        event,
        organisation_id,
        kind,
        None,
        String::new(),
        &detail,
    )
    .await
}

async fn insert(
    tx: &mut ViewTx,
    event: &RecordedEvent,
    organisation: OrganisationId,
    kind: NotificationKind,
    posting_id: Option<PostingId>,
    title: String,
    detail: &NotificationDetail,
) -> Result<()> {
    let params = [
        event.metadata.event_id.to_string().into(),
        organisation.to_string().into(),
        kind.as_str().into(),
        posting_id.map(|p| p.to_string()).into(),
        title.into(),
        Param::json(detail)?,
        event.metadata.recorded_at.into(),
    ];
    let sql = insert_sql(&tx.table(TABLE));
    tx.execute(AssertSqlSafe(sql), &params).await?;
    Ok(())
}

/// Reads the notifications feed. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NotificationsView {
    db: ViewDb,
}

/// Largest page served.
pub const MAX_PAGE: u32 = 500;

impl NotificationsView {
    /// Queries on `db`, once the runtime has set up [`NotificationsProjector`].
    pub fn new(db: ViewDb) -> Self {
        Self { db }
    }

    /// The notifications after cursor `after` (0: from the first), of `organisation` only if
    /// given, in cursor order, at most `limit` (0 or more than [`MAX_PAGE`]: [`MAX_PAGE`]).
    pub async fn after(
        &self,
        organisation: Option<OrganisationId>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<NotificationRow>> {
        let limit = match limit {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut params: Vec<Param> = vec![signed(after)?.into()];
        let mut sql = format!(
            "SELECT seq, notification_id, organisation_id, kind, posting_id, title, detail, \
             created_at FROM {TABLE} WHERE seq > $1"
        );
        if let Some(organisation) = organisation {
            params.push(organisation.to_string().into());
            sql.push_str(" AND organisation_id = $2");
        }
        params.push(i64::from(limit).into());
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
        // Built from the fragments above only; every value is a parameter.
        let rows = self.db.fetch_all(AssertSqlSafe(sql), &params).await?;
        rows.iter().map(notification_row).collect()
    }
}

fn notification_row(row: &ViewRow) -> Result<NotificationRow> {
    fn parse<T: std::str::FromStr>(column: &str, text: String) -> Result<T> {
        text.parse()
            .map_err(|_| Error::Corrupted(format!("{column} {text:?}")))
    }
    let kind: String = row.get("kind")?;
    let kind = serde_json::from_value(serde_json::Value::String(kind.clone()))
        .map_err(|_| Error::Corrupted(format!("notification kind {kind:?}")))?;
    Ok(NotificationRow {
        seq: unsigned(row.get("seq")?)?,
        notification_id: row.get("notification_id")?,
        organisation_id: parse("organisation_id", row.get("organisation_id")?)?,
        kind,
        posting_id: row
            .get::<Option<String>>("posting_id")?
            .map(|p| parse("posting_id", p))
            .transpose()?,
        title: row.get("title")?,
        detail: row.get::<Json<NotificationDetail>>("detail")?.0,
        created_at: row.time("created_at")?,
    })
}
