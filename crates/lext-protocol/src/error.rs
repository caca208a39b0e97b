//! Error and acknowledgement bodies, and the `errorType` strings.
//!
//! Lambda's API server (rapid) answers every client error with a JSON body
//! `{"errorMessage": "...", "errorType": "..."}` followed by a newline, and
//! acknowledges the error-report endpoints with `202 {"status":"OK"}`.
//! The constants in [`error_type`] are the exact `errorType` strings the
//! APIs answer and the platform records, so that the sandbox answers with
//! them and the SDK can match on them. Where they come from, in AWS's
//! runtime interface emulator (RIE,
//! github.com/aws/aws-lambda-runtime-interface-emulator) and AWS's
//! documentation:
//!
//! - Extensions API: RIE: internal/lambda/rapi/handler/constants.go;
//! - Runtime API: RIE: internal/lambda/rapi/rendering/rendering.go and
//!   internal/lambda/rapi/rendering/render_error.go;
//! - Telemetry and Logs APIs: AWS:
//!   <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api-reference.html>
//!   and <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-logs-api.html>;
//!   RIE: internal/lambda/rapi/handler/runtimelogs.go and
//!   internal/lambda/rapi/handler/runtimelogs_stub.go (the local 202 stub);
//! - platform error types: RIE: internal/lambda/fatalerror/fatalerror.go.

use serde::{Deserialize, Serialize};

/// The body of every error answer: `{"errorMessage":"…","errorType":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// Human-readable text, e.g. `Unknown extension <uuid>`.
    #[serde(default)]
    pub error_message: String,
    /// Machine-readable type, e.g. `Extension.UnknownExtensionIdentifier`.
    #[serde(default)]
    pub error_type: String,
}

impl ErrorResponse {
    /// Builds an error body.
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            error_message: error_message.into(),
            error_type: error_type.into(),
        }
    }

    /// The body as rapid writes it: compact JSON and a trailing newline (Go's
    /// `json.Encoder`).
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = serde_json::to_vec(self).unwrap_or_default();
        body.push(b'\n');
        body
    }
}

/// The acknowledgement of the error-report endpoints: `202 {"status":"OK"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// `"OK"`.
    pub status: String,
}

impl StatusResponse {
    /// `{"status":"OK"}`.
    pub fn ok() -> Self {
        Self {
            status: "OK".to_owned(),
        }
    }
}

/// The optional body of `init/error` and `exit/error` (Extensions API) and of
/// the runtime's error endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRequest {
    /// What went wrong, for a human.
    #[serde(default)]
    pub error_message: String,
    /// A type such as `Extension.ConfigInvalid` or `Runtime.ImportError`.
    #[serde(default)]
    pub error_type: String,
    /// Stack frames, omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack_trace: Vec<String>,
}

/// `errorType` strings answered by the APIs and recorded by the platform.
pub mod error_type {
    // --- Extensions API (all 403 unless noted) ---
    /// `Lambda-Extension-Name` missing or empty.
    pub const INVALID_EXTENSION_NAME: &str = "Extension.InvalidExtensionName";
    /// Register body not valid JSON, or non-empty `configurationKeys`.
    pub const INVALID_REQUEST_FORMAT: &str = "InvalidRequestFormat";
    /// Unknown event name, or SHUTDOWN asked by an internal extension.
    pub const INVALID_EVENT_TYPE: &str = "Extension.InvalidEventType";
    /// A call not allowed in the extension's current state.
    pub const INVALID_EXTENSION_STATE: &str = "Extension.InvalidExtensionState";
    /// Internal registration after the runtime's first `/next`.
    pub const REGISTRATION_CLOSED: &str = "Extension.RegistrationClosed";
    /// An eleventh extension.
    pub const TOO_MANY_EXTENSIONS: &str = "Extension.TooManyExtensions";
    /// `Lambda-Extension-Identifier` missing.
    pub const MISSING_EXTENSION_IDENTIFIER: &str = "Extension.MissingExtensionIdentifier";
    /// `Lambda-Extension-Identifier` not a UUID.
    pub const INVALID_EXTENSION_IDENTIFIER: &str = "Extension.InvalidExtensionIdentifier";
    /// A UUID that was never registered.
    pub const UNKNOWN_EXTENSION_IDENTIFIER: &str = "Extension.UnknownExtensionIdentifier";
    /// `Lambda-Extension-Function-Error-Type` missing on init/exit error.
    pub const MISSING_HEADER: &str = "Extension.MissingHeader";
    /// 500 from any endpoint.
    pub const INTERNAL_SERVER_ERROR: &str = "InternalServerError";

