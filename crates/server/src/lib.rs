//! The jobboard service shell: configuration, authentication, the gRPC services (posting
//! commands and queries, search, notifications, access counts, the event feed, projection admin,
//! health, reflection), the projectors, timers and view counter, metrics
//! and graceful shutdown, assembled by [`Application`].
//!
//! ```no_run
//! # async fn run() -> Result<(), jobboard::Error> {
//! let config = jobboard::Config::load(None, &Default::default())?;
//! let app = jobboard::Application::build(config).await?;
//! println!("gRPC on {}", app.grpc_addr());
//! app.run_until_stopped(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

pub mod access;
pub mod admin;
pub mod auth;
pub mod config;
mod convert;
mod error;
pub mod feed;
pub mod health;
mod metered;
pub mod notifications;
pub mod posting_queries;
pub mod postings;
pub mod search;
mod services;
mod startup;
pub mod status;
pub mod telemetry;

pub use config::Config;
pub use error::Error;
pub use startup::Application;
