//! Assembling a tree in code: `Tree::builder()…worker(…)…group(…)…start()`.
//!
//! Owns the checks every tree must pass, whether it comes from a config file or from code
//! (unique, file-safe worker names; at least a sane policy), and the convenience of starting a
//! tree with its history writer in one call. It must not parse config text (the binary's
//! `config` module does, and hands its [`TreeSpec`] to [`TreeBuilder::from_spec`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::history::History;
use crate::spec::{
    BackoffSpec, ChildRef, GroupSpec, IntensitySpec, LogSpec, RestartPolicy, RootSpec, Strategy,
    TreeSpec, WorkerSpec, check_worker_name,
};
use crate::tree::Tree;
use crate::worker_type::WorkerType;

/// Why a tree description was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// Two workers share a name.
    #[error("duplicate worker name {0:?}")]
    DuplicateName(String),
    /// A name that cannot be a log file stem.
    #[error(
        "invalid worker name {0:?}: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    InvalidName(String),
    /// A policy that cannot work.
    #[error("worker {worker:?}: {problem}")]
    InvalidPolicy {
        /// The worker.
        worker: String,
        /// What is wrong.
        problem: String,
    },
    /// A group without children.
    #[error("group {0:?} has no workers")]
    EmptyGroup(String),
    /// No data directory was given.
    #[error("no data directory: call data_dir()")]
    NoDataDir,
    /// The history database could not be opened.
    #[error("{0}")]
    History(String),
    /// The root actor did not start.
    #[error("{0}")]
    Start(String),
}

/// Builds a [`TreeSpec`] (and optionally starts it). See [`Tree::builder`].
#[derive(Debug, Default)]
pub struct TreeBuilder {
    data_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    config_path: Option<PathBuf>,
    root: RootSpec,
    workers: Vec<WorkerSpec>,
    groups: Vec<GroupSpec>,
}

/// Describes one group for [`TreeBuilder::group`]: its children in start order, its intensity
/// and its backoff for failed children.
#[derive(Debug)]
pub struct GroupBuilder {
    spec: GroupSpec,
    /// Its workers and those of its nested groups, depth-first.
    workers: Vec<WorkerSpec>,
    /// Its nested groups, outermost first.
    groups: Vec<GroupSpec>,
}

impl GroupBuilder {
    fn new(name: String, parent: Option<String>, strategy: Strategy) -> Self {
        GroupBuilder {
            spec: GroupSpec {
                name,
                parent,
                strategy,
                intensity: None,
                backoff: BackoffSpec::default(),
                children: Vec::new(),
            },
            workers: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// More than `intensity.max_restarts` failed children within `intensity.within` fail the
    /// group, which its parent then handles (default: the group never fails).
    pub fn intensity(mut self, intensity: IntensitySpec) -> Self {
        self.spec.intensity = Some(intensity);
        self
    }

    /// The delay before a failed child is started afresh (one counter per child).
    pub fn backoff(mut self, backoff: BackoffSpec) -> Self {
        self.spec.backoff = backoff;
        self
    }

    /// Add a worker with its type's own policy.
    pub fn worker(self, name: impl Into<String>, worker_type: impl WorkerType) -> Self {
        let policy = worker_type.policy();
        self.worker_with_policy(name, worker_type, policy)
    }

    /// Add a worker with an explicit policy.
    pub fn worker_with_policy(
        mut self,
        name: impl Into<String>,
        worker_type: impl WorkerType,
        policy: RestartPolicy,
    ) -> Self {
        let worker = worker_spec(name.into(), worker_type, policy);
        self.spec
            .children
            .push(ChildRef::Worker(worker.name.clone()));
        self.workers.push(worker);
        self
    }

    /// Add a nested group.
    pub fn group(
        mut self,
        name: impl Into<String>,
        strategy: Strategy,
        children: impl FnOnce(GroupBuilder) -> GroupBuilder,
    ) -> Self {
        let inner = children(GroupBuilder::new(
            name.into(),
            Some(self.spec.name.clone()),
            strategy,
        ));
        self.spec
            .children
            .push(ChildRef::Group(inner.spec.name.clone()));
        self.workers.extend(inner.workers);
        self.groups.push(inner.spec);
        self.groups.extend(inner.groups);
        self
    }
}

impl Tree {
    /// Start describing a tree in code.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), vigil_actors::builder::BuildError> {
    /// use vigil_actors::spec::Launch;
    /// use vigil_actors::tree::Tree;
    /// use vigil_actors::worker_type::CommandWorker;
    ///
    /// let sleeper = CommandWorker {
    ///     launch: Launch { argv: vec!["sleep".into(), "1000".into()], env: Default::default(), cwd: None },
    /// };
    /// let (tree, _history) = Tree::builder().data_dir("/tmp/demo").worker("sleeper", sleeper).start().await?;
    /// tree.request_shutdown();
    /// tree.wait().await;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> TreeBuilder {
        TreeBuilder::default()
    }
}

impl TreeBuilder {
    /// Start from a resolved tree (from a config file), to add code-defined workers to it.
    pub fn from_spec(spec: TreeSpec) -> TreeBuilder {
        TreeBuilder {
            data_dir: Some(spec.data_dir),
            log_dir: Some(spec.log_dir),
            config_path: spec.config_path,
            root: spec.root,
            workers: spec.workers,
            groups: spec.groups,
        }
    }

