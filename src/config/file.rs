//! The RON shape of `config.ron`: serde types that mirror the file, and the file-level defaults.
//!
//! Owns what a user may write and what an omitted field means. Every struct rejects unknown
//! fields. Durations and signals are parsed here, while RON still knows the position, so a bad
//! `"5x"` is reported at its line and column. It must not resolve paths or check relations
//! between fields (`initial <= max`, unique names): `resolve.rs` does that.
//!
//! Defaults, in one place:
//! - file level (here): `data_dir` `"var"`, `log_dir` `"<data_dir>/log"`, `workers` `[]`,
//!   `log: (max_bytes: 10485760, max_files: 5)` ([`LogSpec`]'s constants), Indexing `roots`
//!   `["."]` and `interval` `"30s"`, Command `env` `{}` and `cwd` `None`; a worker's `user`,
//!   `group`, `umask`, `nice` and `env_file` `None` (the server's), `clear_env` `false`;
//! - restart policy: an omitted field keeps the worker type's
//!   [`policy()`](vigil_actors::worker_type::WorkerType::policy) (for the built-in types:
//!   Permanent; backoff 100ms..30s ×2 ±0.1 reset after 60s; intensity 5 within 60s;
//!   SIGTERM with 5s grace; `start_secs` 1s; no heartbeat), and the root's omitted fields keep
//!   [`RootSpec::default()`](vigil_actors::spec::RootSpec) (backoff 5s..5m, no intensity);
//! - a `Group` entry: strategy `OneForOne`, no intensity, the root's backoff; `instances` absent
//!   means one worker of that name. Worker-only fields are `Option`s so that `resolve.rs` can
//!   tell a group entry that wrote one of them ([`WorkerFile::worker_fields`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use vigil_actors::environ;
use vigil_actors::signal::Signal;
use vigil_actors::spec::{CgroupMode, LogSpec, RestartType};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename = "config", deny_unknown_fields)]
pub struct ConfigFile {
    /// `history.sqlite`, `index.sqlite`, `vigil.sock`, `vigil.lock`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Worker logs and `vigil.log`; `None` means `<data_dir>/log`.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// The root supervisor's policy.
    #[serde(default)]
    pub root: RootFile,
    /// Workers, in start order.
    #[serde(default)]
    pub workers: Vec<WorkerFile>,
    /// `Auto` (default) | `Required` | `Off`: a cgroup per worker.
    #[serde(default)]
    pub cgroup: CgroupMode,
    /// `Some("127.0.0.1:9750")`: serve `/metrics`, `/healthz`, `/readyz` there (default `None`).
    #[serde(default)]
    pub http: Option<HttpAddr>,
}

/// `root: (backoff: (..), intensity: None)`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "root", deny_unknown_fields)]
pub struct RootFile {
    /// Delay before a failed WorkerSupervisor is started afresh.
    #[serde(default)]
    pub backoff: BackoffFile,
    /// With `Some`: too many escalations stop the server (exit 3).
    #[serde(default)]
    pub intensity: Option<IntensityFile>,
}

/// One worker.
#[derive(Debug, Deserialize)]
#[serde(rename = "worker", deny_unknown_fields)]
pub struct WorkerFile {
    /// Unique; also the log file's stem.
    pub name: String,
    /// What it runs.
    pub kind: KindFile,
    /// Permanent | Transient | Temporary.
    #[serde(default)]
    pub restart: Option<RestartType>,
    /// Delay between restarts (`None` when absent: a group entry must not have it).
    #[serde(default)]
    pub backoff: Option<BackoffFile>,
    /// Restarts allowed before escalating to the worker's group.
    #[serde(default)]
    pub intensity: Option<IntensityFile>,
    /// How the worker is stopped.
    #[serde(default)]
    pub shutdown: Option<ShutdownFile>,
    /// `running` after `READY=1` or this long alive.
    #[serde(default)]
    pub start_secs: Option<Dur>,
    /// Outer `None`: the field is absent (keep the type's default); `Some(None)`: `None` written.
    #[serde(default, deserialize_with = "present")]
    pub heartbeat_timeout: Option<Option<Dur>>,
    /// Log rotation.
    #[serde(default)]
    pub log: Option<LogFile>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<LimitsFile>,
    /// `true`: this worker's final end shuts the server down, and `serve` exits with its code.
    #[serde(default)]
    pub significant: Option<bool>,
    /// `N` copies `NAME@0..NAME@{N-1}` in a `OneForOne` group named `NAME` (default 1).
    #[serde(default)]
    pub instances: Option<u32>,
    /// Run as this user (name or uid); `None`: the server's.
    #[serde(default)]
    pub user: Option<String>,
    /// Primary group (name or gid); `None`: the user's primary group.
    #[serde(default)]
    pub group: Option<String>,
    /// File creation mask, an octal string (`"027"`); `None`: the server's.
    #[serde(default)]
    pub umask: Option<Umask>,
    /// Nice value, -20..19; `None`: the server's.
    #[serde(default)]
    pub nice: Option<Nice>,
    /// A file of `KEY=VALUE` lines, relative to the config's folder; `env` wins over it.
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    /// Only PATH, the `VIGIL_*` variables, `env_file` and `env`.
    #[serde(default)]
    pub clear_env: Option<bool>,
}

