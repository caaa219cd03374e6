//! The control socket server against a real ractor actor that answers `RootMsg` with fixed
//! snapshots (a stand-in for the root actor only; the socket, the peer check and the file mode
//! are real).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use vigil_actors::control::{ControlServer, Limits};
use vigil_actors::events::{Event, EventBus, EventKind};
use vigil_actors::protocol::Timeouts;
use vigil_actors::protocol::{ControlError, WorkerAction};
use vigil_actors::root::{RootMsg, Subscription};
use vigil_actors::snapshot::{Dump, Node, NodeInfo, RootInfo, WorkerSnapshot, WorkerState};

// ---------------------------------------------------------------- the root stand-in

struct FixedRoot;

struct FixedState {
    workers: Vec<WorkerSnapshot>,
    /// Reply ports of `act` requests on the worker named "hang", kept and never answered.
    held: Vec<RpcReplyPort<Result<WorkerSnapshot, ControlError>>>,
    shutting_down: bool,
    events: EventBus,
}

fn snapshot(name: &str, pid: u32) -> WorkerSnapshot {
    WorkerSnapshot {
        name: name.into(),
        kind: "command".into(),
        state: WorkerState::Running,
        actor_id: Some(format!("0.{pid}")),
        pid: Some(pid),
        pgid: Some(pid),
        generation: 1,
        restarts: 0,
        restarts_in_window: 0,
        max_restarts: 5,
        intensity_window_ms: 60_000,
        backoff_ms: None,
        next_start_in_ms: None,
        uptime_ms: 1234,
        log_path: format!("/tmp/{name}.log"),
        status_text: None,
        heartbeat_age_ms: None,
        last_exit: None,
        rss_bytes: Some(1 << 20),
        cpu_percent: Some(0.5),
        processes: Some(1),
        containment: "process-group".into(),
        memory_max_bytes: None,
        pids_max: None,
        cpu_max: None,
        oom_kills: 0,
        exit_notify_us: None,
    }
}

impl Actor for FixedRoot {
    type Msg = RootMsg;
    type State = FixedState;
    type Arguments = EventBus;

    async fn pre_start(
        &self,
        _myself: ActorRef<RootMsg>,
        events: EventBus,
    ) -> Result<FixedState, ActorProcessingErr> {
        Ok(FixedState {
            workers: vec![
                snapshot("alpha", 100),
                snapshot("beta", 200),
                snapshot("hang", 300),
            ],
            held: Vec::new(),
            shutting_down: false,
            events,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut FixedState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Dump(reply) => {
                let children = state
                    .workers
                    .iter()
                    .map(|w| Node {
                        info: NodeInfo::Worker(Box::new(w.clone())),
                        children: vec![],
                    })
                    .collect();
                let root = RootInfo {
                    name: "root".into(),
                    state: if state.shutting_down {
                        "stopping"
                    } else {
                        "running"
                    }
                    .into(),
                    pid: std::process::id(),
                    uptime_ms: 5,
                    config_path: None,
                    escalations: 0,
                    escalations_in_window: 0,
                };
                let _ = reply.send(Dump {
                    root: Node {
                        info: NodeInfo::Root(root),
                        children,
                    },
                });
            }
            RootMsg::Status { worker, reply } => {
                let answer = match worker {
                    None => Ok(state.workers.clone()),
                    Some(name) => match state.workers.iter().find(|w| w.name == name) {
                        Some(w) => Ok(vec![w.clone()]),
                        None => Err(ControlError::UnknownWorker(name)),
                    },
                };
                let _ = reply.send(answer);
            }
            RootMsg::Act {
                worker,
                action,
                reply,
            } => {
                if worker == "hang" {
                    state.held.push(reply);
                    return Ok(());
                }
                if worker == "slow" {
                    // Answer later, from a task, like a root waiting for a process to stop.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = reply.send(Ok(snapshot("slow", 400)));
                    });
                    return Ok(());
                }
                let answer = match state.workers.iter_mut().find(|w| w.name == worker) {
                    None => Err(ControlError::UnknownWorker(worker)),
                    Some(w) => {
                        match action {
                            WorkerAction::Restart => {
                                w.generation += 1;
                                w.pid = w.pid.map(|p| p + 1);
                                w.pgid = w.pid;
                            }
                            WorkerAction::Stop => {
                                w.state = WorkerState::Stopped;
                                w.pid = None;
                                w.pgid = None;
                            }
                            WorkerAction::Start => w.state = WorkerState::Running,
                        }
                        Ok(w.clone())
                    }
                };
                let _ = reply.send(answer);
            }
            RootMsg::Shutdown(reply) => {
                state.shutting_down = true;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            RootMsg::Subscribe(reply) => {
                let _ = reply.send(Subscription {
                    events: state.events.subscribe(),
                    workers: state.workers.iter().map(|w| w.name.clone()).collect(),
                });
            }
            // The root's internal timers: a stand-in has none.
            RootMsg::Reload { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(Default::default()));
                }
            }
            RootMsg::RestartSupervisor { .. }
            | RootMsg::ShutdownComplete
            | RootMsg::Child(_)
            | RootMsg::RestartGroup { .. }
            | RootMsg::GroupRestarted { .. }
            | RootMsg::ReloadStopped { .. } => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- helpers

struct Fixture {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    server: Option<ControlServer>,
    root: ActorRef<RootMsg>,
    events: EventBus,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.take();
        self.root.stop(None);
    }
}

