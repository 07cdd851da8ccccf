#![doc = include_str!("../README.md")]
//!
//! ## Design decisions
//!
//! - **One connection type** ([`DbConnection`], diesel's `MultiConnection` derive) and **one
//!   schema**, with **migrations per backend** (`migrations/{sqlite,postgres}`, same names),
//!   embedded and applied by [`Store::connect`].
//! - **Async outside, blocking inside**: every method is `async`; the diesel work runs on
//!   `spawn_blocking` with a pooled connection, behind a semaphore as wide as the pool, and a
//!   panic in that work comes back as [`StoreError::TaskPanicked`].
//! - **Status changes only by compare-and-set** ([`Store::transition_order`]):
//!   `UPDATE … WHERE id = ? AND status = ?`, with the new status computed by
//!   [`paygate_core::OrderStatus::apply`], and any outbox event written in the same transaction.
//! - **Write-first transactions**: every multi-statement transaction starts with an `UPDATE`
//!   of the row it guards. On PostgreSQL that takes the row lock (like `SELECT … FOR UPDATE`,
//!   and later statements see rows committed while waiting, under READ COMMITTED); on SQLite the
//!   first write takes the database write lock with the busy timeout (like `BEGIN IMMEDIATE`),
//!   so a read-then-write upgrade can never fail with `SQLITE_BUSY`. Same SQL on both backends.
//! - **Writes are group-committed** by writer threads ("lanes", `writer.rs`): each write names
//!   the row it locks ([`LockKey`]) and writes naming one row share a lane; on PostgreSQL a
//!   batch opens at most 32 savepoints (about one per write), well under the 64
//!   subtransactions PostgreSQL caches per backend.
//! - **Timestamps** are UTC `TIMESTAMP`s truncated to microseconds (PostgreSQL's precision), so
//!   what a caller gets back is what either backend stores.

mod api_keys;
mod bills;
mod callbacks;
mod conn;
mod deliveries;
mod error;
mod ids;
mod orders;
mod outbox;
mod prepared;
mod reconcile;
mod refunds;
mod schema;
mod summary;
mod text;
mod writer;

use diesel::r2d2::R2D2Connection;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use paygate_core::Fen;
use tokio::sync::Semaphore;

pub use api_keys::{ApiKey, ApiKeyRole, NewApiKey, hash_api_key_secret};
pub use bills::{
    BillDayKey, BillFile, Difference, MAX_BILL_FILE_BYTES, MAX_RESOLUTION_BYTES, NewBillFile,
    NewReconciliationRun, ReconciliationRun, Resolution, RunOutcome, RunStatus, RunTotals,
    bill_file_sha256,
};
pub use callbacks::{
    Anomaly, AnomalyKind, Callback, CallbackKind, CallbackVerdict, JudgedCallback, NewAnomaly,
    NewCallback, UNVERIFIED_BODY_KEPT_BYTES,
};
pub use conn::{Backend, DbConnection};
pub use deliveries::{EventFilter, NewWebhookAttempt, WebhookAttempt};
pub use error::StoreError;
pub use ids::{
    AnomalyId, ApiKeyId, BillFileId, CallbackId, Cursor, DifferenceId, EventId, Page,
    ReconciliationRunId,
};
pub use orders::{NewOrder, OrderChanges, OrderFilter, Transition};
pub use outbox::{ClaimOutcome, EventKind, NewOutboxEvent, OutboxEvent};
pub use reconcile::{Backlog, ConfiguredApps, DueQuery, QueryAgain};
pub use refunds::{NewRefund, Refund, RefundCompletion};
pub use summary::{GroupBy, ReportZone, SummaryRow};
#[doc(hidden)]
pub use writer::LockKey;

/// Held by the one process that serves a file-backed SQLite database; the operating system
/// releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
}

