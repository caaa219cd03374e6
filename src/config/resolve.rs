//! From the parsed file to the library's resolved [`TreeSpec`]: validation and path resolution.
//!
//! Owns every rule that a well-typed file can still break (unique, file-safe names; non-empty
//! argv; multiplier >= 1; 0 <= jitter <= 1; initial <= max; ...), the merge of a worker type's
//! default policy with what the file overrides, and the resolution of relative paths against the
//! config file's folder; and the walk over nested `Group` entries into flat workers (depth-first,
//! start order) plus [`GroupSpec`]s, with `instances: N` expanded to `NAME@0..NAME@{N-1}`. It
//! must not read files or touch the OS beyond `current_exe`, the
//! passwd and group databases (a worker's `user` and `group` must exist) and a worker's
//! `env_file` (it must exist and parse; its variables are kept in the spec).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vigil_actors::cgroup::Limits;
use vigil_actors::environ::{self, EnvSpec};
use vigil_actors::spec::{
    BackoffSpec, ChildRef, GroupSpec, IntensitySpec, Launch, LogSpec, RestartPolicy, RootSpec,
    ShutdownSpec, Strategy, TreeSpec, WorkerSpec, check_worker_name,
};
use vigil_actors::worker_type::{CommandWorker, WorkerType};

use super::error::{ConfigError, Position};
use super::file::{
    BackoffFile, ConfigFile, DEFAULT_LOG_SUBDIR, IntensityFile, KindFile, LimitsFile, LogFile,
    ShutdownFile, Size, StrategyFile, WorkerFile,
};
use crate::workers::indexing::IndexingSettings;
use crate::workers::indexing::kind::IndexingWorker;

/// Smallest `log.max_bytes` accepted: below one page, rotation would churn on every line.
pub const MIN_LOG_BYTES: u64 = 4096;
/// Largest `log.max_bytes` accepted (1 TiB).
pub const MAX_LOG_BYTES: u64 = 1 << 40;
/// Largest `log.max_files` accepted: each rotation renames every kept file.
pub const MAX_LOG_FILES: u32 = 1000;

/// The indexing worker's database inside `data_dir`.
const INDEX_DB: &str = "index.sqlite";

/// `sun_path` holds 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where the file came from: used to resolve paths and to point errors at a line.
pub struct Source<'a> {
    /// The path as the user named it (shown in messages).
    pub shown: &'a Path,
    /// The folder of the absolute config path; relative paths resolve against it.
    pub base: &'a Path,
    /// The file's text, to find a worker's `name:` line.
    pub text: &'a str,
    /// Check users, groups and env files against this host (`vigil check`, `vigil serve`).
    pub check_host: bool,
}

impl Source<'_> {
    fn invalid(&self, worker: Option<&str>, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.shown.to_path_buf(),
            at: worker.and_then(|name| locate_name(self.text, name)),
            message,
        }
    }

    /// An error about a top-level field (`root`, `data_dir`), pointing at its key when found.
    fn field_error(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.shown.to_path_buf(),
            at: locate_key(self.text, key),
            message,
        }
    }

    fn worker_error(&self, name: &str, message: String) -> ConfigError {
        let shown = vigil_actors::spec::quote_short(name);
        self.invalid(Some(name), format!("worker {shown}: {message}"))
    }

    /// `base/p`, normalised; an absolute `p` stays itself.
    fn path(&self, p: &Path) -> PathBuf {
        normalize(&self.base.join(p))
    }
}

/// What `resolve` produces besides the tree: each Indexing worker's settings, in config order.
pub struct Resolved {
    pub tree: TreeSpec,
    pub indexing: Vec<IndexingSettings>,
}

