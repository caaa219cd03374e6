//! cgroups: one per worker, below the server's own, for tracking, killing, limits and OOM.
//!
//! Owns the ~dozen cgroup files vigil uses, on cgroup v2 (the unified hierarchy) and on hosts
//! whose controllers are bound to v1 hierarchies (`memory`, `pids`, `cpu`, `cpuacct`):
//! discovering where the server's own cgroups are ([`Hierarchies::discover`]), creating the
//! instance's tree ([`Instance`]) and one cgroup per worker ([`WorkerCgroup`]), writing limits,
//! reading usage and OOM evidence, killing every member and learning that a cgroup is empty.
//! It must not spawn, reap or decide anything: [`crate::containment`] is the seam the rest of
//! the tree uses.
//!
//! # Layout
//! ```text
//! <own cgroup>/                       the server's cgroup (per hierarchy)
//! └─ vigil-<hash of data_dir>/        this instance (a second vigil elsewhere has its own)
//!    ├─ supervisor/                   the server and its guardian (v2, only when they had to
//!    │                                leave <own> to enable controllers: no internal processes)
//!    └─ workers/                      killed as one by the guardian if the server dies
//!       └─ <worker name>/             one per worker: limits, usage, OOM events
//! ```
//! The same `vigil-<hash>/workers/<name>` path is created in every hierarchy vigil uses: v2 for
//! tracking and `cgroup.kill` (and, with controllers, limits); each v1 controller hierarchy for
//! its limits and accounting.
//!
//! # Caveats
//! - v1 has no `cgroup.kill`: members are SIGKILLed one by one until none is left (a fork
//!   racing the loop is caught by the next round; `pids.max` bounds how many there can be).
//! - `memory.peak` (v2) is per cgroup lifetime: vigil removes the (empty) v2 cgroup and makes
//!   it afresh before each run; v1's `memory.max_usage_in_bytes` is reset by a write.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a cgroup could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read, created or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted ("cannot create", "cannot write").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No hierarchy offers the controller a limit needs.
    #[error("{limit} cannot be enforced: no {controller} controller is available to vigil")]
    NoController {
        /// The limit (`limits.memory_max`, ...).
        limit: &'static str,
        /// The controller (`memory`, `pids`, `cpu`).
        controller: &'static str,
    },
    /// No writable cgroup hierarchy at all.
    #[error("no writable cgroup hierarchy: {0}")]
    Unavailable(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError + use<> {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// Resource limits of one worker (all optional).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Memory of all its processes together, in bytes.
    pub memory_max: Option<u64>,
    /// Processes and threads at once.
    pub pids_max: Option<u64>,
    /// CPU time in CPUs (0.5 = half of one CPU).
    pub cpu_max: Option<f64>,
    /// `RLIMIT_NOFILE` of its processes (not a cgroup limit: set in the spawn).
    pub nofile: Option<u64>,
}

impl Limits {
    /// Whether a cgroup controller is needed (`nofile` is not a cgroup limit).
    pub fn needs_cgroup(&self) -> bool {
        self.memory_max.is_some() || self.pids_max.is_some() || self.cpu_max.is_some()
    }
}

/// The server's own cgroup directory in each hierarchy vigil can use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// The v2 (unified) cgroup of the server.
    pub v2: Option<PathBuf>,
    /// Whether the v2 root of this mount is the server's cgroup (no internal-process rule).
    pub v2_is_root: bool,
    /// v1 `memory` hierarchy: the server's cgroup there.
    pub memory: Option<PathBuf>,
    /// v1 `pids`.
    pub pids: Option<PathBuf>,
    /// v1 `cpu` (may be co-mounted with cpuacct).
    pub cpu: Option<PathBuf>,
    /// v1 `cpuacct`.
    pub cpuacct: Option<PathBuf>,
}

impl Hierarchies {
    /// Read `/proc/self/cgroup` and `/proc/self/mountinfo`.
    pub fn discover() -> Hierarchies {
        let cgroups = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::from_text(&cgroups, &mounts)
    }

