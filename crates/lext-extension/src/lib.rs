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
//! The public paths are the crate root, [`blocking`] and `tokio`; the other
//! modules are private and their public items are re-exported here.
//!
//! - `extension`: [`Extension::builder`] and the [`Builder`] settings,
//!   [`Registration`] (what both flavours' registered handles dereference
//!   to: id, register response, name, events) and [`RunEnd`] (why a loop
//!   returned), shared by both flavours.
//! - [`blocking`]: the `std::net` transport, [`Registered`] and its event
//!   loop, and a threaded Telemetry API listener
//!   ([`blocking::TelemetrySubscription`]).
//! - `tokio` (feature `tokio`): the async transport, `AsyncRegistered` and
//!   its event loop, and the Telemetry API listener on tokio tasks
//!   (current-thread runtime by default, feature `multi-thread` for more).
//! - `telemetry`: [`TelemetryConfig`] and [`TelemetryBatch`], shared by both
//!   flavours' listeners, and the rules of waiting for the last
//!   `platform.report` after SHUTDOWN ([`REPORT_WAIT_MARGIN`]).
//! - `request`: pure builders of every request and interpreters of every
//!   answer; owns [`ExtensionId`] and [`SubscribeOutcome`].
//! - `http`: the sans-I/O HTTP/1.1 codec both transports share.
//! - `endpoint`: [`Endpoint`], `AWS_LAMBDA_RUNTIME_API` parsed without panics.
//! - `signal`: [`Signal`], and SIGTERM/SIGINT for the blocking flavour
//!   without a thread.
//! - `error`: [`Error`], [`Op`], [`HandlerError`], [`ErrorEndpoint`] and
//!   [`error_type_header`].
//!
//! Imports between these modules form no cycle: `error` depends only on
//! `signal`; `endpoint` and `http` on `error`; `request` on those two;
//! `telemetry` and `extension` on `request` and below; the flavours on all
//! of them and never on each other.
//!
//! Wire types come from [`lext_protocol`] and are re-exported where the API
//! uses them (the telemetry ones, [`Record`], [`LogType`] and their
//! neighbours, included). The library logs with `tracing` and never prints.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
mod endpoint;
mod error;
mod extension;
mod http;
mod request;
mod signal;
mod telemetry;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

pub use blocking::Registered;
pub use endpoint::Endpoint;
pub use error::{error_type_header, Error, ErrorEndpoint, HandlerError, Op};
pub use extension::{default_name, Builder, Extension, Registration, RunEnd};
pub use lext_protocol;
pub use lext_protocol::extensions::{
    EventType, InvokeEvent, NextEvent, RegisterResponse, ShutdownEvent, ShutdownReason, Tracing,
};
pub use lext_protocol::telemetry::{
    BatchFailure, Buffering, LogRecord, LogType, Record, TelemetryEvent,
};
pub use request::{ExtensionId, SubscribeOutcome};
pub use signal::Signal;
pub use telemetry::{TelemetryBatch, TelemetryConfig, REPORT_WAIT_MARGIN};
