//! Wire types and constants of the AWS Lambda execution-environment APIs.
//!
//! Everything an extension, a function runtime or a local sandbox sends or
//! receives over `AWS_LAMBDA_RUNTIME_API` is defined here once, as serde
//! types and constants, so that the SDK (`lext-extension`) and the sandbox
//! (`lext-sandbox`) agree on the wire without sharing any logic. The crate
//! does no I/O and has no async runtime.
//!
//! # Layout
//!
//! - [`extensions`]: the Extensions API (`/2020-01-01/extension`): register,
//!   `event/next` events (INVOKE, SHUTDOWN), `init/error` and `exit/error`.
//! - [`runtime`]: the Runtime API (`/2018-06-01/runtime`): invocation
//!   headers and error requests.
//! - [`telemetry`]: the Telemetry API (`/2022-07-01/telemetry`) and Logs API
//!   (`/2020-08-15/logs`): subscription requests with their validation, and
//!   the events delivered to subscribers, typed record by record.
//! - [`error`]: the JSON bodies of errors and acknowledgements, and every
//!   `errorType` string the APIs answer with.
//! - [`env`](mod@env): names of the environment variables Lambda sets.
//!
//! # Robustness
//!
//! Decoders never panic, whatever the input (a property test checks it).
//! Values that AWS may extend (shutdown reasons, statuses, telemetry event
//! types) are open: an unknown value is kept as it came, never an error.
//!
//! # Example
//!
//! ```
//! use lext_protocol::extensions::{NextEvent, ShutdownReason};
//!
//! let body = br#"{"eventType":"SHUTDOWN","deadlineMs":1654470414327,"shutdownReason":"spindown"}"#;
//! let event: NextEvent = serde_json::from_slice(body).unwrap();
//! match event {
//!     NextEvent::Shutdown(shutdown) => assert_eq!(shutdown.shutdown_reason, ShutdownReason::Spindown),
//!     NextEvent::Invoke(_) => unreachable!(),
//! }
//! ```

#[macro_use]
mod open_enum;

pub mod env;
pub mod error;
pub mod extensions;
pub mod runtime;
pub mod telemetry;

/// Value of `AWS_LAMBDA_RUNTIME_API` inside real Lambda.
pub const DEFAULT_RUNTIME_API: &str = "127.0.0.1:9001";

/// Largest request or response body (bytes) of a synchronous invoke:
/// `6 * 1024 * 1024 + 100`, rapid's `MaxPayloadSize`.
pub const MAX_PAYLOAD_SIZE: usize = 6 * 1024 * 1024 + 100;

/// The most extensions (internal and external together) one function may have.
pub const MAX_EXTENSIONS: usize = 10;
