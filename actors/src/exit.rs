//! What one exit was: code vs signal vs core dump, why it happened, and its history record.
//!
//! Owns the pure classification of a wait status into an [`Exit`] and the [`ExitRecord`] that
//! is stored in `history.sqlite` and printed by `vigil history --json` (the contract's EXIT).
//! It must not touch processes, clocks or the database.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

use crate::signal::signal_name;

/// Why a worker's run ended (the contract's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// It exited by itself with a code.
    Exited,
    /// It was killed by a signal it was not asked to die from.
    Killed,
    /// The watchdog killed it: no heartbeat within `heartbeat_timeout`.
    Watchdog,
    /// vigil stopped it (`vigil stop`, `vigil restart`, shutdown).
    Stopped,
    /// It could not be started at all.
    SpawnFailed,
    /// A leftover of a server that died, killed at the next start.
    Orphan,
    /// The kernel's OOM killer killed one of its processes (vigil then ended the rest).
    Oom,
}

impl ExitReason {
    /// The contract's spelling (`"spawn_failed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Exited => "exited",
            ExitReason::Killed => "killed",
            ExitReason::Watchdog => "watchdog",
            ExitReason::Stopped => "stopped",
            ExitReason::SpawnFailed => "spawn_failed",
            ExitReason::Orphan => "orphan",
            ExitReason::Oom => "oom",
        }
    }

    /// Parse the contract's spelling.
    pub fn parse(s: &str) -> Option<ExitReason> {
        Some(match s {
            "exited" => ExitReason::Exited,
            "killed" => ExitReason::Killed,
            "watchdog" => ExitReason::Watchdog,
            "stopped" => ExitReason::Stopped,
            "spawn_failed" => ExitReason::SpawnFailed,
            "orphan" => ExitReason::Orphan,
            "oom" => ExitReason::Oom,
            _ => return None,
        })
    }
}

/// How a process ended, with the code and the signal kept apart (`exit 137` is code 137).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Whether the kernel wrote a core dump.
    pub core_dumped: bool,
    /// Why it ended.
    pub reason: ExitReason,
}

impl Exit {
    /// Classify a wait status. `requested` is what vigil did to the process, if anything:
    /// a stop or a watchdog kill turns into `stopped` / `watchdog` whatever the status says.
    pub fn from_status(status: ExitStatus, requested: Option<ExitReason>) -> Exit {
        let code = status.code();
        let signal = status.signal();
        let core_dumped = status.core_dumped();
        let natural = if signal.is_some() {
            ExitReason::Killed
        } else {
            ExitReason::Exited
        };
        Exit {
            code,
            signal,
            core_dumped,
            reason: requested.unwrap_or(natural),
        }
    }

    /// An exit that never had a process: the spawn failed.
    pub fn spawn_failed() -> Exit {
        Exit {
            code: None,
            signal: None,
            core_dumped: false,
            reason: ExitReason::SpawnFailed,
        }
    }

    /// A clean exit: code 0 (what `Transient` does not restart).
    pub fn is_clean(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }

    /// The signal's name, if a signal killed it.
    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(signal_name)
    }

    /// In words: `exited with code 3`, `killed by SIGSEGV (core dumped)`,
    /// `stopped (killed by SIGTERM)`, `killed by SIGKILL by the watchdog`, ...
    pub fn describe(&self) -> String {
        describe(
            self.code,
            self.signal.map(signal_name),
            self.core_dumped,
            self.reason,
            None,
        )
    }
}

/// The one wording of an exit, for the dump, the events, the worker's log and `vigil history`:
/// the status (`signal` is its name), then why it ended; `peak` (bytes) is added to an OOM kill.
fn describe(
    code: Option<i32>,
    signal: Option<String>,
    core_dumped: bool,
    reason: ExitReason,
    peak: Option<u64>,
) -> String {
    let status = match (code, signal) {
        (_, Some(name)) => {
            let core = if core_dumped { " (core dumped)" } else { "" };
            Some(format!("killed by {name}{core}"))
        }
        (Some(code), None) => Some(format!("exited with code {code}")),
        (None, None) => None,
    };
    match (reason, status) {
        (ExitReason::Exited | ExitReason::Killed, Some(s)) => s,
        (ExitReason::Exited | ExitReason::Killed, None) => "ended (status unknown)".to_string(),
        (ExitReason::Watchdog, Some(s)) => format!("{s} by the watchdog"),
        (ExitReason::Watchdog, None) => "killed by the watchdog".to_string(),
        (ExitReason::Stopped, Some(s)) => format!("stopped ({s})"),
        (ExitReason::Stopped, None) => "stopped".to_string(),
        (ExitReason::SpawnFailed, _) => "failed to start".to_string(),
        (ExitReason::Orphan, Some(s)) => format!("orphan of a dead server ({s})"),
        (ExitReason::Orphan, None) => "orphan of a dead server, killed at startup".to_string(),
        (ExitReason::Oom, status) => {
            let peak = peak
                .map(|b| format!(", peak {} MiB", b / (1024 * 1024)))
                .unwrap_or_default();
            match status {
                Some(s) => format!("out of memory: OOM killer ({s}{peak})"),
                None => format!("out of memory: OOM killer{peak}"),
            }
        }
    }
}