    /// Where `history.sqlite` (and the worker logs, unless [`log_dir`](Self::log_dir)) go.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Where worker logs go (default `<data_dir>/log`).
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// The root's own backoff and intensity.
    pub fn root(mut self, root: RootSpec) -> Self {
        self.root = root;
        self
    }

    /// Add a worker with its type's own policy.
    pub fn worker(self, name: impl Into<String>, worker_type: impl WorkerType) -> Self {
        let policy = worker_type.policy();
        self.worker_with_policy(name, worker_type, policy)
    }

    /// Add a worker with an explicit policy (e.g. the one config gave for this name).
    pub fn worker_with_policy(
        mut self,
        name: impl Into<String>,
        worker_type: impl WorkerType,
        policy: RestartPolicy,
    ) -> Self {
        self.workers
            .push(worker_spec(name.into(), worker_type, policy));
        self
    }

    /// Add a group of workers (and groups) under the root, after what is there so far:
    ///
    /// ```no_run
    /// # fn demo(db: vigil_actors::worker_type::CommandWorker, indexer: vigil_actors::worker_type::CommandWorker) {
    /// use vigil_actors::spec::Strategy;
    /// use vigil_actors::tree::Tree;
    ///
    /// // The indexer starts once the database is running, and restarts after it does.
    /// let tree = Tree::builder()
    ///     .data_dir("/tmp/demo")
    ///     .group("backend", Strategy::RestForOne, |g| g.worker("db", db).worker("indexing", indexer));
    /// # }
    /// ```
    pub fn group(
        mut self,
        name: impl Into<String>,
        strategy: Strategy,
        children: impl FnOnce(GroupBuilder) -> GroupBuilder,
    ) -> Self {
        let group = children(GroupBuilder::new(name.into(), None, strategy));
        self.workers.extend(group.workers);
        self.groups.push(group.spec);
        self.groups.extend(group.groups);
        self
    }

    /// Check everything and produce the spec.
    pub fn build(self) -> Result<TreeSpec, BuildError> {
        let data_dir = self.data_dir.ok_or(BuildError::NoDataDir)?;
        let log_dir = self.log_dir.unwrap_or_else(|| data_dir.join("log"));
        let mut workers = self.workers;
        validate(&workers)?;
        validate_groups(&workers, &self.groups)?;
        for w in &mut workers {
            if w.log.path.as_os_str().is_empty() {
                w.log.path = log_path(&log_dir, &w.name);
            }
        }
        Ok(TreeSpec {
            data_dir,
            log_dir,
            config_path: self.config_path,
            root: self.root,
            workers,
            cgroup: crate::spec::CgroupMode::Off,
            containment: crate::containment::Containment::ProcessGroup,
            http: None,
            groups: self.groups,
        })
    }

