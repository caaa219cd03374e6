//! The extension point (issue 6): the example runs, exit classifiers are obeyed, the builder
//! rejects duplicate names.

#[path = "../examples/custom_worker.rs"]
#[allow(dead_code)]
mod example;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vigil_actors::builder::BuildError;
use vigil_actors::exit::Exit;
use vigil_actors::history::query_exits;
use vigil_actors::snapshot::{NodeInfo, WorkerState};
use vigil_actors::spec::{Launch, RestartPolicy};
use vigil_actors::tree::Tree;
use vigil_actors::worker_type::{ExitVerdict, LaunchContext, LaunchError, WorkerType};

#[tokio::test(flavor = "multi_thread")]
async fn the_example_runs_and_its_worker_reaches_running() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "hello").unwrap();
    let dump = example::run(&dir.path().join("var"), &src).await.unwrap();
    let NodeInfo::Worker(w) = &dump.root.children[0].info else {
        panic!("not a worker node")
    };
    assert_eq!(w.kind, "snapshotter");
    assert_eq!(w.state, WorkerState::Running);
    assert!(dir.path().join("var/log/snapshots.log").exists());
    let tars = std::fs::read_dir(dir.path().join("var/snapshots"))
        .unwrap()
        .count();
    assert!(tars >= 1, "the worker did its job");
}

/// Exits with the codes in `codes`, one per generation (then sleeps), counting its starts.
#[derive(Debug)]
struct Scripted {
    codes: Vec<i32>,
    starts: Arc<AtomicU32>,
}

impl WorkerType for Scripted {
    fn kind(&self) -> &str {
        "scripted"
    }
    fn launch(&self, ctx: &LaunchContext) -> Result<Launch, LaunchError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let script = match self.codes.get(ctx.generation as usize - 1) {
            Some(code) => format!("exit {code}"),
            None => "exec sleep 1000".to_string(),
        };
        Ok(Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: Default::default(),
            cwd: None,
        })
    }
    fn policy(&self) -> RestartPolicy {
        let mut p = RestartPolicy::permanent();
        p.backoff.initial = Duration::ZERO;
        p.backoff.jitter = 0.0;
        p.start_secs = Duration::ZERO;
        p
    }
    fn classify_exit(&self, exit: &Exit) -> ExitVerdict {
        match exit.code {
            Some(75) => ExitVerdict::RetryAfter(Duration::from_millis(300)),
            Some(64) => ExitVerdict::DoNotRestart,
            _ => ExitVerdict::UsePolicy,
        }
    }
}

async fn exits_after(dir: &std::path::Path, n: usize) -> Vec<vigil_actors::exit::ExitRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let exits = query_exits(&dir.join("history.sqlite"), None, 100).unwrap_or_default();
        if exits.len() >= n {
            return exits;
        }
        assert!(
            Instant::now() < deadline,
            "only {} exits recorded",
            exits.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_classifier_decides_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let starts = Arc::new(AtomicU32::new(0));
    // Generation 1 exits 75 (retry after >= 300 ms), generation 2 exits 64 (never restart),
    // although the policy is Permanent.
    let w = Scripted {
        codes: vec![75, 64],
        starts: starts.clone(),
    };
    let (tree, history) = Tree::builder()
        .data_dir(dir.path())
        .worker("w", w)
        .start()
        .await
        .unwrap();
    let exits = exits_after(dir.path(), 2).await;
    assert_eq!(exits[1].code, Some(75));
    assert_eq!(exits[1].restart_delay_ms, Some(300));
    assert_eq!(exits[0].code, Some(64));
    assert_eq!(exits[0].restart_delay_ms, None);
    assert!(
        exits[0].decision.contains("do not restart"),
        "{}",
        exits[0].decision
    );
    // The positive event after the decision: the worker shows `stopped` (a restart would show
    // `backoff` or `starting` first, and a start counted before it).
    let dump = example::dump_when_all(&tree, WorkerState::Stopped, Duration::from_secs(20)).await;
    let stopped = dump.is_some_and(|d| {
        d.root
            .children
            .iter()
            .all(|n| matches!(&n.info, NodeInfo::Worker(w) if w.state == WorkerState::Stopped))
    });
    assert!(stopped, "w never showed stopped");
    assert_eq!(
        starts.load(Ordering::SeqCst),
        2,
        "no third start after DoNotRestart"
    );
    tree.request_shutdown();
    tree.wait().await;
    history.flush().await;
}

#[test]
fn the_builder_rejects_duplicate_names() {
    let w = || Scripted {
        codes: vec![],
        starts: Arc::default(),
    };
    let err = Tree::builder()
        .data_dir("/tmp/unused")
        .worker("same", w())
        .worker("same", w())
        .build();
    assert_eq!(err.unwrap_err(), BuildError::DuplicateName("same".into()));
}
