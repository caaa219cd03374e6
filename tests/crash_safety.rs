//! Nothing left behind, nothing hung unnoticed (issue 3): single instance, parent death,
//! orphan sweep, notify protocol, watchdog, failed starts.

mod common;

use std::time::{Duration, Instant};

use common::*;

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
fn server_kill_9_kills_the_worker_and_the_next_start_sweeps_the_grandchild() {
    let home = Home::new("", &sh_worker("w", WITH_GRANDCHILD, FAST));
    let mut server = home.serve();
    let leader = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    let gc = wait_for(LONG, "grandchild", || {
        home.pids("grandchildren").first().copied()
    });
    server.track(leader);
    server.signal(libc::SIGKILL);
    server.wait(LONG).expect("server died");
    // PDEATHSIG: the leader dies with the server. The grandchild does not.
    wait_for(LONG, "leader killed by PDEATHSIG", || {
        (!alive(leader)).then_some(())
    });
    assert!(
        alive(gc),
        "grandchildren do not get PDEATHSIG; the sweep must find it"
    );
    // The next server kills the leftover group and records it.
    let mut next = home.serve();
    wait_for(LONG, "grandchild swept", || (!alive(gc)).then_some(()));
    let orphan = wait_for(LONG, "orphan record", || {
        home.history(Some("w"))
            .into_iter()
            .find(|e| e["reason"] == "orphan")
    });
    assert_eq!(orphan["pid"], leader);
    let new = wait_for(LONG, "new worker", || home.pids("pids").get(1).copied());
    next.track(new);
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
    let script = "echo $$ >> pids; while :; do echo WATCHDOG=1 >&$VIGIL_NOTIFY_FD; sleep 0.1; done";
    let policy = format!("{FAST}, heartbeat_timeout: Some(\"500ms\")");
    let home = Home::new("", &sh_worker("w", script, &policy));
    let mut server = home.serve();
    let pid = wait_for(LONG, "start", || home.pids("pids").first().copied());
    server.track(pid);
    // Three timeouts' worth: still the same process, no record.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(alive(pid), "a heartbeating worker was killed");
        std::thread::sleep(Duration::from_millis(50));
    }
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
