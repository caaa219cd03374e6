//! Adding a worker type to vigil: one trait implementation and one registration.
//!
//! This program defines `Snapshotter`, a worker that copies a directory into a timestamped
//! tarball every few seconds (here, a short shell loop so the example runs anywhere), tells
//! vigil when it is ready, and uses exit codes to say what kind of failure it had:
//! `75` (EX_TEMPFAIL, "try again later") backs off at least 2 s; `64` (EX_USAGE, a bad setup)
//! must not be restarted at all. It starts a tree with it in code and prints the dump.
//!
//! Run it: `cargo run --example custom_worker`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_actors::builder::BuildError;
use vigil_actors::exit::Exit;
use vigil_actors::root::RootMsg;
use vigil_actors::snapshot::{Dump, NodeInfo, WorkerState};
use vigil_actors::spec::{Launch, RestartPolicy, RestartType};
use vigil_actors::tree::Tree;
use vigil_actors::worker_type::{ExitVerdict, LaunchContext, LaunchError, WorkerType};

/// Step 1, the worker type: what to run, its restart policy, and how to read its exits.
#[derive(Debug)]
struct Snapshotter {
    source: PathBuf,
}

impl WorkerType for Snapshotter {
    fn kind(&self) -> &str {
        "snapshotter"
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Launch, LaunchError> {
        let out = ctx.data_dir.join("snapshots");
        // Ready once the first snapshot exists; then one every 2 s, reported with STATUS=.
        let script = "mkdir -p \"$OUT\" || exit 64; \
                      snap() { tar -cf \"$OUT/$(date +%s%N).tar\" -C \"$SRC\" . || exit 75; }; \
                      snap; echo READY=1 >&3; \
                      while sleep 2; do snap; echo STATUS=last snapshot $(date +%T) >&3; done";
        Ok(Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: [
                ("SRC".to_string(), self.source.display().to_string()),
                ("OUT".to_string(), out.display().to_string()),
            ]
            .into(),
            cwd: None,
        })
    }

    /// Required: a worker type cannot exist without a restart policy.
    fn policy(&self) -> RestartPolicy {
        RestartPolicy {
            restart: RestartType::Transient,
            ..RestartPolicy::permanent()
        }
    }

    fn classify_exit(&self, exit: &Exit) -> ExitVerdict {
        match exit.code {
            Some(75) => ExitVerdict::RetryAfter(Duration::from_secs(2)),
            Some(64) => ExitVerdict::DoNotRestart,
            _ => ExitVerdict::UsePolicy,
        }
    }

    fn before_start(&self, _ctx: &LaunchContext) -> Result<(), String> {
        if self.source.is_dir() {
            Ok(())
        } else {
            Err(format!("{} is not a directory", self.source.display()))
        }
    }
}

/// Step 2, the registration: a tree with the new worker, started in code. Returns the dump
/// taken once the worker is running, after a graceful shutdown of the tree.
pub async fn run(data_dir: &Path, source: &Path) -> Result<Dump, BuildError> {
    let (tree, history) = Tree::builder()
        .data_dir(data_dir)
        .worker(
            "snapshots",
            Snapshotter {
                source: source.to_path_buf(),
            },
        )
        .start()
        .await?;
    let dump = dump_when_all(&tree, WorkerState::Running, Duration::from_secs(5)).await;
    tree.request_shutdown();
    tree.wait().await;
    history.flush().await;
    dump.ok_or_else(|| BuildError::Start("the tree never answered a dump".into()))
}

/// Step 3, watching it: the dump, asked every 10 ms until every worker shows `state` or
/// `within` has passed. The last dump the tree answered; `None` if it never did.
pub async fn dump_when_all(tree: &Tree, state: WorkerState, within: Duration) -> Option<Dump> {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        if let Ok(ractor::rpc::CallResult::Success(d)) = tree
            .root()
            .call(RootMsg::Dump, Some(Duration::from_secs(2)))
            .await
        {
            let all = d
                .root
                .children
                .iter()
                .all(|n| matches!(&n.info, NodeInfo::Worker(w) if w.state == state));
            last = Some(d);
            if all {
                return last;
            }
        }
        if Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::temp_dir().join(format!("vigil-example-{}", std::process::id()));
    let source = std::env::current_dir()?.join("examples");
    let dump = run(&data_dir, &source).await?;
    println!("{}", serde_json::to_string_pretty(&dump)?);
    println!(
        "worker log: {}",
        data_dir.join("log/snapshots.log").display()
    );
    Ok(())
}
