//! Delivery to one subscriber: its queue, the batches taken off it, and the
//! task that sends them over a kept-alive connection.
//!
//! Each subscriber has a [`Queue`] that the hub fills as events are
//! recorded and a delivery task ([`deliver`]) that drains it: it waits until
//! a batch is due (`maxItems` or `maxBytes` reached, `timeoutMs` passed
//! since the oldest queued event, a flush asked for, or the environment
//! shutting down), takes the batch ([`take_batch`]) and sends it through a
//! [`Sender`], one batch in flight at a time. Lambda delivers HTTP batches
//! as a JSON array and TCP ones as one JSON event a line (AWS: Telemetry
//! API, <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>;
//! one batch in flight, as RIE's Managed Instances telemetry does:
//! github.com/aws/aws-lambda-runtime-interface-emulator,
//! `internal/lambda-managed-instances/aws-lambda-rie/internal/telemetry/internal/subscriber.go`
//! and `batch.go`).
//!
//! The delivery tasks run on a thread of their own ([`Courier`]), not on
//! the caller's event loop: there they queued behind the reading of the
//! function's output, which a burst of lines keeps busy, and each batch's
//! round trip took 4× the loopback's. On their own thread they run beside
//! the reader on another CPU, and the reader never waits for them either.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut as _, Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use lext_protocol::telemetry::{
    parse_uri, Api, BufferingLimits, LogType, LogsDropped, Protocol, Record, SubscribeRequest,
    TelemetryEvent,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::{lock, logs_api, Recorded, Run, SubscribeError};
use crate::logline::iso8601_ms;

/// `reason` of a `platform.logsDropped` for records a slow subscriber's
/// queue could not hold (the Logs API documentation's wording).
const REASON_SLOW_CONSUMER: &str =
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.";
/// `reason` of a `platform.logsDropped` for batches the subscriber did not
/// accept (connection refused, error status, no answer in time).
const REASON_DELIVERY_FAILED: &str =
    "Some logs were dropped because the subscriber could not be reached or refused them.";

/// Whether the environment's processes are frozen. While they are, their
/// listeners cannot answer, so delivery waits instead of failing: Lambda
/// delivers what an invoke produced after the freeze at the next thaw.
#[derive(Debug, Default)]
pub(super) struct Freeze {
    frozen: AtomicBool,
    /// Incremented at every freeze and thaw, so that a send that lived
    /// through either gets a fresh timeout (the listener just woke up).
    epoch: AtomicU64,
}

impl Freeze {
    /// The processes are about to be frozen.
    pub(super) fn freeze(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.frozen.store(true, Ordering::Release);
    }

    /// The processes were thawed.
    pub(super) fn thaw(&self) {
        self.frozen.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// Where a subscriber's events go.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
        /// POST, or PUT for a Logs API subscriber that asked for it.
        put: bool,
        /// Send the `Sequence-Id` header (Managed Instances).
        sequence_id: bool,
    },
    Tcp {
        addr: SocketAddr,
    },
}

impl Target {
    pub(super) fn from_request(
        api: Api,
        request: &SubscribeRequest,
    ) -> Result<Self, SubscribeError> {
        match &request.destination.protocol {
            Protocol::Http => {
                let uri = request.destination.uri.as_deref().ok_or_else(|| {
                    SubscribeError::Destination("destination.URI is required".into())
                })?;
                let parsed = parse_uri(uri).map_err(SubscribeError::Destination)?;
                Ok(Target::Http {
                    // sandbox.localdomain and sandbox are loopback inside
                    // the environment; connect there directly.
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, parsed.port)),
                    host: format!("{}:{}", parsed.host, parsed.port),
                    path: parsed.path,
                    put: api == Api::Logs && logs_api::delivers_with_put(request),
                    sequence_id: false,
                })
            }
            Protocol::Tcp => match request.destination.port {
                Some(port) if port != 0 => Ok(Target::Tcp {
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                }),
                _ => Err(SubscribeError::Destination(
                    "destination.port is required for TCP".into(),
                )),
            },
            Protocol::Other(raw) => Err(SubscribeError::Destination(format!(
                "destination.protocol {raw:?} is not supported"
            ))),
        }
    }
}

/// One subscription: what it wants, where it goes, and its queue.
#[derive(Debug)]
pub(super) struct Subscriber {
    /// The extension's name.
    pub(super) name: String,
    pub(super) api: Api,
    types: Vec<LogType>,
    /// Logs API schema 2021-03-18: `platform.runtimeDone` is delivered.
    runtime_done: bool,
    limits: BufferingLimits,
    target: Target,
    pub(super) queue: Mutex<Queue>,
    /// Wakes the delivery task; `notify_one` keeps a permit, so a wake-up
    /// sent while the task is busy is not lost.
    pub(super) notify: Notify,
    freeze: Arc<Freeze>,
}

