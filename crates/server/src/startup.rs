//! [`Application`]: the service assembled from its configuration, bound, and run until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use jobboard_app::{PostingCommands, TimerOptions, Timers, ViewCounter, ViewCounterOptions};
use jobboard_domain::{Clock, SystemClock};
use jobboard_eventstore::{EventStore, StoreOptions};
use jobboard_projections::postings::PostingsView;
use jobboard_projections::search::{SearchOptions, SearchView};
use jobboard_projections::{ProjectionRuntime, ViewDb};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

use crate::auth::{Authenticator, TokenKeys};
use crate::config::{Config, redact_url};
use crate::error::Error;
use crate::health::Readiness;
use crate::metered::Metered;
use crate::services::{self, ServiceContext};
use crate::telemetry::MetricsEndpoint;

/// How often idle HTTP/2 connections are pinged, so dead peers (and their subscriptions) are
/// noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// How long shutdown waits for the timers and projectors to stop once cancelled. A projector
/// batch or a timer firing takes milliseconds; this only keeps a hung one from hanging shutdown.
const BACKGROUND_GRACE: Duration = Duration::from_secs(10);

/// The service, built and bound but not yet serving.
///
/// `build` binds the sockets (port 0 picks a free one), opens the store and the read models
/// (migrations run here), starts the projectors and the timers, and assembles the services;
/// [`Application::run_until_stopped`] serves until the shutdown future completes. An application
/// dropped without running stops its projectors and timers.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics: Option<MetricsEndpoint>,
    store: EventStore,
    views: ViewDb,
    projections: ProjectionRuntime,
    /// The search index; its runner stops (committing) with the background tasks.
    search: SearchView,
    timers: JoinHandle<()>,
    /// The view counter's flushing task; its last flush runs on cancellation.
    view_counter: JoinHandle<()>,
    /// Cancels the projectors and the timers when dropped (a failed or abandoned start).
    background: DropGuard,
    keys: TokenKeys,
    readiness: Readiness,
    routes: Routes,
    methods: std::collections::HashSet<String>,
    stopping: CancellationToken,
    shutdown_grace: Duration,
}

