//! `jobboard.v1.AccessCountsService`: page views reported by the public site and the ranking of
//! postings by total views (R-POST-8), over the command layer's `ViewCounter` and the access
//! counts view.

use jobboard_app::{Role, ViewCounter};
use jobboard_projections::ProjectionRuntime;
use jobboard_projections::access::{self, AccessCountsView};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::access_counts_service_server::AccessCountsService;
use tonic::{Request, Response, Status};

use crate::auth::caller_of;
use crate::convert::{self, Violations};
use crate::notifications::organisation_scope;
use crate::posting_queries::wait_for_view;
use crate::status::to_status;

/// The access counts service.
#[derive(Clone, Debug)]
pub struct AccessCounts {
    counter: ViewCounter,
    view: AccessCountsView,
    projections: ProjectionRuntime,
}

impl AccessCounts {
    /// Records through `counter`, ranks from `view`, waits on `projections` for read-your-writes.
    pub fn new(
        counter: ViewCounter,
        view: AccessCountsView,
        projections: ProjectionRuntime,
    ) -> Self {
        Self {
            counter,
            view,
            projections,
        }
    }
}

#[tonic::async_trait]
impl AccessCountsService for AccessCounts {
    async fn record_posting_views(
        &self,
        request: Request<pb::RecordPostingViewsRequest>,
    ) -> Result<Response<pb::RecordPostingViewsResponse>, Status> {
        let caller = caller_of(&request)?.clone();
        let mut violations = Violations::default();
        let ids: Vec<_> = request
            .get_ref()
            .posting_ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                convert::posting_id(&format!("posting_ids[{i}]"), id, true, &mut violations)
            })
            .collect();
        violations.finish().map_err(to_status)?;
        self.counter
            .record(&caller, &ids)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RecordPostingViewsResponse {}))
    }

    async fn list_most_viewed_postings(
        &self,
        request: Request<pb::ListMostViewedPostingsRequest>,
    ) -> Result<Response<pb::ListMostViewedPostingsResponse>, Status> {
        let caller = caller_of(&request)?;
        let readers = [Role::Operator, Role::Service, Role::Auditor, Role::Ops];
        let organisation = organisation_scope(caller, &request.get_ref().organisation_id, &readers)
            .map_err(to_status)?;
        let (metadata, _, request) = request.into_parts();
        wait_for_view(
            &self.projections,
            access::PROJECTOR,
            &metadata,
            request.min_position,
        )
        .await?;
        let ranking = self
            .view
            .ranking(organisation, request.limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListMostViewedPostingsResponse {
            postings: ranking
                .into_iter()
                .map(|row| pb::PostingViews {
                    posting_id: row.posting_id.to_string(),
                    organisation_id: row
                        .organisation_id
                        .map(|o| o.to_string())
                        .unwrap_or_default(),
                    total_views: row.total,
                })
                .collect(),
        }))
    }
}
