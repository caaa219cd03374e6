//! Configuration errors: what went wrong, in which file, and where in it.
//!
//! Owns [`ConfigError`] and its rendering, `FILE:LINE:COL: message` when a position is known and
//! `FILE: message` otherwise. It must not decide exit codes: the CLI maps every config error to 2.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A line and column in the config file, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A config file that cannot be used; `Display` gives one line, prefixed with the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        /// The file, as the user named it.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// RON syntax, a wrong type, an unknown or missing field, a bad duration or signal.
    #[error("{}:{at}: {message}", path.display())]
    Parse {
        /// The file, as the user named it.
        path: PathBuf,
        /// Where RON stopped.
        at: Position,
        /// What RON (or a field's parser) said.
        message: String,
    },
    /// A value that parses but is not allowed (duplicate name, multiplier below 1, ...).
    #[error("{}{}: {message}", path.display(), at.map(|p| format!(":{p}")).unwrap_or_default())]
    Invalid {
        /// The file, as the user named it.
        path: PathBuf,
        /// The offending worker's `name:` when it could be found.
        at: Option<Position>,
        /// Which field, and why.
        message: String,
    },
}

impl ConfigError {
    /// The position the error points at, if any.
    #[cfg(test)]
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { at, .. } => Some(*at),
            ConfigError::Invalid { at, .. } => *at,
        }
    }
}
