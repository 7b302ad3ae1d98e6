//! Access counts (R-POST-8): views per posting and business day, and totals per posting, from the
//! roll-up events the command side appends (`PostingViewsCounted` in `postingviews-YYYYMMDD`).
//!
//! [`AccessCountsProjector`] (`access_counts` v1) adds each roll-up to `access_daily` and
//! `access_totals`, and learns each posting's organisation from its `PostingDrafted`, so an
//! employer's ranking needs no other view. Additions are safe because the runtime applies each
//! event exactly once (the checkpoint moves in the same transaction).

use async_trait::async_trait;
use chrono::NaiveDate;
use jobboard_domain::posting::{OrganisationId, PostingId, posting_of_stream};
use jobboard_domain::views::{STREAM_PREFIX, ViewsEvent};
use jobboard_eventstore::RecordedEvent;
use serde::Deserialize;
use sqlx::AssertSqlSafe;

use crate::db::{Backend, Param, ViewDb, ViewTx, signed, unsigned};
use crate::error::{Error, Result, decode_payload};
use crate::runtime::Projector;

/// The projector's name, for `ProjectionRuntime::wait_for`.
pub const PROJECTOR: &str = "access_counts";
/// The version of the view's shape; it names the tables.
pub const VERSION: u32 = 1;

/// Largest ranking served.
pub const MAX_RANKING: u32 = 1000;

/// Views per posting and day (a view over the serving generation's table, for readers).
const DAILY: &str = "access_daily";
/// Total views per posting, with its organisation.
const TOTALS: &str = "access_totals";
const TABLES: &[&str] = &[DAILY, TOTALS];

/// The tables of one generation: `d` the daily counts, `t` the totals. The ranking indexes serve
/// readers only, so a rebuild (`with_indexes` false) builds them when it switches in.
fn ddl(backend: Backend, d: &str, t: &str, with_indexes: bool) -> String {
    let (day, count, text) = match backend {
        Backend::Sqlite => ("TEXT", "INTEGER", "TEXT"),
        Backend::Postgres => ("DATE", "BIGINT", r#"TEXT COLLATE "C""#),
    };
    let tables = format!(
        "CREATE TABLE IF NOT EXISTS {d} (
            posting_id {text} NOT NULL, day {day} NOT NULL, views {count} NOT NULL,
            PRIMARY KEY (posting_id, day));
        CREATE TABLE IF NOT EXISTS {t} (
            posting_id {text} PRIMARY KEY, organisation_id {text}, total {count} NOT NULL);"
    );
    if !with_indexes {
        return tables;
    }
    format!(
        "{tables}
        CREATE INDEX IF NOT EXISTS {t}_ranking ON {t} (total DESC, posting_id);
        CREATE INDEX IF NOT EXISTS {t}_by_organisation ON {t} (organisation_id, total DESC, posting_id);"
    )
}

/// Projects view roll-ups into daily counts and totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessCountsProjector;

/// Just the type and organisation of a `PostingDrafted`; its content is not needed here.
#[derive(Deserialize)]
struct Drafted {
    organisation_id: OrganisationId,
}

