//! Shared helpers for integration tests: a temporary vigil home, a server guard that always
//! cleans up, and condition waits with generous deadlines (never fixed sleeps).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// The vigil binary under test.
pub fn vigil_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vigil")
}

/// A temporary directory holding `config.ron`, `var/`, and whatever the workers write.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// A new home whose config is `workers` (RON worker tuples, comma-separated) with extra
    /// top-level fields in `extra` (e.g. `root: (...),`).
    pub fn new(extra: &str, workers: &str) -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home { dir };
        home.write_config(extra, workers);
        home
    }

    pub fn write_config(&self, extra: &str, workers: &str) {
        let text = format!(
            "(\n    data_dir: \"var\",\n    {extra}\n    workers: [\n{workers}\n    ],\n)\n"
        );
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("config.ron")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    pub fn log(&self, worker: &str) -> PathBuf {
        self.path().join("var/log").join(format!("{worker}.log"))
    }

    /// Run `vigil <args> --config <this config>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(vigil_bin())
            .args(args)
            .arg("--config")
            .arg(self.config())
            .current_dir(self.path())
            .output()
            .expect("run vigil")
    }

    /// `vigil history --json` (optionally for one worker), parsed.
    pub fn history(&self, worker: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["history", "--json", "--limit", "1000"];
        if let Some(w) = worker {
            args.insert(1, w);
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "history failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("history --json is JSON")
    }

    /// Lines of a file written by workers (empty when it does not exist yet).
    pub fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.file(name))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The pids workers appended to `name`, one per line (the first word of each line).
    pub fn pids(&self, name: &str) -> Vec<u32> {
        self.lines(name)
            .iter()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Start `vigil serve` on this home.
    pub fn serve(&self) -> Server {
        Server::start(self)
    }
}

/// A running `vigil serve`. Dropping it stops the server (SIGTERM, then SIGKILL of its group)
/// and kills any worker group it recorded, even when the test failed.
/// Each thread of `pid`: name, state, and the kernel function it sleeps in (for a hang).
pub fn threads_of(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "(gone)".into();
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let stat = read("stat");
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
            .unwrap_or_default();
        let status = read("status");
        let sig = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        out.push_str(&format!(
            "  {} {:?} {} wchan={} syscall={} SigPnd={} SigBlk={}\n",
            task.file_name().to_string_lossy(),
            read("comm"),
            state,
            read("wchan"),
            read("syscall").split_whitespace().next().unwrap_or(""),
            sig("SigPnd:"),
            sig("SigBlk:"),
        ));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for key in ["ShdPnd:", "SigIgn:", "SigCgt:"] {
        if let Some(line) = status.lines().find(|l| l.starts_with(key)) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

pub struct Server {
    pub child: Child,
    pub pid: u32,
    stderr_path: PathBuf,
    groups: Vec<u32>,
}

impl Server {
    pub fn start(home: &Home) -> Server {
        let stderr_path = home.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = Command::new(vigil_bin())
            .args(["serve", "--config"])
            .arg(home.config())
            .current_dir(home.path())
            .env("VIGIL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("spawn vigil serve");
        let pid = child.id();
        Server {
            child,
            pid,
            stderr_path,
            groups: Vec::new(),
        }
    }

    /// Guard a server started by the test itself.
    pub fn adopt(child: Child, home: &Path) -> Server {
        let pid = child.id();
        Server {
            child,
            pid,
            stderr_path: home.join("server.stderr"),
            groups: Vec::new(),
        }
    }

    /// Remember a worker group to kill on drop (belt and braces).
    pub fn track(&mut self, pgid: u32) {
        self.groups.push(pgid);
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on the server we spawned.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    /// SIGTERM and wait for the exit status (bounded).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let status = self.wait(within);
        // VIGIL_TEST_GDB=1: also every thread's stack (gdb), to find where a hang waits.
        if status.is_none() && std::env::var_os("VIGIL_TEST_GDB").is_some() {
            let bt = Command::new("gdb")
                .args([
                    "-p",
                    &self.pid.to_string(),
                    "-batch",
                    "-ex",
                    "thread apply all bt",
                ])
                .output();
            if let Ok(bt) = bt {
                eprintln!("GDB:\n{}", String::from_utf8_lossy(&bt.stdout));
            }
        }
        if status.is_none() {
            eprintln!(
                "the server did not exit within {within:?} of SIGTERM; its threads:\n{}\nits stderr:\n{}",
                threads_of(self.pid),
                self.stderr()
            );
            // Was the signal lost on the way, or is the server deaf to it? Ask once more.
            self.signal(libc::SIGTERM);
            let again = self.wait(within);
            eprintln!(
                "after a second SIGTERM: {again:?}; stderr now ends:\n{}",
                self.stderr()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        status
    }

    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if self.wait(Duration::from_secs(10)).is_none() {
                // SAFETY: killpg on the group we created for the server.
                unsafe { libc::killpg(self.pid as i32, libc::SIGKILL) };
                let _ = self.child.wait();
            }
        }
        for &g in &self.groups {
            // SAFETY: killpg on a worker group this test observed.
            unsafe { libc::killpg(g as i32, libc::SIGKILL) };
        }
        // The server's guardian lives in the server's group and may outlive it: give it a
        // moment to finish (it kills and removes what the server left, cgroups included),
        // then make sure it is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !control_group_members(self.pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: killpg on the group we created for the server.
        unsafe { libc::killpg(self.pid as i32, libc::SIGKILL) };
    }
}

/// The server's guardian: its child named `vigil-guardian`.
pub fn guardian_of(server: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
            comm.ends_with("(vigil-guardian") && ppid == Some(server)
        })
}

/// A generous deadline for anything a test waits for.
pub const LONG: Duration = Duration::from_secs(20);

/// A worker script that leaves a `sleep` grandchild in its group, recording the grandchild's
/// pid in `grandchildren` and its own in `pids`, then waits.
pub const WITH_GRANDCHILD: &str = "sleep 1000 & echo $! >> grandchildren; echo $$ >> pids; wait";

/// Poll `cond` every 10 ms until it returns `Some`, or panic with `what` after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !stat[i + 1..].trim_start().starts_with('Z'),
            None => false,
        },
        Err(_) => false,
    }
}

