//! The storm harness (issue 16): N workers and a seeded random mix of `kill -9`, `stop`,
//! `start` and `restart` against a real server, then the invariants: every spawned pid has
//! exactly one EXIT record, nothing of the tree outlives the server, no zombie, and the server's
//! descriptors and memory are back within a small bound.
//!
//! `cargo test --test storm -- --ignored --nocapture`; `VIGIL_STORM_SECS` (default 60),
//! `VIGIL_STORM_WORKERS` (default 40) and `VIGIL_STORM_SEED` (default: from the clock) tune it.
//! The seed is printed first, so a failure can be replayed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Descriptors open in `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Zombie children of `pid`.
fn zombies_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let Some(i) = stat.rfind(')') else {
                return false;
            };
            let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1).and_then(|x| x.parse().ok()) == Some(pid)
        })
        .collect()
}

#[test]
#[ignore = "storm harness: run with --ignored (about VIGIL_STORM_SECS seconds)"]
fn storm() {
    let seed = env_u64(
        "VIGIL_STORM_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    let secs = env_u64("VIGIL_STORM_SECS", 60);
    let n = env_u64("VIGIL_STORM_WORKERS", 40) as usize;
    eprintln!("storm: seed {seed}, {n} workers, {secs} s (replay with VIGIL_STORM_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let workers: Vec<String> = (0..n)
        .map(|i| {
            // Some exit on their own now and then, some chatter: every path of the exit code.
            let script = match i % 4 {
                0 => "echo $$ >> pids; exec sleep 1000",
                1 => "echo $$ >> pids; sleep 0.$((RANDOM % 9 + 1)); exit 3",
                2 => "echo $$ >> pids; while :; do echo chatter; sleep 0.05; done",
                _ => "echo $$ >> pids; trap 'exit 0' TERM; while :; do sleep 0.1; done",
            };
            sh_worker(
                &format!("s{i}"),
                script,
                "backoff: (initial: \"10ms\", max: \"200ms\", jitter: 0.2), start_secs: \"0s\", intensity: (max_restarts: 100000, within: \"60s\"), shutdown: (grace: \"2s\")",
            )
        })
        .collect();
    let home = Home::new("", &workers.join("\n"));
    let mut server = home.serve();
    control_wait_ready(&home);
    wait_for(LONG, "every worker up", || {
        (home.pids("pids").len() >= n).then_some(())
    });
    let fds_before = fd_count(server.pid);
    let rss_before = rss_kib(server.pid);

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut actions: BTreeMap<&str, u64> = BTreeMap::new();
    while Instant::now() < deadline {
        let w = format!("s{}", rng.usize(..n));
        let what = match rng.u8(..10) {
            0..=4 => {
                // kill -9 of the worker's current leader (if it has one now).
                let node = control_worker(&home, &w);
                if let Some(pid) = node["pid"].as_u64() {
                    // SAFETY: plain kill(2) of a pid the server reports as its worker.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                "kill -9"
            }
            5 | 6 => {
                home.run(&["restart", &w]);
                "restart"
            }
            7 => {
                home.run(&["stop", &w]);
                "stop"
            }
            _ => {
                home.run(&["start", &w]);
                "start"
            }
        };
        *actions.entry(what).or_default() += 1;
        assert!(
            server.wait(Duration::ZERO).is_none(),
            "seed {seed}: the server died: {}",
            server.stderr()
        );
    }
    // Everything back up, then the bounds, measured the same way as before.
    for i in 0..n {
        home.run(&["start", &format!("s{i}")]);
    }
    let fds_after = fd_count(server.pid);
    let rss_after = rss_kib(server.pid);
    let zombies = zombies_of(server.pid);
    eprintln!(
        "storm: actions {actions:?}; fds {fds_before} -> {fds_after}; rss {rss_before} -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 16,
        "seed {seed}: descriptors grew {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after <= rss_before * 2 + 16 * 1024,
        "seed {seed}: memory grew {rss_before} -> {rss_after} KiB"
    );
    let status = server
        .terminate(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("seed {seed}: the server did not exit"));
    assert_eq!(status.code(), Some(0), "seed {seed}");
    assert!(
        zombies.len() <= 2,
        "seed {seed}: zombies of the server: {zombies:?}"
    );

    // Every spawned pid: dead, and exactly one EXIT record.
    let spawned = home.pids("pids");
    let exits = home.history(None);
    let out = home.run(&["history", "--json", "--limit", "1000000"]);
    let exits: Vec<serde_json::Value> = if out.status.success() {
        serde_json::from_slice(&out.stdout).unwrap_or(exits)
    } else {
        exits
    };
    let mut records: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &exits {
        if let Some(pid) = e["pid"].as_u64() {
            *records.entry(pid).or_default() += 1;
        }
    }
    let alive_left: Vec<u32> = spawned.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        alive_left.is_empty(),
        "seed {seed}: outlived the server: {alive_left:?}"
    );
    let missing: Vec<u32> = spawned
        .iter()
        .copied()
        .filter(|p| !records.contains_key(&u64::from(*p)))
        .collect();
    let doubled: Vec<(&u64, &usize)> = records.iter().filter(|(_, c)| **c > 1).collect();
    eprintln!(
        "storm: {} spawns, {} exit records, {} missing, {} doubled",
        spawned.len(),
        exits.len(),
        missing.len(),
        doubled.len()
    );
    assert!(
        missing.is_empty(),
        "seed {seed}: no EXIT record for {missing:?}"
    );
    assert!(
        doubled.is_empty(),
        "seed {seed}: several records for {doubled:?}"
    );
}