/// A subscriber's pending events and drop counts.
#[derive(Debug, Default)]
pub(super) struct Queue {
    pub(super) items: VecDeque<Item>,
    /// The records the items hold, and their bytes.
    pub(super) records: usize,
    pub(super) bytes: usize,
    /// When the oldest queued item arrived: the batch's `timeoutMs` runs
    /// from there.
    pub(super) first_at: Option<Instant>,
    /// Drops not yet announced to the subscriber.
    pub(super) dropped_records: u64,
    pub(super) dropped_bytes: u64,
    drop_reason: &'static str,
    /// Every drop over the subscription's life.
    pub(super) total_dropped_records: u64,
    pub(super) total_dropped_bytes: u64,
    /// The batch being sent: records and bytes, plus the drop notice it
    /// carries, so that an abort at the shutdown deadline still counts them.
    in_flight: Option<InFlight>,
    pub(super) flush_requested: bool,
    pub(super) closing: bool,
    pub(super) replaced: bool,
    /// What became of the records that existed when the extension received
    /// SHUTDOWN.
    pub(super) cutoff: Cutoff,
}

/// What a queue holds: one encoded event, or records `from..to` of one
/// read's [`Run`].
#[derive(Debug)]
pub(super) enum Item {
    One(Bytes),
    Run {
        run: Arc<Run>,
        from: usize,
        to: usize,
    },
}

/// The records lost before and after the extension received SHUTDOWN.
///
/// In Lambda the last `platform.report` reaches a subscriber after its
/// SHUTDOWN, so an extension that exits at once loses it; what the
/// extension itself writes after SHUTDOWN cannot reach it either. Only the
/// first kind is worth a warning, so the two are counted apart. The queue
/// is first in, first out: the records queued or in flight at SHUTDOWN are
/// the first ones settled after it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cutoff {
    /// When the extension was sent SHUTDOWN, and when it exited.
    pub(super) shutdown_at: Option<Instant>,
    pub(super) exited_at: Option<Instant>,
    /// Records queued or in flight at SHUTDOWN, not yet delivered or lost.
    pending: u64,
    /// Records lost that existed before SHUTDOWN, and that came after it.
    pub(super) lost_before: u64,
    pub(super) lost_after: u64,
}

impl Cutoff {
    /// `records` new records were lost (never queued).
    pub(super) fn lost_new(&mut self, records: u64) {
        match self.shutdown_at {
            Some(_) => self.lost_after += records,
            None => self.lost_before += records,
        }
    }

    /// The next `records` records off the front of the queue were
    /// delivered, or lost.
    pub(super) fn settled(&mut self, records: u64, delivered: bool) {
        if self.shutdown_at.is_none() {
            if !delivered {
                self.lost_before += records;
            }
            return;
        }
        let before = records.min(self.pending);
        self.pending -= before;
        if !delivered {
            self.lost_before += before;
            self.lost_after += records - before;
        }
    }
}

/// What the batch being sent holds (see `Queue::in_flight`).
#[derive(Debug, Clone, Copy)]
struct InFlight {
    records: u64,
    bytes: u64,
    /// Records and bytes the batch's drop notice announces.
    notice: Option<(u64, u64)>,
}

impl Queue {
    /// The extension was sent SHUTDOWN now: what is queued or in flight
    /// existed before it.
    pub(super) fn mark_shutdown(&mut self) {
        if self.cutoff.shutdown_at.is_none() {
            self.cutoff.shutdown_at = Some(Instant::now());
            self.cutoff.pending = self.records as u64 + self.in_flight.map_or(0, |f| f.records);
        }
    }

    /// Records that never reached the queue (the replay buffer was full).
    pub(super) fn add_lost_new(&mut self, records: u64, bytes: u64, reason: &'static str) {
        self.add_drops(records, bytes, reason);
        self.cutoff.lost_new(records);
    }

    pub(super) fn add_drops(&mut self, records: u64, bytes: u64, reason: &'static str) {
        if self.dropped_records == 0 {
            self.drop_reason = reason;
        }
        self.dropped_records += records;
        self.dropped_bytes += bytes;
        self.total_dropped_records += records;
        self.total_dropped_bytes += bytes;
    }

