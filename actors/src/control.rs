//! The control socket server: accepts connections on `<data_dir>/vigil.sock`, decodes requests,
//! asks the root supervisor, encodes replies.
//!
//! Owns the listening socket (its file, its mode, its removal), one task per connection, the
//! peer-credential check and the time bound on every call into the tree. It must not decide
//! anything about workers or gather state itself: every request becomes one [`RootMsg`] call,
//! and the root's answer (or its silence) becomes one reply.
//!
//! # Guarantees
//! - The socket file is created with mode 0600 and only peers with the server's uid or root are
//!   served; others get a `permission_denied` reply, a warning in the log, and a closed socket.
//! - Every call into the tree is bounded ([`Timeouts`]): a stuck root yields a `timeout` reply,
//!   never a hung connection.
//! - A malformed or unknown request gets an error reply and the connection stays usable; a
//!   request line longer than [`MAX_REQUEST_BYTES`] gets a `too_large` reply and the connection
//!   is closed. Nothing a client sends stops the server.
//! - Clients cannot hold the server's resources ([`Limits`]): beyond `max_connections` a new
//!   connection gets a `busy` reply and is closed; a connection that sends no complete request
//!   for `idle` is closed; a reply the client does not read within `write` is abandoned and the
//!   connection closed.
//! - Out of descriptors (`EMFILE`), the socket still answers: a descriptor held in reserve
//!   ([`reserve_descriptor`]) is given up for the waiting client; accept failures are logged
//!   once and backed off (up to 1 s), not logged 20 times a second.
//! - [`ControlServer::close`] stops accepting, removes the socket file, lets requests already
//!   being answered write their replies (bounded), and ends every connection. Dropping the
//!   [`ControlServer`] does the same without waiting: in-flight replies are lost.
//!
//! # Caveats
//! - [`ControlServer::start`] removes whatever file is at the socket path: the caller must hold
//!   the instance lock first, so that the file can only be a dead server's leftover.
//! - The socket exists with the process umask's mode for the instant between `bind` and `chmod`;
//!   the peer-credential check is what guards that instant.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::protocol::WorkerAction;
use crate::protocol::{
    ErrorKind, MAX_REQUEST_BYTES, Reply, Request, Subscribed, Timeouts, parse_request,
};
use crate::root::RootMsg;
use crate::timefmt::millis;

/// Why the control server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlServerError {
    /// A stale socket file could not be removed.
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `bind` failed (path too long, no such folder, permissions, ...).
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The socket's mode could not be set to 0600.
    #[error("cannot set mode 0600 on {path}: {source}")]
    Chmod {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A running control server. Dropping it stops it and removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    accept: JoinHandle<()>,
    closing: watch::Sender<bool>,
}

impl ControlServer {
    /// Listen on `socket_path` with the default [`Timeouts`]. Must be called inside a tokio
    /// runtime, after the instance lock is held (an existing file at the path is removed).
    pub fn start(
        socket_path: &Path,
        root: ActorRef<RootMsg>,
    ) -> Result<ControlServer, ControlServerError> {
        ControlServer::start_with(socket_path, root, Timeouts::default())
    }

    /// Listen on `socket_path`, bounding calls into the tree with `timeouts`
    /// (use [`Timeouts::for_tree`] so the client and the server agree), with the default
    /// [`Limits`].
    pub fn start_with(
        socket_path: &Path,
        root: ActorRef<RootMsg>,
        timeouts: Timeouts,
    ) -> Result<ControlServer, ControlServerError> {
        ControlServer::start_with_limits(socket_path, root, timeouts, Limits::default())
    }

