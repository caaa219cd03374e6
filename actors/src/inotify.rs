//! One inotify watch on one file, awaited on the tokio runtime: how vigil learns that a cgroup
//! became empty (`cgroup.events`) or saw an OOM kill (`memory.events`) without polling; and
//! one watch on a folder, naming the entries that changed: how `vigil logs -f` follows a log
//! across rotation.
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
        Watch::with_mask(file, libc::IN_MODIFY)
    }

    /// Watch the folder `dir` for what changes its entries' content or names: writes,
    /// truncation, creation, renames and removal (`IN_MODIFY | IN_CREATE | IN_MOVED_FROM |
    /// IN_MOVED_TO | IN_DELETE`). Use [`Watch::changed_entry`] to wait for one entry. Must be
    /// called on a tokio runtime.
    pub fn directory(dir: &Path) -> io::Result<Watch> {
        Watch::with_mask(
            dir,
            libc::IN_MODIFY
                | libc::IN_CREATE
                | libc::IN_MOVED_FROM
                | libc::IN_MOVED_TO
                | libc::IN_DELETE
                | libc::IN_ONLYDIR,
        )
    }

    fn with_mask(file: &Path, mask: u32) -> io::Result<Watch> {
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
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
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

    /// For a [`Watch::directory`]: wait until an event names an entry for which `wanted`
    /// holds (or the kernel's queue overflowed, which may have hidden one). Events for other
    /// entries are read and dropped.
    pub async fn changed_entry(&self, wanted: impl Fn(&[u8]) -> bool) -> io::Result<()> {
        /// `struct inotify_event`: wd, mask, cookie, len, then `len` bytes of name.
        const HEADER: usize = 16;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut ready = self.fd.readable().await?;
            // SAFETY: reading into our own buffer from our inotify fd.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    ready.clear_ready();
                    continue;
                }
                return Err(err);
            }
            let data = &buf[..n.unsigned_abs()];
            let mut hit = false;
            let mut at = 0;
            while at + HEADER <= data.len() {
                let word = |i: usize| {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(&data[at + i..at + i + 4]);
                    u32::from_ne_bytes(w)
                };
                let mask = word(4);
                let len = word(12) as usize;
                let end = (at + HEADER + len).min(data.len());
                let name = &data[at + HEADER..end];
                let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
                if mask & libc::IN_Q_OVERFLOW != 0 || wanted(name) {
                    hit = true;
                }
                at = end;
            }
            if hit {
                return Ok(());
            }
        }
    }
}
