//! The blocking flavour: a `std::net` transport, the event loop, and a
//! threaded Telemetry API listener ([`TelemetrySubscription`]).
//!
//! This module owns the smallest, fastest-starting way to run an extension:
//! one thread, one keep-alive TCP connection to the Extensions API, no async
//! runtime. [`Builder::register`] returns a [`Registered`] extension; its
//! [`Registered::run`] loop calls the handler for every event and returns
//! after SHUTDOWN or on SIGTERM/SIGINT (the crate-private `signal` module
//! explains how a blocked long poll is interrupted).
//!
//! The transport only moves bytes: requests come from the crate-private
//! `request` module and responses are read by `http::ResponseReader`,
//! exactly as in the tokio flavour.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use lext_protocol::extensions::NextEvent;

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorEndpoint, HandlerError, Op};
use crate::extension::{Builder, Registration, RunEnd};
use crate::http::{is_stale, ApiRequest, ApiResponse, ReadStep, ResponseReader};
use crate::request::{self, ExtensionId};
use crate::signal::{self, ActiveSocket};
use crate::telemetry::TelemetryConfig;

mod telemetry;

pub use telemetry::TelemetrySubscription;

/// A blocking HTTP/1.1 client for one API endpoint, reusing one connection.
#[derive(Debug)]
pub(crate) struct BlockingTransport {
    endpoint: Endpoint,
    conn: Option<TcpStream>,
    write_buf: Vec<u8>,
    reader: ResponseReader,
    /// Whether a pending SIGTERM/SIGINT aborts calls (signals installed).
    signals: bool,
}

impl BlockingTransport {
    pub(crate) fn new(endpoint: Endpoint, signals: bool) -> Self {
        Self {
            endpoint,
            conn: None,
            write_buf: Vec::with_capacity(512),
            reader: ResponseReader::new(),
            signals,
        }
    }

    fn interrupted(&self, op: Op) -> Result<(), Error> {
        match self.signals.then(signal::pending).flatten() {
            Some(signal) => Err(Error::Interrupted { op, signal }),
            None => Ok(()),
        }
    }

    fn connect(&self, op: Op) -> Result<TcpStream, Error> {
        let mut last = None;
        for addr in self.endpoint.addrs() {
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    // Requests are written in one piece and answers are
                    // waited for: Nagle would only add latency.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some((*addr, e)),
            }
        }
        self.interrupted(op)?;
        match last {
            Some((addr, source)) => Err(Error::Connect { op, addr, source }),
            // Endpoint::parse guarantees at least one address.
            None => Err(Error::Protocol {
                op,
                reason: "no address to connect to".into(),
            }),
        }
    }

    /// Sends one request and reads its response. A keep-alive connection
    /// that the server closed while idle is replaced once, transparently.
    pub(crate) fn send(&mut self, op: Op, req: &ApiRequest) -> Result<ApiResponse, Error> {
        req.encode(
            self.endpoint.authority(),
            self.endpoint.base_path(),
            &mut self.write_buf,
        );
        self.send_encoded(op)
    }

    /// The request's bytes for this endpoint, for a request sent many times
    /// (the `/event/next` poll): encoded once, sent with [`Self::send_bytes`].
    pub(crate) fn encode(&self, req: &ApiRequest) -> Vec<u8> {
        let mut bytes = Vec::new();
        req.encode(
            self.endpoint.authority(),
            self.endpoint.base_path(),
            &mut bytes,
        );
        bytes
    }

    /// Sends bytes made by [`Self::encode`].
    pub(crate) fn send_bytes(&mut self, op: Op, bytes: &[u8]) -> Result<ApiResponse, Error> {
        self.write_buf.clear();
        self.write_buf.extend_from_slice(bytes);
        self.send_encoded(op)
    }

    /// Sends what is in `write_buf`.
    fn send_encoded(&mut self, op: Op) -> Result<ApiResponse, Error> {
        for attempt in 0..2 {
            self.interrupted(op)?;
            let reused = self.conn.is_some();
            let stream = match self.conn.take() {
                Some(s) => s,
                None => self.connect(op)?,
            };
            match self.exchange(op, &stream) {
                Ok(response) => {
                    if !response.close {
                        self.conn = Some(stream);
                    }
                    return Ok(response);
                }
                // The server closed an idle connection before reading the
                // request: nothing was processed, so a retry is safe.
                Err(Exchange::StaleConnection) if reused && attempt == 0 => {
                    tracing::debug!(%op, "keep-alive connection was closed; reconnecting");
                    continue;
                }
                Err(Exchange::StaleConnection) => {
                    self.interrupted(op)?;
                    return Err(Error::Protocol {
                        op,
                        reason: "connection closed before any response".into(),
                    });
                }
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Protocol {
            op,
            reason: "connection closed before any response".into(),
        })
    }

    fn exchange(&mut self, op: Op, mut stream: &TcpStream) -> Result<ApiResponse, Exchange> {
        // Publish the socket before checking for a signal, so a signal that
        // arrives from here on shuts it down (see the signal module).
        let _active = self
            .signals
            .then(|| ActiveSocket::publish(stream.as_raw_fd()));
        self.interrupted(op).map_err(Exchange::Failed)?;
        let io_err = |this: &Self, source: std::io::Error| {
            Exchange::Failed(match this.interrupted(op) {
                Err(e) => e,
                Ok(()) => Error::Io { op, source },
            })
        };
        let mut written = 0;
        while written < self.write_buf.len() {
            match stream.write(&self.write_buf[written..]) {
                Ok(0) => return Err(Exchange::StaleConnection),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    self.interrupted(op).map_err(Exchange::Failed)?;
                }
                Err(e) if written == 0 && is_stale(&e) => return Err(Exchange::StaleConnection),
                Err(e) => return Err(io_err(self, e)),
            }
        }
        self.reader.start();
        let mut chunk = [0u8; 4096];
        loop {
            // No read timeout: `/event/next` is a long poll, and the process
            // may be frozen by Lambda while it waits.
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    self.interrupted(op).map_err(Exchange::Failed)?;
                    continue;
                }
                Err(e) if self.reader.is_empty() && is_stale(&e) => {
                    self.interrupted(op).map_err(Exchange::Failed)?;
                    return Err(Exchange::StaleConnection);
                }
                Err(e) => return Err(io_err(self, e)),
            };
            if n == 0 {
                // EOF: a signal's shutdown(2) wins over what the reader
                // makes of the close.
                self.interrupted(op).map_err(Exchange::Failed)?;
            }
            match self.reader.feed(op, &chunk[..n]) {
                ReadStep::NeedMore => {}
                ReadStep::Done(response) => return Ok(response),
                ReadStep::Stale => return Err(Exchange::StaleConnection),
                ReadStep::Failed(e) => return Err(Exchange::Failed(e)),
            }
        }
    }
}

