//! The storm harness (issue 16): N workers and a seeded random mix of `kill -9`, `stop`,
//! `start` and `restart` against a real server, then the invariants: every spawn (pid, worker,
//! generation) has exactly one EXIT record, nothing of the tree outlives the server, no zombie, and the server's
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

    // Every process of this storm carries the token in its environment: pids wrap around in a
    // long run (pid_max is often 32768), the token tells ours from a stranger with a reused pid.
    let token = format!("{seed}-{}", std::process::id());
    let workers: Vec<String> = (0..n)
        .map(|i| {
            // Some exit on their own now and then, some chatter: every path of the exit code.
            let script = match i % 4 {
                0 => "echo $$ $VIGIL_WORKER $VIGIL_GENERATION >> spawns; exec sleep 1000",
                1 => "echo $$ $VIGIL_WORKER $VIGIL_GENERATION >> spawns; sleep 0.$((RANDOM % 9 + 1)); exit 3",
                2 => "echo $$ $VIGIL_WORKER $VIGIL_GENERATION >> spawns; while :; do echo chatter; sleep 0.05; done",
                _ => "echo $$ $VIGIL_WORKER $VIGIL_GENERATION >> spawns; trap 'exit 0' TERM; while :; do sleep 0.1; done",
            };
            format!(
                "        (name: \"s{i}\", kind: Command(argv: [\"/bin/sh\", \"-c\", {script:?}], env: {{\"STORM_TOKEN\": \"{token}\"}}), \
                 backoff: (initial: \"10ms\", max: \"200ms\", jitter: 0.2), start_secs: \"0s\", \
                 intensity: (max_restarts: 100000, within: \"60s\"), shutdown: (grace: \"2s\")),"
            )
        })
        .collect();
    let home = Home::new("", &workers.join("\n"));
    let mut server = home.serve();
    control_wait_ready(&home);
    wait_for(LONG, "every worker up", || {
        (home.lines("spawns").len() >= n).then_some(())
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

    // Every spawn (pid, worker, generation): exactly one EXIT record, with that pid.
    let spawns: Vec<(u64, String, u64)> = home
        .lines("spawns")
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
            ))
        })
        .collect();
    let out = home.run(&["history", "--json", "--limit", "10000000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exits: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("history JSON");
    let mut records: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    for e in &exits {
        if let (Some(w), Some(g), Some(pid)) = (
            e["worker"].as_str(),
            e["generation"].as_u64(),
            e["pid"].as_u64(),
        ) {
            records.entry((w.to_string(), g)).or_default().push(pid);
        }
    }
    let mut missing = Vec::new();
    let mut doubled = Vec::new();
    for (pid, w, g) in &spawns {
        match records.get(&(w.clone(), *g)).map(Vec::as_slice) {
            Some([p]) if p == pid => {}
            None | Some([]) => missing.push((w.clone(), *g, *pid)),
            Some(other) => doubled.push((w.clone(), *g, other.to_vec())),
        }
    }
    // Nothing of the storm is left: no process carries its token.
    let needle = format!("STORM_TOKEN={token}");
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| alive(*p))
                .filter(|p| {
                    std::fs::read(format!("/proc/{p}/environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                })
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "storm: {} spawns, {} exit records, {} missing, {} doubled, {} left running",
        spawns.len(),
        exits.len(),
        missing.len(),
        doubled.len(),
        left.len()
    );
    assert!(
        left.is_empty(),
        "seed {seed}: outlived the server: {left:?}"
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
