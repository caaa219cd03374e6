//! Signals as a type: parsing from config names, names for exit records.
//!
//! Owns the mapping between signal numbers and their names (`SIGTERM` ↔ 15). It must not send
//! signals; `process.rs` does that.

use std::fmt;
use std::str::FromStr;

/// A POSIX signal number, known to be valid on this platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(i32);

const NAMES: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

impl Signal {
    /// `SIGTERM`.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGKILL`.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// `SIGABRT` (the watchdog's first signal, as systemd's `WatchdogSignal`).
    pub const ABRT: Signal = Signal(libc::SIGABRT);

    /// The signal with this number, if it is a real signal (1..=64).
    pub fn from_number(n: i32) -> Option<Signal> {
        (1..=64).contains(&n).then_some(Signal(n))
    }

    /// The raw signal number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The conventional name (`"SIGSEGV"`), or `"SIGRTMIN+n"` / `"SIG<n>"` for unnamed ones.
    pub fn name(self) -> String {
        signal_name(self.0)
    }
}

/// The conventional name of signal `n` (`"SIGKILL"` for 9).
pub fn signal_name(n: i32) -> String {
    if let Some((name, _)) = NAMES.iter().find(|(_, num)| *num == n) {
        return (*name).to_string();
    }
    let rtmin = libc::SIGRTMIN();
    let rtmax = libc::SIGRTMAX();
    if (rtmin..=rtmax).contains(&n) {
        return format!("SIGRTMIN+{}", n - rtmin);
    }
    format!("SIG{n}")
}

/// A signal name or number that is not a signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?} (expected a name such as \"SIGTERM\" or a number 1-64)")]
pub struct UnknownSignal(pub String);

impl FromStr for Signal {
    type Err = UnknownSignal;

    /// Accepts `"SIGTERM"`, `"TERM"`, `"sigterm"` and `"15"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signal::from_number(n).ok_or_else(|| UnknownSignal(s.to_string()));
        }
        let upper = t.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        NAMES
            .iter()
            .find(|(name, _)| *name == full)
            .map(|(_, n)| Signal(*n))
            .ok_or_else(|| UnknownSignal(s.to_string()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!("SIGTERM".parse::<Signal>().unwrap(), Signal::TERM);
        assert_eq!("term".parse::<Signal>().unwrap(), Signal::TERM);
        assert_eq!("9".parse::<Signal>().unwrap(), Signal::KILL);
        assert!("SIGNOPE".parse::<Signal>().is_err());
        assert!("0".parse::<Signal>().is_err());
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
    }
}
