//! `vigil dump|status|restart|stop|start|shutdown|reload`: one request to the running server each.
//!
//! Owns what these commands print: the text tree or table (through `vigil_actors::render`),
//! the JSON forms of the contract, and the one-line confirmations of actions. It must not
//! decide anything about workers: the server answers, including "no worker named ...".

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use vigil_actors::protocol::WorkerAction;
use vigil_actors::protocol::{Request, Timeouts};
use vigil_actors::render;
use vigil_actors::snapshot::{Dump, WorkerSnapshot};

use crate::cli::{DumpArgs, ReloadArgs, StatusArgs, WorkerArg};
use crate::config;
use crate::control_client::{ClientError, Connection};
use crate::error::CliError;
use crate::server_record;

/// How long `shutdown` waits, after the server's reply, for the server process to go away.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// `vigil dump [--json]`.
pub fn dump(config: &Path, socket: Option<&Path>, args: &DumpArgs) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config, socket)?;
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
pub fn status(
    config: &Path,
    socket: Option<&Path>,
    args: &StatusArgs,
) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config, socket)?;
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
pub fn act(
    config: &Path,
    socket: Option<&Path>,
    action: WorkerAction,
    args: &WorkerArg,
) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config, socket)?;
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
pub fn shutdown(config: &Path, socket: Option<&Path>) -> Result<ExitCode, CliError> {
    let server = Server::from_config(config, socket)?;
    let started = Instant::now();
    let mut connection = Connection::open(&server.socket).map_err(client_error)?;
    connection
        .request(&Request::Shutdown, server.timeouts.shutdown)
        .map_err(client_error)?;
    // The reply comes once the workers are down; the server process exits right after, which
    // closes our connection.
    if !connection.wait_closed(EXIT_WAIT) {
        return Err(CliError::ServerDidNotExit {
            waited: EXIT_WAIT,
            socket: server.socket.clone(),
        });
    }
    print(&format!(
        "vigil stopped ({})\n",
        render::duration(started.elapsed())
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `vigil reload [--dry-run] [--json]`: returns once the server has applied the new config
/// (or, with `--dry-run`, said what it would do). The server's config error exits 2, printed
/// as `vigil check` prints it.
pub fn reload(
    config: &Path,
    socket: Option<&Path>,
    args: &ReloadArgs,
) -> Result<ExitCode, CliError> {
    use vigil_actors::protocol::ErrorKind;
    use vigil_actors::reload::ReloadReport;
    let server = Server::from_config(config, socket)?;
    let request = Request::Reload {
        dry_run: args.dry_run,
    };
    let mut connection = Connection::open(&server.socket).map_err(client_error)?;
    let data = match connection.request(&request, server.timeouts.reload) {
        Ok(data) => data,
        Err(ClientError::Remote(e)) if e.kind == ErrorKind::InvalidConfig => {
            return Err(CliError::ServerConfig(e.message));
        }
        Err(e) => return Err(client_error(e)),
    };
    if args.json {
        return print_json::<ReloadReport>(&data).map(|()| ExitCode::SUCCESS);
    }
    let report: ReloadReport = decode(&data)?;
    let mut text = String::new();
    if report.dry_run {
        text.push_str("dry run: nothing was changed; a reload would do this:\n");
    }
    for (class, names) in [
        ("added", &report.added),
        ("removed", &report.removed),
        ("restarted", &report.restarted),
        ("updated", &report.updated),
        ("unchanged", &report.unchanged),
        ("root", &report.root),
    ] {
        if class == "root" && names.is_empty() {
            continue;
        }
        let list = if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        };
        text.push_str(&format!("{class}: {list}\n"));
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The running server a command talks to, as the config describes it.
pub(crate) struct Server {
    pub(crate) socket: PathBuf,
    /// The server's bounds plus a margin, so the server's own timeout sentence arrives first.
    pub(crate) timeouts: Timeouts,
}

impl Server {
    /// The server to talk to, found without parsing the config when possible: `--socket`
    /// first, then the record a live server started with this config left
    /// ([`server_record`]), and only then the socket the config names. So a config that no
    /// longer parses does not lock the operator out of the running server.
    pub(crate) fn from_config(config: &Path, socket: Option<&Path>) -> Result<Server, CliError> {
        let record = server_record::find(config);
        let (socket, server) = match (socket, record) {
            (Some(socket), Some(r)) if r.socket == socket => (socket.to_path_buf(), r.timeouts()),
            (Some(socket), _) => {
                let timeouts = config::load_for_client(config)
                    .map(|l| Timeouts::for_tree(&l.tree))
                    .unwrap_or_default();
                (socket.to_path_buf(), timeouts)
            }
            (None, Some(r)) => (r.socket.clone(), r.timeouts()),
            (None, None) => {
                let loaded = config::load_for_client(config)?;
                (loaded.tree.socket_path(), Timeouts::for_tree(&loaded.tree))
            }
        };
        let margin = Timeouts::client_margin();
        Ok(Server {
            socket,
            timeouts: Timeouts {
                query: server.query + margin,
                act: server.act + margin,
                shutdown: server.shutdown + margin,
                reload: server.reload + margin,
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
    CliError::Client(err)
}

/// The server's JSON text, decoded once, straight into the typed answer.
fn decode<T: serde::de::DeserializeOwned>(data: &RawValue) -> Result<T, CliError> {
    serde_json::from_str(data.get()).map_err(|source| CliError::Undecodable {
        what: "an answer",
        source,
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
        serde_json::to_string_pretty(&value).map_err(|source| CliError::Encode {
            what: "the answer",
            source,
        })?
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
        Err(err) => Err(CliError::Stdout(err)),
    }
}
