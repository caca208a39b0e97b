//! `lext publish`: PublishLayerVersion (and, with `--attach`,
//! GetFunctionConfiguration before the upload and
//! UpdateFunctionConfiguration after it) through the official AWS SDK for
//! Rust.
//!
//! The zip is checked first with [`crate::check`](mod@crate::check); a layer with any problem
//! is never uploaded. Credentials and region come from aws-config's standard
//! chain (environment, shared config and credentials files with `--profile`,
//! web identity, ECS and EC2 instance metadata); `--endpoint-url` points the
//! client at another endpoint (moto in the tests, LocalStack...).
//!
//! The client is built with short timeouts and few retries on purpose: an
//! unreachable endpoint must fail in seconds with one clear line, not hang
//! through the SDK's default backoff. The HTTP client is hyper with rustls on
//! the `ring` provider, which compiles much faster than the default aws-lc.
//!
//! Validation that AWS performs server side (layer name pattern, lengths,
//! list sizes) is repeated here with AWS's own wording, because emulators
//! such as moto validate nothing and a typo should not cost an upload.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::config::{ProvideCredentials, Region};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Runtime as SdkRuntime};
use aws_sdk_lambda::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use serde::Serialize;

use crate::check::{self, CheckOptions, Problem};
use crate::listing::{Listing, ListingError};
use crate::platform::{Arch, Runtime};

/// The runtimes a layer is published for when none are given.
pub const DEFAULT_RUNTIMES: [&str; 2] = ["provided.al2", "provided.al2023"];
/// Lambda's limit of layers per function.
pub const MAX_LAYERS_PER_FUNCTION: usize = 5;

/// How to reach AWS (each `None` defers to aws-config's standard chain).
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The layer zip.
    pub zip: PathBuf,
    /// `LayerName`: a name or a layer ARN.
    pub layer_name: String,
    /// `CompatibleRuntimes`; empty means [`DEFAULT_RUNTIMES`].
    pub compatible_runtimes: Vec<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `LicenseInfo`.
    pub license_info: Option<String>,
    /// A function to attach the new version to.
    pub attach: Option<String>,
    /// Where and as whom.
    pub aws: AwsOptions,
}

/// The PublishLayerVersion response, serialized as aws-cli prints it:
/// PascalCase keys in the service model's order, absent fields left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersion {
    /// Where the content is and its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<LayerContent>,
    /// The layer's ARN (without version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_arn: Option<String>,
    /// The new version's ARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_version_arn: Option<String>,
    /// The description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ISO-8601 creation time, as the service sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    /// The version number.
    pub version: i64,
    /// The architectures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatible_architectures: Option<Vec<String>>,
    /// The runtimes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatible_runtimes: Option<Vec<String>>,
    /// The license.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
}

/// `Content` of a layer version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerContent {
    /// A presigned download URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Base64 SHA-256 of the zip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    /// Size of the zip in bytes.
    pub code_size: i64,
    /// Code signing profile, if signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_profile_version_arn: Option<String>,
    /// Code signing job, if signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_job_arn: Option<String>,
}

impl LayerVersion {
    /// The response as aws-cli's `--output json` prints it (4-space indent).
    pub fn to_aws_cli_json(&self) -> String {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        // Serializing plain strings and numbers into a Vec cannot fail.
        match self.serialize(&mut ser) {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(err) => format!("{{\"error\": \"{err}\"}}"),
        }
    }
}

/// The function a version was attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The function name or ARN as given.
    pub function: String,
    /// Its layers after the update, in order.
    pub layers: Vec<String>,
}

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The PublishLayerVersion response.
    pub layer_version: LayerVersion,
    /// Set when `--attach` was given.
    pub attached: Option<Attached>,
}

