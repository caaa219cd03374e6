//! The startup orphan sweep: kill what a server that died left running, and nothing else.
//!
//! Owns the decision "is this `live_processes` row a leftover of ours?" and the killing of
//! verified leftovers. It runs once, at startup, after the instance lock is taken and before the
//! tree starts. It must not touch a process it has not verified, and must not run while another
//! server uses the same data directory (the lock guarantees that).
//!
//! # What counts as a leftover
//! A row records a worker's leader: `pid`, `pgid`, and `start_ticks` (field 22 of
//! `/proc/<pid>/stat`). A process is a member of the leftover group when
//! - its pgid equals the recorded pgid, AND
//! - it started at or after the recorded leader (`start_ticks >=`): a process started before
//!   the leader cannot be its descendant, AND
//! - the row has a start time at all (0 means it could not be read: the row is stale), AND
//! - if the recorded leader's pid is alive it has the recorded start time (otherwise the number
//!   belongs to someone else now), AND
//! - if some live process has the pgid number as its pid, it is the recorded leader: the kernel
//!   does not hand out a pid that is still in use as a process group id, so a different process
//!   holding that number proves the old group is gone and this is a new one.
//!
//! Each member is then pinned with a pidfd and re-verified after opening it
//! ([`PidFd::open_if`]); signals go through the pidfd, so a pid reused after the check can never
//! be hit. Rows with no member are stale: dropped without signalling anything, and given an
//! `orphan` exit record ("found already dead") unless the history already holds one for that
//! worker, pid and generation: every spawned process ends with exactly one record.
//!
//! # Caveats
//! - A group whose leader AND all its members died, whose number was then reused by a new
//!   process that became a group leader and died in turn, leaving children, would look like a
//!   leaderless leftover. That needs the pid space to wrap around (`pid_max`, 4 million by
//!   default on 64-bit) between the old server's death and the next start.
//! - The exit status of a leftover is unknown (it is not our child): `code` and `signal` are
//!   `null` in its record.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::exit::{ExitReason, ExitRecord};
use crate::history::{
    History, HistoryError, LiveProcess, exit_recorded, now_rfc3339, query_live_processes,
};
use crate::procfs::{self, PidFd, ProcStat};

/// How often the sweep looks at `/proc` while waiting for a group to exit.
const POLL: Duration = Duration::from_millis(20);

/// How long to wait for the group to vanish after `SIGKILL`.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Groups found alive and killed (one per row that had verified members).
    pub killed: Vec<KilledGroup>,
    /// Rows dropped without signalling anything (nothing of theirs is alive).
    pub stale: Vec<LiveProcess>,
}

/// A leftover group the sweep killed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KilledGroup {
    /// The row it came from.
    pub row: LiveProcess,
    /// Whether the recorded leader itself was still alive.
    pub leader_alive: bool,
    /// Every verified member that was signalled.
    pub members: Vec<u32>,
    /// Members still alive after `grace`, sent `SIGKILL`.
    pub needed_kill: Vec<u32>,
    /// Members still alive after `SIGKILL` and a further wait (should be empty).
    pub survivors: Vec<u32>,
}

/// Check every `live_processes` row of `db` and kill verified leftovers: `SIGTERM` to each
/// member, up to `grace` for the group to empty, then `SIGKILL`. Each killed group gets an exit
/// record with reason `orphan`; every row is removed. Waits until all of it is committed.
pub async fn sweep(
    history: &History,
    db: &Path,
    grace: Duration,
) -> Result<SweepReport, HistoryError> {
    let rows = query_live_processes(db)?;
    Ok(sweep_rows(history, db, rows, grace, Sweeper::Startup).await)
}

/// The guardian's cleanup after the server died: the same as [`sweep`], over the rows in `db`
/// and the guardian's own list (which also holds spawns too recent to have a row).
pub async fn sweep_after_crash(
    history: &History,
    db: &Path,
    grace: Duration,
    known: Vec<LiveProcess>,
) -> SweepReport {
    let mut rows = match query_live_processes(db) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "cannot read live processes; using the guardian's list");
            Vec::new()
        }
    };
    for k in known {
        if !rows
            .iter()
            .any(|r| r.pid == k.pid && r.start_ticks == k.start_ticks)
        {
            rows.push(k);
        }
    }
    sweep_rows(history, db, rows, grace, Sweeper::Guardian).await
}

/// Who swept (for the record's `decision`).
#[derive(Clone, Copy, Debug)]
enum Sweeper {
    Startup,
    Guardian,
}

