//! `vigil dump|status|restart|stop|start|shutdown` against a real `vigil serve` with real
//! workers: contract fields, text rendering, actions on process groups, errors, and dumps
//! during a crash storm.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{
    Home, Server, alive, control_group_members, control_json, control_wait_ready, control_worker,
    sh_worker, wait_for,
};
use serde_json::Value;

const NODE_FIELDS: [&str; 3] = ["name", "state", "children"];
const WORKER_FIELDS: [&str; 13] = [
    "name",
    "state",
    "pid",
    "pgid",
    "generation",
    "restarts",
    "backoff_ms",
    "uptime_ms",
    "log_path",
    "status_text",
    "last_exit",
    "rss_bytes",
    "cpu_percent",
];
const STATES: [&str; 6] = [
    "starting", "running", "backoff", "stopping", "stopped", "failed",
];

fn has_fields(value: &Value, fields: &[&str], what: &str) {
    for field in fields {
        assert!(
            value.get(field).is_some(),
            "{what} lacks {field:?}: {value}"
        );
    }
}

/// Start the server and wait until the sleeper runs with its grandchild (2 processes); the
/// server tracks the sleeper's group. The sleeper's status node.
fn serve_until_the_sleeper_runs(home: &Home) -> (Server, Value) {
    let mut server = home.serve();
    control_wait_ready(home);
    let sleeper = wait_for(Duration::from_secs(20), "the sleeper running", || {
        let w = control_worker(home, "sleeper");
        (w["processes"].as_u64() >= Some(2)).then_some(w)
    });
    server.track(sleeper["pgid"].as_u64().unwrap() as u32);
    (server, sleeper)
}

/// A long sleeper whose group holds the shell and its sleeps, and a worker that exits 3 at once.
fn sleeper_and_crasher(crash_backoff: &str) -> Home {
    let workers = [
        sh_worker("sleeper", "sleep 1000 & sleep 1000", "start_secs: \"0s\""),
        sh_worker(
            "crashy",
            "echo about to fail; exit 3",
            &format!(
                "backoff: (initial: \"{crash_backoff}\", max: \"{crash_backoff}\", jitter: 0.0), intensity: (max_restarts: 1000, within: \"60s\")"
            ),
        ),
    ]
    .join("\n");
    Home::new("", &workers)
}

