//! The Telemetry API listener: bound before subscribing, one accept loop,
//! every batch delivered or reported.
//!
//! This module owns receiving telemetry. [`subscribe`] binds a TCP listener
//! (127.0.0.1 by default: `sandbox.localdomain` resolves to loopback inside
//! Lambda, and binding loopback keeps the port off other interfaces),
//! starts serving it, and only then sends the subscription with the URI
//! `http://sandbox.localdomain:<port>`, so events Lambda delivers right away
//! (the init replay) find a listener, and a port clash is an error returned
//! to the caller before anything is subscribed.
//!
//! Each POSTed batch is decoded into lext-protocol's typed events
//! (unknown event types are kept by the protocol's catch-all) and handed to
//! the extension through a bounded channel. The HTTP answer is always 200
//! once the batch is handed over, even when it could not be parsed: a
//! non-2xx answer makes Lambda redeliver the same batch again and again (the
//! official crate answers 400 here). An unparsable batch is not dropped
//! silently; it arrives as [`TelemetryBatch::Unparsed`] with the raw body.
//! The bounded channel gives backpressure: while the extension is not
//! reading, the answer waits, and Lambda's own buffering and drop reporting
//! (`platform.logsDropped`) take over, as AWS designed it.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ::tokio::net::TcpListener;
use ::tokio::sync::mpsc;
use ::tokio::task::{JoinHandle, JoinSet};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lext_protocol::telemetry::{
    decode_batch, BatchFailure, Buffering, LogType, SubscribeRequest, TelemetryEvent,
    DEFAULT_TELEMETRY_SCHEMA,
};

use super::transport::AsyncTransport;
use crate::error::{Error, Op};
use crate::request::{self, ExtensionId, SubscribeOutcome};

/// Largest batch body accepted: Lambda sends up to about twice `maxBytes`
/// (at most 1 MiB) plus envelope overhead; 8 MiB leaves a wide margin.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What to subscribe to and where to listen.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    types: Vec<LogType>,
    buffering: Option<Buffering>,
    schema_version: String,
    bind: IpAddr,
    port: u16,
    capacity: usize,
}

impl Default for TelemetryConfig {
    /// `platform` and `function` events, Lambda's default buffering, the
    /// newest schema version, 127.0.0.1 on an ephemeral port (the URI sent
    /// carries whatever port was bound), room for 64 undelivered batches.
    fn default() -> Self {
        Self {
            types: vec![LogType::Platform, LogType::Function],
            buffering: None,
            schema_version: DEFAULT_TELEMETRY_SCHEMA.to_owned(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            capacity: 64,
        }
    }
}

impl TelemetryConfig {
    /// The event types to receive (`platform`, `function`, `extension`).
    pub fn types(mut self, types: impl IntoIterator<Item = LogType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// Batching limits (validated against Lambda's ranges at subscribe).
    pub fn buffering(mut self, buffering: Buffering) -> Self {
        self.buffering = Some(buffering);
        self
    }

    /// The `schemaVersion` to subscribe with.
    pub fn schema_version(mut self, version: impl Into<String>) -> Self {
        self.schema_version = version.into();
        self
    }

    /// The address to bind (default 127.0.0.1). Use `0.0.0.0` only where the
    /// platform delivers from outside loopback (SAM local).
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.bind = ip;
        self
    }

    /// The port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How many batches may wait for the extension before the listener
    /// holds its answers back (at least 1).
    pub fn capacity(mut self, batches: usize) -> Self {
        self.capacity = batches.max(1);
        self
    }
}

/// One POSTed batch, as the extension receives it.
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryBatch {
    /// A JSON array of events. Elements that did not decode are listed in
    /// `failures` with their raw JSON; the others are in `events`.
    Events {
        /// The decoded events, in order.
        events: Vec<TelemetryEvent>,
        /// Elements that did not decode.
        failures: Vec<BatchFailure>,
    },
    /// A body that is not a JSON array (or could not be read). It was
    /// answered with 200 so that Lambda does not redeliver it forever.
    Unparsed {
        /// Why it could not be parsed.
        error: String,
        /// The raw body (empty if it could not be read).
        body: Vec<u8>,
    },
}

/// A live subscription: the listener and the receiving end of its batches.
///
/// Keep it until the extension has drained the final batches after
/// SHUTDOWN; dropping it stops the listener.
#[derive(Debug)]
pub struct TelemetrySubscription {
    receiver: mpsc::Receiver<TelemetryBatch>,
    local_addr: SocketAddr,
    uri: String,
    outcome: SubscribeOutcome,
    task: AbortOnDrop,
}

impl TelemetrySubscription {
    /// The next batch, or `None` once the listener has stopped.
    pub async fn recv(&mut self) -> Option<TelemetryBatch> {
        self.receiver.recv().await
    }

