//! The SDK's typed errors.
//!
//! This module owns [`Error`], the one error type every fallible call returns,
//! and [`HandlerError`], what an extension's handler returns to make the SDK
//! report a failure to Lambda, with the rule that turns a handler's reason
//! into the `Lambda-Extension-Function-Error-Type` header
//! ([`error_type_header`]) and the endpoint a failure is reported to
//! ([`ErrorEndpoint`]). Each [`Error`] variant names the step that failed and
//! carries what a reader needs to act on it (the variable, the address, the
//! status and AWS's `errorType`).
//!
//! Both types print as one line with `{:?}` too (the message, then each
//! cause after a `: `), so `fn main() -> Result<(), Error>` ends with a
//! readable `Error: ...` line rather than a struct dump.

use std::net::SocketAddr;

use crate::signal::Signal;

/// Which Lambda API call an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `POST /extension/register`.
    Register,
    /// `GET /extension/event/next`.
    Next,
    /// `POST /extension/init/error`.
    InitError,
    /// `POST /extension/exit/error`.
    ExitError,
    /// `PUT /telemetry`.
    SubscribeTelemetry,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Register => "register",
            Op::Next => "event/next",
            Op::InitError => "init/error",
            Op::ExitError => "exit/error",
            Op::SubscribeTelemetry => "telemetry subscribe",
        })
    }
}

/// The Extensions API endpoint a handler failure was reported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorEndpoint {
    /// `POST /extension/init/error`: the failure happened before the first
    /// `/event/next`, in the init phase.
    InitError,
    /// `POST /extension/exit/error`: the failure happened after it.
    ExitError,
}

impl ErrorEndpoint {
    /// The call that reports to this endpoint.
    pub(crate) fn op(self) -> Op {
        match self {
            ErrorEndpoint::InitError => Op::InitError,
            ErrorEndpoint::ExitError => Op::ExitError,
        }
    }
}

/// Displays the endpoint as `init/error` or `exit/error`.
impl std::fmt::Display for ErrorEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.op().fmt(f)
    }
}

/// Everything that can go wrong talking to Lambda's APIs.
///
/// `{:?}` prints the same one line as `{}`, followed by `: cause` for each
/// error in the [`source`](std::error::Error::source) chain that the line
/// does not already end with, so that `fn main() -> Result<(), Error>` ends
/// with a readable `Error: ...` line rather than a struct dump:
///
/// ```
/// let err = lext_extension::Endpoint::parse("127.0.0.1").unwrap_err();
/// assert_eq!(format!("{err:?}"), err.to_string());
/// assert!(format!("{err:?}").starts_with("environment variable AWS_LAMBDA_RUNTIME_API: "));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable is missing or malformed.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The builder was given a value Lambda would refuse.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No connection to the API could be made.
    #[error("{op}: cannot connect to the Lambda API at {addr}: {source}")]
    Connect {
        /// The call being made.
        op: Op,
        /// The address tried last.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection failed while sending or receiving.
    #[error("{op}: I/O error talking to the Lambda API: {source}")]
    Io {
        /// The call being made.
        op: Op,
        /// The OS error.
        source: std::io::Error,
    },
    /// The API answered with an error status (403, 500, ...), with AWS's
    /// `errorType` and `errorMessage` when the body carried them.
    #[error("{op}: Lambda API answered {status}: {error_type}: {message}")]
    Api {
        /// The call being made.
        op: Op,
        /// HTTP status.
        status: u16,
        /// AWS's `errorType`, or `Unknown` when the body had none.
        error_type: String,
        /// AWS's `errorMessage`, or the raw body.
        message: String,
    },
    /// The API answered something that is not the protocol (not HTTP, a
    /// missing header, a body that does not decode).
    #[error("{op}: invalid answer from the Lambda API: {reason}")]
    Protocol {
        /// The call being made.
        op: Op,
        /// What was wrong.
        reason: String,
    },
    /// SIGTERM or SIGINT arrived while a call was in flight.
    #[error("{op}: interrupted by {}", signal.name())]
    Interrupted {
        /// The call that was interrupted.
        op: Op,
        /// The signal.
        signal: Signal,
    },
    /// The handler failed; the failure was reported to Lambda with
    /// `init/error` or `exit/error` (see [`ErrorEndpoint`]). The process
    /// should now exit with a non-zero status.
    #[error("extension failed ({error_type}): {message} (reported with {endpoint}{})",
        if report_failed.is_some() { ", but the report failed" } else { "" })]
    Handler {
        /// Which endpoint the failure was reported to.
        endpoint: ErrorEndpoint,
        /// The `Lambda-Extension-Function-Error-Type` sent.
        error_type: String,
        /// The handler's message.
        message: String,
        /// Set when the report itself could not be delivered.
        report_failed: Option<Box<Error>>,
    },
    /// The telemetry listener could not be set up (for example, a port
    /// already in use).
    #[error("telemetry listener on {addr}: {source}")]
    Listener {
        /// The address that could not be bound.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Prints the [`Display`](std::fmt::Display) line and its
/// [`source`](std::error::Error::source) chain on one line.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&one_line(self))
    }
}