enum Exchange {
    StaleConnection,
    Failed(Error),
}

impl Builder {
    /// Registers with the Extensions API (blocking).
    ///
    /// # Errors
    /// [`Error::Env`] for a missing or malformed `AWS_LAMBDA_RUNTIME_API`,
    /// [`Error::Config`] for an unusable name, [`Error::Connect`]/[`Error::Io`]
    /// for network failures, [`Error::Api`] for a 403/500 answer,
    /// [`Error::Protocol`] for an answer that is not the protocol, and
    /// [`Error::Interrupted`] if SIGTERM/SIGINT arrived meanwhile.
    ///
    /// # Examples
    /// ```no_run
    /// use lext_extension::{Extension, EventType};
    /// let registered = Extension::builder()
    ///     .events([EventType::Invoke, EventType::Shutdown])
    ///     .register()?;
    /// println!("registered for {}", registered.response().function_name);
    /// # Ok::<(), lext_extension::Error>(())
    /// ```
    pub fn register(mut self) -> Result<Registered, Error> {
        let (name, endpoint, req) = self.register_request()?;
        if self.handle_signals {
            signal::install().map_err(|source| Error::Io {
                op: Op::Register,
                source,
            })?;
        }
        let mut transport = BlockingTransport::new(endpoint, self.handle_signals);
        let answer = transport.send(Op::Register, &req)?;
        Ok(Registered {
            registration: Registration::from_answer(name, self.events, &answer)?,
            transport,
        })
    }
}

/// An extension that has registered and is in Lambda's init phase.
///
/// From here, either report an init failure with [`Registered::init_error`]
/// or enter the event loop with [`Registered::run`]. Both consume the value:
/// once the loop has asked for the first event, `init/error` is no longer
/// the right endpoint, and the types make that mistake impossible.
///
/// It dereferences to its [`Registration`]: `id()`, `response()`, `name()`
/// and `events()` are that type's.
#[derive(Debug)]
pub struct Registered {
    transport: BlockingTransport,
    registration: Registration,
}

impl std::ops::Deref for Registered {
    type Target = Registration;

    fn deref(&self) -> &Registration {
        &self.registration
    }
}

