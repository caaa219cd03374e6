//! `vigil history [WORKER] [--limit N] [--json] [--verbose]`: exit records, newest first.
//!
//! Owns the rendering of exit records (one line per exit, the log tail indented, or a JSON
//! list of the contract's EXIT objects). It only reads `<data_dir>/history.sqlite` through its
//! own read-only connection, so it works with or without a running server; it must not write it.
//! No database yet means no exits: an empty list, exit 0.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use vigil_actors::exit::ExitRecord;
use vigil_actors::history::{EventRecord, query_events, query_exits};

use crate::cli::HistoryArgs;
use crate::config;
use crate::error::CliError;

/// Lines of log tail shown per exit without `--verbose`.
const TAIL_LINES: usize = 3;

/// Reads the history database of `config`'s data dir and prints it.
pub fn run(config: &Path, args: &HistoryArgs) -> Result<ExitCode, CliError> {
    let loaded = config::load_for_client(config)?;
    let db = loaded.tree.history_path();
    if args.events {
        let events = query_events(&db, args.worker.as_deref(), args.limit)?;
        return write_out(&if args.json {
            json(&events)?
        } else {
            render_events(&events)
        });
    }
    let records = query_exits(&db, args.worker.as_deref(), args.limit)?;
    let text = if args.json {
        json(&records)?
    } else {
        render_text(&records, args.worker.as_deref(), args.verbose)
    };
    write_out(&text)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    let mut s = serde_json::to_string_pretty(value).map_err(|source| CliError::Encode {
        what: "the history",
        source,
    })?;
    s.push('\n');
    Ok(s)
}

fn write_out(text: &str) -> Result<ExitCode, CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `vigil history | head`: the reader has all it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::Stdout(e)),
    }
}

/// One line per supervision event, newest first.
fn render_events(events: &[EventRecord]) -> String {
    if events.is_empty() {
        return "no supervision events recorded\n".to_string();
    }
    let width = events
        .iter()
        .map(|e| e.worker.chars().count())
        .max()
        .unwrap_or(0);
    events
        .iter()
        .map(|e| {
            format!(
                "{}  {:width$}  {}  {}\n",
                short_time(&e.at),
                e.worker,
                e.kind,
                e.detail
            )
        })
        .collect()
}

/// One line per exit, then its log tail indented (the last [`TAIL_LINES`] unless `verbose`).
fn render_text(records: &[ExitRecord], worker: Option<&str>, verbose: bool) -> String {
    if records.is_empty() {
        return match worker {
            Some(w) => format!("no exits recorded for {w}\n"),
            None => "no exits recorded\n".to_string(),
        };
    }
    let width = records
        .iter()
        .map(|r| r.worker.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for r in records {
        s.push_str(&format!(
            "{}  {:width$}  gen {}  pid {}  {}  after {}",
            short_time(&r.exited_at),
            r.worker,
            r.generation,
            r.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            what_happened(r),
            vigil_actors::render::ms(r.uptime_ms),
        ));
        let next = next_step(r);
        if !next.is_empty() {
            s.push_str(&format!("  -> {next}"));
        }
        s.push('\n');
        let skip = if verbose {
            0
        } else {
            r.log_tail.len().saturating_sub(TAIL_LINES)
        };
        if skip > 0 {
            s.push_str(&format!("    ... {skip} earlier line(s), see --verbose\n"));
        }
        for line in &r.log_tail[skip..] {
            s.push_str(&format!("    | {line}\n"));
        }
    }
    s
}

/// `2026-11-28T22:10:03Z` (whole seconds, UTC); the stored text if it does not parse.
fn short_time(rfc3339: &str) -> String {
    vigil_actors::timefmt::whole_seconds(rfc3339)
}

/// `killed by SIGSEGV (core dumped)`, `exited with code 3`, `stopped (killed by SIGTERM)`, ...:
/// the library's one wording ([`ExitRecord::describe`]).
fn what_happened(r: &ExitRecord) -> String {
    r.describe()
}

/// The supervisor's decision, or the restart delay when no decision text was stored.
fn next_step(r: &ExitRecord) -> String {
    if !r.decision.is_empty() {
        return r.decision.clone();
    }
    match r.restart_delay_ms {
        Some(ms) => format!("restarting in {}", vigil_actors::render::ms(ms)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_actors::exit::ExitReason;

    fn rec() -> ExitRecord {
        ExitRecord {
            run_id: None,
            oom_kills: None,
            memory_peak_bytes: None,
            worker: "indexing".into(),
            pid: Some(1234),
            generation: 4,
            started_at: "2026-11-28T22:09:50.7Z".into(),
            exited_at: "2026-11-28T22:10:03.123456Z".into(),
            uptime_ms: 12_345,
            code: None,
            signal: Some(11),
            signal_name: Some("SIGSEGV".into()),
            core_dumped: true,
            reason: ExitReason::Killed,
            restart_delay_ms: Some(400),
            log_tail: (1..=5).map(|i| format!("line {i}")).collect(),
            decision: String::new(),
        }
    }

    #[test]
    fn one_line_then_the_tail() {
        let text = render_text(&[rec()], None, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "2026-11-28T22:10:03Z  indexing  gen 4  pid 1234  killed by SIGSEGV (core dumped)  \
             after 12.3s  -> restarting in 400ms"
        );
        assert_eq!(lines[1], "    ... 2 earlier line(s), see --verbose");
        assert_eq!(
            &lines[2..],
            ["    | line 3", "    | line 4", "    | line 5"]
        );
        let all = render_text(&[rec()], None, true);
        assert_eq!(all.lines().count(), 6);
    }

    #[test]
    fn reasons_and_durations_in_words() {
        let spawn = ExitRecord {
            pid: None,
            signal: None,
            signal_name: None,
            core_dumped: false,
            reason: ExitReason::SpawnFailed,
            restart_delay_ms: None,
            decision: "not restarted: temporary".into(),
            log_tail: vec!["No such file or directory (os error 2)".into()],
            ..rec()
        };
        let line = render_text(&[spawn], None, false);
        assert!(line.contains("pid -  failed to start"), "{line}");
        assert!(
            line.ends_with(
                "-> not restarted: temporary\n    | No such file or directory (os error 2)\n"
            ),
            "{line}"
        );
        let code = ExitRecord {
            code: Some(3),
            signal: None,
            signal_name: None,
            ..rec()
        };
        assert_eq!(what_happened(&code), "exited with code 3");
        let orphan = ExitRecord {
            signal: None,
            reason: ExitReason::Orphan,
            ..rec()
        };
        assert_eq!(
            what_happened(&orphan),
            "orphan of a dead server, killed at startup"
        );
        assert_eq!(vigil_actors::render::ms(999), "999ms");
        assert_eq!(vigil_actors::render::ms(252_000), "4m12s");
        assert_eq!(vigil_actors::render::ms(7_380_000), "2h3m");
        assert_eq!(vigil_actors::render::ms(u64::MAX), "213503982334d14h");
        assert_eq!(
            render_text(&[], Some("x"), false),
            "no exits recorded for x\n"
        );
        assert_eq!(short_time("not a time"), "not a time");
    }
}
