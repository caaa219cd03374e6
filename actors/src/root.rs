//! The root supervisor: one WorkerSupervisor per worker, escalations, ordered shutdown, reload.
//!
//! Owns the list of worker slots (a live WorkerSupervisor, or a failed one waiting for the root's
//! backoff), the root intensity window, the shutdown sequence (reverse start order) and the
//! application of a reload ([`RootMsg::Reload`]: one at a time, in the order they arrive). It
//! must not touch processes or the database: WorkerSupervisors own their process groups, the
//! history writer owns SQLite; nor parse config: a reload gets its new tree from the
//! [`ReloadSource`] the program gave.
//!
//! # Groups
//! The slots stay flat (depth-first start order); each worker's place in the tree comes from
//! [`TreeSpec::groups`], and every level's failure bookkeeping lives in [`Levels`] — the root
//! is the outermost group. When a worker of a `OneForAll`/`RestForOne` group dies and its
//! policy restarts it, its WorkerSupervisor waits and tells the root
//! ([`ChildNotice::Restarting`]); the root stops the siblings [`restart_set`] names (reverse
//! order) and, after the dying one's backoff, starts them in order, each once the one before
//! is `running` (a task; the dump shows them `waiting`). The same gated start runs when the
//! tree starts. A failed WorkerSupervisor is retried after its parent's backoff (one counter
//! per child); a group past its intensity has failed ([`Verdict`]): its workers (and the
//! siblings its parent's strategy restarts with it) are stopped in reverse order and started
//! afresh after the parent's backoff for the group ([`RootMsg::RestartGroup`]); past the
//! root's intensity the tree stops (exit 3). `start|stop|restart GROUP` acts on the group's
//! workers in order (stop: reverse), each running again before the next (a rolling restart).
//!
//! # Reload
//! The difference is computed by [`crate::reload::tree_diff`], then applied: the root's own policy
//! and the new order at once, and supervision-only changes sent to the running supervisors
//! ([`WorkerMsg::Update`]); then, on a separate task so the root keeps answering, removed
//! workers are stopped as on shutdown (reverse order) and changed ones restarted
//! ([`WorkerMsg::Replace`]); finally added workers are started in config order and the caller
//! gets the [`ReloadReport`]. Workers that are not running (stopped by an operator, ended for
//! good) keep their state and take the new settings at their next start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::oneshot;

use crate::events::{Event, EventBus, EventKind};
use crate::group::{ChildId, Levels, Verdict, restart_set};
use crate::history::{
    EVENT_OPERATOR_START, EVENT_OPERATOR_STOP, EVENT_REMOVED, History, query_operator_stopped,
};
use crate::metrics::{GroupSampler, GroupUsage};
use crate::protocol::{ControlError, WorkerAction};
use crate::reload::{Class, ReloadReport, STRATEGY_FIELD, check_refused, root_changes, tree_diff};
use crate::snapshot::{Dump, Node, NodeInfo, RootInfo, WorkerSnapshot, WorkerState};
use crate::spec::{TreeSpec, WorkerSpec};
use crate::timefmt::millis;
use crate::worker_supervisor::{
    Carry, ChildNotice, Escalation, InitialState, ParentLink, WorkerArgs, WorkerMsg,
    WorkerSupervisor,
};

/// How long the root waits for a WorkerSupervisor's snapshot before showing it `unresponsive`.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Added to a worker's grace when waiting for it to stop during shutdown.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Reads and validates the config file again, for a reload: the new tree, or the message
/// `vigil check` would print.
pub type ReloadSource = Arc<dyn Fn() -> Result<TreeSpec, String> + Send + Sync>;

/// Who is waiting for a reload's outcome (`None`: SIGHUP, the outcome goes to the log).
type ReloadReply = Option<RpcReplyPort<Result<ReloadReport, ControlError>>>;

/// The root supervisor's messages: its whole API.
pub enum RootMsg {
    /// The live tree. Sent by the control server and SIGUSR1; replies with the dump.
    Dump(RpcReplyPort<Dump>),
    /// One worker's snapshot, or all of them (`None`), in start order.
    Status {
        /// A worker name, or `None` for every worker.
        worker: Option<String>,
        /// The snapshots, or `UnknownWorker`.
        reply: RpcReplyPort<Result<Vec<WorkerSnapshot>, ControlError>>,
    },
    /// Start, stop or restart one worker; replies once done, with the worker's snapshot.
    Act {
        /// The worker's name.
        worker: String,
        /// What to do.
        action: WorkerAction,
        /// The snapshot after the action, or why it could not be done.
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    },
    /// Stop every worker in reverse start order, then the root itself. Replies when all are down.
    Shutdown(Option<RpcReplyPort<()>>),
    /// Subscribe to the event stream (`vigil events`). Replies at once.
    Subscribe(RpcReplyPort<Subscription>),
    /// Re-read the config and apply the difference (see the module's "Reload"); with
    /// `dry_run`, only say what would change. Replies once applied; `reply: None` (SIGHUP)
    /// logs the outcome. A reload waits for the one before it; during shutdown it is refused.
    Reload {
        /// Compute the report, change nothing.
        dry_run: bool,
        /// The report, or why nothing changed.
        reply: Option<RpcReplyPort<Result<ReloadReport, ControlError>>>,
    },
    /// Internal: the root backoff of the slot whose ticket this is has elapsed; start a fresh
    /// WorkerSupervisor.
    RestartSupervisor {
        /// The timer's ticket; stale tickets (and slots gone in a reload) are ignored.
        ticket: u64,
    },
    /// Internal: the reload task has stopped the removed workers and restarted the changed ones.
    ReloadStopped {
        /// The counters of the supervisors stopped to start afresh (a changed strategy).
        carries: Vec<(String, Carry)>,
    },
    /// Internal: the shutdown task has stopped every worker.
    ShutdownComplete,
    /// From a WorkerSupervisor, unasked: its worker is restarting, or a significant worker
    /// ended ([`ChildNotice`]).
    Child(ChildNotice),
    /// Internal: the failed group's backoff is over and its workers are stopped: start it
    /// (and the siblings its parent's strategy restarts with it) afresh.
    RestartGroup {
        /// The group.
        group: String,
        /// The failure's ticket (the workers' slots carry it; stale ones are ignored).
        ticket: u64,
        /// The counters of the supervisors that were stopped, for the fresh ones.
        carries: Vec<(String, Carry)>,
    },
    /// Internal: the group restart of `group` is done.
    GroupRestarted {
        /// The group.
        group: String,
        /// Which (re)start (an aborted one's end is ignored).
        epoch: u64,
    },
}

/// A new subscriber's end of the event bus, and the workers there are now (in start order,
/// so that a client can align its columns).
pub struct Subscription {
    /// Every event published from the subscription on.
    pub events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    /// The workers' names.
    pub workers: Vec<String>,
}

/// How the tree ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeOutcome {
    /// A requested shutdown: every worker was stopped.
    Shutdown,
    /// The root's own restart intensity was exceeded: everything was stopped (exit status 3).
    RootIntensityExceeded,
    /// A `significant` worker ended for good: everything was stopped, and `serve` exits with
    /// `code`, the worker's own status ([`crate::exit::exit_status`]).
    Significant {
        /// The exit status `serve` ends with.
        code: u8,
    },
}

/// The link a WorkerSupervisor tells the root through ([`RootMsg::Child`]).
fn parent_of(root: &ActorRef<RootMsg>) -> ParentLink {
    let root = root.clone();
    Arc::new(move |notice| root.send_message(RootMsg::Child(notice)).is_ok())
}

/// What the root is started with.
pub struct RootArgs {
    /// The tree.
    pub spec: TreeSpec,
    /// The history writer.
    pub history: History,
    /// Where the tree's events are published (beside every history record).
    pub events: EventBus,
    /// Told how the tree ended.
    pub outcome: oneshot::Sender<TreeOutcome>,
    /// Where a reload reads the new tree; `None`: reloads are refused.
    pub reload: Option<ReloadSource>,
}