async fn fixture(timeouts: Timeouts) -> Fixture {
    fixture_with(timeouts, Limits::default()).await
}

async fn fixture_with(timeouts: Timeouts, limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vigil.sock");
    let events = EventBus::new();
    let (root, _handle) = Actor::spawn(None, FixedRoot, events.clone()).await.unwrap();
    let server = ControlServer::start_with_limits(&socket, root.clone(), timeouts, limits).unwrap();
    Fixture {
        _dir: dir,
        socket,
        server: Some(server),
        root,
        events,
    }
}

/// A connection that sends lines and reads reply lines, each read bounded.
struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    async fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).await.unwrap();
        let (read, writer) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer,
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn reply(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "the server closed the connection instead of replying"
        );
        serde_json::from_str(&line).unwrap()
    }

    async fn ask(&mut self, request: Value) -> Value {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).await;
        self.reply().await
    }

    /// Whether the server closed the connection within 5 s: EOF, or a reset when the server
    /// closed with our bytes still unread.
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match tokio::time::timeout(Duration::from_secs(5), self.reader.read_to_end(&mut rest)).await
        {
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => panic!("{n} unexpected bytes after the last reply"),
            Ok(Err(err)) => err.kind() == std::io::ErrorKind::ConnectionReset,
            Err(_) => false,
        }
    }
}

