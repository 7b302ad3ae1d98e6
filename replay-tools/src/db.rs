//! Opening the log (and the projections' checkpoints) from a database URL, with errors that say
//! what to do: which database was meant, whether it exists, how to start PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use jobboard_eventstore::{EventStore, StoreOptions};
use jobboard_projections::ViewDb;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;

/// The service's embedded database: `data_dir` `data` and `jobboard.db` in it, as
/// `crates/server/src/config.rs` derives it (a test holds the two together).
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://data/jobboard.db";

/// How long to try reaching PostgreSQL before saying it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to ask for: the tool reads one page at a time, and must not crowd a database the
/// service is using.
const CONNECTIONS: u32 = 2;

/// Opens the event log at `url`.
///
/// A SQLite file must already exist: the store would create an empty log, and an auditor who
/// mistyped a path must hear so rather than read an empty history.
pub(crate) async fn open_store(url: &str) -> anyhow::Result<EventStore> {
    check_exists(url)?;
    probe_postgres(url).await?;
    let options = StoreOptions {
        max_connections: CONNECTIONS,
        ..StoreOptions::default()
    };
    EventStore::open(url, options).await.map_err(|error| {
        let unavailable = error.is_unavailable();
        explain(url, anyhow::Error::new(error), unavailable, "the event log")
    })
}

/// Opens the projections' tables at `url` (the log's database).
pub(crate) async fn open_views(url: &str) -> anyhow::Result<ViewDb> {
    check_exists(url)?;
    ViewDb::open(url).await.map_err(|error| {
        let unavailable = error.is_unavailable();
        explain(
            url,
            anyhow::Error::new(error),
            unavailable,
            "the projections' checkpoints",
        )
    })
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// Refuses URLs of other databases, and SQLite files that do not exist.
fn check_exists(url: &str) -> anyhow::Result<()> {
    if is_postgres(url) {
        return Ok(());
    }
    if !url.starts_with("sqlite:") {
        bail!(
            "database url {} names no supported database: use sqlite://PATH or postgres://…",
            redact(url)
        );
    }
    // Parsed as the store parses it, so the file checked is the file it would open.
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("database url {} is not a valid SQLite url", redact(url)))?;
    let file = options.get_filename();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory && !file.is_file() {
        bail!(
            "no database at {} (from {}): pass --database-url or set DATABASE_URL to the \
             service's database",
            file.display(),
            redact(url)
        );
    }
    Ok(())
}

/// Connects once to a PostgreSQL `url`, so that an unreachable server is reported at once and
/// with the driver's reason ("connection refused"), where the store's pool would wait out its
/// acquire timeout and report only that it timed out.
async fn probe_postgres(url: &str) -> anyhow::Result<()> {
    if !is_postgres(url) {
        return Ok(());
    }
    let unreachable = |reason: String| {
        anyhow!(
            "cannot reach PostgreSQL at {}: {reason}; is the server running? (on this machine: \
             `pg_ctlcluster 15 main start`)",
            redact(url)
        )
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Err(sqlx::Error::Io(error))) => Err(unreachable(error.to_string())),
        Ok(Err(error)) => Err(anyhow::Error::new(error)
            .context(format!("cannot open the database at {}", redact(url)))),
        Ok(Ok(connection)) => {
            // Only a probe: a failure to say goodbye changes nothing.
            let _ = connection.close().await;
            Ok(())
        }
    }
}

/// Adds what the operator needs to the error of opening `what`.
fn explain(url: &str, error: anyhow::Error, unavailable: bool, what: &str) -> anyhow::Error {
    let shown = redact(url);
    if unavailable && is_postgres(url) {
        error.context(anyhow!(
            "cannot reach PostgreSQL at {shown} to read {what}: is the server running? \
             (on this machine: `pg_ctlcluster 15 main start`)"
        ))
    } else {
        error.context(format!("cannot open {what} at {shown}"))
    }
}

/// The URL with any password replaced, so it can be shown.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/jobboard"),
            "postgres://app:***@db:5432/jobboard"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn a_missing_sqlite_file_or_an_unknown_scheme_is_refused() {
        let missing = check_exists("sqlite:///nonexistent-dir/jobboard.db").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("no database at /nonexistent-dir/jobboard.db"),
            "{missing}"
        );
        let mysql = check_exists("mysql://x").unwrap_err();
        assert!(
            mysql.to_string().contains("no supported database"),
            "{mysql}"
        );
        assert!(check_exists("postgres://postgres@127.0.0.1/x").is_ok());
    }
}
