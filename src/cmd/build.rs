//! `lext build`: compile the project's binaries for Lambda (glibc 2.26) into
//! `target/lambda/extensions/`, which then holds this build's binaries and
//! nothing else. The work is `lext_layer::build`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lext_layer::build::{self, BuildOptions};
use lext_layer::Arch;

/// Arguments of `lext build`.
///
/// `--help` ends with [`EXIT_CODES`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// Path to the project's Cargo.toml [default: the nearest Cargo.toml at or
    /// above the current directory].
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,

    /// Build only this binary (repeat for several) [default: every binary of
    /// the package]. target/lambda/extensions/ is replaced by what this build
    /// writes (recorded in target/lambda/extensions.lext-build, which lext
    /// package checks), so build every extension of the layer in one run;
    /// add other files with lext package --include.
    #[arg(long = "bin", value_name = "NAME")]
    pub bins: Vec<String>,

    /// CPU architecture of the function: x86_64 or arm64 (needs the
    /// aarch64-unknown-linux-gnu Rust target).
    #[arg(long, value_name = "ARCH", default_value = "x86_64")]
    pub arch: Arch,
}

/// The exit codes, one line after `--help` (`main` exits 1 on any error,
/// clap 2 on a bad command line).
const EXIT_CODES: &str = "Exit codes: 0 built (each extension's path on stdout); 1 the build \
                          failed (project unreadable, a tool or Rust target missing, cargo \
                          failed, a binary not an ELF for the architecture or needing a glibc \
                          above 2.26); 2 bad arguments";

/// Builds, then prints each extension's path on stdout.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = BuildOptions {
        manifest_path: args.manifest_path,
        bins: args.bins,
        arch: Some(args.arch),
    };
    let built = build::build(&options).context("lext build")?;
    let mut out = std::io::stdout().lock();
    for bin in &built {
        let glibc = bin
            .max_glibc
            .map_or_else(|| "no glibc".to_owned(), |v| format!("GLIBC_{v} max"));
        eprintln!("built {} ({}, {glibc})", bin.name, args.arch);
        writeln!(out, "{}", bin.path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
