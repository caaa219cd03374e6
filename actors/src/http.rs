//! The opt-in HTTP endpoint (`http: Some("127.0.0.1:9750")`): Prometheus metrics and the
//! Kubernetes probes, read-only.
//!
//! Owns the [`Exporter`] (the metrics' state, fed by the tree's events and a usage sample) and
//! the [`HttpServer`] (the TCP listener, one hyper connection per client, the bounds on what
//! clients may hold). It must not change the tree or ask its actors anything: nothing here is
//! a write endpoint, and a scrape never waits for a supervisor.
//!
//! # Endpoints
//! - `GET /metrics`: the Prometheus text format (0.0.4), encoded by the official
//!   `prometheus-client` crate.
//! - `GET /healthz`: 200 while the server runs and is not shutting down, 503 otherwise.
//! - `GET /readyz`: 200 when every worker that should run is `running` (a `stopped` worker
//!   is not meant to run), 503 otherwise (the body names the others).
//! - Anything else (another path, another method): 404.
//!
//! # Where the numbers come from
//! - Counters, `vigil_worker_up` and `vigil_worker_state` are pushed by the supervisors: the
//!   exporter is the event bus's [`EventTap`], shown every event synchronously at the place
//!   that writes history, so it never misses one (a lagging `vigil events` subscriber may;
//!   the tap cannot) and the counters agree with `vigil history`.
//! - Memory and CPU come from a usage sample taken on a scrape (at most one a second, on the
//!   blocking pool): the cgroup's `memory.current` and CPU usage when the worker has a cgroup,
//!   otherwise its process group read from `/proc`. An idle server with nobody scraping wakes
//!   no thread for this.
//!
//! # Guarantees
//! - At most [`HttpLimits::max_connections`] connections at once; beyond that a client gets
//!   `503` and a closed connection at once.
//! - A client must send its request headers within [`HttpLimits::header_timeout`]; a
//!   connection lives at most [`HttpLimits::connection_timeout`], whatever it does.
//! - [`HttpServer::close`] turns `/healthz` to 503, stops accepting and ends the connections.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::containment::Containment;
use crate::events::{Event, EventKind, EventTap};
use crate::metrics::GroupSampler;
use crate::snapshot::WorkerState;

/// The states `vigil_worker_state` has a series for.
const STATES: [WorkerState; 6] = [
    WorkerState::Starting,
    WorkerState::Running,
    WorkerState::Backoff,
    WorkerState::Stopping,
    WorkerState::Stopped,
    WorkerState::Failed,
];

/// A usage sample younger than this is served again rather than taken anew.
const SAMPLE_MAX_AGE: Duration = Duration::from_secs(1);

/// A usage sample that takes longer than this is not waited for: the last one is served.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bounds (seconds) of the exit-notification latency histogram: 50 µs to 1 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExitLabels {
    worker: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    worker: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// What the exporter knows of one worker from its events.
#[derive(Clone, Copy, Debug)]
struct Track {
    state: WorkerState,
    /// The live generation's process group (its leader's pid), while there is one.
    pgid: Option<u32>,
}

/// One worker's usage, as last sampled.
#[derive(Clone, Debug)]
struct UsageRow {
    worker: String,
    memory_bytes: f64,
    cpu_seconds: f64,
}

/// The last usage sample.
#[derive(Debug, Default)]
struct UsageCache {
    rows: Vec<UsageRow>,
    taken: Option<Instant>,
}

/// Encodes the usage sample at each scrape (`vigil_worker_memory_bytes`,
/// `vigil_worker_cpu_seconds_total`).
#[derive(Debug)]
struct UsageCollector {
    cache: Arc<Mutex<UsageCache>>,
}

