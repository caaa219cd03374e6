//! vigil's supervision tree.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod builder;
pub mod control;
pub mod exit;
pub mod history;
pub mod lock;
pub mod logfile;
pub mod metrics;
pub mod notify;
pub mod orphan;
pub mod policy;
pub mod process;
pub mod procfs;
pub mod protocol;
pub mod render;
pub mod root;
pub mod sd_notify;
pub mod signal;
pub mod snapshot;
pub mod spec;
pub mod tree;
pub mod worker_supervisor;
pub mod worker_type;