impl ServeLock {
    /// Claims the right to serve the database `url` names: for a SQLite file, an exclusive
    /// lock on `<file>.serve.lock` beside it (refused with [`StoreError::AlreadyServed`] while
    /// another process holds it); nothing to claim for PostgreSQL or in-memory databases, where
    /// several processes are fine (leases coordinate them).
    pub fn claim(url: &str) -> Result<Option<ServeLock>, StoreError> {
        let Some(path) = conn::Target::parse(url)?.sqlite_file() else {
            return Ok(None);
        };
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".serve.lock");
        let lock_path = std::path::PathBuf::from(lock_path);
        let cannot = |e: std::io::Error| {
            StoreError::Unavailable(format!("cannot lock {}: {e}", lock_path.display()))
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(cannot)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ServeLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::AlreadyServed {
                path: path.display().to_string(),
                lock: lock_path.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(cannot(e)),
        }
    }
}

/// How big the store's connection pool is and how long a caller waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// The most pooled connections (reads and unbatched work; writes have their own lanes).
    pub size: u32,
    /// How long a caller waits for a free connection, or for room in a write lane's queue,
    /// before getting [`StoreError::Unavailable`] (a 503 at the HTTP edge) instead of hanging.
    pub acquire_timeout: Duration,
}

impl PoolOptions {
    /// The acquire timeout when none is configured.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A pool of `size` connections with the default acquire timeout.
    pub fn sized(size: u32) -> PoolOptions {
        PoolOptions {
            size,
            acquire_timeout: PoolOptions::DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// paygate's database: a connection pool plus the repository functions. Cheap to clone; every
/// clone shares the pool.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<conn::Manager>,
    backend: Backend,
    /// One permit per pooled connection, so waiting callers queue on the async side instead of
    /// parking blocking threads on the pool.
    permits: Arc<Semaphore>,
    /// How long a caller waits for a permit ([`PoolOptions::acquire_timeout`]).
    acquire_timeout: Duration,
    /// The group-committing write path; `None` for a private in-memory SQLite database, whose
    /// only connection is the pool's.
    writer: Option<writer::Lanes>,
    /// The routing key of every write, once a test asked for them ([`Store::trace_write_keys`]).
    traced_keys: Arc<OnceLock<Mutex<Vec<LockKey>>>>,
    /// Every statement sent, once a test asks for them ([`Store::trace_statements`]).
    statements: conn::StatementLog,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("pool_size", &self.pool.max_size())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database the URL names (see the crate docs for the accepted forms), applies
    /// pending migrations and keeps a pool of up to `pool.size` connections, which callers
    /// wait at most `pool.acquire_timeout` for. A private in-memory SQLite database always gets
    /// exactly one connection.
    pub async fn connect(url: &str, pool: PoolOptions) -> Result<Store, StoreError> {
        let PoolOptions {
            size: pool_size,
            acquire_timeout,
        } = pool;
        let target = conn::Target::parse(url)?;
        let statements = target.statements.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // A first direct connection reports the driver's own error (wrong password, no such
            // host, unwritable file) instead of the pool's generic timeout.
            drop(target.establish()?);
            let backend = target.backend;
            let writer = if target.is_private_memory() {
                None
            } else {
                Some(writer::Lanes::start(&target, acquire_timeout)?)
            };
            let pool = conn::build_pool(target, pool_size, acquire_timeout)?;
            let mut conn = pool.get()?;
            conn::run_migrations(&mut conn)?;
            conn::check_schema(&mut conn)?;
            drop(conn);
            Ok::<_, StoreError>((pool, backend, writer))
        })
        .await;
        let (pool, backend, writer) = unpanic(joined)?;
        let permits = Arc::new(Semaphore::new(pool.max_size() as usize));
        Ok(Store {
            pool,
            backend,
            permits,
            acquire_timeout,
            writer,
            traced_keys: Arc::new(OnceLock::new()),
            statements,
        })
    }

