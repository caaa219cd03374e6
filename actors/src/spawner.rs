//! The spawner thread: every worker is spawned from one thread that has a descriptor table of
//! its own, holding nothing but stdio and the notify slot.
//!
//! Owns that thread, its private fd table (`unshare(CLONE_FILES)`, then everything above fd 3
//! closed), fd 3 in it (a `/dev/null` placeholder, pointed at one worker's notify pipe for the
//! length of that worker's spawn), and the one function that turns a [`SpawnJob`] into a
//! process through process-wrap. It must not wait for, signal or track the processes it
//! starts: [`crate::process`] does.
//!
//! # Why a thread with its own table
//! A spawn copies the spawning thread's descriptor table into the child, and the child's `exec`
//! then closes every close-on-exec entry: with 1000 workers the server holds about 4000
//! descriptors (output and notify pipes, log files, pidfds), and that copy-and-close made each
//! spawn ~1 ms slower than the first ones (see BENCHMARKS.md). The spawner's table stays at
//! four entries whatever the server holds, and a worker can inherit nothing by accident: it
//! gets stdin (`/dev/null`), stdout and stderr (its log pipe) and fd 3 (its notify pipe).
//!
//! The pipe ends a job names live in the server's shared table; the spawner copies them into
//! its own with `pidfd_getfd` on its own process (Linux 5.6) and closes the copies after the
//! spawn.
//!
//! # Caveats
//! - If the thread cannot be set up (an old kernel without `pidfd_getfd`, `unshare` refused),
//!   [`spawn`] runs the job on the calling thread instead: fd 3 is then set between fork and
//!   exec, which forces a `fork()`.
//! - Spawns are serialised through the one thread; a `posix_spawn` takes about 0.1–0.4 ms.
//! - `PR_SET_PDEATHSIG` (only without a guardian) fires when the *thread* that forked exits. The
//!   spawner thread lives as long as the process; in place, spawn only from threads that do
//!   too (tokio runtime workers, never `spawn_blocking`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

mod child;

/// The fd number every worker finds its notify pipe at (`VIGIL_NOTIFY_FD=3`): a shell can
/// only redirect to single-digit fds.
pub const NOTIFY_FD: RawFd = 3;

/// What to start. Descriptors are numbers in the caller's (the server's) table; they must stay
/// open until [`spawn`] returns.
#[derive(Debug)]
pub struct SpawnJob {
    /// `argv[0]`.
    pub program: OsString,
    /// `argv[1..]`.
    pub args: Vec<OsString>,
    /// Variables to set.
    pub env: Vec<(OsString, OsString)>,
    /// Variables to remove.
    pub env_remove: Vec<OsString>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Becomes the child's stdout.
    pub stdout: RawFd,
    /// Becomes the child's stderr.
    pub stderr: RawFd,
    /// Becomes the child's fd 3.
    pub notify: RawFd,
    /// Set `PR_SET_PDEATHSIG(SIGKILL)` in the child, checked against this parent pid (used when
    /// no guardian watches the workers; it makes the spawn a `fork()`).
    pub pdeathsig_parent: Option<libc::pid_t>,
    /// Start from an empty environment instead of the server's (then only `env` is set).
    pub clear_env: bool,
    /// The cgroup v2 directory the child is born into (`clone3` with `CLONE_INTO_CGROUP`: no
    /// migration, which costs a millisecond or more per hierarchy; where `clone3` is not
    /// available, the child writes itself into its `cgroup.procs` instead).
    pub cgroup_v2: Option<PathBuf>,
    /// Further `cgroup.procs` files (v1 hierarchies) the child writes itself into before it
    /// execs.
    pub cgroup_procs: Vec<PathBuf>,
    /// `RLIMIT_NOFILE` (soft and hard) of the worker.
    pub nofile: Option<u64>,
    /// Credentials, priority and umask the child takes before it execs.
    pub credentials: Credentials,
}