/// Validates `file` and builds the tree. `config_path` is the absolute path of the file.
pub fn resolve(
    file: ConfigFile,
    src: &Source,
    config_path: &Path,
) -> Result<Resolved, ConfigError> {
    let data_dir = src.path(&file.data_dir);
    let log_dir = match &file.log_dir {
        Some(dir) => src.path(dir),
        None => data_dir.join(DEFAULT_LOG_SUBDIR),
    };
    let root = root(&file, src)?;

    let mut tree_walk = Walk {
        src,
        data_dir: &data_dir,
        log_dir: &log_dir,
        seen: HashSet::new(),
        workers: Vec::with_capacity(file.workers.len()),
        groups: Vec::new(),
        indexing: Vec::new(),
        exe: None,
    };
    tree_walk.children(&file.workers, None)?;
    let Walk {
        workers,
        groups,
        indexing,
        ..
    } = tree_walk;

    let tree = TreeSpec {
        data_dir,
        log_dir,
        config_path: Some(config_path.to_path_buf()),
        root,
        workers,
        cgroup: file.cgroup,
        containment: Default::default(),
        http: file.http.map(|a| a.0),
        groups,
    };
    let socket = tree.socket_path();
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(src.field_error(
            "data_dir",
            format!(
                "data_dir is too deep: the control socket {} would exceed the \
                 {MAX_SOCKET_PATH}-byte limit of a Unix socket path",
                socket.display()
            ),
        ));
    }
    Ok(Resolved { tree, indexing })
}

/// The walk over the config's nested `workers:` lists: the flat workers (depth-first, in start
/// order), the groups (a parent before its children), and the names seen so far.
struct Walk<'a, 'b> {
    src: &'a Source<'b>,
    data_dir: &'a Path,
    log_dir: &'a Path,
    seen: HashSet<String>,
    workers: Vec<WorkerSpec>,
    groups: Vec<GroupSpec>,
    indexing: Vec<IndexingSettings>,
    exe: Option<PathBuf>,
}

/// The most `instances` a worker may ask for.
pub const MAX_INSTANCES: u32 = 10_000;