/// `error`'s message followed by `: cause` for each error in its source
/// chain. A cause whose text the line already ends with is skipped: several
/// variants already show their OS error in their own message.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Builds the `Lambda-Extension-Function-Error-Type` value
/// `Extension.<Reason>` from a free-form reason: the rule
/// [`HandlerError::new`] applies. Only characters of an HTTP token (letters,
/// digits, `.`, `_`, `-`) are kept, spaces become nothing (so "config
/// missing" is `Extension.configmissing`), a leading `Extension.` is not
/// doubled, the result is capped at 128 bytes, and an empty reason becomes
/// `Extension.Unknown`.
///
/// # Examples
/// ```
/// use lext_extension::error_type_header;
/// assert_eq!(error_type_header("ConfigMissing"), "Extension.ConfigMissing");
/// assert_eq!(error_type_header("Extension.Bad\r\nX: y"), "Extension.BadXy");
/// assert_eq!(error_type_header("  "), "Extension.Unknown");
/// ```
pub fn error_type_header(reason: &str) -> String {
    let reason = reason.trim();
    let reason = reason.strip_prefix("Extension.").unwrap_or(reason);
    let mut clean: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(118)
        .collect();
    if clean.is_empty() {
        clean.push_str("Unknown");
    }
    format!("Extension.{clean}")
}

/// A failure returned by an extension's handler.
///
/// Any `std::error::Error` converts into it with `?` (error type
/// `Extension.HandlerError`); [`HandlerError::new`] sets the reason. The SDK
/// reports it as `Lambda-Extension-Function-Error-Type: Extension.<Reason>`
/// and a JSON body `{"errorMessage","errorType"}`. `{:?}` prints the same
/// line as `{}`, `Extension.<Reason>: message`.
///
/// # Examples
/// ```
/// use lext_extension::HandlerError;
/// let e = HandlerError::new("ConfigMissing", "API_KEY is not set");
/// assert_eq!(e.error_type(), "Extension.ConfigMissing");
/// let parsed: Result<u32, HandlerError> = "x".parse::<u32>().map_err(Into::into);
/// assert_eq!(parsed.unwrap_err().error_type(), "Extension.HandlerError");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HandlerError {
    error_type: String,
    message: String,
}

impl HandlerError {
    /// A failure with the given reason (made into `Extension.<Reason>`, with
    /// characters that are not valid in a header token removed) and message.
    pub fn new(reason: impl AsRef<str>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type_header(reason.as_ref()),
            message: message.into(),
        }
    }

    /// The sanitized `Extension.<Reason>` error type.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The message, sent as `errorMessage`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

/// Prints the [`Display`](std::fmt::Display) line, as for [`Error`].
impl std::fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        // Include the source chain: the message is for a human reading logs.
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::new("HandlerError", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_an_env_error_is_its_one_line_message() {
        let err = Error::Env {
            var: "AWS_LAMBDA_RUNTIME_API",
            reason: "not set".into(),
        };
        assert_eq!(
            format!("{err:?}"),
            "environment variable AWS_LAMBDA_RUNTIME_API: not set"
        );
        assert_eq!(format!("{err:?}"), err.to_string());
    }

    /// An error with a cause, as a library below the transport would give.
    #[derive(Debug, thiserror::Error)]
    #[error("handshake failed")]
    struct Handshake(#[source] std::io::Error);

    #[test]
    fn debug_of_a_transport_error_adds_causes_once() {
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Connect {
            op: Op::Register,
            addr,
            source: refused(),
        };
        // The message already ends with the OS error: not repeated.
        assert_eq!(
            format!("{err:?}"),
            "register: cannot connect to the Lambda API at 127.0.0.1:9001: refused"
        );
        // A cause the message does not show is appended after `: `.
        let err = Error::Io {
            op: Op::Next,
            source: std::io::Error::other(Handshake(refused())),
        };
        assert_eq!(
            format!("{err:?}"),
            "event/next: I/O error talking to the Lambda API: handshake failed: refused"
        );
        assert!(!format!("{err:?}").contains('\n'));
    }

    #[test]
    fn debug_of_a_handler_error_is_its_display() {
        let err = HandlerError::new("Bad Config", "API_KEY is not set");
        assert_eq!(
            format!("{err:?}"),
            "Extension.BadConfig: API_KEY is not set"
        );
        let err = Error::Handler {
            endpoint: ErrorEndpoint::ExitError,
            error_type: err.error_type().into(),
            message: err.message().into(),
            report_failed: None,
        };
        assert_eq!(
            format!("{err:?}"),
            "extension failed (Extension.BadConfig): API_KEY is not set (reported with exit/error)"
        );
    }

    #[test]
    fn error_type_header_is_always_a_token() {
        for raw in [
            "",
            "a b",
            "Extension.Extension.X",
            "\u{1F600}",
            "x\0y",
            &"z".repeat(500),
        ] {
            let h = error_type_header(raw);
            assert!(h.starts_with("Extension."));
            assert!(h.len() <= 128);
            assert!(
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{h}"
            );
        }
    }
}
