//! The Runtime API (`/2018-06-01/runtime`).
//!
//! A function runtime long-polls [`NEXT_INVOCATION_PATH`], whose 200 answer
//! carries the raw payload and the invocation's metadata in the headers
//! listed here, then posts the result to [`response_path`] or
//! [`error_path`]. Bodies of errors are
//! [`ErrorRequest`](crate::error::ErrorRequest)s.

/// API version prefix.
pub const API_VERSION: &str = "2018-06-01";
/// `GET`: long-poll for the next invocation.
pub const NEXT_INVOCATION_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// `POST`: the runtime failed to initialize.
pub const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
/// Prefix of the per-invocation paths.
pub const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";

/// `POST` path of an invocation's response.
pub fn response_path(request_id: &str) -> String {
    format!("{INVOCATION_PREFIX}{request_id}/response")
}

/// `POST` path of an invocation's error.
pub fn error_path(request_id: &str) -> String {
    format!("{INVOCATION_PREFIX}{request_id}/error")
}

/// Response header of `/next`: the request id.
pub const HEADER_REQUEST_ID: &str = "Lambda-Runtime-Aws-Request-Id";
/// Response header of `/next`: the deadline, Unix epoch ms as decimal text.
pub const HEADER_DEADLINE_MS: &str = "Lambda-Runtime-Deadline-Ms";
/// Response header of `/next`: the ARN the caller used.
pub const HEADER_INVOKED_FUNCTION_ARN: &str = "Lambda-Runtime-Invoked-Function-Arn";
/// Response header of `/next`: the X-Ray trace header.
pub const HEADER_TRACE_ID: &str = "Lambda-Runtime-Trace-Id";
/// Response header of `/next`: client context JSON.
pub const HEADER_CLIENT_CONTEXT: &str = "Lambda-Runtime-Client-Context";
/// Response header of `/next`: Cognito identity JSON.
pub const HEADER_COGNITO_IDENTITY: &str = "Lambda-Runtime-Cognito-Identity";
/// Response header of `/next`: tenant id.
pub const HEADER_TENANT_ID: &str = "Lambda-Runtime-Aws-Tenant-Id";
/// A fresh nonce on every `/next` answer, which runtimes echo on `/response`
/// and `/error` so that an answer cannot be taken for another invoke's
/// (2026; echoed by AWS's runtime clients, e.g. aws-lambda-rust-runtime
/// PR #1155).
pub const HEADER_INVOCATION_ID: &str = "Lambda-Runtime-Invocation-Id";
/// Request header of the error endpoints: the error type.
pub const HEADER_FUNCTION_ERROR_TYPE: &str = "Lambda-Runtime-Function-Error-Type";
/// Request header of the error endpoints: an X-Ray error cause (JSON).
pub const HEADER_XRAY_ERROR_CAUSE: &str = "Lambda-Runtime-Function-XRay-Error-Cause";
/// Request header of `/response`: `streaming` for a streamed response.
pub const HEADER_RESPONSE_MODE: &str = "Lambda-Runtime-Function-Response-Mode";
/// The streamed response mode.
pub const RESPONSE_MODE_STREAMING: &str = "streaming";
/// Content type a runtime should use for error bodies.
pub const ERROR_CONTENT_TYPE: &str = "application/vnd.aws.lambda.error+json";

/// Invoke-side (caller-facing) constants of the Lambda service API.
pub mod invoke {
    /// `POST` path of the Invoke API, with `{name}` the function name.
    pub const INVOKE_PATH_PREFIX: &str = "/2015-03-31/functions/";
    /// Suffix of the Invoke API path.
    pub const INVOKE_PATH_SUFFIX: &str = "/invocations";
    /// Response header set when the function failed: `Unhandled` or `Handled`.
    pub const HEADER_FUNCTION_ERROR: &str = "X-Amz-Function-Error";
    /// Request header: `RequestResponse` (default), `Event` or `DryRun`.
    pub const HEADER_INVOCATION_TYPE: &str = "X-Amz-Invocation-Type";
    /// Request header: base64 client context.
    pub const HEADER_CLIENT_CONTEXT: &str = "X-Amz-Client-Context";
    /// Request/response header: X-Ray trace id.
    pub const HEADER_TRACE_ID: &str = "X-Amzn-Trace-Id";
    /// Response header: the request id.
    pub const HEADER_REQUEST_ID: &str = "X-Amzn-RequestId";
    /// Response header: the executed version.
    pub const HEADER_EXECUTED_VERSION: &str = "X-Amz-Executed-Version";
    /// Request header: the tenant of a function with tenant isolation
    /// (`aws lambda invoke --tenant-id`).
    pub const HEADER_TENANT_ID: &str = "X-Amz-Tenant-Id";
    /// Request header: `None` (default) or `Tail`, for the log's tail.
    pub const HEADER_LOG_TYPE: &str = "X-Amz-Log-Type";
    /// Response header with `Tail`: the base64 of the last 4 KB of the log.
    pub const HEADER_LOG_RESULT: &str = "X-Amz-Log-Result";
    /// `X-Amz-Function-Error` value for platform failures and timeouts.
    pub const FUNCTION_ERROR_UNHANDLED: &str = "Unhandled";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_invocation_paths() {
        assert_eq!(
            response_path("8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
            "/2018-06-01/runtime/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/response"
        );
        assert_eq!(error_path("id"), "/2018-06-01/runtime/invocation/id/error");
    }
}
