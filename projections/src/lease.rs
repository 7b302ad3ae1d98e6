//! Leases: at most one runner per generation of a projector, across instances, and a quick
//! takeover when that runner dies.
//!
//! On PostgreSQL a lease is a session-level advisory lock (`pg_try_advisory_lock`) held on a
//! connection of its own, outside the pool: when the process dies or loses its connection, the
//! server ends the session and the lock is free at once. On SQLite, which serves one machine, it
//! is an exclusive OS lock (`flock`) on a file beside the database, released by the OS when the
//! process dies; an in-memory database is one process's, so there a process-wide set of names
//! suffices.
//!
//! A lease makes the work efficient (one runner, the others stand by); it is not what keeps
//! events from being applied twice: that is the compare-and-set on the generation's checkpoint
//! in every batch (`ViewTx::advance`), which holds even when two runners overlap for a moment.

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row};

use crate::db::{Backend, ViewDb};
use crate::error::{Error, Result};

/// How often a held PostgreSQL lease checks that its connection (and so the lock) is alive.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Names leased in this process on in-memory databases.
static IN_MEMORY: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The lease key of a generation.
pub(crate) fn key(projector: &str, generation: u64) -> String {
    format!("jobboard-projection:{projector}:{generation}")
}

/// A lease this process holds. Dropping it lets it go.
pub(crate) struct Lease {
    kind: Kind,
    checked: Instant,
}

enum Kind {
    Postgres(PgConnection),
    File(#[allow(dead_code)] File),
    Memory(String),
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Kind::Memory(name) = &self.kind {
            let mut held = IN_MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(set) = held.as_mut() {
                set.remove(name);
            }
        }
        // A PostgreSQL connection dropped closes its socket: the server ends the session and
        // frees its advisory locks. A file's lock goes with its descriptor.
    }
}

impl Lease {
    /// Whether the lease still holds: on PostgreSQL, whether its connection still answers
    /// (checked at most every second; a dead connection means the server freed the lock).
    pub(crate) async fn holds(&mut self) -> bool {
        match &mut self.kind {
            Kind::Postgres(conn) => {
                if self.checked.elapsed() < CHECK_EVERY {
                    return true;
                }
                self.checked = Instant::now();
                conn.ping().await.is_ok()
            }
            Kind::File(_) | Kind::Memory(_) => true,
        }
    }

    /// Lets the lease go now (on PostgreSQL closing the session; dropping does the same).
    pub(crate) async fn release(self) {
        let mut this = self;
        if let Kind::Postgres(conn) = std::mem::replace(&mut this.kind, Kind::Memory(String::new()))
        {
            let _ = conn.close().await;
        }
    }
}

impl ViewDb {
    /// Takes the lease named `key` if no one (in any process) holds it.
    pub(crate) async fn try_lease(&self, key: &str) -> Result<Option<Lease>> {
        let kind = match self.backend() {
            Backend::Postgres => {
                let mut conn = PgConnection::connect(self.url()).await?;
                let got: bool = sqlx::query("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(key)
                    .fetch_one(&mut conn)
                    .await?
                    .try_get(0)?;
                if !got {
                    let _ = conn.close().await;
                    return Ok(None);
                }
                Kind::Postgres(conn)
            }
            Backend::Sqlite => match lock_file(self.url(), key)? {
                Some(path) => {
                    let file = OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&path)
                        .map_err(|e| lock_error(&path, &e))?;
                    match file.try_lock() {
                        Ok(()) => Kind::File(file),
                        Err(TryLockError::WouldBlock) => return Ok(None),
                        Err(TryLockError::Error(e)) => return Err(lock_error(&path, &e)),
                    }
                }
                None => {
                    let name = format!("{}\n{key}", self.url());
                    let mut held = IN_MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
                    if !held.get_or_insert_with(HashSet::new).insert(name.clone()) {
                        return Ok(None);
                    }
                    Kind::Memory(name)
                }
            },
        };
        Ok(Some(Lease {
            kind,
            checked: Instant::now(),
        }))
    }

    /// Whether an instance (in any process) holds `generation`'s lease right now.
    pub async fn is_leased(&self, generation: &crate::Generation) -> Result<bool> {
        self.lease_held(&key(&generation.projector, generation.generation))
            .await
    }

    /// Whether anyone holds the lease named `key` right now.
    pub(crate) async fn lease_held(&self, key: &str) -> Result<bool> {
        match self.backend() {
            Backend::Postgres => {
                // A bigint advisory key shows in pg_locks as its high and low 32 bits.
                let row = self
                    .fetch_optional(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                         AND granted AND objsubid = 1 \
                         AND database = (SELECT oid FROM pg_database \
                                         WHERE datname = current_database()) \
                         AND ((classid::bigint << 32) | objid::bigint) \
                             = hashtextextended($1, 0)) AS held",
                        &[key.into()],
                    )
                    .await?
                    .ok_or_else(|| Error::Corrupted("EXISTS returned no row".into()))?;
                row.get("held")
            }
            Backend::Sqlite => match lock_file(self.url(), key)? {
                Some(path) => {
                    let Ok(file) = OpenOptions::new().write(true).open(&path) else {
                        // Never created: never taken.
                        return Ok(false);
                    };
                    match file.try_lock() {
                        Ok(()) => Ok(false),
                        Err(TryLockError::WouldBlock) => Ok(true),
                        Err(TryLockError::Error(e)) => Err(lock_error(&path, &e)),
                    }
                }
                None => {
                    let name = format!("{}\n{key}", self.url());
                    let held = IN_MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
                    Ok(held.as_ref().is_some_and(|set| set.contains(&name)))
                }
            },
        }
    }
}

/// The lock file of `key` beside the SQLite database at `url`; `None` for an in-memory one.
fn lock_file(url: &str, key: &str) -> Result<Option<PathBuf>> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)?;
    let database = options.get_filename();
    let name: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut file = database.as_os_str().to_owned();
    file.push(format!(".{name}.lease"));
    Ok(Some(PathBuf::from(file)))
}

fn lock_error(path: &std::path::Path, error: &std::io::Error) -> Error {
    Error::LeaseFile {
        path: path.display().to_string(),
        source: std::io::Error::new(error.kind(), error.to_string()),
    }
}
