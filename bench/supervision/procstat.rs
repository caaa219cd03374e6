//! What a process costs, read from /proc: CPU, context switches per thread, memory.
//!
//! Owns one [`Sample`] of a process (all its threads) and the difference of two samples. It
//! must not decide what is good or bad: the report does.

use std::collections::BTreeMap;
use std::fs;

/// One look at a process.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// utime + stime from /proc/PID/stat, in clock ticks.
    pub cpu_ticks: u64,
    /// Per thread (tid → (comm, ns on CPU from schedstat, voluntary + involuntary switches)).
    pub threads: BTreeMap<u32, (String, u64, u64)>,
    /// VmRSS in KiB.
    pub rss_kib: u64,
    /// Pss from smaps_rollup in KiB.
    pub pss_kib: u64,
}

/// Read everything for `pid`; `None` when the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // After "(comm) ": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let cpu_ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let mut threads = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let comm = fs::read_to_string(base.join("comm")).unwrap_or_default();
        let on_cpu = fs::read_to_string(base.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let status = fs::read_to_string(base.join("status")).unwrap_or_default();
        let switches = field(&status, "voluntary_ctxt_switches:")
            + field(&status, "nonvoluntary_ctxt_switches:");
        threads.insert(tid, (comm.trim().to_string(), on_cpu, switches));
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Some(Sample {
        cpu_ticks,
        threads,
        rss_kib: field(&status, "VmRSS:"),
        pss_kib: field(&rollup, "Pss:"),
    })
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What happened between two samples.
#[derive(Clone, Debug)]
pub struct Delta {
    /// CPU ms from utime + stime (10 ms resolution).
    pub cpu_ms_ticks: f64,
    /// CPU ms from schedstat (ns resolution), threads present in both samples.
    pub cpu_ms_sched: f64,
    /// Context switches, all threads present in both samples.
    pub switches: u64,
    /// Threads that switched: "comm×n".
    pub wakers: Vec<String>,
    /// Threads at the end.
    pub threads: usize,
    /// Threads that appeared or disappeared.
    pub thread_churn: usize,
}

/// The difference `after - before`.
pub fn delta(before: &Sample, after: &Sample) -> Delta {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut sched_ns = 0;
    let mut switches = 0;
    let mut wakers = Vec::new();
    for (tid, (comm, ns1, sw1)) in &after.threads {
        if let Some((_, ns0, sw0)) = before.threads.get(tid) {
            sched_ns += ns1.saturating_sub(*ns0);
            let d = sw1.saturating_sub(*sw0);
            switches += d;
            if d > 0 {
                wakers.push(format!("{comm}[{tid}]×{d}"));
            }
        }
    }
    let churn = after
        .threads
        .keys()
        .filter(|t| !before.threads.contains_key(t))
        .count()
        + before
            .threads
            .keys()
            .filter(|t| !after.threads.contains_key(t))
            .count();
    Delta {
        cpu_ms_ticks: after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 1000.0 / hz,
        cpu_ms_sched: sched_ns as f64 / 1e6,
        switches,
        wakers,
        threads: after.threads.len(),
        thread_churn: churn,
    }
}
