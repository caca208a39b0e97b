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

    /// CPU architecture of the function: x86_64 or arm64 [default: `arch`
    /// of [package.metadata.lext], else x86_64]. A missing Rust target
    /// (aarch64-unknown-linux-gnu for arm64) is installed with `rustup
    /// target add` when rustup is on PATH.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,

    /// Features to activate, as cargo takes them (space or comma separated;
    /// repeatable).
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,

    /// Do not activate the `default` feature.
    #[arg(long)]
    pub no_default_features: bool,

    /// The cargo profile [default: release, with lext's size settings
    /// (opt-level "z", fat LTO, one codegen unit, panic=abort, stripped)
    /// unless the project's Cargo.toml sets [profile.release] itself].
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,

    /// Refuse to change Cargo.lock (cargo --locked).
    #[arg(long)]
    pub locked: bool,

    /// cargo's target directory, where it compiles [default: the project's];
    /// the extensions still go to the project's target/lambda/extensions.
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
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
        arch: args.arch,
        features: args.features,
        no_default_features: args.no_default_features,
        profile: args.profile,
        locked: args.locked,
        target_dir: args.target_dir,
    };
    let built = build::build_with(&options, |note| note!("lext: {note}")).context("lext build")?;
    let mut out = std::io::stdout().lock();
    for bin in &built.binaries {
        let glibc = bin
            .max_glibc
            .map_or_else(|| "no glibc".to_owned(), |v| format!("GLIBC_{v} max"));
        let size = std::fs::metadata(&bin.path).map_or(0, |m| m.len());
        note!("built {} ({}, {glibc}, {size} bytes)", bin.name, built.arch);
        writeln!(out, "{}", bin.path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
