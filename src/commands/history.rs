//! `vigil history`: placeholder until helper "history" lands it; replace this file entirely.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::HistoryArgs;
use crate::error::CliError;

/// Not built yet.
pub fn run(_config: &Path, _args: &HistoryArgs) -> Result<ExitCode, CliError> {
    Err(CliError::Runtime("`vigil history` is not built yet".into()))
}