/// A reload being applied.
struct InFlight {
    reply: ReloadReply,
    report: ReloadReport,
    /// Supervisors of removed workers (and their names), being stopped; dropped once stopped.
    retiring: Vec<(String, Duration, ActorRef<WorkerMsg>)>,
    /// Workers to start once the stops are done: the added ones, and changed ones whose
    /// supervisor had failed.
    start: Vec<String>,
}

/// A worker's place in the tree.
struct Slot {
    spec: WorkerSpec,
    state: SlotState,
    /// Counters kept across WorkerSupervisor incarnations.
    carry: Carry,
}

impl Slot {
    fn new(spec: WorkerSpec, carry: Carry) -> Slot {
        Slot {
            spec,
            state: SlotState::Down,
            carry,
        }
    }
}

/// Whether a worker's supervisor is alive.
enum SlotState {
    /// A WorkerSupervisor runs it.
    Live(ActorRef<WorkerMsg>),
    /// Its supervisor escalated, or its group failed (then `ticket` is the group's); a
    /// fresh one starts at `until`.
    Failed {
        until: Instant,
        ticket: u64,
        reason: String,
    },
    /// Failed, then stopped by an operator; waits for `start`.
    Held,
    /// Shut down.
    Down,
}

/// The root's phase.
enum Phase {
    Running,
    ShuttingDown {
        waiters: Vec<RpcReplyPort<()>>,
        outcome: TreeOutcome,
    },
}

/// The root supervisor's state.
pub struct RootState {
    spec: TreeSpec,
    history: History,
    events: EventBus,
    slots: Vec<Slot>,
    /// Every level's failed children and every child's backoff counter ([`Levels`]).
    levels: Levels,
    escalations: u64,
    next_ticket: u64,
    started: Instant,
    phase: Phase,
    outcome: Option<oneshot::Sender<TreeOutcome>>,
    /// RSS and CPU of the workers' groups, for dumps (reused so CPU% has a previous reading).
    sampler: Arc<Mutex<GroupSampler>>,
    /// Where reloads read the config.
    reload_source: Option<ReloadSource>,
    /// The reload being applied, if any.
    reloading: Option<InFlight>,
    /// Reloads waiting for it.
    queued: VecDeque<(bool, ReloadReply)>,
    /// Groups whose strategy restart is under way (one at a time per group).
    /// Value: the group's state meanwhile (`starting` or `restarting`).
    regrouping: HashMap<String, &'static str>,
    /// The task carrying out each group's (re)start, by epoch: a child dying while its group
    /// is still starting aborts it and restarts the group from that child.
    group_tasks: HashMap<String, (u64, tokio::task::AbortHandle)>,
    /// Workers an operator stopped (`vigil stop`) and did not start again: a group restart
    /// leaves them stopped. Read from history at start, kept up to date by [`RootMsg::Act`].
    held: HashSet<String>,
    /// Workers not yet started because the sibling before them is not `running` yet.
    waiting: Arc<Mutex<HashSet<String>>>,
    /// Set once shutdown begins: a group restart under way starts nothing more.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// The root supervisor behaviour (see [`RootMsg`] for its API).
pub struct RootSupervisor;

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    /// Starts one WorkerSupervisor per worker, in config order. A supervisor that fails to
    /// start counts as a failure and is retried after the root backoff.
    async fn pre_start(
        &self,
        myself: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        let slots = args
            .spec
            .workers
            .iter()
            .map(|spec| Slot::new(spec.clone(), Carry::default()))
            .collect();
        let mut state = RootState {
            spec: args.spec,
            history: args.history,
            events: args.events,
            slots,
            levels: Levels::default(),
            escalations: 0,
            next_ticket: 0,
            started: Instant::now(),
            phase: Phase::Running,
            outcome: Some(args.outcome),
            sampler: Arc::new(Mutex::new(GroupSampler::new())),
            reload_source: args.reload,
            reloading: None,
            queued: VecDeque::new(),
            regrouping: HashMap::new(),
            group_tasks: HashMap::new(),
            held: HashSet::new(),
            waiting: Arc::new(Mutex::new(HashSet::new())),
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        state.held = state.operator_stopped();
        let all: Vec<usize> = (0..state.slots.len()).collect();
        state.start_workers(&myself, &all, "starting").await;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Dump(reply) => state.dump(reply),
            RootMsg::Status { worker, reply } => state.status(worker, reply),
            RootMsg::Act {
                worker,
                action,
                reply,
            } => state.act(&myself, worker, action, reply).await,
            RootMsg::Shutdown(reply) => state.shutdown(&myself, reply, TreeOutcome::Shutdown),
            RootMsg::Subscribe(reply) => {
                let _ = reply.send(Subscription {
                    events: state.events.subscribe(),
                    workers: state.slots.iter().map(|s| s.spec.name.clone()).collect(),
                });
            }
            RootMsg::RestartSupervisor { ticket } => {
                let due = state.slots.iter().position(
                    |s| matches!(&s.state, SlotState::Failed { ticket: t, .. } if *t == ticket),
                );
                if let (Some(slot), Phase::Running) = (due, &state.phase) {
                    state
                        .spawn_supervisor(&myself, slot, InitialState::Start)
                        .await;
                }
            }
            RootMsg::Child(ChildNotice::Restarting { worker, delay }) => {
                state.child_restarting(&myself, &worker, delay);
            }
            RootMsg::GroupRestarted { group, epoch } => {
                if state
                    .group_tasks
                    .get(&group)
                    .is_some_and(|(e, _)| *e == epoch)
                {
                    state.group_tasks.remove(&group);
                    state.regrouping.remove(&group);
                }
            }
            RootMsg::RestartGroup {
                group,
                ticket,
                carries,
            } => {
                state.take_carries(carries);
                if matches!(state.phase, Phase::Running) {
                    state.restart_group(&myself, &group, ticket).await;
                }
            }
            RootMsg::Child(ChildNotice::SignificantEnded { worker, code }) => {
                if matches!(state.phase, Phase::Running) {
                    let text = format!(
                        "significant worker ended; stopping everything (exit status {code})"
                    );
                    tracing::warn!(worker = %worker, "{text}");
                    state.history.record_event(&worker, "significant", &text);
                    state.shutdown(&myself, None, TreeOutcome::Significant { code });
                }
            }
            RootMsg::Reload { dry_run, reply } => {
                state.queued.push_back((dry_run, reply));
                state.next_reloads(&myself).await;
            }
            RootMsg::ReloadStopped { carries } => {
                state.take_carries(carries);
                state.reload_stopped(&myself).await;
                state.next_reloads(&myself).await;
            }
            RootMsg::ShutdownComplete => {
                if let Phase::ShuttingDown { waiters, outcome } =
                    std::mem::replace(&mut state.phase, Phase::Running)
                {
                    for slot in &mut state.slots {
                        if let SlotState::Live(child) = &slot.state {
                            child.stop(Some("shutdown".into()));
                        }
                        slot.state = SlotState::Down;
                    }
                    if let Some(job) = state.reloading.take() {
                        for (_, _, child) in job.retiring {
                            child.stop(Some("shutdown".into()));
                        }
                        answer_reload(job.reply, Err(ControlError::ShuttingDown));
                    }
                    for (_, reply) in state.queued.drain(..) {
                        answer_reload(reply, Err(ControlError::ShuttingDown));
                    }
                    // Bounded: a corrupt database or a full disk must not hang the exit.
                    state
                        .history
                        .flush_within(crate::history::FLUSH_BOUND)
                        .await;
                    if let Some(tx) = state.outcome.take() {
                        let _ = tx.send(outcome);
                    }
                    for w in waiters {
                        let _ = w.send(());
                    }
                    tracing::info!(?outcome, "all workers stopped");
                    myself.stop(Some("shutdown".into()));
                }
            }
        }
        Ok(())
    }

