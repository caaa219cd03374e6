//! One supervision level, the same for the root and every group: what a parent decides when a
//! child fails or dies.
//!
//! ```text
//! root (OneForOne; RootSpec's intensity and backoff)
//! ├─ worker "web"
//! └─ group "backend" (RestForOne; its own intensity and backoff)
//!    ├─ worker "db"
//!    └─ group "search" (OneForAll)
//!       ├─ worker "indexing"
//!       └─ worker "helper"
//! ```
//!
//! Owns the bookkeeping every level keeps — its window of failed children (OTP's restart
//! intensity) and one backoff counter **per child**, reset once that child has run for the
//! backoff's `reset_after` — and the two decisions made from it:
//! - [`Levels::child_failed`]: a child's supervisor failed (a worker's intensity was
//!   exceeded, or a group failed). Its parent counts it; within the parent's intensity the
//!   child is started afresh after the parent's backoff ([`Verdict::Restart`]); past it the
//!   parent has failed too and *its* parent decides, up to the root, past which the tree stops
//!   ([`Verdict::RootFailed`]). A level without an intensity never fails.
//! - [`restart_set`]: a child died and restarts; its group's strategy names who restarts with
//!   it (`OneForOne`: nobody; `OneForAll`: every child; `RestForOne`: the children after it),
//!   never a `Temporary` bystander.
//!
//! Both are plain functions of the spec, the clock reading and a jitter sample given to them,
//! so they are table-tested here. This module must not touch actors, processes or history: the
//! root ([`crate::root`]) applies the verdicts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::policy::{BackoffCounter, RestartWindow};
use crate::spec::{BackoffSpec, ChildRef, IntensitySpec, RestartType, Strategy, TreeSpec};

/// A child of a level: a worker or a group, by name (names are unique across the tree).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChildId {
    /// A worker.
    Worker(String),
    /// A group.
    Group(String),
}

impl ChildId {
    /// The child's name.
    pub fn name(&self) -> &str {
        match self {
            ChildId::Worker(n) | ChildId::Group(n) => n,
        }
    }
}

/// What a parent does about a failed child.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Start `child` afresh after `delay`. `failed` lists the groups that failed on the way
    /// up (innermost first, each with why); `child` is then the outermost of them.
    Restart {
        /// What is restarted: the worker, or the outermost failed group.
        child: ChildId,
        /// Its parent's backoff for it (this child's own attempt count).
        delay: Duration,
        /// Groups past their intensity, innermost first: `(group, why)`.
        failed: Vec<(String, String)>,
    },
    /// The root's intensity is exceeded: the tree stops (`serve` exits 3).
    RootFailed {
        /// Why, for history.
        why: String,
        /// Groups past their intensity on the way, innermost first: `(group, why)`.
        failed: Vec<(String, String)>,
    },
}

/// A level's policy for its failed children.
#[derive(Clone, Copy, Debug)]
struct LevelPolicy {
    intensity: Option<IntensitySpec>,
    backoff: BackoffSpec,
}

/// A child's backoff sequence in its parent.
#[derive(Debug)]
struct ChildBackoff {
    counter: BackoffCounter,
    /// When it was last started: a run of `reset_after` resets the counter.
    since: Instant,
}

/// The failure bookkeeping of every level of a tree: each level's window, each child's
/// backoff counter.
#[derive(Debug, Default)]
pub struct Levels {
    /// Failed children within each level's window; `None` is the root.
    windows: HashMap<Option<String>, RestartWindow>,
    /// Each child's backoff sequence, by name.
    children: HashMap<String, ChildBackoff>,
}

impl Levels {
    /// `child` was (re)started at `now`: its run for `reset_after` counts from here.
    pub fn started(&mut self, child: &str, now: Instant) {
        self.children
            .entry(child.to_string())
            .and_modify(|c| c.since = now)
            .or_insert(ChildBackoff {
                counter: BackoffCounter::default(),
                since: now,
            });
    }

    /// An operator asked for a fresh try: the child's backoff starts again.
    pub fn reset(&mut self, child: &str) {
        if let Some(c) = self.children.get_mut(child) {
            c.counter.reset();
        }
    }

    /// Forget a child a reload removed (a later child of that name starts afresh).
    pub fn forget(&mut self, child: &str) {
        self.children.remove(child);
        self.windows.remove(&Some(child.to_string()));
    }

    /// Failed children within the root's window at `now`.
    pub fn root_failures(&self, spec: &TreeSpec, now: Instant) -> u32 {
        match (spec.root.intensity, self.windows.get(&None)) {
            (Some(limit), Some(w)) => w.count(now, limit.within),
            _ => 0,
        }
    }

