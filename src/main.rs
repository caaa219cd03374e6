//! vigil: keeps worker processes alive, and tells you why they died.
//!
//! This file is a switchboard: parse the command line, call the command's function, print an
//! error as one line on stderr and turn it into the exit status. Each command lives in
//! `commands/`.

mod cli;
mod commands;
mod config;
mod control_client;
mod error;
mod notify;
mod server_record;
mod workers;

use std::process::ExitCode;

use clap::Parser;
use vigil_actors::protocol::WorkerAction;

use crate::cli::{Cli, Command, WorkerCommand};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if err.is_located() {
                eprintln!("{err}");
            } else {
                eprintln!("vigil: {err}");
            }
            err.exit_code()
        }
    }
}

/// One arm per command, one function per arm.
fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = cli.config.as_path();
    let socket = cli.socket.as_deref();
    match cli.command {
        Command::Serve => commands::serve::run(config),
        Command::Check => commands::check::run(config),
        Command::Dump(args) => commands::control::dump(config, socket, &args),
        Command::Status(args) => commands::control::status(config, socket, &args),
        Command::Restart(args) => {
            commands::control::act(config, socket, WorkerAction::Restart, &args)
        }
        Command::Stop(args) => commands::control::act(config, socket, WorkerAction::Stop, &args),
        Command::Start(args) => commands::control::act(config, socket, WorkerAction::Start, &args),
        Command::Shutdown => commands::control::shutdown(config, socket),
        Command::Reload(args) => commands::control::reload(config, socket, &args),
        Command::History(args) => commands::history::run(config, &args),
        Command::Worker(WorkerCommand::Indexing(args)) => commands::worker::indexing(config, &args),
        Command::Logs(args) => commands::logs::run(config, &args),
        Command::Events(args) => commands::events::run(config, socket, &args),
        Command::Completions(args) => commands::completions::run(&args),
        Command::Manpage => commands::manpage::run(),
    }
}
