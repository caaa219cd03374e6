//! Reading one file: xxh3 hash, line count and binary detection in a single pass.
//!
//! Owns the per-file read loop. It must not stat, walk or write anything: the caller already
//! knows the file's size from the walk, and the result goes to the database writer.
//!
//! The file is read in fixed chunks into a buffer the caller reuses (no mmap, no whole-file
//! buffers), and reading stops after `size` bytes, which saves the final `read` that would
//! only report end-of-file. A file that grew since the walk is hashed up to its walked size;
//! its mtime changed too, so the next cycle reads it again.
//!
//! A file is binary when its first chunk holds a NUL byte (what git and ripgrep do); binary
//! files are hashed but get no line count. Lines are counted like an editor shows them: the
//! number of `\n`, plus one when the last byte is not a newline.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// The size of the read buffer each reading thread owns.
pub const CHUNK: usize = 64 * 1024;

/// What one read of a file found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    /// xxh3-64 of the bytes read.
    pub hash: u64,
    /// Line count; `None` for binary files.
    pub lines: Option<u64>,
    /// A NUL byte was found in the first chunk.
    pub is_binary: bool,
    /// Bytes actually read.
    pub bytes_read: u64,
}

impl Content {
    /// The content of an empty file, known without opening it.
    pub fn empty() -> Content {
        Content {
            hash: xxh3_64(b""),
            lines: Some(0),
            is_binary: false,
            bytes_read: 0,
        }
    }
}

/// Reads at most `size` bytes of `path` with `buf` (at least a few KiB long).
pub fn read(path: &Path, size: u64, buf: &mut [u8]) -> io::Result<Content> {
    if size == 0 {
        return Ok(Content::empty());
    }
    let mut file = File::open(path)?;
    let first = fill(&mut file, buf, size)?;
    let chunk = &buf[..first];
    let is_binary = memchr::memchr(0, chunk).is_some();
    let mut newlines = if is_binary { 0 } else { count_newlines(chunk) };
    let mut last = chunk.last().copied();
    let mut total = first as u64;
    if first == buf.len() && total < size {
        // Large file: stream the rest.
        let mut hasher = Xxh3::new();
        hasher.update(chunk);
        while total < size {
            let n = fill(&mut file, buf, size - total)?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            hasher.update(chunk);
            if !is_binary {
                newlines += count_newlines(chunk);
            }
            last = chunk.last().copied();
            total += n as u64;
        }
        return Ok(finish(hasher.digest(), is_binary, newlines, last, total));
    }
    Ok(finish(xxh3_64(chunk), is_binary, newlines, last, total))
}

fn finish(hash: u64, is_binary: bool, newlines: u64, last: Option<u8>, total: u64) -> Content {
    let lines = if is_binary {
        None
    } else {
        Some(newlines + u64::from(matches!(last, Some(b) if b != b'\n')))
    };
    Content {
        hash,
        lines,
        is_binary,
        bytes_read: total,
    }
}

/// Fills `buf` (up to `want` bytes) unless end-of-file comes first; returns the count.
fn fill(file: &mut File, buf: &mut [u8], want: u64) -> io::Result<usize> {
    let limit = usize::try_from(want).unwrap_or(usize::MAX).min(buf.len());
    let mut got = 0;
    while got < limit {
        match file.read(&mut buf[got..limit]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn count_newlines(chunk: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', chunk).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_of(bytes: &[u8]) -> Content {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let mut buf = vec![0; 16];
        read(&p, bytes.len() as u64, &mut buf).unwrap()
    }

    #[test]
    fn lines_and_hash_match_whole_file_values() {
        for text in [
            &b"a\nb\n"[..],
            b"a\nb",
            b"\n",
            b"x",
            b"0123456789abcdef\n0123456789abcdef0",
        ] {
            let c = content_of(text);
            assert_eq!(c.hash, xxh3_64(text), "{text:?}");
            assert!(!c.is_binary);
            let nl = text.iter().filter(|&&b| b == b'\n').count() as u64;
            let extra = u64::from(text.last() != Some(&b'\n'));
            assert_eq!(c.lines, Some(nl + extra), "{text:?}");
            assert_eq!(c.bytes_read, text.len() as u64);
        }
    }

    #[test]
    fn nul_in_first_chunk_is_binary() {
        let c = content_of(b"ab\0cd\nlonger than sixteen bytes\n");
        assert!(c.is_binary);
        assert_eq!(c.lines, None);
        let c = content_of(b"sixteen bytes...then a \0 later");
        assert!(!c.is_binary, "only the first chunk decides");
    }

    #[test]
    fn vanished_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("gone"), 10, &mut [0; 64]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
