//! The root supervisor: one WorkerSupervisor per worker, escalations, ordered shutdown.
//!
//! Owns the list of worker slots (a live WorkerSupervisor, or a failed one waiting for the root's
//! backoff), the root intensity window, and the shutdown sequence (reverse start order). It must
//! not touch processes or the database: WorkerSupervisors own their process groups, the history
//! writer owns SQLite.

use ractor::RpcReplyPort;

use crate::snapshot::{Dump, WorkerSnapshot};

/// What an operator can ask of one worker (`vigil start|stop|restart WORKER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerAction {
    /// Start a stopped (or failed, or backing-off) worker now; no-op when it runs.
    Start,
    /// Stop it gracefully and keep it stopped until `start`.
    Stop,
    /// Stop it gracefully (if running) and start a new process at once.
    Restart,
}

/// Why a request to the tree could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ControlError {
    /// No worker has that name.
    #[error("no worker named {0:?}")]
    UnknownWorker(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The worker could not be (re)started; the reason says why.
    #[error("{0}")]
    Failed(String),
    /// An actor did not answer in time.
    #[error("no answer from {0} in time")]
    Timeout(String),
}

/// The root supervisor's messages: its whole API.
pub enum RootMsg {
    /// The live tree. Sent by the control server and SIGUSR1; replies with the dump.
    Dump(RpcReplyPort<Dump>),
    /// One worker's snapshot, or all of them (`None`), in start order.
    Status {
        /// A worker name, or `None` for every worker.
        worker: Option<String>,
        /// The snapshots, or `UnknownWorker`.
        reply: RpcReplyPort<Result<Vec<WorkerSnapshot>, ControlError>>,
    },
    /// Start, stop or restart one worker; replies once done, with the worker's snapshot.
    Act {
        /// The worker's name.
        worker: String,
        /// What to do.
        action: WorkerAction,
        /// The snapshot after the action, or why it could not be done.
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    },
    /// Stop every worker in reverse start order, then the root itself. Replies when all are down.
    Shutdown(Option<RpcReplyPort<()>>),
}
