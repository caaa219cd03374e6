//! `vigil reload` and the running server's independence from its config file, against a real
//! `vigil serve` with real workers: every change class (pids kept or replaced as the contract
//! says), dry runs, broken files, refused changes, SIGHUP, operator intent and order; and a
//! broken `config.ron` with no reload affecting neither restarts (the indexing worker included)
//! nor the control commands.

mod common;

use std::time::Duration;

use common::{Home, LONG, alive, control_json, control_wait_ready, control_worker, wait_for};
use serde_json::Value;

/// A config that does not parse: an operator half-way through an edit.
const BROKEN: &str =
    "(\n    data_dir: \"var\",\n    workers: [\n        (name: \"x\", kind: Command(argv: [\n";

/// Wait until `worker` is `running` with a pid other than `not`; its node.
fn running_with_new_pid(home: &Home, worker: &str, not: Option<u64>) -> Value {
    wait_for(LONG, &format!("{worker} running with a new pid"), || {
        let w = control_worker(home, worker);
        (w["state"] == "running" && w["pid"].as_u64().is_some() && w["pid"].as_u64() != not)
            .then_some(w)
    })
}

fn pid_of(node: &Value) -> u32 {
    node["pid"].as_u64().expect("a pid") as u32
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) on a worker this test started through the server.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn a_broken_config_on_disk_changes_no_restart_and_locks_no_command_out() {
    let home = Home::new("", "");
    std::fs::create_dir_all(home.file("src")).unwrap();
    std::fs::write(home.file("src/a.rs"), "fn a() {}\n").unwrap();
    let workers = [
        "        (name: \"indexing\", kind: Indexing(roots: [\"src\"], interval: \"1h\")),"
            .to_string(),
        common::sh_worker("sleeper", "exec sleep 1000", "start_secs: \"0s\""),
    ]
    .join("\n");
    home.write_config("", &workers);
    let mut server = home.serve();
    control_wait_ready(&home);
    let indexer = running_with_new_pid(&home, "indexing", None);
    let sleeper = running_with_new_pid(&home, "sleeper", None);
    server.track(pid_of(&indexer));
    server.track(pid_of(&sleeper));

    std::fs::write(home.config(), BROKEN).unwrap();
    assert_eq!(
        home.run(&["check"]).status.code(),
        Some(2),
        "the file is broken"
    );

    // Restarts use what the server loaded, not the file: both come back running.
    kill9(pid_of(&indexer));
    kill9(pid_of(&sleeper));
    let again = running_with_new_pid(&home, "indexing", indexer["pid"].as_u64());
    server.track(pid_of(&again));
    let slept = running_with_new_pid(&home, "sleeper", sleeper["pid"].as_u64());
    server.track(pid_of(&slept));
    assert_eq!(
        again["restarts"], 1,
        "one restart, no failed starts: {again}"
    );
    assert_eq!(again["last_exit"]["signal_name"], "SIGKILL", "{again}");
    assert_eq!(slept["restarts"], 1, "{slept}");

    // status and dump still reach the server, and so does shutdown.
    let dump = control_json(&home, &["dump"]);
    assert_eq!(
        dump["root"]["children"].as_array().map(Vec::len),
        Some(2),
        "{dump}"
    );
    let out = home.run(&["shutdown"]);
    assert!(
        out.status.success(),
        "shutdown with a broken config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = server.wait(LONG).expect("the server exits after shutdown");
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid_of(&again)));
}

#[test]
fn socket_overrides_the_config() {
    let home = Home::new(
        "",
        &common::sh_worker("sleeper", "exec sleep 1000", "start_secs: \"0s\""),
    );
    let mut server = home.serve();
    control_wait_ready(&home);
    let sleeper = running_with_new_pid(&home, "sleeper", None);
    server.track(pid_of(&sleeper));
    // A config elsewhere that names another data_dir: --socket wins.
    let other = tempfile::tempdir().unwrap();
    let other_config = other.path().join("config.ron");
    std::fs::write(&other_config, "(data_dir: \"elsewhere\")").unwrap();
    let socket = home.file("var/vigil.sock");
    let out = std::process::Command::new(common::vigil_bin())
        .args(["status", "--json", "--config"])
        .arg(&other_config)
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "sleeper", "{list}");
}
