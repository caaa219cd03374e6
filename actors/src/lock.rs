//! Single instance: `<data_dir>/vigil.lock`, held with `flock` for the server's lifetime.
//!
//! Owns the lock file: taking the lock, writing our pid into it, and reading the holder's pid
//! when the lock is taken. It must not remove the file (a second server could then lock a new
//! inode while the first still holds the old one) and must not touch anything else of a running
//! server.
//!
//! # Guarantees
//! - The lock is released by the kernel when the process dies, however it dies: no stale lock.
//!   The server's guardian ([`crate::guardian`]) shares it and keeps it until it has killed
//!   what a dead server left; a new server finding the lock held under a dead pid waits for
//!   that (up to [`CLEANUP_WAIT`]) instead of refusing.
//! - The fd is close-on-exec, so workers never inherit (and never prolong) the lock.
//!
//! # Caveats
//! - `flock` is per open file description: a second [`InstanceLock::acquire`] in the same
//!   process on the same path is refused too, which is what the tests use.
//! - The pid in a held lock is read, never trusted for anything but the message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another server holds the lock.
    #[error("already running (pid {pid})")]
    AlreadyRunning {
        /// The pid written by the holder (0 if it had not written it yet).
        pid: u32,
    },
    /// The previous server died and its guardian still holds the lock after [`CLEANUP_WAIT`].
    #[error("the previous server (pid {pid}) died and its cleanup has not finished")]
    CleanupPending {
        /// The dead server's pid.
        pid: u32,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How long a new server waits for the guardian of a dead one to finish its cleanup (the
/// sweep's grace, its wait after `SIGKILL`, and margin).
pub const CLEANUP_WAIT: Duration = Duration::from_secs(15);

/// The held lock; released when dropped (closing the fd), or when the process dies.
///
/// There is deliberately no explicit `LOCK_UN`: it would release the lock for every fd sharing
/// the open file description, hiding a leaked copy instead of revealing it.
#[derive(Debug)]
pub struct InstanceLock {
    /// Holding the open file is holding the lock.
    #[allow(dead_code)]
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Take `path` (typically `<data_dir>/vigil.lock`, created if missing; its directory must
    /// exist) with `flock(LOCK_EX | LOCK_NB)`, then write our pid into it.
    pub fn acquire(path: &Path) -> Result<InstanceLock, LockError> {
        InstanceLock::acquire_or_wait(path, |_| {})
    }

    /// [`InstanceLock::acquire`], calling `on_wait(pid)` once if it has to wait for the
    /// guardian of dead server `pid` (so the caller can say why it pauses).
    pub fn acquire_or_wait(
        path: &Path,
        on_wait: impl FnOnce(u32),
    ) -> Result<InstanceLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        // std opens with O_CLOEXEC. Not truncated on open: the holder's pid must stay readable.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if !try_flock(&file).map_err(io)? {
            let pid = read_holder_pid(&mut file);
            if pid == 0 || server_alive(pid) {
                return Err(LockError::AlreadyRunning { pid });
            }
            // The server that wrote its pid is dead, yet the lock is held: its guardian is
            // killing what it left behind. Wait for that to finish.
            on_wait(pid);
            let deadline = Instant::now() + CLEANUP_WAIT;
            while !try_flock(&file).map_err(io)? {
                if Instant::now() >= deadline {
                    return Err(LockError::CleanupPending { pid });
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        file.flush().map_err(io)?;
        Ok(InstanceLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when someone else holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Whether the process that wrote `pid` into the lock may still be running (a zombie is not).
fn server_alive(pid: u32) -> bool {
    crate::procfs::stat(pid).is_some_and(|s| !s.is_dead())
}

/// The pid the holder wrote. It truncates then writes right after locking, so an empty file is
/// re-read for a short while before giving up (0).
fn read_holder_pid(file: &mut File) -> u32 {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if let Ok(pid) = text.trim().parse::<u32>() {
            return pid;
        }
        if read.is_err() || Instant::now() >= deadline {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.lock");
        std::fs::write(&path, "999999\nold junk that must go\n").unwrap();
        let first = InstanceLock::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let err = InstanceLock::acquire(&path).unwrap_err();
        assert!(matches!(err, LockError::AlreadyRunning { pid } if pid == std::process::id()));
        assert_eq!(
            err.to_string(),
            format!("already running (pid {})", std::process::id())
        );
        // The refused attempt touched nothing.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(first);
        // Other tests in this process spawn concurrently, and a spawning child holds a copy of
        // every fd until its exec closes the close-on-exec ones: allow a moment for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let again = loop {
            match InstanceLock::acquire(&path) {
                Ok(lock) => break lock,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        assert_eq!(again.path(), path);
    }

    #[test]
    fn the_lock_fd_is_close_on_exec() {
        let dir = tempfile::tempdir().unwrap();
        let lock = InstanceLock::acquire(&dir.path().join("vigil.lock")).unwrap();
        // SAFETY: F_GETFD on an fd we own.
        let flags = unsafe { libc::fcntl(lock.file.as_raw_fd(), libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn workers_do_not_inherit_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.lock");
        let lock = InstanceLock::acquire(&path).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        drop(lock);
        // The child (still alive, for 100 s) holds no copy of the fd: the lock is free. Other
        // tests fork concurrently in this process, and a fork holds every fd until its exec
        // closes the close-on-exec ones, so allow a moment for such a stranger to exec.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let again = loop {
            let again = InstanceLock::acquire(&path);
            if again.is_ok() || std::time::Instant::now() > deadline {
                break again;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn another_process_sees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.lock");
        let flock = |p: &Path| {
            std::process::Command::new("flock")
                .args(["-n", "-E", "42"])
                .arg(p)
                .arg("true")
                .status()
        };
        let Ok(free) = flock(&path) else {
            eprintln!("no flock(1) here; covered by the same-process test");
            return;
        };
        assert_eq!(free.code(), Some(0));
        let lock = InstanceLock::acquire(&path).unwrap();
        assert_eq!(
            flock(&path).unwrap().code(),
            Some(42),
            "held against another process"
        );
        drop(lock);
        assert_eq!(flock(&path).unwrap().code(), Some(0));
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = InstanceLock::acquire(&dir.path().join("nope/vigil.lock")).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
    }
}
