//! The running server's record: which socket serves which config file, readable without the
//! config.
//!
//! Owns the small JSON file a server leaves while it runs, so that control commands reach it
//! even when its `config.ron` no longer parses (an operator half-way through an edit, preparing
//! a `vigil reload`). It must not parse config files or talk to the server.
//!
//! # Where
//! One file per config, `<dir>/<xxh3 of the canonical config path>.json`, holding the canonical
//! config path, the socket path, the server's pid and its time bounds. `<dir>` is the first
//! usable of, in order:
//! 1. `$VIGIL_RUNTIME_DIR` (when set: the only place; for containers and tests);
//! 2. `/run/user/<uid>/vigil` (when `/run/user/<uid>` exists: the user's runtime dir);
//! 3. `/run/vigil` (root only);
//! 4. `/tmp/vigil-<uid>`.
//!
//! The places depend on the uid only, not on the environment, so a server started by systemd
//! and a CLI in a login shell agree; the CLI looks in every place, so a server that wrote to
//! `/tmp` before the user's runtime dir existed is still found. A folder is used only if it is
//! a real directory (not a symlink) owned by the uid with no access for others; the file is
//! written to a temporary name and renamed, so a reader never sees half of it.
//!
//! A record counts only while its pid is alive and its socket exists; the server removes it
//! when it exits (if it still names this server), and a new server overwrites a stale one.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_actors::protocol::Timeouts;
use vigil_actors::timefmt::millis;

/// What a running server says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The canonical path of the config file the server was started with.
    pub config: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// The server's pid.
    pub pid: u32,
    /// The server's bound for `dump`/`status`, in milliseconds.
    pub query_ms: u64,
    /// The server's bound for `start`/`stop`/`restart`.
    pub act_ms: u64,
    /// The server's bound for `shutdown`.
    pub shutdown_ms: u64,
    /// The server's bound for `reload`.
    pub reload_ms: u64,
}

impl Record {
    /// The server's time bounds.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            query: Duration::from_millis(self.query_ms),
            act: Duration::from_millis(self.act_ms),
            shutdown: Duration::from_millis(self.shutdown_ms),
            reload: Duration::from_millis(self.reload_ms),
        }
    }
}

/// Removes the record when dropped, if it still names this server.
#[derive(Debug)]
pub struct RecordGuard {
    path: PathBuf,
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if read(&self.path).is_some_and(|r| r.pid == std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The config path both the server and the CLI key the record by: canonical when the file
/// exists; else its folder's canonical path and its name (the file may be gone mid-edit).
pub fn canonical_config(config: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(config) {
        return p;
    }
    let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// Write the record of this server (serving `config` on `socket`) to the first usable place.
pub fn write(config: &Path, socket: &Path, timeouts: Timeouts) -> io::Result<RecordGuard> {
    let config = canonical_config(config);
    let record = Record {
        config: config.clone(),
        socket: socket.to_path_buf(),
        pid: std::process::id(),
        query_ms: millis(timeouts.query),
        act_ms: millis(timeouts.act),
        shutdown_ms: millis(timeouts.shutdown),
        reload_ms: millis(timeouts.reload),
    };
    let text = serde_json::to_vec(&record).map_err(io::Error::other)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no runtime folder to write to");
    for dir in places() {
        match prepare(&dir).and_then(|()| write_atomic(&dir, &file_name(&config), &text)) {
            Ok(path) => return Ok(RecordGuard { path }),
            Err(e) => {
                last = io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
            }
        }
    }
    Err(last)
}

/// The record of a live server started with `config`, if any.
pub fn find(config: &Path) -> Option<Record> {
    let config = canonical_config(config);
    let name = file_name(&config);
    places()
        .into_iter()
        .filter(|dir| trusted(dir))
        .filter_map(|dir| read(&dir.join(&name)))
        .find(|r| r.config == config && alive(r.pid) && r.socket.exists())
}

/// The places a record may be, in order.
fn places() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("VIGIL_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let uid = uid();
    let mut out = Vec::new();
    let user_run = PathBuf::from(format!("/run/user/{uid}"));
    if user_run.is_dir() {
        out.push(user_run.join("vigil"));
    }
    if uid == 0 {
        out.push(PathBuf::from("/run/vigil"));
    }
    out.push(std::env::temp_dir().join(format!("vigil-{uid}")));
    out
}

fn file_name(config: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let hash = xxhash_rust::xxh3::xxh3_64(config.as_os_str().as_bytes());
    format!("{hash:016x}.json")
}

/// Create `dir` (0700) if needed, and check it can be trusted.
fn prepare(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if trusted(dir) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a private folder of this user",
        ))
    }
}

/// A real directory, owned by us, closed to others.
fn trusted(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid() && m.mode() & 0o077 == 0)
}

fn write_atomic(dir: &Path, name: &str, text: &[u8]) -> io::Result<PathBuf> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

fn read(path: &Path) -> Option<Record> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_config_of_a_missing_file_keeps_its_folder_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let missing = dir.path().join("gone.ron");
        assert_eq!(canonical_config(&missing), real.join("gone.ron"));
        std::fs::write(&missing, "x").unwrap();
        assert_eq!(canonical_config(&missing), real.join("gone.ron"));
    }

    #[test]
    fn file_names_differ_per_config() {
        assert_ne!(
            file_name(Path::new("/a/config.ron")),
            file_name(Path::new("/b/config.ron"))
        );
        assert_eq!(file_name(Path::new("/a/config.ron")).len(), 21);
    }
}
