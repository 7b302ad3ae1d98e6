//! Spawning the server, minting tokens, clients, and polling with deadlines.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use jobboard::auth::{Caller, Role, TokenKeys};
use jobboard::health::Readiness;
use jobboard::{Application, Config};
use jobboard_eventstore::{CommandMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use jobboard_proto::v1::event_feed_service_client::EventFeedServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long any awaited condition may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// A base64 HS256 key the tests configure, so they can mint tokens.
pub(crate) const SIGNING_KEY: &str = "dGVzdC1zaWduaW5nLWtleS10ZXN0LXNpZ25pbmcta2V5IQ==";

/// A running server and what a test needs to talk to it.
pub(crate) struct TestApp {
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) store: EventStore,
    pub(crate) keys: TokenKeys,
    pub(crate) readiness: Readiness,
    pub(crate) channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), jobboard::Error>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Adds `authorization: Bearer <token>` when it has a token.
#[derive(Clone)]
pub(crate) struct Bearer(pub(crate) Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(request)
    }
}

pub(crate) type FeedClient = EventFeedServiceClient<InterceptedService<Channel, Bearer>>;

impl TestApp {
    /// A server on SQLite in a fresh temporary directory.
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], after `adjust` changed the configuration.
    pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .expect("application builds");
        Self::run(app, Some(dir)).await
    }

    /// Runs a built application in the background.
    pub(crate) async fn run(app: Application, dir: Option<tempfile::TempDir>) -> Self {
        let addr = app.grpc_addr();
        let metrics_addr = app.metrics_addr();
        let store = app.store().clone();
        let keys = app.token_keys().clone();
        let readiness = app.readiness().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        Self {
            metrics_addr,
            store,
            keys,
            readiness,
            channel,
            shutdown: Some(shutdown),
            server: Some(server),
            _dir: dir,
        }
    }

    /// A token for `role`, acting for organisation `org-1`.
    pub(crate) fn token(&self, role: Role) -> String {
        self.keys
            .issue(&caller(role), Duration::from_secs(600))
            .expect("token")
    }

    /// The event feed client with `token`, or with none.
    pub(crate) fn feed(&self, token: Option<String>) -> FeedClient {
        EventFeedServiceClient::with_interceptor(self.channel.clone(), Bearer(token))
    }

    /// The event feed client as an ops user.
    pub(crate) fn ops_feed(&self) -> FeedClient {
        self.feed(Some(self.token(Role::Ops)))
    }

    /// Waits until the health service reports `expected` for `service`.
    pub(crate) async fn wait_for_health(&self, service: &str, expected: ServingStatus) {
        let mut health = HealthClient::new(self.channel.clone());
        let service = service.to_owned();
        eventually(&format!("health of {service:?} is {expected:?}"), || {
            let mut health = health.clone();
            let service = service.clone();
            async move {
                health
                    .check(HealthCheckRequest { service })
                    .await
                    .is_ok_and(|r| r.into_inner().status == expected as i32)
            }
        })
        .await;
        // Keep the first client's connection warm for later calls.
        let _ = health.check(HealthCheckRequest::default()).await;
    }

    /// Stops the server gracefully and returns how `run_until_stopped` ended.
    pub(crate) async fn stop(&mut self) -> Result<(), jobboard::Error> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = self.server.take().expect("server still running");
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("the server stops within the deadline")
            .expect("the server task does not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The configuration of a throw-away instance in `dir`, with the test signing key.
pub(crate) fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::ephemeral(dir);
    config.auth.signing_key = Some(jobboard::config::Secret::new(SIGNING_KEY));
    config
}

/// A caller of `role`, acting for organisation `org-1` (every token names one).
pub(crate) fn caller(role: Role) -> Caller {
    Caller::new(format!("{role}-user"), role, "org-1")
}

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Appends one event with a unique command id and returns its stream version.
pub(crate) async fn append(store: &EventStore, stream: &str, event_type: &str, n: u64) -> u64 {
    let stream = StreamId::new(stream).expect("stream id");
    store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new(event_type, 1, serde_json::json!({ "n": n }))],
            CommandMetadata {
                command_id: Some(uuid::Uuid::new_v4().to_string()),
                actor: Some("test".into()),
                organisation: Some("org-1".into()),
                ..CommandMetadata::default()
            },
        )
        .await
        .expect("append")
        .stream_version
}

/// A stream id no other test uses.
pub(crate) fn unique_stream(kind: &str) -> String {
    format!("{kind}-{}", uuid::Uuid::new_v4().simple())
}