impl Collector for UsageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut family = encoder.encode_descriptor(
                "vigil_worker_memory_bytes",
                "Memory the worker's processes use now (its cgroup's, or its process group's resident memory).",
                None,
                MetricType::Gauge,
            )?;
            for row in &cache.rows {
                let labels = WorkerLabels {
                    worker: row.worker.clone(),
                };
                ConstGauge::new(row.memory_bytes).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "vigil_worker_cpu_seconds",
            "CPU time the worker's processes have used (its cgroup's, or its live process group's).",
            None,
            MetricType::Counter,
        )?;
        for row in &cache.rows {
            let labels = WorkerLabels {
                worker: row.worker.clone(),
            };
            ConstCounter::new(row.cpu_seconds).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The metrics' state: fed by the tree's events (as their [`EventTap`]) and by a usage sample,
/// read by scrapes and probes. Share it in an `Arc`.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
    up: Family<WorkerLabels, Gauge>,
    restarts: Family<WorkerLabels, Counter>,
    exits: Family<ExitLabels, Counter>,
    oom_kills: Family<WorkerLabels, Counter>,
    state: Family<StateLabels, Gauge>,
    latency: Histogram,
    workers: Mutex<BTreeMap<String, Track>>,
    shutting_down: AtomicBool,
    usage: Arc<Mutex<UsageCache>>,
    /// One sample at a time; concurrent scrapes wait for it and share it.
    sampling: tokio::sync::Mutex<()>,
    sampler: Arc<Mutex<GroupSampler>>,
    containment: Containment,
}

