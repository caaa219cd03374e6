//! The floor: the least a supervisor can do — spawn, block in `waitpid`, spawn again.
//!
//! Runs as a separate process (the bench binary re-executed with `--floor-supervisor`), so that
//! its restart latency includes what vigil's does: the kernel waking a sleeping supervisor on
//! its child's death. No runtime, no threads, no pipes, no log, no history. It must not do
//! anything a supervisor could skip: the floor is the figure vigil is compared with.

use std::collections::HashMap;
use std::process::Command;

/// `--floor-supervisor WORKER FILE N`: start workers `0..N`, restart each the moment it dies.
/// Returns only on an error (the harness kills this process when it is done).
pub fn run(args: &[String]) -> Result<(), String> {
    let [worker, file, n] = args else {
        return Err("usage: --floor-supervisor WORKER FILE N".into());
    };
    let n: usize = n.parse().map_err(|e| format!("bad N {n:?}: {e}"))?;
    let spawn = |id: usize| -> Result<i32, String> {
        // std uses posix_spawn (clone with CLONE_VM|CLONE_VFORK) here: the cheapest spawn.
        let child = Command::new(worker)
            .arg(file)
            .arg(id.to_string())
            .spawn()
            .map_err(|e| format!("cannot spawn {worker}: {e}"))?;
        i32::try_from(child.id()).map_err(|e| e.to_string())
    };
    let mut ids: HashMap<i32, usize> = HashMap::with_capacity(n);
    for id in 0..n {
        ids.insert(spawn(id)?, id);
    }
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer; waitpid(-1) reaps any child of ours.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("waitpid: {err}"));
        }
        if let Some(id) = ids.remove(&pid) {
            ids.insert(spawn(id)?, id);
        }
    }
}
