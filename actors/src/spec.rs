//! Resolved specifications: what the tree is asked to run, after config parsing and validation.
//!
//! Owns the plain data that describes a tree (`TreeSpec`), each worker (`WorkerSpec`) and its
//! restart policy (`RestartPolicy`, re-exported from [`crate::worker_type`], which declares it). Everything here is already validated and resolved: durations
//! are `Duration`s, signals are `Signal`s, paths are absolute. It must not read files, parse
//! config text, or hold runtime state (pids, timers): that is the supervisors' job.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cgroup::Limits;
pub use crate::containment::CgroupMode;
use crate::containment::Containment;
use crate::environ::EnvSpec;
use crate::worker_type::WorkerType;
pub use crate::worker_type::{
    BackoffSpec, IntensitySpec, Launch, LaunchError, MAX_MULTIPLIER, MAX_RESTARTS, RestartPolicy,
    RestartType, ShutdownSpec,
};

/// Whether `name` can name a worker (and be its log file's stem): `[A-Za-z0-9._-]+`, at most
/// 128 characters, not starting with `.`.
pub fn check_worker_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a worker name must not be empty".into());
    }
    let shown = quote_short(name);
    if name.len() > 128 {
        return Err(format!(
            "worker name {shown} is longer than 128 characters ({} bytes)",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return Err(format!("worker name {shown} must not start with '.'"));
    }
    if name.starts_with('-') {
        return Err(format!(
            "worker name {shown} must not start with '-': it could not be named on the command line"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "worker name {shown} is reserved: its log would be the server's own {name}.log"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "worker name {shown} contains {bad:?}; use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Names a worker cannot take: `<log_dir>/vigil.log` is the server's own log.
pub const RESERVED_NAMES: &[&str] = &["vigil"];

/// The most characters of a bad value an error message quotes.
pub const QUOTED_MAX: usize = 80;

/// `value` Debug-quoted, cut to [`QUOTED_MAX`] characters (`…` and the full length after).
pub fn quote_short(value: &str) -> String {
    let count = value.chars().count();
    if count <= QUOTED_MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(QUOTED_MAX).collect();
    format!("{head:?}… ({count} characters)")
}

/// Where a worker's output goes and how much of it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSpec {
    /// The live log file, `<log_dir>/<name>.log`.
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept beside the live one (`name.log.1` … `name.log.N`).
    pub max_files: u32,
}

impl LogSpec {
    /// Default rotation: 10 MiB per file.
    pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
    /// Default rotation: 5 rotated files kept.
    pub const DEFAULT_MAX_FILES: u32 = 5;
}

/// One supervised worker: its identity, its type (which builds the command), its policy.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// Unique name within the tree; also the log file's stem.
    pub name: String,
    /// The worker type: builds the command line, classifies exits.
    pub worker_type: Arc<dyn WorkerType>,
    /// The policy in force (the type's defaults overridden by config).
    pub policy: RestartPolicy,
    /// The log file and its rotation.
    pub log: LogSpec,
    /// Resource limits (enforced through the worker's cgroup; `nofile` as an rlimit).
    pub limits: Limits,
    /// OTP's significant child: when the worker ends and will not be restarted (a final exit
    /// its policy does not restart, or its supervisor gave up), the whole tree shuts down
    /// ([`crate::root::TreeOutcome::Significant`]).
    pub significant: bool,
    /// Who it runs as, its umask and nice value, its env file, whether it starts from an empty
    /// environment.
    pub environment: EnvSpec,
}

/// The root supervisor's own policy: how it restarts a WorkerSupervisor that escalated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RootSpec {
    /// Delay before a failed child of the root (a worker's supervisor, or a failed group) is
    /// started afresh; one counter per child.
    pub backoff: BackoffSpec,
    /// With `Some`: more failed children than this within the window stop the whole server
    /// (exit status 3).
    pub intensity: Option<IntensitySpec>,
}

impl Default for RootSpec {
    /// 5 s initial, 5 m max, ×2, ±10 %, reset after 60 s; no root intensity.
    fn default() -> Self {
        RootSpec {
            backoff: BackoffSpec {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(300),
                ..BackoffSpec::default()
            },
            intensity: None,
        }
    }
}

/// A whole tree: where it keeps its files, the root's policy, the workers in start order.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    /// `history.sqlite`, `index.sqlite`, `vigil.sock`, `vigil.lock` live here.
    pub data_dir: PathBuf,
    /// Worker logs and `vigil.log`.
    pub log_dir: PathBuf,
    /// The config file this tree came from, if any (shown in the dump).
    pub config_path: Option<PathBuf>,
    /// The root supervisor's policy.
    pub root: RootSpec,
    /// Workers, in start order.
    pub workers: Vec<WorkerSpec>,
    /// Whether workers get cgroups (`cgroup:` in the config).
    pub cgroup: CgroupMode,
    /// What the server set up for that mode ([`Containment::setup`]); process groups by
    /// default, so a tree built without `vigil serve` behaves as before.
    pub containment: Containment,
    /// Where `vigil serve` answers HTTP (`/metrics`, `/healthz`, `/readyz`); `None`: nowhere.
    pub http: Option<std::net::SocketAddr>,
    /// The groups between the root and the workers, outermost first (a parent before its
    /// children); empty for a flat tree. `workers` stays the flat, depth-first list.
    pub groups: Vec<GroupSpec>,
}

/// A group's strategy, with OTP's meanings: what else restarts when a child restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that died.
    #[default]
    OneForOne,
    /// All the children: the others stopped in reverse start order, then all started in order.
    OneForAll,
    /// The child that died and the ones after it: those stopped in reverse order, then started
    /// again in order.
    RestForOne,
}

