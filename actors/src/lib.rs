//! vigil's supervision tree: a root supervisor, one WorkerSupervisor per worker, and each
//! worker's process group.
//!
//! ```text
//! RootSupervisor                      (root.rs)     the outermost group; applies every level's verdicts
//! ├─ group "search" (RestForOne)      (group.rs)    strategy, intensity window, a backoff per child
//! │  ├─ WorkerSupervisor "indexing"   (worker_supervisor/)  state machine, backoff, restart window
//! │  │  └─ cgroup + process group     (process.rs)  spawn, signal all, kill-on-drop, OOM watch
//! │  └─ WorkerSupervisor "index-size"
//! └─ WorkerSupervisor "…"
//! history writer thread               (history.rs)  the only SQLite writer
//! event bus                           (events.rs)   the live stream beside history, for `vigil events`
//! HTTP endpoint                       (http.rs)     /metrics, /healthz, /readyz; fed by the bus's tap
//! guardian process                    (guardian.rs) kills the workers' groups if the server dies
//! containment                         (containment.rs, cgroup.rs) cgroup per worker or process groups
//! child subreaper                     (reaper.rs)   adopts orphans, reaps zombies
//! ```
//!
//! # Groups
//! Between the root and the workers there may be groups (`TreeSpec::groups`; config
//! `kind: Group(strategy, intensity, backoff, workers)`), nested to any depth:
//!
//! ```text
//! root (OneForOne)
//! ├─ group "backend" (RestForOne)
//! │  ├─ worker "db"
//! │  └─ worker "indexing"      starts once "db" is running; restarts after "db" does
//! └─ group "web" (OneForOne)   `instances: 3`
//!    ├─ worker "web@0"
//!    ├─ worker "web@1"
//!    └─ worker "web@2"
//! ```
//!
//! Strategies, with OTP's meanings ([`spec::Strategy`]): `OneForOne` restarts only the child
//! that died; `OneForAll` stops the other children (reverse start order) and starts them all
//! again in order; `RestForOne` stops the children after the one that died (reverse order) and
//! starts it and them again in order. A `Temporary` child is never restarted along with a
//! sibling. In `OneForAll`/`RestForOne` groups each child starts only once the one before is
//! `running` (state `waiting` meanwhile). The worker decides *whether* it restarts; its group
//! decides *what else* restarts with it (the WorkerSupervisor tells its parent through its
//! [`worker_supervisor::ParentLink`]: [`worker_supervisor::ChildNotice::Restarting`];
//! [`group::restart_set`] names who restarts with it).
//!
//! Every level — the root and each group — is the same supervision logic ([`group::Levels`]):
//! a child whose supervisor failed is started afresh after its parent's `backoff` (one counter
//! per child, reset once the child ran `reset_after`); more than the parent's `intensity` such
//! failures within the window fail the parent itself: a failed group's workers are stopped
//! (reverse order) and *its* parent starts the whole group afresh after its own backoff for it,
//! or fails in turn — up to the root, past whose intensity the tree stops
//! ([`root::TreeOutcome::RootIntensityExceeded`], `serve` exits 3). A level without an
//! intensity never fails. Shutdown goes depth-first in reverse start order, each child gone
//! before the next is signalled.
//!
//! # Who owns what
//! - The **root** ([`root::RootSupervisor`]) owns one slot per worker (a live
//!   WorkerSupervisor, or a failed one waiting for its parent's backoff) and the tree's
//!   [`group::Levels`]; it applies the levels' verdicts and the groups' strategies. It
//!   neither spawns nor signals worker processes; it only reads about them (`/proc`, for the
//!   dump's usage figures).
//! - **group.rs** ([`group`]) decides, as plain functions of the spec: who restarts with a
//!   dying child, and what a failed child means for each level up to the root.
//! - A **WorkerSupervisor** ([`worker_supervisor::WorkerSupervisor`]) owns exactly one worker:
//!   its live [`process::ProcessGroup`] (only while one exists), its state, its timers.
//! - The **history writer** ([`history::History`]) owns `history.sqlite`; everyone else sends
//!   it records.
//! - The **spawn journal** ([`spawn_journal::SpawnJournal`]) is the one way a spawn and a reap
//!   are written down, for the [`guardian`] and for the history's live rows (orphan sweep).
//!
//! # Messages
//! - [`root::RootMsg`]: `Dump`, `Status`, `Act` (start/stop/restart one worker), `Shutdown`,
//!   `Reload` (apply a new config: [`reload`] computes the difference); internally
//!   `RestartSupervisor` (a failed worker's backoff elapsed), `RestartGroup` (a failed
//!   group's), `GroupRestarted`, `ReloadStopped` and `ShutdownComplete`; from the
//!   WorkerSupervisors, `Child` ([`worker_supervisor::ChildNotice`]).
//! - [`worker_supervisor::WorkerMsg`]: `Snapshot`, `Act`, `Shutdown` from the root, and for a
//!   reload `Update` (supervision settings), `Replace` (what runs) and `Remove`; internally
//!   `Process { generation, event }` (an exit or a notify line, tagged with the generation it
//!   belongs to) and `Timer { ticket }` (start deadline, backoff expiry, grace expiry,
//!   heartbeat deadline). Stale generations and tickets are ignored.
//!
//! # Restart semantics
//! Every exit goes classify → decide → record → apply:
//! - **classify** ([`exit::Exit`]): exit code vs signal vs core dump, and a reason (`exited`,
//!   `killed`, `oom`, `watchdog`, `stopped`, `spawn_failed`, `orphan`).
//! - **decide**: the worker type may classify the exit first
//!   ([`worker_type::WorkerType::classify_exit`]); then the restart type with OTP's meanings
//!   (`Permanent` always, `Transient` after an abnormal exit, `Temporary` never); then the
//!   restart intensity, OTP's sliding window ([`policy::RestartWindow`]); then the delay,
//!   `min(max, initial × multiplier^n) ± jitter` with `n` reset after a run of `reset_after`
//!   ([`policy`]). The decision is a pure function ([`policy::decide`]): the clock and the
//!   jitter sample are passed in, and the counter updates come back for the caller to apply.
//! - **record**: an [`exit::ExitRecord`] with the delay chosen and the last output lines.
//! - **apply**: spawn again (at once, or after the delay), stay `stopped`, or **escalate**:
//!   the WorkerSupervisor fails with [`worker_supervisor::Escalation`]; the root records it,
//!   shows the worker `failed`, and starts a fresh WorkerSupervisor after its own backoff —
//!   unless a root intensity is configured and exceeded, which stops the whole tree
//!   ([`root::TreeOutcome::RootIntensityExceeded`]).
//!
//! # Adding a worker type
//! Implement [`worker_type::WorkerType`] (a command line and a restart policy; exit
//! classification and a pre-start check are optional) and register it with
//! [`tree::Tree::builder`]. See `examples/custom_worker.rs` in the repository.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod builder;
pub mod cgroup;
pub mod containment;
pub mod control;
pub mod environ;
pub mod events;
pub mod exit;
pub mod fd;
pub mod group;
pub mod guardian;
pub mod history;
pub mod http;
pub mod inotify;
pub mod latency;
pub mod lock;
pub mod logfile;
pub mod metrics;
pub mod notify;
pub mod orphan;
pub mod policy;
pub mod process;
pub mod procfs;
pub mod protocol;
pub mod reaper;
pub mod reload;
pub mod render;
pub mod root;
pub mod sd_notify;
pub mod signal;
pub mod snapshot;
pub mod spawn_journal;
pub mod spawner;
pub mod spec;
pub mod timefmt;
pub mod tree;
pub mod worker_supervisor;
pub mod worker_type;