    /// Closes this handle before the process exits: when it is the last one, every queued
    /// write is committed and the writer threads have closed their connections when this
    /// returns. Short-lived commands call it so that no thread is inside the database driver
    /// while the process's exit-time cleanup runs.
    pub async fn close(self) -> Result<(), StoreError> {
        let Store { pool, writer, .. } = self;
        let closed = tokio::task::spawn_blocking(move || {
            if let Some(lanes) = writer {
                lanes.close();
            }
            // Idle pooled connections close here, on this thread; the pool keeps no
            // background connect going (see `conn::build_pool`).
            drop(pool);
            Ok(())
        })
        .await;
        unpanic(closed)
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database still has the schema this binary was built for (see
    /// [`StoreError::SchemaMismatch`]), for readiness checks.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        self.run(conn::check_schema).await
    }

    /// Checks that the database answers, for health endpoints.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            use diesel::r2d2::R2D2Connection;
            conn.ping().map_err(StoreError::from)
        })
        .await
    }

    /// Runs diesel work that writes: through the group-committing writer (in its own savepoint
    /// of the writer's next transaction), or in a transaction of its own on the single
    /// connection of a private in-memory database. Returns once the work is committed.
    /// `locks` names the row the work locks, which picks the writer lane: writes locking one
    /// row queue in one lane (see the write-path rules in `writer.rs`).
    pub(crate) async fn write<T, F>(&self, locks: LockKey, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(traced) = self.traced_keys.get() {
            lock_ignoring_poison(traced).push(locks.clone());
        }
        match &self.writer {
            Some(lanes) => {
                let lock_order = locks.lock_order();
                lanes.lane_of(lock_order).write(lock_order, work).await
            }
            None => {
                self.run(move |conn| {
                    use diesel::Connection;
                    conn.transaction(work)
                })
                .await
            }
        }
    }

    /// [`Store::write`] for work that may run more than once before it commits: it only
    /// reads and writes the database, and its result follows from the state it runs on (no
    /// ids generated outside it, no effects beyond the connection). The writer runs it
    /// without a savepoint of its own, one round trip less per write on PostgreSQL.
    pub(crate) async fn write_rerunnable<T, F>(
        &self,
        locks: LockKey,
        mut work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(traced) = self.traced_keys.get() {
            lock_ignoring_poison(traced).push(locks.clone());
        }
        match &self.writer {
            Some(lanes) => {
                let lock_order = locks.lock_order();
                lanes
                    .lane_of(lock_order)
                    .write_rerunnable(lock_order, work)
                    .await
            }
            None => {
                self.run(move |conn| {
                    use diesel::Connection;
                    conn.transaction(|conn| work(conn))
                })
                .await
            }
        }
    }

    /// Test support: from now on, remembers the [`LockKey`] every write through this store (or
    /// a clone of it) is routed by, so a test can check that a write is routed by the row it
    /// locks. Costs nothing until called.
    #[doc(hidden)]
    pub fn trace_write_keys(&self) {
        let _ = self.traced_keys.set(Mutex::new(Vec::new()));
    }

    /// Test support: the keys of the writes since the last call, in the order they were sent
    /// (empty unless [`Store::trace_write_keys`] was called).
    #[doc(hidden)]
    pub fn traced_write_keys(&self) -> Vec<LockKey> {
        self.traced_keys
            .get()
            .map(|traced| std::mem::take(&mut *lock_ignoring_poison(traced)))
            .unwrap_or_default()
    }

    /// Test support: from now on, keeps the SQL of every statement this store's connections
    /// send (pooled readers and writer lanes), so a test can count an operation's round trips.
    /// Costs nothing until called.
    #[doc(hidden)]
    pub fn trace_statements(&self) {
        self.statements.start();
    }

    /// Test support: the statements sent since the last call, in the order they started
    /// (empty unless [`Store::trace_statements`] was called).
    #[doc(hidden)]
    pub fn traced_statements(&self) -> Vec<String> {
        self.statements.take()
    }

    /// Test support: the statements prepared into a connection's statement cache since the
    /// last call (empty unless [`Store::trace_statements`] was called).
    #[doc(hidden)]
    pub fn traced_prepared_statements(&self) -> Vec<String> {
        self.statements.take_prepared()
    }

    /// Runs blocking diesel work that only reads, on a pooled connection off the async runtime.
    /// The connection is tested first (a server restart or an idle timeout may have ended
    /// it), one round trip; the hot reads use [`Store::read`] instead.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self.permit().await?;
        let pool = self.pool.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pool.get()?;
            if conn.ping().is_err() {
                // Marked dead, the pool discards it rather than take it back.
                conn.dead = true;
                drop(conn);
                conn = pool.get()?;
            }
            work(&mut conn)
        })
        .await;
        unpanic(joined)
    }

    /// [`Store::run`] for reads that may run twice: the connection is not tested first (one
    /// round trip less per read on PostgreSQL, where a notify's read is half its cost); when
    /// it turns out dead, it is discarded and the read runs again on another, so an outage
    /// that is over costs no request an error.
    pub(crate) async fn read<T, F>(&self, mut work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(result) = self.read_in_place(&mut work) {
            return result;
        }
        let permit = self.permit().await?;
        let pool = self.pool.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Every idle connection may have died at once (a server restart): one more try than
            // the pool holds reaches a fresh connection, and a dead one fails at once.
            let mut tries = pool.max_size() + 1;
            loop {
                let mut conn = pool.get()?;
                let result = work(&mut conn);
                // `Unavailable` is how a lost connection comes back (`StoreError`'s `From`).
                let lost = matches!(result, Err(StoreError::Unavailable(_)))
                    || (result.is_err() && conn.is_broken());
                tries -= 1;
                if !lost || tries == 0 {
                    return result;
                }
                // Marked dead, the pool discards it rather than take it back.
                conn.dead = true;
            }
        })
        .await;
        unpanic(joined)
    }

    /// SQLite only: runs a hot read on the calling thread when a permit and an idle
    /// connection are at hand without waiting, `None` otherwise (the caller then goes to the
    /// blocking pool). A read of a WAL database does not wait for the writer or a checkpoint
    /// (only for the recovery of a crashed WAL, once, when the file is first opened), and
    /// the hot reads are point lookups by a unique key, tens of microseconds; the two thread
    /// hand-offs of the blocking pool cost more than that, on every notify and every merchant
    /// request (docs/performance.md §5). PostgreSQL reads are network round trips and stay off
    /// the runtime.
    fn read_in_place<T, F>(&self, work: &mut F) -> Option<Result<T, StoreError>>
    where
        F: FnMut(&mut DbConnection) -> Result<T, StoreError>,
    {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let _permit = self.permits.clone().try_acquire_owned().ok()?;
        let mut conn = self.pool.try_get()?;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut conn)));
        Some(ran.unwrap_or_else(|payload| {
            // A read that panicked may have left a statement half-stepped: not pooled again.
            conn.dead = true;
            Err(StoreError::TaskPanicked(panic_message(payload.as_ref())))
        }))
    }

    /// A place among the pool's users, or why there is none in time.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Unavailable("timed out waiting for a connection".into()))?
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))
    }
}

