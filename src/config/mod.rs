//! Configuration: reads `config.ron` once, validates all of it, and hands out resolved specs.
//!
//! Owns the path from a file name to the library's [`TreeSpec`] (see [`load`]) and to the
//! indexing worker's settings ([`Loaded::indexing_settings`]), so that the server, `vigil check`
//! and `vigil worker indexing` agree on every value. It must not start anything.
//!
//! - `file.rs`: the RON shape and the defaults of omitted fields;
//! - `resolve.rs`: validation, policy merge, relative paths;
//! - `error.rs`: [`ConfigError`], rendered `FILE:LINE:COL: message`.
//!
//! RON's `implicit_some` extension is on, so an optional field may be written `Some("30s")` or
//! just `"30s"`, and `None` switches it off.

mod error;
mod file;
mod resolve;

use std::path::{Path, PathBuf};

use ron::extensions::Extensions;
use vigil_actors::spec::TreeSpec;

pub use error::ConfigError;
pub use error::Position;

use crate::workers::indexing::IndexingSettings;

/// A validated config: the tree to run and where it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The path as the user named it (used in messages).
    pub shown: PathBuf,
    /// The resolved tree: data and log folders, root policy, workers in start order.
    pub tree: TreeSpec,
    /// Each `Indexing` worker's settings, in config order.
    indexing: Vec<IndexingSettings>,
}

/// Reads, parses and validates the config at `path`.
///
/// Relative paths inside the file resolve against the file's folder; every error names the
/// file, and the line and column when one applies.
///
/// This is the full check of `vigil check` and `vigil serve`: it also looks each worker's
/// `user` and `group` up and reads its `env_file`. A client of a running server uses
/// [`load_for_client`].
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with(path, true)
}

/// [`load`] without the checks against this host (users, groups, env files): what the control
/// commands, `vigil history` and the workers' own commands need. A user deleted since the
/// server started must not lock its operator out of `vigil status`, and a worker running as
/// another user may not be able to read the env files.
pub fn load_for_client(path: &Path) -> Result<Loaded, ConfigError> {
    load_with(path, false)
}

fn load_with(path: &Path, check_host: bool) -> Result<Loaded, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let absolute = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map_err(read_error)?;
    let base = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    parse_text(&text, path, &absolute, &base, check_host)
}

/// [`load`] after the read: `shown` names the file in messages, `base` resolves relative paths.
fn parse_text(
    text: &str,
    shown: &Path,
    absolute: &Path,
    base: &Path,
    check_host: bool,
) -> Result<Loaded, ConfigError> {
    let options = ron::Options::default().with_default_extension(Extensions::IMPLICIT_SOME);
    let parsed: file::ConfigFile = options.from_str(text).map_err(|e| ConfigError::Parse {
        path: shown.to_path_buf(),
        at: Position {
            line: e.span.start.line,
            col: e.span.start.col,
        },
        message: e.code.to_string(),
    })?;
    let src = resolve::Source {
        shown,
        base,
        text,
        check_host,
    };
    let resolved = resolve::resolve(parsed, &src, absolute)?;
    Ok(Loaded {
        shown: shown.to_path_buf(),
        tree: resolved.tree,
        indexing: resolved.indexing,
    })
}

impl Loaded {
    /// The settings of the `Indexing` worker named `name`, or of the only one when `name` is
    /// `None`; an error when there is none, or several and no name.
    pub fn indexing_settings(&self, name: Option<&str>) -> Result<IndexingSettings, ConfigError> {
        let names = || {
            let v: Vec<&str> = self
                .indexing
                .iter()
                .map(|s| s.worker_name.as_str())
                .collect();
            v.join(", ")
        };
        let found = match name {
            Some(name) => self
                .indexing
                .iter()
                .find(|s| s.worker_name == name)
                .ok_or_else(|| {
                    if self.tree.workers.iter().any(|w| w.name == name) {
                        format!("worker {name:?} is not an Indexing worker")
                    } else if self.indexing.is_empty() {
                        format!("no worker named {name:?}, and no Indexing worker at all")
                    } else {
                        format!(
                            "no Indexing worker named {name:?} (Indexing workers: {})",
                            names()
                        )
                    }
                }),
            None => match self.indexing.as_slice() {
                [one] => Ok(one),
                [] => Err("no Indexing worker in this config".to_string()),
                _ => Err(format!(
                    "several Indexing workers ({}); choose one with --name",
                    names()
                )),
            },
        };
        found.cloned().map_err(|message| ConfigError::Invalid {
            path: self.shown.clone(),
            at: None,
            message,
        })
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
