//! Faults: unreadable files, a locked database, fatal database and config errors, and the
//! notify lines the server relies on.

mod indexing_support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use indexing_support::{Fixture, is_root, wait_for};

#[test]
fn unreadable_file_is_counted_and_the_cycle_goes_on() {
    let f = Fixture::new();
    f.write("ok.rs", "fn ok() {}\n");
    let secret = f.write("secret.rs", "fn secret() {}\n");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let root = is_root();
    if root && !others_can_run(Path::new(env!("CARGO_BIN_EXE_vigil"))) {
        eprintln!("skipping: user nobody cannot reach the vigil binary to run it without root");
        return;
    }
    if root {
        // root reads anything: run the worker as `nobody`, who owns everything but the file.
        chown_tree(f.dir.path(), 65534);
        // SAFETY: chown on a valid C path; the result is checked.
        let c = std::ffi::CString::new(secret.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 0, 0) }, 0);
    }
    let (st, log) = f.run_with(&["--once"], |cmd| {
        if root {
            Fixture::as_nobody(cmd);
        }
    });
    assert!(st.success(), "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("cannot read")
            && l.contains("secret.rs")
            && l.contains("permission denied")),
        "{}",
        log.join("\n")
    );
    assert_eq!(f.paths_of("tree"), ["ok.rs"]);
    let (files, new, _, _, _, errors) = f.last_cycle();
    assert_eq!((files, new, errors), (1, 1, 1));
    assert!(
        log.last().unwrap().contains("1 errors"),
        "{}",
        log.join("\n")
    );
}

/// True when every folder above `exe` and `exe` itself are executable by others.
fn others_can_run(exe: &Path) -> bool {
    exe.ancestors()
        .all(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn chown_tree(path: &std::path::Path, uid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: lchown on a valid C path; the result is checked.
    assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, uid) }, 0);
    if path.is_dir() && !path.is_symlink() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn locked_database_is_retried_until_it_is_free() {
    let f = Fixture::new();
    f.write("a.rs", "x\n");
    let (st, _) = f.run_once();
    assert!(st.success());
    f.write("b.rs", "y\n");

    let conn = f.conn();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut child = f.spawn(&["--once"]);
    // Hold the lock until the worker has met it (and beyond its busy timeout), then release.
    wait_for("the worker to report a busy database", || {
        f.log().iter().any(|l| l.contains("database busy"))
    });
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(1200) {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the worker gave up while the database was locked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    conn.execute_batch("COMMIT").unwrap();
    let st = child.wait();
    let log = f.log();
    assert!(st.success(), "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("database no longer busy")),
        "{}",
        log.join("\n")
    );
    assert_eq!(f.paths_of("tree"), ["a.rs", "b.rs"]);
    let cycles: i64 = f
        .conn()
        .query_row("SELECT count(*) FROM cycles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cycles, 2);
}

#[test]
fn database_that_cannot_be_opened_exits_3_and_says_why() {
    let f = Fixture::new();
    f.write("a.rs", "x\n");
    fs::create_dir_all(&f.db).unwrap(); // index.sqlite is a directory
    let (st, log) = f.run_once();
    assert_eq!(st.code(), Some(3), "{}", log.join("\n"));
    let last = log.last().unwrap();
    assert!(
        last.contains("fatal") && last.contains("index database") && last.contains("status 3"),
        "{last}"
    );
}

#[test]
fn newer_schema_exits_3() {
    let f = Fixture::new();
    fs::create_dir_all(f.db.parent().unwrap()).unwrap();
    f.conn().execute_batch("PRAGMA user_version = 99").unwrap();
    let (st, log) = f.run_once();
    assert_eq!(st.code(), Some(3));
    assert!(
        log.last().unwrap().contains("schema version 99"),
        "{}",
        log.join("\n")
    );
}

#[test]
fn unknown_worker_name_exits_2_and_says_why() {
    let f = Fixture::new();
    let (st, log) = f.run_with(&["--once", "--name", "nope"], |_| {});
    assert_eq!(st.code(), Some(2), "{}", log.join("\n"));
    let last = log.last().unwrap();
    assert!(last.contains("fatal") && last.contains("nope"), "{last}");
}

#[test]
fn notify_lines_ready_status_watchdog() {
    let f = Fixture::new();
    f.write("a.rs", "x\n");
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe(2) just created these descriptors; we own them from here on.
    let (rx, tx) = unsafe { (fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut cmd = f.command(&[]);
    cmd.env("VIGIL_NOTIFY_FD", tx.as_raw_fd().to_string());
    let _child = indexing_support::ChildGuard(cmd.spawn().unwrap());
    drop(tx);
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(rx).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let end = Instant::now() + indexing_support::DEADLINE;
    let has = |seen: &[String], p: &str| seen.iter().any(|l| l.starts_with(p));
    while !(has(&seen, "READY=1")
        && has(&seen, "WATCHDOG=1")
        && seen.iter().any(|l| l.starts_with("STATUS=cycle 2:")))
    {
        let left = end.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "notify lines so far: {seen:?}\nlog:\n{}",
                f.log().join("\n")
            ),
        }
    }
    assert_eq!(seen[0], "READY=1");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("STATUS=cycle 1: 1 file in 1 project (1 new")),
        "{seen:?}"
    );
}

#[test]
fn sigterm_stops_cleanly_with_a_last_line() {
    let f = Fixture::new();
    f.write("a.rs", "x\n");
    let mut child = f.spawn(&[]);
    wait_for("the first cycle", || {
        f.log().iter().any(|l| l.contains("cycle 1:"))
    });
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let st = child.wait();
    let log = f.log();
    assert_eq!(st.code(), Some(0), "{}", log.join("\n"));
    assert!(
        log.last().unwrap().contains("received SIGTERM"),
        "{}",
        log.join("\n")
    );
}

#[test]
fn removed_database_is_recreated_by_the_running_worker() {
    let f = Fixture::new();
    f.write("a.rs", "x\n");
    let _child = f.spawn(&[]);
    wait_for("the first cycle", || {
        f.log().iter().any(|l| l.contains("cycle 1:"))
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", f.db.display()));
    }
    wait_for("the worker to reopen the database", || {
        f.log()
            .iter()
            .any(|l| l.contains("was removed or replaced"))
    });
    wait_for("the file to be indexed again", || {
        f.db.exists()
            && rusqlite::Connection::open(&f.db)
                .and_then(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get::<_, i64>(0)))
                .is_ok_and(|n| n == 1)
    });
}