fn short_timeouts() -> Timeouts {
    Timeouts {
        query: Duration::from_secs(2),
        act: Duration::from_millis(300),
        shutdown: Duration::from_secs(2),
        reload: Duration::from_secs(2),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn every_request_kind_is_answered() {
    let f = fixture(Timeouts::default()).await;
    let mut c = Client::connect(&f.socket).await;

    let pong = c.ask(json!({"cmd": "ping"})).await;
    assert_eq!(
        pong,
        json!({"ok": true, "data": {"pid": std::process::id()}})
    );

    let dump = c.ask(json!({"cmd": "dump"})).await;
    assert_eq!(dump["ok"], true);
    let root = &dump["data"]["root"];
    assert_eq!(root["name"], "root");
    assert_eq!(root["state"], "running");
    let names: Vec<&str> = root["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "hang"]);
    let typed: Dump = serde_json::from_value(dump["data"].clone()).unwrap();
    assert!(matches!(typed.root.info, NodeInfo::Root(_)));

    let all = c.ask(json!({"cmd": "status", "worker": null})).await;
    assert_eq!(all["ok"], true);
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    assert!(all["data"][0].get("children").is_none());

    let one = c.ask(json!({"cmd": "status", "worker": "beta"})).await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["pid"], 200);

    let unknown = c.ask(json!({"cmd": "status", "worker": "nope"})).await;
    assert_eq!(
        unknown,
        json!({"ok": false, "error": "no worker named \"nope\"", "kind": "unknown_worker"})
    );

    let restarted = c
        .ask(json!({"cmd": "act", "worker": "alpha", "action": "restart"}))
        .await;
    assert_eq!(restarted["ok"], true, "{restarted}");
    assert_eq!(restarted["data"]["pid"], 101);
    assert_eq!(restarted["data"]["generation"], 2);

    let stopped = c
        .ask(json!({"cmd": "act", "worker": "beta", "action": "stop"}))
        .await;
    assert_eq!(stopped["data"]["state"], "stopped");
    assert_eq!(stopped["data"]["pid"], Value::Null);
    let started = c
        .ask(json!({"cmd": "act", "worker": "beta", "action": "start"}))
        .await;
    assert_eq!(started["data"]["state"], "running");

    let act_unknown = c
        .ask(json!({"cmd": "act", "worker": "nope", "action": "stop"}))
        .await;
    assert_eq!(act_unknown["kind"], "unknown_worker");

    let down = c.ask(json!({"cmd": "shutdown"})).await;
    assert_eq!(down, json!({"ok": true, "data": null}));
    let after = c.ask(json!({"cmd": "dump"})).await;
    assert_eq!(after["data"]["root"]["state"], "stopping");
}

#[tokio::test]
async fn socket_is_private_and_removed_on_drop() {
    let mut f = fixture(Timeouts::default()).await;
    let mode = std::fs::metadata(&f.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert!(f.server.as_ref().unwrap().path() == f.socket);
    let mut c = Client::connect(&f.socket).await;
    assert_eq!(c.ask(json!({"cmd": "ping"})).await["ok"], true);

    f.server.take();
    assert!(!f.socket.exists(), "the socket file outlived the server");
    assert!(c.closed().await, "open connections end with the server");
    assert!(UnixStream::connect(&f.socket).await.is_err());
}

#[tokio::test]
async fn close_lets_an_answer_in_flight_reach_its_client() {
    let mut f = fixture(Timeouts::default()).await;
    let mut busy = Client::connect(&f.socket).await;
    let mut idle = Client::connect(&f.socket).await;
    assert_eq!(idle.ask(json!({"cmd": "ping"})).await["ok"], true);
    busy.send_raw(b"{\"cmd\":\"act\",\"worker\":\"slow\",\"action\":\"restart\"}\n")
        .await;
    // Close while the root is still working on the request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let server = f.server.take().unwrap();
    let closing = tokio::spawn(server.close());
    let reply = busy.reply().await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["pid"], 400);
    assert!(busy.closed().await);
    assert!(idle.closed().await);
    tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .unwrap()
        .unwrap();
    assert!(!f.socket.exists());
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vigil.sock");
    // A dead server's leftover: a socket nobody listens on.
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    assert!(socket.exists());
    let (root, _h) = Actor::spawn(None, FixedRoot, EventBus::new())
        .await
        .unwrap();
    let server = ControlServer::start(&socket, root.clone()).unwrap();
    let mut c = Client::connect(&socket).await;
    assert_eq!(c.ask(json!({"cmd": "ping"})).await["ok"], true);
    drop(server);
    root.stop(None);
}

#[tokio::test]
async fn garbage_and_unknown_commands_do_not_hurt_the_server() {
    let f = fixture(Timeouts::default()).await;

    // Lines of junk on one connection: each gets an error reply, the connection stays usable.
    let mut c = Client::connect(&f.socket).await;
    let bad = c.ask(json!("just a string")).await;
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["kind"], "bad_request");
    c.send_raw(b"{{{{ not json\n").await;
    assert_eq!(c.reply().await["kind"], "bad_request");
    c.send_raw(b"\xff\xfe\x00\x01\n").await;
    assert_eq!(c.reply().await["kind"], "bad_request");
    let unknown = c.ask(json!({"cmd": "format_disk"})).await;
    assert_eq!(unknown["kind"], "unknown_command");
    assert!(
        unknown["error"].as_str().unwrap().contains("format_disk"),
        "{unknown}"
    );
    let missing = c.ask(json!({"cmd": "act", "worker": "alpha"})).await;
    assert_eq!(missing["kind"], "bad_request");
    assert_eq!(
        c.ask(json!({"cmd": "status", "worker": "alpha"})).await["ok"],
        true
    );

    // 100 KB of garbage with no newline: a too_large reply, then the connection is closed.
    let mut big = Client::connect(&f.socket).await;
    let garbage: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    big.send_raw(&garbage).await;
    let reply = big.reply().await;
    assert_eq!(reply["kind"], "too_large", "{reply}");
    assert!(big.closed().await);

    // 100 KB of random bytes with newlines sprinkled in: one error reply per line.
    let mut noisy = Client::connect(&f.socket).await;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut lines = 0;
    let mut blob = Vec::with_capacity(100_000);
    while blob.len() < 100_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let byte = (rng & 0xff) as u8;
        if byte == b'\n' || blob.len() % 997 == 996 {
            blob.extend_from_slice(b"x\n");
            lines += 1;
        } else {
            blob.push(byte);
        }
    }
    blob.extend_from_slice(b"x\n");
    lines += 1;
    noisy.send_raw(&blob).await;
    for _ in 0..lines {
        let r = noisy.reply().await;
        assert_eq!(r["ok"], false, "{r}");
    }
    assert_eq!(noisy.ask(json!({"cmd": "ping"})).await["ok"], true);

    // The server still answers new connections.
    let mut fresh = Client::connect(&f.socket).await;
    assert_eq!(fresh.ask(json!({"cmd": "dump"})).await["ok"], true);
}