impl WorkerFile {
    /// The worker-only fields written on this entry, by their key: a group entry may have
    /// none of them (only `name` and `kind`).
    pub fn worker_fields(&self) -> Vec<&'static str> {
        let written = [
            ("restart", self.restart.is_some()),
            ("backoff", self.backoff.is_some()),
            ("intensity", self.intensity.is_some()),
            ("shutdown", self.shutdown.is_some()),
            ("start_secs", self.start_secs.is_some()),
            ("heartbeat_timeout", self.heartbeat_timeout.is_some()),
            ("log", self.log.is_some()),
            ("limits", self.limits.is_some()),
            ("significant", self.significant.is_some()),
            ("instances", self.instances.is_some()),
            ("user", self.user.is_some()),
            ("group", self.group.is_some()),
            ("umask", self.umask.is_some()),
            ("nice", self.nice.is_some()),
            ("env_file", self.env_file.is_some()),
            ("clear_env", self.clear_env.is_some()),
        ];
        written
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect()
    }
}

/// `OneForOne` (default) | `OneForAll` | `RestForOne`: what else restarts with a child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename = "strategy")]
pub enum StrategyFile {
    /// Only the child that died.
    #[default]
    OneForOne,
    /// All children.
    OneForAll,
    /// The child that died and the ones after it.
    RestForOne,
}

/// `limits: (memory_max, pids_max, cpu_max, nofile)`, each optional (default: unlimited).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename = "limits", deny_unknown_fields)]
pub struct LimitsFile {
    /// Memory of all the worker's processes together: `"64MiB"`, `"2GiB"`, `"500MB"`, `"4096"`.
    #[serde(default)]
    pub memory_max: Option<Size>,
    /// Processes and threads at once.
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// CPU time, in CPUs.
    #[serde(default)]
    pub cpu_max: Option<f64>,
    /// `RLIMIT_NOFILE`.
    #[serde(default)]
    pub nofile: Option<u64>,
}

/// The built-in worker kinds.
#[derive(Debug, Deserialize)]
#[serde(rename = "kind", deny_unknown_fields)]
pub enum KindFile {
    /// `vigil worker indexing`, run by the server with this config.
    Indexing {
        /// Folders to discover projects under.
        #[serde(default = "default_roots")]
        roots: Vec<PathBuf>,
        /// Time between the start of one cycle and the next.
        #[serde(default = "default_interval")]
        interval: Dur,
    },
    /// Any program.
    Command {
        /// Program and arguments, never through a shell unless argv says so.
        argv: Vec<String>,
        /// Extra environment.
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory; `None` keeps the server's.
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// A group of children (workers or groups) supervised together.
    Group {
        /// What else restarts with a child.
        #[serde(default)]
        strategy: StrategyFile,
        /// `Some`: more failed children than this within the window fail the group.
        #[serde(default)]
        intensity: Option<IntensityFile>,
        /// Delay before a failed child is started afresh.
        #[serde(default)]
        backoff: BackoffFile,
        /// The children, in start order.
        #[serde(default)]
        workers: Vec<WorkerFile>,
    },
}

/// `backoff: (initial, max, multiplier, jitter, reset_after)`, each optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename = "backoff", deny_unknown_fields)]
pub struct BackoffFile {
    /// Delay before the first restart.
    #[serde(default)]
    pub initial: Option<Dur>,
    /// Upper bound.
    #[serde(default)]
    pub max: Option<Dur>,
    /// Growth per consecutive restart.
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// Relative jitter.
    #[serde(default)]
    pub jitter: Option<f64>,
    /// A run this long resets the growth.
    #[serde(default)]
    pub reset_after: Option<Dur>,
}

/// `intensity: (max_restarts, within)`, each optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename = "intensity", deny_unknown_fields)]
pub struct IntensityFile {
    /// Restarts allowed inside the window.
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// The sliding window.
    #[serde(default)]
    pub within: Option<Dur>,
}

/// `shutdown: (signal, grace)`, each optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename = "shutdown", deny_unknown_fields)]
pub struct ShutdownFile {
    /// The first signal sent to the group.
    #[serde(default)]
    pub signal: Option<SignalName>,
    /// Wait this long before SIGKILL.
    #[serde(default)]
    pub grace: Option<Dur>,
}

/// `log: (max_bytes, max_files)`: rotation of `<log_dir>/<name>.log`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename = "log", deny_unknown_fields)]
pub struct LogFile {
    /// Rotate when the file would grow past this.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

impl Default for LogFile {
    fn default() -> Self {
        LogFile {
            max_bytes: default_max_bytes(),
            max_files: default_max_files(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("var")
}

/// The log folder's name inside `data_dir` when `log_dir` is omitted.
pub const DEFAULT_LOG_SUBDIR: &str = "log";

fn default_roots() -> Vec<PathBuf> {
    vec![PathBuf::from(".")]
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(30))
}

fn default_max_bytes() -> u64 {
    LogSpec::DEFAULT_MAX_BYTES
}

fn default_max_files() -> u32 {
    LogSpec::DEFAULT_MAX_FILES
}

/// Marks a field as present, so that `None` written in the file differs from no field at all.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Dur>>, D::Error> {
    Option::<Dur>::deserialize(d).map(Some)
}

/// The longest duration a config may give (365 days): beyond it, deadlines computed from now
/// could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration written as a humantime string: `"250ms"`, `"5s"`, `"2m"`, `"1h 30m"`, `"0s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurVisitor;
        impl Visitor<'_> for DurVisitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"5s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                let shown = vigil_actors::spec::quote_short(s);
                let d = humantime::parse_duration(s).map(Dur).map_err(|e| {
                    let why = match e {
                        humantime::DurationError::UnknownUnit { unit, .. } => {
                            format!("unknown unit {unit:?}")
                        }
                        other => other.to_string(),
                    };
                    E::custom(format_args!(
                        "invalid duration {shown} ({why}); write it as \"250ms\", \"5s\" or \"2m\""
                    ))
                })?;
                if d.0 > MAX_DURATION {
                    return Err(E::custom(format_args!(
                        "duration {shown} is longer than the most vigil accepts, 365 days"
                    )));
                }
                Ok(d)
            }
        }
        d.deserialize_any(DurVisitor)
    }
}

