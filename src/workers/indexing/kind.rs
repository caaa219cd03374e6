//! The `Indexing` worker type: the server runs `vigil worker indexing` of its own executable.
//!
//! Owns how the server launches the indexing worker: with the settings the server loaded and
//! validated, passed on the command line (`--db`, `--root`, `--interval`), so that the
//! worker never reads `config.ron` and a file being edited on disk cannot change or break a
//! restart (see the contract's "Reload"). It must not index anything: the worker process does
//! that; `vigil worker indexing --config F` by hand resolves the very same settings from `F`.

use std::ffi::OsString;
use std::path::PathBuf;

use vigil_actors::spec::{Launch, RestartPolicy};
use vigil_actors::worker_type::{self, LaunchContext, LaunchError, WorkerType};

use super::IndexingSettings;

/// Launches `<current exe> worker indexing --name <name> --db <db> --interval <d> --root <r>…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexingWorker {
    /// The vigil executable (the server's own).
    pub exe: PathBuf,
    /// The resolved settings, given to the worker on its command line.
    pub settings: IndexingSettings,
}

impl WorkerType for IndexingWorker {
    fn kind(&self) -> &str {
        "indexing"
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Launch, LaunchError> {
        let s = &self.settings;
        let mut argv = vec![
            self.exe.clone().into_os_string(),
            OsString::from("worker"),
            OsString::from("indexing"),
            OsString::from("--name"),
            OsString::from(&ctx.name),
            OsString::from("--db"),
            s.db_path.clone().into_os_string(),
            OsString::from("--interval"),
            OsString::from(humantime::format_duration(s.interval).to_string()),
        ];
        for root in &s.roots {
            argv.push(OsString::from("--root"));
            argv.push(root.clone().into_os_string());
        }
        Ok(Launch {
            argv,
            env: Default::default(),
            cwd: None,
        })
    }

    /// Permanent, with the contract's defaults (no watchdog unless configured; the worker
    /// sends `WATCHDOG=1` every few seconds, so `heartbeat_timeout` can be set safely).
    fn policy(&self) -> RestartPolicy {
        RestartPolicy::permanent()
    }

    fn same_settings(&self, other: &dyn WorkerType) -> bool {
        worker_type::downcast::<IndexingWorker>(other).is_some_and(|o| o == self)
    }
}
