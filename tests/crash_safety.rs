//! Nothing left behind, nothing hung unnoticed (issue 3): single instance, parent death,
//! orphan sweep, notify protocol, watchdog, failed starts.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Wait for worker `w`'s `orphan` record of `leader`, written by `by` ("guardian", "startup").
fn orphan_record_of(home: &Home, leader: u32, by: &str) {
    let orphan = wait_for(LONG, "orphan record", || {
        home.history(Some("w"))
            .into_iter()
            .find(|e| e["reason"] == "orphan")
    });
    assert_eq!(orphan["pid"], leader);
    assert!(
        orphan["decision"].as_str().unwrap().contains(by),
        "{orphan}"
    );
}

/// Start a server on a `WITH_GRANDCHILD` worker "w": the server (tracking the worker's group),
/// the worker's pid and its grandchild's.
fn serve_with_grandchild(home: &Home) -> (Server, u32, u32) {
    let mut server = home.serve();
    let leader = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    let gc = wait_for(LONG, "grandchild", || {
        home.pids("grandchildren").first().copied()
    });
    server.track(leader);
    (server, leader, gc)
}

/// [`serve_with_grandchild`], once the server's guardian is up: also the guardian's pid.
fn serve_with_guardian(home: &Home) -> (Server, u32, u32, u32) {
    let (server, leader, gc) = serve_with_grandchild(home);
    let guardian = wait_for(LONG, "guardian", || guardian_of(server.pid));
    (server, leader, gc, guardian)
}

/// `sig` to the server's process group: the server and its guardian (the workers have groups
/// of their own).
fn signal_server_group(server: &Server, sig: i32) {
    // SAFETY: killpg on the group the test created for the server.
    unsafe { libc::killpg(server.pid as i32, sig) };
}

fn server_log(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("var/log/vigil.log")).unwrap_or_default()
}

