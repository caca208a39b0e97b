//! The command line. Stage one of two: clap parses the words into these
//! structs; each `cmd::<name>` module then validates them into a plan before
//! any work starts.

use clap::{Parser, Subcommand};

/// Build, check, package, publish and run AWS Lambda extensions.
///
/// `lext run` starts a local Lambda execution environment that launches your
/// extensions and a function runtime and serves the Runtime, Extensions and
/// Telemetry APIs. `lext build`, `package`, `check` and `publish` take a Cargo
/// project to a published layer.
#[derive(Debug, Parser)]
#[command(name = "lext", version, about, long_about)]
pub(crate) struct Cli {
    /// More log output from lext itself (-v info, -vv debug, -vvv trace).
    /// `RUST_LOG` overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

// One value, parsed once at start: the size of its largest variant (the
// many flags of `lext run`) costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    // Each subcommand's arguments live in its own module under `cmd/`.
    // Add new subcommands here, one line each.
    /// Create an extension project: Cargo.toml with [package.metadata.lext]
    /// and a size-tuned release profile, src/main.rs, a test that runs it
    /// in the local environment, and a README (no network needed).
    New(crate::cmd::new::Args),
    /// Build the project's extension binaries for Lambda (release, glibc 2.26,
    /// x86_64 or arm64) into target/lambda/extensions/.
    Build(crate::cmd::build::Args),
    /// Write the layer zip (extensions/ at the root, mode 0755, reproducible)
    /// to target/lambda/extension.zip.
    Package(crate::cmd::package::Args),
    /// Check a layer zip or directory for every problem that would make it fail
    /// on Lambda; one line per problem with its fix, exit 1 on any.
    Check(crate::cmd::check::Args),
    /// Check, then publish the layer zip with PublishLayerVersion (and attach
    /// it to a function with --attach).
    Publish(crate::cmd::publish::Args),
    /// Run extensions and a function locally in a Lambda-like execution
    /// environment (Init, invokes, shutdown, Telemetry API, REPORT lines).
    Run(crate::cmd::run::Args),
    /// Invoke a function served by `lext run --serve` (or on Lambda) once,
    /// and print the response and aws-cli's summary, with aws-cli's exit
    /// codes.
    Invoke(crate::cmd::invoke::Args),
    /// The built-in echo runtime that `lext run` starts when no --function is
    /// given (internal).
    #[command(name = "__echo-runtime", hide = true)]
    EchoRuntime,
}
