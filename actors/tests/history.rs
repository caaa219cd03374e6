//! The history writer against real SQLite files: round trip, batching, retries, queries.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use vigil_actors::exit::{ExitReason, ExitRecord};
use vigil_actors::history::{
    History, LiveProcess, query_events, query_exits, query_live_processes, schema_version,
};

fn record(worker: &str, n: u64) -> ExitRecord {
    ExitRecord {
        run_id: Some(format!("0190b3c4-{n:04}-7000-8000-000000000000")),
        oom_kills: Some(n % 2),
        memory_peak_bytes: Some(64 << 20),
        worker: worker.to_string(),
        pid: Some(1000 + n as u32),
        generation: n,
        started_at: "2026-11-28T22:10:00Z".to_string(),
        exited_at: "2026-11-28T22:10:03.25Z".to_string(),
        uptime_ms: 3250 + n,
        code: None,
        signal: Some(11),
        signal_name: Some("SIGSEGV".to_string()),
        core_dumped: true,
        reason: ExitReason::Killed,
        restart_delay_ms: Some(400),
        log_tail: vec![
            format!("line {n}"),
            "quote \" and, comma".to_string(),
            "ünïcode".into(),
        ],
        decision: "restarting in 400ms".to_string(),
    }
}

fn count(db: &Path, table: &str) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn every_field_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/history.sqlite");
    let h = History::open(&db).unwrap();
    let full = record("indexing", 4);
    let sparse = ExitRecord {
        run_id: None,
        oom_kills: None,
        memory_peak_bytes: None,
        worker: "echo".into(),
        pid: None,
        generation: u64::MAX,
        started_at: "2026-11-28T22:10:00Z".into(),
        exited_at: "2026-11-28T22:10:00Z".into(),
        uptime_ms: 0,
        code: Some(3),
        signal: None,
        signal_name: None,
        core_dumped: false,
        reason: ExitReason::SpawnFailed,
        restart_delay_ms: None,
        log_tail: vec![],
        decision: String::new(),
    };
    h.record_exit(full.clone());
    h.record_exit(sparse.clone());
    h.flush().await;
    let got = query_exits(&db, None, 10).unwrap();
    // u64::MAX does not fit SQLite's i64: it saturates.
    let sparse_back = ExitRecord {
        run_id: None,
        generation: i64::MAX as u64,
        ..sparse
    };
    assert_eq!(
        got,
        vec![sparse_back, full.clone()],
        "newest first, every field intact"
    );
    // The contract's JSON field names and values.
    let json = serde_json::to_value(&got[1]).unwrap();
    for key in [
        "worker",
        "pid",
        "generation",
        "started_at",
        "exited_at",
        "uptime_ms",
        "code",
        "signal",
        "signal_name",
        "core_dumped",
        "reason",
        "restart_delay_ms",
        "log_tail",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["reason"], "killed");
    assert_eq!(json["run_id"], full.run_id.as_deref().unwrap());
    assert_eq!(json["code"], serde_json::Value::Null);
    // log_tail is stored as JSON text.
    let c = Connection::open(&db).unwrap();
    let raw: String = c
        .query_row(
            "SELECT log_tail FROM exits WHERE worker='indexing'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&raw).unwrap(),
        full.log_tail
    );
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(schema_version(&db).unwrap(), Some(3));
    h.close();
}

#[tokio::test]
async fn a_storm_of_1000_exits_is_a_few_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let h = History::open(&db).unwrap();
    let started = Instant::now();
    for n in 0..1000 {
        h.record_exit(record("storm", n));
    }
    h.flush().await;
    let took = started.elapsed();
    let stats = h.stats();
    assert_eq!(stats.exits_written, 1000);
    assert!(stats.transactions <= 10, "{stats:?}");
    assert_eq!(count(&db, "exits"), 1000);
    let got = query_exits(&db, Some("storm"), 2000).unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(got[0].generation, 999, "newest first");
    assert_eq!(got[999].generation, 0);
    eprintln!(
        "1000 exits in {} transaction(s), {:?} ({:.0} records/s)",
        stats.transactions,
        took,
        1000.0 / took.as_secs_f64()
    );
}

#[tokio::test]
async fn a_locked_database_is_retried_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let h = History::open(&db).unwrap();
    h.record_exit(record("w", 0));
    h.flush().await;

    // A second connection holds the write lock for about a second.
    let locker = Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for n in 1..=50 {
        h.record_exit(record("w", n));
    }
    h.process_started(LiveProcess {
        worker: "w".into(),
        pid: 42,
        pgid: 42,
        start_ticks: 7,
        generation: 3,
        started_at: "2026-11-28T22:10:00Z".into(),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.stats().failures < 2 {
        assert!(
            Instant::now() < deadline,
            "the writer never hit the lock: {:?}",
            h.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);

    tokio::time::timeout(Duration::from_secs(20), h.flush())
        .await
        .unwrap();
    let stats = h.stats();
    assert!(stats.failures >= 2, "{stats:?}");
    assert_eq!(stats.dropped, 0);
    assert_eq!(count(&db, "exits"), 51);
    assert_eq!(query_live_processes(&db).unwrap().len(), 1);
}

#[tokio::test]
async fn close_commits_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let h = History::open(&db).unwrap();
    let other = h.clone();
    for n in 0..300 {
        other.record_exit(record("w", n));
    }
    h.close();
    assert_eq!(count(&db, "exits"), 300);
    // A clone outliving close() cannot write, and says so (counted, not a panic).
    other.record_exit(record("w", 301));
    assert_eq!(other.stats().dropped, 1);
    drop(other);
    assert_eq!(count(&db, "exits"), 300);
}

#[tokio::test]
async fn dropping_the_last_handle_commits_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    {
        let h = History::open(&db).unwrap();
        for n in 0..10 {
            h.record_exit(record("w", n));
        }
    }
    assert_eq!(count(&db, "exits"), 10);
}

