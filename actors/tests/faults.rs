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

/// A small tmpfs mounted on a temporary directory, unmounted on drop. `None` (with a loud
/// `SKIP:`) when mounting is not possible here (not root, no mount namespace rights).
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP: {test}: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    /// Fill the file system: a file taking every free byte.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[0u8; 1]);
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_loses_lines_with_a_count_written_when_space_returns() {
    use vigil_actors::logfile::LogFile;
    use vigil_actors::spec::LogSpec;
    let Some(fs) = Tmpfs::mount("256k", "a_full_disk_loses_lines") else {
        return;
    };
    let spec = LogSpec {
        path: fs.dir.path().join("w.log"),
        max_bytes: 1 << 30,
        max_files: 1,
    };
    let log = LogFile::open(&spec).unwrap();
    // Fill the file's first page exactly: tmpfs would take later writes into it without
    // needing a free block.
    let pad = 4096 - "2026-12-02T15:48:56.836Z [vigil] before \n".len();
    log.note(&format!("before {}", "b".repeat(pad)));
    assert_eq!(std::fs::metadata(&spec.path).unwrap().len(), 4096);
    let filler = fs.fill();
    for i in 0..25 {
        log.note(&format!("lost {i}"));
    }
    std::fs::remove_file(filler).unwrap();
    log.note("after");
    let text = std::fs::read_to_string(&spec.path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("[vigil] before"), "{text}");
    let marker = lines
        .iter()
        .position(|l| l.ends_with("[vigil] 25 lines lost: disk full"))
        .unwrap_or_else(|| panic!("no lost-lines marker: {text}"));
    assert!(lines[marker + 1].ends_with("[vigil] after"), "{text}");
}

/// The file is corrupted under a running writer: the next failing write moves it aside and the
/// records go into a fresh database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_corrupted_while_open_is_moved_aside_on_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let history = History::open(&db).unwrap();
    for _ in 0..400 {
        history.record_event("w", "filler", &"x".repeat(200));
    }
    assert!(history.flush_within(Duration::from_secs(10)).await);
    // Checkpoint the WAL into the main file, so that the garbage below is what SQLite reads.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    if bytes.len() < 32768 {
        eprintln!("SKIP: the database is only {} bytes", bytes.len());
        return;
    }
    for b in &mut bytes[4096..32768] {
        *b = 0x5A;
    }
    std::fs::write(&db, bytes).unwrap();
    // Writes touching the corrupt pages fail, then land in a fresh file.
    let mut done = false;
    for i in 0..50 {
        history.record_event("w", "after", &format!("{i} {}", "y".repeat(500)));
        assert!(
            history.flush_within(Duration::from_secs(5)).await,
            "write {i}: the writer is stuck retrying a corrupt database"
        );
        {
            let aside = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .any(|n| n.starts_with("history.sqlite.corrupt-"));
            if aside {
                done = true;
                break;
            }
        }
    }
    if !done {
        eprintln!("SKIP: SQLite served every write from its cache; the corruption was never read");
        return;
    }
    let events = vigil_actors::history::query_events(&db, None, 100).unwrap();
    assert!(
        events.iter().any(|e| e.kind == "history_corrupt"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.kind == "after"), "{events:?}");
    tokio::task::spawn_blocking(move || history.close())
        .await
        .unwrap();
}