    /// [`discover`](Self::discover) on the files' text (tested on samples of both layouts).
    pub fn from_text(cgroups: &str, mountinfo: &str) -> Hierarchies {
        let mut h = Hierarchies::default();
        // mountinfo: id parent major:minor root mountpoint opts - fstype source superopts
        let mut mounts: Vec<(String, PathBuf, String, String)> = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                continue;
            }
            mounts.push((
                r[0].to_string(),
                PathBuf::from(unescape(l[4])),
                l[3].to_string(),
                r[2].to_string(),
            ));
        }
        let join = |mountpoint: &Path, root: &str, own: &str| {
            let rel = own.strip_prefix(root).unwrap_or(own);
            let rel = rel.trim_start_matches('/');
            if rel.is_empty() {
                mountpoint.to_path_buf()
            } else {
                mountpoint.join(rel)
            }
        };
        for line in cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                if let Some((_, mp, root, _)) = mounts.iter().find(|m| m.0 == "cgroup2") {
                    h.v2 = Some(join(mp, root, path));
                    h.v2_is_root = path == "/" || path == root;
                }
                continue;
            }
            for c in controllers.split(',') {
                let slot = match c {
                    "memory" => &mut h.memory,
                    "pids" => &mut h.pids,
                    "cpu" => &mut h.cpu,
                    "cpuacct" => &mut h.cpuacct,
                    _ => continue,
                };
                if let Some((_, mp, root, _)) = mounts
                    .iter()
                    .find(|m| m.0 == "cgroup" && m.3.split(',').any(|o| o == c))
                {
                    *slot = Some(join(mp, root, path));
                }
            }
        }
        h
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// Where each kind of limit and accounting lives for this instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Not available.
    None,
    /// The v2 hierarchy's controller.
    V2,
    /// The v1 hierarchy of that controller.
    V1,
}

/// This server instance's cgroup tree in every usable hierarchy: `vigil-<hash>/workers`.
#[derive(Debug)]
pub struct Instance {
    /// `<own v2>/vigil-<hash>/workers`, the tracking and kill tree.
    pub v2_workers: Option<PathBuf>,
    /// `<own v1 memory>/vigil-<hash>/workers`.
    pub memory_workers: Option<PathBuf>,
    /// `<own v1 pids>/vigil-<hash>/workers`.
    pub pids_workers: Option<PathBuf>,
    /// `<own v1 cpu>/vigil-<hash>/workers`.
    pub cpu_workers: Option<PathBuf>,
    /// `<own v1 cpuacct>/vigil-<hash>/workers` (usage only).
    pub cpuacct_workers: Option<PathBuf>,
    /// Where memory limits, usage and OOM events come from.
    pub memory: Via,
    /// Where `pids.max` is written.
    pub pids: Via,
    /// Where `cpu.max` is written.
    pub cpu: Via,
    /// The `vigil-<hash>` directories created, to remove at the end.
    created: Vec<PathBuf>,
}

/// `vigil-<16 hex digits>`: FNV-1a of the canonical data directory, so a server restarted on
/// the same data directory finds its predecessor's cgroups, and two instances never share one.
pub fn instance_name(data_dir: &Path) -> String {
    let canonical = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("vigil-{hash:016x}")
}

impl Instance {
    /// Create `vigil-<hash>/workers` in every hierarchy of `h` that is writable, enabling the
    /// v2 controllers it can (moving the server — and `also_move`, its guardian — into
    /// `vigil-<hash>/supervisor` when that is needed to satisfy the no-internal-process rule).
    /// An error only when no hierarchy at all could be used.
    pub fn create(
        h: &Hierarchies,
        data_dir: &Path,
        also_move: &[u32],
    ) -> Result<Instance, CgroupError> {
        let name = instance_name(data_dir);
        let mut created = Vec::new();
        let mut make = |own: &Option<PathBuf>| -> Option<PathBuf> {
            let base = own.as_ref()?.join(&name);
            let workers = base.join("workers");
            match fs::create_dir_all(&workers) {
                Ok(()) => {
                    created.push(base);
                    Some(workers)
                }
                Err(e) => {
                    tracing::debug!(path = %workers.display(), error = %e, "cgroup hierarchy not writable");
                    None
                }
            }
        };
        let v2_workers = make(&h.v2);
        let memory_workers = make(&h.memory);
        let pids_workers = make(&h.pids);
        let cpu_workers = make(&h.cpu);
        let cpuacct_workers = if h.cpuacct == h.cpu {
            cpu_workers.clone()
        } else {
            make(&h.cpuacct)
        };
        if v2_workers.is_none() && memory_workers.is_none() && pids_workers.is_none() {
            return Err(CgroupError::Unavailable(match (&h.v2, &h.memory) {
                (None, None) => "no cgroup hierarchy is mounted".into(),
                _ => "the server's cgroups are not writable (no delegation?)".into(),
            }));
        }
        let mut instance = Instance {
            v2_workers,
            memory_workers,
            pids_workers,
            cpu_workers,
            cpuacct_workers,
            memory: Via::None,
            pids: Via::None,
            cpu: Via::None,
            created,
        };
        let enabled = match (&instance.v2_workers, &h.v2) {
            (Some(workers), Some(own)) => {
                enable_v2_controllers(own, workers, h.v2_is_root, also_move)
            }
            _ => HashSet::new(),
        };
        let pick = |ctl: &str, v1: &Option<PathBuf>| {
            if enabled.contains(ctl) {
                Via::V2
            } else if v1.is_some() {
                Via::V1
            } else {
                Via::None
            }
        };
        instance.memory = pick("memory", &instance.memory_workers);
        instance.pids = pick("pids", &instance.pids_workers);
        instance.cpu = pick("cpu", &instance.cpu_workers);
        Ok(instance)
    }

