//! The history database: one writer thread owning `history.sqlite`, and read-only queries.
//!
//! Owns `<data_dir>/history.sqlite`: its schema (versioned with `PRAGMA user_version`, migrated
//! forward on open), the single writer, and the read-only queries used by `vigil history` and the
//! orphan sweep. It must not decide anything about processes: it stores what it is told.
//!
//! # Theory of operation
//! [`History::open`] migrates the file and starts a dedicated std thread that owns the only
//! writing [`Connection`]. Every [`History`] handle (cheap to clone) sends commands to that thread
//! over an unbounded channel, so the supervisors (async actors) never block on SQLite and never
//! hold a connection across an `.await`. The thread waits for a command, then drains everything
//! queued behind it and commits the lot in ONE transaction: a storm of 1000 exits becomes a few
//! transactions.
//!
//! # Guarantees
//! - Commands are applied in the order they were sent (per sender, and globally in channel order).
//! - [`History::flush`] resolves once everything sent before it is committed.
//! - A failed write (disk full, database locked, file deleted) is logged and retried with an
//!   exponential backoff (50 ms doubling to 5 s); the records stay in memory meanwhile. Nothing
//!   here panics on an I/O or SQLite error.
//! - [`History::close`] (or dropping the last handle) commits everything still queued, then joins
//!   the thread.
//!
//! # Caveats
//! - The memory kept during a long outage is bounded by [`MAX_PENDING`] commands. Past it, the
//!   OLDEST pending commands are dropped (counted in [`HistoryStats::dropped`] and logged at
//!   `error` level): the newest exits and the live-process rows are what the next decision needs.
//! - At shutdown the writer keeps retrying for at most [`SHUTDOWN_RETRY`]; what still cannot be
//!   written then is logged as lost, so a broken disk cannot hang the server's exit.
//! - A database SQLite calls corrupt at open (`PRAGMA quick_check`) or on a write is renamed to
//!   `history.sqlite.corrupt-<time>` and a fresh one is started, with a `history_corrupt` event:
//!   supervision matters more than history.
//! - A [`History::flush`] issued while the database is unwritable waits until the retry succeeds
//!   (or until shutdown gives up): callers that cannot wait should wrap it in a timeout.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::exit::{ExitReason, ExitRecord};
use crate::timefmt::millis;

/// The most commands kept in memory while the database cannot be written.
pub const MAX_PENDING: usize = 100_000;

/// How long the writer keeps retrying at shutdown before it declares the rest lost.
pub const SHUTDOWN_RETRY: Duration = Duration::from_secs(10);

/// How long the server waits for history at shutdown ([`History::flush_within`]) before it
/// exits without it.
pub const FLUSH_BOUND: Duration = SHUTDOWN_RETRY;

/// How long the writer waits for a lock held by another connection before it counts a failure
/// (and retries later). Short on purpose: the retry loop, not SQLite, does the long waiting.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a reader (`vigil history`, the sweep) waits for a lock.
const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The schema, one forward migration per version: `MIGRATIONS[i]` takes `user_version` i to i+1.
const MIGRATIONS: &[&str] = &[
    // 1: exits, events, live processes.
    "CREATE TABLE exits (
         id               INTEGER PRIMARY KEY AUTOINCREMENT,
         worker           TEXT    NOT NULL,
         pid              INTEGER,
         generation       INTEGER NOT NULL,
         started_at       TEXT    NOT NULL,
         exited_at        TEXT    NOT NULL,
         uptime_ms        INTEGER NOT NULL,
         code             INTEGER,
         signal           INTEGER,
         signal_name      TEXT,
         core_dumped      INTEGER NOT NULL,
         reason           TEXT    NOT NULL,
         restart_delay_ms INTEGER,
         log_tail         TEXT    NOT NULL,   -- a JSON array of strings
         decision         TEXT    NOT NULL DEFAULT ''
     );
     CREATE INDEX exits_worker_id ON exits (worker, id);
     CREATE TABLE events (
         id     INTEGER PRIMARY KEY AUTOINCREMENT,
         at     TEXT NOT NULL,
         worker TEXT NOT NULL,
         kind   TEXT NOT NULL,
         detail TEXT NOT NULL
     );
     CREATE INDEX events_worker_id ON events (worker, id);
     CREATE TABLE live_processes (
         worker      TEXT    NOT NULL,
         pid         INTEGER NOT NULL,
         pgid        INTEGER NOT NULL,
         start_ticks INTEGER NOT NULL,
         generation  INTEGER NOT NULL,
         started_at  TEXT    NOT NULL,
         PRIMARY KEY (worker, pid)
     );",
    // 2: OOM evidence of each run (cgroup containment).
    "ALTER TABLE exits ADD COLUMN oom_kills INTEGER;
     ALTER TABLE exits ADD COLUMN memory_peak_bytes INTEGER;",
    // 3: each run's VIGIL_RUN_ID (the worker's environment).
    "ALTER TABLE exits ADD COLUMN run_id TEXT;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What can go wrong opening or reading the history database.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The data directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// SQLite refused an operation on this file.
    #[error("history database {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by a newer vigil.
    #[error(
        "history database {} has schema version {found}, newer than this vigil's {known}",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A corrupt database could not be moved aside.
    #[error("cannot move the corrupt history database {} aside: {source}", path.display())]
    MoveAside {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the history writer thread: {0}")]
    Thread(std::io::Error),
}