#[test]
fn a_second_server_is_refused_without_touching_the_first() {
    let home = Home::new(
        "",
        &sh_worker("w", "echo $$ >> pids; exec sleep 1000", FAST),
    );
    let mut first = home.serve();
    let pid = wait_for(LONG, "first server's worker", || {
        home.pids("pids").first().copied()
    });
    first.track(pid);
    let out = home.run(&["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("already running (pid {})", first.pid)),
        "{stderr}"
    );
    assert!(alive(pid), "the first server's worker was touched");
    assert_eq!(
        home.pids("pids").len(),
        1,
        "the second server started a worker"
    );
    assert!(
        first.wait(Duration::from_millis(200)).is_none(),
        "the first server stopped"
    );
}

#[test]
fn server_kill_9_the_guardian_kills_the_whole_group_at_once() {
    let home = Home::new("", &sh_worker("w", WITH_GRANDCHILD, FAST));
    let (mut server, leader, gc, guardian) = serve_with_guardian(&home);
    server.signal(libc::SIGKILL);
    server.wait(LONG).expect("server died");
    // The guardian kills the leader and the grandchild, with no server running.
    wait_for(LONG, "leader and grandchild killed by the guardian", || {
        (!alive(leader) && !alive(gc)).then_some(())
    });
    orphan_record_of(&home, leader, "guardian");
    wait_for(LONG, "guardian exits", || (!alive(guardian)).then_some(()));
    assert!(server_log(&home).contains("guardian: cleanup done"));
    // Nothing is left for the next server's sweep.
    let mut next = home.serve();
    let new = wait_for(LONG, "new worker", || home.pids("pids").get(1).copied());
    next.track(new);
    assert_eq!(next.terminate(LONG).and_then(|s| s.code()), Some(0));
    let orphans = home
        .history(Some("w"))
        .into_iter()
        .filter(|e| e["reason"] == "orphan")
        .count();
    assert_eq!(orphans, 1, "the startup sweep found something again");
}

#[test]
fn a_server_started_right_after_a_crash_waits_for_the_guardians_cleanup() {
    // The worker ignores SIGTERM: the guardian needs its whole grace period (2 s) and SIGKILL.
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "trap '' TERM; echo $$ >> pids; sleep 1000 & wait",
            FAST,
        ),
    );
    let mut server = home.serve();
    let leader = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(leader);
    wait_for(LONG, "guardian", || guardian_of(server.pid));
    server.signal(libc::SIGKILL);
    server.wait(LONG).expect("server died");
    // At once: the lock is still held by the guardian, under a dead server's pid.
    let mut next = home.serve();
    let new = wait_for(LONG, "new worker", || home.pids("pids").get(1).copied());
    next.track(new);
    assert!(
        !alive(leader),
        "the new server started before the cleanup ended"
    );
    assert!(
        next.stderr().contains("waiting for its guardian"),
        "the new server did not say why it waited: {}",
        next.stderr()
    );
    let orphan = home
        .history(Some("w"))
        .into_iter()
        .find(|e| e["reason"] == "orphan")
        .expect("orphan record");
    assert!(
        orphan["log_tail"].to_string().contains("sent SIGKILL"),
        "{orphan}"
    );
    assert_eq!(next.terminate(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn when_the_guardian_dies_too_the_next_start_sweeps_the_group() {
    let home = Home::new("", &sh_worker("w", WITH_GRANDCHILD, FAST));
    let (mut server, leader, gc, guardian) = serve_with_guardian(&home);
    // The server and its guardian share a process group; the workers have their own.
    signal_server_group(&server, libc::SIGKILL);
    server.wait(LONG).expect("server died");
    // Once both are gone nobody is left who could kill them: no need to wait any longer.
    wait_for(LONG, "guardian gone", || (!alive(guardian)).then_some(()));
    assert!(alive(leader) && alive(gc), "nobody was left to kill them");
    // The next server's startup sweep is the last line of defence.
    let mut next = home.serve();
    wait_for(LONG, "group swept", || {
        (!alive(leader) && !alive(gc)).then_some(())
    });
    orphan_record_of(&home, leader, "startup");
    let new = wait_for(LONG, "new worker", || home.pids("pids").get(1).copied());
    next.track(new);
    assert_eq!(next.terminate(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn ctrl_c_to_the_servers_group_is_a_clean_shutdown() {
    let home = Home::new("", &sh_worker("w", WITH_GRANDCHILD, FAST));
    let (mut server, leader, gc, guardian) = serve_with_guardian(&home);
    // What a terminal does on Ctrl-C: SIGINT to the foreground group (server and guardian).
    signal_server_group(&server, libc::SIGINT);
    assert_eq!(server.wait(LONG).and_then(|s| s.code()), Some(0));
    // The server waited for (and reaped) its guardian before exiting: nothing of it is left
    // to hold the lock, and a new server starts at once, without waiting.
    assert!(
        !std::path::Path::new(&format!("/proc/{guardian}")).exists(),
        "the guardian outlived the server"
    );
    assert!(!alive(leader) && !alive(gc));
    let reasons: Vec<_> = home
        .history(Some("w"))
        .into_iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["stopped"], "a clean stop, not an orphan kill");
    let mut next = home.serve();
    let new = wait_for(LONG, "new worker", || home.pids("pids").get(1).copied());
    next.track(new);
    assert!(!next.stderr().contains("waiting for its guardian"));
    assert_eq!(next.terminate(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn ready_moves_to_running_and_status_text_is_kept() {
    // start_secs is long: only READY=1 can make the worker running quickly.
    let script = "echo $$ >> pids; sleep 0.2; echo READY=1 >&$VIGIL_NOTIFY_FD; echo 'STATUS=serving 3 clients' >&$VIGIL_NOTIFY_FD; echo garbage-line >&$VIGIL_NOTIFY_FD; exec sleep 1000";
    let home = Home::new("", &sh_worker("w", script, "start_secs: \"60s\""));
    let mut server = home.serve();
    let pid = wait_for(LONG, "start", || home.pids("pids").first().copied());
    server.track(pid);
    wait_for(LONG, "worker ready in the server log", || {
        server_log(&home).contains("worker ready").then_some(())
    });
    assert!(alive(pid));
}

#[test]
fn a_worker_dying_before_it_is_running_is_a_failed_start() {
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "sleep 0.1; exit 4",
            "start_secs: \"5s\", backoff: (initial: \"50ms\", max: \"50ms\", jitter: 0.0)",
        ),
    );
    let _server = home.serve();
    let e = wait_for(LONG, "record", || {
        home.history(Some("w")).into_iter().next()
    });
    assert_eq!(e["code"], 4);
    assert!(
        e["decision"].as_str().unwrap().contains("failed start"),
        "{e}"
    );
    assert_eq!(e["restart_delay_ms"], 50);
}

#[test]
fn a_hung_worker_is_killed_by_the_watchdog_and_restarted() {
    // Sends READY and one WATCHDOG, then hangs (ignoring SIGABRT would not help: SIGKILL follows).
    let script = "echo $$ >> pids; echo READY=1 >&$VIGIL_NOTIFY_FD; echo WATCHDOG=1 >&$VIGIL_NOTIFY_FD; exec sleep 1000";
    let policy = format!(
        "{FAST}, heartbeat_timeout: Some(\"400ms\"), shutdown: (signal: \"SIGTERM\", grace: \"1s\")"
    );
    let home = Home::new("", &sh_worker("w", script, &policy));
    let mut server = home.serve();
    let first = wait_for(LONG, "start", || home.pids("pids").first().copied());
    server.track(first);
    let t0 = Instant::now();
    let e = wait_for(LONG, "watchdog record", || {
        home.history(Some("w"))
            .into_iter()
            .find(|e| e["reason"] == "watchdog")
    });
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(e["signal_name"], "SIGABRT", "{e}");
    let second = wait_for(LONG, "restart", || home.pids("pids").get(1).copied());
    server.track(second);
}

#[test]
fn heartbeats_keep_a_worker_alive() {
    // Each heartbeat is also written down, with the pid that sent it.
    let script = "echo $$ >> pids; while :; do echo WATCHDOG=1 >&$VIGIL_NOTIFY_FD; echo $$ >> beats; sleep 0.1; done";
    let policy = format!("{FAST}, heartbeat_timeout: Some(\"500ms\")");
    let home = Home::new("", &sh_worker("w", script, &policy));
    let mut server = home.serve();
    let pid = wait_for(LONG, "start", || home.pids("pids").first().copied());
    server.track(pid);
    // Three timeouts' worth of heartbeats (at least 100 ms apart: 16 span 1.5 s): all sent by
    // the same process, which is still alive, and no record.
    let beats = wait_for(LONG, "16 heartbeats", || {
        let beats = home.pids("beats");
        (beats.len() >= 16).then_some(beats)
    });
    assert!(
        beats.iter().all(|&b| b == pid),
        "a heartbeating worker was killed: {beats:?}"
    );
    assert!(alive(pid), "a heartbeating worker was killed");
    assert_eq!(home.pids("pids"), [pid]);
    assert!(home.history(Some("w")).is_empty());
}

#[test]
fn notify_fd_garbage_and_a_closed_fd_do_no_harm() {
    let script = "head -c 200000 /dev/urandom >&$VIGIL_NOTIFY_FD; exec 3>&-; eval \"exec $VIGIL_NOTIFY_FD>&-\"; echo $$ >> pids; exec sleep 1000";
    let home = Home::new("", &sh_worker("w", script, FAST));
    let mut server = home.serve();
    let pid = wait_for(LONG, "start", || home.pids("pids").first().copied());
    server.track(pid);
    assert!(alive(pid));
    assert!(server.wait(Duration::from_millis(300)).is_none());
}

#[test]
fn systemd_notify_socket_gets_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let home = Home::new("", &sh_worker("w", "exec sleep 1000", FAST));
    let sock_path = home.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let child = std::process::Command::new(vigil_bin())
        .args(["serve", "--config"])
        .arg(home.config())
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server::adopt(child, home.path());
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    server.signal(libc::SIGTERM);
    let mut got_stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            got_stopping = true;
            break;
        }
    }
    assert!(got_stopping);
    assert_eq!(server.wait(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn each_worker_gets_its_own_notify_pipe_at_fd_3_and_nothing_else() {
    // Each worker (the shell) lists its fds, names its fd 3, and says READY through it.
    let script = "ls /proc/$$/fd > fds.$VIGIL_WORKER; readlink /proc/$$/fd/3 > fd3.$VIGIL_WORKER; \
                  echo READY=1 >&3; echo $$ >> pids; exec sleep 1000";
    let workers = format!(
        "{}\n{}",
        sh_worker("a", script, "start_secs: \"30s\""),
        sh_worker("b", script, "start_secs: \"30s\"")
    );
    let home = Home::new("", &workers);
    let mut server = home.serve();
    let pids = wait_for(LONG, "two workers", || {
        let p = home.pids("pids");
        (p.len() == 2).then_some(p)
    });
    for p in &pids {
        server.track(*p);
    }
    // READY arrived through fd 3: both running long before start_secs.
    control_wait_ready(&home);
    for w in ["a", "b"] {
        let node = wait_for(LONG, "running", || {
            let n = control_worker(&home, w);
            (n["state"] == "running").then_some(n)
        });
        assert_eq!(node["state"], "running");
    }
    let fd3 = |w: &str| {
        std::fs::read_to_string(home.file(&format!("fd3.{w}")))
            .unwrap()
            .trim()
            .to_string()
    };
    assert!(fd3("a").starts_with("pipe:["), "{}", fd3("a"));
    assert_ne!(fd3("a"), fd3("b"), "two workers share a notify pipe");
    for w in ["a", "b"] {
        // The shell keeps copies of its own at 10 and above while it redirects.
        let mut fds: Vec<u32> = home
            .lines(&format!("fds.{w}"))
            .iter()
            .filter_map(|f| f.parse().ok())
            .filter(|&f| f < 10)
            .collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 1, 2, 3], "{w} inherited more than stdio and fd 3");
    }
    // Workers are spawned from the server's spawner thread, whose descriptor table is its own:
    // stdio, fd 3 (back on /dev/null between spawns), its copy of /dev/null and a pidfd. None
    // of the server's thousands of pipes, log files and sockets is in it.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid)).unwrap();
    let spawner = tasks
        .filter_map(|t| t.ok())
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "vigil-spawner")
        })
        .expect("a vigil-spawner thread");
    let mut fds: Vec<u32> = std::fs::read_dir(spawner.path().join("fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2, 3, 4, 5], "the spawner's table holds more");
    let fd3 = std::fs::read_link(spawner.path().join("fd/3")).unwrap();
    assert_eq!(fd3, std::path::Path::new("/dev/null"));
    assert_eq!(server.terminate(LONG).and_then(|s| s.code()), Some(0));
}
