//! `vigil logs WORKER [-n N] [-f] [--previous]`: a worker's log, read from its files.
//!
//! Owns reading `<log_dir>/<name>.log` and its rotated siblings (`name.log.1` newest …
//! `name.log.N` oldest, as [`vigil_actors::logfile`] names them) without a server: the last
//! lines, read backwards in blocks from the end (never the whole file), continuing into the
//! rotated files when the live one is shorter; the previous generation, cut out by the
//! `[vigil] started generation N` markers the supervisor writes at each spawn; and following,
//! woken by inotify on the log folder, across rotation (the live file renamed and created
//! anew), truncation and restarts, until Ctrl-C. It must not write the log or ask the server
//! anything: the config names the file, as it does for the server.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vigil_actors::inotify::Watch;
use vigil_actors::logfile::{is_start_marker, is_vigil_line, rotated_path};
use vigil_actors::spec::LogSpec;

use crate::cli::LogsArgs;
use crate::config;
use crate::error::CliError;

/// Bytes read at a time when reading backwards.
const BLOCK: usize = 64 * 1024;
/// Rotated files looked at, at most (the config's `max_files` is the usual bound; a folder
/// left by an older config with more of them is read too, up to this).
const MAX_ROTATED: u32 = 1000;

/// Print what `args` asks of the worker's log.
pub fn run(config: &Path, args: &LogsArgs) -> Result<ExitCode, CliError> {
    let loaded = config::load(config)?;
    let Some(spec) = loaded.tree.workers.iter().find(|w| w.name == args.worker) else {
        return Err(CliError::NoSuchWorker {
            worker: args.worker.clone(),
            config: loaded.shown.to_path_buf(),
        });
    };
    let log = spec.log.clone();
    let mut out = Output::new();
    if args.follow {
        return follow(&args.worker, &log, args.lines, &mut out);
    }
    let lines = if args.previous {
        previous_generation(&log.path, args.lines).map_err(|e| read_error(&log.path, e))?
    } else {
        let mut files = LogFiles::open(&log.path).map_err(|e| read_error(&log.path, e))?;
        if !files.any {
            return Err(CliError::NoLog {
                worker: args.worker.clone(),
                log: log.path.clone(),
                folder: false,
            });
        }
        last_lines(&mut files, args.lines).map_err(|e| read_error(&log.path, e))?
    };
    let lines = match lines {
        Some(lines) => lines,
        None => {
            return Err(CliError::NoPreviousGeneration {
                worker: args.worker.clone(),
                log: log.path.clone(),
            });
        }
    };
    for line in &lines {
        out.line(line);
    }
    out.finish()
}

fn read_error(path: &Path, err: io::Error) -> CliError {
    CliError::io(format!("cannot read {}", path.display()), err)
}

// ---------------------------------------------------------------------------------------------
// Reading backwards
// ---------------------------------------------------------------------------------------------

/// The lines of one file, newest first, read in blocks from the end.
struct Backwards {
    file: File,
    /// Bytes before this offset have not been read yet.
    pos: u64,
    /// Read but not yet returned: the bytes just after `pos`, a line's start at most.
    buf: Vec<u8>,
    /// The file's final newline has not been dropped yet.
    strip_final: bool,
    done: bool,
    block: usize,
}

impl Backwards {
    /// Read `file`'s first `len` bytes backwards.
    fn new(file: File, len: u64) -> Backwards {
        Backwards::with_block(file, len, BLOCK)
    }

    fn with_block(file: File, len: u64, block: usize) -> Backwards {
        Backwards {
            file,
            pos: len,
            buf: Vec::new(),
            strip_final: true,
            done: len == 0,
            block: block.max(1),
        }
    }

    /// The next line going backwards (without its newline), or `None` at the file's start.
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = memchr::memrchr(b'\n', &self.buf) {
                let line = self.buf.split_off(i + 1);
                self.buf.truncate(i);
                return Ok(Some(line));
            }
            if self.pos == 0 {
                if self.done {
                    return Ok(None);
                }
                self.done = true;
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            let step = (self.block as u64).min(self.pos);
            self.pos -= step;
            let mut block = vec![0u8; step as usize];
            self.file.read_exact_at(&mut block, self.pos)?;
            block.extend_from_slice(&self.buf);
            self.buf = block;
            if self.strip_final {
                self.strip_final = false;
                if self.buf.last() == Some(&b'\n') {
                    self.buf.pop();
                }
            }
        }
    }
}

