//! The guardian: a small child of the server that kills the server's workers when the server
//! dies, however it dies.
//!
//! Owns the guardian process (forked before the server starts any thread), the pipe that ties
//! it to the server, and the line protocol on that pipe. The server tells the guardian about
//! every spawn and every reap; the guardian keeps the list. When the pipe reaches end of file
//! — the server exited, cleanly or by `kill -9` — the guardian hands what is left to its caller
//! as [`Leftovers`], which `vigil serve` passes to the orphan sweep ([`crate::orphan`]): each
//! leftover group is verified, sent `SIGTERM`, then `SIGKILL`, and recorded with reason
//! `orphan`. It must not decide anything about restarts, and must not signal anything itself.
//!
//! # Why not `PR_SET_PDEATHSIG`
//! The parent-death signal has to be set between fork and exec, which forces a full `fork()`
//! of the server for every spawn (see [`crate::spawner`]), and it only ever reaches the
//! group leader: grandchildren outlived the server until the next start. The guardian kills
//! the whole group at once and writes the record, and spawns stay a `posix_spawn`.
//!
//! # Protocol (server → guardian, one line per `write`, atomic below `PIPE_BUF`)
//! ```text
//! ~ <pipe inode> <generation> <worker>        a spawn is about to happen
//! ! <pipe inode>                              it failed
//! + <pipe inode> <pid> <pgid> <start ticks> <generation> <started at> <worker>
//! - <pid>                                     reaped, and its group killed
//! K <cgroup directory>                        kill everything below it if the server dies
//! ```
//! `<pipe inode>` names the worker's output pipe. A spawn the server died in the middle of
//! (`~` without `+`) is found by that inode: the new process has it at fd 1.
//!
//! # Caveats
//! - The guardian holds the instance lock (inherited) until its cleanup is done: a server
//!   started right after a crash waits for it ([`crate::lock`]).
//! - It ignores `SIGINT`, `SIGTERM` and `SIGHUP` (a Ctrl-C reaches the server's whole process
//!   group; the server shuts down, then the guardian sees end of file with nothing left).
//! - If the pipe is full (the guardian stopped reading), a line is dropped and logged; the
//!   startup sweep still has the worker's row in `history.sqlite`.
//! - If the guardian dies, [`forget`] turns the link off: spawns fall back to a `fork()` with
//!   `PR_SET_PDEATHSIG` ([`crate::process`]).
//! - A server that exits on its own calls [`dismiss`] and waits for the guardian, so the
//!   guardian never holds the instance lock after the server is gone (unless it has leftovers
//!   to kill).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use crate::history::LiveProcess;
use crate::procfs;

/// The pipe may hold this much before the server has to drop a line (a 1000-worker storm
/// writes about 150 KiB).
const PIPE_SIZE: i32 = 1 << 20;

/// Which side of the fork this is.
#[derive(Debug)]
pub enum Role {
    /// The server, with a handle on its guardian.
    Server(Guardian),
    /// The guardian, after the server went away: what the server left behind.
    Guardian(Leftovers),
}

/// The server's handle on its guardian.
#[derive(Debug)]
pub struct Guardian {
    pid: u32,
}

impl Guardian {
    /// The guardian's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// What the server left running when it went away.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Workers spawned and not reaped.
    pub processes: Vec<LiveProcess>,
    /// Spawns the server died in the middle of.
    pub in_flight: Vec<InFlight>,
    /// The cgroup trees of the server's workers: everything still in them is killed.
    pub cgroups: Vec<std::path::PathBuf>,
}

/// A spawn that was announced but not confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// The inode of the worker's output pipe (its fd 1).
    pub pipe_inode: u64,
    /// The generation being spawned.
    pub generation: u64,
    /// The worker's name.
    pub worker: String,
}