    /// A repeated subscription replaces `old`: its undelivered events and
    /// drop counts move over here, and its task ends when it sees the
    /// `replaced` flag.
    pub(super) fn take_over(&mut self, old: &mut Queue) {
        old.replaced = true;
        self.items = std::mem::take(&mut old.items);
        self.records = std::mem::take(&mut old.records);
        self.bytes = std::mem::take(&mut old.bytes);
        self.dropped_records = std::mem::take(&mut old.dropped_records);
        self.dropped_bytes = std::mem::take(&mut old.dropped_bytes);
        self.total_dropped_records = old.total_dropped_records;
        self.total_dropped_bytes = old.total_dropped_bytes;
        self.cutoff = old.cutoff;
    }

    /// At the shutdown deadline: whatever is still queued or in flight is
    /// lost too (an announced drop whose notice was in flight is still
    /// unannounced). Counts it into the totals and returns its records and
    /// bytes.
    pub(super) fn abandon(&mut self) -> (u64, u64) {
        let (mut records, mut bytes) = (self.records as u64, self.bytes as u64);
        if let Some(in_flight) = self.in_flight.take() {
            records += in_flight.records;
            bytes += in_flight.bytes;
            if let Some((notice_records, notice_bytes)) = in_flight.notice {
                self.dropped_records += notice_records;
                self.dropped_bytes += notice_bytes;
            }
        }
        self.items.clear();
        self.records = 0;
        self.bytes = 0;
        self.total_dropped_records += records;
        self.total_dropped_bytes += bytes;
        self.cutoff.settled(records, false);
        (records, bytes)
    }
}

impl Subscriber {
    /// A subscriber of `api` named `name`, for a request the core has
    /// validated, delivering to `target`.
    pub(super) fn new(
        name: &str,
        api: Api,
        request: &SubscribeRequest,
        target: Target,
        freeze: Arc<Freeze>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            api,
            types: request.types.clone(),
            runtime_done: logs_api::delivers_runtime_done(request),
            limits: request
                .buffering
                .as_ref()
                .map_or(lext_protocol::telemetry::Buffering::DEFAULT, |b| b.limits()),
            target,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            freeze,
        }
    }

    /// Queue `recorded` if this subscriber wants it.
    pub(super) fn offer(&self, recorded: &Recorded, limit: usize) {
        let mut queue = lock(&self.queue);
        self.push(&mut queue, recorded, limit);
    }

    /// Offers the records of one read's lines: a Telemetry API subscriber
    /// over HTTP queues them as one run, any other takes them one by one
    /// (`recorded` holds them typed when a Logs API subscriber exists).
    pub(super) fn offer_run(&self, run: &Arc<Run>, recorded: &[Recorded], limit: usize) {
        if !self.types.contains(&run.log_type) || run.len() == 0 {
            return;
        }
        let mut queue = lock(&self.queue);
        let wake = match (&self.api, &self.target) {
            (Api::Telemetry, Target::Http { .. }) => self.queue_run(&mut queue, run, limit),
            (Api::Telemetry, Target::Tcp { .. }) => {
                // One event a line: each record stays apart.
                let mut wake = false;
                for i in 0..run.len() {
                    wake |= self.queue_json(&mut queue, run.record(i), limit);
                }
                wake
            }
            (Api::Logs, _) => {
                let mut wake = false;
                for recorded in recorded {
                    wake |= self.queue_one(&mut queue, recorded, limit);
                }
                wake
            }
        };
        drop(queue);
        if wake {
            self.notify.notify_one();
        }
    }

    /// Queues as much of `run` as the queue's limit lets in; the rest is
    /// dropped and counted. Returns whether the task must be woken.
    fn queue_run(&self, queue: &mut Queue, run: &Arc<Run>, limit: usize) -> bool {
        let room = limit.saturating_sub(queue.bytes);
        let mut bytes = 0;
        let mut to = 0;
        while to < run.len() && bytes + run.size(to) <= room {
            bytes += run.size(to);
            to += 1;
        }
        if to < run.len() {
            let lost: usize = (to..run.len()).map(|i| run.size(i)).sum();
            self.refuse(queue, (run.len() - to) as u64, lost as u64);
        }
        if to == 0 {
            return false;
        }
        let was_empty = queue.items.is_empty();
        queue.records += to;
        queue.bytes += bytes;
        queue.items.push_back(Item::Run {
            run: run.clone(),
            from: 0,
            to,
        });
        self.queued(queue, was_empty)
    }

    pub(super) fn push(&self, queue: &mut Queue, recorded: &Recorded, limit: usize) {
        if self.queue_one(queue, recorded, limit) {
            self.notify.notify_one();
        }
    }

    /// Queues the event if this subscriber takes it; returns whether the
    /// delivery task must be woken.
    fn queue_one(&self, queue: &mut Queue, recorded: &Recorded, limit: usize) -> bool {
        if !self.types.contains(&recorded.log_type) {
            return false;
        }
        let Some(json) = self.shape(recorded) else {
            return false;
        };
        self.queue_json(queue, json, limit)
    }

    /// Queues one encoded event within the queue's limit.
    fn queue_json(&self, queue: &mut Queue, json: Bytes, limit: usize) -> bool {
        if queue.bytes + json.len() > limit {
            self.refuse(queue, 1, json.len() as u64);
            return false;
        }
        let was_empty = queue.items.is_empty();
        queue.records += 1;
        queue.bytes += json.len();
        queue.items.push_back(Item::One(json));
        self.queued(queue, was_empty)
    }

    /// Counts `records` new records that the full queue could not take,
    /// and warns at the first drop since the last notice.
    fn refuse(&self, queue: &mut Queue, records: u64, bytes: u64) {
        if queue.dropped_records == 0 {
            tracing::warn!(
                extension = ?self.name,
                "telemetry subscriber is not keeping up; dropping records"
            );
        }
        queue.add_lost_new(records, bytes, REASON_SLOW_CONSUMER);
    }

    /// After queueing: notes when a batch began, and says whether the task
    /// must be woken: when a batch can start or is full; in between it
    /// sleeps until the batch's timeout.
    fn queued(&self, queue: &mut Queue, was_empty: bool) -> bool {
        if was_empty {
            queue.first_at = Some(Instant::now());
        }
        was_empty
            || queue.records >= self.limits.max_items as usize
            || queue.bytes >= self.limits.max_bytes as usize
    }

    /// The event as this subscriber's API shapes it, or `None` when the API
    /// does not deliver it.
    fn shape(&self, recorded: &Recorded) -> Option<Bytes> {
        match self.api {
            Api::Telemetry => {
                // An event kept untyped is an output line, never Logs-only.
                match &recorded.event {
                    Some(event) if logs_api::logs_only(&event.record) => None,
                    _ => Some(recorded.json.clone()),
                }
            }
            Api::Logs => logs_api::encode(&*recorded.event()?, self.runtime_done),
        }
    }
}

