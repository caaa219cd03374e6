//! The fault suite (issue 16): each defect a fault probe found, reproduced against the real
//! binary. A test that needs root or a mount says so when it skips (`SKIP:` on stderr).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn server_log(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("var/log/vigil.log")).unwrap_or_default()
}

/// Files in `dir` whose name starts with `prefix`.
fn files_starting(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A history database of more than 32 KiB whose bytes 4096..32768 are garbage: the first page
/// (header and schema) is intact, so it opens; the tables behind it are malformed.
fn corrupt_history(home: &Home) -> std::path::PathBuf {
    let db = home.path().join("var/history.sqlite");
    {
        let history = vigil_actors::history::History::open(&db).expect("open history");
        let detail = "x".repeat(200);
        for _ in 0..400 {
            history.record_event("w", "filler", &detail);
        }
        history.close();
    }
    let mut bytes = std::fs::read(&db).expect("read history");
    assert!(bytes.len() > 32768, "history too small: {}", bytes.len());
    for (i, b) in bytes[4096..32768].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, bytes).expect("write corrupt history");
    db
}

// ------------------------------------------------------------------ 1. history at shutdown

#[test]
fn a_corrupt_history_is_moved_aside_and_shutdown_exits() {
    let home = Home::new(
        "",
        &sh_worker("w", "echo $$ >> pids; exec sleep 1000", FAST),
    );
    corrupt_history(&home);
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    let status = server
        .terminate(Duration::from_secs(25))
        .expect("the server exits after SIGTERM despite the corrupt database");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let aside = files_starting(&home.path().join("var"), "history.sqlite.corrupt-");
    assert!(
        aside
            .iter()
            .any(|n| !n.ends_with("-wal") && !n.ends_with("-shm")),
        "no history.sqlite.corrupt-<time>: {aside:?}"
    );
    let log = server_log(&home);
    assert!(log.contains("history database is corrupt"), "{log}");
    // The fresh database works: the worker's stop is recorded, and the event says why.
    let exits = home.history(Some("w"));
    assert!(exits.iter().any(|e| e["pid"] == pid), "{exits:?}");
    let conn = rusqlite::Connection::open(home.path().join("var/history.sqlite")).unwrap();
    let kind: String = conn
        .query_row(
            "SELECT kind FROM events WHERE kind = 'history_corrupt'",
            [],
            |r| r.get(0),
        )
        .expect("a history_corrupt event");
    assert_eq!(kind, "history_corrupt");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    // The worker ignores SIGTERM and has a long grace: the first SIGTERM waits for it.
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "trap '' TERM; echo $$ >> pids; while :; do sleep 0.1; done",
            &format!("{FAST}, shutdown: (grace: \"60s\")"),
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    server.signal(libc::SIGTERM);
    wait_for(LONG, "the first SIGTERM logged", || {
        server_log(&home)
            .contains("SIGTERM: shutting down")
            .then_some(())
    });
    let asked = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait(Duration::from_secs(5))
        .expect("a second SIGTERM exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(
        server.stderr().contains("second SIGTERM"),
        "{}",
        server.stderr()
    );
    // The guardian kills the worker the server left.
    wait_for(LONG, "the worker killed by the guardian", || {
        (!alive(pid)).then_some(())
    });
}

// ------------------------------------------------------------------ 2. a removed log directory

