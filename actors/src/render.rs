//! Text renderings of the live tree: the `vigil dump` tree, the `vigil status` table, and the
//! compact units they use (`3m12s`, `12.3s`, `45.1 MiB`, `3m ago`).
//!
//! Owns every word and column of the human-readable forms. It must not gather anything or read
//! the clock except in the `*_text` entry points (which pass `now` to the pure `*_at`
//! functions the tests use); it must not decide colour by itself: callers say whether stdout is
//! a terminal.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

use crate::exit::{Exit, ExitRecord};
use crate::snapshot::{Dump, Node, NodeInfo, RootInfo, WorkerSnapshot, WorkerState};

/// The dump as a tree, `systemctl status` style; ANSI colour only when `color` is set.
pub fn dump_text(dump: &Dump, color: bool) -> String {
    dump_text_at(dump, color, Timestamp::now())
}

/// One line per worker with a header row; ANSI colour only when `color` is set.
pub fn status_text(workers: &[WorkerSnapshot], color: bool) -> String {
    status_text_at(workers, color, Timestamp::now())
}

/// [`dump_text`] with an explicit "now" (for "3m ago").
pub fn dump_text_at(dump: &Dump, color: bool, now: Timestamp) -> String {
    let paint = Paint(color);
    let mut out = String::new();
    node_text(&dump.root, "", "", paint, now, &mut out);
    out
}

