//! `vigil completions SHELL`: a completion script generated from the clap definitions.
//!
//! Owns nothing but the call into `clap_complete`: the script is derived from `cli.rs`, so it
//! can never list a command or an option the parser does not know.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};
use crate::error::CliError;

/// Print the script for `args.shell` to stdout.
pub fn run(args: &CompletionsArgs) -> Result<ExitCode, CliError> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::with_capacity(16 * 1024);
    clap_complete::generate(shell, &mut Cli::command(), "vigil", &mut script);
    let mut out = io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::Stdout(e)),
    }
}
