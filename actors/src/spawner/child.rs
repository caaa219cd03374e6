//! The worker's side of a spawn: everything between `clone` and `execve`.
//!
//! Owns the [`Plan`] of one spawn — program path, argv and envp as C strings, the descriptors the
//! child moves to 0–3, the cgroup files it joins, the resource limit and the credentials it
//! takes — and the child function that carries it out. It must not decide anything: the plan is
//! built from a [`SpawnJob`] by the caller.
//!
//! # How the child is made
//! `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` on a stack of its own, as glibc's `posix_spawn`
//! does: no page tables are copied, and the parent thread sleeps until the child has called
//! `execve` (or died). Because the child shares the parent's memory, it may only make system
//! calls on values prepared before the clone: no allocation, no lock, no Rust panic, no glibc
//! wrapper that keeps per-process state (credentials are changed with raw `syscall`s: glibc's
//! `setuid` would try to signal the parent's other threads). Every signal is blocked around
//! the clone; the child resets caught signals to their default before unblocking, so no handler
//! of the server ever runs in it.
//!
//! # Order of the child's steps (each failure is reported with its step and errno)
//! 1. join the worker's cgroups (v2 and v1 `cgroup.procs`): from here on, everything it becomes
//!    and everything it forks is contained — before any code of the worker runs;
//! 2. a new process group (`setpgid(0, 0)`), optionally `PR_SET_PDEATHSIG`;
//! 3. stdin (`/dev/null`), stdout/stderr (the log pipe), fd 3 (the notify pipe);
//! 4. `RLIMIT_NOFILE`, nice, umask, supplementary groups, gid, uid (then `PR_SET_PDEATHSIG`
//!    again: a credential change clears it), working directory (as the worker's user);
//! 5. default signal dispositions and an empty signal mask; `execve`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use super::{NOTIFY_FD, SpawnJob};

/// The child's stack. glibc's `posix_spawn` uses about 32 KiB plus argv; the child here
/// makes a few dozen system calls and keeps nothing on it.
const STACK_SIZE: usize = 128 * 1024;

/// Descriptors are moved at or above this number first, so the `dup2`s into 0–3 never
/// overwrite a source.
const HIGH_FD: RawFd = 10;

/// Which step of the child failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    None = 0,
    Cgroup = 1,
    ProcessGroup = 2,
    DeathSignal = 3,
    Descriptors = 4,
    Directory = 5,
    FileLimit = 6,
    Nice = 7,
    Groups = 8,
    Gid = 9,
    Uid = 10,
    Exec = 11,
}

impl Step {
    fn from_i32(n: i32) -> Step {
        match n {
            1 => Step::Cgroup,
            2 => Step::ProcessGroup,
            3 => Step::DeathSignal,
            4 => Step::Descriptors,
            5 => Step::Directory,
            6 => Step::FileLimit,
            7 => Step::Nice,
            8 => Step::Groups,
            9 => Step::Gid,
            10 => Step::Uid,
            11 => Step::Exec,
            _ => Step::None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Step::None | Step::Exec => "cannot execute the program",
            Step::Cgroup => "cannot join the worker's cgroup",
            Step::ProcessGroup => "cannot create the worker's process group",
            Step::DeathSignal => "cannot tie the worker to the server's life",
            Step::Descriptors => "cannot set up the worker's stdio and notify descriptors",
            Step::Directory => "cannot change to the working directory",
            Step::FileLimit => "cannot set RLIMIT_NOFILE (limits.nofile)",
            Step::Nice => "cannot set the nice value",
            Step::Groups => "cannot set the supplementary groups",
            Step::Gid => "cannot switch to the group",
            Step::Uid => "cannot switch to the user",
        }
    }
}

/// Everything one spawn needs, prepared before the clone.
pub(super) struct Plan {
    path: CString,
    /// argv as C strings and the NULL-terminated pointer array into them.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// Sources for fds 0, 1, 2 and (when set) 3.
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    notify: Option<RawFd>,
    /// The v2 cgroup directory the child is born into (`O_PATH`), with its `cgroup.procs`
    /// for when `clone3` cannot be used.
    into_cgroup: Option<(OwnedFd, OwnedFd)>,
    /// Set when the child must write itself into the v2 `cgroup.procs` (no `clone3`).
    join_v2_by_write: std::sync::atomic::AtomicBool,
    /// `cgroup.procs` of each further (v1) hierarchy the worker joins, open for writing.
    cgroups: Vec<OwnedFd>,
    nofile: Option<libc::rlimit>,
    nice: Option<i32>,
    umask: Option<libc::mode_t>,
    groups: Option<Vec<libc::gid_t>>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
    pdeathsig_parent: Option<libc::pid_t>,
    /// Written by the child when a step fails (it shares this memory): step, then errno.
    failed_step: AtomicI32,
    failed_errno: AtomicI32,
}