async fn sweep_rows(
    history: &History,
    db: &Path,
    rows: Vec<LiveProcess>,
    grace: Duration,
    by: Sweeper,
) -> SweepReport {
    let mut report = SweepReport::default();
    // Signal every group first, then wait for all of them: a thousand leftovers take one grace
    // period, not a thousand.
    let mut kills = tokio::task::JoinSet::new();
    for row in rows {
        let members = verified_members(&row);
        if members.is_empty() {
            tracing::info!(
                worker = %row.worker, pid = row.pid, pgid = row.pgid,
                "orphan sweep: stale row dropped (nothing of it is alive)"
            );
            // It died while no server watched it (on its own, say of SIGPIPE once the server's
            // end of its output pipe closed): it still gets its one exit record, unless the
            // server wrote it before dying.
            match exit_recorded(db, &row.worker, row.pid, row.generation) {
                Ok(true) => {}
                Ok(false) | Err(_) => history.record_exit(found_dead_record(&row, by)),
            }
            history.process_reaped(&row.worker, row.pid);
            report.stale.push(row);
            continue;
        }
        kills.spawn(kill_group(row, members, grace));
    }
    while let Some(done) = kills.join_next().await {
        let Ok(killed) = done else {
            tracing::error!("orphan sweep: a kill task failed");
            continue;
        };
        let row = &killed.row;
        tracing::warn!(
            worker = %row.worker, pid = row.pid, pgid = row.pgid,
            members = ?killed.members, needed_kill = ?killed.needed_kill,
            "orphan sweep: killed the leftover group of a server that died"
        );
        history.record_exit(orphan_record(&killed, by));
        history.process_reaped(&row.worker, row.pid);
        report.killed.push(killed);
    }
    history.flush().await;
    report
}

/// Whether `s` may belong to the group recorded in `row` (see the module docs).
fn may_belong(row: &LiveProcess, s: &ProcStat) -> bool {
    s.pgid == row.pgid
        && s.start_ticks >= row.start_ticks
        && s.pid != std::process::id()
        && !s.is_dead()
        && (s.pid != row.pid || s.start_ticks == row.start_ticks)
}

/// The group number is still the recorded group's: nobody else holds it as a pid.
fn group_number_is_ours(row: &LiveProcess) -> bool {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let own_group = unsafe { libc::getpgrp() };
    // A start time of 0 means "unknown" (the process was gone before it could be read): nothing
    // can be verified against it.
    if row.start_ticks == 0 || row.pgid == 0 || i64::from(row.pgid) == i64::from(own_group) {
        return false;
    }
    match procfs::stat(row.pgid) {
        None => true,
        Some(holder) if holder.is_dead() => true,
        // The holder of the number must be the recorded leader itself.
        Some(holder) => row.pgid == row.pid && holder.start_ticks == row.start_ticks,
    }
}

/// Pin every current member of the row's group with a verified pidfd.
fn verified_members(row: &LiveProcess) -> BTreeMap<u32, PidFd> {
    let mut out = BTreeMap::new();
    add_new_members(row, &mut out);
    out
}

/// Add members not yet in `known` (a member may fork while we wait).
fn add_new_members(row: &LiveProcess, known: &mut BTreeMap<u32, PidFd>) -> Vec<u32> {
    if !group_number_is_ours(row) {
        return Vec::new();
    }
    let mut added = Vec::new();
    for s in procfs::group_member_stats(row.pgid) {
        if known.contains_key(&s.pid) || !may_belong(row, &s) {
            continue;
        }
        let ticks = s.start_ticks;
        match PidFd::open_if(s.pid, |now| {
            now.start_ticks == ticks && may_belong(row, now)
        }) {
            Ok(fd) => {
                added.push(s.pid);
                known.insert(s.pid, fd);
            }
            Err(e) => tracing::debug!(pid = s.pid, error = %e, "orphan sweep: not verified"),
        }
    }
    added
}

fn signal_all(fds: &BTreeMap<u32, PidFd>, pids: &[u32], signal: i32) {
    for pid in pids {
        if let Some(fd) = fds.get(pid)
            && let Err(e) = fd.signal(signal)
        {
            tracing::warn!(pid, signal, error = %e, "orphan sweep: cannot signal");
        }
    }
}

fn still_alive(fds: &BTreeMap<u32, PidFd>) -> Vec<u32> {
    fds.iter()
        .filter(|(_, fd)| !fd.has_exited())
        .map(|(pid, _)| *pid)
        .collect()
}