#[tokio::test]
async fn a_last_request_without_newline_is_answered() {
    let f = fixture(Timeouts::default()).await;
    let mut c = Client::connect(&f.socket).await;
    c.send_raw(br#"{"cmd":"ping"}"#).await;
    c.writer.shutdown().await.unwrap();
    assert_eq!(c.reply().await["ok"], true);
    assert!(c.closed().await);
}

#[tokio::test]
async fn a_silent_root_gives_a_timeout_reply_not_a_hang() {
    let f = fixture(short_timeouts()).await;
    let mut c = Client::connect(&f.socket).await;
    let started = Instant::now();
    let reply = c
        .ask(json!({"cmd": "act", "worker": "hang", "action": "restart"}))
        .await;
    let waited = started.elapsed();
    assert_eq!(reply["kind"], "timeout", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("300ms"),
        "{reply}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The same connection and the tree still answer.
    assert_eq!(c.ask(json!({"cmd": "status"})).await["ok"], true);
}

#[tokio::test]
async fn a_dead_root_gives_an_unavailable_reply() {
    let f = fixture(short_timeouts()).await;
    f.root.stop(None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.root.get_status() != ractor::ActorStatus::Stopped && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = Client::connect(&f.socket).await;
    let reply = c.ask(json!({"cmd": "dump"})).await;
    assert_eq!(reply["kind"], "unavailable", "{reply}");
    assert_eq!(c.ask(json!({"cmd": "ping"})).await["ok"], true);
}

/// Connects to `socket` as uid/gid 65534 and returns the server's first reply line.
///
/// The credentials are dropped on a thread of its own with the raw syscalls, which (unlike
/// libc's wrappers) change only the calling thread; the kernel records the connecting thread's
/// credentials as the peer's, and the thread ends with them. Needs root.
fn ask_as_nobody(socket: &Path) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let socket = socket.to_path_buf();
    std::thread::spawn(move || -> Result<String, String> {
        let nobody: libc::c_long = 65534;
        // SAFETY: plain syscalls on this thread's own credentials; no memory is passed but a
        // null, empty group list.
        let rc = unsafe {
            if libc::syscall(
                libc::SYS_setgroups,
                0 as libc::c_long,
                std::ptr::null::<libc::gid_t>(),
            ) != 0
            {
                -1
            } else if libc::syscall(libc::SYS_setresgid, nobody, nobody, nobody) != 0 {
                -2
            } else if libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) != 0 {
                -3
            } else {
                0
            }
        };
        if rc != 0 {
            return Err(format!(
                "cannot drop this thread's credentials (step {rc}): {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut stream = std::os::unix::net::UnixStream::connect(&socket)
            .map_err(|e| format!("connect {} as uid 65534: {e}", socket.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| format!("set_read_timeout: {e}"))?;
        // The server may refuse and close before reading: a broken pipe here is expected then,
        // and the refusal is still waiting to be read.
        let _ = stream.write_all(b"{\"cmd\":\"ping\"}\n");
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|e| format!("read the reply: {e}"))?;
        Ok(line.trim().to_string())
    })
    .join()
    .map_err(|_| "the client thread panicked".to_string())?
}

#[tokio::test]
async fn other_users_are_refused() {
    // Our own uid passes (every other test); to try another uid we need to be root.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED: other_users_are_refused needs root to connect as another user; only our own uid was checked"
        );
        return;
    }
    let f = fixture(Timeouts::default()).await;
    // Let uid 65534 reach the socket file, so that only the peer-credential check stands.
    let dir = f.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&f.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let socket = f.socket.clone();
    let line = tokio::task::spawn_blocking(move || ask_as_nobody(&socket))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("no reply as uid 65534: {e}"));
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["kind"], "permission_denied", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("uid 65534"),
        "{reply}"
    );
    // And we still get in.
    let mut c = Client::connect(&f.socket).await;
    assert_eq!(c.ask(json!({"cmd": "ping"})).await["ok"], true);
}

