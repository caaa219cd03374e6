//! The worker's [`WorkerSnapshot`], built on request from the state.
//!
//! Owns the mapping from the state to the snapshot's fields. It must not change the state.

use std::time::Instant;

use ractor::ActorRef;

use crate::snapshot::WorkerSnapshot;

use super::SupervisorState;
use super::state::Phase;
use super::{WorkerMsg, millis};

impl SupervisorState {
    pub(super) fn snapshot(&self, myself: &ActorRef<WorkerMsg>) -> WorkerSnapshot {
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
