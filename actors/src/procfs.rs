//! Reading process identity from `/proc`: start time in clock ticks, process group, members.
//!
//! Owns the parsing of `/proc/<pid>/stat` and the scan of `/proc` for a group's members. A pid
//! alone is not an identity (pids are reused); a pid plus its kernel start time (field 22, in
//! clock ticks since boot) is. It must not send signals: callers decide what to do with what it
//! reads (see `orphan.rs`).
//!
//! # Caveats
//! - Everything read here can be stale a microsecond later: a process may exit, and its pid be
//!   reused, right after the read. Callers that act on a pid must re-check after taking a handle
//!   that pins the process (a pidfd, see [`PidFd`]).
//! - Zombies (exited, not yet reaped) are reported by [`stat`] with state `Z` but are not
//!   [`group_members`]: they cannot run, and signalling them does nothing.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The fields of `/proc/<pid>/stat` that vigil uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 1: the pid.
    pub pid: u32,
    /// Field 2: the command name, without the parentheses (may contain spaces and `)`).
    pub comm: String,
    /// Field 3: the state letter (`R`, `S`, `D`, `Z`, `T`, ...).
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 5: the process group.
    pub pgid: u32,
    /// Field 6: the session.
    pub sid: u32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the process has exited (zombie `Z` or dead `X`).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The numeric fields of a `/proc/<pid>/stat` line that vigil uses (everything after the
/// command name), parsed without allocating: the dump's sampler reads one per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFields {
    /// Field 3: the state letter (`Z` for a zombie).
    pub state: u8,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 5: the process group.
    pub pgid: u32,
    /// Field 6: the session.
    pub sid: u32,
    /// Fields 14 + 15: user + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 22: start time, in clock ticks since boot.
    pub start_ticks: u64,
    /// Field 24: resident set size, in pages.
    pub rss_pages: u64,
}

/// Parse the fields after the command name of a `/proc/<pid>/stat` line; `None` if it is cut
/// short or malformed. The command name may contain spaces and `)`, so the fields are split
/// after the LAST `)`.
pub fn parse_fields(line: &[u8]) -> Option<StatFields> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    // After ") ": field 3 (state) is index 0, so field k is index k - 3.
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let mut field =
        |k: usize, after: usize| -> Option<u64> { fields.nth(k - after - 1)?.parse().ok() };
    let ppid = field(4, 3)?;
    let pgid = field(5, 4)?;
    let sid = field(6, 5)?;
    let utime = field(14, 6)?;
    let stime = field(15, 14)?;
    let start_ticks = field(22, 15)?;
    let rss_pages = field(24, 22)?;
    Some(StatFields {
        state,
        ppid: u32::try_from(ppid).ok()?,
        pgid: u32::try_from(pgid).ok()?,
        sid: u32::try_from(sid).ok()?,
        cpu_ticks: utime + stime,
        start_ticks,
        rss_pages,
    })
}

/// Parse the text of `/proc/<pid>/stat`: the pid and command name, then [`parse_fields`].
///
/// The command name sits between the first `(` and the LAST `)`: it may itself contain spaces
/// and parentheses.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let f = parse_fields(text.as_bytes())?;
    Some(ProcStat {
        pid,
        comm,
        state: char::from(f.state),
        ppid: f.ppid,
        pgid: f.pgid,
        sid: f.sid,
        start_ticks: f.start_ticks,
    })
}

/// Bytes [`read_stat_line`] reads at once: a stat line is about 300 bytes.
pub const STAT_LINE_MAX: usize = 1024;

