//! Refusals: every request the sandbox turns down, typed.
//!
//! Bad input from the code under test is the sandbox's expected traffic, so
//! every refused call is a [`Refusal`] variant that knows its HTTP status,
//! its `errorType` (from [`lext_protocol::error::error_type`]) and the exact
//! message rapid writes. The messages and statuses are those of the AWS
//! Lambda Runtime Interface Emulator (RIE,
//! github.com/aws/aws-lambda-runtime-interface-emulator):
//! internal/lambda/rapi/handler/constants.go and the handlers beside it
//! (`agentregister.go`, `agentnext.go`, `agentiniterror.go`,
//! `agentexiterror.go`, `invocationresponse.go`, `runtimelogs.go`), and
//! internal/lambda/rapi/rendering/render_error.go; the Telemetry API's closed
//! answer is AWS's (AWS: Telemetry API,
//! <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>). The
//! lifecycle returns them; the HTTP layer renders them with
//! [`ErrorResponse::to_body`](lext_protocol::error::ErrorResponse::to_body).

use lext_protocol::error::{error_type, ErrorResponse};
use lext_protocol::telemetry::Api;

use super::{ExtensionId, ExtensionState, RuntimeState};

/// A call the sandbox refuses, as AWS refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    // --- Extensions API: all 403 ---
    /// `Lambda-Extension-Name` missing or empty.
    #[error("Empty extension name")]
    EmptyExtensionName,
    /// The register body is not JSON (an empty body included).
    #[error("{0}")]
    InvalidRequestFormat(String),
    /// The register body has a non-empty `configurationKeys`.
    #[error("configurationKeys are deprecated; use environment variables instead")]
    ConfigurationKeys,
    /// An event name other than INVOKE or SHUTDOWN.
    #[error("{0}: ErrorInvalidEventType")]
    InvalidEventType(String),
    /// Managed Instances: an internal extension asked for any event (RIE
    /// `internal/lambda-managed-instances/rapi/handler/agentregister.go`).
    #[error("No events allowed for internal extensions")]
    NoEventsForInternal,
    /// An internal extension asked for SHUTDOWN.
    #[error("SHUTDOWN: ShutdownEventNotSupportedForInternalExtension")]
    ShutdownForInternal,
    /// A state transition the extension's state forbids.
    #[error("State transition from {from} to {to} failed for extension {who}. Error: State transition is not allowed")]
    ExtensionState {
        /// The current state.
        from: ExtensionState,
        /// The state the call asked for.
        to: ExtensionState,
        /// The extension's name (register) or identifier (other calls).
        who: String,
    },
    /// An internal extension registered after the runtime's first `/next`.
    #[error("Extension registration closed already")]
    RegistrationClosed,
    /// An internal extension's name collides with another extension's.
    #[error("Extension with this name already registered")]
    NameTaken,
    /// An eleventh extension.
    #[error("Extension limit (10) reached")]
    TooManyExtensions,
    /// `Lambda-Extension-Identifier` missing.
    #[error("Missing Lambda-Extension-Identifier header")]
    MissingIdentifier,
    /// `Lambda-Extension-Identifier` is not a UUID.
    #[error("Invalid Lambda-Extension-Identifier")]
    InvalidIdentifier,
    /// A UUID never registered (or registered before a reset), on
    /// `event/next` and the subscribe endpoints.
    #[error("Unknown extension {0}")]
    UnknownExtension(ExtensionId),
    /// A UUID never registered, on `init/error` and `exit/error`, whose
    /// message differs in rapid.
    #[error("Unknown Lambda-Extension-Identifier")]
    UnknownIdentifier,
    /// `Lambda-Extension-Function-Error-Type` missing.
    #[error("Lambda-Extension-Function-Error-Type not found")]
    MissingErrorType,

    // --- Runtime API ---
    /// The request id in the path is not the current invocation's (400).
    #[error("Invalid request ID")]
    InvalidRequestId,
    /// A runtime call in the wrong state (403).
    #[error("State transition from {from} to {to} failed for runtime. Error: State transition is not allowed")]
    RuntimeState {
        /// The runtime's current state.
        from: RuntimeState,
        /// The state the call asked for.
        to: RuntimeState,
    },
    /// A response body over the payload limit (413).
    #[error(
        "Exceeded maximum allowed payload size ({} bytes).",
        lext_protocol::MAX_PAYLOAD_SIZE
    )]
    PayloadTooLarge,
    /// `Lambda-Runtime-Function-Response-Mode` with an unknown value (400).
    #[error("Invalid function response mode")]
    InvalidResponseMode,
    /// The request body ended early (400).
    #[error("HTTP request detected as truncated")]
    Truncated,
    /// An answer for an invoke that has timed out (410).
    #[error("Invoke timeout")]
    InvokeTimeout,

    // --- Telemetry and Logs APIs ---
    /// A subscription after Init (403).
    #[error("{} API subscription is closed already", api_name(*.0))]
    SubscriptionClosed(Api),
    /// A subscription request that fails validation (400).
    #[error("{message}")]
    Validation {
        /// Which API was called.
        api: Api,
        /// What is wrong with the request.
        message: String,
    },

    // --- any endpoint ---
    /// The sandbox itself failed (500); never the caller's fault.
    #[error("Internal Server Error")]
    Internal,
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Telemetry => "Telemetry",
        Api::Logs => "Logs",
    }
}

