//! `vigil check` run as a real process on real files: exit status and the error format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vigil(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run vigil")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes `text` as `name` in a fresh temporary folder.
fn config(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `FILE:LINE:COL: ` at the start of `s`; returns (line, col).
fn position_prefix(s: &str, file: &str) -> Option<(usize, usize)> {
    let rest = s.strip_prefix(file)?.strip_prefix(':')?;
    let mut parts = rest.splitn(3, ':');
    let line = parts.next()?.parse().ok()?;
    let col = parts.next()?.parse().ok()?;
    parts.next()?.starts_with(' ').then_some((line, col))
}

#[test]
fn the_shipped_config_is_ok() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = vigil(root, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("config.ron: ok ("), "{out}");
    assert!(out.contains("indexing"), "{out}");
}

#[test]
fn a_temp_config_is_ok_with_config_before_or_after_the_command() {
    let (dir, path) = config(
        "my.ron",
        r#"(workers: [
            (name: "one", kind: Command(argv: ["/bin/true"])),
            (name: "two", kind: Indexing(roots: ["."], interval: "5s")),
        ])"#,
    );
    let p = path.to_str().unwrap();
    for args in [["--config", p, "check"], ["check", "--config", p]] {
        let o = vigil(dir.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{p}: ok (2 workers: one, two)\n"));
    }
}

#[test]
fn the_default_config_path_is_config_ron_in_the_current_folder() {
    let (dir, _) = config("config.ron", "()");
    let o = vigil(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "config.ron: ok (0 workers)\n");
}

#[test]
fn a_syntax_error_exits_2_with_file_line_col() {
    let (dir, path) = config("bad.ron", "(\n  data_dir: \"var\"\n  workers: [],\n)\n");
    let o = vigil(dir.path(), &["check", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let (line, _) = position_prefix(&err, path.to_str().unwrap())
        .unwrap_or_else(|| panic!("no FILE:LINE:COL prefix in {err:?}"));
    assert_eq!(line, 3, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn an_unknown_field_exits_2_with_its_position() {
    let (dir, _) = config(
        "c.ron",
        "(\n  workers: [\n    (name: \"w\", kind: Command(argv: [\"p\"]), retsart: Permanent),\n  ],\n)\n",
    );
    let o = vigil(dir.path(), &["--config", "c.ron", "check"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let (line, _) = position_prefix(&err, "c.ron").unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(line, 3, "{err}");
    assert!(err.contains("retsart"), "{err}");
}

#[test]
fn a_validation_error_exits_2_naming_the_field() {
    let (dir, _) = config(
        "c.ron",
        "(\n  workers: [\n    (\n      name: \"w\",\n      kind: Command(argv: [\"p\"]),\n      backoff: (jitter: 2.0),\n    ),\n  ],\n)\n",
    );
    let o = vigil(dir.path(), &["check", "--config", "c.ron"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("backoff.jitter"), "{err}");
    assert!(err.contains("\"w\""), "{err}");
    assert_eq!(position_prefix(&err, "c.ron"), Some((4, 13)), "{err}");
}

#[test]
fn a_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = vigil(dir.path(), &["check", "--config", "nope.ron"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("nope.ron: cannot read config: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
}
