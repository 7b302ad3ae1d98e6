//! [`PostingsView`]: reads `postings` for GetPosting, ListPostings and the review queue, and
//! `posting_drafts` for the saved draft versions: database views of the serving generation's
//! tables, so each query reads one complete generation (a switch redefines them atomically).
//!
//! Lists are newest first (`created_at`, then posting id, both descending) and paged by keyset:
//! a page token holds the last row's sort key, so pages stay stable while postings are added
//! (new ones sort before the first page, never into a later one) and deep pages cost no more
//! than the first.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{OrganisationId, PostingContent, PostingId};
use serde::de::{DeserializeOwned, IntoDeserializer};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{DraftVersionRow, ModificationRow, PostingRow, drafts_table, table};
use crate::db::{Param, ViewDb, ViewRow, unsigned};
use crate::error::{Error, Result};

/// Page size when the caller asks for none (0).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page served; larger requests are cut to it.
pub const MAX_PAGE_SIZE: u32 = 200;

/// Version tag of the page token's format, so a future format can tell old tokens apart.
const TOKEN_TAG: &str = "p1";

macro_rules! columns {
    () => {
        "posting_id, organisation_id, status, language, content, draft_version, version, \
         publish_date, publishes_at, published_at, withdrawal_effective_at, withdrawn_at, \
         return_reasons, created_at, updated_at, reused_from, expires_at, modifiable_until, \
         modifications_locked, ended_at, review_requested_at, modification_status, \
         modification_content, modification_requested_at, modification_return_reasons, \
         modification_effective_at"
    };
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingPage {
    /// The postings, newest first.
    pub postings: Vec<PostingRow>,
    /// The token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Queries on the postings view. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PostingsView {
    db: ViewDb,
}

impl PostingsView {
    /// Queries on `db`. The table exists once the runtime has set up [`super::PostingsProjector`].
    pub fn new(db: ViewDb) -> Self {
        Self { db }
    }

    /// The posting, if the view has it.
    pub async fn get(&self, posting_id: PostingId) -> Result<Option<PostingRow>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM ",
            table!(),
            " WHERE posting_id = $1"
        );
        self.db
            .fetch_optional(sql, &[posting_id.to_string().into()])
            .await?
            .map(|row| posting_row(&row))
            .transpose()
    }

    /// A page of postings, newest first: those of `organisation` (`None`: every organisation,
    /// for operators), in `status` if given. `page_size` 0 means [`DEFAULT_PAGE_SIZE`]; more than
    /// [`MAX_PAGE_SIZE`] is cut to it. `page_token` is a previous page's `next_page_token` (empty
    /// or `None` for the first page); any other text is [`Error::InvalidPageToken`].
    pub async fn list(
        &self,
        organisation: Option<OrganisationId>,
        status: Option<PostingStatus>,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<PostingPage> {
        let after = match page_token {
            None | Some("") => None,
            Some(token) => Some(PageKey::decode(token)?),
        };
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };

        let mut params: Vec<Param> = Vec::new();
        let mut filters: Vec<String> = Vec::new();
        if let Some(organisation) = organisation {
            params.push(organisation.to_string().into());
            filters.push(format!("organisation_id = ${}", params.len()));
        }
        if let Some(status) = status {
            params.push(status.as_str().into());
            filters.push(format!("status = ${}", params.len()));
        }
        if let Some(after) = &after {
            params.push(after.created_at.into());
            params.push(after.posting_id.to_string().into());
            let n = params.len();
            filters.push(format!("(created_at, posting_id) < (${}, ${n})", n - 1));
        }
        // One more than the page, to learn whether another page follows.
        params.push(i64::from(page_size + 1).into());
        let mut sql = concat!("SELECT ", columns!(), " FROM ", table!()).to_owned();
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, posting_id DESC LIMIT ${}",
            params.len()
        ));

        // The text is built from the fragments above only; every value is a parameter.
        let rows = self.db.fetch_all(AssertSqlSafe(sql), &params).await?;
        let mut postings = rows.iter().map(posting_row).collect::<Result<Vec<_>>>()?;
        let next_page_token = if postings.len() > page_size as usize {
            postings.truncate(page_size as usize);
            postings.last().map(|last| {
                PageKey {
                    created_at: last.created_at,
                    posting_id: last.posting_id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(PostingPage {
            postings,
            next_page_token,
        })
    }

    /// The operator's review queue (R-POST-3, R-POST-5): every posting whose registration or
    /// modification request waits for review, the oldest request first, at most `limit`
    /// (0: [`DEFAULT_PAGE_SIZE`]; cut to one more than [`MAX_PAGE_SIZE`], so a caller paging by
    /// [`MAX_PAGE_SIZE`] can ask for one more row to learn whether another page follows) after
    /// the request at `after` (the last row's `review_requested_at` and id).
    pub async fn review_queue(
        &self,
        limit: u32,
        after: Option<(DateTime<Utc>, PostingId)>,
    ) -> Result<Vec<PostingRow>> {
        let limit = match limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE + 1),
        };
        let (after_at, after_id) =
            after.map_or((None, String::new()), |(at, id)| (Some(at), id.to_string()));
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM ",
            table!(),
            " WHERE review_requested_at IS NOT NULL AND ($1 IS NULL OR \
             (review_requested_at, posting_id) > ($1, $2)) \
             ORDER BY review_requested_at, posting_id LIMIT $3"
        );
        let params = [after_at.into(), after_id.into(), i64::from(limit).into()];
        let rows = self.db.fetch_all(sql, &params).await?;
        rows.iter().map(posting_row).collect()
    }

    /// Every saved draft version of the posting, oldest first (R-POST-2); empty if the view
    /// does not have the posting.
    pub async fn draft_versions(&self, posting_id: PostingId) -> Result<Vec<DraftVersionRow>> {
        let sql = concat!(
            "SELECT draft_version, content, saved_at FROM ",
            drafts_table!(),
            " WHERE posting_id = $1 ORDER BY draft_version"
        );
        let rows = self
            .db
            .fetch_all(sql, &[posting_id.to_string().into()])
            .await?;
        rows.iter()
            .map(|row| {
                let version: i64 = row.get("draft_version")?;
                Ok(DraftVersionRow {
                    draft_version: u32::try_from(version)
                        .map_err(|_| Error::Corrupted(format!("draft version {version}")))?,
                    content: row.get::<Json<PostingContent>>("content")?.0,
                    saved_at: row.time("saved_at")?,
                })
            })
            .collect()
    }
}