    /// The cgroup of worker `name` in every hierarchy (created by [`WorkerCgroup::prepare`]).
    pub fn worker(&self, name: &str) -> WorkerCgroup {
        let at = |base: &Option<PathBuf>| base.as_ref().map(|b| b.join(name));
        WorkerCgroup {
            name: name.to_string(),
            v2: at(&self.v2_workers),
            memory_v1: if self.memory == Via::V1 {
                at(&self.memory_workers)
            } else {
                None
            },
            pids_v1: if self.pids == Via::V1 {
                at(&self.pids_workers)
            } else {
                None
            },
            cpu_v1: if self.cpu == Via::V1 {
                at(&self.cpu_workers)
            } else {
                None
            },
            cpuacct_v1: if self.v2_workers.is_none() {
                at(&self.cpuacct_workers)
            } else {
                None
            },
            memory: self.memory,
            pids: self.pids,
            cpu: self.cpu,
        }
    }

    /// The directories whose whole subtree is the instance's workers (for the guardian and
    /// the startup sweep, which kill what is in them and remove them): v2 first.
    pub fn kill_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = [
            &self.v2_workers,
            &self.memory_workers,
            &self.pids_workers,
            &self.cpu_workers,
            &self.cpuacct_workers,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        roots.dedup();
        roots
    }

    /// Remove what [`create`](Self::create) made (empty cgroups only; the server itself stays
    /// where it is).
    pub fn remove(&self) {
        for base in &self.created {
            // The base stays while the server is still in `supervisor/` (the next server on
            // this data directory removes it, or it stays empty).
            remove_workers_tree(&base.join("workers"));
        }
    }
}

/// Enable memory, pids and cpu for `workers` where `own` offers them; the set enabled.
fn enable_v2_controllers(
    own: &Path,
    workers: &Path,
    own_is_root: bool,
    also_move: &[u32],
) -> HashSet<String> {
    let available: HashSet<String> = fs::read_to_string(own.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| matches!(*c, "memory" | "pids" | "cpu"))
        .map(String::from)
        .collect();
    if available.is_empty() {
        return available;
    }
    let Some(base) = workers.parent() else {
        return HashSet::new();
    };
    if !own_is_root {
        // No internal processes: the server (and its guardian) move into a leaf first.
        let leaf = base.join("supervisor");
        let moved = fs::create_dir_all(&leaf).is_ok()
            && std::iter::once(std::process::id())
                .chain(also_move.iter().copied())
                .all(|pid| fs::write(leaf.join("cgroup.procs"), pid.to_string()).is_ok());
        if !moved {
            tracing::warn!(cgroup = %own.display(), "cannot move the server into a leaf cgroup; no v2 controllers for workers");
            return HashSet::new();
        }
    }
    let mut enabled = HashSet::new();
    for ctl in &available {
        let line = format!("+{ctl}");
        let ok = [own, base, workers].iter().all(|dir| {
            let current =
                fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            current.split_whitespace().any(|c| c == ctl)
                || fs::write(dir.join("cgroup.subtree_control"), &line).is_ok()
        });
        if ok {
            enabled.insert(ctl.clone());
        } else {
            tracing::warn!(controller = %ctl, cgroup = %own.display(), "cannot enable the v2 controller for workers");
        }
    }
    enabled
}

