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

/// What runs the commands that call AWS (`publish`, `invoke`): in process
/// ([`run_aws`], `lext-aws`), or `lext-aws` in this process's place
/// ([`exec_aws`], `lext`). `lext` never names the first, so the linker
/// leaves the AWS SDK out of it.
pub(crate) type Aws = fn(Command) -> anyhow::Result<ExitCode>;

/// Runs one subcommand and returns the process exit code.
pub(crate) fn run(command: Command, aws: Aws) -> anyhow::Result<ExitCode> {
    match command {
        Command::New(args) => new::run(args),
        Command::Build(args) => build::run(args),
        Command::Package(args) => package::run(args),
        Command::Check(args) => check::run(args),
        command @ (Command::Publish(_) | Command::Invoke(_)) => aws(command),
        Command::Run(args) => run::run(*args),
        Command::EchoRuntime => run_echo_runtime(),
    }
}

/// `lext-aws`: `publish` and `invoke` in process, the rest as `lext` runs it.
pub(crate) fn run_aws(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Publish(args) => publish::run(args),
        Command::Invoke(args) => invoke::run(args),
        other => run(other, run_aws),
    }
}

/// The program `lext` hands `publish` and `invoke` to.
const AWS_PROGRAM: &str = "lext-aws";

/// `lext`: replaces this process with `lext-aws` beside it, given the same
/// arguments, so that its output, exit code and signals are the command's.
/// Returns only if it cannot be started.
pub(crate) fn exec_aws(_command: Command) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    let me = std::env::current_exe().context("finding lext's own path")?;
    let program = me.with_file_name(AWS_PROGRAM);
    if !program.is_file() {
        anyhow::bail!(
            "`lext publish` and `lext invoke` are run by {AWS_PROGRAM}, which is not beside lext \
             (no {}); `cargo install` installs both programs, and in a checkout \
             `cargo build --bin {AWS_PROGRAM}` builds it (`cargo run` builds only lext)",
            program.display()
        );
    }
    let error = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(error).with_context(|| format!("starting {}", program.display()))
}

/// Runs the built-in echo runtime (hidden subcommand).
fn run_echo_runtime() -> anyhow::Result<ExitCode> {
    lext_sandbox::run_echo_runtime()
        .map_err(|e| anyhow::anyhow!(e))
        .context("echo runtime")?;
    Ok(ExitCode::SUCCESS)
}