/// The thread the delivery tasks of one hub run on: a current-thread tokio
/// runtime of its own, started with the first subscription. It stops when
/// the hub is dropped (the last clone of its stop sender goes), and its
/// tasks with it.
#[derive(Debug, Clone)]
pub(super) struct Courier {
    runtime: tokio::runtime::Handle,
    _stop: Arc<oneshot::Sender<()>>,
}

impl Courier {
    pub(super) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lext-telemetry".into())
            .spawn(move || {
                // Returns when the sender is dropped; the runtime, and every
                // task still on it, is dropped here, outside any task.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            runtime: handle,
            _stop: Arc::new(stop),
        })
    }

    /// Starts `subscriber`'s delivery task on the courier's thread.
    pub(super) fn deliver(
        &self,
        subscriber: Arc<Subscriber>,
        post_timeout: Duration,
    ) -> JoinHandle<()> {
        self.runtime.spawn(deliver(subscriber, post_timeout))
    }
}

/// The most of a subscriber's answer to a batch that is read (its status
/// is all that counts).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One subscriber's delivery loop: wait for a batch to fill or time out,
/// send it, repeat; one batch in flight at a time.
async fn deliver(subscriber: Arc<Subscriber>, post_timeout: Duration) {
    let mut sender = Sender::new(subscriber.target.clone());
    let timeout = Duration::from_millis(u64::from(subscriber.limits.timeout_ms));
    loop {
        match next_batch(&subscriber, timeout).await {
            Due::Batch(batch) => send_batch(&subscriber, &mut sender, batch, post_timeout).await,
            Due::Nothing => {}
            Due::Done => return,
        }
    }
}

/// What [`next_batch`] found.
enum Due {
    /// A batch to send.
    Batch(Batch),
    /// Woken with nothing to send (the queue emptied, or was taken).
    Nothing,
    /// The subscription ended (replaced, or closed with nothing left).
    Done,
}