/// Why a publish failed. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The zip could not be read. Displayed as the listing error and its
    /// causes on one line, each once (a [`ListingError`] names its cause in
    /// its own message too), so it is not also exposed as `source()`.
    #[error("{}", error_chain(.0))]
    Listing(ListingError),
    /// The zip failed `lext check`; nothing was uploaded.
    #[error("{} failed lext check with {} problem(s); not publishing", zip.display(), problems.len())]
    CheckFailed {
        /// The zip.
        zip: PathBuf,
        /// The problems, one line each.
        problems: Vec<Problem>,
    },
    /// A parameter AWS would reject.
    #[error("{0}")]
    Invalid(String),
    /// The profile asked for (`--profile`, else `AWS_PROFILE`) is in
    /// neither shared file. aws-cli's words; the SDK alone would go on with
    /// the rest of its chain (keys in the environment, instance metadata).
    #[error(
        "The config profile ({name}) could not be found in {} or {}",
        config.display(),
        credentials.display()
    )]
    NoProfile {
        /// The profile.
        name: String,
        /// The shared config file looked in.
        config: PathBuf,
        /// The shared credentials file looked in.
        credentials: PathBuf,
    },
    /// No region anywhere in the chain.
    #[error(
        "no AWS region: pass --region, set AWS_REGION, or set `region` in the profile of \
         ~/.aws/config"
    )]
    NoRegion,
    /// The zip could not be read for upload.
    #[error("reading {}", path.display())]
    Read {
        /// The zip.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No credentials could be loaded from the chain.
    #[error(
        "no usable AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass \
         --profile, or run `aws configure`): {0}"
    )]
    NoCredentials(String),
    /// The service answered with an error.
    #[error("{operation} failed: {code}: {message}")]
    Service {
        /// The API operation.
        operation: &'static str,
        /// The error code (`AccessDeniedException`...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The request never got an answer (credentials, network, timeout).
    #[error("{operation} failed: {detail}")]
    Request {
        /// The API operation.
        operation: &'static str,
        /// The SDK's error chain on one line.
        detail: String,
    },
    /// Attaching would exceed Lambda's layer limit.
    #[error(
        "function {function} would have {count} layers, Lambda allows at most \
         {MAX_LAYERS_PER_FUNCTION}: remove one first (aws lambda update-function-configuration \
         --layers ...)"
    )]
    TooManyLayers {
        /// The function.
        function: String,
        /// How many layers it would have.
        count: usize,
    },
    /// `--attach` was found to fail before the upload (the function does
    /// not exist or cannot be read, or it has no room for another layer):
    /// nothing was published.
    #[error("not publishing: --attach {function} would fail")]
    NotPublished {
        /// The function.
        function: String,
        /// Why attaching would fail.
        #[source]
        source: Box<PublishError>,
    },
    /// The new version was published, then attaching it failed. The
    /// version exists: its ARN is in the message, and the whole response in
    /// `layer_version`.
    #[error(
        "published {} but could not attach it to {function}",
        layer_version.layer_version_arn.as_deref().unwrap_or("a new layer version")
    )]
    AttachFailed {
        /// The PublishLayerVersion response.
        layer_version: Box<LayerVersion>,
        /// The function.
        function: String,
        /// Why attaching failed.
        #[source]
        source: Box<PublishError>,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<ListingError> for PublishError {
    fn from(err: ListingError) -> PublishError {
        PublishError::Listing(err)
    }
}

/// Runs [`publish`] on a current-thread tokio runtime made for the call,
/// for synchronous callers such as the CLI.
pub fn publish_blocking(options: &PublishOptions) -> Result<Published, PublishError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PublishError::Runtime)?;
    runtime.block_on(publish(options))
}

