//! The indexing worker: walks source trees and indexes their files into `index.sqlite`.

pub mod kind;

use std::path::PathBuf;
use std::time::Duration;

/// Everything the indexing worker needs, resolved from the config exactly as the server would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexingSettings {
    /// The worker's configured name.
    pub worker_name: String,
    /// Absolute roots to discover projects under.
    pub roots: Vec<PathBuf>,
    /// Time between the start of one cycle and the next.
    pub interval: Duration,
    /// `<data_dir>/index.sqlite`.
    pub db_path: PathBuf,
}