    /// `child`'s supervisor failed at `now`: walk up the tree counting it (see the module
    /// doc). `jitter` is a sample in `[0, 1)` for the backoff's jitter.
    pub fn child_failed(
        &mut self,
        spec: &TreeSpec,
        child: ChildId,
        now: Instant,
        jitter: f64,
    ) -> Verdict {
        let mut child = child;
        let mut failed = Vec::new();
        loop {
            let parent = spec.parent_of(child.name());
            let key = parent.map(|g| g.name.clone());
            let policy = match parent {
                Some(g) => LevelPolicy {
                    intensity: g.intensity,
                    backoff: g.backoff,
                },
                None => LevelPolicy {
                    intensity: spec.root.intensity,
                    backoff: spec.root.backoff,
                },
            };
            if let Some(limit) = policy.intensity {
                let n = self
                    .windows
                    .entry(key.clone())
                    .or_default()
                    .add(now, limit.within);
                if n > limit.max_restarts {
                    match parent {
                        None => {
                            let why = format!(
                                "{n} escalations within {:?} exceed the root limit of {}",
                                limit.within, limit.max_restarts
                            );
                            return Verdict::RootFailed { why, failed };
                        }
                        Some(g) => {
                            let why = format!(
                                "{n} failed children within {:?} exceed group {:?}'s limit of {}",
                                limit.within, g.name, limit.max_restarts
                            );
                            failed.push((g.name.clone(), why));
                            // The group starts afresh with an empty window of its own.
                            self.windows.remove(&key);
                            child = ChildId::Group(g.name.clone());
                            continue;
                        }
                    }
                }
            }
            let entry = self
                .children
                .entry(child.name().to_string())
                .or_insert(ChildBackoff {
                    counter: BackoffCounter::default(),
                    since: now,
                });
            let ran = now.saturating_duration_since(entry.since);
            let attempt = entry.counter.next_attempt(ran, policy.backoff.reset_after);
            let delay = policy.backoff.delay(attempt, jitter);
            return Verdict::Restart {
                child,
                delay,
                failed,
            };
        }
    }
}

/// The workers that restart when `worker` dies and restarts, in start order, by its group's
/// strategy: just `worker` (`OneForOne`, or no group), every child's workers (`OneForAll`),
/// or those of `worker` and the children after it (`RestForOne`). `Temporary` bystanders are
/// left out; `worker` itself is always first among its own. Also used for a failed group:
/// `child` is then the group.
pub fn restart_set<'a>(spec: &'a TreeSpec, child: &str) -> (Option<&'a str>, Vec<&'a str>) {
    let Some(group) = spec.parent_of(child).filter(|g| g.strategy.gated()) else {
        return (None, child_workers(spec, child));
    };
    let pos = group
        .children
        .iter()
        .position(|c| c.name() == child)
        .unwrap_or(0);
    let picked: &[ChildRef] = match group.strategy {
        Strategy::RestForOne => &group.children[pos..],
        Strategy::OneForAll | Strategy::OneForOne => &group.children,
    };
    let mut names = Vec::new();
    for c in picked {
        let own = c.name() == child;
        for w in child_workers(spec, c.name()) {
            let temporary = spec
                .workers
                .iter()
                .find(|s| s.name == w)
                .is_some_and(|s| s.policy.restart == RestartType::Temporary);
            if own || !temporary {
                names.push(w);
            }
        }
    }
    (Some(group.name.as_str()), names)
}

