//! The function's configuration: the settings Lambda gives a function and
//! that the environment needs (name, memory, timeout, region, handler), with
//! Lambda's defaults. A leaf: it depends on nothing else in the crate.

use std::time::Duration;

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    /// Function name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// `$LATEST` or a number.
    pub version: String,
    /// Memory, MB (128 to 10,240).
    pub memory_mb: u32,
    /// Function timeout (1 s to 900 s).
    pub timeout: Duration,
    /// Region, for the ARN and `AWS_REGION`.
    pub region: String,
    /// Account id, for the ARN and the `accountId` feature.
    pub account_id: String,
    /// `_HANDLER`.
    pub handler: String,
    /// The Init limit (10 s for on-demand functions, AWS: "Lambda execution
    /// environment lifecycle", Init phase).
    pub init_timeout: Duration,
    /// The runtime version the `INIT_START` line and `platform.initStart`
    /// name, in Lambda's form (`python:3.13.v43`); `None` for neither.
    /// Default [`DEFAULT_RUNTIME_VERSION`].
    pub runtime_version: Option<String>,
    /// Log format and levels (Lambda's advanced logging controls).
    pub logging: Logging,
    /// Lambda Managed Instances with this many runtime workers at most
    /// (`AWS_LAMBDA_MAX_CONCURRENCY`); `None` (the default) for an
    /// on-demand function. Set it with
    /// [`Environment::managed_instances`](crate::Environment::managed_instances),
    /// which also forces JSON logging.
    pub managed_instances: Option<u32>,
}

/// A function's log format (AWS: Configuring advanced logging controls for
/// Lambda functions,
/// <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Plain text: the `START`/`END`/`REPORT` lines, output lines as written.
    #[default]
    Text,
    /// Structured JSON: platform records instead of the text lines, every
    /// output line a JSON object, log levels applied.
    Json,
}

/// A log level, from the most detail to the least (AWS: Log-level
/// filtering,
/// <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `TRACE`.
    Trace,
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARN`.
    Warn,
    /// `ERROR`.
    Error,
    /// `FATAL`.
    Fatal,
}

impl LogLevel {
    /// The level named `name`, in any case (`WARNING` too); `None` for
    /// anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "TRACE" => Self::Trace,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "WARN" | "WARNING" => Self::Warn,
            "ERROR" => Self::Error,
            "FATAL" | "CRITICAL" => Self::Fatal,
            _ => return None,
        })
    }

    /// The name Lambda uses, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

/// The log format and the levels below which lines are dropped (levels
/// apply with [`LogFormat::Json`] only, as in Lambda).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logging {
    /// Text (default) or JSON.
    pub format: LogFormat,
    /// Function and extension lines below it are dropped (default INFO).
    pub application_level: LogLevel,
    /// Platform records below it are dropped (DEBUG, INFO or WARN; default
    /// INFO).
    pub system_level: LogLevel,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            application_level: LogLevel::Info,
            system_level: LogLevel::Info,
        }
    }
}

impl Logging {
    /// Whether the format is JSON.
    pub fn is_json(&self) -> bool {
        self.format == LogFormat::Json
    }
}

/// The runtime version of a function run by lext: a custom runtime on
/// Amazon Linux 2023, as Lambda names it (`INIT_START Runtime Version:
/// provided:al2023.v<N>`). lext has no runtime build, so `N` is 1; set the
/// version a deployed function shows with `--runtime-version`.
pub const DEFAULT_RUNTIME_VERSION: &str = "provided:al2023.v1";

impl Default for FunctionConfig {
    /// The settings `lext run` uses when given none: 128 MB and 3 s, as the
    /// Lambda console creates a function.
    fn default() -> Self {
        Self {
            name: "lext-function".to_owned(),
            version: "$LATEST".to_owned(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
            handler: "bootstrap".to_owned(),
            init_timeout: Duration::from_secs(10),
            runtime_version: Some(DEFAULT_RUNTIME_VERSION.to_owned()),
            logging: Logging::default(),
            managed_instances: None,
        }
    }
}

impl FunctionConfig {
    /// The ARN of the runtime version:
    /// `arn:aws:lambda:<region>::runtime:<64 hex>`. Lambda's hex is an
    /// opaque build id; here it is a digest of the version, so one version
    /// always has one ARN.
    pub fn runtime_version_arn(&self) -> Option<String> {
        let version = self.runtime_version.as_deref()?;
        let mut hex = String::with_capacity(64);
        for seed in 0u64..4 {
            // FNV-1a, seeded per quarter.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
            for b in version.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            hex.push_str(&format!("{h:016x}"));
        }
        Some(format!("arn:aws:lambda:{}::runtime:{hex}", self.region))
    }

    /// The unqualified function ARN.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}
