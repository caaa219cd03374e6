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

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::cgroup::{Evidence, WorkerCgroup};
use crate::containment::Containment;
use crate::environ;
use crate::events::{Event, EventBus, EventKind};
use crate::exit::{Exit, ExitReason, ExitRecord};
use crate::history::History;
use crate::latency::LatencyWindow;
use crate::logfile::LogFile;
use crate::notify::NotifyEvent;
use crate::policy::{BackoffCounter, RestartWindow};
use crate::process::{self, ExitReport, ProcessEvent, ProcessGroup, SpawnRequest};
use crate::protocol::{ControlError, WorkerAction};
use crate::signal::Signal;
use crate::snapshot::{WorkerSnapshot, WorkerState};
use crate::spec::WorkerSpec;
use crate::worker_type::LaunchContext;

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
// State
// ---------------------------------------------------------------------------------------------

/// A live process and what is known about it. Only states that own a process hold one, so a
/// stale pid has nowhere to live.
#[derive(Debug)]
struct Live {
    group: ProcessGroup,
    generation: u64,
    /// `VIGIL_RUN_ID` of this run.
    run_id: String,
    /// The last `READY=1` or `WATCHDOG=1`; `None` before the first.
    last_heartbeat: Option<Instant>,
    heartbeat_ticket: Option<u64>,
    /// The deadline passed once: confirmed after [`NOTIFY_DRAIN`], so that heartbeats still
    /// queued in the notify pipe (a paused or starved server) are read before the kill.
    heartbeat_overdue: bool,
}