    /// A batch if one is waiting.
    pub fn try_recv(&mut self) -> Option<TelemetryBatch> {
        self.receiver.try_recv().ok()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The destination URI sent to Lambda (`http://sandbox.localdomain:<port>`).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether Lambda will deliver ([`SubscribeOutcome::Subscribed`]) or is a
    /// local emulator without telemetry ([`SubscribeOutcome::NotSupported`]).
    pub fn outcome(&self) -> &SubscribeOutcome {
        &self.outcome
    }

    /// Stops the listener; batches already received stay readable.
    pub fn stop(&mut self) {
        self.task.0.abort();
    }
}

/// Aborts the accept loop (and, through its JoinSet, every connection) when
/// dropped, so no background task outlives the subscription.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds, starts serving, then subscribes. See the module documentation.
pub(crate) async fn subscribe(
    transport: &mut AsyncTransport,
    id: &ExtensionId,
    config: TelemetryConfig,
) -> Result<TelemetrySubscription, Error> {
    let wanted = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(wanted)
        .await
        .map_err(|source| Error::Listener {
            addr: wanted.to_string(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Listener {
        addr: wanted.to_string(),
        source,
    })?;
    let mut body = SubscribeRequest::http(config.types, local_addr.port());
    body.schema_version = Some(config.schema_version);
    body.buffering = config.buffering;
    let uri = body.destination.uri.clone().unwrap_or_default();
    let req = request::subscribe_telemetry(id, &body)?;

    let (tx, receiver) = mpsc::channel(config.capacity);
    let task = AbortOnDrop(::tokio::spawn(accept_loop(listener, tx)));
    tracing::debug!(%local_addr, %uri, "telemetry listener started; subscribing");
    // On any error below, `task` is dropped and the listener stops.
    let response = transport.send(Op::SubscribeTelemetry, &req).await?;
    let outcome = request::subscribed(&response)?;
    if let SubscribeOutcome::NotSupported(message) = &outcome {
        tracing::warn!(%message, "the Telemetry API is not supported here (local emulator)");
    }
    Ok(TelemetrySubscription {
        receiver,
        local_addr,
        uri,
        outcome,
        task,
    })
}

/// Accepts connections until aborted; each is served by hyper's HTTP/1.1
/// server in a task owned by the JoinSet.
async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<TelemetryBatch>) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends are transient: back off, keep serving.
                tracing::warn!(error = %e, "telemetry listener: accept failed");
                ::tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let tx = tx.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(req, tx.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "telemetry connection ended with an error");
            }
        });
    }
}

/// One delivery: read, decode, hand over, answer 200.
async fn handle(
    req: Request<Incoming>,
    tx: mpsc::Sender<TelemetryBatch>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let batch = match Limited::new(req.into_body(), MAX_BATCH_BYTES)
        .collect()
        .await
    {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            match decode_batch(&bytes) {
                Ok(decoded) => {
                    if !decoded.failures.is_empty() {
                        tracing::warn!(
                            failed = decoded.failures.len(),
                            "telemetry batch: some events did not decode"
                        );
                    }
                    TelemetryBatch::Events {
                        events: decoded.events,
                        failures: decoded.failures,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry batch is not a JSON array; reporting it");
                    TelemetryBatch::Unparsed {
                        error: e.to_string(),
                        body: bytes.to_vec(),
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "telemetry batch could not be read; reporting it");
            TelemetryBatch::Unparsed {
                error: format!("body could not be read: {e}"),
                body: Vec::new(),
            }
        }
    };
    if tx.send(batch).await.is_err() {
        tracing::warn!("telemetry batch dropped: the subscription's receiver is gone");
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"OK"))))
}
