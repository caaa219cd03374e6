//! Shared fixture for the `indexing_*` tests: a temp dir with a source tree, a config that
//! indexes it, and helpers to run `vigil worker indexing` and read `index.sqlite`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub tree: PathBuf,
    pub config: PathBuf,
    pub db: PathBuf,
}

/// One `files` row, keyed by (project name, path).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub size: i64,
    pub hash: String,
    pub language: Option<String>,
    pub lines: Option<i64>,
    pub is_binary: bool,
}

/// Kills the child on drop (even when the test fails).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Waits for the exit with a generous deadline.
    pub fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "vigil did not exit within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        let config = dir.path().join("config.ron");
        fs::write(
            &config,
            r#"(
    data_dir: "var",
    workers: [(name: "idx", kind: Indexing(roots: ["tree"], interval: "1s"))],
)"#,
        )
        .unwrap();
        let db = dir.path().join("var/index.sqlite");
        Fixture {
            dir,
            tree,
            config,
            db,
        }
    }

    /// Writes `rel` under the tree (creating folders).
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.tree.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// `vigil --config <config> worker indexing <args>`, stderr+stdout to the log file.
    pub fn command(&self, args: &[&str]) -> Command {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(["worker", "indexing"])
            .args(args)
            .env_remove("VIGIL_NOTIFY_FD")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd
    }

    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        ChildGuard(self.command(args).spawn().unwrap())
    }

    /// Runs one cycle; returns the exit status and this run's log lines.
    pub fn run_once(&self) -> (ExitStatus, Vec<String>) {
        self.run_with(&["--once"], |_| {})
    }

    pub fn run_with(
        &self,
        args: &[&str],
        tweak: impl FnOnce(&mut Command),
    ) -> (ExitStatus, Vec<String>) {
        let before = self.log().len();
        let mut cmd = self.command(args);
        tweak(&mut cmd);
        let mut child = ChildGuard(cmd.spawn().unwrap());
        let st = child.wait();
        (st, self.log()[before..].to_vec())
    }

    pub fn log(&self) -> Vec<String> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs as an unprivileged user (for permission tests when the test runs as root).
    pub fn as_nobody(cmd: &mut Command) {
        cmd.uid(65534).gid(65534);
    }

    pub fn conn(&self) -> Connection {
        Connection::open(&self.db).unwrap()
    }

    /// (project name, path) -> row.
    pub fn files(&self) -> BTreeMap<(String, String), Row> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT p.name, f.path, f.size, f.hash, f.language, f.lines, f.is_binary \
                 FROM files f JOIN projects p ON p.id = f.project_id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                Row {
                    size: r.get(2)?,
                    hash: r.get(3)?,
                    language: r.get(4)?,
                    lines: r.get(5)?,
                    is_binary: r.get(6)?,
                },
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// (name, root relative to the tree's parent, kind), sorted by root.
    pub fn projects(&self) -> Vec<(String, String, String)> {
        let conn = self.conn();
        let base = fs::canonicalize(self.dir.path()).unwrap();
        let mut stmt = conn
            .prepare("SELECT name, root, kind FROM projects ORDER BY root")
            .unwrap();
        stmt.query_map([], |r| {
            let root: String = r.get(1)?;
            let rel = Path::new(&root)
                .strip_prefix(&base)
                .map(|p| p.display().to_string())
                .unwrap_or(root.clone());
            Ok((r.get(0)?, rel, r.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Paths of one project, sorted.
    pub fn paths_of(&self, project: &str) -> Vec<String> {
        self.files()
            .into_keys()
            .filter(|(p, _)| p == project)
            .map(|(_, path)| path)
            .collect()
    }

    /// The last `cycles` row: (files, new, changed, removed, unchanged, errors).
    pub fn last_cycle(&self) -> (i64, i64, i64, i64, i64, i64) {
        self.conn()
            .query_row(
                "SELECT files, new, changed, removed, unchanged, errors FROM cycles ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap()
    }
}

/// Polls `cond` until it holds or the deadline passes.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
