//! vigil's supervision tree.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod exit;
pub mod history;
pub mod lock;
pub mod orphan;
pub mod procfs;
pub mod root;
pub mod sd_notify;
pub mod signal;
pub mod snapshot;
pub mod spec;
pub mod worker_type;
