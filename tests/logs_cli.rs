//! `vigil logs`: the last lines across rotated files, the previous generation, following
//! across rotation and restarts; with log files written by the test, and with a real server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const T: &str = "2026-12-01T10:00:00.000Z";

fn write_log(home: &Home, name: &str, lines: &[&str]) {
    let dir = home.path().join("var/log");
    std::fs::create_dir_all(&dir).unwrap();
    let text: String = lines.iter().map(|l| format!("{T} {l}\n")).collect();
    std::fs::write(dir.join(name), text).unwrap();
}

fn append(path: &std::path::Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{T} {line}\n").as_bytes()).unwrap();
}

/// The text of each printed line after its timestamp.
fn texts(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, t)| t).to_string())
        .collect()
}

/// A `vigil logs -f` child whose stdout lines arrive on a channel; killed on drop.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follow {
    fn start(home: &Home, args: &[&str]) -> Follow {
        let mut child = Command::new(vigil_bin())
            .args(args)
            .arg("--config")
            .arg(home.config())
            .current_dir(home.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vigil logs -f");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait until a printed line contains `what`; returns every line printed so far.
    fn wait_for(&mut self, what: &str) -> &[String] {
        let deadline = Instant::now() + LONG;
        while !self.seen.iter().any(|l| l.contains(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let err = self
                        .child
                        .stderr
                        .take()
                        .map(|mut e| {
                            let mut s = String::new();
                            let _ = std::io::Read::read_to_string(&mut e, &mut s);
                            s
                        })
                        .unwrap_or_default();
                    panic!(
                        "no line with {what:?} from vigil logs -f; got {:?}; stderr {err}",
                        self.seen
                    );
                }
            }
        }
        &self.seen
    }

    /// SIGINT, then the exit status.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the child we spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + LONG;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "vigil logs -f ignored SIGINT");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn one_worker_home() -> Home {
    Home::new("", &sh_worker("w", "sleep 1000", FAST))
}