/// A size in bytes written as a string with an optional unit (`"64MiB"`, `"2GiB"`, `"500MB"`,
/// `"4096"`; binary units are powers of 1024, decimal ones of 1000) or as a plain integer.
/// Parsed by the `parse-size` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64MiB\", \"2GiB\" or \"4096\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format_args!("invalid size {v}: it is negative")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size::parse_size(s.trim())
                    .map(Size)
                    .map_err(|e| {
                        E::custom(format_args!(
                            "invalid size {s:?} ({e}); write it as \"64MiB\", \"2GiB\", \"500MB\" or \"4096\""
                        ))
                    })
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// An HTTP listening address written as `"IP:PORT"` (`"127.0.0.1:9750"`, `"[::1]:9750"`,
/// `"0.0.0.0:9750"`). No host names: what the server listens on is exactly what is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for HttpAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AddrVisitor;
        impl Visitor<'_> for AddrVisitor {
            type Value = HttpAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address such as \"127.0.0.1:9750\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HttpAddr, E> {
                s.parse::<SocketAddr>().map(HttpAddr).map_err(|_| {
                    E::custom(format_args!(
                        "invalid http address {s:?}; write an IP address and a port, such as \"127.0.0.1:9750\""
                    ))
                })
            }
        }
        d.deserialize_any(AddrVisitor)
    }
}

/// A signal written by name or number: `"SIGTERM"`, `"TERM"`, `"15"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalName(pub Signal);

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SignalVisitor;
        impl Visitor<'_> for SignalVisitor {
            type Value = SignalName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name such as \"SIGTERM\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SignalName, E> {
                s.parse::<Signal>().map(SignalName).map_err(E::custom)
            }
        }
        d.deserialize_any(SignalVisitor)
    }
}

/// A umask written as an octal string: `"027"`, `"0022"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Umask(pub u32);

impl<'de> Deserialize<'de> for Umask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UmaskVisitor;
        impl Visitor<'_> for UmaskVisitor {
            type Value = Umask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal umask string such as \"027\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Umask, E> {
                environ::parse_umask(s).map(Umask).map_err(E::custom)
            }
        }
        d.deserialize_any(UmaskVisitor)
    }
}

/// A nice value, checked to be within -20..19 where RON still knows its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nice(pub i32);

impl<'de> Deserialize<'de> for Nice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NiceVisitor;
        impl Visitor<'_> for NiceVisitor {
            type Value = Nice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a nice value from -20 to 19")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Nice, E> {
                let n = i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX });
                environ::check_nice(n).map(Nice).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Nice, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(NiceVisitor)
    }
}
