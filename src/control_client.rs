//! The client side of the control socket: connect, send one request, wait for its reply.
//!
//! Owns the connection to `<data_dir>/vigil.sock`, the client-side time bounds and the mapping
//! of every way that can fail to one sentence. It must not render anything (`commands/control.rs`
//! does) nor know what a request means (`vigil_actors::protocol` does).
//!
//! Blocking std I/O on purpose: a command makes one request, so no runtime is needed; every
//! read and write is bounded by a deadline, so no command can hang.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use vigil_actors::protocol::{RemoteError, Reply, Request};

/// Why a request got no useful answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing at the socket path.
    #[error("no vigil server is running (no socket at {})", .0.display())]
    NoSocket(PathBuf),
    /// A socket file, but nobody listening (a server that died).
    #[error("no vigil server is running (nothing is listening on {})", .0.display())]
    NotListening(PathBuf),
    /// Any other failure to connect.
    #[error("cannot connect to the vigil server at {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The server did not answer within the bound.
    #[error("the vigil server did not answer within {} (socket {})", vigil_actors::render::duration(*after), path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// How long the client waited.
        after: Duration,
    },
    /// The connection broke, or the server closed it without replying.
    #[error("the vigil server closed the connection without answering (socket {})", .0.display())]
    Closed(PathBuf),
    /// Reading or writing failed.
    #[error("talking to the vigil server failed: {0}")]
    Io(#[source] io::Error),
    /// The reply is not a reply.
    #[error("the vigil server sent a reply this client does not understand: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// One connection to a running server.
pub struct Connection {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

/// Replies are read 64 KiB at a time (a 1000-worker dump is about 430 KB).
const READ_BUFFER: usize = 64 * 1024;

impl Connection {
    /// Connect to the server listening on `path`.
    pub fn open(path: &Path) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ClientError::NoSocket(path.to_path_buf()),
            io::ErrorKind::ConnectionRefused => ClientError::NotListening(path.to_path_buf()),
            _ => ClientError::Connect {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Ok(Connection {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(READ_BUFFER, stream),
        })
    }

    /// Send `request` and wait at most `timeout` for its reply: its data, or the server's error.
    pub fn request(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Box<RawValue>, ClientError> {
        let deadline = deadline_after(timeout);
        let mut line =
            serde_json::to_string(request).map_err(|err| ClientError::Protocol(err.to_string()))?;
        line.push('\n');
        let stream = self.reader.get_mut();
        stream
            .set_write_timeout(Some(timeout))
            .map_err(ClientError::Io)?;
        match stream.write_all(line.as_bytes()) {
            Ok(()) => {}
            // A server that refuses a client (another user, too many connections) answers
            // and closes at once, maybe before our request is written: read that answer.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) => {}
            Err(err) => return Err(self.io_error(err, timeout)),
        }

        let mut reply = Vec::with_capacity(READ_BUFFER);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout {
                    path: self.path.clone(),
                    after: timeout,
                });
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(ClientError::Io)?;
            match self.reader.read_until(b'\n', &mut reply) {
                Ok(0) => return Err(ClientError::Closed(self.path.clone())),
                Ok(_) if reply.last() == Some(&b'\n') => break,
                Ok(_) => return Err(ClientError::Closed(self.path.clone())),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.io_error(err, timeout)),
            }
        }
        let reply: Reply =
            serde_json::from_slice(&reply).map_err(|err| ClientError::Protocol(err.to_string()))?;
        Ok(reply.into_result()?)
    }

    /// The next line the server streams (after an `events` request), without its newline;
    /// `None` when the server closed the connection. Waits as long as it takes: a stream has
    /// no deadline.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Result<bool, ClientError> {
        line.clear();
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(ClientError::Io)?;
        loop {
            match self.reader.read_until(b'\n', line) {
                Ok(0) => return Ok(false),
                Ok(_) if line.last() == Some(&b'\n') => {
                    line.pop();
                    return Ok(true);
                }
                // The server went away in the middle of a line: the stream is over.
                Ok(_) => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
                Err(err) => return Err(ClientError::Io(err)),
            }
        }
    }

    /// Wait until the server closes the connection (it does when it exits), at most `timeout`.
    /// Returns whether it did.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let mut sink = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.reader.get_ref().set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.reader.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    fn io_error(&self, err: io::Error, timeout: Duration) -> ClientError {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                path: self.path.clone(),
                after: timeout,
            },
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => ClientError::Closed(self.path.clone()),
            _ => ClientError::Io(err),
        }
    }
}

/// `now + timeout`, saturating at a year from now instead of panicking on overflow (the
/// config bounds every duration, but a client must not panic on any bound it derives).
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}
