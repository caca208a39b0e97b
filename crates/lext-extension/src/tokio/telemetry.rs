//! The tokio Telemetry API listener: the crate's own HTTP/1.1 request
//! parser (the blocking listener's) over tokio sockets, one task per
//! connection.
//!
//! This module owns serving deliveries in the async flavour; the rules it
//! follows (bind before subscribing, 200 for every batch, unparsable batches
//! reported, bounded hand-over) are listed on [`TelemetryConfig`]. A
//! delivery is one small HTTP/1.1 exchange, the same in both flavours, so
//! both serve it with `http::parse_request` and the same answers: a general
//! HTTP server (hyper, as before) cost this flavour a third of its binary
//! for nothing Lambda's deliveries need.

use std::net::SocketAddr;
use std::time::Instant;

use lext_protocol::extensions::ShutdownEvent;

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::{TcpListener, TcpStream};
use ::tokio::sync::mpsc;
use ::tokio::task::{JoinHandle, JoinSet};

use super::transport::AsyncTransport;
use crate::error::{Error, Op};
use crate::http::take_request;
use crate::request::{ExtensionId, SubscribeOutcome};
use crate::telemetry::{
    answer, gave_up, give_up_at, listener_error, make_room, subscribed, to_batch, ReportWatch,
    TelemetryBatch, TelemetryConfig, ANSWER_AND_CLOSE, IDLE, MAX_BATCH_BYTES, REPORT_WAIT_MARGIN,
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

/// Accepts connections until aborted; each is served in a task owned by the
/// JoinSet (Lambda keeps one delivery in flight per subscriber, so there is
/// usually one).
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
        connections.spawn(serve(stream, tx.clone()));
    }
}

/// Serves one connection, as the blocking listener does: each request's
/// body becomes a batch, answered with 200 once handed over; a connection
/// idle for [`IDLE`] is closed.
async fn serve(mut stream: TcpStream, tx: mpsc::Sender<TelemetryBatch>) {
    let mut buf = Vec::new();
    loop {
        match take_request(&mut buf, MAX_BATCH_BYTES) {
            Ok(Some(req)) => {
                tracing::trace!(method = %req.method, path = %req.path, bytes = req.body.len(), "telemetry delivery");
                // Waits while the channel is full: the answer is held back,
                // and Lambda's own buffering takes over.
                if tx.send(to_batch(Ok(req.body))).await.is_err() {
                    tracing::warn!("telemetry batch dropped: the subscription's receiver is gone");
                }
                if stream.write_all(answer(req.close)).await.is_err() || req.close {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                // Not HTTP, or a body over the limit: report it, answer 200
                // (no redelivery loop) and close, since the stream cannot be
                // resynchronised.
                let _ = tx
                    .send(to_batch(Err(format!("delivery could not be parsed: {e}"))))
                    .await;
                let _ = stream.write_all(ANSWER_AND_CLOSE).await;
                return;
            }
        }
        // Straight into the buffer's spare room.
        make_room(&mut buf);
        let read = ::tokio::time::timeout(IDLE, stream.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => {
                if !buf.is_empty() {
                    let _ = tx
                        .send(to_batch(Err(format!(
                            "delivery cut short after {} bytes: {e}",
                            buf.len()
                        ))))
                        .await;
                }
                return;
            }
            // Idle: close, as the blocking listener does.
            Err(_elapsed) => return,
        }
    }
}
