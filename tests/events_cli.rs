//! `vigil events`: a real server's stream — a kill shows as `exited` (signal 9, the same EXIT
//! as history) then `started` with a new pid; a reader that stalls gets one `dropped` and
//! goes on while the tree keeps restarting; shutdown ends the command with exit 0.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A `vigil events` child whose stdout lines arrive on a channel; killed on drop.
struct Events {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Events {
    fn start(home: &Home, json: bool) -> Events {
        let mut cmd = Command::new(vigil_bin());
        cmd.arg("events");
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .arg("--config")
            .arg(home.config())
            .current_dir(home.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vigil events");
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
        Events {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Take the lines printed so far, waiting at most `within` for the first new one.
    fn poll(&mut self, within: Duration) -> usize {
        let before = self.seen.len();
        if let Ok(line) = self.lines.recv_timeout(within) {
            self.seen.push(line);
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
        }
        self.seen.len() - before
    }

    /// Wait until a line satisfies `want`; returns its index in `seen`.
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + LONG;
        let mut from = 0;
        loop {
            if let Some(i) = self.seen[from..].iter().position(|l| want(l)) {
                return from + i;
            }
            from = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no event {what} from vigil events; got {:#?}",
                self.seen
            );
            self.poll(left);
        }
    }

    fn json(&self, i: usize) -> Value {
        serde_json::from_str(&self.seen[i])
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.seen[i]))
    }

