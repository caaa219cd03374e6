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
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// The fd number every worker finds its notify pipe at (`VIGIL_NOTIFY_FD=3`): a shell can
/// only redirect to single-digit fds.
pub const NOTIFY_FD: RawFd = 3;

/// The reserved slot: the placeholder that fd 3 points at between spawns.
struct Slot {
    placeholder: File,
    lock: Mutex<()>,
}

static SLOT: OnceLock<Slot> = OnceLock::new();

/// Reserve fd 3 for notify pipes, and make every other inherited fd close-on-exec. Idempotent.
pub fn reserve() -> io::Result<()> {
    if SLOT.get().is_some() {
        return Ok(());
    }
    // std opens close-on-exec.
    let opened = File::open("/dev/null")?;
    let placeholder = if opened.as_raw_fd() == NOTIFY_FD {
        opened
    } else {
        dup3(opened.as_raw_fd(), NOTIFY_FD, libc::O_CLOEXEC)?;
        drop(opened);
        // SAFETY: fd 3 is now a close-on-exec duplicate of /dev/null that only this module
        // uses; nothing else owns it.
        unsafe { std::os::fd::FromRawFd::from_raw_fd(NOTIFY_FD) }
    };
    cloexec_from(NOTIFY_FD + 1);
    let slot = Slot {
        placeholder,
        lock: Mutex::new(()),
    };
    if let Err(slot) = SLOT.set(slot) {
        // Another thread reserved first; fd 3 is its placeholder already. Keep it open.
        std::mem::forget(slot.placeholder);
    }
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
        // fd 3 still points at a worker's pipe: later workers would share it. Nothing sane
        // is left to do; say it loudly (dup3 onto an open fd we own does not fail in practice).
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
