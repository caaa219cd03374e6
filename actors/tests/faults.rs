//! Library-level faults (issue 16): history that cannot be written.

use std::time::{Duration, Instant};

use vigil_actors::history::History;

/// Another connection holds an exclusive lock: every write of the writer fails (busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_within_is_bounded_when_history_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let history = History::open(&db).unwrap();
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    history.record_event("w", "x", "y");
    let started = Instant::now();
    assert!(!history.flush_within(Duration::from_millis(500)).await);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Having given up once, closing does not wait the full shutdown retry again.
    let closing = Instant::now();
    tokio::task::spawn_blocking(move || history.close())
        .await
        .unwrap();
    assert!(
        closing.elapsed() < Duration::from_secs(5),
        "close took {:?}",
        closing.elapsed()
    );
    drop(blocker);
}

#[test]
fn a_database_corrupt_past_its_first_page_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    {
        let history = History::open(&db).unwrap();
        for _ in 0..400 {
            history.record_event("w", "filler", &"x".repeat(200));
        }
        history.close();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[4096..32768] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let history = History::open(&db).expect("a fresh database replaces the corrupt one");
    let aside = history.moved_aside().expect("moved aside").to_path_buf();
    assert!(aside.exists());
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("history.sqlite.corrupt-")
    );
    history.close();
    let events = vigil_actors::history::query_events(&db, None, 10).unwrap();
    assert!(
        events.iter().any(|e| e.kind == "history_corrupt"),
        "{events:?}"
    );
}
