//! The START file the workers append to, read incrementally.
//!
//! Owns parsing `START <pid> <ns> <id>` lines and the per-worker view of them (who started
//! when, the latest pid of each id). It must not start or kill anything.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One START line: a worker process began to run.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// The worker's pid (also its process group when a supervisor made it a leader).
    pub pid: u32,
    /// CLOCK_REALTIME in ns, taken as the worker's first action.
    pub ns: i64,
    /// The worker's index in the generated config.
    pub id: usize,
}

/// A START file and everything read from it so far.
pub struct StartLog {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Every START line, in file order.
    pub all: Vec<Start>,
    /// The latest START of each id.
    pub latest: HashMap<usize, Start>,
}

impl StartLog {
    /// A reader for `path` (the file may not exist yet).
    pub fn new(path: &Path) -> StartLog {
        StartLog {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            all: Vec::new(),
            latest: HashMap::new(),
        }
    }

    /// Read whatever was appended since the last call; returns how many lines were new.
    pub fn poll(&mut self) -> usize {
        let Ok(mut file) = File::open(&self.path) else {
            return 0;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let mut buf = String::new();
        let Ok(n) = file.read_to_string(&mut buf) else {
            return 0;
        };
        self.offset += n as u64;
        self.partial.push_str(&buf);
        let mut new = 0;
        while let Some(pos) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=pos).collect();
            if let Some(start) = parse(line.trim_end()) {
                self.all.push(start);
                self.latest.insert(start.id, start);
                new += 1;
            }
        }
        new
    }
}

fn parse(line: &str) -> Option<Start> {
    let mut it = line.split(' ');
    if it.next()? != "START" {
        return None;
    }
    Some(Start {
        pid: it.next()?.parse().ok()?,
        ns: it.next()?.parse().ok()?,
        id: it.next()?.parse().ok()?,
    })
}
