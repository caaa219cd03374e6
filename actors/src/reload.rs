//! What a reload changes: the difference between the running tree's specs and a new config's,
//! as plain data.
//!
//! Owns the classification of every worker setting (does it change what runs, or only how the
//! worker is supervised?), the matching of workers by name, the settings a running server
//! cannot change (refused), and the report a reload answers with. It must not apply anything:
//! the root supervisor does ([`crate::root`]), from the [`Change`]s computed here.
//!
//! # Classes
//! - **added**: a name only the new config has; started as at server start.
//! - **removed**: a name only the old config has; stopped as on shutdown, then gone.
//! - **restarted**: a setting in [`RUN_FIELDS`] differs (what runs: the kind and its fields);
//!   stopped gracefully and started with the new settings.
//! - **updated**: only settings in [`SUPERVISION_FIELDS`] differ; the running supervisor takes
//!   the new settings and its process is left alone.
//! - **unchanged**: nothing differs.
//!
//! Adding a worker setting is one line in one of the two tables.
//!
//! # The tree
//! [`tree_diff`] adds what the groups change: a worker whose place in the tree changed (moved
//! to another group) is **removed** and **added** — its old supervisor stopped, a fresh one
//! started in the new place; the workers of a group whose `strategy` changed are
//! **restarted** (field `strategy`) with fresh supervisors that follow the new strategy, and
//! no other worker is touched. A group's `intensity` and `backoff` apply at once.

use std::fmt;

use crate::spec::{TreeSpec, WorkerSpec};

/// How one worker setting is compared between the old spec and the new one.
pub type FieldEq = fn(&WorkerSpec, &WorkerSpec) -> bool;

/// Settings that decide what runs: a difference restarts the worker.
pub const RUN_FIELDS: &[(&str, FieldEq)] = &[
    // The kind and every field of it (argv, env, cwd; roots, interval; ...), compared by the
    // worker type itself.
    ("kind", |a, b| a.worker_type.same_settings(&*b.worker_type)),
    ("limits", |a, b| a.limits == b.limits),
    // user, group, umask, nice, env_file (and the variables read from it), clear_env.
    ("environment", |a, b| a.environment == b.environment),
];

/// Settings that decide only how the worker is supervised: applied to the running worker.
pub const SUPERVISION_FIELDS: &[(&str, FieldEq)] = &[
    ("restart", |a, b| a.policy.restart == b.policy.restart),
    ("backoff", |a, b| a.policy.backoff == b.policy.backoff),
    ("intensity", |a, b| a.policy.intensity == b.policy.intensity),
    ("shutdown", |a, b| a.policy.shutdown == b.policy.shutdown),
    ("start_secs", |a, b| {
        a.policy.start_secs == b.policy.start_secs
    }),
    ("heartbeat_timeout", |a, b| {
        a.policy.heartbeat_timeout == b.policy.heartbeat_timeout
    }),
    ("log", |a, b| a.log == b.log),
    ("significant", |a, b| a.significant == b.significant),
];

/// What a reload does to one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Only in the new config.
    Added,
    /// Only in the old config.
    Removed,
    /// What it runs changed.
    Restarted,
    /// Only supervision settings changed.
    Updated,
    /// Nothing changed.
    Unchanged,
}

impl Class {
    /// The contract's word (`"restarted"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Added => "added",
            Class::Removed => "removed",
            Class::Restarted => "restarted",
            Class::Updated => "updated",
            Class::Unchanged => "unchanged",
        }
    }
}

/// One worker's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The worker's name (workers are matched by name).
    pub name: String,
    /// What happens to it.
    pub class: Class,
    /// The settings that differ (for `restarted` and `updated`; empty otherwise), in table
    /// order: run fields first.
    pub fields: Vec<&'static str>,
}

