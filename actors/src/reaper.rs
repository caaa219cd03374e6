//! The server as a child subreaper: orphaned descendants of workers are re-parented to it
//! (`PR_SET_CHILD_SUBREAPER`) instead of to PID 1, and every zombie among its children that is
//! not a worker leader is reaped — also when `vigil serve` *is* PID 1, in a container.
//!
//! Owns the registry of children somebody else waits for (worker leaders, awaited on their
//! pidfd by [`crate::process`]; the guardian, awaited by `vigil serve`): those are never
//! reaped here, or their exit status would be lost. A spawn holds [`Registry::lock`] from
//! before the child exists until its pid is registered, and the reaper holds it while it
//! scans, so a leader that exits at once is never mistaken for an orphan. It must not signal
//! or decide anything.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

static MANAGED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The registry of children that are awaited elsewhere, locked.
pub struct Registry<'a>(MutexGuard<'a, Option<HashSet<u32>>>);

impl Registry<'_> {
    /// Lock the registry (held across a spawn, so the new pid is registered before any scan).
    pub fn lock() -> Registry<'static> {
        Registry(MANAGED.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `pid` is awaited by its owner; the reaper leaves it alone.
    pub fn register(&mut self, pid: u32) {
        self.0.get_or_insert_with(HashSet::new).insert(pid);
    }
}

/// `pid` has been reaped by its owner.
pub fn release(pid: u32) {
    if let Some(set) = MANAGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        set.remove(&pid);
    }
}

/// Make this process a child subreaper. From now on [`reap_orphans`] must run on every
/// `SIGCHLD` (see [`run`]).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    ACTIVE.store(true, Ordering::Release);
    Ok(())
}

/// Whether this process adopts orphans.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Reap every child that is a zombie and not registered. Returns how many were reaped.
pub fn reap_orphans() -> usize {
    reap_unmanaged(children())
}

/// Reap those of `candidates` that are zombies and not registered.
fn reap_unmanaged(candidates: Vec<u32>) -> usize {
    let registry = Registry::lock();
    let managed = registry.0.as_ref();
    let mut reaped = 0;
    for pid in candidates {
        if managed.is_some_and(|m| m.contains(&pid)) {
            continue;
        }
        if !is_zombie(pid) {
            continue;
        }
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            continue;
        };
        let mut status = 0;
        // SAFETY: waitpid on one of our own children, with a valid status pointer.
        if unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) } == raw {
            reaped += 1;
            tracing::debug!(pid, status, "reaped an adopted orphan");
        }
    }
    reaped
}

/// Reap orphans on every `SIGCHLD`, until the runtime ends.
pub async fn run() {
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGCHLD; adopted orphans are not reaped");
            return;
        }
    };
    loop {
        reap_orphans();
        if sigchld.recv().await.is_none() {
            return;
        }
    }
}

/// The pids of this process's children: every thread's `children` file where the kernel has
/// them (`CONFIG_PROC_CHILDREN`), else a scan of `/proc/<pid>/stat` for our pid as the parent.
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    let mut have_files = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                have_files = true;
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    if have_files {
        return out;
    }
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1.to_string();
                after.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        if parent == Some(me) {
            out.push(pid);
        }
    }
    out
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_child_is_seen_and_a_registered_one_is_left_alone() {
        // Two children that exit at once; one registered.
        let spawn = || {
            std::process::Command::new("true")
                .spawn()
                .expect("spawn true")
        };
        let mine = spawn();
        let other = spawn();
        let mine_pid = mine.id();
        let other_pid = other.id();
        Registry::lock().register(mine_pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !(is_zombie(mine_pid) && is_zombie(other_pid)) {
            assert!(
                std::time::Instant::now() < deadline,
                "children never exited"
            );
            std::thread::yield_now();
        }
        assert!(children().contains(&other_pid));
        // Only these two: other tests of this process wait for children of their own.
        assert_eq!(reap_unmanaged(vec![mine_pid, other_pid]), 1);
        assert!(
            !children().contains(&other_pid),
            "the orphan was not reaped"
        );
        assert!(is_zombie(mine_pid), "a registered child was reaped");
        let mut mine = mine;
        assert!(mine.wait().expect("wait").success());
        release(mine_pid);
        std::mem::forget(other);
    }
}
