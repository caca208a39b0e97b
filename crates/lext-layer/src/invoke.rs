//! `lext invoke`: one call of Lambda's Invoke API (`POST
//! /2015-03-31/functions/{name}/invocations`), to a running `lext run
//! --serve` or to Lambda itself, through the official AWS SDK for Rust, as
//! `aws lambda invoke` makes it.
//!
//! Requests to a loopback endpoint are signed with placeholder credentials:
//! `lext run --serve` checks no signature, so none need be configured to
//! invoke locally. Any other endpoint gets SigV4 with credentials from the
//! standard chain, as `lext publish` does. One attempt only: an invoke is not idempotent,
//! and a retry would run the function twice.
//!
//! The outcome maps to aws-cli's return codes
//! (<https://docs.aws.amazon.com/cli/latest/userguide/cli-usage-returncodes.html>):
//! a function error is a successful call (0, with `FunctionError` in the
//! summary), an error answered by the service is 254, a configuration that
//! prevents the call (no region, no credentials, no such profile) is 253, a
//! parameter that cannot be used is 252, and a call that got no answer is
//! 255.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType as SdkInvocationType, LogType};
use aws_sdk_lambda::Client;
use serde::Serialize;

use crate::publish::{self, AwsOptions, PublishError, Signing};

/// The region used to invoke a loopback endpoint when none is configured
/// (the SDK needs one to build the request; `lext run` answers any).
pub const LOCAL_REGION: &str = "us-east-1";

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvocationType {
    /// Synchronous: the answer carries the function's response.
    #[default]
    RequestResponse,
    /// Asynchronous: queued, answered 202 with no payload.
    Event,
    /// Checks the request only, answered 204.
    DryRun,
}

/// One invoke to make.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// `FunctionName`: a name, an ARN, or either with `:qualifier`.
    pub function: String,
    /// The request payload (JSON for Lambda).
    pub payload: Vec<u8>,
    /// `X-Amz-Invocation-Type`.
    pub invocation_type: InvocationType,
    /// `X-Amz-Log-Type: Tail`: ask for the last 4 KB of the invoke's log.
    pub log_tail: bool,
    /// `X-Amz-Tenant-Id`, for a function with tenant isolation.
    pub tenant_id: Option<String>,
    /// Where and as whom; `endpoint_url` is required for a local endpoint.
    pub aws: AwsOptions,
    /// Whether to sign with the standard chain's credentials (see
    /// [`signs`]); else with placeholders.
    pub sign: bool,
}

/// Whether an invoke to `endpoint_url` is signed with real credentials by
/// default: not when the endpoint is on loopback (`127.0.0.0/8`, `::1`, `localhost`), where only
/// `lext run --serve` (or another local emulator) can be listening.
pub fn signs(endpoint_url: Option<&str>) -> bool {
    !endpoint_url.is_some_and(is_loopback_url)
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    // Drop user information and the port (`[::1]:9000`, `127.0.0.1:9000`).
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The Invoke response, as aws-cli shows it: the summary it prints, with
/// `LogResult` decoded, and the payload it writes to its outfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Invoked {
    /// The HTTP status: 200, 202 (`Event`) or 204 (`DryRun`).
    pub status_code: i32,
    /// `X-Amz-Function-Error` (`Unhandled`) when the function failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_error: Option<String>,
    /// `X-Amz-Log-Result`, base64-decoded: the end of the invoke's log
    /// (with `log_tail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_result: Option<String>,
    /// `X-Amz-Executed-Version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executed_version: Option<String>,
    /// The response payload.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

impl Invoked {
    /// The summary as aws-cli prints it (PascalCase keys in its order,
    /// absent fields left out), with `Payload` added: the payload's own
    /// bytes when it is JSON (key order kept), else a JSON string. One line.
    pub fn to_json(&self) -> String {
        let summary = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        if self.payload.is_empty() {
            return summary;
        }
        let payload = match serde_json::from_slice::<serde::de::IgnoredAny>(&self.payload) {
            Ok(_) => String::from_utf8_lossy(&self.payload).trim().to_owned(),
            Err(_) => {
                serde_json::Value::String(String::from_utf8_lossy(&self.payload).into_owned())
                    .to_string()
            }
        };
        // `summary` is an object with at least StatusCode: open it at the end.
        let open = summary.strip_suffix('}').unwrap_or(&summary);
        format!("{open},\"Payload\":{payload}}}")
    }
}

/// Why an invoke failed; [`InvokeError::exit_code`] is aws-cli's code for
/// it. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// A parameter that cannot be used (252).
    #[error("{0}")]
    Parameter(String),
    /// The configuration prevents the call: no region, no credentials, no
    /// such profile (253).
    #[error(transparent)]
    Config(PublishError),
    /// The service answered with an error (254), in aws-cli's words.
    #[error("An error occurred ({code}) when calling the Invoke operation: {message}")]
    Service {
        /// The error code (`ResourceNotFoundException`...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The call got no answer: connection refused, timeout (255).
    #[error("Invoke failed: {0}")]
    Failed(String),
}

impl InvokeError {
    /// aws-cli's return code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            InvokeError::Parameter(_) => 252,
            InvokeError::Config(_) => 253,
            InvokeError::Service { .. } => 254,
            InvokeError::Failed(_) => 255,
        }
    }
}

