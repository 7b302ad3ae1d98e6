//! [`ViewDb`]: the read models' own pool on the log's database, and [`ViewTx`], the transaction a
//! projector writes in.
//!
//! Read models live in the database that holds the log, so that a projector's changes and its
//! checkpoint commit in one transaction. The pool is separate from the event store's (the store
//! keeps its pools private, and its SQLite writer must stay free for appends).
//!
//! One SQL text serves both backends: sqlx binds `$1`-style numbered parameters on SQLite as well
//! as on PostgreSQL, and [`Param`] carries each value with its type, so typed NULLs and the
//! backends' different time columns are handled here once. Times are `TIMESTAMPTZ` on PostgreSQL
//! and integer microseconds since the epoch on SQLite (as the event log stores them): sqlx writes
//! SQLite times as text whose fractional digits vary, which would not sort.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use jobboard_eventstore::Checkpoint;
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Row, SqlSafeStr, SqlStr, Sqlite, Transaction, Type};

use crate::error::{Error, Result};

/// The table sqlx records this crate's migrations in. The event store uses sqlx's default
/// `_sqlx_migrations` in the same database; sharing it would make each migrator see the other's
/// migrations as unknown and refuse to run.
const MIGRATIONS_TABLE: &str = "_projection_migrations";

/// Readers of the views on SQLite (queries such as `PostingsView::list`).
const SQLITE_READERS: u32 = 8;
/// Connections of the PostgreSQL pool (projector batches and queries).
const PG_CONNECTIONS: u32 = 8;

/// Which database the views live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite: one writer at a time, times as integer microseconds.
    Sqlite,
    /// PostgreSQL: times as `TIMESTAMPTZ`, JSON as `JSONB`.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`, as `EventStore::backend_name` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

enum Pools {
    /// One writer (SQLite has one at a time anyway; a second would only wait for the lock) and
    /// read-only readers, so queries never queue behind a projector's batch.
    Sqlite {
        writer: SqlitePool,
        readers: SqlitePool,
    },
    Postgres(PgPool),
}

/// The database of the read models. Cheap to clone; clones share the pools.
#[derive(Clone)]
pub struct ViewDb {
    pools: Arc<Pools>,
    /// The URL it was opened with: leases open connections (PostgreSQL) or lock files (SQLite)
    /// of their own.
    url: Arc<str>,
}

