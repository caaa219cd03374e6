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
