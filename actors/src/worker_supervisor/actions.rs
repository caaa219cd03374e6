//! Spawning and operator actions: `start`/`stop`/`restart`, shutdown, and a reload's
//! `Update`/`Replace`/`Remove`.
//!
//! Owns the one spawn function (first start, restart, backoff expiry, `start`), its typed error
//! ([`StartError`]), and the stop-and-wait of a group. It must not decide restarts or write
//! exit records itself: a failed spawn and every ended stop go down the exit path
//! (`exit_path`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::cgroup::Evidence;
use crate::environ;
use crate::events::EventKind;
use crate::exit::{Exit, ExitReason};
use crate::logfile::LogFile;
use crate::process::{self, ProcessGroup, SpawnRequest};
use crate::protocol::{ControlError, WorkerAction};
use crate::signal::Signal;
use crate::snapshot::WorkerSnapshot;
use crate::spec::WorkerSpec;
use crate::worker_type::LaunchContext;

use super::SupervisorState;
use super::WorkerMsg;
use super::exit_path::Ended;
use super::state::{Live, Phase, StopCause, Waiter};

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
    #[error(transparent)]
    Launch(crate::worker_type::LaunchError),
    /// The environment or credentials could not be prepared.
    #[error(transparent)]
    Environ(#[from] crate::environ::EnvError),
    /// The process could not be spawned.
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
}

impl SupervisorState {
    pub(super) fn context(&self) -> LaunchContext {
        LaunchContext {
            name: self.spec.name.clone(),
            generation: self.generation,
            data_dir: self.data_dir.clone(),
            log_path: self.spec.log.path.clone(),
        }
    }

    /// Spawn a new generation. On failure, goes down the exit path as `spawn_failed`.
    pub(super) fn start(&mut self, myself: &ActorRef<WorkerMsg>) -> Result<(), ActorProcessingErr> {
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
                // The guardian and the history know of it already (`SpawnJournal`).
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

    pub(super) fn try_spawn(
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
            journal: &self.journal,
        };
        Ok(process::spawn(&req, move |event| {
            let _ = me.cast(WorkerMsg::Process { generation, event });
        })?)
    }

    /// Signal the group and wait for it (Starting/Running only; others are handled by callers).
    pub(super) fn begin_stop(
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

    pub(super) fn act(
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

    pub(super) fn started_or_error(
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

    pub(super) fn shutdown(&mut self, myself: &ActorRef<WorkerMsg>, reply: RpcReplyPort<()>) {
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

    /// Take a new spec: its policy for every later decision, its log rotation from now on.
    pub(super) fn set_spec(&mut self, spec: WorkerSpec) {
        if let Some(log) = &self.log {
            log.set_rotation(spec.log.max_bytes, spec.log.max_files);
        }
        self.spec = spec;
    }

    /// New supervision settings; the process (if any) is not touched.
    pub(super) fn update(&mut self, myself: &ActorRef<WorkerMsg>, spec: WorkerSpec) {
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
    pub(super) fn replace(
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
    pub(super) fn answer(&self, myself: &ActorRef<WorkerMsg>, waiters: Vec<Waiter>) {
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
}

#[cfg(test)]
mod tests {
    use super::StartError;

    /// A failed start's message is what the exit record's log tail and `vigil` show: the
    /// typed error says it as the strings before it did.
    #[test]
    fn start_error_messages() {
        let log = StartError::LogFile {
            path: "/var/log/w.log".into(),
            source: std::io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert_eq!(
            log.to_string(),
            format!(
                "cannot create log file /var/log/w.log: {}",
                std::io::Error::from_raw_os_error(libc::EMFILE)
            )
        );
        assert_eq!(
            StartError::StartCheck("no index".into()).to_string(),
            "start check failed: no index"
        );
        assert_eq!(StartError::Launch("no argv".into()).to_string(), "no argv");
        let spawn = crate::process::SpawnError::EmptyArgv;
        let text = spawn.to_string();
        assert_eq!(StartError::from(spawn).to_string(), text);
    }
}
