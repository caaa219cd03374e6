//! `vigil completions SHELL`: a script per shell that names the subcommands, checked by the
//! shell itself where it is installed; an unknown shell is a usage error.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil")
}

/// Whether `program` runs here (`program --version` exits 0).
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Parse `script` with `shell -n` (syntax check, nothing runs).
fn syntax_ok(shell: &str, script: &[u8]) -> Output {
    let mut child = Command::new(shell)
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script)
        .expect("write script");
    child.wait_with_output().expect("shell -n")
}

#[test]
fn each_shell_gets_a_script_naming_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = vigil(&["completions", shell]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout.clone()).expect("UTF-8 script");
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for sub in ["serve", "history", "completions"] {
            assert!(
                script.contains(sub),
                "{shell} script lacks {sub}:\n{script}"
            );
        }
        if installed(shell) {
            let check = syntax_ok(shell, &out.stdout);
            assert!(
                check.status.success(),
                "{shell} -n refused the script: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        } else {
            eprintln!("SKIP: {shell} is not installed; its script's syntax is not checked");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    for args in [&["completions", "tcsh"][..], &["completions"]] {
        let out = vigil(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("<SHELL>"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn the_man_page_names_every_command_and_renders() {
    let out = vigil(&["manpage"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).expect("utf-8");
    assert!(page.contains(".TH vigil 1"), "{page}");
    for command in [
        "serve",
        "check",
        "dump",
        "status",
        "reload",
        "logs",
        "events",
        "completions",
    ] {
        assert!(
            page.contains(command),
            "the man page does not name {command}"
        );
    }
    if !installed("groff") {
        eprintln!("SKIP: groff is missing: the man page is not rendered");
        return;
    }
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn groff");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write page");
    let rendered = child.wait_with_output().expect("groff");
    assert!(rendered.status.success(), "groff failed");
    let warnings = String::from_utf8_lossy(&rendered.stderr);
    assert!(warnings.trim().is_empty(), "groff warns:\n{warnings}");
}