#[test]
fn a_removed_log_directory_is_recreated_with_one_warning() {
    let chatty = sh_worker(
        "chatty",
        "while :; do echo a line of output from the chatty worker; sleep 0.01; done",
        &format!("{FAST}, log: (max_bytes: 4096, max_files: 2)"),
    );
    let quiet = sh_worker("quiet", "echo $$ >> pids; exec sleep 1000", FAST);
    let home = Home::new("", &format!("{chatty}\n{quiet}"));
    let mut server = home.serve();
    let pid = wait_for(LONG, "quiet worker", || home.pids("pids").first().copied());
    server.track(pid);
    wait_for(LONG, "a rotation of chatty's log", || {
        home.path()
            .join("var/log/chatty.log.1")
            .exists()
            .then_some(())
    });
    std::fs::remove_dir_all(home.path().join("var/log")).unwrap();
    // The next failed rotation recreates the directory and the file.
    wait_for(LONG, "chatty.log recreated", || {
        std::fs::read_to_string(home.log("chatty"))
            .ok()
            .filter(|t| t.contains("chatty worker"))
    });
    // A restart of the quiet worker reopens its (removed) file.
    // SAFETY: plain kill(2) of the worker's leader.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let text = wait_for(LONG, "quiet.log recreated by the restart", || {
        std::fs::read_to_string(home.log("quiet"))
            .ok()
            .filter(|t| t.contains("started generation 2"))
    });
    assert!(text.contains("[vigil] "), "{text}");
    // Let chatty rotate a few more times in the new directory, then count warnings.
    wait_for(LONG, "chatty rotating again", || {
        home.path()
            .join("var/log/chatty.log.2")
            .exists()
            .then_some(())
    });
    let stderr = server.stderr();
    let warnings = stderr.matches("log rotation failed").count();
    assert!(warnings <= 1, "{warnings} rotation warnings:\n{stderr}");
    let proc_fd = format!("/proc/{}/fd", server.pid);
    let deleted: Vec<String> = std::fs::read_dir(&proc_fd)
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .filter(|p| p.contains("chatty.log") && p.ends_with("(deleted)"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        deleted.is_empty(),
        "still writing deleted files: {deleted:?}"
    );
}

// ------------------------------------------------------------------ 3. disk full

/// A small tmpfs mounted on a temporary directory, unmounted on drop; `None` with a loud
/// `SKIP:` when mounting is not possible (not root).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP: {test}: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    /// A file taking every free byte.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0u8; 1]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_warns_once_and_counts_the_lost_lines() {
    let Some(fs) = Tmpfs::mount("1m", "a_full_disk_warns_once") else {
        return;
    };
    let logs = fs.dir.path().join("log");
    let home = Home::new(
        &format!("log_dir: {:?},", logs.display().to_string()),
        &sh_worker(
            "chatty",
            "while :; do echo a line of output from the chatty worker; sleep 0.005; done",
            FAST,
        ),
    );
    let mut server = home.serve();
    control_wait_ready(&home);
    let worker_log = logs.join("chatty.log");
    wait_for(LONG, "chatty writing", || {
        std::fs::read_to_string(&worker_log)
            .ok()
            .filter(|t| t.contains("chatty worker"))
    });
    let filler = fs.fill();
    wait_for(LONG, "the one warning", || {
        server
            .stderr()
            .contains("log writing stopped")
            .then_some(())
    });
    // Lines keep coming while the disk is full: wait until several were surely lost.
    let full_since = std::fs::metadata(&worker_log).unwrap().len();
    wait_for(LONG, "the worker to write on", || {
        let out = home.run(&["status", "chatty", "--json"]);
        out.status.success().then_some(())
    });
    std::thread::sleep(Duration::from_millis(300)); // lines are lost meanwhile (not a negative check)
    std::fs::remove_file(filler).unwrap();
    let text = wait_for(LONG, "the lost-lines marker", || {
        std::fs::read_to_string(&worker_log)
            .ok()
            .filter(|t| t.contains("lines lost: disk full"))
    });
    let marker = text
        .lines()
        .find(|l| l.contains("lines lost: disk full"))
        .unwrap();
    let n: u64 = marker
        .split("[vigil] ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("marker without a count: {marker}"));
    assert!(n >= 2, "{marker} (file was {full_since} bytes)");
    let stderr = server.stderr();
    assert_eq!(
        stderr.matches("log writing stopped").count(),
        1,
        "one warning for the whole outage:\n{stderr}"
    );
    // vigil.log either took the warning (room left in its last page) or marks what it lost.
    wait_for(LONG, "vigil.log's warning or its lost-lines marker", || {
        std::fs::read_to_string(logs.join("vigil.log"))
            .ok()
            .filter(|t| {
                t.contains("lines lost: disk full")
                    || (t.contains("log writing stopped") && t.contains("log writing resumed"))
            })
    });
    let status = server.terminate(LONG).expect("server exits");
    assert_eq!(status.code(), Some(0));
}

// ------------------------------------------------------------------ 4. watchdog after a pause

