//! Starting and joining a whole tree: the root supervisor and its WorkerSupervisors.
//!
//! Owns the handle a program holds while a tree runs ([`Tree`]): the root's address, its join
//! handle and the outcome channel. It must not make supervision decisions (the actors do) or
//! parse configuration (the caller resolves a [`TreeSpec`] first).

use ractor::{Actor, ActorRef};
use tokio::sync::oneshot;

use crate::events::EventBus;
use crate::history::History;
use crate::root::{ReloadSource, RootArgs, RootMsg, RootSupervisor, TreeOutcome};
use crate::spec::TreeSpec;

/// Why a tree could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The root actor failed to start.
    #[error("cannot start the root supervisor: {0}")]
    Spawn(String),
}

/// A running tree.
pub struct Tree {
    root: ActorRef<RootMsg>,
    join: tokio::task::JoinHandle<()>,
    outcome: oneshot::Receiver<TreeOutcome>,
    events: EventBus,
}

impl Tree {
    /// Start the root and, in config order, one WorkerSupervisor per worker. Returns once every
    /// worker's first spawn has been attempted.
    pub async fn start(spec: TreeSpec, history: History) -> Result<Tree, TreeError> {
        Tree::start_with(spec, history, EventBus::new(), None).await
    }

    /// [`Tree::start`], publishing to `events` (a bus with a tap, for the HTTP metrics), and
    /// with where a reload reads the new tree ([`RootMsg::Reload`]).
    pub async fn start_with(
        spec: TreeSpec,
        history: History,
        events: EventBus,
        reload: Option<ReloadSource>,
    ) -> Result<Tree, TreeError> {
        let (tx, outcome) = oneshot::channel();
        let args = RootArgs {
            spec,
            history,
            events: events.clone(),
            outcome: tx,
            reload,
        };
        let (root, join) = Actor::spawn(None, RootSupervisor, args)
            .await
            .map_err(|e| TreeError::Spawn(e.to_string()))?;
        Ok(Tree {
            root,
            join,
            outcome,
            events,
        })
    }

    /// The tree's event bus (`vigil events` subscribes through the root; tests may here).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The root's address (for the control server, signals, tests).
    pub fn root(&self) -> &ActorRef<RootMsg> {
        &self.root
    }

    /// Ask for a graceful shutdown (workers stopped in reverse order) without waiting.
    pub fn request_shutdown(&self) {
        let _ = self.root.cast(RootMsg::Shutdown(None));
    }

    /// Wait until the tree has stopped; returns how it ended. A root that died without saying
    /// (a bug) is reported as [`TreeOutcome::RootIntensityExceeded`]'s sibling: `None`.
    pub async fn wait(self) -> Option<TreeOutcome> {
        let _ = self.join.await;
        self.outcome.await.ok()
    }
}
