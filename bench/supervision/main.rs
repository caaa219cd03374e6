//! `cargo bench --bench supervision`: vigil against the OS floor, in one run.
//!
//! Starts the real release `vigil serve` on generated configs and, in the same run, a minimal
//! spawn/`waitpid` loop (the floor, see `floor`) on the same worker binary, then measures:
//! restart latency (kill -9 → the new worker's first instruction), the server's own exit
//! notification latency (from its dump), time until N workers all run, 10 s of idle (CPU,
//! context switches of every server thread, memory), a storm (kill -9 of every worker group at
//! once: time until all run again, exit records written) and `vigil dump --json` latency. It
//! prints a Markdown report on stdout (progress on stderr) and exits 1 if a measurement could
//! not be made; missed goals are reported, not fatal.
//!
//! Options (after `--`): `--trials N` (100), `--settle-ms N` (150), `--scale 100,1000`,
//! `--idle-secs N` (10), `--dump-runs N` (30), `--only restart|restart-user|groups|scale`, `--keep` (keep the
//! scratch directory). It owns nothing of the server: it drives it only from the outside
//! (config, signals, CLI), as a user would.

mod floor;
mod groups;
mod procstat;
mod starts;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::os::unix::process::CommandExt;

use starts::StartLog;

type Res<T> = Result<T, String>;

/// The vigil binary cargo built for this bench; `VIGIL_BENCH_BIN` measures another one (an
/// older build, for before/after figures).
fn vigil_bin() -> String {
    std::env::var("VIGIL_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vigil").to_string())
}
const WORKER_C: &str = include_str!("worker.c");

/// The policy of every generated worker: restart at once, never escalate, running at spawn.
const FAST_POLICY: &str = r#"restart: Permanent, backoff: (initial: "0s", max: "1s", jitter: 0.0), start_secs: "0s", intensity: (max_restarts: 100000, within: "60s")"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor-supervisor") {
        if let Err(e) = floor::run(&args[1..]) {
            eprintln!("floor: {e}");
            std::process::exit(1);
        }
        return;
    }
    let result = Opts::parse(&args).and_then(|opts| run(&opts));
    match result {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}

struct Opts {
    trials: usize,
    settle: Duration,
    scales: Vec<usize>,
    idle: Duration,
    dump_runs: usize,
    only: Option<String>,
    keep: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut o = Opts {
            trials: 100,
            settle: Duration::from_millis(150),
            scales: vec![100, 1000],
            idle: Duration::from_secs(10),
            dump_runs: 30,
            only: None,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
            let num = |v: String| v.parse::<u64>().map_err(|e| format!("{a} {v}: {e}"));
            match a.as_str() {
                "--bench" => {}
                "--trials" => o.trials = num(val()?)? as usize,
                "--settle-ms" => o.settle = Duration::from_millis(num(val()?)?),
                "--idle-secs" => o.idle = Duration::from_secs(num(val()?)?),
                "--dump-runs" => o.dump_runs = num(val()?)? as usize,
                "--scale" => {
                    o.scales = val()?
                        .split(',')
                        .map(|s| s.parse().map_err(|e| format!("--scale {s}: {e}")))
                        .collect::<Res<_>>()?
                }
                "--only" => o.only = Some(val()?),
                "--keep" => o.keep = true,
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }

    fn wants(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == part)
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn log(msg: &str) {
    eprintln!("[bench {}] {msg}", jiff_like_time());
}

fn jiff_like_time() -> String {
    let s = now_ns() / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// Median, p95 and friends of a list of milliseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    n: usize,
    min: f64,
    median: f64,
    p95: f64,
    max: f64,
}

fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Stats::default();
    }
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Stats {
        n: v.len(),
        min: v[0],
        median,
        p95: rank(0.95),
        max: v[v.len() - 1],
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisors under test
// ---------------------------------------------------------------------------------------------

/// A supervisor (vigil or the floor) running `n` workers that append to one START file.
struct Supervised {
    label: &'static str,
    child: Child,
    launched_ns: i64,
    starts: StartLog,
    n: usize,
    /// vigil's config (None for the floor).
    config: Option<PathBuf>,
    /// Workers lead their own process group (vigil) or share the supervisor's (floor).
    leaders: bool,
}

impl Supervised {
    fn floor(worker: &Path, dir: &Path, n: usize) -> Res<Supervised> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("starts");
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let launched_ns = now_ns();
        let child = Command::new(exe)
            .arg("--floor-supervisor")
            .arg(worker)
            .arg(&file)
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the floor: {e}"))?;
        Ok(Supervised {
            label: "floor",
            child,
            launched_ns,
            starts: StartLog::new(&file),
            n,
            config: None,
            leaders: false,
        })
    }

    fn vigil(worker: &Path, dir: &Path, n: usize) -> Res<Supervised> {
        Self::vigil_with(worker, dir, n, "vigil", "", "")
    }

    /// vigil with extra top-level config fields (e.g. `cgroup: Off,`) and extra fields on
    /// every worker (e.g. `user: "nobody",`).
    fn vigil_with(
        worker: &Path,
        dir: &Path,
        n: usize,
        label: &'static str,
        extra: &str,
        fields: &str,
    ) -> Res<Supervised> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("starts");
        let mut workers = String::new();
        for id in 0..n {
            workers.push_str(&worker_entry(worker, &file, id, fields));
        }
        Self::vigil_config(dir, n, label, extra, &workers)
    }