/// One worker's cgroup in every hierarchy vigil uses.
#[derive(Clone, Debug)]
pub struct WorkerCgroup {
    name: String,
    v2: Option<PathBuf>,
    memory_v1: Option<PathBuf>,
    pids_v1: Option<PathBuf>,
    cpu_v1: Option<PathBuf>,
    cpuacct_v1: Option<PathBuf>,
    memory: Via,
    pids: Via,
    cpu: Via,
}

/// Counters read when a run starts, so its evidence is the difference.
#[derive(Clone, Copy, Debug, Default)]
pub struct Baseline {
    oom_kills: Option<u64>,
    /// Whether this run is in a memory cgroup of its own (see [`WorkerCgroup::joins_memory`]).
    accounted: bool,
    /// The system-wide `oom_kill` of `/proc/vmstat` (for runs without memory accounting).
    system_oom_kills: Option<u64>,
}

impl Baseline {
    /// Whether the run's memory is accounted (OOM kills counted, peak known).
    pub fn memory_accounted(&self) -> bool {
        self.accounted
    }
}

/// What the kernel says about one run, read after its leader was reaped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Processes of the run killed by the OOM killer (`None`: no memory accounting).
    pub oom_kills: Option<u64>,
    /// Peak memory of the run (`None`: unknown).
    pub memory_peak_bytes: Option<u64>,
    /// OOM kills anywhere on the system during the run (`/proc/vmstat`), for a hint when the
    /// run had no memory accounting of its own.
    pub system_oom_kills: Option<u64>,
}

/// Current use, for the dump and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CgroupUsage {
    /// Memory charged to the cgroup (`memory.current` / `memory.usage_in_bytes`).
    pub memory_bytes: Option<u64>,
    /// CPU time used since the cgroup was created, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Processes in the cgroup now.
    pub processes: u32,
}

impl WorkerCgroup {
    /// The worker's name (the cgroup's directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether memory is accounted (OOM kills can be counted).
    pub fn has_memory(&self) -> bool {
        self.memory != Via::None
    }

    /// The directory membership is tracked in (v2, else the first v1 one).
    pub fn tracking_dir(&self) -> Option<&Path> {
        self.v2
            .as_deref()
            .or(self.memory_v1.as_deref())
            .or(self.pids_v1.as_deref())
    }

