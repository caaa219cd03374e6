//! Resource use per process group: resident memory, CPU% and member count, for the dump.
//!
//! Owns a [`GroupSampler`]: one pass over `/proc` that finds each asked group's members and
//! reads their memory and CPU time, and the previous readings that CPU% is computed from. It
//! must not signal, wait for or otherwise touch processes, and it must not decide anything from
//! what it reads: callers show the numbers.
//!
//! # How
//! Finding a group's members means reading `/proc/<pid>/stat` of every process (field 5,
//! `pgrp`; sysinfo does not know process groups). That same line already holds what the dump
//! shows: `utime` + `stime` (fields 14-15), `starttime` (22, to tell a reused pid apart) and
//! `rss` (24, in pages). So one read per process gives everything; refreshing the members
//! again with sysinfo would read three more files per member (`status`, `stat`, `statm`) and was
//! measured at several times the cost of the scan itself (see the module's benchmark test).
//! Lines are parsed by [`crate::procfs::parse_fields`] (the one `/proc/<pid>/stat` parser,
//! allocation-free); one scan covers all groups, and like `procfs` it leaves zombies out.
//! Each file is opened relative to an open `/proc` (`openat`), and above a few hundred
//! processes the reads are split over the CPUs: at 1000 workers the scan is the longest part
//! of a dump, and it is nothing but system calls.
//!
//! # Caveats
//! - CPU% is the average since the previous `sample` that saw the same process (percent of one
//!   core: a group using two cores shows 200); for a process seen for the first time it is the
//!   average over its whole life.
//! - A process can exit or change group during the scan: it is then missing from the sums.
//!   Numbers are a snapshot, not an invariant.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::time::Instant;

use crate::procfs::{STAT_LINE_MAX, StatFields, parse_fields, read_stat_line};

/// What one process group uses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupUsage {
    /// Resident memory summed over the members, in bytes.
    pub rss_bytes: u64,
    /// CPU use summed over the members, in percent of one core (see the module's caveats).
    pub cpu_percent: f64,
    /// How many processes are in the group.
    pub processes: u32,
    /// CPU time (user + system) the members have used over their lives, in seconds.
    pub cpu_seconds: f64,
}

/// The previous reading of one process.
#[derive(Clone, Copy, Debug)]
struct Reading {
    start_ticks: u64,
    cpu_ticks: u64,
    at: Instant,
}

/// Samples groups; keep one and reuse it so CPU% has a previous reading to compare with.
#[derive(Debug)]
pub struct GroupSampler {
    /// Last sample's readings of the members it found, by pid.
    previous: HashMap<u32, Reading>,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    ticks_per_sec: f64,
    /// Bytes per page (`sysconf(_SC_PAGESIZE)`).
    page_size: u64,
}

impl Default for GroupSampler {
    fn default() -> Self {
        GroupSampler::new()
    }
}

impl GroupSampler {
    /// A sampler with nothing read yet.
    pub fn new() -> GroupSampler {
        // SAFETY: sysconf only reads a system constant; it returns -1 on error, handled below.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        GroupSampler {
            previous: HashMap::new(),
            ticks_per_sec: crate::procfs::ticks_per_second() as f64,
            page_size: if page > 0 { page as u64 } else { 4096 },
        }
    }

    /// Usage of each asked group that has at least one live member; absent groups are left out.
    pub fn sample(&mut self, pgids: &[u32]) -> HashMap<u32, GroupUsage> {
        let wanted: HashSet<u32> = pgids.iter().copied().filter(|&g| g > 0).collect();
        if wanted.is_empty() {
            self.previous.clear();
            return HashMap::new();
        }
        self.scan(Some(&wanted))
    }

    /// Usage of every process group on the machine. Lets a caller start the `/proc` scan
    /// before it knows which groups it will need (the dump runs it alongside asking the
    /// WorkerSupervisors for their snapshots).
    pub fn sample_all(&mut self) -> HashMap<u32, GroupUsage> {
        self.scan(None)
    }

    fn scan(&mut self, wanted: Option<&HashSet<u32>>) -> HashMap<u32, GroupUsage> {
        let expected = wanted.map_or(256, HashSet::len);
        let mut result: HashMap<u32, GroupUsage> = HashMap::with_capacity(expected);
        let mut seen = HashMap::with_capacity(expected);
        let (proc_dir, pids) = match list_pids() {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read /proc: process groups are not sampled");
                return result;
            }
        };
        let now = Instant::now();
        let members = read_members(&proc_dir, &pids, wanted);
        let mut boot_secs: Option<Option<f64>> = None; // read /proc/uptime at most once
        for (pid, stat) in members {
            let cpu_secs = match self.previous.get(&pid) {
                Some(prev) if prev.start_ticks == stat.start_ticks => {
                    let wall = now.duration_since(prev.at).as_secs_f64();
                    let used = stat.cpu_ticks.saturating_sub(prev.cpu_ticks) as f64;
                    (wall > 0.0).then(|| used / self.ticks_per_sec / wall)
                }
                // First sight of this process: its average over its life so far.
                _ => boot_secs.get_or_insert_with(uptime_secs).and_then(|up| {
                    let alive = up - stat.start_ticks as f64 / self.ticks_per_sec;
                    (alive > 0.0).then(|| stat.cpu_ticks as f64 / self.ticks_per_sec / alive)
                }),
            };
            let usage = result.entry(stat.pgid).or_default();
            usage.processes += 1;
            usage.rss_bytes += stat.rss_pages * self.page_size;
            usage.cpu_percent += cpu_secs.unwrap_or(0.0) * 100.0;
            usage.cpu_seconds += stat.cpu_ticks as f64 / self.ticks_per_sec;
            seen.insert(
                pid,
                Reading {
                    start_ticks: stat.start_ticks,
                    cpu_ticks: stat.cpu_ticks,
                    at: now,
                },
            );
        }
        self.previous = seen;
        result
    }
}

