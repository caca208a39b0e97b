//! One module per subcommand. [`run`] dispatches.

use std::process::ExitCode;

use crate::cli::Command;

/// Runs one subcommand and returns the process exit code.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {}
}