impl Exporter {
    /// An exporter for `workers` (every series starts at zero, each worker `starting`),
    /// reporting `version` in `vigil_build_info`, sampling usage through `containment`.
    pub fn new(version: &str, workers: &[String], containment: Containment) -> Exporter {
        let mut registry = Registry::default();
        let up = Family::<WorkerLabels, Gauge>::default();
        let restarts = Family::<WorkerLabels, Counter>::default();
        let exits = Family::<ExitLabels, Counter>::default();
        let oom_kills = Family::<WorkerLabels, Counter>::default();
        let state = Family::<StateLabels, Gauge>::default();
        let latency = Histogram::new(LATENCY_BUCKETS);
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: version.to_string(),
            })
            .set(1);
        registry.register(
            "vigil_worker_up",
            "1 while the worker has a live process, 0 otherwise",
            up.clone(),
        );
        registry.register(
            "vigil_worker_restarts",
            "Restarts of the worker since the server started",
            restarts.clone(),
        );
        registry.register(
            "vigil_worker_exits",
            "Ended runs of the worker (and failed spawns), by exit reason",
            exits.clone(),
        );
        registry.register(
            "vigil_worker_oom_kills",
            "Processes of the worker killed by the kernel's OOM killer",
            oom_kills.clone(),
        );
        registry.register(
            "vigil_worker_state",
            "1 for the worker's current state, 0 for the others",
            state.clone(),
        );
        registry.register(
            "vigil_exit_notification_seconds",
            "From a worker's exit being reaped to its exited event being published",
            latency.clone(),
        );
        registry.register("vigil_build_info", "The running vigil's version", build);
        let usage = Arc::new(Mutex::new(UsageCache::default()));
        registry.register_collector(Box::new(UsageCollector {
            cache: usage.clone(),
        }));
        let exporter = Exporter {
            registry,
            up,
            restarts,
            exits,
            oom_kills,
            state,
            latency,
            workers: Mutex::new(BTreeMap::new()),
            shutting_down: AtomicBool::new(false),
            usage,
            sampling: tokio::sync::Mutex::new(()),
            sampler: Arc::new(Mutex::new(GroupSampler::new())),
            containment,
        };
        for name in workers {
            exporter.track(name);
        }
        exporter
    }

    /// The worker's entry, created (with its zero series) on first sight.
    fn track(&self, name: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if workers.contains_key(name) {
            return;
        }
        let labels = WorkerLabels {
            worker: name.to_string(),
        };
        self.up.get_or_create(&labels).set(0);
        let _ = self.restarts.get_or_create(&labels);
        let _ = self.oom_kills.get_or_create(&labels);
        for s in STATES {
            self.state
                .get_or_create(&StateLabels {
                    worker: name.to_string(),
                    state: s.as_str().to_string(),
                })
                .set(i64::from(s == WorkerState::Starting));
        }
        workers.insert(
            name.to_string(),
            Track {
                state: WorkerState::Starting,
                pgid: None,
            },
        );
    }

    /// Move `name` to `state` (its old state's series to 0, the new one's to 1).
    fn set_state(&self, name: &str, state: WorkerState) {
        let old = {
            let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            match workers.get_mut(name) {
                Some(t) => std::mem::replace(&mut t.state, state),
                None => return,
            }
        };
        if old == state {
            return;
        }
        let series = |s: WorkerState| StateLabels {
            worker: name.to_string(),
            state: s.as_str().to_string(),
        };
        self.state.get_or_create(&series(old)).set(0);
        self.state.get_or_create(&series(state)).set(1);
    }

    fn set_pgid(&self, name: &str, pgid: Option<u32>) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = workers.get_mut(name) {
            t.pgid = pgid;
        }
    }

    /// Whether the server runs and is not shutting down (`/healthz`).
    pub fn healthy(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire)
    }

    /// Mark the server as shutting down (`/healthz` and `/readyz` answer 503 from now on).
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when every worker that should run is running; otherwise the others with their
    /// states (`/readyz`).
    pub fn readiness(&self) -> Result<(), Vec<(String, WorkerState)>> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let not_ready: Vec<(String, WorkerState)> = workers
            .iter()
            .filter(|(_, t)| match t.state {
                WorkerState::Running => t.pgid.is_none(),
                WorkerState::Stopped => false,
                _ => true,
            })
            .map(|(n, t)| (n.clone(), t.state))
            .collect();
        if not_ready.is_empty() && self.healthy() {
            Ok(())
        } else {
            Err(not_ready)
        }
    }

    /// Take a usage sample unless the last is fresh enough; never longer than
    /// [`SAMPLE_TIMEOUT`] (the last sample stays).
    async fn refresh_usage(&self) {
        let _one = self.sampling.lock().await;
        let fresh = self
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .taken
            .is_some_and(|t| t.elapsed() < SAMPLE_MAX_AGE);
        if fresh {
            return;
        }
        let asked: Vec<(String, Option<u32>)> = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, t)| (n.clone(), t.pgid))
            .collect();
        let sampler = self.sampler.clone();
        let containment = self.containment.clone();
        let task = tokio::task::spawn_blocking(move || sample(&sampler, &containment, asked));
        match tokio::time::timeout(SAMPLE_TIMEOUT, task).await {
            Ok(Ok(rows)) => {
                let mut cache = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                cache.rows = rows;
                cache.taken = Some(Instant::now());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "the usage sample failed"),
            Err(_) => tracing::warn!("the usage sample took too long; serving the last one"),
        }
    }

    /// The Prometheus text exposition of every metric, after a usage sample.
    pub async fn render(&self) -> String {
        self.refresh_usage().await;
        let mut out = String::with_capacity(4096);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Memory and CPU of each asked worker: its cgroup's figures when it has a cgroup that
/// accounts them, otherwise its process group's (zero without a live process).
fn sample(
    sampler: &Mutex<GroupSampler>,
    containment: &Containment,
    asked: Vec<(String, Option<u32>)>,
) -> Vec<UsageRow> {
    let pgids: Vec<u32> = asked.iter().filter_map(|(_, g)| *g).collect();
    let groups = sampler
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .sample(&pgids);
    asked
        .into_iter()
        .map(|(worker, pgid)| {
            let group = pgid
                .and_then(|g| groups.get(&g))
                .copied()
                .unwrap_or_default();
            let cg = containment.worker(&worker).map(|c| c.usage());
            UsageRow {
                memory_bytes: cg
                    .as_ref()
                    .and_then(|u| u.memory_bytes)
                    .unwrap_or(group.rss_bytes) as f64,
                cpu_seconds: cg
                    .as_ref()
                    .and_then(|u| u.cpu_ns)
                    .map_or(group.cpu_seconds, |ns| ns as f64 / 1e9),
                worker,
            }
        })
        .collect()
}

impl EventTap for Exporter {
    fn observe(&self, event: &Event) {
        if event.event == EventKind::Shutdown {
            self.set_shutting_down();
            return;
        }
        let Some(name) = event.worker.as_deref() else {
            return;
        };
        self.track(name);
        let labels = || WorkerLabels {
            worker: name.to_string(),
        };
        match event.event {
            EventKind::Started => {
                self.set_pgid(name, event.pid);
                self.up.get_or_create(&labels()).set(1);
                self.set_state(name, WorkerState::Starting);
            }
            EventKind::Ready => self.set_state(name, WorkerState::Running),
            EventKind::Exited => {
                self.set_pgid(name, None);
                self.up.get_or_create(&labels()).set(0);
                if let Some(record) = &event.exit {
                    self.exits
                        .get_or_create(&ExitLabels {
                            worker: name.to_string(),
                            reason: record.reason.as_str().to_string(),
                        })
                        .inc();
                    if record.restart_delay_ms.is_some() {
                        self.restarts.get_or_create(&labels()).inc();
                    }
                    if let Some(n) = record.oom_kills.filter(|&n| n > 0) {
                        self.oom_kills.get_or_create(&labels()).inc_by(n);
                    }
                }
                if let Some(reaped) = event.reaped {
                    self.latency.observe(reaped.elapsed().as_secs_f64());
                }
            }
            EventKind::Stopping => self.set_state(name, WorkerState::Stopping),
            EventKind::Stopped => self.set_state(name, WorkerState::Stopped),
            EventKind::Backoff => self.set_state(name, WorkerState::Backoff),
            EventKind::Failed => self.set_state(name, WorkerState::Failed),
            EventKind::Reloaded | EventKind::Shutdown | EventKind::Dropped => {}
        }
    }
}

/// What HTTP clients may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection is closed after this, whatever it is doing.
    pub connection_timeout: Duration,
}