#[async_trait]
impl Projector for AccessCountsProjector {
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
            &tx.table(DAILY),
            &tx.table(TOTALS),
            !tx.replaying(),
        );
        tx.execute_script(AssertSqlSafe(ddl)).await
    }

    async fn apply(&self, tx: &mut ViewTx, event: &RecordedEvent) -> Result<()> {
        if event.event_type == "PostingDrafted" {
            let Some(posting_id) = posting_of_stream(&event.stream_id) else {
                return Ok(());
            };
            let drafted: Drafted = decode_payload(event)?;
            let params = [
                posting_id.to_string().into(),
                drafted.organisation_id.to_string().into(),
            ];
            let t = tx.table(TOTALS);
            let sql = format!(
                "INSERT INTO {t} (posting_id, organisation_id, total) VALUES ($1, $2, 0) \
                 ON CONFLICT (posting_id) DO UPDATE SET organisation_id = excluded.organisation_id"
            );
            tx.execute(AssertSqlSafe(sql), &params).await?;
            return Ok(());
        }
        if !event.stream_id.starts_with(STREAM_PREFIX) || event.event_type != "PostingViewsCounted"
        {
            return Ok(());
        }
        let ViewsEvent::PostingViewsCounted { day, counts } = decode_payload(event)?;
        let (d, t) = (tx.table(DAILY), tx.table(TOTALS));
        let add_daily = format!(
            "INSERT INTO {d} (posting_id, day, views) VALUES ($1, $2, $3) \
             ON CONFLICT (posting_id, day) DO UPDATE SET views = {d}.views + excluded.views"
        );
        let add_total = format!(
            "INSERT INTO {t} (posting_id, organisation_id, total) VALUES ($1, NULL, $2) \
             ON CONFLICT (posting_id) DO UPDATE SET total = {t}.total + excluded.total"
        );
        for count in counts {
            let id: Param = count.posting_id.to_string().into();
            let views: Param = signed(count.views)?.into();
            tx.execute(
                AssertSqlSafe(add_daily.clone()),
                &[id.clone(), day.into(), views.clone()],
            )
            .await?;
            tx.execute(AssertSqlSafe(add_total.clone()), &[id, views])
                .await?;
        }
        Ok(())
    }
}

/// A posting's total views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTotal {
    /// The posting.
    pub posting_id: PostingId,
    /// Its organisation, once its draft event was seen.
    pub organisation_id: Option<OrganisationId>,
    /// All views counted so far.
    pub total: u64,
}

/// Reads the access counts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessCountsView {
    db: ViewDb,
}

impl AccessCountsView {
    /// Queries on `db`, once the runtime has set up [`AccessCountsProjector`].
    pub fn new(db: ViewDb) -> Self {
        Self { db }
    }

    /// Postings by total views, most viewed first (ties by posting id), of `organisation` only
    /// if given; at most `limit` (0 or more than [`MAX_RANKING`]: [`MAX_RANKING`]).
    pub async fn ranking(
        &self,
        organisation: Option<OrganisationId>,
        limit: u32,
    ) -> Result<Vec<AccessTotal>> {
        let limit = match limit {
            0 => MAX_RANKING,
            n => n.min(MAX_RANKING),
        };
        let mut params: Vec<Param> = Vec::new();
        let mut sql =
            format!("SELECT posting_id, organisation_id, total FROM {TOTALS} WHERE total > 0");
        if let Some(organisation) = organisation {
            params.push(organisation.to_string().into());
            sql.push_str(" AND organisation_id = $1");
        }
        params.push(i64::from(limit).into());
        sql.push_str(&format!(
            " ORDER BY total DESC, posting_id LIMIT ${}",
            params.len()
        ));
        // Built from the fragments above only; every value is a parameter.
        let rows = self.db.fetch_all(AssertSqlSafe(sql), &params).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("posting_id")?;
                Ok(AccessTotal {
                    posting_id: id
                        .parse()
                        .map_err(|_| Error::Corrupted(format!("posting id {id:?}")))?,
                    organisation_id: row
                        .get::<Option<String>>("organisation_id")?
                        .and_then(|o| o.parse().ok()),
                    total: unsigned(row.get("total")?)?,
                })
            })
            .collect()
    }

    /// A posting's views per business day, oldest first.
    pub async fn daily(&self, posting_id: PostingId) -> Result<Vec<(NaiveDate, u64)>> {
        let rows = self
            .db
            .fetch_all(
                AssertSqlSafe(format!(
                    "SELECT day, views FROM {DAILY} WHERE posting_id = $1 ORDER BY day"
                )),
                &[posting_id.to_string().into()],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.get("day")?, unsigned(row.get("views")?)?)))
            .collect()
    }
}