/// A worker tuple for the config. `script` runs under `/bin/sh -c`; `extra` adds fields.
pub fn sh_worker(name: &str, script: &str, extra: &str) -> String {
    let script = script.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "        (name: \"{name}\", kind: Command(argv: [\"/bin/sh\", \"-c\", \"{script}\"]), {extra}),"
    )
}

/// Fast-restart policy fields for tests (no jitter, no start delay).
pub const FAST: &str = "backoff: (initial: \"0s\", max: \"1s\", jitter: 0.0), start_secs: \"0s\", intensity: (max_restarts: 1000, within: \"60s\")";

// ---------------------------------------------------------------- control socket helpers
// (helper "control": dump/status over the running server's socket)

/// `vigil <args> --json` against the running server, parsed; panics with stderr on failure.
pub fn control_json(home: &Home, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = home.run(&all);
    assert!(
        out.status.success(),
        "vigil {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "vigil {all:?} printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Wait until the server answers `vigil status --json` (its control socket is up).
pub fn control_wait_ready(home: &Home) {
    wait_for(
        Duration::from_secs(30),
        "the control socket to answer",
        || {
            home.run(&["status", "--json"])
                .status
                .success()
                .then_some(())
        },
    );
}

/// One worker's node from `vigil status WORKER --json`.
pub fn control_worker(home: &Home, worker: &str) -> serde_json::Value {
    let list = control_json(home, &["status", worker]);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "status {worker}: {list}"
    );
    list[0].clone()
}

/// Pids of the live (non-zombie) members of process group `pgid`, from `/proc`.
pub fn control_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(i) = stat.rfind(')') else {
                return false;
            };
            let fields: Vec<&str> = stat[i + 1..].split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
        })
        .collect()
}

/// The contract's EXIT fields (`vigil history --json`, a node's `last_exit`).
pub const EXIT_FIELDS: [&str; 13] = [
    "worker",
    "pid",
    "generation",
    "started_at",
    "exited_at",
    "uptime_ms",
    "code",
    "signal",
    "signal_name",
    "core_dumped",
    "reason",
    "restart_delay_ms",
    "log_tail",
];
