//! `jobboard.v1.PostingQueryService`: GetPosting, ListPostings, ListReviewQueue and
//! ListDraftVersions, over the postings view.
//!
//! Who sees what: an employer sees its own organisation's postings only (another
//! organisation's posting or list is PERMISSION_DENIED); operators, internal services, auditors
//! and ops see every organisation's. Agencies are refused for now: the postings they may see are
//! those an employer asked them to refer candidates to (R-SRCH-5), which arrive with referrals.
//!
//! Read-your-writes: with `min_position`, a query first waits until the view has applied the log
//! up to that position, at most until shortly before the call's deadline and never longer than
//! [`MAX_READ_WAIT`]; then it answers DEADLINE_EXCEEDED.

use std::time::Duration;

use jobboard_app::{Caller, Role};
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{OrganisationId, PostingId};
use jobboard_projections::ProjectionRuntime;
use jobboard_projections::postings::{self, PostingsView};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::posting_query_service_server::PostingQueryService;
use sha2::{Digest as _, Sha256};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth::caller_of;
use crate::convert::{self, Violations};
use crate::status::{Failure, to_status};

/// The longest a query waits for `min_position`, whatever the call's deadline: a view that lags
/// this much is a problem to surface, not to hide behind a slow answer.
pub const MAX_READ_WAIT: Duration = Duration::from_secs(5);

/// How much earlier than the call's deadline a wait gives up, at most. Both transports cancel
/// the call when its deadline passes (CANCELLED, "Timeout expired"); answering first lets the
/// client see DEADLINE_EXCEEDED and why.
const ANSWER_MARGIN: Duration = Duration::from_millis(250);

/// The posting queries service.
#[derive(Clone, Debug)]
pub struct PostingQueries {
    view: PostingsView,
    projections: ProjectionRuntime,
}

impl PostingQueries {
    /// Queries on `view`, waiting on `projections` for read-your-writes.
    pub fn new(view: PostingsView, projections: ProjectionRuntime) -> Self {
        Self { view, projections }
    }

    /// Waits until the postings view has reached `min_position`, if given.
    async fn wait(
        &self,
        metadata: &MetadataMap,
        min_position: Option<pb::LogPosition>,
    ) -> Result<(), Status> {
        wait_for_view(
            &self.projections,
            postings::PROJECTOR,
            metadata,
            min_position,
        )
        .await
    }
}

/// Waits until `projector`'s view has reached `min_position`, if given, within the call's
/// deadline and [`MAX_READ_WAIT`] (read-your-writes for every query service).
pub(crate) async fn wait_for_view(
    projections: &ProjectionRuntime,
    projector: &str,
    metadata: &MetadataMap,
    min_position: Option<pb::LogPosition>,
) -> Result<(), Status> {
    let Some(position) = min_position else {
        return Ok(());
    };
    let bound = wait_bound(convert::grpc_timeout(metadata));
    projections
        .wait_for(
            projector,
            convert::from_log_position(Some(&position)),
            bound,
        )
        .await
        .map_err(to_status)
}

/// How long a read may wait for its position, given the call's deadline (if any).
pub(crate) fn wait_bound(deadline: Option<Duration>) -> Duration {
    match deadline {
        None => MAX_READ_WAIT,
        Some(deadline) => deadline
            .saturating_sub((deadline / 10).min(ANSWER_MARGIN))
            .min(MAX_READ_WAIT),
    }
}

/// Which postings a caller may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Those of one organisation: an employer's own.
    Organisation(OrganisationId),
    /// Every organisation's.
    Everything,
}

fn scope(caller: &Caller) -> Result<Scope, Failure> {
    match caller.role {
        Role::Employer => caller
            .organisation
            .parse()
            .map(Scope::Organisation)
            .map_err(|_| {
                Failure::PermissionDenied(
                    "an employer's token must name its organisation id (a uuid)".into(),
                )
            }),
        Role::Operator | Role::Service | Role::Auditor | Role::Ops => Ok(Scope::Everything),
        // R-SRCH-5: an agency sees the postings it was asked to refer to; without referrals there
        // are none yet, and "none" must not look like "all".
        Role::Agency => Err(Failure::PermissionDenied(
            "agencies cannot read postings yet; their scope arrives with referrals".into(),
        )),
    }
}