/// Why the guardian could not be started.
#[derive(Debug, thiserror::Error)]
pub enum GuardianError {
    /// Forking is only sound while the process has one thread.
    #[error("the guardian must be started before any other thread ({0} threads running)")]
    Threads(usize),
    /// pipe or fork failed.
    #[error("cannot start the guardian: {0}")]
    Io(#[from] io::Error),
}

/// The server's end of the pipe, once the guardian runs.
struct Link {
    /// Writers share the read lock (one `write` per line is atomic); [`dismiss`] takes the
    /// write lock to close it.
    pipe: RwLock<Option<File>>,
    live: AtomicBool,
    dismissed: AtomicBool,
}

static LINK: OnceLock<Link> = OnceLock::new();

/// Fork the guardian. Must be called while the process has exactly one thread (checked).
///
/// Returns [`Role::Server`] in the caller, and — in the child, once the server's end of the
/// pipe has closed — [`Role::Guardian`] with the leftovers. The guardian should then clean
/// them up and exit; it must not return into the server's code path.
pub fn start() -> Result<Role, GuardianError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(GuardianError::Threads(threads));
    }
    let (read, write) = crate::fd::pipe_cloexec()?;
    // SAFETY: F_SETPIPE_SZ on our own pipe; failure (above the system maximum) is harmless.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    // SAFETY: the process has one thread (checked above), so the child is a complete copy in
    // which any code may run.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if pid == 0 {
        drop(write);
        become_guardian();
        return Ok(Role::Guardian(read_until_eof(File::from(read))));
    }
    drop(read);
    set_nonblocking(write.as_raw_fd())?;
    let _ = LINK.set(Link {
        pipe: RwLock::new(Some(File::from(write))),
        live: AtomicBool::new(true),
        dismissed: AtomicBool::new(false),
    });
    Ok(Role::Server(Guardian {
        pid: u32::try_from(pid).unwrap_or_default(),
    }))
}

/// Whether a guardian is watching this process's workers.
pub fn active() -> bool {
    LINK.get().is_some_and(|l| l.live.load(Ordering::Acquire))
}

/// Turn the link off (the guardian died): spawns fall back to `PR_SET_PDEATHSIG`.
pub fn forget() {
    if let Some(link) = LINK.get() {
        link.live.store(false, Ordering::Release);
    }
}

/// The server is exiting on its own: close the pipe, so the guardian cleans up whatever is
/// still registered (nothing, after a clean shutdown) and exits. The caller should then wait
/// for the guardian's exit, so that it never outlives the server holding the lock.
pub fn dismiss() {
    if let Some(link) = LINK.get() {
        link.dismissed.store(true, Ordering::Release);
        link.live.store(false, Ordering::Release);
        let closed = link.pipe.write().map(|mut p| p.take());
        drop(closed);
    }
}

/// Whether [`dismiss`] was called: the guardian's exit is then expected.
pub fn dismissed() -> bool {
    LINK.get()
        .is_some_and(|l| l.dismissed.load(Ordering::Acquire))
}

/// Announce a spawn of `worker`'s `generation` whose output pipe has inode `pipe_inode`.
pub(crate) fn spawning(pipe_inode: u64, generation: u64, worker: &str) {
    send(&format!("~ {pipe_inode} {generation} {worker}\n"));
}

/// The announced spawn failed.
pub(crate) fn spawn_failed(pipe_inode: u64) {
    send(&format!("! {pipe_inode}\n"));
}

/// The announced spawn succeeded.
pub(crate) fn spawned(pipe_inode: u64, p: &LiveProcess) {
    send(&format!(
        "+ {pipe_inode} {} {} {} {} {} {}\n",
        p.pid, p.pgid, p.start_ticks, p.generation, p.started_at, p.worker
    ));
}

/// Every process below cgroup `dir` is a worker's: kill them all if the server dies.
pub fn contain(dir: &std::path::Path) {
    send(&format!("K {}\n", dir.display()));
}

