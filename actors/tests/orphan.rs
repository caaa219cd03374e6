//! The startup orphan sweep against real process groups.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_actors::exit::ExitReason;
use vigil_actors::history::{History, LiveProcess, query_exits, query_live_processes};
use vigil_actors::orphan::sweep;
use vigil_actors::procfs;

/// Kills a test's process group and reaps its leader, even when the test fails.
struct Group {
    child: Child,
    pgid: u32,
}

impl Group {
    fn spawn(cmd: &mut Command) -> Group {
        let child = cmd.process_group(0).spawn().unwrap();
        let pgid = child.id();
        Group { child, pgid }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the group was created by this test (process_group(0) on its own child).
        unsafe { libc::killpg(self.pgid as i32, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills one process by pidfd-verified identity at the end of a test.
struct Pid(u32, u64);
impl Drop for Pid {
    fn drop(&mut self) {
        if let Ok(fd) = procfs::PidFd::open_verified(self.0, self.1) {
            let _ = fd.signal(libc::SIGKILL);
        }
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|s| !s.is_dead())
}

fn row(worker: &str, pid: u32, pgid: u32, start_ticks: u64) -> LiveProcess {
    LiveProcess {
        worker: worker.into(),
        pid,
        pgid,
        start_ticks,
        generation: 7,
        started_at: "2026-11-28T22:00:00Z".into(),
    }
}

async fn seed(db: &Path, rows: &[LiveProcess]) -> History {
    let h = History::open(db).unwrap();
    for r in rows {
        h.process_started(r.clone());
    }
    h.flush().await;
    h
}

#[tokio::test]
async fn a_leftover_group_is_killed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let mut g = Group::spawn(Command::new("sh").args(["-c", "sleep 1000 & sleep 1000; wait"]));
    wait_for("two members", || procfs::group_members(g.pgid).len() >= 3);
    let members = procfs::group_members(g.pgid);
    let ticks = procfs::start_ticks(g.pgid).unwrap();
    let h = seed(&db, &[row("leftover", g.pgid, g.pgid, ticks)]).await;

    let report = sweep(&h, &db, Duration::from_secs(3)).await.unwrap();
    assert_eq!(report.killed.len(), 1, "{report:?}");
    assert!(report.stale.is_empty());
    let k = &report.killed[0];
    assert!(k.leader_alive);
    let mut signalled = k.members.clone();
    signalled.sort();
    let mut expected = members.clone();
    expected.sort();
    assert_eq!(signalled, expected);
    assert!(k.survivors.is_empty());

    // The leader is our child: reap it, then nothing of the group is left.
    g.child.wait().unwrap();
    wait_for("the group to be empty", || {
        procfs::group_members(g.pgid).is_empty()
    });

    let exits = query_exits(&db, None, 10).unwrap();
    assert_eq!(exits.len(), 1);
    let e = &exits[0];
    assert_eq!(e.reason, ExitReason::Orphan);
    assert_eq!(
        (e.worker.as_str(), e.pid, e.generation),
        ("leftover", Some(g.pgid), 7)
    );
    assert_eq!((e.code, e.signal), (None, None));
    assert_eq!(
        e.log_tail[0],
        format!("killed leftover group {} of a server that died", g.pgid)
    );
    assert!(query_live_processes(&db).unwrap().is_empty(), "row removed");
    h.close();
}

#[tokio::test]
async fn a_term_ignoring_leftover_gets_sigkill_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let mut g = Group::spawn(Command::new("sh").args([
        "-c",
        "trap '' TERM; sh -c \"trap '' TERM; sleep 1000\" & while :; do sleep 1; done",
    ]));
    wait_for("members", || procfs::group_members(g.pgid).len() >= 3);
    let ticks = procfs::start_ticks(g.pgid).unwrap();
    let h = seed(&db, &[row("stubborn", g.pgid, g.pgid, ticks)]).await;
    let started = Instant::now();
    let report = sweep(&h, &db, Duration::from_millis(300)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let k = &report.killed[0];
    assert!(k.needed_kill.contains(&g.pgid), "{k:?}");
    assert!(k.survivors.is_empty());
    g.child.wait().unwrap();
    wait_for("the group to be empty", || {
        procfs::group_members(g.pgid).is_empty()
    });
    let exits = query_exits(&db, None, 10).unwrap();
    assert!(
        exits[0].log_tail.iter().any(|l| l.contains("SIGKILL")),
        "{:?}",
        exits[0].log_tail
    );
}

#[tokio::test]
async fn a_reused_pid_is_not_killed_and_the_row_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    // An unrelated live process (its own group, as a worker would be) whose start time does not
    // match the row: the pid was "reused".
    let g = Group::spawn(Command::new("sleep").arg("1000"));
    let ticks = procfs::start_ticks(g.pgid).unwrap();
    let rows = [
        row("reused-older", g.pgid, g.pgid, ticks.saturating_sub(5)),
        row("reused-newer", g.pgid, g.pgid, ticks + 5),
        row("start-unknown", g.pgid, g.pgid, 0),
    ];
    let h = seed(&db, &rows).await;
    let report = sweep(&h, &db, Duration::from_secs(1)).await.unwrap();
    assert!(report.killed.is_empty(), "{report:?}");
    assert_eq!(report.stale.len(), 3);
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(g.pgid), "an unverified pid was signalled");
    // The recorded processes are gone: each still ends with one record, found dead.
    let exits = query_exits(&db, None, 10).unwrap();
    assert_eq!(exits.len(), 3, "{exits:?}");
    assert!(
        exits
            .iter()
            .all(|e| e.decision.contains("found already dead"))
    );
    assert!(
        query_live_processes(&db).unwrap().is_empty(),
        "stale rows dropped"
    );
}

#[tokio::test]
async fn grandchildren_of_a_dead_leader_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    // The leader starts a grandchild, then exits when its stdin closes.
    let mut g = Group::spawn(
        Command::new("sh")
            .args(["-c", "sleep 1000 & read x"])
            .stdin(Stdio::piped()),
    );
    let ticks = procfs::start_ticks(g.pgid).unwrap();
    wait_for("the grandchild", || {
        procfs::group_members(g.pgid).len() >= 2
    });
    let grandchild = *procfs::group_members(g.pgid)
        .iter()
        .find(|&&p| p != g.pgid)
        .unwrap();
    let _gc = Pid(grandchild, procfs::start_ticks(grandchild).unwrap());
    g.child.stdin.take().unwrap().write_all(b"bye\n").unwrap();
    g.child.wait().unwrap();
    assert!(!alive(g.pgid));
    assert!(alive(grandchild));

