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

// ---------------------------------------------------------------- the worker's environment

/// `vigil check` on a config of one worker with `fields` on its own lines (line 3 onwards);
/// the exit code and stderr.
fn check_worker_fields(dir: &Path, fields: &str) -> (Option<i32>, String) {
    let text = format!(
        "(workers: [(\n    name: \"web\",\n{fields}\n    kind: Command(argv: [\"/bin/true\"]),\n)])\n"
    );
    std::fs::write(dir.join("config.ron"), text).unwrap();
    let o = vigil(dir, &["check"]);
    (o.status.code(), stderr(&o))
}

#[test]
fn environment_fields_are_checked_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.env"), "# ok\nexport A=1\nB='two'\n").unwrap();
    std::fs::write(dir.path().join("bad.env"), "A=1\n\n  B C\n").unwrap();
    let (code, err) = check_worker_fields(
        dir.path(),
        "    user: \"nobody\",\n    group: \"root\",\n    umask: \"027\",\n    nice: 5,\n    \
         env_file: \"good.env\",\n    clear_env: true,",
    );
    assert_eq!(code, Some(0), "{err}");

    // (fields, file in the message, line, col, what the message says)
    let cases: &[(&str, &str, usize, usize, &str)] = &[
        (
            "    user: \"no-such-user-vigil\",",
            "config.ron",
            3,
            5,
            "unknown user \"no-such-user-vigil\"",
        ),
        (
            "    user: \"nobody\",\n    group: \"no-such-group-vigil\",",
            "config.ron",
            4,
            5,
            "unknown group \"no-such-group-vigil\"",
        ),
        (
            "    group: \"no-such-group-vigil\",",
            "config.ron",
            3,
            5,
            "unknown group",
        ),
        (
            "    umask: \"0999\",",
            "config.ron",
            3,
            13,
            "invalid umask \"0999\"",
        ),
        ("    umask: \"rwx\",", "config.ron", 3, 13, "invalid umask"),
        (
            "    nice: 20,",
            "config.ron",
            3,
            11,
            "nice 20 is out of range",
        ),
        (
            "    nice: -21,",
            "config.ron",
            3,
            12,
            "nice -21 is out of range",
        ),
        (
            "    env_file: \"missing.env\",",
            "config.ron",
            3,
            5,
            "cannot read env_file",
        ),
        (
            "    env_file: \"bad.env\",",
            "bad.env",
            3,
            5,
            "env_file of worker \"web\": expected '=' after B",
        ),
    ];
    for (fields, file, line, col, what) in cases {
        let (code, err) = check_worker_fields(dir.path(), fields);
        assert_eq!(code, Some(2), "{fields}: {err}");
        let shown = if *file == "config.ron" {
            "config.ron".to_string()
        } else {
            dir.path()
                .join(file)
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        };
        assert_eq!(
            position_prefix(err.trim_end(), &shown),
            Some((*line, *col)),
            "{fields}: {err}"
        );
        assert!(err.contains(what), "{fields}: {err:?} lacks {what:?}");
    }
}

/// The container files: the ConfigMap carries exactly `contrib/k8s/config.ron`, which passes
/// `vigil check`; the manifests pass a Kubernetes schema validator where one is installed.
#[test]
fn the_kubernetes_manifests_carry_a_valid_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("contrib/k8s/config.ron")).expect("config");
    let manifest = std::fs::read_to_string(root.join("contrib/k8s/vigil.yaml")).expect("yaml");
    let mut lines = manifest.lines().skip_while(|l| *l != "  config.ron: |");
    assert!(lines.next().is_some(), "no config.ron in the ConfigMap");
    let embedded: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect();
    assert_eq!(
        embedded.join("\n").trim_end(),
        config.trim_end(),
        "contrib/k8s/vigil.yaml's ConfigMap differs from contrib/k8s/config.ron"
    );
    let out = vigil(root, &["check", "--config", "contrib/k8s/config.ron"]);
    assert!(out.status.success(), "{}", stderr(&out));
    match Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(root.join("contrib/k8s/vigil.yaml"))
        .output()
    {
        Ok(v) => assert!(
            v.status.success(),
            "kubernetes-validate: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        ),
        Err(_) => eprintln!(
            "SKIP: kubernetes-validate is not installed: the manifests' schema is not checked"
        ),
    }
}