#[test]
fn a_paused_server_does_not_watchdog_kill_a_heartbeating_worker() {
    let script = "echo $$ >> pids; while :; do echo WATCHDOG=1 >&$VIGIL_NOTIFY_FD; sleep 0.1; done";
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            script,
            &format!("{FAST}, heartbeat_timeout: Some(\"2s\")"),
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    for _ in 0..3 {
        server.signal(libc::SIGSTOP);
        // The fault itself: the server is paused for longer than the heartbeat timeout.
        std::thread::sleep(Duration::from_millis(3500));
        server.signal(libc::SIGCONT);
        // Wait until the server has read the heartbeats queued while it was paused.
        wait_for(LONG, "a fresh heartbeat after SIGCONT", || {
            let node = control_worker(&home, "w");
            node["heartbeat_age_ms"]
                .as_u64()
                .filter(|age| *age < 2000)
                .map(|_| node)
        });
    }
    let node = control_worker(&home, "w");
    if node["pid"] != pid {
        let log = server_log(&home);
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("heartbeat") || l.contains("SIG") || l.contains("watchdog"))
            .collect();
        panic!("the worker was replaced: {node}\n{}", lines.join("\n"));
    }
    assert!(alive(pid));
    let exits = home.history(Some("w"));
    assert!(
        exits.iter().all(|e| e["reason"] != "watchdog"),
        "watchdog kill after the pause: {exits:?}"
    );
}

// ------------------------------------------------------------------ 5, 7, 10. config bounds

