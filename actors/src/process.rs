//! A worker's process group: spawn as group leader, signal the group, kill the group on drop.
//!
//! Owns the one place where a worker process is created (through process-wrap's
//! `ProcessGroup::leader()`), its output and notify pipes, its `VIGIL_*` environment, and the
//! [`ProcessGroup`] handle. A task awaits the leader's exit — nothing polls — then kills what is
//! left of the group, collects the output tail, and reports one [`ProcessEvent::Exited`]. It
//! must not decide restarts or touch the history: it reports, the WorkerSupervisor decides.
//!
//! # Guarantees
//! - The worker is the leader of a new process group (pgid = pid); every signal vigil sends
//!   goes to the whole group (`killpg`), so grandchildren never outlive a stop or restart.
//! - After the leader exits, the rest of its group is sent `SIGKILL` before the exit is reported.
//! - Dropping a [`ProcessGroup`] whose leader has not been reaped sends `SIGKILL` to the group:
//!   cleanup does not depend on ractor's `post_stop`, which is skipped when an actor is killed.
//! - If the server dies, the group dies: with a [`crate::guardian`] running (`vigil serve`),
//!   the guardian kills every group the server left; without one, the leader gets
//!   `PR_SET_PDEATHSIG(SIGKILL)` and the orphan sweep at the next start finds the rest.
//! - The notify pipe is always fd 3 in the worker.
//!
//! # Two ways to spawn
//! - **With a guardian and [`crate::spawn_slot`] reserved** (the server): nothing runs between
//!   fork and exec, so the standard library uses `posix_spawn` (`clone(CLONE_VM|CLONE_VFORK)`:
//!   no copy of the server's page tables). fd 3 is lent to the spawn by `spawn_slot`; the spawn
//!   is announced to the guardian before it happens and confirmed after.
//! - **Otherwise** (a library user without a guardian): a `pre_exec` sets
//!   `PR_SET_PDEATHSIG(SIGKILL)`, checks that the parent is still alive, and moves the notify
//!   pipe to fd 3; the standard library has to `fork()` for that.
//!
//! # Caveats
//! - `PR_SET_PDEATHSIG` (second way only) fires when the *thread* that forked exits. Spawn only
//!   from threads that live as long as the server (tokio runtime workers: never from
//!   `spawn_blocking`).
//! - A process that leaves the group (`setsid`, `setpgid`) escapes group signals, as with every
//!   process-group supervisor.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use process_wrap::tokio::{CommandWrap, ProcessGroup as GroupWrap};

use crate::guardian;
use crate::history::LiveProcess;
use crate::logfile::{self, LogFile};
use crate::notify::{self, NotifyEvent};
use crate::signal::Signal;
use crate::spec::Launch;

/// The fd number of the notify pipe in every worker (`VIGIL_NOTIFY_FD=3`).
pub use crate::spawn_slot::NOTIFY_FD;

/// How long to wait, after the group is killed, for the output pipe to close (a process that
/// left the group may still hold it).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);

/// What a running process reports to its supervisor.
#[derive(Debug)]
pub enum ProcessEvent {
    /// A notify line from the worker.
    Notify(NotifyEvent),
    /// The leader exited (and the rest of its group was killed).
    Exited(ExitReport),
}

/// How the leader ended, and what it last wrote.
#[derive(Debug)]
pub struct ExitReport {
    /// The wait status, or the error `wait` returned.
    pub status: io::Result<ExitStatus>,
    /// The last lines of output of this run.
    pub log_tail: Vec<String>,
    /// Wall-clock exit time.
    pub exited_at: SystemTime,
    /// Monotonic exit time.
    pub exited: Instant,
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A pipe could not be created.
    #[error("cannot create a pipe: {0}")]
    Pipe(#[source] io::Error),
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Exec {
        /// `argv[0]`.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// argv was empty.
    #[error("empty argv")]
    EmptyArgv,
}

/// What to spawn.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    /// The worker's name (`VIGIL_WORKER`).
    pub name: &'a str,
    /// The generation (`VIGIL_GENERATION`).
    pub generation: u64,
    /// argv, env, cwd.
    pub launch: &'a Launch,
    /// Where its output goes.
    pub log: &'a LogFile,
}

/// A live process group led by a worker. Dropping it kills the group unless it was reaped.
#[derive(Debug)]
pub struct ProcessGroup {
    pid: u32,
    started_at: SystemTime,
    started: Instant,
    start_ticks: Option<u64>,
    reaped: Arc<AtomicBool>,
}

impl ProcessGroup {
    /// The leader's pid (also the group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process group id (equal to the leader's pid).
    pub fn pgid(&self) -> u32 {
        self.pid
    }

    /// Wall-clock start time.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Monotonic start time.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The leader's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub fn start_ticks(&self) -> Option<u64> {
        self.start_ticks
    }

    /// Send `signal` to every member of the group. Does nothing once the leader was reaped
    /// and the group cleaned up (its id may be reused).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.reaped.load(Ordering::Acquire) {
            return Ok(());
        }
        killpg(self.pid, signal.number())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.reaped.load(Ordering::Acquire) {
            let _ = killpg(self.pid, libc::SIGKILL);
        }
    }
}

