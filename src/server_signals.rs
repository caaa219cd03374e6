//! The signals `vigil serve` acts on (SIGTERM, SIGINT, SIGHUP, SIGUSR1), received on a thread
//! of their own and handed to the server's loop as messages.
//!
//! Owns the handlers and the thread. A dedicated thread blocked on signal-hook's self-pipe
//! wakes for each signal whatever the runtime is doing; tokio's signal streams, used before,
//! lost a SIGTERM about once in forty busy test runs (the handler ran, the stream never
//! yielded, the server kept running until SIGKILL). It must not act on a signal itself: the
//! server's loop decides what each means.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use tokio::sync::mpsc;

/// A signal the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerSignal {
    /// SIGTERM: shut down (a second one: exit now).
    Terminate,
    /// SIGINT: as SIGTERM.
    Interrupt,
    /// SIGHUP: reload the config.
    Hangup,
    /// SIGUSR1: write the dump to the log.
    User1,
}

impl ServerSignal {
    /// The signal's name, for the log.
    pub fn name(self) -> &'static str {
        match self {
            ServerSignal::Terminate => "SIGTERM",
            ServerSignal::Interrupt => "SIGINT",
            ServerSignal::Hangup => "SIGHUP",
            ServerSignal::User1 => "SIGUSR1",
        }
    }
}

/// Install the handlers and start the thread; the signals arrive on the receiver, in order.
/// Installed before the tree starts, so an early SIGTERM is not lost.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<ServerSignal>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("vigil-signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                let signal = match raw {
                    SIGTERM => ServerSignal::Terminate,
                    SIGINT => ServerSignal::Interrupt,
                    SIGHUP => ServerSignal::Hangup,
                    SIGUSR1 => ServerSignal::User1,
                    _ => continue,
                };
                if tx.send(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