/// The guarded value even if a thread panicked while holding the lock: the traced keys are a
/// plain list that a panic cannot leave half-written.
fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Turns a panicked or cancelled blocking task into an error instead of propagating the panic.
fn unpanic<T>(
    joined: Result<Result<T, StoreError>, tokio::task::JoinError>,
) -> Result<T, StoreError> {
    match joined {
        Ok(result) => result,
        Err(error) if error.is_panic() => Err(StoreError::TaskPanicked(panic_message(
            error.into_panic().as_ref(),
        ))),
        Err(error) => Err(StoreError::TaskPanicked(error.to_string())),
    }
}

/// The text a panic carried, for [`StoreError::TaskPanicked`].
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

/// A UTC instant as stored: naive UTC, truncated to microseconds.
pub(crate) fn db_time(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

/// A stored naive UTC timestamp as an instant.
pub(crate) fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// The current time as stored.
pub(crate) fn db_now() -> NaiveDateTime {
    db_time(Utc::now())
}

/// Converts a stored `BIGINT` to fen, reporting a negative value as a corrupt row.
pub(crate) fn fen_column(table: &'static str, id: &str, fen: i64) -> Result<Fen, StoreError> {
    Fen::new(fen).map_err(|e| corrupt(table, id, e))
}

/// A corrupt-row error for `table`/`id`.
pub(crate) fn corrupt(table: &'static str, id: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        id: id.to_owned(),
        reason: reason.to_string(),
    }
}