/// Checks the zip, publishes it as a new layer version, and attaches it to
/// a function when asked.
pub async fn publish(options: &PublishOptions) -> Result<Published, PublishError> {
    check_profile(&options.aws)?;
    validate(options)?;
    let runtimes = runtimes_or_default(&options.compatible_runtimes);

    let bytes = std::fs::read(&options.zip).map_err(|source| PublishError::Read {
        path: options.zip.clone(),
        source,
    })?;
    let mut listing = Listing::from_zip_reader(Cursor::new(&bytes), &options.zip)?;
    listing.zipped_size = Some(bytes.len() as u64);
    let check_options = CheckOptions {
        runtime: check_runtime(&runtimes),
        arch: None,
    };
    let problems = check::check(&listing, &check_options);
    if !problems.is_empty() {
        return Err(PublishError::CheckFailed {
            zip: options.zip.clone(),
            problems,
        });
    }
    let arches = check::extension_architectures(&listing);

    let client = client(&options.aws, bytes.len() as u64).await?;
    // Everything about --attach that can be known before the upload is
    // checked before it, so that a typo in the function's name does not
    // leave a layer version behind.
    let target = match &options.attach {
        Some(function) => Some(
            attach_target(&client, function, &options.layer_name)
                .await
                .map_err(|source| PublishError::NotPublished {
                    function: function.clone(),
                    source: Box::new(source),
                })?,
        ),
        None => None,
    };
    tracing::info!(layer = %options.layer_name, bytes = bytes.len(), ?arches, "publishing");
    let request = client
        .publish_layer_version()
        .layer_name(&options.layer_name)
        .content(
            aws_sdk_lambda::types::LayerVersionContentInput::builder()
                .zip_file(Blob::new(bytes))
                .build(),
        )
        .set_compatible_runtimes(Some(
            runtimes
                .iter()
                .map(|r| SdkRuntime::from(r.as_str()))
                .collect(),
        ))
        .set_compatible_architectures(sdk_arches(&arches))
        .set_description(options.description.clone())
        .set_license_info(options.license_info.clone());
    let out = publish_once(request, &options.layer_name).await?;
    let layer_version = LayerVersion {
        content: out.content().map(|c| LayerContent {
            location: c.location().map(str::to_owned),
            code_sha256: c.code_sha256().map(str::to_owned),
            code_size: c.code_size(),
            signing_profile_version_arn: c.signing_profile_version_arn().map(str::to_owned),
            signing_job_arn: c.signing_job_arn().map(str::to_owned),
        }),
        layer_arn: out.layer_arn().map(str::to_owned),
        layer_version_arn: out.layer_version_arn().map(str::to_owned),
        description: out.description().map(str::to_owned),
        created_date: out.created_date().map(str::to_owned),
        version: out.version(),
        compatible_architectures: out
            .compatible_architectures
            .as_ref()
            .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect()),
        compatible_runtimes: out
            .compatible_runtimes
            .as_ref()
            .map(|v| v.iter().map(|r| r.as_str().to_owned()).collect()),
        license_info: out.license_info().map(str::to_owned),
    };

    let attached =
        match &target {
            Some(target) => Some(attach(&client, target, &layer_version).await.map_err(
                |source| PublishError::AttachFailed {
                    layer_version: Box::new(layer_version.clone()),
                    function: target.function.clone(),
                    source: Box::new(source),
                },
            )?),
            None => None,
        };
    Ok(Published {
        layer_version,
        attached,
    })
}

/// The function `--attach` names, as read before the upload.
#[derive(Debug)]
struct AttachTarget {
    /// The function name or ARN as given.
    function: String,
    /// Its layers' version ARNs, in order.
    layers: Vec<String>,
    /// The revision read, so that the update does not overwrite a change
    /// made to the function during the upload.
    revision_id: Option<String>,
}

/// Reads the function's configuration, failing if it does not exist (or
/// cannot be read) or if adding `layer_name` would certainly exceed
/// [`MAX_LAYERS_PER_FUNCTION`]: it has that many layers already and none
/// of them is a version of `layer_name`, which the new version could
/// replace.
async fn attach_target(
    client: &Client,
    function: &str,
    layer_name: &str,
) -> Result<AttachTarget, PublishError> {
    let config = client
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .map_err(|e| sdk_error("GetFunctionConfiguration", e))?;
    let layers: Vec<String> = config
        .layers()
        .iter()
        .filter_map(|l| l.arn().map(str::to_owned))
        .collect();
    let may_replace = layers.iter().any(|arn| is_version_of(arn, layer_name));
    if !may_replace && layers.len() >= MAX_LAYERS_PER_FUNCTION {
        return Err(PublishError::TooManyLayers {
            function: function.to_owned(),
            count: layers.len() + 1,
        });
    }
    Ok(AttachTarget {
        function: function.to_owned(),
        layers,
        revision_id: config.revision_id().map(str::to_owned),
    })
}

