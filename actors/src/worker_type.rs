//! The extension point: a worker type is one implementation of [`WorkerType`].
//!
//! Owns the trait and the types its methods exchange with the supervisor — among them the
//! vocabulary of a restart policy ([`RestartPolicy`], [`RestartType`], [`BackoffSpec`],
//! [`IntensitySpec`], [`ShutdownSpec`]) and the command ([`Launch`]); [`crate::spec`]
//! re-exports them beside the tree's data. A worker type
//! says how to build its command for each generation, which restart policy it has (a required
//! method: a type cannot exist without one), and may classify exits or veto a start. It must not
//! spawn processes or keep runtime state: the WorkerSupervisor does both.

use std::any::Any;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::Exit;
use crate::signal::Signal;

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

/// Why a worker type could not build its command ([`WorkerType::launch`]): one sentence,
/// recorded as the `spawn_failed` exit's reason.
///
/// Build it from a message: `LaunchError::new(format!(..))`, or `?` on a `String`/`&str` error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    message: String,
}

impl LaunchError {
    /// An error that says `message`.
    pub fn new(message: impl Into<String>) -> Self {
        LaunchError {
            message: message.into(),
        }
    }

    /// What went wrong, as given to [`LaunchError::new`].
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for LaunchError {
    fn from(message: String) -> Self {
        LaunchError::new(message)
    }
}

impl From<&str> for LaunchError {
    fn from(message: &str) -> Self {
        LaunchError::new(message)
    }
}

impl From<LaunchError> for String {
    fn from(e: LaunchError) -> Self {
        e.message
    }
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
    fn launch(&self, ctx: &LaunchContext) -> Result<Launch, LaunchError>;

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

    fn launch(&self, _ctx: &LaunchContext) -> Result<Launch, LaunchError> {
        Ok(self.launch.clone())
    }

    fn policy(&self) -> RestartPolicy {
        RestartPolicy::permanent()
    }

    fn same_settings(&self, other: &dyn WorkerType) -> bool {
        downcast::<CommandWorker>(other).is_some_and(|o| o == self)
    }
}

/// OTP restart types: which exits are followed by a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RestartType {
    /// Always restarted, whatever the exit.
    Permanent,
    /// Restarted only after an abnormal exit (non-zero code, or killed by a signal).
    Transient,
    /// Never restarted.
    Temporary,
}

/// Exponential backoff between restarts: `min(max, initial × multiplier^n)` with ± `jitter`,
/// where `n` counts consecutive restarts and resets after a run of at least `reset_after`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffSpec {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound of the delay (before jitter is applied, and after: jitter never exceeds it).
    pub max: Duration,
    /// Growth factor per consecutive restart, `>= 1`.
    pub multiplier: f64,
    /// Relative jitter in `[0, 1]`: the delay is scaled by a factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// A run at least this long resets the exponent to zero.
    pub reset_after: Duration,
}

impl Default for BackoffSpec {
    /// 100 ms initial, 30 s max, ×2, ±10 % jitter, reset after 60 s up.
    fn default() -> Self {
        BackoffSpec {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.1,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl BackoffSpec {
    /// Whether this backoff can work: multiplier a number `>= 1` (and at most
    /// [`MAX_MULTIPLIER`]), jitter in `[0, 1]`, `initial <= max`. The message names the
    /// offending field.
    pub fn check(&self) -> Result<(), String> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "backoff.multiplier must be a number >= 1, got {}",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "backoff.jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        if self.initial > self.max {
            return Err(format!(
                "backoff.initial ({:?}) must not exceed backoff.max ({:?})",
                self.initial, self.max
            ));
        }
        if self.multiplier > MAX_MULTIPLIER {
            return Err(format!(
                "backoff.multiplier must be at most {MAX_MULTIPLIER}, got {}",
                self.multiplier
            ));
        }
        Ok(())
    }
}

/// Largest `backoff.multiplier` accepted.
pub const MAX_MULTIPLIER: f64 = 1000.0;

/// Largest `intensity.max_restarts` accepted.
pub const MAX_RESTARTS: u32 = 1_000_000;

/// Restart intensity: more than `max_restarts` restarts within `within` is an escalation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntensitySpec {
    /// Restarts allowed inside the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub within: Duration,
}

impl Default for IntensitySpec {
    /// 5 restarts within 60 s.
    fn default() -> Self {
        IntensitySpec {
            max_restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

impl IntensitySpec {
    /// Whether this window can work: `within` above zero, `max_restarts` at most
    /// [`MAX_RESTARTS`].
    pub fn check(&self) -> Result<(), String> {
        if self.within.is_zero() {
            return Err("intensity.within must be above 0s".into());
        }
        if self.max_restarts > MAX_RESTARTS {
            return Err(format!(
                "intensity.max_restarts must be at most {MAX_RESTARTS}, got {}",
                self.max_restarts
            ));
        }
        Ok(())
    }
}

/// How a worker is stopped: `signal` to its whole process group, then `SIGKILL` after `grace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownSpec {
    /// The first signal sent to the group.
    pub signal: Signal,
    /// How long to wait for the group to exit before `SIGKILL`.
    pub grace: Duration,
}

impl Default for ShutdownSpec {
    /// `SIGTERM`, 5 s grace.
    fn default() -> Self {
        ShutdownSpec {
            signal: Signal::TERM,
            grace: Duration::from_secs(5),
        }
    }
}

/// Everything that decides when a worker is restarted, and how it is stopped.
///
/// There is no `Default`: a worker type must state its policy (see [`WorkerType::policy`]);
/// the postmortem's indexing worker died for good because its registration had none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestartPolicy {
    /// Which exits are restarted.
    pub restart: RestartType,
    /// Delay between restarts.
    pub backoff: BackoffSpec,
    /// How many restarts escalate to the root.
    pub intensity: IntensitySpec,
    /// How the worker is stopped.
    pub shutdown: ShutdownSpec,
    /// A worker is `running` after `READY=1`, or after this long alive.
    pub start_secs: Duration,
    /// With `Some(t)`: no `WATCHDOG=1` (or `READY=1`) for `t` kills the worker.
    pub heartbeat_timeout: Option<Duration>,
}

impl RestartPolicy {
    /// Whether this policy can work, wherever it comes from (the tree builder or a config
    /// file): a `heartbeat_timeout` above zero, then [`BackoffSpec::check`] and
    /// [`IntensitySpec::check`]. The message names the offending field.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_timeout.is_some_and(|t| t.is_zero()) {
            return Err("heartbeat_timeout must be above 0s (or None for no watchdog)".into());
        }
        self.backoff.check()?;
        self.intensity.check()
    }

    /// A permanent worker with the default backoff, intensity and shutdown, `running` after 1 s.
    pub fn permanent() -> Self {
        RestartPolicy {
            restart: RestartType::Permanent,
            backoff: BackoffSpec::default(),
            intensity: IntensitySpec::default(),
            shutdown: ShutdownSpec::default(),
            start_secs: Duration::from_secs(1),
            heartbeat_timeout: None,
        }
    }
}

/// The program a worker runs: argv, extra environment, working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Program and arguments; never empty, never passed through a shell.
    pub argv: Vec<OsString>,
    /// Extra environment on top of the server's.
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` keeps the server's.
    pub cwd: Option<PathBuf>,
}
