//! Readiness: what `grpc.health.v1.Health` reports for the jobboard services.
//!
//! Nothing is served before the store's migrations ran (`Application::build` runs them). After
//! that the services report NOT_SERVING while any startup step is pending (`projectors` until
//! the projection runtime has set up its views and started, …) and from the moment shutdown
//! begins; SERVING otherwise. Wiring code registers a step with [`Readiness::step`] and
//! completes it with [`ReadyStep::done`]; a step dropped without `done` keeps the service
//! NOT_SERVING, which is the safe failure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The overall server's name in the health protocol.
const SERVER: &str = "";

/// The health state of the jobboard services. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness {
    reporter: HealthReporter,
    state: Arc<Mutex<State>>,
    /// Serialises publishing, so the last publish always carries the latest state.
    publishing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct State {
    services: Vec<String>,
    /// Pending steps, counted so two steps of the same name are both awaited.
    pending: BTreeMap<&'static str, usize>,
    stopping: bool,
}

impl State {
    fn status(&self) -> ServingStatus {
        if self.pending.is_empty() && !self.stopping {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

/// A pending startup step; the services report SERVING only when every step is done.
#[derive(Debug)]
#[must_use = "a step that is never done keeps the services NOT_SERVING"]
pub struct ReadyStep {
    readiness: Readiness,
    name: &'static str,
}

impl Readiness {
    /// Readiness reporting through `reporter`, for the overall server (`""`) and `services`
    /// (full names, e.g. `jobboard.v1.EventFeedService`). Starts ready, with nothing pending.
    pub(crate) async fn new(reporter: HealthReporter, services: Vec<String>) -> Self {
        let readiness = Self {
            reporter,
            state: Arc::new(Mutex::new(State {
                services,
                ..State::default()
            })),
            publishing: Arc::default(),
        };
        readiness.publish().await;
        readiness
    }

    /// Adds `services` to those reported (once they are built, which may be after the first
    /// steps were registered), with the current status.
    pub(crate) async fn add_services(&self, services: Vec<String>) {
        self.lock().services.extend(services);
        self.publish().await;
    }

    /// The reporter the health service reads.
    pub(crate) fn reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }

    /// Registers a pending step: the services report NOT_SERVING until it is done.
    pub async fn step(&self, name: &'static str) -> ReadyStep {
        *self.lock().pending.entry(name).or_default() += 1;
        tracing::debug!(step = name, "readiness step pending");
        self.publish().await;
        ReadyStep {
            readiness: self.clone(),
            name,
        }
    }

    /// Whether the services currently report SERVING.
    pub fn is_serving(&self) -> bool {
        self.lock().status() == ServingStatus::Serving
    }

    /// Marks the services NOT_SERVING for good: shutdown has begun, so balancers stop sending.
    pub async fn stopping(&self) {
        self.lock().stopping = true;
        self.publish().await;
    }

    async fn complete(&self, name: &'static str) {
        {
            let mut state = self.lock();
            if let Some(count) = state.pending.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    state.pending.remove(name);
                }
            }
        }
        tracing::info!(step = name, "readiness step done");
        self.publish().await;
    }

    /// Pushes the current status to the health service.
    async fn publish(&self) {
        let _publishing = self.publishing.lock().await;
        let (status, names) = {
            let state = self.lock();
            (state.status(), state.services.clone())
        };
        for name in std::iter::once(SERVER.to_owned()).chain(names) {
            self.reporter.set_service_status(&name, status).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent data (plain counters and flags).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReadyStep {
    /// Completes the step; when no step is left, the services report SERVING.
    pub async fn done(self) {
        self.readiness.complete(self.name).await;
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::pb::{HealthCheckRequest, health_check_response};

    use super::*;

    async fn status_of(service: &tonic_health::server::HealthService, name: &str) -> i32 {
        service
            .check(tonic::Request::new(HealthCheckRequest {
                service: name.into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .status
    }

    #[tokio::test]
    async fn services_serve_only_when_no_step_is_pending_and_not_stopping() {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let readiness = Readiness::new(reporter, vec!["jobboard.v1.X".into()]).await;
        let serving = health_check_response::ServingStatus::Serving as i32;
        let not_serving = health_check_response::ServingStatus::NotServing as i32;

        let migrations = readiness.step("migrations").await;
        let projectors = readiness.step("projectors").await;
        assert_eq!(status_of(&service, "jobboard.v1.X").await, not_serving);
        migrations.done().await;
        assert_eq!(status_of(&service, "").await, not_serving);
        projectors.done().await;
        assert!(readiness.is_serving());
        assert_eq!(status_of(&service, "jobboard.v1.X").await, serving);
        assert_eq!(status_of(&service, "").await, serving);

        readiness.stopping().await;
        assert_eq!(status_of(&service, "jobboard.v1.X").await, not_serving);
        let late = readiness.step("late").await;
        late.done().await;
        assert!(!readiness.is_serving(), "stopping is final");
    }
}
