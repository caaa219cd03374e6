//! A worker's log file: created before the spawn, timestamped lines, rotated by size.
//!
//! Owns `<log_dir>/<name>.log` and its rotated siblings `<name>.log.1` … `<name>.log.N`, and the
//! capture of a worker's output into it: the pipe is read in large chunks, every line gets a
//! timestamp, and the last lines are kept for the exit record. It must not decide anything about
//! the worker: it only writes what it is given.
//!
//! # Guarantees
//! - The file exists (created, with its directory) as soon as [`LogFile::open`] returns, before
//!   any process is spawned.
//! - A worker that floods its output is never blocked by the supervisor: the reader drains the
//!   pipe as fast as the page cache takes writes, one `write` per chunk read, never per line.
//! - Disk use is bounded by `max_bytes × (max_files + 1)` plus one chunk.
//! - A removed file or directory is recreated at the next spawn or failed rotation; lines that
//!   could not be written (disk full) are counted and reported once writing works again.
//!
//! # Caveats
//! - Lines longer than [`MAX_LINE`] are split; a line without a final newline is flushed when
//!   the pipe closes.
//! - All lines read in one chunk share one timestamp (the time of the read).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncReadExt;

use crate::spec::LogSpec;

/// What starts every line vigil itself writes into a worker's log, after the timestamp.
pub const VIGIL_PREFIX: &str = "[vigil] ";
/// What follows [`VIGIL_PREFIX`] on the line written when a generation is spawned
/// (`[vigil] started generation 3, pid 1234`): where one generation's lines begin.
pub const START_MARKER: &str = "started generation ";

/// Longest line kept as one line; longer ones are split.
pub const MAX_LINE: usize = 16 * 1024;
/// Lines kept for an exit record's `log_tail`.
pub const TAIL_LINES: usize = 20;
/// Bytes read from the pipe at once, at most.
const CHUNK: usize = 64 * 1024;
/// The read buffer's first size. It grows (×4, up to [`CHUNK`]) each time a read fills it, so a
/// quiet worker costs 1 KiB, not 64 KiB plus the pages its allocation touches, while a flood
/// is still read in 64 KiB chunks after two reads.
const FIRST_CHUNK: usize = 1024;

/// An open, size-rotated log file shared by the supervisor and its capture tasks.
#[derive(Clone, Debug)]
pub struct LogFile {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    /// Lines that could not be written since the last successful write, and why.
    lost: Option<Lost>,
    /// Rotation is failing: warned once, not again until it works.
    rotation_failing: bool,
}

/// Writing stopped: how many lines were lost so far, and the first error's short text.
#[derive(Debug)]
struct Lost {
    lines: u64,
    why: String,
}