/// Read `/proc/<pid>/stat` with one `open`, one `read` and one `close` (`read_to_string` adds
/// an `fstat` and several more reads), into `buf`; the line's length. Relative to `proc_dir`
/// (an open `/proc`) when given: no path walk from `/`, no allocation. `None` when the process
/// is gone, or the line does not fit (impossible with a 16-byte command name).
pub fn read_stat_line(
    proc_dir: Option<&fs::File>,
    pid: u32,
    buf: &mut [u8; STAT_LINE_MAX],
) -> Option<usize> {
    use std::io::{Read, Write};
    let mut path = [0u8; 32];
    let len = {
        let mut w = &mut path[..];
        if proc_dir.is_none() {
            w.write_all(b"/proc/").ok()?;
        }
        write!(w, "{pid}/stat\0").ok()?;
        32 - w.len()
    };
    let path = &path[..len];
    let dir_fd = proc_dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is NUL-terminated; `dir_fd` is an open directory or AT_FDCWD with an
    // absolute path.
    let fd = unsafe {
        libc::openat(
            dir_fd,
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just opened and is owned here; it closes when `file` drops.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    let n = loop {
        match file.read(buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    };
    (n < STAT_LINE_MAX).then_some(n)
}

/// `/proc/<pid>/stat`, parsed; `None` when the process does not exist (or is unreadable).
pub fn stat(pid: u32) -> Option<ProcStat> {
    let mut buf = [0u8; STAT_LINE_MAX];
    let n = read_stat_line(None, pid, &mut buf)?;
    parse_stat(std::str::from_utf8(&buf[..n]).ok()?)
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks since boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_ticks)
}

/// Field 5 of `/proc/<pid>/stat`: the process group.
pub fn pgid(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.pgid)
}

/// Every live (not zombie) process whose process group is `pgid`, by scanning `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    group_member_stats(pgid)
        .into_iter()
        .map(|s| s.pid)
        .collect()
}

/// Like [`group_members`], with each member's parsed stat.
pub fn group_member_stats(pgid: u32) -> Vec<ProcStat> {
    pids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(stat)
        .filter(|s| s.pgid == pgid && !s.is_dead())
        .collect()
}

/// Every pid in `/proc` at the moment of the listing (processes come and go meanwhile).
pub fn pids() -> std::io::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, almost always 100).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// A tick count as a duration since boot.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    let hz = ticks_per_second();
    Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz)
}

/// Boot time as seconds since the Unix epoch (`btime` in `/proc/stat`).
pub fn boot_time_unix() -> Option<u64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// A process's start time as a Unix timestamp (second-level accuracy from `btime`).
pub fn start_time_unix(start_ticks: u64) -> Option<Duration> {
    Some(Duration::from_secs(boot_time_unix()?) + ticks_to_duration(start_ticks))
}

/// `pidfd_open(pid)` (Linux 5.3): a close-on-exec fd that refers to that process and no other.
pub fn pidfd_open(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(pid, flags) takes two integers and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw = i32::try_from(ret).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A pidfd: a handle on one process that can never refer to another, even after pid reuse.
///
/// Obtain one with [`PidFd::open_verified`], which checks the start time AFTER opening: the fd
/// then provably refers to the process that had that start time.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: u32,
}

/// Why [`PidFd::open_verified`] did not give a handle.
#[derive(Debug, thiserror::Error)]
pub enum PidFdError {
    /// The process is gone, or is not the one with the expected start time (pid reused).
    #[error("process {0} is gone or is not the expected one")]
    NotThatProcess(u32),
    /// The kernel has no `pidfd_open` (Linux < 5.3) or refused it.
    #[error("pidfd_open({pid}) failed: {source}")]
    Open {
        /// The pid.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
    },
}

impl PidFd {
    /// Open a pidfd on `pid`, then verify that `pid` still has `start_ticks` (and is alive).
    ///
    /// Order matters: a pidfd pins the process that held the pid at open time; a matching
    /// start time read afterwards proves it is the expected process, since two live processes
    /// cannot share a pid.
    pub fn open_verified(pid: u32, start_ticks: u64) -> Result<PidFd, PidFdError> {
        PidFd::open_if(pid, |s| s.start_ticks == start_ticks)
    }

