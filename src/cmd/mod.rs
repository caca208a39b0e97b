//! One module per subcommand. [`run`](fn@run) dispatches.

/// A message to the user on stderr. Unlike `eprintln!`, a closed stderr
/// (the terminal went away, a parent that stopped reading) is ignored
/// instead of panicking: a panic in the Ctrl-C task would leave the
/// environment running with nobody to stop it.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) mod build;
pub(crate) mod check;
mod example;
pub(crate) mod invoke;
pub(crate) mod new;
pub(crate) mod package;
pub(crate) mod publish;
pub(crate) mod run;
mod signals;
mod watch;

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::Command;

/// Runs one subcommand and returns the process exit code.
pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::New(args) => new::run(args),
        Command::Build(args) => build::run(args),
        Command::Package(args) => package::run(args),
        Command::Check(args) => check::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Run(args) => run::run(*args),
        Command::Invoke(args) => invoke::run(args),
        Command::EchoRuntime => run_echo_runtime(),
    }
}

/// Runs the built-in echo runtime (hidden subcommand).
fn run_echo_runtime() -> anyhow::Result<ExitCode> {
    lext_sandbox::run_echo_runtime()
        .map_err(|e| anyhow::anyhow!(e))
        .context("echo runtime")?;
    Ok(ExitCode::SUCCESS)
}