/// One exit as stored in `history.sqlite` and printed by `vigil history --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The worker's name.
    pub worker: String,
    /// The process id (`null` for a failed spawn).
    pub pid: Option<u32>,
    /// The generation that ended.
    pub generation: u64,
    /// The run's `VIGIL_RUN_ID` (also in the log's `started generation` marker); `null` for an
    /// orphan and for records written before run ids existed.
    #[serde(default)]
    pub run_id: Option<String>,
    /// RFC 3339 start time (the spawn attempt's time for a failed spawn).
    pub started_at: String,
    /// RFC 3339 exit time.
    pub exited_at: String,
    /// How long it ran.
    pub uptime_ms: u64,
    /// Exit code; `null` when killed by a signal.
    pub code: Option<i32>,
    /// Signal number; `null` unless killed by a signal.
    pub signal: Option<i32>,
    /// `"SIGKILL"`, or `null`.
    pub signal_name: Option<String>,
    /// Whether a core was dumped.
    pub core_dumped: bool,
    /// Why it ended.
    pub reason: ExitReason,
    /// The delay before the restart that followed; `null` when not restarted.
    pub restart_delay_ms: Option<u64>,
    /// The last lines the worker wrote (at most 20), or the spawn error.
    pub log_tail: Vec<String>,
    /// A sentence on what happened next (`restarting in 200ms`, `escalated`, `not restarted: temporary`).
    #[serde(default)]
    pub decision: String,
    /// Processes of this run killed by the kernel's OOM killer: 0 when none, `null` when vigil
    /// had no memory accounting for the run.
    #[serde(default)]
    pub oom_kills: Option<u64>,
    /// The run's peak memory use of all its processes together; `null` when unknown.
    #[serde(default)]
    pub memory_peak_bytes: Option<u64>,
}

impl ExitRecord {
    /// In words, as `vigil history` prints it: [`Exit::describe`] of the record's status and
    /// reason, with the run's peak memory after an OOM kill
    /// (`out of memory: OOM killer (killed by SIGKILL, peak 48 MiB)`).
    pub fn describe(&self) -> String {
        let signal = self
            .signal
            .map(|sig| self.signal_name.clone().unwrap_or_else(|| signal_name(sig)));
        describe(
            self.code,
            signal,
            self.core_dumped,
            self.reason,
            self.memory_peak_bytes,
        )
    }
}

/// The status a process ending like `exit` reports: its exit code, 128 + the signal number
/// when killed, 127 when it never ran (spawn failed), 1 when nothing is known.
pub fn exit_status(exit: Option<&ExitRecord>) -> u8 {
    match exit {
        Some(e) => match (e.code, e.signal) {
            (Some(code), _) => (code & 0xff) as u8,
            (None, Some(sig)) => (128 + (sig & 0x7f)) as u8,
            (None, None) if e.reason == ExitReason::SpawnFailed => 127,
            (None, None) => 1,
        },
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_signal_are_kept_apart() {
        let e = Exit::from_status(ExitStatus::from_raw(137 << 8), None);
        assert_eq!(
            (e.code, e.signal, e.reason),
            (Some(137), None, ExitReason::Exited)
        );
        let k = Exit::from_status(ExitStatus::from_raw(libc::SIGKILL), None);
        assert_eq!(
            (k.code, k.signal, k.reason),
            (None, Some(9), ExitReason::Killed)
        );
        let core = Exit::from_status(ExitStatus::from_raw(libc::SIGSEGV | 0x80), None);
        assert!(core.core_dumped);
        assert_eq!(core.describe(), "killed by SIGSEGV (core dumped)");
        let stopped = Exit::from_status(
            ExitStatus::from_raw(libc::SIGTERM),
            Some(ExitReason::Stopped),
        );
        assert_eq!(stopped.reason, ExitReason::Stopped);
        assert_eq!(stopped.describe(), "stopped (killed by SIGTERM)");
    }

    #[test]
    fn a_record_is_described_in_the_same_words() {
        let record = ExitRecord {
            worker: "w".into(),
            pid: Some(10),
            generation: 2,
            run_id: None,
            started_at: String::new(),
            exited_at: String::new(),
            uptime_ms: 0,
            code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
            core_dumped: false,
            reason: ExitReason::Watchdog,
            restart_delay_ms: None,
            log_tail: Vec::new(),
            decision: String::new(),
            oom_kills: None,
            memory_peak_bytes: Some(48 << 20),
        };
        let exit = Exit {
            code: record.code,
            signal: record.signal,
            core_dumped: record.core_dumped,
            reason: record.reason,
        };
        assert_eq!(record.describe(), exit.describe());
        assert_eq!(record.describe(), "killed by SIGKILL by the watchdog");
        let oom = ExitRecord {
            reason: ExitReason::Oom,
            ..record.clone()
        };
        assert_eq!(
            oom.describe(),
            "out of memory: OOM killer (killed by SIGKILL, peak 48 MiB)"
        );
        let orphan = ExitRecord {
            reason: ExitReason::Orphan,
            signal: None,
            signal_name: None,
            ..record
        };
        assert_eq!(
            orphan.describe(),
            "orphan of a dead server, killed at startup"
        );
    }
}