impl LogFile {
    /// Create (or append to) the log file and its directory.
    pub fn open(spec: &LogSpec) -> io::Result<LogFile> {
        if let Some(dir) = spec.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(&spec.path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            inner: Arc::new(Mutex::new(Inner {
                path: spec.path.clone(),
                file,
                size,
                max_bytes: spec.max_bytes.max(1),
                max_files: spec.max_files,
                lost: None,
                rotation_failing: false,
            })),
        })
    }

    /// Take new rotation settings (a reload); they apply from the next write on.
    pub fn set_rotation(&self, max_bytes: u64, max_files: u32) {
        let mut inner = self.lock();
        inner.max_bytes = max_bytes.max(1);
        inner.max_files = max_files;
    }

    /// Reopen the file (recreating its directory) when it is no longer the one at its path:
    /// removed, or its directory removed (`rm -rf <log_dir>`). Called at each spawn, so a new
    /// generation never writes into a deleted file. Returns whether it reopened.
    pub fn reopen_if_replaced(&self) -> bool {
        let mut inner = self.lock();
        if inner.is_current() {
            return false;
        }
        match inner.reopen() {
            Ok(()) => {
                tracing::warn!(path = %inner.path.display(), "log file was removed; recreated it");
                true
            }
            Err(e) => {
                tracing::warn!(path = %inner.path.display(), error = %e, "log file was removed and cannot be recreated");
                false
            }
        }
    }

    /// The live file's path.
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    /// Append one line written by vigil itself (`[vigil] started generation 3, pid 1234`).
    pub fn note(&self, line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 40);
        push_timestamp(&mut buf);
        buf.extend_from_slice(VIGIL_PREFIX.as_bytes());
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.write(&buf);
    }

    /// Write already formatted bytes, rotating first when they would overflow the file.
    /// A full disk must not stop the supervisor or block the worker: when writing fails, one
    /// warning says so and the lost lines are counted; the first write that works again is
    /// preceded by `[vigil] N lines lost: disk full` (or the error's text). A failed rotation
    /// reopens the file (recreating a removed directory), warning once until it works again.
    fn write(&self, buf: &[u8]) {
        let mut inner = self.lock();
        if inner.size > 0 && inner.size + buf.len() as u64 > inner.max_bytes {
            // A rotation that fails (its directory removed, say) reopens the file instead;
            // that counts as working only if it leaves room.
            let rotated = inner.rotate().or_else(|e| {
                inner
                    .reopen()
                    .map_err(|_| io::Error::new(e.kind(), e.to_string()))?;
                if inner.size + buf.len() as u64 > inner.max_bytes && inner.size > 0 {
                    return Err(e);
                }
                Ok(())
            });
            match rotated {
                Ok(()) => {
                    if inner.rotation_failing {
                        inner.rotation_failing = false;
                        tracing::info!(path = %inner.path.display(), "log rotation works again");
                    }
                }
                Err(e) => {
                    if !inner.rotation_failing {
                        inner.rotation_failing = true;
                        tracing::warn!(path = %inner.path.display(), error = %e, "log rotation failed (not repeated until it works)");
                    }
                }
            }
        }
        if let Some(lost) = inner.lost.take() {
            let mut marker = Vec::with_capacity(80);
            push_timestamp(&mut marker);
            let _ = writeln!(
                marker,
                "{VIGIL_PREFIX}{} lines lost: {}",
                lost.lines, lost.why
            );
            match inner.file.write_all(&marker) {
                Ok(()) => {
                    inner.size += marker.len() as u64;
                    tracing::info!(path = %inner.path.display(), lost = lost.lines, "log writing resumed");
                }
                Err(_) => {
                    inner.lost = Some(lost);
                }
            }
        }
        if let Some(lost) = &mut inner.lost {
            lost.lines += count_lines(buf);
            return;
        }
        match inner.file.write_all(buf) {
            Ok(()) => inner.size += buf.len() as u64,
            Err(e) => {
                let why = if e.raw_os_error() == Some(libc::ENOSPC) {
                    "disk full".to_string()
                } else {
                    e.to_string()
                };
                tracing::warn!(path = %inner.path.display(), error = %e, "log writing stopped; lost lines are counted until it works again");
                inner.lost = Some(Lost {
                    lines: count_lines(buf),
                    why,
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// `name.log.(N-1)` → `name.log.N`, …, `name.log` → `name.log.1`, then a fresh `name.log`.
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        // Only the contiguous run name.log.1 … name.log.k exists (we wrote it): shift that run,
        // not every index up to max_files (which can be large: no file-system loop of that size
        // on the async runtime).
        let mut k = 0;
        while k + 1 < self.max_files && rotated(&self.path, k + 1).exists() {
            k += 1;
        }
        for i in (1..=k).rev() {
            fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1))?;
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Whether the open file is still the one at `path` (same device and inode).
    fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(&self.path), self.file.metadata()) {
            (Ok(on_disk), Ok(open)) => on_disk.dev() == open.dev() && on_disk.ino() == open.ino(),
            _ => false,
        }
    }

    /// Open `path` afresh, recreating its directory.
    fn reopen(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        self.file = open_append(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }
}

fn count_lines(buf: &[u8]) -> u64 {
    buf.iter().filter(|b| **b == b'\n').count().max(1) as u64
}

/// The text of a log line after its timestamp (the whole line when it has none).
pub fn line_text(line: &[u8]) -> &[u8] {
    match line.iter().position(|b| *b == b' ') {
        Some(i) if line.first().is_some_and(u8::is_ascii_digit) => &line[i + 1..],
        _ => line,
    }
}

/// Whether `line` (timestamp included) was written by vigil rather than by the worker.
pub fn is_vigil_line(line: &[u8]) -> bool {
    line_text(line).starts_with(VIGIL_PREFIX.as_bytes())
}

/// Whether `line` is the marker vigil writes when it spawns a generation.
pub fn is_start_marker(line: &[u8]) -> bool {
    line_text(line)
        .strip_prefix(VIGIL_PREFIX.as_bytes())
        .is_some_and(|rest| rest.starts_with(START_MARKER.as_bytes()))
}

/// The `i`-th rotated sibling of a live log file: `name.log.1` is the newest, `name.log.N`
/// the oldest.
pub fn rotated_path(path: &Path, i: u32) -> PathBuf {
    rotated(path, i)
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn push_timestamp(buf: &mut Vec<u8>) {
    let now = jiff::Timestamp::now();
    // RFC 3339 with milliseconds, UTC: 2026-11-28T22:10:03.123Z
    let _ = write!(buf, "{:.3} ", now);
}

/// The last lines a worker wrote, most recent last.
#[derive(Debug, Default, Clone)]
pub struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &[u8]) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        let text = String::from_utf8_lossy(line);
        self.lines
            .push_back(text.trim_end_matches('\r').to_string());
    }

    /// The kept lines, oldest first.
    pub fn into_lines(self) -> Vec<String> {
        self.lines.into()
    }
}

