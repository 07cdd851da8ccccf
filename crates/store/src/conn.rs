//! Connections: the one diesel connection type over both backends, how a URL picks the backend,
//! the r2d2 manager that builds the right variant, SQLite's pragmas, and start-up migrations.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::r2d2::R2D2Connection;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StoreError;

/// Migrations per backend (same names in both folders; only the dialect differs), embedded so
/// the binary carries its schema and applies it at start-up.
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Runs `$body` with `$inner` bound to the backend's own connection, for a query the
/// multi-backend connection cannot build (diesel gives it no `ON CONFLICT`): the same diesel
/// code, type-checked once per backend.
macro_rules! on_backend {
    ($conn:expr, $inner:ident => $body:expr) => {
        match $conn {
            $crate::conn::DbConnection::Pg($inner) => $body,
            $crate::conn::DbConnection::Sqlite($inner) => $body,
        }
    };
}
pub(crate) use on_backend;

/// The connection every query runs on: PostgreSQL or SQLite, chosen at run time.
///
/// SQLite comes last because it accepts any string as a path; the derive's own `establish`
/// would try it after PostgreSQL fails and hide PostgreSQL's error, so
/// [`Store::connect`](crate::Store::connect) picks the variant itself from the URL scheme.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// A PostgreSQL connection (libpq).
    Pg(PgConnection),
    /// A SQLite connection (bundled libsqlite3).
    Sqlite(SqliteConnection),
}

/// The backend type queries are built for: diesel's generated union of both backends.
pub(crate) type Db = <DbConnection as Connection>::Backend;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL, for deployments with more than one gateway process.
    Postgres,
    /// SQLite, the embedded default for a single process.
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        })
    }
}

/// A database URL split into the backend and what that backend's driver is given.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) backend: Backend,
    /// What libpq or sqlite3_open_v2 receives; may hold a password, so never printed.
    driver_url: String,
    /// The URL with any password replaced, safe for errors and logs.
    pub(crate) redacted: String,
    /// The password, kept only to scrub it from driver messages.
    password: Option<String>,
    /// The statements every connection opened for this target runs, once asked to keep them.
    pub(crate) statements: StatementLog,
}

/// The SQL every connection of one store sends, kept only after [`StatementLog::start`]:
/// how a test shows the round trips an operation costs (a round trip per statement on
/// PostgreSQL), not only a benchmark; and the statements prepared into a connection's cache,
/// which shows a hot statement is parsed once per connection rather than on every call.
#[derive(Clone, Default)]
pub(crate) struct StatementLog(Arc<OnceLock<Mutex<Logged>>>);

/// What a [`StatementLog`] has kept since it was last read.
#[derive(Default)]
struct Logged {
    sent: Vec<String>,
    prepared: Vec<String>,
}

impl StatementLog {
    /// Starts keeping statements (idempotent).
    pub(crate) fn start(&self) {
        let _ = self.0.set(Mutex::new(Logged::default()));
    }

    /// The statements since the last call, in the order they started.
    pub(crate) fn take(&self) -> Vec<String> {
        self.take_with(|logged| &mut logged.sent)
    }

    /// The statements prepared into a connection's statement cache since the last call.
    pub(crate) fn take_prepared(&self) -> Vec<String> {
        self.take_with(|logged| &mut logged.prepared)
    }