impl Plan {
    /// Build the plan of `job`. `stdout`/`stderr` are this thread's copies of the log pipe;
    /// `notify` is the fd to put at 3 (`None` when fd 3 already is the notify pipe).
    pub(super) fn prepare(
        job: &SpawnJob,
        stdout: OwnedFd,
        stderr: OwnedFd,
        notify: Option<RawFd>,
    ) -> io::Result<Plan> {
        let env = environment(job);
        let path = find_program(&job.program, &env, job.cwd.as_deref())?;
        let argv: Vec<CString> = std::iter::once(job.program.as_os_str())
            .chain(job.args.iter().map(OsString::as_os_str))
            .map(c_string)
            .collect::<io::Result<_>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| nul_error())
            })
            .collect::<io::Result<_>>()?;
        let cwd = job
            .cwd
            .as_deref()
            .map(|p| c_string(p.as_os_str()))
            .transpose()?;
        let stdin = std::fs::File::open("/dev/null")?.into();
        let open_procs = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(OwnedFd::from)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display())))
        };
        let cgroups = job
            .cgroup_procs
            .iter()
            .map(|p| open_procs(p))
            .collect::<io::Result<_>>()?;
        let into_cgroup = match &job.cgroup_v2 {
            Some(dir) => {
                use std::os::unix::fs::OpenOptionsExt;
                let path_fd = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(dir)
                    .map(OwnedFd::from)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot open {}: {e}", dir.display()))
                    })?;
                Some((path_fd, open_procs(&dir.join("cgroup.procs"))?))
            }
            None => None,
        };
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Plan {
            path,
            argv_ptrs: ptrs(&argv),
            _argv: argv,
            envp_ptrs: ptrs(&envp),
            _envp: envp,
            cwd,
            stdin,
            stdout,
            stderr,
            notify,
            into_cgroup,
            join_v2_by_write: std::sync::atomic::AtomicBool::new(false),
            cgroups,
            nofile: job.nofile.map(|n| libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            }),
            nice: job.credentials.nice,
            umask: job.credentials.umask,
            groups: job.credentials.groups.clone(),
            gid: job.credentials.gid,
            uid: job.credentials.uid,
            pdeathsig_parent: job.pdeathsig_parent,
            failed_step: AtomicI32::new(Step::None as i32),
            failed_errno: AtomicI32::new(0),
        })
    }

    /// Clone the child, wait until it has exec'd (or failed), and return its pid.
    pub(super) fn spawn(self) -> io::Result<u32> {
        let stack = Stack::new(STACK_SIZE)?;
        // Block every signal so no handler of the server can run in the child before it has
        // reset them; restored right after the clone returns.
        let mut all: libc::sigset_t = unsafe_zeroed_sigset();
        let mut old: libc::sigset_t = unsafe_zeroed_sigset();
        // SAFETY: sigfillset/pthread_sigmask on valid sigset_t values owned by this frame.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        let arg = &self as *const Plan as *mut libc::c_void;
        // Born into its v2 cgroup where the kernel can (clone3, Linux 5.7); otherwise the
        // child joins by writing to `cgroup.procs` first thing.
        let mut pid = -1;
        let mut clone3_refused = false;
        if let Some((dir, _)) = &self.into_cgroup {
            // SAFETY: as for clone below; the stack and the plan outlive the child's use.
            match unsafe { clone3_into_cgroup(&stack, dir.as_raw_fd(), child_main, arg) } {
                Ok(child) => pid = child,
                Err(e) => {
                    clone3_refused = true;
                    tracing::debug!(error = %e, "clone3 into a cgroup refused; joining by cgroup.procs");
                }
            }
        }
        if self.into_cgroup.is_none() || clone3_refused {
            self.join_v2_by_write
                .store(self.into_cgroup.is_some(), Ordering::Release);
            // SAFETY: `child_main` only makes system calls on the plan, which outlives the
            // child's use of it: with CLONE_VFORK, clone returns only after the child has
            // exec'd or exited. The stack is ours, mapped, and freed only after that.
            pid = unsafe {
                libc::clone(
                    child_main,
                    stack.top(),
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                    arg,
                )
            };
        }
        let clone_error = io::Error::last_os_error();
        // SAFETY: restoring the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(stack);
        if pid < 0 {
            return Err(clone_error);
        }
        let step = Step::from_i32(self.failed_step.load(Ordering::Acquire));
        if step == Step::None {
            return u32::try_from(pid).map_err(|_| io::Error::other("pid out of range"));
        }
        // The child failed and exited: reap it here, nobody else knows of it.
        let mut status = 0;
        // SAFETY: waitpid on our own child, which has exited (CLONE_VFORK).
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let errno = self.failed_errno.load(Ordering::Acquire);
        let os = io::Error::from_raw_os_error(errno);
        Err(match step {
            // Keep the plain OS error for exec: callers match on NotFound and friends.
            Step::Exec | Step::None => os,
            other => io::Error::new(os.kind(), format!("{}: {os}", other.describe())),
        })
    }
}

