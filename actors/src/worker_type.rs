//! The extension point: a worker type is one implementation of [`WorkerType`].
//!
//! Owns the trait and the small types its methods exchange with the supervisor. A worker type
//! says how to build its command for each generation, which restart policy it has (a required
//! method: a type cannot exist without one), and may classify exits or veto a start. It must not
//! spawn processes or keep runtime state: the WorkerSupervisor does both.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;

use crate::exit::Exit;
use crate::spec::{Launch, RestartPolicy};

/// What a worker type is told when asked for its command.
#[derive(Clone, Debug)]
pub struct LaunchContext {
    /// The worker's configured name.
    pub name: String,
    /// The generation about to start (1 for the first start, +1 per spawn).
    pub generation: u64,
    /// The tree's data directory.
    pub data_dir: PathBuf,
    /// The worker's log file.
    pub log_path: PathBuf,
}

/// What a worker type decides about one exit, before the restart type is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitVerdict {
    /// Apply the restart type and backoff as configured (the default).
    UsePolicy,
    /// A temporary failure: restart, but wait at least this long.
    RetryAfter(std::time::Duration),
    /// Do not restart, whatever the restart type says; the worker ends `stopped`.
    DoNotRestart,
}

/// A kind of worker: builds its command line and states its restart policy.
///
/// Implement it and register the type with the tree builder (or name it in config). Only
/// [`launch`](WorkerType::launch) and [`policy`](WorkerType::policy) are required.
pub trait WorkerType: Any + fmt::Debug + Send + Sync + 'static {
    /// A short name for the type, shown in dumps (`"command"`, `"indexing"`).
    fn kind(&self) -> &str;

    /// The command for the generation described by `ctx`. An error is recorded as a
    /// `spawn_failed` exit and backed off like any other failed start.
    fn launch(&self, ctx: &LaunchContext) -> Result<Launch, String>;

    /// The policy used where config does not override it. Required: there is no default
    /// restart policy, so no worker type can be registered without one.
    fn policy(&self) -> RestartPolicy;

    /// Classify an exit before the restart type is applied. Default: [`ExitVerdict::UsePolicy`].
    fn classify_exit(&self, _exit: &Exit) -> ExitVerdict {
        ExitVerdict::UsePolicy
    }

    /// A check before each start; an error is a failed start (recorded, backed off).
    fn before_start(&self, _ctx: &LaunchContext) -> Result<(), String> {
        Ok(())
    }

    /// Whether `other` is the same type with the same settings, so that it runs the very same
    /// thing: a reload leaves such a worker running ([`crate::reload::diff`]). Compare with
    /// [`downcast`]: `downcast::<Self>(other).is_some_and(|o| o == self)`.
    ///
    /// Default: `false`, never the same; a reload then restarts the worker whenever its config
    /// is reloaded, which is safe but not minimal.
    fn same_settings(&self, _other: &dyn WorkerType) -> bool {
        false
    }
}

/// `other` as the concrete type `T`, when it is one (for [`WorkerType::same_settings`]).
pub fn downcast<T: WorkerType>(other: &dyn WorkerType) -> Option<&T> {
    let any: &dyn Any = other;
    any.downcast_ref::<T>()
}

/// The built-in `Command` type: runs any argv, never through a shell unless argv says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandWorker {
    /// What to run.
    pub launch: Launch,
}

impl WorkerType for CommandWorker {
    fn kind(&self) -> &str {
        "command"
    }

    fn launch(&self, _ctx: &LaunchContext) -> Result<Launch, String> {
        Ok(self.launch.clone())
    }

    fn policy(&self) -> RestartPolicy {
        RestartPolicy::permanent()
    }

    fn same_settings(&self, other: &dyn WorkerType) -> bool {
        downcast::<CommandWorker>(other).is_some_and(|o| o == self)
    }
}