    fn take_with(&self, list: impl Fn(&mut Logged) -> &mut Vec<String>) -> Vec<String> {
        self.0
            .get()
            .map(|log| {
                std::mem::take(list(
                    &mut log.lock().unwrap_or_else(PoisonError::into_inner),
                ))
            })
            .unwrap_or_default()
    }
}

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let Some(log) = self.0.get() else {
            return;
        };
        let (sql, list): (String, fn(&mut Logged) -> &mut Vec<String>) = match event {
            InstrumentationEvent::StartQuery { query, .. } => (query.to_string(), |l| &mut l.sent),
            InstrumentationEvent::CacheQuery { sql, .. } => (sql.to_owned(), |l| &mut l.prepared),
            _ => return,
        };
        list(&mut log.lock().unwrap_or_else(PoisonError::into_inner)).push(sql);
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("backend", &self.backend)
            .field("url", &self.redacted)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Picks the backend from the scheme: `postgres://`/`postgresql://` → PostgreSQL;
    /// `sqlite://path`, `sqlite::memory:`, `sqlite:path`, `file:…` (a SQLite URI) or a bare
    /// path → SQLite. Any other `scheme://` is refused rather than taken as a file name.
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (redacted, password) = redact_password(url);
            return Ok(Target {
                backend: Backend::Postgres,
                driver_url: url.to_owned(),
                redacted,
                password,
                statements: StatementLog::default(),
            });
        }
        let sqlite_path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            rest
        } else if url.starts_with("file:") {
            url
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::UnsupportedUrl {
                scheme: scheme.to_owned(),
            });
        } else {
            url
        };
        if sqlite_path.is_empty() {
            return Err(StoreError::UnsupportedUrl {
                scheme: "sqlite (no path)".to_owned(),
            });
        }
        Ok(Target {
            backend: Backend::Sqlite,
            driver_url: sqlite_path.to_owned(),
            redacted: url.to_owned(),
            password: None,
            statements: StatementLog::default(),
        })
    }

    /// Whether every connection would open its own private database, so the pool must hold
    /// exactly one connection for the data to be shared.
    pub(crate) fn is_private_memory(&self) -> bool {
        let memory =
            self.driver_url.contains(":memory:") || self.driver_url.contains("mode=memory");
        self.backend == Backend::Sqlite && memory && !self.driver_url.contains("cache=shared")
    }

    /// Opens one connection of the right variant, with SQLite's pragmas applied.
    pub(crate) fn establish(&self) -> Result<DbConnection, StoreError> {
        self.establish_logged(true)
    }

    /// [`Target::establish`] for a connection whose statements stay out of the store's
    /// statement log: one that works in the background whenever it gets round to it, which
    /// tests counting an operation's statements must not see.
    pub(crate) fn establish_unlogged(&self) -> Result<DbConnection, StoreError> {
        self.establish_logged(false)
    }

    fn establish_logged(&self, logged: bool) -> Result<DbConnection, StoreError> {
        let connected = match self.backend {
            Backend::Postgres => PgConnection::establish(&self.driver_url).map(DbConnection::Pg),
            Backend::Sqlite => {
                SqliteConnection::establish(&self.driver_url).map(DbConnection::Sqlite)
            }
        };
        let mut conn = connected.map_err(|e| self.connect_error(e.to_string()))?;
        if logged {
            conn.set_instrumentation(self.statements.clone());
        }
        apply_sqlite_pragmas(&mut conn).map_err(|e| self.connect_error(e.to_string()))?;
        Ok(conn)
    }

    /// The file a file-backed SQLite target opens (without a `file:` URI's scheme and query);
    /// `None` for PostgreSQL and in-memory databases.
    pub(crate) fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        if self.backend != Backend::Sqlite
            || self.driver_url.contains(":memory:")
            || self.driver_url.contains("mode=memory")
        {
            return None;
        }
        let path = self
            .driver_url
            .strip_prefix("file:")
            .unwrap_or(&self.driver_url);
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        (!path.is_empty()).then(|| std::path::PathBuf::from(path))
    }

    /// A connection error naming the backend, the redacted URL and the driver's reason.
    pub(crate) fn connect_error(&self, reason: String) -> StoreError {
        let reason = match &self.password {
            Some(password) if !password.is_empty() => reason.replace(password.as_str(), "***"),
            _ => reason,
        };
        StoreError::Connect {
            backend: self.backend,
            url: self.redacted.clone(),
            reason: reason.trim().to_owned(),
        }
    }
}

/// Replaces the password of a `scheme://user:password@host/…` URL with `***`. A URL that does
/// not parse keeps only its scheme, so a password can never leak through a typo.
fn redact_password(url: &str) -> (String, Option<String>) {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let password = parsed.password().map(str::to_owned);
            if password.is_some() && parsed.set_password(Some("***")).is_err() {
                return (format!("{}://<redacted>", parsed.scheme()), password);
            }
            (parsed.to_string(), password)
        }
        Err(_) => {
            let scheme = url.split("://").next().unwrap_or("postgres");
            (format!("{scheme}://<unparsable URL>"), None)
        }
    }
}

/// Sets SQLite up for a concurrent server: WAL so readers never block the writer, a busy
/// timeout so writers queue instead of failing at once, NORMAL sync (safe with WAL), and
/// foreign keys, which SQLite leaves off unless asked. PostgreSQL needs nothing.
fn apply_sqlite_pragmas(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(sqlite) => sqlite.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        ),
        DbConnection::Pg(_) => Ok(()),
    }
}

