//! The `Indexing` worker type: the server runs `vigil worker indexing` of its own executable.
//!
//! Owns how the server launches the indexing worker. It must not index anything: the worker
//! process does that, with the same config file, so `vigil worker indexing` by hand is the
//! very same program with the very same settings.

use std::ffi::OsString;
use std::path::PathBuf;

use vigil_actors::spec::{Launch, RestartPolicy};
use vigil_actors::worker_type::{LaunchContext, WorkerType};

/// Launches `<current exe> worker indexing --config <abs config> --name <name>`.
#[derive(Clone, Debug)]
pub struct IndexingWorker {
    /// The vigil executable (the server's own).
    pub exe: PathBuf,
    /// The absolute path of the config file the server loaded.
    pub config_path: PathBuf,
}

impl WorkerType for IndexingWorker {
    fn kind(&self) -> &str {
        "indexing"
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Launch, String> {
        Ok(Launch {
            argv: vec![
                self.exe.clone().into_os_string(),
                OsString::from("worker"),
                OsString::from("indexing"),
                OsString::from("--config"),
                self.config_path.clone().into_os_string(),
                OsString::from("--name"),
                OsString::from(&ctx.name),
            ],
            env: Default::default(),
            cwd: None,
        })
    }

    /// Permanent, with the contract's defaults (no watchdog unless configured; the worker
    /// sends `WATCHDOG=1` every few seconds, so `heartbeat_timeout` can be set safely).
    fn policy(&self) -> RestartPolicy {
        RestartPolicy::permanent()
    }
}