/// Whether `version_arn` (`arn:...:layer:NAME:N`) may be a version of the
/// layer published as `layer_name` (a name, or a layer ARN). By name alone
/// when a name is given: the account and region of the new version are
/// known only once it is published.
fn is_version_of(version_arn: &str, layer_name: &str) -> bool {
    let Some((layer_arn, _version)) = version_arn.rsplit_once(':') else {
        return false;
    };
    if layer_name.starts_with("arn:") {
        return layer_arn == layer_name;
    }
    layer_arn
        .rsplit_once(":layer:")
        .is_some_and(|(_, name)| name == layer_name)
}

/// Adds the new version to the function's layers (as read by
/// [`attach_target`]).
async fn attach(
    client: &Client,
    target: &AttachTarget,
    version: &LayerVersion,
) -> Result<Attached, PublishError> {
    let (Some(version_arn), Some(layer_arn)) = (&version.layer_version_arn, &version.layer_arn)
    else {
        return Err(PublishError::Invalid(
            "PublishLayerVersion returned no LayerVersionArn/LayerArn; cannot attach".into(),
        ));
    };
    let function = &target.function;
    let layers = merge_layers(&target.layers, layer_arn, version_arn).map_err(|count| {
        PublishError::TooManyLayers {
            function: function.clone(),
            count,
        }
    })?;
    tracing::info!(%function, ?layers, "attaching");
    let updated = client
        .update_function_configuration()
        .function_name(function)
        .set_layers(Some(layers.clone()))
        .set_revision_id(target.revision_id.clone())
        .send()
        .await
        .map_err(|e| sdk_error("UpdateFunctionConfiguration", e))?;
    let after: Vec<String> = updated
        .layers()
        .iter()
        .filter_map(|l| l.arn().map(str::to_owned))
        .collect();
    Ok(Attached {
        function: function.clone(),
        // Some endpoints answer without the list; report what was sent then.
        layers: if after.is_empty() { layers } else { after },
    })
}

/// The function's new layer list: an older version of the same layer is
/// replaced in place (layer order decides which file wins in `/opt`), any
/// other layer is kept, and a new layer goes last. Fails with the would-be
/// count above [`MAX_LAYERS_PER_FUNCTION`].
pub fn merge_layers(
    existing: &[String],
    layer_arn: &str,
    version_arn: &str,
) -> Result<Vec<String>, usize> {
    let same_layer = |arn: &str| {
        arn.rsplit_once(':')
            .is_some_and(|(base, _)| base == layer_arn)
    };
    let mut out = Vec::with_capacity(existing.len() + 1);
    let mut placed = false;
    for arn in existing {
        if same_layer(arn) {
            if !placed {
                out.push(version_arn.to_owned());
                placed = true;
            }
        } else {
            out.push(arn.clone());
        }
    }
    if !placed {
        out.push(version_arn.to_owned());
    }
    if out.len() > MAX_LAYERS_PER_FUNCTION {
        return Err(out.len());
    }
    Ok(out)
}

fn runtimes_or_default(given: &[String]) -> Vec<String> {
    if given.is_empty() {
        DEFAULT_RUNTIMES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        given.to_vec()
    }
}

/// The runtime to check glibc against: `provided.al2023` only when every
/// compatible runtime is it; otherwise the oldest, `provided.al2` (also used
/// for language runtimes, whose images may be Amazon Linux 2).
fn check_runtime(runtimes: &[String]) -> Runtime {
    Runtime::oldest_of(runtimes)
}

fn sdk_arches(arches: &BTreeSet<Arch>) -> Option<Vec<Architecture>> {
    if arches.is_empty() {
        // Scripts only: compatible with both, so leave the field out.
        return None;
    }
    Some(
        arches
            .iter()
            .map(|a| Architecture::from(a.as_str()))
            .collect(),
    )
}

