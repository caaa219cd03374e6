//! One inotify watch on one file, awaited on the tokio runtime: how vigil learns that a cgroup
//! became empty (`cgroup.events`) or saw an OOM kill (`memory.events`) without polling.
//!
//! Owns the inotify descriptor and its registration with the reactor. It must not read the
//! watched file: callers re-read it after each wake-up (inotify says *that* it changed).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use tokio::io::unix::AsyncFd;

/// A watch for modifications of one file.
pub struct Watch {
    fd: AsyncFd<OwnedFd>,
}

impl Watch {
    /// Watch `file` for `IN_MODIFY`. Must be called on a tokio runtime.
    pub fn new(file: &Path) -> io::Result<Watch> {
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid inotify fd and C string.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the `OwnedFd` is open, refers to the same inotify instance for its whole
        // life, and is owned by the `AsyncFd` until it drops.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Watch { fd })
    }

    /// Wait for the next change (events that arrived meanwhile count as one).
    pub async fn changed(&self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut buf = [0u8; 1024];
            // SAFETY: reading into a local buffer from our inotify fd.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n > 0 {
                // Drain the rest without waiting.
                loop {
                    // SAFETY: as above.
                    let more = unsafe {
                        libc::read(
                            self.fd.get_ref().as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                        )
                    };
                    if more <= 0 {
                        break;
                    }
                }
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                ready.clear_ready();
                continue;
            }
            return Err(err);
        }
    }
}
