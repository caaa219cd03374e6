//! `http:` and `significant:` with real servers: `/metrics` scraped over a plain HTTP/1.1
//! connection after a `kill -9` (restarts and exits by reason go up, the state follows),
//! `/healthz` and `/readyz` through start-up and shutdown, 404 for the rest, the connection
//! limit; a significant worker's end stops the server with its exit status (7, 137).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;

/// The address the server says it listens on (it is given port 0).
fn http_addr(server: &Server) -> SocketAddr {
    wait_for(LONG, "the server to say where HTTP listens", || {
        let err = server.stderr();
        let line = err.lines().find(|l| l.contains("HTTP listening"))?;
        let at = line.split("addr=").nth(1)?;
        at.split_whitespace().next()?.parse().ok()
    })
}

/// One request, `Connection: close`; the status code and the body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path)
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every sample line has a name, optional labels and a number; every name has a TYPE.
fn check_exposition(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            typed.insert(parts.next().expect("a TYPE names a metric").to_string());
            let kind = parts.next().expect("a TYPE has a kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
        let name = series.split('{').next().unwrap_or(series);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE for {name}: {text}");
    }
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by `.ci/run`) on the
/// exposition, when it is installed.
fn promtool_check(text: &str) {
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "SKIP: promtool check metrics: promtool cannot run ({e}); install Debian's prometheus package"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_follow_a_kill_and_the_probes_follow_the_tree() {
    let home = Home::new(
        "http: Some(\"127.0.0.1:0\"), cgroup: Off,",
        &[
            sh_worker("sleeper", "echo $$ >> pids; exec sleep 1000", FAST),
            // Running only after 3 s; ignores SIGTERM, so shutdown lasts its 2 s grace.
            sh_worker(
                "slow",
                "trap '' TERM; echo $$ >> slow_pids; while true; do sleep 0.1; done",
                "start_secs: \"3s\", shutdown: (grace: \"2s\")",
            ),
        ]
        .join("\n"),
    );
    let mut server = home.serve();
    let addr = http_addr(&server);

    let (code, body) = get(addr, "/readyz");
    assert_eq!(code, 503, "slow is still starting: {body}");
    assert!(body.contains("slow (starting)"), "{body}");
    assert_eq!(get(addr, "/healthz").0, 200);
    wait_for(LONG, "/readyz to turn 200", || {
        (get(addr, "/readyz").0 == 200).then_some(())
    });
    let pid = wait_for(LONG, "the sleeper's pid", || {
        home.pids("pids").first().copied()
    });
    server.track(pid);
    for p in home.pids("slow_pids") {
        server.track(p);
    }

    let (code, text) = get(addr, "/metrics");
    assert_eq!(code, 200);
    check_exposition(&text);
    promtool_check(&text);
    let w = "{worker=\"sleeper\"}";
    assert_eq!(sample(&text, &format!("vigil_worker_up{w}")), Some(1.0));
    assert_eq!(
        sample(&text, &format!("vigil_worker_restarts_total{w}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, &format!("vigil_worker_oom_kills_total{w}")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "vigil_worker_state{worker=\"sleeper\",state=\"running\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vigil_worker_state{worker=\"sleeper\",state=\"backoff\"}"
        ),
        Some(0.0)
    );
    let memory = sample(&text, &format!("vigil_worker_memory_bytes{w}")).expect("memory");
    assert!(memory > 0.0, "a live sleep uses memory: {text}");
    assert!(sample(&text, &format!("vigil_worker_cpu_seconds_total{w}")).is_some());
    let version = format!(
        "vigil_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "vigil_exit_notification_seconds_count"),
        Some(0.0)
    );

    // SAFETY: kill(2) on the worker this test's server started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let text = wait_for(LONG, "the kill to show in /metrics", || {
        let (_, text) = get(addr, "/metrics");
        let killed = "vigil_worker_exits_total{worker=\"sleeper\",reason=\"killed\"}";
        (sample(&text, killed) == Some(1.0)
            && sample(&text, &format!("vigil_worker_restarts_total{w}")) == Some(1.0)
            && sample(&text, &format!("vigil_worker_up{w}")) == Some(1.0))
        .then_some(text)
    });
    check_exposition(&text);
    promtool_check(&text);
    assert_eq!(
        sample(&text, "vigil_exit_notification_seconds_count"),
        Some(1.0)
    );
    let second = wait_for(LONG, "the restarted sleeper", || {
        home.pids("pids").get(1).copied()
    });
    server.track(second);
    assert_ne!(second, pid);

    for (method, path) in [
        ("GET", "/"),
        ("GET", "/metrics/x"),
        ("GET", "/admin"),
        ("POST", "/metrics"),
        ("PUT", "/healthz"),
        ("DELETE", "/readyz"),
    ] {
        assert_eq!(request(addr, method, path).0, 404, "{method} {path}");
    }

    // Beyond 64 connections at once, a new one is refused with 503.
    let held: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut extra = TcpStream::connect(addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut busy = String::new();
    let _ = extra.read_to_string(&mut busy);
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy:?}");
    // A connection that sends no request is closed (the header timeout is 5 s).
    let mut idle = held.into_iter().next().expect("a held connection");
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    match idle.read(&mut buf) {
        Ok(_) => {}
        Err(e) => panic!("an idle connection was not closed: {e}"),
    }
    wait_for(LONG, "the held connections to be released", || {
        (get(addr, "/healthz").0 == 200).then_some(())
    });

    // Shutdown: slow ignores SIGTERM for its 2 s grace; meanwhile both probes say 503.
    server.signal(libc::SIGTERM);
    wait_for(LONG, "/healthz to turn 503 during shutdown", || {
        (get(addr, "/healthz").0 == 503).then_some(())
    });
    assert_eq!(get(addr, "/readyz").0, 503);
    let status = server.wait(LONG).expect("the server stops");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens once the server is gone"
    );
}