/// Ties a page token to the list's filters, so that a token is not replayed against another
/// list (the contract answers INVALID_ARGUMENT): the view's token behind a short digest of the
/// organisation and status filters.
fn filter_tag(organisation: Option<OrganisationId>, status: Option<PostingStatus>) -> String {
    let organisation = organisation.map_or_else(|| "*".to_owned(), |o| o.to_string());
    let status = status.map_or("*", PostingStatus::as_str);
    let digest = Sha256::digest(format!("{organisation}\n{status}").as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl PostingQueryService for PostingQueries {
    async fn get_posting(
        &self,
        request: Request<pb::GetPostingRequest>,
    ) -> Result<Response<pb::GetPostingResponse>, Status> {
        let scope = scope(caller_of(&request)?).map_err(to_status)?;
        let (metadata, _, request) = request.into_parts();
        let posting_id = required_posting_id(&request.posting_id)?;
        self.wait(&metadata, request.min_position).await?;
        let row = self.visible(scope, posting_id).await?;
        Ok(Response::new(pb::GetPostingResponse {
            posting: Some(convert::to_posting(row)),
        }))
    }

    async fn list_postings(
        &self,
        request: Request<pb::ListPostingsRequest>,
    ) -> Result<Response<pb::ListPostingsResponse>, Status> {
        let scope = scope(caller_of(&request)?).map_err(to_status)?;
        let (metadata, _, request) = request.into_parts();
        let mut violations = Violations::default();
        let requested = match request.organisation_id.as_str() {
            "" => None,
            text => match text.parse::<OrganisationId>() {
                Ok(id) => Some(id),
                Err(_) => {
                    violations.add("organisation_id", "must be a uuid or empty");
                    None
                }
            },
        };
        let status = convert::status_filter("status", request.status, &mut violations);
        let organisation = match (scope, requested) {
            (Scope::Organisation(own), None) => Some(own),
            (Scope::Organisation(own), Some(other)) if other != own => {
                return Err(to_status(Failure::PermissionDenied(
                    "an employer may list only its own organisation's postings".into(),
                )));
            }
            (_, requested) => requested,
        };
        let tag = filter_tag(organisation, status);
        let page_token = match request.page_token.as_str() {
            "" => None,
            token => match token.split_once('.') {
                Some((token_tag, view_token)) if token_tag == tag => Some(view_token),
                _ => {
                    violations.add(
                        "page_token",
                        "is not a next_page_token of a list with these organisation_id and \
                         status",
                    );
                    None
                }
            },
        };
        violations.finish().map_err(to_status)?;
        self.wait(&metadata, request.min_position).await?;
        let page = self
            .view
            .list(organisation, status, request.page_size, page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListPostingsResponse {
            postings: page.postings.into_iter().map(convert::to_posting).collect(),
            next_page_token: page
                .next_page_token
                .map(|token| format!("{tag}.{token}"))
                .unwrap_or_default(),
        }))
    }

    async fn list_review_queue(
        &self,
        request: Request<pb::ListReviewQueueRequest>,
    ) -> Result<Response<pb::ListReviewQueueResponse>, Status> {
        // R-POST-3: the queue is the operators' work list, across organisations.
        if scope(caller_of(&request)?).map_err(to_status)? != Scope::Everything {
            return Err(to_status(Failure::PermissionDenied(
                "the review queue is for operators".into(),
            )));
        }
        let (metadata, _, request) = request.into_parts();
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(parse_queue_token(token).ok_or_else(|| {
                to_status(Failure::invalid_field(
                    "page_token",
                    "is not a next_page_token of the review queue",
                ))
            })?),
        };
        self.wait(&metadata, request.min_position).await?;
        let page_size = match request.page_size {
            0 => postings::DEFAULT_PAGE_SIZE,
            n => n.min(postings::MAX_PAGE_SIZE),
        };
        // One more than the page, to learn whether another page follows.
        let mut rows = self
            .view
            .review_queue(page_size + 1, after)
            .await
            .map_err(to_status)?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last().and_then(queue_token).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListReviewQueueResponse {
            postings: rows.into_iter().map(convert::to_posting).collect(),
            next_page_token,
        }))
    }

    async fn list_draft_versions(
        &self,
        request: Request<pb::ListDraftVersionsRequest>,
    ) -> Result<Response<pb::ListDraftVersionsResponse>, Status> {
        let scope = scope(caller_of(&request)?).map_err(to_status)?;
        let (metadata, _, request) = request.into_parts();
        let posting_id = required_posting_id(&request.posting_id)?;
        self.wait(&metadata, request.min_position).await?;
        self.visible(scope, posting_id).await?;
        let versions = self
            .view
            .draft_versions(posting_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListDraftVersionsResponse {
            versions: versions
                .into_iter()
                .map(convert::to_draft_version)
                .collect(),
        }))
    }
}

