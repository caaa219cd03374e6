//! Groups with real processes (issue 13): strategies, instances, group nodes in the dump,
//! group actions, config errors. Ordering is judged by the lines the workers append themselves.

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(30);

/// A worker appending `PID NAME` to `order` at each start, then sleeping.
fn member(name: &str, extra: &str) -> String {
    sh_worker(
        name,
        "echo $$ $VIGIL_WORKER $VIGIL_INSTANCE >> order; exec sleep 1000",
        &if extra.contains("start_secs") {
            format!("{}, {extra}", FAST.replace("start_secs: \"0s\", ", ""))
        } else {
            format!("{FAST}, {extra}")
        },
    )
    .trim_end_matches(',')
    .to_string()
        + ","
}

/// Like [`member`], but `running` only once its line is written (READY=1 after the write), so
/// that "started after the one before was running" shows in the file's order.
fn ready_member(name: &str) -> String {
    sh_worker(
        name,
        "echo $$ $VIGIL_WORKER $VIGIL_INSTANCE >> order; echo READY=1 >&$VIGIL_NOTIFY_FD; exec sleep 1000",
        &format!("{}, start_secs: \"30s\"", FAST.replace("start_secs: \"0s\", ", "")),
    )
    .trim_end_matches(',')
    .to_string()
        + ","
}

/// Group "all" with `strategy` over the ready members a, b, c.
fn ready_trio(strategy: &str) -> String {
    group(
        "all",
        strategy,
        &[ready_member("a"), ready_member("b"), ready_member("c")],
    )
}

fn group(name: &str, strategy: &str, members: &[String]) -> String {
    format!(
        "        (name: \"{name}\", kind: Group(strategy: {strategy}, backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), workers: [\n{}\n        ])),",
        members.join("\n")
    )
}

/// `(pid, name)` of each start, in the order the workers wrote them.
fn starts(home: &Home) -> Vec<(u32, String)> {
    home.lines("order")
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.to_string()))
        })
        .collect()
}

fn pid_of(starts: &[(u32, String)], name: &str) -> Option<u32> {
    starts
        .iter()
        .rev()
        .find(|(_, n)| n == name)
        .map(|(p, _)| *p)
}