    // A row with an unknown start time (0) proves nothing: stale, even though the group lives.
    let rows = [
        row("unknown-start", g.pgid, g.pgid, 0),
        row("leaderless", g.pgid, g.pgid, ticks),
    ];
    let h = seed(&db, &rows).await;
    let report = sweep(&h, &db, Duration::from_secs(3)).await.unwrap();
    assert_eq!(report.stale.len(), 1, "{report:?}");
    assert_eq!(report.stale[0].worker, "unknown-start");
    assert_eq!(report.killed.len(), 1, "{report:?}");
    assert_eq!(report.killed[0].row.worker, "leaderless");
    assert!(!report.killed[0].leader_alive);
    assert_eq!(report.killed[0].members, vec![grandchild]);
    wait_for("the grandchild to die", || !alive(grandchild));
    let exits = query_exits(&db, None, 10).unwrap();
    assert_eq!(exits[0].reason, ExitReason::Orphan);
    assert!(exits[0].log_tail[1].contains("already gone"));
}

#[tokio::test]
async fn a_process_older_than_the_leader_is_spared_even_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    // `older` is forked first, waits in pre_exec for the leader's pid, joins its group, then
    // execs: its start time (fork time) predates the leader's.
    let (mut rd, mut wr) = std::io::pipe().unwrap();
    let older = std::thread::spawn(move || {
        let mut cmd = Command::new("sleep");
        cmd.arg("1000");
        let fd = {
            use std::os::fd::AsRawFd;
            rd.as_raw_fd()
        };
        // SAFETY: only async-signal-safe calls (read, setpgid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut buf = [0u8; 4];
                if libc::read(fd, buf.as_mut_ptr().cast(), 4) != 4 {
                    return Err(std::io::Error::other("no pgid"));
                }
                if libc::setpgid(0, i32::from_ne_bytes(buf)) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let _ = &mut rd;
        child
    });
    // Let at least one clock tick pass so the start times differ.
    std::thread::sleep(Duration::from_millis(50));
    let leader = Group::spawn(Command::new("sleep").arg("1000"));
    wr.write_all(&(leader.pgid as i32).to_ne_bytes()).unwrap();
    let mut older = older.join().unwrap();
    let older_pid = older.id();
    let _older_guard = Pid(older_pid, procfs::start_ticks(older_pid).unwrap());
    assert_eq!(procfs::pgid(older_pid), Some(leader.pgid));
    let leader_ticks = procfs::start_ticks(leader.pgid).unwrap();
    assert!(procfs::start_ticks(older_pid).unwrap() < leader_ticks);

    let h = seed(&db, &[row("mixed", leader.pgid, leader.pgid, leader_ticks)]).await;
    let report = sweep(&h, &db, Duration::from_secs(3)).await.unwrap();
    assert_eq!(report.killed[0].members, vec![leader.pgid]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        alive(older_pid),
        "a process older than the leader was signalled"
    );
    let _ = older.kill();
    let _ = older.wait();
}