/// Why a spawn attempt failed (it goes down the exit path as `spawn_failed`, its message in
/// the record's log tail).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The worker's log file could not be opened.
    #[error("cannot create log file {}: {source}", path.display())]
    LogFile {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The worker type's `before_start` refused.
    #[error("start check failed: {0}")]
    StartCheck(String),
    /// The worker type could not say what to run ([`crate::worker_type::WorkerType::launch`]).
    #[error("{0}")]
    Launch(String),
    /// The environment or credentials could not be prepared.
    #[error(transparent)]
    Environ(#[from] crate::environ::EnvError),
    /// The process could not be spawned.
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
}

/// How long a passed heartbeat deadline waits for queued notify lines before the watchdog kills.
const NOTIFY_DRAIN: Duration = Duration::from_millis(200);

/// Why a stop was requested, and what happens after the group has exited.
#[derive(Debug)]
enum StopCause {
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
    fn as_str(&self) -> &'static str {
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
enum Waiter {
    /// Replies with the snapshot (start/stop/restart).
    Act(RpcReplyPort<Result<WorkerSnapshot, ControlError>>),
    /// Replies when stopped (shutdown).
    Shutdown(RpcReplyPort<()>),
}

/// The worker's state: one variant per contract state, each with only what is valid then.
enum Phase {
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
    fn name(&self) -> WorkerState {
        match self {
            Phase::Starting { .. } => WorkerState::Starting,
            Phase::Running { .. } => WorkerState::Running,
            Phase::Backoff { .. } => WorkerState::Backoff,
            Phase::Stopping { .. } => WorkerState::Stopping,
            Phase::Stopped => WorkerState::Stopped,
        }
    }

    fn live(&self) -> Option<&Live> {
        match self {
            Phase::Starting { live, .. }
            | Phase::Running { live }
            | Phase::Stopping { live, .. } => Some(live),
            Phase::Backoff { .. } | Phase::Stopped => None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut Live> {
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
    spec: WorkerSpec,
    data_dir: PathBuf,
    history: History,
    /// The worker's cgroup, when the server contains workers in cgroups.
    cgroup: Option<WorkerCgroup>,
    containment: &'static str,
    oom_kills: u64,
    events: EventBus,
    log: Option<LogFile>,
    phase: Phase,
    generation: u64,
    restarts: u64,
    counter: BackoffCounter,
    window: RestartWindow,
    next_ticket: u64,
    status_text: Option<String>,
    last_exit: Option<ExitRecord>,
    /// Once true, nothing is restarted again (a shutdown was requested).
    terminating: bool,
    /// Set by [`WorkerMsg::Remove`]: the stop is for good because the config dropped it.
    removed: bool,
    /// A reload's new spec, taken once the process being stopped has exited.
    next_spec: Option<Box<WorkerSpec>>,
    /// Reaped → exit handled, for the dump's `exit_notify_us`.
    notify_latency: LatencyWindow,
    /// Tells the parent what it must know unasked ([`ChildNotice`]).
    parent: ParentLink,
    /// Its group restarts it after a death (see [`WorkerArgs::group_restart`]).
    group_restart: bool,
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

impl SupervisorState {
    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn arm(&mut self, myself: &ActorRef<WorkerMsg>, after: Duration) -> u64 {
        let ticket = self.ticket();
        myself.send_after(after, move || WorkerMsg::Timer { ticket });
        ticket
    }

    /// Publish an event about this worker (built only when someone subscribes).
    fn publish(&self, kind: EventKind, generation: u64, pid: Option<u32>, detail: Option<&str>) {
        self.events.publish(|| {
            let event = Event::worker(kind, &self.spec.name, generation, pid);
            match detail {
                Some(d) => event.with_detail(d),
                None => event,
            }
        });
    }

    /// The one place an exit is recorded: the history writer and the event stream get the
    /// same record, so `vigil history` and `vigil events` never disagree.
    fn record_exit(&mut self, record: ExitRecord, reaped: Option<Instant>) {
        self.events.publish(|| Event {
            reaped,
            ..Event::exited(&record)
        });
        self.history.record_exit(record.clone());
        self.last_exit = Some(record);
    }

    fn context(&self) -> LaunchContext {
        LaunchContext {
            name: self.spec.name.clone(),
            generation: self.generation,
            data_dir: self.data_dir.clone(),
            log_path: self.spec.log.path.clone(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Spawning: the one function used by first start, restart, backoff expiry and `start`.
    // -----------------------------------------------------------------------------------------

    /// Spawn a new generation. On failure, goes down the exit path as `spawn_failed`.
    fn start(&mut self, myself: &ActorRef<WorkerMsg>) -> Result<(), ActorProcessingErr> {
        self.generation += 1;
        let generation = self.generation;
        let attempted_at = SystemTime::now();
        let run_id = environ::new_run_id();
        match self.try_spawn(myself, &run_id) {
            Ok(group) => {
                let pid = group.pid();
                tracing::info!(worker = %self.spec.name, generation, pid, run_id, "worker started");
                // The `[vigil] started generation …` marker was written by the spawn, before
                // any output of the worker could be.
                // Without a start time the row could never be verified: do not write one.
                if let Some(identity) = group.identity() {
                    self.history.process_started(identity.clone());
                }
                self.status_text = None;
                let policy = self.spec.policy;
                let mut live = Live {
                    last_heartbeat: None,
                    group,
                    generation,
                    run_id,
                    heartbeat_ticket: None,
                    heartbeat_overdue: false,
                };
                if let Some(timeout) = policy.heartbeat_timeout {
                    live.heartbeat_ticket = Some(self.arm(myself, timeout));
                }
                self.publish(EventKind::Started, generation, Some(pid), None);
                if policy.start_secs.is_zero() {
                    self.phase = Phase::Running { live };
                    self.publish(EventKind::Ready, generation, Some(pid), None);
                } else {
                    let ready_ticket = self.arm(myself, policy.start_secs);
                    self.phase = Phase::Starting { live, ready_ticket };
                }
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(worker = %self.spec.name, generation, error = %message, "spawn failed");
                if let Some(log) = &self.log {
                    log.note(&format!(
                        "generation {generation} failed to start: {message}"
                    ));
                }
                let exited_at = SystemTime::now();
                self.phase = Phase::Stopped;
                self.after_exit(
                    myself,
                    Ended {
                        exit: Exit::spawn_failed(),
                        pid: None,
                        generation,
                        run_id: Some(run_id),
                        started_at: attempted_at,
                        exited_at,
                        uptime: Duration::ZERO,
                        log_tail: vec![message],
                        during_start: true,
                        cause: None,
                        evidence: Evidence::default(),
                        reaped: None,
                    },
                )
            }
        }
    }

    fn try_spawn(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        run_id: &str,
    ) -> Result<ProcessGroup, StartError> {
        let log = match &self.log {
            Some(log) => {
                log.reopen_if_replaced();
                log.clone()
            }
            None => {
                let log = LogFile::open(&self.spec.log).map_err(|source| StartError::LogFile {
                    path: self.spec.log.path.clone(),
                    source,
                })?;
                self.log = Some(log.clone());
                log
            }
        };
        let ctx = self.context();
        self.spec
            .worker_type
            .before_start(&ctx)
            .map_err(StartError::StartCheck)?;
        let launch = self
            .spec
            .worker_type
            .launch(&ctx)
            .map_err(StartError::Launch)?;
        // The user and group are looked up again at each spawn: a user deleted since the
        // config was loaded is a failed start that says so.
        let setup = environ::prepare(&self.spec.environment, &launch.env)?;
        let generation = self.generation;
        let me = myself.clone();
        let req = SpawnRequest {
            name: &self.spec.name,
            generation,
            launch: &launch,
            log: &log,
            cgroup: self.cgroup.as_ref(),
            limits: &self.spec.limits,
            run_id,
            setup: &setup,
        };
        Ok(process::spawn(&req, move |event| {
            let _ = me.cast(WorkerMsg::Process { generation, event });
        })?)
    }

    // -----------------------------------------------------------------------------------------
    // The exit path: classify → decide → record → apply.
    // -----------------------------------------------------------------------------------------

    fn on_exit(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        generation: u64,
        report: ExitReport,
    ) -> Result<(), ActorProcessingErr> {
        if self.phase.live().map(|l| l.generation) != Some(generation) {
            tracing::debug!(worker = %self.spec.name, generation, "stale exit ignored");
            return Ok(());
        }
        self.notify_latency.record(report.exited.elapsed());
        let phase = std::mem::replace(&mut self.phase, Phase::Stopped);
        let (live, during_start, cause, waiters) = match phase {
            Phase::Starting { live, .. } => (live, true, None, Vec::new()),
            Phase::Running { live } => (live, false, None, Vec::new()),
            Phase::Stopping {
                live,
                cause,
                waiters,
                ..
            } => (live, false, Some(cause), waiters),
            Phase::Backoff { .. } | Phase::Stopped => return Ok(()),
        };
        self.history
            .process_reaped(&self.spec.name, live.group.pid());
        let requested = match cause {
            Some(StopCause::Watchdog) => Some(ExitReason::Watchdog),
            Some(_) => Some(ExitReason::Stopped),
            None => None,
        };
        if report.survivors > 0 {
            let line = format!(
                "{} process(es) of generation {generation} still alive when the leader exited; killed",
                report.survivors
            );
            tracing::info!(worker = %self.spec.name, generation, survivors = report.survivors, "{line}");
            if let Some(log) = &self.log {
                log.note(&line);
            }
        }
        let oom = report.evidence.oom_kills.unwrap_or(0);
        self.oom_kills += oom;
        // Classify.
        let exit = match &report.status {
            Ok(status) if oom > 0 && requested.is_none() => {
                Exit::from_status(*status, Some(ExitReason::Oom))
            }
            Ok(status) => Exit::from_status(*status, requested),
            Err(e) => {
                tracing::error!(worker = %self.spec.name, generation, error = %e, "waiting for the worker failed");
                Exit {
                    code: None,
                    signal: None,
                    core_dumped: false,
                    reason: requested.unwrap_or(ExitReason::Killed),
                }
            }
        };
        let ended = Ended {
            exit,
            pid: Some(live.group.pid()),
            generation,
            run_id: Some(live.run_id.clone()),
            started_at: live.group.started_at(),
            exited_at: report.exited_at,
            uptime: report
                .exited
                .saturating_duration_since(live.group.started()),
            log_tail: report.log_tail,
            during_start,
            cause,
            evidence: report.evidence,
            reaped: Some(report.exited),
        };
        drop(live);
        let result = self.after_exit(myself, ended);
        self.answer(myself, waiters);
        result
    }

    /// Decide, record, apply. Used for exits, failed spawns and watchdog kills alike.
    fn after_exit(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        ended: Ended,
    ) -> Result<(), ActorProcessingErr> {
        let decision = self.decide(&ended);
        // Not restarted by its own policy (not by an operator or a shutdown): the worker's end.
        let final_end = matches!(decision, Decision::Stop(_))
            && !self.terminating
            && matches!(ended.cause, None | Some(StopCause::Watchdog));
        let reloaded = matches!(ended.cause, Some(StopCause::Reload));
        let (restart_delay, text) = match &decision {
            Decision::Restart { .. } if reloaded => (
                Some(Duration::ZERO),
                "restarting: config changed".to_string(),
            ),
            Decision::Restart { delay } => (
                Some(*delay),
                format!("restarting in {}", crate::render::duration(*delay)),
            ),
            Decision::Stop(why) => (None, format!("not restarted: {why}")),
            Decision::Escalate(e) => (None, format!("escalated: {e}")),
        };
        let text = if ended.during_start && ended.exit.reason != ExitReason::Stopped {
            format!(
                "failed start ({}); {text}",
                if ended.pid.is_some() {
                    "died before it was running"
                } else {
                    "could not spawn"
                }
            )
        } else {
            text
        };
        // Without memory accounting of its own, a SIGKILL nobody here sent while the kernel's
        // OOM killer was busy is worth saying (the reason stays what is known: `killed`).
        let text = match (ended.evidence.oom_kills, ended.evidence.system_oom_kills) {
            (None, Some(n))
                if n > 0 && ended.exit.signal == Some(libc::SIGKILL) && ended.cause.is_none() =>
            {
                format!(
                    "probably the OOM killer: it killed {n} process(es) on this system during the run (no memory accounting for this worker); {text}"
                )
            }
            _ => text,
        };
        // Record.
        let record = ExitRecord {
            oom_kills: ended.evidence.oom_kills,
            memory_peak_bytes: ended.evidence.memory_peak_bytes,
            worker: self.spec.name.clone(),
            pid: ended.pid,
            generation: ended.generation,
            run_id: ended.run_id,
            started_at: rfc3339(ended.started_at),
            exited_at: rfc3339(ended.exited_at),
            uptime_ms: millis(ended.uptime),
            code: ended.exit.code,
            signal: ended.exit.signal,
            signal_name: ended.exit.signal_name(),
            core_dumped: ended.exit.core_dumped,
            reason: ended.exit.reason,
            restart_delay_ms: restart_delay.map(millis),
            log_tail: ended.log_tail,
            decision: text.clone(),
        };
        tracing::warn!(
            worker = %self.spec.name,
            generation = ended.generation,
            pid = ended.pid,
            exit = %ended.exit.describe(),
            uptime_ms = record.uptime_ms,
            "{text}"
        );
        if let Some(log) = &self.log {
            log.note(&format!(
                "generation {} {}; {text}",
                ended.generation,
                ended.exit.describe()
            ));
        }
        self.record_exit(record, ended.reaped);
        if let Some(spec) = self.next_spec.take() {
            self.set_spec(*spec);
        }
        // Apply.
        match decision {
            Decision::Restart { delay } => {
                self.restarts += 1;
                let spontaneous = matches!(ended.cause, None | Some(StopCause::Watchdog));
                if spontaneous {
                    self.tell_group(delay);
                }
                if spontaneous && self.group_restart && myself.try_get_supervisor().is_some() {
                    // The group starts it again, in order with its siblings: wait without a
                    // timer (the ticket is never armed) until WorkerMsg::Resume.
                    self.events.publish(|| Event {
                        delay_ms: Some(millis(delay)),
                        ..Event::worker(EventKind::Backoff, &self.spec.name, ended.generation, None)
                    });
                    let ticket = self.ticket();
                    self.phase = Phase::Backoff {
                        until: Instant::now() + delay,
                        delay,
                        ticket,
                    };
                    return Ok(());
                }
                // A failed spawn is handled inside `start`: restarting it at once from here
                // would recurse (a thousand failed spawns overflowed the stack). It goes
                // through a 0 ms timer, one message per attempt.
                if delay.is_zero() && ended.pid.is_some() {
                    self.start(myself)?;
                } else {
                    self.events.publish(|| Event {
                        delay_ms: Some(millis(delay)),
                        ..Event::worker(EventKind::Backoff, &self.spec.name, ended.generation, None)
                    });
                    let ticket = self.arm(myself, delay);
                    self.phase = Phase::Backoff {
                        until: Instant::now() + delay,
                        delay,
                        ticket,
                    };
                }
                Ok(())
            }
            Decision::Stop(why) => {
                self.phase = Phase::Stopped;
                self.publish(EventKind::Stopped, ended.generation, None, Some(&why));
                if final_end && self.spec.significant {
                    self.significant_ended();
                }
                Ok(())
            }
            Decision::Escalate(mut escalation) => {
                self.phase = Phase::Stopped;
                escalation.carry.last_exit = self.last_exit.clone();
                Err(escalation)
            }
        }
    }

    /// Tell the root that this worker died and restarts after `delay`: its group's strategy
    /// decides what else restarts with it (the worker decides *whether*, the group *what else*).
    fn tell_group(&self, delay: Duration) {
        let _ = (self.parent)(ChildNotice::Restarting {
            worker: self.spec.name.clone(),
            delay,
        });
    }

    /// Tell the root that this significant worker has ended for good (it shuts the tree down).
    fn significant_ended(&self) {
        let notice = ChildNotice::SignificantEnded {
            worker: self.spec.name.clone(),
            code: crate::exit::exit_status(self.last_exit.as_ref()),
        };
        if !(self.parent)(notice) {
            tracing::error!(worker = %self.spec.name, "cannot tell the root that a significant worker ended");
        }
    }

    /// The restart decision for one ended run: [`crate::policy::decide`] over this worker's
    /// policy, window and counter, now, with a fresh jitter sample.
    fn decide(&mut self, ended: &Ended) -> Decision {
        use crate::policy::{self, Cause};
        if matches!(ended.cause, Some(StopCause::Shutdown)) && self.removed {
            return Decision::Stop("removed from the config".into());
        }
        let cause = match ended.cause {
            None => Cause::Own,
            Some(StopCause::Operator) => Cause::Operator,
            // A reload's restart is an operator's restart with new settings.
            Some(StopCause::Restart | StopCause::Reload) => Cause::Restart,
            Some(StopCause::Shutdown) => Cause::Shutdown,
            Some(StopCause::Watchdog) => Cause::Watchdog,
        };
        let input = policy::Ended {
            exit: &ended.exit,
            verdict: self.spec.worker_type.classify_exit(&ended.exit),
            cause,
            uptime: ended.uptime,
            terminating: self.terminating,
        };
        let policy = self.spec.policy;
        match policy::decide(
            &policy,
            self.spec.worker_type.kind(),
            input,
            &mut self.window,
            &mut self.counter,
            Instant::now(),
            fastrand::f64(),
        ) {
            policy::Decision::Restart { delay } => Decision::Restart { delay },
            policy::Decision::Stop(why) => Decision::Stop(why),
            policy::Decision::Escalate { restarts } => Decision::Escalate(Box::new(Escalation {
                worker: self.spec.name.clone(),
                restarts,
                max_restarts: policy.intensity.max_restarts,
                within: policy.intensity.within,
                carry: Carry {
                    restarts: self.restarts,
                    generation: self.generation,
                    last_exit: None,
                    oom_kills: self.oom_kills,
                },
            })),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Notify and timers.
    // -----------------------------------------------------------------------------------------

    fn on_notify(&mut self, generation: u64, event: NotifyEvent) {
        let Some(live) = self.phase.live_mut().filter(|l| l.generation == generation) else {
            return;
        };
        match event {
            NotifyEvent::Ready => {
                live.last_heartbeat = Some(Instant::now());
                live.heartbeat_overdue = false;
                if let Phase::Starting { .. } = self.phase {
                    if let Phase::Starting { live, .. } =
                        std::mem::replace(&mut self.phase, Phase::Stopped)
                    {
                        tracing::info!(worker = %self.spec.name, generation, "worker ready");
                        let pid = live.group.pid();
                        self.phase = Phase::Running { live };
                        self.publish(EventKind::Ready, generation, Some(pid), None);
                    }
                }
            }
            NotifyEvent::Watchdog => {
                live.last_heartbeat = Some(Instant::now());
                // A confirmation already armed must not act on a deadline this heartbeat met
                // (it may fire only after the next pause of the server).
                live.heartbeat_overdue = false;
            }
            NotifyEvent::Status(text) => self.status_text = Some(text),
            NotifyEvent::Stopping => {
                tracing::info!(worker = %self.spec.name, generation, "worker says it is stopping");
            }
        }
    }

    fn on_timer(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        ticket: u64,
    ) -> Result<(), ActorProcessingErr> {
        // Heartbeat deadline (any state with a live process).
        if let Some(live) = self.phase.live_mut() {
            if live.heartbeat_ticket == Some(ticket) {
                live.heartbeat_ticket = None;
                return self.check_heartbeat(myself);
            }
        }
        match &self.phase {
            Phase::Starting { ready_ticket, .. } if *ready_ticket == ticket => {
                if let Phase::Starting { live, .. } =
                    std::mem::replace(&mut self.phase, Phase::Stopped)
                {
                    tracing::info!(worker = %self.spec.name, generation = live.generation, "worker running (start_secs elapsed)");
                    let (generation, pid) = (live.generation, live.group.pid());
                    self.phase = Phase::Running { live };
                    self.publish(EventKind::Ready, generation, Some(pid), None);
                }
            }
            Phase::Backoff { ticket: t, .. } if *t == ticket => {
                if self.terminating {
                    self.phase = Phase::Stopped;
                    let generation = self.generation;
                    self.publish(
                        EventKind::Stopped,
                        generation,
                        None,
                        Some("server shutting down"),
                    );
                } else {
                    self.start(myself)?;
                }
            }
            Phase::Stopping {
                kill_ticket, live, ..
            } if *kill_ticket == ticket => {
                tracing::warn!(worker = %self.spec.name, generation = live.generation, pid = live.group.pid(), "grace expired; sending SIGKILL to the group");
                if let Err(e) = live.group.signal(Signal::KILL) {
                    tracing::error!(worker = %self.spec.name, error = %e, "SIGKILL failed");
                }
            }
            _ => tracing::trace!(worker = %self.spec.name, ticket, "stale timer ignored"),
        }
        Ok(())
    }

    fn check_heartbeat(&mut self, myself: &ActorRef<WorkerMsg>) -> Result<(), ActorProcessingErr> {
        let Some(timeout) = self.spec.policy.heartbeat_timeout else {
            return Ok(());
        };
        let Some(live) = self.phase.live() else {
            return Ok(());
        };
        // Silence is counted from the spawn until the first heartbeat.
        let age = live
            .last_heartbeat
            .unwrap_or(live.group.started())
            .elapsed();
        if matches!(self.phase, Phase::Stopping { .. }) {
            return Ok(());
        }
        let overdue = live.heartbeat_overdue;
        if age < timeout || !overdue {
            // Not due yet, or due for the first time: look again once the notify lines queued
            // meanwhile (a server paused by SIGSTOP wakes to a full pipe) have been read.
            let after = if age < timeout {
                timeout - age
            } else {
                NOTIFY_DRAIN
            };
            let ticket = self.arm(myself, after);
            if let Some(live) = self.phase.live_mut() {
                live.heartbeat_ticket = Some(ticket);
                live.heartbeat_overdue = age >= timeout;
            }
            return Ok(());
        }
        tracing::warn!(worker = %self.spec.name, generation = live.generation, pid = live.group.pid(), age_ms = millis(age), "no heartbeat in time; watchdog kills the worker");
        self.begin_stop(myself, StopCause::Watchdog, Signal::ABRT, Vec::new());
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Operator actions and shutdown.
    // -----------------------------------------------------------------------------------------

    /// Signal the group and wait for it (Starting/Running only; others are handled by callers).
    fn begin_stop(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        cause: StopCause,
        signal: Signal,
        waiters: Vec<Waiter>,
    ) {
        let phase = std::mem::replace(&mut self.phase, Phase::Stopped);
        let live = match phase {
            Phase::Starting { live, .. } | Phase::Running { live } => live,
            other => {
                self.phase = other;
                self.answer(myself, waiters);
                return;
            }
        };
        tracing::info!(worker = %self.spec.name, generation = live.generation, pid = live.group.pid(), signal = %signal, ?cause, "stopping worker");
        self.publish(
            EventKind::Stopping,
            live.generation,
            Some(live.group.pid()),
            Some(cause.as_str()),
        );
        if let Err(e) = live.group.signal(signal) {
            tracing::error!(worker = %self.spec.name, error = %e, "signalling the group failed");
        }
        let kill_ticket = self.arm(myself, self.spec.policy.shutdown.grace);
        self.phase = Phase::Stopping {
            live,
            cause,
            kill_ticket,
            waiters,
        };
    }

    fn act(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        action: WorkerAction,
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    ) -> Result<(), ActorProcessingErr> {
        if self.terminating {
            let _ = reply.send(Err(ControlError::ShuttingDown));
            return Ok(());
        }
        let signal = self.spec.policy.shutdown.signal;
        match (action, &mut self.phase) {
            (WorkerAction::Start, Phase::Starting { .. } | Phase::Running { .. }) => {
                let _ = reply.send(Ok(self.snapshot(myself)));
            }
            (
                WorkerAction::Start | WorkerAction::Restart,
                Phase::Backoff { .. } | Phase::Stopped,
            ) => {
                self.counter.reset();
                self.start(myself)?;
                let _ = reply.send(self.started_or_error(myself));
            }
            (WorkerAction::Stop, Phase::Backoff { .. } | Phase::Stopped) => {
                if matches!(self.phase, Phase::Backoff { .. }) {
                    let generation = self.generation;
                    self.publish(
                        EventKind::Stopped,
                        generation,
                        None,
                        Some("stopped by operator"),
                    );
                }
                self.phase = Phase::Stopped;
                let _ = reply.send(Ok(self.snapshot(myself)));
            }
            (WorkerAction::Stop, Phase::Starting { .. } | Phase::Running { .. }) => {
                self.begin_stop(
                    myself,
                    StopCause::Operator,
                    signal,
                    vec![Waiter::Act(reply)],
                );
            }
            (WorkerAction::Restart, Phase::Starting { .. } | Phase::Running { .. }) => {
                self.begin_stop(myself, StopCause::Restart, signal, vec![Waiter::Act(reply)]);
            }
            (action, Phase::Stopping { cause, waiters, .. }) => {
                match (action, &cause) {
                    (WorkerAction::Start | WorkerAction::Restart, StopCause::Operator) => {
                        *cause = StopCause::Restart
                    }
                    (
                        WorkerAction::Stop,
                        StopCause::Restart | StopCause::Watchdog | StopCause::Reload,
                    ) => *cause = StopCause::Operator,
                    _ => {}
                }
                waiters.push(Waiter::Act(reply));
            }
        }
        Ok(())
    }

    fn started_or_error(
        &self,
        myself: &ActorRef<WorkerMsg>,
    ) -> Result<WorkerSnapshot, ControlError> {
        match &self.phase {
            Phase::Starting { .. } | Phase::Running { .. } => Ok(self.snapshot(myself)),
            _ => Err(ControlError::Failed(match &self.last_exit {
                Some(e) => format!(
                    "{} could not be started: {}",
                    self.spec.name,
                    e.log_tail.join("; ")
                ),
                None => format!("{} could not be started", self.spec.name),
            })),
        }
    }

    fn shutdown(&mut self, myself: &ActorRef<WorkerMsg>, reply: RpcReplyPort<()>) {
        self.terminating = true;
        let signal = self.spec.policy.shutdown.signal;
        match &mut self.phase {
            Phase::Starting { .. } | Phase::Running { .. } => {
                self.begin_stop(
                    myself,
                    StopCause::Shutdown,
                    signal,
                    vec![Waiter::Shutdown(reply)],
                );
            }
            Phase::Stopping { cause, waiters, .. } => {
                *cause = StopCause::Shutdown;
                waiters.push(Waiter::Shutdown(reply));
            }
            Phase::Backoff { .. } | Phase::Stopped => {
                if matches!(self.phase, Phase::Backoff { .. }) {
                    let generation = self.generation;
                    self.publish(
                        EventKind::Stopped,
                        generation,
                        None,
                        Some("server shutting down"),
                    );
                }
                self.phase = Phase::Stopped;
                let _ = reply.send(());
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reload.
    // -----------------------------------------------------------------------------------------

    /// Take a new spec: its policy for every later decision, its log rotation from now on.
    fn set_spec(&mut self, spec: WorkerSpec) {
        if let Some(log) = &self.log {
            log.set_rotation(spec.log.max_bytes, spec.log.max_files);
        }
        self.spec = spec;
    }

    /// New supervision settings; the process (if any) is not touched.
    fn update(&mut self, myself: &ActorRef<WorkerMsg>, spec: WorkerSpec) {
        if let Some(next) = &mut self.next_spec {
            // A replace is under way: the new settings are for the process it starts.
            **next = spec;
            return;
        }
        let heartbeat = spec.policy.heartbeat_timeout;
        let rearm = heartbeat != self.spec.policy.heartbeat_timeout
            && matches!(self.phase, Phase::Starting { .. } | Phase::Running { .. });
        tracing::info!(worker = %self.spec.name, "reload: new supervision settings");
        self.set_spec(spec);
        if rearm {
            let ticket = heartbeat.map(|t| self.arm(myself, t));
            if let Some(live) = self.phase.live_mut() {
                live.heartbeat_ticket = ticket;
            }
        }
    }

    /// What runs changed: restart with `spec` (see [`WorkerMsg::Replace`]).
    fn replace(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
        spec: Box<WorkerSpec>,
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    ) -> Result<(), ActorProcessingErr> {
        if self.terminating {
            let _ = reply.send(Err(ControlError::ShuttingDown));
            return Ok(());
        }
        let signal = self.spec.policy.shutdown.signal;
        match &mut self.phase {
            Phase::Starting { .. } | Phase::Running { .. } => {
                self.next_spec = Some(spec);
                self.begin_stop(myself, StopCause::Reload, signal, vec![Waiter::Act(reply)]);
            }
            Phase::Stopping { cause, waiters, .. } => {
                // An operator's stop stays a stop; a restart or a watchdog kill comes back
                // with the new spec.
                if matches!(cause, StopCause::Restart | StopCause::Watchdog) {
                    *cause = StopCause::Reload;
                }
                waiters.push(Waiter::Act(reply));
                self.next_spec = Some(spec);
            }
            Phase::Backoff { .. } => {
                self.set_spec(*spec);
                self.counter.reset();
                self.start(myself)?;
                let _ = reply.send(self.started_or_error(myself));
            }
            Phase::Stopped => {
                self.set_spec(*spec);
                let _ = reply.send(Ok(self.snapshot(myself)));
            }
        }
        Ok(())
    }

    /// Reply to everyone waiting for the stop that just ended.
    fn answer(&self, myself: &ActorRef<WorkerMsg>, waiters: Vec<Waiter>) {
        for w in waiters {
            match w {
                Waiter::Shutdown(reply) => {
                    let _ = reply.send(());
                }
                Waiter::Act(reply) => {
                    let result = match &self.phase {
                        Phase::Backoff { .. }
                            if self
                                .last_exit
                                .as_ref()
                                .is_some_and(|e| e.reason == ExitReason::SpawnFailed) =>
                        {
                            self.started_or_error(myself)
                        }
                        _ => Ok(self.snapshot(myself)),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Snapshot.
    // -----------------------------------------------------------------------------------------

    fn snapshot(&self, myself: &ActorRef<WorkerMsg>) -> WorkerSnapshot {
        let now = Instant::now();
        let policy = self.spec.policy;
        let live = self.phase.live();
        let (backoff_ms, next_start_in_ms) = match &self.phase {
            Phase::Backoff { until, delay, .. } => (
                Some(millis(*delay)),
                Some(millis(until.saturating_duration_since(now))),
            ),
            _ => (None, None),
        };
        WorkerSnapshot {
            actor_id: Some(myself.get_id().to_string()),
            pid: live.map(|l| l.group.pid()),
            pgid: live.map(|l| l.group.pgid()),
            generation: self.generation,
            restarts: self.restarts,
            restarts_in_window: self.window.count(now, policy.intensity.within),
            backoff_ms,
            next_start_in_ms,
            uptime_ms: live
                .map(|l| millis(now.saturating_duration_since(l.group.started())))
                .unwrap_or(0),
            status_text: self.status_text.clone(),
            heartbeat_age_ms: live
                .and_then(|l| l.last_heartbeat)
                .map(|t| millis(now.saturating_duration_since(t))),
            last_exit: self.last_exit.clone(),
            processes: self.cgroup.as_ref().and(live).map(|l| {
                l.group
                    .cgroup()
                    .map(|cg| u32::try_from(cg.members().len()).unwrap_or(u32::MAX))
                    .unwrap_or(0)
            }),
            oom_kills: self.oom_kills,
            exit_notify_us: self.notify_latency.summary(),
            ..WorkerSnapshot::new(&self.spec, self.phase.name(), self.containment)
        }
    }
}

/// One ended run (or failed spawn), before the decision.
struct Ended {
    exit: Exit,
    pid: Option<u32>,
    generation: u64,
    run_id: Option<String>,
    started_at: SystemTime,
    exited_at: SystemTime,
    uptime: Duration,
    log_tail: Vec<String>,
    during_start: bool,
    cause: Option<StopCause>,
    /// What the kernel said about the run (cgroup containment).
    evidence: Evidence,
    /// When the exit was reaped (`None` for a failed spawn).
    reaped: Option<Instant>,
}

/// What follows an exit.
enum Decision {
    Restart { delay: Duration },
    Stop(String),
    Escalate(Box<Escalation>),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub use crate::timefmt::rfc3339;