/// Waits until a batch is due: `maxItems` or `maxBytes` reached, its
/// `timeoutMs` up, a flush asked for, or the hub closing; never while the
/// environment is frozen.
async fn next_batch(subscriber: &Subscriber, timeout: Duration) -> Due {
    loop {
        let due_at = {
            let mut queue = lock(&subscriber.queue);
            if queue.replaced {
                return Due::Done;
            }
            let due = queue.records >= subscriber.limits.max_items as usize
                || queue.bytes >= subscriber.limits.max_bytes as usize
                || queue.closing
                || queue.flush_requested;
            // At shutdown a drop notice alone is not sent: if the
            // subscriber is down it would be retried forever, and the
            // shutdown report carries the counts anyway.
            if queue.items.is_empty() && (queue.dropped_records == 0 || queue.closing) {
                if queue.closing {
                    return Due::Done;
                }
                queue.flush_requested = false;
                None
            } else if subscriber.freeze.is_frozen() && !queue.closing {
                // Frozen: wait for the thaw's wake-up. (At shutdown the
                // core thaws first; closing delivers regardless.)
                None
            } else if due {
                queue.flush_requested = false;
                return take_batch(subscriber, &mut queue).map_or(Due::Nothing, Due::Batch);
            } else {
                Some(queue.first_at.unwrap_or_else(Instant::now) + timeout)
            }
        };
        match due_at {
            Some(at) if at <= Instant::now() => {
                let mut queue = lock(&subscriber.queue);
                return take_batch(subscriber, &mut queue).map_or(Due::Nothing, Due::Batch);
            }
            Some(at) => {
                tokio::select! {
                    () = subscriber.notify.notified() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => subscriber.notify.notified().await,
        }
    }
}

/// Sends one batch within `post_timeout` (time spent frozen does not
/// count); a batch that fails is dropped and counted, to be announced in
/// the next one.
async fn send_batch(
    subscriber: &Subscriber,
    sender: &mut Sender,
    batch: Batch,
    post_timeout: Duration,
) {
    lock(&subscriber.queue).in_flight = Some(InFlight {
        records: batch.records,
        bytes: batch.record_bytes,
        notice: batch.notice.map(|(records, bytes, _)| (records, bytes)),
    });
    let (result, timed_out) = {
        let send = sender.send(&batch);
        tokio::pin!(send);
        let mut epoch = subscriber.freeze.epoch();
        loop {
            tokio::select! {
                result = &mut send => break (result, false),
                () = tokio::time::sleep(post_timeout) => {
                    // Time spent frozen does not count: the listener
                    // could not answer.
                    if subscriber.freeze.is_frozen() || subscriber.freeze.epoch() != epoch {
                        epoch = subscriber.freeze.epoch();
                        continue;
                    }
                    break (Err(format!("no answer within {post_timeout:?}")), true);
                }
            }
        }
    };
    if timed_out {
        sender.reset();
    }
    let mut queue = lock(&subscriber.queue);
    queue.in_flight = None;
    queue.cutoff.settled(batch.records, result.is_ok());
    if let Err(error) = result {
        // The notice (if any) was not delivered: its counts go back, and
        // the batch's own records are now dropped too.
        queue.add_drops(batch.records, batch.record_bytes, REASON_DELIVERY_FAILED);
        if let Some((records, bytes, reason)) = batch.notice {
            queue.dropped_records += records;
            queue.dropped_bytes += bytes;
            queue.drop_reason = reason;
        }
        // After SHUTDOWN the extension may be gone: what it lost is told
        // once, by name, when the environment stops (`Hub::shutdown`).
        if queue.cutoff.shutdown_at.is_some() {
            tracing::debug!(extension = ?subscriber.name, records = batch.records, %error, "telemetry batch not delivered after SHUTDOWN");
        } else {
            tracing::warn!(
                extension = ?subscriber.name,
                records = batch.records,
                %error,
                "telemetry batch not delivered; records dropped"
            );
        }
    } else if let Some((records, bytes, _)) = batch.notice {
        tracing::warn!(
            extension = ?subscriber.name,
            dropped_records = records,
            dropped_bytes = bytes,
            "platform.logsDropped sent to the subscriber"
        );
    }
}

/// A batch ready to send.
struct Batch {
    /// Events, each already encoded, in order (the logsDropped notice first
    /// when there is one).
    events: Vec<Bytes>,
    /// Records of the batch (not counting the notice) and their bytes.
    records: u64,
    record_bytes: u64,
    /// The drops the notice announces, to restore if it is not delivered.
    notice: Option<(u64, u64, &'static str)>,
}

/// Take the next batch off the queue: at most `maxItems` events and at most
/// `maxBytes` of JSON array (an event larger than that goes alone), with
/// the pending `platform.logsDropped` notice in front.
fn take_batch(subscriber: &Subscriber, queue: &mut Queue) -> Option<Batch> {
    let max_items = subscriber.limits.max_items as usize;
    let max_bytes = subscriber.limits.max_bytes as usize;
    let mut events = Vec::new();
    let mut body_bytes = 2; // the array's brackets
    let mut notice = None;
    if queue.dropped_records > 0 {
        let record = Record::LogsDropped(Box::new(LogsDropped {
            reason: queue.drop_reason.to_owned(),
            dropped_records: queue.dropped_records,
            dropped_bytes: queue.dropped_bytes,
            extra: Default::default(),
        }));
        let event = TelemetryEvent::new(iso8601_ms(SystemTime::now()), record);
        if let Ok(json) = serde_json::to_vec(&event) {
            body_bytes += json.len();
            events.push(Bytes::from(json));
            notice = Some((
                queue.dropped_records,
                queue.dropped_bytes,
                queue.drop_reason,
            ));
            queue.dropped_records = 0;
            queue.dropped_bytes = 0;
        }
    }
    let mut records = 0;
    let mut record_bytes = 0;
    // Events in the batch so far, the notice included. `fits` takes one
    // more event of `size` bytes into the count if the limits allow it.
    let mut count = events.len();
    let mut fits = |size: usize| {
        let added = size + usize::from(count > 0);
        if count >= max_items || (count > 0 && body_bytes + added > max_bytes) {
            return false;
        }
        body_bytes += added;
        count += 1;
        true
    };
    'items: while let Some(front) = queue.items.front_mut() {
        match front {
            Item::One(next) => {
                if !fits(next.len()) {
                    break;
                }
                records += 1;
                record_bytes += next.len() as u64;
                if let Some(Item::One(item)) = queue.items.pop_front() {
                    events.push(item);
                }
            }
            Item::Run { run, from, to } => {
                let first = *from;
                let mut size = 0;
                while *from < *to && fits(run.size(*from)) {
                    size += run.size(*from);
                    *from += 1;
                }
                if *from > first {
                    events.push(run.records(first, *from));
                    records += (*from - first) as u64;
                    record_bytes += size as u64;
                }
                if *from < *to {
                    break 'items;
                }
                queue.items.pop_front();
            }
        }
    }
    queue.records -= records as usize;
    queue.bytes -= record_bytes as usize;
    queue.first_at = if queue.items.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
    if events.is_empty() {
        return None;
    }
    Some(Batch {
        events,
        records,
        record_bytes,
        notice,
    })
}

/// `Sequence-Id` of a Managed Instances delivery: the body's SHA-256, in
/// standard base64 (RIE
/// `internal/lambda-managed-instances/aws-lambda-rie/internal/telemetry/internal/client.go`).
pub(super) fn sequence_id_of(body: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body))
}

