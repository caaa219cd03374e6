//! The live event stream: what happens in the tree, as it happens, for `vigil events`.
//!
//! Owns the [`Event`] type (its JSON is the contract's event object), the [`EventBus`] every
//! supervisor publishes to, and the per-subscriber forwarding onto a socket
//! ([`forward`]). It must not decide anything or store anything: supervisors publish at the
//! very place they send exit records and supervision events to the history writer, so the
//! stream and `vigil history` never disagree.
//!
//! # Guarantees
//! - Publishing never blocks and never waits for a subscriber: the bus is a
//!   [`tokio::sync::broadcast`] ring of [`EventBus::CAPACITY`] events. An event is not even
//!   built while nobody subscribes and no [`EventTap`] is set.
//! - A tap (the HTTP metrics) sees every event, synchronously, in publishing order: it cannot
//!   lag, so it must be quick and never block.
//! - A subscriber that falls more than the ring behind loses the oldest events it has not
//!   read; it then gets one `{"event":"dropped","count":N}` line and goes on with the events
//!   still in the ring.
//! - The stream of a subscriber ends (its socket is closed) when the tree's last publisher is
//!   gone, after the events published before that, or when the control server closes.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::exit::ExitRecord;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A generation was spawned (`pid` is its leader).
    Started,
    /// The worker is `running`: `READY=1`, or `start_secs` alive.
    Ready,
    /// A generation ended (or failed to spawn); `exit` is its EXIT record, as in history.
    Exited,
    /// The worker was signalled to stop (operator, restart, watchdog or shutdown).
    Stopping,
    /// The worker is `stopped` and will not be restarted until an operator's `start`.
    Stopped,
    /// The worker waits `delay_ms` before its next start.
    Backoff,
    /// The worker's supervisor gave up (restart intensity exceeded): the worker is `failed`.
    Failed,
    /// The server applied a new config (server-wide).
    Reloaded,
    /// The server began to stop every worker (server-wide).
    Shutdown,
    /// This subscriber fell behind: `count` events were lost.
    Dropped,
}

impl EventKind {
    /// The wire spelling (`"exited"`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Ready => "ready",
            EventKind::Exited => "exited",
            EventKind::Stopping => "stopping",
            EventKind::Stopped => "stopped",
            EventKind::Backoff => "backoff",
            EventKind::Failed => "failed",
            EventKind::Reloaded => "reloaded",
            EventKind::Shutdown => "shutdown",
            EventKind::Dropped => "dropped",
        }
    }
}

/// One event, as `vigil events --json` prints it (one object per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// What happened.
    pub event: EventKind,
    /// The worker (or group); `null` for server-wide events.
    pub worker: Option<String>,
    /// The worker's generation concerned; `null` for server-wide events.
    pub generation: Option<u64>,
    /// The process concerned; `null` when there is none.
    pub pid: Option<u32>,
    /// `exited` only: the EXIT record, the same as `vigil history --json` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// `backoff` only: the delay before the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Why, in a few words (`stopping`: the cause; `stopped`, `failed`: the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `dropped` only: how many events this subscriber lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `exited` only, in this process only (never on the wire): when the exit was reaped, for
    /// the exit-notification latency an [`EventTap`] measures.
    #[serde(skip)]
    pub reaped: Option<std::time::Instant>,
}

impl Event {
    /// An event about `worker`'s `generation`, now.
    pub fn worker(kind: EventKind, worker: &str, generation: u64, pid: Option<u32>) -> Event {
        Event {
            time: now(),
            event: kind,
            worker: Some(worker.to_string()),
            generation: Some(generation),
            pid,
            exit: None,
            delay_ms: None,
            detail: None,
            count: None,
            reaped: None,
        }
    }

    /// A server-wide event, now.
    pub fn server(kind: EventKind) -> Event {
        Event {
            time: now(),
            event: kind,
            worker: None,
            generation: None,
            pid: None,
            exit: None,
            delay_ms: None,
            detail: None,
            count: None,
            reaped: None,
        }
    }