/// Read `pipe` until end of file, writing timestamped lines to `log`; returns the tail.
pub async fn capture(mut pipe: tokio::net::unix::pipe::Receiver, log: LogFile) -> Tail {
    let mut tail = Tail::default();
    let mut chunk = vec![0u8; FIRST_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) if n == chunk.len() && n < CHUNK => {
                let grown = (n * 4).min(CHUNK);
                chunk.resize(grown, 0);
                n
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading worker output failed");
                break;
            }
        };
        out.clear();
        let mut stamp = Vec::with_capacity(32);
        push_timestamp(&mut stamp);
        let mut data = &chunk[..n];
        while let Some(pos) = memchr_newline(data) {
            let (line, rest) = data.split_at(pos);
            data = &rest[1..];
            if pending.is_empty() {
                emit(&mut out, &stamp, line, &mut tail);
            } else {
                pending.extend_from_slice(line);
                let whole = std::mem::take(&mut pending);
                emit(&mut out, &stamp, &whole, &mut tail);
            }
        }
        pending.extend_from_slice(data);
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            let line = std::mem::replace(&mut pending, rest);
            emit(&mut out, &stamp, &line, &mut tail);
        }
        if !out.is_empty() {
            log.write(&out);
        }
    }
    if !pending.is_empty() {
        out.clear();
        let mut stamp = Vec::with_capacity(32);
        push_timestamp(&mut stamp);
        emit(&mut out, &stamp, &pending, &mut tail);
        log.write(&out);
    }
    tail
}