/// Rejects what PublishLayerVersion would reject, with AWS's wording.
fn validate(options: &PublishOptions) -> Result<(), PublishError> {
    let fail = |field: &str, value: &str, constraint: &str| {
        Err(PublishError::Invalid(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy \
             constraint: {constraint}"
        )))
    };
    let name = &options.layer_name;
    if name.is_empty() || name.len() > 140 || !valid_layer_name(name) {
        return fail(
            "layerName",
            name,
            "Member must satisfy regular expression pattern: \
             (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+ \
             and have length between 1 and 140",
        );
    }
    if let Some(d) = &options.description {
        if d.chars().count() > 256 {
            return fail(
                "description",
                d,
                "Member must have length less than or equal to 256",
            );
        }
    }
    if let Some(l) = &options.license_info {
        if l.chars().count() > 512 {
            return fail(
                "licenseInfo",
                l,
                "Member must have length less than or equal to 512",
            );
        }
    }
    if options.compatible_runtimes.len() > 15 {
        return fail(
            "compatibleRuntimes",
            &options.compatible_runtimes.join(", "),
            "Member must have length less than or equal to 15",
        );
    }
    if let Some(url) = &options.aws.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(PublishError::Invalid(format!(
                "invalid --endpoint-url `{url}`: expected http://HOST[:PORT] or https://..."
            )));
        }
    }
    Ok(())
}

/// Fails with [`PublishError::NoProfile`] when a profile is asked for
/// (`--profile`, else a non-empty `AWS_PROFILE`, as aws-config reads it)
/// and neither shared file defines it. aws-cli refuses such a profile
/// before anything else, even `default`; the SDK would silently sign with
/// whatever else its chain finds.
pub(crate) fn check_profile(aws: &AwsOptions) -> Result<(), PublishError> {
    let name = match &aws.profile {
        Some(name) => name.clone(),
        None => match std::env::var("AWS_PROFILE") {
            Ok(name) if !name.is_empty() => name,
            _ => return Ok(()),
        },
    };
    let config = shared_file("AWS_CONFIG_FILE", "config");
    let credentials = shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let read = |path: &PathBuf| match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(PublishError::Read {
            path: path.clone(),
            source,
        }),
    };
    let found = config_profiles(&read(&config)?).any(|p| p == name)
        || credentials_profiles(&read(&credentials)?).any(|p| p == name);
    if found {
        Ok(())
    } else {
        Err(PublishError::NoProfile {
            name,
            config,
            credentials,
        })
    }
}

/// A shared file: the variable's value (a leading `~/` is the home
/// directory, as aws-cli and the SDK expand it), else `~/.aws/<name>`.
fn shared_file(variable: &str, name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match std::env::var_os(variable).filter(|v| !v.is_empty()) {
        Some(value) => {
            let value = PathBuf::from(value);
            match (value.strip_prefix("~"), &home) {
                (Ok(rest), Some(home)) => home.join(rest),
                _ => value,
            }
        }
        None => home
            .unwrap_or_else(|| PathBuf::from("~"))
            .join(".aws")
            .join(name),
    }
}

/// The `[section]` names of an ini file, trimmed.
fn sections(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
    })
}

/// The profiles of a shared config file: `[default]` and `[profile NAME]`
/// (other sections, `[sso-session x]`, `[services x]`, are not profiles).
fn config_profiles(text: &str) -> impl Iterator<Item = &str> {
    sections(text).filter_map(|section| {
        if section == "default" {
            return Some(section);
        }
        let rest = section.strip_prefix("profile")?;
        rest.starts_with(char::is_whitespace)
            .then(|| rest.trim())
            .filter(|name| !name.is_empty())
    })
}

/// The profiles of a shared credentials file: every section.
fn credentials_profiles(text: &str) -> impl Iterator<Item = &str> {
    sections(text)
}

/// `[a-zA-Z0-9-_]+`, or a layer ARN
/// `arn:<partition>:lambda:<region>:<12 digits>:layer:<name>`.
fn valid_layer_name(name: &str) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let alnum_dash =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !name.starts_with("arn:") {
        return plain(name);
    }
    let parts: Vec<&str> = name.split(':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "lambda", region, account, "layer", layer]
            if alnum_dash(partition) && alnum_dash(region)
                && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
                && plain(layer))
}