impl Default for HttpLimits {
    /// 64 connections, 5 s for the headers, 30 s per connection.
    fn default() -> Self {
        HttpLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `bind` failed (address in use, not local, no permission for the port).
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// A running HTTP server. Dropping it stops accepting (connections end with the runtime).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    exporter: Arc<Exporter>,
    accept: JoinHandle<()>,
    closing: watch::Sender<bool>,
}

impl HttpServer {
    /// Listen on `addr` (port 0: any free port, see [`HttpServer::local_addr`]) with the
    /// default [`HttpLimits`]. Must be called inside a tokio runtime.
    pub async fn start(addr: SocketAddr, exporter: Arc<Exporter>) -> Result<HttpServer, HttpError> {
        HttpServer::start_with_limits(addr, exporter, HttpLimits::default()).await
    }

    /// [`HttpServer::start`] with explicit limits.
    pub async fn start_with_limits(
        addr: SocketAddr,
        exporter: Arc<Exporter>,
        limits: HttpLimits,
    ) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        let (closing, closing_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, exporter.clone(), limits, closing_rx));
        tracing::info!(addr = %local, "HTTP listening (/metrics, /healthz, /readyz)");
        Ok(HttpServer {
            addr: local,
            exporter,
            accept,
            closing,
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `/healthz` answers 503 from now on; the server keeps answering until [`close`](Self::close).
    pub fn shutting_down(&self) {
        self.exporter.set_shutting_down();
    }

    /// Stop accepting and end every connection (requests being answered finish first, for
    /// at most a second).
    pub async fn close(mut self) {
        self.exporter.set_shutting_down();
        let _ = self.closing.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.accept).await;
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
    }
}

/// The answer to a client beyond the connection limit.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbusy\n";

async fn accept_loop(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    limits: HttpLimits,
    mut closing: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = closing.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: back off a little instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "HTTP connection limit reached; refusing a connection");
            // A fresh socket's send buffer is empty: this write does not block.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let exporter = exporter.clone();
        let closing = closing.clone();
        connections.spawn(async move {
            serve_connection(stream, exporter, limits, closing).await;
            drop(permit);
        });
    }
    // Requests being answered get a moment; then every connection ends.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

