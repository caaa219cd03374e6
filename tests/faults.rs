//! The fault suite (issue 16): each defect a fault probe found, reproduced against the real
//! binary. A test that needs root or a mount says so when it skips (`SKIP:` on stderr).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn server_log(home: &Home) -> String {
    std::fs::read_to_string(home.path().join("var/log/vigil.log")).unwrap_or_default()
}

/// Files in `dir` whose name starts with `prefix`.
fn files_starting(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A history database of more than 32 KiB whose bytes 4096..32768 are garbage: the first page
/// (header and schema) is intact, so it opens; the tables behind it are malformed.
fn corrupt_history(home: &Home) -> std::path::PathBuf {
    let db = home.path().join("var/history.sqlite");
    {
        let history = vigil_actors::history::History::open(&db).expect("open history");
        let detail = "x".repeat(200);
        for _ in 0..400 {
            history.record_event("w", "filler", &detail);
        }
        history.close();
    }
    let mut bytes = std::fs::read(&db).expect("read history");
    assert!(bytes.len() > 32768, "history too small: {}", bytes.len());
    for (i, b) in bytes[4096..32768].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, bytes).expect("write corrupt history");
    db
}

// ------------------------------------------------------------------ 1. history at shutdown

#[test]
fn a_corrupt_history_is_moved_aside_and_shutdown_exits() {
    let home = Home::new(
        "",
        &sh_worker("w", "echo $$ >> pids; exec sleep 1000", FAST),
    );
    corrupt_history(&home);
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    let status = server
        .terminate(Duration::from_secs(25))
        .expect("the server exits after SIGTERM despite the corrupt database");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let aside = files_starting(&home.path().join("var"), "history.sqlite.corrupt-");
    assert!(
        aside
            .iter()
            .any(|n| !n.ends_with("-wal") && !n.ends_with("-shm")),
        "no history.sqlite.corrupt-<time>: {aside:?}"
    );
    let log = server_log(&home);
    assert!(log.contains("history database is corrupt"), "{log}");
    // The fresh database works: the worker's stop is recorded, and the event says why.
    let exits = home.history(Some("w"));
    assert!(exits.iter().any(|e| e["pid"] == pid), "{exits:?}");
    let conn = rusqlite::Connection::open(home.path().join("var/history.sqlite")).unwrap();
    let kind: String = conn
        .query_row(
            "SELECT kind FROM events WHERE kind = 'history_corrupt'",
            [],
            |r| r.get(0),
        )
        .expect("a history_corrupt event");
    assert_eq!(kind, "history_corrupt");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    // The worker ignores SIGTERM and has a long grace: the first SIGTERM waits for it.
    let home = Home::new(
        "",
        &sh_worker(
            "w",
            "trap '' TERM; echo $$ >> pids; while :; do sleep 0.1; done",
            &format!("{FAST}, shutdown: (grace: \"60s\")"),
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "worker", || home.pids("pids").first().copied());
    server.track(pid);
    control_wait_ready(&home);
    server.signal(libc::SIGTERM);
    wait_for(LONG, "the first SIGTERM logged", || {
        server_log(&home)
            .contains("SIGTERM: shutting down")
            .then_some(())
    });
    let asked = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait(Duration::from_secs(5))
        .expect("a second SIGTERM exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(
        server.stderr().contains("second SIGTERM"),
        "{}",
        server.stderr()
    );
    // The guardian kills the worker the server left.
    wait_for(LONG, "the worker killed by the guardian", || {
        (!alive(pid)).then_some(())
    });
}
