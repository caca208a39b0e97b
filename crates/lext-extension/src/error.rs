//! The SDK's typed errors.
//!
//! This module owns [`Error`], the one error type every fallible call returns,
//! and [`HandlerError`], what an extension's handler returns to make the SDK
//! report a failure to Lambda. Each [`Error`] variant names the step that
//! failed and carries what a reader needs to act on it (the variable, the
//! address, the status and AWS's `errorType`).

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

/// The lifecycle phase a handler failure was reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the first `/event/next`: reported with `init/error`.
    Init,
    /// After it: reported with `exit/error`.
    Exit,
}

/// Displays the endpoint the phase reports to (`init/error`, `exit/error`).
impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Init => "init/error",
            Phase::Exit => "exit/error",
        })
    }
}

/// Everything that can go wrong talking to Lambda's APIs.
#[derive(Debug, thiserror::Error)]
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
    /// `init/error` or `exit/error` (see [`Phase`]). The process should now
    /// exit with a non-zero status.
    #[error("extension failed ({error_type}): {message} (reported with {phase}{})",
        if report_failed.is_some() { ", but the report failed" } else { "" })]
    Handler {
        /// Which endpoint the failure was reported to.
        phase: Phase,
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

/// A failure returned by an extension's handler.
///
/// Any `std::error::Error` converts into it with `?` (error type
/// `Extension.HandlerError`); [`HandlerError::new`] sets the reason. The SDK
/// reports it as `Lambda-Extension-Function-Error-Type: Extension.<Reason>`
/// and a JSON body `{"errorMessage","errorType"}`.
///
/// # Examples
/// ```
/// use lext_extension::HandlerError;
/// let e = HandlerError::new("ConfigMissing", "API_KEY is not set");
/// assert_eq!(e.error_type(), "Extension.ConfigMissing");
/// let parsed: Result<u32, HandlerError> = "x".parse::<u32>().map_err(Into::into);
/// assert_eq!(parsed.unwrap_err().error_type(), "Extension.HandlerError");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    error_type: String,
    message: String,
}

impl HandlerError {
    /// A failure with the given reason (made into `Extension.<Reason>`, with
    /// characters that are not valid in a header token removed) and message.
    pub fn new(reason: impl AsRef<str>, message: impl Into<String>) -> Self {
        Self {
            error_type: crate::request::error_type_header(reason.as_ref()),
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