fn killpg(pgid: u32, sig: i32) -> io::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pgid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: killpg has no memory-safety preconditions; pgid > 1 so it never targets
    // init's group or "every process".
    if unsafe { libc::killpg(pgid, sig) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid 2-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Spawn a worker as the leader of a new process group.
///
/// `on_event` is called from the process's own tasks: for each notify line, and once when the
/// leader has exited. It must be cheap (send a message).
pub fn spawn(
    req: &SpawnRequest<'_>,
    on_event: impl Fn(ProcessEvent) + Send + Sync + 'static,
) -> Result<ProcessGroup, SpawnError> {
    let (program, args) = req.launch.argv.split_first().ok_or(SpawnError::EmptyArgv)?;
    let (out_read, out_write) = pipe_cloexec().map_err(SpawnError::Pipe)?;
    let (notify_read, notify_write) = pipe_cloexec().map_err(SpawnError::Pipe)?;
    let err_write = out_write.try_clone().map_err(SpawnError::Pipe)?;
    let notify_src = notify_write.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let guarded = guardian::active() && crate::spawn_slot::reserved();
    let pipe_inode = if guarded {
        guardian::inode_of(out_write.as_raw_fd())
    } else {
        0
    };

    let mut wrap = CommandWrap::with_new(program, |cmd| {
        cmd.args(args)
            .envs(&req.launch.env)
            .env("VIGIL_WORKER", req.name)
            .env("VIGIL_GENERATION", req.generation.to_string())
            .env("VIGIL_NOTIFY_FD", NOTIFY_FD.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(out_write))
            .stderr(std::process::Stdio::from(err_write));
        // The server's own systemd variables are not the worker's.
        for var in crate::sd_notify::ENV_VARS {
            cmd.env_remove(var);
        }
        if let Some(cwd) = &req.launch.cwd {
            cmd.current_dir(cwd);
        }
        if !guarded {
            // SAFETY: the closure runs between fork and exec and only calls
            // async-signal-safe functions (prctl, getppid, fcntl, dup2) on copied values.
            unsafe {
                cmd.pre_exec(move || pdeathsig_and_notify_fd(parent, notify_src));
            }
        }
    });
    wrap.wrap(GroupWrap::leader());
    let spawned = if guarded {
        guardian::spawning(pipe_inode, req.generation, req.name);
        match crate::spawn_slot::lend(&notify_write, || wrap.spawn()) {
            Some(Ok(spawned)) => spawned,
            Some(Err(e)) => Err(e),
            None => Err(io::Error::other("the notify fd slot is not reserved")),
        }
    } else {
        wrap.spawn()
    };
    // Our copies of the write ends must close now, or the pipes never reach end of file.
    drop(wrap);
    drop(notify_write);
    let mut child = match spawned {
        Ok(child) => child,
        Err(source) => {
            if guarded {
                guardian::spawn_failed(pipe_inode);
            }
            return Err(SpawnError::Exec {
                program: program.to_string_lossy().into_owned(),
                source,
            });
        }
    };
    let started = Instant::now();
    let started_at = SystemTime::now();
    let Some(pid) = child.id() else {
        if guarded {
            guardian::spawn_failed(pipe_inode);
        }
        return Err(SpawnError::Exec {
            program: program.to_string_lossy().into_owned(),
            source: io::Error::other("the process was reaped before its pid was read"),
        });
    };
    let start_ticks = crate::procfs::start_ticks(pid);
    if guarded {
        match start_ticks {
            Some(start_ticks) => guardian::spawned(
                pipe_inode,
                &LiveProcess {
                    worker: req.name.to_string(),
                    pid,
                    pgid: pid,
                    start_ticks,
                    generation: req.generation,
                    started_at: crate::worker_supervisor::rfc3339(started_at),
                },
            ),
            // Gone already: its exit is on the way; nothing for the guardian to watch.
            None => guardian::spawn_failed(pipe_inode),
        }
    }
    let reaped = Arc::new(AtomicBool::new(false));
    let on_event = Arc::new(on_event);

    let log = req.log.clone();
    let capture = match tokio::net::unix::pipe::Receiver::from_owned_fd(out_read) {
        Ok(rx) => Some(tokio::spawn(logfile::capture(rx, log))),
        Err(e) => {
            tracing::warn!(pid, error = %e, "cannot read worker output");
            None
        }
    };
    match tokio::net::unix::pipe::Receiver::from_owned_fd(notify_read) {
        Ok(rx) => {
            let sink = on_event.clone();
            tokio::spawn(notify::read_events(rx, move |ev| {
                sink(ProcessEvent::Notify(ev))
            }));
        }
        Err(e) => tracing::warn!(pid, error = %e, "cannot read worker notify pipe"),
    }

    let reaped_flag = reaped.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        let exited = Instant::now();
        let exited_at = SystemTime::now();
        // The leader is gone: nothing of its group may outlive it.
        let _ = killpg(pid, libc::SIGKILL);
        reaped_flag.store(true, Ordering::Release);
        if guarded {
            guardian::reaped(pid);
        }
        let log_tail = match capture {
            Some(task) => match tokio::time::timeout(DRAIN_TIMEOUT, task).await {
                Ok(Ok(tail)) => tail.into_lines(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        on_event(ProcessEvent::Exited(ExitReport {
            status,
            log_tail,
            exited_at,
            exited,
        }));
    });

    Ok(ProcessGroup {
        pid,
        started_at,
        started,
        start_ticks,
        reaped,
    })
}

/// The `pre_exec` of a spawn without a guardian: die with the server, notify pipe at fd 3.
///
/// Runs between fork and exec: only async-signal-safe calls.
fn pdeathsig_and_notify_fd(parent: libc::pid_t, notify_src: RawFd) -> io::Result<()> {
    // SAFETY: prctl, getppid, fcntl and dup2 are async-signal-safe syscalls on integers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The server may have died between fork and prctl: then nobody will kill us.
        if libc::getppid() != parent {
            return Err(io::Error::other("the server exited during spawn"));
        }
        // dup2 clears close-on-exec on the copy; when the pipe already is fd 3, clear it by
        // hand.
        if notify_src == NOTIFY_FD {
            if libc::fcntl(NOTIFY_FD, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        } else if libc::dup2(notify_src, NOTIFY_FD) != NOTIFY_FD {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