/// Applies the pending embedded migrations of the connection's backend.
pub(crate) fn run_migrations(conn: &mut DbConnection) -> Result<(), StoreError> {
    let applied = match conn {
        DbConnection::Pg(pg) => pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        DbConnection::Sqlite(sqlite) => {
            sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ())
        }
    };
    applied.map_err(|e| StoreError::Migration(e.to_string()))
}

/// Checks that the database's schema is the one this binary was built for: every applied
/// migration is one the binary carries and none of its own is missing, and every table has
/// every column the binary reads or writes (a `SELECT` of them all with `LIMIT 0`: no rows,
/// but the database resolves each name). `migrate` only runs what is pending, so neither a
/// newer binary's migration nor a column dropped by hand would be noticed otherwise.
pub(crate) fn check_schema(conn: &mut DbConnection) -> Result<(), StoreError> {
    use diesel::QueryDsl;
    use diesel::RunQueryDsl;
    use diesel::migration::MigrationSource;

    let versions =
        |result: diesel::migration::Result<Vec<diesel::migration::MigrationVersion<'_>>>| {
            result
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| StoreError::Migration(e.to_string()))
        };
    let (applied, known) = match conn {
        DbConnection::Pg(pg) => (
            versions(pg.applied_migrations())?,
            known_versions(MigrationSource::<diesel::pg::Pg>::migrations(
                &POSTGRES_MIGRATIONS,
            ))?,
        ),
        DbConnection::Sqlite(sqlite) => (
            versions(sqlite.applied_migrations())?,
            known_versions(MigrationSource::<diesel::sqlite::Sqlite>::migrations(
                &SQLITE_MIGRATIONS,
            ))?,
        ),
    };
    let unknown: Vec<&String> = applied.iter().filter(|v| !known.contains(v)).collect();
    if !unknown.is_empty() {
        return Err(StoreError::SchemaMismatch(format!(
            "the database has migrations this binary does not know ({unknown:?}); a newer \
             paygate migrated it: run that version, or restore a backup taken before"
        )));
    }
    let missing: Vec<&String> = known.iter().filter(|v| !applied.contains(v)).collect();
    if !missing.is_empty() {
        return Err(StoreError::SchemaMismatch(format!(
            "the database lacks migrations {missing:?}: run `paygate migrate`"
        )));
    }
    macro_rules! columns_of {
        ($($table:ident),+ $(,)?) => {$(
            crate::schema::$table::table
                .select(crate::schema::$table::all_columns)
                .limit(0)
                .execute(conn)
                .map_err(|e| StoreError::SchemaMismatch(format!(
                    "table {} does not have the columns this binary uses: {e}",
                    stringify!($table)
                )))?;
        )+};
    }
    columns_of!(
        orders,
        refunds,
        callbacks,
        anomalies,
        api_keys,
        outbox_events,
        webhook_attempts,
        leases,
    );
    Ok(())
}

/// The versions of the migrations a binary carries.
fn known_versions<DB: diesel::backend::Backend>(
    migrations: diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<DB>>>>,
) -> Result<Vec<String>, StoreError> {
    migrations
        .map(|all| all.iter().map(|m| m.name().version().to_string()).collect())
        .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Builds connections of the variant the URL named; diesel's generic `ConnectionManager`
/// would go through the derive's `establish` and lose the driver's error.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) target: Target,
}

/// A pooled connection, and whether a reader found it dead: diesel's own `is_broken` only
/// knows about its transaction state, not a socket the server closed, and a dead connection
/// taken back would fail the next reader too.
pub(crate) struct PooledDb {
    conn: DbConnection,
    /// Set by a reader that saw it fail as a connection; the pool then discards it.
    pub(crate) dead: bool,
}

impl std::ops::Deref for PooledDb {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledDb {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledDb;
    type Error = StoreError;

    fn connect(&self) -> Result<PooledDb, StoreError> {
        self.target
            .establish()
            .map(|conn| PooledDb { conn, dead: false })
    }

    fn is_valid(&self, pooled: &mut PooledDb) -> Result<(), StoreError> {
        pooled.conn.ping().map_err(StoreError::from)
    }

