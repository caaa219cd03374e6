//! A worker's processes: spawn the leader (into its cgroup, as a process-group leader), wait
//! for it, signal all of it, kill all of it on exit and on drop, watch for OOM kills.
//!
//! Owns a worker's output and notify pipes, its `VIGIL_*` environment, the pidfd its exit is
//! awaited on, the OOM watch of its run, and the [`ProcessGroup`] handle. The process itself is
//! created by [`crate::spawner`]. A task awaits the leader's exit on its pidfd — nothing polls —
//! then reaps it (`waitid(P_PIDFD)`), kills what is left of the worker, reads the kernel's
//! evidence (OOM kills, peak memory), collects the output tail, and reports one
//! [`ProcessEvent::Exited`]. It must not decide restarts or touch the history (a spawn and a
//! reap are written down only through its request's [`SpawnJournal`]): it reports, the
//! WorkerSupervisor decides.
//!
//! # Guarantees
//! - With cgroup containment ([`crate::containment`]), the worker joins its cgroup before
//!   `execve`: everything it forks, also what leaves its group or session, is a member.
//! - The worker leads a new process group (pgid = pid); a signal goes to the group (`killpg`)
//!   and then to every cgroup member outside it, so each process gets it once.
//! - After the leader exits, every other process of the worker gets `SIGKILL` (`cgroup.kill`,
//!   or `killpg` without a cgroup) before the exit is reported; how many there were is in the
//!   report.
//! - When the OOM killer kills any process of the worker, the whole worker is killed.
//! - Dropping a [`ProcessGroup`] whose leader has not been reaped kills all of it: cleanup does
//!   not depend on ractor's `post_stop`, which is skipped when an actor is killed.
//! - If the server dies, the worker dies: with a [`crate::guardian`] running (`vigil serve`),
//!   the guardian kills every group and cgroup the server left (each spawn is announced to it
//!   before it happens and confirmed after); without one, the leader gets
//!   `PR_SET_PDEATHSIG(SIGKILL)` and the orphan sweep at the next start finds the rest.
//! - The worker gets stdin (`/dev/null`), stdout and stderr (its log pipe) and its notify pipe
//!   at fd 3; nothing else of the server.
//!
//! # Caveats
//! - Without a cgroup, a process that leaves the group (`setsid`, `setpgid`) escapes group
//!   signals, as with every process-group supervisor.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::cgroup::{CgroupError, Evidence, Limits, OomWatch, WorkerCgroup};
use crate::environ;
use crate::fd::pipe_cloexec;
use crate::history::LiveProcess;
use crate::logfile::{self, LogFile};
use crate::notify::{self, NotifyEvent};
use crate::signal::Signal;
use crate::spawn_journal::SpawnJournal;
use crate::spawner::{self, SpawnJob};
use crate::spec::Launch;

/// The fd number of the notify pipe in every worker (`VIGIL_NOTIFY_FD=3`).
pub use crate::spawner::NOTIFY_FD;

/// How long to wait, after the group is killed, for the output pipe to close (a process that
/// left the group may still hold it).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);

/// After a memory event, how often and how many times the OOM kill counter is read again.
const OOM_RECHECK_EVERY: Duration = Duration::from_millis(10);
const OOM_RECHECKS: u32 = 100;

/// How long to wait, after SIGKILL to a worker's cgroup, for the kernel to say it is empty.
const CGROUP_EMPTY_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// What the kernel says about the run (cgroup containment only; default otherwise).
    pub evidence: Evidence,
    /// Processes of the worker still alive when its leader exited (killed then).
    pub survivors: usize,
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
    /// The worker's cgroup could not be prepared (or its limits written).
    #[error("cannot prepare the worker's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    /// Limits were configured but nothing can enforce them.
    #[error(
        "limits (memory_max, pids_max, cpu_max) need a cgroup, and this server has none \
         (containment: process-group); not started without them"
    )]
    LimitsUnenforceable,
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
    /// Its cgroup, when the server contains workers in cgroups.
    pub cgroup: Option<&'a WorkerCgroup>,
    /// Its resource limits.
    pub limits: &'a Limits,
    /// This run's identifier (`VIGIL_RUN_ID`).
    pub run_id: &'a str,
    /// Credentials and the variables below the `VIGIL_*` ones (the launch's `env` included).
    pub setup: &'a environ::Prepared,
    /// Where the spawn and the reap are written down (the guardian, the history).
    pub journal: &'a SpawnJournal,
}

/// A live process group led by a worker. Dropping it kills the group unless it was reaped.
#[derive(Debug)]
pub struct ProcessGroup {
    pid: u32,
    started_at: SystemTime,
    started: Instant,
    identity: Option<LiveProcess>,
    reaped: Arc<AtomicBool>,
    cgroup: Option<WorkerCgroup>,
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

