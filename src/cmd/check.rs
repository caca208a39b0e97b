//! `lext check`: report, one line each with its fix, every problem that
//! would make the layer fail on Lambda. The checks are `lext_layer::check`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use lext_layer::project::Project;
use lext_layer::{check, Arch, CheckOptions, Listing, Runtime};

/// Arguments of `lext check`.
///
/// `--help` ends with [`EXIT_CODES`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// The layer: a zip, or a directory laid out as /opt [default:
    /// target/lambda/extension.zip].
    #[arg(value_name = "ZIP|DIR")]
    pub layer: Option<PathBuf>,

    /// The runtime whose glibc and interpreters the layer must fit:
    /// provided.al2 (glibc 2.26) or provided.al2023 (glibc 2.34) [default:
    /// the oldest of `compatible-runtimes` in [package.metadata.lext], else
    /// provided.al2].
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<Runtime>,

    /// The function's architecture, x86_64 or arm64 [default: `arch` of
    /// [package.metadata.lext], else any, but one for all extensions].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,

    /// Path to the project's Cargo.toml, to find the default zip.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
}

/// The exit codes, one line after `--help` (`main` exits 1 on any error,
/// clap 2 on a bad command line).
const EXIT_CODES: &str = "Exit codes: 0 no problem (an ok line on stdout); 1 a problem found \
                          (one line each on stdout) or the layer unreadable; 2 bad arguments";

/// Prints each problem on stdout; exits 1 if there is any.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let project = match &args.layer {
        Some(_) => Project::find(args.manifest_path.as_deref())?,
        None => Some(Project::load(args.manifest_path.as_deref())?),
    };
    let settings = project.as_ref().map(|p| &p.settings);
    let layer = match args.layer {
        Some(path) => path,
        // Loaded above when no layer is given.
        None => project
            .as_ref()
            .map(Project::default_zip)
            .context("no Cargo project to find the layer zip in")?,
    };
    let listing = Listing::read(&layer).map_err(|err| anyhow::anyhow!(each_cause_once(&err)))?;
    let options = CheckOptions {
        runtime: args
            .runtime
            .or_else(|| settings.and_then(|s| s.check_runtime()))
            .unwrap_or(Runtime::ProvidedAl2),
        arch: args.arch.or_else(|| settings.and_then(|s| s.arch)),
    };
    let problems = check(&listing, &options);
    let mut out = std::io::stdout().lock();
    if problems.is_empty() {
        let arches = lext_layer::check::extension_architectures(&listing);
        let arches: Vec<_> = arches.iter().map(|a| a.as_str()).collect();
        writeln!(
            out,
            "{}: ok for {} ({})",
            layer.display(),
            options.runtime,
            if arches.is_empty() {
                "scripts only".to_owned()
            } else {
                arches.join(", ")
            }
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        writeln!(out, "{problem}")?;
    }
    eprintln!(
        "error: {} problem(s) in {}",
        problems.len(),
        layer.display()
    );
    Ok(ExitCode::FAILURE)
}

/// An error and its causes on one line, each once: a `ListingError` names
/// its cause in its own message and also returns it as `source()`, which
/// `{:#}` would print a second time. A cause already contained in the text
/// so far is left out.
fn each_cause_once(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !line.contains(&message) {
            line = format!("{line}: {message}");
        }
        source = cause.source();
    }
    line
}