    fn has_broken(&self, pooled: &mut PooledDb) -> bool {
        std::thread::panicking() || pooled.dead || pooled.conn.is_broken()
    }
}

/// The most connections a file-backed SQLite pool opens (readers), whatever was asked for.
const SQLITE_MAX_CONNECTIONS: u32 = 2;

/// Builds the pool. A private in-memory SQLite database gets a single connection that is never
/// recycled, because closing it would drop the data.
pub(crate) fn build_pool(
    target: Target,
    pool_size: u32,
    acquire_timeout: Duration,
) -> Result<r2d2::Pool<Manager>, StoreError> {
    let private_memory = target.is_private_memory();
    // No test query on every checkout: `Store::run` tests the connection itself, and the hot
    // reads (`Store::read`) retry on a broken one instead of paying a round trip each time.
    let mut builder = r2d2::Pool::builder()
        .connection_timeout(acquire_timeout)
        .test_on_check_out(false);
    builder = if private_memory {
        builder
            .max_size(1)
            .min_idle(Some(1))
            .idle_timeout(None)
            .max_lifetime(None)
    } else if target.backend == Backend::Sqlite {
        // No minimum of idle connections on files: with one, every checkout of the last idle
        // connection starts a replacement connect on r2d2's own thread, which nothing can wait
        // for; a short CLI run then exited while libpq was mid-handshake and crashed in
        // OpenSSL's exit-time cleanup. Connections still stay pooled after use (idle timeout).
        // Writes go through the writer's own connection (writer.rs); the pool serves reads,
        // which WAL never blocks. More readers than cores only add context switches on a
        // small box, and every open connection keeps its own page cache.
        builder
            .max_size(pool_size.clamp(1, SQLITE_MAX_CONNECTIONS))
            .min_idle(Some(0))
    } else {
        builder.max_size(pool_size.max(1)).min_idle(Some(0))
    };
    let manager = Manager {
        target: target.clone(),
    };
    builder
        .build(manager)
        .map_err(|e| target.connect_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend_of(url: &str) -> Backend {
        Target::parse(url).unwrap().backend
    }

    #[test]
    fn the_scheme_picks_the_backend() {
        assert_eq!(backend_of("postgres://u@h/db"), Backend::Postgres);
        assert_eq!(backend_of("postgresql://u@h/db"), Backend::Postgres);
        for sqlite in [
            "sqlite:///var/lib/paygate.db",
            "sqlite://paygate.db",
            "sqlite::memory:",
            "file:paygate.db?mode=rwc",
            "/var/lib/paygate.db",
            "paygate.db",
        ] {
            assert_eq!(backend_of(sqlite), Backend::Sqlite, "{sqlite}");
        }
    }

    #[test]
    fn sqlite_urls_become_the_path_sqlite_opens() {
        assert_eq!(
            Target::parse("sqlite:///a/b.db").unwrap().driver_url,
            "/a/b.db"
        );
        assert_eq!(Target::parse("sqlite://b.db").unwrap().driver_url, "b.db");
        assert_eq!(
            Target::parse("sqlite::memory:").unwrap().driver_url,
            ":memory:"
        );
        assert_eq!(
            Target::parse("file:x.db?mode=ro").unwrap().driver_url,
            "file:x.db?mode=ro"
        );
    }

    #[test]
    fn other_schemes_and_empty_paths_are_refused() {
        for bad in ["mysql://root@h/db", "redis://h", "sqlite://", ""] {
            assert!(
                matches!(Target::parse(bad), Err(StoreError::UnsupportedUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_private_memory_databases_need_a_single_connection() {
        let private = |url: &str| Target::parse(url).unwrap().is_private_memory();
        assert!(private("sqlite::memory:"));
        assert!(private("file:db?mode=memory"));
        assert!(!private("file:db?mode=memory&cache=shared"));
        assert!(!private("sqlite://paygate.db"));
        assert!(!private("postgres://h/db"));
    }

    #[test]
    fn passwords_never_reach_the_redacted_url_or_debug() {
        let target = Target::parse("postgres://pay:hunter2@db.internal:5432/paygate").unwrap();
        assert_eq!(
            target.redacted,
            "postgres://pay:***@db.internal:5432/paygate"
        );
        assert!(!format!("{target:?}").contains("hunter2"));
        let error = target.connect_error("server said hunter2 is wrong".into());
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("db.internal"), "{error}");
    }

    #[test]
    fn an_unparsable_postgres_url_keeps_only_its_scheme() {
        let target = Target::parse("postgres://pay:pw@[broken/db").unwrap();
        assert_eq!(target.redacted, "postgres://<unparsable URL>");
    }
}