/// The time allowed for one attempt to get response headers. The SDK's
/// read timeout runs from the start of the request, upload included, so it
/// grows with the zip: 20 s plus the upload at 4 Mbit/s (a 50 MiB zip gets
/// about 2 minutes; a small one 20 s, so a silent endpoint is given up on
/// within a minute over all attempts).
pub fn read_timeout(upload_bytes: u64) -> Duration {
    const MIN_RATE_BYTES_PER_SEC: u64 = 512 * 1024;
    Duration::from_secs(20 + upload_bytes / MIN_RATE_BYTES_PER_SEC)
}

/// Builds the Lambda client from the standard chain plus the options.
async fn client(aws: &AwsOptions, upload_bytes: u64) -> Result<Client, PublishError> {
    // Connect fails fast (an unreachable endpoint costs seconds, not the
    // SDK's default minutes); reads get time in proportion to the upload.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(read_timeout(upload_bytes))
        .operation_timeout(Duration::from_secs(600))
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2));
    let config = load_config(aws, timeouts, retries, Signing::Signed, None).await?;
    Ok(Client::new(&config))
}

/// Which credentials sign the requests (SigV4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signing {
    /// Credentials from the standard chain (resolved up front).
    Signed,
    /// Fixed placeholder credentials, for a local endpoint that checks no
    /// signature (`lext run --serve`): nothing to configure, nothing real
    /// sent. (The SDK cannot send a Lambda request unsigned: its only auth
    /// scheme is SigV4.)
    Placeholder,
}

/// The SDK configuration from the standard chain plus the options, with
/// lext's HTTP client (hyper, rustls on `ring`). Without a region anywhere
/// it takes `default_region`, else fails.
pub(crate) async fn load_config(
    aws: &AwsOptions,
    timeouts: TimeoutConfig,
    retries: RetryConfig,
    signing: Signing,
    default_region: Option<&str>,
) -> Result<aws_config::SdkConfig, PublishError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .retry_config(retries);
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if signing == Signing::Placeholder {
        loader = loader.credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "lext-local",
            "lext-local",
            None,
            None,
            "lext-placeholder",
        ));
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        match default_region {
            Some(region) => {
                config = config
                    .into_builder()
                    .region(Region::new(region.to_owned()))
                    .build();
            }
            None => return Err(PublishError::NoRegion),
        }
    }
    // Resolve credentials once up front: a failure here gets its own clear
    // message instead of the SDK's "dispatch failure" wording.
    if let Some(provider) = config.credentials_provider() {
        if let Err(err) = provider.provide_credentials().await {
            return Err(PublishError::NoCredentials(error_chain(&err)));
        }
    }
    Ok(config)
}

/// One line for any SDK error: the service's code and message when it
/// answered, else the cause chain (credentials, DNS, connect, timeout).
pub(crate) fn sdk_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> PublishError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = &err {
        let e = service.err();
        if let Some(code) = e.code() {
            return PublishError::Service {
                operation,
                code: code.to_owned(),
                message: e.message().unwrap_or("(no message)").to_owned(),
            };
        }
        // An answer the Lambda protocol cannot parse: emulators (moto's
        // auth layer) answer with an XML `ErrorResponse`; show its code and
        // message, else the status and the start of the body.
        let raw = service.raw();
        let body = raw
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let code = xml_text(&body, "Code");
        let message = xml_text(&body, "Message");
        let status = raw.status().as_u16();
        return match (code, message) {
            (Some(code), message) => PublishError::Service {
                operation,
                code,
                message: message.unwrap_or_else(|| format!("HTTP {status}")),
            },
            _ => PublishError::Request {
                operation,
                detail: format!(
                    "HTTP {status}: {}",
                    body.chars()
                        .take(200)
                        .collect::<String>()
                        .replace('\n', " ")
                ),
            },
        };
    }
    PublishError::Request {
        operation,
        detail: error_chain(&err),
    }
}

/// How many times a throttled `PublishLayerVersion` is sent in all.
const PUBLISH_ATTEMPTS: u32 = 3;