    fn all_dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [
            &self.v2,
            &self.memory_v1,
            &self.pids_v1,
            &self.cpu_v1,
            &self.cpuacct_v1,
        ]
        .into_iter()
        .flatten()
    }

    /// Make the cgroups a run with `limits` joins (a fresh v2 one; the v1 ones it needs),
    /// write `limits` (refusing what cannot be enforced) and read the baseline of this run's
    /// evidence. Called before each spawn; it costs a few directory operations, no migration.
    pub fn prepare(&self, limits: &Limits) -> Result<Baseline, CgroupError> {
        // A fresh v2 cgroup per run: `memory.peak` and `memory.events` count from zero and
        // every limit starts at `max` (the previous run's cgroup is empty by now; if not, it
        // is reused and counted from the baseline, with unset limits written back to `max`).
        let mut reused = false;
        if let Some(dir) = &self.v2 {
            let _ = fs::remove_dir(dir);
            reused = make_dir(dir)?;
        }
        let joined: Vec<PathBuf> = self
            .v1_procs_files(limits)
            .into_iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for dir in &joined {
            make_dir(dir)?;
        }
        let unset = |dir: &Path, file: &str, value: &str| {
            if reused {
                let _ = write(&dir.join(file), value);
            }
        };
        let memory_dir = self.memory_dir();
        match (limits.memory_max, self.memory, memory_dir) {
            (Some(max), Via::V2, Some(dir)) => {
                write(&dir.join("memory.max"), &max.to_string())?;
                // An OOM kill of one process ends the whole worker, in the kernel.
                let _ = write(&dir.join("memory.oom.group"), "1");
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
            (Some(max), Via::V1, Some(dir)) => {
                write(&dir.join("memory.limit_in_bytes"), &max.to_string())?;
                // Per-run peak: v1 resets it on any write.
                let _ = write(&dir.join("memory.max_usage_in_bytes"), "0");
            }
            (Some(_), _, _) => {
                return Err(CgroupError::NoController {
                    limit: "limits.memory_max",
                    controller: "memory",
                });
            }
            (None, Via::V2, Some(dir)) => unset(dir, "memory.max", "max"),
            (None, _, _) => {}
        }
        let pids_dir = match self.pids {
            Via::V2 => self.v2.as_ref(),
            Via::V1 => self.pids_v1.as_ref(),
            Via::None => None,
        };
        match (limits.pids_max, pids_dir) {
            (Some(max), Some(dir)) => write(&dir.join("pids.max"), &max.to_string())?,
            (Some(_), None) => {
                return Err(CgroupError::NoController {
                    limit: "limits.pids_max",
                    controller: "pids",
                });
            }
            (None, Some(dir)) if self.pids == Via::V2 => unset(dir, "pids.max", "max"),
            (None, _) => {}
        }
        let period = 100_000u64;
        let quota = |cpus: f64| ((cpus * period as f64).round() as u64).max(1000);
        match (limits.cpu_max, self.cpu, &self.v2, &self.cpu_v1) {
            (Some(cpus), Via::V2, Some(dir), _) => {
                write(&dir.join("cpu.max"), &format!("{} {period}", quota(cpus)))?;
            }
            (Some(cpus), Via::V1, _, Some(dir)) => {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota(cpus).to_string())?;
            }
            (Some(_), _, _, _) => {
                return Err(CgroupError::NoController {
                    limit: "limits.cpu_max",
                    controller: "cpu",
                });
            }
            (None, Via::V2, Some(dir), _) => unset(dir, "cpu.max", "max"),
            (None, _, _, _) => {}
        }
        let accounted = self.joins_memory(limits);
        Ok(Baseline {
            oom_kills: if accounted {
                self.oom_kill_count()
            } else {
                None
            },
            accounted,
            system_oom_kills: system_oom_kills(),
        })
    }

    /// Whether a run with `limits` joins a memory cgroup: always with the v2 controller (the
    /// run is born there); on v1 only when `memory_max` needs it, because each v1 migration
    /// costs 1–10 ms of spawn time (measured: BENCHMARKS.md).
    pub fn joins_memory(&self, limits: &Limits) -> bool {
        match self.memory {
            Via::V2 => self.v2.is_some(),
            Via::V1 => self.memory_v1.is_some() && limits.memory_max.is_some(),
            Via::None => false,
        }
    }

    fn memory_dir(&self) -> Option<&PathBuf> {
        match self.memory {
            Via::V2 => self.v2.as_ref(),
            Via::V1 => self.memory_v1.as_ref(),
            Via::None => None,
        }
    }

    /// The `cgroup.procs` files a new process writes itself into, one per hierarchy.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.all_dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The v2 cgroup a new process is born into (`clone3` with `CLONE_INTO_CGROUP`).
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// The v1 `cgroup.procs` files a new process must join for `limits`: `memory` and `pids`
    /// and `cpu` only when they limit something (or track it, without v2), `cpuacct` only
    /// without v2 (whose `cpu.stat` counts CPU time otherwise). Each join is a migration
    /// that costs a millisecond or more, so none is made that buys nothing.
    pub fn v1_procs_files(&self, limits: &Limits) -> Vec<PathBuf> {
        let pids = limits.pids_max.is_some() || self.v2.is_none();
        let cpu = limits.cpu_max.is_some();
        let memory = self.joins_memory(limits) || self.v2.is_none();
        [
            (&self.memory_v1, memory),
            (&self.pids_v1, pids),
            (&self.cpu_v1, cpu),
            (&self.cpuacct_v1, true),
        ]
        .into_iter()
        .filter(|(dir, wanted)| *wanted && dir.is_some())
        .filter_map(|(dir, _)| dir.as_ref().map(|d| d.join("cgroup.procs")))
        .collect()
    }

    /// The file whose changes announce an OOM event (v2 `memory.events`, v1
    /// `memory.oom_control`), when memory is accounted.
    pub fn oom_file(&self) -> Option<(Via, PathBuf)> {
        let dir = self.memory_dir()?;
        Some(match self.memory {
            Via::V2 => (Via::V2, dir.join("memory.events")),
            _ => (Via::V1, dir.join("memory.oom_control")),
        })
    }

    /// `oom_kill` of `memory.events` (v2) or `memory.oom_control` (v1).
    pub fn oom_kill_count(&self) -> Option<u64> {
        let (_, file) = self.oom_file()?;
        let text = fs::read_to_string(file).ok()?;
        Some(field(&text, "oom_kill").unwrap_or(0))
    }

    /// The evidence of the run that began at `baseline`.
    pub fn evidence(&self, baseline: &Baseline) -> Evidence {
        let system_oom_kills = match (system_oom_kills(), baseline.system_oom_kills) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        if !baseline.accounted {
            return Evidence {
                oom_kills: None,
                memory_peak_bytes: None,
                system_oom_kills,
            };
        }
        let oom_kills = match (self.oom_kill_count(), baseline.oom_kills) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        let memory_peak_bytes = self.memory_dir().and_then(|dir| match self.memory {
            Via::V2 => read_u64(&dir.join("memory.peak")),
            _ => read_u64(&dir.join("memory.max_usage_in_bytes")),
        });
        Evidence {
            oom_kills,
            memory_peak_bytes,
            system_oom_kills,
        }
    }

    /// Pids of every process in the cgroup now.
    pub fn members(&self) -> Vec<u32> {
        let Some(dir) = self.tracking_dir() else {
            return Vec::new();
        };
        read_pids(&dir.join("cgroup.procs"))
    }

    /// Send `signal` to every member outside process group `pgid` (which the caller signals
    /// with `killpg`, atomically): each process gets the signal once.
    pub fn signal_outside_group(&self, signal: i32, pgid: u32) {
        for pid in self.members() {
            if crate::procfs::pgid(pid) == Some(pgid) {
                continue;
            }
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill on a member's pid; a pid that exited meanwhile is ESRCH.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// Send `signal` to every member.
    pub fn signal_all(&self, signal: i32) {
        for pid in self.members() {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill on a member's pid; a pid that exited meanwhile is ESRCH.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// SIGKILL every member, whatever its session or group: `cgroup.kill` on v2, else one by
    /// one until none is left. Returns how many were alive when it began.
    pub fn kill_all(&self) -> usize {
        let alive = self.members().len();
        if alive == 0 {
            return 0;
        }
        kill_tree(self.tracking_dir().map(Path::to_path_buf).as_deref());
        for dir in [&self.memory_v1, &self.pids_v1].into_iter().flatten() {
            kill_tree(Some(dir));
        }
        alive
    }

    /// Wait (at most `limit`) until no process is left. v2: woken by `cgroup.events`
    /// (`populated 0`) through inotify; v1: re-checked at short intervals.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let events = self.v2.as_ref().map(|d| d.join("cgroup.events"));
        // `cgroup.procs` lists no process that has exited; `populated` may lag behind it (its
        // notification is rate-limited to one per 10 ms).
        let empty = || {
            self.members().is_empty()
                || events.as_ref().is_some_and(|f| {
                    fs::read_to_string(f).is_ok_and(|t| field(&t, "populated") == Some(0))
                })
        };
        if empty() {
            return true;
        }
        let watch = events
            .as_deref()
            .and_then(|f| crate::inotify::Watch::new(f).ok());
        loop {
            if empty() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match &watch {
                Some(w) => {
                    let _ = tokio::time::timeout(left.min(Duration::from_millis(10)), w.changed())
                        .await;
                }
                None => tokio::time::sleep(left.min(Duration::from_millis(5))).await,
            }
        }
    }

    /// Memory, CPU time and process count now.
    pub fn usage(&self) -> CgroupUsage {
        let memory_bytes = self.memory_dir().and_then(|dir| match self.memory {
            Via::V2 => read_u64(&dir.join("memory.current")),
            _ => read_u64(&dir.join("memory.usage_in_bytes")),
        });
        let cpu_ns = match (&self.v2, &self.cpuacct_v1) {
            (Some(dir), _) => fs::read_to_string(dir.join("cpu.stat"))
                .ok()
                .and_then(|t| field(&t, "usage_usec"))
                .map(|us| us.saturating_mul(1000)),
            (None, Some(dir)) => read_u64(&dir.join("cpuacct.usage")),
            (None, None) => None,
        };
        let processes = u32::try_from(self.members().len()).unwrap_or(u32::MAX);
        CgroupUsage {
            memory_bytes,
            cpu_ns,
            processes,
        }
    }

    /// Remove the (empty) cgroup from every hierarchy.
    pub fn remove(&self) {
        for dir in self.all_dirs() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Wakes up when the kernel reports memory events of one worker's cgroup: v2 `memory.events`
/// through inotify, v1 an eventfd registered for `memory.oom_control` in
/// `cgroup.event_control`. A wake-up says "look again", not "OOM happened": callers compare
/// [`WorkerCgroup::oom_kill_count`] with the run's baseline.
pub struct OomWatch {
    inner: OomWatchInner,
}

enum OomWatchInner {
    V2(crate::inotify::Watch),
    V1 {
        eventfd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
        // Registered with the eventfd; must stay open as long as it.
        _control: fs::File,
    },
}

impl std::fmt::Debug for OomWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            OomWatchInner::V2(_) => "OomWatch(v2)",
            OomWatchInner::V1 { .. } => "OomWatch(v1)",
        })
    }
}

