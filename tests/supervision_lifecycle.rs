//! Escalation, shutdown order, grace and grandchildren with real processes (issue 2).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn intensity_escalates_to_the_root_which_starts_a_fresh_supervisor() {
    // 3 restarts allowed within 10 s; the worker dies at once: the 4th restart escalates, the
    // root waits its backoff (300ms) and a fresh supervisor runs the worker again.
    let root = "root: (backoff: (initial: \"300ms\", max: \"300ms\", jitter: 0.0)),";
    let policy = "backoff: (initial: \"0s\", max: \"0s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 3, within: \"10s\")";
    let home = Home::new(
        root,
        &sh_worker("w", "echo $(date +%s%N) >> starts; exit 1", policy),
    );
    let _server = home.serve();
    let starts: Vec<u64> = wait_for(LONG, "a run after the escalation", || {
        let s: Vec<u64> = home
            .lines("starts")
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect();
        (s.len() >= 5).then_some(s)
    });
    // Runs 1-4 back to back, then the root's backoff before run 5.
    let gap = (starts[4] - starts[3]) / 1_000_000;
    assert!(
        gap >= 300,
        "the fresh supervisor must wait the root backoff, gap was {gap} ms"
    );
    let h = home.history(Some("w"));
    let escalated = h.iter().find(|e| {
        e["decision"]
            .as_str()
            .is_some_and(|d| d.contains("escalated"))
    });
    assert!(escalated.is_some(), "the escalating exit says so: {h:?}");
    assert!(escalated.unwrap()["restart_delay_ms"].is_null());
    // The root's side of it: an `escalation` event, listed by `vigil history --events`.
    let out = home.run(&["history", "--events", "--json"]);
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "escalation" && e["worker"] == "w"),
        "{events:?}"
    );
    let text = String::from_utf8_lossy(&home.run(&["history", "--events"]).stdout).to_string();
    assert!(text.contains("escalation"), "{text}");
}

#[test]
fn root_intensity_exceeded_stops_everything_with_status_3() {
    let root = "root: (backoff: (initial: \"50ms\", max: \"50ms\", jitter: 0.0), intensity: Some((max_restarts: 1, within: \"30s\"))),";
    let policy = "backoff: (initial: \"0s\", max: \"0s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 1, within: \"10s\")";
    let workers = [
        sh_worker("crash", "exit 1", policy),
        sh_worker("calm", "echo $$ >> pids; exec sleep 1000", FAST),
    ]
    .join("\n");
    let home = Home::new(root, &workers);
    let mut server = home.serve();
    let status = server.wait(LONG).expect("server exits by itself");
    assert_eq!(status.code(), Some(3), "stderr: {}", server.stderr());
    for pid in home.pids("pids") {
        assert!(!alive(pid), "calm worker {pid} survived");
    }
}

#[test]
fn shutdown_stops_workers_in_reverse_order_and_kills_grandchildren() {
    // Each worker leaves a grandchild in its group and logs its own TERM.
    let w = |name: &str| {
        sh_worker(
            name,
            &format!(
                "trap 'echo {name} $(date +%s%N) >> stops; exit 0' TERM; sleep 1000 & echo $! >> grandchildren; echo $$ >> pids; wait"
            ),
            FAST,
        )
    };
    let home = Home::new("", &[w("first"), w("second"), w("third")].join("\n"));
    let mut server = home.serve();
    let gc = wait_for(LONG, "3 workers with grandchildren", || {
        let g = home.pids("grandchildren");
        (g.len() == 3 && home.pids("pids").len() == 3).then_some(g)
    });
    for p in home.pids("pids") {
        server.track(p);
    }
    assert_eq!(
        server.terminate(LONG).and_then(|s| s.code()),
        Some(0),
        "{}",
        server.stderr()
    );
    let order: Vec<String> = home
        .lines("stops")
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(order, vec!["third", "second", "first"]);
    for p in gc.iter().chain(home.pids("pids").iter()) {
        assert!(!alive(*p), "process {p} survived shutdown");
    }
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_grace() {
    let script = "trap '' TERM; echo $$ >> pids; while :; do sleep 0.05; done";
    let home = Home::new(
        "",
        &sh_worker(
            "stubborn",
            script,
            &format!("{FAST}, shutdown: (signal: \"SIGTERM\", grace: \"500ms\")"),
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "start", || home.pids("pids").first().copied());
    server.track(pid);
    let t0 = Instant::now();
    assert_eq!(server.terminate(LONG).and_then(|s| s.code()), Some(0));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "killed before the grace: {took:?}"
    );
    assert!(!alive(pid));
    let e = home.history(Some("stubborn")).into_iter().next().unwrap();
    assert_eq!(e["signal_name"], "SIGKILL");
    assert_eq!(e["reason"], "stopped");
}

#[test]
fn kill_9_of_the_leader_takes_its_grandchildren_with_it() {
    let home = Home::new("", &sh_worker("w", WITH_GRANDCHILD, FAST));
    let mut server = home.serve();
    let leader = wait_for(LONG, "start", || home.pids("pids").first().copied());
    let gc = wait_for(LONG, "grandchild", || {
        home.pids("grandchildren").first().copied()
    });
    server.track(leader);
    unsafe { libc::kill(leader as i32, libc::SIGKILL) };
    wait_for(LONG, "grandchild killed with its group", || {
        (!alive(gc)).then_some(())
    });
    wait_for(LONG, "restart", || {
        (home.pids("pids").len() >= 2).then_some(())
    });
}

#[test]
fn a_worker_exiting_during_shutdown_does_not_hang_it() {
    // The worker exits by itself on TERM after a short delay, and a second one is in backoff.
    let workers = [
        sh_worker(
            "racer",
            "trap 'sleep 0.1; exit 7' TERM; echo $$ >> pids; while :; do sleep 0.05; done",
            FAST,
        ),
        sh_worker(
            "looper",
            "exit 1",
            "backoff: (initial: \"5s\", max: \"5s\", jitter: 0.0), start_secs: \"0s\"",
        ),
    ]
    .join("\n");
    let home = Home::new("", &workers);
    let mut server = home.serve();
    wait_for(LONG, "start", || home.pids("pids").first().copied());
    wait_for(LONG, "looper in backoff", || {
        (!home.history(Some("looper")).is_empty()).then_some(())
    });
    let t0 = Instant::now();
    assert_eq!(server.terminate(LONG).and_then(|s| s.code()), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "shutdown waited for a backoff timer"
    );
}