/// Sends `PublishLayerVersion`, which is not idempotent: an attempt that
/// timed out or lost its connection after the upload may have published a
/// version, and sending it again would publish a second one. So the SDK's
/// retries are off for it, and lext sends it again only when Lambda
/// answered that it did nothing: throttling (429 `TooManyRequestsException`,
/// AWS: Lambda API Reference, PublishLayerVersion, Errors). When the outcome
/// is unknown, the error says how to find out.
async fn publish_once(
    request: aws_sdk_lambda::operation::publish_layer_version::builders::PublishLayerVersionFluentBuilder,
    layer_name: &str,
) -> Result<aws_sdk_lambda::operation::publish_layer_version::PublishLayerVersionOutput, PublishError>
{
    let once = aws_sdk_lambda::config::Builder::default()
        .retry_config(RetryConfig::standard().with_max_attempts(1));
    let mut attempt = 1;
    loop {
        let sent = request
            .clone()
            .customize()
            .config_override(once.clone())
            .send()
            .await;
        let err = match sent {
            Ok(out) => return Ok(out),
            Err(err) => err,
        };
        if publish_retryable(&err) && attempt < PUBLISH_ATTEMPTS {
            tracing::info!(
                attempt,
                "PublishLayerVersion was throttled; sending it again"
            );
            tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            attempt += 1;
            continue;
        }
        let unknown = publish_outcome_unknown(&err);
        let error = sdk_error("PublishLayerVersion", err);
        return Err(match (unknown, error) {
            (true, PublishError::Request { operation, detail }) => PublishError::Request {
                operation,
                detail: format!(
                    "{detail} (the layer may have been published all the same; lext does not \
                     send it again, which would publish a second version: \
                     `aws lambda list-layer-versions --layer-name {layer_name}` shows what is there)"
                ),
            },
            (_, error) => error,
        });
    }
}

/// Whether Lambda answered `PublishLayerVersion` without publishing, and
/// asked to be called again later.
fn publish_retryable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(service) => {
            service.err().code() == Some("TooManyRequestsException")
                || service.raw().status().as_u16() == 429
        }
        _ => false,
    }
}

/// Whether the request may have reached Lambda and been carried out with
/// no answer heard: a timeout, or a connection lost after it was sent.
/// (A request that could not be built, or a refused connection, did
/// nothing.)
fn publish_outcome_unknown<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => {
            let refused = failure.as_connector_error().is_some_and(|e| {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
                while let Some(cause) = source {
                    if cause
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
                    {
                        return true;
                    }
                    source = cause.source();
                }
                false
            });
            !failure.is_user() && !refused
        }
        _ => false,
    }
}

/// The text of the first `<tag>...</tag>` in `body`.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim().to_owned()).filter(|s| !s.is_empty())
}