#[test]
fn dump_and_status_json_carry_every_contract_field() {
    let home = sleeper_and_crasher("300ms");
    let _server = home.serve();
    control_wait_ready(&home);
    // Wait until the crasher has died once and the sleeper's group is complete.
    wait_for(
        Duration::from_secs(20),
        "a crash and a running sleeper",
        || {
            let crashy = control_worker(&home, "crashy");
            let sleeper = control_worker(&home, "sleeper");
            (!crashy["last_exit"].is_null() && sleeper["processes"].as_u64() >= Some(2))
                .then_some(())
        },
    );

    let dump = control_json(&home, &["dump"]);
    let obj = dump.as_object().expect("dump is an object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["root"], "{dump}");
    let root = &dump["root"];
    has_fields(root, &NODE_FIELDS, "root");
    let children = root["children"].as_array().expect("children is a list");
    let names: Vec<&str> = children
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sleeper", "crashy"]);
    for node in children {
        has_fields(node, &NODE_FIELDS, "worker node");
        has_fields(node, &WORKER_FIELDS, "worker node");
        let state = node["state"].as_str().unwrap();
        assert!(STATES.contains(&state), "state {state}");
    }

    let sleeper = &children[0];
    assert_eq!(sleeper["state"], "running", "{sleeper}");
    let pid = sleeper["pid"].as_u64().expect("a running worker has a pid") as u32;
    assert!(alive(pid));
    assert_eq!(
        sleeper["pgid"], sleeper["pid"],
        "the worker leads its group"
    );
    assert!(sleeper["generation"].as_u64().unwrap() >= 1);
    assert_eq!(sleeper["restarts"], 0);
    assert_eq!(sleeper["backoff_ms"], Value::Null);
    assert!(
        sleeper["rss_bytes"].as_u64().unwrap() > 100 * 1024,
        "{sleeper}"
    );
    assert!(sleeper["cpu_percent"].as_f64().is_some(), "{sleeper}");
    assert_eq!(sleeper["last_exit"], Value::Null);
    let log = sleeper["log_path"].as_str().unwrap();
    assert_eq!(
        log,
        home.log("sleeper")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(sleeper["children"], Value::Array(vec![]));

    let crashy = &children[1];
    assert!(crashy["restarts"].as_u64().unwrap() >= 1, "{crashy}");
    let exit = &crashy["last_exit"];
    has_fields(exit, &common::EXIT_FIELDS, "last_exit");
    assert_eq!(exit["worker"], "crashy");
    assert_eq!(exit["code"], 3);
    assert_eq!(exit["signal"], Value::Null);
    assert_eq!(exit["reason"], "exited");
    assert_eq!(exit["log_tail"], serde_json::json!(["about to fail"]));
    if crashy["state"] == "backoff" {
        assert!(crashy["backoff_ms"].as_u64().is_some(), "{crashy}");
    }

    // status --json: the same worker nodes, without children.
    let status = control_json(&home, &["status"]);
    let list = status.as_array().expect("status is a list");
    assert_eq!(list.len(), 2);
    for node in list {
        has_fields(node, &WORKER_FIELDS, "status entry");
        assert!(
            node.get("children").is_none(),
            "status entries have no children: {node}"
        );
    }
    assert_eq!(list[0]["name"], "sleeper");
    assert_eq!(list[0]["pid"], sleeper["pid"]);
    let one = control_json(&home, &["status", "crashy"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["name"], "crashy");
}

#[test]
fn text_dump_shows_a_crash_loop_backoff_and_last_exit() {
    let home = sleeper_and_crasher("3s");
    let _server = home.serve();
    control_wait_ready(&home);
    wait_for(Duration::from_secs(20), "crashy in backoff", || {
        (control_worker(&home, "crashy")["state"] == "backoff").then_some(())
    });
    let out = home.run(&["dump"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal:\n{text}"
    );
    assert!(text.starts_with("● root running  pid "), "{text}");
    let crashy_at = text
        .find("└─ ● crashy (command) backoff, restart in ")
        .expect(&text);
    let crashy = &text[crashy_at..];
    assert!(crashy.contains("backoff 3s, next start in "), "{text}");
    assert!(crashy.contains("last exit: exited with code 3 "), "{text}");
    assert!(crashy.contains(" ago after "), "{text}");
    assert!(crashy.contains("/var/log/crashy.log"), "{text}");
    let sleeper = &text[..crashy_at];
    assert!(sleeper.contains("├─ ● sleeper (command) running"), "{text}");
    // sh and its two sleeps (or one, if the shell execs the last command)
    assert!(
        sleeper.contains("3 processes") || sleeper.contains("2 processes"),
        "{text}"
    );

    let out = home.run(&["status"]);
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("WORKER"), "{table}");
    assert!(
        lines[2].starts_with("crashy") && lines[2].contains("backoff"),
        "{table}"
    );
    assert!(lines[2].contains("exited with code 3"), "{table}");
}

#[test]
fn restart_gives_a_new_pid_and_kills_the_old_group() {
    let home = sleeper_and_crasher("1s");
    let (mut server, before) = serve_until_the_sleeper_runs(&home);
    let old_pgid = before["pgid"].as_u64().unwrap() as u32;
    assert!(control_group_members(old_pgid).len() >= 2);

    let out = home.run(&["restart", "sleeper"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.starts_with("restarted sleeper: pid "), "{said}");

    let after = control_worker(&home, "sleeper");
    let new_pid = after["pid"].as_u64().expect("running again") as u32;
    server.track(new_pid);
    assert_ne!(new_pid, old_pgid);
    assert!(said.contains(&format!("pid {new_pid}")), "{said}");
    assert!(alive(new_pid));
    assert!(after["generation"].as_u64() > before["generation"].as_u64());
    // The whole old group is gone, grandchild included.
    wait_for(Duration::from_secs(5), "the old group to be gone", || {
        control_group_members(old_pgid).is_empty().then_some(())
    });
}

#[test]
fn stop_then_start() {
    let home = sleeper_and_crasher("1s");
    let mut server = home.serve();
    control_wait_ready(&home);
    let before = wait_for(Duration::from_secs(20), "the sleeper running", || {
        let w = control_worker(&home, "sleeper");
        (w["state"] == "running").then_some(w)
    });
    let old = before["pgid"].as_u64().unwrap() as u32;
    server.track(old);

    let out = home.run(&["stop", "sleeper"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "stopped sleeper: stopped\n"
    );
    let stopped = control_worker(&home, "sleeper");
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["pid"], Value::Null);
    assert_eq!(stopped["last_exit"]["reason"], "stopped");
    assert!(
        control_group_members(old).is_empty(),
        "stop kills the whole group"
    );

    let out = home.run(&["start", "sleeper"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = control_worker(&home, "sleeper");
    let pid = started["pid"].as_u64().expect("started again") as u32;
    server.track(pid);
    assert!(alive(pid));
    assert!(["starting", "running"].contains(&started["state"].as_str().unwrap()));
}

#[test]
fn unknown_worker_and_no_server_exit_1_with_one_sentence() {
    let home = sleeper_and_crasher("1s");
    let socket = home.path().join("var").join("vigil.sock");

    // No server yet: every command names the socket.
    for args in [
        &["dump"][..],
        &["status"],
        &["restart", "sleeper"],
        &["shutdown"],
    ] {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("no vigil server is running"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(socket.to_str().unwrap()),
            "{args:?} names the socket: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one sentence: {err}");
    }

    let _server = home.serve();
    control_wait_ready(&home);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    for args in [
        &["restart", "nope"][..],
        &["stop", "nope"],
        &["start", "nope"],
        &["status", "nope"],
    ] {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err, "vigil: no worker named \"nope\"\n", "{args:?}");
    }
}

#[test]
fn shutdown_returns_once_the_server_is_gone() {
    let home = sleeper_and_crasher("1s");
    let (mut server, sleeper) = serve_until_the_sleeper_runs(&home);
    let pgid = sleeper["pgid"].as_u64().unwrap() as u32;

    let out = home.run(&["shutdown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("vigil stopped")
    );
    // Returned once the server exited: its status is there to collect at once.
    let status = server
        .wait(Duration::from_secs(2))
        .expect("the server has exited");
    assert!(status.success(), "{status:?}");
    assert!(control_group_members(pgid).is_empty());
    assert!(
        !home.path().join("var/vigil.sock").exists(),
        "the socket is removed"
    );
}

#[test]
fn sigusr1_writes_the_text_dump_to_the_server_log() {
    let home = sleeper_and_crasher("1s");
    let server = home.serve();
    control_wait_ready(&home);
    server.signal(libc::SIGUSR1);
    let log = home.path().join("var/log/vigil.log");
    wait_for(Duration::from_secs(10), "the dump in vigil.log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains("SIGUSR1 dump") && text.contains("├─ ● sleeper (command)")).then_some(())
    });
}

/// 40 workers that exit at once, restarted after 20-200 ms: a few hundred spawns a second.
#[test]
fn dumps_stay_fast_during_a_crash_storm() {
    let workers: Vec<String> = (0..40)
        .map(|i| {
            sh_worker(
                &format!("storm{i}"),
                "exit 3",
                "backoff: (initial: \"20ms\", max: \"200ms\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 100000, within: \"60s\")",
            )
        })
        .collect();
    let home = Home::new("", &workers.join("\n"));
    let _server = home.serve();
    control_wait_ready(&home);
    wait_for(Duration::from_secs(20), "the storm to be raging", || {
        let list = control_json(&home, &["status"]);
        let restarts: u64 = list
            .as_array()?
            .iter()
            .filter_map(|w| w["restarts"].as_u64())
            .sum();
        (restarts >= 200).then_some(())
    });
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let dump = control_json(&home, &["dump"]);
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(took < Duration::from_secs(1), "dump {i} took {took:?}");
        let children = dump["root"]["children"].as_array().expect("children");
        assert_eq!(children.len(), 40, "dump {i}");
        for node in children {
            has_fields(node, &WORKER_FIELDS, "worker node");
        }
    }
    eprintln!("slowest of 20 dumps during the storm: {slowest:?}");
}

#[test]
fn a_server_that_never_answers_does_not_hang_the_client() {
    let home = sleeper_and_crasher("1s");
    let socket = home.path().join("var").join("vigil.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A listener that keeps the first connection open without a word, and hangs up on the
    // second one as soon as it has read its request.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let peer = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut incoming = listener.incoming();
        let silent = incoming.next().unwrap().unwrap();
        let rude = incoming.next().unwrap().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&rude).read_line(&mut line).unwrap();
        drop(rude);
        drop(silent);
    });
    let started = Instant::now();
    let out = home.run(&["dump"]);
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("did not answer within 5s"), "{err}");
    assert!(err.contains(socket.to_str().unwrap()), "{err}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    let out = home.run(&["restart", "sleeper"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("closed the connection without answering"),
        "{err}"
    );
    peer.join().unwrap();
}