    /// Build, open `<data_dir>/history.sqlite`, and start the tree.
    pub async fn start(self) -> Result<(Tree, History), BuildError> {
        let spec = self.build()?;
        std::fs::create_dir_all(&spec.data_dir).map_err(|e| {
            BuildError::History(format!("cannot create {}: {e}", spec.data_dir.display()))
        })?;
        let history =
            History::open(&spec.history_path()).map_err(|e| BuildError::History(e.to_string()))?;
        let tree = Tree::start(spec, history.clone())
            .await
            .map_err(|e| BuildError::Start(e.to_string()))?;
        Ok((tree, history))
    }
}

/// A worker as the builder adds it: default log rotation (its path is set in `build`, once
/// the log directory is known), no limits, the server's environment.
fn worker_spec(name: String, worker_type: impl WorkerType, policy: RestartPolicy) -> WorkerSpec {
    WorkerSpec {
        log: LogSpec {
            path: PathBuf::new(),
            max_bytes: LogSpec::DEFAULT_MAX_BYTES,
            max_files: LogSpec::DEFAULT_MAX_FILES,
        },
        name,
        worker_type: Arc::new(worker_type),
        policy,
        limits: crate::cgroup::Limits::default(),
        significant: false,
        environment: Default::default(),
    }
}

/// Groups' names are unique across the tree (workers too), and each is a valid name.
fn validate_groups(workers: &[WorkerSpec], groups: &[GroupSpec]) -> Result<(), BuildError> {
    let mut seen: std::collections::HashSet<&str> =
        workers.iter().map(|w| w.name.as_str()).collect();
    for g in groups {
        check_worker_name(&g.name).map_err(|_| BuildError::InvalidName(g.name.clone()))?;
        if g.children.is_empty() {
            return Err(BuildError::EmptyGroup(g.name.clone()));
        }
        if !seen.insert(g.name.as_str()) {
            return Err(BuildError::DuplicateName(g.name.clone()));
        }
        g.intensity
            .map_or(Ok(()), |i| i.check())
            .and_then(|()| g.backoff.check())
            .map_err(|problem| BuildError::InvalidPolicy {
                worker: g.name.clone(),
                problem,
            })?;
    }
    Ok(())
}

/// `<log_dir>/<name>.log`.
pub fn log_path(log_dir: &Path, name: &str) -> PathBuf {
    log_dir.join(format!("{name}.log"))
}

/// The checks every tree passes: names unique and file-safe, policies that can work.
pub fn validate(workers: &[WorkerSpec]) -> Result<(), BuildError> {
    let mut seen = std::collections::HashSet::new();
    for w in workers {
        check_worker_name(&w.name).map_err(|_| BuildError::InvalidName(w.name.clone()))?;
        if !seen.insert(w.name.as_str()) {
            return Err(BuildError::DuplicateName(w.name.clone()));
        }
        w.policy
            .check()
            .map_err(|problem| BuildError::InvalidPolicy {
                worker: w.name.clone(),
                problem,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Launch;
    use crate::worker_type::CommandWorker;

    fn sleeper() -> CommandWorker {
        CommandWorker {
            launch: Launch {
                argv: vec!["sleep".into(), "1".into()],
                env: Default::default(),
                cwd: None,
            },
        }
    }

    #[test]
    fn rejects_duplicate_names() {
        let err = Tree::builder()
            .data_dir("/tmp/x")
            .worker("a", sleeper())
            .worker("a", sleeper())
            .build();
        assert_eq!(err.unwrap_err(), BuildError::DuplicateName("a".into()));
    }

    #[test]
    fn rejects_unsafe_names_and_bad_policies() {
        let err = Tree::builder()
            .data_dir("/tmp/x")
            .worker("../etc", sleeper())
            .build();
        assert!(matches!(err, Err(BuildError::InvalidName(_))));
        let mut p = sleeper().policy();
        p.backoff.multiplier = 0.5;
        let err = Tree::builder()
            .data_dir("/tmp/x")
            .worker_with_policy("a", sleeper(), p)
            .build();
        assert!(matches!(err, Err(BuildError::InvalidPolicy { .. })));
    }

    #[test]
    fn resolves_log_paths() {
        let spec = Tree::builder()
            .data_dir("/tmp/x")
            .worker("a", sleeper())
            .build()
            .unwrap();
        assert_eq!(spec.workers[0].log.path, PathBuf::from("/tmp/x/log/a.log"));
        assert_eq!(spec.history_path(), PathBuf::from("/tmp/x/history.sqlite"));
    }
}
