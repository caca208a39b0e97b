//! The tokio Telemetry API listener: hyper's HTTP/1.1 server on one bound
//! listener, with our accept loop.
//!
//! This module owns serving deliveries in the async flavour; the rules it
//! follows (bind before subscribing, 200 for every batch, unparsable batches
//! reported, bounded hand-over) are listed on [`TelemetryConfig`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use lext_protocol::extensions::ShutdownEvent;

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

use super::transport::AsyncTransport;
use crate::error::{Error, Op};
use crate::request::{ExtensionId, SubscribeOutcome};
use crate::telemetry::{
    gave_up, give_up_at, listener_error, subscribed, to_batch, ReportWatch, TelemetryBatch,
    TelemetryConfig, MAX_BATCH_BYTES, REPORT_WAIT_MARGIN,
};

/// A live subscription: the listener and the receiving end of its batches.
///
/// Keep it until the extension has drained the final batches after
/// SHUTDOWN; dropping it stops the listener.
#[derive(Debug)]
pub struct TelemetrySubscription {
    receiver: mpsc::Receiver<TelemetryBatch>,
    /// The last `platform.report` handed out.
    reports: ReportWatch,
    local_addr: SocketAddr,
    uri: String,
    outcome: SubscribeOutcome,
    task: AbortOnDrop,
}

impl TelemetrySubscription {
    /// The next batch, or `None` once the listener has stopped.
    pub async fn recv(&mut self) -> Option<TelemetryBatch> {
        let batch = self.receiver.recv().await;
        self.seen(batch)
    }

    /// A batch if one is waiting.
    pub fn try_recv(&mut self) -> Option<TelemetryBatch> {
        let batch = self.receiver.try_recv().ok();
        self.seen(batch)
    }

    /// Notes the batch's last `platform.report` on its way out.
    fn seen(&mut self, batch: Option<TelemetryBatch>) -> Option<TelemetryBatch> {
        if let Some(batch) = &batch {
            self.reports.saw(batch);
        }
        batch
    }

    /// The request id of the last `platform.report` received through this
    /// subscription.
    pub fn last_report(&self) -> Option<&str> {
        self.reports.last()
    }

    /// After SHUTDOWN: hands every batch to `on_batch` until the
    /// `platform.report` of `request_id` has been received, or until
    /// [`REPORT_WAIT_MARGIN`](crate::REPORT_WAIT_MARGIN) before the SHUTDOWN
    /// deadline; returns whether it arrived, and logs a warning when it did
    /// not. The blocking flavour's
    /// [`wait_for_report`](crate::blocking::TelemetrySubscription::wait_for_report)
    /// made async: same rules, same arguments.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), lext_extension::Error> {
    /// use lext_extension::tokio::TelemetryConfig;
    /// use lext_extension::{Extension, NextEvent, RunEnd};
    /// let mut ext = Extension::builder().register_async().await?;
    /// let mut telemetry = ext.subscribe_telemetry(TelemetryConfig::default()).await?;
    /// let mut last_invoke = None;
    /// let end = ext
    ///     .run(|event| {
    ///         if let NextEvent::Invoke(invoke) = event {
    ///             last_invoke = Some(invoke.request_id);
    ///         }
    ///         async { Ok(()) }
    ///     })
    ///     .await?;
    /// if let (RunEnd::Shutdown(shutdown), Some(id)) = (end, last_invoke) {
    ///     telemetry
    ///         .wait_for_report(&id, &shutdown, |batch| eprintln!("{batch:?}"))
    ///         .await;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_report(
        &mut self,
        request_id: &str,
        shutdown: &ShutdownEvent,
        on_batch: impl FnMut(TelemetryBatch),
    ) -> bool {
        let give_up = give_up_at(shutdown, REPORT_WAIT_MARGIN);
        self.wait_for_report_until(request_id, give_up, on_batch)
            .await
    }

    /// [`TelemetrySubscription::wait_for_report`] with a deadline of your
    /// own: gives up at `give_up`.
    pub async fn wait_for_report_until(
        &mut self,
        request_id: &str,
        give_up: Instant,
        mut on_batch: impl FnMut(TelemetryBatch),
    ) -> bool {
        if !matches!(self.outcome, SubscribeOutcome::Subscribed) {
            return gave_up(request_id, "(this platform has no Telemetry API)");
        }
        let give_up = ::tokio::time::Instant::from_std(give_up);
        while !self.reports.has(request_id) {
            match ::tokio::time::timeout_at(give_up, self.receiver.recv()).await {
                Ok(Some(batch)) => {
                    self.reports.saw(&batch);
                    on_batch(batch);
                }
                Ok(None) => return gave_up(request_id, "before the listener stopped"),
                Err(_elapsed) => return gave_up(request_id, "before the shutdown deadline"),
            }
        }
        true
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
    let listener_error = listener_error(config.bind_addr());
    let listener = TcpListener::bind(config.bind_addr())
        .await
        .map_err(&listener_error)?;
    let local_addr = listener.local_addr().map_err(&listener_error)?;
    let (req, uri) = config.subscription(id, local_addr.port())?;

    let (tx, receiver) = mpsc::channel(config.capacity);
    let task = AbortOnDrop(::tokio::spawn(accept_loop(listener, tx)));
    tracing::debug!(%local_addr, %uri, "telemetry listener started; subscribing");
    // On any error below, `task` is dropped and the listener stops.
    let response = transport.send(Op::SubscribeTelemetry, &req).await?;
    let outcome = subscribed(&response)?;
    Ok(TelemetrySubscription {
        receiver,
        reports: ReportWatch::default(),
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
    let body = match Limited::new(req.into_body(), MAX_BATCH_BYTES)
        .collect()
        .await
    {
        // Into the Vec without a copy where the buffer allows it.
        Ok(collected) => Ok(Vec::from(collected.to_bytes())),
        Err(e) => Err(format!("body could not be read: {e}")),
    };
    let batch = to_batch(body);
    if tx.send(batch).await.is_err() {
        tracing::warn!("telemetry batch dropped: the subscription's receiver is gone");
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"OK"))))
}
