//! `vigil serve`: run the supervision tree in the foreground until asked to stop.
//!
//! Owns the server's start-up order and its signal handling: config → directories → instance
//! lock → guardian forked (while there is one thread) → server log →
//! file-descriptor limit → history → orphan sweep → HTTP (with `http:`) → tree → control socket →
//! systemd readiness; then SIGTERM/SIGINT (or `vigil shutdown`) stop the workers in reverse
//! order and the process exits 0 (3 when the root intensity was exceeded); history gets at most
//! [`FLUSH_BOUND`](vigil_actors::history::FLUSH_BOUND) to flush, and a second signal exits at
//! once (status 1). It must not make
//! supervision decisions: the actors do.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use vigil_actors::cgroup;
use vigil_actors::containment::Containment;
use vigil_actors::control::ControlServer;
use vigil_actors::events::EventBus;
use vigil_actors::guardian::{self, Role};
use vigil_actors::history::History;
use vigil_actors::http::{Exporter, HttpServer};
use vigil_actors::lock::InstanceLock;
use vigil_actors::orphan;
use vigil_actors::protocol::Timeouts;
use vigil_actors::render;
use vigil_actors::root::{RootMsg, TreeOutcome};
use vigil_actors::sd_notify::SdNotify;
use vigil_actors::tree::Tree;

use crate::config;
use crate::error::CliError;

/// Lines the server log may hold in memory while its writer thread catches up (beyond that,
/// lines are dropped, never the server blocked). tracing-appender's default, 128,000, allocates
/// and touches a 4 MiB queue at start: a third of an idle server's memory, and every page of it
/// copied into each fork (slower restarts). 8192 lines take 256 KiB and hold a 1000-worker storm.
const LOG_LINES_BUFFERED: usize = 8192;

/// How long an exiting server waits for its guardian (which may still have groups to kill:
/// their grace, then `SIGKILL`).
const GUARDIAN_EXIT_WAIT: Duration = Duration::from_secs(10);

/// How long a leftover group of a dead server gets between SIGTERM and SIGKILL.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Run the server.
pub fn run(config_path: &Path) -> Result<ExitCode, CliError> {
    let loaded = config::load(config_path)?;
    let tree = loaded.tree;
    for dir in [&tree.data_dir, &tree.log_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
    }
    // The lock comes first: nothing of a running server (its log, socket, history, orphans)
    // is touched before we know we are alone.
    let _lock = InstanceLock::acquire_or_wait(&tree.lock_path(), |pid| {
        // The server log is not open yet (the lock guards it): say it on stderr.
        eprintln!(
            "vigil: the previous server (pid {pid}) is gone; waiting for its guardian to finish killing what it left"
        );
    })?;
    // Still one thread: the guardian is forked now, and shares the lock.
    let guardian = match guardian::start() {
        Ok(Role::Server(g)) => Ok(g),
        Ok(Role::Guardian(leftovers)) => return guardian_cleanup(leftovers, &tree),
        Err(e) => Err(e),
    };
    let _log_guard = init_server_log(&tree.log_dir)?;
    let mut tree = tree;
    // Still one thread. Containment is decided before the first worker exists: with cgroups,
    // the server (and its guardian) may first move into a leaf of their own.
    let guardian_pid: Vec<u32> = guardian.iter().map(|g| g.pid()).collect();
    tree.containment = match Containment::setup(tree.cgroup, &tree.data_dir, &guardian_pid) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "not starting");
            return Err(e.into());
        }
    };
    for dir in tree.containment.kill_roots() {
        guardian::contain(&dir);
    }
    if let Some(pid) = guardian_pid.first() {
        vigil_actors::reaper::Registry::lock().register(*pid);
    }
    if let Err(e) = vigil_actors::reaper::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphans of workers go to init");
    }
    let guardian_exit = match guardian {
        Ok(g) => watch_guardian(g),
        Err(e) => {
            tracing::error!(
                error = %e,
                "no guardian: if the server dies, only worker leaders die with it (PR_SET_PDEATHSIG)"
            );
            None
        }
    };
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vigil")
        .build()
        .map_err(|e| CliError::io("cannot start the runtime", e))?;
    let containment = tree.containment.clone();
    let result = runtime.block_on(serve(tree, reload_source(config_path)));
    drop(runtime);
    containment.teardown();
    // Let the guardian go (it kills whatever is still registered) and wait for it: the lock
    // is free when this process is gone.
    if let Some(exited) = guardian_exit {
        guardian::dismiss();
        if exited.recv_timeout(GUARDIAN_EXIT_WAIT).is_err() {
            tracing::warn!("the guardian has not exited yet; it keeps the lock until it does");
        }
    }
    result
}