    /// vigil on a config whose `workers: [...]` list is `workers` (entries from
    /// [`worker_entry`], possibly inside groups), `n` workers in all.
    fn vigil_config(
        dir: &Path,
        n: usize,
        label: &'static str,
        extra: &str,
        workers: &str,
    ) -> Res<Supervised> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("starts");
        let config = dir.join("config.ron");
        std::fs::write(
            &config,
            format!("(\n    data_dir: \"var\",\n    {extra}\n    workers: [\n{workers}    ],\n)\n"),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let stderr = std::fs::File::create(dir.join("server.stderr")).map_err(|e| e.to_string())?;
        let launched_ns = now_ns();
        let child = Command::new(vigil_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", vigil_bin()))?;
        Ok(Supervised {
            label,
            child,
            launched_ns,
            starts: StartLog::new(&file),
            n,
            config: Some(config),
            leaders: true,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until every worker has written START; the time from launch to the last first START.
    fn all_up(&mut self, within: Duration) -> Res<f64> {
        let deadline = Instant::now() + within;
        while self.starts.latest.len() < self.n {
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: only {} of {} workers started within {within:?}",
                    self.label,
                    self.starts.latest.len(),
                    self.n
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited early: {status}", self.label));
            }
            self.starts.poll();
            std::thread::sleep(Duration::from_millis(2));
        }
        let last = self.starts.latest.values().map(|s| s.ns).max().unwrap_or(0);
        Ok((last - self.launched_ns) as f64 / 1e6)
    }

    fn kill_worker(&self, pid: u32) {
        let pid = pid as i32;
        if pid > 1 {
            // SAFETY: kill/killpg on a worker this run started (pid > 1, never a broadcast).
            unsafe {
                if self.leaders {
                    libc::killpg(pid, libc::SIGKILL);
                } else {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// kill -9 worker `id`; ms from just before the kill to the replacement's START.
    fn restart_trial(&mut self, id: usize) -> Res<f64> {
        self.starts.poll();
        let old = *self
            .starts
            .latest
            .get(&id)
            .ok_or(format!("{}: worker {id} never started", self.label))?;
        if old.pid <= 1 {
            return Err(format!("{}: bad pid in a START line", self.label));
        }
        let t0 = now_ns();
        // SAFETY: kill on the worker's pid (> 1, read from its own START line).
        unsafe { libc::kill(old.pid as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.starts.poll();
            if let Some(s) = self.starts.latest.get(&id) {
                if s.pid != old.pid {
                    return Ok((s.ns - t0) as f64 / 1e6);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: worker {id} not restarted within 10 s",
                    self.label
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// kill -9 every worker (group) at once; ms until all run again, or an error.
    fn storm(&mut self, within: Duration) -> Res<f64> {
        self.starts.poll();
        let before: Vec<(usize, u32)> = self
            .starts
            .latest
            .iter()
            .map(|(i, s)| (*i, s.pid))
            .collect();
        let t0 = now_ns();
        for (_, pid) in &before {
            self.kill_worker(*pid);
        }
        let deadline = Instant::now() + within;
        loop {
            self.starts.poll();
            let back = before
                .iter()
                .filter(|(id, pid)| self.starts.latest.get(id).is_some_and(|s| s.pid != *pid))
                .count();
            if back == before.len() {
                let last = before
                    .iter()
                    .filter_map(|(id, _)| self.starts.latest.get(id))
                    .map(|s| s.ns)
                    .max()
                    .unwrap_or(t0);
                return Ok((last - t0) as f64 / 1e6);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: only {back} of {} workers back within {within:?}",
                    self.label,
                    before.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Run a vigil CLI command against this server's config.
    fn vigil_cmd(&self, args: &[&str]) -> Res<std::process::Output> {
        let config = self.config.as_ref().ok_or("not a vigil server")?;
        Command::new(vigil_bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run vigil {}: {e}", args.join(" ")))
    }

    /// The server's dump: through `vigil dump --json`, or, while the control socket is not
    /// there, through the SIGUSR1 dump the server writes to its log.
    fn dump(&self) -> Res<serde_json::Value> {
        let out = self.vigil_cmd(&["dump", "--json"])?;
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).map_err(|e| format!("dump: {e}"));
        }
        let log = self
            .config
            .as_ref()
            .and_then(|c| c.parent())
            .map(|d| d.join("var/log/vigil.log"))
            .ok_or("no log")?;
        let seen = std::fs::read_to_string(&log).unwrap_or_default().len();
        // SAFETY: kill on the server this run started.
        unsafe { libc::kill(self.pid() as i32, libc::SIGUSR1) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let Some(fresh) = text.get(seen..) else {
                continue;
            };
            if let Some(pos) = fresh.find("SIGUSR1 dump:\n") {
                let json = &fresh[pos + "SIGUSR1 dump:\n".len()..];
                if let Some(Ok(v)) = serde_json::Deserializer::from_str(json)
                    .into_iter::<serde_json::Value>()
                    .next()
                {
                    return Ok(v);
                }
            }
        }
        Err(format!(
            "no dump: `vigil dump` said {:?} and no SIGUSR1 dump in the log",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// SIGTERM; ms until the process exited (Err after `within`).
    fn stop(&mut self, within: Duration) -> Res<f64> {
        let t0 = Instant::now();
        // SAFETY: kill on the supervisor this run started.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        while t0.elapsed() < within {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(t0.elapsed().as_secs_f64() * 1e3);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!(
            "{} still running {within:?} after SIGTERM",
            self.label
        ))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: killpg on the group this run created for the supervisor, which is alive
            // (so the number is still its group). vigil's workers die with it (PDEATHSIG); the
            // floor's are in this group.
            unsafe { libc::killpg(self.pid() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        // Workers that outlived their supervisor (the floor's, after a SIGTERM). Only a process
        // that /proc still shows as our worker, in the expected group, is signalled: a pid or
        // group number reused by someone else is never hit.
        self.starts.poll();
        for s in self.starts.latest.values() {
            let group = if self.leaders { s.pid } else { self.pid() };
            if is_our_worker(s.pid, group) {
                // SAFETY: kill on a process just verified to be this run's worker (pid > 1).
                unsafe { libc::kill(s.pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// One generated worker's config entry: worker `id` appending to `file`, the fast policy.
fn worker_entry(worker: &Path, file: &Path, id: usize, fields: &str) -> String {
    format!(
        "        (name: \"w{id}\", kind: Command(argv: [{:?}, {:?}, \"{id}\"]), {fields} {FAST_POLICY}),\n",
        worker.display().to_string(),
        file.display().to_string(),
    )
}

/// Whether `pid` is a live `bench-worker` in process group `group`.
fn is_our_worker(pid: u32, group: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next();
    let pgrp = rest.nth(1).and_then(|v| v.parse::<u32>().ok());
    pid > 1 && comm == "bench-worker" && state != Some("Z") && pgrp == Some(group)
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

fn build_worker(dir: &Path) -> Res<PathBuf> {
    let src = dir.join("worker.c");
    let bin = dir.join("bench-worker");
    std::fs::write(&src, WORKER_C).map_err(|e| e.to_string())?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-Wall", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run {cc} to build the worker: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(bin)
}

fn run(opts: &Opts) -> Res<String> {
    let scratch = tempfile::Builder::new()
        .prefix("vigil-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let result = run_in(opts, scratch.path());
    if opts.keep {
        log(&format!("scratch kept in {}", scratch.keep().display()));
    }
    result
}

fn run_in(opts: &Opts, root: &Path) -> Res<String> {
    let worker = build_worker(root)?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    let mut r = String::new();
    let mut goals: Vec<(String, String, bool)> = Vec::new();

    if opts.wants("restart") {
        restart_latency(opts, root, &worker, &mut r, &mut goals)?;
    }
    if opts.wants("restart-user") {
        restart_user_cost(opts, root, &worker, &mut r, &mut goals)?;
    }
    if opts.wants("groups") {
        groups::run(opts, root, &worker, &mut r, &mut goals)?;
    }
    if opts.wants("scale") {
        for &n in &opts.scales {
            scale(
                opts,
                root,
                &worker,
                n,
                n == *opts.scales.iter().max().unwrap_or(&n),
                &mut r,
                &mut goals,
            )?;
        }
    }

    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut head = String::new();
    let _ = writeln!(head, "## Run\n");
    let _ = writeln!(
        head,
        "- date: {} UTC; took {:.0} s",
        cmd_out("date", &["-u", "+%F %T"]),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        head,
        "- machine: {} CPUs, kernel {}, loadavg before {} / after {}",
        cmd_out("nproc", &[]),
        cmd_out("uname", &["-r"]),
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let _ = writeln!(
        head,
        "- vigil: {} ({}); worker: bench/supervision/worker.c built with cc -O2",
        vigil_bin(),
        cmd_out("git", &["describe", "--always", "--dirty"]),
    );
    let _ = writeln!(
        head,
        "- workers' policy: `{FAST_POLICY}`\n- options: trials={} settle={:?} scale={:?} idle={:?} dump_runs={}\n",
        opts.trials, opts.settle, opts.scales, opts.idle, opts.dump_runs
    );
    let _ = writeln!(
        r,
        "## Goals (issues 7, 13)\n\n| goal | measured | met |\n|---|---|---|"
    );
    for (goal, measured, ok) in &goals {
        let _ = writeln!(
            r,
            "| {goal} | {measured} | {} |",
            if *ok { "yes" } else { "**NO**" }
        );
    }
    Ok(head + &r)
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn restart_latency(
    opts: &Opts,
    root: &Path,
    worker: &Path,
    r: &mut String,
    goals: &mut Vec<(String, String, bool)>,
) -> Res<()> {
    log(&format!(
        "restart latency: {} trials each, floor and vigil interleaved",
        opts.trials
    ));
    let mut floor = Supervised::floor(worker, &root.join("restart-floor"), 1)?;
    let mut vigil = Supervised::vigil(worker, &root.join("restart-vigil"), 1)?;
    // The same server with process groups only: what the cgroup per worker costs.
    let mut plain = Supervised::vigil_with(
        worker,
        &root.join("restart-vigil-pgroup"),
        1,
        "vigil-pgroup",
        "cgroup: Off,",
        "",
    )?;
    floor.all_up(Duration::from_secs(10))?;
    vigil.all_up(Duration::from_secs(30))?;
    plain.all_up(Duration::from_secs(30))?;
    std::thread::sleep(opts.settle);
    let (mut f, mut v, mut p) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..opts.trials {
        // Rotate the order so that none always runs right after another.
        let mut order: [&mut Supervised; 3] = [&mut floor, &mut vigil, &mut plain];
        order.rotate_left(i % 3);
        for s in order {
            let ms = s.restart_trial(0)?;
            std::thread::sleep(opts.settle);
            match s.label {
                "floor" => f.push(ms),
                "vigil" => v.push(ms),
                _ => p.push(ms),
            }
        }
        if (i + 1) % 25 == 0 {
            log(&format!("  {} trials", i + 1));
        }
    }
    let (fs, vs, ps) = (stats(&f), stats(&v), stats(&p));
    let containment = vigil
        .dump()
        .ok()
        .and_then(|d| {
            d["root"]["children"][0]["containment"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(
        r,
        "## Restart latency: kill -9 → the new worker's first instruction (ms)\n"
    );
    let _ = writeln!(
        r,
        "| supervisor | n | min | **median** | p95 | max | median / floor |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    let with_cgroup = format!("vigil serve (containment: {containment})");
    for (name, s) in [
        ("floor (posix_spawn + waitpid loop)", fs),
        (with_cgroup.as_str(), vs),
        ("vigil serve (cgroup: Off, process group)", ps),
    ] {
        let _ = writeln!(
            r,
            "| {name} | {} | {:.2} | **{:.2}** | {:.2} | {:.2} | {:.2}× |",
            s.n,
            s.min,
            s.median,
            s.p95,
            s.max,
            s.median / fs.median
        );
    }
    goals.push((
        "a cgroup per worker costs ≤ 0.5 ms of restart latency (median, vs cgroup: Off)".into(),
        format!(
            "{:.2} ms vs {:.2} ms = {:+.2} ms",
            vs.median,
            ps.median,
            vs.median - ps.median
        ),
        vs.median - ps.median <= 0.5,
    ));
    let ratio = vs.median / fs.median;
    goals.push((
        "restart latency median ≤ 1.5× floor".into(),
        format!("{:.2} ms vs {:.2} ms = {ratio:.2}×", vs.median, fs.median),
        ratio <= 1.5,
    ));
    goals.push((
        "restart latency median below every peer (best: daemontools 2.9 ms in RESULTS.md)".into(),
        format!("{:.2} ms", vs.median),
        vs.median < 2.9,
    ));
    // The server's own view: exit → WorkerSupervisor handling it.
    match vigil.dump() {
        Ok(dump) => {
            let w = &dump["root"]["children"][0];
            let n = &w["exit_notify_us"];
            let _ = writeln!(
                r,
                "\nExit notification latency (the leader reaped → its WorkerSupervisor handling the exit), \
                 from the server's dump (`exit_notify_us`, last {} exits): last {} µs, p50 {} µs, p95 {} µs, max {} µs; restarts counted by the server: {}.\n",
                n["count"], n["last"], n["p50"], n["p95"], n["max"], w["restarts"]
            );
        }
        Err(e) => {
            let _ = writeln!(r, "\nExit notification latency: not measured ({e}).\n");
        }
    }
    floor.stop(Duration::from_secs(5)).ok();
    plain.stop(Duration::from_secs(30)).ok();
    vigil.stop(Duration::from_secs(30))?;
    Ok(())
}

/// What running the worker as another user costs a restart: vigil with `user: "nobody"`
/// against vigil without, interleaved (the user switch is three system calls in the spawn's
/// child, and the passwd/group lookups of each start). Needs root; otherwise reported as not
/// measured.
fn restart_user_cost(
    opts: &Opts,
    root: &Path,
    worker: &Path,
    r: &mut String,
    goals: &mut Vec<(String, String, bool)>,
) -> Res<()> {
    let _ = writeln!(
        r,
        "## Restart latency with `user`: kill -9 → the new worker's first instruction (ms)\n"
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        log("restart-user: not root; skipped");
        let _ = writeln!(r, "Not measured: switching users needs root.\n");
        return Ok(());
    }
    log(&format!(
        "restart latency with user: {} trials each, without and with user interleaved",
        opts.trials
    ));
    // The worker (as nobody) must reach its binary and append to its starts file.
    let open = |dir: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", dir.display()))
    };
    open(root, 0o755)?;
    let plain_dir = root.join("restart-plain");
    let user_dir = root.join("restart-user");
    let mut plain = Supervised::vigil_with(worker, &plain_dir, 1, "vigil", "", "")?;
    std::fs::create_dir_all(&user_dir).map_err(|e| e.to_string())?;
    open(&user_dir, 0o777)?;
    let mut user = Supervised::vigil_with(
        worker,
        &user_dir,
        1,
        "vigil (user: nobody)",
        "",
        r#"user: "nobody","#,
    )?;
    plain.all_up(Duration::from_secs(30))?;
    user.all_up(Duration::from_secs(30))?;
    std::thread::sleep(opts.settle);
    let (mut p, mut u) = (Vec::new(), Vec::new());
    for i in 0..opts.trials {
        let order: [&mut Supervised; 2] = if i % 2 == 0 {
            [&mut plain, &mut user]
        } else {
            [&mut user, &mut plain]
        };
        for s in order {
            let ms = s.restart_trial(0)?;
            std::thread::sleep(opts.settle);
            if s.label == "vigil" {
                p.push(ms)
            } else {
                u.push(ms)
            }
        }
        if (i + 1) % 25 == 0 {
            log(&format!("  {} trials", i + 1));
        }
    }
    let (ps, us) = (stats(&p), stats(&u));
    let _ = writeln!(r, "| server | n | min | **median** | p95 | max |");
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for (name, s) in [("vigil serve", ps), ("vigil serve, `user: \"nobody\"`", us)] {
        let _ = writeln!(
            r,
            "| {name} | {} | {:.2} | **{:.2}** | {:.2} | {:.2} |",
            s.n, s.min, s.median, s.p95, s.max
        );
    }
    let delta = us.median - ps.median;
    let _ = writeln!(r, "\nMedian difference: {delta:+.3} ms.\n");
    goals.push((
        "restart with `user` within 0.1 ms of without (issue 15)".into(),
        format!(
            "{:.2} ms vs {:.2} ms = {delta:+.3} ms",
            us.median, ps.median
        ),
        delta <= 0.1,
    ));
    plain.stop(Duration::from_secs(30))?;
    user.stop(Duration::from_secs(30))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn scale(
    opts: &Opts,
    root: &Path,
    worker: &Path,
    n: usize,
    storm_and_dump: bool,
    r: &mut String,
    goals: &mut Vec<(String, String, bool)>,
) -> Res<()> {
    log(&format!("scale {n}: floor"));
    let mut floor = Supervised::floor(worker, &root.join(format!("scale{n}-floor")), n)?;
    let floor_up = floor.all_up(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_millis(500));
    let floor_storm = if storm_and_dump {
        Some(floor.storm(Duration::from_secs(30))?)
    } else {
        None
    };
    drop(floor);

    log(&format!("scale {n}: vigil"));
    let mut vigil = Supervised::vigil(worker, &root.join(format!("scale{n}-vigil")), n)?;
    let vigil_up = vigil.all_up(Duration::from_secs(60))?;
    log(&format!(
        "scale {n}: all up in {vigil_up:.0} ms; settling 2 s, then {:?} idle",
        opts.idle
    ));
    std::thread::sleep(Duration::from_secs(2));
    let pid = vigil.pid();
    let before = procstat::sample(pid).ok_or("server gone")?;
    std::thread::sleep(opts.idle);
    let after = procstat::sample(pid).ok_or("server gone")?;
    let d = procstat::delta(&before, &after);
    let secs = opts.idle.as_secs_f64();
    let wakeups = d.switches as f64 / secs;
    let rss = after.rss_kib as f64 / 1024.0;

    let _ = writeln!(r, "## Scale: {n} sleeping workers\n");
    let _ = writeln!(
        r,
        "| supervisor | all up ms | / floor | idle CPU % (ticks / schedstat) | wakeups/s | threads | RSS MiB | PSS MiB |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(r, "| floor | {floor_up:.0} | 1.00× | | | | | |");
    let _ = writeln!(
        r,
        "| vigil serve | {vigil_up:.0} | {:.2}× | {:.3} / {:.4} | {wakeups:.1} | {} | {rss:.1} | {:.1} |",
        vigil_up / floor_up,
        d.cpu_ms_ticks / secs / 10.0,
        d.cpu_ms_sched / secs / 10.0,
        d.threads,
        after.pss_kib as f64 / 1024.0,
    );
    let _ = writeln!(
        r,
        "\nIdle window {secs:.0} s after a 2 s settle; threads that switched: {}; threads appeared/gone: {}.\n",
        if d.wakers.is_empty() {
            "none".to_string()
        } else {
            d.wakers.join(", ")
        },
        d.thread_churn
    );
    if n == 100 {
        goals.push((
            "100 workers up ≤ 2× floor".into(),
            format!(
                "{vigil_up:.0} ms vs {floor_up:.0} ms = {:.2}×",
                vigil_up / floor_up
            ),
            vigil_up <= 2.0 * floor_up,
        ));
    }
    if n == 1000 {
        goals.push((
            "1000 workers up ≤ 2 s".into(),
            format!("{vigil_up:.0} ms"),
            vigil_up <= 2000.0,
        ));
    }
    goals.push((
        format!("idle at {n}: 0 wakeups/s"),
        format!("{wakeups:.1}/s"),
        d.switches == 0,
    ));
    let limit = if n <= 100 { 16.0 } else { 40.0 };
    if n == 100 || n == 1000 {
        goals.push((
            format!("RSS at {n} ≤ {limit} MiB"),
            format!("{rss:.1} MiB"),
            rss <= limit,
        ));
    }

    if storm_and_dump {
        log(&format!("storm: kill -9 of all {n} worker groups"));
        let back = vigil.storm(Duration::from_secs(30));
        let records = wait_records(&vigil, n)?;
        let back_txt = match &back {
            Ok(ms) => format!("{ms:.0}"),
            Err(e) => e.clone(),
        };
        let _ = writeln!(r, "## Storm: kill -9 of all {n} worker groups at once\n");
        let _ = writeln!(
            r,
            "| supervisor | all back ms | exit records written (must be {n}) |"
        );
        let _ = writeln!(r, "|---|---|---|");
        if let Some(fs) = floor_storm {
            let _ = writeln!(r, "| floor | {fs:.0} | (none kept) |");
        }
        let _ = writeln!(r, "| vigil serve | {back_txt} | {records} |\n");
        goals.push((
            format!("storm: all {n} back ≤ 3 s"),
            format!("{back_txt} ms"),
            back.as_ref().is_ok_and(|ms| *ms <= 3000.0),
        ));
        goals.push((
            format!("storm: exactly {n} exit records"),
            records.to_string(),
            records == n,
        ));
        if let Ok(dump) = vigil.dump() {
            notify_after_storm(&dump, r);
        }

        log(&format!(
            "dump latency at {n} workers: {} runs",
            opts.dump_runs
        ));
        match dump_latency(&vigil, opts.dump_runs, n) {
            Ok(s) => {
                let _ = writeln!(
                    r,
                    "## `vigil dump --json` at {n} workers (ms, whole command)\n"
                );
                let _ = writeln!(
                    r,
                    "| n | min | **median** | p95 | max |\n|---|---|---|---|---|"
                );
                let _ = writeln!(
                    r,
                    "| {} | {:.1} | **{:.1}** | {:.1} | {:.1} |\n",
                    s.n, s.min, s.median, s.p95, s.max
                );
                goals.push((
                    format!("dump at {n} ≤ 50 ms"),
                    format!("{:.1} ms", s.median),
                    s.median <= 50.0,
                ));
            }
            Err(e) => {
                let _ = writeln!(
                    r,
                    "## `vigil dump --json` at {n} workers\n\nnot measured: {e}\n"
                );
                goals.push((format!("dump at {n} ≤ 50 ms"), "not measured".into(), false));
            }
        }
    }
    let stop = vigil.stop(Duration::from_secs(60))?;
    let _ = writeln!(
        r,
        "Shutdown of {n} workers (SIGTERM → server exited): {stop:.0} ms.\n"
    );
    Ok(())
}

/// Wait until `vigil history` holds `expected` records (10 s at most), then 1 s more to catch
/// extras; returns how many there are.
fn wait_records(vigil: &Supervised, expected: usize) -> Res<usize> {
    let count = || -> Res<usize> {
        let out = vigil.vigil_cmd(&["history", "--json", "--limit", "100000"])?;
        if !out.status.success() {
            return Err(format!(
                "vigil history: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("history: {e}"))?;
        Ok(v.as_array().map_or(0, Vec::len))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count()? < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    count()
}

fn notify_after_storm(dump: &serde_json::Value, r: &mut String) {
    let Some(children) = dump["root"]["children"].as_array() else {
        return;
    };
    let last: Vec<f64> = children
        .iter()
        .filter_map(|w| w["exit_notify_us"]["last"].as_f64())
        .map(|us| us / 1000.0)
        .collect();
    if last.is_empty() {
        return;
    }
    let s = stats(&last);
    let _ = writeln!(
        r,
        "Exit notification latency during the storm (each worker's `exit_notify_us.last`, ms): \
         n {} · min {:.2} · median {:.2} · p95 {:.2} · max {:.2}.\n",
        s.n, s.min, s.median, s.p95, s.max
    );
}

fn dump_latency(vigil: &Supervised, runs: usize, n: usize) -> Res<Stats> {
    let first = vigil.vigil_cmd(&["dump", "--json"])?;
    if !first.status.success() {
        return Err(format!(
            "`vigil dump --json` failed: {}",
            String::from_utf8_lossy(&first.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&first.stdout).map_err(|e| format!("dump: {e}"))?;
    let workers = v["root"]["children"].as_array().map_or(0, Vec::len);
    if workers != n {
        return Err(format!("the dump has {workers} workers, expected {n}"));
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = vigil.vigil_cmd(&["dump", "--json"])?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if !out.status.success() {
            return Err("`vigil dump --json` failed".into());
        }
    }
    Ok(stats(&ms))
}
