//! [`Application`]: the service assembled from its configuration, bound, and run until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use jobboard_eventstore::{EventStore, StoreOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

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

/// The service, built and bound but not yet serving.
///
/// `build` binds the sockets (port 0 picks a free one) and opens the store, running its
/// migrations; [`Application::run_until_stopped`] serves until the shutdown future completes.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics: Option<MetricsEndpoint>,
    store: EventStore,
    keys: TokenKeys,
    readiness: Readiness,
    routes: Routes,
    methods: std::collections::HashSet<String>,
    stopping: CancellationToken,
    shutdown_grace: Duration,
}

impl Application {
    /// Creates the data directory, loads (or generates) the signing key, binds the gRPC and
    /// metrics sockets, opens the store (migrations run here) and assembles the services.
    pub async fn build(config: Config) -> Result<Self, Error> {
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
        let store = EventStore::open(&config.database_url, StoreOptions::default())
            .await
            .map_err(Error::Store)?;
        tracing::info!(
            backend = store.backend_name(),
            url = %redact_url(&config.database_url),
            "event store open, migrations applied"
        );
        let stopping = CancellationToken::new();
        let services = services::build(&ServiceContext {
            store: store.clone(),
            auth: Authenticator::new(keys.clone()),
            stopping: stopping.clone(),
        })
        .await?;
        Ok(Self {
            listener,
            grpc_addr,
            metrics,
            store,
            keys,
            readiness: services.readiness,
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

    /// The hook for startup steps that must finish before the services report SERVING
    /// (e.g. projectors catching up): `let step = app.readiness().step("projectors").await;`,
    /// later `step.done().await`.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Serves until `shutdown` completes, then stops gracefully: health turns NOT_SERVING,
    /// subscriptions end with UNAVAILABLE, no new connections are accepted, in-flight calls get
    /// `shutdown_grace` to finish, and the store is closed (pending appends commit first).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Self {
            listener,
            grpc_addr,
            metrics,
            store,
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
        store.close().await;
        drop(metrics);
        tracing::info!("stopped");
        result
    }
}
