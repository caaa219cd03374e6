//! vigil itself under systemd: the `sd_notify` protocol towards `$NOTIFY_SOCKET`.
//!
//! Owns the datagram socket to the service manager and the watchdog keep-alive task: `READY=1`
//! once the tree is up, `STOPPING=1` on shutdown, `STATUS=...`, and `WATCHDOG=1` every half of
//! `$WATCHDOG_USEC`. It must not decide when the server is ready or stopping: the server calls
//! it at those moments. (The workers' own notify protocol, `VIGIL_NOTIFY_FD`, is a different
//! thing, in the supervisor.)
//!
//! # Caveats
//! - Sends never block: the socket is non-blocking and a failed send is logged, not retried (a
//!   service manager that does not read is not ours to wait for).
//! - Workers should not inherit the manager's variables: remove [`ENV_VARS`] from their
//!   environment (with `NotifyAccess=main` systemd ignores them anyway).
//! - The watchdog task proves that the tokio runtime is alive. A server that wants it to prove
//!   more (the tree answers) can run its own loop calling [`SdNotify::watchdog_ping`] at
//!   [`SdNotify::watchdog_interval`] instead.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// The service manager's variables; remove them from the workers' environment.
pub const ENV_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Why the manager's variables could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SdNotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an `@abstract` name.
    #[error("NOTIFY_SOCKET={0:?} is neither a path nor an @abstract name")]
    BadSocket(String),
    /// The socket could not be created.
    #[error("cannot create the notify socket: {0}")]
    Io(#[from] io::Error),
}

struct Inner {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

/// A connection to the service manager; cheap to clone.
#[derive(Clone)]
pub struct SdNotify {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SdNotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdNotify")
            .field("addr", &self.inner.addr)
            .field("watchdog", &self.inner.watchdog)
            .finish()
    }
}

impl SdNotify {
    /// From the environment: `None` when `NOTIFY_SOCKET` is unset or unusable (logged).
    pub fn from_env() -> Option<SdNotify> {
        let socket = std::env::var("NOTIFY_SOCKET").ok()?;
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        match SdNotify::from_values(&socket, usec.as_deref(), pid.as_deref(), std::process::id()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "systemd notification disabled");
                None
            }
        }
    }

    /// From explicit values (what [`from_env`](SdNotify::from_env) reads): the socket
    /// (`/path` or `@abstract`), `WATCHDOG_USEC`, `WATCHDOG_PID`, and our pid. The watchdog is
    /// on when `watchdog_usec` is a positive number and `watchdog_pid` is unset or `our_pid`.
    pub fn from_values(
        socket: &str,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        our_pid: u32,
    ) -> Result<SdNotify, SdNotifyError> {
        let addr = if let Some(name) = socket.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if socket.starts_with('/') {
            SocketAddr::from_pathname(socket)?
        } else {
            return Err(SdNotifyError::BadSocket(socket.to_string()));
        };
        let for_us = match watchdog_pid {
            None => true,
            Some(p) => p.trim().parse::<u32>().is_ok_and(|p| p == our_pid),
        };
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(SdNotify {
            inner: Arc::new(Inner {
                socket,
                addr,
                watchdog,
            }),
        })
    }

    /// Send one datagram of newline-separated `KEY=VALUE` assignments.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.inner
            .socket
            .send_to_addr(state.as_bytes(), &self.inner.addr)
            .map(|_| ())
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!(error = %e, state, "cannot notify the service manager");
        }
    }

    /// `READY=1`: the tree is up.
    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    /// `STATUS=text` (newlines are replaced by spaces: they would end the assignment).
    pub fn status(&self, text: &str) {
        self.send_logged(&format!("STATUS={}", text.replace('\n', " ")));
    }

    /// `WATCHDOG=1`: one keep-alive.
    pub fn watchdog_ping(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// Half of `WATCHDOG_USEC` (systemd's advice), when the watchdog is on for us.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.watchdog.map(|w| w / 2)
    }

    /// Spawn a tokio task sending `WATCHDOG=1` every [`watchdog_interval`](Self::watchdog_interval)
    /// (the first one at once); `None` when the watchdog is off. Abort the handle to stop it.
    /// Must be called inside a tokio runtime.
    pub fn spawn_watchdog(&self) -> Option<JoinHandle<()>> {
        let period = self.watchdog_interval()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.watchdog_ping();
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn listener() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (dir, sock, path.to_str().unwrap().to_string())
    }

    #[test]
    fn ready_status_stopping_reach_a_path_socket() {
        let (_dir, sock, path) = listener();
        let n = SdNotify::from_values(&path, None, None, 1).unwrap();
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        n.status("3 workers\nup");
        n.stopping();
        assert_eq!(recv(&sock), "READY=1");
        assert_eq!(recv(&sock), "STATUS=3 workers up");
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[test]
    fn abstract_sockets_work() {
        let name = format!("vigil-test-{}-{}", std::process::id(), fastrand::u64(..));
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = SdNotify::from_values(&format!("@{name}"), None, None, 1).unwrap();
        n.ready();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn bad_values() {
        assert!(matches!(
            SdNotify::from_values("relative", None, None, 1),
            Err(SdNotifyError::BadSocket(_))
        ));
        let (_dir, _sock, path) = listener();
        let other_pid = SdNotify::from_values(&path, Some("1000000"), Some("4242"), 1).unwrap();
        assert_eq!(
            other_pid.watchdog_interval(),
            None,
            "WATCHDOG_PID is someone else"
        );
        let ours = SdNotify::from_values(&path, Some("1000000"), Some("77"), 77).unwrap();
        assert_eq!(ours.watchdog_interval(), Some(Duration::from_millis(500)));
        let zero = SdNotify::from_values(&path, Some("0"), None, 1).unwrap();
        assert_eq!(zero.watchdog_interval(), None);
        let junk = SdNotify::from_values(&path, Some("soon"), None, 1).unwrap();
        assert_eq!(junk.watchdog_interval(), None);
    }

    #[test]
    fn a_missing_listener_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let n = SdNotify::from_values(path.to_str().unwrap(), None, None, 1).unwrap();
        assert!(n.send("READY=1").is_err());
        n.ready(); // logged, no panic
    }

    #[tokio::test]
    async fn the_watchdog_pings_at_half_the_timeout() {
        let (_dir, sock, path) = listener();
        let n = SdNotify::from_values(&path, Some("200000"), None, 1).unwrap();
        let task = n.spawn_watchdog().unwrap();
        let got = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let msgs: Vec<String> = (0..4).map(|_| recv(&sock)).collect();
            (msgs, start.elapsed())
        })
        .await
        .unwrap();
        task.abort();
        assert!(got.0.iter().all(|m| m == "WATCHDOG=1"), "{:?}", got.0);
        // First at once, then every 100 ms: four pings take about 300 ms.
        assert!(got.1 >= Duration::from_millis(250), "{:?}", got.1);
        assert!(got.1 < Duration::from_secs(3), "{:?}", got.1);
    }
}