    /// The `exited` event of an exit record.
    pub fn exited(record: &ExitRecord) -> Event {
        Event {
            exit: Some(record.clone()),
            ..Event::worker(
                EventKind::Exited,
                &record.worker,
                record.generation,
                record.pid,
            )
        }
    }

    /// With a reason.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = Some(detail.into());
        self
    }

    /// The line a subscriber receives: JSON and a newline.
    pub fn to_line(&self) -> String {
        // Strings, numbers and an ExitRecord: serialising cannot fail; never panic if it did.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"time":"{}","event":"{}","worker":null,"generation":null,"pid":null}}"#,
                self.time,
                self.event.as_str()
            )
        });
        line.push('\n');
        line
    }
}

/// The line that replaces `count` events a subscriber lost: `{"event":"dropped","count":N}`
/// (with the time it was noticed).
pub fn dropped_line(count: u64) -> String {
    format!(
        "{{\"time\":\"{}\",\"event\":\"dropped\",\"count\":{count}}}\n",
        now()
    )
}

/// Now, RFC 3339 in UTC with milliseconds (as exit records are).
fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// Sees every event as it is published, synchronously, before any subscriber: for state that
/// must not miss one (the HTTP metrics' counters). `observe` runs on the publisher's thread,
/// inside a supervisor's handler: it must be quick and must never block or wait.
pub trait EventTap: std::fmt::Debug + Send + Sync {
    /// One published event.
    fn observe(&self, event: &Event);
}

/// Where supervisors publish events; cheap to clone (every supervisor holds one).
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    tap: Option<Arc<dyn EventTap>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::with_capacity(EventBus::CAPACITY)
    }
}

impl EventBus {
    /// Events kept for a subscriber that has not read them yet.
    pub const CAPACITY: usize = 1024;

    /// A bus keeping [`EventBus::CAPACITY`] events per subscriber.
    pub fn new() -> EventBus {
        EventBus::default()
    }

    /// A bus keeping `capacity` events per subscriber (at least 1).
    pub fn with_capacity(capacity: usize) -> EventBus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus { tx, tap: None }
    }

    /// This bus, with `tap` shown every event (set it before the bus is handed to a tree: its
    /// clones share the tap they were cloned with).
    pub fn with_tap(mut self, tap: Arc<dyn EventTap>) -> EventBus {
        self.tap = Some(tap);
        self
    }

    /// A new subscriber: it receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// How many subscribers there are now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Publish the event `make` builds, if anyone listens (a subscriber or the tap). Never
    /// blocks.
    pub fn publish(&self, make: impl FnOnce() -> Event) {
        let subscribed = self.tx.receiver_count() > 0;
        if !subscribed && self.tap.is_none() {
            return;
        }
        let event = make();
        if let Some(tap) = &self.tap {
            tap.observe(&event);
        }
        if subscribed {
            let _ = self.tx.send(Arc::new(event));
        }
    }
}

/// Events written to the socket in one write, at most.
const BATCH: usize = 256;
/// After the server began closing, how long queued events may still take to be written.
const DRAIN: Duration = Duration::from_secs(2);