    /// [`ControlServer::start_with`], with explicit bounds on what clients may hold.
    pub fn start_with_limits(
        socket_path: &Path,
        root: ActorRef<RootMsg>,
        timeouts: Timeouts,
        limits: Limits,
    ) -> Result<ControlServer, ControlServerError> {
        let path = socket_path.to_path_buf();
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(socket = %path.display(), "removed a stale control socket"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ControlServerError::RemoveStale { path, source }),
        }
        // Out of descriptors (the workers took them): the reserve makes room for the socket.
        let listener = match UnixListener::bind(&path) {
            Err(err) if out_of_descriptors(&err) && release_reserve() => UnixListener::bind(&path),
            other => other,
        }
        .map_err(|source| ControlServerError::Bind {
            path: path.clone(),
            source,
        })?;
        if let Err(source) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        {
            let _ = std::fs::remove_file(&path);
            return Err(ControlServerError::Chmod { path, source });
        }
        let (closing, closing_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            root,
            timeouts,
            limits,
            uid: effective_uid(),
            closing: closing_rx,
        });
        let accept = tokio::spawn(accept_loop(listener, shared));
        tracing::info!(socket = %path.display(), "control socket listening");
        Ok(ControlServer {
            path,
            accept,
            closing,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting and remove the socket file; let requests being answered write their
    /// replies (at most [`CLOSE_GRACE`]), then end every connection. Call it after the tree has
    /// stopped, so that the reply to `shutdown` reaches its client.
    pub async fn close(mut self) {
        let _ = self.closing.send(true);
        self.remove_file();
        if tokio::time::timeout(CLOSE_GRACE + Duration::from_secs(1), &mut self.accept)
            .await
            .is_err()
        {
            tracing::warn!("control socket: connections did not end in time");
        }
    }

    fn remove_file(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(socket = %self.path.display(), error = %err, "cannot remove the control socket")
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept.abort();
        self.remove_file();
    }
}

/// What clients may hold of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more gets a `busy` reply and is closed.
    pub max_connections: usize,
    /// A connection that sends no complete request for this long is closed.
    pub idle: Duration,
    /// A reply the client has not read within this long is abandoned, and the connection closed.
    pub write: Duration,
}

impl Default for Limits {
    /// 64 connections (the CLI uses one per command), 60 s idle, 10 s to take a reply.
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle: Duration::from_secs(60),
            write: Duration::from_secs(10),
        }
    }
}

/// What every connection task needs.
struct Shared {
    root: ActorRef<RootMsg>,
    timeouts: Timeouts,
    limits: Limits,
    uid: u32,
    /// Turns `true` when the server closes.
    closing: watch::Receiver<bool>,
}

/// How long [`ControlServer::close`] lets in-flight requests finish.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Resolves once the server is closing (or its handle is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|&c| c).await;
}

/// A descriptor held in reserve (`/dev/null`), process-wide: when the server runs out of
/// descriptors, it is closed so that the control socket can still accept (and answer) one
/// connection; it is taken back as soon as a descriptor is free again.
static RESERVE: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

/// Put a descriptor in reserve for the control socket, if none is held yet. The server calls it
/// before the tree starts (while descriptors are plentiful); the accept loop calls it again
/// after the reserve was used. Returns whether one is held.
pub fn reserve_descriptor() -> bool {
    let mut held = RESERVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if held.is_none() {
        *held = std::fs::File::open("/dev/null").ok();
    }
    held.is_some()
}

fn release_reserve() -> bool {
    RESERVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .is_some()
}

/// EMFILE or ENFILE: out of descriptors (the process's or the system's).
fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// How often a recurring accept failure is logged at most.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The longest pause of the accept loop while descriptors are exhausted.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut closing = shared.closing.clone();
    // While accept fails: the next pause, and how many failures were not logged.
    let mut backoff: Option<(Duration, u64)> = None;
    // When an accept failure was last logged: a server that keeps running out (a client
    // answered with the reserve in between) says so once per ACCEPT_LOG_EVERY, not per client.
    let mut logged: Option<tokio::time::Instant> = None;
    reserve_descriptor();
    loop {
        tokio::select! {
            () = closed(&mut closing) => break,
            accepted = listener.accept() => {
                let accepted = match accepted {
                    Err(err) if out_of_descriptors(&err) && release_reserve() => {
                        // The spare descriptor is free now: the waiting client takes it.
                        let retried = match tokio::time::timeout(
                            Duration::from_millis(100),
                            listener.accept(),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(err),
                        };
                        if retried.is_ok() {
                            tracing::warn!("control socket: out of file descriptors; answering with the reserved one");
                        }
                        retried
                    }
                    other => other,
                };
                match accepted {
                    Ok((stream, _)) => {
                        if let Some((_, suppressed)) = backoff.take() {
                            tracing::info!(suppressed, "control socket: accepting again");
                        }
                        if connections.len() >= shared.limits.max_connections {
                            refuse_busy(&stream, shared.limits.max_connections);
                        } else {
                            connections.spawn(serve_connection(stream, shared.clone()));
                        }
                    }
                    Err(err) => {
                        // Said once; then back off (50 ms doubling to 1 s) instead of spinning.
                        let (pause, suppressed) = match backoff {
                            None => {
                                let now = tokio::time::Instant::now();
                                if logged.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY) {
                                    logged = Some(now);
                                    tracing::warn!(error = %err, "control socket: accept failed; backing off (not logged again for a minute)");
                                }
                                (Duration::from_millis(50), 0)
                            }
                            Some((pause, n)) => ((pause * 2).min(ACCEPT_BACKOFF_MAX), n + 1),
                        };
                        backoff = Some((pause, suppressed));
                        tokio::time::sleep(pause).await;
                        reserve_descriptor();
                    }
                }
            },
            // Reap finished connection tasks so the set does not grow with the server's age;
            // a closed connection frees a descriptor: take the reserve back first.
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                reserve_descriptor();
            }
        }
    }
    drop(listener);
    // Idle connections end at once (they watch `closing`); answers in flight get a moment.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_GRACE, drain).await.is_err() {
        tracing::warn!("control socket: requests still in flight at close were cut off");
    }
}