#[tokio::test]
async fn one_connection_too_many_gets_busy_and_the_others_are_still_served() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let f = fixture_with(short_timeouts(), limits).await;
    let mut first = Client::connect(&f.socket).await;
    let mut second = Client::connect(&f.socket).await;
    // Both are being served (a reply proves the server took each one).
    assert_eq!(first.ask(json!({"cmd": "ping"})).await["ok"], true);
    assert_eq!(second.ask(json!({"cmd": "ping"})).await["ok"], true);
    let mut third = Client::connect(&f.socket).await;
    let refused = third.reply().await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["kind"], "busy");
    assert!(third.closed().await, "the extra connection stays open");
    // The two served connections still work; once one ends, a new one is served.
    assert_eq!(first.ask(json!({"cmd": "ping"})).await["ok"], true);
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = Client::connect(&f.socket).await;
        let reply = next.ask(json!({"cmd": "ping"})).await;
        if reply["ok"] == true {
            break;
        }
        assert_eq!(reply["kind"], "busy");
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_or_half_sent_connection_is_closed() {
    let limits = Limits {
        idle: Duration::from_millis(300),
        ..Limits::default()
    };
    let f = fixture_with(short_timeouts(), limits).await;
    // Says nothing at all.
    let mut silent = Client::connect(&f.socket).await;
    // Sends half a request and stops.
    let mut slow = Client::connect(&f.socket).await;
    slow.send_raw(br#"{"cmd":"pi"#).await;
    // Asks once, then idles.
    let mut done = Client::connect(&f.socket).await;
    assert_eq!(done.ask(json!({"cmd": "ping"})).await["ok"], true);
    let started = Instant::now();
    assert!(silent.closed().await, "a silent connection is kept");
    assert!(
        slow.closed().await,
        "a half-sent request keeps its connection"
    );
    assert!(done.closed().await, "an idle connection is kept");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server itself is fine.
    let mut fresh = Client::connect(&f.socket).await;
    assert_eq!(fresh.ask(json!({"cmd": "ping"})).await["ok"], true);
}

#[tokio::test]
async fn an_events_subscription_streams_past_the_idle_bound_until_close() {
    let limits = Limits {
        idle: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut f = fixture_with(short_timeouts(), limits).await;
    let mut sub = Client::connect(&f.socket).await;
    let ack = sub.ask(json!({"cmd": "events"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["data"]["workers"], json!(["alpha", "beta", "hang"]));
    // Longer than the idle bound: a subscriber is not an idle client.
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.events
        .publish(|| Event::worker(EventKind::Started, "alpha", 2, Some(101)));
    let event = sub.reply().await;
    assert_eq!(
        (&event["event"], &event["worker"], &event["pid"]),
        (&json!("started"), &json!("alpha"), &json!(101))
    );
    // Bytes from the subscriber are ignored, not answered.
    sub.send_raw(b"{\"cmd\":\"ping\"}\n").await;
    f.events.publish(|| Event::server(EventKind::Shutdown));
    assert_eq!(sub.reply().await["event"], "shutdown");
    // Other clients are still served meanwhile.
    let mut other = Client::connect(&f.socket).await;
    assert_eq!(other.ask(json!({"cmd": "ping"})).await["ok"], true);
    let server = f.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.close())
        .await
        .unwrap();
    assert!(sub.closed().await, "close ends the stream");
}