    /// Open a pidfd on `pid`, then check the process's stat (read after opening) with `accept`.
    /// Dead processes are never accepted. `accept` should check the start time: that is what
    /// ties the fd to the expected process.
    pub fn open_if(pid: u32, accept: impl Fn(&ProcStat) -> bool) -> Result<PidFd, PidFdError> {
        let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
            return Err(PidFdError::NotThatProcess(pid));
        };
        let fd = match pidfd_open(raw_pid) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {
                return Err(PidFdError::NotThatProcess(pid));
            }
            Err(source) => return Err(PidFdError::Open { pid, source }),
        };
        match stat(pid) {
            Some(s) if !s.is_dead() && accept(&s) => Ok(PidFd { fd, pid }),
            _ => Err(PidFdError::NotThatProcess(pid)),
        }
    }

    /// The pid this handle was opened on.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Send `signal` to this exact process. `Ok(false)` when it has already exited.
    pub fn signal(&self, signal: i32) -> std::io::Result<bool> {
        // SAFETY: pidfd_send_signal(fd, sig, info = NULL, flags = 0) on an fd we own.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if ret == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(err)
        }
    }

    /// Whether the process has exited (the pidfd polls readable then).
    pub fn has_exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && (pfd.revents & libc::POLLIN) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let line = "1234 (a) b (c)) S 1 1200 1100 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgid, s.sid), (1, 1200, 1100));
        assert_eq!(s.start_ticks, 987654);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("12 (x) S 1 2").is_none());
    }

    #[test]
    fn reads_a_real_process() {
        let child = Kill(Command::new("sleep").arg("100").spawn().unwrap());
        let pid = child.0.id();
        let s = stat(pid).unwrap();
        assert_eq!(s.pid, pid);
        assert_eq!(s.ppid, std::process::id());
        // Not its own group leader: it shares ours.
        assert_eq!(Some(s.pgid), pgid(std::process::id()));
        let mine = start_ticks(std::process::id()).unwrap();
        assert!(s.start_ticks >= mine, "the child started after us");
        assert_eq!(start_ticks(pid), Some(s.start_ticks));
        // Started within the last minute, per the boot clock.
        let since_boot = std::fs::read_to_string("/proc/uptime").unwrap();
        let up: f64 = since_boot
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let started = ticks_to_duration(s.start_ticks).as_secs_f64();
        assert!(
            up - started < 60.0 && up >= started - 1.0,
            "up {up} started {started}"
        );
    }

    #[test]
    fn real_comm_with_parens_and_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("x) (y z");
        std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
        let child = Kill(Command::new(&link).arg("100").spawn().unwrap());
        let s = stat(child.0.id()).unwrap();
        assert_eq!(s.comm, "x) (y z");
        assert_eq!(s.ppid, std::process::id());
    }

    #[test]
    fn group_members_finds_the_whole_group() {
        use std::os::unix::process::CommandExt;
        let child = Kill(
            Command::new("sh")
                .args(["-c", "sleep 100 & sleep 100 & wait"])
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let pgid = child.0.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while group_members(pgid).len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "members: {:?}",
                group_members(pgid)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let members = group_members(pgid);
        assert!(members.contains(&pgid));
        assert_eq!(members.len(), 3);
        // SAFETY: killing the test's own child group.
        unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
    }

    #[test]
    fn pidfd_refuses_a_wrong_start_time() {
        let mut child = Kill(Command::new("sleep").arg("100").spawn().unwrap());
        let pid = child.0.id();
        let ticks = start_ticks(pid).unwrap();
        assert!(matches!(
            PidFd::open_verified(pid, ticks + 1),
            Err(PidFdError::NotThatProcess(_))
        ));
        let fd = PidFd::open_verified(pid, ticks).unwrap();
        assert!(!fd.has_exited());
        assert!(fd.signal(libc::SIGKILL).unwrap());
        child.0.wait().unwrap();
        assert!(fd.has_exited());
        assert!(
            !fd.signal(libc::SIGKILL).unwrap(),
            "a reaped process is gone"
        );
    }
}
