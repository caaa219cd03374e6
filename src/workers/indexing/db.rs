//! `index.sqlite`: schema, migrations, and the one thread that owns the connection.
//!
//! Owns every access to the index database. Nothing else opens it; the cycle talks to the
//! database thread through [`Db`], which sends it requests over a channel. It must not walk or
//! read source files.
//!
//! # Schema (version 1, in `PRAGMA user_version`)
//! - `projects(id, root, name, kind, created_at)`: `id` is the xxh3-64 of the absolute root
//!   path in hex; `root` is absolute; `kind` is `git`, `marker` or `root`.
//! - `files(project_id, path, size, mtime_ns, hash, language, lines, is_binary, indexed_at)`:
//!   `path` is relative to the project's root; `hash` is the xxh3-64 of the content in hex;
//!   `lines` is NULL for binary files. Primary key `(project_id, path)`.
//! - `cycles(id, started_at, seconds, projects, files, new, changed, removed, unchanged,
//!   errors, bytes_read)`: one row per finished cycle; the last 10,000 are kept.
//!
//! Paths are stored as TEXT, or as a BLOB of the raw bytes when they are not UTF-8.
//! Times are Unix milliseconds (`started_at` is RFC 3339 text).
//!
//! # Guarantees
//! - WAL journal, `synchronous=NORMAL`, one writer with cached prepared statements, writes
//!   batched into transactions of up to [`BATCH`] rows.
//! - `SQLITE_BUSY` / `SQLITE_LOCKED` never fail a cycle: each transaction waits up to the busy
//!   timeout, then is rolled back and retried with exponential backoff (capped), forever,
//!   with a progress beat on each attempt so the watchdog knows we are alive.
//! - Projects are logged as `created project <id> <name>` once, after the commit that
//!   inserted them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::progress::Progress;

/// Rows kept in `cycles` (the oldest are deleted).
const KEEP_CYCLES: i64 = 10_000;

/// Rows per write transaction.
pub const BATCH: usize = 4096;

