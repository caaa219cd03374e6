//! Stop signals for the worker: `SIGTERM` and `SIGINT` end it cleanly, with a last log line.
//!
//! Owns the worker's handling of stop signals. It must not touch the database: a cycle cut
//! short is safe, because every batch is one SQLite transaction (an unfinished one rolls back)
//! and the next cycle redoes whatever is missing.
//!
//! The signals are blocked in every thread (the mask is set before any thread starts and is
//! inherited), and one thread waits for them with `sigwait`, so no code runs in a signal
//! handler.

/// Exit status after `SIGTERM` (a requested stop).
pub const EXIT_SIGTERM: i32 = 0;
/// Exit status after `SIGINT` (Ctrl-C), the shell's 128 + 2.
pub const EXIT_SIGINT: i32 = 130;

/// Blocks `SIGTERM` and `SIGINT` and starts the thread that waits for them. Call before any
/// other thread starts. On failure the signals keep their default action (the worker is then
/// simply killed, which is safe too).
pub fn install() {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; pthread_sigmask only reads it.
    let blocked = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    } == 0;
    if !blocked {
        tracing::warn!("cannot block SIGTERM/SIGINT; they will end the worker without a log line");
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("index-signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let (name, code) = match sig {
                    libc::SIGTERM => ("SIGTERM", EXIT_SIGTERM),
                    libc::SIGINT => ("SIGINT", EXIT_SIGINT),
                    _ => continue,
                };
                super::progress::clear_line();
                tracing::info!("received {name}: stopping, exit status {code}");
                std::process::exit(code);
            }
        });
    if let Err(e) = spawned {
        // Unblock again, or the signals would be ignored for good.
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        tracing::warn!(
            "cannot start the signal thread: {e}; SIGTERM/SIGINT end the worker without a log line"
        );
    }
}
