//! The root supervisor: one WorkerSupervisor per worker, escalations, ordered shutdown.
//!
//! Owns the list of worker slots (a live WorkerSupervisor, or a failed one waiting for the root's
//! backoff), the root intensity window, and the shutdown sequence (reverse start order). It must
//! not touch processes or the database: WorkerSupervisors own their process groups, the history
//! writer owns SQLite.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::oneshot;

use crate::events::{Event, EventBus, EventKind};
use crate::history::History;
use crate::metrics::{GroupSampler, GroupUsage};
use crate::policy::{BackoffCounter, RestartWindow};
use crate::snapshot::{Dump, Node, NodeInfo, RootInfo, WorkerSnapshot, WorkerState};
use crate::spec::{TreeSpec, WorkerSpec};
use crate::worker_supervisor::{
    Carry, Escalation, InitialState, WorkerArgs, WorkerMsg, WorkerSupervisor,
};

/// How long the root waits for a WorkerSupervisor's snapshot before showing it `unresponsive`.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Added to a worker's grace when waiting for it to stop during shutdown.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// What an operator can ask of one worker (`vigil start|stop|restart WORKER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerAction {
    /// Start a stopped (or failed, or backing-off) worker now; no-op when it runs.
    Start,
    /// Stop it gracefully and keep it stopped until `start`.
    Stop,
    /// Stop it gracefully (if running) and start a new process at once.
    Restart,
}

/// Why a request to the tree could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ControlError {
    /// No worker has that name.
    #[error("no worker named {0:?}")]
    UnknownWorker(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The worker could not be (re)started; the reason says why.
    #[error("{0}")]
    Failed(String),
    /// An actor did not answer in time.
    #[error("no answer from {0} in time")]
    Timeout(String),
}

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
    /// Internal: the root backoff of slot `slot` has elapsed; start a fresh WorkerSupervisor.
    RestartSupervisor {
        /// Index of the worker in start order.
        slot: usize,
        /// The timer's ticket; stale tickets are ignored.
        ticket: u64,
    },
    /// Internal: the shutdown task has stopped every worker.
    ShutdownComplete,
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
}

/// A worker's place in the tree.
struct Slot {
    spec: WorkerSpec,
    state: SlotState,
    /// Counters kept across WorkerSupervisor incarnations.
    carry: Carry,
}

