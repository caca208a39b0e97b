//! The tokio flavour: async event loop and the Telemetry API listener.
//!
//! This module owns the async lifecycle: [`Builder::register_async`] returns
//! an [`AsyncRegistered`] extension, the init phase, where
//! [`AsyncRegistered::subscribe_telemetry`] is available (Lambda accepts
//! subscriptions only during init, so the method disappears once
//! [`AsyncRegistered::run`] consumes the value). The loop ends after the
//! SHUTDOWN event or on SIGTERM/SIGINT (through `tokio::signal`), exactly as
//! the blocking loop does, and reports handler failures with `exit/error`.
//!
//! Runtimes: [`runtime`] builds the current-thread runtime an extension
//! needs (one thread, the smallest footprint); the `multi-thread` feature
//! adds `multi_thread_runtime` for extensions with CPU-heavy work.

mod telemetry;
mod transport;

use std::future::Future;

use ::tokio::signal::unix::{signal, SignalKind};
use lext_protocol::extensions::NextEvent;

use crate::error::{Error, ErrorEndpoint, HandlerError, Op};
use crate::extension::{Builder, Registration, RunEnd};
use crate::request::{self, ExtensionId};
use crate::signal::Signal;

pub use crate::telemetry::{TelemetryBatch, TelemetryConfig};
pub use telemetry::TelemetrySubscription;
use transport::AsyncTransport;

/// A current-thread tokio runtime with I/O and timers, the default for
/// extensions.
///
/// # Errors
/// The OS error if the runtime's I/O driver cannot be created.
///
/// # Examples
/// ```no_run
/// use lext_extension::Extension;
/// let rt = lext_extension::tokio::runtime()?;
/// rt.block_on(async {
///     let ext = Extension::builder().register_async().await?;
///     ext.run(|_event| async { Ok(()) }).await?;
///     Ok::<(), lext_extension::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn runtime() -> std::io::Result<::tokio::runtime::Runtime> {
    ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A multi-thread tokio runtime (feature `multi-thread`).
///
/// # Errors
/// The OS error if the runtime cannot be created.
#[cfg(feature = "multi-thread")]
#[cfg_attr(docsrs, doc(cfg(feature = "multi-thread")))]
pub fn multi_thread_runtime() -> std::io::Result<::tokio::runtime::Runtime> {
    ::tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

impl Builder {
    /// Registers with the Extensions API (async). Same errors as
    /// [`Builder::register`], except that signals are watched only while
    /// [`AsyncRegistered::run`] waits for events.
    ///
    /// # Errors
    /// See [`Builder::register`].
    pub async fn register_async(mut self) -> Result<AsyncRegistered, Error> {
        let (name, endpoint, req) = self.register_request()?;
        let mut transport = AsyncTransport::new(endpoint);
        let answer = transport.send(Op::Register, &req).await?;
        Ok(AsyncRegistered {
            registration: Registration::from_answer(name, self.events, &answer)?,
            transport,
            handle_signals: self.handle_signals,
        })
    }
}

/// An extension registered through the tokio flavour, in the init phase.
///
/// It dereferences to its [`Registration`], as the blocking
/// [`Registered`](crate::Registered) does: `id()`, `response()`, `name()`
/// and `events()` are that type's.
#[derive(Debug)]
pub struct AsyncRegistered {
    transport: AsyncTransport,
    registration: Registration,
    handle_signals: bool,
}

impl std::ops::Deref for AsyncRegistered {
    type Target = Registration;

    fn deref(&self) -> &Registration {
        &self.registration
    }
}

impl AsyncRegistered {
    /// Binds the telemetry listener, then subscribes to the Telemetry API
    /// with a `http://sandbox.localdomain:<port>` destination. Batches arrive
    /// on the returned subscription's receiver.
    ///
    /// Binding comes first, so a port already in use is an
    /// [`Error::Listener`] returned here (and nothing is subscribed), not a
    /// panic in a background task.
    ///
    /// # Errors
    /// [`Error::Listener`] if the port cannot be bound, [`Error::Config`] if
    /// the subscription is invalid, [`Error::Api`] if Lambda refuses it.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), lext_extension::Error> {
    /// use lext_extension::tokio::{TelemetryBatch, TelemetryConfig};
    /// use lext_extension::Extension;
    /// let mut ext = Extension::builder().register_async().await?;
    /// let mut telemetry = ext.subscribe_telemetry(TelemetryConfig::default()).await?;
    /// tokio::spawn(async move {
    ///     while let Some(batch) = telemetry.recv().await {
    ///         if let TelemetryBatch::Events { events, .. } = batch {
    ///             eprintln!("{} events", events.len());
    ///         }
    ///     }
    /// });
    /// ext.run(|_event| async { Ok(()) }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_telemetry(
        &mut self,
        config: TelemetryConfig,
    ) -> Result<TelemetrySubscription, Error> {
        telemetry::subscribe(&mut self.transport, self.registration.id(), config).await
    }

    /// Reports an init failure with `init/error` and returns the
    /// [`Error::Handler`] to exit with.
    pub async fn init_error(mut self, error: HandlerError) -> Error {
        report(
            &mut self.transport,
            self.registration.id(),
            ErrorEndpoint::InitError,
            error,
        )
        .await
    }

    /// Runs the event loop; see [`crate::Registered::run`] for when it
    /// returns and what it reports.
    /// The handler is the blocking flavour's made async: it takes the
    /// [`NextEvent`] by value and its future returns
    /// `Result<(), HandlerError>`. SIGTERM/SIGINT are watched while waiting
    /// for an event, and a signal that arrives during the handler ends the
    /// loop after it returns.
    ///
    /// # Errors
    /// As [`crate::Registered::run`].
    pub async fn run<F, Fut>(mut self, mut handler: F) -> Result<RunEnd, Error>
    where
        F: FnMut(NextEvent) -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let mut signals = if self.handle_signals {
            let io = |source| Error::Io {
                op: Op::Next,
                source,
            };
            Some((
                signal(SignalKind::terminate()).map_err(io)?,
                signal(SignalKind::interrupt()).map_err(io)?,
            ))
        } else {
            None
        };
        let next = request::next_event(self.registration.id());
        loop {
            let response = match signals.as_mut() {
                Some((term, int)) => {
                    ::tokio::select! {
                        biased;
                        _ = term.recv() => return Ok(RunEnd::Signal(Signal::Term)),
                        _ = int.recv() => return Ok(RunEnd::Signal(Signal::Int)),
                        r = self.transport.send(Op::Next, &next) => r?,
                    }
                }
                None => self.transport.send(Op::Next, &next).await?,
            };
            let event = request::next_event_response(&response)?;
            tracing::debug!(event = %event.event_type(), "event received");
            let shutdown = match &event {
                NextEvent::Shutdown(s) => Some(s.clone()),
                NextEvent::Invoke(_) => None,
            };
            if let Err(error) = handler(event).await {
                return Err(report(
                    &mut self.transport,
                    self.registration.id(),
                    ErrorEndpoint::ExitError,
                    error,
                )
                .await);
            }
            if let Some(shutdown) = shutdown {
                return Ok(RunEnd::Shutdown(shutdown));
            }
        }
    }
}

/// Sends `init/error` or `exit/error` and builds the error to return.
async fn report(
    transport: &mut AsyncTransport,
    id: &ExtensionId,
    endpoint: ErrorEndpoint,
    error: HandlerError,
) -> Error {
    let (op, req) = request::failure_report(id, endpoint, &error);
    let sent = transport.send(op, &req).await;
    request::failure_reported(endpoint, &error, sent)
}
