//! `vigil check`: load the config and say whether it is usable.
//!
//! Owns the success line `FILE: ok (N workers: a, b)`. It must not start anything; errors
//! are rendered by `main.rs` (`FILE:LINE:COL: message`, exit 2).

use std::path::Path;
use std::process::ExitCode;

use crate::config;
use crate::error::CliError;

/// Loads and validates `config`; prints one line on success.
pub fn run(config: &Path) -> Result<ExitCode, CliError> {
    let loaded = config::load(config)?;
    let names: Vec<&str> = loaded
        .tree
        .workers
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    let count = match names.len() {
        1 => "1 worker".to_string(),
        n => format!("{n} workers"),
    };
    if names.is_empty() {
        println!("{}: ok ({count})", config.display());
    } else {
        println!("{}: ok ({count}: {})", config.display(), names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