impl From<PublishError> for InvokeError {
    fn from(err: PublishError) -> InvokeError {
        match err {
            PublishError::Service { code, message, .. } => InvokeError::Service { code, message },
            PublishError::Request { detail, .. } => InvokeError::Failed(detail),
            PublishError::Runtime(e) => InvokeError::Failed(format!("async runtime: {e}")),
            other => InvokeError::Config(other),
        }
    }
}

/// Runs [`invoke`] on a current-thread tokio runtime made for the call.
pub fn invoke_blocking(options: &InvokeOptions) -> Result<Invoked, InvokeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InvokeError::Failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(invoke(options))
}

/// Makes the call.
pub async fn invoke(options: &InvokeOptions) -> Result<Invoked, InvokeError> {
    if options.function.is_empty() {
        return Err(InvokeError::Parameter(
            "the function name is empty".to_owned(),
        ));
    }
    let signing = if options.sign {
        publish::check_profile(&options.aws)?;
        Signing::Signed
    } else {
        Signing::Placeholder
    };
    // Lambda's longest function timeout is 15 minutes: the answer may take
    // that long. Connecting may not.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(15 * 60 + 10))
        .operation_timeout(Duration::from_secs(15 * 60 + 30))
        .build();
    let retries = RetryConfig::standard().with_max_attempts(1);
    let default_region = (signing == Signing::Placeholder).then_some(LOCAL_REGION);
    let config =
        publish::load_config(&options.aws, timeouts, retries, signing, default_region).await?;
    let client = Client::new(&config);
    let invocation_type = match options.invocation_type {
        InvocationType::RequestResponse => SdkInvocationType::RequestResponse,
        InvocationType::Event => SdkInvocationType::Event,
        InvocationType::DryRun => SdkInvocationType::DryRun,
    };
    let mut request = client
        .invoke()
        .function_name(&options.function)
        .invocation_type(invocation_type)
        .payload(Blob::new(options.payload.clone()))
        .set_tenant_id(options.tenant_id.clone());
    if options.log_tail {
        request = request.log_type(LogType::Tail);
    }
    tracing::info!(function = %options.function, bytes = options.payload.len(), "invoking");
    let out = request
        .send()
        .await
        .map_err(|e| InvokeError::from(publish::sdk_error("Invoke", e)))?;
    let log_result = match out.log_result() {
        Some(encoded) => Some(
            base64_decode(encoded)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .ok_or_else(|| {
                    InvokeError::Failed(format!("X-Amz-Log-Result is not base64: {encoded:?}"))
                })?,
        ),
        None => None,
    };
    Ok(Invoked {
        status_code: out.status_code(),
        function_error: out.function_error().map(str::to_owned),
        log_result,
        executed_version: out.executed_version().map(str::to_owned),
        payload: out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default(),
    })
}

/// Decodes standard base64 (RFC 4648 with `=` padding, as Lambda sends
/// `X-Amz-Log-Result`); `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim().as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_lambda_sends_it() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(
            base64_decode("U1RBUlQgUmVxdWVzdElkOiAx\n").unwrap(),
            b"START RequestId: 1"
        );
        for bad in ["TQ", "T===", "TQ==TWFu", "TW?u"] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn only_loopback_endpoints_go_unsigned() {
        for local in [
            "http://127.0.0.1:9000",
            "http://127.1.2.3:9000/",
            "http://localhost:9000",
            "http://[::1]:9000",
            "http://user@127.0.0.1:1",
        ] {
            assert!(is_loopback_url(local), "{local}");
            assert!(!signs(Some(local)), "{local}");
        }
        for remote in [
            "https://lambda.us-east-1.amazonaws.com",
            "http://10.0.0.1:9000",
            "http://127.0.0.1.example.com",
        ] {
            assert!(!is_loopback_url(remote), "{remote}");
        }
        assert!(signs(None));
    }

    #[test]
    fn the_summary_is_aws_cli_shaped_with_the_payload() {
        let invoked = Invoked {
            status_code: 200,
            function_error: Some("Unhandled".into()),
            log_result: None,
            executed_version: Some("$LATEST".into()),
            payload: br#"{"errorType":"ValueError"}"#.to_vec(),
        };
        assert_eq!(
            invoked.to_json(),
            r#"{"StatusCode":200,"FunctionError":"Unhandled","ExecutedVersion":"$LATEST","Payload":{"errorType":"ValueError"}}"#
        );
        let text = Invoked {
            payload: b"not json".to_vec(),
            ..invoked
        };
        assert!(text.to_json().ends_with(r#","Payload":"not json"}"#));
    }

    #[test]
    fn exit_codes_are_aws_cli_s() {
        assert_eq!(InvokeError::Parameter(String::new()).exit_code(), 252);
        assert_eq!(InvokeError::Config(PublishError::NoRegion).exit_code(), 253);
        let service = InvokeError::Service {
            code: "ResourceNotFoundException".into(),
            message: "Function not found: x".into(),
        };
        assert_eq!(service.exit_code(), 254);
        assert_eq!(
            service.to_string(),
            "An error occurred (ResourceNotFoundException) when calling the Invoke operation: \
             Function not found: x"
        );
        assert_eq!(InvokeError::Failed(String::new()).exit_code(), 255);
    }
}