/// The changes from `old` to `new`: every worker of `new` in its order (added, restarted,
/// updated or unchanged), then the removed ones in `old`'s order.
pub fn diff(old: &[WorkerSpec], new: &[WorkerSpec]) -> Vec<Change> {
    let mut changes: Vec<Change> = new
        .iter()
        .map(|n| match old.iter().find(|o| o.name == n.name) {
            None => Change {
                name: n.name.clone(),
                class: Class::Added,
                fields: Vec::new(),
            },
            Some(o) => worker_change(o, n),
        })
        .collect();
    changes.extend(
        old.iter()
            .filter(|o| !new.iter().any(|n| n.name == o.name))
            .map(|o| Change {
                name: o.name.clone(),
                class: Class::Removed,
                fields: Vec::new(),
            }),
    );
    changes
}

/// Field name a worker is restarted for when its group's strategy changed.
pub const STRATEGY_FIELD: &str = "strategy";
/// Field name a worker is removed and added for when it moved to another group.
pub const GROUP_FIELD: &str = "group";

/// [`diff`] over the trees' workers, plus what the groups change (see the module doc): a
/// moved worker is `Added` where it now is and `Removed` (field `group`) at the end; the
/// workers of a group whose strategy changed are `Restarted` (field `strategy`).
pub fn tree_diff(old: &TreeSpec, new: &TreeSpec) -> Vec<Change> {
    let ancestors = |spec: &TreeSpec, name: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut at = spec.parent_of(name);
        while let Some(g) = at {
            out.push(g.name.clone());
            at = g.parent.as_deref().and_then(|p| spec.group(p));
        }
        out
    };
    let mut changes = diff(&old.workers, &new.workers);
    let mut moved = Vec::new();
    for c in changes
        .iter_mut()
        .filter(|c| !matches!(c.class, Class::Added | Class::Removed))
    {
        let (was, is) = (ancestors(old, &c.name), ancestors(new, &c.name));
        if was != is {
            c.class = Class::Added;
            c.fields.clear();
            moved.push(Change {
                name: c.name.clone(),
                class: Class::Removed,
                fields: vec![GROUP_FIELD],
            });
            continue;
        }
        let restrategized = is.iter().any(|g| {
            matches!((old.group(g), new.group(g)), (Some(a), Some(b)) if a.strategy != b.strategy)
        });
        if restrategized {
            c.class = Class::Restarted;
            c.fields.push(STRATEGY_FIELD);
        }
    }
    changes.extend(moved);
    changes
}

/// The class of one worker present in both configs.
pub fn worker_change(old: &WorkerSpec, new: &WorkerSpec) -> Change {
    let differing = |table: &[(&'static str, FieldEq)]| -> Vec<&'static str> {
        table
            .iter()
            .filter(|(_, same)| !same(old, new))
            .map(|(name, _)| *name)
            .collect()
    };
    let run = differing(RUN_FIELDS);
    let supervision = differing(SUPERVISION_FIELDS);
    let class = if !run.is_empty() {
        Class::Restarted
    } else if !supervision.is_empty() {
        Class::Updated
    } else {
        Class::Unchanged
    };
    Change {
        name: new.name.clone(),
        class,
        fields: run.into_iter().chain(supervision).collect(),
    }
}

/// How one tree-level setting is compared between the old tree and the new one.
pub type TreeEq = fn(&TreeSpec, &TreeSpec) -> bool;

/// Tree settings a running server cannot change: a difference refuses the whole reload.
pub const REFUSED_FIELDS: &[(&str, TreeEq)] = &[
    ("data_dir", |a, b| a.data_dir == b.data_dir),
    ("log_dir", |a, b| a.log_dir == b.log_dir),
    // The containment was set up once, before the first worker (the server may have moved
    // itself into a leaf cgroup for it).
    ("cgroup", |a, b| a.cgroup == b.cgroup),
    // The listener was bound before the first worker; rebinding is a server restart.
    ("http", |a, b| a.http == b.http),
];

/// Root settings a reload applies at once.
pub const ROOT_FIELDS: &[(&str, TreeEq)] = &[
    ("backoff", |a, b| a.root.backoff == b.root.backoff),
    ("intensity", |a, b| a.root.intensity == b.root.intensity),
];

/// Why a reload was refused: the settings that need a server restart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Refused {
    /// The fields that differ (`data_dir`, `log_dir`, ...).
    pub fields: Vec<&'static str>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the new config changes {}, which cannot change while the server runs; \
             nothing was reloaded (restart the server to apply it)",
            self.fields.join(" and ")
        )
    }
}