    /// Overrides ractor's default (which stops the root on any child exit): a failed
    /// WorkerSupervisor is an escalation, handled by the root's backoff and intensity.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let escalation = err.downcast::<Escalation>().map(|e| *e);
                state.on_child_down(&myself, &cell, escalation.map_err(|e| e.to_string()));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if matches!(state.phase, Phase::Running) && state.slot_of(&cell).is_some() {
                    let why = format!(
                        "supervisor stopped unexpectedly ({})",
                        reason.unwrap_or_default()
                    );
                    state.on_child_down(&myself, &cell, Err(why));
                }
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}

impl RootState {
    fn slot_of(&self, cell: &ActorCell) -> Option<usize> {
        let id = cell.get_id();
        self.slots
            .iter()
            .position(|s| matches!(&s.state, SlotState::Live(r) if r.get_id() == id))
    }

    /// The workers an operator stopped (`vigil stop`) and did not start again, in this run or
    /// an earlier one (kept in the history's events).
    fn operator_stopped(&self) -> HashSet<String> {
        query_operator_stopped(self.history.path()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read which workers an operator stopped; starting them all");
            HashSet::new()
        })
    }

    /// `Stopped` for a worker an operator stopped ([`RootState::held`]), else `Start`.
    fn initial_state(&self, i: usize) -> InitialState {
        let name = &self.slots[i].spec.name;
        if self.held.contains(name) {
            tracing::info!(worker = %name, "not started: an operator stopped it (vigil stop); `vigil start {name}` starts it");
            InitialState::Stopped
        } else {
            InitialState::Start
        }
    }

    fn slot_named(&self, name: &str) -> Result<usize, ControlError> {
        self.slots
            .iter()
            .position(|s| s.spec.name == name)
            .ok_or_else(|| ControlError::UnknownWorker(name.to_string()))
    }

    async fn spawn_supervisor(
        &mut self,
        myself: &ActorRef<RootMsg>,
        i: usize,
        initial: InitialState,
    ) {
        self.levels
            .started(&self.slots[i].spec.name, Instant::now());
        let slot = &self.slots[i];
        let args = WorkerArgs {
            spec: slot.spec.clone(),
            data_dir: self.spec.data_dir.clone(),
            containment: self.spec.containment.clone(),
            history: self.history.clone(),
            events: self.events.clone(),
            carry: slot.carry.clone(),
            initial,
            parent: parent_of(myself),
            group_restart: self
                .spec
                .parent_of(&slot.spec.name)
                .is_some_and(|g| g.strategy.gated()),
        };
        match Actor::spawn_linked(None, WorkerSupervisor, args, myself.get_cell()).await {
            Ok((child, _join)) => self.slots[i].state = SlotState::Live(child),
            // The first spawns run inside the supervisor's start: a worker that fails at once
            // (spawn_failed with no backoff) escalates before its supervisor is up. That is an
            // escalation like any other: keep its counters and say what happened.
            Err(ractor::SpawnErr::StartupFailed(err)) if err.is::<Escalation>() => {
                if let Ok(escalation) = err.downcast::<Escalation>() {
                    let text = escalation.to_string();
                    self.slots[i].carry = escalation.carry;
                    self.escalate(myself, i, text);
                }
            }
            Err(e) => {
                let name = self.slots[i].spec.name.clone();
                tracing::error!(worker = %name, error = %e, "cannot start the worker's supervisor");
                self.escalate(myself, i, format!("supervisor failed to start: {e}"));
            }
        }
    }

    fn on_child_down(
        &mut self,
        myself: &ActorRef<RootMsg>,
        cell: &ActorCell,
        why: Result<Escalation, String>,
    ) {
        let Some(i) = self.slot_of(cell) else {
            tracing::debug!(actor = %cell.get_id(), "exit of an unknown child ignored");
            return;
        };
        let reason = match why {
            Ok(escalation) => {
                let text = escalation.to_string();
                self.slots[i].carry = escalation.carry;
                text
            }
            Err(text) => text,
        };
        self.escalate(myself, i, reason);
    }

    /// A WorkerSupervisor is gone: count it against the root intensity, then schedule a fresh one.
    fn escalate(&mut self, myself: &ActorRef<RootMsg>, i: usize, reason: String) {
        let name = self.slots[i].spec.name.clone();
        self.escalations += 1;
        self.history.record_event(&name, "escalation", &reason);
        let generation = self.slots[i].carry.generation;
        self.events.publish(|| {
            Event::worker(EventKind::Failed, &name, generation, None).with_detail(reason.clone())
        });
        // Its supervisor is gone, whatever comes next.
        self.slots[i].state = SlotState::Down;
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        if self.slots[i].spec.significant {
            // Its group gave up: a significant worker's end.
            let code = crate::exit::exit_status(self.slots[i].carry.last_exit.as_ref());
            let text =
                format!("significant worker gave up; stopping everything (exit status {code})");
            tracing::error!(worker = %name, "{text}");
            self.history.record_event(&name, "significant", &text);
            self.slots[i].state = SlotState::Down;
            self.shutdown(myself, None, TreeOutcome::Significant { code });
            return;
        }
        // Up the tree (group.rs): the worker's group counts the failure; a group past its
        // intensity has failed, which its parent counts in turn, up to the root.
        let verdict = self.levels.child_failed(
            &self.spec,
            ChildId::Worker(name.clone()),
            Instant::now(),
            fastrand::f64(),
        );
        let failed = match &verdict {
            Verdict::Restart { failed, .. } | Verdict::RootFailed { failed, .. } => failed.clone(),
        };
        for (group, why) in &failed {
            tracing::error!(group = %group, "{why}");
            self.history.record_event(group, "group_failed", why);
            self.events.publish(|| {
                Event::worker(EventKind::Failed, group, 0, None).with_detail(why.clone())
            });
        }
        match verdict {
            Verdict::RootFailed { why, .. } => {
                tracing::error!(worker = %name, "{why}; stopping everything");
                self.history.record_event(&name, "root_intensity", &why);
                self.slots[i].state = SlotState::Down;
                self.shutdown(myself, None, TreeOutcome::RootIntensityExceeded);
            }
            Verdict::Restart {
                child: ChildId::Group(group),
                delay,
                ..
            } => self.fail_group(myself, &group, delay, &reason),
            Verdict::Restart {
                child: ChildId::Worker(_),
                delay,
                ..
            } => {
                self.next_ticket += 1;
                let ticket = self.next_ticket;
                tracing::error!(worker = %name, delay_ms = millis(delay), "worker supervisor escalated: {reason}; fresh supervisor after its group's backoff");
                myself.send_after(delay, move || RootMsg::RestartSupervisor { ticket });
                self.slots[i].state = SlotState::Failed {
                    until: Instant::now() + delay,
                    ticket,
                    reason,
                };
            }
        }
    }

    /// `group` failed (its intensity was exceeded): stop its workers — and the siblings its
    /// parent's strategy restarts with it — in reverse order, and after its parent's backoff
    /// for it (`delay`) start them all afresh ([`RootMsg::RestartGroup`]). Meanwhile the
    /// group shows `failed` and its workers `failed`.
    fn fail_group(
        &mut self,
        myself: &ActorRef<RootMsg>,
        group: &str,
        delay: Duration,
        reason: &str,
    ) {
        let (_, names) = restart_set(&self.spec, group);
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let until = Instant::now() + delay;
        let why = format!("group {group:?} failed ({reason}); restarts after its backoff");
        let mut stopping = Vec::new();
        for name in &names {
            let Some(slot) = self.slots.iter_mut().find(|s| &s.spec.name == name) else {
                continue;
            };
            match std::mem::replace(&mut slot.state, SlotState::Down) {
                SlotState::Live(child) => {
                    stopping.push((name.clone(), slot.spec.policy.shutdown.grace, child));
                }
                SlotState::Held => {
                    slot.state = SlotState::Held;
                    continue;
                }
                SlotState::Failed { .. } | SlotState::Down => {}
            }
            slot.state = SlotState::Failed {
                until,
                ticket,
                reason: why.clone(),
            };
        }
        tracing::error!(group = %group, delay_ms = millis(delay), "group failed: stopping {} and starting it afresh after its parent's backoff", names.join(", "));
        self.history.record_event(
            group,
            "group_restart",
            &format!(
                "{group} failed: {} restart after {:?}",
                names.join(", "),
                delay
            ),
        );
        if let Some((_, task)) = self.group_tasks.remove(group) {
            task.abort();
        }
        self.regrouping.insert(group.to_string(), "failed");
        let root = myself.clone();
        let group = group.to_string();
        tokio::spawn(async move {
            // Reverse start order, each gone before the next is signalled.
            let mut carries = Vec::new();
            for (name, grace, child) in stopping.into_iter().rev() {
                let carry = retire(&child, grace, &name, "stopped: its group failed").await;
                carries.extend(carry.map(|c| (name, c)));
            }
            tokio::time::sleep(delay).await;
            let _ = root.cast(RootMsg::RestartGroup {
                group,
                ticket,
                carries,
            });
        });
    }

    /// A failed group whose workers an operator started meanwhile (`vigil start`) is no longer
    /// shown `failed`: its state comes from its children again.
    fn forget_failed_groups(&mut self) {
        let failed: Vec<String> = self
            .regrouping
            .iter()
            .filter(|(_, state)| **state == "failed")
            .map(|(g, _)| g.clone())
            .collect();
        for group in failed {
            let members = self.spec.group_workers(&group).unwrap_or_default();
            let still_failed = self.slots.iter().any(|s| {
                members.contains(&s.spec.name.as_str())
                    && matches!(s.state, SlotState::Failed { .. })
            });
            if !still_failed {
                self.regrouping.remove(&group);
            }
        }
    }

    /// Counters of supervisors stopped to be started afresh: the fresh ones go on from them.
    fn take_carries(&mut self, carries: Vec<(String, Carry)>) {
        for (name, carry) in carries {
            if let Some(slot) = self.slots.iter_mut().find(|s| s.spec.name == name) {
                slot.carry = carry;
            }
        }
    }

    /// A failed group's backoff is over: start its slots (those still carrying `ticket`)
    /// afresh, gated where their groups' strategies say so.
    async fn restart_group(&mut self, myself: &ActorRef<RootMsg>, group: &str, ticket: u64) {
        if self.regrouping.get(group) == Some(&"failed") {
            self.regrouping.remove(group);
        }
        self.levels.started(group, Instant::now());
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| matches!(&self.slots[i].state, SlotState::Failed { ticket: t, .. } if *t == ticket))
            .collect();
        tracing::info!(group = %group, workers = due.len(), "group restarting afresh");
        self.start_workers(myself, &due, "starting").await;
    }

    /// Start the supervisors of `slots` (in start order): an operator-stopped worker stays
    /// stopped; in a `OneForAll`/`RestForOne` group each child starts once the one before is
    /// running — those are spawned stopped and started in order by a task ([`Gate`]).
    async fn start_workers(
        &mut self,
        myself: &ActorRef<RootMsg>,
        slots: &[usize],
        state: &'static str,
    ) {
        let mut gated: Vec<(String, Vec<String>)> = Vec::new();
        for &i in slots {
            let mut initial = self.initial_state(i);
            let name = self.slots[i].spec.name.clone();
            if let (InitialState::Start, Some(group)) = (initial, self.gated_ancestor(&name)) {
                initial = InitialState::Stopped;
                match gated.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, members)) => members.push(name),
                    None => gated.push((group, vec![name])),
                }
            }
            self.spawn_supervisor(myself, i, initial).await;
        }
        for (group, members) in gated {
            self.start_gated(myself, group, &members, state);
        }
    }

    /// A worker died and restarts after `delay`. In a `OneForAll` group every sibling
    /// restarts with it, in a `RestForOne` group the siblings after it: those are stopped in
    /// reverse start order, and after the dying one's backoff all are started in order, each
    /// once the one before is `running` (a sibling an operator stopped stays stopped;
    /// `Temporary` siblings are left alone). The dying worker of such a group waits for the
    /// group ([`WorkerMsg::Resume`]); elsewhere it restarts itself. A death while the group is
    /// still (re)starting abandons that start and applies the strategy from the dying child.
    /// The outermost `OneForAll`/`RestForOne` group holding `name`, if any.
    fn gated_ancestor(&self, name: &str) -> Option<String> {
        let mut found = None;
        let mut at = self.spec.parent_of(name);
        while let Some(g) = at {
            if g.strategy.gated() {
                found = Some(g.name.clone());
            }
            at = g.parent.as_deref().and_then(|p| self.spec.group(p));
        }
        found
    }

    /// The live supervisors of `names`, in that order, for a group (re)start; `dying` is the
    /// one whose death caused it (it waits for [`WorkerMsg::Resume`]).
    fn members<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        dying: Option<&str>,
    ) -> Vec<Member> {
        names
            .filter_map(|n| self.slots.iter().find(|s| s.spec.name == n))
            .filter_map(|s| match &s.state {
                SlotState::Live(r) => Some(Member {
                    name: s.spec.name.clone(),
                    grace: s.spec.policy.shutdown.grace,
                    start_secs: s.spec.policy.start_secs,
                    child: r.clone(),
                    dying: dying == Some(s.spec.name.as_str()),
                }),
                _ => None,
            })
            .collect()
    }

    /// Start the (stopped) `members` of `group` in order, each once the one before is
    /// `running`, on a task; the group shows `state` meanwhile.
    fn start_gated(
        &mut self,
        myself: &ActorRef<RootMsg>,
        group: String,
        members: &[String],
        state: &'static str,
    ) {
        let order = self.members(members.iter().map(String::as_str), None);
        self.regrouping.insert(group.clone(), state);
        let gate = Gate {
            events: self.events.clone(),
            waiting: self.waiting.clone(),
            stopping: self.stopping.clone(),
        };
        let root = myself.clone();
        gate.set_waiting(&order, true);
        self.next_ticket += 1;
        let epoch = self.next_ticket;
        let key = group.clone();
        let task = tokio::spawn(async move {
            gate.start_in_order(&order).await;
            gate.set_waiting(&order, false);
            let _ = root.cast(RootMsg::GroupRestarted { group, epoch });
        });
        self.group_tasks.insert(key, (epoch, task.abort_handle()));
    }

    fn child_restarting(&mut self, myself: &ActorRef<RootMsg>, worker: &str, delay: Duration) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let Some(dying) = self.slots.iter().find(|s| s.spec.name == worker) else {
            return;
        };
        let SlotState::Live(dying_ref) = &dying.state else {
            return;
        };
        let dying_ref = dying_ref.clone();
        let (group, names) = restart_set(&self.spec, worker);
        // A failed group is being restarted as a whole: that restart starts this one too.
        let Some(group) = group
            .and_then(|g| self.spec.group(g))
            .filter(|g| self.regrouping.get(&g.name) != Some(&"failed"))
        else {
            resume_after(dying_ref, delay);
            return;
        };
        // A child died while its group was still (re)starting: that start is abandoned and
        // the strategy applies from this child, as after any death.
        if let Some((_, task)) = self.group_tasks.remove(&group.name) {
            tracing::warn!(group = %group.name, worker = %worker, "a child died while its group was starting; restarting the group from it");
            task.abort();
        }
        let order = self.members(names.into_iter(), Some(worker));
        if order.len() < 2 {
            resume_after(dying_ref, delay);
            return;
        }
        let group_name = group.name.clone();
        let detail = format!(
            "{worker} died: {} restarts {}",
            group.strategy.as_str(),
            order
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        tracing::warn!(group = %group_name, "{detail}");
        self.history
            .record_event(&group_name, "group_restart", &detail);
        self.regrouping.insert(group_name.clone(), "restarting");
        let root = myself.clone();
        let gate = Gate {
            events: self.events.clone(),
            waiting: self.waiting.clone(),
            stopping: self.stopping.clone(),
        };
        self.next_ticket += 1;
        let epoch = self.next_ticket;
        // A sibling an operator stopped stays stopped.
        let kept: Vec<Member> = order
            .into_iter()
            .filter(|m| m.dying || !self.held.contains(&m.name))
            .collect();
        let task = tokio::spawn(async move {
            for m in kept.iter().rev().filter(|m| !m.dying) {
                let stopped = m
                    .child
                    .call(
                        |reply| WorkerMsg::Act {
                            action: WorkerAction::Stop,
                            reply,
                        },
                        Some(m.grace + STOP_MARGIN),
                    )
                    .await;
                if !matches!(stopped, Ok(ractor::rpc::CallResult::Success(Ok(_)))) {
                    tracing::warn!(worker = %m.name, "group restart: the stop was not confirmed");
                }
            }
            gate.set_waiting(&kept, true);
            tokio::time::sleep(delay).await;
            gate.start_in_order(&kept).await;
            gate.set_waiting(&kept, false);
            let _ = root.cast(RootMsg::GroupRestarted {
                group: group_name,
                epoch,
            });
        });
        self.group_tasks
            .insert(group.name.clone(), (epoch, task.abort_handle()));
    }

    /// Stop every worker in reverse start order, one after the other, on a separate task so the
    /// root keeps answering dumps meanwhile.
    fn shutdown(
        &mut self,
        myself: &ActorRef<RootMsg>,
        reply: Option<RpcReplyPort<()>>,
        outcome: TreeOutcome,
    ) {
        match &mut self.phase {
            Phase::ShuttingDown { waiters, .. } => {
                waiters.extend(reply);
                return;
            }
            Phase::Running => {}
        }
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(?outcome, "shutting down: stopping workers in reverse order");
        self.events.publish(|| Event::server(EventKind::Shutdown));
        self.phase = Phase::ShuttingDown {
            waiters: reply.into_iter().collect(),
            outcome,
        };
        // Workers a reload is removing go first: they are no longer part of the order.
        let retiring = self.reloading.iter().flat_map(|job| {
            job.retiring
                .iter()
                .map(|(name, grace, r)| (name.clone(), *grace, r.clone()))
        });
        let order: Vec<(String, Duration, ActorRef<WorkerMsg>)> = retiring
            .chain(self.slots.iter().rev().filter_map(|s| match &s.state {
                SlotState::Live(r) => {
                    Some((s.spec.name.clone(), s.spec.policy.shutdown.grace, r.clone()))
                }
                _ => None,
            }))
            .collect();
        let root = myself.clone();
        tokio::spawn(async move {
            for (name, grace, child) in order {
                stop_confirmed(&child, WorkerMsg::Shutdown, grace, &name, "stopped").await;
            }
            let _ = root.cast(RootMsg::ShutdownComplete);
        });
    }

    /// Run queued reloads until one is in flight (it continues at [`RootMsg::ReloadStopped`]).
    async fn next_reloads(&mut self, myself: &ActorRef<RootMsg>) {
        while self.reloading.is_none() {
            let Some((dry_run, reply)) = self.queued.pop_front() else {
                return;
            };
            self.reload(myself, dry_run, reply).await;
        }
    }

    /// Read the new config, diff it, and apply what can be applied at once; the stops run on a
    /// task that ends with [`RootMsg::ReloadStopped`].
    async fn reload(&mut self, myself: &ActorRef<RootMsg>, dry_run: bool, reply: ReloadReply) {
        if !matches!(self.phase, Phase::Running) {
            answer_reload(reply, Err(ControlError::ShuttingDown));
            return;
        }
        let Some(source) = self.reload_source.clone() else {
            answer_reload(
                reply,
                Err(ControlError::Failed(
                    "this tree was not started from a config file: there is nothing to reload"
                        .into(),
                )),
            );
            return;
        };
        let loaded = tokio::task::spawn_blocking(move || source())
            .await
            .unwrap_or_else(|e| Err(format!("reading the config failed: {e}")));
        let refused = |reply: ReloadReply, history: &History, message: String| {
            if !dry_run {
                history.record_event("root", "reload_refused", &message);
            }
            tracing::error!("reload refused, nothing changed: {message}");
            answer_reload(reply, Err(ControlError::InvalidConfig(message)));
        };
        let new = match loaded {
            Ok(new) => new,
            Err(message) => return refused(reply, &self.history, message),
        };
        if let Err(e) = check_refused(&self.spec, &new) {
            let file = new
                .config_path
                .as_ref()
                .or(self.spec.config_path.as_ref())
                .map(|p| format!("{}: ", p.display()))
                .unwrap_or_default();
            return refused(reply, &self.history, format!("{file}{e}"));
        }
        let changes = tree_diff(&self.spec, &new);
        let root = root_changes(&self.spec, &new);
        let report = ReloadReport::new(&changes, &root, dry_run);
        if dry_run {
            tracing::info!("reload (dry run): {}", report.summary());
            answer_reload(reply, Ok(report));
            return;
        }
        tracing::info!("reload: {}", report.summary());

        // At once: the root's policy, the new order, supervision-only changes.
        let mut old_slots: Vec<Option<Slot>> = std::mem::take(&mut self.slots)
            .into_iter()
            .map(Some)
            .collect();
        let mut take = |name: &str| {
            old_slots
                .iter_mut()
                .find(|s| s.as_ref().is_some_and(|s| s.spec.name == name))
                .and_then(Option::take)
        };
        let mut slots = Vec::with_capacity(new.workers.len());
        let mut replacing = Vec::new();
        // Stopped and started afresh by a new supervisor (their group's strategy changed).
        let mut renewing: Vec<(String, Duration, ActorRef<WorkerMsg>)> = Vec::new();
        let mut start = Vec::new();
        for (change, spec) in changes
            .iter()
            .filter(|c| c.class != Class::Removed)
            .zip(&new.workers)
        {
            debug_assert_eq!(change.name, spec.name);
            // A moved worker is added afresh; its old slot stays behind and is removed.
            let existing = match change.class {
                Class::Added => None,
                _ => take(&spec.name),
            };
            let slot = match (change.class, existing) {
                (_, None) => {
                    start.push(spec.name.clone());
                    Slot::new(spec.clone(), Carry::default())
                }
                (Class::Restarted, Some(mut slot)) if change.fields.contains(&STRATEGY_FIELD) => {
                    if let SlotState::Live(child) =
                        std::mem::replace(&mut slot.state, SlotState::Down)
                    {
                        renewing.push((spec.name.clone(), slot.spec.policy.shutdown.grace, child));
                    }
                    start.push(spec.name.clone());
                    slot.spec = spec.clone();
                    slot
                }
                (Class::Updated, Some(mut slot)) => {
                    if let SlotState::Live(child) = &slot.state {
                        let _ = child.cast(WorkerMsg::Update(Box::new(spec.clone())));
                    }
                    slot.spec = spec.clone();
                    slot
                }
                (Class::Restarted, Some(mut slot)) => {
                    match &slot.state {
                        SlotState::Live(child) => replacing.push((
                            spec.name.clone(),
                            slot.spec.policy.shutdown.grace,
                            child.clone(),
                            spec.clone(),
                        )),
                        SlotState::Failed { .. } => start.push(spec.name.clone()),
                        SlotState::Held | SlotState::Down => {}
                    }
                    slot.spec = spec.clone();
                    slot
                }
                (_, Some(slot)) => slot,
            };
            slots.push(slot);
        }
        // What is left is removed: stopped in reverse (old) order.
        let retiring: Vec<(String, Duration, ActorRef<WorkerMsg>)> = old_slots
            .into_iter()
            .rev()
            .flatten()
            .filter_map(|s| match s.state {
                SlotState::Live(child) => Some((s.spec.name, s.spec.policy.shutdown.grace, child)),
                _ => None,
            })
            .collect();
        for name in &report.removed {
            self.history
                .record_event(name, EVENT_REMOVED, "removed from the config by a reload");
            self.held.remove(name);
        }
        self.slots = slots;
        self.spec.root = new.root;
        self.spec.workers = new.workers;
        self.spec.groups = new.groups;
        self.history
            .record_event("root", "reload", &report.summary());
        for name in &report.removed {
            self.levels.forget(name);
        }
        let mut all_retiring = retiring.clone();
        all_retiring.extend(renewing.iter().cloned());
        self.reloading = Some(InFlight {
            reply,
            report,
            retiring: all_retiring,
            start,
        });
        let root = myself.clone();
        tokio::spawn(async move {
            for (name, grace, child) in retiring {
                stop_confirmed(
                    &child,
                    WorkerMsg::Remove,
                    grace,
                    &name,
                    "reload: removed worker stopped",
                )
                .await;
            }
            // Reverse start order, as a group stop.
            let mut carries = Vec::new();
            for (name, grace, child) in renewing.into_iter().rev() {
                let carry = retire(
                    &child,
                    grace,
                    &name,
                    "reload: stopped to start under its group's new strategy",
                )
                .await;
                carries.extend(carry.map(|c| (name, c)));
            }
            for (name, grace, child, spec) in replacing {
                let spec = Box::new(spec);
                match child
                    .call(
                        |reply| WorkerMsg::Replace { spec, reply },
                        Some(grace + STOP_MARGIN),
                    )
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(Ok(_))) => {
                        tracing::info!(worker = %name, "reload: restarted with the new config")
                    }
                    Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                        tracing::warn!(worker = %name, error = %e, "reload: restart with the new config failed")
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!(worker = %name, "reload: no answer to the restart in time")
                    }
                }
            }
            let _ = root.cast(RootMsg::ReloadStopped { carries });
        });
    }

    /// The reload's stops are done: drop the removed supervisors, start the added workers in
    /// config order, answer.
    async fn reload_stopped(&mut self, myself: &ActorRef<RootMsg>) {
        let Some(job) = self.reloading.take() else {
            return;
        };
        for (_, _, child) in job.retiring {
            child.stop(Some("removed by reload".into()));
        }
        if !matches!(self.phase, Phase::Running) {
            answer_reload(job.reply, Err(ControlError::ShuttingDown));
            return;
        }
        // An operator may have started one meanwhile; never two supervisors for one slot.
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                job.start.contains(&self.slots[i].spec.name)
                    && matches!(
                        self.slots[i].state,
                        SlotState::Down | SlotState::Failed { .. }
                    )
            })
            .collect();
        if !due.is_empty() {
            self.start_workers(myself, &due, "starting").await;
        }
        tracing::info!("reload applied: {}", job.report.summary());
        answer_reload(job.reply, Ok(job.report));
    }

    async fn act(
        &mut self,
        myself: &ActorRef<RootMsg>,
        worker: String,
        action: WorkerAction,
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    ) {
        if !matches!(self.phase, Phase::Running) {
            let _ = reply.send(Err(ControlError::ShuttingDown));
            return;
        }
        let i = match self.slot_named(&worker) {
            Ok(i) => i,
            Err(e) => {
                match self.spec.group_workers(&worker) {
                    Some(members) => self.act_on_group(myself, &worker, members, action, reply),
                    None => {
                        let _ = reply.send(Err(e));
                    }
                }
                return;
            }
        };
        // The operator's intent outlives this server: a stopped worker stays stopped across
        // reloads and restarts of the server, until `vigil start`.
        match action {
            WorkerAction::Stop => self.held.insert(worker.clone()),
            WorkerAction::Start | WorkerAction::Restart => self.held.remove(&worker),
        };
        match action {
            WorkerAction::Stop => self.history.record_event(
                &worker,
                EVENT_OPERATOR_STOP,
                "vigil stop: stays stopped (also across reloads and server restarts) until vigil start",
            ),
            WorkerAction::Start | WorkerAction::Restart => self.history.record_event(
                &worker,
                EVENT_OPERATOR_START,
                &format!("vigil {}", if action == WorkerAction::Start { "start" } else { "restart" }),
            ),
        }
        match (&self.slots[i].state, action) {
            (SlotState::Live(child), _) => {
                if let Err(e) = child.cast(WorkerMsg::Act { action, reply }) {
                    tracing::error!(worker = %worker, error = %e, "cannot reach the worker's supervisor");
                }
            }
            (SlotState::Failed { .. } | SlotState::Held, WorkerAction::Stop) => {
                if matches!(self.slots[i].state, SlotState::Failed { .. }) {
                    let generation = self.slots[i].carry.generation;
                    self.events.publish(|| {
                        Event::worker(EventKind::Stopped, &worker, generation, None)
                            .with_detail("stopped by operator")
                    });
                }
                self.slots[i].state = SlotState::Held;
                let _ = reply.send(Ok(self.placeholder(i)));
            }
            (
                SlotState::Failed { .. } | SlotState::Held | SlotState::Down,
                WorkerAction::Start | WorkerAction::Restart,
            ) => {
                // The operator asks for a fresh try: its group's backoff starts again too.
                self.levels.reset(&worker);
                self.spawn_supervisor(myself, i, InitialState::Start).await;
                self.forget_failed_groups();
                match &self.slots[i].state {
                    SlotState::Live(child) => {
                        let _ = child.cast(WorkerMsg::Act {
                            action: WorkerAction::Start,
                            reply,
                        });
                    }
                    SlotState::Failed { reason, .. } => {
                        let _ = reply.send(Err(ControlError::Failed(format!(
                            "{worker} failed again at once: {reason}"
                        ))));
                    }
                    _ => {
                        let _ = reply.send(Err(ControlError::Failed(format!(
                            "{worker}: its supervisor could not be started"
                        ))));
                    }
                }
            }
            (SlotState::Down, WorkerAction::Stop) => {
                let _ = reply.send(Ok(self.placeholder(i)));
            }
        }
    }

    /// `vigil start|stop|restart GROUP`: the action on each of its workers in order (stop:
    /// reverse order), each done before the next begins; a started one must be `running`
    /// (or have ended) before the next (a rolling restart). Replies with the last worker's
    /// snapshot.
    fn act_on_group(
        &self,
        myself: &ActorRef<RootMsg>,
        group: &str,
        members: Vec<&str>,
        action: WorkerAction,
        reply: RpcReplyPort<Result<WorkerSnapshot, ControlError>>,
    ) {
        let mut members: Vec<String> = members.into_iter().map(str::to_string).collect();
        if action == WorkerAction::Stop {
            members.reverse();
        }
        if members.is_empty() {
            let _ = reply.send(Err(ControlError::Failed(format!(
                "group {group:?} has no workers"
            ))));
            return;
        }
        let timeout: Duration = self
            .slots
            .iter()
            .filter(|s| members.contains(&s.spec.name))
            .map(|s| s.spec.policy.shutdown.grace + STOP_MARGIN)
            .max()
            .unwrap_or(STOP_MARGIN);
        let start_secs: HashMap<String, Duration> = self
            .slots
            .iter()
            .filter(|s| members.contains(&s.spec.name))
            .map(|s| (s.spec.name.clone(), s.spec.policy.start_secs))
            .collect();
        let events = self.events.clone();
        let root = myself.clone();
        tokio::spawn(async move {
            let mut last = Err(ControlError::Failed("nothing done".into()));
            for worker in members {
                let mut rx = events.subscribe();
                let asked = root
                    .call(
                        |reply| RootMsg::Act {
                            worker: worker.clone(),
                            action,
                            reply,
                        },
                        Some(timeout),
                    )
                    .await;
                last = match asked {
                    Ok(ractor::rpc::CallResult::Success(result)) => result,
                    Ok(_) | Err(_) => Err(ControlError::Timeout(worker.clone())),
                };
                if last.is_err() {
                    break;
                }
                // A rolling (re)start: the next one begins once this one is running again,
                // so that a pool never goes fully down.
                let starting = last
                    .as_ref()
                    .ok()
                    .filter(|s| s.state == WorkerState::Starting)
                    .map(|s| s.generation);
                if let (true, Some(generation)) = (action != WorkerAction::Stop, starting) {
                    let within = start_secs.get(&worker).copied().unwrap_or_default() + STOP_MARGIN;
                    let _ = tokio::time::timeout(within, async {
                        loop {
                            match rx.recv().await {
                                // The old process's exit is not the new one's.
                                Ok(e)
                                    if e.worker.as_deref() == Some(worker.as_str())
                                        && e.generation.is_some_and(|g| g >= generation) =>
                                {
                                    if matches!(
                                        e.event,
                                        EventKind::Ready | EventKind::Exited | EventKind::Failed
                                    ) {
                                        return;
                                    }
                                }
                                Ok(_)
                                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    })
                    .await;
                }
            }
            let _ = reply.send(last);
        });
    }

    /// A snapshot for a worker that has no live supervisor (failed, held or down).
    fn placeholder(&self, i: usize) -> WorkerSnapshot {
        let slot = &self.slots[i];
        let (state, next, status_text) = match &slot.state {
            SlotState::Failed { until, reason, .. } => (
                WorkerState::Failed,
                Some(until.saturating_duration_since(Instant::now())),
                Some(reason.clone()),
            ),
            SlotState::Held | SlotState::Down | SlotState::Live(_) => {
                (WorkerState::Stopped, None, None)
            }
        };
        WorkerSnapshot {
            generation: slot.carry.generation,
            restarts: slot.carry.restarts,
            next_start_in_ms: next.map(millis),
            status_text,
            last_exit: slot.carry.last_exit.clone(),
            oom_kills: slot.carry.oom_kills,
            ..WorkerSnapshot::new(&slot.spec, state, self.spec.containment.kind())
        }
    }

    /// Ask every live WorkerSupervisor (concurrently, with a timeout) and assemble snapshots
    /// in start order; `only` restricts to one slot.
    fn gather(&self, only: Option<Vec<usize>>) -> tokio::task::JoinHandle<Vec<WorkerSnapshot>> {
        let asks: Vec<(usize, Result<ActorRef<WorkerMsg>, WorkerSnapshot>, String)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| only.as_ref().is_none_or(|o| o.contains(i)))
            .map(|(i, s)| {
                let target = match &s.state {
                    SlotState::Live(r) => Ok(r.clone()),
                    _ => Err(self.placeholder(i)),
                };
                (i, target, s.spec.name.clone())
            })
            .collect();
        let placeholders: Vec<WorkerSnapshot> =
            asks.iter().map(|(i, _, _)| self.unresponsive(*i)).collect();
        let sampler = self.sampler.clone();
        let waiting = self.waiting.clone();
        tokio::spawn(async move {
            // The /proc scan runs on the blocking pool while the supervisors answer.
            let usage = tokio::task::spawn_blocking(move || {
                sampler
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sample_all()
            });
            // Every request is sent before any answer is awaited, so the WorkerSupervisors
            // answer in parallel; one deadline covers them all (no task or timer per worker).
            let deadline = tokio::time::Instant::now() + SNAPSHOT_TIMEOUT;
            let pending: Vec<_> = asks
                .into_iter()
                .map(|(_, target, _)| match target {
                    Ok(child) => {
                        let (tx, rx) = ractor::concurrency::oneshot();
                        match child.cast(WorkerMsg::Snapshot(tx.into())) {
                            Ok(()) => Err(rx),
                            Err(_) => Ok(None),
                        }
                    }
                    Err(snapshot) => Ok(Some(snapshot)),
                })
                .collect();
            let mut out: Vec<Option<WorkerSnapshot>> = Vec::with_capacity(pending.len());
            for p in pending {
                out.push(match p {
                    Ok(ready) => ready,
                    Err(rx) => tokio::time::timeout_at(deadline, rx)
                        .await
                        .ok()
                        .and_then(Result::ok),
                });
            }
            let mut snapshots: Vec<WorkerSnapshot> = out
                .into_iter()
                .zip(placeholders)
                .map(|(s, p)| s.unwrap_or(p))
                .collect();
            fill_usage(usage.await.unwrap_or_default(), &mut snapshots);
            let waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
            for s in &mut snapshots {
                if s.state == WorkerState::Stopped && waiting.contains(&s.name) {
                    s.state = WorkerState::Waiting;
                }
            }
            snapshots
        })
    }

    fn unresponsive(&self, i: usize) -> WorkerSnapshot {
        let mut s = self.placeholder(i);
        s.state = WorkerState::Unresponsive;
        s
    }

    fn root_info(&self) -> RootInfo {
        let now = Instant::now();
        RootInfo {
            name: "root".into(),
            state: match self.phase {
                Phase::Running => "running".into(),
                Phase::ShuttingDown { .. } => "stopping".into(),
            },
            pid: std::process::id(),
            uptime_ms: millis(now.saturating_duration_since(self.started)),
            config_path: self
                .spec
                .config_path
                .as_ref()
                .map(|p| p.display().to_string()),
            escalations: self.escalations,
            escalations_in_window: self.levels.root_failures(&self.spec, now),
        }
    }

    fn dump(&self, reply: RpcReplyPort<Dump>) {
        let info = self.root_info();
        let gathered = self.gather(None);
        let groups = self.spec.groups.clone();
        let regrouping = self.regrouping.clone();
        tokio::spawn(async move {
            let snapshots = gathered.await.unwrap_or_default();
            let children = tree_nodes(snapshots, &groups, &regrouping);
            let _ = reply.send(Dump {
                root: Node {
                    info: NodeInfo::Root(info),
                    children,
                },
            });
        });
    }

    fn status(
        &self,
        worker: Option<String>,
        reply: RpcReplyPort<Result<Vec<WorkerSnapshot>, ControlError>>,
    ) {
        let only = match worker.as_deref().map(|w| (w, self.slot_named(w))) {
            None => None,
            Some((_, Ok(i))) => Some(vec![i]),
            // `vigil status GROUP`: its workers, in start order.
            Some((w, Err(e))) => match self.spec.group_workers(w) {
                Some(members) => Some(
                    members
                        .iter()
                        .filter_map(|m| self.slots.iter().position(|s| s.spec.name == *m))
                        .collect(),
                ),
                None => {
                    let _ = reply.send(Err(e));
                    return;
                }
            },
        };
        let gathered = self.gather(only);
        tokio::spawn(async move {
            let _ = reply.send(Ok(gathered.await.unwrap_or_default()));
        });
    }
}