/// An error and its sources on one line, skipping a source whose message
/// the previous one already contains.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        source = cause.source();
    }
    // Some messages (the credential chain's) span lines: keep one line.
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYER: &str = "arn:aws:lambda:us-east-1:123456789012:layer:ext";

    fn v(n: u32) -> String {
        format!("{LAYER}:{n}")
    }

    #[test]
    fn merge_replaces_keeps_appends_and_limits() {
        let other = |n: u32| format!("arn:aws:lambda:us-east-1:123456789012:layer:other{n}:1");
        // New layer goes last.
        assert_eq!(
            merge_layers(&[other(1)], LAYER, &v(2)),
            Ok(vec![other(1), v(2)])
        );
        // An older version is replaced in place, order kept.
        assert_eq!(
            merge_layers(&[v(1), other(1)], LAYER, &v(2)),
            Ok(vec![v(2), other(1)])
        );
        // A layer whose name only starts the same is another layer.
        let similar = "arn:aws:lambda:us-east-1:123456789012:layer:ext2:7".to_owned();
        assert_eq!(
            merge_layers(std::slice::from_ref(&similar), LAYER, &v(2)),
            Ok(vec![similar, v(2)])
        );
        // Five others plus ours is six: refused with the count.
        let five: Vec<_> = (1..=5).map(other).collect();
        assert_eq!(merge_layers(&five, LAYER, &v(2)), Err(6));
        // Five including an older ours: replaced, still five.
        let mut four_and_ours: Vec<_> = (1..=4).map(other).collect();
        four_and_ours.push(v(1));
        assert_eq!(
            merge_layers(&four_and_ours, LAYER, &v(2)).map(|l| l.len()),
            Ok(5)
        );
    }

    #[test]
    fn versions_of_a_layer_by_name_or_arn() {
        assert!(is_version_of(&v(3), "ext"));
        assert!(is_version_of(&v(3), LAYER));
        assert!(!is_version_of(&v(3), "ex"));
        assert!(!is_version_of(
            &v(3),
            "arn:aws:lambda:eu-west-1:123456789012:layer:ext"
        ));
        let other = "arn:aws:lambda:us-east-1:123456789012:layer:ext2:1";
        assert!(!is_version_of(other, "ext"));
        assert!(!is_version_of("garbage", "ext"));
    }

    #[test]
    fn profiles_of_the_shared_files() {
        let config = "# c\n[default]\nregion = x\n[profile  dev ]\n[sso-session dev2]\n\
                      [profilex]\n[profile]\n  [ profile prod ]  \n";
        let names: Vec<_> = config_profiles(config).collect();
        assert_eq!(names, vec!["default", "dev", "prod"]);
        let names: Vec<_> = credentials_profiles("[a]\nk = v\n[b c]\n").collect();
        assert_eq!(names, vec!["a", "b c"]);
    }

    #[test]
    fn xml_error_bodies() {
        let body =
            "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId\
                    </Code><Message>The security token included in the request is invalid.\
                    </Message></Error></Errors></ErrorResponse>";
        assert_eq!(
            xml_text(body, "Code").as_deref(),
            Some("InvalidClientTokenId")
        );
        assert_eq!(
            xml_text(body, "Message").as_deref(),
            Some("The security token included in the request is invalid.")
        );
        assert_eq!(xml_text("{}", "Code"), None);
    }

    #[test]
    fn layer_names() {
        assert!(valid_layer_name("my-layer_1"));
        assert!(valid_layer_name(LAYER));
        assert!(!valid_layer_name("my layer"));
        assert!(!valid_layer_name("arn:aws:lambda:us-east-1:123:layer:x"));
        assert!(!valid_layer_name("a/b"));
    }

    #[test]
    fn json_is_aws_cli_shaped() {
        let lv = LayerVersion {
            content: Some(LayerContent {
                location: Some("https://example/x".into()),
                code_sha256: Some("abc=".into()),
                code_size: 169,
                signing_profile_version_arn: None,
                signing_job_arn: None,
            }),
            layer_arn: Some(LAYER.into()),
            layer_version_arn: Some(v(1)),
            description: None,
            created_date: Some("2018-11-14T23:03:52.894+0000".into()),
            version: 1,
            compatible_architectures: Some(vec!["x86_64".into()]),
            compatible_runtimes: Some(vec!["provided.al2".into()]),
            license_info: None,
        };
        let json = lv.to_aws_cli_json();
        let expected = format!(
            "{{\n    \"Content\": {{\n        \"Location\": \"https://example/x\",\n        \
             \"CodeSha256\": \"abc=\",\n        \"CodeSize\": 169\n    }},\n    \
             \"LayerArn\": \"{LAYER}\",\n    \"LayerVersionArn\": \"{LAYER}:1\",\n    \
             \"CreatedDate\": \"2018-11-14T23:03:52.894+0000\",\n    \"Version\": 1,\n    \
             \"CompatibleArchitectures\": [\n        \"x86_64\"\n    ],\n    \
             \"CompatibleRuntimes\": [\n        \"provided.al2\"\n    ]\n}}"
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn read_timeout_grows_with_the_upload() {
        assert_eq!(read_timeout(300 * 1024), Duration::from_secs(20));
        assert_eq!(read_timeout(50 * 1024 * 1024), Duration::from_secs(120));
    }

    #[test]
    fn check_runtime_is_the_oldest() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            check_runtime(&s(&["provided.al2023"])),
            Runtime::ProvidedAl2023
        );
        assert_eq!(
            check_runtime(&s(&["provided.al2", "provided.al2023"])),
            Runtime::ProvidedAl2
        );
        assert_eq!(check_runtime(&s(&["python3.12"])), Runtime::ProvidedAl2);
    }
}
