//! The CLI's error: one sentence for the user, and the exit status it implies.
//!
//! Owns [`CliError`] and the mapping to exit codes: 1 runtime, 2 config (clap itself exits 2
//! on usage errors), 3 root intensity exceeded. It must not print: `main.rs` does, once.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use vigil_actors::containment::ContainmentError;
use vigil_actors::control::ControlServerError;
use vigil_actors::history::HistoryError;
use vigil_actors::http::HttpError;
use vigil_actors::lock::LockError;
use vigil_actors::tree::TreeError;

use crate::config::ConfigError;
use crate::control_client::ClientError;

/// Why a command failed. Each variant keeps what went wrong as a value (the library's error,
/// the OS error); only `main` turns it into the one sentence the user reads.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config cannot be used; rendered `FILE:LINE:COL: message`. Exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The running server could not be asked, or refused (no server, a timeout, ...). Exit 1.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server's answer (`what`: "an answer", "an event") does not decode. Exit 1.
    #[error("the vigil server sent {what} this client does not understand: {source}")]
    Undecodable {
        /// What could not be decoded.
        what: &'static str,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// `what` ("the answer", "the history") cannot be encoded as JSON. Exit 1.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What could not be encoded.
        what: &'static str,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// Writing the output failed (a closed pipe is not an error). Exit 1.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] io::Error),
    /// An OS call failed; `context` says what was being done (`cannot read /x/w.log`). Exit 1.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or folder.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The history database failed. Exit 1.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Another server holds the instance lock, or the lock failed. Exit 1.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `cgroup: Required` and no cgroup could be made. Exit 1.
    #[error(transparent)]
    Containment(#[from] ContainmentError),
    /// The supervision tree did not start. Exit 1.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The control socket could not be opened. Exit 1.
    #[error("cannot open the control socket: {0}")]
    ControlSocket(#[source] ControlServerError),
    /// The HTTP endpoint could not be started. Exit 1.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// `vigil logs` named a worker the config does not have. Exit 1.
    #[error("no worker named {worker:?} in {}", config.display())]
    NoSuchWorker {
        /// The name asked for.
        worker: String,
        /// The config, as shown to the user.
        config: PathBuf,
    },
    /// The worker has written no log yet: `log` (a file, or its folder) does not exist. Exit 1.
    #[error("{worker} has no log yet: {}{} does not exist", if *.folder { "the folder " } else { "" }, log.display())]
    NoLog {
        /// The worker.
        worker: String,
        /// The missing file or folder.
        log: PathBuf,
        /// Whether `log` is the log folder.
        folder: bool,
    },
    /// `vigil logs --previous` found only one generation. Exit 1.
    #[error(
        "{worker}: no generation before the current one in {} (or its rotated files)",
        log.display()
    )]
    NoPreviousGeneration {
        /// The worker.
        worker: String,
        /// Its log file.
        log: PathBuf,
    },
    /// `vigil shutdown`: the workers stopped but the server process stayed. Exit 1.
    #[error(
        "every worker stopped, but the server did not exit within {} (socket {})",
        vigil_actors::render::duration(*.waited),
        socket.display()
    )]
    ServerDidNotExit {
        /// How long the client waited.
        waited: Duration,
        /// The server's socket.
        socket: PathBuf,
    },
    /// The root supervisor ended without an outcome. Exit 1.
    #[error("the root supervisor died unexpectedly; every worker was stopped")]
    RootDied,
    /// `vigil serve` stopped everything because the root intensity was exceeded. Exit 3.
    #[error("{0}")]
    RootIntensityExceeded(String),
    /// The running server found its config invalid on reload (or refused a change); the
    /// server's message, already `FILE:LINE:COL: message`. Exit 2.
    #[error("{0}")]
    ServerConfig(String),
}

impl CliError {
    /// An OS error while doing `context` (`cannot create /var/x`).
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    /// The numeric exit status.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::ServerConfig(_) => 2,
            CliError::RootIntensityExceeded(_) => 3,
            CliError::Client(_)
            | CliError::Undecodable { .. }
            | CliError::Encode { .. }
            | CliError::Stdout(_)
            | CliError::Io { .. }
            | CliError::History(_)
            | CliError::Lock(_)
            | CliError::Containment(_)
            | CliError::Tree(_)
            | CliError::ControlSocket(_)
            | CliError::Http(_)
            | CliError::NoSuchWorker { .. }
            | CliError::NoLog { .. }
            | CliError::NoPreviousGeneration { .. }
            | CliError::ServerDidNotExit { .. }
            | CliError::RootDied => 1,
        }
    }

    /// Whether the message already names its source (a config error starts with the file), so
    /// that `main` prints it as is rather than after `vigil: `.
    pub fn is_located(&self) -> bool {
        matches!(self, CliError::Config(_) | CliError::ServerConfig(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentences_users_read() {
        let no_log = |folder| CliError::NoLog {
            worker: "w".into(),
            log: "/v/log/w.log".into(),
            folder,
        };
        assert_eq!(
            no_log(false).to_string(),
            "w has no log yet: /v/log/w.log does not exist"
        );
        assert_eq!(
            no_log(true).to_string(),
            "w has no log yet: the folder /v/log/w.log does not exist"
        );
        let stayed = CliError::ServerDidNotExit {
            waited: Duration::from_secs(15),
            socket: "/v/vigil.sock".into(),
        };
        assert_eq!(
            stayed.to_string(),
            "every worker stopped, but the server did not exit within 15s (socket /v/vigil.sock)"
        );
        let io = CliError::io("cannot read /x", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            io.to_string(),
            "cannot read /x: No such file or directory (os error 2)"
        );
        assert!(
            std::error::Error::source(&io).is_some(),
            "the OS error is kept"
        );
        assert_eq!(io.code(), 1);
        assert_eq!(CliError::RootDied.code(), 1);
    }
}