/// A worker process that is alive, as recorded for the orphan sweep (`live_processes` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveProcess {
    /// The worker's name.
    pub worker: String,
    /// The leader's pid.
    pub pid: u32,
    /// Its process group (equal to `pid` for a group leader).
    pub pgid: u32,
    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot (identity check).
    pub start_ticks: u64,
    /// The generation this process runs.
    pub generation: u64,
    /// RFC 3339 start time.
    pub started_at: String,
}

/// One supervision event (escalation, root intensity, ...), as stored in the `events` table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// RFC 3339 time it was recorded.
    pub at: String,
    /// The worker concerned (or `"root"`).
    pub worker: String,
    /// A short machine-friendly kind: `escalation`, `root_intensity`, ...
    pub kind: String,
    /// Free text.
    pub detail: String,
}

/// Counters of the writer thread, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Exit rows inserted.
    pub exits_written: u64,
    /// Commands applied (exits, events, live-process inserts and deletes).
    pub commands_written: u64,
    /// Failed write attempts (each one retried).
    pub failures: u64,
    /// Commands dropped because the pending bound was hit, or lost at shutdown.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    exits_written: AtomicU64,
    commands_written: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    /// Set when a bounded flush timed out: at shutdown, give up after one more failed attempt.
    abandon: std::sync::atomic::AtomicBool,
}

/// One command to the writer thread.
enum Command {
    /// Insert an exit row.
    Exit(Box<ExitRecord>),
    /// Insert an event row.
    Event(EventRecord),
    /// Insert (or replace) a live-process row.
    Started(LiveProcess),
    /// Delete a live-process row.
    Reaped { worker: String, pid: u32 },
    /// Answer once everything before it is committed.
    Flush(oneshot::Sender<()>),
    /// Commit everything, then end the thread.
    Shutdown,
}

struct Inner {
    tx: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    path: PathBuf,
    moved_aside: Option<PathBuf>,
}