/// The leader `pid` was reaped and its group killed.
pub(crate) fn reaped(pid: u32) {
    send(&format!("- {pid}\n"));
}

fn send(line: &str) {
    let Some(link) = LINK.get() else {
        return;
    };
    if !link.live.load(Ordering::Acquire) {
        return;
    }
    let Ok(pipe) = link.pipe.read() else {
        return;
    };
    let Some(pipe) = pipe.as_ref() else {
        return;
    };
    // One write per line: a pipe write below PIPE_BUF is all or nothing, so concurrent
    // senders never interleave.
    match (&*pipe).write(line.as_bytes()) {
        Ok(n) if n == line.len() => {}
        Ok(n) => tracing::error!(written = n, "guardian pipe: short write"),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            tracing::warn!(line = line.trim_end(), "guardian pipe full: line dropped");
        }
        Err(e) => {
            tracing::error!(error = %e, "the guardian is gone; workers fall back to PR_SET_PDEATHSIG");
            link.live.store(false, Ordering::Release);
        }
    }
}

/// The guardian's own setup: a recognisable name, no stdin, deaf to the signals a terminal
/// or a service manager sends the server's group.
fn become_guardian() {
    // SAFETY: plain syscalls on constants and a static NUL-terminated name.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"vigil-guardian".as_ptr(), 0, 0, 0);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
    }
}

/// Follow the protocol until end of file; what is left is the server's leftovers.
fn read_until_eof(pipe: File) -> Leftovers {
    let mut live: HashMap<u32, LiveProcess> = HashMap::new();
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut cgroups = Vec::new();
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        if let Some(dir) = line.strip_prefix("K ") {
            cgroups.push(std::path::PathBuf::from(dir));
            continue;
        }
        apply_line(&line, &mut live, &mut in_flight);
    }
    let mut processes: Vec<LiveProcess> = live.into_values().collect();
    processes.sort_by_key(|p| p.pid);
    let mut in_flight: Vec<InFlight> = in_flight.into_values().collect();
    in_flight.sort_by_key(|f| f.pipe_inode);
    Leftovers {
        processes,
        in_flight,
        cgroups,
    }
}

/// One protocol line. Malformed lines are ignored (the server is the only writer).
fn apply_line(
    line: &str,
    live: &mut HashMap<u32, LiveProcess>,
    in_flight: &mut HashMap<u64, InFlight>,
) {
    let mut f = line.splitn(8, ' ');
    match f.next() {
        Some("~") => {
            let (Some(inode), Some(generation), Some(worker)) = (
                f.next().and_then(|v| v.parse().ok()),
                f.next().and_then(|v| v.parse().ok()),
                f.next(),
            ) else {
                return;
            };
            in_flight.insert(
                inode,
                InFlight {
                    pipe_inode: inode,
                    generation,
                    worker: worker.to_string(),
                },
            );
        }
        Some("!") => {
            if let Some(inode) = f.next().and_then(|v| v.parse::<u64>().ok()) {
                in_flight.remove(&inode);
            }
        }
        Some("+") => {
            let Some(inode) = f.next().and_then(|v| v.parse::<u64>().ok()) else {
                return;
            };
            let fields: Vec<&str> = f.collect();
            let [pid, pgid, ticks, generation, started_at, worker] = fields[..] else {
                return;
            };
            let (Ok(pid), Ok(pgid), Ok(start_ticks), Ok(generation)) =
                (pid.parse(), pgid.parse(), ticks.parse(), generation.parse())
            else {
                return;
            };
            in_flight.remove(&inode);
            live.insert(
                pid,
                LiveProcess {
                    worker: worker.to_string(),
                    pid,
                    pgid,
                    start_ticks,
                    generation,
                    started_at: started_at.to_string(),
                },
            );
        }
        Some("-") => {
            if let Some(pid) = f.next().and_then(|v| v.parse::<u32>().ok()) {
                live.remove(&pid);
            }
        }
        _ => {}
    }
}