impl OomWatch {
    /// Watch `cg`'s memory events; `None` without memory accounting. Must be called inside
    /// a tokio runtime.
    pub fn new(cg: &WorkerCgroup) -> io::Result<Option<OomWatch>> {
        let Some((via, file)) = cg.oom_file() else {
            return Ok(None);
        };
        let inner = match via {
            Via::V2 => OomWatchInner::V2(crate::inotify::Watch::new(&file)?),
            _ => {
                use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
                // SAFETY: eventfd returns a new descriptor or -1.
                let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if raw < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: the kernel just returned this descriptor; nothing else owns it.
                let efd = unsafe { OwnedFd::from_raw_fd(raw) };
                let control = fs::File::open(&file)?;
                let register = file.with_file_name("cgroup.event_control");
                fs::write(
                    &register,
                    format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
                )?;
                // SAFETY: the `OwnedFd` is open, refers to the same eventfd for its whole
                // life, and is owned by the `AsyncFd` until it drops.
                let eventfd = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        efd,
                        tokio::io::Interest::READABLE,
                    )
                }
                .map_err(|e| e.into_parts().1)?;
                OomWatchInner::V1 {
                    eventfd,
                    _control: control,
                }
            }
        };
        Ok(Some(OomWatch { inner }))
    }

    /// Wait for the next memory event.
    pub async fn changed(&self) -> io::Result<()> {
        match &self.inner {
            OomWatchInner::V2(w) => w.changed().await,
            OomWatchInner::V1 { eventfd, .. } => loop {
                use std::os::fd::AsRawFd;
                let mut ready = eventfd.readable().await?;
                let mut count = 0u64;
                // SAFETY: an eventfd read fills exactly 8 bytes of a local u64.
                let n = unsafe {
                    libc::read(
                        eventfd.get_ref().as_raw_fd(),
                        (&raw mut count).cast(),
                        std::mem::size_of::<u64>(),
                    )
                };
                if n == 8 {
                    return Ok(());
                }
                ready.clear_ready();
            },
        }
    }
}