/// `vigil check` on a config with `workers`: (exit code, stderr).
fn check(workers: &str) -> (Option<i32>, String) {
    let home = Home::new("", workers);
    let out = home.run(&["check"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(workers: &str, needle: &str) -> String {
    let (code, stderr) = check(workers);
    assert_eq!(code, Some(2), "accepted: {workers}\n{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("config.ron:"),
        "the error names the file: {stderr}"
    );
    stderr
}

#[test]
fn unbounded_numbers_are_refused_by_check() {
    let w = |extra: &str| sh_worker("w", "exit 0", extra);
    assert_refused(
        &w("log: (max_files: 4294967295)"),
        "log.max_files must be at most 1000",
    );
    assert_refused(
        &w("log: (max_files: 100000)"),
        "log.max_files must be at most 1000",
    );
    assert_refused(
        &w("log: (max_bytes: 18446744073709551615)"),
        "log.max_bytes must be at most",
    );
    assert_refused(
        &w("shutdown: (grace: \"2600000000000000h\")"),
        "longer than the most vigil accepts",
    );
    assert_refused(
        &w("backoff: (max: \"2600000000000000h\")"),
        "longer than the most vigil accepts",
    );
    assert_refused(
        &w("intensity: (max_restarts: 4294967295, within: \"1s\")"),
        "intensity.max_restarts must be at most",
    );
    assert_refused(
        &w("backoff: (multiplier: 1e300)"),
        "backoff.multiplier must be at most",
    );
    // The bounds themselves pass.
    let (code, stderr) = check(&w(
        "log: (max_files: 1000), shutdown: (grace: \"365days\"), backoff: (max: \"365days\")",
    ));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_longest_grace_does_not_panic_the_client() {
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "echo $$ >> pids; exec sleep 1000",
            &format!("{FAST}, shutdown: (grace: \"365days\")"),
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    // sleep dies of SIGTERM at once: the long grace is only a bound.
    let out = home.run(&["restart", "w"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = home.run(&["shutdown"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.wait(LONG).expect("the server exits");
}

#[test]
fn names_that_collide_or_cannot_be_typed_are_refused_and_quoted_short() {
    let e = assert_refused(&sh_worker("vigil", "exit 0", ""), "is reserved");
    assert!(e.contains("vigil.log"), "{e}");
    assert_refused(&sh_worker("-x", "exit 0", ""), "must not start with '-'");
    let long = "n".repeat(10_000);
    let e = assert_refused(&sh_worker(&long, "exit 0", ""), "longer than 128");
    assert!(
        e.len() < 400,
        "the bad name is quoted whole: {} bytes",
        e.len()
    );
    assert!(e.contains("10000 characters"), "{e}");
    // Still accepted: names that merely contain the reserved word.
    let (code, stderr) = check(&sh_worker("vigil-web", "exit 0", ""));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn nul_bytes_in_argv_and_env_are_refused() {
    let nul_argv =
        "        (name: \"w\", kind: Command(argv: [\"/bin/echo\", \"a\\u{0}b\"])),".to_string();
    assert_refused(&nul_argv, "kind.argv[1]");
    let nul_env =
        "        (name: \"w\", kind: Command(argv: [\"/bin/true\"], env: {\"K\": \"a\\u{0}b\"})),"
            .to_string();
    assert_refused(&nul_env, "NUL");
}

// ------------------------------------------------------------------ 6. records after a crash

#[test]
fn every_worker_has_exactly_one_record_after_the_server_is_killed() {
    for round in 0..3 {
        let chatty = sh_worker(
            "chatty",
            "echo $$ >> chatty.pid; while :; do echo x; sleep 0.01; done",
            FAST,
        );
        let quiet = sh_worker("quiet", "echo $$ >> quiet.pid; exec sleep 1000", FAST);
        let home = Home::new("", &format!("{chatty}\n{quiet}"));
        let mut server = home.serve();
        let c = wait_for(LONG, "chatty", || home.pids("chatty.pid").first().copied());
        let q = wait_for(LONG, "quiet", || home.pids("quiet.pid").first().copied());
        server.track(c);
        server.track(q);
        // Both live-process rows are committed once status answers with both pids.
        wait_for(LONG, "both rows", || {
            let rows = vigil_actors::history::query_live_processes(
                &home.path().join("var/history.sqlite"),
            )
            .ok()?;
            (rows.len() == 2).then_some(())
        });
        let guardian = wait_for(LONG, "guardian", || guardian_of(server.pid));
        server.signal(libc::SIGKILL);
        server.wait(LONG).expect("server died");
        wait_for(LONG, "the guardian's cleanup", || {
            (!alive(guardian)).then_some(())
        });
        for (worker, pid) in [("chatty", c), ("quiet", q)] {
            let exits = home.history(Some(worker));
            let mine: Vec<_> = exits.iter().filter(|e| e["pid"] == pid).collect();
            assert_eq!(
                mine.len(),
                1,
                "round {round}: {worker} pid {pid} needs exactly one record: {exits:?}"
            );
            assert!(!alive(pid));
        }
        let rows =
            vigil_actors::history::query_live_processes(&home.path().join("var/history.sqlite"))
                .unwrap();
        assert!(rows.is_empty(), "{rows:?}");
    }
}

// ------------------------------------------------------------------ 8. start of a failed worker

#[test]
fn a_worker_that_fails_at_once_keeps_its_generations_and_says_why() {
    let home = Home::new(
        "root: (backoff: (initial: \"30s\", max: \"60s\", jitter: 0.0)),",
        "        (name: \"w\", kind: Command(argv: [\"/nonexistent/program\"]), backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 2, within: \"60s\")),",
    );
    let _server = home.serve();
    control_wait_ready(&home);
    wait_for(LONG, "three failed starts", || {
        (home.history(Some("w")).len() == 3).then_some(())
    });
    let node = control_worker(&home, "w");
    assert_eq!(node["generation"], 3, "{node}");
    assert_eq!(node["restarts"], 2, "{node}");
    assert_eq!(node["last_exit"]["reason"], "spawn_failed", "{node}");
    let out = home.run(&["stop", "w"]);
    assert!(out.status.success());
    let node = control_worker(&home, "w");
    assert_eq!(node["generation"], 3, "after stop: {node}");
    assert_eq!(node["last_exit"]["generation"], 3, "after stop: {node}");
    let out = home.run(&["start", "w"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let exits = wait_for(LONG, "three more failed starts", || {
        Some(home.history(Some("w"))).filter(|e| e.len() == 6)
    });
    let mut gens: Vec<u64> = exits
        .iter()
        .map(|e| e["generation"].as_u64().unwrap())
        .collect();
    gens.sort();
    assert_eq!(gens, vec![1, 2, 3, 4, 5, 6], "{exits:?}");
    let log = server_log(&home);
    assert!(!log.contains("panicked during startup"), "{log}");
    // The operator's start began the root backoff again: 30 s, not doubled to 60 s.
    let node = wait_for(LONG, "the second escalation", || {
        let node = control_worker(&home, "w");
        (node["state"] == "failed").then_some(node)
    });
    let next = node["next_start_in_ms"].as_u64().unwrap_or(0);
    assert!(next <= 30_000, "root backoff doubled: {node}");
}

// ------------------------------------------------------------------ 9. EMFILE on the socket

#[test]
fn out_of_descriptors_the_control_socket_still_answers_and_logs_once() {
    use std::os::unix::process::CommandExt;
    // 40 workers need more descriptors than 64: the server runs out, and stays out (failed
    // spawns are retried every second).
    let workers: Vec<String> = (0..40)
        .map(|i| sh_worker(&format!("w{i}"), "exec sleep 1000", FAST))
        .collect();
    let home = Home::new("", &workers.join("\n"));
    let stderr = std::fs::File::create(home.path().join("server.stderr")).unwrap();
    let mut cmd = std::process::Command::new(vigil_bin());
    cmd.args(["serve", "--config"])
        .arg(home.config())
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .process_group(0);
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn vigil serve");
    let server = Server::adopt(child, home.path());
    control_wait_ready(&home);
    wait_for(LONG, "the server out of descriptors", || {
        std::fs::read_to_string(home.path().join("var/log/vigil.log"))
            .ok()
            .filter(|l| l.contains("Too many open files"))
    });
    // Dump answers, again and again, though the server has no descriptor to spare.
    for _ in 0..5 {
        let out = home.run(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status got no answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stderr = server.stderr();
    let accept_failures = stderr.matches("control socket: accept failed").count();
    assert!(
        accept_failures <= 1,
        "{accept_failures} accept warnings:\n{stderr}"
    );
    drop(server);
}

/// Found by this suite: a thousand failed spawns with no backoff recursed inside the
/// supervisor and overflowed the server's stack.
#[test]
fn a_thousand_failed_spawns_in_a_row_do_not_crash_the_server() {
    let home = Home::new(
        "",
        "        (name: \"w\", kind: Command(argv: [\"/nonexistent/program\"]), backoff: (initial: \"0s\", max: \"0s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 2000, within: \"60s\")),",
    );
    let mut server = home.serve();
    control_wait_ready(&home);
    let node = wait_for(LONG, "2001 failed starts", || {
        let node = control_worker(&home, "w");
        (node["generation"].as_u64()? > 2000).then_some(node)
    });
    assert_eq!(node["last_exit"]["reason"], "spawn_failed", "{node}");
    assert!(server.wait(Duration::ZERO).is_none(), "the server died");
    let status = server.terminate(LONG).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

// ------------------------------------------------------------------ the control protocol

/// Random bytes, line after line, to a real server: each line gets one error reply, and the
/// server is unharmed (the seed is printed).
#[test]
fn garbage_on_the_control_socket_gets_error_replies_and_harms_nothing() {
    use std::io::{BufRead, BufReader, Write};
    let home = Home::new(
        "",
        &sh_worker("w", "echo $$ >> pids; exec sleep 1000", FAST),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("control garbage: seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let socket = home.path().join("var/vigil.sock");
    for conn in 0..5 {
        let stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        for i in 0..100 {
            let len = rng.usize(0..300);
            let mut line: Vec<u8> = (0..len)
                .map(|_| rng.u8(..))
                .filter(|b| *b != b'\n')
                .collect();
            if rng.bool() {
                // JSON-shaped garbage reaches the field checks.
                line = format!("{{\"cmd\":\"{}\",\"x\":{}}}", rng.u32(..), rng.u8(..)).into_bytes();
            }
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            line.push(b'\n');
            writer.write_all(&line).expect("write");
            let mut reply = String::new();
            reader
                .read_line(&mut reply)
                .unwrap_or_else(|e| panic!("seed {seed}: conn {conn} line {i}: no reply: {e}"));
            let v: serde_json::Value = serde_json::from_str(&reply)
                .unwrap_or_else(|e| panic!("seed {seed}: reply is not JSON ({e}): {reply:?}"));
            assert_eq!(v["ok"], false, "seed {seed}: {line:?} -> {v}");
        }
    }
    let node = control_worker(&home, "w");
    assert_eq!(node["pid"], pid, "seed {seed}: {node}");
    let status = server.terminate(LONG).expect("exits");
    assert_eq!(status.code(), Some(0));
}