/// A child's workers in start order: the worker itself, or every worker of the group.
fn child_workers<'a>(spec: &'a TreeSpec, child: &str) -> Vec<&'a str> {
    match spec.group_workers(child) {
        Some(ws) => ws,
        None => spec
            .workers
            .iter()
            .find(|w| w.name == child)
            .map(|w| vec![w.name.as_str()])
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Launch, RootSpec};
    use crate::tree::Tree;
    use crate::worker_type::CommandWorker;

    /// root ─ a, g1(RestForOne, intensity 1/60s){ b, g2(OneForAll, intensity 1/60s){ c, d }, e }.
    fn spec(root_intensity: Option<IntensitySpec>) -> TreeSpec {
        let w = || CommandWorker {
            launch: Launch {
                argv: vec!["true".into()],
                env: Default::default(),
                cwd: None,
            },
        };
        let limit = IntensitySpec {
            max_restarts: 1,
            within: Duration::from_secs(60),
        };
        let backoff = BackoffSpec {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(30),
        };
        Tree::builder()
            .data_dir("/nonexistent")
            .root(RootSpec {
                backoff,
                intensity: root_intensity,
            })
            .worker("a", w())
            .group("g1", Strategy::RestForOne, |g| {
                g.intensity(limit)
                    .backoff(backoff)
                    .worker("b", w())
                    .group("g2", Strategy::OneForAll, |g| {
                        g.intensity(limit)
                            .backoff(backoff)
                            .worker("c", w())
                            .worker("d", w())
                    })
                    .worker("e", w())
            })
            .build()
            .expect("a valid tree")
    }

    fn restart(v: &Verdict) -> (&str, Duration, Vec<&str>) {
        match v {
            Verdict::Restart {
                child,
                delay,
                failed,
            } => (
                child.name(),
                *delay,
                failed.iter().map(|(g, _)| g.as_str()).collect(),
            ),
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn each_child_has_its_own_backoff_counter() {
        let spec = spec(None);
        let mut levels = Levels::default();
        let t0 = Instant::now();
        levels.started("a", t0);
        levels.started("b", t0);
        // a fails again and again (at the root, which has no intensity): its delays grow…
        let delays: Vec<Duration> = (0..4)
            .map(|i| {
                restart(&levels.child_failed(
                    &spec,
                    ChildId::Worker("a".into()),
                    t0 + Duration::from_millis(i),
                    0.5,
                ))
                .1
            })
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800].map(Duration::from_millis).to_vec()
        );
        // …and the unrelated worker's first failure waits the initial delay, not a's fifth.
        // (The measured bug: B's first escalation waited 4 s after A's four.)
        let spec_b = {
            let mut s = spec.clone();
            s.groups.clear();
            s
        };
        let (_, delay, _) =
            restart(&levels.child_failed(&spec_b, ChildId::Worker("b".into()), t0, 0.5));
        assert_eq!(delay, Duration::from_millis(100));
    }

    #[test]
    fn a_run_of_reset_after_resets_the_childs_counter() {
        let spec = spec(None);
        let mut levels = Levels::default();
        let t0 = Instant::now();
        levels.started("a", t0);
        let a = || ChildId::Worker("a".into());
        assert_eq!(
            restart(&levels.child_failed(&spec, a(), t0, 0.5))
                .1
                .as_millis(),
            100
        );
        levels.started("a", t0);
        assert_eq!(
            restart(&levels.child_failed(&spec, a(), t0, 0.5))
                .1
                .as_millis(),
            200
        );
        // Restarted, then ran for longer than reset_after (30 s): back to the first delay.
        levels.started("a", t0);
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            restart(&levels.child_failed(&spec, a(), later, 0.5))
                .1
                .as_millis(),
            100
        );
    }

    #[test]
    fn failures_escalate_group_by_group_up_to_the_root() {
        let one = Some(IntensitySpec {
            max_restarts: 1,
            within: Duration::from_secs(60),
        });
        let spec = spec(one);
        let mut levels = Levels::default();
        let t = Instant::now();
        let c = || ChildId::Worker("c".into());
        // First failure of c: within g2's limit, c restarts.
        assert_eq!(restart(&levels.child_failed(&spec, c(), t, 0.5)).0, "c");
        // Second: g2 fails; g1 counts it (its first): g2 restarts as a whole.
        let v = levels.child_failed(&spec, c(), t, 0.5);
        assert_eq!(restart(&v).0, "g2");
        assert_eq!(restart(&v).2, vec!["g2"]);
        // c fails twice more: g2 fails again, g1's second failure fails g1; the root counts
        // it (its first): g1 restarts as a whole.
        assert_eq!(restart(&levels.child_failed(&spec, c(), t, 0.5)).0, "c");
        let v = levels.child_failed(&spec, c(), t, 0.5);
        assert_eq!(restart(&v).0, "g1");
        assert_eq!(restart(&v).2, vec!["g2", "g1"]);
        // And once more all the way: past the root's limit the tree stops.
        assert_eq!(restart(&levels.child_failed(&spec, c(), t, 0.5)).0, "c");
        assert_eq!(restart(&levels.child_failed(&spec, c(), t, 0.5)).0, "g2");
        assert_eq!(restart(&levels.child_failed(&spec, c(), t, 0.5)).0, "c");
        match levels.child_failed(&spec, c(), t, 0.5) {
            Verdict::RootFailed { failed, .. } => {
                assert_eq!(
                    failed.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>(),
                    ["g2", "g1"]
                );
            }
            other => panic!("expected the root to fail, got {other:?}"),
        }
    }

    #[test]
    fn a_level_without_intensity_never_fails() {
        let mut spec = spec(None);
        for g in &mut spec.groups {
            g.intensity = None;
        }
        let mut levels = Levels::default();
        let t = Instant::now();
        for _ in 0..20 {
            let v = levels.child_failed(&spec, ChildId::Worker("d".into()), t, 0.5);
            assert_eq!(restart(&v).0, "d");
            assert!(restart(&v).2.is_empty());
        }
    }

    #[test]
    fn restart_sets_follow_the_strategies() {
        let mut spec = spec(None);
        // OneForOne (the root): just the worker.
        assert_eq!(restart_set(&spec, "a"), (None, vec!["a"]));
        // RestForOne g1: b and everything after it, nested groups' workers included.
        assert_eq!(
            restart_set(&spec, "b"),
            (Some("g1"), vec!["b", "c", "d", "e"])
        );
        assert_eq!(restart_set(&spec, "e"), (Some("g1"), vec!["e"]));
        // A failed group g2 in g1 (RestForOne): g2's workers and the sibling after it.
        assert_eq!(restart_set(&spec, "g2"), (Some("g1"), vec!["c", "d", "e"]));
        // OneForAll g2: both, in order, whichever died.
        assert_eq!(restart_set(&spec, "d"), (Some("g2"), vec!["c", "d"]));
        // A Temporary bystander is left alone; the temporary one that died is not.
        let d = spec.workers.iter_mut().find(|w| w.name == "d").expect("d");
        d.policy.restart = RestartType::Temporary;
        assert_eq!(restart_set(&spec, "c"), (Some("g2"), vec!["c"]));
        assert_eq!(restart_set(&spec, "d"), (Some("g2"), vec!["c", "d"]));
    }
}