/// Whether `new` may replace `old` in a running server.
pub fn check_refused(old: &TreeSpec, new: &TreeSpec) -> Result<(), Refused> {
    let fields: Vec<&'static str> = REFUSED_FIELDS
        .iter()
        .filter(|(_, same)| !same(old, new))
        .map(|(name, _)| *name)
        .collect();
    if fields.is_empty() {
        Ok(())
    } else {
        Err(Refused { fields })
    }
}

/// The root settings that differ (applied at once).
pub fn root_changes(old: &TreeSpec, new: &TreeSpec) -> Vec<&'static str> {
    ROOT_FIELDS
        .iter()
        .filter(|(_, same)| !same(old, new))
        .map(|(name, _)| *name)
        .collect()
}

/// What a reload did (or, with `dry_run`, would do): worker names per class, in config order
/// (removed ones in the old config's order). `vigil reload --json` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReloadReport {
    /// Started.
    pub added: Vec<String>,
    /// Stopped and gone.
    pub removed: Vec<String>,
    /// Stopped and started with the new settings.
    pub restarted: Vec<String>,
    /// New supervision settings, same process.
    pub updated: Vec<String>,
    /// Not touched.
    pub unchanged: Vec<String>,
    /// Root settings applied (`backoff`, `intensity`).
    pub root: Vec<String>,
    /// Nothing was changed: this is what a reload would do.
    pub dry_run: bool,
}

impl ReloadReport {
    /// The report of `changes` (and of the root fields that changed).
    pub fn new(changes: &[Change], root: &[&str], dry_run: bool) -> ReloadReport {
        let mut r = ReloadReport {
            root: root.iter().map(|s| s.to_string()).collect(),
            dry_run,
            ..ReloadReport::default()
        };
        for c in changes {
            let list = match c.class {
                Class::Added => &mut r.added,
                Class::Removed => &mut r.removed,
                Class::Restarted => &mut r.restarted,
                Class::Updated => &mut r.updated,
                Class::Unchanged => &mut r.unchanged,
            };
            list.push(c.name.clone());
        }
        r
    }