/// The number of rows to fetch for a page of `limit` (one extra tells whether more exist).
pub(crate) fn page_fetch(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 1000)) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::tests::lease_row;

    #[tokio::test]
    async fn a_panic_in_database_work_comes_back_as_an_error() {
        let store = Store::connect("sqlite::memory:", PoolOptions::sized(1))
            .await
            .unwrap();

        let result: Result<(), StoreError> = store.run(|_| panic!("boom in a query")).await;

        match result {
            Err(StoreError::TaskPanicked(message)) => assert_eq!(message, "boom in a query"),
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        // The pool and its single permit survive the panic.
        store.ping().await.unwrap();
    }

    /// A store on a fresh SQLite file (a writer lane and a pool, unlike `sqlite::memory:`).
    async fn file_store(pool: PoolOptions) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = Store::connect(&url, pool).await.unwrap();
        (dir, store)
    }

    #[derive(diesel::QueryableByName)]
    struct TempStore {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        temp_store: i32,
    }

    fn temp_store(conn: &mut DbConnection) -> Result<i32, StoreError> {
        use diesel::RunQueryDsl;
        let row: TempStore = diesel::sql_query("PRAGMA temp_store").get_result(conn)?;
        Ok(row.temp_store)
    }

    #[tokio::test]
    async fn the_sqlite_writer_keeps_its_statement_journal_in_memory_and_readers_do_not() {
        let (_dir, store) = file_store(PoolOptions::sized(2)).await;
        // 2 = MEMORY: a batch's savepoints journal pages without a temp file.
        assert_eq!(store.write(LockKey::NewRows, temp_store).await.unwrap(), 2);
        // 0 = the default: a reader's large sort may still spill to disk.
        assert_eq!(store.run(temp_store).await.unwrap(), 0);
    }

    #[derive(diesel::QueryableByName)]
    struct WalAutocheckpoint {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        wal_autocheckpoint: i32,
    }

    fn wal_autocheckpoint(conn: &mut DbConnection) -> Result<i32, StoreError> {
        use diesel::RunQueryDsl;
        let row: WalAutocheckpoint =
            diesel::sql_query("PRAGMA wal_autocheckpoint").get_result(conn)?;
        Ok(row.wal_autocheckpoint)
    }

    /// Writes a lease row under `name` through the writer: a long name makes many WAL frames.
    async fn insert_lease_named(store: &Store, name: String) {
        let written = store.write(LockKey::NewRows, move |conn| lease_row(conn, &name));
        written.await.unwrap();
    }

    #[tokio::test]
    async fn the_sqlite_wal_is_copied_back_by_a_thread_beside_the_writer_not_by_the_writer() {
        let (dir, store) = file_store(PoolOptions::sized(2)).await;
        // The writer checkpoints only as a backstop, far past SQLite's default of 1,000 frames.
        let writer_frames = store.write(LockKey::NewRows, wal_autocheckpoint).await;
        assert_eq!(writer_frames.unwrap(), 8_000);
        assert_eq!(store.run(wal_autocheckpoint).await.unwrap(), 1_000);

        // About a hundred WAL frames: too few for any connection's own automatic checkpoint,
        // so the database file grows only if the background checkpointer copies them back.
        let database = dir.path().join("store.db");
        let before = std::fs::metadata(&database).unwrap().len();
        insert_lease_named(&store, "n".repeat(400_000)).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut after = before;
        while after < before + 400_000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            after = std::fs::metadata(&database).unwrap().len();
        }
        assert!(
            after >= before + 400_000,
            "the database file stayed at {after} bytes (was {before}): nothing checkpointed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sqlite_wal_stays_within_the_writers_backstop_while_writes_keep_coming() {
        let (dir, store) = file_store(PoolOptions::sized(2)).await;
        // 16 callers writing without pause keep the writer busy, so a background checkpoint is
        // always copying while new frames are appended and never completes: the WAL starts
        // again only after the writer's own checkpoint at 8,000 frames (33 MB at 4 KiB pages),
        // which may be put off a few commits while a background pass holds the checkpoint
        // lock. About 160 MB of frames are written; a WAL nobody checkpointed would hold all.
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..16 {
            let store = store.clone();
            writers.spawn(async move {
                for row in 0..240 {
                    let name = format!("{writer}-{row}-{}", "n".repeat(16_000));
                    insert_lease_named(&store, name).await;
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        // Twice the backstop's frames (page and header each).
        let bound = 2 * 8_000 * (4_096 + 24);
        let wal = std::fs::metadata(dir.path().join("store.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal <= bound,
            "the WAL file grew to {wal} bytes (bound {bound})"
        );
        assert!(
            wal > 1_000 * 4_096,
            "the writer checkpointed by SQLite's default: {wal}"
        );
    }

    #[tokio::test]
    async fn the_bundled_sqlite_shares_no_memory_statistics_or_page_cache_behind_a_global_mutex() {
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let (_dir, store) = file_store(PoolOptions::sized(1)).await;
        let options: Vec<CompileOption> = store
            .run(|conn| {
                use diesel::RunQueryDsl;
                Ok(diesel::sql_query("PRAGMA compile_options").load(conn)?)
            })
            .await
            .unwrap();
        let options: Vec<String> = options.into_iter().map(|o| o.compile_options).collect();
        // .cargo/config.toml passes it to libsqlite3-sys; without it every sqlite3_malloc and
        // sqlite3_free of every connection takes one process-wide mutex.
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        // With it every connection's page cache shares one LRU group behind one mutex: the
        // hot reads' page fetches waited on the writer's (.cargo/config.toml undefines it).
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn a_cached_read_with_a_bound_limit_is_not_parsed_again_on_every_call() {
        #[derive(diesel::QueryableByName)]
        struct Reprepared {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            reprep: i32,
            #[diesel(sql_type = diesel::sql_types::Text)]
            sql: String,
        }
        let (_dir, store) = file_store(PoolOptions::sized(1)).await;
        let app = paygate_core::AppName::parse("shop").unwrap();
        let number = paygate_core::OutTradeNo::parse("T-1").unwrap();
        for _ in 0..5 {
            // `.first()` binds `LIMIT ?` each time; one pooled connection runs them all.
            let missing = store.order_by_out_trade_no(&app, &number).await;
            assert!(
                matches!(missing, Err(StoreError::NotFound { .. })),
                "{missing:?}"
            );
        }
        let reprepared: Vec<Reprepared> = store
            .run(|conn| {
                use diesel::RunQueryDsl;
                let counted = diesel::sql_query("SELECT reprep, sql FROM sqlite_stmt");
                Ok(counted.load(conn)?)
            })
            .await
            .unwrap();
        let reprepared: Vec<&Reprepared> = reprepared
            .iter()
            .filter(|r| r.sql.contains("`out_trade_no` = ?)) LIMIT ?"))
            .collect();
        assert_eq!(reprepared.len(), 1, "the read is one cached statement");
        // Without the query planner stability guarantee SQLite re-prepares it on each of the
        // four calls after the first (the bound limit expires the plan).
        assert_eq!(reprepared[0].reprep, 0);
    }

    #[tokio::test]
    async fn a_sqlite_hot_read_runs_on_the_calling_thread_when_a_connection_is_idle() {
        let (_dir, store) = file_store(PoolOptions::sized(2)).await;
        let caller = std::thread::current().id();
        let ran_on = store
            .read(|_| Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(ran_on, caller, "no hand-off to the blocking pool");
    }

    #[tokio::test]
    async fn a_sqlite_hot_read_with_every_connection_taken_waits_on_the_blocking_pool() {
        let (_dir, store) = file_store(PoolOptions::sized(1)).await;
        let caller = std::thread::current().id();
        // The only permit is taken: the read must not spin or fail, but queue and run once
        // the permit comes back, off this thread.
        let held = store.permits.clone().try_acquire_owned().unwrap();
        let reading = tokio::spawn({
            let store = store.clone();
            async move { store.read(|_| Ok(std::thread::current().id())).await }
        });
        tokio::task::yield_now().await;
        assert!(!reading.is_finished());
        drop(held);
        let ran_on = reading.await.unwrap().unwrap();
        assert_ne!(ran_on, caller);
    }

    #[tokio::test]
    async fn a_panic_in_a_read_in_place_comes_back_as_an_error_and_the_pool_goes_on() {
        let (_dir, store) = file_store(PoolOptions::sized(1)).await;
        let result: Result<(), StoreError> = store.read(|_| panic!("boom in a read")).await;
        match result {
            Err(StoreError::TaskPanicked(message)) => assert_eq!(message, "boom in a read"),
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        let answered: i32 = store.read(|_| Ok(7)).await.unwrap();
        assert_eq!(answered, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_write_rolls_back_only_its_batch_and_the_writer_goes_on() {
        use diesel::RunQueryDsl;
        let (_dir, store) = file_store(PoolOptions::sized(2)).await;
        let insert = |name: String| {
            let store = store.clone();
            async move {
                store
                    .write(LockKey::NewRows, move |conn| lease_row(conn, &name))
                    .await
            }
        };

        // Writes queued around a panicking one: each either committed or was told it was not.
        let mut tasks = Vec::new();
        for n in 0..30 {
            tasks.push(tokio::spawn(insert(format!("before_{n}"))));
        }
        let panicking = store.clone();
        let panicked = tokio::spawn(async move {
            panicking
                .write(LockKey::NewRows, |_| -> Result<(), StoreError> {
                    panic!("boom in a write")
                })
                .await
        });
        for n in 0..30 {
            tasks.push(tokio::spawn(insert(format!("after_{n}"))));
        }
        match panicked.await.unwrap() {
            Err(StoreError::TaskPanicked(message)) => assert_eq!(message, "boom in a write"),
            other => panic!("expected TaskPanicked, got {other:?}"),
        }
        let mut committed = 0_i64;
        for task in tasks {
            match task.await.unwrap() {
                Ok(1) => committed += 1,
                Err(StoreError::Unavailable(reason)) => assert!(reason.contains("rolled back")),
                other => panic!("unexpected {other:?}"),
            }
        }

        // The writer still works, and exactly the writes reported committed are stored.
        insert("later".into()).await.unwrap();
        let stored: i64 = store
            .run(|conn| {
                use diesel::QueryDsl;
                use diesel::dsl::count_star;
                crate::schema::leases::table
                    .select(count_star())
                    .first(conn)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(stored, committed + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exhausted_pool_answers_unavailable_after_the_configured_acquire_timeout() {
        let (_dir, store) = file_store(PoolOptions {
            size: 1,
            acquire_timeout: Duration::from_millis(200),
        })
        .await;
        // The pool's only connection, held until the test lets go of it.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (holding, held) = tokio::sync::oneshot::channel::<()>();
        let holder = store.clone();
        let held_work = tokio::spawn(async move {
            holder
                .run(move |_conn| {
                    let _ = holding.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .await
        });
        held.await.unwrap();

        let asked = std::time::Instant::now();
        let second = store.ping().await;
        let waited = asked.elapsed();

        match second {
            Err(StoreError::Unavailable(reason)) => {
                assert!(reason.contains("timed out"), "{reason}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // The default is 10 s: well under half of it tells the setting was used.
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        release.send(()).unwrap();
        held_work.await.unwrap().unwrap();
        store.ping().await.unwrap();
    }

    #[test]
    fn stored_times_keep_microseconds_and_drop_nanoseconds() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let stored = utc(db_time(at));
        assert_eq!(stored.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(stored.timestamp(), 1_700_000_000);
    }
}
