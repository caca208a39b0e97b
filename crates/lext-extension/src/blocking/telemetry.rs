//! The blocking Telemetry API listener: std threads, no async runtime.
//!
//! This module owns serving deliveries in the blocking flavour, for
//! extensions that forward telemetry and want the small footprint of
//! `std::net`. It follows the rules listed on [`TelemetryConfig`]: bind
//! before subscribing, 200 for every batch, unparsable batches reported, and
//! a bounded hand-over (`sync_channel`) for backpressure.
//!
//! Threads: one accept thread, plus one thread per connection (Lambda keeps
//! one delivery in flight per subscriber, so there is usually one). A
//! connection that stays idle for [`IDLE`] is closed. Dropping the
//! [`TelemetrySubscription`] stops the accept thread (woken by a connection
//! to itself); connection threads end with their connections.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lext_protocol::extensions::ShutdownEvent;

use super::BlockingTransport;
use crate::error::{Error, Op};
use crate::http::take_request;
use crate::request::{ExtensionId, SubscribeOutcome};
use crate::telemetry::{
    answer, gave_up, give_up_at, listener_error, make_room, subscribed, to_batch, ReportWatch,
    TelemetryBatch, TelemetryConfig, ANSWER_AND_CLOSE, IDLE, MAX_BATCH_BYTES, REPORT_WAIT_MARGIN,
};

/// A live subscription in the blocking flavour: the listener threads and
/// the receiving end of their batches. Keep it until the final batches have
/// been drained after SHUTDOWN; dropping it stops the listener.
///
/// The listener runs one accept thread plus one thread per delivery
/// connection (Lambda keeps one delivery in flight per subscriber); a
/// connection idle for 60 seconds is closed.
#[derive(Debug)]
pub struct TelemetrySubscription {
    receiver: Receiver<TelemetryBatch>,
    /// The last `platform.report` handed out. A `RefCell` because the
    /// receiving methods take `&self`; the subscription is not `Sync`
    /// anyway (its `Receiver` is not).
    reports: RefCell<ReportWatch>,
    local_addr: SocketAddr,
    uri: String,
    outcome: SubscribeOutcome,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TelemetrySubscription {
    /// Waits for the next batch; `None` once the listener has stopped and
    /// every batch has been read.
    pub fn recv(&self) -> Option<TelemetryBatch> {
        self.receiver.recv().ok().map(|b| self.seen(b))
    }

    /// Waits at most `timeout` for a batch.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<TelemetryBatch> {
        self.receiver
            .recv_timeout(timeout)
            .ok()
            .map(|b| self.seen(b))
    }

    /// A batch if one is waiting.
    pub fn try_recv(&self) -> Option<TelemetryBatch> {
        self.receiver.try_recv().ok().map(|b| self.seen(b))
    }

    /// Notes the batch's last `platform.report` on its way out.
    fn seen(&self, batch: TelemetryBatch) -> TelemetryBatch {
        self.reports.borrow_mut().saw(&batch);
        batch
    }

    /// The request id of the last `platform.report` received through this
    /// subscription (by any of its methods).
    pub fn last_report(&self) -> Option<String> {
        self.reports.borrow().last().map(str::to_owned)
    }

    /// After SHUTDOWN: hands every batch to `on_batch` until the
    /// `platform.report` of `request_id` (the last INVOKE's) has been
    /// received, or until [`REPORT_WAIT_MARGIN`] before the SHUTDOWN
    /// deadline. Returns whether the report arrived; at the deadline, logs
    /// a warning and returns `false`. A report received before the call
    /// counts: it then returns `true` at once.
    ///
    /// Lambda may deliver the last invoke's report after SHUTDOWN, so a
    /// telemetry extension that stops at SHUTDOWN loses it; one that waits
    /// without a bound is SIGKILLed at the deadline.
    ///
    /// # Examples
    /// ```no_run
    /// use lext_extension::{Extension, NextEvent, RunEnd, TelemetryConfig};
    /// let mut ext = Extension::builder().register()?;
    /// let telemetry = ext.subscribe_telemetry(TelemetryConfig::default())?;
    /// let mut last_invoke = None;
    /// let end = ext.run(|event| {
    ///     if let NextEvent::Invoke(invoke) = event {
    ///         last_invoke = Some(invoke.request_id);
    ///     }
    ///     while let Some(batch) = telemetry.try_recv() {
    ///         eprintln!("{batch:?}");
    ///     }
    ///     Ok(())
    /// })?;
    /// if let (RunEnd::Shutdown(shutdown), Some(id)) = (end, last_invoke) {
    ///     telemetry.wait_for_report(&id, &shutdown, |batch| eprintln!("{batch:?}"));
    /// }
    /// # Ok::<(), lext_extension::Error>(())
    /// ```
    pub fn wait_for_report(
        &self,
        request_id: &str,
        shutdown: &ShutdownEvent,
        on_batch: impl FnMut(TelemetryBatch),
    ) -> bool {
        let give_up = give_up_at(shutdown, REPORT_WAIT_MARGIN);
        self.wait_for_report_until(request_id, give_up, on_batch)
    }

