//! `vigil history` as a real process on a real history database, with no server running.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use vigil_actors::exit::{ExitReason, ExitRecord};
use vigil_actors::history::History;

fn vigil(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run vigil")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.ron"),
        r#"(data_dir: "state", workers: [(name: "echo", kind: Command(argv: ["/bin/true"]))])"#,
    )
    .unwrap();
    dir
}

fn record(worker: &str, generation: u64, reason: ExitReason) -> ExitRecord {
    ExitRecord {
        run_id: None,
        oom_kills: None,
        memory_peak_bytes: None,
        worker: worker.into(),
        pid: Some(4000 + generation as u32),
        generation,
        started_at: "2026-11-28T22:10:00Z".into(),
        exited_at: format!("2026-11-28T22:10:{:02}.5Z", generation),
        uptime_ms: 1500,
        code: (reason == ExitReason::Exited).then_some(3),
        signal: (reason == ExitReason::Killed).then_some(9),
        signal_name: (reason == ExitReason::Killed).then(|| "SIGKILL".to_string()),
        core_dumped: false,
        reason,
        restart_delay_ms: Some(100 * generation),
        log_tail: (0..5)
            .map(|i| format!("{worker} gen {generation} line {i}"))
            .collect(),
        decision: String::new(),
    }
}

fn seed(dir: &Path) {
    let h = History::open(&dir.join("state/history.sqlite")).unwrap();
    h.record_exit(record("echo", 1, ExitReason::Exited));
    h.record_exit(record("indexing", 2, ExitReason::Killed));
    h.record_exit(record("echo", 3, ExitReason::Killed));
    h.close();
}

#[test]
fn no_database_yet_is_an_empty_history() {
    let dir = setup();
    let o = vigil(dir.path(), &["history"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "no exits recorded\n");
    let o = vigil(dir.path(), &["history", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    assert!(
        !dir.path().join("state/history.sqlite").exists(),
        "reading must not create the db"
    );
}

#[test]
fn json_has_every_contract_field_newest_first() {
    let dir = setup();
    seed(dir.path());
    let o = vigil(dir.path(), &["history", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 3);
    let gens: Vec<u64> = list
        .iter()
        .map(|r| r["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(gens, vec![3, 2, 1]);
    let first = &list[0];
    for key in common::EXIT_FIELDS {
        assert!(first.get(key).is_some(), "missing {key}: {first}");
    }
    assert_eq!(first["signal"], 9);
    assert_eq!(first["signal_name"], "SIGKILL");
    assert_eq!(first["code"], serde_json::Value::Null);
    assert_eq!(first["reason"], "killed");
    assert_eq!(first["log_tail"].as_array().unwrap().len(), 5);
    assert_eq!(list[2]["code"], 3);
    assert_eq!(list[2]["signal"], serde_json::Value::Null);
    let back: Vec<ExitRecord> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(back[1], record("indexing", 2, ExitReason::Killed));
}

#[test]
fn worker_filter_limit_and_text() {
    let dir = setup();
    seed(dir.path());
    let o = vigil(dir.path(), &["history", "echo", "--limit", "1", "--json"]);
    let list: Vec<ExitRecord> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].worker.as_str(), list[0].generation), ("echo", 3));

    let o = vigil(dir.path(), &["history", "echo"]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "2026-11-28T22:10:03Z  echo  gen 3  pid 4003  killed by SIGKILL  after 1.5s  -> restarting in 300ms"
    );
    assert_eq!(lines[1], "    ... 2 earlier line(s), see --verbose");
    assert_eq!(lines[4], "    | echo gen 3 line 4");
    assert!(
        lines[5].contains("gen 1  pid 4001  exited with code 3"),
        "{text}"
    );
    assert!(!text.contains("indexing"));

    let o = vigil(dir.path(), &["history", "--verbose"]);
    assert_eq!(stdout(&o).lines().count(), 3 * 6);
    let o = vigil(dir.path(), &["history", "nobody"]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(0), "no exits recorded for nobody\n")
    );
}

#[test]
fn a_broken_database_is_one_sentence_and_exit_1() {
    let dir = setup();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/history.sqlite"),
        "this is not a database, just junk text",
    )
    .unwrap();
    let o = vigil(dir.path(), &["history"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("vigil: history database "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
