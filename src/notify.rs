//! The worker side of the notify protocol: `READY=1`, `WATCHDOG=1` and `STATUS=...` lines.
//!
//! Owns writing notify lines to the file descriptor named by `VIGIL_NOTIFY_FD` (systemd's
//! sd_notify, one `KEY=VALUE` line per write). It must not decide *when* to send them: callers
//! do. It never reads from the fd and never closes it before the process exits.
//!
//! # Guarantees
//! - Without `VIGIL_NOTIFY_FD` (or with a value that is not an open descriptor), every method
//!   is a cheap no-op, so a worker run by hand behaves exactly like one run by the server.
//! - A write never panics and never kills the process: on a socket it uses
//!   `send(MSG_NOSIGNAL)`, elsewhere plain `write(2)` (Rust programs start with `SIGPIPE`
//!   ignored, so a closed pipe is `EPIPE`, not a signal). Errors are logged once and then the
//!   notifier goes quiet.
//! - Each line is written with one system call and is shorter than `PIPE_BUF`, so lines from
//!   several threads never interleave.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that names the notify descriptor.
pub const NOTIFY_FD_ENV: &str = "VIGIL_NOTIFY_FD";

/// Longest line we send, newline included (below Linux's `PIPE_BUF` of 4096).
const MAX_LINE: usize = 1024;

/// A handle on the notify descriptor; cheap to share by reference between threads.
#[derive(Debug)]
pub struct Notifier {
    fd: Option<RawFd>,
    /// Set after the first failed write: we log once, then stay silent.
    broken: AtomicBool,
}

impl Notifier {
    /// Reads `VIGIL_NOTIFY_FD`; any problem leaves a disabled notifier (with a warning).
    pub fn from_env() -> Notifier {
        let Some(raw) = std::env::var_os(NOTIFY_FD_ENV) else {
            return Notifier::disabled();
        };
        let fd = match raw.to_str().and_then(|s| s.trim().parse::<RawFd>().ok()) {
            Some(fd) if fd >= 0 => fd,
            _ => {
                tracing::warn!(
                    "{NOTIFY_FD_ENV}={raw:?} is not a file descriptor number; not notifying"
                );
                return Notifier::disabled();
            }
        };
        // SAFETY: F_GETFD only queries the descriptor flags; it has no effect on any fd.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            tracing::warn!("{NOTIFY_FD_ENV}={fd} is not an open descriptor; not notifying");
            return Notifier::disabled();
        }
        Notifier {
            fd: Some(fd),
            broken: AtomicBool::new(false),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            fd: None,
            broken: AtomicBool::new(false),
        }
    }

    /// `READY=1`: the worker has started.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `WATCHDOG=1`: the worker is alive and making progress.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// `STATUS=<text>`: free text shown in `vigil dump` (newlines become spaces).
    pub fn status(&self, text: &str) {
        let mut line = String::with_capacity(text.len() + 7);
        line.push_str("STATUS=");
        line.extend(
            text.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
        self.send(&line);
    }

    fn send(&self, line: &str) {
        let Some(fd) = self.fd else { return };
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut buf = Vec::with_capacity(line.len().min(MAX_LINE) + 1);
        let mut end = line.len().min(MAX_LINE - 1);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        buf.extend_from_slice(&line.as_bytes()[..end]);
        buf.push(b'\n');
        if let Err(err) = write_line(fd, &buf) {
            if !self.broken.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cannot write to the notify descriptor {fd}: {err}; not notifying any more"
                );
            }
        }
    }
}

/// One line, one system call; retried on `EINTR`, and on a short write the rest is sent.
fn write_line(fd: RawFd, mut buf: &[u8]) -> std::io::Result<()> {
    let mut use_send = true;
    while !buf.is_empty() {
        let n = if use_send {
            // SAFETY: `buf` is a valid, initialised slice for the duration of the call;
            // MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
            unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
        } else {
            // SAFETY: as above; write(2) does not retain the pointer.
            unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOTSOCK) if use_send => {
                    use_send = false;
                    continue;
                }
                _ => return Err(err),
            }
        }
        // n >= 0 here, and never more than buf.len().
        buf = &buf[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe(2) just returned these two fresh descriptors; we own them.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn lines_go_to_a_pipe() {
        let (mut rx, tx) = pipe();
        let n = Notifier {
            fd: Some(tx.as_raw_fd()),
            broken: AtomicBool::new(false),
        };
        n.ready();
        n.status("cycle 1\ndone");
        n.watchdog();
        drop(tx);
        let mut got = String::new();
        rx.read_to_string(&mut got).unwrap();
        assert_eq!(got, "READY=1\nSTATUS=cycle 1 done\nWATCHDOG=1\n");
    }

    #[test]
    fn a_closed_pipe_is_not_fatal() {
        let (rx, tx) = pipe();
        drop(rx);
        let n = Notifier {
            fd: Some(tx.as_raw_fd()),
            broken: AtomicBool::new(false),
        };
        n.ready();
        assert!(n.broken.load(Ordering::Relaxed));
        n.watchdog();
    }

    #[test]
    fn disabled_is_silent() {
        let n = Notifier::disabled();
        assert!(n.fd.is_none());
        n.ready();
    }
}
