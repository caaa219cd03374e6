//! The live tree as data: the JSON of `vigil dump --json` and `vigil status --json`.
//!
//! Owns the snapshot types (the contract's NODE), built by the actors when asked. It must not
//! gather anything itself: the root and each WorkerSupervisor fill these in on request.

use serde::{Deserialize, Serialize};

use crate::exit::ExitRecord;
use crate::latency::NotifyLatency;
use crate::spec::WorkerSpec;

/// A worker's state, as the contract spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Spawned, not yet ready (no `READY=1`, younger than `start_secs`).
    Starting,
    /// Ready, or alive for `start_secs`.
    Running,
    /// Dead, waiting to be restarted.
    Backoff,
    /// Asked to stop; waiting for the group to exit.
    Stopping,
    /// Not running and not going to be restarted (by policy or `vigil stop`).
    Stopped,
    /// Its supervisor escalated (restart intensity exceeded); the root will start a fresh one.
    Failed,
    /// Its supervisor did not answer in time (dump only).
    Unresponsive,
    /// In a `OneForAll` or `RestForOne` group: not started until the sibling before it is
    /// `running`.
    Waiting,
}

impl WorkerState {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Backoff => "backoff",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
            WorkerState::Unresponsive => "unresponsive",
            WorkerState::Waiting => "waiting",
        }
    }
}

fn default_containment() -> String {
    "process-group".to_string()
}

/// One worker, as its WorkerSupervisor sees it (the contract's worker NODE without `children`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// The worker's name.
    pub name: String,
    /// The worker type (`"command"`, `"indexing"`, ...).
    pub kind: String,
    /// Current state.
    pub state: WorkerState,
    /// The WorkerSupervisor actor's id (`null` while failed).
    pub actor_id: Option<String>,
    /// Leader pid of the live process group, `null` when not running.
    pub pid: Option<u32>,
    /// Process group id, `null` when not running.
    pub pgid: Option<u32>,
    /// Generation of the current (or last) run; 0 before the first spawn.
    pub generation: u64,
    /// Restarts since the server started.
    pub restarts: u64,
    /// Restarts inside the current intensity window.
    pub restarts_in_window: u32,
    /// The intensity limit (`max_restarts`).
    pub max_restarts: u32,
    /// The intensity window in ms.
    pub intensity_window_ms: u64,
    /// The delay chosen for the pending restart, `null` unless in backoff.
    pub backoff_ms: Option<u64>,
    /// Time until the pending restart, `null` unless in backoff or failed.
    pub next_start_in_ms: Option<u64>,
    /// How long the current process has been alive (0 when none).
    pub uptime_ms: u64,
    /// Absolute path of the worker's log file.
    pub log_path: String,
    /// The last `STATUS=` text the worker sent.
    pub status_text: Option<String>,
    /// Time since the last `WATCHDOG=1` / `READY=1`, `null` before any.
    pub heartbeat_age_ms: Option<u64>,
    /// The most recent exit.
    pub last_exit: Option<ExitRecord>,
    /// Resident memory summed over the process group.
    pub rss_bytes: Option<u64>,
    /// CPU use summed over the process group (percent of one core).
    pub cpu_percent: Option<f64>,
    /// Number of processes of the worker now (its cgroup's members; without a cgroup, its
    /// process group's).
    pub processes: Option<u32>,
    /// `"cgroup"` or `"process-group"`: what contains the worker's processes.
    #[serde(default = "default_containment")]
    pub containment: String,
    /// `limits.memory_max`, `null` when unlimited.
    #[serde(default)]
    pub memory_max_bytes: Option<u64>,
    /// `limits.pids_max`, `null` when unlimited.
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// `limits.cpu_max` in CPUs, `null` when unlimited.
    #[serde(default)]
    pub cpu_max: Option<f64>,
    /// Processes of the worker killed by the OOM killer since the server started.
    #[serde(default)]
    pub oom_kills: u64,
    /// Exit notification latency (leader reaped → its WorkerSupervisor handling the exit) over
    /// the last exits, `null` before the first exit. Not in the contract: for benchmarks.
    #[serde(default)]
    pub exit_notify_us: Option<NotifyLatency>,
}