    /// The exit status, waiting at most `within`.
    fn exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_event(line: &str, event: &str, worker: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["event"] == event && v["worker"] == worker)
}

/// Restart `poke` until every subscriber has printed a line: from then on, each one is
/// subscribed, and nothing that follows can be missed.
fn until_subscribed(home: &Home, subscribers: &mut [&mut Events]) {
    let deadline = Instant::now() + LONG;
    while subscribers.iter().any(|s| s.seen.is_empty()) {
        assert!(Instant::now() < deadline, "the subscribers never printed");
        let out = home.run(&["restart", "poke"]);
        assert!(out.status.success(), "{out:?}");
        for s in subscribers.iter_mut() {
            s.poll(Duration::from_millis(300));
        }
    }
}

#[test]
fn a_kill_is_exited_then_started_and_shutdown_ends_the_stream_with_0() {
    let home = Home::new(
        "",
        &[
            sh_worker("sleeper", "echo up; exec sleep 1000", FAST),
            sh_worker("poke", "exec sleep 1000", FAST),
        ]
        .join("\n"),
    );
    // No server: one sentence naming the socket, exit 1.
    let out = home.run(&["events"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no vigil server is running"), "{err}");

    let mut server = home.serve();
    control_wait_ready(&home);
    let mut json = Events::start(&home, true);
    let mut human = Events::start(&home, false);
    until_subscribed(&home, &mut [&mut json, &mut human]);

    let before = control_worker(&home, "sleeper");
    let pid = before["pid"].as_u64().unwrap() as u32;
    let generation = before["generation"].as_u64().unwrap();
    server.track(pid);
    let killed = Instant::now();
    // SAFETY: kill(2) on the worker this test's server started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };

    let exited = json.wait_for("exited sleeper", |l| is_event(l, "exited", "sleeper"));
    let started = json.wait_for("started sleeper", |l| {
        is_event(l, "started", "sleeper")
            && serde_json::from_str::<Value>(l).is_ok_and(|v| v["pid"] != pid)
    });
    let latency = killed.elapsed();
    assert!(exited < started, "exited comes first: {:#?}", json.seen);
    assert!(
        latency < Duration::from_secs(1),
        "exited + started took {latency:?}"
    );
    let e = json.json(exited);
    assert_eq!(e["pid"], pid);
    assert_eq!(e["generation"], generation);
    assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let exit = &e["exit"];
    for field in EXIT_FIELDS {
        assert!(exit.get(field).is_some(), "EXIT lacks {field}: {exit}");
    }
    assert_eq!(exit["signal"], 9);
    assert_eq!(exit["signal_name"], "SIGKILL");
    assert!(exit["code"].is_null());
    let s = json.json(started);
    assert_eq!(s["generation"], generation + 1);
    let new_pid = s["pid"].as_u64().unwrap() as u32;
    server.track(new_pid);

    // The stream and history never disagree: the same record.
    let recorded = wait_for(LONG, "the exit in history", || {
        home.history(Some("sleeper"))
            .into_iter()
            .find(|r| r["pid"] == pid)
    });
    assert_eq!(&recorded, exit, "history and the event stream differ");

    // The human form: one aligned line per event.
    let line = human.wait_for("exited sleeper", |l| {
        l.contains(" exited ") && l.contains("sleeper")
    });
    let text = human.seen[line].clone();
    assert!(
        text.contains(&format!("pid {pid}")) && text.contains("killed by SIGKILL"),
        "{text}"
    );
    let started_line = human.wait_for("started sleeper", |l| {
        l.contains(" started ") && l.contains(&format!("pid {new_pid}"))
    });
    assert_eq!(
        text.find("sleeper"),
        human.seen[started_line].find("sleeper"),
        "aligned: {:#?}",
        human.seen
    );

    let out = home.run(&["shutdown"]);
    assert!(out.status.success(), "{out:?}");
    for events in [&mut json, &mut human] {
        let status = events
            .exit(LONG)
            .expect("vigil events ends with the server");
        assert_eq!(status.code(), Some(0));
        while events.poll(Duration::from_millis(50)) > 0 {}
    }
    let shutdown = json.wait_for("shutdown", |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["event"] == "shutdown" && v["worker"].is_null())
    });
    let stopped = json.wait_for("stopped sleeper", |l| is_event(l, "stopped", "sleeper"));
    assert!(shutdown < stopped, "{:#?}", json.seen);
    assert!(server.wait(LONG).is_some_and(|s| s.success()));
}

/// A raw subscriber that reads nothing while a crash loop publishes far more than its
/// buffer holds: the tree goes on restarting meanwhile, and when the reader comes back it
/// gets one `dropped` with a count, then live events again.
#[test]
fn a_stalled_reader_gets_dropped_and_never_slows_the_tree() {
    let crash = "backoff: (initial: \"0s\", max: \"0s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 1000000, within: \"60s\")";
    let home = Home::new("", &sh_worker("crasher", "exit 1", crash));
    let _server = home.serve();
    control_wait_ready(&home);

    let socket = home.path().join("var/vigil.sock");
    let mut stream = UnixStream::connect(&socket).expect("connect");
    stream.write_all(b"{\"cmd\":\"events\"}\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ack = String::new();
    reader.read_line(&mut ack).unwrap();
    let ack: Value = serde_json::from_str(&ack).expect("ack is JSON");
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["data"]["workers"][0], "crasher");

    // Not reading: the ring (1024 events) and the socket buffer fill, the tree goes on.
    let first = control_worker(&home, "crasher")["restarts"]
        .as_u64()
        .unwrap();
    wait_for(
        Duration::from_secs(120),
        "3000 restarts while the reader stalls",
        || {
            let now = control_worker(&home, "crasher")["restarts"].as_u64()?;
            (now >= first + 3000).then_some(())
        },
    );

    let deadline = Instant::now() + LONG;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut line = String::new();
    let dropped = loop {
        assert!(Instant::now() < deadline, "no dropped event");
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        let v: Value = serde_json::from_str(&line).expect("an event line is JSON");
        if v["event"] == "dropped" {
            break v;
        }
    };
    let count = dropped["count"].as_u64().unwrap_or(0);
    assert!(count > 0, "{dropped}");
    // Live events again after the gap (the crasher outruns a reader this slow, so another
    // gap may be reported first, each with its own count).
    let next = loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] != "dropped" {
            break v;
        }
        assert!(v["count"].as_u64().unwrap_or(0) > 0, "{v}");
        assert!(Instant::now() < deadline, "only gaps, no live event");
    };
    assert_eq!(next["worker"], "crasher", "{next}");
}