impl Registered {
    /// Binds a telemetry listener (std threads), then subscribes to the
    /// Telemetry API with a `http://sandbox.localdomain:<port>` destination.
    /// Only possible here, in the init phase: [`Registered::run`] consumes
    /// the value.
    ///
    /// # Errors
    /// [`Error::Listener`] if the port cannot be bound (nothing is then
    /// subscribed), [`Error::Config`] if the subscription is invalid,
    /// [`Error::Api`] if Lambda refuses it.
    ///
    /// # Examples
    /// ```no_run
    /// use lext_extension::{Extension, TelemetryBatch, TelemetryConfig};
    /// let mut ext = Extension::builder().register()?;
    /// let telemetry = ext.subscribe_telemetry(TelemetryConfig::default())?;
    /// std::thread::spawn(move || {
    ///     while let Some(batch) = telemetry.recv() {
    ///         if let TelemetryBatch::Events { events, .. } = batch {
    ///             eprintln!("{} events", events.len());
    ///         }
    ///     }
    /// });
    /// ext.run(|_event| Ok(()))?;
    /// # Ok::<(), lext_extension::Error>(())
    /// ```
    pub fn subscribe_telemetry(
        &mut self,
        config: TelemetryConfig,
    ) -> Result<TelemetrySubscription, Error> {
        telemetry::subscribe(&mut self.transport, self.registration.id(), config)
    }

    /// Reports an init failure with `init/error` and returns the
    /// [`Error::Handler`] to exit with (non-zero).
    pub fn init_error(mut self, error: HandlerError) -> Error {
        report(
            &mut self.transport,
            self.registration.id(),
            ErrorEndpoint::InitError,
            error,
        )
    }

    /// Runs the event loop: waits for each event and calls `handler` with it.
    ///
    /// The handler has the same shape in both flavours: it takes the
    /// [`NextEvent`] by value and returns `Result<(), HandlerError>` (the
    /// tokio flavour's `AsyncRegistered::run`, feature `tokio`, returns a
    /// future of it), so a handler moves from one flavour to the other by
    /// adding `async`.
    ///
    /// Returns [`RunEnd::Shutdown`] after the SHUTDOWN event has been handled
    /// (the loop never polls again after it), and [`RunEnd::Signal`] when
    /// SIGTERM or SIGINT arrives, also while blocked waiting for an event.
    ///
    /// # Errors
    /// A handler error is reported with `exit/error` (the loop is past init)
    /// and returned as [`Error::Handler`]; API and network failures are
    /// returned as they are. Either way the process should exit non-zero.
    ///
    /// # Examples
    /// ```no_run
    /// use lext_extension::{Extension, NextEvent, RunEnd};
    /// let end = Extension::builder().register()?.run(|event| {
    ///     if let NextEvent::Invoke(invoke) = event {
    ///         eprintln!("invoke {}", invoke.request_id);
    ///     }
    ///     Ok(())
    /// })?;
    /// assert!(matches!(end, RunEnd::Shutdown(_) | RunEnd::Signal(_)));
    /// # Ok::<(), lext_extension::Error>(())
    /// ```
    pub fn run<F>(mut self, mut handler: F) -> Result<RunEnd, Error>
    where
        F: FnMut(NextEvent) -> Result<(), HandlerError>,
    {
        // The poll never changes: encode it once, not once per event.
        let next = self
            .transport
            .encode(&request::next_event(self.registration.id()));
        loop {
            let response = match self.transport.send_bytes(Op::Next, &next) {
                Ok(r) => r,
                Err(Error::Interrupted { signal, .. }) => {
                    tracing::debug!(signal = signal.name(), "signal ends the event loop");
                    return Ok(RunEnd::Signal(signal));
                }
                Err(e) => return Err(e),
            };
            let event = request::next_event_response(&response)?;
            tracing::debug!(event = %event.event_type(), "event received");
            // The handler owns the event (as in the tokio flavour); the
            // loop keeps what it needs to end after SHUTDOWN.
            let shutdown = match &event {
                NextEvent::Shutdown(shutdown) => Some(shutdown.clone()),
                NextEvent::Invoke(_) => None,
            };
            if let Err(error) = handler(event) {
                return Err(report(
                    &mut self.transport,
                    self.registration.id(),
                    ErrorEndpoint::ExitError,
                    error,
                ));
            }
            if let Some(shutdown) = shutdown {
                return Ok(RunEnd::Shutdown(shutdown));
            }
            if let Some(signal) = self.transport.signals.then(signal::pending).flatten() {
                return Ok(RunEnd::Signal(signal));
            }
        }
    }
}

/// Sends `init/error` or `exit/error` and builds the error to return.
fn report(
    transport: &mut BlockingTransport,
    id: &ExtensionId,
    endpoint: ErrorEndpoint,
    error: HandlerError,
) -> Error {
    let (op, req) = request::failure_report(id, endpoint, &error);
    // Report even if a signal is pending: the failure must reach Lambda.
    let signals = std::mem::replace(&mut transport.signals, false);
    let sent = transport.send(op, &req);
    transport.signals = signals;
    request::failure_reported(endpoint, &error, sent)
}
