//! `vigil serve`: placeholder until the lead lands the server; replace this file entirely.

use std::path::Path;
use std::process::ExitCode;

use crate::error::CliError;

/// Not built yet.
pub fn run(_config: &Path) -> Result<ExitCode, CliError> {
    Err(CliError::Runtime("`vigil serve` is not built yet".into()))
}