/// Kill everything below `dir` (every descendant cgroup): `cgroup.kill` when the file exists
/// (v2, Linux 5.14), else SIGKILL to each member, repeated until the tree is empty.
pub fn kill_tree(dir: Option<&Path>) {
    let Some(dir) = dir else { return };
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _round in 0..100 {
        let pids = tree_members(dir);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill on a member's pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every pid in `dir` and its descendant cgroups.
pub fn tree_members(dir: &Path) -> Vec<u32> {
    let mut out = read_pids(&dir.join("cgroup.procs"));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(tree_members(&e.path()));
            }
        }
    }
    out
}

/// Remove an instance's `…/vigil-<hash>/workers` tree (a kill root) and, when nothing else is
/// left in it, its `vigil-<hash>` parent.
pub fn remove_workers_tree(workers: &Path) {
    remove_tree(workers);
    if let Some(base) = workers.parent() {
        let _ = fs::remove_dir(base);
    }
}

/// Remove `dir` and its descendant cgroups, deepest first (only empty ones can go).
pub fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// `oom_kill` of `/proc/vmstat`: OOM kills since boot, system-wide.
pub fn system_oom_kills() -> Option<u64> {
    let text = fs::read_to_string("/proc/vmstat").ok()?;
    field(&text, "oom_kill")
}

