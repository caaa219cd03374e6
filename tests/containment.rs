//! Containment against the real kernel: a cgroup per worker, nothing escapes it, limits hold,
//! an OOM kill is named. Every test that needs cgroups skips loudly when the server reports
//! `containment: "process-group"` (no writable cgroup here).

mod common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;

/// A worker that leaves one process in a new session (`setsid`) and one double-forked
/// (re-parented away from the leader), recording their pids in `escapees`.
const ESCAPES: &str = "setsid sh -c 'echo $$ >> escapees; exec sleep 1001' & \
                       (sh -c 'echo $$ >> escapees; exec sleep 1002' &) ; \
                       echo $$ >> pids; exec sleep 1003";

/// Whether this server contains workers in cgroups; prints a loud SKIP when not.
fn contained(home: &Home, worker: &str) -> bool {
    let node = control_worker(home, worker);
    if node["containment"] == "cgroup" {
        return true;
    }
    eprintln!(
        "SKIP: no writable cgroup here (containment {}): the containment tests cannot run",
        node["containment"]
    );
    false
}

fn escapees(home: &Home, n: usize) -> Vec<u32> {
    wait_for(LONG, "the escapees to record their pids", || {
        let p = home.pids("escapees");
        (p.len() >= n && p.iter().all(|&p| alive(p))).then_some(p)
    })
}

fn wait_dead(pids: &[u32], what: &str) {
    wait_for(LONG, what, || pids.iter().all(|&p| !alive(p)).then_some(()));
}

fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

