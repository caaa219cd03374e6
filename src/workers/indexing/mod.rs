//! The indexing worker: walks source trees and indexes their files into `index.sqlite`.
//!
//! Owns the worker's run loop: logging first, then the database, then `READY=1`, then one
//! cycle every `interval` (measured start to start; a cycle longer than the interval is
//! followed at once by the next). It must not supervise anything: `vigil serve` runs this same
//! code as `vigil worker indexing --config <file> --name <name>`.
//!
//! | module | owns |
//! |---|---|
//! | [`walk`] | the parallel walk, change detection, reading changed files |
//! | [`content`] | one file's hash, line count, binary detection |
//! | [`projects`] | which directories are projects, which project owns a file |
//! | [`language`] | language from the file name |
//! | [`db`] | `index.sqlite`: schema, migrations, the single writer thread |
//! | [`cycle`] | one cycle's decisions and figures |
//! | [`progress`] | counters, `WATCHDOG=1` / `STATUS=` ticker, terminal progress line, logging |
//! | [`signals`] | `SIGTERM` / `SIGINT`: a clean exit with a last log line |
//! | [`kind`] | how the server launches this worker |
//!
//! # Exit status
//! | code | meaning |
//! |---|---|
//! | 0 | `--once`: the cycle ran (per-file errors are counted, not fatal) |
//! | 2 | bad configuration (no such Indexing worker, invalid config file) |
//! | 3 | the index database cannot be opened, created, migrated, or fails with an error other than busy/locked |
//! | 0 | `SIGTERM` (a requested stop; see [`signals`]) |
//! | 130 | `SIGINT` (Ctrl-C) |
//!
//! Without `--once` the worker only ends by a signal or a fatal error. Its last log line
//! says why it exits (`fatal: ...`, or `received SIGTERM: ...`). Busy or locked databases, unreadable or vanishing files
//! and missing roots are logged, counted and retried; they never end the worker.
//!
//! # Notify
//! `READY=1` once the database is open; `WATCHDOG=1` every 2 s while idle and while a cycle
//! makes progress; `STATUS=` with the current cycle's progress, then its figures.

pub mod content;
pub mod cycle;
pub mod db;
pub mod kind;
pub mod language;
pub mod progress;
pub mod projects;
pub mod signals;
pub mod walk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::notify::Notifier;
use db::Db;
use progress::{Phase, Progress, Ticker};

/// Everything the indexing worker needs, resolved from the config exactly as the server would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexingSettings {
    /// The worker's configured name.
    pub worker_name: String,
    /// Absolute roots to discover projects under.
    pub roots: Vec<PathBuf>,
    /// Time between the start of one cycle and the next.
    pub interval: Duration,
    /// `<data_dir>/index.sqlite`.
    pub db_path: PathBuf,
}

/// Exit status for a configuration error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for a fatal database error.
pub const EXIT_DATABASE: u8 = 3;

/// Runs the worker: one cycle with `once`, else cycles forever. Logging must be set up
/// already ([`progress::init_logging`]).
pub fn run(settings: &IndexingSettings, once: bool) -> ExitCode {
    signals::install(); // first: before any thread starts
    let notifier = Arc::new(Notifier::from_env());
    let progress = Arc::new(Progress::default());
    let mut db = match Db::open(&settings.db_path, Arc::clone(&progress), None) {
        Ok(db) => db,
        Err(e) => return fatal(EXIT_DATABASE, &e),
    };
    let mut db_file = file_id(&settings.db_path);
    notifier.ready();
    tracing::info!(
        "indexing worker {} ready: {} root(s) every {}, index {}",
        settings.worker_name,
        settings.roots.len(),
        vigil_actors::render::duration(settings.interval),
        settings.db_path.display()
    );
    let _ticker = Ticker::spawn(
        Arc::clone(&progress),
        Arc::clone(&notifier),
        progress::stderr_is_tty(),
    );
    let mut n = 0u64;
    loop {
        n += 1;
        let started = Instant::now();
        // Someone removed or replaced index.sqlite (to reset the index): writing on into the
        // old, unlinked file would index into nowhere, so open the new one.
        let now_file = file_id(&settings.db_path);
        if now_file != db_file {
            tracing::warn!(
                "the index database {} was removed or replaced; opening it again",
                settings.db_path.display()
            );
            drop(db);
            db = match Db::open(&settings.db_path, Arc::clone(&progress), None) {
                Ok(db) => db,
                Err(e) => return fatal(EXIT_DATABASE, &e),
            };
            db_file = file_id(&settings.db_path);
        }
        let result = cycle::run(settings, &db, &progress, n);
        progress.set_phase(Phase::Idle);
        progress::clear_line();
        match result {
            Ok(row) => {
                let summary = format!(
                    "cycle {n}: {} in {} ({} new, {} changed, {} removed, {} unchanged, {} errors), {:.1} MB read in {:.3} s",
                    counted(row.files, "file"),
                    counted(row.projects, "project"),
                    row.new,
                    row.changed,
                    row.removed,
                    row.unchanged,
                    row.errors,
                    row.bytes_read as f64 / 1e6,
                    row.seconds
                );
                tracing::info!("{summary}");
                notifier.status(&summary);
            }
            Err(e) => return fatal(EXIT_DATABASE, &e),
        }
        if once {
            return ExitCode::SUCCESS;
        }
        if let Some(rest) = settings.interval.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// The (device, inode) of `path`, if it exists.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Logs the reason as the last line and returns the exit status.
pub fn fatal(code: u8, reason: &dyn std::fmt::Display) -> ExitCode {
    progress::clear_line();
    tracing::error!("fatal: {reason}; exiting with status {code}");
    ExitCode::from(code)
}

/// `1 file`, `2 files`.
fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
