//! The write path: one thread owns one connection and commits the writes of concurrent callers
//! together, in one transaction per batch (group commit).
//!
//! Why: SQLite has one writer. Pooled connections racing for its write lock sleep in the busy
//! handler instead of queueing, and every commit is a WAL append; on PostgreSQL every commit is
//! a WAL flush. Measured in docs/performance.md, per-call transactions were the bound of every
//! write-heavy endpoint. Here callers queue in memory, the writer takes whatever has queued
//! (up to [`MAX_BATCH`]) and runs it in one transaction, so that one caller's error rolls back
//! only its own work: a job either runs in its own savepoint, or (the hot writes: transitions,
//! order inserts, pay params, callbacks, outbox events) is *rerunnable* and shares one
//! checkpoint savepoint with the rerunnable jobs around it; when one of those fails, the batch
//! goes back to the checkpoint and runs the others again, each in its own savepoint. A
//! savepoint is a round trip on PostgreSQL, so the common case saves one per write; and when
//! the rerunnable jobs open the batch, the transaction's own start is their checkpoint (a
//! failure rolls the transaction back and begins it again), so a batch of notifies or creates
//! opens no savepoint at all. Nobody
//! hears of a result before the batch has committed, so an acknowledged write is as durable
//! as before.
//!
//! ## Write-path rules
//!
//! - **A write is routed by the row it locks.** Every write names a [`LockKey`]: the order row
//!   for anything that updates an order (status moves, pay params, query schedules, creating
//!   *and completing* refunds, which lock the order to move its refunded total), the unique
//!   `(app, out_trade_no)` a new order claims, the outbox, an API key or a lease. All writes
//!   with one key go to one lane, so they queue in memory instead of two lanes' batches
//!   waiting on each other's row locks until one commits (a cycle of such waits is a
//!   deadlock). A write that only inserts rows under fresh ids ([`LockKey::NewRows`]) takes
//!   any lane; its foreign-key checks take `KEY SHARE` locks, which no update of a non-key
//!   column waits for. A write that locks rows routed by different keys is split into one
//!   write per key ([`crate::Store::reschedule_queries`]).
//! - **A PostgreSQL batch opens at most [`SAVEPOINT_BUDGET`] savepoints** (plus the nested ones
//!   of its last job). Every savepoint that writes is a subtransaction with its own XID, kept
//!   until the batch commits even after `RELEASE`; PostgreSQL caches 64 of them per backend
//!   (`PGPROC_MAX_CACHED_SUBXIDS`), and past that every snapshot taken anywhere in the cluster
//!   must look subtransactions up in `pg_subtrans`. So the writer counts each job's savepoint and
//!   every savepoint a job nests (a diesel `transaction` inside the job), commits once the budget
//!   is reached and carries the rest of the batch into the next transaction. Jobs avoid nested
//!   savepoints where `INSERT … ON CONFLICT DO NOTHING` says the same thing without an error.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::{
    AnsiTransactionManager, Instrumentation, InstrumentationEvent, SimpleConnection,
    TransactionManager,
};
use diesel::r2d2::R2D2Connection;
use diesel::{Connection, SqliteConnection};
use paygate_core::OrderId;
use tokio::sync::{mpsc, oneshot};

use crate::conn::{Backend, DbConnection, Target};
use crate::{ApiKeyId, StoreError};

/// The most callers' writes one transaction carries; bounds how long a batch holds the lock.
pub(crate) const MAX_BATCH: usize = 64;
/// The savepoints after which a PostgreSQL batch takes no more jobs and commits: half of
/// PostgreSQL's 64 cached subtransactions per backend, so the last job's own nested savepoints
/// still fit with room to spare (see the module docs).
pub(crate) const SAVEPOINT_BUDGET: usize = 32;
/// How many writes may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;
/// WAL frames the SQLite writer lets pile up before it checkpoints on its own thread (SQLite's
/// default is 1,000). The [`Checkpointer`] copies them back long before that; this is the
/// backstop for when it cannot finish while writes keep coming (a passive checkpoint never
/// catches up with frames appended during it, so the WAL would not restart), and the writer's
/// own checkpoint then copies only what the background one has not.
const WRITER_AUTOCHECKPOINT_FRAMES: u32 = 8_000;
/// The least time between two background checkpoints while writes keep coming: each costs two
/// `fsync`s, so they are spaced out, and a commit is on disk within about this long.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// What a finished job tells its caller once the batch's commit is known.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A job's body: given the writer's connection, or the reason there is none to run on (then it
/// answers its caller at once).
type Work = Box<dyn FnOnce(Result<&mut DbConnection, StoreError>) -> Ran + Send>;

/// One caller's work, run by the writer thread on its connection.
struct Job {
    work: JobWork,
    /// Where the job's row lock falls in the order every batch takes its locks in
    /// ([`LockKey::lock_order`]).
    lock_order: u64,
}

/// How a job runs: once in a savepoint of its own, or without one and again if need be.
enum JobWork {
    /// Runs once, in its own savepoint (one more round trip per write on PostgreSQL).
    Once(Work),
    /// Runs without a savepoint of its own; a later failure in the batch rolls it back to the
    /// batch's checkpoint and runs it again (see [`commit_batch`]).
    Rerunnable(Box<dyn RerunnableJob>),
}

/// A write the writer may run more than once: its work is a plain function of the database
/// state it runs on, and only the last run's result, committed, reaches the caller.
trait RerunnableJob: Send {
    /// Runs the work (in its own savepoint when `own_savepoint`), keeping its result.
    fn run(&mut self, conn: &mut DbConnection, own_savepoint: bool) -> RunOutcome;
    /// Answers the caller with the kept result once the batch's commit is known.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

/// What one run of a rerunnable job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunOutcome {
    /// It succeeded.
    Done,
    /// It failed; without a savepoint of its own, the transaction must go back to the
    /// checkpoint (a failed statement aborts a PostgreSQL transaction, and the work may have
    /// written part of what it meant to).
    Failed,
    /// It panicked: the connection's state is unknown.
    Panicked,
}

/// A rerunnable job's work, its last result and its caller.
struct Rerun<T, F> {
    work: F,
    result: Option<Result<T, StoreError>>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> RerunnableJob for Rerun<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, conn: &mut DbConnection, own_savepoint: bool) -> RunOutcome {
        let work = &mut self.work;
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if own_savepoint {
                in_savepoint(conn, work)
            } else {
                work(conn)
            }
        }));
        let (result, outcome) = match ran {
            Ok(Ok(value)) => (Ok(value), RunOutcome::Done),
            Ok(Err(error)) => (Err(error), RunOutcome::Failed),
            Err(payload) => (
                Err(StoreError::TaskPanicked(crate::panic_message(
                    payload.as_ref(),
                ))),
                RunOutcome::Panicked,
            ),
        };
        self.result = Some(result);
        outcome
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(StoreError::Unavailable("the write never ran".into())));
        // A caller that gave up (dropped its future) needs no answer.
        let _ = self.answer.send(committed.and(result));
    }
}