/// Who the worker runs as, and with which priority and umask (`None`: the server's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user id (`setuid`), taken last.
    pub uid: Option<libc::uid_t>,
    /// The group id (`setgid`).
    pub gid: Option<libc::gid_t>,
    /// The supplementary groups (`setgroups`).
    pub groups: Option<Vec<libc::gid_t>>,
    /// The file creation mask.
    pub umask: Option<libc::mode_t>,
    /// The nice value (-20..19).
    pub nice: Option<i32>,
}

type Reply = mpsc::Sender<io::Result<u32>>;

/// The running spawner: where to send jobs.
struct Spawner {
    jobs: Mutex<mpsc::Sender<(SpawnJob, Reply)>>,
}

static SPAWNER: OnceLock<Option<Spawner>> = OnceLock::new();

/// Start the process described by `job` as the leader of a new process group; its pid.
pub fn spawn(job: SpawnJob) -> io::Result<u32> {
    let Some(spawner) = SPAWNER.get_or_init(start_thread) else {
        return spawn_in_place(job);
    };
    let (tx, rx) = mpsc::channel();
    let sent = spawner
        .jobs
        .lock()
        .map_err(|_| io::Error::other("the spawner is gone"))?
        .send((job, tx));
    if let Err(mpsc::SendError((job, _))) = sent {
        return spawn_in_place(job);
    }
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread died during a spawn"))?
}

