//! One module per command (or family of commands); each exposes functions returning
//! `Result<ExitCode, CliError>` that `main.rs` calls.
//!
//! Owns nothing shared: a command uses `config`, the library and its own rendering. It must not
//! parse the command line (`cli.rs`) or print errors (`main.rs`).

pub mod check;
pub mod completions;
pub mod control;
pub mod events;
pub mod history;
pub mod logs;
pub mod manpage;
pub mod serve;
pub mod worker;
