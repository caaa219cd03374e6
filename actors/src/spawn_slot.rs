//! fd 3 of the server, lent to one spawn at a time: how a worker gets its notify pipe at fd 3
//! without code running between fork and exec.
//!
//! Owns the reservation of fd 3 (a `/dev/null` placeholder, close-on-exec) and the spawn lock.
//! For the length of one spawn, fd 3 is pointed at that worker's notify pipe *without*
//! close-on-exec; the new process inherits it at fd 3; then the placeholder is put back. No
//! other fd of the server is inheritable, so the child gets stdio and fd 3, nothing else.
//!
//! Why: a `pre_exec` closure (the other way to put a pipe at fd 3) forces the standard library
//! to `fork()` the whole server; without one it uses `posix_spawn`, which on Linux is a
//! `clone(CLONE_VM | CLONE_VFORK)` that copies no page tables. That is most of the difference
//! between a restart at 1.2× and at 1.7× the cost of a bare spawn loop (see BENCHMARKS.md).
//! It must not spawn anything itself, or know about workers: [`crate::process`] does.
//!
//! # Caveats
//! - [`reserve`] takes fd 3 from whoever had it and marks every other inherited fd
//!   close-on-exec. Call it first thing in a program that supervises (`vigil serve` does),
//!   before anything else opens files.
//! - Spawns are serialised by the lock. A `posix_spawn` holds it for about 0.1 ms.
//! - Another thread spawning processes through its own code (not [`lend`]) during a lend would
//!   inherit that worker's notify pipe. Everything in vigil spawns through [`crate::process`].

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// The fd number every worker finds its notify pipe at (`VIGIL_NOTIFY_FD=3`): a shell can
/// only redirect to single-digit fds.
pub const NOTIFY_FD: RawFd = 3;

/// The reserved slot: fd 3 itself is owned by no Rust value (nothing may close it); between
/// spawns it is a close-on-exec copy of `placeholder`.
struct Slot {
    /// `/dev/null`, close-on-exec, at an fd number above 3.
    placeholder: OwnedFd,
    lock: Mutex<()>,
}

static SLOT: OnceLock<Slot> = OnceLock::new();

/// Reserve fd 3 for notify pipes, and make every other inherited fd close-on-exec. Idempotent.
pub fn reserve() -> io::Result<()> {
    if SLOT.get().is_some() {
        return Ok(());
    }
    // std opens close-on-exec.
    let null = File::open("/dev/null")?;
    // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new fd >= 4 or -1.
    let raw = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, NOTIFY_FD + 1) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just created and is owned by nobody else.
    let placeholder = unsafe { OwnedFd::from_raw_fd(raw) };
    dup3(placeholder.as_raw_fd(), NOTIFY_FD, libc::O_CLOEXEC)?;
    if null.as_raw_fd() == NOTIFY_FD {
        // The open landed on fd 3, which dup3 has just replaced: fd 3 is the slot's now.
        std::mem::forget(null);
    }
    cloexec_from(NOTIFY_FD + 1);
    let slot = Slot {
        placeholder,
        lock: Mutex::new(()),
    };
    // Another thread may have reserved first: then fd 3 is a placeholder either way.
    let _ = SLOT.set(slot);
    Ok(())
}

/// Whether [`reserve`] has run: spawns may then go without a `pre_exec`.
pub fn reserved() -> bool {
    SLOT.get().is_some()
}

/// Run `spawn` with fd 3 pointing at `notify` (inheritable), then restore the placeholder.
/// `None` when the slot was never reserved. Holds the spawn lock throughout.
pub fn lend<R>(notify: &OwnedFd, spawn: impl FnOnce() -> R) -> Option<io::Result<R>> {
    let slot = SLOT.get()?;
    // A panic while lending cannot leave fd 3 half-done (it is restored below first), so a
    // poisoned lock is still a good lock.
    let _held = slot.lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = dup3(notify.as_raw_fd(), NOTIFY_FD, 0) {
        return Some(Err(e));
    }
    let out = spawn();
    let restored = dup3(slot.placeholder.as_raw_fd(), NOTIFY_FD, libc::O_CLOEXEC);
    if let Err(e) = restored {
        // fd 3 still points at this worker's pipe (the next spawn replaces it). dup3 between
        // two open fds does not fail in practice; say it loudly if it ever does.
        tracing::error!(error = %e, "cannot restore the notify fd placeholder");
    }
    Some(Ok(out))
}

fn dup3(from: RawFd, to: RawFd, flags: i32) -> io::Result<()> {
    // SAFETY: dup3 on two integers; `to` is fd 3, reserved for this module.
    if unsafe { libc::dup3(from, to, flags) } == to {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mark every fd >= `first` close-on-exec (`close_range(CLOSE_RANGE_CLOEXEC)`, Linux 5.11;
/// older kernels: each fd listed in `/proc/self/fd`).
fn cloexec_from(first: RawFd) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let Ok(low) = libc::c_uint::try_from(first) else {
        return;
    };
    // SAFETY: close_range with the CLOEXEC flag only changes descriptor flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            low,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|&fd| fd >= first) {
        // SAFETY: F_GETFD/F_SETFD on an fd number; a closed one just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