/// Below this many processes one thread reads them all; above it, the reads are split over
/// the CPUs (up to [`MAX_SCAN_THREADS`]): the scan is all system calls, and at 1000 workers it
/// is the longest part of a dump.
const PARALLEL_FROM: usize = 256;

/// At most this many threads read `/proc` at once.
const MAX_SCAN_THREADS: usize = 4;

/// `/proc` (kept open: each stat file is opened relative to it) and every pid in it.
fn list_pids() -> std::io::Result<(File, Vec<u32>)> {
    Ok((File::open("/proc")?, crate::procfs::pids()?))
}

/// The stat of each live process in `pids` whose group is wanted (every group: `None`).
fn read_members(
    proc_dir: &File,
    pids: &[u32],
    wanted: Option<&HashSet<u32>>,
) -> Vec<(u32, StatFields)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_SCAN_THREADS);
    if threads <= 1 || pids.len() < PARALLEL_FROM {
        return read_chunk(proc_dir, pids, wanted);
    }
    let chunk = pids.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = pids.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|c| {
                std::thread::Builder::new()
                    .name("vigil-scan".into())
                    .spawn_scoped(scope, move || read_chunk(proc_dir, c, wanted))
                    .map_err(|_| c)
            })
            .collect();
        let mut all = read_chunk(proc_dir, first, wanted);
        for other in others {
            match other {
                Ok(handle) => all.extend(handle.join().unwrap_or_default()),
                // No thread: read that chunk here.
                Err(c) => all.extend(read_chunk(proc_dir, c, wanted)),
            }
        }
        all
    })
}

fn read_chunk(
    proc_dir: &File,
    pids: &[u32],
    wanted: Option<&HashSet<u32>>,
) -> Vec<(u32, StatFields)> {
    let mut buf = [0u8; STAT_LINE_MAX];
    let mut out = Vec::new();
    for &pid in pids {
        let Some(stat) =
            read_stat_line(Some(proc_dir), pid, &mut buf).and_then(|n| parse_fields(&buf[..n]))
        else {
            continue; // gone since the listing
        };
        let is_wanted = wanted.is_none_or(|w| w.contains(&stat.pgid));
        if is_wanted && stat.pgid != 0 && !matches!(stat.state, b'Z' | b'X' | b'x') {
            out.push((pid, stat));
        }
    }
    out
}

/// Seconds since boot, from `/proc/uptime`.
fn uptime_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_the_last_parenthesis() {
        // A real line (sleep 1000 in its own group), with a hostile command name.
        let line = b"4242 (we ird) (name)) S 1 4200 4200 0 -1 4194560 93 0 0 0 7 5 0 0 20 0 1 0 \
                     2260446 8486912 268 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
        assert_eq!(
            parse_fields(line),
            Some(StatFields {
                state: b'S',
                ppid: 1,
                pgid: 4200,
                sid: 4200,
                cpu_ticks: 12,
                start_ticks: 2_260_446,
                rss_pages: 268
            })
        );
        assert_eq!(parse_fields(b"garbage"), None);
        assert_eq!(parse_fields(b"1 (x) S 0 1 1 0"), None, "cut short");
        assert_eq!(
            parse_fields(b"1 (x) S 0 -1 1 0 -1 0 0 0 0 0 1 1 0 0 0 0 1 0 5 6 7"),
            None
        );
    }

    #[test]
    fn own_group_is_found_with_memory() {
        // SAFETY: getpgrp has no preconditions and cannot fail.
        let own = unsafe { libc::getpgrp() } as u32;
        let mut sampler = GroupSampler::new();
        let usage = sampler.sample(&[own, 0]);
        let ours = usage.get(&own).expect("the test's own group has members");
        assert!(ours.processes >= 1);
        assert!(ours.rss_bytes > 0, "{ours:?}");
        assert_eq!(usage.len(), 1);
    }
}