fn read_pids(file: &Path) -> Vec<u32> {
    fs::read_to_string(file)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `mkdir`; `Ok(true)` when it already existed.
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(true),
        Err(e) => Err(io_err("cannot create", dir)(e)),
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("cannot write", path))
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
11:32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
12:33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
14:35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
18:39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
20:41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// The v2 file formats vigil writes and reads, on a plain directory: this host's v2
    /// hierarchy has no controllers, so the kernel side of it cannot run here.
    #[test]
    fn v2_limits_and_evidence_use_the_kernels_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = dir.path().join("w");
        let cg = WorkerCgroup {
            name: "w".into(),
            v2: Some(w.clone()),
            memory_v1: None,
            pids_v1: None,
            cpu_v1: None,
            cpuacct_v1: None,
            memory: Via::V2,
            pids: Via::V2,
            cpu: Via::V2,
        };
        fs::create_dir(&w).expect("mkdir");
        fs::write(
            w.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("events");
        let limits = Limits {
            memory_max: Some(64 << 20),
            pids_max: Some(100),
            cpu_max: Some(1.5),
            nofile: Some(1024),
        };
        let baseline = cg.prepare(&limits).expect("prepare");
        let read = |f: &str| fs::read_to_string(w.join(f)).expect(f);
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "100");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(cg.procs_files(), vec![w.join("cgroup.procs")]);
        // One more OOM kill in this run; the peak as the kernel writes it.
        fs::write(
            w.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 2\noom_kill 3\n",
        )
        .expect("events");
        fs::write(w.join("memory.peak"), "52428800\n").expect("peak");
        let evidence = cg.evidence(&baseline);
        assert_eq!(evidence.oom_kills, Some(2));
        assert_eq!(evidence.memory_peak_bytes, Some(50 << 20));
        // Unlimited again: the files say so.
        cg.prepare(&Limits::default()).expect("prepare");
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("pids.max"), "max");
        assert_eq!(read("cpu.max"), "max");
        // A limit without its controller is refused, never dropped.
        let bare = WorkerCgroup {
            memory: Via::None,
            ..cg.clone()
        };
        assert!(matches!(
            bare.prepare(&limits),
            Err(CgroupError::NoController {
                controller: "memory",
                ..
            })
        ));
    }

    #[test]
    fn finds_the_servers_cgroups_on_a_hybrid_host() {
        let h = Hierarchies::from_text(HYBRID_CGROUP, HYBRID_MOUNTS);
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert!(h.v2_is_root);
        assert_eq!(
            h.memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(h.pids.as_deref(), Some(Path::new("/sys/fs/cgroup/pids")));
        assert_eq!(h.cpu.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(
            h.cpuacct.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
    }

    #[test]
    fn finds_the_servers_cgroup_on_a_pure_v2_host() {
        let h = Hierarchies::from_text(
            "0::/system.slice/vigil.service\n",
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            h.v2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/system.slice/vigil.service"))
        );
        assert!(!h.v2_is_root);
        assert_eq!(h.memory, None);
    }

    #[test]
    fn a_cgroup_namespace_root_is_the_mount_root() {
        // Inside a container with cgroupns, /proc/self/cgroup says "/" and the mount root is "/".
        let h = Hierarchies::from_text(
            "0::/\n",
            "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert!(h.v2_is_root);
    }

    #[test]
    fn flat_keyed_files_are_read_by_key() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(field(text, "oom_kill"), Some(3));
        assert_eq!(field(text, "oom"), None);
        assert_eq!(field("populated 1\nfrozen 0\n", "populated"), Some(1));
    }

    #[test]
    fn instance_names_differ_by_data_dir() {
        let a = instance_name(Path::new("/nonexistent/a"));
        let b = instance_name(Path::new("/nonexistent/b"));
        assert_ne!(a, b);
        assert!(a.starts_with("vigil-") && a.len() == 22, "{a}");
    }
}
