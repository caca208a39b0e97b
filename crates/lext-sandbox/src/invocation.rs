//! An invoke as a caller makes it and the answer it gets: the types the
//! Invoke API endpoint and the library's `invoke` share. A leaf module.

use bytes::Bytes;

/// An invoke, as a caller makes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvokeRequest {
    /// The payload (JSON by convention, passed through as bytes).
    pub payload: Bytes,
    /// `X-Amzn-Trace-Id`, passed to the runtime and the extensions; a new
    /// one is made when absent, as Lambda does.
    pub trace_id: Option<String>,
    /// Client context JSON (already base64-decoded).
    pub client_context: Option<String>,
    /// `X-Amz-Tenant-Id`: the tenant, for a [`Function`](crate::Function)
    /// with tenant isolation, which routes the invoke to that tenant's
    /// environments. An [`Environment`](crate::Environment) ignores it: its
    /// tenant is its own ([`Environment::tenant`](crate::Environment::tenant)).
    pub tenant_id: Option<String>,
    /// `X-Amzn-RequestId`: under Lambda Managed Instances the caller's
    /// request id becomes the invoke id (a second invoke with the id of one
    /// still running is rejected with `Client.DuplicatedInvokeId`).
    /// On-demand environments ignore it and make their own.
    pub request_id: Option<String>,
}

impl InvokeRequest {
    /// An invoke with this payload and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }
}

/// What the caller gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeResult {
    /// The runtime's response.
    Response {
        /// The body.
        body: Bytes,
        /// The runtime's content type, if it sent one.
        content_type: Option<String>,
    },
    /// The runtime's `/error` body (`X-Amz-Function-Error: Unhandled`).
    FunctionError {
        /// The body, unchanged.
        body: Bytes,
    },
    /// A platform error: timeout, crash, oversized response, ...
    PlatformError {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
}

/// The answer to an invoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeResponse {
    /// The request id (`X-Amzn-RequestId`, the `RequestId` of its
    /// `START`/`END`/`REPORT` lines).
    pub request_id: String,
    /// The result.
    pub result: InvokeResult,
}

impl InvokeResponse {
    /// The payload the Invoke API returns: the function's response, its
    /// error document, or the platform's `{"errorType","errorMessage"}`.
    pub fn payload(&self) -> Bytes {
        match &self.result {
            InvokeResult::Response { body, .. } | InvokeResult::FunctionError { body } => {
                body.clone()
            }
            InvokeResult::PlatformError {
                error_type,
                message,
            } => {
                // errorType first, as Lambda writes these bodies.
                let body = format!(
                    "{{\"errorType\":{},\"errorMessage\":{}}}",
                    serde_json::Value::String(error_type.clone()),
                    serde_json::Value::String(message.clone())
                );
                Bytes::from(body)
            }
        }
    }

    /// `X-Amz-Function-Error`: `Some("Unhandled")` when the function or the
    /// platform failed.
    pub fn function_error(&self) -> Option<&'static str> {
        match self.result {
            InvokeResult::Response { .. } => None,
            _ => Some(lext_protocol::runtime::invoke::FUNCTION_ERROR_UNHANDLED),
        }
    }

    /// Whether the function answered with a response (not an error).
    pub fn is_success(&self) -> bool {
        matches!(self.result, InvokeResult::Response { .. })
    }
}
