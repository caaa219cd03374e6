//! `GroupSampler` on real process groups: member counts, memory, CPU%, and its speed.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_actors::metrics::GroupSampler;

/// Process groups started by a test, killed (whole group) and reaped on drop.
struct Groups(Vec<Child>);

impl Groups {
    fn spawn(script: &str) -> Child {
        Command::new("/bin/sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn pgids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for child in &self.0 {
            // SAFETY: killpg only sends a signal; the group is one we created.
            unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Poll `sample` until `done` holds (children take a moment to fork), with a deadline.
fn sample_until(
    sampler: &mut GroupSampler,
    pgids: &[u32],
    done: impl Fn(&std::collections::HashMap<u32, vigil_actors::metrics::GroupUsage>) -> bool,
) -> std::collections::HashMap<u32, vigil_actors::metrics::GroupUsage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage = sampler.sample(pgids);
        if done(&usage) || Instant::now() > deadline {
            return usage;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn members_memory_and_cpu_are_summed_per_group() {
    // Group A: the shell and two sleeping children. Group B: the shell and one busy loop.
    let groups = Groups(vec![
        Groups::spawn("sleep 1000 & sleep 1000 & wait"),
        Groups::spawn("while :; do :; done & wait"),
    ]);
    let pgids = groups.pgids();
    let (a, b) = (pgids[0], pgids[1]);
    let mut sampler = GroupSampler::new();
    let usage = sample_until(&mut sampler, &pgids, |u| {
        u.get(&a).map(|g| g.processes) == Some(3) && u.get(&b).map(|g| g.processes) == Some(2)
    });
    assert_eq!(usage[&a].processes, 3, "{usage:?}");
    assert_eq!(usage[&b].processes, 2, "{usage:?}");
    assert!(
        usage[&a].rss_bytes > 3 * 100 * 1024,
        "three processes use more than 300 KiB: {usage:?}"
    );

    // CPU% over the last interval: the busy group uses a good share of a core (the machine is
    // shared and may be loaded, so sample until it shows, with a deadline), the sleeping one
    // next to nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let usage = loop {
        std::thread::sleep(Duration::from_millis(300));
        let usage = sampler.sample(&pgids);
        if usage[&b].cpu_percent > 10.0 || Instant::now() > deadline {
            break usage;
        }
    };
    assert!(
        usage[&b].cpu_percent > 10.0,
        "a busy loop uses CPU: {usage:?}"
    );
    assert!(
        usage[&b].cpu_percent < 220.0,
        "one loop uses at most one core: {usage:?}"
    );
    assert!(usage[&a].cpu_percent < 5.0, "sleepers are idle: {usage:?}");

    // Once a group is gone it is left out (SIGKILL reaches a busy orphan asynchronously).
    drop(groups);
    let usage = sample_until(&mut sampler, &pgids, |u| u.is_empty());
    assert!(usage.is_empty(), "{usage:?}");
}

#[test]
fn a_leader_that_died_leaves_its_group_counted() {
    // The leader exits at once; its child keeps the group alive (what a supervisor must see).
    let mut leader = Groups::spawn("sleep 1000 &");
    let pgid = leader.id();
    let _ = leader.wait();
    let _groups = Groups(vec![leader]);
    let mut sampler = GroupSampler::new();
    let usage = sample_until(&mut sampler, &[pgid], |u| u.contains_key(&pgid));
    assert_eq!(usage.get(&pgid).map(|g| g.processes), Some(1), "{usage:?}");
}

/// `cargo test -p vigil-actors --release --test control_metrics -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: starts 1000 processes"]
fn bench_sample_1000_groups() {
    let count: usize = std::env::var("VIGIL_BENCH_GROUPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut groups = Groups(Vec::with_capacity(count));
    for _ in 0..count {
        groups.0.push(
            Command::new("sleep")
                .arg("1000")
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
    }
    let pgids = groups.pgids();
    let mut sampler = GroupSampler::new();
    let usage = sample_until(&mut sampler, &pgids, |u| u.len() == count);
    assert_eq!(usage.len(), count);
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let usage = sampler.sample(&pgids);
        times.push(started.elapsed());
        assert_eq!(usage.len(), count);
    }
    times.sort();
    println!(
        "GroupSampler::sample over {count} groups: min {:?} median {:?} max {:?}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// Why `metrics` does not refresh members with sysinfo: one scan of every `/proc/<pid>/stat`
/// (which the sampler needs anyway to find groups) against a sysinfo refresh of the same 1000
/// pids. `cargo test -p vigil-actors --release --test control_metrics -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: starts 1000 processes"]
fn bench_proc_scan_against_sysinfo_refresh() {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let mut groups = Groups(Vec::new());
    for _ in 0..1000 {
        groups.0.push(
            Command::new("sleep")
                .arg("1000")
                .process_group(0)
                .spawn()
                .unwrap(),
        );
    }
    let pids: Vec<Pid> = groups.pgids().iter().map(|&p| Pid::from_u32(p)).collect();
    let kind = ProcessRefreshKind::nothing().with_memory().with_cpu();
    let mut system = System::new().unwrap();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
    let (mut scans, mut refreshes) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        let started = Instant::now();
        let mut buf = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            {
                use std::io::Read;
                buf.clear();
                if let Ok(mut file) = std::fs::File::open(format!("/proc/{pid}/stat")) {
                    let _ = file.read_to_end(&mut buf);
                }
            }
        }
        scans.push(started.elapsed());
        let started = Instant::now();
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&pids), true, kind);
        refreshes.push(started.elapsed());
    }
    scans.sort();
    refreshes.sort();
    println!(
        "median: scan of all /proc/<pid>/stat {:?}; sysinfo refresh of 1000 pids {:?}",
        scans[5], refreshes[5]
    );
}