    // --- Runtime API ---
    /// Request id in the path is not the current invocation's (400).
    pub const INVALID_REQUEST_ID: &str = "InvalidRequestID";
    /// A runtime call in the wrong state (403).
    pub const INVALID_STATE_TRANSITION: &str = "InvalidStateTransition";
    /// Response body over [`crate::MAX_PAYLOAD_SIZE`] (413).
    pub const REQUEST_ENTITY_TOO_LARGE: &str = "RequestEntityTooLarge";
    /// Bad `Lambda-Runtime-Function-Response-Mode` (400).
    pub const INVALID_FUNCTION_RESPONSE_MODE: &str = "InvalidFunctionResponseMode";
    /// Truncated HTTP request (400).
    pub const TRUNCATED_HTTP_REQUEST: &str = "TruncatedHTTPRequest";

    // --- Telemetry and Logs APIs ---
    /// Subscription after Init (403).
    pub const TELEMETRY_SUBSCRIPTION_CLOSED: &str = "Telemetry.SubscriptionClosed";
    /// Subscription request fails validation (400, Telemetry API).
    pub const VALIDATION_ERROR: &str = "ValidationError";
    /// Subscription request fails validation (400, Logs API).
    pub const LOGS_VALIDATION_ERROR: &str = "Logs.ValidationError";
    /// Local stub answer of RIE (202): no telemetry backend.
    pub const TELEMETRY_NOT_SUPPORTED: &str = "Telemetry.NotSupported";
    /// Local stub answer of RIE (202) for the Logs API.
    pub const LOGS_NOT_SUPPORTED: &str = "Logs.NotSupported";

    // --- Platform error types (telemetry `errorType`, REPORT `Error Type`) ---
    /// The runtime process exited.
    pub const RUNTIME_EXIT_ERROR: &str = "Runtime.ExitError";
    /// Lambda Managed Instances: an invoke found no idle runtime worker
    /// (RIE `internal/lambda-managed-instances/rapid/model/client_error.go`).
    pub const RUNTIME_UNAVAILABLE: &str = "Runtime.Unavailable";
    /// Lambda Managed Instances: an invoke reused the id of one still
    /// running (same file).
    pub const DUPLICATED_INVOKE_ID: &str = "Client.DuplicatedInvokeId";
    /// Lambda Managed Instances: an invoke arrived while the environment
    /// was shutting down (same file).
    pub const EXECUTION_ENVIRONMENT_SHUT_DOWN: &str = "Client.ExecutionEnvironmentShutDown";
    /// The runtime ran out of memory.
    pub const RUNTIME_OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";
    /// A runtime error type that fails sanitising.
    pub const RUNTIME_UNKNOWN: &str = "Runtime.Unknown";
    /// The bootstrap could not be started.
    pub const RUNTIME_INVALID_ENTRYPOINT: &str = "Runtime.InvalidEntrypoint";
    /// A function error type starting with `Function.` that fails sanitising.
    pub const FUNCTION_UNKNOWN: &str = "Function.Unknown";
    /// The response exceeded [`crate::MAX_PAYLOAD_SIZE`].
    pub const FUNCTION_RESPONSE_SIZE_TOO_LARGE: &str = "Function.ResponseSizeTooLarge";
    /// An extension called `init/error`.
    pub const EXTENSION_INIT_ERROR: &str = "Extension.InitError";
    /// An extension called `exit/error`.
    pub const EXTENSION_EXIT_ERROR: &str = "Extension.ExitError";
    /// An extension process exited unexpectedly.
    pub const EXTENSION_CRASH: &str = "Extension.Crash";
    /// An extension could not be started.
    pub const EXTENSION_LAUNCH_ERROR: &str = "Extension.LaunchError";
    /// The sandbox itself failed.
    pub const SANDBOX_FAILURE: &str = "Sandbox.Failure";
    /// What the caller sees when the function timed out.
    pub const SANDBOX_TIMEDOUT: &str = "Sandbox.Timedout";

