//! Restarts and exit records with real processes and real signals (issue 2).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn kill_9_is_restarted_and_recorded_as_signal_9() {
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "echo $$ >> pids; echo hello from $VIGIL_WORKER gen $VIGIL_GENERATION; exec sleep 1000",
            FAST,
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "first start", || home.pids("pids").last().copied());
    server.track(pid);
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let new = wait_for(LONG, "restart", || {
        home.pids("pids").last().copied().filter(|p| *p != pid)
    });
    server.track(new);
    let exits = wait_for(LONG, "exit record", || {
        let h = home.history(Some("w"));
        (!h.is_empty()).then_some(h)
    });
    let e = &exits[0];
    assert_eq!(e["pid"], pid);
    assert_eq!(e["signal"], 9);
    assert_eq!(e["signal_name"], "SIGKILL");
    assert!(e["code"].is_null());
    assert_eq!(e["reason"], "killed");
    assert_eq!(e["generation"], 1);
    assert_eq!(e["restart_delay_ms"], 0);
    assert_eq!(e["log_tail"][0], "hello from w gen 1");
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
    assert!(!alive(new), "worker survived shutdown");
}

#[test]
fn exit_code_and_log_tail_are_recorded() {
    let script = "for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3";
    let home = Home::new(
        "",
        &sh_worker("w", script, &format!("{FAST}, restart: Transient")),
    );
    let _server = home.serve();
    let exits = wait_for(LONG, "exit record", || {
        let h = home.history(Some("w"));
        (!h.is_empty()).then_some(h)
    });
    let e = exits.last().unwrap();
    assert_eq!(e["code"], 3);
    assert!(e["signal"].is_null());
    assert!(e["signal_name"].is_null());
    assert_eq!(e["reason"], "exited");
    let tail: Vec<&str> = e["log_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(tail.len(), 20);
    assert_eq!(tail.last(), Some(&"oops"));
    assert_eq!(tail.first(), Some(&"line 12"));
    // Every contract field is present.
    for field in EXIT_FIELDS {
        assert!(e.get(field).is_some(), "missing {field} in {e}");
    }
    assert!(e["started_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn sigsegv_is_recorded_by_name() {
    let home = Home::new(
        "",
        &sh_worker("w", "kill -SEGV $$", &format!("{FAST}, restart: Temporary")),
    );
    let _server = home.serve();
    let e = wait_for(LONG, "exit record", || {
        home.history(Some("w")).into_iter().next()
    });
    assert_eq!(e["signal"], 11);
    assert_eq!(e["signal_name"], "SIGSEGV");
    assert_eq!(e["reason"], "killed");
    assert!(
        e["restart_delay_ms"].is_null(),
        "temporary workers are not restarted"
    );
}

#[test]
fn restart_types_follow_otp() {
    let workers = [
        sh_worker("perm-clean", "echo x >> perm; exit 0", FAST),
        sh_worker(
            "trans-clean",
            "echo x >> trans_clean; exit 0",
            &format!("{FAST}, restart: Transient"),
        ),
        sh_worker(
            "trans-fail",
            "echo x >> trans_fail; exit 1",
            &format!("{FAST}, restart: Transient"),
        ),
        sh_worker(
            "temp-fail",
            "echo x >> temp; exit 1",
            &format!("{FAST}, restart: Temporary"),
        ),
    ]
    .join("\n");
    let home = Home::new("", &workers);
    let _server = home.serve();
    wait_for(LONG, "permanent restarts after a clean exit", || {
        (home.lines("perm").len() >= 3).then_some(())
    });
    wait_for(LONG, "transient restarts after a failure", || {
        (home.lines("trans_fail").len() >= 3).then_some(())
    });
    // The others ran exactly once and were recorded as not restarted.
    let recorded = |w: &str| home.history(Some(w));
    wait_for(LONG, "records of the one-shot workers", || {
        (!recorded("trans-clean").is_empty() && !recorded("temp-fail").is_empty()).then_some(())
    });
    assert_eq!(home.lines("trans_clean").len(), 1);
    assert_eq!(home.lines("temp").len(), 1);
    assert!(recorded("trans-clean")[0]["restart_delay_ms"].is_null());
    assert!(recorded("temp-fail")[0]["restart_delay_ms"].is_null());
}

#[test]
fn backoff_grows_and_caps_then_resets_after_a_stable_run() {
    // initial 100ms ×2 capped at 400ms, no jitter: delays 100, 200, 400, 400, ...
    let script = "echo $(date +%s%N) >> starts; exit 1";
    let policy = "backoff: (initial: \"100ms\", max: \"400ms\", multiplier: 2.0, jitter: 0.0, reset_after: \"60s\"), start_secs: \"0s\", intensity: (max_restarts: 100, within: \"60s\")";
    let home = Home::new("", &sh_worker("w", script, policy));
    let _server = home.serve();
    let starts: Vec<u64> = wait_for(LONG, "6 starts", || {
        let s: Vec<u64> = home
            .lines("starts")
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect();
        (s.len() >= 6).then_some(s)
    });
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    let expected = [100u64, 200, 400, 400, 400];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            *gap >= want && *gap < want + 1000,
            "gaps {gaps:?} should follow {expected:?}"
        );
    }
    let h = home.history(Some("w"));
    let delays: Vec<u64> = h
        .iter()
        .rev()
        .take(5)
        .map(|e| e["restart_delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, vec![100, 200, 400, 400, 400]);
}

#[test]
fn reset_after_restarts_the_sequence() {
    // Each run lasts ~300ms; reset_after 200ms: every restart is the first of a sequence.
    let script = "echo $(date +%s%N) >> starts; sleep 0.3; exit 1";
    let policy = "backoff: (initial: \"100ms\", max: \"5s\", multiplier: 4.0, jitter: 0.0, reset_after: \"200ms\"), start_secs: \"0s\", intensity: (max_restarts: 100, within: \"60s\")";
    let home = Home::new("", &sh_worker("w", script, policy));
    let _server = home.serve();
    wait_for(LONG, "4 exits", || {
        (home.history(Some("w")).len() >= 4).then_some(())
    });
    let delays: Vec<u64> = home
        .history(Some("w"))
        .iter()
        .map(|e| e["restart_delay_ms"].as_u64().unwrap())
        .collect();
    assert!(
        delays.iter().all(|d| *d == 100),
        "delays should all reset to 100: {delays:?}"
    );
}

#[test]
fn missing_program_is_spawn_failed_and_the_server_keeps_running() {
    let workers = [
        "        (name: \"ghost\", kind: Command(argv: [\"/nonexistent/program\"]), backoff: (initial: \"50ms\", max: \"100ms\", jitter: 0.0), intensity: (max_restarts: 100, within: \"60s\")),".to_string(),
        sh_worker("ok", "echo $$ >> pids; exec sleep 1000", FAST),
    ]
    .join("\n");
    let home = Home::new("", &workers);
    let mut server = home.serve();
    let e = wait_for(LONG, "spawn_failed record", || {
        home.history(Some("ghost")).into_iter().next()
    });
    assert_eq!(e["reason"], "spawn_failed");
    assert!(e["pid"].is_null());
    assert!(
        e["log_tail"][0]
            .as_str()
            .unwrap()
            .contains("/nonexistent/program"),
        "{e}"
    );
    assert!(
        e["restart_delay_ms"].as_u64().is_some(),
        "a failed spawn is retried"
    );
    let pid = wait_for(LONG, "the other worker", || {
        home.pids("pids").last().copied()
    });
    assert!(alive(pid));
    // The positive event after: the failed spawn's retry failed too, and was recorded.
    wait_for(LONG, "a second spawn_failed record", || {
        (home.history(Some("ghost")).len() >= 2).then_some(())
    });
    assert!(
        server.wait(Duration::ZERO).is_none(),
        "server must keep running"
    );
    assert!(alive(pid));
}