/// Whether a worker's supervisor is alive.
enum SlotState {
    /// A WorkerSupervisor runs it.
    Live(ActorRef<WorkerMsg>),
    /// Its supervisor escalated; a fresh one starts at `until`.
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
    window: RestartWindow,
    counter: BackoffCounter,
    escalations: u64,
    next_ticket: u64,
    started: Instant,
    phase: Phase,
    outcome: Option<oneshot::Sender<TreeOutcome>>,
    /// RSS and CPU of the workers' groups, for dumps (reused so CPU% has a previous reading).
    sampler: Arc<Mutex<GroupSampler>>,
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
            .map(|spec| Slot {
                spec: spec.clone(),
                state: SlotState::Down,
                carry: Carry::default(),
            })
            .collect();
        let mut state = RootState {
            spec: args.spec,
            history: args.history,
            events: args.events,
            slots,
            window: RestartWindow::default(),
            counter: BackoffCounter::default(),
            escalations: 0,
            next_ticket: 0,
            started: Instant::now(),
            phase: Phase::Running,
            outcome: Some(args.outcome),
            sampler: Arc::new(Mutex::new(GroupSampler::new())),
        };
        for i in 0..state.slots.len() {
            state
                .spawn_supervisor(&myself, i, InitialState::Start)
                .await;
        }
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
            RootMsg::RestartSupervisor { slot, ticket } => {
                let due = matches!(state.slots.get(slot).map(|s| &s.state), Some(SlotState::Failed { ticket: t, .. }) if *t == ticket);
                if due && matches!(state.phase, Phase::Running) {
                    state
                        .spawn_supervisor(&myself, slot, InitialState::Start)
                        .await;
                }
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
        let slot = &self.slots[i];
        let args = WorkerArgs {
            spec: slot.spec.clone(),
            data_dir: self.spec.data_dir.clone(),
            containment: self.spec.containment.clone(),
            history: self.history.clone(),
            events: self.events.clone(),
            carry: slot.carry.clone(),
            initial,
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
        if !matches!(self.phase, Phase::Running) {
            self.slots[i].state = SlotState::Down;
            return;
        }
        if let Some(limit) = self.spec.root.intensity {
            let n = self.window.add(Instant::now(), limit.within);
            if n > limit.max_restarts {
                let text = format!(
                    "{n} escalations within {:?} exceed the root limit of {}",
                    limit.within, limit.max_restarts
                );
                tracing::error!(worker = %name, "{text}; stopping everything");
                self.history.record_event(&name, "root_intensity", &text);
                self.slots[i].state = SlotState::Down;
                self.shutdown(myself, None, TreeOutcome::RootIntensityExceeded);
                return;
            }
        }
        let attempt = self
            .counter
            .next_attempt(Duration::ZERO, self.spec.root.backoff.reset_after);
        let delay = self.spec.root.backoff.delay(attempt, fastrand::f64());
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        tracing::error!(worker = %name, delay_ms = delay.as_millis() as u64, "worker supervisor escalated: {reason}; fresh supervisor after the root backoff");
        myself.send_after(delay, move || RootMsg::RestartSupervisor {
            slot: i,
            ticket,
        });
        self.slots[i].state = SlotState::Failed {
            until: Instant::now() + delay,
            ticket,
            reason,
        };
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
        tracing::info!(?outcome, "shutting down: stopping workers in reverse order");
        self.events.publish(|| Event::server(EventKind::Shutdown));
        self.phase = Phase::ShuttingDown {
            waiters: reply.into_iter().collect(),
            outcome,
        };
        let order: Vec<(String, Duration, ActorRef<WorkerMsg>)> = self
            .slots
            .iter()
            .rev()
            .filter_map(|s| match &s.state {
                SlotState::Live(r) => {
                    Some((s.spec.name.clone(), s.spec.policy.shutdown.grace, r.clone()))
                }
                _ => None,
            })
            .collect();
        let root = myself.clone();
        tokio::spawn(async move {
            for (name, grace, child) in order {
                match child
                    .call(WorkerMsg::Shutdown, Some(grace + STOP_MARGIN))
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(())) => {
                        tracing::info!(worker = %name, "stopped")
                    }
                    Ok(_) | Err(_) => {
                        tracing::error!(worker = %name, "did not confirm its stop in time; killing its supervisor (its group is killed on drop)");
                        child.kill();
                    }
                }
            }
            let _ = root.cast(RootMsg::ShutdownComplete);
        });
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
                let _ = reply.send(Err(e));
                return;
            }
        };
        match (&self.slots[i].state, action) {
            (SlotState::Live(child), _) => {
                if let Err(e) = child.cast(WorkerMsg::Act { action, reply }) {
                    tracing::error!(worker = %worker, error = %e, "cannot reach the worker's supervisor");
                }
            }
            (SlotState::Failed { .. } | SlotState::Held, WorkerAction::Stop) => {
                self.slots[i].state = SlotState::Held;
                let _ = reply.send(Ok(self.placeholder(i)));
            }
            (
                SlotState::Failed { .. } | SlotState::Held | SlotState::Down,
                WorkerAction::Start | WorkerAction::Restart,
            ) => {
                // The operator asks for a fresh try: the root backoff starts again too.
                self.counter.reset();
                self.spawn_supervisor(myself, i, InitialState::Start).await;
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

    /// A snapshot for a worker that has no live supervisor (failed, held or down).
    fn placeholder(&self, i: usize) -> WorkerSnapshot {
        let slot = &self.slots[i];
        let now = Instant::now();
        let (state, next) = match &slot.state {
            SlotState::Failed { until, .. } => (
                WorkerState::Failed,
                Some(until.saturating_duration_since(now)),
            ),
            SlotState::Held | SlotState::Down | SlotState::Live(_) => (WorkerState::Stopped, None),
        };
        let p = slot.spec.policy;
        WorkerSnapshot {
            name: slot.spec.name.clone(),
            kind: slot.spec.worker_type.kind().to_string(),
            state,
            actor_id: None,
            pid: None,
            pgid: None,
            generation: slot.carry.generation,
            restarts: slot.carry.restarts,
            restarts_in_window: 0,
            max_restarts: p.intensity.max_restarts,
            intensity_window_ms: p.intensity.within.as_millis() as u64,
            backoff_ms: None,
            next_start_in_ms: next.map(|d| d.as_millis() as u64),
            uptime_ms: 0,
            log_path: slot.spec.log.path.display().to_string(),
            status_text: match &slot.state {
                SlotState::Failed { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            heartbeat_age_ms: None,
            last_exit: slot.carry.last_exit.clone(),
            rss_bytes: None,
            cpu_percent: None,
            processes: None,
            containment: self.spec.containment.kind().to_string(),
            memory_max_bytes: slot.spec.limits.memory_max,
            pids_max: slot.spec.limits.pids_max,
            cpu_max: slot.spec.limits.cpu_max,
            oom_kills: slot.carry.oom_kills,
            exit_notify_us: None,
        }
    }

    /// Ask every live WorkerSupervisor (concurrently, with a timeout) and assemble snapshots
    /// in start order; `only` restricts to one slot.
    fn gather(&self, only: Option<usize>) -> tokio::task::JoinHandle<Vec<WorkerSnapshot>> {
        let asks: Vec<(usize, Result<ActorRef<WorkerMsg>, WorkerSnapshot>, String)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o == *i))
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
            uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            config_path: self
                .spec
                .config_path
                .as_ref()
                .map(|p| p.display().to_string()),
            escalations: self.escalations,
            escalations_in_window: self
                .spec
                .root
                .intensity
                .map(|l| self.window.count(now, l.within))
                .unwrap_or(0),
        }
    }

    fn dump(&self, reply: RpcReplyPort<Dump>) {
        let info = self.root_info();
        let gathered = self.gather(None);
        tokio::spawn(async move {
            let snapshots = gathered.await.unwrap_or_default();
            let children = snapshots
                .into_iter()
                .map(|s| Node {
                    info: NodeInfo::Worker(Box::new(s)),
                    children: Vec::new(),
                })
                .collect();
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
        let only = match worker.as_deref().map(|w| self.slot_named(w)) {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(e)) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let gathered = self.gather(only);
        tokio::spawn(async move {
            let _ = reply.send(Ok(gathered.await.unwrap_or_default()));
        });
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
