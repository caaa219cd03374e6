//! The exit path, as one straight line: classify ([`Exit`]) → decide ([`crate::policy::decide`])
//! → record (history and events, the same record) → apply (spawn, wait, stop or escalate); and
//! what can end a run without an exit of its own: the heartbeat deadline (watchdog) and the
//! start deadline (`start_secs`).
//!
//! Owns `on_exit`, the decision, the record and the parent's notices. It must not act on
//! operator requests (`actions`) or build snapshots (`snapshot`), and must not read the clock or
//! the random source inside the decision: it samples them here and passes them in.

use std::time::{Duration, Instant, SystemTime};

use ractor::{ActorProcessingErr, ActorRef};

use crate::cgroup::Evidence;
use crate::events::{Event, EventKind};
use crate::exit::{Exit, ExitReason, ExitRecord};
use crate::notify::NotifyEvent;
use crate::process::ExitReport;
use crate::signal::Signal;
use crate::timefmt::rfc3339;

use super::SupervisorState;
use super::state::{Phase, StopCause};
use super::{Carry, ChildNotice, Escalation, WorkerMsg, millis};

/// How long a passed heartbeat deadline waits for queued notify lines before the watchdog kills.
const NOTIFY_DRAIN: Duration = Duration::from_millis(200);

/// One ended run (or failed spawn), before the decision.
pub(super) struct Ended {
    pub(super) exit: Exit,
    pub(super) pid: Option<u32>,
    pub(super) generation: u64,
    pub(super) run_id: Option<String>,
    pub(super) started_at: SystemTime,
    pub(super) exited_at: SystemTime,
    pub(super) uptime: Duration,
    pub(super) log_tail: Vec<String>,
    pub(super) during_start: bool,
    pub(super) cause: Option<StopCause>,
    /// What the kernel said about the run (cgroup containment).
    pub(super) evidence: Evidence,
    /// When the exit was reaped (`None` for a failed spawn).
    pub(super) reaped: Option<Instant>,
}

/// What follows an exit.
pub(super) enum Decision {
    Restart { delay: Duration },
    Stop(String),
    Escalate(Box<Escalation>),
}

impl SupervisorState {
    /// The one place an exit is recorded: the history writer and the event stream get the
    /// same record, so `vigil history` and `vigil events` never disagree.
    pub(super) fn record_exit(&mut self, record: ExitRecord, reaped: Option<Instant>) {
        self.events.publish(|| Event {
            reaped,
            ..Event::exited(&record)
        });
        self.history.record_exit(record.clone());
        self.last_exit = Some(record);
    }

    pub(super) fn on_exit(
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
        self.journal.exit_handled(&self.spec.name, live.group.pid());
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
    pub(super) fn after_exit(
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
    pub(super) fn tell_group(&self, delay: Duration) {
        let _ = (self.parent)(ChildNotice::Restarting {
            worker: self.spec.name.clone(),
            delay,
        });
    }

    /// Tell the root that this significant worker has ended for good (it shuts the tree down).
    pub(super) fn significant_ended(&self) {
        let notice = ChildNotice::SignificantEnded {
            worker: self.spec.name.clone(),
            code: crate::exit::exit_status(self.last_exit.as_ref()),
        };
        if !(self.parent)(notice) {
            tracing::error!(worker = %self.spec.name, "cannot tell the root that a significant worker ended");
        }
    }

    /// The restart decision for one ended run: [`crate::policy::decide`] (pure) over this
    /// worker's policy, window and counter, with `now` and a jitter sample read here; the
    /// counter updates it returns are applied here.
    pub(super) fn decide(&mut self, ended: &Ended) -> Decision {
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
        // The clock and the random source are read here, never inside the decision.
        let outcome = policy::decide(
            &policy,
            self.spec.worker_type.kind(),
            input,
            &self.window,
            self.counter,
            Instant::now(),
            fastrand::f64(),
        );
        outcome
            .update
            .apply(&mut self.window, &mut self.counter, policy.intensity.within);
        match outcome.decision {
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

    pub(super) fn on_notify(&mut self, generation: u64, event: NotifyEvent) {
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

    pub(super) fn on_timer(
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

    pub(super) fn check_heartbeat(
        &mut self,
        myself: &ActorRef<WorkerMsg>,
    ) -> Result<(), ActorProcessingErr> {
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
}