impl Inner {
    fn shutdown_and_join(&self) {
        let handle = match self.thread.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            // The thread may already be gone (it never is, short of a bug): nothing to do then.
            let _ = self.tx.send(Command::Shutdown);
            if handle.join().is_err() {
                tracing::error!(db = %self.path.display(), "the history writer thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}

/// A cheap, cloneable handle to the history writer.
///
/// Every method but [`flush`](History::flush) returns at once: it only enqueues.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl History {
    /// Open (creating the directory and file if needed) and migrate `path`, then start the
    /// writer thread.
    ///
    /// Settings: WAL journal, `synchronous=NORMAL`, a short busy timeout (the writer retries).
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let (conn, moved_aside) = match open_checked(path) {
            Ok(conn) => (conn, None),
            Err(e) if is_corruption(&e) => {
                let aside = move_aside(path)?;
                tracing::error!(
                    db = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "history database is corrupt: moved aside, starting a fresh one"
                );
                (open_writer(path)?, Some(aside))
            }
            Err(e) => return Err(e),
        };
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            path: path.to_path_buf(),
            conn: Some(conn),
            rx,
            counters: Arc::clone(&counters),
            pending: VecDeque::new(),
            waiters: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("vigil-history".into())
            .spawn(move || writer.run())
            .map_err(HistoryError::Thread)?;
        let history = History {
            inner: Arc::new(Inner {
                tx,
                thread: Mutex::new(Some(thread)),
                counters,
                path: path.to_path_buf(),
                moved_aside: moved_aside.clone(),
            }),
        };
        if let Some(aside) = moved_aside {
            history.record_event(
                "vigil",
                "history_corrupt",
                &format!(
                    "the previous history database was corrupt; moved aside to {}",
                    aside.display()
                ),
            );
        }
        Ok(history)
    }

    /// Where [`open`](History::open) moved a corrupt database before starting a fresh one.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.inner.moved_aside.as_deref()
    }

    /// The database file this handle writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn send(&self, cmd: Command) {
        if self.inner.tx.send(cmd).is_err() {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                db = %self.inner.path.display(),
                "history writer already closed: a record was lost"
            );
        }
    }

    /// Enqueue an exit record. Never fails, never blocks.
    pub fn record_exit(&self, rec: ExitRecord) {
        self.send(Command::Exit(Box::new(rec)));
    }

    /// Enqueue a supervision event (`kind` such as `escalation`, `root_intensity`), timestamped now.
    pub fn record_event(&self, worker: &str, kind: &str, detail: &str) {
        self.send(Command::Event(EventRecord {
            at: now_rfc3339(),
            worker: worker.to_string(),
            kind: kind.to_string(),
            detail: detail.to_string(),
        }));
    }

    /// Enqueue a `live_processes` row for a freshly spawned worker (replaces a row with the same
    /// worker and pid).
    pub fn process_started(&self, p: LiveProcess) {
        self.send(Command::Started(p));
    }

    /// Enqueue the deletion of the `live_processes` row of a reaped worker.
    pub fn process_reaped(&self, worker: &str, pid: u32) {
        self.send(Command::Reaped {
            worker: worker.to_string(),
            pid,
        });
    }

    /// Resolves when everything enqueued before this call is committed (or, at shutdown, given
    /// up on: see the module's caveats).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Flush(tx));
        // An error means the writer is gone: nothing more will ever be committed.
        let _ = rx.await;
    }

    /// [`flush`](History::flush), waiting at most `bound`; false when it timed out. A timeout
    /// also tells the writer to give up at shutdown after its next failed attempt (rather than
    /// retry for [`SHUTDOWN_RETRY`] more): the caller has already waited that long.
    pub async fn flush_within(&self, bound: Duration) -> bool {
        if self.inner.counters.abandon.load(Ordering::Relaxed) {
            // Already waited once: a second full wait would only double the hang.
            return tokio::time::timeout(Duration::from_millis(100), self.flush())
                .await
                .is_ok();
        }
        let done = tokio::time::timeout(bound, self.flush()).await.is_ok();
        if !done {
            self.inner.counters.abandon.store(true, Ordering::Relaxed);
            tracing::error!(
                db = %self.inner.path.display(),
                waited_ms = millis(bound),
                "history could not be flushed in time; going on without it"
            );
        }
        done
    }

    /// Commit everything queued, then stop and join the writer thread.
    ///
    /// It blocks the calling thread until the writer is done (at most about
    /// [`SHUTDOWN_RETRY`] if the disk fails). Other clones of this handle can no longer write
    /// afterwards: their records are logged as lost. Dropping the last handle does the same.
    pub fn close(self) {
        self.inner.shutdown_and_join();
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> HistoryStats {
        let c = &self.inner.counters;
        HistoryStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            exits_written: c.exits_written.load(Ordering::Relaxed),
            commands_written: c.commands_written.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------------

/// What the writer does between two batches.
#[derive(Clone, Copy)]
enum Phase {
    /// Nothing pending: block until a command arrives.
    Idle,
    /// The last commit failed: collect new commands until `until`, then retry; the next delay
    /// doubles `delay`.
    Retrying { delay: Duration, until: Instant },
    /// Shutdown was requested: commit what is left, retrying until the deadline.
    Closing { deadline: Instant, delay: Duration },
}

impl Phase {
    fn retry_after(delay: Duration) -> Phase {
        Phase::Retrying {
            delay,
            until: Instant::now() + delay,
        }
    }
}

/// A data command waiting to be committed.
enum Write {
    Exit(Box<ExitRecord>),
    Event(EventRecord),
    Started(LiveProcess),
    Reaped { worker: String, pid: u32 },
}

struct Writer {
    path: PathBuf,
    /// `None` after an error that was not a lock conflict: reopened on the next attempt.
    conn: Option<Connection>,
    rx: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    pending: VecDeque<Write>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Writer {
    fn run(mut self) {
        let mut phase = Phase::Idle;
        loop {
            // 1. Wait for work (or for the retry time), then drain everything queued.
            if self.receive(phase) {
                let deadline = Instant::now() + SHUTDOWN_RETRY;
                phase = match phase {
                    Phase::Idle => Phase::Closing {
                        deadline,
                        delay: FIRST_RETRY,
                    },
                    Phase::Retrying { delay, .. } => Phase::Closing { deadline, delay },
                    closing @ Phase::Closing { .. } => closing,
                };
            }
            self.enforce_bound();

            // 2. Commit the batch in one transaction.
            let ok = self.commit();

            // 3. Decide what comes next.
            phase = match (phase, ok) {
                (Phase::Closing { .. }, true) => {
                    // Late commands from other clones, sent after the shutdown request.
                    match self.rx.try_recv() {
                        Ok(cmd) => {
                            self.take(cmd);
                            phase
                        }
                        Err(_) => return,
                    }
                }
                (Phase::Closing { deadline, delay }, false) => {
                    if Instant::now() >= deadline || self.counters.abandon.load(Ordering::Relaxed) {
                        let lost = self.pending.len() as u64;
                        self.counters.dropped.fetch_add(lost, Ordering::Relaxed);
                        tracing::error!(
                            db = %self.path.display(),
                            lost,
                            "history writer gives up at shutdown: records lost"
                        );
                        return;
                    }
                    std::thread::sleep(delay);
                    Phase::Closing {
                        deadline,
                        delay: (delay * 2).min(MAX_RETRY),
                    }
                }
                (Phase::Idle | Phase::Retrying { .. }, true) => Phase::Idle,
                (Phase::Idle, false) => Phase::retry_after(FIRST_RETRY),
                (Phase::Retrying { delay, .. }, false) => {
                    Phase::retry_after((delay * 2).min(MAX_RETRY))
                }
            };
        }
    }

    /// Take the next commands: block for the first one (idle), collect until the retry time
    /// (retrying), or only drain (closing). Returns true when shutdown was requested or every
    /// handle is gone.
    fn receive(&mut self, phase: Phase) -> bool {
        let mut shutdown = false;
        match phase {
            Phase::Idle => match self.rx.recv() {
                Ok(cmd) => shutdown |= self.take(cmd),
                Err(mpsc::RecvError) => return true,
            },
            Phase::Retrying { until, .. } => loop {
                let left = until.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(cmd) => {
                        if self.take(cmd) {
                            shutdown = true;
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return true,
                }
            },
            Phase::Closing { .. } => {}
        }
        while let Ok(cmd) = self.rx.try_recv() {
            shutdown |= self.take(cmd);
        }
        shutdown
    }

    /// Queue one command; returns true for `Shutdown`.
    fn take(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Exit(rec) => self.pending.push_back(Write::Exit(rec)),
            Command::Event(ev) => self.pending.push_back(Write::Event(ev)),
            Command::Started(p) => self.pending.push_back(Write::Started(p)),
            Command::Reaped { worker, pid } => {
                self.pending.push_back(Write::Reaped { worker, pid })
            }
            Command::Flush(tx) => self.waiters.push(tx),
            Command::Shutdown => return true,
        }
        false
    }

    /// Drop the oldest pending writes beyond [`MAX_PENDING`].
    fn enforce_bound(&mut self) {
        if self.pending.len() > MAX_PENDING {
            let excess = self.pending.len() - MAX_PENDING;
            self.pending.drain(..excess);
            self.counters
                .dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
            tracing::error!(
                db = %self.path.display(),
                dropped = excess,
                "history database unwritable for too long: oldest pending records dropped"
            );
        }
    }

    /// Try to write every pending command in one transaction; true on success (or nothing to do).
    fn commit(&mut self) -> bool {
        if self.pending.is_empty() {
            self.answer_waiters();
            return true;
        }
        match self.try_commit() {
            Ok(()) => {
                let n = self.pending.len() as u64;
                let exits = self
                    .pending
                    .iter()
                    .filter(|w| matches!(w, Write::Exit(_)))
                    .count() as u64;
                self.pending.clear();
                self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .commands_written
                    .fetch_add(n, Ordering::Relaxed);
                self.counters
                    .exits_written
                    .fetch_add(exits, Ordering::Relaxed);
                self.answer_waiters();
                true
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let busy = match &e {
                    HistoryError::Sqlite { source, .. } => matches!(
                        source.sqlite_error_code(),
                        Some(
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        )
                    ),
                    _ => false,
                };
                if !busy {
                    // Reopen on the next attempt: the file may have been replaced or repaired.
                    self.conn = None;
                }
                if is_corruption(&e) {
                    // Corrupt under a running server: the same as at open, the file is moved
                    // aside and the pending records go into a fresh one on the next attempt.
                    match move_aside(&self.path) {
                        Ok(aside) => {
                            tracing::error!(
                                db = %self.path.display(),
                                moved_to = %aside.display(),
                                error = %e,
                                "history database is corrupt: moved aside, starting a fresh one"
                            );
                            self.pending.push_front(Write::Event(EventRecord {
                                at: now_rfc3339(),
                                worker: "vigil".into(),
                                kind: "history_corrupt".into(),
                                detail: format!(
                                    "the history database became corrupt; moved aside to {}",
                                    aside.display()
                                ),
                            }));
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "history database is corrupt and cannot be moved aside")
                        }
                    }
                }
                tracing::warn!(
                    db = %self.path.display(),
                    pending = self.pending.len(),
                    error = %e,
                    "history write failed; will retry"
                );
                false
            }
        }
    }

    fn answer_waiters(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn try_commit(&mut self) -> Result<(), HistoryError> {
        if self.conn.is_none() {
            self.conn = Some(open_writer(&self.path)?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        write_batch(conn, &self.pending).map_err(sqlite_err(&self.path))
    }
}

/// Apply `pending` in one IMMEDIATE transaction.
fn write_batch(conn: &mut Connection, pending: &VecDeque<Write>) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut exit_stmt = tx.prepare_cached(
            "INSERT INTO exits (worker, pid, generation, started_at, exited_at, uptime_ms,
                     code, signal, signal_name, core_dumped, reason, restart_delay_ms, log_tail,
                     decision, oom_kills, memory_peak_bytes, run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17)",
        )?;
        for w in pending {
            match w {
                Write::Exit(r) => {
                    let log_tail =
                        serde_json::to_string(&r.log_tail).unwrap_or_else(|_| "[]".to_string());
                    exit_stmt.execute(params![
                        r.worker,
                        r.pid,
                        to_i64(r.generation),
                        r.started_at,
                        r.exited_at,
                        to_i64(r.uptime_ms),
                        r.code,
                        r.signal,
                        r.signal_name,
                        r.core_dumped,
                        r.reason.as_str(),
                        r.restart_delay_ms.map(to_i64),
                        log_tail,
                        r.decision,
                        r.oom_kills.map(to_i64),
                        r.memory_peak_bytes.map(to_i64),
                        r.run_id,
                    ])?;
                }
                Write::Event(e) => {
                    tx.prepare_cached(
                        "INSERT INTO events (at, worker, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![e.at, e.worker, e.kind, e.detail])?;
                }
                Write::Started(p) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO live_processes
                                 (worker, pid, pgid, start_ticks, generation, started_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        p.worker,
                        p.pid,
                        p.pgid,
                        to_i64(p.start_ticks),
                        to_i64(p.generation),
                        p.started_at,
                    ])?;
                }
                Write::Reaped { worker, pid } => {
                    tx.prepare_cached("DELETE FROM live_processes WHERE worker = ?1 AND pid = ?2")?
                        .execute(params![worker, pid])?;
                }
            }
        }
    }
    tx.commit()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub use crate::timefmt::now_rfc3339;

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
    move |source| HistoryError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Open the writing connection: pragmas, then migrations.
fn open_writer(path: &Path) -> Result<Connection, HistoryError> {
    let err = sqlite_err(path);
    let mut conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(WRITER_BUSY_TIMEOUT).map_err(&err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(&err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(&err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(&err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Open the writer and check the file's structure (`PRAGMA quick_check`): a database whose first
/// page is intact but whose later pages are garbage opens fine and fails on the first query.
fn open_checked(path: &Path) -> Result<Connection, HistoryError> {
    let conn = open_writer(path)?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(sqlite_err(path))?;
    if verdict != "ok" {
        return Err(HistoryError::Sqlite {
            path: path.to_path_buf(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(verdict),
            ),
        });
    }
    Ok(conn)
}

/// Whether SQLite said the file is not a (sound) database.
fn is_corruption(e: &HistoryError) -> bool {
    match e {
        HistoryError::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        ),
        _ => false,
    }
}

/// Rename `path` (and its WAL and shared-memory files) to `<path>.corrupt-<UTC time>`.
fn move_aside(path: &Path) -> Result<PathBuf, HistoryError> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{stamp}"));
    let aside = PathBuf::from(aside);
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|source| HistoryError::MoveAside {
            path: from.to_path_buf(),
            source,
        })
    };
    rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let from = PathBuf::from(from);
        if from.exists() {
            let mut to = aside.as_os_str().to_owned();
            to.push(suffix);
            rename(&from, Path::new(&to))?;
        }
    }
    Ok(aside)
}

/// Bring the schema to [`SCHEMA_VERSION`], in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), HistoryError> {
    let err = sqlite_err(path);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    if version > SCHEMA_VERSION {
        return Err(HistoryError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    // Every step in ONE transaction: a reader (`vigil history` while the server starts) sees
    // the old schema or the new one, never one in between.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    // Re-check inside the write lock: another process may have migrated meanwhile.
    let now: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    for sql in MIGRATIONS.iter().skip(usize::try_from(now).unwrap_or(0)) {
        tx.execute_batch(sql).map_err(&err)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Read-only queries
// ---------------------------------------------------------------------------------------------

/// A read-only connection, or `None` when the database does not exist yet (or has no schema).
fn open_reader(db: &Path) -> Result<Option<Connection>, HistoryError> {
    if !db.exists() {
        return Ok(None);
    }
    let err = sqlite_err(db);
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    conn.busy_timeout(READER_BUSY_TIMEOUT).map_err(&err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    if version == 0 {
        return Ok(None);
    }
    if version > SCHEMA_VERSION {
        return Err(HistoryError::NewerSchema {
            path: db.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(Some(conn))
}

/// Whether an exit record of `worker`'s process `pid` in `generation` exists.
pub fn exit_recorded(
    db: &Path,
    worker: &str,
    pid: u32,
    generation: u64,
) -> Result<bool, HistoryError> {
    let Some(conn) = open_reader(db)? else {
        return Ok(false);
    };
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM exits WHERE worker = ?1 AND pid = ?2 AND generation = ?3)",
        params![worker, pid, to_i64(generation)],
        |r| r.get(0),
    )
    .map_err(sqlite_err(db))
}

/// Exit records, newest first, optionally of one worker, at most `limit`.
///
/// Uses its own read-only connection, so it works with or without a running server. A database
/// that does not exist yet gives an empty list.
pub fn query_exits(
    db: &Path,
    worker: Option<&str>,
    limit: usize,
) -> Result<Vec<ExitRecord>, HistoryError> {
    let Some(conn) = open_reader(db)? else {
        return Ok(Vec::new());
    };
    let err = sqlite_err(db);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare(
            "SELECT worker, pid, generation, started_at, exited_at, uptime_ms, code, signal,
                    signal_name, core_dumped, reason, restart_delay_ms, log_tail, decision,
                    oom_kills, memory_peak_bytes, run_id
             FROM exits
             WHERE ?1 IS NULL OR worker = ?1
             ORDER BY id DESC
             LIMIT ?2",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map(params![worker, limit], |row| {
            let reason: String = row.get(10)?;
            let log_tail: String = row.get(12)?;
            Ok(ExitRecord {
                worker: row.get(0)?,
                pid: row.get(1)?,
                generation: to_u64(row.get(2)?),
                started_at: row.get(3)?,
                exited_at: row.get(4)?,
                uptime_ms: to_u64(row.get(5)?),
                code: row.get(6)?,
                signal: row.get(7)?,
                signal_name: row.get(8)?,
                core_dumped: row.get(9)?,
                // A reason this build does not know (written by a newer one) reads as `exited`
                // rather than failing the whole listing.
                reason: ExitReason::parse(&reason).unwrap_or(ExitReason::Exited),
                restart_delay_ms: row.get::<_, Option<i64>>(11)?.map(to_u64),
                log_tail: serde_json::from_str(&log_tail).unwrap_or_else(|_| vec![log_tail]),
                decision: row.get(13)?,
                oom_kills: row.get::<_, Option<i64>>(14)?.map(to_u64),
                memory_peak_bytes: row.get::<_, Option<i64>>(15)?.map(to_u64),
                run_id: row.get(16)?,
            })
        })
        .map_err(&err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&err)
}

/// Supervision events, newest first, optionally of one worker, at most `limit`.
pub fn query_events(
    db: &Path,
    worker: Option<&str>,
    limit: usize,
) -> Result<Vec<EventRecord>, HistoryError> {
    let Some(conn) = open_reader(db)? else {
        return Ok(Vec::new());
    };
    let err = sqlite_err(db);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare(
            "SELECT at, worker, kind, detail FROM events
             WHERE ?1 IS NULL OR worker = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map(params![worker, limit], |row| {
            Ok(EventRecord {
                at: row.get(0)?,
                worker: row.get(1)?,
                kind: row.get(2)?,
                detail: row.get(3)?,
            })
        })
        .map_err(&err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&err)
}

/// Event kind: an operator stopped the worker (`vigil stop`); it stays stopped, across reloads
/// and server restarts, until [`EVENT_OPERATOR_START`] (or its removal from the config).
pub const EVENT_OPERATOR_STOP: &str = "operator_stop";
/// Event kind: an operator started or restarted the worker, ending an [`EVENT_OPERATOR_STOP`].
pub const EVENT_OPERATOR_START: &str = "operator_start";
/// Event kind: a reload removed the worker from the tree (this also ends an operator's stop).
pub const EVENT_REMOVED: &str = "removed";

/// The workers whose latest operator event is a stop: an operator's intent, kept in the
/// `events` table so that it survives a server restart. No database yet: none.
pub fn query_operator_stopped(
    db: &Path,
) -> Result<std::collections::HashSet<String>, HistoryError> {
    let Some(conn) = open_reader(db)? else {
        return Ok(Default::default());
    };
    let err = sqlite_err(db);
    let mut stmt = conn
        .prepare(
            "SELECT worker FROM events WHERE id IN (
                 SELECT MAX(id) FROM events WHERE kind IN (?1, ?2, ?3) GROUP BY worker
             ) AND kind = ?1",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map(
            params![EVENT_OPERATOR_STOP, EVENT_OPERATOR_START, EVENT_REMOVED],
            |row| row.get::<_, String>(0),
        )
        .map_err(&err)?;
    rows.collect::<Result<_, _>>().map_err(&err)
}

/// The `live_processes` rows (left by a running server, or by one that died), oldest first.
pub fn query_live_processes(db: &Path) -> Result<Vec<LiveProcess>, HistoryError> {
    let Some(conn) = open_reader(db)? else {
        return Ok(Vec::new());
    };
    let err = sqlite_err(db);
    let mut stmt = conn
        .prepare(
            "SELECT worker, pid, pgid, start_ticks, generation, started_at
             FROM live_processes ORDER BY rowid",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(LiveProcess {
                worker: row.get(0)?,
                pid: row.get(1)?,
                pgid: row.get(2)?,
                start_ticks: to_u64(row.get(3)?),
                generation: to_u64(row.get(4)?),
                started_at: row.get(5)?,
            })
        })
        .map_err(&err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&err)
}

/// The schema version of an existing database (0 when it has none, `None` when there is no file).
pub fn schema_version(db: &Path) -> Result<Option<i64>, HistoryError> {
    if !db.exists() {
        return Ok(None);
    }
    let err = sqlite_err(db);
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(&err)?;
    let v = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&err)?;
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.sqlite");
        let mut c = open_writer(&db).unwrap();
        migrate(&mut c, &db).unwrap();
        assert_eq!(schema_version(&db).unwrap(), Some(SCHEMA_VERSION));
        let n: i64 = c
            .query_row("SELECT count(*) FROM exits", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        assert!(matches!(
            History::open(&db),
            Err(HistoryError::NewerSchema { .. })
        ));
    }
}