#[test]
fn a_bad_or_taken_http_address_is_refused() {
    let home = Home::new("http: Some(\"localhost:80\"),", "");
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.ron:3:"), "{err}");
    assert!(err.contains("invalid http address"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let home = Home::new(
        &format!("http: Some(\"127.0.0.1:{port}\"), cgroup: Off,"),
        &sh_worker("w", "echo $$ >> pids; exec sleep 1000", FAST),
    );
    let mut server = home.serve();
    let status = server.wait(LONG).expect("the server gives up");
    assert_eq!(status.code(), Some(1), "{}", server.stderr());
    assert!(
        server.stderr().contains("cannot listen for HTTP"),
        "{}",
        server.stderr()
    );
    assert!(
        home.pids("pids").is_empty(),
        "no worker starts when HTTP cannot listen"
    );
}

/// Serve `workers` and wait for the server's own exit status.
fn serve_until_exit(home: &Home) -> (std::process::ExitStatus, Server) {
    let mut server = home.serve();
    let status = server
        .wait(LONG)
        .unwrap_or_else(|| panic!("the server did not stop by itself: {}", server.stderr()));
    (status, server)
}

#[test]
fn a_significant_workers_exit_code_ends_the_server() {
    let home = Home::new(
        "cgroup: Off,",
        &[
            sh_worker("other", "echo $$ >> other_pids; exec sleep 1000", FAST),
            sh_worker(
                "main",
                "while [ ! -s other_pids ]; do sleep 0.05; done; exit 7",
                "restart: Temporary, significant: true",
            ),
        ]
        .join("\n"),
    );
    let (status, server) = serve_until_exit(&home);
    assert_eq!(status.code(), Some(7), "{}", server.stderr());
    let other = home.pids("other_pids");
    assert_eq!(other.len(), 1);
    assert!(!alive(other[0]), "the other worker was stopped too");
    let history = home.history(Some("main"));
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["code"], 7);
}

#[test]
fn a_significant_worker_killed_by_sigkill_ends_the_server_with_137() {
    let home = Home::new(
        "cgroup: Off,",
        &sh_worker(
            "main",
            "echo $$ >> pids; exec sleep 1000",
            "restart: Temporary, significant: true, start_secs: \"0s\"",
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "the worker's pid", || {
        home.pids("pids").first().copied()
    });
    server.track(pid);
    // SAFETY: kill(2) on the worker this test's server started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let status = server.wait(LONG).expect("the server stops by itself");
    assert_eq!(status.code(), Some(137), "{}", server.stderr());
    assert_eq!(status.signal(), None);
}

#[test]
fn a_transient_significant_workers_clean_exit_ends_the_server_with_0() {
    let home = Home::new(
        "cgroup: Off,",
        &sh_worker("main", "exit 0", "restart: Transient, significant: true"),
    );
    let (status, server) = serve_until_exit(&home);
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

#[test]
fn a_significant_worker_that_gives_up_ends_the_server_with_its_code() {
    let home = Home::new(
        "cgroup: Off,",
        &sh_worker(
            "main",
            "exit 5",
            "significant: true, backoff: (initial: \"0s\", jitter: 0.0), intensity: (max_restarts: 2, within: \"60s\")",
        ),
    );
    let (status, server) = serve_until_exit(&home);
    assert_eq!(status.code(), Some(5), "{}", server.stderr());
    assert_eq!(
        home.history(Some("main")).len(),
        3,
        "two restarts, then it gave up"
    );
}

#[test]
fn an_operator_stop_of_a_significant_worker_does_not_end_the_server() {
    let home = Home::new(
        "cgroup: Off,",
        &sh_worker(
            "main",
            "echo $$ >> pids; exec sleep 1000",
            "restart: Temporary, significant: true, start_secs: \"0s\"",
        ),
    );
    let mut server = home.serve();
    let pid = wait_for(LONG, "the worker's pid", || {
        home.pids("pids").first().copied()
    });
    server.track(pid);
    control_wait_ready(&home);
    let out = home.run(&["stop", "main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server still answers after the stop, and stops normally.
    control_wait_ready(&home);
    assert_eq!(
        server.child.try_wait().ok().flatten(),
        None,
        "the server is still up"
    );
    let status = server.terminate(LONG).expect("the server stops");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

#[test]
fn a_significant_worker_that_cannot_spawn_ends_the_server_with_127() {
    let home = Home::new(
        "cgroup: Off,",
        "        (name: \"main\", kind: Command(argv: [\"/nonexistent/program\"]), restart: Temporary, significant: true),",
    );
    let (status, server) = serve_until_exit(&home);
    assert_eq!(status.code(), Some(127), "{}", server.stderr());
}