impl Leftovers {
    /// Nothing was left running (no leader, no spawn in flight, no process in the workers'
    /// cgroups).
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.in_flight.is_empty()
            && self
                .cgroups
                .iter()
                .all(|d| crate::cgroup::tree_members(d).is_empty())
    }

    /// Every leftover as a row for the orphan sweep. A spawn in flight becomes a row when a
    /// group leader holding its output pipe at fd 1 is found; otherwise it never started.
    pub fn into_rows(self) -> Vec<LiveProcess> {
        let mut rows = self.processes;
        for f in self.in_flight {
            if let Some(s) = find_pipe_holder(f.pipe_inode) {
                rows.push(LiveProcess {
                    worker: f.worker,
                    pid: s.pid,
                    pgid: s.pgid,
                    start_ticks: s.start_ticks,
                    generation: f.generation,
                    started_at: crate::history::now_rfc3339(),
                });
            }
        }
        rows
    }
}

/// The group leader whose fd 1 is the pipe with inode `inode`.
fn find_pipe_holder(inode: u64) -> Option<procfs::ProcStat> {
    let want = format!("pipe:[{inode}]");
    procfs::pids()
        .ok()?
        .into_iter()
        .filter_map(procfs::stat)
        .filter(|s| s.pid == s.pgid && !s.is_dead())
        .find(|s| {
            std::fs::read_link(format!("/proc/{}/fd/1", s.pid))
                .is_ok_and(|l| l.as_os_str() == want.as_str())
        })
}

/// The inode of an open fd (to name a pipe in the protocol).
pub(crate) fn inode_of(fd: RawFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills `st` for an open fd; on failure we read the zeroed value.
    unsafe {
        libc::fstat(fd, st.as_mut_ptr());
        st.assume_init().st_ino
    }
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> (HashMap<u32, LiveProcess>, HashMap<u64, InFlight>) {
        let mut live = HashMap::new();
        let mut in_flight = HashMap::new();
        for l in lines {
            apply_line(l, &mut live, &mut in_flight);
        }
        (live, in_flight)
    }

    #[test]
    fn follows_spawns_and_reaps() {
        let (live, in_flight) = run(&[
            "~ 11 1 a",
            "+ 11 100 100 5000 1 2026-11-29T00:00:00Z a",
            "~ 12 1 b",
            "+ 12 200 200 5001 1 2026-11-29T00:00:01Z b",
            "- 100",
            "~ 13 2 a",
            "! 13",
            "~ 14 3 a",
        ]);
        assert_eq!(live.len(), 1);
        let b = &live[&200];
        assert_eq!((b.worker.as_str(), b.pgid, b.start_ticks), ("b", 200, 5001));
        assert_eq!(b.started_at, "2026-11-29T00:00:01Z");
        assert_eq!(
            in_flight.into_values().collect::<Vec<_>>(),
            vec![InFlight {
                pipe_inode: 14,
                generation: 3,
                worker: "a".into()
            }]
        );
    }

    #[test]
    fn malformed_lines_change_nothing() {
        let (live, in_flight) = run(&["", "+", "+ x 1 2 3 4 5 w", "+ 1 2 3", "~ 1", "- x", "? 1"]);
        assert!(live.is_empty() && in_flight.is_empty());
    }

    #[test]
    fn finds_the_process_holding_a_pipe_at_fd_1() {
        use std::os::unix::process::CommandExt;
        let (read, write) = crate::fd::pipe_cloexec().unwrap();
        let inode = inode_of(write.as_raw_fd());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdout(std::process::Stdio::from(write))
            .process_group(0)
            .spawn()
            .unwrap();
        let found = find_pipe_holder(inode).map(|s| s.pid);
        let _ = child.kill();
        let _ = child.wait();
        drop(read);
        assert_eq!(found, Some(child.id()));
        assert!(find_pipe_holder(u64::MAX).is_none());
    }
}
