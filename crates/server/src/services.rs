//! Which gRPC services the server offers, and how each is wrapped.
//!
//! Every jobboard service sits behind the [`Authenticator`]; health and reflection do not. To add
//! a service, add one block to [`jobboard_services`]: build its server
//! `with_interceptor(…, ctx.auth.clone())` and pass it to `routes.add_service`, and push its
//! name. The name then also reaches health (NOT_SERVING until ready), reflection and the
//! metrics' method labels.

use std::collections::HashSet;

use jobboard_app::{PostingCommands, ViewCounter};
use jobboard_eventstore::EventStore;
use jobboard_projections::access::AccessCountsView;
use jobboard_projections::notifications::NotificationsView;
use jobboard_projections::postings::PostingsView;
use jobboard_projections::search::SearchView;
use jobboard_projections::{ProjectionRuntime, ViewDb};
use jobboard_proto::v1::access_counts_service_server::AccessCountsServiceServer;
use jobboard_proto::v1::admin_service_server::AdminServiceServer;
use jobboard_proto::v1::event_feed_service_server::EventFeedServiceServer;
use jobboard_proto::v1::notifications_service_server::NotificationsServiceServer;
use jobboard_proto::v1::posting_query_service_server::PostingQueryServiceServer;
use jobboard_proto::v1::postings_service_server::PostingsServiceServer;
use jobboard_proto::v1::search_service_server::SearchServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::access::AccessCounts;
use crate::admin::Admin;
use crate::auth::Authenticator;
use crate::error::Error;
use crate::feed::EventFeed;
use crate::health::Readiness;
use crate::metered;
use crate::notifications::Notifications;
use crate::posting_queries::PostingQueries;
use crate::postings::PostingsApi;
use crate::search::Search;

/// What the jobboard services are built from.
pub(crate) struct ServiceContext {
    pub(crate) store: EventStore,
    pub(crate) auth: Authenticator,
    /// Cancelled when shutdown begins: long-lived streams end on it.
    pub(crate) stopping: CancellationToken,
    /// The write side of postings.
    pub(crate) commands: PostingCommands,
    /// The read side of postings.
    pub(crate) postings_view: PostingsView,
    /// The projectors, for read-your-writes waits.
    pub(crate) projections: ProjectionRuntime,
    /// The read models' database.
    pub(crate) views: ViewDb,
    /// Rolls reported page views up (R-POST-8).
    pub(crate) view_counter: ViewCounter,
    /// The search index (R-SRCH-1 to R-SRCH-5).
    pub(crate) search: SearchView,
}

/// The routes of every service, and what metrics need to know of them.
pub(crate) struct Services {
    pub(crate) routes: Routes,
    /// `package.Service/Method` of every served method, for metric labels.
    pub(crate) methods: HashSet<String>,
}

/// Adds the jobboard services to `routes` and returns their full names.
fn jobboard_services(routes: &mut RoutesBuilder, ctx: &ServiceContext) -> Vec<String> {
    let mut names = Vec::new();

    let feed = EventFeed::new(ctx.store.clone(), ctx.stopping.clone());
    let feed = EventFeedServiceServer::with_interceptor(feed, ctx.auth.clone());
    names.push(name_of(&feed).to_owned());
    routes.add_service(feed);

    let postings = PostingsApi::new(ctx.commands.clone());
    let postings = PostingsServiceServer::with_interceptor(postings, ctx.auth.clone());
    names.push(name_of(&postings).to_owned());
    routes.add_service(postings);

    let queries = PostingQueries::new(ctx.postings_view.clone(), ctx.projections.clone());
    let queries = PostingQueryServiceServer::with_interceptor(queries, ctx.auth.clone());
    names.push(name_of(&queries).to_owned());
    routes.add_service(queries);

    let notifications = Notifications::new(
        NotificationsView::new(ctx.views.clone()),
        ctx.projections.clone(),
        ctx.stopping.clone(),
    );
    let notifications =
        NotificationsServiceServer::with_interceptor(notifications, ctx.auth.clone());
    names.push(name_of(&notifications).to_owned());
    routes.add_service(notifications);

    let access = AccessCounts::new(
        ctx.view_counter.clone(),
        AccessCountsView::new(ctx.views.clone()),
        ctx.projections.clone(),
    );
    let access = AccessCountsServiceServer::with_interceptor(access, ctx.auth.clone());
    names.push(name_of(&access).to_owned());
    routes.add_service(access);

    let search = Search::new(ctx.search.clone());
    let search = SearchServiceServer::with_interceptor(search, ctx.auth.clone());
    names.push(name_of(&search).to_owned());
    routes.add_service(search);

    let admin = Admin::new(ctx.projections.clone(), ctx.search.clone());
    let admin = AdminServiceServer::with_interceptor(admin, ctx.auth.clone());
    names.push(name_of(&admin).to_owned());
    routes.add_service(admin);

    names
}

fn name_of<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Builds every route: the jobboard services, health (reporting `readiness`, which learns the
/// services' names here) and reflection (v1 and v1alpha).
pub(crate) async fn build(ctx: &ServiceContext, readiness: &Readiness) -> Result<Services, Error> {
    let mut routes = RoutesBuilder::default();
    let jobboard = jobboard_services(&mut routes, ctx);

    readiness.add_services(jobboard.clone()).await;
    let health = HealthServer::new(HealthService::from_health_reporter(readiness.reporter()));
    let health_name = name_of(&health).to_owned();
    routes.add_service(health);

    let reflection_v1_name = "grpc.reflection.v1.ServerReflection".to_owned();
    let reflection_v1alpha_name = "grpc.reflection.v1alpha.ServerReflection".to_owned();
    // Only what is actually served is advertised: the contract's descriptor set also holds
    // services that are not implemented yet.
    let advertised: Vec<String> = jobboard
        .iter()
        .cloned()
        .chain([health_name, reflection_v1_name, reflection_v1alpha_name])
        .collect();
    let descriptor_sets: [&[u8]; 4] = [
        jobboard_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(jobboard_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in &advertised {
            builder = builder.with_service_name(name.clone());
        }
        builder
    };
    routes.add_service(reflection().build_v1()?);
    routes.add_service(reflection().build_v1alpha()?);

    let methods = metered::method_names(&descriptor_sets, &advertised)?;
    Ok(Services {
        routes: routes.routes().prepare(),
        methods,
    })
}