/// The guardian's life after the server: kill what the server left running, record it, exit.
/// Nothing left (a clean shutdown) means nothing to do.
fn guardian_cleanup(
    leftovers: guardian::Leftovers,
    spec: &vigil_actors::spec::TreeSpec,
) -> Result<ExitCode, CliError> {
    if leftovers.is_empty() {
        // Nothing alive, but the dead server's (empty) cgroups are still there.
        for dir in &leftovers.cgroups {
            cgroup::remove_workers_tree(dir);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _log_guard = init_server_log(&spec.log_dir)?;
    let cgroups = leftovers.cgroups.clone();
    let rows = leftovers.into_rows();
    tracing::warn!(
        groups = rows.len(),
        "guardian: the server died; killing the worker groups it left"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("guardian: cannot start a runtime", e))?;
    runtime.block_on(async {
        let db = spec.history_path();
        let history = History::open(&db)?;
        let report = orphan::sweep_after_crash(&history, &db, ORPHAN_GRACE, rows).await;
        // What left its process group (setsid, double fork) is still in the cgroups.
        let mut escaped = 0;
        for dir in &cgroups {
            escaped += cgroup::tree_members(dir).len();
            cgroup::kill_tree(Some(dir));
        }
        // Dead processes leave their cgroups within moments; then the tree can go.
        for _ in 0..100 {
            if cgroups.iter().all(|d| cgroup::tree_members(d).is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for dir in &cgroups {
            cgroup::remove_workers_tree(dir);
        }
        tracing::warn!(
            killed = report.killed.len(),
            stale = report.stale.len(),
            escaped,
            "guardian: cleanup done"
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Reap the guardian when it exits: expected after [`guardian::dismiss`]; before that it died,
/// and spawns fall back to `PR_SET_PDEATHSIG`. A thread blocked in `waitpid` costs no
/// wake-ups. The receiver gets one message when the guardian has been reaped.
fn watch_guardian(g: guardian::Guardian) -> Option<std::sync::mpsc::Receiver<()>> {
    let pid = g.pid();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("vigil-guardian-watch".into())
        .spawn(move || {
            let Ok(raw) = libc::pid_t::try_from(pid) else {
                return;
            };
            let mut status = 0;
            // SAFETY: waitpid on our own child, with a valid status pointer.
            let ret = unsafe { libc::waitpid(raw, &mut status, 0) };
            if guardian::dismissed() {
                tracing::debug!(pid, status, "the guardian exited");
            } else {
                guardian::forget();
                tracing::error!(
                    pid,
                    ret,
                    status,
                    "the guardian died; from now on only worker leaders die with the server"
                );
            }
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the guardian");
            None
        }
    }
}

/// How a reload reads the config: the same path, the same validation as at start (and as
/// `vigil check`, whose message an invalid file gets).
fn reload_source(config_path: &Path) -> vigil_actors::root::ReloadSource {
    let path = config_path.to_path_buf();
    std::sync::Arc::new(move || {
        config::load(&path)
            .map(|loaded| loaded.tree)
            .map_err(|e| e.to_string())
    })
}

async fn serve(
    spec: vigil_actors::spec::TreeSpec,
    reload: vigil_actors::root::ReloadSource,
) -> Result<ExitCode, CliError> {
    let history = History::open(&spec.history_path())?;
    let mut recorded = std::collections::HashSet::new();
    match orphan::sweep(&history, &spec.history_path(), ORPHAN_GRACE).await {
        Ok(report) => {
            recorded.extend(report.killed.iter().map(|k| k.row.worker.clone()));
            tracing::info!(?report, "orphan sweep done");
        }
        Err(e) => tracing::error!(error = %e, "orphan sweep failed"),
    }
    let leftovers = spec.containment.sweep_leftovers();
    if !leftovers.is_empty() {
        tracing::warn!(
            ?leftovers,
            "killed processes a previous server left in its workers' cgroups"
        );
        // Escapees of a worker the sweep just recorded are part of that record; a worker
        // with no row at all (killed before its spawn was written down) gets one of its own.
        let unrecorded: Vec<_> = leftovers
            .into_iter()
            .filter(|l| !recorded.contains(&l.worker))
            .collect();
        orphan::record_cgroup_leftovers(&history, &unrecorded);
    }
    if vigil_actors::reaper::active() {
        tokio::spawn(vigil_actors::reaper::run());
    }
    // Install the handlers before the tree starts, so an early SIGTERM is not lost.
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigusr1 = signal(SignalKind::user_defined1()).map_err(signal_error)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_error)?;

    let socket = spec.socket_path();
    let config_path = spec.config_path.clone();
    let workers = spec.workers.len();
    // The client derives the same bounds from the same config (see `protocol::Timeouts`).
    let timeouts = Timeouts::for_tree(&spec);
    // Before the workers take descriptors: the control socket's spare one (EMFILE).
    vigil_actors::control::reserve_descriptor();
    // HTTP listens before the first worker starts: a bad address stops nothing.
    let (events, http) = start_http(&spec).await?;
    let tree = Tree::start_with(spec, history.clone(), events, Some(reload)).await?;
    let control = match ControlServer::start_with(&socket, tree.root().clone(), timeouts) {
        Ok(c) => c,
        Err(e) => {
            tree.request_shutdown();
            tree.wait().await;
            return Err(CliError::ControlSocket(e));
        }
    };
    let sd = SdNotify::from_env();
    let _sd_watchdog = sd.as_ref().and_then(|sd| {
        sd.ready();
        sd.spawn_watchdog()
    });
    let _record = config_path.and_then(|config| {
        crate::server_record::write(&config, &socket, timeouts)
            .inspect_err(|e| tracing::warn!(error = %e, "cannot leave the server record: control commands need a parsable config or --socket"))
            .ok()
    });
    tracing::info!(pid = std::process::id(), workers, socket = %socket.display(), "vigil is up");

    let root = tree.root().clone();
    let wait = tree.wait();
    tokio::pin!(wait);
    let mut stopping = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut wait => break outcome,
            _ = sigterm.recv() => {
                if stopping { exit_now("SIGTERM"); }
                stopping = true;
                tracing::info!("SIGTERM: shutting down");
                if let Some(sd) = &sd { sd.stopping(); }

                let _ = root.cast(RootMsg::Shutdown(None));
            }
            _ = sigint.recv() => {
                if stopping { exit_now("SIGINT"); }
                stopping = true;
                tracing::info!("SIGINT: shutting down");
                if let Some(sd) = &sd { sd.stopping(); }

                let _ = root.cast(RootMsg::Shutdown(None));
            }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = root.cast(RootMsg::Reload { dry_run: false, reply: None });
            }
            _ = sigusr1.recv() => {
                match root.call(RootMsg::Dump, Some(Duration::from_secs(2))).await {
                    Ok(ractor::rpc::CallResult::Success(dump)) => {
                        tracing::info!("SIGUSR1 dump:\n{}", render::dump_text(&dump, false));
                    }
                    _ => tracing::warn!("SIGUSR1: the root did not answer in time"),
                }
            }
        }
    };
    control.close().await;
    if let Some(http) = http {
        http.close().await;
    }
    tokio::select! {
        _ = history.flush_within(vigil_actors::history::FLUSH_BOUND) => {}
        _ = sigterm.recv() => exit_now("SIGTERM"),
        _ = sigint.recv() => exit_now("SIGINT"),
    }
    // Killed processes that had left their groups were adopted by us: reap the last ones.
    vigil_actors::reaper::reap_orphans();
    match outcome {
        Some(TreeOutcome::Shutdown) => {
            tracing::info!("vigil stopped");
            Ok(ExitCode::SUCCESS)
        }
        Some(TreeOutcome::Significant { code }) => {
            tracing::info!(code, "vigil stopped: its significant worker ended");
            Ok(ExitCode::from(code))
        }
        Some(TreeOutcome::RootIntensityExceeded) => Err(CliError::RootIntensityExceeded(
            "the root restart intensity was exceeded; every worker was stopped".into(),
        )),
        None => Err(CliError::RootDied),
    }
}

/// With `http:` set, the metrics exporter (as the event bus's tap) and its server.
async fn start_http(
    spec: &vigil_actors::spec::TreeSpec,
) -> Result<(EventBus, Option<HttpServer>), CliError> {
    let Some(addr) = spec.http else {
        return Ok((EventBus::new(), None));
    };
    let names: Vec<String> = spec.workers.iter().map(|w| w.name.clone()).collect();
    let exporter = Arc::new(Exporter::new(
        env!("CARGO_PKG_VERSION"),
        &names,
        spec.containment.clone(),
    ));
    let server = HttpServer::start(addr, exporter.clone()).await?;
    Ok((EventBus::new().with_tap(exporter), Some(server)))
}

/// A second SIGTERM/SIGINT during shutdown: exit now (status 1). The guardian kills whatever
/// workers are left; unwritten history is lost.
fn exit_now(signal: &str) -> ! {
    tracing::warn!("second {signal} during shutdown: exiting now");
    eprintln!("vigil: second {signal} during shutdown: exiting now");
    std::process::exit(1);
}

fn signal_error(e: std::io::Error) -> CliError {
    CliError::io("cannot install signal handlers", e)
}

/// `<log_dir>/vigil.log` and stderr, with the fields every supervision event carries.
fn init_server_log(
    log_dir: &Path,
) -> Result<tracing_appender::non_blocking::WorkerGuard, CliError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, fmt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join("vigil.log"))
        .map_err(|e| {
            CliError::io(
                format!("cannot open {}", log_dir.join("vigil.log").display()),
                e,
            )
        })?;
    // One formatting pass, one non-blocking writer for both destinations: the supervisors
    // never wait for a slow terminal or disk (lines are dropped if the queue fills).
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .finish(Tee {
            file,
            lost: 0,
            why: String::new(),
        });
    let filter = EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_ansi(false).with_writer(writer))
        .try_init();
    Ok(guard)
}

/// Every server log line goes to `vigil.log` and to stderr (the journal, or a terminal).
/// When the file cannot be written (disk full), the lines are counted, and the first line that
/// can be written again is preceded by `[vigil] N lines lost: disk full`.
struct Tee {
    file: std::fs::File,
    lost: u64,
    why: String,
}

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // stderr is best effort (it may be closed); the file is the record.
        let _ = std::io::stderr().write_all(buf);
        if self.lost > 0 {
            let marker = format!(
                "{} [vigil] {} lines lost: {}\n",
                jiff::Timestamp::now(),
                self.lost,
                self.why
            );
            if self.file.write_all(marker.as_bytes()).is_err() {
                self.lost += 1;
                return Ok(buf.len());
            }
            self.lost = 0;
        }
        if let Err(e) = self.file.write_all(buf) {
            // Said once on stderr; the count goes into the file when it works again.
            self.why = if e.raw_os_error() == Some(libc::ENOSPC) {
                "disk full".into()
            } else {
                e.to_string()
            };
            let _ = writeln!(
                std::io::stderr(),
                "vigil: cannot write vigil.log ({e}); counting lost lines until it works again"
            );
            self.lost = 1;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.file.flush();
        Ok(())
    }
}

/// 1000 workers need several thousand descriptors (two pipes each, plus the log file): raise
/// the soft `RLIMIT_NOFILE` to the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                tracing::warn!("cannot raise the open-file limit");
            }
        }
    }
}
