//! The supervisor's side of the notify protocol: `KEY=VALUE` lines from a worker's notify fd.
//!
//! Owns parsing (pure, [`parse_line`]) and the reader task ([`read_events`]) that turns the
//! lines a worker writes to `VIGIL_NOTIFY_FD` into [`NotifyEvent`]s. It must not act on them:
//! the WorkerSupervisor decides what `READY=1` or `WATCHDOG=1` means for its state.
//!
//! # Caveats
//! - Unknown keys and malformed lines are ignored (counted in a trace line), as systemd does.
//! - A line longer than [`MAX_NOTIFY_LINE`] is discarded up to its newline; a worker cannot
//!   make the supervisor buffer more than that.
//! - A worker that closes the fd is fine: the reader ends, supervision goes on.

use tokio::io::AsyncReadExt;

/// Longest notify line accepted.
pub const MAX_NOTIFY_LINE: usize = 4096;

/// One meaningful message from a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    /// `READY=1`: the worker has started.
    Ready,
    /// `WATCHDOG=1`: the worker is alive.
    Watchdog,
    /// `STATUS=text`: free text for the dump.
    Status(String),
    /// `STOPPING=1`: the worker is shutting down by itself.
    Stopping,
}

/// Parse one line (without its newline). `None` for anything that is not a known message.
pub fn parse_line(line: &[u8]) -> Option<NotifyEvent> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let (key, value) = line.split_once('=')?;
    match (key.trim(), value) {
        ("READY", "1") => Some(NotifyEvent::Ready),
        ("WATCHDOG", "1") => Some(NotifyEvent::Watchdog),
        ("STOPPING", "1") => Some(NotifyEvent::Stopping),
        ("STATUS", text) => Some(NotifyEvent::Status(text.chars().take(512).collect())),
        _ => None,
    }
}

/// Read notify lines until end of file, calling `on_event` for each meaningful one.
pub async fn read_events(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut on_event: impl FnMut(NotifyEvent) + Send,
) {
    // Notify lines are short; a small buffer keeps 1000 idle workers cheap (longer lines
    // are assembled in `line`).
    let mut buf = vec![0u8; 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut discarding = false;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !discarding {
                    if let Some(ev) = parse_line(&line) {
                        on_event(ev);
                    } else if !line.is_empty() {
                        tracing::trace!(len = line.len(), "ignored notify line");
                    }
                }
                line.clear();
                discarding = false;
            } else if !discarding {
                if line.len() == MAX_NOTIFY_LINE {
                    discarding = true;
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_lines_only() {
        assert_eq!(parse_line(b"READY=1"), Some(NotifyEvent::Ready));
        assert_eq!(parse_line(b"WATCHDOG=1\r"), Some(NotifyEvent::Watchdog));
        assert_eq!(
            parse_line(b"STATUS=indexing 3/10"),
            Some(NotifyEvent::Status("indexing 3/10".into()))
        );
        assert_eq!(parse_line(b"READY=0"), None);
        assert_eq!(parse_line(b"garbage"), None);
        assert_eq!(parse_line(&[0xff, 0xfe, b'=', b'1']), None);
    }

    #[tokio::test]
    async fn survives_garbage_and_huge_lines() {
        use tokio::io::AsyncWriteExt;
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(read_events(rx, move |e| sink.lock().unwrap().push(e)));
        tx.write_all(b"\x00\x01junk\n").await.unwrap();
        tx.write_all(&vec![b'A'; 100_000]).await.unwrap();
        tx.write_all(b"READY=1\nREADY=1\nSTATUS=ok\n")
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        // The huge line swallowed the first READY=1 (same line); the rest arrived.
        assert_eq!(
            *events.lock().unwrap(),
            vec![NotifyEvent::Ready, NotifyEvent::Status("ok".into())]
        );
    }
}