/// A job after running: its reply, and whether it panicked (which leaves the connection's
/// transaction state unknown, so the batch is rolled back and the connection replaced).
struct Ran {
    reply: Reply,
    panicked: bool,
}

/// The savepoint each job runs in. Reused: a rollback goes to the most recent one of that name.
const JOB_SAVEPOINT: &str = "paygate_job";

/// Runs one job in its own savepoint; on error the job's work is rolled back and the batch
/// goes on. On PostgreSQL a successful job's savepoint is left open rather than released: it
/// ends with the batch's commit anyway, and a `RELEASE` is one more round trip per write (this
/// and `UPDATE … RETURNING` together: +12 % notifies/s measured). SQLite releases it: the call is in-process, and every savepoint
/// left open makes SQLite journal each page a later job touches once more (−25 % measured).
fn in_savepoint<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.batch_execute(&format!("SAVEPOINT {JOB_SAVEPOINT}"))?;
    let result = work(conn);
    match (&result, &*conn) {
        (Err(_), _) => conn.batch_execute(&format!("ROLLBACK TO SAVEPOINT {JOB_SAVEPOINT}"))?,
        (Ok(_), DbConnection::Sqlite(_)) => {
            conn.batch_execute(&format!("RELEASE SAVEPOINT {JOB_SAVEPOINT}"))?;
        }
        (Ok(_), DbConnection::Pg(_)) => {}
    }
    result
}

/// Writer threads on PostgreSQL. One connection's statements run one after another, each a
/// round trip; several lanes let the server work on more than one batch at a time. SQLite
/// has one writer, so it gets one lane.
const POSTGRES_LANES: usize = 4;

/// The row (or unique key) a write locks, which picks its writer lane: writes with equal keys
/// always take the same lane (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// The write only inserts rows under ids generated for them, locking nothing another
    /// write waits for; it takes the lanes in turn.
    NewRows,
    /// The order's row: anything that updates it, refunds created and completed included.
    Order(OrderId),
    /// The `(app, out_trade_no)` a new order claims in the unique index: a second insert of the
    /// same pair waits for the first one's transaction.
    OrderNumber {
        /// The merchant app.
        app: String,
        /// The merchant's order number.
        out_trade_no: String,
    },
    /// The outbox's delivery state. Claims, renewals and releases update many events at once,
    /// so every write that updates existing events takes this one lane.
    Outbox,
    /// One API key's row.
    ApiKey(ApiKeyId),
    /// One lease's row (and its name in the primary key, for the insert that claims it).
    Lease(String),
    /// One app's bill day at one provider: its stored files and its reconciliation run with
    /// the run's differences (a rerun replaces them in one transaction).
    BillDay(String),
    /// One reconciliation difference's row (finance setting its resolution).
    Difference(String),
}

impl LockKey {
    /// The position of this key's row lock in the one order every batch of every process takes
    /// its locks in. A batch runs its jobs sorted by it (jobs of one key keep their queue
    /// order), so two replicas' batches that lock the same rows lock them in the same order
    /// and cannot wait on each other in a cycle: PostgreSQL would break such a deadlock only
    /// after `deadlock_timeout` (1 s), failing one of the writes. Writes that lock nothing
    /// come last. FNV-1a over the key's hash input, so the order is the same in every process
    /// and every build (std's hasher is only fixed per build). It also picks the key's lane.
    pub fn lock_order(&self) -> u64 {
        match self {
            LockKey::NewRows => NO_ROW_LOCK,
            key => {
                let mut hasher = fnv::FnvHasher::default();
                key.hash(&mut hasher);
                hasher.finish().min(NO_ROW_LOCK - 1)
            }
        }
    }
}

/// The lock order of writes that lock no row ([`LockKey::NewRows`]): last in every batch.
const NO_ROW_LOCK: u64 = u64::MAX;

/// The writer lanes of one store. A write names the row it will lock ([`LockKey`]), and all
/// writes naming the same row take the same lane: they queue in memory instead of two
/// batches waiting on each other's row locks, which could deadlock.
#[derive(Clone)]
pub(crate) struct Lanes {
    lanes: Arc<[Writer]>,
    next: Arc<AtomicUsize>,
    /// The lanes' threads, joined by [`Lanes::close`] so that no thread is still closing a
    /// connection while the process exits (libpq's TLS teardown racing OpenSSL's exit-time
    /// cleanup crashed short CLI runs on PostgreSQL).
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Lanes {
    /// Starts the lanes for the target's backend; a caller waits at most `queue_timeout` for
    /// room in a lane's queue.
    pub(crate) fn start(target: &Target, queue_timeout: Duration) -> Result<Lanes, StoreError> {
        let count = match target.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_LANES,
        };
        let mut lanes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for _ in 0..count {
            let (writer, thread) = Writer::start(target.clone(), queue_timeout)?;
            lanes.push(writer);
            threads.push(thread);
        }
        Ok(Lanes {
            lanes: lanes.into(),
            next: Arc::new(AtomicUsize::new(0)),
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// Stops the lanes and waits for their threads to close their connections, when this is
    /// the last handle (other clones still write, so then it only lets go of this one). Writes
    /// already queued are committed first.
    pub(crate) fn close(self) {
        let Lanes { lanes, threads, .. } = self;
        if Arc::strong_count(&lanes) > 1 {
            return;
        }
        // Dropping the last senders ends each thread's queue; it drains it and returns.
        drop(lanes);
        let threads = match threads.lock() {
            Ok(mut threads) => std::mem::take(&mut *threads),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for thread in threads {
            // A writer thread catches its jobs' panics; a panic here has nothing left to undo.
            let _ = thread.join();
        }
    }

    /// The lane for writes that lock the row `key` names, or the next lane in turn for writes
    /// that only insert new rows.
    #[cfg(test)]
    pub(crate) fn lane(&self, key: &LockKey) -> &Writer {
        self.lane_of(key.lock_order())
    }

    /// The lane for a write whose key has `lock_order` ([`LockKey::lock_order`]), so a caller
    /// that has the order already does not hash its key twice.
    pub(crate) fn lane_of(&self, lock_order: u64) -> &Writer {
        &self.lanes[self.lane_index_of(lock_order)]
    }

    /// The index of [`Lanes::lane`]'s answer.
    #[cfg(test)]
    fn lane_index(&self, key: &LockKey) -> usize {
        self.lane_index_of(key.lock_order())
    }

    /// A keyed write's lane follows from its lock order; writes that lock no row take the
    /// lanes in turn.
    fn lane_index_of(&self, lock_order: u64) -> usize {
        let index = if lock_order == NO_ROW_LOCK {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            lock_order as usize
        };
        index % self.lanes.len()
    }
}

/// One lane: the handle callers enqueue writes on. Its thread ends when the last handle is
/// dropped.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// How long a caller waits for room in the queue ([`crate::PoolOptions::acquire_timeout`]).
    queue_timeout: Duration,
}

impl Writer {
    /// Starts the writer thread; it connects lazily and reconnects after a broken connection.
    fn start(
        target: Target,
        queue_timeout: Duration,
    ) -> Result<(Writer, JoinHandle<()>), StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("paygate-store-writer".into())
            .spawn(move || serve(&target, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok((
            Writer {
                jobs,
                queue_timeout,
            },
            thread,
        ))
    }

    /// Runs `work` in its own savepoint inside the writer's next transaction and returns its
    /// result once that transaction has committed.
    pub(crate) async fn write<T, F>(&self, lock_order: u64, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answered) = job(lock_order, work);
        self.submit(job, answered).await
    }

    /// Like [`Writer::write`] for work that may run more than once (it only reads and writes
    /// the database, and its result follows from the state it runs on): it takes no savepoint
    /// of its own, one round trip less per write on PostgreSQL.
    pub(crate) async fn write_rerunnable<T, F>(
        &self,
        lock_order: u64,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answered) = rerunnable_job(lock_order, work);
        self.submit(job, answered).await
    }

    /// Queues a job and waits for its answer.
    async fn submit<T>(
        &self,
        job: Job,
        answered: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.queue_timeout, self.jobs.send(job))
            .await
            .map_err(|_| StoreError::Unavailable("timed out waiting for the writer".into()))?
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }
}

/// Wraps a caller's work as a job, and the receiver its answer arrives on.
fn job<T, F>(lock_order: u64, work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
{
    let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
    let job = Job {
        lock_order,
        work: JobWork::Once(Box::new(move |connection| {
            let conn = match connection {
                Ok(conn) => conn,
                Err(error) => {
                    let _ = answer.send(Err(error));
                    return Ran {
                        reply: Box::new(|_| {}),
                        panicked: false,
                    };
                }
            };
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| in_savepoint(conn, work)));
            match ran {
                Ok(result) => Ran {
                    reply: Box::new(move |committed| {
                        // A caller that gave up (dropped its future) needs no answer.
                        let _ = answer.send(committed.and(result));
                    }),
                    panicked: false,
                },
                Err(payload) => {
                    let message = crate::panic_message(payload.as_ref());
                    Ran {
                        reply: Box::new(move |_| {
                            let _ = answer.send(Err(StoreError::TaskPanicked(message)));
                        }),
                        panicked: true,
                    }
                }
            }
        })),
    };
    (job, answered)
}

