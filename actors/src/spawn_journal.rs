//! The one seam through which a worker's spawn and reap are written down: told to the
//! [`crate::guardian`] (which kills what a dead server left) and to the history's
//! `live_processes` table (which the orphan sweep at the next start reads).
//!
//! Owns the order of those notes, which crash safety relies on:
//! 1. before the spawn, the guardian learns it is about to happen (`~`, named by the output
//!    pipe's inode, which the new process holds at fd 1): a server killed in the middle of a
//!    spawn leaves nothing the guardian cannot find ([`SpawnJournal::spawning`]);
//! 2. right after it, the guardian gets the process's identity (`+`, or `!` when it failed or
//!    is gone already) and the history its row ([`PendingSpawn::spawned`]);
//! 3. once the leader is reaped and its group killed, the guardian forgets it (`-`,
//!    [`ReapNote::reaped`]), before the exit is reported;
//! 4. the history's row goes only when the exit is handled ([`SpawnJournal::exit_handled`]),
//!    just before its exit record is written: an exit nobody recorded (its supervisor gone)
//!    keeps its row, and the next start's sweep writes the record ("found already dead").
//!
//! [`crate::process`] calls 1–3 from inside the spawn and its wait task; the WorkerSupervisor
//! calls 4 on its exit path. This module must not spawn, signal or decide anything, and
//! writes nothing but these notes.

use std::os::fd::RawFd;

use crate::guardian;
use crate::history::{History, LiveProcess};

/// Writes down one worker's spawns and reaps (cheap to clone: a history handle).
#[derive(Clone)]
pub struct SpawnJournal {
    history: History,
}

impl std::fmt::Debug for SpawnJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnJournal").finish_non_exhaustive()
    }
}

impl SpawnJournal {
    /// A journal writing rows to `history`.
    pub fn new(history: History) -> Self {
        SpawnJournal { history }
    }

    /// A spawn of `worker`'s `generation` is about to happen, its output going to the pipe
    /// whose write end is `output_fd`: tells the guardian, when one watches. The returned
    /// [`PendingSpawn`] must be told how the spawn ended.
    pub fn spawning(&self, output_fd: RawFd, generation: u64, worker: &str) -> PendingSpawn<'_> {
        let guarded = guardian::active();
        let pipe_inode = if guarded {
            let inode = guardian::inode_of(output_fd);
            guardian::spawning(inode, generation, worker);
            inode
        } else {
            0
        };
        PendingSpawn {
            journal: self,
            guarded,
            pipe_inode,
        }
    }

    /// The exit of `worker`'s leader `pid` is handled (its exit record comes next): its
    /// `live_processes` row goes.
    pub fn exit_handled(&self, worker: &str, pid: u32) {
        self.history.process_reaped(worker, pid);
    }
}

/// A spawn announced to the guardian ([`SpawnJournal::spawning`]), not yet settled.
#[derive(Debug)]
#[must_use = "the guardian must learn how the spawn ended"]
pub struct PendingSpawn<'a> {
    journal: &'a SpawnJournal,
    guarded: bool,
    pipe_inode: u64,
}

impl PendingSpawn<'_> {
    /// Whether a guardian watches this spawn (without one, the leader must die with the server
    /// by itself: `PR_SET_PDEATHSIG`).
    pub fn guarded(&self) -> bool {
        self.guarded
    }

    /// The spawn failed: nothing for the guardian to watch.
    pub fn failed(self) {
        if self.guarded {
            guardian::spawn_failed(self.pipe_inode);
        }
    }

    /// The process was spawned. With its `identity` (`None` when its start time could not be
    /// read: it is gone already and can never be verified), the guardian watches it and the
    /// history gets its row; without, nobody records it. The returned [`ReapNote`] tells the
    /// guardian of the reap.
    pub fn spawned(self, identity: Option<&LiveProcess>) -> ReapNote {
        if self.guarded {
            match identity {
                Some(identity) => guardian::spawned(self.pipe_inode, identity),
                // Gone already: its exit is on the way; nothing for the guardian to watch.
                None => guardian::spawn_failed(self.pipe_inode),
            }
        }
        // Without a start time the row could never be verified: do not write one.
        if let Some(identity) = identity {
            self.journal.history.process_started(identity.clone());
        }
        ReapNote {
            guarded: self.guarded,
        }
    }
}

/// What is told when a spawned leader is reaped ([`PendingSpawn::spawned`]).
#[derive(Debug)]
#[must_use = "the guardian must learn of the reap"]
pub struct ReapNote {
    guarded: bool,
}

impl ReapNote {
    /// The leader `pid` was reaped and its group killed: the guardian forgets it.
    pub fn reaped(self, pid: u32) {
        if self.guarded {
            guardian::reaped(pid);
        }
    }
}