/// The root's children as dump nodes: workers in start order, each inside its groups
/// (`groups` from [`TreeSpec::groups`]); a top-level group sits where its first worker is.
fn tree_nodes(
    snapshots: Vec<WorkerSnapshot>,
    groups: &[crate::spec::GroupSpec],
    regrouping: &HashMap<String, &'static str>,
) -> Vec<Node> {
    use crate::snapshot::GroupInfo;
    use crate::spec::ChildRef;
    let worker_node = |s: WorkerSnapshot| Node {
        info: NodeInfo::Worker(Box::new(s)),
        children: Vec::new(),
    };
    if groups.is_empty() {
        return snapshots.into_iter().map(worker_node).collect();
    }
    let order: Vec<String> = snapshots.iter().map(|s| s.name.clone()).collect();
    let mut by_name: HashMap<String, WorkerSnapshot> =
        snapshots.into_iter().map(|s| (s.name.clone(), s)).collect();
    let parent: HashMap<&str, &str> = groups
        .iter()
        .flat_map(|g| g.children.iter().map(move |c| (c.name(), g.name.as_str())))
        .collect();
    fn group_node(
        g: &crate::spec::GroupSpec,
        groups: &[crate::spec::GroupSpec],
        by_name: &mut HashMap<String, WorkerSnapshot>,
        regrouping: &HashMap<String, &'static str>,
    ) -> Node {
        let mut children = Vec::with_capacity(g.children.len());
        for child in &g.children {
            match child {
                ChildRef::Worker(w) => {
                    if let Some(s) = by_name.remove(w) {
                        children.push(Node {
                            info: NodeInfo::Worker(Box::new(s)),
                            children: Vec::new(),
                        });
                    }
                }
                ChildRef::Group(name) => {
                    if let Some(inner) = groups.iter().find(|x| &x.name == name) {
                        children.push(group_node(inner, groups, by_name, regrouping));
                    }
                }
            }
        }
        let states: Vec<String> = children.iter().map(node_state).collect();
        let restarts = children.iter().map(node_restarts).sum();
        Node {
            info: NodeInfo::Group(GroupInfo {
                name: g.name.clone(),
                state: GroupInfo::state_of(
                    states.iter().map(String::as_str),
                    regrouping.get(&g.name).copied(),
                ),
                kind: "group".into(),
                strategy: g.strategy.as_str().into(),
                restarts,
            }),
            children,
        }
    }
    let mut out = Vec::new();
    let mut placed: HashSet<String> = HashSet::new();
    for name in order {
        let mut top = name.as_str();
        while let Some(p) = parent.get(top) {
            top = p;
        }
        if top == name {
            if let Some(s) = by_name.remove(&name) {
                out.push(worker_node(s));
            }
        } else if placed.insert(top.to_string()) {
            if let Some(g) = groups.iter().find(|g| g.name == top) {
                out.push(group_node(g, groups, &mut by_name, regrouping));
            }
        }
    }
    out
}