/// Write `events` to `write`, one line each, until the publishers are gone (after the last
/// event), the client hangs up (EOF on `client`) or `closing` resolves (the events already
/// queued are still written, for at most 2 s). A lag becomes one [`dropped_line`].
/// Waiting on a slow client never holds anything of the tree: the ring simply moves on.
pub async fn forward<R, W, C>(
    mut events: broadcast::Receiver<Arc<Event>>,
    mut client: R,
    mut write: W,
    closing: C,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    C: std::future::Future<Output = ()>,
{
    tokio::pin!(closing);
    let mut sink = [0u8; 256];
    let mut out = String::with_capacity(4096);
    loop {
        out.clear();
        let mut ended = false;
        tokio::select! {
            got = events.recv() => match got {
                Ok(event) => out.push_str(&event.to_line()),
                Err(RecvError::Lagged(n)) => out.push_str(&dropped_line(n)),
                Err(RecvError::Closed) => return,
            },
            read = client.read(&mut sink) => match read {
                Ok(0) | Err(_) => return,
                // Anything the client sends while subscribed is ignored.
                Ok(_) => continue,
            },
            () = &mut closing => ended = true,
        }
        // Whatever else is queued goes in the same write.
        let mut batched = 0;
        while batched < BATCH {
            match events.try_recv() {
                Ok(event) => out.push_str(&event.to_line()),
                Err(TryRecvError::Lagged(n)) => out.push_str(&dropped_line(n)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    ended = true;
                    break;
                }
            }
            batched += 1;
        }
        if ended {
            if !out.is_empty() {
                let _ = tokio::time::timeout(DRAIN, write.write_all(out.as_bytes())).await;
            }
            let _ = write.shutdown().await;
            return;
        }
        let written = tokio::select! {
            w = write.write_all(out.as_bytes()) => w.is_ok(),
            () = &mut closing => {
                let _ = tokio::time::timeout(DRAIN, write.write_all(out.as_bytes())).await;
                false
            }
        };
        if !written {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(i: u64) -> Event {
        Event::worker(EventKind::Started, "w", i, Some(100 + i as u32))
    }

    #[test]
    fn an_event_has_the_contract_fields() {
        let line = started(3).to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "started");
        assert_eq!(v["worker"], "w");
        assert_eq!(v["generation"], 3);
        assert_eq!(v["pid"], 103);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("exit").is_none());
        let server: serde_json::Value =
            serde_json::from_str(&Event::server(EventKind::Shutdown).to_line()).unwrap();
        assert!(server["worker"].is_null() && server["generation"].is_null());
        assert!(server["pid"].is_null());
        let dropped: serde_json::Value = serde_json::from_str(&dropped_line(7)).unwrap();
        assert_eq!(
            (dropped["event"].as_str(), dropped["count"].as_u64()),
            (Some("dropped"), Some(7))
        );
        let back: Event = serde_json::from_str(&dropped_line(7)).unwrap();
        assert_eq!((back.event, back.count), (EventKind::Dropped, Some(7)));
    }

    #[test]
    fn nothing_is_built_without_a_subscriber() {
        let bus = EventBus::with_capacity(4);
        bus.publish(|| panic!("built without a subscriber"));
        let _rx = bus.subscribe();
        let mut built = false;
        bus.publish(|| {
            built = true;
            started(1)
        });
        assert!(built);
    }

    /// A client that reads nothing until the bus has lapped it gets one `dropped` with the
    /// exact count, then the newest events in order; publishing never waited for it.
    #[tokio::test]
    async fn a_lagging_subscriber_gets_one_dropped_and_goes_on() {
        let bus = EventBus::with_capacity(4);
        let rx = bus.subscribe();
        for i in 1..=10 {
            bus.publish(|| started(i));
        }
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(forward(rx, server_read, server_write, async move {
            let _ = closing_rx.await;
        }));
        drop(bus); // the last publisher: the stream ends after what is queued
        let mut text = String::new();
        let mut client = client;
        client.read_to_string(&mut text).await.unwrap();
        task.await.unwrap();
        drop(closing_tx);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "dropped", "{text}");
        assert_eq!(lines[0]["count"], 6);
        let gens: Vec<u64> = lines[1..]
            .iter()
            .map(|l| l["generation"].as_u64().unwrap())
            .collect();
        assert_eq!(gens, [7, 8, 9, 10]);
    }

    #[tokio::test]
    async fn closing_ends_the_stream_and_a_hang_up_ends_the_task() {
        let bus = EventBus::with_capacity(8);
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(forward(
            bus.subscribe(),
            server_read,
            server_write,
            async move {
                let _ = closing_rx.await;
            },
        ));
        bus.publish(|| started(1));
        let _ = closing_tx.send(());
        let mut text = String::new();
        let mut client = client;
        client.read_to_string(&mut text).await.unwrap();
        task.await.unwrap();
        assert!(text.contains("\"generation\":1"), "{text}");

        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let task = tokio::spawn(forward(
            bus.subscribe(),
            server_read,
            server_write,
            std::future::pending(),
        ));
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a hang-up ends the forwarding")
            .unwrap();
    }
}
