//! `lext`: build, check, package, publish and run AWS Lambda extensions.
//!
//! The command line of lext's two programs. Not an API: the programs are the
//! product, and this library is how they share their code.
//!
//! - `lext` runs every command but `publish` and `invoke`, which it hands to
//!   `lext-aws` beside it (`exec`, with the same arguments).
//! - `lext-aws` runs every command; it is the one that links the AWS SDK.
//!
//! Why two: the SDK (its clients, credential chains, TLS and retries, and
//! the libm they pull in) is half of a binary that has it, and every
//! `lext run` and every environment's start paid for mapping and relocating
//! it. Without it `lext` is 6.4 MB instead of 12 MB, and `lext run --serve`
//! idles at about 7 MB of RSS instead of 9.5 (BENCHMARKS.md).
//!
//! # Layout
//!
//! - `cli`: the command line, parsed by clap; doc comments are the help.
//! - `cmd`: one module per subcommand. Each turns its parsed arguments into
//!   a plan, then calls the library crate that does the work.
//!
//! [`main`] and [`aws_main`] parse, run, and map the outcome to an exit
//! code. Errors are printed once, as their `{:#}` chain, to stderr.

mod cli;
mod cmd;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;

/// `lext`'s `main`: `publish` and `invoke` go to `lext-aws`.
pub fn main() -> ExitCode {
    main_with(cmd::exec_aws)
}

/// `lext-aws`'s `main`: every command, `publish` and `invoke` in process.
pub fn aws_main() -> ExitCode {
    main_with(cmd::run_aws)
}

/// Parses, runs `command` (handing `publish` and `invoke` to `aws`), and
/// maps the outcome to the exit code.
fn main_with(aws: cmd::Aws) -> ExitCode {
    let mut cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    // `lext run --report -v` prints the report's table too.
    if let cli::Command::Run(args) = &mut cli.command {
        args.verbose = cli.verbose;
    }
    match cmd::run(cli.command, aws) {
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