/// A dump node's state word.
fn node_state(node: &Node) -> String {
    match &node.info {
        NodeInfo::Worker(w) => w.state.as_str().to_string(),
        NodeInfo::Group(g) => g.state.clone(),
        NodeInfo::Root(r) => r.state.clone(),
    }
}

/// A dump node's restarts (a group's: its workers', summed).
fn node_restarts(node: &Node) -> u64 {
    match &node.info {
        NodeInfo::Worker(w) => w.restarts,
        NodeInfo::Group(g) => g.restarts,
        NodeInfo::Root(_) => 0,
    }
}

/// One worker of a group restart.
struct Member {
    name: String,
    grace: Duration,
    start_secs: Duration,
    child: ActorRef<WorkerMsg>,
    /// The one that died: it waits in backoff for [`WorkerMsg::Resume`].
    dying: bool,
}

/// What a group restart needs from the root: the events (to see a child become `running`),
/// the `waiting` set the dump shows, and whether shutdown has begun.
struct Gate {
    events: EventBus,
    waiting: Arc<Mutex<HashSet<String>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    fn set_waiting(&self, members: &[Member], on: bool) {
        let mut w = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        for m in members {
            if on {
                w.insert(m.name.clone());
            } else {
                w.remove(&m.name);
            }
        }
    }

