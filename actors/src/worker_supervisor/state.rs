//! The WorkerSupervisor's state: [`SupervisorState`] and its phase, one enum variant per
//! contract state carrying only what is valid in it (a live process only where one exists).
//!
//! Owns the data and the small helpers every other part uses (tickets and timers, publishing
//! an event). It must not decide, spawn, signal or record anything: those are the exit path's
//! and the actions' (`exit_path`, `actions`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ractor::{ActorRef, RpcReplyPort};

use crate::cgroup::WorkerCgroup;
use crate::events::{Event, EventBus, EventKind};
use crate::exit::ExitRecord;
use crate::history::History;
use crate::latency::LatencyWindow;
use crate::logfile::LogFile;
use crate::policy::{BackoffCounter, RestartWindow};
use crate::process::ProcessGroup;
use crate::protocol::ControlError;
use crate::snapshot::{WorkerSnapshot, WorkerState};
use crate::spawn_journal::SpawnJournal;
use crate::spec::WorkerSpec;

use super::{ParentLink, WorkerMsg};

/// A live process and what is known about it. Only states that own a process hold one, so a
/// stale pid has nowhere to live.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) group: ProcessGroup,
    pub(super) generation: u64,
    /// `VIGIL_RUN_ID` of this run.
    pub(super) run_id: String,
    /// The last `READY=1` or `WATCHDOG=1`; `None` before the first.
    pub(super) last_heartbeat: Option<Instant>,
    pub(super) heartbeat_ticket: Option<u64>,
    /// The deadline passed once: confirmed after `exit_path::NOTIFY_DRAIN`, so that heartbeats
    /// still queued in the notify pipe (a paused or starved server) are read before the kill.
    pub(super) heartbeat_overdue: bool,
}

/// Why a stop was requested, and what happens after the group has exited.
#[derive(Debug)]
pub(super) enum StopCause {
    /// `vigil stop`: stay stopped.
    Operator,
    /// `vigil restart`: spawn again at once.
    Restart,
    /// Server shutdown: stay stopped, never restart.
    Shutdown,
    /// No heartbeat in time: restart per policy (reason `watchdog`).
    Watchdog,
    /// A reload changed what runs: start again at once with the new spec.
    Reload,
}

impl StopCause {
    /// A word for the `stopping` event.
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            StopCause::Operator => "operator",
            StopCause::Restart => "restart",
            StopCause::Shutdown => "shutdown",
            StopCause::Watchdog => "watchdog",
            StopCause::Reload => "reload",
        }
    }
}

/// A caller waiting for an action to complete.
pub(super) enum Waiter {
    /// Replies with the snapshot (start/stop/restart).
    Act(RpcReplyPort<Result<WorkerSnapshot, ControlError>>),
    /// Replies when stopped (shutdown).
    Shutdown(RpcReplyPort<()>),
}

/// The worker's state: one variant per contract state, each with only what is valid then.
pub(super) enum Phase {
    /// Spawned; waiting for `READY=1` or `start_secs`.
    Starting { live: Live, ready_ticket: u64 },
    /// Ready.
    Running { live: Live },
    /// Dead; restart scheduled.
    Backoff {
        until: Instant,
        delay: Duration,
        ticket: u64,
    },
    /// Signalled; waiting for the group to exit (`SIGKILL` at the kill ticket).
    Stopping {
        live: Live,
        cause: StopCause,
        kill_ticket: u64,
        waiters: Vec<Waiter>,
    },
    /// Not running and not to be restarted until an operator's `start`.
    Stopped,
}

impl Phase {
    pub(super) fn name(&self) -> WorkerState {
        match self {
            Phase::Starting { .. } => WorkerState::Starting,
            Phase::Running { .. } => WorkerState::Running,
            Phase::Backoff { .. } => WorkerState::Backoff,
            Phase::Stopping { .. } => WorkerState::Stopping,
            Phase::Stopped => WorkerState::Stopped,
        }
    }

    pub(super) fn live(&self) -> Option<&Live> {
        match self {
            Phase::Starting { live, .. }
            | Phase::Running { live }
            | Phase::Stopping { live, .. } => Some(live),
            Phase::Backoff { .. } | Phase::Stopped => None,
        }
    }

    pub(super) fn live_mut(&mut self) -> Option<&mut Live> {
        match self {
            Phase::Starting { live, .. }
            | Phase::Running { live }
            | Phase::Stopping { live, .. } => Some(live),
            Phase::Backoff { .. } | Phase::Stopped => None,
        }
    }
}

/// The WorkerSupervisor's state.
pub struct SupervisorState {
    pub(super) spec: WorkerSpec,
    pub(super) data_dir: PathBuf,
    pub(super) history: History,
    /// Where spawns and reaps are written down (the guardian, the history's live rows).
    pub(super) journal: SpawnJournal,
    /// The worker's cgroup, when the server contains workers in cgroups.
    pub(super) cgroup: Option<WorkerCgroup>,
    pub(super) containment: &'static str,
    pub(super) oom_kills: u64,
    pub(super) events: EventBus,
    pub(super) log: Option<LogFile>,
    pub(super) phase: Phase,
    pub(super) generation: u64,
    pub(super) restarts: u64,
    pub(super) counter: BackoffCounter,
    pub(super) window: RestartWindow,
    pub(super) next_ticket: u64,
    pub(super) status_text: Option<String>,
    pub(super) last_exit: Option<ExitRecord>,
    /// Once true, nothing is restarted again (a shutdown was requested).
    pub(super) terminating: bool,
    /// Set by [`WorkerMsg::Remove`]: the stop is for good because the config dropped it.
    pub(super) removed: bool,
    /// A reload's new spec, taken once the process being stopped has exited.
    pub(super) next_spec: Option<Box<WorkerSpec>>,
    /// Reaped → exit handled, for the dump's `exit_notify_us`.
    pub(super) notify_latency: LatencyWindow,
    /// Tells the parent what it must know unasked ([`ChildNotice`]).
    pub(super) parent: ParentLink,
    /// Its group restarts it after a death (see [`WorkerArgs::group_restart`]).
    pub(super) group_restart: bool,
}

impl SupervisorState {
    pub(super) fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    pub(super) fn arm(&mut self, myself: &ActorRef<WorkerMsg>, after: Duration) -> u64 {
        let ticket = self.ticket();
        myself.send_after(after, move || WorkerMsg::Timer { ticket });
        ticket
    }

    /// Publish an event about this worker (built only when someone subscribes).
    pub(super) fn publish(
        &self,
        kind: EventKind,
        generation: u64,
        pid: Option<u32>,
        detail: Option<&str>,
    ) {
        self.events.publish(|| {
            let event = Event::worker(kind, &self.spec.name, generation, pid);
            match detail {
                Some(d) => event.with_detail(d),
                None => event,
            }
        });
    }
}
