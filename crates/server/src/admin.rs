//! `jobboard.v1.AdminService`: the projections' status and rebuilds, for the `ops` role only.
//!
//! The status comes from the database (`ProjectionRuntime::report`), so every instance answers
//! the same whichever of them runs a projector; a rebuild asked for here is built by whichever
//! instance takes its lease (this one is woken at once). The search index is the exception: each
//! instance keeps its own, so `search` reports and rebuilds this instance's index.

use jobboard_app::Role;
use jobboard_projections::search::{self, SearchState, SearchStatus, SearchView};
use jobboard_projections::{GenerationReport, GenerationState, ProjectionRuntime, ProjectionState};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use crate::auth::caller_of;
use crate::convert;
use crate::status::{Failure, to_status};

/// The admin service over the projection runtime and this instance's search index.
#[derive(Clone, Debug)]
pub struct Admin {
    projections: ProjectionRuntime,
    search: SearchView,
}

impl Admin {
    /// Administration of `projections` and of the search index `search`.
    pub fn new(projections: ProjectionRuntime, search: SearchView) -> Self {
        Self {
            projections,
            search,
        }
    }
}

fn authorize<T>(request: &Request<T>) -> Result<(), Status> {
    let caller = caller_of(request)?;
    if caller.role == Role::Ops {
        Ok(())
    } else {
        Err(to_status(Failure::PermissionDenied(format!(
            "role {} may not administer the service; the ops role may",
            caller.role
        ))))
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_projections(
        &self,
        request: Request<pb::ListProjectionsRequest>,
    ) -> Result<Response<pb::ListProjectionsResponse>, Status> {
        authorize(&request)?;
        let reports = self.projections.report().await.map_err(to_status)?;
        let log_events = reports.first().map_or(0, |r| r.log_events);
        let mut projections: Vec<_> = reports
            .into_iter()
            .map(|report| pb::Projection {
                name: report.projector,
                state: to_projection_state(report.state) as i32,
                serving: report.serving.map(to_generation),
                rebuild: report.rebuild.map(to_generation),
            })
            .collect();
        projections.push(search_projection(&self.search.status(), log_events));
        Ok(Response::new(pb::ListProjectionsResponse {
            projections,
            log_events,
        }))
    }

    async fn rebuild_projection(
        &self,
        request: Request<pb::RebuildProjectionRequest>,
    ) -> Result<Response<pb::RebuildProjectionResponse>, Status> {
        authorize(&request)?;
        let name = request.into_inner().projector;
        if name.trim().is_empty() {
            return Err(to_status(Failure::invalid_field(
                "projector",
                "must name a projector, for example `postings`",
            )));
        }
        if name == search::PROJECTOR {
            // The search index is this instance's own: it rebuilds here, blue/green.
            let before = self.search.status();
            self.search.request_rebuild().map_err(to_status)?;
            let created = !matches!(before.state, SearchState::Rebuilding(_));
            let after = self.search.status();
            let log_events = self
                .projections
                .report()
                .await
                .map_err(to_status)?
                .first()
                .map_or(0, |r| r.log_events);
            let projection = search_projection(&after, log_events);
            // The runner starts the new generation on its next turn: until it reports it, the
            // answer describes the generation it is about to build.
            let generation = projection
                .rebuild
                .unwrap_or_else(|| pb::ProjectionGeneration {
                    generation: after.generation + 1,
                    version: search::VERSION,
                    state: pb::GenerationState::Building as i32,
                    checkpoint: Some(convert::to_log_position(Default::default())),
                    events: 0,
                    lag_events: after.events,
                    target_events: after.events,
                    lease_held: after.running,
                    ..pb::ProjectionGeneration::default()
                });
            return Ok(Response::new(pb::RebuildProjectionResponse {
                generation: Some(generation),
                created,
            }));
        }
        use jobboard_projections::Error as E;
        let (generation, created) = match self.projections.request_rebuild(&name).await {
            Ok(requested) => requested,
            Err(E::UnknownProjector(name)) => {
                return Err(to_status(Failure::NotFound(format!(
                    "no projector named {name:?} runs in this service; ListProjections names them"
                ))));
            }
            Err(error) => return Err(to_status(error)),
        };
        tracing::info!(projector = %name, generation = generation.generation, created,
            "rebuild asked for over the admin service");
        let report = GenerationReport {
            lag_events: 0,
            lag_seconds: 0.0,
            lease_held: generation.lease_holder.is_some(),
            target_events: generation.events,
            events_per_sec: None,
            eta_seconds: None,
            generation,
        };
        Ok(Response::new(pb::RebuildProjectionResponse {
            generation: Some(to_generation(report)),
            created,
        }))
    }
}

/// The search index as a projection: its serving generation and, while one runs, its rebuild.
/// The index belongs to this instance (every instance keeps its own), so its lease is always
/// held here.
fn search_projection(status: &SearchStatus, log_events: u64) -> pb::Projection {
    let serving = pb::ProjectionGeneration {
        generation: status.generation,
        version: status.version,
        state: pb::GenerationState::Active as i32,
        checkpoint: Some(convert::to_log_position(status.checkpoint)),
        events: status.events,
        lag_events: log_events.saturating_sub(status.events),
        lag_seconds: status.lag.map_or(0.0, |lag| lag.as_secs_f64()),
        target_events: log_events,
        events_per_second: 0.0,
        eta_seconds: None,
        lease_holder: String::new(),
        lease_held: status.running,
        last_event_at: status.last_event_recorded_at.map(convert::to_timestamp),
        created_at: None,
        activated_at: None,
    };
    let (state, rebuild) = match &status.state {
        SearchState::Live => (pb::ProjectionState::Live, None),
        SearchState::CatchingUp => (pb::ProjectionState::CatchingUp, None),
        SearchState::Rebuilding(progress) => (
            pb::ProjectionState::Rebuilding,
            Some(pb::ProjectionGeneration {
                generation: progress.generation,
                version: search::VERSION,
                state: pb::GenerationState::Building as i32,
                checkpoint: Some(convert::to_log_position(progress.checkpoint)),
                events: progress.events,
                lag_events: status.events.saturating_sub(progress.events),
                lag_seconds: 0.0,
                target_events: status.events,
                events_per_second: 0.0,
                eta_seconds: None,
                lease_holder: String::new(),
                lease_held: status.running,
                last_event_at: None,
                created_at: None,
                activated_at: None,
            }),
        ),
    };
    let state = if status.running {
        state
    } else {
        pb::ProjectionState::Stopped
    };
    pb::Projection {
        name: search::PROJECTOR.to_owned(),
        state: state as i32,
        serving: Some(serving),
        rebuild,
    }
}

fn to_projection_state(state: ProjectionState) -> pb::ProjectionState {
    match state {
        ProjectionState::Live => pb::ProjectionState::Live,
        ProjectionState::CatchingUp => pb::ProjectionState::CatchingUp,
        ProjectionState::Rebuilding => pb::ProjectionState::Rebuilding,
        ProjectionState::Stopped => pb::ProjectionState::Stopped,
    }
}

fn to_generation(report: GenerationReport) -> pb::ProjectionGeneration {
    let g = report.generation;
    pb::ProjectionGeneration {
        generation: g.generation,
        version: g.version,
        state: match g.state {
            GenerationState::Building => pb::GenerationState::Building,
            GenerationState::Active => pb::GenerationState::Active,
            GenerationState::Retired => pb::GenerationState::Retired,
        } as i32,
        checkpoint: Some(convert::to_log_position(g.checkpoint)),
        events: g.events,
        lag_events: report.lag_events,
        lag_seconds: report.lag_seconds,
        target_events: report.target_events,
        events_per_second: report.events_per_sec.unwrap_or(0.0),
        eta_seconds: report.eta_seconds,
        lease_holder: g.lease_holder.unwrap_or_default(),
        lease_held: report.lease_held,
        last_event_at: g.last_event_at.map(convert::to_timestamp),
        created_at: Some(convert::to_timestamp(g.created_at)),
        activated_at: g.activated_at.map(convert::to_timestamp),
    }
}