fn emit(out: &mut Vec<u8>, stamp: &[u8], line: &[u8], tail: &mut Tail) {
    out.extend_from_slice(stamp);
    out.extend_from_slice(line);
    out.push(b'\n');
    tail.push(line);
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vigil_lines_and_start_markers_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            path: dir.path().join("w.log"),
            max_bytes: 1 << 20,
            max_files: 1,
        };
        let log = LogFile::open(&spec).unwrap();
        log.note(&format!("{START_MARKER}4, pid 77"));
        log.note("generation 4 exited with code 1; restarting in 0ms");
        let text = fs::read(&spec.path).unwrap();
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert!(is_start_marker(lines[0]) && is_vigil_line(lines[0]));
        assert!(!is_start_marker(lines[1]) && is_vigil_line(lines[1]));
        assert!(!is_vigil_line(b"2026-01-01T00:00:00.000Z hello [vigil] x"));
        assert_eq!(rotated_path(&spec.path, 2), dir.path().join("w.log.2"));
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            path: dir.path().join("sub/w.log"),
            max_bytes: 100,
            max_files: 2,
        };
        let log = LogFile::open(&spec).unwrap();
        assert!(spec.path.exists(), "created before anything is written");
        for i in 0..20 {
            log.note(&format!("line {i} with some padding to fill the file"));
        }
        assert!(dir.path().join("sub/w.log.1").exists());
        assert!(dir.path().join("sub/w.log.2").exists());
        assert!(!dir.path().join("sub/w.log.3").exists());
        let live = fs::read_to_string(&spec.path).unwrap();
        assert!(live.contains("line 19"));
        assert!(fs::metadata(&spec.path).unwrap().len() <= 200);
    }

    #[tokio::test]
    async fn capture_timestamps_lines_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            path: dir.path().join("w.log"),
            max_bytes: 1 << 20,
            max_files: 1,
        };
        let log = LogFile::open(&spec).unwrap();
        let (tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let task = tokio::spawn(capture(rx, log));
        let mut tx = tx;
        use tokio::io::AsyncWriteExt;
        for i in 0..30 {
            tx.write_all(format!("out {i}\n").as_bytes()).await.unwrap();
        }
        tx.write_all(b"no newline at end").await.unwrap();
        drop(tx);
        let tail = task.await.unwrap().into_lines();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "no newline at end");
        assert_eq!(tail[0], "out 11");
        let text = fs::read_to_string(&spec.path).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.ends_with(" out 0"), "{first}");
        assert!(first.starts_with("20"), "timestamped: {first}");
    }

    #[tokio::test]
    async fn a_flood_grows_the_read_buffer_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            path: dir.path().join("w.log"),
            max_bytes: 1 << 30,
            max_files: 1,
        };
        let log = LogFile::open(&spec).unwrap();
        let (tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let task = tokio::spawn(capture(rx, log));
        let mut tx = tx;
        use tokio::io::AsyncWriteExt;
        let mut sent = Vec::new();
        for i in 0..20_000 {
            sent.push(format!("flood line {i:06} {}", "x".repeat(i % 50)));
        }
        tx.write_all((sent.join("\n") + "\n").as_bytes())
            .await
            .unwrap();
        drop(tx);
        let tail = task.await.unwrap().into_lines();
        assert_eq!(tail.last().unwrap(), sent.last().unwrap());
        let text = fs::read_to_string(&spec.path).unwrap();
        let got: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(got.len(), sent.len());
        assert!(got.iter().zip(&sent).all(|(g, s)| g == s));
    }

    #[test]
    fn a_removed_directory_is_recreated_on_rotation_and_at_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            path: dir.path().join("sub/w.log"),
            max_bytes: 100,
            max_files: 2,
        };
        let log = LogFile::open(&spec).unwrap();
        log.note("before the removal, padded past the size bound of the file");
        fs::remove_dir_all(dir.path().join("sub")).unwrap();
        for i in 0..10 {
            log.note(&format!("after removal {i}, padded to force a rotation"));
        }
        let live = fs::read_to_string(&spec.path).expect("recreated by the failed rotation");
        assert!(live.contains("after removal 9"), "{live}");
        assert!(!log.lock().rotation_failing);

        // Without rotation (a big bound), the next spawn's reopen notices the removal.
        let big = LogSpec {
            max_bytes: 1 << 20,
            ..spec.clone()
        };
        let log = LogFile::open(&big).unwrap();
        assert!(
            !log.reopen_if_replaced(),
            "nothing to do while the file is there"
        );
        fs::remove_dir_all(dir.path().join("sub")).unwrap();
        fs::create_dir_all(dir.path().join("sub")).unwrap();
        assert!(log.reopen_if_replaced());
        log.note("into the new file");
        assert!(
            fs::read_to_string(&big.path)
                .unwrap()
                .contains("into the new file")
        );
    }

    #[test]
    fn rotation_with_a_huge_max_files_touches_only_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            path: dir.path().join("w.log"),
            max_bytes: 50,
            max_files: u32::MAX,
        };
        let log = LogFile::open(&spec).unwrap();
        let started = std::time::Instant::now();
        for i in 0..5 {
            log.note(&format!("line {i} padded past fifty bytes of log file"));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(dir.path().join("w.log.4").exists());
        assert!(!dir.path().join("w.log.5").exists());
        let oldest = fs::read_to_string(dir.path().join("w.log.4")).unwrap();
        assert!(oldest.contains("line 0"), "{oldest}");
    }
}