impl fmt::Debug for ViewDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewDb")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl ViewDb {
    /// Opens a pool on the database at `url` (`sqlite://…` or `postgres://…`, the URL the event
    /// store was opened with) and creates the runtime's tables.
    pub async fn open(url: &str) -> Result<Self> {
        let pools = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(PG_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            migrator(Backend::Postgres).run(&pool).await?;
            Pools::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL, not the log's FULL: a view commit lost to a power cut loses its
                // checkpoint with it (WAL keeps the file consistent), and the projector simply
                // applies those events again. Nothing acknowledged to a client depends on it.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(connect.clone())
                .await?;
            migrator(Backend::Sqlite).run(&writer).await?;
            let readers = SqlitePoolOptions::new()
                .max_connections(SQLITE_READERS)
                .connect_with(connect.read_only(true))
                .await?;
            Pools::Sqlite { writer, readers }
        } else {
            return Err(Error::Config(format!(
                "database url must start with sqlite: or postgres:, got {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        Ok(Self {
            pools: Arc::new(pools),
            url: url.into(),
        })
    }

    /// The URL the database was opened with.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match *self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction (on SQLite `BEGIN IMMEDIATE`: taking the write lock up front
    /// waits for the event store's writer, where upgrading a read transaction later would fail
    /// at once with "database is locked").
    pub async fn begin(&self) -> Result<ViewTx> {
        let inner = match &*self.pools {
            Pools::Sqlite { writer, .. } => {
                TxInner::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?)
            }
            Pools::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
        };
        Ok(ViewTx {
            inner,
            target: None,
        })
    }

    /// Runs a query outside any transaction (on SQLite's readers) and returns its first row.
    pub async fn fetch_optional(
        &self,
        sql: impl SqlSafeStr,
        params: &[Param],
    ) -> Result<Option<ViewRow>> {
        let sql = sql.into_sql_str();
        Ok(match &*self.pools {
            Pools::Sqlite { readers, .. } => sqlite_query(sql, params)
                .fetch_optional(readers)
                .await?
                .map(ViewRow::sqlite),
            Pools::Postgres(pool) => pg_query(sql, params)
                .fetch_optional(pool)
                .await?
                .map(ViewRow::postgres),
        })
    }

    /// Runs a query outside any transaction (on SQLite's readers) and returns every row.
    pub async fn fetch_all(&self, sql: impl SqlSafeStr, params: &[Param]) -> Result<Vec<ViewRow>> {
        let sql = sql.into_sql_str();
        Ok(match &*self.pools {
            Pools::Sqlite { readers, .. } => sqlite_query(sql, params)
                .fetch_all(readers)
                .await?
                .into_iter()
                .map(ViewRow::sqlite)
                .collect(),
            Pools::Postgres(pool) => pg_query(sql, params)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(ViewRow::postgres)
                .collect(),
        })
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &*self.pools {
            Pools::Sqlite { writer, readers } => {
                writer.close().await;
                readers.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

/// The runtime's embedded migrations for `backend`, kept in their own table.
fn migrator(backend: Backend) -> Migrator {
    let mut migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// A projector's checkpoint as committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The last event the view reflects; reading resumes after it.
    pub checkpoint: Checkpoint,
    /// How many events the checkpoint covers, applied or skipped.
    pub events: u64,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// A database integer that must not be negative, as the `u64` it stands for.
pub(crate) fn unsigned(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupted(format!("{value} is negative")))
}

/// A `u64` as the database's signed integer.
pub(crate) fn signed(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::Corrupted(format!("{value} is out of range")))
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction on the views. Dropped without [`commit`](Self::commit), it rolls back.
///
/// A projector receives `&mut ViewTx`: it writes, the runtime commits (with the checkpoint).
/// The transaction knows which generation of the projector's view it writes
/// ([`table`](Self::table)) and whether that generation is a rebuild not serving yet
/// ([`replaying`](Self::replaying)).
pub struct ViewTx {
    inner: TxInner,
    target: Option<Target>,
}

/// The generation a projector's transaction writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Appended to every table name: `v2_g3` makes `postings` `postings_v2_g3`.
    pub(crate) suffix: String,
    /// The generation is being rebuilt beside the serving one.
    pub(crate) replaying: bool,
}

impl fmt::Debug for ViewTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewTx")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl ViewTx {
    /// Which database the transaction is on (for DDL, which differs between backends).
    pub fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The name of the table `base` in the generation this transaction writes: `postings`
    /// becomes `postings_v2_g3`. A projector names every table (and index) it creates or writes
    /// through this, so that a rebuild builds beside the serving generation; readers read the
    /// plain name, a view of the serving generation's table (see [`Projector::tables`]).
    /// Outside a projector's transaction it is `base` itself.
    ///
    /// [`Projector::tables`]: crate::Projector::tables
    pub fn table(&self, base: &str) -> String {
        match &self.target {
            Some(target) => format!("{base}_{}", target.suffix),
            None => base.to_owned(),
        }
    }

    /// True while the generation this transaction writes is a rebuild that does not serve yet.
    ///
    /// Every event a rebuild applies was, or will be, applied by the serving generation too
    /// (a rebuild never passes the serving generation's checkpoint; it takes over exactly there),
    /// so a projector with side effects (a notification, a push to another system) must not
    /// cause them while this is true. Such a projector writes its side effects to an outbox table
    /// in this transaction only when it is false: then each is recorded exactly once, with the
    /// checkpoint, and sent by whoever drains the outbox.
    pub fn replaying(&self) -> bool {
        self.target.as_ref().is_some_and(|t| t.replaying)
    }

    /// Points the transaction at a generation (the runtime does, before `setup` and `apply`).
    pub(crate) fn set_target(&mut self, target: Target) {
        self.target = Some(target);
    }

    /// Runs one statement with `$1`-style parameters; returns the number of rows it affected.
    pub async fn execute(&mut self, sql: impl SqlSafeStr, params: &[Param]) -> Result<u64> {
        let sql = sql.into_sql_str();
        Ok(match &mut self.inner {
            TxInner::Sqlite(tx) => sqlite_query(sql, params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            TxInner::Postgres(tx) => pg_query(sql, params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// Runs several `;`-separated statements without parameters (DDL in `setup`).
    pub async fn execute_script(&mut self, sql: impl SqlSafeStr) -> Result<()> {
        let script = sqlx::raw_sql(sql);
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                script.execute(&mut **tx).await?;
            }
            TxInner::Postgres(tx) => {
                script.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Runs a query and returns its first row.
    pub async fn fetch_optional(
        &mut self,
        sql: impl SqlSafeStr,
        params: &[Param],
    ) -> Result<Option<ViewRow>> {
        let sql = sql.into_sql_str();
        Ok(match &mut self.inner {
            TxInner::Sqlite(tx) => sqlite_query(sql, params)
                .fetch_optional(&mut **tx)
                .await?
                .map(ViewRow::sqlite),
            TxInner::Postgres(tx) => pg_query(sql, params)
                .fetch_optional(&mut **tx)
                .await?
                .map(ViewRow::postgres),
        })
    }

    /// Runs a query and returns every row.
    pub async fn fetch_all(
        &mut self,
        sql: impl SqlSafeStr,
        params: &[Param],
    ) -> Result<Vec<ViewRow>> {
        let sql = sql.into_sql_str();
        Ok(match &mut self.inner {
            TxInner::Sqlite(tx) => sqlite_query(sql, params)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(ViewRow::sqlite)
                .collect(),
            TxInner::Postgres(tx) => pg_query(sql, params)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(ViewRow::postgres)
                .collect(),
        })
    }

    /// The SQLite connection, for what the shared helpers cannot express.
    pub fn as_sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => Some(&mut **tx),
            TxInner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL connection, for what the shared helpers cannot express.
    pub fn as_postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.inner {
            TxInner::Postgres(tx) => Some(&mut **tx),
            TxInner::Sqlite(_) => None,
        }
    }

    /// Commits everything written in the transaction.
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Serialises the setup of views across instances sharing a PostgreSQL database, whose
    /// concurrent `CREATE TABLE IF NOT EXISTS` can still collide. SQLite's `BEGIN IMMEDIATE`
    /// already did.
    pub(crate) async fn lock_setup(&mut self) -> Result<()> {
        if self.backend() == Backend::Postgres {
            self.execute(
                "SELECT pg_advisory_xact_lock(hashtext('jobboard_projection_setup'))",
                &[],
            )
            .await?;
        }
        Ok(())
    }
}

/// A value bound to a `$n` parameter, with its type (so that NULLs are typed on PostgreSQL).
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// `BIGINT` / `INTEGER`.
    Int(Option<i64>),
    /// `TEXT`.
    Text(Option<String>),
    /// `BOOLEAN` / `INTEGER` 0 or 1.
    Bool(Option<bool>),
    /// `DATE` / `TEXT` `YYYY-MM-DD`.
    Date(Option<NaiveDate>),
    /// `TIMESTAMPTZ` / `INTEGER` microseconds since the epoch.
    Time(Option<DateTime<Utc>>),
    /// `JSONB` / `TEXT`.
    Json(Option<serde_json::Value>),
}

impl Param {
    /// `value` serialised as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        serde_json::to_value(value)
            .map(|v| Self::Json(Some(v)))
            .map_err(|e| Error::Corrupted(format!("a value does not serialise to JSON: {e}")))
    }
}

macro_rules! param_from {
    ($variant:ident: $($ty:ty => $convert:expr),* $(,)?) => {
        $(
            impl From<$ty> for Param {
                fn from(value: $ty) -> Self {
                    let convert: fn($ty) -> _ = $convert;
                    Self::$variant(Some(convert(value)))
                }
            }

            impl From<Option<$ty>> for Param {
                fn from(value: Option<$ty>) -> Self {
                    let convert: fn($ty) -> _ = $convert;
                    Self::$variant(value.map(convert))
                }
            }
        )*
    };
}

param_from!(Int: i64 => |v| v, i32 => i64::from, u32 => i64::from);
param_from!(Text: String => |v| v, &str => str::to_owned);
param_from!(Bool: bool => |v| v);
param_from!(Date: NaiveDate => |v| v);
param_from!(Time: DateTime<Utc> => |v| v);
param_from!(Json: serde_json::Value => |v| v);

type SqliteQuery = sqlx::query::Query<'static, Sqlite, <Sqlite as sqlx::Database>::Arguments>;
type PgQuery = sqlx::query::Query<'static, Postgres, <Postgres as sqlx::Database>::Arguments>;

fn sqlite_query(sql: SqlStr, params: &[Param]) -> SqliteQuery {
    params.iter().fold(sqlx::query(sql), |q, p| match p {
        Param::Int(v) => q.bind(*v),
        Param::Text(v) => q.bind(v.clone()),
        Param::Bool(v) => q.bind(*v),
        Param::Date(v) => q.bind(*v),
        Param::Time(v) => q.bind(v.map(|t| t.timestamp_micros())),
        Param::Json(v) => q.bind(v.as_ref().map(Json)),
    })
}

fn pg_query(sql: SqlStr, params: &[Param]) -> PgQuery {
    params.iter().fold(sqlx::query(sql), |q, p| match p {
        Param::Int(v) => q.bind(*v),
        Param::Text(v) => q.bind(v.clone()),
        Param::Bool(v) => q.bind(*v),
        Param::Date(v) => q.bind(*v),
        Param::Time(v) => q.bind(*v),
        Param::Json(v) => q.bind(v.as_ref().map(Json)),
    })
}

/// A type both backends decode a column into: integers, text, booleans, dates, `Json<T>`, and
/// `Option`s of them. Times go through [`ViewRow::time`], as their columns differ.
pub trait ViewColumn:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> ViewColumn for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

enum RowInner {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A row a query returned, from either backend.
pub struct ViewRow {
    inner: RowInner,
}

impl fmt::Debug for ViewRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.inner {
            RowInner::Sqlite(_) => Backend::Sqlite,
            RowInner::Postgres(_) => Backend::Postgres,
        };
        f.debug_struct("ViewRow")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

impl ViewRow {
    pub(crate) fn sqlite(row: SqliteRow) -> Self {
        Self {
            inner: RowInner::Sqlite(row),
        }
    }

    pub(crate) fn postgres(row: PgRow) -> Self {
        Self {
            inner: RowInner::Postgres(row),
        }
    }

    /// The value of `column`.
    pub fn get<T: ViewColumn>(&self, column: &str) -> Result<T> {
        Ok(match &self.inner {
            RowInner::Sqlite(row) => row.try_get(column)?,
            RowInner::Postgres(row) => row.try_get(column)?,
        })
    }

    /// The time in `column` (written from [`Param::Time`]).
    pub fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        self.opt_time(column)?
            .ok_or_else(|| Error::Corrupted(format!("{column} is null")))
    }

    /// The time in `column`, which may be NULL.
    pub fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        match &self.inner {
            RowInner::Sqlite(row) => row
                .try_get::<Option<i64>, _>(column)?
                .map(|micros| {
                    DateTime::from_timestamp_micros(micros)
                        .ok_or_else(|| Error::Corrupted(format!("{column} {micros} is not a time")))
                })
                .transpose(),
            RowInner::Postgres(row) => Ok(row.try_get(column)?),
        }
    }
}