/// How long one statement waits for a lock before we roll back and retry.
const BUSY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Backoff between retries of a busy transaction.
const RETRY_INITIAL: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Ordered schema migrations; entry `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    root        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE files (
    project_id  TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    language    TEXT,
    lines       INTEGER,
    is_binary   INTEGER NOT NULL,
    indexed_at  INTEGER NOT NULL,
    PRIMARY KEY (project_id, path)
) WITHOUT ROWID;
CREATE TABLE cycles (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    seconds     REAL NOT NULL,
    projects    INTEGER NOT NULL,
    files       INTEGER NOT NULL,
    new         INTEGER NOT NULL,
    changed     INTEGER NOT NULL,
    removed     INTEGER NOT NULL,
    unchanged   INTEGER NOT NULL,
    errors      INTEGER NOT NULL,
    bytes_read  INTEGER NOT NULL
);
"];

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The data directory cannot be created.
    #[error("cannot create the folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Opening or configuring the database failed.
    #[error("cannot open the index database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the index database {} to schema version {version}: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version we tried to reach.
        version: usize,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The file was written by a newer vigil.
    #[error("the index database {} has schema version {found}, newer than the {supported} this vigil knows", path.display())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// Ours.
        supported: usize,
    },
    /// A statement failed with something other than a busy or locked database.
    #[error("index database error while {what}: {source}")]
    Sqlite {
        /// What we were doing.
        what: &'static str,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database thread could not be started.
    #[error("cannot start the index database thread: {0}")]
    Thread(std::io::Error),
    /// The database thread has stopped (it panicked or was never started).
    #[error("the index database thread has stopped")]
    Gone,
}

/// A hash map keyed by byte strings, hashed with xxh3 (std's SipHash showed in profiles).
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A [`Hasher`] that runs xxh3 over the written bytes: fast for path keys, not DoS-proof
/// (the keys are our own file names).
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The index as the previous cycle left it, loaded once per cycle.
///
/// Built for a fast load and fast lookups from many threads: the absolute paths live in one
/// byte arena, and an index maps each path's xxh3 to its file (paths with the same hash are
/// chained, and a lookup compares the whole path, so it is exact).
#[derive(Debug, Default)]
pub struct Previous {
    /// Known projects, indexed by [`PrevFile::project`].
    pub projects: Vec<PrevProject>,
    files: Vec<PrevFile>,
    keys: Vec<u8>,
    index: HashMap<u64, u32, BuildHasherDefault<HashedKey>>,
}

impl Previous {
    /// The file whose absolute path is `abs`.
    pub fn get(&self, abs: &[u8]) -> Option<&PrevFile> {
        let mut i = *self.index.get(&xxhash_rust::xxh3::xxh3_64(abs))?;
        loop {
            let f = &self.files[i as usize];
            if self.key(f) == abs {
                return Some(f);
            }
            i = f.next?;
        }
    }

    /// Every file with its absolute path.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &PrevFile)> {
        self.files.iter().map(|f| (self.key(f), f))
    }

    fn key(&self, f: &PrevFile) -> &[u8] {
        &self.keys[f.key_start as usize..(f.key_start + f.key_len) as usize]
    }

    fn push(&mut self, mut file: PrevFile, root: &[u8], rel: &[u8]) {
        let start = self.keys.len();
        self.keys.extend_from_slice(root);
        if !root.ends_with(b"/") {
            self.keys.push(b'/');
        }
        file.rel_start = (self.keys.len() - start) as u32;
        self.keys.extend_from_slice(rel);
        file.key_start = start as u32;
        file.key_len = (self.keys.len() - start) as u32;
        let h = xxhash_rust::xxh3::xxh3_64(&self.keys[start..]);
        let i = self.files.len() as u32;
        file.next = self.index.insert(h, i);
        self.files.push(file);
    }
}

/// A [`Hasher`] for keys that already are hashes.
#[derive(Default)]
pub struct HashedKey(u64);

impl Hasher for HashedKey {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A project row.
#[derive(Debug, Clone)]
pub struct PrevProject {
    /// Its id.
    pub id: String,
    /// Its absolute root.
    pub root: PathBuf,
}

/// A file row, as far as change detection needs it.
#[derive(Debug)]
pub struct PrevFile {
    /// Index into [`Previous::projects`].
    pub project: u32,
    /// Where the project-relative path starts in the absolute path.
    pub rel_start: u32,
    key_start: u32,
    key_len: u32,
    /// The next file with the same path hash.
    next: Option<u32>,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Set when the walk finds the file.
    pub seen: AtomicBool,
    /// Set when the walk found it with the same size and mtime, and counted it unchanged.
    pub unchanged: AtomicBool,
}

/// One row to write: what the cycle decided.
#[derive(Debug)]
pub enum Op {
    /// Insert a project unless it exists.
    AddProject {
        /// Hex id.
        id: String,
        /// Absolute root.
        root: PathBuf,
        /// Directory name.
        name: String,
        /// `git`, `marker` or `root`.
        kind: &'static str,
    },
    /// Insert or replace a file row.
    PutFile(FileRow),
    /// Delete one file row.
    DeleteFile {
        /// Its project.
        project_id: String,
        /// Path relative to the project root.
        path: Vec<u8>,
    },
    /// Delete a project and all its files.
    DeleteProject {
        /// Its id.
        project_id: String,
    },
}

/// A file row to insert or replace.
#[derive(Debug)]
pub struct FileRow {
    /// The project's id.
    pub project_id: String,
    /// Path relative to the project root.
    pub path: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// xxh3-64 of the content.
    pub hash: u64,
    /// Detected language.
    pub language: Option<&'static str>,
    /// Line count (None for binary).
    pub lines: Option<u64>,
    /// Binary content.
    pub is_binary: bool,
}

/// One finished cycle's figures, as written to `cycles`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleRow {
    /// RFC 3339 start time.
    pub started_at: String,
    /// Duration.
    pub seconds: f64,
    /// Projects after the cycle.
    pub projects: u64,
    /// Files after the cycle.
    pub files: u64,
    /// Files indexed for the first time.
    pub new: u64,
    /// Files reread because their size or mtime changed.
    pub changed: u64,
    /// Rows removed (deleted files and the files of vanished projects).
    pub removed: u64,
    /// Files skipped because size and mtime were unchanged.
    pub unchanged: u64,
    /// Per-file and per-directory errors.
    pub errors: u64,
    /// Bytes read from source files.
    pub bytes_read: u64,
}

enum Request {
    Load(Sender<Result<Previous, DbError>>),
    Write(Vec<Op>),
    Finish(Box<CycleRow>, Sender<Result<(), DbError>>),
}

/// A load in progress.
pub struct Loading(Receiver<Result<Previous, DbError>>);

impl Loading {
    /// Waits for the previous index.
    pub fn wait(&self) -> Result<Previous, DbError> {
        self.0.recv().map_err(|_| DbError::Gone)?
    }

    /// The previous index if it has arrived (once: later calls return `None`).
    pub fn try_take(&self) -> Option<Result<Previous, DbError>> {
        self.0.try_recv().ok()
    }
}

/// A handle on the database thread; share it by reference between threads.
pub struct Db {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Db {
    /// Opens (creating its folder and file if needed) and migrates the database, then starts
    /// the thread that owns it. `busy_timeout` of `None` means the default.
    pub fn open(
        path: &Path,
        progress: Arc<Progress>,
        busy_timeout: Option<Duration>,
    ) -> Result<Db, DbError> {
        let conn = open_connection(path, busy_timeout.unwrap_or(BUSY_TIMEOUT))?;
        let (tx, rx) = crossbeam_channel::bounded::<Request>(64);
        let thread = std::thread::Builder::new()
            .name("index-db".into())
            .spawn(move || {
                Writer {
                    conn,
                    progress,
                    pending: Vec::new(),
                    failed: None,
                }
                .serve(rx)
            })
            .map_err(DbError::Thread)?;
        Ok(Db {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Starts loading the index as it stands; [`Loading::wait`] returns it. The database
    /// thread loads while the caller walks.
    pub fn start_load(&self) -> Result<Loading, DbError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Load(tx))?;
        Ok(Loading(rx))
    }

    /// Queues rows; they are written in batches. Errors surface at [`Db::finish`].
    pub fn write(&self, ops: Vec<Op>) -> Result<(), DbError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.send(Request::Write(ops))
    }

    /// Writes everything queued plus the cycle row, and waits for the commit.
    pub fn finish(&self, row: CycleRow) -> Result<(), DbError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Finish(Box::new(row), tx))?;
        rx.recv().map_err(|_| DbError::Gone)?
    }

    fn send(&self, req: Request) -> Result<(), DbError> {
        let tx = self.tx.as_ref().ok_or(DbError::Gone)?;
        tx.send(req).map_err(|_| DbError::Gone)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open_err = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(busy_timeout).map_err(open_err)?;
    // journal_mode answers with a row; WAL persists in the file once set.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("index database is in journal mode {mode}, not WAL");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    // Leave the WAL for the next run (or a later autocheckpoint) instead of checkpointing,
    // fsyncing and unlinking it at exit: `--once` runs end sooner, and nothing is lost.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(open_err)?;
    // 16 MiB of page cache: the files b-tree of a large index stays in memory while we write.
    conn.pragma_update(None, "cache_size", -16384)
        .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(&mut conn, path)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| DbError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if found < 0 || found as usize > MIGRATIONS.len() {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i + 1;
        let err = |source| DbError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(
            "index database {} migrated to schema version {version}",
            path.display()
        );
    }
    Ok(())
}

/// True for the errors that mean "someone else holds a lock, try again".
fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A path as TEXT when it is UTF-8, else as a BLOB of its bytes.
fn path_sql(bytes: &[u8]) -> ToSqlOutput<'_> {
    match std::str::from_utf8(bytes) {
        Ok(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Err(_) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
    }
}

fn path_bytes(v: ValueRef<'_>) -> Vec<u8> {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
        _ => Vec::new(),
    }
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

// ---------------------------------------------------------------------------------------------
// The database thread

struct Writer {
    conn: Connection,
    progress: Arc<Progress>,
    pending: Vec<Op>,
    /// The first non-busy error of this cycle; reported at Finish.
    failed: Option<DbError>,
}

impl Writer {
    fn serve(mut self, rx: Receiver<Request>) {
        for req in rx {
            match req {
                Request::Load(reply) => {
                    let t = Instant::now();
                    let prev = self.load();
                    tracing::debug!(
                        "loaded the previous index in {:.3} s",
                        t.elapsed().as_secs_f64()
                    );
                    let _ = reply.send(prev);
                }
                Request::Write(ops) => {
                    if self.failed.is_some() {
                        continue;
                    }
                    self.pending.extend(ops);
                    if self.pending.len() >= BATCH {
                        self.flush(None);
                    }
                }
                Request::Finish(row, reply) => {
                    if self.failed.is_none() {
                        self.flush(Some(&row));
                    }
                    self.pending.clear();
                    let result = match self.failed.take() {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn load(&mut self) -> Result<Previous, DbError> {
        self.retry("loading the index", |conn| {
            let mut prev = Previous::default();
            let mut ids: HashMap<String, u32> = HashMap::new();
            {
                let mut stmt = conn.prepare_cached("SELECT id, root FROM projects")?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let id: String = r.get(0)?;
                    let root = bytes_to_path(path_bytes(r.get_ref(1)?));
                    ids.insert(id.clone(), prev.projects.len() as u32);
                    prev.projects.push(PrevProject { id, root });
                }
            }
            let count: i64 = conn
                .prepare_cached("SELECT files FROM cycles ORDER BY id DESC LIMIT 1")?
                .query_row([], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            prev.files.reserve(count.max(0) as usize);
            prev.index.reserve(count.max(0) as usize);
            prev.keys.reserve(count.max(0) as usize * 96);
            // Rows come in primary-key order, so one project's rows are consecutive.
            let mut stmt =
                conn.prepare_cached("SELECT project_id, path, size, mtime_ns FROM files")?;
            let mut rows = stmt.query([])?;
            let mut last: Option<(Vec<u8>, Option<u32>)> = None;
            let mut root: (Option<u32>, Vec<u8>) = (None, Vec::new());
            while let Some(r) = rows.next()? {
                let pid = match r.get_ref(0)? {
                    ValueRef::Text(b) => b,
                    _ => continue,
                };
                let project = match &last {
                    Some((l, p)) if l.as_slice() == pid => *p,
                    _ => {
                        let p = std::str::from_utf8(pid)
                            .ok()
                            .and_then(|s| ids.get(s))
                            .copied();
                        last = Some((pid.to_vec(), p));
                        p
                    }
                };
                let Some(project) = project else {
                    continue; // an orphan row; it will be replaced or stay harmless
                };
                let rel = match r.get_ref(1)? {
                    ValueRef::Text(b) | ValueRef::Blob(b) => b,
                    _ => continue,
                };
                let file = PrevFile {
                    project,
                    rel_start: 0,
                    key_start: 0,
                    key_len: 0,
                    next: None,
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    seen: AtomicBool::new(false),
                    unchanged: AtomicBool::new(false),
                };
                if root.0 != Some(project) {
                    root = (
                        Some(project),
                        path_to_bytes(&prev.projects[project as usize].root).to_vec(),
                    );
                }
                prev.push(file, &root.1, rel);
            }
            Ok(prev)
        })
    }

    /// Writes the pending rows (and the cycle row) in transactions of at most BATCH rows.
    fn flush(&mut self, cycle: Option<&CycleRow>) {
        let ops = std::mem::take(&mut self.pending);
        let mut chunks: Vec<&[Op]> = ops.chunks(BATCH).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let cycle = if i == last { cycle } else { None };
            let now = unix_ms();
            let result = self.retry("writing the index", |conn| {
                let mut created = Vec::new();
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for op in chunk {
                    apply(&tx, op, now, &mut created)?;
                }
                if let Some(c) = cycle {
                    tx.prepare_cached(
                        "INSERT INTO cycles (started_at, seconds, projects, files, new, changed, \
                         removed, unchanged, errors, bytes_read) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    )?
                    .execute(params![
                        c.started_at,
                        c.seconds,
                        c.projects as i64,
                        c.files as i64,
                        c.new as i64,
                        c.changed as i64,
                        c.removed as i64,
                        c.unchanged as i64,
                        c.errors as i64,
                        c.bytes_read as i64
                    ])?;
                    // Keep the history of cycles bounded.
                    tx.prepare_cached(
                        "DELETE FROM cycles WHERE id <= (SELECT max(id) FROM cycles) - ?",
                    )?
                    .execute([KEEP_CYCLES])?;
                }
                tx.commit()?;
                Ok(created)
            });
            match result {
                Ok(created) => {
                    for (id, name) in created {
                        tracing::info!("created project {id} {name}");
                    }
                    self.progress.beat();
                }
                Err(e) => {
                    self.failed = Some(e);
                    return;
                }
            }
        }
    }

    /// Runs `f`, retrying forever with backoff while the database is busy or locked.
    fn retry<T>(
        &mut self,
        what: &'static str,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let mut delay = RETRY_INITIAL;
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            match f(&mut self.conn) {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(
                            "database no longer busy: {what} succeeded after {attempt} retries ({:.1} s)",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(v);
                }
                Err(e) if is_busy(&e) => {
                    attempt += 1;
                    tracing::warn!(
                        "database busy while {what} (attempt {attempt}): {e}; retrying in {} ms",
                        delay.as_millis()
                    );
                    self.progress.beat();
                    std::thread::sleep(delay);
                    self.progress.beat();
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(source) => return Err(DbError::Sqlite { what, source }),
            }
        }
    }
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    op: &Op,
    now: i64,
    created: &mut Vec<(String, String)>,
) -> rusqlite::Result<()> {
    match op {
        Op::AddProject {
            id,
            root,
            name,
            kind,
        } => {
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO projects (id, root, name, kind, created_at) \
                     VALUES (?,?,?,?,?)",
                )?
                .execute(params![id, path_sql(path_to_bytes(root)), name, kind, now])?;
            if n == 1 {
                created.push((id.clone(), name.clone()));
            }
        }
        Op::PutFile(f) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO files (project_id, path, size, mtime_ns, hash, language, \
                 lines, is_binary, indexed_at) VALUES (?,?,?,?,?,?,?,?,?)",
            )?
            .execute(params![
                f.project_id,
                path_sql(&f.path),
                f.size as i64,
                f.mtime_ns,
                hex(f.hash),
                f.language,
                f.lines.map(|l| l as i64),
                f.is_binary,
                now
            ])?;
        }
        Op::DeleteFile { project_id, path } => {
            tx.prepare_cached("DELETE FROM files WHERE project_id = ? AND path = ?")?
                .execute(params![project_id, path_sql(path)])?;
        }
        Op::DeleteProject { project_id } => {
            tx.prepare_cached("DELETE FROM files WHERE project_id = ?")?
                .execute([project_id])?;
            tx.prepare_cached("DELETE FROM projects WHERE id = ?")?
                .execute([project_id])?;
        }
    }
    Ok(())
}

/// The raw bytes of a path.
pub fn path_to_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

fn bytes_to_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(project: u32) -> PrevFile {
        PrevFile {
            project,
            rel_start: 0,
            key_start: 0,
            key_len: 0,
            next: None,
            size: 1,
            mtime_ns: 2,
            seen: AtomicBool::new(false),
            unchanged: AtomicBool::new(false),
        }
    }

    #[test]
    fn previous_lookups_are_exact() {
        let mut prev = Previous::default();
        prev.push(file(0), b"/r", b"a.rs");
        prev.push(file(0), b"/r/", b"b/c.rs");
        prev.push(file(1), b"/s", b"a.rs");
        let f = prev.get(b"/r/b/c.rs").unwrap();
        assert_eq!(&b"/r/b/c.rs"[f.rel_start as usize..], b"b/c.rs");
        assert_eq!(prev.get(b"/s/a.rs").unwrap().project, 1);
        assert!(prev.get(b"/r/b").is_none());
        assert_eq!(prev.iter().count(), 3);

        // Two paths under one hash are chained, and each lookup compares the whole path.
        let h = xxhash_rust::xxh3::xxh3_64(b"/r/a.rs");
        prev.files[2].next = Some(0);
        prev.index.insert(h, 2);
        assert_eq!(prev.get(b"/r/a.rs").unwrap().project, 0);
        assert!(prev.get(b"/r/zz").is_none());
    }
}
