//! The WorkerSupervisor actor: one worker's process group, its restarts, its state.
//!
//! Owns one worker: the live [`ProcessGroup`] (only while one exists), the state machine of the
//! contract (`starting`, `running`, `backoff`, `stopping`, `stopped`), the backoff counter, the
//! restart-intensity window and the timers. Every exit goes down one straight path:
//! classify ([`Exit`]) → decide ([`crate::policy`]) → record (history) → apply (spawn, wait, stop or
//! escalate). It must not touch other workers, SQLite (it sends records to the history
//! writer), or the root's state: exceeding the restart intensity fails this actor for real and
//! the root decides what happens next.
//!
//! # Messages
//! See [`WorkerMsg`]: three requests from the root (snapshot, operator action, shutdown) and
//! two internal messages (process events and timers), each tagged with the generation or
//! the timer ticket it belongs to, so stale ones are dropped.
//!
//! # Guarantees
//! - The process group is killed when the actor's state is dropped, whatever the reason the
//!   actor ended (the `Drop` of [`ProcessGroup`]); `post_stop` is not relied on.
//! - A worker is never left dead silently: every exit produces an exit record and either a
//!   scheduled restart, a `stopped` state whose record says why, or an escalation.
//! - After a shutdown request nothing is restarted, whatever arrives later (OTP's
//!   `sup_stop_race`): an exit that races with the request ends the worker as `stopped`.
//!
//! # Layout
//! - `state`: the state ([`SupervisorState`]) and its phase enum.
//! - `exit_path`: classify → decide → record → apply; heartbeats and the start deadline.
//! - `actions`: spawning, operator actions (start/stop/restart), shutdown and reload.
//! - `snapshot`: the worker's [`WorkerSnapshot`].
//!
//! This file holds the API (messages, arguments, what survives a failure) and the [`Actor`]
//! impl, which only dispatches to the rest. It must not hold any logic of its own.
//!
//! [`ProcessGroup`]: crate::process::ProcessGroup
//! [`Exit`]: crate::exit::Exit

mod actions;
mod exit_path;
mod snapshot;
mod state;

use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::containment::Containment;
use crate::events::EventBus;
use crate::exit::ExitRecord;
use crate::history::History;
use crate::latency::LatencyWindow;
use crate::policy::{BackoffCounter, RestartWindow};
use crate::process::ProcessEvent;
use crate::protocol::{ControlError, WorkerAction};
use crate::snapshot::WorkerSnapshot;
use crate::spawn_journal::SpawnJournal;
use crate::spec::WorkerSpec;

pub use actions::StartError;
use state::Phase;
pub use state::SupervisorState;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// The WorkerSupervisor's messages: its whole API.
pub enum WorkerMsg {
    /// From the root: describe yourself. Replies at once.
    Snapshot(RpcReplyPort<WorkerSnapshot>),
    /// From the root (an operator's `start`/`stop`/`restart`): replies once the action is
    /// done — `start`/`restart` when the new process has been spawned, `stop` when the group
    /// has exited.
    Act {
        /// What to do.
        action: WorkerAction,
        /// The snapshot afterwards, or why it failed.
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    },
    /// From the root during shutdown: stop the worker for good. Replies when the group is gone.
    Shutdown(RpcReplyPort<()>),
    /// From the root (a reload): the worker is no longer in the config. Stops it for good, as
    /// [`WorkerMsg::Shutdown`] does; its exit record says why. Replies when the group is gone.
    Remove(RpcReplyPort<()>),
    /// From the root (a reload): new supervision settings only (see
    /// [`crate::reload::SUPERVISION_FIELDS`]). The process is not touched: same pid, same
    /// generation; a new backoff applies to the next restart, a new intensity window keeps the
    /// restarts already counted, a new heartbeat timeout is armed from now.
    Update(Box<WorkerSpec>),
    /// From the root (a reload): what the worker runs changed. A running worker is stopped
    /// gracefully (its exit recorded with reason `stopped`, decision "restarting: config
    /// changed") and started with `spec`; one in backoff starts with `spec` at once; a stopped
    /// one stays stopped and uses `spec` at its next start. Replies once that is done.
    Replace {
        /// The new spec.
        spec: Box<WorkerSpec>,
        /// The snapshot afterwards, or why it failed.
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    },
    /// From the root (a group restart): the group's turn for this worker has come; start it
    /// if it still waits in backoff (an operator's `stop` meanwhile wins). Replies with the
    /// snapshot afterwards.
    Resume(RpcReplyPort<Result<WorkerSnapshot, ControlError>>),
    /// Internal: something happened to the process of `generation`.
    Process {
        /// The generation the event belongs to.
        generation: u64,
        /// The event.
        event: ProcessEvent,
    },
    /// Internal: a timer armed with `ticket` fired.
    Timer {
        /// Identifies the timer; a timer whose ticket is no longer current is ignored.
        ticket: u64,
    },
}

/// How a WorkerSupervisor begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    /// Spawn the worker at once.
    Start,
    /// Wait for an operator's `start`.
    Stopped,
}

/// What a WorkerSupervisor is started with.
pub struct WorkerArgs {
    /// The worker.
    pub spec: WorkerSpec,
    /// The tree's data directory (passed to the worker type).
    pub data_dir: PathBuf,
    /// How the server contains workers (cgroup or process group).
    pub containment: Containment,
    /// The history writer.
    pub history: History,
    /// The event bus, published to beside every history record.
    pub events: EventBus,
    /// Carried over from a previous WorkerSupervisor of the same worker (after an escalation).
    pub carry: Carry,
    /// Start the worker, or wait.
    pub initial: InitialState,
    /// How the worker's parent (the root) is told what it must know unasked.
    pub parent: ParentLink,
    /// In a `OneForAll`/`RestForOne` group: after a death the worker does not restart itself;
    /// its group restarts it (and its siblings) in order ([`WorkerMsg::Resume`]).
    pub group_restart: bool,
}

