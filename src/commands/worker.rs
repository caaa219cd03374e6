//! `vigil worker indexing`: placeholder until helper "index" lands the worker; replace this
//! file entirely.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::IndexingArgs;
use crate::config;
use crate::error::CliError;

/// Resolves the settings (so config errors already show), then reports it is not built yet.
pub fn indexing(config: &Path, args: &IndexingArgs) -> Result<ExitCode, CliError> {
    let settings = config::load(config)?.indexing_settings(args.name.as_deref())?;
    Err(CliError::Runtime(format!(
        "`vigil worker indexing` is not built yet (would index {} root(s) every {:?} into {})",
        settings.roots.len(),
        settings.interval,
        settings.db_path.display()
    )))
}