impl Walk<'_, '_> {
    /// Resolves one `workers:` list whose entries are children of `parent` (`None`: the root).
    fn children(
        &mut self,
        entries: &[WorkerFile],
        parent: Option<&str>,
    ) -> Result<Vec<ChildRef>, ConfigError> {
        let src = self.src;
        let mut refs = Vec::with_capacity(entries.len());
        for w in entries {
            check_worker_name(&w.name).map_err(|m| src.invalid(Some(&w.name), m))?;
            self.claim(&w.name)?;
            if let KindFile::Group {
                strategy,
                intensity: group_intensity,
                backoff: group_backoff,
                workers,
            } = &w.kind
            {
                if let Some(key) = w.worker_fields().first() {
                    return Err(ConfigError::Invalid {
                        path: src.shown.to_path_buf(),
                        at: locate_field(src.text, &w.name, key),
                        message: format!(
                            "group {:?}: {key} is a worker's field; a group entry has only \
                             name and kind (its policy goes inside Group(...))",
                            w.name
                        ),
                    });
                }
                let error = |m: String| src.worker_error(&w.name, format!("kind: {m}"));
                let default = RootSpec::default();
                let intensity = match group_intensity {
                    None => None,
                    Some(i) => Some(intensity(IntensitySpec::default(), i).map_err(error)?),
                };
                let backoff = backoff(default.backoff, group_backoff).map_err(error)?;
                let at = self.groups.len();
                self.groups.push(GroupSpec {
                    name: w.name.clone(),
                    parent: parent.map(str::to_string),
                    strategy: match strategy {
                        StrategyFile::OneForOne => Strategy::OneForOne,
                        StrategyFile::OneForAll => Strategy::OneForAll,
                        StrategyFile::RestForOne => Strategy::RestForOne,
                    },
                    intensity,
                    backoff,
                    children: Vec::new(),
                });
                let children = self.children(workers, Some(&w.name))?;
                self.groups[at].children = children;
                refs.push(ChildRef::Group(w.name.clone()));
                continue;
            }
            match w.instances {
                None => {
                    self.worker(w, &w.name, None)?;
                    refs.push(ChildRef::Worker(w.name.clone()));
                }
                Some(n) => {
                    if n == 0 || n > MAX_INSTANCES {
                        return Err(ConfigError::Invalid {
                            path: src.shown.to_path_buf(),
                            at: locate_field(src.text, &w.name, "instances"),
                            message: format!(
                                "worker {:?}: instances must be between 1 and {MAX_INSTANCES}, \
                                 got {n}",
                                w.name
                            ),
                        });
                    }
                    let mut instances = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        let name = format!("{}@{i}", w.name);
                        self.claim(&name)?;
                        self.worker(w, &name, Some(i))?;
                        instances.push(ChildRef::Worker(name));
                    }
                    self.groups.push(GroupSpec {
                        name: w.name.clone(),
                        parent: parent.map(str::to_string),
                        strategy: Strategy::OneForOne,
                        intensity: None,
                        backoff: RootSpec::default().backoff,
                        children: instances,
                    });
                    refs.push(ChildRef::Group(w.name.clone()));
                }
            }
        }
        Ok(refs)
    }

    /// Records `name` as used; an error when a worker or group already has it.
    fn claim(&mut self, name: &str) -> Result<(), ConfigError> {
        if self.seen.insert(name.to_string()) {
            return Ok(());
        }
        let base = name.split('@').next().unwrap_or(name);
        Err(ConfigError::Invalid {
            path: self.src.shown.to_path_buf(),
            at: locate_nth_name(self.src.text, base, 1)
                .or_else(|| locate_name(self.src.text, base)),
            message: format!(
                "worker name {name:?} is used twice; names must be unique across the tree"
            ),
        })
    }

    /// Resolves worker entry `w` as the worker `name` (`NAME@i` for instance `i`).
    fn worker(
        &mut self,
        w: &WorkerFile,
        name: &str,
        instance: Option<u32>,
    ) -> Result<(), ConfigError> {
        let src = self.src;
        let worker_type: Arc<dyn WorkerType> = match &w.kind {
            KindFile::Command { argv, env, cwd } => {
                let mut launch = launch(src, argv, env, cwd.as_deref(), &w.name)?;
                if let Some(i) = instance {
                    launch.env.insert("VIGIL_INSTANCE".into(), i.to_string());
                }
                Arc::new(CommandWorker { launch })
            }
            KindFile::Indexing { roots, interval } => {
                let settings = indexing_settings(src, name, roots, interval.0, self.data_dir)?;
                check_disjoint_roots(src, &self.indexing, &settings)?;
                self.indexing.push(settings.clone());
                let exe = match &self.exe {
                    Some(exe) => PathBuf::clone(exe),
                    None => self.exe.insert(current_exe(src, &w.name)?).clone(),
                };
                Arc::new(IndexingWorker { exe, settings })
            }
            // Walk::children resolves groups itself; a group never gets here.
            KindFile::Group { .. } => {
                return Err(src.worker_error(&w.name, "a group cannot be run as a worker".into()));
            }
        };
        let policy = policy(worker_type.policy(), w).map_err(|m| src.worker_error(&w.name, m))?;
        let log = log_spec(self.log_dir, name, &w.log.clone().unwrap_or_default())
            .map_err(|m| src.worker_error(&w.name, m))?;
        let limits = limits(&w.limits.clone().unwrap_or_default())
            .map_err(|m| src.worker_error(&w.name, m))?;
        let environment = environment(src, w)?;
        self.workers.push(WorkerSpec {
            name: name.to_string(),
            worker_type,
            policy,
            log,
            limits,
            significant: w.significant.unwrap_or(false),
            environment,
        });
        Ok(())
    }
}

/// `RootSpec::default()` with the file's `root:` laid over it.
fn root(file: &ConfigFile, src: &Source) -> Result<RootSpec, ConfigError> {
    let error = |m| src.field_error("root", format!("root: {m}"));
    let default = RootSpec::default();
    Ok(RootSpec {
        backoff: backoff(default.backoff, &file.root.backoff).map_err(error)?,
        intensity: match &file.root.intensity {
            None => None,
            Some(i) => Some(intensity(IntensitySpec::default(), i).map_err(error)?),
        },
    })
}

fn indexing_settings(
    src: &Source,
    name: &str,
    roots: &[PathBuf],
    interval: Duration,
    data_dir: &Path,
) -> Result<IndexingSettings, ConfigError> {
    if roots.is_empty() {
        return Err(src.worker_error(name, "kind.roots must not be empty".into()));
    }
    if interval.is_zero() {
        return Err(src.worker_error(name, "kind.interval must be above 0s".into()));
    }
    Ok(IndexingSettings {
        worker_name: name.to_string(),
        roots: roots.iter().map(|r| src.path(r)).collect(),
        interval,
        db_path: data_dir.join(INDEX_DB),
    })
}