/// What a WorkerSupervisor tells its parent unasked.
#[derive(Clone, Debug, PartialEq)]
pub enum ChildNotice {
    /// The worker died and restarts after `delay`: its group's strategy decides which
    /// siblings restart with it (see [`crate::spec::Strategy`]).
    Restarting {
        /// The worker.
        worker: String,
        /// Its own backoff before the restart.
        delay: Duration,
    },
    /// The significant worker ended and will not be restarted: the tree shuts down.
    SignificantEnded {
        /// The worker.
        worker: String,
        /// Its exit status ([`crate::exit::exit_status`]).
        code: u8,
    },
}

/// Delivers a [`ChildNotice`] to the parent; `false` when the parent is gone. A function,
/// not the parent's actor type, so the supervisor knows nothing of what is above it.
pub type ParentLink = std::sync::Arc<dyn Fn(ChildNotice) -> bool + Send + Sync>;

/// What survives a WorkerSupervisor's failure: counters and the last exit, for the next one.
#[derive(Clone, Debug, Default)]
pub struct Carry {
    /// Restarts since the server started.
    pub restarts: u64,
    /// The last generation spawned.
    pub generation: u64,
    /// The most recent exit.
    pub last_exit: Option<ExitRecord>,
    /// Processes killed by the OOM killer since the server started.
    pub oom_kills: u64,
}

impl Carry {
    /// What a stopped supervisor leaves to the next one, read from its last snapshot.
    pub fn of(snapshot: &WorkerSnapshot) -> Carry {
        Carry {
            restarts: snapshot.restarts,
            generation: snapshot.generation,
            last_exit: snapshot.last_exit.clone(),
            oom_kills: snapshot.oom_kills,
        }
    }
}

/// The error a WorkerSupervisor fails with when its restart intensity is exceeded. The root
/// receives it in `ActorFailed` and takes the [`Carry`] from it.
#[derive(Debug, thiserror::Error)]
#[error("{worker}: {restarts} restarts within {within:?} exceed the limit of {max_restarts}")]
pub struct Escalation {
    /// The worker.
    pub worker: String,
    /// Restarts inside the window.
    pub restarts: u32,
    /// The limit.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
    /// Counters for the next WorkerSupervisor.
    pub carry: Carry,
}

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

/// The WorkerSupervisor behaviour (stateless; see [`WorkerMsg`] for its API).
pub struct WorkerSupervisor;

impl Actor for WorkerSupervisor {
    type Msg = WorkerMsg;
    type State = SupervisorState;
    type Arguments = WorkerArgs;

    /// Builds the state and, unless asked to wait, spawns the first process. A failed spawn
    /// is not a failed `pre_start`: it is recorded and backed off like any other failed start.
    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: WorkerArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            cgroup: args.containment.worker(&args.spec.name),
            spec: args.spec,
            containment: args.containment.kind(),
            oom_kills: args.carry.oom_kills,
            data_dir: args.data_dir,
            journal: SpawnJournal::new(args.history.clone()),
            history: args.history,
            events: args.events,
            log: None,
            phase: Phase::Stopped,
            generation: args.carry.generation,
            restarts: args.carry.restarts,
            counter: BackoffCounter::default(),
            window: RestartWindow::default(),
            next_ticket: 0,
            status_text: None,
            last_exit: args.carry.last_exit,
            terminating: false,
            next_spec: None,
            removed: false,
            notify_latency: LatencyWindow::default(),
            parent: args.parent.clone(),
            group_restart: args.group_restart,
        };
        if args.initial == InitialState::Start {
            state.start(&myself)?;
        }
        Ok(state)
    }

    /// A WorkerSupervisor that ends (removed by a reload, escalated, or at shutdown) takes
    /// its worker's cgroup with it when nothing is left in it (a fresh supervisor makes it
    /// again before its first spawn).
    async fn post_stop(
        &self,
        _myself: ActorRef<WorkerMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Dropping a live process kills all of it.
        state.phase = Phase::Stopped;
        if let Some(cg) = &state.cgroup {
            if cg.members().is_empty() {
                cg.remove();
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot(&myself));
            }
            WorkerMsg::Act { action, reply } => state.act(&myself, action, reply)?,
            WorkerMsg::Resume(reply) => {
                if matches!(state.phase, Phase::Backoff { .. }) && !state.terminating {
                    state.start(&myself)?;
                    let _ = reply.send(state.started_or_error(&myself));
                } else {
                    let _ = reply.send(Ok(state.snapshot(&myself)));
                }
            }
            WorkerMsg::Shutdown(reply) => state.shutdown(&myself, reply),
            WorkerMsg::Remove(reply) => {
                state.removed = true;
                state.shutdown(&myself, reply)
            }
            WorkerMsg::Update(spec) => state.update(&myself, *spec),
            WorkerMsg::Replace { spec, reply } => state.replace(&myself, spec, reply)?,
            WorkerMsg::Process { generation, event } => match event {
                ProcessEvent::Exited(report) => state.on_exit(&myself, generation, report)?,
                ProcessEvent::Notify(ev) => state.on_notify(generation, ev),
            },
            WorkerMsg::Timer { ticket } => state.on_timer(&myself, ticket)?,
        }
        Ok(())
    }
}

use crate::timefmt::millis;

pub use crate::timefmt::rfc3339;
