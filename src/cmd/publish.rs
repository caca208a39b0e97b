//! `lext publish`: check the layer zip, publish it with PublishLayerVersion,
//! and optionally attach it to a function. The work is
//! `lext_layer::publish`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use lext_layer::project::Project;
use lext_layer::publish::{self, AwsOptions, LayerVersion, PublishError, PublishOptions};

/// How to print the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// The LayerVersionArn alone.
    Text,
    /// The whole PublishLayerVersion response, as aws-cli prints it.
    Json,
}

/// Arguments of `lext publish`.
///
/// `--help` ends with [`EXIT_CODES`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// The layer zip [default: target/lambda/extension.zip].
    #[arg(value_name = "ZIP")]
    pub zip: Option<PathBuf>,

    /// The layer's name (or layer ARN); each publish adds a version
    /// [default: `layer-name` of [package.metadata.lext]].
    #[arg(long, value_name = "NAME")]
    pub layer_name: Option<String>,

    /// CompatibleRuntimes (up to 15) [default: `compatible-runtimes` of
    /// [package.metadata.lext], else provided.al2 provided.al2023].
    #[arg(long, value_name = "RUNTIME", num_args = 1..)]
    pub compatible_runtimes: Vec<String>,

    /// The version's description (up to 256 characters).
    #[arg(long)]
    pub description: Option<String>,

    /// The license: an SPDX identifier, a URL or the text (up to 512
    /// characters).
    #[arg(long)]
    pub license_info: Option<String>,

    /// Add the new version to this function's layers, keeping its other
    /// layers and replacing an older version of this one. The function is
    /// read before the upload: if it does not exist, or already has 5 other
    /// layers, nothing is published. If attaching fails after the upload,
    /// the new version is printed on stdout before the error.
    #[arg(long, value_name = "FUNCTION")]
    pub attach: Option<String>,

    /// AWS region [default: `region` of [package.metadata.lext], else from
    /// the environment or profile].
    #[arg(long)]
    pub region: Option<String>,

    /// Named profile of ~/.aws/config and ~/.aws/credentials (or the files
    /// AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE name) [default:
    /// AWS_PROFILE]. A profile in neither file is refused before anything
    /// else, as aws-cli does, even with keys in the environment.
    #[arg(long)]
    pub profile: Option<String>,

    /// Send requests to this endpoint instead of AWS's (moto, LocalStack).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,

    /// Path to the project's Cargo.toml, to find the default zip.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
}

/// The exit codes, one line after `--help` (`main` exits 1 on any error,
/// clap 2 on a bad command line).
const EXIT_CODES: &str = "Exit codes: 0 published (and attached with --attach); 1 lext check \
                          failed, a parameter AWS would refuse, no such profile, no credentials \
                          or region, AWS refused or could not be reached, or attaching failed \
                          (nothing published if found before the upload; else the new version is \
                          printed first); 2 bad arguments";

/// Publishes; prints the ARN (or JSON) on stdout.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let project = match &args.zip {
        Some(_) => Project::find(args.manifest_path.as_deref())?,
        None => Some(Project::load(args.manifest_path.as_deref())?),
    };
    let settings = project
        .as_ref()
        .map(|p| p.settings.clone())
        .unwrap_or_default();
    let zip = match args.zip {
        Some(path) => path,
        // Loaded above when no zip is given.
        None => project
            .as_ref()
            .map(Project::default_zip)
            .context("no Cargo project to find the layer zip in")?,
    };
    let Some(layer_name) = args.layer_name.or(settings.layer_name) else {
        anyhow::bail!(
            "no layer name: pass --layer-name NAME, or set layer-name in [package.metadata.lext] \
             of the project's Cargo.toml"
        );
    };
    let compatible_runtimes = match args.compatible_runtimes.is_empty() {
        true => settings.compatible_runtimes,
        false => args.compatible_runtimes,
    };
    let options = PublishOptions {
        zip,
        layer_name,
        // Empty: publish::DEFAULT_RUNTIMES.
        compatible_runtimes,
        description: args.description,
        license_info: args.license_info,
        attach: args.attach,
        aws: AwsOptions {
            region: args.region.or(settings.region),
            profile: args.profile,
            endpoint_url: args.endpoint_url,
        },
    };
    let published = match publish::publish_blocking(&options) {
        Ok(published) => published,
        Err(PublishError::CheckFailed { zip, problems }) => {
            // The check's own lines, then one error line.
            for problem in &problems {
                eprintln!("{problem}");
            }
            anyhow::bail!(PublishError::CheckFailed { zip, problems });
        }
        Err(err @ PublishError::AttachFailed { .. }) => {
            // The version exists: print it as a success would, so that a
            // script capturing stdout learns what to attach or delete.
            if let PublishError::AttachFailed { layer_version, .. } = &err {
                print_layer_version(layer_version, args.output)?;
            }
            return Err(err.into());
        }
        Err(err) => return Err(err.into()),
    };
    print_layer_version(&published.layer_version, args.output)?;
    if let Some(attached) = &published.attached {
        eprintln!(
            "attached to {}; its layers are now: {}",
            attached.function,
            attached.layers.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The new version on stdout: its ARN, or the whole response as JSON.
fn print_layer_version(version: &LayerVersion, output: Output) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Text => writeln!(
            out,
            "{}",
            version.layer_version_arn.as_deref().unwrap_or("")
        ),
        Output::Json => writeln!(out, "{}", version.to_aws_cli_json()),
    }
}