    /// Whether the reload changes anything at all.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && self.updated.is_empty()
            && self.root.is_empty()
    }

    /// One line: `added a; removed b; restarted c; updated d; 3 unchanged`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (word, list) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
            ("updated", &self.updated),
        ] {
            if !list.is_empty() {
                parts.push(format!("{word} {}", list.join(", ")));
            }
        }
        if !self.root.is_empty() {
            parts.push(format!("root {}", self.root.join(", ")));
        }
        parts.push(format!("{} unchanged", self.unchanged.len()));
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::signal::Signal;
    use crate::spec::{IntensitySpec, Launch, LogSpec, RestartPolicy, RestartType, RootSpec};
    use crate::worker_type::{CommandWorker, LaunchContext, LaunchError, WorkerType};

    fn command(argv: &[&str]) -> CommandWorker {
        CommandWorker {
            launch: Launch {
                argv: argv.iter().map(Into::into).collect(),
                env: Default::default(),
                cwd: None,
            },
        }
    }

    fn spec(name: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            worker_type: Arc::new(command(&["sleep", "1000"])),
            policy: RestartPolicy::permanent(),
            log: LogSpec {
                path: PathBuf::from(format!("/log/{name}.log")),
                max_bytes: LogSpec::DEFAULT_MAX_BYTES,
                max_files: LogSpec::DEFAULT_MAX_FILES,
            },
            limits: Default::default(),
            significant: false,
            environment: Default::default(),
        }
    }

    fn tree(workers: Vec<WorkerSpec>) -> TreeSpec {
        TreeSpec {
            data_dir: "/var".into(),
            log_dir: "/var/log".into(),
            config_path: None,
            root: RootSpec::default(),
            workers,
            cgroup: Default::default(),
            containment: Default::default(),
            http: None,
            groups: Vec::new(),
        }
    }

    /// A code-defined type that does not say how it compares.
    #[derive(Debug)]
    struct Opaque;
    impl WorkerType for Opaque {
        fn kind(&self) -> &str {
            "opaque"
        }
        fn launch(&self, _: &LaunchContext) -> Result<Launch, LaunchError> {
            Err("never".into())
        }
        fn policy(&self) -> RestartPolicy {
            RestartPolicy::permanent()
        }
    }

    /// One changed setting → its class and field name.
    fn class_of(change: impl FnOnce(&mut WorkerSpec)) -> (Class, Vec<&'static str>) {
        let old = spec("w");
        let mut new = spec("w");
        change(&mut new);
        let c = worker_change(&old, &new);
        (c.class, c.fields)
    }

    #[test]
    fn identical_specs_are_unchanged_even_as_new_allocations() {
        assert_eq!(class_of(|_| {}), (Class::Unchanged, vec![]));
    }

    #[test]
    fn every_run_field_restarts() {
        let restarted = |f: fn(&mut WorkerSpec)| {
            let (class, fields) = class_of(f);
            assert_eq!(class, Class::Restarted);
            assert_eq!(fields, ["kind"]);
        };
        restarted(|w| w.worker_type = Arc::new(command(&["sleep", "999"])));
        restarted(|w| {
            let mut c = command(&["sleep", "1000"]);
            c.launch.env.insert("K".into(), "V".into());
            w.worker_type = Arc::new(c);
        });
        restarted(|w| {
            let mut c = command(&["sleep", "1000"]);
            c.launch.cwd = Some("/tmp".into());
            w.worker_type = Arc::new(c);
        });
        // Another type altogether, and a type that cannot say it is the same.
        restarted(|w| w.worker_type = Arc::new(Opaque));
        for change in [
            (|w: &mut WorkerSpec| w.limits.memory_max = Some(64 << 20)) as fn(&mut WorkerSpec),
            |w| w.limits.nofile = Some(1024),
        ] {
            assert_eq!(class_of(change), (Class::Restarted, vec!["limits"]));
        }
        for change in [
            (|w: &mut WorkerSpec| w.environment.user = Some("nobody".into()))
                as fn(&mut WorkerSpec),
            |w| w.environment.umask = Some(0o027),
            |w| w.environment.nice = Some(5),
            |w| w.environment.clear_env = true,
            |w| w.environment.file_vars = vec![("A".into(), "1".into())],
        ] {
            assert_eq!(class_of(change), (Class::Restarted, vec!["environment"]));
        }
        let mut a = spec("w");
        a.worker_type = Arc::new(Opaque);
        let b = a.clone();
        assert_eq!(worker_change(&a, &b).class, Class::Restarted);
    }

    #[test]
    fn every_supervision_field_updates() {
        type Edit = fn(&mut WorkerSpec);
        let cases: Vec<(&str, Edit)> = vec![
            ("restart", |w| w.policy.restart = RestartType::Temporary),
            ("backoff", |w| {
                w.policy.backoff.initial = Duration::from_secs(3)
            }),
            ("backoff", |w| w.policy.backoff.multiplier = 3.0),
            ("backoff", |w| w.policy.backoff.jitter = 0.0),
            ("backoff", |w| {
                w.policy.backoff.max = Duration::from_secs(99)
            }),
            ("backoff", |w| {
                w.policy.backoff.reset_after = Duration::from_secs(1)
            }),
            ("intensity", |w| w.policy.intensity.max_restarts = 9),
            ("intensity", |w| {
                w.policy.intensity.within = Duration::from_secs(9)
            }),
            ("shutdown", |w| w.policy.shutdown.signal = Signal::KILL),
            ("shutdown", |w| {
                w.policy.shutdown.grace = Duration::from_secs(9)
            }),
            ("start_secs", |w| w.policy.start_secs = Duration::ZERO),
            ("heartbeat_timeout", |w| {
                w.policy.heartbeat_timeout = Some(Duration::from_secs(9))
            }),
            ("log", |w| w.log.max_bytes = 4096),
            ("log", |w| w.log.max_files = 1),
            ("significant", |w| w.significant = true),
        ];
        for (field, change) in cases {
            assert_eq!(class_of(change), (Class::Updated, vec![field]), "{field}");
        }
        // Every table entry is exercised above.
        for (name, _) in SUPERVISION_FIELDS {
            assert!(
                [
                    "restart",
                    "backoff",
                    "intensity",
                    "shutdown",
                    "start_secs",
                    "heartbeat_timeout",
                    "log",
                    "significant"
                ]
                .contains(name)
            );
        }
    }

    #[test]
    fn a_run_change_with_supervision_changes_restarts_and_lists_all() {
        let (class, fields) = class_of(|w| {
            w.worker_type = Arc::new(command(&["true"]));
            w.policy.start_secs = Duration::ZERO;
            w.policy.intensity = IntensitySpec {
                max_restarts: 1,
                within: Duration::from_secs(1),
            };
        });
        assert_eq!(class, Class::Restarted);
        assert_eq!(fields, ["kind", "intensity", "start_secs"]);
    }

    #[test]
    fn workers_are_matched_by_name_in_the_new_order_then_the_removed() {
        let mut changed = spec("b");
        changed.worker_type = Arc::new(command(&["true"]));
        let mut updated = spec("d");
        updated.policy.restart = RestartType::Transient;
        let old = [spec("a"), spec("b"), spec("c"), spec("d"), spec("e")];
        let new = [updated, spec("x"), changed, spec("a")];
        let changes = diff(&old, &new);
        let got: Vec<(&str, Class)> = changes.iter().map(|c| (c.name.as_str(), c.class)).collect();
        assert_eq!(
            got,
            [
                ("d", Class::Updated),
                ("x", Class::Added),
                ("b", Class::Restarted),
                ("a", Class::Unchanged),
                ("c", Class::Removed),
                ("e", Class::Removed),
            ]
        );
        let report = ReloadReport::new(&changes, &[], false);
        assert_eq!(report.added, ["x"]);
        assert_eq!(report.removed, ["c", "e"]);
        assert_eq!(report.restarted, ["b"]);
        assert_eq!(report.updated, ["d"]);
        assert_eq!(report.unchanged, ["a"]);
        assert_eq!(
            report.summary(),
            "added x; removed c, e; restarted b; updated d; 1 unchanged"
        );
        let json = serde_json::to_value(&report).unwrap();
        for key in ["added", "removed", "restarted", "updated", "unchanged"] {
            assert!(json[key].is_array(), "{key}: {json}");
        }
    }

    #[test]
    fn empty_configs() {
        assert!(diff(&[], &[]).is_empty());
        assert_eq!(diff(&[], &[spec("a")])[0].class, Class::Added);
        assert_eq!(diff(&[spec("a")], &[])[0].class, Class::Removed);
        assert!(ReloadReport::new(&diff(&[spec("a")], &[spec("a")]), &[], true).is_noop());
    }

    #[test]
    fn data_and_log_dirs_are_refused_root_policy_is_applied() {
        let old = tree(vec![spec("a")]);
        let mut new = tree(vec![spec("a")]);
        assert_eq!(check_refused(&old, &new), Ok(()));
        assert!(root_changes(&old, &new).is_empty());
        new.data_dir = "/elsewhere".into();
        assert_eq!(check_refused(&old, &new).unwrap_err().fields, ["data_dir"]);
        new.log_dir = "/elsewhere/log".into();
        let refused = check_refused(&old, &new).unwrap_err();
        assert_eq!(refused.fields, ["data_dir", "log_dir"]);
        new.cgroup = crate::spec::CgroupMode::Off;
        assert_eq!(
            check_refused(&old, &new).unwrap_err().fields,
            ["data_dir", "log_dir", "cgroup"]
        );
        new.cgroup = old.cgroup;
        assert!(
            refused
                .to_string()
                .starts_with("the new config changes data_dir and log_dir, which cannot")
        );
        let mut new = tree(vec![spec("a")]);
        new.root.backoff.initial = Duration::from_secs(1);
        assert_eq!(root_changes(&old, &new), ["backoff"]);
        new.root.intensity = Some(IntensitySpec::default());
        assert_eq!(root_changes(&old, &new), ["backoff", "intensity"]);
        // A config path (shown in dumps) is neither refused nor a change.
        new.config_path = Some("/other.ron".into());
        assert_eq!(check_refused(&old, &new), Ok(()));
    }
}
