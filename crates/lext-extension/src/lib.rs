//! Write AWS Lambda extensions in Rust: typed Extensions API and Telemetry
//! API, a blocking flavour for the smallest and fastest binaries, and a tokio
//! flavour for extensions that do async work.
//!
//! ```no_run
//! use lext_extension::{Extension, NextEvent, RunEnd};
//!
//! fn main() -> Result<(), lext_extension::Error> {
//!     let registered = Extension::builder().register()?;
//!     match registered.run(|event| {
//!         if let NextEvent::Invoke(invoke) = event {
//!             eprintln!("invoke {}", invoke.request_id);
//!         }
//!         Ok(())
//!     })? {
//!         RunEnd::Shutdown(shutdown) => eprintln!("shutdown: {}", shutdown.shutdown_reason),
//!         RunEnd::Signal(signal) => eprintln!("stopped by {}", signal.name()),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Lifecycle, enforced by types
//!
//! [`Extension::builder`] → [`Builder::register`] → [`Registered`]: the init
//! phase, where a failure is reported with [`Registered::init_error`] and
//! where, and only where, the Telemetry API can be subscribed to
//! ([`Registered::subscribe_telemetry`]) →
//! [`Registered::run`]: the event loop. The loop returns after the SHUTDOWN
//! event (it never polls again) or on SIGTERM/SIGINT; a handler error inside
//! it is reported with `exit/error`. Every API answer other than 2xx is an
//! [`Error`]; `init/error` and `exit/error` succeed with Lambda's 202.
//!
//! # Layout
//!
//! - [`extension`]: [`Extension::builder`] and the settings shared by both flavours.
//! - [`blocking`]: the `std::net` transport, the blocking event loop, and a
//!   threaded Telemetry API listener.
//! - `tokio` (feature `tokio`): the async transport, event loop and the
//!   Telemetry API listener (current-thread runtime by default, feature
//!   `multi-thread` for more).
//! - [`request`]: pure builders of every request and interpreters of every answer.
//! - [`http`]: the sans-I/O HTTP/1.1 codec both transports share.
//! - [`endpoint`]: `AWS_LAMBDA_RUNTIME_API`, parsed without panics.
//! - [`signal`]: SIGTERM/SIGINT for the blocking flavour, without a thread.
//! - [`telemetry`]: Telemetry API subscription settings and batches, shared
//!   by both flavours' listeners.
//! - [`error`]: [`Error`] and [`HandlerError`].
//!
//! Wire types come from [`lext_protocol`] and are re-exported where the API
//! uses them. The library logs with `tracing` and never prints.

pub mod blocking;
pub mod endpoint;
pub mod error;
pub mod extension;
pub mod http;
pub mod request;
pub mod signal;
pub mod telemetry;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use blocking::{Registered, RunEnd};
pub use endpoint::Endpoint;
pub use error::{Error, HandlerError, Op, Phase};
pub use extension::{Builder, Extension};
pub use lext_protocol;
pub use lext_protocol::extensions::{
    EventType, InvokeEvent, NextEvent, RegisterResponse, ShutdownEvent, ShutdownReason, Tracing,
};
pub use request::{error_type_header, ExtensionId, SubscribeOutcome};
pub use signal::Signal;
pub use telemetry::{TelemetryBatch, TelemetryConfig};
