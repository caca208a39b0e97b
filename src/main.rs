//! `lext`: build, check, package, publish and run AWS Lambda extensions.
//!
//! # Layout
//!
//! - [`cli`]: the command line, parsed by clap; doc comments are the help.
//! - [`cmd`]: one module per subcommand. Each turns its parsed arguments into
//!   a plan, then calls the library crate that does the work.
//!
//! `main` parses, runs, and maps the outcome to an exit code. Errors are
//! printed once, as their `{:#}` chain, to stderr.

mod cli;
mod cmd;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    // `lext run --report -v` prints the report's table too.
    if let cli::Command::Run(args) = &mut cli.command {
        args.verbose = cli.verbose;
    }
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // A closed stdout (`lext ... | head`) is not an error worth a line.
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the tracing subscriber for the libraries' events. `RUST_LOG`
/// wins over `-v`; without either only warnings and errors are shown.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // The AWS SDK warns about every step of its credential and region chains
    // (for example a failed instance-metadata lookup) before lext gets to
    // print the one error line that matters; keep it to errors unless asked.
    let default = if verbose == 0 {
        format!("{default},aws_config=error,aws_smithy_runtime=error")
    } else {
        default.to_owned()
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, and never with NO_COLOR
    // (https://no-color.org): a pipe or a file gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        // A write to a closed stderr (`lext ... 2>&1 | head -1`) must end
        // nothing: by default the subscriber reports its failed write with
        // `eprintln!`, which panics on the same closed stderr, and a panic
        // aborts the release build.
        .log_internal_errors(false)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
