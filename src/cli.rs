//! The command line: clap types only, as the contract lists them.
//!
//! Owns the names, arguments and help of every command. It must not do any work: `main.rs`
//! dispatches each command to its function in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// vigil keeps worker processes alive, and tells you why they died.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about)]
pub struct Cli {
    /// The config file; relative paths inside it resolve against its folder.
    #[arg(long, global = true, value_name = "PATH", default_value = "config.ron")]
    pub config: PathBuf,

    /// The running server's control socket, for the commands that talk to it. Default: the
    /// socket of the server started with `--config` (found even when the file no longer
    /// parses), else `<data_dir>/vigil.sock` of the config.
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground until SIGTERM/SIGINT or `vigil shutdown`.
    Serve,
    /// Validate the config and exit 0, or print FILE:LINE:COL: message and exit 2.
    Check,
    /// Print the live supervision tree of the running server.
    Dump(DumpArgs),
    /// Print one line (or JSON object) per worker of the running server.
    Status(StatusArgs),
    /// Restart one worker through the running server; returns once it is done.
    Restart(WorkerArg),
    /// Stop one worker (it stays stopped until `start`); returns once it has stopped.
    Stop(WorkerArg),
    /// Start a stopped worker through the running server; returns once it has started.
    Start(WorkerArg),
    /// Ask the running server to stop gracefully; returns when it has.
    Shutdown,
    /// Make the running server re-read its config file and apply the difference; returns once
    /// applied.
    Reload(ReloadArgs),
    /// Print exit records from the history database, newest first (server not needed).
    History(HistoryArgs),
    /// Run a built-in worker program in the foreground.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Print the last lines of a worker's log, or follow it (server not needed).
    Logs(LogsArgs),
    /// Stream what happens in the tree, one line per event, until the server stops.
    Events(EventsArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout: `vigil manpage > /usr/local/share/man/man1/vigil.1`.
    Manpage,
}

/// `vigil logs WORKER [-n N] [-f] [--previous]`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The worker's configured name.
    pub worker: String,
    /// How many lines to print (the last ones).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are written, across restarts and rotation, until
    /// interrupted (Ctrl-C).
    #[arg(short = 'f', long, conflicts_with = "previous")]
    pub follow: bool,
    /// The lines of the generation before the current (or last) one.
    #[arg(long)]
    pub previous: bool,
}

/// `vigil events [--json]`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vigil completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `vigil completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// GNU bash (`source <(vigil completions bash)`).
    Bash,
    /// zsh (save as `_vigil` in a folder of `$fpath`).
    Zsh,
    /// fish (save as `~/.config/fish/completions/vigil.fish`).
    Fish,
}

/// `vigil dump [--json]`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vigil status [WORKER] [--json]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this worker.
    pub worker: Option<String>,
    /// Print a JSON list instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vigil reload [--dry-run] [--json]`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Say what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object: {"added": [..], "removed": [..], "restarted": [..], "updated": [..], "unchanged": [..]}.
    #[arg(long)]
    pub json: bool,
}

/// `vigil restart|stop|start WORKER`.
#[derive(Debug, Args)]
pub struct WorkerArg {
    /// The worker's configured name.
    pub worker: String,
}

/// `vigil history [WORKER] [--limit N] [--json]`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this worker's records.
    pub worker: Option<String>,
    /// At most this many records.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Print a JSON list instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show every log-tail line (default: the last 3).
    #[arg(long, short)]
    pub verbose: bool,
    /// List supervision events (escalations to the root, root intensity) instead of exits.
    #[arg(long)]
    pub events: bool,
}

/// `vigil worker KIND`: the built-in worker programs.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Run the indexing worker with the settings the server would give it.
    Indexing(IndexingArgs),
}

/// `vigil worker indexing [--name NAME] [--once]`.
#[derive(Debug, Args)]
pub struct IndexingArgs {
    /// The config's Indexing worker to run (needed when there are several).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Run one cycle and exit 0.
    #[arg(long)]
    pub once: bool,
    /// Internal, passed by the server: the resolved index database. With it (and `--name`,
    /// `--interval`, `--root`) the worker runs with these settings and reads no config file.
    #[arg(long, value_name = "PATH", hide = true, requires_all = ["name", "interval", "roots"])]
    pub db: Option<PathBuf>,
    /// Internal, with `--db`: the resolved interval (a duration such as `30s`).
    #[arg(long, value_name = "DURATION", hide = true, requires = "db")]
    pub interval: Option<String>,
    /// Internal, with `--db`: one resolved, absolute root (repeated).
    #[arg(long = "root", value_name = "PATH", hide = true, requires = "db")]
    pub roots: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