#[test]
fn last_lines_continue_into_rotated_files() {
    let home = one_worker_home();
    write_log(&home, "w.log.2", &["l1", "l2"]);
    write_log(&home, "w.log.1", &["l3", "l4"]);
    write_log(&home, "w.log", &["l5", "l6"]);
    let out = home.run(&["logs", "w", "-n", "5"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(texts(&out.stdout), ["l2", "l3", "l4", "l5", "l6"]);
    let out = home.run(&["logs", "w"]);
    assert_eq!(texts(&out.stdout), ["l1", "l2", "l3", "l4", "l5", "l6"]);
    let out = home.run(&["logs", "w", "--lines", "1"]);
    assert_eq!(texts(&out.stdout), ["l6"]);
    assert!(
        !out.stdout.contains(&0x1b),
        "no colour when stdout is a pipe"
    );
}

#[test]
fn a_long_log_is_read_from_its_end() {
    let home = one_worker_home();
    let dir = home.path().join("var/log");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::with_capacity(8 << 20);
    for i in 0..200_000 {
        text.push_str(&format!("{T} line {i:06} {}\n", "x".repeat(20)));
    }
    std::fs::write(dir.join("w.log"), text).unwrap();
    let out = home.run(&["logs", "w", "-n", "3"]);
    let got = texts(&out.stdout);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[2].starts_with("line 199999"), "{got:?}");
    assert!(got[0].starts_with("line 199997"), "{got:?}");
}

#[test]
fn previous_shows_the_generation_before_the_last() {
    let home = one_worker_home();
    write_log(
        &home,
        "w.log.1",
        &[
            "[vigil] started generation 1, pid 10",
            "first run",
            "[vigil] generation 1 exited with code 1; restarting in 0ms",
            "[vigil] started generation 2, pid 11",
            "second run, part one",
        ],
    );
    write_log(
        &home,
        "w.log",
        &[
            "second run, part two",
            "[vigil] generation 2 killed by SIGKILL; restarting in 0ms",
            "[vigil] started generation 3, pid 12",
            "third run",
        ],
    );
    let out = home.run(&["logs", "w", "--previous"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        texts(&out.stdout),
        [
            "[vigil] started generation 2, pid 11",
            "second run, part one",
            "second run, part two",
            "[vigil] generation 2 killed by SIGKILL; restarting in 0ms",
        ]
    );
    let out = home.run(&["logs", "w", "--previous", "-n", "1"]);
    assert_eq!(
        texts(&out.stdout),
        ["[vigil] generation 2 killed by SIGKILL; restarting in 0ms"]
    );
}

#[test]
fn unknown_worker_missing_log_and_no_previous_exit_1_with_one_sentence() {
    let home = one_worker_home();
    let cases: [(&[&str], &str); 3] = [
        (&["logs", "nope"], "no worker named \"nope\""),
        (&["logs", "w"], "has no log yet"),
        (&["logs", "w", "-f"], "has no log yet"),
    ];
    for (args, want) in cases {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("vigil: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: one sentence: {err}");
    }
    write_log(
        &home,
        "w.log",
        &["[vigil] started generation 1, pid 3", "x"],
    );
    let out = home.run(&["logs", "w", "--previous"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no generation before"), "{err}");
    // -f and --previous do not go together: a usage error.
    assert_eq!(
        home.run(&["logs", "w", "-f", "--previous"]).status.code(),
        Some(2)
    );
}

#[test]
fn follow_goes_on_across_rotation_until_interrupted() {
    let home = one_worker_home();
    write_log(&home, "w.log", &["before-1", "before-2"]);
    let live = home.log("w");
    let mut f = Follow::start(&home, &["logs", "w", "-f", "-n", "1"]);
    let seen = f.wait_for("before-2").to_vec();
    assert!(
        !seen.iter().any(|l| l.contains("before-1")),
        "only the last line: {seen:?}"
    );
    // Lines written after the tail; the watch is up before the tail is printed.
    append(&live, "after-1");
    f.wait_for("after-1");
    // Rotation as the server does it: rename, then a new live file.
    append(&live, "last-of-old");
    let rotated = home.path().join("var/log/w.log.1");
    std::fs::rename(&live, &rotated).unwrap();
    append(&live, "first-of-new");
    let seen = f.wait_for("first-of-new").to_vec();
    let old = seen.iter().position(|l| l.contains("last-of-old"));
    let new = seen.iter().position(|l| l.contains("first-of-new"));
    assert!(old.is_some() && old < new, "{seen:?}");
    // Another worker's log in the same folder is not printed.
    append(&home.path().join("var/log/other.log"), "not mine");
    append(&live, "mine-again");
    let seen = f.wait_for("mine-again").to_vec();
    assert!(!seen.iter().any(|l| l.contains("not mine")), "{seen:?}");
    let status = f.interrupt();
    assert_eq!(status.code(), Some(0), "Ctrl-C ends -f with 0");
}

#[test]
fn with_a_server_logs_follow_a_restart_and_previous_shows_the_run_before() {
    let script =
        "echo run $VIGIL_GENERATION begins; echo run $VIGIL_GENERATION works; exec sleep 1000";
    let home = Home::new("", &sh_worker("w", script, FAST));
    let mut server = home.serve();
    control_wait_ready(&home);
    wait_for(LONG, "generation 1's output", || {
        std::fs::read_to_string(home.log("w"))
            .ok()?
            .contains("run 1 works")
            .then_some(())
    });
    let pid = control_worker(&home, "w")["pid"].as_u64().unwrap() as u32;
    server.track(pid);

    let mut f = Follow::start(&home, &["logs", "w", "-f", "-n", "2"]);
    f.wait_for("run 1 works");
    let out = home.run(&["restart", "w"]);
    assert!(out.status.success(), "{out:?}");
    let seen = f.wait_for("run 2 works").to_vec();
    assert!(
        seen.iter()
            .any(|l| l.contains("[vigil] started generation 2")),
        "the restart's marker is followed: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("[vigil] generation 1 stopped")),
        "the exit note of generation 1 is followed: {seen:?}"
    );
    assert_eq!(f.interrupt().code(), Some(0));

    let out = home.run(&["logs", "w", "--previous"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let prev = texts(&out.stdout);
    assert!(
        prev[0].starts_with("[vigil] started generation 1, pid"),
        "{prev:?}"
    );
    assert!(prev.contains(&"run 1 works".to_string()), "{prev:?}");
    assert!(!prev.iter().any(|l| l.contains("run 2")), "{prev:?}");

    let out = home.run(&["logs", "w", "-n", "3"]);
    let last = texts(&out.stdout);
    assert_eq!(
        last[1..],
        ["run 2 begins".to_string(), "run 2 works".to_string()],
        "{last:?}"
    );
    assert!(server.terminate(LONG).is_some_and(|s| s.success()));
    // Without a server, the same lines.
    let again = home.run(&["logs", "w", "--previous"]);
    assert_eq!(texts(&again.stdout), prev);
}
