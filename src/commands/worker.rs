//! `vigil worker indexing [--name NAME] [--once]`: the indexing worker in the foreground.
//!
//! Owns the order of the worker's start: logging first (so even a config error leaves a log
//! line in the worker's log file), then the settings, then the worker's run loop. The settings
//! come from the config file when run by hand, or from the command line when the server runs
//! it (`--db`, `--interval`, `--root`: what the server loaded, so a running server's worker never
//! reads `config.ron`). It must not index anything itself: see `workers::indexing`.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::IndexingArgs;
use crate::config;
use crate::error::CliError;
use crate::workers::indexing::{self, EXIT_CONFIG, IndexingSettings, progress};

/// Runs the config's Indexing worker (the one named `--name`, or the only one). Config errors
/// are logged as the last line and exit 2; see `workers::indexing` for the other codes.
pub fn indexing(config: &Path, args: &IndexingArgs) -> Result<ExitCode, CliError> {
    progress::init_logging();
    if let Some(db) = &args.db {
        return Ok(match resolved(db, args) {
            Ok(settings) => indexing::run(&settings, args.once),
            Err(message) => indexing::fatal(EXIT_CONFIG, &message),
        });
    }
    let settings = match config::load_for_client(config)
        .and_then(|loaded| loaded.indexing_settings(args.name.as_deref()))
    {
        Ok(settings) => settings,
        Err(err) => return Ok(indexing::fatal(EXIT_CONFIG, &err)),
    };
    Ok(indexing::run(&settings, args.once))
}

/// The settings the server passed on the command line (clap guarantees they come together).
fn resolved(db: &std::path::Path, args: &IndexingArgs) -> Result<IndexingSettings, String> {
    let interval = args.interval.as_deref().unwrap_or_default();
    let interval =
        humantime::parse_duration(interval).map_err(|e| format!("--interval {interval:?}: {e}"))?;
    if interval.is_zero() {
        return Err("--interval must be above 0s".into());
    }
    if let Some(relative) = args.roots.iter().find(|r| r.is_relative()) {
        return Err(format!("--root {} is not absolute", relative.display()));
    }
    Ok(IndexingSettings {
        worker_name: args.name.clone().unwrap_or_default(),
        roots: args.roots.clone(),
        interval,
        db_path: db.to_path_buf(),
    })
}