fn unsafe_zeroed_sigset() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid (empty) set.
    unsafe { std::mem::zeroed() }
}

/// The child. Returns only on failure (the return value becomes its exit status).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the plan the parent passed; it stays valid while the parent sleeps
    // (CLONE_VFORK). Only system calls follow.
    let plan = unsafe { &*(arg as *const Plan) };
    match unsafe { run_child(plan) } {
        Ok(never) => match never {},
        Err((step, errno)) => {
            plan.failed_errno.store(errno, Ordering::Release);
            plan.failed_step.store(step as i32, Ordering::Release);
            // SAFETY: _exit ends the child without running anything of the parent's.
            unsafe { libc::_exit(127) }
        }
    }
}

/// The child's steps; an error names the step and the errno.
///
/// # Safety
/// Runs in a CLONE_VM child: only system calls on the plan's prepared values.
unsafe fn run_child(plan: &Plan) -> Result<std::convert::Infallible, (Step, i32)> {
    let check = |ok: bool, step: Step| {
        if ok { Ok(()) } else { Err((step, errno())) }
    };
    // SAFETY (whole block): raw system calls on integers and on C strings/arrays prepared by
    // the parent; no allocation, no locks.
    unsafe {
        // 1. Into the cgroups, before anything of the worker runs.
        if plan.join_v2_by_write.load(Ordering::Acquire) {
            if let Some((_, procs)) = &plan.into_cgroup {
                let zero = b"0";
                check(
                    libc::write(procs.as_raw_fd(), zero.as_ptr().cast(), 1) == 1,
                    Step::Cgroup,
                )?;
            }
        }
        for fd in &plan.cgroups {
            let zero = b"0";
            check(
                libc::write(fd.as_raw_fd(), zero.as_ptr().cast(), 1) == 1,
                Step::Cgroup,
            )?;
        }
        // 2. A process group of its own; die with the server when no guardian watches.
        check(libc::setpgid(0, 0) == 0, Step::ProcessGroup)?;
        if let Some(parent) = plan.pdeathsig_parent {
            check(
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0,
                Step::DeathSignal,
            )?;
            if libc::getppid() != parent {
                return Err((Step::DeathSignal, libc::ESRCH));
            }
        }
        // 3. Descriptors: first above every target, then into 0..3.
        let mut sources = [
            plan.stdin.as_raw_fd(),
            plan.stdout.as_raw_fd(),
            plan.stderr.as_raw_fd(),
            plan.notify.unwrap_or(-1),
        ];
        for src in sources.iter_mut().filter(|fd| **fd >= 0) {
            let high = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, HIGH_FD);
            check(high >= 0, Step::Descriptors)?;
            *src = high;
        }
        for (target, src) in sources.iter().enumerate() {
            if *src >= 0 {
                check(
                    libc::dup2(*src, target as RawFd) == target as RawFd,
                    Step::Descriptors,
                )?;
            }
        }
        if plan.notify.is_none() {
            // fd 3 already is the notify pipe (the spawner thread's slot): keep it across exec.
            check(
                libc::fcntl(NOTIFY_FD, libc::F_SETFD, 0) == 0,
                Step::Descriptors,
            )?;
        }
        // 4. Limits, priority, mask, credentials (groups, then gid, then uid), directory.
        if let Some(limit) = &plan.nofile {
            check(
                libc::setrlimit(libc::RLIMIT_NOFILE, limit) == 0,
                Step::FileLimit,
            )?;
        }
        if let Some(nice) = plan.nice {
            check(
                libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0,
                Step::Nice,
            )?;
        }
        if let Some(mask) = plan.umask {
            libc::umask(mask);
        }
        if let Some(groups) = &plan.groups {
            check(
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0,
                Step::Groups,
            )?;
        }
        if let Some(gid) = plan.gid {
            check(libc::syscall(libc::SYS_setgid, gid) == 0, Step::Gid)?;
        }
        if let Some(uid) = plan.uid {
            check(libc::syscall(libc::SYS_setuid, uid) == 0, Step::Uid)?;
        }
        // A change of credentials clears the parent-death signal (the kernel's commit_creds):
        // set it again for the new user.
        if let Some(parent) = plan.pdeathsig_parent {
            if plan.uid.is_some() || plan.gid.is_some() {
                check(
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0,
                    Step::DeathSignal,
                )?;
                if libc::getppid() != parent {
                    return Err((Step::DeathSignal, libc::ESRCH));
                }
            }
        }
        // As the worker's user: a folder it may not enter is a failed start, not a way in.
        if let Some(cwd) = &plan.cwd {
            check(libc::chdir(cwd.as_ptr()) == 0, Step::Directory)?;
        }
        // 5. Default dispositions for caught signals (and SIGPIPE, which Rust ignores), then
        //    an empty mask, then exec.
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let caught = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if caught || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        );
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        Err((Step::Exec, errno()))
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot (the child's own TLS is the
    // parent thread's, which sleeps: nothing else writes it meanwhile).
    unsafe { *libc::__errno_location() }
}

