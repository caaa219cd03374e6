//! `vigil events [--json]`: what happens in the tree, streamed from the running server.
//!
//! Owns the subscription on the control socket (one `events` request, then one event per
//! line until the server closes the connection, which is exit 0) and the human form of an
//! event: one aligned line each. With `--json` the server's lines are printed as they come,
//! one object per line. It must not interpret events beyond rendering them: the server
//! decides what happened.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use vigil_actors::events::{Event, EventKind};
use vigil_actors::exit::Exit;
use vigil_actors::protocol::{Request, Subscribed};
use vigil_actors::render;

use crate::cli::EventsArgs;
use crate::control_client::Connection;
use crate::error::CliError;

/// Subscribe and print every event until the server stops.
///
/// The server is found as the control commands find it (`--socket`, the server's record,
/// then the config), so a config that no longer parses does not hide the stream.
pub fn run(config: &Path, socket: Option<&Path>, args: &EventsArgs) -> Result<ExitCode, CliError> {
    let server = super::control::Server::from_config(config, socket)?;
    let socket = server.socket;
    let timeout = server.timeouts.query;
    let mut connection = Connection::open(&socket)?;
    let ack = connection.request(&Request::Events, timeout)?;
    let subscribed: Subscribed =
        serde_json::from_str(ack.get()).map_err(|source| CliError::Undecodable {
            what: "an answer",
            source,
        })?;
    let mut human = Human {
        width: subscribed
            .workers
            .iter()
            .map(|w| w.chars().count())
            .max()
            .unwrap_or(0)
            .max(6),
        paint: !args.json
            && io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let mut line = Vec::with_capacity(1024);
    let mut out = io::stdout().lock();
    while connection.next_line(&mut line)? {
        let text = if args.json {
            let mut l = line.clone();
            l.push(b'\n');
            l
        } else {
            match serde_json::from_slice::<Event>(&line) {
                Ok(event) => human.line(&event).into_bytes(),
                Err(source) => {
                    return Err(CliError::Undecodable {
                        what: "an event",
                        source,
                    });
                }
            }
        };
        match out.write_all(&text).and_then(|()| out.flush()) {
            Ok(()) => {}
            // `vigil events | head`: the reader has what it wanted.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(CliError::Stdout(e)),
        }
    }
    // The server closed the stream: it has stopped.
    Ok(ExitCode::SUCCESS)
}

/// The human form: `TIME  EVENT  WORKER  gen N  pid P  what`.
struct Human {
    /// The worker column's width (grows if a longer name appears).
    width: usize,
    paint: bool,
}

impl Human {
    fn line(&mut self, e: &Event) -> String {
        let worker = e.worker.as_deref().unwrap_or("-");
        self.width = self.width.max(worker.chars().count());
        let kind = format!("{:<8}", e.event.as_str());
        let kind = if self.paint {
            paint(e.event, &kind)
        } else {
            kind
        };
        let generation = e.generation.map_or("-".to_string(), |g| format!("gen {g}"));
        let pid = e.pid.map_or("-".to_string(), |p| format!("pid {p}"));
        let what = what(e);
        let line = format!(
            "{time:<24}  {kind}  {worker:<width$}  {generation:<8}  {pid:<10}  {what}",
            time = e.time,
            width = self.width,
        );
        format!("{}\n", line.trim_end())
    }
}

/// The last column: what the event says beyond its kind.
fn what(e: &Event) -> String {
    match e.event {
        EventKind::Exited => match &e.exit {
            Some(x) => {
                let exit = Exit {
                    code: x.code,
                    signal: x.signal,
                    core_dumped: x.core_dumped,
                    reason: x.reason,
                };
                let mut s = format!("{} after {} up", exit.describe(), render::ms(x.uptime_ms));
                if !x.decision.is_empty() {
                    s.push_str("; ");
                    s.push_str(&x.decision);
                }
                s
            }
            None => String::new(),
        },
        EventKind::Backoff => match e.delay_ms {
            Some(ms) => format!("next start in {}", render::ms(ms)),
            None => String::new(),
        },
        EventKind::Dropped => format!(
            "{} events lost: this reader fell behind",
            e.count.unwrap_or(0)
        ),
        EventKind::Shutdown if e.detail.is_none() => "the server is stopping".to_string(),
        EventKind::Stopping => match &e.detail {
            Some(cause) => format!("({cause})"),
            None => String::new(),
        },
        _ => e.detail.clone().unwrap_or_default(),
    }
}

fn paint(kind: EventKind, text: &str) -> String {
    let code = match kind {
        EventKind::Started | EventKind::Ready => "32",
        EventKind::Exited | EventKind::Failed | EventKind::Dropped => "31",
        EventKind::Backoff | EventKind::Stopping => "33",
        EventKind::Stopped | EventKind::Shutdown | EventKind::Reloaded => "36",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_aligned_line_per_event() {
        let mut h = Human {
            width: 6,
            paint: false,
        };
        let mut started = Event::worker(EventKind::Started, "web", 2, Some(4321));
        started.time = "2026-12-02T10:00:00.000Z".into();
        let mut shutdown = Event::server(EventKind::Shutdown);
        shutdown.time = started.time.clone();
        let a = h.line(&started);
        let b = h.line(&shutdown);
        assert_eq!(
            a,
            "2026-12-02T10:00:00.000Z  started   web     gen 2     pid 4321\n"
        );
        assert_eq!(
            b,
            "2026-12-02T10:00:00.000Z  shutdown  -       -         -           the server is stopping\n"
        );
        assert_eq!(a.find("web"), b.find("-      "), "columns line up");
    }
}