    /// [`TelemetrySubscription::wait_for_report`] with a deadline of your
    /// own: gives up at `give_up`.
    pub fn wait_for_report_until(
        &self,
        request_id: &str,
        give_up: Instant,
        mut on_batch: impl FnMut(TelemetryBatch),
    ) -> bool {
        if !matches!(self.outcome, SubscribeOutcome::Subscribed) {
            return gave_up(request_id, "(this platform has no Telemetry API)");
        }
        while !self.reports.borrow().has(request_id) {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return gave_up(request_id, "before the shutdown deadline");
            }
            match self.receiver.recv_timeout(left) {
                Ok(batch) => on_batch(self.seen(batch)),
                // The next turn gives up.
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return gave_up(request_id, "before the listener stopped");
                }
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

    /// Whether Lambda will deliver, or is a local emulator without telemetry.
    pub fn outcome(&self) -> &SubscribeOutcome {
        &self.outcome
    }

    /// Stops accepting deliveries; batches already received stay readable.
    pub fn stop(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the blocked accept() with a connection of our own; it sees
        // the flag and returns. Loopback works for any bind address.
        let wake = SocketAddr::new(
            if self.local_addr.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                self.local_addr.ip()
            },
            self.local_addr.port(),
        );
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for TelemetrySubscription {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds, starts the accept thread, then subscribes.
pub(crate) fn subscribe(
    transport: &mut BlockingTransport,
    id: &ExtensionId,
    config: TelemetryConfig,
) -> Result<TelemetrySubscription, Error> {
    let listener_error = listener_error(config.bind_addr());
    let listener = TcpListener::bind(config.bind_addr()).map_err(&listener_error)?;
    let local_addr = listener.local_addr().map_err(&listener_error)?;
    let (req, uri) = config.subscription(id, local_addr.port())?;

    let (tx, receiver) = mpsc::sync_channel(config.capacity);
    let stop = Arc::new(AtomicBool::new(false));
    let accept = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("lext-telemetry".into())
            .spawn(move || accept_loop(listener, tx, stop))
            .map_err(listener_error)?
    };
    // From here, dropping `subscription` on an error stops the thread.
    let mut subscription = TelemetrySubscription {
        receiver,
        reports: RefCell::default(),
        local_addr,
        uri,
        outcome: SubscribeOutcome::Subscribed,
        stop,
        accept: Some(accept),
    };
    tracing::debug!(%local_addr, uri = subscription.uri, "telemetry listener started; subscribing");
    let response = transport.send(Op::SubscribeTelemetry, &req)?;
    subscription.outcome = subscribed(&response)?;
    Ok(subscription)
}

fn accept_loop(listener: TcpListener, tx: SyncSender<TelemetryBatch>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => {
                let tx = tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("lext-telemetry-conn".into())
                    .spawn(move || serve(stream, tx));
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "telemetry listener: cannot start a connection thread");
                }
            }
            Err(e) => {
                // EMFILE and friends are transient: back off, keep serving.
                tracing::warn!(error = %e, "telemetry listener: accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Serves one connection: each request's body becomes a batch, answered
/// with 200 once handed over.
fn serve(mut stream: TcpStream, tx: SyncSender<TelemetryBatch>) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let mut buf = Vec::new();
    loop {
        match take_request(&mut buf, MAX_BATCH_BYTES) {
            Ok(Some(req)) => {
                tracing::trace!(method = %req.method, path = %req.path, bytes = req.body.len(), "telemetry delivery");
                let batch = to_batch(Ok(req.body));
                if tx.send(batch).is_err() {
                    tracing::warn!("telemetry batch dropped: the subscription's receiver is gone");
                }
                if stream.write_all(answer(req.close)).is_err() || req.close {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                // Not HTTP, or a body over the limit: report it, answer 200
                // (no redelivery loop) and close, since the stream cannot be
                // resynchronised.
                let _ = tx.send(to_batch(Err(format!("delivery could not be parsed: {e}"))));
                let _ = stream.write_all(ANSWER_AND_CLOSE);
                return;
            }
        }
        // Read into the buffer's spare room (zeroed first: std has no
        // stable read into uninitialised memory), at most a chunk at a time.
        make_room(&mut buf);
        let len = buf.len();
        let room = (buf.capacity() - len).min(64 * 1024);
        buf.resize(len + room, 0);
        let read = stream.read(&mut buf[len..]);
        buf.truncate(len + read.as_ref().map_or(0, |&n| n));
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                if !buf.is_empty() {
                    let _ = tx.send(to_batch(Err(format!(
                        "delivery cut short after {} bytes: {e}",
                        buf.len()
                    ))));
                }
                return;
            }
        }
    }
}
