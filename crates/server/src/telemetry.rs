//! Logs (tracing, text or JSON, `RUST_LOG`) and the Prometheus endpoint.
//!
//! A `metrics` recorder is global to the process, but applications come and go (tests start
//! many in one process, each on its own runtime). So the process installs one forwarding
//! recorder once, and each running [`MetricsEndpoint`] points it at its own Prometheus recorder
//! while it lives: metrics recorded anywhere (`metrics::counter!`) land in the newest endpoint.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::{Arc, Once, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Requests handled, by method and status code.
pub const REQUESTS_TOTAL: &str = "jobboard_grpc_requests_total";
/// Request duration in seconds, by method.
pub const REQUEST_DURATION: &str = "jobboard_grpc_request_duration_seconds";

/// Histogram buckets for every duration (`*_seconds`): 100 µs (an append) to 10 s. Buckets, not
/// summaries, so that several instances' histograms can be added up.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The Prometheus endpoint could not be started.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint on {addr} could not start: {reason}")]
pub struct MetricsError {
    addr: SocketAddr,
    reason: String,
}

/// Installs the process's log subscriber: `format` lines on stderr, filtered by `RUST_LOG`
/// (default `info`). Stdout stays free for commands' output (`jobboard token`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a human at a terminal; in files they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    // `try_init`: a second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A running Prometheus endpoint (`GET /metrics`), serving what this process records.
#[derive(Debug)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
    recorder: Arc<PrometheusRecorder>,
    exporter: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Starts the endpoint on `addr` (port 0 picks a free port) and routes the process's
    /// metrics to it.
    pub(crate) async fn start(addr: SocketAddr) -> Result<Self, MetricsError> {
        let error = |reason: String| MetricsError { addr, reason };
        // The exporter binds its own socket and does not tell which port it got, so a port 0
        // is resolved first. Another process could take that port in between; that only
        // matters for ephemeral test instances, which then fail loudly at start.
        let addr = if addr.port() == 0 {
            std::net::TcpListener::bind(addr)
                .and_then(|listener| listener.local_addr())
                .map_err(|e| error(e.to_string()))?
        } else {
            addr
        };
        let (recorder, exporter) = PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .map_err(|e| error(e.to_string()))?
            .build()
            .map_err(|e| error(e.to_string()))?;
        let recorder = Arc::new(recorder);
        let exporter = tokio::spawn(async move {
            if let Err(e) = exporter.await {
                tracing::error!(error = ?e, "metrics endpoint stopped");
            }
        });
        install_forwarder();
        *current() = Some(recorder.clone());
        describe();
        tracing::info!(%addr, "metrics endpoint listening");
        Ok(Self {
            addr,
            recorder,
            exporter,
        })
    }

    /// Where the endpoint listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.exporter.abort();
        let mut slot = current();
        if slot
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &self.recorder))
        {
            *slot = None;
        }
    }
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "gRPC calls handled, by method and status code"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "gRPC call duration, by method (streams: until the stream ends)"
    );
    metrics::describe_counter!(
        jobboard_app::COMMANDS_TOTAL,
        "commands handled, by command and outcome"
    );
    metrics::describe_histogram!(
        jobboard_app::COMMAND_DURATION_SECONDS,
        Unit::Seconds,
        "command handling time (load, decide, append), by command"
    );
    metrics::describe_histogram!(
        jobboard_app::APPEND_DURATION_SECONDS,
        Unit::Seconds,
        "log append time, group commit included, by command"
    );
    metrics::describe_histogram!(
        "jobboard_projection_lag_seconds",
        Unit::Seconds,
        "time from an event's commit to its projection, by projector and version"
    );
    describe_projection_status();
}

/// The projections' status gauges, refreshed by the runtime from the database (whichever
/// instance runs each projector).
fn describe_projection_status() {
    metrics::describe_gauge!(
        "jobboard_projection_state",
        "1 for the projector's current state (live, catching_up, rebuilding, stopped), else 0"
    );
    metrics::describe_gauge!(
        "jobboard_projection_lag_events",
        "events of the log after the serving generation's checkpoint"
    );
    metrics::describe_gauge!(
        "jobboard_projection_staleness_seconds",
        Unit::Seconds,
        "time between the last event the serving generation reflects and the log's newest"
    );
    metrics::describe_gauge!(
        "jobboard_projection_generation",
        "the serving generation's number"
    );
    metrics::describe_gauge!(
        "jobboard_projection_lease_held",
        "1 when this instance applies the log to the serving generation"
    );
    metrics::describe_gauge!(
        "jobboard_projection_rebuild_events",
        "events a rebuild under way covers so far (0 when none)"
    );
    metrics::describe_gauge!(
        "jobboard_projection_rebuild_target_events",
        "events at which a rebuild under way takes over (0 when none)"
    );
    metrics::describe_gauge!(
        "jobboard_projection_rebuild_events_per_second",
        "the rate of a rebuild under way (0 when none)"
    );
}

static CURRENT: RwLock<Option<Arc<PrometheusRecorder>>> = RwLock::new(None);

fn current() -> std::sync::RwLockWriteGuard<'static, Option<Arc<PrometheusRecorder>>> {
    CURRENT.write().unwrap_or_else(|e| e.into_inner())
}

fn with_current<T>(f: impl FnOnce(&PrometheusRecorder) -> T) -> Option<T> {
    let slot = CURRENT.read().unwrap_or_else(|e| e.into_inner());
    slot.as_deref().map(f)
}

fn install_forwarder() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if metrics::set_global_recorder(Forwarder).is_err() {
            tracing::warn!("another metrics recorder is installed; metrics go there");
        }
    });
}

/// The process-wide recorder: forwards to the current endpoint's recorder, or drops.
#[derive(Debug)]
struct Forwarder;

impl Recorder for Forwarder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        with_current(|r| r.describe_counter(key, unit, description));
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        with_current(|r| r.describe_gauge(key, unit, description));
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        with_current(|r| r.describe_histogram(key, unit, description));
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        with_current(|r| r.register_counter(key, metadata)).unwrap_or_else(Counter::noop)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        with_current(|r| r.register_gauge(key, metadata)).unwrap_or_else(Gauge::noop)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        with_current(|r| r.register_histogram(key, metadata)).unwrap_or_else(Histogram::noop)
    }
}
