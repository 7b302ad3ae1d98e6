//! `jobboard.v1.SearchService`: keyword and condition search of postings (R-SRCH-1 to
//! R-SRCH-5), over the search view's index.
//!
//! The request is parsed at the edge (every bad field listed at once), the caller's role decides
//! the scope it may search — public for everyone, its own organisation's for an employer, its
//! referral scope for an agency — and the view answers from its serving generation, also while
//! a rebuild builds the next one.

use jobboard_app::Role;
use jobboard_domain::posting::OrganisationId;
use jobboard_projections::search::{
    DEFAULT_LIMIT, DateRange, Filters, MAX_LIMIT, Scope, SearchQuery, SearchView, SortOrder,
};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::search_service_server::SearchService;
use tonic::{Request, Response, Status};

use crate::auth::caller_of;
use crate::convert::{self, Violations};
use crate::posting_queries::wait_bound;
use crate::status::{Failure, to_status};

/// Longest keyword text accepted, in characters.
pub const MAX_KEYWORD_CHARS: usize = 200;

/// The search service.
#[derive(Clone, Debug)]
pub struct Search {
    view: SearchView,
}

impl Search {
    /// Searches `view`.
    pub fn new(view: SearchView) -> Self {
        Self { view }
    }
}

/// The scope `role` (of `organisation`) asks for, if it may.
fn scope(role: Role, organisation: &str, asked: pb::SearchScope) -> Result<Scope, Failure> {
    let own = || {
        organisation.parse::<OrganisationId>().map_err(|_| {
            Failure::PermissionDenied("the token must name the organisation id (a uuid)".into())
        })
    };
    match (asked, role) {
        (pb::SearchScope::Unspecified | pb::SearchScope::Public, _) => Ok(Scope::Public),
        (pb::SearchScope::Own, Role::Employer) => own().map(Scope::Employer),
        // R-SRCH-5: an agency searches the postings it was asked to refer to.
        (pb::SearchScope::Agency, Role::Agency) => own().map(Scope::Agency),
        (asked, role) => Err(Failure::PermissionDenied(format!(
            "role {role} may not search the {} scope",
            asked.as_str_name()
        ))),
    }
}

/// The query a request asks for, or every problem with it.
fn query(request: &pb::SearchPostingsRequest, scope: Scope) -> Result<SearchQuery, Failure> {
    let mut violations = Violations::default();
    if request.keywords.chars().count() > MAX_KEYWORD_CHARS {
        violations.add(
            "keywords",
            format!("must be at most {MAX_KEYWORD_CHARS} characters"),
        );
    }
    let institution_types: Vec<_> = request
        .institution_types
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            convert::institution_type(&format!("institution_types[{i}]"), *v, &mut violations)
        })
        .collect();
    let employment_types: Vec<_> = request
        .employment_types
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            convert::employment_type(&format!("employment_types[{i}]"), *v, &mut violations)
        })
        .collect();
    let languages: Vec<_> = request
        .languages
        .iter()
        .enumerate()
        .filter_map(|(i, v)| convert::language_in(&format!("languages[{i}]"), *v, &mut violations))
        .collect();
    let statuses: Vec<_> = request
        .statuses
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            convert::status_filter(&format!("statuses[{i}]"), Some(*v), &mut violations)
        })
        .collect();
    let date = |field: &str, date: Option<&pb::Date>, violations: &mut Violations| {
        date.and_then(|d| convert::checked_date(field, d, violations))
    };
    let recruitment_end = DateRange {
        from: date(
            "recruitment_end_from",
            request.recruitment_end_from.as_ref(),
            &mut violations,
        ),
        to: date(
            "recruitment_end_to",
            request.recruitment_end_to.as_ref(),
            &mut violations,
        ),
    };
    let order = match pb::SearchOrder::try_from(request.order) {
        Ok(pb::SearchOrder::Unspecified | pb::SearchOrder::RecentlyUpdated) => {
            SortOrder::RecentlyUpdated
        }
        Ok(pb::SearchOrder::RecruitmentEnd) => SortOrder::RecruitmentEnd,
        Ok(pb::SearchOrder::Relevance) => SortOrder::Relevance,
        Err(_) => {
            violations.add("order", format!("{} is not a known order", request.order));
            SortOrder::RecentlyUpdated
        }
    };
    violations.finish()?;
    let location = request.location.trim();
    Ok(SearchQuery {
        scope,
        keywords: request.keywords.clone(),
        filters: Filters {
            institution_types,
            location: (!location.is_empty()).then(|| location.to_owned()),
            employment_types,
            languages,
            recruitment_end,
            web_application: request.web_application,
            statuses,
        },
        order,
        offset: request.offset as usize,
        limit: match request.limit {
            0 => DEFAULT_LIMIT,
            n => (n as usize).min(MAX_LIMIT),
        },
    })
}

#[tonic::async_trait]
impl SearchService for Search {
    async fn search_postings(
        &self,
        request: Request<pb::SearchPostingsRequest>,
    ) -> Result<Response<pb::SearchPostingsResponse>, Status> {
        let caller = caller_of(&request)?;
        let asked = pb::SearchScope::try_from(request.get_ref().scope).map_err(|_| {
            to_status(Failure::invalid_field(
                "scope",
                "is not a known search scope",
            ))
        })?;
        let scope = scope(caller.role, &caller.organisation, asked).map_err(to_status)?;
        let (metadata, _, request) = request.into_parts();
        let query = query(&request, scope).map_err(to_status)?;
        if let Some(position) = &request.min_position {
            let bound = wait_bound(convert::grpc_timeout(&metadata));
            self.view
                .wait_for(convert::from_log_position(Some(position)), bound)
                .await
                .map_err(to_status)?;
        }
        let view = self.view.clone();
        let results = tokio::task::spawn_blocking(move || view.search(&query))
            .await
            .map_err(|e| {
                to_status(Failure::Internal(
                    format!("a search task failed: {e}").into(),
                ))
            })?
            .map_err(to_status)?;
        Ok(Response::new(pb::SearchPostingsResponse {
            total_count: results.total,
            hits: results
                .hits
                .into_iter()
                .map(|hit| pb::SearchHit {
                    posting_id: hit.posting_id.to_string(),
                    organisation_id: hit.organisation_id.to_string(),
                    status: convert::to_status_code(hit.status).into(),
                    language: convert::to_language(hit.language).into(),
                    content: Some(convert::to_content(hit.content)),
                    version: hit.version,
                    updated_at: Some(convert::to_timestamp(hit.updated_at)),
                    score: hit.score,
                })
                .collect(),
            next_offset: results
                .next_offset
                .and_then(|offset| u32::try_from(offset).ok()),
            position: Some(convert::to_log_position(results.checkpoint)),
        }))
    }
}
