//! Progress of the current cycle, and the thread that turns it into `WATCHDOG=1`, `STATUS=`
//! and, on a terminal, a progress line.
//!
//! Owns the shared counters (atomics bumped by the walker threads and the database thread),
//! the ticker thread, the worker's log setup (tracing to stderr), and the terminal progress
//! line. It must not index anything.
//!
//! # Watchdog rule
//! Between cycles the ticker sends `WATCHDOG=1` every [`WATCHDOG_EVERY`]. During a cycle it
//! sends it only while the cycle makes progress (a file walked, a batch written, a busy retry)
//! within the last [`STALL`]: a cycle stuck in a hung read stops the heartbeat, so the
//! supervisor's `heartbeat_timeout` can kill and restart the worker.
//!
//! # Caveats
//! The progress line is drawn on stderr with `\r` and cleared before every log line; it is
//! only drawn when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::notify::Notifier;

/// How often the ticker sends `WATCHDOG=1` while the worker is healthy.
pub const WATCHDOG_EVERY: Duration = Duration::from_secs(2);
/// A cycle with no progress for this long gets no more heartbeats.
pub const STALL: Duration = Duration::from_secs(20);
/// How often `STATUS=` is refreshed during a cycle.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// What the worker is doing; the ticker's view of the run loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Between cycles (or before the first).
    Idle = 0,
    /// Walking the roots (and loading the previous index).
    Walking = 1,
    /// Reading new and changed files, and writing their rows.
    Reading = 2,
    /// Writing the last rows and the cycle's figures.
    Writing = 3,
}

/// Counters shared by the cycle's threads.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    cycle: AtomicU64,
    files: AtomicU64,
    to_read: AtomicU64,
    read: AtomicU64,
    bytes: AtomicU64,
    beats: AtomicU64,
}

impl Progress {
    /// Something moved forward (a batch written, a retry attempt).
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// One file walked.
    pub fn walked(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    /// Reading starts: `n` files to read.
    pub fn start_reading(&self, n: u64) {
        self.to_read.store(n, Ordering::Relaxed);
        self.set_phase(Phase::Reading);
    }

    /// One file read (or failed), `bytes` of it read.
    pub fn read(&self, bytes: u64) {
        self.read.fetch_add(1, Ordering::Relaxed);
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// A new cycle starts: counters reset.
    pub fn start_cycle(&self, n: u64) {
        self.cycle.store(n, Ordering::Relaxed);
        self.files.store(0, Ordering::Relaxed);
        self.to_read.store(0, Ordering::Relaxed);
        self.read.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.set_phase(Phase::Walking);
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.beat();
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Walking,
            2 => Phase::Reading,
            3 => Phase::Writing,
            _ => Phase::Idle,
        }
    }

    fn activity(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
            + self.read.load(Ordering::Relaxed)
            + self.beats.load(Ordering::Relaxed)
    }

    fn describe(&self) -> String {
        let n = self.cycle.load(Ordering::Relaxed);
        let files = self.files.load(Ordering::Relaxed);
        let read = self.read.load(Ordering::Relaxed);
        let to_read = self.to_read.load(Ordering::Relaxed);
        let mb = self.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        match self.phase() {
            Phase::Idle => format!("cycle {n}: idle"),
            Phase::Walking => format!("cycle {n}: walking, {files} files found"),
            Phase::Reading => format!(
                "cycle {n}: reading {read}/{to_read} new or changed files ({mb:.1} MB) of {files}"
            ),
            Phase::Writing => format!("cycle {n}: writing, {files} files, {mb:.1} MB read"),
        }
    }
}

/// The ticker thread; stops when dropped.
pub struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts the ticker. `tty`: draw a progress line on stderr.
    pub fn spawn(progress: Arc<Progress>, notifier: Arc<Notifier>, tty: bool) -> Ticker {
        let (stop, rx) = crossbeam_channel::bounded::<()>(0);
        let tick = if tty {
            Duration::from_millis(150)
        } else {
            Duration::from_millis(500)
        };
        let thread = std::thread::Builder::new()
            .name("index-ticker".into())
            .spawn(move || {
                let mut state = TickState::new();
                // Ends when the Ticker is dropped (the sender goes away).
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                    state.tick(&progress, &notifier, tty);
                }
            });
        match thread {
            Ok(t) => Ticker {
                stop: Some(stop),
                thread: Some(t),
            },
            Err(e) => {
                tracing::warn!("cannot start the progress thread: {e}; no WATCHDOG or progress");
                Ticker {
                    stop: None,
                    thread: None,
                }
            }
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        clear_line();
    }
}

struct TickState {
    last_activity: u64,
    last_change: Instant,
    last_watchdog: Option<Instant>,
    last_status: Option<Instant>,
    stalled: bool,
}

impl TickState {
    fn new() -> TickState {
        TickState {
            last_activity: 0,
            last_change: Instant::now(),
            last_watchdog: None,
            last_status: None,
            stalled: false,
        }
    }

    fn tick(&mut self, progress: &Progress, notifier: &Notifier, tty: bool) {
        let now = Instant::now();
        let phase = progress.phase();
        let activity = progress.activity();
        if activity != self.last_activity {
            self.last_activity = activity;
            self.last_change = now;
        }
        let alive = phase == Phase::Idle || now.duration_since(self.last_change) < STALL;
        if alive {
            if self.stalled {
                tracing::info!("the cycle is making progress again");
                self.stalled = false;
            }
            if self
                .last_watchdog
                .is_none_or(|t| now.duration_since(t) >= WATCHDOG_EVERY)
            {
                notifier.watchdog();
                self.last_watchdog = Some(now);
            }
        } else if !self.stalled {
            self.stalled = true;
            tracing::warn!(
                "the cycle has made no progress for {} s; withholding WATCHDOG",
                STALL.as_secs()
            );
        }
        if phase == Phase::Idle {
            return;
        }
        let text = progress.describe();
        if tty {
            draw_line(&text);
        }
        if self
            .last_status
            .is_none_or(|t| now.duration_since(t) >= STATUS_EVERY)
        {
            notifier.status(&text);
            self.last_status = Some(now);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Terminal line and logging

/// True while a progress line is on the terminal (guarded: log writes clear it first).
static LINE: Mutex<bool> = Mutex::new(false);

fn draw_line(text: &str) {
    let mut active = LINE.lock().unwrap_or_else(|p| p.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{text}");
    let _ = err.flush();
    *active = true;
}

/// Removes the progress line, if one is drawn.
pub fn clear_line() {
    let mut active = LINE.lock().unwrap_or_else(|p| p.into_inner());
    if *active {
        let _ = std::io::stderr().write_all(b"\r\x1b[2K");
        *active = false;
    }
}

/// True when stderr is a terminal (progress line wanted).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// stderr, clearing the progress line before each log record.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut active = LINE.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        if *active {
            err.write_all(b"\r\x1b[2K")?;
            *active = false;
        }
        err.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sets up logging to stderr (the server captures it into the worker's log file). Honours
/// `RUST_LOG`; default level `info`. Under the server (`VIGIL_WORKER` set) lines carry no
/// timestamp of their own: the server stamps each line of the log file. Harmless if a
/// subscriber is already installed.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(stderr_is_tty())
        .with_target(false);
    let _ = if std::env::var_os("VIGIL_WORKER").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
