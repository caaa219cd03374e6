//! The CLI's error: one sentence for the user, and the exit status it implies.
//!
//! Owns [`CliError`] and the mapping to exit codes: 1 runtime, 2 config (clap itself exits 2
//! on usage errors), 3 root intensity exceeded. It must not print: `main.rs` does, once.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config cannot be used; rendered `FILE:LINE:COL: message`. Exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something failed while running (no server, a database error, ...). Exit 1.
    #[error("{0}")]
    Runtime(String),
    /// `vigil serve` stopped everything because the root intensity was exceeded. Exit 3.
    #[error("{0}")]
    RootIntensityExceeded(String),
    /// The running server found its config invalid on reload (or refused a change); the
    /// server's message, already `FILE:LINE:COL: message`. Exit 2.
    #[error("{0}")]
    ServerConfig(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The numeric exit status.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Runtime(_) => 1,
            CliError::Config(_) | CliError::ServerConfig(_) => 2,
            CliError::RootIntensityExceeded(_) => 3,
        }
    }

    /// Whether the message already names its source (a config error starts with the file), so
    /// that `main` prints it as is rather than after `vigil: `.
    pub fn is_located(&self) -> bool {
        matches!(self, CliError::Config(_) | CliError::ServerConfig(_))
    }
}
