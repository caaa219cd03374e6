//! `vigil dump|status|restart|stop|start|shutdown`: one request to the running server each.
//!
//! Owns what these commands print: the text tree or table (through `vigil_actors::render`),
//! the JSON forms of the contract, and the one-line confirmations of actions. It must not
//! decide anything about workers: the server answers, including "no worker named ...".

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use vigil_actors::protocol::{Request, Timeouts};
use vigil_actors::render;
use vigil_actors::root::WorkerAction;
use vigil_actors::snapshot::{Dump, WorkerSnapshot};

use crate::cli::{DumpArgs, StatusArgs, WorkerArg};
use crate::config;
use crate::control_client::{ClientError, Connection};
use crate::error::CliError;

/// How long `shutdown` waits, after the server's reply, for the server process to go away.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// `vigil dump [--json]`.
pub fn dump(config: &Path, args: &DumpArgs) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config)?;
    let data = server.ask(&Request::Dump, server.timeouts.query)?;
    if args.json {
        print_json::<Dump>(&data)?;
    } else {
        let dump: Dump = decode(&data)?;
        print(&render::dump_text(&dump, colour()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil status [WORKER] [--json]`.
pub fn status(config: &Path, args: &StatusArgs) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config)?;
    let request = Request::Status {
        worker: args.worker.clone(),
    };
    let data = server.ask(&request, server.timeouts.query)?;
    if args.json {
        print_json::<Vec<WorkerSnapshot>>(&data)?;
    } else {
        let workers: Vec<WorkerSnapshot> = decode(&data)?;
        print(&render::status_text(&workers, colour()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil restart|stop|start WORKER`: returns once the server says the action is done.
pub fn act(config: &Path, action: WorkerAction, args: &WorkerArg) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config)?;
    let request = Request::Act {
        worker: args.worker.clone(),
        action,
    };
    let data = server.ask(&request, server.timeouts.act)?;
    let worker: WorkerSnapshot = decode(&data)?;
    print(&format!("{}\n", action_line(action, &worker)))?;
    Ok(ExitCode::SUCCESS)
}

/// `vigil shutdown`: returns once every worker is down and the server has exited.
pub fn shutdown(config: &Path) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config)?;
    let started = Instant::now();
    let mut connection = Connection::open(&server.socket).map_err(client_error)?;
    connection
        .request(&Request::Shutdown, server.timeouts.shutdown)
        .map_err(client_error)?;
    // The reply comes once the workers are down; the server process exits right after, which
    // closes our connection.
    if !connection.wait_closed(EXIT_WAIT) {
        return Err(CliError::Runtime(format!(
            "every worker stopped, but the server did not exit within {} (socket {})",
            render::duration(EXIT_WAIT),
            server.socket.display()
        )));
    }
    print(&format!(
        "vigil stopped ({})\n",
        render::duration(started.elapsed())
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The running server a command talks to, as the config describes it.
struct Server {
    socket: PathBuf,
    /// The server's bounds plus a margin, so the server's own timeout sentence arrives first.
    timeouts: Timeouts,
}

impl Server {
    fn from_config(config: &Path) -> Result<Server, CliError> {
        let loaded = config::load_for_client(config)?;
        let server = Timeouts::for_tree(&loaded.tree);
        let margin = Timeouts::client_margin();
        Ok(Server {
            socket: loaded.tree.socket_path(),
            timeouts: Timeouts {
                query: server.query + margin,
                act: server.act + margin,
                shutdown: server.shutdown + margin,
            },
        })
    }

    fn ask(&self, request: &Request, timeout: Duration) -> Result<Box<RawValue>, CliError> {
        let mut connection = Connection::open(&self.socket).map_err(client_error)?;
        connection.request(request, timeout).map_err(client_error)
    }
}

/// One line per action: what happened, and where the worker is now.
fn action_line(action: WorkerAction, w: &WorkerSnapshot) -> String {
    let pid = match (w.pid, w.pgid) {
        (Some(pid), Some(pgid)) if pid != pgid => format!("pid {pid}, pgid {pgid}"),
        (Some(pid), _) => format!("pid {pid}"),
        (None, _) => "no process".to_string(),
    };
    match action {
        WorkerAction::Restart => format!(
            "restarted {}: {pid}, generation {}, {}",
            w.name,
            w.generation,
            w.state.as_str()
        ),
        WorkerAction::Start => format!(
            "started {}: {pid}, generation {}, {}",
            w.name,
            w.generation,
            w.state.as_str()
        ),
        WorkerAction::Stop => format!("stopped {}: {}", w.name, w.state.as_str()),
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (no-color.org).
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn client_error(err: ClientError) -> CliError {
    CliError::Runtime(err.to_string())
}

/// The server's JSON text, decoded once, straight into the typed answer.
fn decode<T: serde::de::DeserializeOwned>(data: &RawValue) -> Result<T, CliError> {
    serde_json::from_str(data.get()).map_err(|err| {
        CliError::Runtime(format!(
            "the vigil server sent an answer this client does not understand: {err}"
        ))
    })
}

/// The answer as JSON: indented on a terminal (decoded into `T` and encoded again, fields in
/// the snapshot's order); otherwise exactly the one line the server sent, which is the same
/// JSON without the whitespace — a 1000-worker dump after a crash storm is 770 KB, and a
/// program reading it should not wait for this client to re-encode it.
fn print_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    data: &RawValue,
) -> Result<(), CliError> {
    let mut text = if std::io::stdout().is_terminal() {
        let value: T = decode(data)?;
        serde_json::to_string_pretty(&value)
            .map_err(|err| CliError::Runtime(format!("cannot encode the answer as JSON: {err}")))?
    } else {
        data.get().to_string()
    };
    text.push('\n');
    print(&text)
}

/// Write to stdout; a closed pipe (`vigil dump | head`) is not an error.
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(CliError::Runtime(format!("cannot write to stdout: {err}"))),
    }
}
