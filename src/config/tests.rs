//! Unit tests for config parsing, defaults, validation and path resolution.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_actors::signal::Signal;
use vigil_actors::spec::{RestartPolicy, RestartType, RootSpec, WorkerSpec};

use super::resolve::normalize;
use super::*;

const FILE: &str = "/cfg/config.ron";

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    parse_text(
        text,
        Path::new(FILE),
        Path::new(FILE),
        Path::new("/cfg"),
        true,
    )
}

fn ok(text: &str) -> Loaded {
    match parse(text) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// One Command worker named `w` with `extra` fields appended.
fn one(extra: &str) -> String {
    format!("(workers: [(name: \"w\", kind: Command(argv: [\"prog\"]), {extra})])")
}

fn worker(l: &Loaded) -> &WorkerSpec {
    &l.tree.workers[0]
}

fn argv(l: &Loaded, i: usize) -> Vec<OsString> {
    l.tree.workers[i]
        .worker_type
        .launch(&ctx(l, i))
        .unwrap()
        .argv
}

fn ctx(l: &Loaded, i: usize) -> vigil_actors::worker_type::LaunchContext {
    vigil_actors::worker_type::LaunchContext {
        name: l.tree.workers[i].name.clone(),
        generation: 1,
        data_dir: l.tree.data_dir.clone(),
        log_path: l.tree.workers[i].log.path.clone(),
    }
}

fn launch(l: &Loaded, i: usize) -> vigil_actors::spec::Launch {
    l.tree.workers[i].worker_type.launch(&ctx(l, i)).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

// ---------------------------------------------------------------- defaults

#[test]
fn empty_file_has_file_level_defaults_and_no_workers() {
    let l = ok("()");
    assert_eq!(l.tree.data_dir, PathBuf::from("/cfg/var"));
    assert_eq!(l.tree.log_dir, PathBuf::from("/cfg/var/log"));
    assert_eq!(l.tree.config_path, Some(PathBuf::from(FILE)));
    assert_eq!(l.tree.config_path, Some(PathBuf::from(FILE)));
    assert!(l.tree.workers.is_empty());
    assert_eq!(l.tree.root, RootSpec::default());
}

#[test]
fn root_defaults_are_the_contracts() {
    let root = ok("()").tree.root;
    assert_eq!(root.backoff.initial, secs(5));
    assert_eq!(root.backoff.max, secs(300));
    assert_eq!(root.intensity, None);
}

#[test]
fn worker_defaults_are_the_contracts() {
    let l = ok(&one(""));
    let w = worker(&l);
    assert_eq!(w.name, "w");
    assert_eq!(w.worker_type.kind(), "command");
    let p = w.policy;
    assert_eq!(p, RestartPolicy::permanent());
    assert_eq!(p.restart, RestartType::Permanent);
    assert_eq!(p.backoff.initial, ms(100));
    assert_eq!(p.backoff.max, secs(30));
    assert_eq!(p.backoff.multiplier, 2.0);
    assert_eq!(p.backoff.jitter, 0.1);
    assert_eq!(p.backoff.reset_after, secs(60));
    assert_eq!(p.intensity.max_restarts, 5);
    assert_eq!(p.intensity.within, secs(60));
    assert_eq!(p.shutdown.signal, Signal::TERM);
    assert_eq!(p.shutdown.grace, secs(5));
    assert_eq!(p.start_secs, secs(1));
    assert_eq!(p.heartbeat_timeout, None);
    assert_eq!(w.log.path, PathBuf::from("/cfg/var/log/w.log"));
    assert_eq!(w.log.max_bytes, 10 * 1024 * 1024);
    assert_eq!(w.log.max_files, 5);
    let launch = launch(&l, 0);
    assert_eq!(launch.argv, vec![OsString::from("prog")]);
    assert!(launch.env.is_empty());
    assert_eq!(launch.cwd, None);
}

#[test]
fn indexing_defaults_and_launch() {
    let l = ok("(workers: [(name: \"idx\", kind: Indexing())])");
    let w = worker(&l);
    assert_eq!(w.worker_type.kind(), "indexing");
    assert_eq!(w.policy, RestartPolicy::permanent());
    let s = l.indexing_settings(None).unwrap();
    assert_eq!(s.worker_name, "idx");
    assert_eq!(s.roots, vec![PathBuf::from("/cfg")]);
    assert_eq!(s.interval, secs(30));
    assert_eq!(s.db_path, PathBuf::from("/cfg/var/index.sqlite"));
    let argv = argv(&l, 0);
    assert_eq!(argv[0], std::env::current_exe().unwrap().into_os_string());
    let rest: Vec<_> = argv[1..].iter().map(|a| a.to_str().unwrap()).collect();
    // The resolved settings, not the config file: a running server never re-reads it.
    assert_eq!(
        rest,
        [
            "worker",
            "indexing",
            "--name",
            "idx",
            "--db",
            "/cfg/var/index.sqlite",
            "--interval",
            "30s",
            "--root",
            "/cfg"
        ]
    );
}

#[test]
fn the_contract_example_parses_with_its_values() {
    let l = ok(r#"(
    data_dir: "var",                 // history.sqlite, index.sqlite, vigil.sock, vigil.lock
    log_dir: "var/log",              // default: "<data_dir>/log"
    root: (backoff: (initial: "5s", max: "5m"), intensity: None),  // escalations, see below
    workers: [
        (
            name: "indexing",
            kind: Indexing(roots: ["."], interval: "30s"),
            restart: Permanent,          // Permanent | Transient | Temporary (OTP meanings)
            backoff: (initial: "100ms", max: "30s", multiplier: 2.0, jitter: 0.1, reset_after: "60s"),
            intensity: (max_restarts: 5, within: "60s"),
            shutdown: (signal: "SIGTERM", grace: "5s"),
            start_secs: "1s",              // running after READY=1 or this long alive; "0s" allowed
            heartbeat_timeout: Some("30s"),  // default None: no watchdog
        ),
        (
            name: "echo",
            kind: Command(argv: ["/bin/sh", "-c", "echo hi; sleep 60"], env: {"K": "V"}, cwd: None),
        ),
    ],
)"#);
    assert_eq!(l.tree.log_dir, PathBuf::from("/cfg/var/log"));
    let names: Vec<_> = l.tree.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["indexing", "echo"]);
    assert_eq!(l.tree.workers[0].policy.heartbeat_timeout, Some(secs(30)));
    let echo = launch(&l, 1);
    assert_eq!(
        echo.argv,
        ["/bin/sh", "-c", "echo hi; sleep 60"].map(OsString::from)
    );
    assert_eq!(echo.env.get("K").map(String::as_str), Some("V"));
    assert_eq!(echo.cwd, None);
}

#[test]
fn the_shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.ron");
    let l = load(&path).unwrap();
    assert!(
        l.tree
            .workers
            .iter()
            .any(|w| w.worker_type.kind() == "indexing")
    );
    let s = l.indexing_settings(Some("indexing")).unwrap();
    assert_eq!(s.roots, vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))]);
}

