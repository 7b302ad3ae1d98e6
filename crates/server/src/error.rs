//! The server library's error: everything that can stop the service from starting or running.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the service could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The configured `data_dir`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token signing key could not be loaded or created.
    #[error(transparent)]
    Auth(#[from] crate::auth::Error),
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr} (configured as {field})")]
    Bind {
        /// The configuration key of the address.
        field: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Prometheus endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::MetricsError),
    /// The event store could not be opened or migrated.
    #[error("cannot open the event store")]
    Store(#[source] jobboard_eventstore::Error),
    /// The read models' database could not be opened or migrated.
    #[error("cannot open the read models")]
    Views(#[source] jobboard_projections::Error),
    /// The projectors could not set up their views and start.
    #[error("cannot start the projectors")]
    Projections(#[source] jobboard_projections::Error),
    /// A descriptor set for reflection is broken (a build problem).
    #[error("the reflection service could not be built")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A descriptor set could not be decoded (a build problem).
    #[error("a protobuf descriptor set could not be decoded")]
    Descriptor(#[from] prost::DecodeError),
    /// The gRPC server failed while running.
    #[error("the gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}
