//! `vigil worker indexing [--name NAME] [--once]`: the indexing worker in the foreground.
//!
//! Owns the order of the worker's start: logging first (so even a config error leaves a log
//! line in the worker's log file), then the config, then the worker's run loop. It must not
//! index anything itself: see `workers::indexing`.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::IndexingArgs;
use crate::config;
use crate::error::CliError;
use crate::workers::indexing::{self, EXIT_CONFIG, progress};

/// Runs the config's Indexing worker (the one named `--name`, or the only one). Config errors
/// are logged as the last line and exit 2; see `workers::indexing` for the other codes.
pub fn indexing(config: &Path, args: &IndexingArgs) -> Result<ExitCode, CliError> {
    progress::init_logging();
    let settings = match config::load_for_client(config)
        .and_then(|loaded| loaded.indexing_settings(args.name.as_deref()))
    {
        Ok(settings) => settings,
        Err(err) => return Ok(indexing::fatal(EXIT_CONFIG, &err)),
    };
    Ok(indexing::run(&settings, args.once))
}