/// The worker's environment: the server's (unless cleared), minus `env_remove`, plus `env`.
fn environment(job: &SpawnJob) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = if job.clear_env {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| !job.env_remove.iter().any(|r| r == k))
            .collect()
    };
    for (k, v) in &job.env {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// `program` as `execvp` would find it: as given when it holds a `/`, else the first
/// executable file of that name in the worker's `PATH`.
fn find_program(
    program: &OsStr,
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
) -> io::Result<CString> {
    if program.as_bytes().contains(&b'/') {
        // A relative path with a slash is relative to the worker's working directory.
        let path = match cwd {
            Some(dir) if !program.as_bytes().starts_with(b"/") => dir.join(program),
            _ => PathBuf::from(program),
        };
        return c_string(path.as_os_str());
    }
    if program.is_empty() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut denied = false;
    for dir in std::env::split_paths(&path_var) {
        let candidate = if dir.as_os_str().is_empty() {
            PathBuf::from(program)
        } else {
            dir.join(program)
        };
        let Ok(c) = c_string(candidate.as_os_str()) else {
            continue;
        };
        // SAFETY: access on a valid C string.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            if candidate.is_file() {
                return Ok(c);
            }
        } else if io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
            denied = true;
        }
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| nul_error())
}

fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "an argument or environment variable contains a NUL byte",
    )
}

/// `struct clone_args` of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (linux/sched.h; not in every libc crate version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` running `f(arg)` on `stack` in the
/// child: the child exists only inside the cgroup `cgroup_fd`. glibc exports no clone3
/// wrapper, and a CLONE_VM child on a new stack cannot return into Rust code, so the child's
/// side is three instructions of assembly that call `f` on the new stack (as glibc's `clone`
/// does); `f` must never return (it execs or `_exit`s; if it returned, the child exits).
///
/// # Safety
/// As for `clone(2)` with `CLONE_VM`: `f` may only make system calls on memory that outlives
/// the child's use of it (the parent sleeps until the child execs or exits: `CLONE_VFORK`).
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_into_cgroup(
    stack: &Stack,
    cgroup_fd: RawFd,
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> io::Result<libc::pid_t> {
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: stack.size as u64,
        cgroup: u64::try_from(cgroup_fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        ..CloneArgs::default()
    };
    let ret: i64;
    // SAFETY: the syscall reads `args` (valid for its size). In the parent only rax, rcx and
    // r11 change. In the child (rax = 0) rsp is the top of `stack` (16-byte aligned: a page
    // aligned mapping of a page multiple), and it calls `f(arg)` there; `f` never returns,
    // and if it did, the child exits with its return value.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &mut args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") f,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(
            i32::try_from(-ret).unwrap_or(libc::EINVAL),
        ));
    }
    libc::pid_t::try_from(ret).map_err(|_| io::Error::other("pid out of range"))
}

/// Elsewhere: no clone3 trampoline; the caller joins through `cgroup.procs`.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_into_cgroup(
    _stack: &Stack,
    _cgroup_fd: RawFd,
    _f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
) -> io::Result<libc::pid_t> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// An anonymous mapping for the child's stack, unmapped on drop.
struct Stack {
    base: *mut libc::c_void,
    size: usize,
}

impl Stack {
    fn new(size: usize) -> io::Result<Stack> {
        // SAFETY: an anonymous private mapping; checked for MAP_FAILED below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Stack { base, size })
    }

    /// The highest address (stacks grow down on every Linux target vigil runs on).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, as clone(2) expects.
        unsafe { self.base.cast::<u8>().add(self.size).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`, no longer used (the child has exec'd or
        // exited).
        unsafe { libc::munmap(self.base, self.size) };
    }
}
