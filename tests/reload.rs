//! `vigil reload` and the running server's independence from its config file, against a real
//! `vigil serve` with real workers: every change class (pids kept or replaced as the contract
//! says), dry runs, broken files, refused changes, SIGHUP, operator intent and order; and a
//! broken `config.ron` with no reload affecting neither restarts (the indexing worker included)
//! nor the control commands.

mod common;

use common::{Home, LONG, alive, control_json, control_wait_ready, control_worker, wait_for};
use serde_json::Value;

/// A config that does not parse: an operator half-way through an edit.
const BROKEN: &str =
    "(\n    data_dir: \"var\",\n    workers: [\n        (name: \"x\", kind: Command(argv: [\n";

/// Wait until `worker` is `running` with a pid other than `not`; its node.
fn running_with_new_pid(home: &Home, worker: &str, not: Option<u64>) -> Value {
    wait_for(LONG, &format!("{worker} running with a new pid"), || {
        // Not there yet (a SIGHUP reload is applied asynchronously): ask again.
        let out = home.run(&["status", worker, "--json"]);
        if !out.status.success() {
            return None;
        }
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        let w = list.get(0)?.clone();
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

/// A sleeper worker: `exec sleep SECS`, running at once.
fn sleeper(name: &str, secs: u32, extra: &str) -> String {
    common::sh_worker(
        name,
        &format!("exec sleep {secs}"),
        &format!("start_secs: \"0s\", {extra}"),
    )
}

/// `vigil reload --json` (plus `args`), parsed; panics with stderr on failure.
fn reload_json(home: &Home, args: &[&str]) -> Value {
    let mut all = vec!["reload"];
    all.extend_from_slice(args);
    control_json(home, &all)
}

/// The five contract lists of a reload report.
fn classes(report: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["added", "removed", "restarted", "updated", "unchanged"] {
        out.insert(key.into(), report[key].clone());
    }
    Value::Object(out)
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Serve `home` and wait until each of `names` runs; their nodes, in that order.
fn serve_running(home: &Home, names: &[&str]) -> (common::Server, Vec<Value>) {
    let mut server = home.serve();
    control_wait_ready(home);
    let nodes: Vec<Value> = names
        .iter()
        .map(|n| running_with_new_pid(home, n, None))
        .collect();
    for n in &nodes {
        server.track(pid_of(n));
    }
    (server, nodes)
}

fn names_in_dump(home: &Home) -> Vec<String> {
    let dump = control_json(home, &["dump"]);
    dump["root"]["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_change_class_on_real_processes() {
    let home = Home::new(
        "",
        &[
            sleeper("keep", 1000, ""),
            sleeper("upd", 1001, ""),
            sleeper("chg", 1002, ""),
            sleeper("gone", 1003, ""),
        ]
        .join("\n"),
    );
    let (mut server, before) = serve_running(&home, &["keep", "upd", "chg", "gone"]);
    let [keep, upd, chg, gone] = [0, 1, 2, 3].map(|i| before[i].clone());

    home.write_config(
        "",
        &[
            sleeper("new", 1004, ""),
            sleeper("chg", 2002, ""),
            sleeper("upd", 1001, "restart: Temporary"),
            sleeper("keep", 1000, ""),
        ]
        .join("\n"),
    );
    let report = reload_json(&home, &[]);
    assert_eq!(
        classes(&report),
        serde_json::json!({
            "added": ["new"], "removed": ["gone"], "restarted": ["chg"],
            "updated": ["upd"], "unchanged": ["keep"],
        }),
        "{report}"
    );

    // unchanged and updated: the very same process and generation.
    for (old, name) in [(&keep, "keep"), (&upd, "upd")] {
        let now = control_worker(&home, name);
        assert_eq!(now["pid"], old["pid"], "{name}: {now}");
        assert_eq!(now["generation"], old["generation"], "{name}: {now}");
        assert_eq!(now["state"], "running", "{name}: {now}");
    }
    // restarted: a new process with the new argv, after a `stopped` exit.
    let now = control_worker(&home, "chg");
    assert_ne!(now["pid"], chg["pid"], "{now}");
    server.track(pid_of(&now));
    assert_eq!(now["generation"], 2, "{now}");
    assert_eq!(now["last_exit"]["reason"], "stopped", "{now}");
    assert!(
        cmdline(pid_of(&now)).contains("2002"),
        "{}",
        cmdline(pid_of(&now))
    );
    assert!(!alive(pid_of(&chg)));
    let chg_history = home.history(Some("chg"));
    assert_eq!(chg_history[0]["decision"], "restarting: config changed");
    // added: running; removed: stopped, gone from status and dump, its history kept.
    let new = running_with_new_pid(&home, "new", None);
    server.track(pid_of(&new));
    assert!(
        !alive(pid_of(&gone)),
        "the removed worker was stopped before reload returned"
    );
    let out = home.run(&["status", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no worker named"));
    let gone_history = home.history(Some("gone"));
    assert_eq!(gone_history.len(), 1, "{gone_history:?}");
    assert_eq!(gone_history[0]["reason"], "stopped");
    // The new config's order.
    assert_eq!(names_in_dump(&home), ["new", "chg", "upd", "keep"]);

    // The updated restart type takes effect on the next exit: Temporary is not restarted.
    kill9(pid_of(&upd));
    let stopped = wait_for(LONG, "upd stopped for good", || {
        let w = control_worker(&home, "upd");
        (w["state"] == "stopped").then_some(w)
    });
    assert_eq!(stopped["last_exit"]["signal_name"], "SIGKILL", "{stopped}");
    assert_eq!(stopped["restarts"], 0, "{stopped}");
}

#[test]
fn dry_run_changes_nothing() {
    let home = Home::new(
        "",
        &[sleeper("a", 1000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let (_server, before) = serve_running(&home, &["a", "b"]);
    home.write_config(
        "",
        &[sleeper("c", 1000, ""), sleeper("b", 1002, "")].join("\n"),
    );
    let report = reload_json(&home, &["--dry-run"]);
    assert_eq!(
        classes(&report),
        serde_json::json!({
            "added": ["c"], "removed": ["a"], "restarted": ["b"], "updated": [], "unchanged": [],
        }),
        "{report}"
    );
    assert_eq!(names_in_dump(&home), ["a", "b"]);
    for (old, name) in [(&before[0], "a"), (&before[1], "b")] {
        let now = control_worker(&home, name);
        assert_eq!(now["pid"], old["pid"], "{name}: {now}");
        assert_eq!(now["generation"], 1, "{name}: {now}");
    }
    let text = home.run(&["reload", "--dry-run"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("added: c\n") && text.contains("updated: -\n"),
        "{text}"
    );
    assert_eq!(names_in_dump(&home), ["a", "b"]);
}

#[test]
fn a_broken_or_refused_file_exits_2_and_changes_nothing() {
    let home = Home::new("", &sleeper("a", 1000, ""));
    let (_server, before) = serve_running(&home, &["a"]);
    // A syntax error: the very message of `vigil check`.
    std::fs::write(home.config(), BROKEN).unwrap();
    let check = home.run(&["check"]);
    let reload = home.run(&["reload"]);
    assert_eq!(reload.status.code(), Some(2));
    let message = String::from_utf8_lossy(&reload.stderr).to_string();
    assert_eq!(message, String::from_utf8_lossy(&check.stderr), "{message}");
    assert!(message.contains("config.ron:"), "{message}");
    // Valid, but a new data_dir: refused the same way.
    std::fs::write(
        home.config(),
        "(data_dir: \"other\", workers: [(name: \"b\", kind: Command(argv: [\"sleep\", \"9\"]))])",
    )
    .unwrap();
    let refused = home.run(&["reload", "--json"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(message.contains("data_dir"), "{message}");
    assert!(refused.stdout.is_empty());
    // Nothing changed.
    assert_eq!(names_in_dump(&home), ["a"]);
    let now = control_worker(&home, "a");
    assert_eq!(now["pid"], before[0]["pid"]);
    assert_eq!(now["generation"], 1);
}

#[test]
fn sighup_reloads() {
    let home = Home::new("", &sleeper("a", 1000, ""));
    let (mut server, before) = serve_running(&home, &["a"]);
    home.write_config(
        "",
        &[sleeper("a", 1000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    server.signal(libc::SIGHUP);
    let b = running_with_new_pid(&home, "b", None);
    server.track(pid_of(&b));
    assert_eq!(control_worker(&home, "a")["pid"], before[0]["pid"]);
    assert_eq!(names_in_dump(&home), ["a", "b"]);
    // A broken file on SIGHUP: logged, nothing changes, the server keeps serving.
    std::fs::write(home.config(), BROKEN).unwrap();
    server.signal(libc::SIGHUP);
    wait_for(LONG, "the refusal in the server's log", || {
        server.stderr().contains("reload refused").then_some(())
    });
    assert_eq!(names_in_dump(&home), ["a", "b"]);
}

#[test]
fn a_stopped_worker_stays_stopped_and_starts_with_the_new_settings() {
    let home = Home::new(
        "",
        &[sleeper("a", 1000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let (mut server, _) = serve_running(&home, &["a", "b"]);
    let out = home.run(&["stop", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    home.write_config(
        "",
        &[sleeper("a", 2000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let report = reload_json(&home, &[]);
    assert_eq!(report["restarted"], serde_json::json!(["a"]), "{report}");
    let a = control_worker(&home, "a");
    assert_eq!(a["state"], "stopped", "{a}");
    assert_eq!(a["pid"], Value::Null, "{a}");
    let out = home.run(&["start", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = running_with_new_pid(&home, "a", None);
    server.track(pid_of(&a));
    assert!(
        cmdline(pid_of(&a)).contains("2000"),
        "{}",
        cmdline(pid_of(&a))
    );
}

#[test]
fn a_worker_in_backoff_can_be_removed() {
    let crashy = common::sh_worker(
        "crashy",
        "exit 3",
        "start_secs: \"0s\", backoff: (initial: \"1h\", max: \"1h\", jitter: 0.0)",
    );
    let home = Home::new("", &[sleeper("a", 1000, ""), crashy].join("\n"));
    let (_server, before) = serve_running(&home, &["a"]);
    wait_for(LONG, "crashy in backoff", || {
        (control_worker(&home, "crashy")["state"] == "backoff").then_some(())
    });
    home.write_config("", &sleeper("a", 1000, ""));
    let report = reload_json(&home, &[]);
    assert_eq!(report["removed"], serde_json::json!(["crashy"]), "{report}");
    assert_eq!(report["unchanged"], serde_json::json!(["a"]), "{report}");
    assert_eq!(names_in_dump(&home), ["a"]);
    assert_eq!(control_worker(&home, "a")["pid"], before[0]["pid"]);
    assert_eq!(
        home.history(Some("crashy")).len(),
        1,
        "its exit record stays"
    );
}

#[test]
fn after_a_reload_shutdown_follows_the_new_order() {
    let home = Home::new(
        "",
        &[sleeper("a", 1000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let (mut server, _) = serve_running(&home, &["a", "b"]);
    home.write_config(
        "",
        &[
            sleeper("b", 1001, ""),
            sleeper("a", 1000, ""),
            sleeper("c", 1002, ""),
        ]
        .join("\n"),
    );
    let report = reload_json(&home, &[]);
    assert_eq!(
        report["unchanged"],
        serde_json::json!(["b", "a"]),
        "{report}"
    );
    let c = running_with_new_pid(&home, "c", None);
    server.track(pid_of(&c));
    let out = home.run(&["shutdown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.wait(LONG).expect("the server exits");
    // Newest first: b stopped last, c first (reverse of the new order b, a, c).
    let order: Vec<String> = home
        .history(None)
        .iter()
        .map(|r| r["worker"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(order, ["b", "a", "c"]);
}

#[test]
fn racing_reloads_apply_one_after_the_other() {
    let home = Home::new("", &sleeper("a", 1000, ""));
    let (mut server, before) = serve_running(&home, &["a"]);
    home.write_config(
        "",
        &[sleeper("a", 2000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let spawn = || {
        std::process::Command::new(common::vigil_bin())
            .args(["reload", "--json", "--config"])
            .arg(home.config())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn vigil reload")
    };
    let (one, two) = (spawn(), spawn());
    let reports: Vec<Value> = [one, two]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    // One of them did the work, the other found nothing left to do.
    let restarted: usize = reports
        .iter()
        .map(|r| r["restarted"].as_array().map_or(0, Vec::len))
        .sum();
    let added: usize = reports
        .iter()
        .map(|r| r["added"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!((restarted, added), (1, 1), "{reports:?}");
    let a = running_with_new_pid(&home, "a", before[0]["pid"].as_u64());
    let b = running_with_new_pid(&home, "b", None);
    server.track(pid_of(&a));
    server.track(pid_of(&b));
    assert_eq!(a["generation"], 2, "restarted once: {a}");
    for w in [&a, &b] {
        let pgid = w["pgid"].as_u64().unwrap() as u32;
        assert_eq!(common::control_group_members(pgid).len(), 1, "{w}");
    }
    assert!(!alive(pid_of(&before[0])));
}

#[test]
fn a_reload_racing_a_shutdown_leaves_nothing_running() {
    let home = Home::new(
        "",
        &[sleeper("a", 1000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let (mut server, before) = serve_running(&home, &["a", "b"]);
    home.write_config(
        "",
        &[sleeper("a", 3000, ""), sleeper("c", 3002, "")].join("\n"),
    );
    let reload = std::process::Command::new(common::vigil_bin())
        .args(["reload", "--config"])
        .arg(home.config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil reload");
    let out = home.run(&["shutdown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = server.wait(LONG).expect("the server exits");
    assert!(status.success(), "{status:?}");
    let reload = reload.wait_with_output().unwrap();
    // Either it was applied before the shutdown, or it was refused because of it.
    assert!(
        matches!(reload.status.code(), Some(0 | 1)),
        "{reload:?}: {}",
        String::from_utf8_lossy(&reload.stderr)
    );
    for node in &before {
        assert!(!alive(pid_of(node)), "{node}");
    }
    // Nothing the reload may have started is left (their argv is unique to this test).
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmd = cmdline(pid);
            alive(pid) && (cmd == "sleep 3000 " || cmd == "sleep 3002 ")
        })
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_stopped_worker_stays_stopped_across_a_server_restart() {
    let home = Home::new(
        "",
        &[sleeper("a", 1000, ""), sleeper("b", 1001, "")].join("\n"),
    );
    let shutdown = |server: &mut common::Server| {
        let out = home.run(&["shutdown"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.wait(LONG).expect("the server exits");
    };
    let (mut server, _) = serve_running(&home, &["a", "b"]);
    let out = home.run(&["stop", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    shutdown(&mut server);

    let (mut server, _) = serve_running(&home, &["b"]);
    let a = control_worker(&home, "a");
    assert_eq!(a["state"], "stopped", "{a}");
    assert_eq!(a["generation"], 0, "never started: {a}");
    let out = home.run(&["start", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = running_with_new_pid(&home, "a", None);
    server.track(pid_of(&a));
    shutdown(&mut server);

    // Started again: the next server starts it.
    let (_server, _) = serve_running(&home, &["a", "b"]);
}