/// Wraps work the writer may run more than once as a job, and the receiver of its answer.
fn rerunnable_job<T, F>(lock_order: u64, work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnMut(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
{
    let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
    let job = Job {
        lock_order,
        work: JobWork::Rerunnable(Box::new(Rerun {
            work,
            result: None,
            answer,
        })),
    };
    (job, answered)
}

/// The writer thread: take what has queued, commit it as one batch, repeat until every handle
/// is gone.
fn serve(target: &Target, mut queue: mpsc::Receiver<Job>) {
    // Declared first so it is dropped last: when the writer goes, the checkpointer stops and
    // closes its connection first, and the writer's own close is the file's last (it copies
    // what is left of the WAL and removes it), as it was before the checkpointer existed.
    let mut connection: Option<DbConnection> = None;
    let checkpointer = Checkpointer::start(target);
    let nested = NestedSavepoints::default();
    // Jobs that were queued behind a panicking job and have not run yet go first next time.
    let mut carried: VecDeque<Job> = VecDeque::new();
    loop {
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        if carried.is_empty() {
            match queue.blocking_recv() {
                Some(job) => batch.push(job),
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match carried.pop_front() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut conn =
            match open_transaction(target, connection.take(), &nested, checkpointer.is_some()) {
                Ok(conn) => conn,
                Err(reason) => {
                    for job in batch {
                        refuse(job, &reason);
                    }
                    continue;
                }
            };
        let keep = commit_batch(&mut conn, batch, &mut carried, &nested);
        if keep && let Some(checkpointer) = &checkpointer {
            checkpointer.committed();
        }
        if keep && !conn.is_broken() {
            connection = Some(conn);
        }
    }
}

/// A connection with the batch's transaction begun. A kept PostgreSQL connection that cannot
/// begin (the server restarted, or ended it while the lane was idle) is replaced once before
/// the batch is refused: no job has run yet, so nothing is lost by trying again, and a lane
/// does not answer its first batch after an outage with an error. A SQLite connection cannot
/// be ended from outside; its `BEGIN IMMEDIATE` fails only after the busy timeout, and a second
/// connection would wait that long again.
fn open_transaction(
    target: &Target,
    kept: Option<DbConnection>,
    nested: &NestedSavepoints,
    background_checkpoints: bool,
) -> Result<DbConnection, String> {
    if let Some(mut conn) = kept {
        match begin(&mut conn) {
            Ok(()) => return Ok(conn),
            Err(error) if matches!(conn, DbConnection::Sqlite(_)) => {
                return Err(StoreError::from(error).to_string());
            }
            Err(_) => {}
        }
    }
    let mut conn = target.establish().map_err(|e| e.to_string())?;
    if let DbConnection::Sqlite(sqlite) = &mut conn {
        // A savepoint (a job's own, or a checkpoint after a job that ran in one) copies every
        // page the batch touches after it into SQLite's statement journal, which spills to a
        // temporary file past 64 KiB: a file write per page on the serial writer thread. Kept
        // in memory it costs a batch's worth of pages; readers keep the default for their
        // large sorts. (A batch that opens with rerunnable writes takes no savepoint at all.)
        sqlite
            .batch_execute("PRAGMA temp_store = MEMORY")
            .map_err(|e| StoreError::from(e).to_string())?;
        if background_checkpoints {
            sqlite
                .batch_execute(&format!(
                    "PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_FRAMES}"
                ))
                .map_err(|e| StoreError::from(e).to_string())?;
        }
    }
    conn.set_instrumentation(WriterInstrumentation {
        nested: nested.clone(),
        statements: target.statements.clone(),
    });
    begin(&mut conn).map_err(|e| StoreError::from(e).to_string())?;
    Ok(conn)
}

/// Counts the savepoints jobs nest inside their own (a diesel `transaction` within a job),
/// for the batch's [`SAVEPOINT_BUDGET`]. Installed on each writer connection; the writer
/// thread reads and resets it after every job.
#[derive(Clone, Default)]
struct NestedSavepoints(Arc<AtomicUsize>);

impl NestedSavepoints {
    /// The savepoints nested since the last call, and a fresh count.
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// A writer connection's instrumentation: the nested-savepoint count, and the store's
/// statement log.
struct WriterInstrumentation {
    nested: NestedSavepoints,
    statements: crate::conn::StatementLog,
}

impl Instrumentation for WriterInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if matches!(
            event,
            InstrumentationEvent::StartQuery { .. } | InstrumentationEvent::CacheQuery { .. }
        ) {
            self.statements.on_connection_event(event);
        } else {
            self.nested.on_connection_event(event);
        }
    }
}

impl Instrumentation for NestedSavepoints {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        // Depth 1 is the batch's own `BEGIN`; each job's savepoint is raw SQL diesel does not
        // see, so every deeper level diesel opens is a savepoint nested in a job.
        if let InstrumentationEvent::BeginTransaction { depth, .. } = event
            && depth.get() > 1
        {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The savepoint rerunnable jobs go back to when one of them fails (see [`commit_batch`]).
const CHECKPOINT_SAVEPOINT: &str = "paygate_checkpoint";

/// Where a batch's rerunnable jobs go back to when one of them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkpoint {
    /// None yet, or a job ran in its own savepoint after it: the next rerunnable job needs one.
    Stale,
    /// The transaction's start: nothing ran before the rerunnable jobs since it.
    AtBegin,
    /// [`CHECKPOINT_SAVEPOINT`], taken after jobs that must not run again.
    Savepoint,
}

/// A job that has run in the batch and waits for the commit to be answered.
enum Finished {
    /// A job that ran once in its own savepoint.
    Once(Reply),
    /// A rerunnable job, with its last run's result.
    Rerunnable(Box<dyn RerunnableJob>),
}

impl Finished {
    fn answer(self, committed: Result<(), StoreError>) {
        match self {
            Finished::Once(reply) => reply(committed),
            Finished::Rerunnable(job) => job.answer(committed),
        }
    }
}

/// Runs one batch in the transaction `conn` has open. On PostgreSQL it stops taking jobs once
/// they have opened [`SAVEPOINT_BUDGET`] savepoints, and the jobs left over go first into the
/// next batch. Returns whether the connection is still fit to use.
///
/// Rerunnable jobs take no savepoint each. A run of them shares one checkpoint savepoint,
/// taken before the first of them (and again after any job that ran in its own savepoint).
/// When one fails, the transaction goes back to the checkpoint, the ones that had succeeded
/// since run again, each in a savepoint of its own, and so does every rerunnable job after it
/// in this batch: a failure costs one re-run at most, however many jobs fail.
fn commit_batch(
    conn: &mut DbConnection,
    batch: Vec<Job>,
    carried: &mut VecDeque<Job>,
    nested: &NestedSavepoints,
) -> bool {
    let budget = match conn {
        DbConnection::Pg(_) => SAVEPOINT_BUDGET,
        DbConnection::Sqlite(_) => usize::MAX,
    };
    let mut savepoints = 0;
    let mut finished: Vec<Finished> = Vec::with_capacity(batch.len());
    // Indices in `finished` of the rerunnable jobs that ran since the checkpoint.
    let mut since_checkpoint: Vec<usize> = Vec::new();
    let mut checkpoint = Checkpoint::Stale;
    // After a failure, rerunnable jobs run in their own savepoints for the rest of the batch.
    let mut own_savepoints = false;
    let mut batch = batch;
    // Stable: the jobs of one key keep the order they queued in.
    batch.sort_by_key(|job| job.lock_order);
    let mut jobs = batch.into_iter();
    nested.take();
    while let Some(job) = jobs.next() {
        match job.work {
            JobWork::Once(work) => {
                let ran = work(Ok(conn));
                savepoints += 1 + nested.take();
                if ran.panicked {
                    abort_batch(conn, finished, Some(ran.reply), jobs, carried);
                    return false;
                }
                finished.push(Finished::Once(ran.reply));
                checkpoint = Checkpoint::Stale;
            }
            JobWork::Rerunnable(mut rerunnable) => {
                if own_savepoints {
                    let outcome = rerunnable.run(conn, true);
                    savepoints += 1 + nested.take();
                    if outcome == RunOutcome::Panicked {
                        rerunnable.answer(Ok(()));
                        abort_batch(conn, finished, None, jobs, carried);
                        return false;
                    }
                    finished.push(Finished::Rerunnable(rerunnable));
                } else {
                    if checkpoint == Checkpoint::Stale {
                        // Nothing has run in this transaction yet, so going back to its start
                        // loses nothing: no savepoint, no round trip, no subtransaction (on
                        // PostgreSQL) and no statement journal (on SQLite) in the common case.
                        checkpoint = if finished.is_empty() {
                            Checkpoint::AtBegin
                        } else if conn
                            .batch_execute(&format!("SAVEPOINT {CHECKPOINT_SAVEPOINT}"))
                            .is_ok()
                        {
                            savepoints += 1;
                            Checkpoint::Savepoint
                        } else {
                            finished.push(Finished::Rerunnable(rerunnable));
                            abort_batch(conn, finished, None, jobs, carried);
                            return false;
                        };
                        since_checkpoint.clear();
                    }
                    let outcome = rerunnable.run(conn, false);
                    savepoints += nested.take();
                    match outcome {
                        RunOutcome::Panicked => {
                            // Its answer is its panic; everyone else hears of the rollback.
                            rerunnable.answer(Ok(()));
                            abort_batch(conn, finished, None, jobs, carried);
                            return false;
                        }
                        RunOutcome::Done => {
                            since_checkpoint.push(finished.len());
                            finished.push(Finished::Rerunnable(rerunnable));
                        }
                        RunOutcome::Failed => {
                            finished.push(Finished::Rerunnable(rerunnable));
                            own_savepoints = true;
                            let rerun = rerun_since_checkpoint(
                                conn,
                                &mut finished,
                                &since_checkpoint,
                                nested,
                                checkpoint,
                            );
                            match rerun {
                                Some(opened) => savepoints += opened,
                                None => {
                                    abort_batch(conn, finished, None, jobs, carried);
                                    return false;
                                }
                            }
                            since_checkpoint.clear();
                        }
                    }
                }
            }
        }
        if savepoints >= budget {
            break;
        }
    }
    carry_first(carried, jobs);
    #[cfg(test)]
    tests::observe_batch(conn, finished.len(), savepoints);
    let committed = <DbConnection as Connection>::TransactionManager::commit_transaction(conn);
    match committed {
        Ok(()) => {
            for job in finished {
                job.answer(Ok(()));
            }
            true
        }
        Err(error) => {
            let reason = StoreError::from(error).to_string();
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            for job in finished {
                job.answer(Err(StoreError::Unavailable(format!(
                    "the write was not committed: {reason}"
                ))));
            }
            false
        }
    }
}

/// After a rerunnable job failed: takes the transaction back to the checkpoint (when that is
/// the transaction's start: rolls it back and begins a new one) and runs the rerunnable jobs
/// that had succeeded since it again, each in its own savepoint. The savepoints opened, or
/// `None` when the connection cannot go on (the rollback failed or a job panicked).
fn rerun_since_checkpoint(
    conn: &mut DbConnection,
    finished: &mut [Finished],
    since_checkpoint: &[usize],
    nested: &NestedSavepoints,
    checkpoint: Checkpoint,
) -> Option<usize> {
    if checkpoint == Checkpoint::AtBegin {
        <DbConnection as Connection>::TransactionManager::rollback_transaction(conn).ok()?;
        begin(conn).ok()?;
    } else {
        conn.batch_execute(&format!("ROLLBACK TO SAVEPOINT {CHECKPOINT_SAVEPOINT}"))
            .ok()?;
    }
    let mut opened = 0;
    for &index in since_checkpoint {
        if let Some(Finished::Rerunnable(job)) = finished.get_mut(index) {
            let outcome = job.run(conn, true);
            opened += 1 + nested.take();
            if outcome == RunOutcome::Panicked {
                return None;
            }
        }
    }
    Some(opened)
}

/// Throws the batch away after a job panicked or the connection failed mid-batch: rolls back,
/// answers the panicking job (whose own reply carries why), tells every other job that ran
/// that it was rolled back, and carries the jobs that have not run into the next batch.
fn abort_batch(
    conn: &mut DbConnection,
    finished: Vec<Finished>,
    panicked: Option<Reply>,
    jobs: std::vec::IntoIter<Job>,
    carried: &mut VecDeque<Job>,
) {
    let _ = conn.batch_execute("ROLLBACK");
    if let Some(reply) = panicked {
        reply(Ok(()));
    }
    for job in finished {
        job.answer(Err(StoreError::Unavailable(
            "rolled back: another write in the same transaction panicked or lost its connection"
                .into(),
        )));
    }
    carry_first(carried, jobs);
}

/// Puts jobs a batch did not run back in front of the carried ones, in their order: they were
/// queued before anything still waiting.
fn carry_first(carried: &mut VecDeque<Job>, jobs: std::vec::IntoIter<Job>) {
    for job in jobs.rev() {
        carried.push_front(job);
    }
}

/// Copies a SQLite WAL back into the database file on a thread of its own, after commits.
///
/// Why: SQLite checkpoints on the connection that commits, so with its default the writer
/// thread (the serial part of every write) stopped every 1,000 WAL frames to read them back,
/// write them into the database file and `fsync` both files: a tenth of its time in a notify
/// run's profile (docs/performance.md §5). A passive checkpoint on another connection runs
/// beside the writer and never blocks it.
struct Checkpointer {
    /// Tells the thread a batch committed; dropped to stop it.
    commits: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread for a SQLite file; `None` for PostgreSQL and in-memory databases (no
    /// WAL), or when no thread can be started (the writer then keeps SQLite's own checkpoints).
    fn start(target: &Target) -> Option<Checkpointer> {
        target.sqlite_file()?;
        let (commits, committed) = std::sync::mpsc::sync_channel(1);
        let target = target.clone();
        let thread = std::thread::Builder::new()
            .name("paygate-store-checkpoint".into())
            .spawn(move || checkpoint_after_commits(&target, &committed, CHECKPOINT_INTERVAL))
            .ok()?;
        Some(Checkpointer {
            commits: Some(commits),
            thread: Some(thread),
        })
    }

    /// A batch committed: the thread checkpoints once its interval has passed. Never waits.
    fn committed(&self) {
        if let Some(commits) = &self.commits {
            let _ = commits.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and waits for it: closing its connection may itself checkpoint.
    fn drop(&mut self) {
        drop(self.commits.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The checkpointer thread: passive checkpoints after commits, at most one round per
/// [`CHECKPOINT_INTERVAL`], until the writer goes away. A checkpoint that fails (the file is
/// busy or gone) is left to the next round and to the writer's backstop.
///
/// It waits out the interval on the channel rather than asleep, so it stops the moment the
/// writer goes: a store closing (or a process exiting) never waits on it, and it never opens
/// or closes a connection after its store has gone.
fn checkpoint_after_commits(
    target: &Target,
    committed: &std::sync::mpsc::Receiver<()>,
    interval: Duration,
) {
    let mut connection: Option<DbConnection> = None;
    let mut due = committed.recv().is_ok();
    while due {
        if connection.is_none() {
            connection = target.establish_unlogged().ok();
        }
        if let Some(conn) = connection.as_mut()
            && catch_up_with_the_wal(conn).is_err()
        {
            connection = None;
        }
        due = match wait_out(committed, interval) {
            Some(true) => true,
            Some(false) => committed.recv().is_ok(),
            None => false,
        };
    }
}

/// Waits `interval` on the commit channel: whether a batch committed meanwhile, or `None` as
/// soon as the writer has gone.
fn wait_out(committed: &std::sync::mpsc::Receiver<()>, interval: Duration) -> Option<bool> {
    use std::sync::mpsc::RecvTimeoutError;
    let next_round = std::time::Instant::now() + interval;
    let mut committed_since = false;
    while let Some(left) = next_round.checked_duration_since(std::time::Instant::now()) {
        match committed.recv_timeout(left) {
            Ok(()) => committed_since = true,
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
    Some(committed_since)
}

/// Passes of a checkpoint round after the first, each copying what was appended during the one
/// before.
const CHECKPOINT_CATCH_UP_PASSES: usize = 8;

/// What `PRAGMA wal_checkpoint` answers.
#[derive(diesel::QueryableByName)]
struct CheckpointOutcome {
    /// Frames in the WAL.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    /// Frames of it now in the database file.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

/// One checkpoint round: passive checkpoints until one has copied the whole WAL (or a few
/// passes went by). Only a complete one lets the writer start the WAL again from its beginning
/// at its next commit, and only a complete one `fsync`s the database file, here rather than in
/// the writer's backstop. Under constant writes a single pass never completes: the writer
/// appends frames while it copies. The passes after the first copy only those, so they are
/// short and one soon finishes between two commits.
fn catch_up_with_the_wal(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    use diesel::RunQueryDsl;
    for _ in 0..=CHECKPOINT_CATCH_UP_PASSES {
        let outcome: CheckpointOutcome =
            diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)?;
        if outcome.checkpointed >= outcome.log {
            break;
        }
    }
    Ok(())
}

/// Opens the batch's transaction. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`), so a job that reads before it writes can never fail to upgrade when another
/// process wrote in between.
fn begin(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql::<
            SqliteConnection,
        >(sqlite, "BEGIN IMMEDIATE"),
        DbConnection::Pg(_) => {
            <DbConnection as Connection>::TransactionManager::begin_transaction(conn)
        }
    }
}

/// Answers a job that could not run at all with why.
fn refuse(job: Job, reason: &str) {
    let error = StoreError::Unavailable(reason.to_owned());
    match job.work {
        JobWork::Once(work) => {
            work(Err(error));
        }
        JobWork::Rerunnable(job) => job.answer(Err(error)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn index_of(lanes: &Lanes, lane: &Writer) -> usize {
        lanes
            .lanes
            .iter()
            .position(|l| std::ptr::eq(l, lane))
            .unwrap()
    }

    /// A job that inserts a lease named `name`, and the receiver of its answer.
    fn insert_lease(name: &'static str) -> (Job, oneshot::Receiver<Result<usize, StoreError>>) {
        job(0, move |conn| lease_row(conn, name))
    }

    /// Inserts a lease named `name`: the row the test jobs write.
    pub(crate) fn lease_row(conn: &mut DbConnection, name: &str) -> Result<usize, StoreError> {
        use diesel::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, 'h', '2026-01-01 00:00:00')",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .execute(conn)
        .map_err(StoreError::from)
    }

    /// A rerunnable job that inserts a lease named `name`, and then fails if `fail` is set
    /// (having written), with the receiver of its answer and a count of its runs.
    fn rerunnable_lease(
        name: &'static str,
        fail: bool,
    ) -> (
        Job,
        oneshot::Receiver<Result<usize, StoreError>>,
        Arc<AtomicUsize>,
    ) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let (job, answer) = rerunnable_job(0, move |conn| {
            counted.fetch_add(1, Ordering::SeqCst);
            let inserted = lease_row(conn, name)?;
            if fail {
                return Err(StoreError::Unavailable(format!(
                    "{name} fails after writing"
                )));
            }
            Ok(inserted)
        });
        (job, answer, runs)
    }

    #[test]
    fn the_checkpointer_stops_when_its_writer_goes_without_waiting_out_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::parse(dir.path().join("c.db").to_str().unwrap()).unwrap();
        crate::conn::run_migrations(&mut target.establish().unwrap()).unwrap();
        let (commits, committed) = std::sync::mpsc::sync_channel(1);
        let (stopped, has_stopped) = std::sync::mpsc::channel::<()>();
        // An interval no test run waits out: a checkpointer that slept through it would still
        // hold its connection (and its thread) long after its store was gone, as at exit.
        let interval = Duration::from_secs(600);
        let thread = std::thread::spawn(move || {
            checkpoint_after_commits(&target, &committed, interval);
            let _ = stopped.send(());
        });
        commits.send(()).unwrap();
        drop(commits);
        has_stopped
            .recv_timeout(Duration::from_secs(30))
            .expect("the checkpointer stopped once its writer went");
        thread.join().unwrap();
    }

    /// A test job of one batch: what it writes (a lease of its name) and how it runs.
    #[derive(Clone, Copy)]
    enum TestJob {
        /// A rerunnable job that succeeds.
        Rerunnable(&'static str),
        /// A rerunnable job that fails after writing.
        Failing(&'static str),
        /// A job that runs once in its own savepoint.
        Once(&'static str),
    }

    /// What one batch of [`TestJob`]s did: each job's answer and runs, by name, and the leases
    /// committed.
    struct BatchRun {
        kept: bool,
        answers: std::collections::HashMap<&'static str, Result<usize, StoreError>>,
        runs: std::collections::HashMap<&'static str, usize>,
        leases: Vec<String>,
    }

    /// Runs `jobs` as one batch on a fresh SQLite file.
    fn run_one_batch(jobs: &[TestJob]) -> BatchRun {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::parse(dir.path().join("w.db").to_str().unwrap()).unwrap();
        crate::conn::run_migrations(&mut target.establish().unwrap()).unwrap();
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        let mut counters = Vec::new();
        for job in jobs {
            let (name, (queued, answer)) = match *job {
                TestJob::Rerunnable(name) | TestJob::Failing(name) => {
                    let failing = matches!(job, TestJob::Failing(_));
                    let (queued, answer, runs) = rerunnable_lease(name, failing);
                    counters.push((name, runs));
                    (name, (queued, answer))
                }
                TestJob::Once(name) => (name, insert_lease(name)),
            };
            batch.push(queued);
            answers.push((name, answer));
        }

        let mut carried = VecDeque::new();
        let nested = NestedSavepoints::default();
        let mut conn = open_transaction(&target, None, &nested, false).unwrap();
        let kept = commit_batch(&mut conn, batch, &mut carried, &nested);
        assert!(carried.is_empty(), "every job of the batch ran");

        let mut leases: Vec<String> = {
            use diesel::{QueryDsl, RunQueryDsl};
            crate::schema::leases::table
                .select(crate::schema::leases::name)
                .load(&mut target.establish().unwrap())
                .unwrap()
        };
        leases.sort();
        BatchRun {
            kept,
            answers: answers
                .into_iter()
                .map(|(name, answer)| (name, answer.blocking_recv().unwrap()))
                .collect(),
            runs: counters
                .into_iter()
                .map(|(name, runs)| (name, runs.load(Ordering::SeqCst)))
                .collect(),
            leases,
        }
    }

    impl BatchRun {
        /// Asserts that the connection went on, every job but `failed` answered and committed
        /// its one row and `failed` answered its own error and left nothing, and how often each
        /// rerunnable job ran.
        fn assert_all_committed_but(&self, failed: &str, runs: &[(&str, usize)]) {
            assert!(self.kept, "the connection goes on after a failed job");
            for (name, answer) in &self.answers {
                match answer {
                    Err(StoreError::Unavailable(reason)) if *name == failed => {
                        assert!(reason.contains("fails after writing"), "{reason}");
                    }
                    Ok(1) if *name != failed => {}
                    other => panic!("{name} answered {other:?}"),
                }
            }
            for (name, expected) in runs {
                assert_eq!(self.runs[name], *expected, "runs of {name}");
            }
            let mut committed: Vec<&str> = self
                .answers
                .keys()
                .copied()
                .filter(|name| *name != failed)
                .collect();
            committed.sort_unstable();
            assert_eq!(
                self.leases, committed,
                "nothing of {failed}, everything else once"
            );
        }
    }

    #[test]
    fn a_failing_rerunnable_job_leaves_nothing_and_the_others_of_its_batch_commit() {
        use TestJob::*;
        let run = run_one_batch(&[
            Rerunnable("first"),
            Once("once"),
            Rerunnable("second"),
            Failing("failing"),
            Rerunnable("after"),
        ]);

        // The job before the savepointed one was behind an older checkpoint and kept its run;
        // the one since the checkpoint ran again; the failing one and the one after ran once.
        run.assert_all_committed_but(
            "failing",
            &[("first", 1), ("second", 2), ("failing", 1), ("after", 1)],
        );
    }

    #[test]
    fn a_failure_among_the_jobs_that_open_a_batch_rolls_back_to_its_start_and_reruns_them() {
        use TestJob::*;
        let run = run_one_batch(&[
            Rerunnable("first"),
            Rerunnable("second"),
            Failing("failing"),
            Rerunnable("after"),
            Once("once"),
        ]);

        // The two before the failure were rolled back with the transaction and ran again.
        run.assert_all_committed_but(
            "failing",
            &[("first", 2), ("second", 2), ("failing", 1), ("after", 1)],
        );
    }

    #[test]
    fn a_panic_rolls_its_batch_back_and_the_jobs_behind_it_run_in_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let target = Target::parse(path.to_str().unwrap()).unwrap();
        crate::conn::run_migrations(&mut target.establish().unwrap()).unwrap();
        let (before, before_answer) = insert_lease("before");
        let (panicking, panic_answer) = job(0, |_| -> Result<(), StoreError> {
            panic!("boom in a write")
        });
        let (after, after_answer) = insert_lease("after");

        let mut carried = VecDeque::new();
        let nested = NestedSavepoints::default();
        let mut conn = open_transaction(&target, None, &nested, false).unwrap();
        let keep = commit_batch(
            &mut conn,
            vec![before, panicking, after],
            &mut carried,
            &nested,
        );

        assert!(!keep, "a panicked connection is replaced");
        assert!(matches!(
            before_answer.blocking_recv().unwrap(),
            Err(StoreError::Unavailable(reason)) if reason.contains("rolled back")
        ));
        assert!(matches!(
            panic_answer.blocking_recv().unwrap(),
            Err(StoreError::TaskPanicked(message)) if message == "boom in a write"
        ));
        assert_eq!(carried.len(), 1, "the job behind the panic has not run yet");

        let mut conn = open_transaction(&target, None, &nested, false).unwrap();
        assert!(commit_batch(
            &mut conn,
            carried.drain(..).collect(),
            &mut carried,
            &nested
        ));
        assert_eq!(after_answer.blocking_recv().unwrap().unwrap(), 1);
        let names: Vec<String> = {
            use diesel::{QueryDsl, RunQueryDsl};
            crate::schema::leases::table
                .select(crate::schema::leases::name)
                .load(&mut conn)
                .unwrap()
        };
        assert_eq!(
            names,
            vec!["after".to_owned()],
            "the rolled-back write left nothing"
        );
    }

    #[test]
    fn a_batch_takes_its_row_locks_in_one_global_order_keeping_queue_order_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::parse(dir.path().join("w.db").to_str().unwrap()).unwrap();
        crate::conn::run_migrations(&mut target.establish().unwrap()).unwrap();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let ids: Vec<OrderId> = (0..4).map(|_| OrderId::generate()).collect();
        let order = |n: usize| LockKey::Order(ids[n].clone());
        // Queued as replica A might see them: row 2, row 1, an insert, row 2 again, row 3.
        let queued = [order(2), order(1), LockKey::NewRows, order(2), order(3)];
        let mut answers = Vec::new();
        let batch = queued
            .iter()
            .enumerate()
            .map(|(position, key)| {
                let ran = ran.clone();
                let (job, answer) = job(key.lock_order(), move |_| {
                    ran.lock().unwrap().push(position);
                    Ok(())
                });
                answers.push(answer);
                job
            })
            .collect();
        let nested = NestedSavepoints::default();
        let mut conn = open_transaction(&target, None, &nested, false).unwrap();
        assert!(commit_batch(
            &mut conn,
            batch,
            &mut VecDeque::new(),
            &nested
        ));
        for answer in answers {
            answer.blocking_recv().unwrap().unwrap();
        }

        let mut expected: Vec<usize> = (0..queued.len()).collect();
        expected.sort_by_key(|position| queued[*position].lock_order());
        let ran = ran.lock().unwrap().clone();
        assert_eq!(ran, expected, "sorted by lock order, stable");
        assert_eq!(
            ran.last(),
            Some(&2),
            "the insert that locks nothing runs last"
        );
        let first_row_2 = ran.iter().position(|p| *p == 0).unwrap();
        let second_row_2 = ran.iter().position(|p| *p == 3).unwrap();
        assert!(
            first_row_2 < second_row_2,
            "one row's writes keep their queue order"
        );
        // The order is a property of the key, the same in every process: a fixed FNV-1a.
        assert_eq!(order(1).lock_order(), order(1).lock_order());
        assert_ne!(order(1).lock_order(), order(2).lock_order());
    }

    #[test]
    fn writes_to_one_row_share_a_lane_and_inserts_take_turns() {
        // Lanes connect lazily, so a PostgreSQL target nobody listens on is enough here.
        let target = Target::parse("postgres://nobody@127.0.0.1:1/none").unwrap();
        let lanes = Lanes::start(&target, crate::PoolOptions::DEFAULT_ACQUIRE_TIMEOUT).unwrap();
        assert_eq!(lanes.lanes.len(), POSTGRES_LANES);

        let order = LockKey::Order(OrderId::generate());
        let lane = index_of(&lanes, lanes.lane(&order));
        for _ in 0..10 {
            assert_eq!(index_of(&lanes, lanes.lane(&order.clone())), lane);
        }
        let spread: std::collections::HashSet<usize> = (0..POSTGRES_LANES)
            .map(|_| index_of(&lanes, lanes.lane(&LockKey::NewRows)))
            .collect();
        assert_eq!(
            spread.len(),
            POSTGRES_LANES,
            "unkeyed writes use every lane"
        );

        let sqlite = Target::parse("sqlite::memory:").unwrap();
        assert_eq!(
            Lanes::start(&sqlite, crate::PoolOptions::DEFAULT_ACQUIRE_TIMEOUT)
                .unwrap()
                .lanes
                .len(),
            1,
            "SQLite has one writer"
        );
    }

    /// One PostgreSQL batch as a test build sees it just before its commit.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct SeenBatch {
        /// Jobs run in the transaction.
        jobs: usize,
        /// Savepoints the writer counted (its own per job, and the ones jobs nested).
        savepoints: usize,
        /// Subtransaction XIDs PostgreSQL says the transaction holds.
        subxids: i64,
    }

    /// Every PostgreSQL batch committed by any writer in this test binary.
    static PG_BATCHES: Mutex<Vec<SeenBatch>> = Mutex::new(Vec::new());

    #[derive(diesel::QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        locks: i64,
    }

    /// The test build's look at a batch before it commits: on PostgreSQL, asks the server how
    /// many subtransactions the transaction holds. Every XID assigned to a transaction or to a
    /// subtransaction of it takes an exclusive lock on itself that lasts until the top-level
    /// transaction ends (an aborted subtransaction's is released with it), so those locks are
    /// the top-level XID plus exactly the subtransaction XIDs PostgreSQL must track.
    pub(super) fn observe_batch(conn: &mut DbConnection, jobs: usize, savepoints: usize) {
        use diesel::RunQueryDsl;
        let DbConnection::Pg(conn) = conn else {
            return;
        };
        let held = diesel::sql_query(
            "SELECT count(*) AS locks FROM pg_locks WHERE pid = pg_backend_pid() \
             AND locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted",
        )
        .get_result::<Held>(conn)
        .expect("pg_locks answers inside the batch");
        PG_BATCHES.lock().unwrap().push(SeenBatch {
            jobs,
            savepoints,
            subxids: (held.locks - 1).max(0),
        });
    }

    /// A fresh PostgreSQL database for one test, dropped at the end.
    struct PgDatabase {
        admin_url: String,
        name: String,
        url: String,
    }

    impl PgDatabase {
        /// `None` (with a skip line) when `PAYGATE_TEST_DATABASE_URL` is unset.
        fn create() -> Option<PgDatabase> {
            use diesel::RunQueryDsl;
            let Ok(admin_url) = std::env::var("PAYGATE_TEST_DATABASE_URL") else {
                eprintln!("SKIPPED: PAYGATE_TEST_DATABASE_URL is not set");
                return None;
            };
            let name = format!(
                "paygate_test_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .unwrap();
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&format!("/{name}"));
            Some(PgDatabase {
                admin_url,
                name,
                url: url.to_string(),
            })
        }
    }

    impl Drop for PgDatabase {
        fn drop(&mut self) {
            use diesel::RunQueryDsl;
            if let Ok(mut admin) = diesel::PgConnection::establish(&self.admin_url) {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                let _ = diesel::sql_query(drop).execute(&mut admin);
            }
        }
    }

    /// A pending order for the subtransaction test.
    fn new_order(n: usize) -> crate::NewOrder {
        use chrono::{TimeZone, Utc};
        use paygate_core::{AppName, Channel, Currency, Fen, OutTradeNo, ProviderKind};
        crate::NewOrder {
            provider: ProviderKind::WECHAT,
            app: AppName::parse("shop").unwrap(),
            channel: Channel::Jsapi,
            out_trade_no: OutTradeNo::parse(format!("subxact_{n:04}")).unwrap(),
            amount: Fen::new(100).unwrap(),
            currency: Currency::Cny,
            subject: "tea".into(),
            description: None,
            payer_id: Some("openid_1".into()),
            pay_params: None,
            metadata: None,
            request_hash: format!("hash-{n}"),
            created_at: Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap(),
            expires_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_large_postgres_batch_stays_well_under_the_subtransaction_cache() {
        use paygate_core::{OrderEvent, OrderStatus};
        /// PostgreSQL caches 64 subtransaction XIDs per backend (`PGPROC_MAX_CACHED_SUBXIDS`).
        const WELL_UNDER_THE_CACHE: i64 = 48;
        let Some(db) = PgDatabase::create() else {
            return;
        };
        let store = crate::Store::connect(&db.url, crate::PoolOptions::sized(4))
            .await
            .unwrap();
        let lanes = store.writer.clone().unwrap();

        // Orders, leases and order numbers whose writes all take lane 0, so one lane gets a
        // queue far longer than a batch.
        let on_lane_0 = |key: &LockKey| lanes.lane_index(key) == 0;
        let mut orders = Vec::new();
        let mut numbers = Vec::new();
        for n in 0.. {
            if orders.len() == 2 * MAX_BATCH && numbers.len() == MAX_BATCH {
                break;
            }
            let new = new_order(n);
            let number = LockKey::OrderNumber {
                app: new.app.to_string(),
                out_trade_no: new.out_trade_no.to_string(),
            };
            let order = store.insert_order(new.clone()).await.unwrap();
            if on_lane_0(&LockKey::Order(order.id.clone())) && orders.len() < 2 * MAX_BATCH {
                orders.push(order.id);
            }
            if on_lane_0(&number) && numbers.len() < MAX_BATCH {
                numbers.push(new);
            }
        }
        let leases: Vec<String> = (0..)
            .map(|n| format!("lease_{n}"))
            .filter(|name| on_lane_0(&LockKey::Lease(name.clone())))
            .take(MAX_BATCH)
            .collect();
        PG_BATCHES.lock().unwrap().clear();

        // Hold lane 0 busy while the queue fills.
        let (started, started_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let store = store.clone();
            let key = LockKey::Order(orders[0].clone());
            async move {
                store
                    .write(key, move |_| {
                        started.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        let mut writes = tokio::task::JoinSet::new();
        for id in &orders {
            let (store, id) = (store.clone(), id.clone());
            writes.spawn(async move {
                let paid = store
                    .transition_order(
                        &id,
                        OrderStatus::Pending,
                        OrderEvent::PaymentConfirmed,
                        crate::OrderChanges::default(),
                        None,
                    )
                    .await;
                assert!(
                    matches!(paid, Ok(crate::Transition::Applied(_))),
                    "{paid:?}"
                );
            });
        }
        for name in &leases {
            let (store, name) = (store.clone(), name.clone());
            writes.spawn(async move {
                let ttl = chrono::Duration::seconds(60);
                assert!(store.try_claim_lease(&name, "me", ttl).await.unwrap());
            });
        }
        for new in &numbers {
            let (store, new) = (store.clone(), new.clone());
            writes.spawn(async move {
                let again = store.insert_order(new).await;
                assert!(
                    matches!(again, Err(StoreError::DuplicateOrder { .. })),
                    "{again:?}"
                );
            });
        }
        let queued = orders.len() + leases.len() + numbers.len();
        let lane = lanes.lane(&LockKey::Order(orders[0].clone()));
        for _ in 0..500 {
            if QUEUE_DEPTH - lane.jobs.capacity() == queued {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            QUEUE_DEPTH - lane.jobs.capacity(),
            queued,
            "the queue filled"
        );
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        while let Some(done) = writes.join_next().await {
            done.unwrap();
        }

        let seen = PG_BATCHES.lock().unwrap().clone();
        let jobs: usize = seen.iter().map(|batch| batch.jobs).sum();
        assert!(
            jobs > queued,
            "every queued write ran in a batch seen: {seen:?}"
        );
        // The queue was long enough that batches ran into the budget and wrote in most jobs
        // (a duplicate order writes nothing, so its savepoint takes no XID).
        assert!(
            seen.iter()
                .any(|batch| batch.savepoints >= SAVEPOINT_BUDGET),
            "no batch reached the budget: {seen:?}"
        );
        let fullest = seen.iter().map(|batch| batch.subxids).max().unwrap();
        assert!(fullest >= SAVEPOINT_BUDGET as i64 / 2, "{seen:?}");
        for batch in &seen {
            assert!(
                batch.subxids <= WELL_UNDER_THE_CACHE,
                "a batch held {} subtransactions: {seen:?}",
                batch.subxids
            );
            assert!(
                batch.subxids <= batch.savepoints as i64,
                "the writer counted every subtransaction: {batch:?}"
            );
        }
        store.close().await.unwrap();
    }
}
