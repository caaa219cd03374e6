//! `vigil manpage`: the man page, generated from the clap definitions by `clap_mangen`.
//!
//! Owns nothing but that call: like the completion scripts, the page is derived from `cli.rs`,
//! so it never documents a command or an option the parser does not know.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::CliError;

/// Print `vigil.1` (roff) to stdout.
pub fn run() -> Result<ExitCode, CliError> {
    let mut page = Vec::with_capacity(16 * 1024);
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| CliError::io("cannot render the man page", e))?;
    let mut out = io::stdout().lock();
    match out.write_all(&page).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::Stdout(e)),
    }
}
