//! `lext package`: write the reproducible layer zip from
//! `target/lambda/extensions/` plus `--include`d files. The work is
//! `lext_layer::package`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lext_layer::build;
use lext_layer::package::{self, Include, PackageSpec};
use lext_layer::project::Project;

/// Arguments of `lext package`.
///
/// `--help` ends with [`EXIT_CODES`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// Path to the project's Cargo.toml, to find its target directory
    /// [default: the nearest Cargo.toml].
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,

    /// Directory holding the extension binaries [default:
    /// target/lambda/extensions, as written by lext build]. When lext build
    /// wrote it, it must hold exactly what that build wrote (listed in
    /// DIR.lext-build beside it): any other file is refused by name; add
    /// extra files with --include SRC:extensions/NAME.
    #[arg(long, value_name = "DIR")]
    pub extensions_dir: Option<PathBuf>,

    /// Extra file or directory for the layer, at DEST inside it (it lands in
    /// /opt/DEST) [default DEST: SRC's file name]. Repeatable. Given, it
    /// replaces the `include` list of [package.metadata.lext] (whose SRCs
    /// are relative to the Cargo.toml's directory).
    #[arg(long = "include", value_name = "SRC[:DEST]")]
    pub includes: Vec<String>,

    /// Where to write the zip [default: target/lambda/extension.zip].
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// The exit codes, one line after `--help` (`main` exits 1 on any error,
/// clap 2 on a bad command line).
const EXIT_CODES: &str = "Exit codes: 0 zip written (its path on stdout); 1 nothing to package, \
                          a file in the extensions directory that the last lext build did not \
                          write (or one it wrote missing), an unreadable input or an unwritable \
                          output; 2 bad arguments";

/// Packages, then prints the zip's path on stdout.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Outside any Cargo project, prebuilt binaries are packaged all the
    // same: the project is needed only for a default path or a setting.
    let project = match (&args.extensions_dir, &args.output) {
        (Some(_), Some(_)) => Project::find(args.manifest_path.as_deref())?,
        _ => Some(Project::load(args.manifest_path.as_deref())?),
    };
    let specs = match (&project, args.includes.is_empty()) {
        (Some(project), true) => project.includes(),
        _ => args.includes,
    };
    let includes = specs
        .iter()
        .map(|spec| Include::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let default_dir = args.extensions_dir.is_none();
    // Loaded above when a default is needed.
    let default = |path: fn(&Project) -> PathBuf| {
        project
            .as_ref()
            .map(path)
            .context("no Cargo project to find the default paths in")
    };
    let dir = match args.extensions_dir {
        Some(dir) => dir,
        None => default(Project::extensions_dir)?,
    };
    let output = match args.output {
        Some(output) => output,
        None => default(Project::default_zip)?,
    };
    let manifest = build::manifest_path(&dir);
    if default_dir && dir.is_dir() && !manifest.exists() {
        // Filled by an older lext or by hand: nothing to compare with.
        eprintln!(
            "warning: {} has no build manifest ({}); packaging every file in it: run lext build \
             to replace it with only your extensions",
            dir.display(),
            manifest.display()
        );
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let spec = PackageSpec {
        extensions: package::discover_extensions(&dir)?,
        includes,
        mtime: package::mtime_from_source_date_epoch(epoch.as_deref())?,
    };
    let packaged = package::package(&spec, &output).context("lext package")?;
    eprintln!(
        "packaged {} extension(s), {} entries, {} bytes",
        spec.extensions.len(),
        packaged.entries.len(),
        packaged.bytes
    );
    writeln!(std::io::stdout().lock(), "{}", packaged.path.display())?;
    Ok(ExitCode::SUCCESS)
}