impl WorkerSnapshot {
    /// A snapshot of `spec` in `state` under `containment` (`"cgroup"` or `"process-group"`):
    /// what the spec says (name, kind, log path, intensity, limits) filled in, everything about
    /// a run empty (no pid, generation 0, no restarts, no last exit). Callers set the rest with
    /// struct update syntax (`WorkerSnapshot { pid, ..WorkerSnapshot::new(..) }`).
    pub fn new(spec: &WorkerSpec, state: WorkerState, containment: &str) -> Self {
        let intensity = spec.policy.intensity;
        WorkerSnapshot {
            name: spec.name.clone(),
            kind: spec.worker_type.kind().to_string(),
            state,
            actor_id: None,
            pid: None,
            pgid: None,
            generation: 0,
            restarts: 0,
            restarts_in_window: 0,
            max_restarts: intensity.max_restarts,
            intensity_window_ms: u64::try_from(intensity.within.as_millis()).unwrap_or(u64::MAX),
            backoff_ms: None,
            next_start_in_ms: None,
            uptime_ms: 0,
            log_path: spec.log.path.display().to_string(),
            status_text: None,
            heartbeat_age_ms: None,
            last_exit: None,
            rss_bytes: None,
            cpu_percent: None,
            processes: None,
            containment: containment.to_string(),
            memory_max_bytes: spec.limits.memory_max,
            pids_max: spec.limits.pids_max,
            cpu_max: spec.limits.cpu_max,
            oom_kills: 0,
            exit_notify_us: None,
        }
    }
}

/// A node of the dump: the root, or a worker (its snapshot's fields at the top level).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// What the node is; its fields appear at the node's top level (`name`, `state`, ...).
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Child nodes.
    pub children: Vec<Node>,
}

/// The fields of a node, by kind of node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeInfo {
    /// A worker's node.
    Worker(Box<WorkerSnapshot>),
    /// The root's node.
    Root(RootInfo),
    /// A group's node (its children are the group's workers and groups, in start order).
    Group(GroupInfo),
}

/// What a group node carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// `starting`, `running`, `restarting`, `stopping`, `stopped` or `failed`.
    pub state: String,
    /// Always `"group"`.
    pub kind: String,
    /// `"one_for_one"`, `"one_for_all"` or `"rest_for_one"`.
    pub strategy: String,
    /// Restarts of its workers since the server started, summed.
    pub restarts: u64,
}

impl GroupInfo {
    /// A group's state from its children's: `during` while its strategy (re)starts them,
    /// `stopping` while one stops, `failed` when one failed, `starting` while one starts or
    /// waits, `stopped` when all are stopped, else `running`.
    pub fn state_of<'a>(states: impl Iterator<Item = &'a str>, during: Option<&str>) -> String {
        if let Some(during) = during {
            return during.into();
        }
        let states: Vec<&str> = states.collect();
        let any = |s: &[&str]| states.iter().any(|x| s.contains(x));
        let state = if any(&["stopping"]) {
            "stopping"
        } else if any(&["failed", "unresponsive"]) {
            "failed"
        } else if any(&["starting", "waiting", "backoff"]) {
            "starting"
        } else if !states.is_empty() && states.iter().all(|x| *x == "stopped") {
            "stopped"
        } else {
            "running"
        };
        state.into()
    }
}

/// What the root node carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootInfo {
    /// Always `"root"`.
    pub name: String,
    /// `"running"`, or `"stopping"` during shutdown.
    pub state: String,
    /// The server's pid.
    pub pid: u32,
    /// Server uptime.
    pub uptime_ms: u64,
    /// The config file, if any.
    pub config_path: Option<String>,
    /// WorkerSupervisors that escalated since start.
    pub escalations: u64,
    /// Escalations within the root intensity window, when one is configured.
    pub escalations_in_window: u32,
}

/// The whole dump: `{"root": NODE}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    /// The root node.
    pub root: Node,
}
