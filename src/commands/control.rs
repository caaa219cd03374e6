//! `vigil dump|status|restart|stop|start|shutdown`: placeholders until helper "control" lands
//! the control client; replace this file entirely (keep the function signatures or edit
//! `main.rs`'s dispatch in the same commit).

use std::path::Path;
use std::process::ExitCode;

use vigil_actors::root::WorkerAction;

use crate::cli::{DumpArgs, StatusArgs, WorkerArg};
use crate::error::CliError;

/// Not built yet.
pub fn dump(_config: &Path, _args: &DumpArgs) -> Result<ExitCode, CliError> {
    Err(CliError::Runtime("`vigil dump` is not built yet".into()))
}

/// Not built yet.
pub fn status(_config: &Path, _args: &StatusArgs) -> Result<ExitCode, CliError> {
    Err(CliError::Runtime("`vigil status` is not built yet".into()))
}

/// Not built yet.
pub fn act(_config: &Path, action: WorkerAction, _args: &WorkerArg) -> Result<ExitCode, CliError> {
    Err(CliError::Runtime(
        format!("`vigil {action:?}` is not built yet").to_lowercase(),
    ))
}

/// Not built yet.
pub fn shutdown(_config: &Path) -> Result<ExitCode, CliError> {
    Err(CliError::Runtime(
        "`vigil shutdown` is not built yet".into(),
    ))
}