/// Sends batches to one destination over one kept-alive connection,
/// reconnecting after any failure.
struct Sender {
    target: Target,
    http: Option<http1::SendRequest<Full<Bytes>>>,
    tcp: Option<TcpStream>,
    /// The bodies' buffer. Each body is split off it and, once hyper has
    /// sent and dropped it, its space is taken back for the next one: a
    /// fresh 256 KB buffer per batch cost a page fault per 4 KB written.
    buf: BytesMut,
}

impl Sender {
    fn new(target: Target) -> Self {
        Self {
            target,
            http: None,
            tcp: None,
            buf: BytesMut::new(),
        }
    }

    /// The batch as a JSON array, in the reused buffer.
    fn body(&mut self, batch: &Batch) -> Bytes {
        let len = batch.events.iter().map(|e| e.len() + 1).sum::<usize>() + 1;
        // Takes the old space back when the last body is gone.
        self.buf.reserve(len);
        self.buf.put_u8(b'[');
        for (i, event) in batch.events.iter().enumerate() {
            if i > 0 {
                self.buf.put_u8(b',');
            }
            self.buf.extend_from_slice(event);
        }
        self.buf.put_u8(b']');
        self.buf.split().freeze()
    }

    fn reset(&mut self) {
        self.http = None;
        self.tcp = None;
    }

    async fn send(&mut self, batch: &Batch) -> Result<(), String> {
        let result = match self.target.clone() {
            Target::Http {
                addr,
                host,
                path,
                put,
                sequence_id,
            } => {
                self.post(addr, &host, &path, (put, sequence_id), batch)
                    .await
            }
            Target::Tcp { addr } => self.write_lines(addr, batch).await,
        };
        if result.is_err() {
            self.reset();
        }
        result
    }