    // --- LaunchError detail (`EXTENSION … Error Type:`) ---
    /// The extension file is not executable.
    pub const LAUNCH_PERMISSION_DENIED: &str = "PermissionDenied";
    /// More than ten extension files.
    pub const LAUNCH_TOO_MANY_EXTENSIONS: &str = "TooManyExtensions";
    /// Any other launch failure (for example `exec format error`).
    pub const LAUNCH_UNKNOWN_ERROR: &str = "UnknownError";
}

/// Sanitises a runtime-reported error type the way the platform records it
/// in telemetry and in the REPORT line.
///
/// A type must contain `Runtime.` or `Function.` followed by an upper-case
/// letter and more letters (rapid's unanchored
/// `(Runtime|Function)\.[A-Z][a-zA-Z]+`); otherwise it becomes
/// `Function.Unknown` when it starts with `Function.`, else `Runtime.Unknown`.
///
/// ```
/// use lext_protocol::error::sanitize_runtime_error_type;
/// assert_eq!(sanitize_runtime_error_type("Runtime.ExitError"), "Runtime.ExitError");
/// assert_eq!(sanitize_runtime_error_type("unhandled"), "Runtime.Unknown");
/// assert_eq!(sanitize_runtime_error_type("Function.x"), "Function.Unknown");
/// ```
pub fn sanitize_runtime_error_type(error_type: &str) -> &str {
    if contains_valid_error_type(error_type) {
        error_type
    } else if error_type.starts_with("Function.") {
        error_type::FUNCTION_UNKNOWN
    } else {
        error_type::RUNTIME_UNKNOWN
    }
}

/// The unanchored match of `(Runtime|Function)\.[A-Z][a-zA-Z]+`.
fn contains_valid_error_type(s: &str) -> bool {
    ["Runtime.", "Function."].iter().any(|prefix| {
        s.match_indices(prefix).any(|(at, _)| {
            let mut rest = s[at + prefix.len()..].chars();
            rest.next().is_some_and(|c| c.is_ascii_uppercase())
                && rest.next().is_some_and(|c| c.is_ascii_alphabetic())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_compact_json_with_newline() {
        let body = ErrorResponse::new(
            error_type::MISSING_HEADER,
            "Lambda-Extension-Function-Error-Type not found",
        )
        .to_body();
        assert_eq!(
            body,
            b"{\"errorMessage\":\"Lambda-Extension-Function-Error-Type not found\",\"errorType\":\"Extension.MissingHeader\"}\n"
        );
    }

    #[test]
    fn status_ok_body() {
        assert_eq!(
            serde_json::to_string(&StatusResponse::ok()).unwrap(),
            r#"{"status":"OK"}"#
        );
    }

    #[test]
    fn error_request_omits_empty_stack() {
        let req = ErrorRequest {
            error_message: "bad config".into(),
            error_type: "Extension.ConfigInvalid".into(),
            stack_trace: vec![],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"errorMessage":"bad config","errorType":"Extension.ConfigInvalid"}"#
        );
        let back: ErrorRequest =
            serde_json::from_str(r#"{"errorMessage":"m","errorType":"t","stackTrace":["a","b"]}"#)
                .unwrap();
        assert_eq!(back.stack_trace, ["a", "b"]);
    }

    #[test]
    fn sanitizing_follows_rapid() {
        for (input, want) in [
            ("Runtime.ExitError", "Runtime.ExitError"),
            ("Function.MyError", "Function.MyError"),
            ("prefix Runtime.Oops suffix", "prefix Runtime.Oops suffix"),
            ("Runtime.X", "Runtime.Unknown"),
            ("Runtime.lower", "Runtime.Unknown"),
            ("Function.x", "Function.Unknown"),
            ("", "Runtime.Unknown"),
            ("unhandled", "Runtime.Unknown"),
            ("Runtime.", "Runtime.Unknown"),
        ] {
            assert_eq!(sanitize_runtime_error_type(input), want, "input {input:?}");
        }
    }
}