impl Application {
    /// Builds the service on the machine's clock: see [`build_with_clock`](Self::build_with_clock).
    pub async fn build(config: Config) -> Result<Self, Error> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Creates the data directory, loads (or generates) the signing key, binds the gRPC and
    /// metrics sockets, opens the store and the read models (migrations run here), starts the
    /// projectors (readiness step `projectors`) and the timers, and assembles the services.
    ///
    /// Every decision by time reads `clock` (DESIGN.md, "Time"): the aggregates, the timers
    /// (which look at it every `timer_tick`) and the store's `recorded_at` stamps, so a test
    /// holding a `FixedClock` moves the whole service through time.
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let keys = TokenKeys::load_or_create(&config.auth)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                field: "listen",
                addr: config.listen,
                source,
            })?;
        let grpc_addr = listener.local_addr().map_err(|source| Error::Bind {
            field: "listen",
            addr: config.listen,
            source,
        })?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(MetricsEndpoint::start(addr).await?),
            None => None,
        };
        // Created first, so that whatever starts below stops again if a later step fails.
        let background = CancellationToken::new();
        let background_guard = background.clone().drop_guard();
        let readiness = Readiness::new(HealthReporter::new(), Vec::new()).await;

        let store_clock = Arc::clone(&clock);
        let options = StoreOptions {
            clock: Arc::new(move || store_clock.now()),
            ..StoreOptions::default()
        };
        let store = EventStore::open(&config.database_url, options)
            .await
            .map_err(Error::Store)?;
        tracing::info!(
            backend = store.backend_name(),
            url = %redact_url(&config.database_url),
            "event store open, migrations applied"
        );
        let views = ViewDb::open(&config.database_url)
            .await
            .map_err(Error::Views)?;
        let projectors = readiness.step("projectors").await;
        let projections = ProjectionRuntime::spawn(
            views.clone(),
            store.clone(),
            jobboard_projections::projectors(),
            background.clone(),
        )
        .await
        .map_err(Error::Projections)?;
        projectors.done().await;

        // The search index is local to this instance (a directory beside the SQLite file): it
        // follows the shared log like any projection and rebuilds blue/green on its own.
        let (search, search_runner) =
            SearchView::open(config.data_dir.join("search"), SearchOptions::default())
                .await
                .map_err(Error::Projections)?;
        tokio::spawn(search_runner.run(store.clone(), background.clone()));

        let commands = PostingCommands::new(store.clone(), Arc::clone(&clock));
        let timers = Timers::with_options(
            store.clone(),
            commands.clone(),
            Arc::clone(&clock),
            TimerOptions {
                tick: config.timer_tick,
            },
        );
        let timers = tokio::spawn(timers.run(background.clone()));
        let (view_counter, view_counter_task) = ViewCounter::spawn(
            store.clone(),
            clock,
            ViewCounterOptions::default(),
            background.clone(),
        );

        let stopping = CancellationToken::new();
        let services = services::build(
            &ServiceContext {
                store: store.clone(),
                auth: Authenticator::new(keys.clone()),
                stopping: stopping.clone(),
                commands,
                postings_view: PostingsView::new(views.clone()),
                projections: projections.clone(),
                views: views.clone(),
                view_counter,
                search: search.clone(),
            },
            &readiness,
        )
        .await?;
        Ok(Self {
            listener,
            grpc_addr,
            metrics,
            store,
            views,
            projections,
            search,
            timers,
            view_counter: view_counter_task,
            background: background_guard,
            keys,
            readiness,
            routes: services.routes,
            methods: services.methods,
            stopping,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// Where the gRPC server listens (the bound port, when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the Prometheus endpoint listens, unless it is off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsEndpoint::addr)
    }

    /// The event store the services use.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The token keys the server verifies with (and `jobboard token` signs with).
    pub fn token_keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// The hook for startup steps that must finish before the services report SERVING (`build`
    /// itself registers `projectors`): `let step = app.readiness().step("warm-up").await;`,
    /// later `step.done().await`.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Serves until `shutdown` completes, then stops gracefully, in this order: health turns
    /// NOT_SERVING and subscriptions end with UNAVAILABLE; no new connections are accepted and
    /// in-flight calls get `shutdown_grace` to finish; the timers and projectors are cancelled
    /// and awaited (each projector commits its checkpoint with its last batch); the read models
    /// and the store are closed (pending appends commit first).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Self {
            listener,
            grpc_addr,
            metrics,
            store,
            views,
            projections,
            search,
            timers,
            view_counter,
            background,
            readiness,
            routes,
            methods,
            stopping,
            shutdown_grace,
            keys: _,
        } = self;
        let stop_accepting = CancellationToken::new();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut server = pin!(
            Server::builder()
                .http2_keepalive_interval(Some(KEEPALIVE))
                .serve_with_incoming_shutdown(
                    Metered::new(routes, methods),
                    incoming,
                    stop_accepting.clone().cancelled_owned(),
                )
        );
        tracing::info!(addr = %grpc_addr, "gRPC server listening");

        let failed = tokio::select! {
            // The server only returns by itself when it failed.
            result = &mut server => Some(result),
            () = shutdown => None,
        };
        let result = match failed {
            Some(result) => result.map_err(Error::Serve),
            None => {
                tracing::info!(grace = ?shutdown_grace, "shutting down: finishing in-flight calls");
                readiness.stopping().await;
                stopping.cancel();
                stop_accepting.cancel();
                match tokio::time::timeout(shutdown_grace, &mut server).await {
                    Ok(result) => result.map_err(Error::Serve),
                    Err(_) => {
                        tracing::warn!(
                            grace = ?shutdown_grace,
                            "in-flight calls did not finish in time; closing the store under them"
                        );
                        Ok(())
                    }
                }
            }
        };
        stopping.cancel();
        // Only now that no call can send a command: a timer firing or a projector batch in
        // flight finishes (and commits) before the databases close under it.
        background.disarm().cancel();
        let background_stopped = async {
            if let Err(error) = timers.await {
                tracing::error!(%error, "the timers task failed");
            }
            if let Err(error) = view_counter.await {
                tracing::error!(%error, "the view counter task failed");
            }
            projections.stopped().await;
            search.stopped().await;
        };
        if tokio::time::timeout(BACKGROUND_GRACE, background_stopped)
            .await
            .is_err()
        {
            tracing::warn!(
                grace = ?BACKGROUND_GRACE,
                "timers or projectors did not stop in time; closing the databases under them"
            );
        }
        views.close().await;
        store.close().await;
        drop(metrics);
        tracing::info!("stopped");
        result
    }
}