/// The live log and then its rotated files, newest line first.
struct LogFiles {
    path: PathBuf,
    /// The next rotated file to open (`name.log.{next}`).
    next: u32,
    current: Option<Backwards>,
    /// Whether any of the files exists.
    any: bool,
}

impl LogFiles {
    /// Start at the end of the live file (which may be missing: the rotated ones are read).
    fn open(path: &Path) -> io::Result<LogFiles> {
        let current = match File::open(path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Some(Backwards::new(file, len))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        LogFiles::starting_with(path, current)
    }

    /// Start with `current` (the live file, up to a length the caller chose).
    fn starting_with(path: &Path, current: Option<Backwards>) -> io::Result<LogFiles> {
        let any = current.is_some() || rotated_path(path, 1).exists();
        Ok(LogFiles {
            path: path.to_path_buf(),
            next: 1,
            current,
            any,
        })
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(current) = &mut self.current {
                if let Some(line) = current.next_line()? {
                    return Ok(Some(line));
                }
                self.current = None;
            }
            if self.next > MAX_ROTATED {
                return Ok(None);
            }
            let path = rotated_path(&self.path, self.next);
            self.next += 1;
            match File::open(&path) {
                Ok(file) => {
                    let len = file.metadata()?.len();
                    self.current = Some(Backwards::new(file, len));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.next = MAX_ROTATED + 1;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The last `n` lines, oldest first. `Some` always (the `Option` matches
/// [`previous_generation`]).
fn last_lines(files: &mut LogFiles, n: usize) -> io::Result<Option<Vec<Vec<u8>>>> {
    let mut lines = Vec::with_capacity(n.min(4096));
    while lines.len() < n {
        match files.next_line()? {
            Some(line) => lines.push(line),
            None => break,
        }
    }
    lines.reverse();
    Ok(Some(lines))
}

/// The last `n` lines of the generation before the last one: the lines between the last two
/// start markers (the earlier marker included). `None` when there is no such generation.
fn previous_generation(path: &Path, n: usize) -> io::Result<Option<Vec<Vec<u8>>>> {
    let mut files = LogFiles::open(path)?;
    let mut seen_last = false;
    let mut lines = Vec::new();
    while lines.len() < n {
        let Some(line) = files.next_line()? else {
            break;
        };
        if !seen_last {
            seen_last = is_start_marker(&line);
            continue;
        }
        let marker = is_start_marker(&line);
        lines.push(line);
        if marker {
            break;
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    lines.reverse();
    Ok(Some(lines))
}

// ---------------------------------------------------------------------------------------------
// Following
// ---------------------------------------------------------------------------------------------

/// Print the last `n` lines, then every line written after them, until Ctrl-C.
fn follow(worker: &str, log: &LogSpec, n: usize, out: &mut Output) -> Result<ExitCode, CliError> {
    let dir = log
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("cannot start the runtime", e))?;
    runtime.block_on(async {
        // The watch comes first: whatever is written after the tail is read wakes it.
        let watch = Watch::directory(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CliError::NoLog {
                    worker: worker.to_string(),
                    log: dir.to_path_buf(),
                    folder: true,
                }
            } else {
                CliError::io(format!("cannot watch {}", dir.display()), e)
            }
        })?;
        let mut tail = Follower::new(&log.path);
        tail.open_live().map_err(|e| read_error(&log.path, e))?;
        let backwards = match &tail.file {
            Some(f) => Some(Backwards::new(
                f.try_clone().map_err(|e| read_error(&log.path, e))?,
                tail.pos,
            )),
            None => None,
        };
        let mut files =
            LogFiles::starting_with(&log.path, backwards).map_err(|e| read_error(&log.path, e))?;
        for line in last_lines(&mut files, n)
            .map_err(|e| read_error(&log.path, e))?
            .unwrap_or_default()
        {
            out.line(&line);
        }
        let name = log
            .path
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            tail.read_new(out).map_err(|e| read_error(&log.path, e))?;
            if out.flush_or_closed()? {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                woken = watch.changed_entry(|entry| entry == name.as_slice()) => {
                    woken.map_err(|e| CliError::io(format!("cannot watch {}", dir.display()), e))?;
                }
                _ = &mut interrupted => {
                    out.finish()?;
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    })
}

/// The live file being followed: which one (its inode), how far it has been read, and the
/// start of a line not yet ended.
struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
}

impl Follower {
    fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_path_buf(),
            file: None,
            ino: (0, 0),
            pos: 0,
            partial: Vec::new(),
        }
    }

    /// Open the live file positioned at its end (nothing when it does not exist yet).
    fn open_live(&mut self) -> io::Result<()> {
        match File::open(&self.path) {
            Ok(file) => {
                let meta = file.metadata()?;
                self.ino = (meta.dev(), meta.ino());
                self.pos = meta.len();
                self.file = Some(file);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Print the lines written since the last call: the rest of the file followed, then, if
    /// the path now names another file (rotated) or the file shrank (truncated), that one
    /// from its start.
    fn read_new(&mut self, out: &mut Output) -> io::Result<()> {
        loop {
            if let Some(file) = &self.file {
                let mut chunk = vec![0u8; BLOCK];
                loop {
                    let got = file.read_at(&mut chunk, self.pos)?;
                    if got == 0 {
                        break;
                    }
                    self.pos += got as u64;
                    self.partial.extend_from_slice(&chunk[..got]);
                    print_complete(&mut self.partial, out);
                }
            }
            match std::fs::metadata(&self.path) {
                Ok(meta) if self.file.is_none() || (meta.dev(), meta.ino()) != self.ino => {
                    // A new live file (created, or rotated in): the old one is read to its end.
                    self.flush_partial(out);
                    self.file = None;
                    self.open_live()?;
                    self.pos = 0;
                    if self.file.is_none() {
                        return Ok(());
                    }
                }
                Ok(meta) if meta.len() < self.pos => {
                    // Truncated in place (rotation with `max_files: 0`).
                    self.flush_partial(out);
                    self.pos = 0;
                }
                Ok(_) => return Ok(()),
                // Between the rename and the creation of the new file: wait for the creation.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn flush_partial(&mut self, out: &mut Output) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            out.line(&line);
        }
    }
}

/// Print the complete lines at the start of `partial`, keeping the unfinished one.
fn print_complete(partial: &mut Vec<u8>, out: &mut Output) {
    if let Some(end) = memchr::memrchr(b'\n', partial) {
        let rest = partial.split_off(end + 1);
        let complete = std::mem::replace(partial, rest);
        for line in complete[..end].split(|b| *b == b'\n') {
            out.line(line);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Buffered stdout that colours vigil's own lines on a terminal and treats a closed pipe
/// (`vigil logs w | head`) as the reader being done.
struct Output {
    buf: Vec<u8>,
    paint: bool,
}

impl Output {
    fn new() -> Output {
        let paint =
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Output {
            buf: Vec::with_capacity(BLOCK),
            paint,
        }
    }

    fn line(&mut self, line: &[u8]) {
        let paint = self.paint && is_vigil_line(line);
        if paint {
            self.buf.extend_from_slice(b"\x1b[36m");
        }
        self.buf.extend_from_slice(line);
        if paint {
            self.buf.extend_from_slice(b"\x1b[0m");
        }
        self.buf.push(b'\n');
    }

    /// Write what is buffered; `Ok(true)` when the reader has gone away.
    fn flush_or_closed(&mut self) -> Result<bool, CliError> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        let mut stdout = io::stdout().lock();
        let written = stdout.write_all(&self.buf).and_then(|()| stdout.flush());
        self.buf.clear();
        match written {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(true),
            Err(e) => Err(CliError::Stdout(e)),
        }
    }

    fn finish(&mut self) -> Result<ExitCode, CliError> {
        self.flush_or_closed()?;
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(files: &mut LogFiles) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(l) = files.next_line().unwrap() {
            all.push(String::from_utf8(l).unwrap());
        }
        all
    }

    fn backwards(text: &str, block: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let mut b = Backwards::with_block(file, text.len() as u64, block);
        let mut all = Vec::new();
        while let Some(l) = b.next_line().unwrap() {
            all.push(String::from_utf8(l).unwrap());
        }
        all
    }

    #[test]
    fn backwards_yields_every_line_newest_first_whatever_the_block() {
        for block in [1, 2, 3, 7, 64 * 1024] {
            assert_eq!(backwards("a\nbb\n\nccc\n", block), ["ccc", "", "bb", "a"]);
            assert_eq!(backwards("a\nno newline", block), ["no newline", "a"]);
            assert_eq!(backwards("\n", block), [""]);
            assert_eq!(backwards("\nx\n", block), ["x", ""]);
            assert!(backwards("", block).is_empty());
        }
    }

    #[test]
    fn lines_continue_into_the_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        std::fs::write(&path, "5\n6\n").unwrap();
        std::fs::write(rotated_path(&path, 1), "3\n4\n").unwrap();
        std::fs::write(rotated_path(&path, 2), "1\n2\n").unwrap();
        // A gap ends the chain: .4 is not read without .3.
        std::fs::write(rotated_path(&path, 4), "old\n").unwrap();
        let mut files = LogFiles::open(&path).unwrap();
        assert_eq!(lines_of(&mut files), ["6", "5", "4", "3", "2", "1"]);
        let mut files = LogFiles::open(&path).unwrap();
        let got = last_lines(&mut files, 3).unwrap().unwrap();
        assert_eq!(got, [b"4".to_vec(), b"5".to_vec(), b"6".to_vec()]);
        // No live file (mid-rotation): the rotated ones still count.
        std::fs::remove_file(&path).unwrap();
        let mut files = LogFiles::open(&path).unwrap();
        assert!(files.any);
        assert_eq!(lines_of(&mut files), ["4", "3", "2", "1"]);
    }

    #[test]
    fn previous_is_the_segment_between_the_last_two_markers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let t = "2026-12-01T10:00:00.000Z";
        std::fs::write(
            rotated_path(&path, 1),
            format!(
                "{t} [vigil] started generation 1, pid 10\n{t} one\n{t} [vigil] generation 1 exited with code 1\n{t} [vigil] started generation 2, pid 11\n{t} two-a\n"
            ),
        )
        .unwrap();
        std::fs::write(
            &path,
            format!(
                "{t} two-b\n{t} [vigil] generation 2 killed by SIGKILL\n{t} [vigil] started generation 3, pid 12\n{t} three\n"
            ),
        )
        .unwrap();
        let text = |v: Vec<Vec<u8>>| -> Vec<String> {
            v.into_iter()
                .map(|l| String::from_utf8(l).unwrap()[t.len() + 1..].to_string())
                .collect()
        };
        let prev = text(previous_generation(&path, 50).unwrap().unwrap());
        assert_eq!(
            prev,
            [
                "[vigil] started generation 2, pid 11",
                "two-a",
                "two-b",
                "[vigil] generation 2 killed by SIGKILL"
            ]
        );
        let last_two = text(previous_generation(&path, 2).unwrap().unwrap());
        assert_eq!(
            last_two,
            ["two-b", "[vigil] generation 2 killed by SIGKILL"]
        );
        // Only one marker: no previous generation.
        std::fs::remove_file(rotated_path(&path, 1)).unwrap();
        std::fs::write(
            &path,
            format!("{t} [vigil] started generation 1, pid 5\n{t} x\n"),
        )
        .unwrap();
        assert!(previous_generation(&path, 50).unwrap().is_none());
    }

    #[test]
    fn the_follower_reads_across_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = Follower::new(&path);
        f.open_live().unwrap();
        let mut out = Output {
            buf: Vec::new(),
            paint: false,
        };
        let append = |p: &Path, s: &str| {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            file.write_all(s.as_bytes()).unwrap();
        };
        append(&path, "a\nhal");
        f.read_new(&mut out).unwrap();
        assert_eq!(out.buf, b"a\n");
        append(&path, "f\n");
        std::fs::rename(&path, rotated_path(&path, 1)).unwrap();
        f.read_new(&mut out).unwrap();
        assert_eq!(out.buf, b"a\nhalf\n", "the old file is read to its end");
        append(&path, "new\n");
        f.read_new(&mut out).unwrap();
        assert_eq!(out.buf, b"a\nhalf\nnew\n");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, "t\n");
        f.read_new(&mut out).unwrap();
        assert_eq!(out.buf, b"a\nhalf\nnew\nt\n");
    }

    #[test]
    fn only_vigil_lines_are_painted() {
        let mut out = Output {
            buf: Vec::new(),
            paint: true,
        };
        out.line(b"2026-12-01T10:00:00.000Z [vigil] started generation 1, pid 1");
        out.line(b"2026-12-01T10:00:00.000Z hello");
        let text = String::from_utf8(out.buf).unwrap();
        assert_eq!(
            text,
            "\x1b[36m2026-12-01T10:00:00.000Z [vigil] started generation 1, pid 1\x1b[0m\n2026-12-01T10:00:00.000Z hello\n"
        );
    }
}