/// TERM every member, wait up to `grace` (signalling late forks too), then KILL what is left.
async fn kill_group(
    row: LiveProcess,
    mut fds: BTreeMap<u32, PidFd>,
    grace: Duration,
) -> KilledGroup {
    let row = &row;
    let leader_alive = fds.contains_key(&row.pid);
    let first: Vec<u32> = fds.keys().copied().collect();
    signal_all(&fds, &first, libc::SIGTERM);

    let deadline = Instant::now() + grace;
    loop {
        let added = add_new_members(row, &mut fds);
        signal_all(&fds, &added, libc::SIGTERM);
        if still_alive(&fds).is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }

    let needed_kill = still_alive(&fds);
    signal_all(&fds, &needed_kill, libc::SIGKILL);
    let deadline = Instant::now() + AFTER_KILL;
    let mut survivors = still_alive(&fds);
    while !needed_kill.is_empty() {
        let added = add_new_members(row, &mut fds);
        signal_all(&fds, &added, libc::SIGKILL);
        survivors = still_alive(&fds);
        if survivors.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if !survivors.is_empty() {
        tracing::error!(
            pgid = row.pgid,
            ?survivors,
            "orphan sweep: members survived SIGKILL"
        );
    }
    KilledGroup {
        row: row.clone(),
        leader_alive,
        members: fds.keys().copied().collect(),
        needed_kill,
        survivors,
    }
}

/// The exit record of a process that died while no server watched it: its status is unknown.
fn found_dead_record(row: &LiveProcess, by: Sweeper) -> ExitRecord {
    let killed = KilledGroup {
        row: row.clone(),
        leader_alive: false,
        members: Vec::new(),
        needed_kill: Vec::new(),
        survivors: Vec::new(),
    };
    let mut rec = orphan_record(&killed, by);
    rec.log_tail = vec![format!(
        "leader {} (group {}) had already exited when the server was gone; its status is unknown",
        row.pid, row.pgid
    )];
    rec.decision = match by {
        Sweeper::Startup => "found already dead by the startup orphan sweep",
        Sweeper::Guardian => "found already dead by the guardian when the server died",
    }
    .to_string();
    rec
}

/// The exit record of a killed leftover.
/// Record what the startup sweep killed in a worker's cgroup
/// ([`crate::containment::Containment::sweep_leftovers`]): one `orphan` record per worker, so
/// a worker the dead server spawned but never wrote a row for still has its exit on record.
pub fn record_cgroup_leftovers(history: &History, leftovers: &[crate::containment::Leftover]) {
    for l in leftovers {
        let exited_at = now_rfc3339();
        history.record_exit(ExitRecord {
            run_id: None,
            oom_kills: None,
            memory_peak_bytes: None,
            worker: l.worker.clone(),
            pid: l.leader.or(l.pids.first().copied()),
            generation: 0,
            started_at: exited_at.clone(),
            exited_at,
            uptime_ms: 0,
            code: None,
            signal: None,
            signal_name: None,
            core_dumped: false,
            reason: ExitReason::Orphan,
            restart_delay_ms: None,
            log_tail: vec![format!(
                "left in the worker's cgroup by a server that died, not in the history: killed {:?}",
                l.pids
            )],
            decision: "killed by the startup orphan sweep (found in the worker's cgroup)".to_string(),
        });
    }
}

fn orphan_record(k: &KilledGroup, by: Sweeper) -> ExitRecord {
    let exited_at = now_rfc3339();
    let uptime_ms = match (
        k.row.started_at.parse::<jiff::Timestamp>(),
        exited_at.parse::<jiff::Timestamp>(),
    ) {
        (Ok(a), Ok(b)) => u64::try_from(b.as_millisecond() - a.as_millisecond()).unwrap_or(0),
        _ => 0,
    };
    let leader = if k.leader_alive {
        format!("leader {} was still running", k.row.pid)
    } else {
        format!("leader {} was already gone", k.row.pid)
    };
    let mut log_tail = vec![
        format!("killed leftover group {} of a server that died", k.row.pgid),
        format!(
            "{leader}; {} process(es) sent SIGTERM: {:?}",
            k.members.len(),
            k.members
        ),
    ];
    if !k.needed_kill.is_empty() {
        log_tail.push(format!(
            "still alive after the grace period, sent SIGKILL: {:?}",
            k.needed_kill
        ));
    }
    if !k.survivors.is_empty() {
        log_tail.push(format!("still alive after SIGKILL: {:?}", k.survivors));
    }
    ExitRecord {
        run_id: None,
        oom_kills: None,
        memory_peak_bytes: None,
        worker: k.row.worker.clone(),
        pid: Some(k.row.pid),
        generation: k.row.generation,
        started_at: k.row.started_at.clone(),
        exited_at,
        uptime_ms,
        code: None,
        signal: None,
        signal_name: None,
        core_dumped: false,
        reason: ExitReason::Orphan,
        restart_delay_ms: None,
        log_tail,
        decision: match by {
            Sweeper::Startup => "killed by the startup orphan sweep",
            Sweeper::Guardian => "killed by the guardian when the server died",
        }
        .to_string(),
    }
}