/// One connection too many: a `busy` reply if the socket takes it at once (never waiting),
/// then close.
fn refuse_busy(stream: &UnixStream, max: usize) {
    tracing::warn!(max, "control socket: too many connections; refusing one");
    let reply = Reply::error(
        ErrorKind::Busy,
        format!("the server already serves {max} connections; try again"),
    );
    let _ = stream.try_write(reply.to_line().as_bytes());
}

/// Write one reply, bounded by the write limit. `false`: the client is gone or not reading.
async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
    limit: Duration,
) -> bool {
    match tokio::time::timeout(limit, write.write_all(reply.to_line().as_bytes())).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!(
                limit_ms = millis(limit),
                "control socket: the client did not read its reply; closing"
            );
            false
        }
    }
}

/// Serve one connection: check the peer, then answer request lines until EOF or an oversize line.
async fn serve_connection(stream: UnixStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let peer = match read.as_ref().peer_cred() {
        Ok(cred) => cred,
        Err(err) => {
            tracing::warn!(error = %err, "control socket: cannot read the peer's credentials; refusing");
            let reply = Reply::error(
                ErrorKind::PermissionDenied,
                "the server could not check who you are",
            );
            send(&mut write, &reply, shared.limits.write).await;
            return;
        }
    };
    if peer.uid() != shared.uid && peer.uid() != 0 {
        tracing::warn!(
            peer_uid = peer.uid(),
            peer_pid = peer.pid(),
            "control socket: refused a client of another user"
        );
        let reply = Reply::error(
            ErrorKind::PermissionDenied,
            format!(
                "uid {} may not control this server (uid {})",
                peer.uid(),
                shared.uid
            ),
        );
        send(&mut write, &reply, shared.limits.write).await;
        return;
    }

    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    let mut closing = shared.closing.clone();
    loop {
        line.clear();
        let limit = (MAX_REQUEST_BYTES + 1) as u64;
        let mut limited = (&mut reader).take(limit);
        let read = tokio::select! {
            read = tokio::time::timeout(shared.limits.idle, limited.read_until(b'\n', &mut line)) => match read {
                Ok(read) => read,
                Err(_) => {
                    tracing::debug!("control socket: idle connection closed");
                    return;
                }
            },
            () = closed(&mut closing) => return,
        };
        let n = match read {
            Ok(n) => n,
            Err(err) => {
                tracing::debug!(error = %err, "control socket: read failed");
                return;
            }
        };
        if n == 0 {
            return; // EOF
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        if line.len() > MAX_REQUEST_BYTES {
            tracing::warn!(
                limit = MAX_REQUEST_BYTES,
                "control socket: request too large; closing"
            );
            let reply = Reply::error(
                ErrorKind::TooLarge,
                format!("the request is longer than {MAX_REQUEST_BYTES} bytes"),
            );
            send(&mut write, &reply, shared.limits.write).await;
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            if complete {
                continue; // blank lines are allowed between requests
            }
            return;
        }
        let reply = match parse_request(&line) {
            Ok(Request::Events) => {
                // The connection becomes a stream until the server stops or the client goes.
                stream_events(&shared, reader, write).await;
                return;
            }
            Ok(request) => answer(&shared, request).await,
            Err(err) => {
                tracing::debug!(error = %err, "control socket: bad request");
                Reply::failure(err)
            }
        };
        if !send(&mut write, &reply, shared.limits.write).await {
            return; // the client went away, or does not read
        }
        if !complete {
            return; // EOF right after the last request
        }
    }
}

/// `events`: subscribe through the root, acknowledge, then forward every event. Writes are
/// not time-bounded here (a paused `vigil events | less` must not be cut off): a slow client
/// only ever delays itself, since the bus never waits for it (see [`crate::events`]).
async fn stream_events(
    shared: &Shared,
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    let sub = match ask(
        &shared.root,
        RootMsg::Subscribe,
        shared.timeouts.query,
        "the subscription",
    )
    .await
    {
        Ok(sub) => sub,
        Err(reply) => {
            send(&mut write, &reply, shared.limits.write).await;
            return;
        }
    };
    let ack = Reply::success(&Subscribed {
        workers: sub.workers,
    });
    if !send(&mut write, &ack, shared.limits.write).await {
        return;
    }
    tracing::debug!("control socket: an event subscriber joined");
    let mut closing = shared.closing.clone();
    crate::events::forward(sub.events, reader, write, async move {
        closed(&mut closing).await
    })
    .await;
    tracing::debug!("control socket: an event subscriber left");
}

/// One request → one call into the root, bounded.
async fn answer(shared: &Shared, request: Request) -> Reply {
    let timeout = shared.timeouts.for_request(&request);
    let root = &shared.root;
    match request {
        Request::Ping => Reply::success(&serde_json::json!({ "pid": std::process::id() })),
        Request::Dump => match ask(root, RootMsg::Dump, timeout, "the dump").await {
            Ok(dump) => Reply::success(&dump),
            Err(reply) => reply,
        },
        Request::Status { worker } => {
            let msg = |reply| RootMsg::Status { worker, reply };
            match ask(root, msg, timeout, "the status request").await {
                Ok(Ok(snapshots)) => Reply::success(&snapshots),
                Ok(Err(err)) => Reply::failure(err.into()),
                Err(reply) => reply,
            }
        }
        Request::Act { worker, action } => {
            let what = format!("{} {worker}", action_verb(action));
            let msg = |reply| RootMsg::Act {
                worker,
                action,
                reply,
            };
            match ask(root, msg, timeout, &what).await {
                Ok(Ok(snapshot)) => Reply::success(&snapshot),
                Ok(Err(err)) => Reply::failure(err.into()),
                Err(reply) => reply,
            }
        }
        // Handled by `stream_events` before `answer` is called; never reached.
        Request::Events => Reply::error(
            ErrorKind::BadRequest,
            "events is a subscription, not a question",
        ),
        Request::Reload { dry_run } => {
            tracing::info!(dry_run, "control socket: reload requested");
            let msg = |reply| RootMsg::Reload {
                dry_run,
                reply: Some(reply),
            };
            match ask(root, msg, timeout, "the reload").await {
                Ok(Ok(report)) => Reply::success(&report),
                Ok(Err(err)) => Reply::failure(err.into()),
                Err(reply) => reply,
            }
        }
        Request::Shutdown => {
            tracing::info!("control socket: shutdown requested");
            let msg = |reply| RootMsg::Shutdown(Some(reply));
            match ask(root, msg, timeout, "the shutdown").await {
                Ok(()) => Reply::success(&()),
                Err(reply) => reply,
            }
        }
    }
}

fn action_verb(action: WorkerAction) -> &'static str {
    match action {
        WorkerAction::Start => "start",
        WorkerAction::Stop => "stop",
        WorkerAction::Restart => "restart",
    }
}

/// Call the root with a bound; every way the call can fail becomes an error reply.
async fn ask<T, F>(
    root: &ActorRef<RootMsg>,
    msg: F,
    timeout: Duration,
    what: &str,
) -> Result<T, Reply>
where
    T: Send + 'static,
    F: FnOnce(ractor::RpcReplyPort<T>) -> RootMsg,
{
    match root.call(msg, Some(timeout)).await {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => {
            tracing::warn!(
                what,
                timeout_ms = millis(timeout),
                "control socket: the tree did not answer in time"
            );
            Err(Reply::error(
                ErrorKind::Timeout,
                format!(
                    "the supervision tree did not answer {what} within {}",
                    crate::render::duration(timeout)
                ),
            ))
        }
        Ok(CallResult::SenderError) => Err(Reply::error(
            ErrorKind::Unavailable,
            format!(
                "the root supervisor dropped {what} without answering (is the server stopping?)"
            ),
        )),
        Err(_) => Err(Reply::error(
            ErrorKind::Unavailable,
            "the root supervisor is not running (the server is stopping)",
        )),
    }
}