    /// What identifies the leader beyond its pid (its start time in clock ticks since boot,
    /// `/proc/<pid>/stat` field 22): the record the history's `live_processes` table and the
    /// guardian keep. `None` when the start time could not be read (the leader was already
    /// gone): such a process can never be verified, so nobody records it.
    pub fn identity(&self) -> Option<&LiveProcess> {
        self.identity.as_ref()
    }

    /// The worker's cgroup, when it has one.
    pub fn cgroup(&self) -> Option<&WorkerCgroup> {
        self.cgroup.as_ref()
    }

    /// Send `signal` to every process of the worker: its process group and, with a cgroup,
    /// every member of it (also those that left the group with `setsid`). Does nothing once
    /// the leader was reaped and the group cleaned up (its id may be reused).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.reaped.load(Ordering::Acquire) {
            return Ok(());
        }
        let group = killpg(self.pid, signal.number());
        if let Some(cg) = &self.cgroup {
            if signal.number() == libc::SIGKILL {
                cg.kill_all();
            } else {
                cg.signal_outside_group(signal.number(), self.pid);
            }
        }
        group
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.reaped.load(Ordering::Acquire) {
            if let Some(cg) = &self.cgroup {
                cg.kill_all();
            }
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

/// An `RLIMIT_NOFILE` above the server's own hard limit needs `CAP_SYS_RESOURCE`: say what
/// the limit is, so the fix (a lower `limits.nofile`, or a higher `LimitNOFILE=`) is plain.
fn explain_nofile(e: io::Error, nofile: Option<u64>) -> io::Error {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a valid rlimit.
    let hard =
        (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_max);
    match (nofile, hard) {
        (Some(n), Some(hard))
            if e.raw_os_error().is_none()
                && n > hard
                && e.kind() == io::ErrorKind::PermissionDenied =>
        {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}; the server's own hard limit is {hard} (raising it needs CAP_SYS_RESOURCE)"
                ),
            )
        }
        _ => e,
    }
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
    let baseline = match req.cgroup {
        Some(cg) => Some(cg.prepare(req.limits)?),
        None if req.limits.needs_cgroup() => return Err(SpawnError::LimitsUnenforceable),
        None => None,
    };
    let (out_read, out_write) = pipe_cloexec().map_err(SpawnError::Pipe)?;
    let (notify_read, notify_write) = pipe_cloexec().map_err(SpawnError::Pipe)?;
    // The guardian hears of the spawn before it happens.
    let pending = req
        .journal
        .spawning(out_write.as_raw_fd(), req.generation, req.name);
    let guarded = pending.guarded();
    let mut env: Vec<(OsString, OsString)> = req.setup.env.clone();
    env.push(("VIGIL_WORKER".into(), req.name.into()));
    env.push(("VIGIL_GENERATION".into(), req.generation.to_string().into()));
    env.push(("VIGIL_RUN_ID".into(), req.run_id.into()));
    env.push(("VIGIL_NOTIFY_FD".into(), NOTIFY_FD.to_string().into()));
    let job = SpawnJob {
        program: program.clone(),
        args: args.to_vec(),
        env,
        // The server's own systemd variables are not the worker's.
        env_remove: crate::sd_notify::ENV_VARS
            .iter()
            .map(OsString::from)
            .collect(),
        cwd: req.launch.cwd.clone(),
        stdout: out_write.as_raw_fd(),
        stderr: out_write.as_raw_fd(),
        notify: notify_write.as_raw_fd(),
        // Without a guardian, the leader must die with the server by itself.
        // SAFETY: getpid has no preconditions.
        pdeathsig_parent: (!guarded).then(|| unsafe { libc::getpid() }),
        clear_env: req.setup.clear_env,
        cgroup_v2: req.cgroup.and_then(|cg| cg.v2_dir().map(PathBuf::from)),
        cgroup_procs: req
            .cgroup
            .map(|cg| cg.v1_procs_files(req.limits))
            .unwrap_or_default(),
        nofile: req.limits.nofile,
        credentials: req.setup.credentials.clone(),
    };
    // The reaper must not take the new leader for an orphan before it is registered.
    let mut registry = crate::reaper::Registry::lock();
    let spawned = spawner::spawn(job);
    if let Ok(pid) = &spawned {
        registry.register(*pid);
    }
    drop(registry);
    // Our copies of the write ends must close now, or the pipes never reach end of file.
    drop(out_write);
    drop(notify_write);
    let pid = match spawned {
        Ok(pid) => pid,
        Err(source) => {
            pending.failed();
            return Err(SpawnError::Exec {
                program: program.to_string_lossy().into_owned(),
                source: explain_nofile(source, req.limits.nofile),
            });
        }
    };
    // Not reaped by anyone but us: the pidfd is surely this process.
    let pidfd = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::other("pid out of range"))
        .and_then(crate::procfs::pidfd_open);
    let pidfd = match pidfd {
        Ok(fd) => fd,
        Err(source) => {
            if let Some(cg) = req.cgroup {
                cg.kill_all();
            }
            let _ = killpg(pid, libc::SIGKILL);
            // Nobody waits for it now: the reaper (if any) collects it.
            crate::reaper::release(pid);
            pending.failed();
            return Err(SpawnError::Exec {
                program: program.to_string_lossy().into_owned(),
                source,
            });
        }
    };
    let started = Instant::now();
    let started_at = SystemTime::now();
    let identity = crate::procfs::start_ticks(pid).map(|start_ticks| LiveProcess {
        worker: req.name.to_string(),
        pid,
        pgid: pid,
        start_ticks,
        generation: req.generation,
        started_at: crate::timefmt::rfc3339(started_at),
    });
    let reap_note = pending.spawned(identity.as_ref());
    let reaped = Arc::new(AtomicBool::new(false));
    let on_event = Arc::new(on_event);

    let log = req.log.clone();
    // The generation's marker goes first: the worker's output waits in the pipe until the
    // capture task below reads it, so nothing of this run can land before its marker
    // (`vigil logs --previous` splits generations on it).
    req.log.note(&format!(
        "{}{}, pid {pid}, run {}",
        logfile::START_MARKER,
        req.generation,
        req.run_id
    ));
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

    // The kernel's OOM killer may pick any process of the worker: when it does, the whole
    // worker ends (as `memory.oom.group` does in the kernel on v2 with a limit).
    let oom_guard = match (req.cgroup, baseline) {
        (Some(cg), Some(baseline)) if baseline.memory_accounted() => match OomWatch::new(cg) {
            Ok(Some(watch)) => {
                let cg = cg.clone();
                let name = req.name.to_string();
                Some(tokio::spawn(async move {
                    loop {
                        if watch.changed().await.is_err() {
                            return;
                        }
                        // v1 announces the OOM condition before the killer has picked its
                        // victim: look again for a moment before waiting for the next event.
                        for _ in 0..OOM_RECHECKS {
                            if cg.evidence(&baseline).oom_kills.unwrap_or(0) > 0 {
                                tracing::warn!(worker = %name, pid, "the OOM killer killed a process of the worker; ending the whole worker");
                                cg.kill_all();
                                return;
                            }
                            tokio::time::sleep(OOM_RECHECK_EVERY).await;
                        }
                    }
                }))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(worker = %req.name, error = %e, "cannot watch the worker's memory events");
                None
            }
        },
        _ => None,
    };
    let reaped_flag = reaped.clone();
    let exit_cgroup = req.cgroup.cloned();
    tokio::spawn(async move {
        let status = wait_exit(pidfd).await;
        crate::reaper::release(pid);
        let exited = Instant::now();
        let exited_at = SystemTime::now();
        if let Some(task) = oom_guard {
            task.abort();
        }
        // The leader is gone: nothing of the worker may outlive it.
        let mut survivors = 0;
        let mut evidence = Evidence::default();
        if let Some(cg) = &exit_cgroup {
            survivors = cg.kill_all();
            if !cg.wait_empty(CGROUP_EMPTY_TIMEOUT).await {
                tracing::warn!(
                    pid,
                    cgroup = cg.name(),
                    "the worker's cgroup is not empty after SIGKILL"
                );
            }
            if let Some(baseline) = &baseline {
                evidence = cg.evidence(baseline);
            }
        }
        let _ = killpg(pid, libc::SIGKILL);
        reaped_flag.store(true, Ordering::Release);
        reap_note.reaped(pid);
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
            evidence,
            survivors,
        }));
    });

    Ok(ProcessGroup {
        pid,
        started_at,
        started,
        identity,
        reaped,
        cgroup: req.cgroup.cloned(),
    })
}

/// Wait for the process behind `pidfd` to exit, and reap it (`waitid(P_PIDFD)`).
async fn wait_exit(pidfd: OwnedFd) -> io::Result<ExitStatus> {
    // SAFETY: an `OwnedFd` is open, refers to the same pidfd for its whole life, and is owned
    // by the `AsyncFd` until it drops.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)?;
    loop {
        let mut ready = fd.readable().await?;
        match reap(fd.get_ref().as_raw_fd())? {
            Some(status) => return Ok(status),
            None => ready.clear_ready(),
        }
    }
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG)`: the exit status, or `None` while it runs.
fn reap(pidfd: RawFd) -> io::Result<Option<ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let id = libc::id_t::try_from(pidfd).map_err(|_| io::Error::other("bad pidfd"))?;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid siginfo pointer.
        let ret =
            unsafe { libc::waitid(libc::P_PIDFD, id, &mut info, libc::WEXITED | libc::WNOHANG) };
        if ret != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: after a successful waitid, si_pid and si_status are the fields it set.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        // The wait status `ExitStatus` is built from (see wait(2)).
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_KILLED => status & 0x7f,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => return Ok(None),
        };
        return Ok(Some(ExitStatus::from_raw(raw)));
    }
}