    async fn post(
        &mut self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        (put, sequence_id): (bool, bool),
        batch: &Batch,
    ) -> Result<(), String> {
        let body = self.body(batch);
        if self.http.as_ref().is_none_or(|s| s.is_closed()) {
            self.http = Some(connect_http(addr).await?);
        }
        let Some(sender) = self.http.as_mut() else {
            return Err("no connection".to_owned());
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let method = if put {
            hyper::Method::PUT
        } else {
            hyper::Method::POST
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if sequence_id {
            request = request.header("Sequence-Id", sequence_id_of(&body));
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the answer to the end so the connection can be reused, but
        // no more than a bounded prefix: nothing in it matters, and a
        // listener must not be able to make lext hold an answer of any
        // size. A longer one costs the connection, not the batch.
        let answer = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
        match answer.collect().await {
            Ok(_) => {}
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                tracing::debug!(
                    limit = MAX_ANSWER_BYTES,
                    "subscriber answer too long; connection dropped"
                );
                self.http = None;
            }
            Err(e) => return Err(e.to_string()),
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the subscriber answered {status}"))
        }
    }

    async fn write_lines(&mut self, addr: SocketAddr, batch: &Batch) -> Result<(), String> {
        if self.tcp.is_none() {
            let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            self.tcp = Some(stream);
        }
        let Some(stream) = self.tcp.as_mut() else {
            return Err("no connection".to_owned());
        };
        let len = batch.events.iter().map(|e| e.len() + 1).sum::<usize>();
        self.buf.reserve(len);
        for event in &batch.events {
            self.buf.extend_from_slice(event);
            self.buf.put_u8(b'\n');
        }
        let body = self.buf.split();
        stream.write_all(&body).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())
    }
}

async fn connect_http(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "telemetry connection closed");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use lext_protocol::telemetry::LogRecord;
    use serde_json::Value;

    use super::*;

    fn subscriber(max_items: u32, max_bytes: u32) -> Subscriber {
        Subscriber {
            name: "ext".into(),
            api: Api::Telemetry,
            types: vec![LogType::Function],
            runtime_done: false,
            limits: BufferingLimits {
                max_items,
                max_bytes,
                timeout_ms: 1000,
            },
            target: Target::Tcp {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
            },
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            freeze: Arc::default(),
        }
    }

    fn recorded(text: &str) -> Recorded {
        let event = TelemetryEvent::new(
            "2022-10-21T14:05:03.165Z",
            Record::Function(LogRecord::Text(text.into())),
        );
        let json = Bytes::from(serde_json::to_vec(&event).unwrap());
        Recorded {
            log_type: LogType::Function,
            event: Some(Box::new(event)),
            json,
        }
    }

    #[test]
    fn batches_stop_at_max_items_and_max_bytes() {
        let sub = subscriber(3, 1_000_000);
        let mut queue = Queue::default();
        for i in 0..7 {
            sub.push(&mut queue, &recorded(&format!("{i}")), usize::MAX);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| take_batch(&sub, &mut queue))
            .map(|b| b.events.len())
            .collect();
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(queue.bytes, 0);

        let one = recorded("x").json.len();
        // Room for exactly two events: brackets + 2 events + 1 comma.
        let sub = subscriber(10_000, (2 + 2 * one + 1) as u32);
        let mut queue = Queue::default();
        for _ in 0..5 {
            sub.push(&mut queue, &recorded("x"), usize::MAX);
        }
        let batch = take_batch(&sub, &mut queue).unwrap();
        assert_eq!(batch.events.len(), 2);
        assert_eq!((batch.records, batch.record_bytes), (2, 2 * one as u64));
    }

    fn run(texts: &[&str]) -> Arc<Run> {
        let lines: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        Arc::new(Run::encode(
            "2022-10-21T14:05:03.165Z",
            "function",
            LogType::Function,
            &lines,
        ))
    }

    /// The batch's body as the sender builds it, decoded.
    fn body_of(batch: &Batch) -> Vec<Value> {
        let mut sender = Sender::new(subscriber(1, 1).target.clone());
        serde_json::from_slice(&sender.body(batch)).unwrap()
    }

