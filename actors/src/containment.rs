//! Containment: what holds a worker's processes together — a cgroup of its own, or (where no
//! cgroup can be created) its process group.
//!
//! Owns the choice made once at server start ([`Containment::setup`] for the config's
//! [`CgroupMode`]), the instance's cgroup tree for the life of the server, the startup sweep
//! of cgroups a dead server left, and the list of trees the guardian must kill if the server
//! dies. It is the seam the tree uses: [`crate::process`] asks it for a worker's
//! [`WorkerCgroup`]; nobody else opens cgroup files. It must not spawn, reap, or decide about
//! restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cgroup::{self, CgroupError, Hierarchies, Instance, Via, WorkerCgroup};

/// `cgroup: Auto | Required | Off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum CgroupMode {
    /// A cgroup per worker whenever the server can create one; process groups otherwise.
    #[default]
    Auto,
    /// A cgroup per worker, or the server refuses to start.
    Required,
    /// Process groups only.
    Off,
}

/// Processes a dead server left in one worker's cgroup, killed by [`Containment::sweep_leftovers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// The worker (the cgroup's name).
    pub worker: String,
    /// A member that led its own process group (the worker's leader), when there was one.
    pub leader: Option<u32>,
    /// Every member that was killed.
    pub pids: Vec<u32>,
}

/// Why containment could not be set up as the config asks.
#[derive(Debug, thiserror::Error)]
pub enum ContainmentError {
    /// `cgroup: Required`, and no cgroup could be created.
    #[error("cgroup: Required, but no cgroup can be created for workers: {0}")]
    Required(#[source] CgroupError),
}

/// How this server contains its workers.
#[derive(Clone, Debug, Default)]
pub enum Containment {
    /// Process groups only (`cgroup: Off`, or no writable cgroup).
    #[default]
    ProcessGroup,
    /// A cgroup per worker below the instance's tree.
    Cgroup(Arc<Instance>),
}

impl Containment {
    /// Decide once, at server start. `also_move` are pids that must follow the server if it
    /// has to move into a leaf cgroup (its guardian).
    pub fn setup(
        mode: CgroupMode,
        data_dir: &Path,
        also_move: &[u32],
    ) -> Result<Containment, ContainmentError> {
        if mode == CgroupMode::Off {
            return Ok(Containment::ProcessGroup);
        }
        match Instance::create(&Hierarchies::discover(), data_dir, also_move) {
            Ok(instance) => {
                tracing::info!(
                    v2 = ?instance.v2_workers,
                    memory = ?instance.memory,
                    pids = ?instance.pids,
                    cpu = ?instance.cpu,
                    "workers are contained in cgroups"
                );
                Ok(Containment::Cgroup(Arc::new(instance)))
            }
            Err(e) if mode == CgroupMode::Required => Err(ContainmentError::Required(e)),
            Err(e) => {
                tracing::warn!(error = %e, "no cgroups for workers; process groups only");
                Ok(Containment::ProcessGroup)
            }
        }
    }

    /// The dump's `containment`: `"cgroup"` or `"process-group"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Containment::ProcessGroup => "process-group",
            Containment::Cgroup(_) => "cgroup",
        }
    }

    /// Worker `name`'s cgroup (not created until its first spawn prepares it).
    pub fn worker(&self, name: &str) -> Option<WorkerCgroup> {
        match self {
            Containment::ProcessGroup => None,
            Containment::Cgroup(instance) => Some(instance.worker(name)),
        }
    }

    /// Whether memory is accounted per worker (OOM kills can be counted).
    pub fn has_memory(&self) -> bool {
        matches!(self, Containment::Cgroup(i) if i.memory != Via::None)
    }

    /// The trees to kill if the server dies (for the guardian).
    pub fn kill_roots(&self) -> Vec<PathBuf> {
        match self {
            Containment::ProcessGroup => Vec::new(),
            Containment::Cgroup(instance) => instance.kill_roots(),
        }
    }

    /// At startup, after the orphan sweep: kill whatever a previous server on this data
    /// directory left in its workers' cgroups (processes that left their group, and workers
    /// whose spawn the dead server had not yet recorded, which the history's rows cannot
    /// name), then remove the empty cgroups. Returns what was killed, per worker.
    pub fn sweep_leftovers(&self) -> Vec<Leftover> {
        let mut found: Vec<Leftover> = Vec::new();
        for root in self.kill_roots() {
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let members = cgroup::tree_members(&e.path());
                if !members.is_empty() {
                    let worker = e.file_name().to_string_lossy().into_owned();
                    // The same process is a member in every hierarchy: count it once.
                    match found.iter_mut().find(|l| l.worker == worker) {
                        Some(l) => {
                            for p in members {
                                if !l.pids.contains(&p) {
                                    l.pids.push(p);
                                }
                            }
                        }
                        None => found.push(Leftover {
                            leader: members
                                .iter()
                                .copied()
                                .find(|&p| crate::procfs::pgid(p) == Some(p)),
                            worker,
                            pids: members,
                        }),
                    }
                }
            }
            if !cgroup::tree_members(&root).is_empty() {
                tracing::warn!(
                    cgroup = %root.display(),
                    "killing processes a previous server left in its workers' cgroups"
                );
                cgroup::kill_tree(Some(&root));
            }
            if let Ok(entries) = std::fs::read_dir(&root) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        cgroup::remove_tree(&e.path());
                    }
                }
            }
        }
        found
    }

    /// At the end of the server: remove the (empty) cgroups it created.
    pub fn teardown(&self) {
        if let Containment::Cgroup(instance) = self {
            instance.remove();
        }
    }
}