impl Strategy {
    /// The dump's name: `"one_for_one"`, `"one_for_all"`, `"rest_for_one"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }

    /// Whether each child starts only once the one before it is `running`.
    pub fn gated(self) -> bool {
        !matches!(self, Strategy::OneForOne)
    }
}

/// A child of a group: a worker or another group, named (names are unique across the tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildRef {
    /// The worker of that name (in [`TreeSpec::workers`]).
    Worker(String),
    /// The group of that name (in [`TreeSpec::groups`]).
    Group(String),
}

impl ChildRef {
    /// The child's name.
    pub fn name(&self) -> &str {
        match self {
            ChildRef::Worker(n) | ChildRef::Group(n) => n,
        }
    }
}

/// One group of the tree: its strategy, its policy for failed children, its ordered children.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    /// Unique across the tree (workers and groups together).
    pub name: String,
    /// The enclosing group; `None`: a child of the root.
    pub parent: Option<String>,
    /// What else restarts with a child.
    pub strategy: Strategy,
    /// With `Some`: more failed children than this within the window fail the group.
    pub intensity: Option<IntensitySpec>,
    /// Delay before a failed child is started afresh (one counter per child).
    pub backoff: BackoffSpec,
    /// The children, in start order.
    pub children: Vec<ChildRef>,
}

impl TreeSpec {
    /// `<data_dir>/history.sqlite`.
    pub fn history_path(&self) -> PathBuf {
        self.data_dir.join("history.sqlite")
    }
    /// `<data_dir>/vigil.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.data_dir.join("vigil.sock")
    }
    /// `<data_dir>/vigil.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.data_dir.join("vigil.lock")
    }

    /// The group named `name`, if any.
    pub fn group(&self, name: &str) -> Option<&GroupSpec> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The innermost group holding the worker (or group) `name`; `None`: a child of the root.
    pub fn parent_of(&self, name: &str) -> Option<&GroupSpec> {
        self.groups
            .iter()
            .find(|g| g.children.iter().any(|c| c.name() == name))
    }

    /// The workers of group `name`, depth-first in start order; `None` when no such group.
    pub fn group_workers(&self, name: &str) -> Option<Vec<&str>> {
        let group = self.group(name)?;
        let mut out = Vec::new();
        for child in &group.children {
            match child {
                ChildRef::Worker(w) => out.push(w.as_str()),
                ChildRef::Group(g) => out.extend(self.group_workers(g).unwrap_or_default()),
            }
        }
        Some(out)
    }
}