/// The `posting_id` a query names, which must be a uuid (INVALID_ARGUMENT otherwise).
fn required_posting_id(text: &str) -> Result<PostingId, Status> {
    let mut violations = Violations::default();
    let posting_id = convert::posting_id("posting_id", text, true, &mut violations);
    violations.finish().map_err(to_status)?;
    // `convert::posting_id` records a violation whenever it answers `None`.
    posting_id.ok_or_else(|| to_status(Failure::invalid_field("posting_id", "must be set")))
}

/// A review-queue page token: the last row's request time (µs) and posting id.
fn queue_token(row: &postings::PostingRow) -> Option<String> {
    row.review_requested_at
        .map(|at| format!("q1:{}:{}", at.timestamp_micros(), row.posting_id))
}

fn parse_queue_token(token: &str) -> Option<(chrono::DateTime<chrono::Utc>, PostingId)> {
    let mut parts = token.splitn(3, ':');
    let (Some("q1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, id.parse().ok()?))
}

impl PostingQueries {
    /// Reads one posting the caller may see: NOT_FOUND, or PERMISSION_DENIED for an employer's
    /// look at another organisation's.
    async fn visible(
        &self,
        scope: Scope,
        posting_id: PostingId,
    ) -> Result<postings::PostingRow, Status> {
        let row = self
            .view
            .get(posting_id)
            .await
            .map_err(to_status)?
            .ok_or_else(|| to_status(Failure::NotFound("posting not found".into())))?;
        if let Scope::Organisation(own) = scope
            && row.organisation_id != own
        {
            return Err(to_status(Failure::PermissionDenied(
                "the posting belongs to another organisation".into(),
            )));
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_waits_at_most_five_seconds_and_answers_before_the_deadline() {
        assert_eq!(wait_bound(None), MAX_READ_WAIT);
        assert_eq!(wait_bound(Some(Duration::from_secs(60))), MAX_READ_WAIT);
        assert_eq!(
            wait_bound(Some(Duration::from_millis(500))),
            Duration::from_millis(450)
        );
        assert_eq!(
            wait_bound(Some(Duration::from_secs(4))),
            Duration::from_millis(3750)
        );
        assert_eq!(wait_bound(Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn callers_see_their_scope() {
        let org = "01940000-0000-7000-8000-000000000001";
        let employer = Caller::new("e", Role::Employer, org);
        assert_eq!(
            scope(&employer).unwrap(),
            Scope::Organisation(org.parse().unwrap())
        );
        for role in [Role::Operator, Role::Service, Role::Auditor, Role::Ops] {
            assert_eq!(
                scope(&Caller::new("x", role, "office")).unwrap(),
                Scope::Everything
            );
        }
        assert!(matches!(
            scope(&Caller::new("a", Role::Agency, "agency-1")),
            Err(Failure::PermissionDenied(_))
        ));
        assert!(matches!(
            scope(&Caller::new("e", Role::Employer, "not-a-uuid")),
            Err(Failure::PermissionDenied(_))
        ));
    }

    #[test]
    fn page_tokens_are_tied_to_the_filters() {
        let org = Some("01940000-0000-7000-8000-000000000001".parse().unwrap());
        let tag = filter_tag(org, None);
        assert_eq!(tag, filter_tag(org, None));
        assert_ne!(tag, filter_tag(None, None));
        assert_ne!(tag, filter_tag(org, Some(PostingStatus::Draft)));
        assert!(!tag.contains('.'));
    }
}