    /// Start `members` in order, each once the one before is `running`; stops at the first
    /// that does not get there (its own supervisor handles it; the later ones stay stopped).
    async fn start_in_order(&self, members: &[Member]) {
        for (i, m) in members.iter().enumerate() {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let mut rx = self.events.subscribe();
            self.set_waiting(std::slice::from_ref(m), false);
            let started = if m.dying {
                m.child.call(WorkerMsg::Resume, Some(STOP_MARGIN)).await
            } else {
                m.child
                    .call(
                        |reply| WorkerMsg::Act {
                            action: WorkerAction::Start,
                            reply,
                        },
                        Some(STOP_MARGIN),
                    )
                    .await
            };
            let Ok(ractor::rpc::CallResult::Success(Ok(snapshot))) = started else {
                tracing::warn!(worker = %m.name, "group restart: could not start it; the later siblings stay stopped");
                return;
            };
            if i + 1 == members.len() || snapshot.state == WorkerState::Running {
                continue;
            }
            if snapshot.state != WorkerState::Starting {
                tracing::warn!(worker = %m.name, state = snapshot.state.as_str(), "group restart: not started; the later siblings stay stopped");
                return;
            }
            let ready = tokio::time::timeout(m.start_secs + STOP_MARGIN, async {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.worker.as_deref() == Some(m.name.as_str()) => match e.event {
                            EventKind::Ready => return true,
                            EventKind::Exited | EventKind::Stopped | EventKind::Failed => {
                                return false;
                            }
                            _ => {}
                        },
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                    }
                }
            })
            .await;
            if ready != Ok(true) {
                tracing::warn!(worker = %m.name, "group restart: not running in time; the later siblings stay stopped");
                return;
            }
        }
    }
}

