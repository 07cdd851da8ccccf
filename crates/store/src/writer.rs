//! The write path: one thread owns one connection and commits the writes of concurrent callers
//! together, in one transaction per batch (group commit).
//!
//! Why: SQLite has one writer. Pooled connections racing for its write lock sleep in the busy
//! handler instead of queueing, and every commit is a WAL append; on PostgreSQL every commit is
//! a WAL flush. Measured in docs/performance.md, per-call transactions were the bound of every
//! write-heavy endpoint. Here callers queue in memory, the writer takes whatever has queued
//! (up to [`MAX_BATCH`]) and runs each caller's work in its own savepoint inside one
//! transaction, so one caller's error rolls back only its own work. Nobody hears of a result
//! before the batch has committed, so an acknowledged write is as durable as before.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::R2D2Connection;
use diesel::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::conn::{Backend, DbConnection, Target};
use crate::{ACQUIRE_TIMEOUT, StoreError};

/// The most callers' writes one transaction carries; bounds how long a batch holds the lock.
const MAX_BATCH: usize = 64;
/// How many writes may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// What a finished job tells its caller once the batch's commit is known.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A job's body: given the writer's connection, or the reason there is none to run on (then it
/// answers its caller at once).
type Work = Box<dyn FnOnce(Result<&mut DbConnection, StoreError>) -> Ran + Send>;

/// One caller's work, run by the writer thread on its connection.
struct Job {
    work: Work,
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

/// The writer lanes of one store. A write names the row it will lock (the order, usually), and
/// all writes naming the same row take the same lane: they queue in memory instead of two
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
    /// Starts the lanes for the target's backend.
    pub(crate) fn start(target: &Target) -> Result<Lanes, StoreError> {
        let count = match target.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_LANES,
        };
        let mut lanes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for _ in 0..count {
            let (writer, thread) = Writer::start(target.clone())?;
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
    /// that only insert new rows (`None`).
    pub(crate) fn lane(&self, key: Option<&str>) -> &Writer {
        let index = match key {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() as usize
            }
            None => self.next.fetch_add(1, Ordering::Relaxed),
        };
        &self.lanes[index % self.lanes.len()]
    }
}

/// One lane: the handle callers enqueue writes on. Its thread ends when the last handle is
/// dropped.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread; it connects lazily and reconnects after a broken connection.
    fn start(target: Target) -> Result<(Writer, JoinHandle<()>), StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("paygate-store-writer".into())
            .spawn(move || serve(&target, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok((Writer { jobs }, thread))
    }

    /// Runs `work` in its own savepoint inside the writer's next transaction and returns its
    /// result once that transaction has committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answered) = job(work);
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.jobs.send(job))
            .await
            .map_err(|_| StoreError::Unavailable("timed out waiting for the writer".into()))?
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }
}

/// Wraps a caller's work as a job, and the receiver its answer arrives on.
fn job<T, F>(work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
{
    let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
    let job = Job {
        work: Box::new(move |connection| {
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
        }),
    };
    (job, answered)
}

/// The writer thread: take what has queued, commit it as one batch, repeat until every handle
/// is gone.
fn serve(target: &Target, mut queue: mpsc::Receiver<Job>) {
    let mut connection: Option<DbConnection> = None;
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
        let mut conn = match open_transaction(target, connection.take()) {
            Ok(conn) => conn,
            Err(reason) => {
                for job in batch {
                    refuse(job, &reason);
                }
                continue;
            }
        };
        let keep = commit_batch(&mut conn, batch, &mut carried);
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
fn open_transaction(target: &Target, kept: Option<DbConnection>) -> Result<DbConnection, String> {
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
    begin(&mut conn).map_err(|e| StoreError::from(e).to_string())?;
    Ok(conn)
}

/// Runs one batch in the transaction `conn` has open. Returns whether the connection is still
/// fit to use.
fn commit_batch(conn: &mut DbConnection, batch: Vec<Job>, carried: &mut VecDeque<Job>) -> bool {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    for job in jobs.by_ref() {
        let ran = (job.work)(Ok(conn));
        if ran.panicked {
            // The panicking job's savepoint was never closed; throw the whole batch away and
            // the connection with it. The jobs after it have not run and go into the next batch.
            let _ = conn.batch_execute("ROLLBACK");
            (ran.reply)(Ok(()));
            for reply in replies {
                reply(Err(StoreError::Unavailable(
                    "rolled back: another write in the same transaction panicked".into(),
                )));
            }
            carried.extend(jobs);
            return false;
        }
        replies.push(ran.reply);
    }
    let committed = <DbConnection as Connection>::TransactionManager::commit_transaction(conn);
    match committed {
        Ok(()) => {
            for reply in replies {
                reply(Ok(()));
            }
            true
        }
        Err(error) => {
            let reason = StoreError::from(error).to_string();
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            for reply in replies {
                reply(Err(StoreError::Unavailable(format!(
                    "the write was not committed: {reason}"
                ))));
            }
            false
        }
    }
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
    (job.work)(Err(StoreError::Unavailable(reason.to_owned())));
}

#[cfg(test)]
mod tests {
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
        job(move |conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, 'h', '2026-01-01 00:00:00')",
            )
            .bind::<diesel::sql_types::Text, _>(name)
            .execute(conn)
            .map_err(StoreError::from)
        })
    }

    #[test]
    fn a_panic_rolls_its_batch_back_and_the_jobs_behind_it_run_in_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let target = Target::parse(path.to_str().unwrap()).unwrap();
        crate::conn::run_migrations(&mut target.establish().unwrap()).unwrap();
        let (before, before_answer) = insert_lease("before");
        let (panicking, panic_answer) =
            job(|_| -> Result<(), StoreError> { panic!("boom in a write") });
        let (after, after_answer) = insert_lease("after");

        let mut carried = VecDeque::new();
        let mut conn = open_transaction(&target, None).unwrap();
        let keep = commit_batch(&mut conn, vec![before, panicking, after], &mut carried);

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

        let mut conn = open_transaction(&target, None).unwrap();
        assert!(commit_batch(
            &mut conn,
            carried.drain(..).collect(),
            &mut carried
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
    fn writes_to_one_row_share_a_lane_and_inserts_take_turns() {
        // Lanes connect lazily, so a PostgreSQL target nobody listens on is enough here.
        let target = Target::parse("postgres://nobody@127.0.0.1:1/none").unwrap();
        let lanes = Lanes::start(&target).unwrap();
        assert_eq!(lanes.lanes.len(), POSTGRES_LANES);

        let order = index_of(&lanes, lanes.lane(Some("ord_01")));
        for _ in 0..10 {
            assert_eq!(index_of(&lanes, lanes.lane(Some("ord_01"))), order);
        }
        let spread: std::collections::HashSet<usize> = (0..POSTGRES_LANES)
            .map(|_| index_of(&lanes, lanes.lane(None)))
            .collect();
        assert_eq!(
            spread.len(),
            POSTGRES_LANES,
            "unkeyed writes use every lane"
        );

        let sqlite = Target::parse("sqlite::memory:").unwrap();
        assert_eq!(
            Lanes::start(&sqlite).unwrap().lanes.len(),
            1,
            "SQLite has one writer"
        );
    }
}