#[test]
fn processes_that_left_the_group_die_on_restart_stop_and_shutdown() {
    let home = Home::new("", &sh_worker("esc", ESCAPES, FAST));
    let mut server = home.serve();
    control_wait_ready(&home);
    if !contained(&home, "esc") {
        return;
    }
    // Both escapees are in the worker's cgroup (they were born there: no race).
    let first = escapees(&home, 2);
    for &p in &first {
        assert!(
            cgroup_of(p).contains("/workers/esc"),
            "pid {p} is not in the worker's cgroup: {}",
            cgroup_of(p)
        );
    }
    let node = control_worker(&home, "esc");
    assert_eq!(node["processes"], 3, "{node}");

    // restart
    let out = home.run(&["restart", "esc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_dead(&first, "the escapees to die with the restart");
    let second: Vec<u32> = wait_for(LONG, "the next run's escapees", || {
        let all = home.pids("escapees");
        let new: Vec<u32> = all.into_iter().skip(2).collect();
        (new.len() >= 2 && new.iter().all(|&p| alive(p))).then_some(new)
    });

    // the leader's own exit
    let leader = control_worker(&home, "esc")["pid"].as_u64().expect("pid") as u32;
    // SAFETY: kill(2) on the worker's leader.
    unsafe { libc::kill(leader as i32, libc::SIGKILL) };
    wait_dead(&second, "the escapees to die with their leader");
    wait_for(LONG, "a line about the survivors in the log", || {
        std::fs::read_to_string(home.log("esc"))
            .unwrap_or_default()
            .contains("2 process(es) of generation 2 still alive when the leader exited; killed")
            .then_some(())
    });

    // stop
    let third: Vec<u32> = wait_for(LONG, "the third run's escapees", || {
        let new: Vec<u32> = home.pids("escapees").into_iter().skip(4).collect();
        (new.len() >= 2 && new.iter().all(|&p| alive(p))).then_some(new)
    });
    let out = home.run(&["stop", "esc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_dead(&third, "the escapees to die with stop");

    // shutdown
    let out = home.run(&["start", "esc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fourth: Vec<u32> = wait_for(LONG, "the fourth run's escapees", || {
        let new: Vec<u32> = home.pids("escapees").into_iter().skip(6).collect();
        (new.len() >= 2 && new.iter().all(|&p| alive(p))).then_some(new)
    });
    let status = server.terminate(LONG).expect("the server exits");
    assert!(status.success(), "{}", server.stderr());
    wait_dead(&fourth, "the escapees to die with the shutdown");
    // No zombie was left behind by the subreaper either.
    for p in fourth {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists() || !alive(p),
            "pid {p} still exists"
        );
    }
}

#[test]
fn the_guardian_kills_escapees_when_the_server_is_killed() {
    let home = Home::new("", &sh_worker("esc", ESCAPES, FAST));
    let mut server = home.serve();
    control_wait_ready(&home);
    if !contained(&home, "esc") {
        return;
    }
    let escaped = escapees(&home, 2);
    server.signal(libc::SIGKILL);
    server.wait(LONG).expect("the server dies");
    wait_dead(&escaped, "the guardian to kill the escapees");
}

/// Allocates `mb` MiB and holds it.
fn hog(mb: u32) -> String {
    format!(
        "/usr/bin/python3 -c 'b = bytearray({mb} * 1024 * 1024); import time; time.sleep(1000)'"
    )
}

fn python_available() -> bool {
    if std::path::Path::new("/usr/bin/python3").exists() {
        return true;
    }
    eprintln!("SKIP: /usr/bin/python3 is missing: the OOM tests need a memory hog");
    false
}

fn first_oom(home: &Home, worker: &str) -> serde_json::Value {
    wait_for(LONG, "an exit record with reason oom", || {
        home.history(Some(worker))
            .into_iter()
            .find(|r| r["reason"] == "oom")
    })
}

#[test]
fn an_oom_kill_of_the_leader_or_a_child_is_recorded_as_oom() {
    if !python_available() {
        return;
    }
    let limit = "limits: (memory_max: Some(\"48MiB\")), restart: Temporary";
    let workers = [
        sh_worker("leader", &format!("exec {}", hog(200)), limit),
        sh_worker("child", &format!("{} & exec sleep 1000", hog(200)), limit),
    ]
    .join("\n");
    let home = Home::new("", &workers);
    let _server = home.serve();
    control_wait_ready(&home);
    if !contained(&home, "leader") {
        return;
    }
    if control_worker(&home, "leader")["memory_max_bytes"] != 48 << 20 {
        panic!(
            "memory_max not in the dump: {}",
            control_worker(&home, "leader")
        );
    }
    for worker in ["leader", "child"] {
        let rec = first_oom(&home, worker);
        assert!(
            rec["oom_kills"].as_u64().unwrap_or(0) >= 1,
            "{worker}: {rec}"
        );
        let peak = rec["memory_peak_bytes"].as_u64().expect("a peak");
        assert!(peak > 16 << 20 && peak <= 48 << 20, "{worker}: peak {peak}");
        // The leader's own status is kept: killed by SIGKILL (the kernel's, or vigil's when
        // the OOM killer took a child).
        assert_eq!(rec["signal"], 9, "{worker}: {rec}");
        let node = wait_for(LONG, "the worker to be stopped with nothing left", || {
            let n = control_worker(&home, worker);
            (n["state"] == "stopped").then_some(n)
        });
        assert!(node["oom_kills"].as_u64().unwrap_or(0) >= 1, "{node}");
    }
    let text = home.run(&["history", "leader"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("out of memory"), "{text}");
}

#[test]
fn pids_max_bounds_a_fork_loop_and_nofile_is_the_rlimit() {
    let workers = [
        sh_worker(
            "forks",
            "echo $$ >> pids; exec /usr/bin/python3 -c \"import os, time\nn = 0\nfor i in range(12):\n    try:\n        if os.fork() == 0:\n            time.sleep(1000)\n            os._exit(0)\n        n += 1\n    except OSError:\n        pass\nprint('forked', n, flush=True)\ntime.sleep(1000)\"",
            "limits: (pids_max: Some(6))",
        ),
        sh_worker(
            "files",
            "echo $$ >> files; exec sleep 1000",
            "limits: (nofile: Some(1234))",
        ),
    ]
    .join("\n");
    let home = Home::new("", &workers);
    let _server = home.serve();
    control_wait_ready(&home);
    let pid = wait_for(LONG, "the files worker", || {
        home.pids("files").first().copied()
    });
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["1234", "1234"], "{line}");
    if !contained(&home, "forks") {
        return;
    }
    if !python_available() {
        return;
    }
    wait_for(LONG, "the fork loop to run into the limit", || {
        let log = std::fs::read_to_string(home.log("forks")).unwrap_or_default();
        log.contains("forked 5").then_some(())
    });
    let node = control_worker(&home, "forks");
    assert_eq!(node["pids_max"], 6, "{node}");
    let processes = node["processes"].as_u64().expect("processes");
    assert_eq!(processes, 6, "{node}");
}

#[test]
fn cpu_max_throttles_a_busy_loop() {
    let home = Home::new(
        "",
        &sh_worker(
            "spin",
            "echo $$ >> pids; while :; do :; done",
            "limits: (cpu_max: Some(0.2))",
        ),
    );
    let _server = home.serve();
    control_wait_ready(&home);
    if !contained(&home, "spin") {
        return;
    }
    let pid = wait_for(LONG, "the spinner", || home.pids("pids").first().copied());
    assert!((control_worker(&home, "spin")["cpu_max"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    // Find its cpu cgroup (v2 with the controller, or v1 `cpu`) and wait for throttling.
    let cgroups = cgroup_of(pid);
    let stat = cgroups
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            if ctl.split(',').any(|c| c == "cpu") {
                Some(format!("/sys/fs/cgroup/cpu{path}/cpu.stat"))
            } else if ctl.is_empty() {
                let v2 = format!("/sys/fs/cgroup{path}/cpu.stat");
                std::fs::read_to_string(&v2)
                    .is_ok_and(|t| t.contains("nr_throttled"))
                    .then_some(v2)
            } else {
                None
            }
        })
        .expect("the worker's cpu cgroup");
    wait_for(LONG, "the spinner to be throttled", || {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .filter(|&n| n > 0)
    });
}

#[test]
fn bad_limits_are_check_errors_with_their_position() {
    for (limits, wanted) in [
        ("memory_max: Some(\"12XB\")", "invalid size"),
        ("memory_max: Some(\"100\")", "at least 1MiB"),
        ("pids_max: Some(0)", "pids_max must be at least 1"),
        ("cpu_max: Some(0.0)", "cpu_max"),
        ("nofile: Some(0)", "nofile"),
        ("swap: Some(1)", "swap"),
    ] {
        let home = Home::new(
            "",
            &sh_worker("w", "sleep 1", &format!("limits: ({limits})")),
        );
        let out = home.run(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{limits}: {err}");
        assert!(err.contains(wanted), "{limits}: {err}");
        assert!(err.contains("config.ron:"), "{limits}: no position: {err}");
    }
    let home = Home::new("cgroup: Sometimes,", &sh_worker("w", "sleep 1", ""));
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn without_cgroups_limits_are_refused_at_each_start() {
    let home = Home::new(
        "cgroup: Off,",
        &[
            sh_worker("plain", "exec sleep 1000", ""),
            sh_worker(
                "limited",
                "exec sleep 1000",
                "limits: (memory_max: Some(\"64MiB\"))",
            ),
        ]
        .join("\n"),
    );
    let _server = home.serve();
    control_wait_ready(&home);
    let plain = control_worker(&home, "plain");
    assert_eq!(plain["containment"], "process-group", "{plain}");
    let rec = wait_for(LONG, "a spawn_failed record", || {
        home.history(Some("limited"))
            .into_iter()
            .find(|r| r["reason"] == "spawn_failed")
    });
    let tail = rec["log_tail"].to_string();
    assert!(tail.contains("need a cgroup"), "{rec}");
}

#[test]
fn cgroup_required_refuses_to_start_without_one() {
    // An unprivileged user cannot create cgroups here (no delegation).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root to run the server as nobody");
        return;
    }
    let home = Home::new("cgroup: Required,", &sh_worker("w", "exec sleep 1000", ""));
    let mut perms = std::fs::metadata(home.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(home.path(), perms).unwrap();
    let child = std::process::Command::new(vigil_bin())
        .args(["serve", "--config"])
        .arg(home.config())
        .current_dir(home.path())
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn serve as nobody");
    let mut server = Server::adopt(child, home.path());
    let status = server.wait(LONG).expect("serve exits");
    let mut err = String::new();
    if let Some(mut e) = server.child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cgroup: Required"), "{err}");
    // And nothing ran.
    assert!(home.pids("pids").is_empty());
    let _ = Duration::ZERO;
}

#[test]
fn as_pid_1_of_a_pid_namespace_it_reaps_every_orphan() {
    // What a container entrypoint is: PID 1 of its own namespace, with orphans re-parented to
    // it. The worker makes a zombie-to-be every 20 ms (a subshell that leaves a short sleep).
    if !std::path::Path::new("/usr/bin/unshare").exists() {
        eprintln!("SKIP: unshare(1) is missing: cannot run vigil as PID 1");
        return;
    }
    let home = Home::new(
        "",
        &sh_worker(
            "orphans",
            "echo $$ >> pids; while :; do (sleep 0.01 &); sleep 0.02; done",
            FAST,
        ),
    );
    let stderr = std::fs::File::create(home.file("server.stderr")).expect("stderr");
    let child = std::process::Command::new("/usr/bin/unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(vigil_bin())
        .args(["serve", "--config"])
        .arg(home.config())
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("spawn unshare");
    let mut server = Server::adopt(child, home.path());
    // unshare(1) may be refused (no CAP_SYS_ADMIN): then the server never comes up.
    let up = (0..200).any(|_| {
        if server.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
        home.run(&["status", "--json"]).status.success()
    });
    if !up {
        eprintln!(
            "SKIP: cannot create a pid namespace here: {}",
            server.stderr()
        );
        return;
    }
    // The server as seen from here: the child of unshare named vigil.
    let vigil = wait_for(LONG, "the namespaced server", || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
            (ppid == server.pid && comm.ends_with("(vigil")).then_some(pid)
        })
    });
    let status = std::fs::read_to_string(format!("/proc/{vigil}/status")).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "vigil is not PID 1 of its namespace:\n{status}"
    );
    // Let the worker make ~100 orphans; then at most a couple may be zombies at any instant.
    wait_for(LONG, "the worker to run a while", || {
        let log = std::fs::read_to_string(home.log("orphans")).ok()?;
        log.contains("started generation 1").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let zombies = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                return false;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut f = rest.split(' ');
            let state = f.next();
            let ppid: Option<u32> = f.next().and_then(|p| p.parse().ok());
            state == Some("Z") && ppid == Some(vigil)
        })
        .count();
    assert!(zombies <= 3, "{zombies} zombies of vigil as PID 1");
    // SIGTERM to PID 1 of the namespace is still a graceful shutdown.
    // SAFETY: kill(2) on the namespaced server.
    unsafe { libc::kill(vigil as i32, libc::SIGTERM) };
    let status = server.wait(LONG).expect("the server exits");
    assert!(status.success(), "{}", server.stderr());
}

#[test]
fn a_nofile_above_the_servers_hard_limit_says_so() {
    let home = Home::new(
        "cgroup: Off,",
        &sh_worker(
            "many",
            "echo $$ >> pids; exec sleep 1000",
            "limits: (nofile: Some(1000000))",
        ),
    );
    let _server = home.serve();
    control_wait_ready(&home);
    let outcome = wait_for(LONG, "a start or a failed start", || {
        if !home.pids("pids").is_empty() {
            return Some(None);
        }
        home.history(Some("many"))
            .into_iter()
            .find(|r| r["reason"] == "spawn_failed")
            .map(Some)
    });
    match outcome {
        None => {
            eprintln!("SKIP: this server may raise RLIMIT_NOFILE to 1000000 (CAP_SYS_RESOURCE)")
        }
        Some(rec) => {
            let tail = rec["log_tail"].to_string();
            assert!(tail.contains("RLIMIT_NOFILE"), "{rec}");
            assert!(tail.contains("hard limit is"), "{rec}");
        }
    }
}
