//! `lext invoke`: one invoke of a function served by `lext run --serve`
//! (or of a Lambda function), printed as aws-cli prints it, with aws-cli's
//! return codes. The call is `lext_layer::invoke`.

use std::io::Write as _;
use std::process::ExitCode;

use lext_layer::invoke::{self, InvocationType, InvokeError, InvokeOptions, Invoked};
use lext_layer::publish::AwsOptions;

/// How to print the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// The response payload on stdout; the summary (and the log tail) on
    /// stderr.
    Text,
    /// One JSON line on stdout: aws-cli's summary (StatusCode,
    /// FunctionError, LogResult decoded, ExecutedVersion) and the Payload.
    Json,
}

/// `--invocation-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Invocation {
    /// Synchronous: wait for the function's response.
    #[value(name = "RequestResponse")]
    RequestResponse,
    /// Asynchronous: queued (202, no payload).
    #[value(name = "Event")]
    Event,
    /// Validate the request only (204).
    #[value(name = "DryRun")]
    DryRun,
}

/// `--log-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogType {
    /// No log in the answer.
    #[value(name = "None")]
    None,
    /// The last 4 KB of the invoke's log, in LogResult.
    #[value(name = "Tail")]
    Tail,
}

/// Arguments of `lext invoke`.
///
/// `--help` ends with [`EXIT_CODES`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// The function's name (or ARN) [default: lext-function, the name lext
    /// run gives its function].
    #[arg(value_name = "FUNCTION", default_value = "lext-function")]
    pub function: String,

    /// The payload: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    pub payload: String,

    /// How to invoke.
    #[arg(long, value_enum, default_value = "RequestResponse")]
    pub invocation_type: Invocation,

    /// Tail: return the end of the invoke's log (LogResult, decoded).
    #[arg(long, value_enum, default_value = "None")]
    pub log_type: LogType,

    /// X-Amz-Tenant-Id, for a function with tenant isolation.
    #[arg(long, value_name = "ID")]
    pub tenant_id: Option<String>,

    /// Where the Invoke API is: `lext run --serve ADDR`'s http://ADDR, or
    /// Lambda's endpoint. Requests to a loopback address are signed with
    /// placeholder credentials (lext run checks none); others with the
    /// standard chain's, as aws-cli does.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9000")]
    pub endpoint_url: String,

    /// AWS region [default: from the environment or profile; us-east-1 for
    /// a loopback endpoint].
    #[arg(long)]
    pub region: Option<String>,

    /// Named profile for the credentials of a signed request.
    #[arg(long)]
    pub profile: Option<String>,

    /// Sign with placeholder credentials whatever the endpoint.
    #[arg(long)]
    pub no_sign_request: bool,

    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// The exit codes, one line after `--help`: aws-cli's.
const EXIT_CODES: &str = "Exit codes (aws-cli's): 0 the call succeeded, also when the function \
                          failed (FunctionError in the summary); 2 bad command line; 252 a \
                          parameter lext cannot use (an unreadable @FILE); 253 configuration \
                          (no region, no credentials, no such profile); 254 the service \
                          answered with an error (ResourceNotFoundException...); 255 no answer \
                          (connection refused, timeout)";

/// Invokes, prints, and exits with aws-cli's code.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match invoke_once(args) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            note!("error: {err}");
            Ok(ExitCode::from(err.exit_code()))
        }
    }
}

fn invoke_once(args: Args) -> Result<(), InvokeError> {
    let payload = match args.payload.strip_prefix('@') {
        Some(file) => std::fs::read(file)
            .map_err(|e| InvokeError::Parameter(format!("--payload: cannot read {file}: {e}")))?,
        // As aws-cli, the text is sent as given: the service judges it.
        None => args.payload.into_bytes(),
    };
    let sign = !args.no_sign_request && invoke::signs(Some(&args.endpoint_url));
    let options = InvokeOptions {
        function: args.function,
        payload,
        invocation_type: match args.invocation_type {
            Invocation::RequestResponse => InvocationType::RequestResponse,
            Invocation::Event => InvocationType::Event,
            Invocation::DryRun => InvocationType::DryRun,
        },
        log_tail: args.log_type == LogType::Tail,
        tenant_id: args.tenant_id,
        aws: AwsOptions {
            region: args.region,
            profile: args.profile,
            endpoint_url: Some(args.endpoint_url),
        },
        sign,
    };
    let invoked = invoke::invoke_blocking(&options)?;
    print(&invoked, args.output).map_err(|e| InvokeError::Failed(format!("writing: {e}")))
}

/// The payload on stdout and the summary on stderr, or all of it as JSON.
fn print(invoked: &Invoked, output: Output) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{}", invoked.to_json()),
        Output::Text => {
            out.write_all(&invoked.payload)?;
            if !invoked.payload.is_empty() && !invoked.payload.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            out.flush()?;
            let mut summary = format!("StatusCode: {}", invoked.status_code);
            if let Some(error) = &invoked.function_error {
                summary.push_str(&format!("  FunctionError: {error}"));
            }
            if let Some(version) = &invoked.executed_version {
                summary.push_str(&format!("  ExecutedVersion: {version}"));
            }
            note!("{summary}");
            if let Some(log) = &invoked.log_result {
                note!("{}", log.trim_end());
            }
            Ok(())
        }
    }
}