    fn texts(values: &[Value]) -> Vec<&str> {
        values
            .iter()
            .map(|v| v["record"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn runs_are_cut_by_max_items_and_max_bytes_and_keep_order() {
        let names: Vec<String> = (0..7).map(|i| format!("line {i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let sub = subscriber(3, 1_000_000);
        let mut queue = Queue::default();
        // A lone event, a run of 5, another lone event, a run of 2.
        sub.push(&mut queue, &recorded("a"), usize::MAX);
        sub.queue_run(&mut queue, &run(&names[..5]), usize::MAX);
        sub.push(&mut queue, &recorded("b"), usize::MAX);
        sub.queue_run(&mut queue, &run(&names[5..]), usize::MAX);
        assert_eq!(queue.records, 9);
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        while let Some(batch) = take_batch(&sub, &mut queue) {
            let body = body_of(&batch);
            assert_eq!(body.len() as u64, batch.records);
            let bytes: usize = body
                .iter()
                .map(|v| serde_json::to_vec(v).unwrap().len())
                .sum();
            assert_eq!(bytes as u64, batch.record_bytes, "record bytes are exact");
            sizes.push(body.len());
            all.extend(texts(&body).into_iter().map(str::to_owned));
        }
        assert_eq!(sizes, [3, 3, 3]);
        let mut want = vec!["a".to_owned()];
        want.extend(names[..5].iter().map(|s| (*s).to_owned()));
        want.push("b".to_owned());
        want.extend(names[5..].iter().map(|s| (*s).to_owned()));
        assert_eq!(all, want);
        assert_eq!((queue.records, queue.bytes), (0, 0));

        // maxBytes: room for exactly two records of the run.
        let one = run(&["x"]).size(0);
        let sub = subscriber(10_000, (2 + 2 * one + 1) as u32);
        let mut queue = Queue::default();
        sub.queue_run(&mut queue, &run(&["x"; 5]), usize::MAX);
        let sizes: Vec<usize> = std::iter::from_fn(|| take_batch(&sub, &mut queue))
            .map(|b| body_of(&b).len())
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn a_run_past_the_queue_limit_is_cut_and_the_rest_counted() {
        let sub = subscriber(10_000, 1_000_000);
        let lines = run(&["r"; 5]);
        let one = lines.size(0);
        let mut queue = Queue::default();
        // Room for two of the five.
        sub.queue_run(&mut queue, &lines, 2 * one + 1);
        assert_eq!((queue.records, queue.bytes), (2, 2 * one));
        assert_eq!(
            (queue.dropped_records, queue.dropped_bytes),
            (3, 3 * one as u64)
        );
        let batch = take_batch(&sub, &mut queue).unwrap();
        assert_eq!(
            batch.notice,
            Some((3, 3 * one as u64, REASON_SLOW_CONSUMER))
        );
        let body = body_of(&batch);
        assert_eq!(body[0]["type"], "platform.logsDropped");
        assert_eq!(texts(&body[1..]), ["r", "r"]);
        // A full queue takes none and counts all.
        let mut queue = Queue::default();
        sub.queue_run(&mut queue, &lines, one - 1);
        assert_eq!((queue.records, queue.dropped_records), (0, 5));
        assert!(queue.items.is_empty());
    }

    #[test]
    fn an_event_larger_than_max_bytes_goes_alone() {
        let sub = subscriber(10_000, 10);
        let mut queue = Queue::default();
        sub.push(&mut queue, &recorded("big"), usize::MAX);
        sub.push(&mut queue, &recorded("big"), usize::MAX);
        assert_eq!(take_batch(&sub, &mut queue).unwrap().events.len(), 1);
        assert_eq!(take_batch(&sub, &mut queue).unwrap().events.len(), 1);
        assert!(take_batch(&sub, &mut queue).is_none());
    }

    #[test]
    fn drops_are_counted_and_announced_first() {
        let sub = subscriber(10_000, 1_000_000);
        let one = recorded("r").json.len();
        let mut queue = Queue::default();
        for _ in 0..5 {
            // Room for two.
            sub.push(&mut queue, &recorded("r"), 2 * one);
        }
        assert_eq!((queue.items.len(), queue.records), (2, 2));
        assert_eq!(
            (queue.dropped_records, queue.dropped_bytes),
            (3, 3 * one as u64)
        );
        let batch = take_batch(&sub, &mut queue).unwrap();
        assert_eq!(
            batch.notice,
            Some((3, 3 * one as u64, REASON_SLOW_CONSUMER))
        );
        let first: Value = serde_json::from_slice(&batch.events[0]).unwrap();
        assert_eq!(first["type"], "platform.logsDropped");
        assert_eq!(first["record"]["droppedRecords"], 3);
        assert_eq!(first["record"]["droppedBytes"], 3 * one as u64);
        assert_eq!(batch.records, 2, "the notice is not a record of the batch");
        assert_eq!(queue.dropped_records, 0, "announced once");
        assert_eq!(queue.total_dropped_records, 3, "but remembered");
    }

    #[test]
    fn unwanted_types_are_not_queued() {
        let sub = subscriber(10, 1_000_000);
        let mut queue = Queue::default();
        let event = TelemetryEvent::new("t", Record::ExtensionLog(LogRecord::Text("e".into())));
        let json = Bytes::from(serde_json::to_vec(&event).unwrap());
        let ext = Recorded {
            log_type: LogType::Extension,
            event: Some(Box::new(event)),
            json,
        };
        sub.push(&mut queue, &ext, usize::MAX);
        assert!(queue.items.is_empty());
    }
}
