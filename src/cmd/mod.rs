//! One module per subcommand. [`run`](fn@run) dispatches.

pub mod build;
pub mod check;
pub mod package;
pub mod publish;
pub mod run;

use std::process::ExitCode;

use crate::cli::Command;

/// Runs one subcommand and returns the process exit code.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => build::run(args),
        Command::Package(args) => package::run(args),
        Command::Check(args) => check::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Run(args) => run::run(args),
        Command::EchoRuntime => run::run_echo_runtime(),
    }
}