// ---------------------------------------------------------------- overrides and forms

#[test]
fn every_policy_field_overrides_the_type_default() {
    let l = ok(&one(r#"restart: Transient,
        backoff: (initial: "0s", max: "2m", multiplier: 1.5, jitter: 0.0, reset_after: "10m"),
        intensity: (max_restarts: 0, within: "1s"),
        shutdown: (signal: "SIGINT", grace: "0s"),
        start_secs: "0s",
        heartbeat_timeout: "250ms",
        log: (max_bytes: 4096, max_files: 1)"#));
    let p = worker(&l).policy;
    assert_eq!(p.restart, RestartType::Transient);
    assert_eq!(p.backoff.initial, Duration::ZERO);
    assert_eq!(p.backoff.max, secs(120));
    assert_eq!(p.backoff.multiplier, 1.5);
    assert_eq!(p.backoff.jitter, 0.0);
    assert_eq!(p.backoff.reset_after, secs(600));
    assert_eq!(p.intensity.max_restarts, 0);
    assert_eq!(p.intensity.within, secs(1));
    assert_eq!(
        p.shutdown.signal,
        Signal::from_number(libc::SIGINT).unwrap()
    );
    assert_eq!(p.shutdown.grace, Duration::ZERO);
    assert_eq!(p.start_secs, Duration::ZERO);
    assert_eq!(p.heartbeat_timeout, Some(ms(250)));
    assert_eq!(worker(&l).log.max_bytes, 4096);
    assert_eq!(worker(&l).log.max_files, 1);
}

#[test]
fn partial_sections_keep_the_other_defaults() {
    let p = worker(&ok(&one(
        r#"backoff: (max: "1m"), shutdown: (grace: "1s")"#,
    )))
    .policy;
    assert_eq!(p.backoff.max, secs(60));
    assert_eq!(p.backoff.initial, ms(100));
    assert_eq!(p.backoff.multiplier, 2.0);
    assert_eq!(p.shutdown.signal, Signal::TERM);
    assert_eq!(p.shutdown.grace, secs(1));
    assert_eq!(p.intensity.max_restarts, 5);
}

#[test]
fn restart_types_parse() {
    for (text, want) in [
        ("Permanent", RestartType::Permanent),
        ("Transient", RestartType::Transient),
        ("Temporary", RestartType::Temporary),
    ] {
        assert_eq!(
            worker(&ok(&one(&format!("restart: {text}"))))
                .policy
                .restart,
            want
        );
    }
    let e = err(&one("restart: Sometimes"));
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("Sometimes"), "{e}");
}

#[test]
fn signals_by_name_short_name_and_number() {
    for text in ["SIGKILL", "KILL", "9"] {
        let l = ok(&one(&format!("shutdown: (signal: {text:?})")));
        assert_eq!(worker(&l).policy.shutdown.signal, Signal::KILL);
    }
}

#[test]
fn heartbeat_some_none_bare_and_absent() {
    let hb = |extra: &str| worker(&ok(&one(extra))).policy.heartbeat_timeout;
    assert_eq!(hb(r#"heartbeat_timeout: Some("30s")"#), Some(secs(30)));
    assert_eq!(hb(r#"heartbeat_timeout: "30s""#), Some(secs(30)));
    assert_eq!(hb("heartbeat_timeout: None"), None);
    assert_eq!(hb(""), None);
}

#[test]
fn root_intensity_some_bare_and_none() {
    let root = |text: &str| ok(text).tree.root;
    let some = root(r#"(root: (intensity: Some((max_restarts: 3, within: "10m"))))"#);
    assert_eq!(
        some.intensity.map(|i| (i.max_restarts, i.within)),
        Some((3, secs(600)))
    );
    let bare = root(r#"(root: (intensity: (max_restarts: 2, within: "1m")))"#);
    assert_eq!(
        bare.intensity.map(|i| (i.max_restarts, i.within)),
        Some((2, secs(60)))
    );
    assert_eq!(root("(root: (intensity: None))").intensity, None);
    let backoff = root(r#"(root: (backoff: (initial: "1s", max: "2s", jitter: 0.0)))"#).backoff;
    assert_eq!(
        (backoff.initial, backoff.max, backoff.jitter),
        (secs(1), secs(2), 0.0)
    );
}

#[test]
fn cwd_some_bare_and_none() {
    let cwd = |c: &str| {
        let text = format!("(workers: [(name: \"w\", kind: Command(argv: [\"p\"], cwd: {c}))])");
        launch(&ok(&text), 0).cwd
    };
    assert_eq!(cwd(r#"Some("/tmp")"#), Some(PathBuf::from("/tmp")));
    assert_eq!(cwd(r#""/tmp""#), Some(PathBuf::from("/tmp")));
    assert_eq!(cwd("None"), None);
}

#[test]
fn durations_accept_humantime_forms() {
    for (text, want) in [
        ("250ms", ms(250)),
        ("5s", secs(5)),
        ("2m", secs(120)),
        ("1h 30m", secs(5400)),
        ("0s", Duration::ZERO),
    ] {
        let l = ok(&one(&format!("start_secs: {text:?}")));
        assert_eq!(worker(&l).policy.start_secs, want, "{text}");
    }
}

// ---------------------------------------------------------------- paths

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let l = ok(r#"(
        data_dir: "data",
        log_dir: "../logs",
        workers: [
            (name: "a", kind: Command(argv: ["./bin/a", "./arg"], cwd: "sub/./dir")),
            (name: "b", kind: Command(argv: ["bin/b"])),
            (name: "c", kind: Command(argv: ["/abs/c"], cwd: "/abs")),
            (name: "d", kind: Command(argv: ["sh"])),
            (name: "e", kind: Indexing(roots: ["src", ".", "/srv/code", "x/../y"])),
        ],
    )"#);
    assert_eq!(l.tree.data_dir, PathBuf::from("/cfg/data"));
    assert_eq!(l.tree.log_dir, PathBuf::from("/logs"));
    assert_eq!(l.tree.workers[0].log.path, PathBuf::from("/logs/a.log"));
    let a = launch(&l, 0);
    assert_eq!(
        a.argv,
        ["/cfg/bin/a", "./arg"].map(OsString::from),
        "only argv[0] resolves"
    );
    assert_eq!(a.cwd, Some(PathBuf::from("/cfg/sub/dir")));
    assert_eq!(argv(&l, 1), [OsString::from("/cfg/bin/b")]);
    assert_eq!(launch(&l, 2).argv, [OsString::from("/abs/c")]);
    assert_eq!(launch(&l, 2).cwd, Some(PathBuf::from("/abs")));
    assert_eq!(
        argv(&l, 3),
        [OsString::from("sh")],
        "a bare name is left to PATH"
    );
    let roots = l.indexing_settings(Some("e")).unwrap().roots;
    assert_eq!(
        roots,
        ["/cfg/src", "/cfg", "/srv/code", "/cfg/y"].map(PathBuf::from)
    );
    assert_eq!(
        l.indexing_settings(None).unwrap().db_path,
        PathBuf::from("/cfg/data/index.sqlite")
    );
}

#[test]
fn log_dir_defaults_under_data_dir() {
    let l = ok(r#"(data_dir: "/srv/vigil", workers: [(name: "w", kind: Command(argv: ["p"]))])"#);
    assert_eq!(l.tree.data_dir, PathBuf::from("/srv/vigil"));
    assert_eq!(l.tree.log_dir, PathBuf::from("/srv/vigil/log"));
    assert_eq!(worker(&l).log.path, PathBuf::from("/srv/vigil/log/w.log"));
}

#[test]
fn normalize_is_lexical() {
    assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    assert_eq!(normalize(Path::new("/a/.")), PathBuf::from("/a"));
    assert_eq!(normalize(Path::new("/..")), PathBuf::from("/"));
}

#[test]
fn load_resolves_against_the_real_file_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let file = dir.path().join("etc/vigil.ron");
    std::fs::write(&file, r#"(data_dir: "../state")"#).unwrap();
    let l = load(&file).unwrap();
    let real = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(l.tree.data_dir, real.join("state"));
    assert_eq!(l.tree.config_path, Some(real.join("etc/vigil.ron")));
    assert_eq!(l.shown, file);
}

// ---------------------------------------------------------------- indexing selection

#[test]
fn indexing_settings_selection() {
    let two = ok(r#"(workers: [
        (name: "a", kind: Indexing(roots: ["a"], interval: "1m")),
        (name: "cmd", kind: Command(argv: ["p"])),
        (name: "b", kind: Indexing(roots: ["b"], interval: "2s")),
    ])"#);
    let b = two.indexing_settings(Some("b")).unwrap();
    assert_eq!(
        (b.roots, b.interval),
        (vec![PathBuf::from("/cfg/b")], secs(2))
    );
    let msg = |r: Result<_, ConfigError>| r.unwrap_err().to_string();
    let ambiguous = msg(two.indexing_settings(None));
    assert!(
        ambiguous.contains("several") && ambiguous.contains("--name"),
        "{ambiguous}"
    );
    assert!(msg(two.indexing_settings(Some("cmd"))).contains("not an Indexing worker"));
    assert!(msg(two.indexing_settings(Some("zz"))).contains("no Indexing worker named \"zz\""));
    let none = msg(ok(&one("")).indexing_settings(None));
    assert!(
        none.starts_with(&format!("{FILE}: no Indexing worker")),
        "{none}"
    );
}

// ---------------------------------------------------------------- validation

/// Asserts a validation error that mentions `needle`, pointing at worker `w`'s name line.
fn invalid(text: &str, needle: &str) -> ConfigError {
    let e = err(text);
    assert!(
        matches!(e, ConfigError::Invalid { .. }),
        "not a validation error: {e}"
    );
    let s = e.to_string();
    assert!(s.contains(needle), "{s:?} does not mention {needle:?}");
    e
}

#[test]
fn backoff_rules() {
    invalid(&one("backoff: (multiplier: 0.5)"), "backoff.multiplier");
    invalid(&one("backoff: (multiplier: inf)"), "backoff.multiplier");
    invalid(&one("backoff: (multiplier: NaN)"), "backoff.multiplier");
    invalid(&one("backoff: (jitter: 1.5)"), "backoff.jitter");
    invalid(&one("backoff: (jitter: -0.1)"), "backoff.jitter");
    invalid(&one("backoff: (jitter: NaN)"), "backoff.jitter");
    invalid(
        &one(r#"backoff: (initial: "1m")"#),
        "backoff.initial (60s) must not exceed backoff.max (30s)",
    );
    invalid(
        r#"(root: (backoff: (multiplier: 0.9)))"#,
        "root: backoff.multiplier",
    );
    invalid(
        r#"(root: (backoff: (initial: "10m")))"#,
        "root: backoff.initial",
    );
    // The edges are allowed.
    ok(&one(
        r#"backoff: (multiplier: 1.0, jitter: 1.0, initial: "30s", max: "30s")"#,
    ));
}

#[test]
fn intensity_shutdown_heartbeat_and_log_rules() {
    invalid(&one(r#"intensity: (within: "0s")"#), "intensity.within");
    invalid(
        r#"(root: (intensity: Some((within: "0s"))))"#,
        "root: intensity.within",
    );
    invalid(
        &one(r#"heartbeat_timeout: Some("0s")"#),
        "heartbeat_timeout",
    );
    invalid(&one("log: (max_bytes: 4095)"), "log.max_bytes");
    invalid(&one("log: (max_files: 0)"), "log.max_files");
    let e = err(&one("intensity: (max_restarts: -1)"));
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

#[test]
fn kind_rules() {
    invalid(
        r#"(workers: [(name: "w", kind: Command(argv: []))])"#,
        "kind.argv must not be empty",
    );
    invalid(
        r#"(workers: [(name: "w", kind: Command(argv: [""]))])"#,
        "kind.argv[0]",
    );
    invalid(
        r#"(workers: [(name: "w", kind: Command(argv: ["p"], env: {"A=B": "1"}))])"#,
        "kind.env",
    );
    invalid(
        r#"(workers: [(name: "w", kind: Indexing(roots: []))])"#,
        "kind.roots",
    );
    invalid(
        r#"(workers: [(name: "w", kind: Indexing(interval: "0s"))])"#,
        "kind.interval",
    );
    let e = err(r#"(workers: [(name: "w", kind: Command())])"#);
    assert!(e.to_string().contains("argv"), "{e}");
}

#[test]
fn root_errors_point_at_the_root_key() {
    let e = invalid(
        "(\n  data_dir: \"v\",\n    root: (backoff: (jitter: 3.0)),\n)",
        "root: backoff.jitter",
    );
    assert_eq!(e.position(), Some(Position { line: 3, col: 5 }));
}

#[test]
fn a_data_dir_too_deep_for_a_socket_is_rejected() {
    let deep = format!("/{}", "d".repeat(100));
    let e = invalid(
        &format!("(\n  data_dir: {deep:?},\n)"),
        "data_dir is too deep",
    );
    assert_eq!(e.position(), Some(Position { line: 2, col: 3 }));
    // 107 bytes in all is the limit: "/" + 95 + "/vigil.sock" (11) = 107.
    ok(&format!("(data_dir: \"/{}\")", "d".repeat(95)));
    invalid(&format!("(data_dir: \"/{}\")", "d".repeat(96)), "data_dir");
}

#[test]
fn name_rules() {
    for bad in ["", ".hidden", "a/b", "a b", "é"] {
        let text = format!("(workers: [(name: {bad:?}, kind: Command(argv: [\"p\"]))])");
        let e = err(&text);
        assert!(matches!(e, ConfigError::Invalid { .. }), "{bad:?}: {e}");
        assert!(e.to_string().contains("name"), "{e}");
    }
    for good in ["a", "A-1", "x.y_z", "0"] {
        ok(&format!(
            "(workers: [(name: {good:?}, kind: Command(argv: [\"p\"]))])"
        ));
    }
}

#[test]
fn duplicate_names_point_at_the_second() {
    let text = "(workers: [\n  (name: \"w\", kind: Command(argv: [\"p\"])),\n  (name: \"w\", kind: Command(argv: [\"q\"])),\n])";
    let e = invalid(text, "used twice");
    assert_eq!(e.position(), Some(Position { line: 3, col: 10 }));
    assert!(e.to_string().starts_with(&format!("{FILE}:3:10: ")), "{e}");
}

#[test]
fn validation_errors_point_at_the_worker_name() {
    let text = "(\n  workers: [\n    (\n      name: \"slow\",\n      kind: Command(argv: [\"p\"]),\n      backoff: (multiplier: 0.1),\n    ),\n  ],\n)";
    let e = invalid(text, "worker \"slow\": backoff.multiplier");
    assert_eq!(e.position(), Some(Position { line: 4, col: 13 }));
}

// ---------------------------------------------------------------- syntax and unknown fields

#[test]
fn unknown_fields_are_rejected_everywhere() {
    for (text, field) in [
        ("(bogus: 1)".to_string(), "bogus"),
        ("(root: (bogus: 1))".to_string(), "bogus"),
        (one("bogus: 1"), "bogus"),
        (one("backoff: (bogus: 1)"), "bogus"),
        (one("intensity: (bogus: 1)"), "bogus"),
        (one("shutdown: (bogus: 1)"), "bogus"),
        (one("log: (bogus: 1)"), "bogus"),
        (
            r#"(workers: [(name: "w", kind: Command(argv: ["p"], bogus: 1))])"#.to_string(),
            "bogus",
        ),
        (
            r#"(workers: [(name: "w", kind: Indexing(bogus: 1))])"#.to_string(),
            "bogus",
        ),
    ] {
        let e = err(&text);
        assert!(matches!(e, ConfigError::Parse { .. }), "{text}: {e}");
        assert!(e.to_string().contains(field), "{text}: {e}");
    }
}

#[test]
fn unknown_kind_is_rejected() {
    let e = err(r#"(workers: [(name: "w", kind: Docker(image: "x"))])"#);
    assert!(e.to_string().contains("Docker"), "{e}");
}

#[test]
fn missing_name_or_kind_is_rejected() {
    assert!(
        err(r#"(workers: [(kind: Command(argv: ["p"]))])"#)
            .to_string()
            .contains("name")
    );
    assert!(
        err(r#"(workers: [(name: "w")])"#)
            .to_string()
            .contains("kind")
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = err("(\n  data_dir: \"var\"\n  log_dir: \"x\",\n)");
    let at = e.position().unwrap();
    assert_eq!(at.line, 3);
    assert!(
        e.to_string().starts_with(&format!("{FILE}:3:{}: ", at.col)),
        "{e}"
    );
}

#[test]
fn bad_durations_and_signals_carry_positions() {
    let e = err(&format!(
        "(\n{}\n)",
        r#"root: (backoff: (initial: "5 parsecs"))"#
    ));
    assert_eq!(e.position().map(|p| p.line), Some(2), "{e}");
    assert!(
        e.to_string().contains("invalid duration \"5 parsecs\""),
        "{e}"
    );
    let e = err(&one("start_secs: 5"));
    assert!(e.to_string().contains("duration string"), "{e}");
    let e = err(&one(r#"shutdown: (signal: "SIGNOPE")"#));
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("SIGNOPE"), "{e}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.ron");
    let e = load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read config: ", path.display())),
        "{e}"
    );
}

#[test]
fn indexing_workers_must_not_overlap() {
    let text = r#"(workers: [
        (name: "a", kind: Indexing(roots: ["src"])),
        (name: "b", kind: Indexing(roots: ["src/sub"])),
    ])"#;
    invalid(text, "overlaps");
    let separate = r#"(workers: [
        (name: "a", kind: Indexing(roots: ["src"])),
        (name: "b", kind: Indexing(roots: ["docs"])),
    ])"#;
    assert_eq!(ok(separate).indexing.len(), 2);
}

// ---------------------------------------------------------------- http and significant

#[test]
fn http_is_off_by_default_and_takes_an_ip_and_a_port() {
    assert_eq!(ok("()").tree.http, None);
    assert_eq!(
        ok("(http: Some(\"127.0.0.1:9750\"))").tree.http,
        Some("127.0.0.1:9750".parse().unwrap())
    );
    assert_eq!(
        ok("(http: Some(\"[::1]:0\"))").tree.http,
        Some("[::1]:0".parse().unwrap())
    );
    assert_eq!(ok("(http: None)").tree.http, None);
}

#[test]
fn a_bad_http_address_is_an_error_at_its_position() {
    for bad in ["localhost:9750", "127.0.0.1", "127.0.0.1:99999", ""] {
        let e = err(&format!("(\n  data_dir: \"v\",\n  http: Some({bad:?}),\n)"));
        assert!(matches!(e, ConfigError::Parse { .. }), "{bad:?}: {e}");
        assert!(e.to_string().contains("invalid http address"), "{e}");
        assert_eq!(e.position().map(|p| p.line), Some(3), "{e}");
    }
}

#[test]
fn significant_is_off_by_default() {
    assert!(!worker(&ok(&one(""))).significant);
    assert!(worker(&ok(&one("significant: true"))).significant);
    let e = err(&one("significant: 1"));
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

/// Two loads of config texts, diffed as a reload would: each worker's class.
fn reload_classes(old: &str, new: &str) -> Vec<(String, &'static str)> {
    let (old, new) = (ok(old), ok(new));
    vigil_actors::reload::diff(&old.tree.workers, &new.tree.workers)
        .into_iter()
        .map(|c| (c.name, c.class.as_str()))
        .collect()
}

#[test]
fn reloading_the_same_text_changes_nothing_for_either_built_in_kind() {
    let text = r#"(workers: [
        (name: "idx", kind: Indexing(roots: ["src"], interval: "30s")),
        (name: "cmd", kind: Command(argv: ["prog", "a"], env: {"K": "V"}, cwd: "run")),
    ])"#;
    assert_eq!(
        reload_classes(text, text),
        [("idx".into(), "unchanged"), ("cmd".into(), "unchanged")]
    );
}

#[test]
fn kind_fields_restart_policy_fields_update() {
    let base = r#"(workers: [
        (name: "idx", kind: Indexing(roots: ["src"], interval: "30s")),
        (name: "cmd", kind: Command(argv: ["prog", "a"], env: {"K": "V"})),
    ])"#;
    let classes = |new: &str| reload_classes(base, new);
    let idx_interval = base.replace("\"30s\"", "\"31s\"");
    assert_eq!(classes(&idx_interval)[0].1, "restarted");
    let idx_roots = base.replace("[\"src\"]", "[\"src\", \"lib\"]");
    assert_eq!(classes(&idx_roots)[0].1, "restarted");
    let cmd_env = base.replace("\"V\"", "\"W\"");
    assert_eq!(classes(&cmd_env)[1].1, "restarted");
    let cmd_restart = base.replace(
        "env: {\"K\": \"V\"})",
        "env: {\"K\": \"V\"}), restart: Temporary",
    );
    assert_eq!(classes(&cmd_restart)[1].1, "updated");
    let idx_log = base.replace(
        "interval: \"30s\")",
        "interval: \"30s\"), log: (max_files: 2)",
    );
    assert_eq!(classes(&idx_log)[0].1, "updated");
}
// ---------------------------------------------------------------- the worker's environment

#[test]
fn environment_fields_default_to_the_servers() {
    let l = ok(&one(""));
    assert_eq!(
        worker(&l).environment,
        vigil_actors::environ::EnvSpec::default()
    );
}

#[test]
fn environment_fields_resolve_with_the_env_file_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/w.env"), "A=1\n").unwrap();
    let path = dir.path().join("config.ron");
    std::fs::write(
        &path,
        one(r#"user: "root", group: "0", umask: "0027", nice: -3, env_file: "sub/w.env", clear_env: true"#),
    )
    .unwrap();
    let l = load(&path).unwrap();
    let e = &worker(&l).environment;
    assert_eq!(e.user.as_deref(), Some("root"));
    assert_eq!(e.group.as_deref(), Some("0"));
    assert_eq!(
        (e.umask, e.nice, e.clear_env),
        (Some(0o027), Some(-3), true)
    );
    let expected = std::fs::canonicalize(dir.path()).unwrap().join("sub/w.env");
    assert_eq!(e.env_file.as_deref(), Some(expected.as_path()));
    assert_eq!(e.file_vars, [("A".to_string(), "1".to_string())]);
}

#[test]
fn clients_load_without_checking_users_or_env_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.ron");
    std::fs::write(
        &path,
        one(r#"user: "no-such-user-vigil", env_file: "missing.env""#),
    )
    .unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(e.contains("unknown user"), "{e}");
    let l = load_for_client(&path).unwrap();
    assert_eq!(
        worker(&l).environment.user.as_deref(),
        Some("no-such-user-vigil")
    );
}

// ---------------------------------------------------------------- groups and instances

const NESTED: &str = r#"(workers: [
    (
        name: "backend",
        kind: Group(
            strategy: RestForOne,
            intensity: Some((max_restarts: 3, within: "60s")),
            backoff: (initial: "1s", max: "1m"),
            workers: [
                (name: "db", kind: Command(argv: ["db"])),
                (name: "inner", kind: Group(strategy: OneForAll, workers: [
                    (name: "a", kind: Command(argv: ["a"])),
                ])),
                (name: "indexer", kind: Command(argv: ["ix"])),
            ],
        ),
    ),
    (name: "web", kind: Command(argv: ["web"]), instances: 3),
])"#;

#[test]
fn groups_nest_and_workers_stay_flat_in_start_order() {
    use vigil_actors::spec::{ChildRef, Strategy};
    let l = ok(NESTED);
    let names: Vec<&str> = l.tree.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["db", "a", "indexer", "web@0", "web@1", "web@2"]);
    let backend = l.tree.group("backend").unwrap();
    assert_eq!(backend.parent, None);
    assert_eq!(backend.strategy, Strategy::RestForOne);
    assert_eq!(backend.intensity.map(|i| i.max_restarts), Some(3));
    assert_eq!(backend.backoff.initial, secs(1));
    assert_eq!(backend.backoff.max, secs(60));
    assert_eq!(
        backend.children,
        [
            ChildRef::Worker("db".into()),
            ChildRef::Group("inner".into()),
            ChildRef::Worker("indexer".into())
        ]
    );
    let inner = l.tree.group("inner").unwrap();
    assert_eq!(inner.parent.as_deref(), Some("backend"));
    assert_eq!(inner.strategy, Strategy::OneForAll);
    assert_eq!(
        l.tree.parent_of("a").map(|g| g.name.as_str()),
        Some("inner")
    );
    assert_eq!(
        l.tree.group_workers("backend").unwrap(),
        ["db", "a", "indexer"]
    );
    let web = l.tree.group("web").unwrap();
    assert_eq!(web.strategy, Strategy::OneForOne);
    assert_eq!(
        l.tree.group_workers("web").unwrap(),
        ["web@0", "web@1", "web@2"]
    );
}

#[test]
fn instances_have_their_own_log_and_vigil_instance() {
    let l = ok(NESTED);
    for i in 0..3 {
        let at = 3 + i;
        assert_eq!(l.tree.workers[at].name, format!("web@{i}"));
        assert_eq!(
            l.tree.workers[at].log.path,
            Path::new("/cfg/var/log").join(format!("web@{i}.log"))
        );
        assert_eq!(
            launch(&l, at).env.get("VIGIL_INSTANCE").map(String::as_str),
            Some(i.to_string().as_str())
        );
    }
    invalid(&one("instances: 0"), "instances must be between 1");
}

#[test]
fn a_group_entry_takes_only_name_and_kind() {
    let text = "(workers: [\n    (name: \"g\", kind: Group(workers: []),\n        restart: Some(Temporary)),\n])";
    let e = err(text);
    assert!(
        e.to_string()
            .contains("group \"g\": restart is a worker's field"),
        "{e}"
    );
    assert_eq!(e.position(), Some(Position { line: 3, col: 9 }));
    for field in [
        "significant: true",
        "log: (max_files: 2)",
        "backoff: (initial: \"1s\")",
        "instances: 2",
        "clear_env: false",
    ] {
        let text = format!("(workers: [(name: \"g\", kind: Group(workers: []), {field})])");
        let key = field.split(':').next().unwrap();
        let e = err(&text);
        assert!(
            e.to_string()
                .contains(&format!("{key} is a worker's field")),
            "{field}: {e}"
        );
    }
}

#[test]
fn names_are_unique_across_the_tree() {
    for text in [
        r#"(workers: [(name: "g", kind: Group(workers: [(name: "g", kind: Command(argv: ["x"]))]))])"#,
        r#"(workers: [(name: "x", kind: Command(argv: ["x"])), (name: "g", kind: Group(workers: [(name: "x", kind: Command(argv: ["x"]))]))])"#,
        r#"(workers: [(name: "w", kind: Command(argv: ["x"]), instances: 2), (name: "w", kind: Command(argv: ["x"]))])"#,
    ] {
        let e = err(text);
        assert!(e.to_string().contains("is used twice"), "{text}: {e}");
    }
    let e = err(
        r#"(workers: [(name: "g", kind: Group(workers: [(name: "b@d", kind: Command(argv: ["x"]))]))])"#,
    );
    assert!(e.to_string().contains("contains '@'"), "{e}");
    let e = err(r#"(workers: [(name: "g", kind: Group(strategy: Sideways))])"#);
    assert!(e.to_string().contains("Sideways"), "{e}");
    let e = err(r#"(workers: [(name: "g", kind: Group(backoff: (initial: "2s", max: "1s")))])"#);
    assert!(e.to_string().contains("backoff.initial"), "{e}");
}