fn kill(pid: u32) {
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Wait for `n` start lines, tracking every pid for cleanup.
fn wait_starts(home: &Home, server: &mut Server, n: usize, what: &str) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + LONG;
    let s = loop {
        let s = starts(home);
        if s.len() >= n {
            break s;
        }
        if std::time::Instant::now() > deadline {
            for (pid, _) in &s {
                server.track(*pid);
            }
            panic!(
                "timed out waiting for {what}: {s:?}; the server's stderr:\n{}",
                server.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for (pid, _) in &s {
        server.track(*pid);
    }
    s
}

#[test]
fn rest_for_one_restarts_the_later_siblings_in_order() {
    let home = Home::new(
        "",
        &group(
            "backend",
            "RestForOne",
            &[member("db", "start_secs: \"300ms\""), member("indexer", "")],
        ),
    );
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 2, "both started");
    assert_eq!(first[0].1, "db", "{first:?}");
    assert_eq!(first[1].1, "indexer", "{first:?}");
    // Kill the db: the indexer is stopped and both start again, the db first.
    kill(first[0].0);
    let after = wait_starts(&home, &mut server, 4, "db and indexer restarted");
    let names: Vec<&str> = after[2..].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["db", "indexer"], "{after:?}");
    assert_ne!(after[3].0, first[1].0, "the indexer's pid did not change");
    wait_for(LONG, "the old indexer gone", || {
        (!alive(first[1].0)).then_some(())
    });
    // Kill the later one: only it restarts.
    let db = after[2].0;
    kill(after[3].0);
    let again = wait_starts(&home, &mut server, 5, "indexer restarted");
    assert_eq!(again[4].1, "indexer", "{again:?}");
    let dump = control_json(&home, &["dump"]);
    let backend = &dump["root"]["children"][0];
    assert_eq!(backend["name"], "backend", "{dump}");
    assert_eq!(backend["kind"], "group");
    assert_eq!(backend["strategy"], "rest_for_one");
    let children: Vec<&str> = backend["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["db", "indexer"]);
    assert_eq!(
        backend["children"][0]["pid"], db,
        "the db was restarted too"
    );
    assert_eq!(starts(&home).len(), 5, "{:?}", starts(&home));
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn one_for_all_restarts_every_sibling_in_order() {
    let home = Home::new("", &ready_trio("OneForAll"));
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 3, "three started");
    let b = pid_of(&first, "b").unwrap();
    kill(b);
    let after = wait_starts(&home, &mut server, 6, "all three restarted");
    let names: Vec<&str> = after[3..].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "{after:?}");
    for (pid, _) in &first {
        let pid = *pid;
        wait_for(LONG, "old processes gone", || (!alive(pid)).then_some(()));
    }
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn temporary_bystander_is_not_restarted() {
    let home = Home::new(
        "",
        &group(
            "all",
            "OneForAll",
            &[member("a", ""), member("t", "restart: Temporary")],
        ),
    );
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 2, "two started");
    let a = pid_of(&first, "a").unwrap();
    let t = pid_of(&first, "t").unwrap();
    kill(a);
    let after = wait_starts(&home, &mut server, 3, "a restarted");
    assert_eq!(after[2].1, "a");
    assert!(alive(t), "the temporary sibling was stopped");
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
    assert_eq!(pid_of(&starts(&home), "t"), Some(t));
}

#[test]
fn instances_run_in_a_one_for_one_group() {
    let home = Home::new("", &member("w", "instances: 3"));
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 3, "three instances");
    let mut lines = home.lines("order");
    lines.sort();
    let mut seen: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .collect();
    seen.sort();
    assert_eq!(seen, ["w@0 0", "w@1 1", "w@2 2"]);
    for i in 0..3 {
        assert!(home.log(&format!("w@{i}")).exists(), "no log for w@{i}");
    }
    let dump = control_json(&home, &["dump"]);
    let w = &dump["root"]["children"][0];
    assert_eq!(w["name"], "w", "{dump}");
    assert_eq!(w["kind"], "group");
    assert_eq!(w["strategy"], "one_for_one");
    assert_eq!(w["children"].as_array().map(Vec::len), Some(3));
    assert_eq!(w["children"][1]["name"], "w@1");
    // One for one: killing w@1 restarts only w@1.
    let one = pid_of(&first, "w@1").unwrap();
    kill(one);
    let after = wait_starts(&home, &mut server, 4, "w@1 restarted");
    assert_eq!(after[3].1, "w@1");
    for name in ["w@0", "w@2"] {
        let pid = pid_of(&first, name).unwrap();
        assert!(alive(pid), "{name} was restarted");
    }
    let text = home.run(&["dump"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("group w one_for_one"), "{text}");
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn check_rejects_bad_group_entries() {
    let home = Home::new(
        "",
        "        (name: \"g\", kind: Group(workers: []),\n            significant: true),",
    );
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":6:13: group \"g\": significant is a worker's field"),
        "{err}"
    );
    let home = Home::new("", &group("g", "OneForOne", &[member("g", "")]));
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is used twice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_gated_group_starts_each_child_once_the_one_before_is_running() {
    let stamped = |name: &str, extra: &str| {
        sh_worker(
            name,
            "echo $$ $VIGIL_WORKER $(date +%s%N) >> order; exec sleep 1000",
            &format!(
                "backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), intensity: (max_restarts: 1000, within: \"60s\"), {extra}"
            ),
        )
    };
    let home = Home::new(
        "",
        &group(
            "backend",
            "RestForOne",
            &[
                stamped("db", "start_secs: \"2s\""),
                stamped("indexer", "start_secs: \"0s\""),
            ],
        ),
    );
    let mut server = home.serve();
    wait_starts(&home, &mut server, 1, "db started");
    let dump = control_json(&home, &["dump"]);
    if starts(&home).len() == 1 {
        // The dump was taken before the indexer started: it waited.
        let backend = &dump["root"]["children"][0];
        assert_eq!(backend["children"][1]["state"], "waiting", "{dump}");
        assert_eq!(backend["state"], "starting", "{dump}");
    } else {
        eprintln!("SKIP (waiting state): the indexer started before the dump was taken");
    }
    wait_starts(&home, &mut server, 2, "indexer started");
    let stamps: Vec<(String, u128)> = home
        .lines("order")
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.get(1)?.to_string(), w.get(2)?.parse().ok()?))
        })
        .collect();
    assert_eq!(stamps[0].0, "db");
    assert_eq!(stamps[1].0, "indexer");
    let gap_ms = (stamps[1].1 - stamps[0].1) / 1_000_000;
    assert!(
        gap_ms >= 1900,
        "the indexer started {gap_ms} ms after the db, before it was running"
    );
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn stop_and_start_a_group_act_on_its_workers_in_order() {
    let home = Home::new(
        "",
        &group("pair", "OneForOne", &[ready_member("a"), ready_member("b")]),
    );
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 2, "both started");
    control_wait_ready(&home);
    let status = control_json(&home, &["status", "pair"]);
    let names: Vec<&str> = status
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| w["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["a", "b"], "{status}");
    let out = home.run(&["stop", "pair"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (pid, _) in &first {
        assert!(!alive(*pid), "a worker of the stopped group still runs");
    }
    let dump = control_json(&home, &["dump"]);
    assert_eq!(dump["root"]["children"][0]["state"], "stopped", "{dump}");
    let out = home.run(&["start", "pair"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_starts(&home, &mut server, 4, "both started again");
    let names: Vec<&str> = after[2..].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let out = home.run(&["restart", "nope"]);
    assert!(!out.status.success());
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

/// The start stamps (ns) a worker appended to `file`.
fn stamps(home: &Home, file: &str) -> Vec<u128> {
    home.lines(file)
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn each_child_has_its_own_backoff_for_failed_supervisors() {
    let policy = "backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), intensity: (max_restarts: 0, within: \"60s\"), start_secs: \"0s\"";
    let home = Home::new(
        "root: (backoff: (initial: \"200ms\", max: \"20s\", multiplier: 2.0, jitter: 0.0)),",
        &[
            sh_worker("a", "date +%s%N >> a; exit 1", policy),
            sh_worker(
                "b",
                "date +%s%N >> b; if [ -e trigger ]; then rm trigger; exit 1; fi; exec sleep 1000",
                policy,
            ),
        ]
        .join("\n"),
    );
    let mut server = home.serve();
    // a escalates again and again: its fresh supervisors come 200, 400, 800, 1600 ms apart.
    wait_for(LONG, "a's fifth start", || {
        (stamps(&home, "a").len() >= 5).then_some(())
    });
    wait_for(LONG, "b running", || home.lines("b").first().map(|_| ()));
    let dump = control_json(&home, &["dump"]);
    let pid = dump["root"]["children"][1]["pid"]
        .as_u64()
        .expect("b's pid") as u32;
    server.track(pid);
    // b escalates twice (killed; then its next run exits at once): 200 then 400 ms of its own
    // backoff, not the 6.4 s a's sequence has reached.
    std::fs::write(home.file("trigger"), "").expect("write trigger");
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let b = wait_for(LONG, "b escalated and started afresh", || {
        let s = stamps(&home, "b");
        (s.len() >= 3).then_some(s)
    });
    let gap_ms = (b[2] - b[1]) / 1_000_000;
    assert!(
        gap_ms < 1500,
        "b's second escalation waited {gap_ms} ms: a's escalations grew its backoff"
    );
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_group_past_its_intensity_fails_and_the_root_exits_3() {
    let workers = format!(
        "        (name: \"g\", kind: Group(intensity: (max_restarts: 1, within: \"60s\"), backoff: (initial: \"100ms\", max: \"1s\", jitter: 0.0), workers: [\n{}\n        ])),",
        sh_worker(
            "w",
            "date +%s%N >> w; exit 1",
            "backoff: (initial: \"0s\", jitter: 0.0), intensity: (max_restarts: 0, within: \"60s\")",
        )
    );
    let home = Home::new(
        "root: (intensity: (max_restarts: 0, within: \"60s\")),",
        &workers,
    );
    let mut server = home.serve();
    let status = server.wait(LONG).expect("the server exits");
    assert_eq!(status.code(), Some(3), "{}", server.stderr());
    // The group absorbed the first failure (one fresh supervisor), the second failed it.
    assert_eq!(stamps(&home, "w").len(), 2, "{}", server.stderr());
    assert!(
        server.stderr().contains("exceed group"),
        "{}",
        server.stderr()
    );
}

#[test]
fn restart_of_an_instance_group_is_rolling() {
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "echo $$ $VIGIL_WORKER $(date +%s%N) >> order; exec sleep 1000",
            "backoff: (initial: \"0s\", jitter: 0.0), start_secs: \"500ms\", instances: 2",
        ),
    );
    let mut server = home.serve();
    wait_starts(&home, &mut server, 2, "two instances");
    control_wait_ready(&home);
    let out = home.run(&["restart", "w"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_starts(&home, &mut server, 4, "both restarted");
    let stamp = |l: &str| -> u128 {
        l.split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let lines = home.lines("order");
    assert_eq!(after[2].1, "w@0", "{lines:?}");
    assert_eq!(after[3].1, "w@1", "{lines:?}");
    let gap_ms = (stamp(&lines[3]) - stamp(&lines[2])) / 1_000_000;
    assert!(
        gap_ms >= 450,
        "w@1 restarted {gap_ms} ms after w@0, before w@0 was running"
    );
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_reload_that_changes_instances_leaves_the_others_untouched() {
    let worker = |n: u32| {
        sh_worker(
            "w",
            "echo $$ $VIGIL_WORKER $VIGIL_INSTANCE >> order; exec sleep 1000",
            &format!("{FAST}, instances: {n}"),
        )
    };
    let home = Home::new("", &worker(2));
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 2, "two instances");
    control_wait_ready(&home);
    home.write_config("", &worker(3));
    let out = home.run(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = wait_starts(&home, &mut server, 3, "the third instance");
    assert_eq!(after[2].1, "w@2", "{after:?}");
    for (pid, _) in &first {
        assert!(alive(*pid), "an untouched instance was restarted");
    }
    home.write_config("", &worker(1));
    let out = home.run(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w1 = pid_of(&after, "w@1").expect("w@1");
    let w2 = pid_of(&after, "w@2").expect("w@2");
    wait_for(LONG, "w@1 and w@2 stopped", || {
        (!alive(w1) && !alive(w2)).then_some(())
    });
    let w0 = pid_of(&first, "w@0").expect("w@0");
    assert!(alive(w0), "w@0 was restarted by the reload");
    let dump = control_json(&home, &["dump"]);
    assert_eq!(
        dump["root"]["children"][0]["children"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{dump}"
    );
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

/// A group with `intensity` whose children are `members`.
fn limited_group(name: &str, strategy: &str, max: u32, members: &[String]) -> String {
    format!(
        "        (name: \"{name}\", kind: Group(strategy: {strategy}, intensity: (max_restarts: {max}, within: \"60s\"), backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), workers: [\n{}\n        ])),",
        members.join("\n")
    )
}

/// A worker whose supervisor gives up at its first failure: it fails on its first start
/// (and appends to `order`), then runs.
fn fails_once(name: &str) -> String {
    sh_worker(
        name,
        &format!(
            "echo $$ $VIGIL_WORKER >> order; if [ -e {name}.failed ]; then exec sleep 1000; fi; touch {name}.failed; exit 1"
        ),
        "backoff: (initial: \"0s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 0, within: \"60s\")",
    )
}

#[test]
fn a_failed_group_is_restarted_as_a_whole_by_its_parent() {
    // inner fails at x's first escalation (intensity 0): the root (its parent, no intensity)
    // stops y and starts the whole group afresh after its backoff.
    let home = Home::new(
        "root: (backoff: (initial: \"200ms\", max: \"1s\", jitter: 0.0)),",
        &limited_group("inner", "OneForOne", 0, &[member("y", ""), fails_once("x")]),
    );
    let mut server = home.serve();
    // x's second run (its first failed the group). y's first run may be stopped before its
    // shell wrote its line: judge y by its generation.
    wait_for(LONG, "x started twice", || {
        let s = starts(&home);
        for (pid, _) in &s {
            server.track(*pid);
        }
        (s.iter().filter(|(_, n)| n == "x").count() >= 2).then_some(())
    });
    assert!(
        server.stderr().contains("exceed group \"inner\""),
        "{}",
        server.stderr()
    );
    control_wait_ready(&home);
    let dump = wait_for(LONG, "the group running again", || {
        let dump = control_json(&home, &["dump"]);
        (dump["root"]["children"][0]["state"] == "running").then_some(dump)
    });
    // Fresh supervisors go on from the stopped ones' counters: generation 2 for both.
    let group = &dump["root"]["children"][0];
    for (i, name) in ["y", "x"].iter().enumerate() {
        let node = &group["children"][i];
        assert_eq!(node["name"], *name, "{dump}");
        assert_eq!(
            node["generation"], 2,
            "{name} was not started afresh: {dump}"
        );
        assert_eq!(node["state"], "running", "{dump}");
    }
    let ys: Vec<(u32, String)> = starts(&home)
        .into_iter()
        .filter(|(_, n)| n == "y")
        .collect();
    let running_y = group["children"][0]["pid"].as_u64().unwrap_or(0) as u32;
    for (pid, _) in ys.iter().filter(|(p, _)| *p != running_y) {
        assert!(!alive(*pid), "the first y still runs");
    }
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn escalation_goes_from_a_worker_through_two_groups_to_the_root() {
    // x's supervisor gives up; inner (0) fails; outer (0) fails; the root (0) gives up: exit 3.
    let inner = limited_group("inner", "OneForOne", 0, &[fails_once("x")]);
    let home = Home::new(
        "root: (intensity: (max_restarts: 0, within: \"60s\")),",
        &limited_group("outer", "OneForAll", 0, &[member("y", ""), inner]),
    );
    let mut server = home.serve();
    let status = server.wait(LONG).expect("the server exits");
    assert_eq!(status.code(), Some(3), "{}", server.stderr());
    let stderr = server.stderr();
    assert!(stderr.contains("exceed group \"inner\""), "{stderr}");
    assert!(stderr.contains("exceed group \"outer\""), "{stderr}");
    assert!(stderr.contains("exceed the root limit"), "{stderr}");
}

#[test]
fn a_reload_that_changes_a_strategy_restarts_only_that_group() {
    let config = |strategy: &str| {
        format!(
            "{}\n{}",
            group("g", strategy, &[ready_member("a"), ready_member("b")]),
            member("c", "")
        )
    };
    let home = Home::new("", &config("OneForOne"));
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 3, "all three");
    control_wait_ready(&home);
    home.write_config("", &config("RestForOne"));
    let out = home.run(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let after = wait_starts(&home, &mut server, 5, "a and b again");
    let again: Vec<&str> = after[3..].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(again, ["a", "b"], "{report}");
    let c = pid_of(&first, "c").expect("c");
    assert!(
        alive(c),
        "c is not in the group but was restarted: {report}"
    );
    // Fresh supervisors under the new strategy go on from the old ones' counters.
    for w in ["a", "b"] {
        assert_eq!(control_worker(&home, w)["generation"], 2, "{w}: {report}");
    }
    // Now RestForOne: killing a restarts b after it.
    kill(pid_of(&after, "a").expect("a"));
    let later = wait_starts(&home, &mut server, 7, "a and b after a died");
    let names: Vec<&str> = later[5..].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_reload_that_moves_a_worker_to_another_group_removes_and_adds_it() {
    let home = Home::new(
        "",
        &format!(
            "{}\n{}",
            group("g", "OneForOne", &[member("a", ""), member("b", "")]),
            member("c", "")
        ),
    );
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 3, "all three");
    control_wait_ready(&home);
    home.write_config(
        "",
        &format!(
            "{}\n{}",
            group(
                "g",
                "OneForOne",
                &[member("a", ""), member("b", ""), member("c", "")]
            ),
            ""
        ),
    );
    let out = home.run(&["reload", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(
        report["removed"].to_string().contains("\"c\"")
            && report["added"].to_string().contains("\"c\""),
        "{report}"
    );
    let after = wait_starts(&home, &mut server, 4, "c started in its new place");
    assert_eq!(after[3].1, "c");
    assert!(!alive(pid_of(&first, "c").expect("c")));
    for w in ["a", "b"] {
        assert!(alive(pid_of(&first, w).expect(w)), "{w} was touched");
    }
    let dump = control_json(&home, &["dump"]);
    assert_eq!(
        dump["root"]["children"][0]["children"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{dump}"
    );
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn shutdown_stops_nested_groups_depth_first_in_reverse_each_gone_before_the_next() {
    let stopper = |name: &str| {
        sh_worker(
            name,
            "trap 'echo $VIGIL_WORKER term >> stops; sleep 0.1; echo $VIGIL_WORKER exit >> stops; exit 0' TERM; echo $$ $VIGIL_WORKER >> order; sleep 1000 & wait",
            FAST,
        )
    };
    let inner = group("g2", "OneForOne", &[stopper("c"), stopper("d")]);
    let outer = group("g1", "OneForAll", &[stopper("b"), inner]);
    let home = Home::new("", &format!("{}\n{outer}\n{}", stopper("a"), stopper("e")));
    let mut server = home.serve();
    wait_starts(&home, &mut server, 5, "all five");
    control_wait_ready(&home);
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
    let stops = home.lines("stops");
    let expected: Vec<String> = ["e", "d", "c", "b", "a"]
        .iter()
        .flat_map(|w| [format!("{w} term"), format!("{w} exit")])
        .collect();
    assert_eq!(stops, expected);
}

#[test]
fn start_of_a_failed_worker_spawns_it_once() {
    // Its supervisor gives up at the first exit; the root's backoff (1 h) keeps it failed.
    let home = Home::new(
        "root: (backoff: (initial: \"1h\", max: \"1h\", jitter: 0.0)),",
        &sh_worker(
            "w",
            "echo $$ >> spawns; [ -e ok ] || exit 1; exec sleep 1000",
            "backoff: (initial: \"0s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 0, within: \"60s\")",
        ),
    );
    let mut server = home.serve();
    control_wait_ready(&home);
    wait_for(LONG, "w failed", || {
        (control_worker(&home, "w")["state"] == "failed").then_some(())
    });
    assert_eq!(home.pids("spawns").len(), 1);
    std::fs::write(home.file("ok"), "").expect("write ok");
    let out = home.run(&["start", "w"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = wait_for(LONG, "w running", || {
        let node = control_worker(&home, "w");
        (node["state"] == "running").then_some(node)
    });
    for pid in home.pids("spawns") {
        server.track(pid);
    }
    assert_eq!(node["generation"], 2, "{node}");
    assert_eq!(home.pids("spawns").len(), 2, "{node}");
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_failed_group_in_a_rest_for_one_parent_restarts_with_the_later_siblings() {
    // outer (RestForOne): a, inner { x }, b. x dies before it is running (READY=1 comes only
    // on its second run), so b is never started; x's supervisor gives up, inner (intensity 0)
    // fails, and outer starts inner and b (after it) afresh, in order; a is left alone.
    let x = sh_worker(
        "x",
        "echo $$ $VIGIL_WORKER >> order; if [ -e x.failed ]; then echo READY=1 >&$VIGIL_NOTIFY_FD; exec sleep 1000; fi; touch x.failed; exit 1",
        "backoff: (initial: \"0s\", jitter: 0.0), start_secs: \"30s\", intensity: (max_restarts: 0, within: \"60s\")",
    );
    let inner = limited_group("inner", "OneForOne", 0, &[x]);
    let home = Home::new(
        "",
        &group(
            "outer",
            "RestForOne",
            &[ready_member("a"), inner, ready_member("b")],
        ),
    );
    let mut server = home.serve();
    let seen = wait_starts(&home, &mut server, 4, "inner and b started again");
    let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "x", "x", "b"], "{}", server.stderr());
    let a = pid_of(&seen, "a").expect("a");
    assert!(alive(a), "a (before the failed group) was restarted");
    assert!(
        server.stderr().contains("exceed group \"inner\""),
        "{}",
        server.stderr()
    );
    control_wait_ready(&home);
    wait_for(LONG, "outer running again", || {
        let dump = control_json(&home, &["dump"]);
        (dump["root"]["children"][0]["state"] == "running").then_some(())
    });
    assert_eq!(starts(&home).len(), 4, "{:?}", starts(&home));
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_failed_group_shows_failed_until_an_operator_starts_it() {
    // The root's backoff (1 h) keeps the failed group down; `vigil start GROUP` starts it now.
    let home = Home::new(
        "root: (backoff: (initial: \"1h\", max: \"1h\", jitter: 0.0)),",
        &limited_group("inner", "OneForOne", 0, &[member("y", ""), fails_once("x")]),
    );
    let mut server = home.serve();
    control_wait_ready(&home);
    // (A child whose supervisor is failing at that moment shows `unresponsive`, which also
    // makes its group `failed`: wait for the group's own failure, every child `failed`.)
    let dump = wait_for(LONG, "inner failed", || {
        let dump = control_json(&home, &["dump"]);
        let group = &dump["root"]["children"][0];
        let all_failed = group["children"]
            .as_array()
            .is_some_and(|c| c.iter().all(|n| n["state"] == "failed"));
        (group["state"] == "failed" && all_failed).then_some(dump)
    });
    for node in dump["root"]["children"][0]["children"]
        .as_array()
        .expect("children")
    {
        assert_eq!(node["state"], "failed", "{dump}");
        assert!(
            node["next_start_in_ms"].as_u64().unwrap_or(0) > 60_000,
            "{dump}"
        );
    }
    let out = home.run(&["start", "inner"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(LONG, "inner running", || {
        let dump = control_json(&home, &["dump"]);
        (dump["root"]["children"][0]["state"] == "running").then_some(())
    });
    for (pid, _) in starts(&home) {
        server.track(pid);
    }
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_child_dying_while_its_group_starts_restarts_the_group_from_it() {
    // RestForOne a, b, c; b takes 2 s to count as running, so the group is still starting
    // when a dies: b (already started) is stopped, and a, b, c start in order.
    let home = Home::new(
        "",
        &group(
            "chain",
            "RestForOne",
            &[
                ready_member("a"),
                member("b", "start_secs: \"2s\""),
                ready_member("c"),
            ],
        ),
    );
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 2, "a and b started");
    assert_eq!(
        first.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    kill(first[0].0);
    let seen = wait_starts(&home, &mut server, 5, "a, b and c after a died");
    let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "a", "b", "c"], "{}", server.stderr());
    wait_for(LONG, "the first b stopped", || {
        (!alive(first[1].0)).then_some(())
    });
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}

#[test]
fn a_sibling_an_operator_stopped_stays_stopped_through_a_group_restart() {
    let home = Home::new("", &ready_trio("OneForAll"));
    let mut server = home.serve();
    let first = wait_starts(&home, &mut server, 3, "three started");
    control_wait_ready(&home);
    let out = home.run(&["stop", "b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill(pid_of(&first, "a").expect("a"));
    let after = wait_starts(&home, &mut server, 5, "a and c restarted");
    let names: Vec<&str> = after[3..].iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["a", "c"], "{after:?}");
    assert_eq!(control_worker(&home, "b")["state"], "stopped");
    assert_eq!(server.terminate(LONG).map(|s| s.code()), Some(Some(0)));
}