/// Indexing workers share `index.sqlite` and each removes what vanished under its own roots:
/// two workers over the same tree would fight over its rows, so their roots must not overlap.
fn check_disjoint_roots(
    src: &Source,
    earlier: &[IndexingSettings],
    new: &IndexingSettings,
) -> Result<(), ConfigError> {
    for other in earlier {
        for a in &new.roots {
            for b in &other.roots {
                if a.starts_with(b) || b.starts_with(a) {
                    return Err(src.worker_error(
                        &new.worker_name,
                        format!(
                            "kind.roots: {} overlaps {} of indexing worker {:?}; \
                             indexing workers must cover separate trees",
                            a.display(),
                            b.display(),
                            other.worker_name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The server's own executable: the indexing worker is `vigil worker indexing`.
fn current_exe(src: &Source, name: &str) -> Result<PathBuf, ConfigError> {
    std::env::current_exe().map_err(|e| {
        src.worker_error(
            name,
            format!("cannot locate the vigil executable to run it: {e}"),
        )
    })
}

fn launch(
    src: &Source,
    argv: &[String],
    env: &std::collections::BTreeMap<String, String>,
    cwd: Option<&Path>,
    name: &str,
) -> Result<Launch, ConfigError> {
    let Some(program) = argv.first() else {
        return Err(src.worker_error(name, "kind.argv must not be empty".into()));
    };
    if program.is_empty() {
        return Err(src.worker_error(name, "kind.argv[0] must not be empty".into()));
    }
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(src.worker_error(
            name,
            format!(
                "kind.argv[{i}] {} contains a NUL byte, which no program argument can hold",
                vigil_actors::spec::quote_short(&argv[i])
            ),
        ));
    }
    if let Some(key) = env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
        return Err(src.worker_error(
            name,
            format!(
                "kind.env key {} must be non-empty, without '=' or NUL",
                vigil_actors::spec::quote_short(key)
            ),
        ));
    }
    if let Some((key, _)) = env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(src.worker_error(
            name,
            format!(
                "kind.env value of {} contains a NUL byte",
                vigil_actors::spec::quote_short(key)
            ),
        ));
    }
    if cwd.is_some_and(|c| c.as_os_str().as_encoded_bytes().contains(&0)) {
        return Err(src.worker_error(name, "kind.cwd contains a NUL byte".into()));
    }
    // A bare program name is looked up in PATH; only a path with a '/' is resolved here.
    let program = if program.contains('/') {
        src.path(Path::new(program)).into_os_string()
    } else {
        OsString::from(program)
    };
    let argv = std::iter::once(program)
        .chain(argv[1..].iter().map(OsString::from))
        .collect();
    Ok(Launch {
        argv,
        env: env.clone(),
        cwd: cwd.map(|c| src.path(c)),
    })
}

/// The worker's identity and environment, checked as a spawn would: the user and group exist,
/// the env file is there and parses. Errors point at the field (or at the env file's line).
fn environment(src: &Source, w: &WorkerFile) -> Result<EnvSpec, ConfigError> {
    let env_file = w.env_file.as_deref().map(|p| src.path(p));
    let mut spec = EnvSpec {
        user: w.user.clone(),
        group: w.group.clone(),
        umask: w.umask.map(|u| u.0),
        nice: w.nice.map(|n| n.0),
        env_file,
        file_vars: Vec::new(),
        clear_env: w.clear_env.unwrap_or(false),
    };
    if !src.check_host {
        return Ok(spec);
    }
    let at = |key: &str| locate_field(src.text, &w.name, key);
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: src.shown.to_path_buf(),
        at: at(key),
        message: format!("worker {:?}: {key}: {message}", w.name),
    };
    match (&w.user, &w.group) {
        (Some(user), group) => {
            environ::find_account(user, group.as_deref()).map_err(|e| match e {
                environ::EnvError::UnknownGroup(_) => invalid("group", e.to_string()),
                _ => invalid("user", e.to_string()),
            })?;
        }
        (None, Some(group)) => {
            environ::find_group(group).map_err(|e| invalid("group", e.to_string()))?;
        }
        (None, None) => {}
    }
    if let Some(path) = &spec.env_file {
        spec.file_vars = environ::read_env_file(path).map_err(|e| match e {
            environ::EnvError::BadEnvFile { path, error } => ConfigError::Parse {
                path,
                at: Position {
                    line: error.line,
                    col: error.col,
                },
                message: format!("env_file of worker {:?}: {}", w.name, error.message),
            },
            other => invalid("env_file", other.to_string()),
        })?;
    }
    Ok(spec)
}

/// The type's policy with the file's fields laid over it.
fn policy(base: RestartPolicy, w: &WorkerFile) -> Result<RestartPolicy, String> {
    let heartbeat_timeout = match w.heartbeat_timeout {
        None => base.heartbeat_timeout,
        Some(None) => None,
        Some(Some(d)) => Some(d.0),
    };
    let b = w.backoff.clone().unwrap_or_default();
    let i = w.intensity.clone().unwrap_or_default();
    let policy = RestartPolicy {
        restart: w.restart.unwrap_or(base.restart),
        backoff: backoff_fields(base.backoff, &b),
        intensity: intensity_fields(base.intensity, &i),
        shutdown: shutdown(base.shutdown, &w.shutdown.clone().unwrap_or_default()),
        start_secs: w.start_secs.map_or(base.start_secs, |d| d.0),
        heartbeat_timeout,
    };
    policy.check()?;
    Ok(policy)
}

/// The file's backoff fields laid over `base`, unchecked.
fn backoff_fields(base: BackoffSpec, f: &BackoffFile) -> BackoffSpec {
    BackoffSpec {
        initial: f.initial.map_or(base.initial, |d| d.0),
        max: f.max.map_or(base.max, |d| d.0),
        multiplier: f.multiplier.unwrap_or(base.multiplier),
        jitter: f.jitter.unwrap_or(base.jitter),
        reset_after: f.reset_after.map_or(base.reset_after, |d| d.0),
    }
}

/// The file's backoff laid over `base`, checked as the library checks every backoff.
fn backoff(base: BackoffSpec, f: &BackoffFile) -> Result<BackoffSpec, String> {
    let b = backoff_fields(base, f);
    b.check()?;
    Ok(b)
}

/// The file's intensity fields laid over `base`, unchecked.
fn intensity_fields(base: IntensitySpec, f: &IntensityFile) -> IntensitySpec {
    IntensitySpec {
        max_restarts: f.max_restarts.unwrap_or(base.max_restarts),
        within: f.within.map_or(base.within, |d| d.0),
    }
}

/// The file's intensity laid over `base`, checked as the library checks every intensity.
fn intensity(base: IntensitySpec, f: &IntensityFile) -> Result<IntensitySpec, String> {
    let i = intensity_fields(base, f);
    i.check()?;
    Ok(i)
}

/// The smallest `memory_max` accepted: below it nothing starts (the kernel charges page
/// tables, stacks and the program's own pages to the cgroup).
const MIN_MEMORY_MAX: u64 = 1 << 20;
/// The largest `nofile`: the kernel's default `fs.nr_open`.
const MAX_NOFILE: u64 = 1 << 20;
/// The largest `cpu_max`, in CPUs.
const MAX_CPUS: f64 = 4096.0;

fn limits(f: &LimitsFile) -> Result<Limits, String> {
    if let Some(Size(bytes)) = f.memory_max {
        if bytes < MIN_MEMORY_MAX {
            return Err(format!(
                "limits.memory_max is {bytes} bytes; it must be at least 1MiB"
            ));
        }
    }
    if f.pids_max == Some(0) {
        return Err("limits.pids_max must be at least 1".into());
    }
    if let Some(cpus) = f.cpu_max {
        if !(cpus.is_finite() && (0.01..=MAX_CPUS).contains(&cpus)) {
            return Err(format!(
                "limits.cpu_max is {cpus}; it must be between 0.01 and {MAX_CPUS} CPUs"
            ));
        }
    }
    if let Some(n) = f.nofile {
        if !(1..=MAX_NOFILE).contains(&n) {
            return Err(format!(
                "limits.nofile is {n}; it must be between 1 and {MAX_NOFILE}"
            ));
        }
    }
    Ok(Limits {
        memory_max: f.memory_max.map(|s| s.0),
        pids_max: f.pids_max,
        cpu_max: f.cpu_max,
        nofile: f.nofile,
    })
}

fn shutdown(base: ShutdownSpec, f: &ShutdownFile) -> ShutdownSpec {
    ShutdownSpec {
        signal: f.signal.map_or(base.signal, |s| s.0),
        grace: f.grace.map_or(base.grace, |d| d.0),
    }
}

fn log_spec(log_dir: &Path, name: &str, f: &LogFile) -> Result<LogSpec, String> {
    if f.max_bytes < MIN_LOG_BYTES {
        return Err(format!(
            "log.max_bytes must be at least {MIN_LOG_BYTES}, got {}",
            f.max_bytes
        ));
    }
    if f.max_bytes > MAX_LOG_BYTES {
        return Err(format!(
            "log.max_bytes must be at most {MAX_LOG_BYTES} (1TiB), got {}",
            f.max_bytes
        ));
    }
    if f.max_files < 1 {
        return Err("log.max_files must be at least 1".into());
    }
    if f.max_files > MAX_LOG_FILES {
        return Err(format!(
            "log.max_files must be at most {MAX_LOG_FILES}, got {}",
            f.max_files
        ));
    }
    Ok(LogSpec {
        path: log_dir.join(format!("{name}.log")),
        max_bytes: f.max_bytes,
        max_files: f.max_files,
    })
}

/// Removes `.` components and folds `..` into its parent, without touching the filesystem.
/// Meant for absolute paths (`..` above `/` stays at `/`).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !out.has_root() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The position of the first line that starts with `KEY:` (a top-level field), if any.
fn locate_key(text: &str, key: &str) -> Option<Position> {
    text.lines().enumerate().find_map(|(i, line)| {
        let trimmed = line.trim_start();
        let rest = trimmed.strip_prefix(key)?;
        rest.trim_start().starts_with(':').then(|| Position {
            line: i + 1,
            col: line.len() - trimmed.len() + 1,
        })
    })
}

/// The position of the first `KEY:` after worker `name`'s `name: "NAME"` (a cheap scan: the
/// worker's own field when it follows its name, as written in every example), else the name's.
fn locate_field(text: &str, name: &str, key: &str) -> Option<Position> {
    let start = locate_name(text, name)?;
    for (i, line) in text.lines().enumerate().skip(start.line - 1) {
        let from = if i + 1 == start.line {
            line.char_indices()
                .nth(start.col - 1)
                .map_or(line.len(), |(b, _)| b)
        } else {
            0
        };
        let mut search = from;
        while let Some(off) = line[search..].find(key) {
            let col = search + off;
            let before_ok = line[..col]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if before_ok && line[col + key.len()..].trim_start().starts_with(':') {
                return Some(Position {
                    line: i + 1,
                    col: line[..col].chars().count() + 1,
                });
            }
            search = col + key.len();
        }
    }
    Some(start)
}

/// The position of the first `name: "NAME"` in `text`, if any.
fn locate_name(text: &str, name: &str) -> Option<Position> {
    locate_nth_name(text, name, 0)
}

/// The position of the `n`-th (from 0) `name: "NAME"` in `text`: the opening quote.
/// A cheap scan, not a parser: good enough to point at a worker, and `None` when unsure.
fn locate_nth_name(text: &str, name: &str, n: usize) -> Option<Position> {
    let quoted = format!("{name:?}");
    let mut found = 0;
    for (i, line) in text.lines().enumerate() {
        let mut from = 0;
        while let Some(off) = line[from..].find(&quoted) {
            let col = from + off;
            let before = line[..col].trim_end();
            if let Some(key) = before.strip_suffix(':') {
                if key.trim_end().ends_with("name") {
                    if found == n {
                        return Some(Position {
                            line: i + 1,
                            col: line[..col].chars().count() + 1,
                        });
                    }
                    found += 1;
                }
            }
            from = col + quoted.len();
        }
    }
    None
}