impl Refusal {
    /// The HTTP status AWS answers with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::InvalidRequestId | Self::InvalidResponseMode | Self::Truncated => 400,
            Self::Validation { .. } => 400,
            Self::PayloadTooLarge => 413,
            Self::InvokeTimeout => 410,
            Self::Internal => 500,
            _ => 403,
        }
    }

    /// The `errorType` of the body.
    pub(crate) fn error_type(&self) -> &'static str {
        use error_type as t;
        match self {
            Self::EmptyExtensionName => t::INVALID_EXTENSION_NAME,
            Self::InvalidRequestFormat(_) | Self::ConfigurationKeys => t::INVALID_REQUEST_FORMAT,
            Self::InvalidEventType(_) | Self::ShutdownForInternal | Self::NoEventsForInternal => {
                t::INVALID_EVENT_TYPE
            }
            Self::ExtensionState { .. } | Self::NameTaken => t::INVALID_EXTENSION_STATE,
            Self::RegistrationClosed => t::REGISTRATION_CLOSED,
            Self::TooManyExtensions => t::TOO_MANY_EXTENSIONS,
            Self::MissingIdentifier => t::MISSING_EXTENSION_IDENTIFIER,
            Self::InvalidIdentifier => t::INVALID_EXTENSION_IDENTIFIER,
            Self::UnknownExtension(_) | Self::UnknownIdentifier => t::UNKNOWN_EXTENSION_IDENTIFIER,
            Self::MissingErrorType => t::MISSING_HEADER,
            Self::InvalidRequestId => t::INVALID_REQUEST_ID,
            Self::RuntimeState { .. } => t::INVALID_STATE_TRANSITION,
            Self::PayloadTooLarge => t::REQUEST_ENTITY_TOO_LARGE,
            Self::InvalidResponseMode => t::INVALID_FUNCTION_RESPONSE_MODE,
            Self::Truncated => t::TRUNCATED_HTTP_REQUEST,
            Self::InvokeTimeout => "InvokeTimeout",
            Self::SubscriptionClosed(Api::Telemetry) => t::TELEMETRY_SUBSCRIPTION_CLOSED,
            // The Logs API's closed type follows the Telemetry API's naming;
            // the exact string is not documented (see docs/fidelity.md).
            Self::SubscriptionClosed(Api::Logs) => "Logs.SubscriptionClosed",
            Self::Validation { api, .. } => api.validation_error_type(),
            Self::Internal => t::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body, as [`ErrorResponse`].
    pub(crate) fn to_response(&self) -> ErrorResponse {
        ErrorResponse::new(self.error_type(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_rapid() {
        let r = Refusal::RuntimeState {
            from: RuntimeState::Ready,
            to: RuntimeState::InvocationResponse,
        };
        assert_eq!(r.status(), 403);
        assert_eq!(
            String::from_utf8(r.to_response().to_body()).unwrap(),
            "{\"errorMessage\":\"State transition from Ready to InvocationResponse failed for runtime. Error: State transition is not allowed\",\"errorType\":\"InvalidStateTransition\"}\n"
        );
        assert_eq!(
            Refusal::PayloadTooLarge.to_string(),
            "Exceeded maximum allowed payload size (6291556 bytes)."
        );
        assert_eq!(
            Refusal::SubscriptionClosed(Api::Telemetry).to_string(),
            "Telemetry API subscription is closed already"
        );
        assert_eq!(
            Refusal::InvalidEventType("FOO".into()).to_string(),
            "FOO: ErrorInvalidEventType"
        );
    }
}