/// Start the thread; `None` (spawn in place) if its private table cannot be set up.
fn start_thread() -> Option<Spawner> {
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let (jobs_tx, jobs_rx) = mpsc::channel::<(SpawnJob, Reply)>();
    let started = std::thread::Builder::new()
        .name("vigil-spawner".into())
        .spawn(move || {
            // This thread's descriptor table is its own: a signal handler run here would write
            // to the wrong descriptors (tokio's and signal-hook's wake-up pipes are numbers in
            // the shared table), and the signal would be lost — measured: a SIGTERM arriving
            // during a spawn left the server running. So no signal is ever delivered here;
            // the kernel gives process signals to the other threads. (The worker's child
            // unblocks everything before exec.)
            block_all_signals();
            let own = match private_table() {
                Ok(own) => {
                    let _ = ready_tx.send(Ok(()));
                    own
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            for (job, reply) in jobs_rx {
                let _ = reply.send(spawn_here(&own, job));
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no spawner thread; spawning in place");
        return None;
    }
    match ready_rx.recv() {
        Ok(Ok(())) => Some(Spawner {
            jobs: Mutex::new(jobs_tx),
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the spawner thread cannot have its own fd table; spawning in place");
            None
        }
        Err(_) => None,
    }
}

/// Block every signal on the calling thread, for good.
fn block_all_signals() {
    // SAFETY: sigfillset/pthread_sigmask on a sigset_t owned by this frame.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// What the spawner thread holds in its own table.
struct OwnTable {
    /// A pidfd on this process, to copy descriptors from the shared table.
    own_process: OwnedFd,
    /// `/dev/null`, close-on-exec, what fd 3 points at between spawns.
    placeholder: OwnedFd,
}

/// Give this thread a table of its own with stdio, fd 3 (a placeholder) and a pidfd on the
/// process; check that `pidfd_getfd` works.
fn private_table() -> io::Result<OwnTable> {
    // SAFETY: unshare(CLONE_FILES) gives this thread a private copy of the descriptor table;
    // no other thread is affected.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Every fd of this thread is a private copy now: keep stdio, close the rest.
    close_from(NOTIFY_FD);
    // The lowest free number is 3: that is the slot, owned by no value (nothing may close it).
    let slot = std::fs::File::open("/dev/null")?;
    if slot.as_raw_fd() != NOTIFY_FD {
        return Err(io::Error::other("fd 3 is not free after closing it"));
    }
    std::mem::forget(slot);
    let placeholder = dup_cloexec(NOTIFY_FD, NOTIFY_FD + 1)?;
    // SAFETY: getpid has no preconditions.
    let own_process = crate::procfs::pidfd_open(unsafe { libc::getpid() })?;
    // Prove the copy path works before taking any job (fd 0 of the process).
    drop(getfd(&own_process, 0)?);
    Ok(OwnTable {
        own_process,
        placeholder,
    })
}

/// Run a job on the spawner thread: copy its descriptors in, point fd 3 at its notify pipe,
/// spawn, restore fd 3.
fn spawn_here(own: &OwnTable, job: SpawnJob) -> io::Result<u32> {
    let stdout = getfd(&own.own_process, job.stdout)?;
    let stderr = getfd(&own.own_process, job.stderr)?;
    let notify = getfd(&own.own_process, job.notify)?;
    dup3(notify.as_raw_fd(), NOTIFY_FD, 0)?;
    let spawned = spawn_wrapped(job, stdout, stderr, None);
    dup3(own.placeholder.as_raw_fd(), NOTIFY_FD, libc::O_CLOEXEC)?;
    spawned
}

/// No spawner thread: spawn from the calling thread; the notify pipe is moved to fd 3 between
/// fork and exec.
fn spawn_in_place(job: SpawnJob) -> io::Result<u32> {
    let stdout = dup_cloexec(job.stdout, 0)?;
    let stderr = dup_cloexec(job.stderr, 0)?;
    let notify = job.notify;
    spawn_wrapped(job, stdout, stderr, Some(notify))
}

/// The one place a worker process is created: a `clone(CLONE_VM | CLONE_VFORK)` child (what
/// `posix_spawn` does) that sets itself up and execs; `notify_to_fd3` when fd 3 must be set in
/// the child (spawning in place).
///
/// Everything the child needs is prepared here, in the parent: the program's path (a `PATH`
/// search like `execvp`'s), argv and envp as C strings, the cgroup files it joins, the limits.
/// The child then makes raw system calls only — no allocation, no lock, no glibc wrapper that
/// keeps per-process state — and reports a failure through a word in the shared memory.
fn spawn_wrapped(
    job: SpawnJob,
    stdout: OwnedFd,
    stderr: OwnedFd,
    notify_to_fd3: Option<RawFd>,
) -> io::Result<u32> {
    let plan = child::Plan::prepare(&job, stdout, stderr, notify_to_fd3)?;
    plan.spawn()
}

/// Copy descriptor `fd` of the process `pidfd` refers to into this thread's table.
fn getfd(pidfd: &OwnedFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd(pidfd, targetfd, flags = 0) returns a new close-on-exec fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned(ret)
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = RawFd::try_from(ret).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A close-on-exec copy of `fd` at the lowest free number >= `min`.
fn dup_cloexec(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    owned(libc::c_long::from(ret))
}

fn dup3(from: RawFd, to: RawFd, flags: i32) -> io::Result<()> {
    // SAFETY: dup3 on integers, in this thread's private table.
    if unsafe { libc::dup3(from, to, flags) } == to {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Close every fd >= `first` of this thread's (private) table.
fn close_from(first: RawFd) {
    let Ok(low) = libc::c_uint::try_from(first) else {
        return;
    };
    // SAFETY: close_range on this thread's private table.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, low, libc::c_uint::MAX, 0) };
    if ret == 0 {
        return;
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/thread-self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|&fd| fd >= first) {
        // SAFETY: closing an fd of this thread's private table.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Run `script` under `sh -c` through `how`; what it wrote to stdout and to fd 3.
    fn run(how: fn(SpawnJob) -> io::Result<u32>, script: &str) -> (String, String) {
        let (out_read, out_write) = crate::fd::pipe_cloexec().unwrap();
        let (notify_read, notify_write) = crate::fd::pipe_cloexec().unwrap();
        let job = SpawnJob {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("SPAWNER_TEST".into(), "yes".into())],
            env_remove: vec![],
            cwd: None,
            stdout: out_write.as_raw_fd(),
            stderr: out_write.as_raw_fd(),
            notify: notify_write.as_raw_fd(),
            pdeathsig_parent: None,
            clear_env: false,
            cgroup_v2: None,
            cgroup_procs: vec![],
            nofile: None,
            credentials: Credentials::default(),
        };
        let pid = how(job).unwrap();
        drop(out_write);
        drop(notify_write);
        let pidfd = crate::procfs::pidfd_open(pid as libc::pid_t).unwrap();
        let (mut out, mut notify) = (String::new(), String::new());
        std::fs::File::from(out_read)
            .read_to_string(&mut out)
            .unwrap();
        std::fs::File::from(notify_read)
            .read_to_string(&mut notify)
            .unwrap();
        // Reap it (it is our child) so no zombie is left behind.
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child's pidfd with a valid siginfo pointer.
        unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        (out, notify)
    }

    const SCRIPT: &str = "echo \"out $SPAWNER_TEST pgid-is-pid:$(test $(cut -d' ' -f5 /proc/$$/stat) -eq $$ && echo y)\"; \
                          echo READY=1 >&3; ls /proc/$$/fd";

    #[test]
    fn the_spawner_thread_gives_stdio_and_fd_3_and_nothing_else() {
        let (out, notify) = run(spawn, SCRIPT);
        assert!(out.starts_with("out yes pgid-is-pid:y\n"), "{out}");
        assert_eq!(notify, "READY=1\n");
        // The shell's own fds only: 0-3 (and a copy of its own at 10+ while it redirects).
        // No pipeline: the shell would hold its pipes while `ls` reads its fd table.
        let mut fds: Vec<u32> = out
            .lines()
            .skip(1)
            .filter_map(|f| f.trim().parse().ok())
            .filter(|&f| f < 10)
            .collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 1, 2, 3], "{out}");
    }

    #[test]
    fn spawning_in_place_does_the_same() {
        let (out, notify) = run(spawn_in_place, SCRIPT);
        assert!(out.starts_with("out yes pgid-is-pid:y\n"), "{out}");
        assert_eq!(notify, "READY=1\n");
    }

    /// A worker switched to another user still dies with the thread that spawned it when no
    /// guardian watches (the uid change clears the parent-death signal; the child sets it again).
    #[test]
    fn the_parent_death_signal_survives_the_user_switch() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: the_parent_death_signal_survives_the_user_switch: not root");
            return;
        }
        let (_r, w) = crate::fd::pipe_cloexec().unwrap();
        let out = w.as_raw_fd();
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        // PDEATHSIG fires when the forking *thread* exits: spawn from a thread that then ends.
        let pid = std::thread::spawn(move || {
            spawn_in_place(SpawnJob {
                program: "/bin/sleep".into(),
                args: vec!["1000".into()],
                env: vec![],
                env_remove: vec![],
                cwd: None,
                stdout: out,
                stderr: out,
                notify: out,
                pdeathsig_parent: Some(me),
                clear_env: true,
                cgroup_v2: None,
                cgroup_procs: vec![],
                nofile: None,
                credentials: Credentials {
                    uid: Some(65534),
                    gid: Some(65534),
                    groups: Some(vec![65534]),
                    ..Credentials::default()
                },
            })
        })
        .join()
        .unwrap()
        .unwrap();
        let pidfd = crate::procfs::pidfd_open(pid as libc::pid_t).unwrap();
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // Bounded wait: poll the pidfd for up to 10 s, then kill it so nothing is left behind.
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
        if ready != 1 {
            // SAFETY: kill on our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        // SAFETY: waitid on our own child's pidfd with a valid siginfo pointer.
        unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        assert_eq!(ready, 1, "the worker outlived the thread that spawned it");
        // SAFETY: si_status is valid for a CLD_KILLED siginfo.
        assert_eq!(unsafe { info.si_status() }, libc::SIGKILL);
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        for how in [spawn as fn(SpawnJob) -> io::Result<u32>, spawn_in_place] {
            let (_r, w) = crate::fd::pipe_cloexec().unwrap();
            let job = SpawnJob {
                program: "/nonexistent/program".into(),
                args: vec![],
                env: vec![],
                env_remove: vec![],
                cwd: None,
                stdout: w.as_raw_fd(),
                stderr: w.as_raw_fd(),
                notify: w.as_raw_fd(),
                pdeathsig_parent: None,
                clear_env: false,
                cgroup_v2: None,
                cgroup_procs: vec![],
                nofile: None,
                credentials: Credentials::default(),
            };
            let err = how(job).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        }
    }
}