#[tokio::test]
async fn queries_filter_by_worker_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    assert!(
        query_exits(&db, None, 10).unwrap().is_empty(),
        "no file yet: empty, not an error"
    );
    let h = History::open(&db).unwrap();
    for n in 0..5 {
        h.record_exit(record("a", n));
        h.record_exit(record("b", n));
    }
    h.record_event("a", "escalation", "more than 5 restarts in 60s");
    h.flush().await;
    let a = query_exits(&db, Some("a"), 3).unwrap();
    assert_eq!(
        a.iter().map(|r| r.generation).collect::<Vec<_>>(),
        vec![4, 3, 2]
    );
    assert!(a.iter().all(|r| r.worker == "a"));
    assert_eq!(query_exits(&db, None, 100).unwrap().len(), 10);
    assert_eq!(query_exits(&db, None, 0).unwrap().len(), 0);
    assert!(query_exits(&db, Some("nobody"), 10).unwrap().is_empty());
    let ev = query_events(&db, Some("a"), 10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "escalation");
    assert!(
        jiff::Timestamp::from_str_ok(&ev[0].at),
        "RFC 3339: {}",
        ev[0].at
    );
}

#[tokio::test]
async fn live_process_rows_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let h = History::open(&db).unwrap();
    let p = LiveProcess {
        worker: "w".into(),
        pid: 77,
        pgid: 77,
        start_ticks: 123_456,
        generation: 2,
        started_at: "2026-11-28T22:10:00Z".into(),
    };
    h.process_started(p.clone());
    h.process_started(LiveProcess {
        pid: 78,
        pgid: 78,
        ..p.clone()
    });
    h.flush().await;
    assert_eq!(query_live_processes(&db).unwrap().len(), 2);
    h.process_reaped("w", 78);
    h.flush().await;
    assert_eq!(query_live_processes(&db).unwrap(), vec![p]);
}

trait FromStrOk {
    fn from_str_ok(s: &str) -> bool;
}
impl FromStrOk for jiff::Timestamp {
    fn from_str_ok(s: &str) -> bool {
        s.parse::<jiff::Timestamp>().is_ok()
    }
}

#[tokio::test]
async fn the_pending_bound_drops_the_oldest_and_keeps_the_rest() {
    use vigil_actors::history::MAX_PENDING;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let h = History::open(&db).unwrap();
    h.flush().await;
    let locker = Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let extra = 10;
    for n in 0..(MAX_PENDING + extra) as u64 {
        h.record_exit(record("flood", n));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.stats().dropped < extra as u64 || h.stats().failures == 0 {
        assert!(Instant::now() < deadline, "{:?}", h.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    tokio::time::timeout(Duration::from_secs(60), h.flush())
        .await
        .unwrap();
    assert_eq!(h.stats().dropped, extra as u64);
    assert_eq!(count(&db, "exits"), MAX_PENDING as i64);
    let oldest_kept = query_exits(&db, Some("flood"), usize::MAX)
        .unwrap()
        .last()
        .unwrap()
        .generation;
    assert_eq!(
        oldest_kept, extra as u64,
        "the oldest were the ones dropped"
    );
}

/// Throughput and latency figures for the report:
/// `cargo test --release -p vigil-actors --test history throughput -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement, not a check; run it explicitly"]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite");
    let h = History::open(&db).unwrap();
    h.flush().await;
    let n = 100_000u64;
    let recs: Vec<ExitRecord> = (0..n).map(|i| record("storm", i)).collect();
    let t0 = Instant::now();
    for r in recs {
        h.record_exit(r);
    }
    let enqueued = t0.elapsed();
    h.flush().await;
    let total = t0.elapsed();
    let s = h.stats();
    assert_eq!(s.exits_written, n);
    eprintln!(
        "storm: {n} exits enqueued in {enqueued:?} ({:.2} us each), committed in {total:?} \
         = {:.0} records/s, {} transaction(s)",
        enqueued.as_secs_f64() * 1e6 / n as f64,
        n as f64 / total.as_secs_f64(),
        s.transactions
    );

    let mut lat = Vec::new();
    for i in 0..1000 {
        let t = Instant::now();
        h.record_exit(record("single", i));
        h.flush().await;
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "one exit, enqueue -> committed: median {:?}, p95 {:?}, max {:?} (1000 trials)",
        lat[500], lat[950], lat[999]
    );
    let t = Instant::now();
    let all = query_exits(&db, Some("storm"), 50).unwrap();
    eprintln!(
        "query_exits(worker, limit 50) over {} rows: {:?}",
        n + 1000,
        t.elapsed()
    );
    assert_eq!(all.len(), 50);
}