/// [`status_text`] with an explicit "now".
pub fn status_text_at(workers: &[WorkerSnapshot], color: bool, now: Timestamp) -> String {
    let paint = Paint(color);
    let header = [
        "WORKER",
        "STATE",
        "PID",
        "GEN",
        "UPTIME",
        "RESTARTS",
        "CPU",
        "MEMORY",
        "LAST EXIT",
    ];
    let rows: Vec<[String; 9]> = workers
        .iter()
        .map(|w| {
            [
                w.name.clone(),
                w.state.as_str().to_string(),
                opt(w.pid),
                w.generation.to_string(),
                if w.pid.is_some() {
                    ms(w.uptime_ms)
                } else {
                    "-".into()
                },
                format!(
                    "{} ({}/{})",
                    w.restarts, w.restarts_in_window, w.max_restarts
                ),
                w.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
                w.rss_bytes.map_or("-".into(), bytes),
                status_tail(w, now),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], states: Option<WorkerState>, out: &mut String| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let padded = if i == last {
                cell.clone()
            } else {
                format!("{cell:<width$}  ", width = widths[i])
            };
            match (i, states) {
                (1, Some(state)) => text.push_str(&paint.state(state, &padded)),
                _ => text.push_str(&padded),
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(&header, None, &mut out);
    for (row, w) in rows.iter().zip(workers) {
        line(row, Some(w.state), &mut out);
    }
    out
}

/// The last column of `status`: what is going on, or the last exit.
fn status_tail(w: &WorkerSnapshot, now: Timestamp) -> String {
    match (w.state, w.next_start_in_ms) {
        (WorkerState::Backoff, Some(next)) => {
            let exit = w
                .last_exit
                .as_ref()
                .map(|e| format!("; {}", exit_words(e, now)));
            format!("restart in {}{}", ms(next), exit.unwrap_or_default())
        }
        (WorkerState::Failed, Some(next)) => format!("escalated; fresh supervisor in {}", ms(next)),
        _ => w
            .last_exit
            .as_ref()
            .map_or("-".into(), |e| exit_words(e, now)),
    }
}

fn node_text(node: &Node, first: &str, rest: &str, paint: Paint, now: Timestamp, out: &mut String) {
    match &node.info {
        NodeInfo::Root(root) => root_lines(root, first, rest, paint, out),
        NodeInfo::Worker(worker) => worker_lines(worker, first, rest, paint, now, out),
        NodeInfo::Group(group) => {
            let _ = writeln!(
                out,
                "{first}{} group {} {}  {}  restarts {}",
                paint.fg(Colour::Grey, "◆"),
                paint.bold(&group.name),
                group.strategy,
                group.state,
                group.restarts
            );
        }
    }
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == count;
        let (branch, cont) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        node_text(
            child,
            &format!("{rest}{branch}"),
            &format!("{rest}{cont}"),
            paint,
            now,
            out,
        );
    }
}

fn root_lines(root: &RootInfo, first: &str, rest: &str, paint: Paint, out: &mut String) {
    let colour = if root.state == "running" {
        Colour::Green
    } else {
        Colour::Yellow
    };
    let _ = writeln!(
        out,
        "{first}{} {} {}  pid {}  up {}",
        paint.fg(colour, "●"),
        paint.bold(&root.name),
        paint.fg(colour, &root.state),
        root.pid,
        ms(root.uptime_ms)
    );
    let config = root.config_path.as_deref().unwrap_or("(none)");
    let _ = writeln!(out, "{rest}  config {config}");
    let _ = writeln!(
        out,
        "{rest}  escalations {} total, {} in window",
        root.escalations, root.escalations_in_window
    );
}

fn worker_lines(
    w: &WorkerSnapshot,
    first: &str,
    rest: &str,
    paint: Paint,
    now: Timestamp,
    out: &mut String,
) {
    // Details hang under the worker's name, behind a vertical bar when it has children.
    let pad = format!("{rest}  ");
    let _ = writeln!(
        out,
        "{first}{} {} ({}) {}{}",
        paint.state(w.state, "●"),
        paint.bold(&w.name),
        w.kind,
        paint.state(w.state, w.state.as_str()),
        state_note(w)
    );
    if w.state == WorkerState::Unresponsive {
        let _ = writeln!(
            out,
            "{pad}its supervisor did not answer in time; other fields unknown"
        );
        let _ = writeln!(out, "{pad}log {}", w.log_path);
        return;
    }
    let actor = w.actor_id.as_deref().unwrap_or("-");
    let up = if w.pid.is_some() {
        ms(w.uptime_ms)
    } else {
        "-".into()
    };
    let _ = writeln!(
        out,
        "{pad}actor {actor}  pid {}  pgid {}  generation {}  up {up}",
        opt(w.pid),
        opt(w.pgid),
        w.generation
    );
    let _ = writeln!(
        out,
        "{pad}restarts {} total, {}/{} in {} window",
        w.restarts,
        w.restarts_in_window,
        w.max_restarts,
        ms(w.intensity_window_ms)
    );
    match (w.backoff_ms, w.next_start_in_ms) {
        (Some(backoff), Some(next)) => {
            let _ = writeln!(
                out,
                "{pad}backoff {}, next start in {}",
                ms(backoff),
                ms(next)
            );
        }
        (Some(backoff), None) => {
            let _ = writeln!(out, "{pad}backoff {}", ms(backoff));
        }
        (None, Some(next)) => {
            let _ = writeln!(out, "{pad}next start in {}", ms(next));
        }
        (None, None) => {}
    }
    match &w.last_exit {
        Some(exit) => {
            let _ = writeln!(out, "{pad}last exit: {}", exit_line(exit, now));
        }
        None => {
            let _ = writeln!(out, "{pad}last exit: none");
        }
    }
    let heartbeat = w
        .heartbeat_age_ms
        .map_or("never".to_string(), |age| format!("{} ago", ms(age)));
    match &w.status_text {
        Some(text) => {
            let _ = writeln!(out, "{pad}heartbeat {heartbeat}  status: {text}");
        }
        None => {
            let _ = writeln!(out, "{pad}heartbeat {heartbeat}");
        }
    }
    if w.rss_bytes.is_some() || w.cpu_percent.is_some() || w.processes.is_some() {
        let processes = match w.processes {
            Some(1) => "1 process".to_string(),
            Some(n) => format!("{n} processes"),
            None => "? processes".to_string(),
        };
        let _ = writeln!(
            out,
            "{pad}memory {}  cpu {}  {processes}",
            w.rss_bytes.map_or("-".into(), bytes),
            w.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%"))
        );
    }
    let _ = writeln!(out, "{pad}log {}", w.log_path);
}

/// What follows the state word on a worker's first line.
fn state_note(w: &WorkerSnapshot) -> String {
    match w.state {
        WorkerState::Running | WorkerState::Starting if w.pid.is_some() => {
            format!(" since {}", ms(w.uptime_ms))
        }
        WorkerState::Backoff => match w.next_start_in_ms {
            Some(next) => format!(", restart in {}", ms(next)),
            None => String::new(),
        },
        WorkerState::Failed => match w.next_start_in_ms {
            Some(next) => format!(", escalated; fresh supervisor in {}", ms(next)),
            None => ", escalated".to_string(),
        },
        _ => String::new(),
    }
}

/// `killed by SIGSEGV (core dumped) 3m ago after 12s up`.
pub fn exit_words(exit: &ExitRecord, now: Timestamp) -> String {
    let what = Exit {
        code: exit.code,
        signal: exit.signal,
        core_dumped: exit.core_dumped,
        reason: exit.reason,
    }
    .describe();
    let when = match ago(&exit.exited_at, now) {
        Some(age) => format!(" {} ago", ms(age)),
        None => format!(" at {}", exit.exited_at),
    };
    match exit.reason {
        crate::exit::ExitReason::SpawnFailed => format!("{what}{when}"),
        _ => format!("{what}{when} after {} up", ms(exit.uptime_ms)),
    }
}

/// The dump's last-exit line: the words, the spawn error if any, and what followed.
fn exit_line(exit: &ExitRecord, now: Timestamp) -> String {
    let mut line = exit_words(exit, now);
    if exit.reason == crate::exit::ExitReason::SpawnFailed {
        if let Some(error) = exit.log_tail.last() {
            let _ = write!(line, ": {error}");
        }
    }
    if !exit.decision.is_empty() {
        let _ = write!(line, "; {}", exit.decision);
    }
    line
}

/// Milliseconds between an RFC 3339 time and `now` (0 if in the future), `None` if unparsable.
fn ago(rfc3339: &str, now: Timestamp) -> Option<u64> {
    let then: Timestamp = rfc3339.parse().ok()?;
    let diff = now.as_millisecond() - then.as_millisecond();
    Some(diff.max(0) as u64)
}

/// A duration, compactly: `250ms`, `12.3s`, `3m`, `3m12s`, `1h4m`, `2d3h`.
pub fn duration(d: Duration) -> String {
    ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`duration`] of a millisecond count.
pub fn ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match ms {
        0..S => format!("{ms}ms"),
        S..M => {
            let tenths = ms / 100;
            if tenths % 10 == 0 {
                format!("{}s", tenths / 10)
            } else {
                format!("{}.{}s", tenths / 10, tenths % 10)
            }
        }
        M..H => two(ms / M, "m", ms % M / S, "s"),
        H..D => two(ms / H, "h", ms % H / M, "m"),
        _ => two(ms / D, "d", ms % D / H, "h"),
    }
}

/// Bytes in binary units: `512 B`, `4.0 KiB`, `45.1 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn opt(v: Option<u32>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

#[derive(Clone, Copy)]
enum Colour {
    Green,
    Yellow,
    Red,
    Grey,
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn fg(self, colour: Colour, text: &str) -> String {
        if !self.0 {
            return text.to_string();
        }
        let code = match colour {
            Colour::Green => "32",
            Colour::Yellow => "33",
            Colour::Red => "31",
            Colour::Grey => "90",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn bold(self, text: &str) -> String {
        if self.0 {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn state(self, state: WorkerState, text: &str) -> String {
        let colour = match state {
            WorkerState::Running => Colour::Green,
            WorkerState::Starting
            | WorkerState::Backoff
            | WorkerState::Stopping
            | WorkerState::Waiting => Colour::Yellow,
            WorkerState::Failed | WorkerState::Unresponsive => Colour::Red,
            WorkerState::Stopped => Colour::Grey,
        };
        self.fg(colour, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitReason;

    fn now() -> Timestamp {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    fn worker(name: &str, state: WorkerState) -> WorkerSnapshot {
        WorkerSnapshot {
            name: name.into(),
            kind: "command".into(),
            state,
            actor_id: Some("0.7".into()),
            pid: None,
            pgid: None,
            generation: 0,
            restarts: 0,
            restarts_in_window: 0,
            max_restarts: 5,
            intensity_window_ms: 60_000,
            backoff_ms: None,
            next_start_in_ms: None,
            uptime_ms: 0,
            log_path: format!("/var/log/{name}.log"),
            status_text: None,
            heartbeat_age_ms: None,
            last_exit: None,
            rss_bytes: None,
            cpu_percent: None,
            processes: None,
            containment: "cgroup".into(),
            memory_max_bytes: None,
            pids_max: None,
            cpu_max: None,
            oom_kills: 0,
            exit_notify_us: None,
        }
    }

    fn segv() -> ExitRecord {
        ExitRecord {
            run_id: None,
            oom_kills: None,
            memory_peak_bytes: None,
            worker: "indexing".into(),
            pid: Some(4100),
            generation: 6,
            started_at: "2026-11-28T11:56:48Z".into(),
            exited_at: "2026-11-28T11:57:00Z".into(),
            uptime_ms: 12_000,
            code: None,
            signal: Some(11),
            signal_name: Some("SIGSEGV".into()),
            core_dumped: true,
            reason: ExitReason::Killed,
            restart_delay_ms: Some(3200),
            log_tail: vec!["boom".into()],
            decision: "restarting in 3.2s".into(),
        }
    }

    fn tree() -> Dump {
        let mut running = worker("indexing", WorkerState::Running);
        running.pid = Some(4242);
        running.pgid = Some(4242);
        running.generation = 7;
        running.restarts = 6;
        running.restarts_in_window = 2;
        running.uptime_ms = 754_000;
        running.last_exit = Some(segv());
        running.heartbeat_age_ms = Some(1_200);
        running.status_text = Some("indexed 1234 files".into());
        running.rss_bytes = Some(12_900_000);
        running.cpu_percent = Some(3.42);
        running.processes = Some(2);
        let mut looping = worker("crashy", WorkerState::Backoff);
        looping.generation = 4;
        looping.restarts = 3;
        looping.restarts_in_window = 3;
        looping.backoff_ms = Some(800);
        looping.next_start_in_ms = Some(450);
        looping.last_exit = Some(ExitRecord {
            run_id: None,
            oom_kills: None,
            memory_peak_bytes: None,
            worker: "crashy".into(),
            pid: Some(5000),
            generation: 4,
            started_at: "2026-11-28T11:59:59.900Z".into(),
            exited_at: "2026-11-28T11:59:59.950Z".into(),
            uptime_ms: 50,
            code: Some(3),
            signal: None,
            signal_name: None,
            core_dumped: false,
            reason: ExitReason::Exited,
            restart_delay_ms: Some(800),
            log_tail: vec![],
            decision: String::new(),
        });
        Dump {
            root: Node {
                info: NodeInfo::Root(RootInfo {
                    name: "root".into(),
                    state: "running".into(),
                    pid: 99,
                    uptime_ms: 3_840_000,
                    config_path: Some("/etc/vigil/config.ron".into()),
                    escalations: 1,
                    escalations_in_window: 0,
                }),
                children: vec![
                    Node {
                        info: NodeInfo::Worker(Box::new(running)),
                        children: vec![],
                    },
                    Node {
                        info: NodeInfo::Worker(Box::new(looping)),
                        children: vec![],
                    },
                ],
            },
        }
    }

    #[test]
    fn durations_are_compact() {
        let cases = [
            (0, "0ms"),
            (250, "250ms"),
            (1_000, "1s"),
            (12_345, "12.3s"),
            (59_999, "59.9s"),
            (60_000, "1m"),
            (192_000, "3m12s"),
            (3_840_000, "1h4m"),
            (3_600_000, "1h"),
            (2 * 86_400_000 + 3 * 3_600_000, "2d3h"),
        ];
        for (ms_in, want) in cases {
            assert_eq!(ms(ms_in), want, "{ms_in}");
        }
        assert_eq!(duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(4096), "4.0 KiB");
        assert_eq!(bytes(12_900_000), "12.3 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn last_exit_in_words() {
        assert_eq!(
            exit_words(&segv(), now()),
            "killed by SIGSEGV (core dumped) 3m ago after 12s up"
        );
        let mut spawn = segv();
        spawn.reason = ExitReason::SpawnFailed;
        spawn.signal = None;
        spawn.log_tail = vec!["No such file or directory (os error 2)".into()];
        spawn.decision = String::new();
        assert_eq!(
            exit_line(&spawn, now()),
            "failed to start 3m ago: No such file or directory (os error 2)"
        );
        let mut odd = segv();
        odd.exited_at = "yesterday".into();
        assert_eq!(
            exit_words(&odd, now()),
            "killed by SIGSEGV (core dumped) at yesterday after 12s up"
        );
    }

    #[test]
    fn dump_text_is_a_tree_with_every_detail() {
        let text = dump_text_at(&tree(), false, now());
        let expected = "\
● root running  pid 99  up 1h4m
  config /etc/vigil/config.ron
  escalations 1 total, 0 in window
├─ ● indexing (command) running since 12m34s
│    actor 0.7  pid 4242  pgid 4242  generation 7  up 12m34s
│    restarts 6 total, 2/5 in 1m window
│    last exit: killed by SIGSEGV (core dumped) 3m ago after 12s up; restarting in 3.2s
│    heartbeat 1.2s ago  status: indexed 1234 files
│    memory 12.3 MiB  cpu 3.4%  2 processes
│    log /var/log/indexing.log
└─ ● crashy (command) backoff, restart in 450ms
     actor 0.7  pid -  pgid -  generation 4  up -
     restarts 3 total, 3/5 in 1m window
     backoff 800ms, next start in 450ms
     last exit: exited with code 3 50ms ago after 50ms up
     heartbeat never
     log /var/log/crashy.log
";
        assert_eq!(text, expected, "\n{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn colour_only_when_asked() {
        let text = dump_text_at(&tree(), true, now());
        assert!(text.contains("\x1b[32mrunning\x1b[0m"), "{text}");
        assert!(text.contains("\x1b[33mbackoff\x1b[0m"), "{text}");
        let plain: String = strip_ansi(&text);
        assert_eq!(plain, dump_text_at(&tree(), false, now()));
    }

    #[test]
    fn unresponsive_worker_says_so() {
        let mut dump = tree();
        dump.root.children[1].info =
            NodeInfo::Worker(Box::new(worker("stuck", WorkerState::Unresponsive)));
        let text = dump_text_at(&dump, false, now());
        assert!(
            text.contains("└─ ● stuck (command) unresponsive\n"),
            "{text}"
        );
        assert!(text.contains("did not answer in time"), "{text}");
    }

    #[test]
    fn status_is_one_aligned_line_per_worker() {
        let Dump { root } = tree();
        let workers: Vec<WorkerSnapshot> = root
            .children
            .into_iter()
            .filter_map(|n| match n.info {
                NodeInfo::Worker(w) => Some(*w),
                NodeInfo::Root(_) | NodeInfo::Group(_) => None,
            })
            .collect();
        let text = status_text_at(&workers, false, now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[1],
            "indexing  running  4242  7    12m34s  6 (2/5)   3.4%  12.3 MiB  killed by SIGSEGV (core dumped) 3m ago after 12s up"
        );
        assert_eq!(
            lines[2],
            "crashy    backoff  -     4    -       3 (3/5)   -     -         restart in 450ms; exited with code 3 50ms ago after 50ms up"
        );
        assert!(lines[0].starts_with(
            "WORKER    STATE    PID   GEN  UPTIME  RESTARTS  CPU   MEMORY    LAST EXIT"
        ));
        let coloured = status_text_at(&workers, true, now());
        assert_eq!(strip_ansi(&coloured), text);
    }

    fn strip_ansi(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