/// Start a worker waiting for its group ([`WorkerMsg::Resume`]) after `delay`.
/// Ask `child` to stop (`msg`: shutdown or removal) and wait for its confirmation, at most its
/// grace plus [`STOP_MARGIN`]; one that does not confirm is killed (its worker dies with it:
/// the process is killed on drop).
async fn stop_confirmed(
    child: &ActorRef<WorkerMsg>,
    msg: fn(RpcReplyPort<()>) -> WorkerMsg,
    grace: Duration,
    name: &str,
    done: &str,
) {
    match child.call(msg, Some(grace + STOP_MARGIN)).await {
        Ok(ractor::rpc::CallResult::Success(())) => tracing::info!(worker = %name, "{done}"),
        Ok(_) | Err(_) => {
            tracing::error!(worker = %name, "did not confirm its stop in time; killing its supervisor (its group is killed on drop)");
            child.kill();
        }
    }
}

/// Stop `child` for good as [`stop_confirmed`] does, and take its counters (generation,
/// restarts, last exit, OOM kills) so that the fresh supervisor started in its place goes on
/// from them; `None` if it does not answer.
async fn retire(
    child: &ActorRef<WorkerMsg>,
    grace: Duration,
    name: &str,
    done: &str,
) -> Option<Carry> {
    stop_confirmed(child, WorkerMsg::Shutdown, grace, name, done).await;
    let carry = match child
        .call(WorkerMsg::Snapshot, Some(SNAPSHOT_TIMEOUT))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(s)) => Some(Carry::of(&s)),
        Ok(_) | Err(_) => None,
    };
    // Gone before its successor starts: its teardown (the worker's cgroup) must not race the
    // new supervisor's spawn into the same cgroup.
    if child
        .stop_and_wait(Some(done.to_string()), Some(STOP_MARGIN))
        .await
        .is_err()
    {
        child.kill();
    }
    carry
}

fn resume_after(child: ActorRef<WorkerMsg>, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = child.call(WorkerMsg::Resume, Some(STOP_MARGIN)).await;
    });
}

/// Send a reload's outcome to whoever asked (nobody, for SIGHUP: it is logged already).
fn answer_reload(reply: ReloadReply, result: Result<ReloadReport, ControlError>) {
    if let Some(reply) = reply {
        let _ = reply.send(result);
    }
}

/// Fill in RSS, CPU% and process counts, summed over each live worker's process group.
fn fill_usage(usage: HashMap<u32, GroupUsage>, snapshots: &mut [WorkerSnapshot]) {
    for s in snapshots.iter_mut() {
        if let Some(u) = s.pgid.and_then(|g| usage.get(&g)) {
            s.rss_bytes = Some(u.rss_bytes);
            s.cpu_percent = Some(u.cpu_percent);
            // A cgroup's count (set by the WorkerSupervisor) also sees processes that left
            // the group.
            s.processes = s.processes.or(Some(u.processes));
        }
    }
}