/// The sort key of the last row of a page: the next page starts after it.
#[derive(Debug, PartialEq, Eq)]
struct PageKey {
    created_at: DateTime<Utc>,
    posting_id: PostingId,
}

impl PageKey {
    /// `p1:<created_at µs>:<posting id>`, base64url: opaque to clients, readable in a debugger.
    fn encode(&self) -> String {
        let text = format!(
            "{TOKEN_TAG}:{}:{}",
            self.created_at.timestamp_micros(),
            self.posting_id
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(token: &str) -> Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Error::InvalidPageToken)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::InvalidPageToken)?;
        let mut parts = text.splitn(3, ':');
        let (Some(TOKEN_TAG), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::InvalidPageToken);
        };
        let created_at = micros
            .parse()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or(Error::InvalidPageToken)?;
        let posting_id = id.parse().map_err(|_| Error::InvalidPageToken)?;
        Ok(Self {
            created_at,
            posting_id,
        })
    }
}

fn posting_row(row: &ViewRow) -> Result<PostingRow> {
    let draft_version: i64 = row.get("draft_version")?;
    Ok(PostingRow {
        posting_id: parse_id(&row.get::<String>("posting_id")?)?,
        organisation_id: parse_id(&row.get::<String>("organisation_id")?)?,
        status: parse_code(&row.get::<String>("status")?)?,
        language: parse_code(&row.get::<String>("language")?)?,
        content: row.get::<Json<PostingContent>>("content")?.0,
        draft_version: u32::try_from(draft_version)
            .map_err(|_| Error::Corrupted(format!("draft version {draft_version}")))?,
        version: unsigned(row.get("version")?)?,
        publish_date: row.get("publish_date")?,
        publishes_at: row.opt_time("publishes_at")?,
        published_at: row.opt_time("published_at")?,
        withdrawal_effective_at: row.opt_time("withdrawal_effective_at")?,
        withdrawn_at: row.opt_time("withdrawn_at")?,
        return_reasons: row.get::<Json<Vec<String>>>("return_reasons")?.0,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        reused_from: row
            .get::<Option<String>>("reused_from")?
            .map(|id| parse_id(&id))
            .transpose()?,
        expires_at: row.opt_time("expires_at")?,
        modifiable_until: row.opt_time("modifiable_until")?,
        modifications_locked: row.get("modifications_locked")?,
        ended_at: row.opt_time("ended_at")?,
        review_requested_at: row.opt_time("review_requested_at")?,
        modification: match row.get::<Option<String>>("modification_status")? {
            None => None,
            Some(status) => Some(ModificationRow {
                status: parse_code(&status)?,
                content: row
                    .get::<Option<Json<PostingContent>>>("modification_content")?
                    .ok_or_else(|| Error::Corrupted("a modification without content".into()))?
                    .0,
                requested_at: row
                    .opt_time("modification_requested_at")?
                    .ok_or_else(|| Error::Corrupted("a modification without its time".into()))?,
                return_reasons: row
                    .get::<Option<Json<Vec<String>>>>("modification_return_reasons")?
                    .map(|r| r.0)
                    .unwrap_or_default(),
                effective_at: row.opt_time("modification_effective_at")?,
            }),
        },
    })
}

fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| Error::Corrupted(format!("{text:?} is not an id")))
}

/// A status or language from its stable code, through the domain's own serde names (so the
/// list of codes lives in one place).
fn parse_code<T: DeserializeOwned>(code: &str) -> Result<T> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(code))
        .map_err(|e| Error::Corrupted(format!("{code:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_anything_else() {
        let key = PageKey {
            created_at: DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap(),
            posting_id: "01940000-0000-7000-8000-000000000001".parse().unwrap(),
        };
        assert_eq!(PageKey::decode(&key.encode()).unwrap(), key);
        let plain = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "not base64!".to_owned(),
            plain("p1:12"),
            plain("p2:12:01940000-0000-7000-8000-000000000001"),
            plain("p1:x:01940000-0000-7000-8000-000000000001"),
            plain("p1:12:not-a-uuid"),
        ] {
            assert!(
                matches!(PageKey::decode(&bad), Err(Error::InvalidPageToken)),
                "{bad}"
            );
        }
    }

    #[test]
    fn status_codes_parse_through_the_domain_names() {
        for status in [
            PostingStatus::PendingReview,
            PostingStatus::WithdrawalPending,
        ] {
            assert_eq!(
                parse_code::<PostingStatus>(status.as_str()).unwrap(),
                status
            );
        }
        assert!(parse_code::<PostingStatus>("gone").is_err());
    }
}
