use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_actors::history::History;
use vigil_actors::root::RootMsg;
use vigil_actors::snapshot::{NodeInfo, WorkerState};
use vigil_actors::spec::*;
use vigil_actors::tree::Tree;
use vigil_actors::worker_type::CommandWorker;

fn worker(dir: &std::path::Path, name: &str, script: &str) -> WorkerSpec {
    let mut policy = RestartPolicy::permanent();
    policy.backoff.initial = Duration::ZERO;
    policy.start_secs = Duration::ZERO;
    policy.intensity.max_restarts = 100;
    WorkerSpec {
        name: name.into(),
        worker_type: Arc::new(CommandWorker {
            launch: Launch {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: Default::default(),
                cwd: None,
            },
        }),
        policy,
        log: LogSpec {
            path: dir.join(format!("{name}.log")),
            max_bytes: 1 << 20,
            max_files: 2,
        },
        limits: Default::default(),
        significant: false,
        environment: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TreeSpec {
        data_dir: dir.path().into(),
        log_dir: dir.path().into(),
        config_path: None,
        root: RootSpec::default(),
        workers: vec![worker(
            dir.path(),
            "a",
            "echo hello $VIGIL_GENERATION; sleep 1000",
        )],
        cgroup: CgroupMode::Off,
        containment: Default::default(),
        http: None,
        groups: Vec::new(),
    };
    let history = History::open(&spec.history_path()).unwrap();
    let tree = Tree::start(spec, history.clone()).await.unwrap();
    let snap = |tree: &Tree| {
        let root = tree.root().clone();
        async move {
            let d = root
                .call(RootMsg::Dump, Some(Duration::from_secs(2)))
                .await
                .unwrap()
                .unwrap();
            match &d.root.children[0].info {
                NodeInfo::Worker(w) => (**w).clone(),
                _ => panic!(),
            }
        }
    };
    let s = snap(&tree).await;
    assert_eq!(s.state, WorkerState::Running);
    let pid = s.pid.unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = snap(&tree).await;
        if s.pid.is_some() && s.pid != Some(pid) {
            assert_eq!(s.generation, 2);
            assert_eq!(s.last_exit.as_ref().unwrap().signal, Some(9));
            println!("{}", serde_json::to_string_pretty(&s).unwrap());
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tree.request_shutdown();
    tree.wait().await;
    history.flush().await;
    let exits =
        vigil_actors::history::query_exits(&dir.path().join("history.sqlite"), None, 10).unwrap();
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert_eq!(exits[1].signal_name.as_deref(), Some("SIGKILL"));
    let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    println!("{log}");
    assert!(log.contains("started generation 2"));
}

/// `Tree::builder().group(..)`: a RestForOne group built in code runs as the config's does:
/// the dump shows the group node; killing the first child restarts the second after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_built_in_code_restarts_rest_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    let sh = |name: &str| CommandWorker {
        launch: Launch {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "echo {name} $$ >> {}; echo READY=1 >&3; exec sleep 1000",
                    order.display()
                )
                .into(),
            ],
            env: Default::default(),
            cwd: None,
        },
    };
    let mut policy = RestartPolicy::permanent();
    policy.backoff.initial = Duration::ZERO;
    policy.start_secs = Duration::from_secs(30);
    let (tree, _history) = Tree::builder()
        .data_dir(dir.path())
        .group("backend", Strategy::RestForOne, |g| {
            g.worker_with_policy("db", sh("db"), policy)
                .worker_with_policy("indexer", sh("indexer"), policy)
        })
        .start()
        .await
        .unwrap();
    let lines = |n: usize| {
        let order = order.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = std::fs::read_to_string(&order).unwrap_or_default();
                let lines: Vec<(String, i32)> = text
                    .lines()
                    .filter_map(|l| {
                        let (n, p) = l.split_once(' ')?;
                        Some((n.to_string(), p.parse().ok()?))
                    })
                    .collect();
                if lines.len() >= n {
                    return lines;
                }
                assert!(Instant::now() < deadline, "only {lines:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let first = lines(2).await;
    assert_eq!(first[0].0, "db");
    assert_eq!(first[1].0, "indexer");
    let dump = tree
        .root()
        .call(RootMsg::Dump, Some(Duration::from_secs(2)))
        .await
        .unwrap()
        .unwrap();
    match &dump.root.children[0].info {
        NodeInfo::Group(g) => {
            assert_eq!(g.name, "backend");
            assert_eq!(g.strategy, "rest_for_one");
        }
        other => panic!("expected the group node, got {other:?}"),
    }
    unsafe { libc::kill(first[0].1, libc::SIGKILL) };
    let after = lines(4).await;
    assert_eq!(after[2].0, "db", "{after:?}");
    assert_eq!(after[3].0, "indexer", "{after:?}");
    // SAFETY: signal 0 only checks whether the old indexer still exists.
    let old_indexer_alive = unsafe { libc::kill(first[1].1, 0) } == 0;
    assert!(
        !old_indexer_alive,
        "the indexer was not restarted with the db"
    );
    tree.request_shutdown();
    tree.wait().await;
}