async fn serve_connection(
    stream: TcpStream,
    exporter: Arc<Exporter>,
    limits: HttpLimits,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let exporter = exporter.clone();
        async move { Ok::<_, Infallible>(respond(&exporter, &req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limits.connection_timeout);
    tokio::pin!(deadline);
    let mut graceful = false;
    loop {
        tokio::select! {
            _ = &mut conn => return,
            () = &mut deadline => return,
            _ = closing.changed(), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The answer to one request.
async fn respond(exporter: &Exporter, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match (get, req.uri().path()) {
        (true, "/metrics") => {
            let body = exporter.render().await;
            reply(
                StatusCode::OK,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                body,
            )
        }
        (true, "/healthz") => {
            if exporter.healthy() {
                text(StatusCode::OK, "ok\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
            }
        }
        (true, "/readyz") => match exporter.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(others) if !exporter.healthy() && others.is_empty() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
            }
            Err(others) => {
                let mut body = String::from("not ready:");
                for (name, state) in others {
                    body.push_str(&format!(" {name} ({})", state.as_str()));
                }
                body.push('\n');
                text(StatusCode::SERVICE_UNAVAILABLE, body)
            }
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{ExitReason, ExitRecord};

    fn exited(worker: &str, reason: ExitReason, restart: bool) -> Event {
        let record = ExitRecord {
            run_id: None,
            worker: worker.into(),
            pid: Some(42),
            generation: 1,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            exited_at: "2026-01-01T00:00:01.000Z".into(),
            uptime_ms: 1000,
            code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
            core_dumped: false,
            reason,
            restart_delay_ms: restart.then_some(100),
            log_tail: Vec::new(),
            decision: String::new(),
            oom_kills: Some(u64::from(reason == ExitReason::Oom)),
            memory_peak_bytes: None,
        };
        Event {
            reaped: Some(Instant::now()),
            ..Event::exited(&record)
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn events_move_the_counters_and_the_state() {
        let x = Exporter::new(
            "9.9.9",
            &["a".into(), "b".into()],
            Containment::ProcessGroup,
        );
        let text = x.render().await;
        assert_eq!(
            value(&text, "vigil_worker_restarts_total{worker=\"a\"}"),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "vigil_worker_state{worker=\"a\",state=\"starting\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "vigil_build_info{version=\"9.9.9\"}"),
            Some(1.0)
        );
        assert!(x.readiness().is_err());
        for name in ["a", "b"] {
            x.observe(&Event::worker(EventKind::Started, name, 1, Some(4242)));
            x.observe(&Event::worker(EventKind::Ready, name, 1, Some(4242)));
        }
        assert_eq!(x.readiness(), Ok(()));
        x.observe(&exited("a", ExitReason::Killed, true));
        assert!(
            x.readiness().is_err(),
            "a exited: not ready until it runs again"
        );
        x.observe(&exited("a", ExitReason::Oom, true));
        x.observe(&Event::worker(EventKind::Backoff, "a", 2, None));
        let text = x.render().await;
        assert_eq!(
            value(&text, "vigil_worker_restarts_total{worker=\"a\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                "vigil_worker_exits_total{worker=\"a\",reason=\"killed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "vigil_worker_oom_kills_total{worker=\"a\"}"),
            Some(1.0)
        );
        assert_eq!(value(&text, "vigil_worker_up{worker=\"a\"}"), Some(0.0));
        assert_eq!(value(&text, "vigil_worker_up{worker=\"b\"}"), Some(1.0));
        assert_eq!(
            value(&text, "vigil_worker_state{worker=\"a\",state=\"backoff\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "vigil_worker_state{worker=\"a\",state=\"running\"}"),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "vigil_exit_notification_seconds_count"),
            Some(2.0)
        );
        assert!(
            text.contains("# TYPE vigil_worker_cpu_seconds_total counter"),
            "{text}"
        );
        assert!(
            text.contains("vigil_worker_memory_bytes{worker=\"b\"}"),
            "{text}"
        );
        // A stopped worker is not meant to run: ready again.
        x.observe(&Event::worker(EventKind::Stopped, "a", 2, None));
        assert_eq!(x.readiness(), Ok(()));
        assert!(x.healthy());
        x.observe(&Event::server(EventKind::Shutdown));
        assert!(!x.healthy());
        assert!(x.readiness().is_err());
    }
}
