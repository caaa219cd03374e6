//! The command line as a user meets it: help lists every contract command, usage errors exit 2.

use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil")
}

#[test]
fn help_lists_every_contract_command() {
    let o = vigil(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for cmd in [
        "serve",
        "check",
        "dump",
        "status",
        "restart",
        "stop",
        "start",
        "shutdown",
        "history",
        "worker",
        "logs",
        "events",
        "completions",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "{cmd} missing from:\n{help}"
        );
    }
    assert!(help.contains("--config"), "{help}");
    let o = vigil(&["worker", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("indexing"));
}

#[test]
fn contract_options_are_accepted_by_the_parser() {
    // Each of these must get past clap (which would print its usage and exit 2).
    for args in [
        &[
            "history",
            "w",
            "--limit",
            "3",
            "--json",
            "--config",
            "/nonexistent/c.ron",
        ][..],
        &["status", "w", "--json", "--config", "/nonexistent/c.ron"],
        &["dump", "--json", "--config", "/nonexistent/c.ron"],
        &["restart", "w", "--config", "/nonexistent/c.ron"],
        &[
            "logs",
            "w",
            "-n",
            "3",
            "-f",
            "--config",
            "/nonexistent/c.ron",
        ],
        &["logs", "w", "--previous", "--config", "/nonexistent/c.ron"],
        &["events", "--json", "--config", "/nonexistent/c.ron"],
        &[
            "worker",
            "indexing",
            "--name",
            "x",
            "--once",
            "--config",
            "/nonexistent/c.ron",
        ],
    ] {
        let o = vigil(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("Usage:"),
            "{args:?} was refused by clap: {err}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &[],
        &["restart"],
        &["history", "--limit", "many"],
        &["check", "--bogus"],
        &["worker", "cooking"],
        &["logs"],
        &["logs", "w", "-n", "many"],
        &["events", "w"],
    ] {
        let o = vigil(args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stderr.is_empty(), "{args:?}");
    }
}
