//! The Telemetry API and Logs API delivery engine.
//!
//! This module owns what happens to every telemetry event after the sandbox
//! produced it: the [`Hub`] records each event (`platform.*` records from the
//! core, `function` and `extension` lines from [`crate::process`]), stamps it
//! with an ISO-8601 UTC millisecond time, keeps the Init-phase events for
//! replay to subscribers that join during Init, and hands it to every
//! subscriber whose types match. Each subscriber has its own delivery task
//! that batches events into JSON arrays and POSTs them (or writes them as
//! newline-delimited JSON for a TCP destination) with one batch in flight at
//! a time, honouring the subscription's `maxItems`, `maxBytes` and
//! `timeoutMs` (contract section 3.2).
//!
//! Nothing is lost without being reported. A subscriber that is slow lets
//! its queue fill up to [`HubConfig::queue_limit_bytes`]; records beyond are
//! dropped and counted. A batch that cannot be delivered (connection
//! refused, a non-2xx answer, no answer within [`HubConfig::post_timeout`])
//! is dropped and counted too: like RIE's Managed Instances telemetry, and
//! unlike real Lambda's unspecified retries (UNCONFIRMED in the contract),
//! the sandbox does not retry. Counted drops are announced to that
//! subscriber as a `platform.logsDropped` event at the head of its next
//! batch, logged as a `tracing` warning, written to `--telemetry-out`, and
//! whatever is still undelivered at shutdown is returned in the
//! [`FlushReport`].
//!
//! Logs API subscribers get the Logs API's shapes: `platform.start`,
//! `platform.end`, `platform.report` (metrics only), `platform.fault`,
//! `platform.extension`, `platform.logsSubscription`, `platform.logsDropped`,
//! `platform.runtimeDone` (schema `2021-03-18` only) and the log lines;
//! Telemetry API subscribers get every other platform event but not the
//! Logs-only ones (`platform.end`, `platform.fault`,
//! `platform.logsSubscription`). The core records both kinds; the hub routes.
//!
//! While the environment is frozen ([`Hub::freeze`] .. [`Hub::thaw`]) no
//! batch is started and the batch in flight does not time out: a frozen
//! listener cannot answer, and Lambda likewise delivers what an invoke
//! produced after the freeze at the next thaw.
//!
//! Destinations must be `sandbox.localdomain` or `sandbox` (checked by
//! [`SubscribeRequest::validate`]); the hub connects to `127.0.0.1` instead,
//! so delivery works whether or not the name resolves on the host.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use lext_protocol::telemetry::{
    parse_uri, Api, BufferingLimits, End, LogRecord, LogType, LogsDropped, Protocol, Record,
    SubscribeRequest, Subscription, TelemetryEvent,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::logline::iso8601_ms;
use crate::process::{OutputLine, Source};

/// `reason` of a `platform.logsDropped` for records a slow subscriber's
/// queue could not hold (the Logs API documentation's wording).
pub const REASON_SLOW_CONSUMER: &str =
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.";
/// `reason` of a `platform.logsDropped` for batches the subscriber did not
/// accept (connection refused, error status, no answer in time).
pub const REASON_DELIVERY_FAILED: &str =
    "Some logs were dropped because the subscriber could not be reached or refused them.";
/// `reason` of a `platform.logsDropped` for Init events that did not fit in
/// the replay buffer before this subscriber joined.
pub const REASON_REPLAY_OVERFLOW: &str =
    "Some logs produced before the subscription were dropped because the init buffer was full.";
/// The Logs API schema version that adds `platform.runtimeDone`.
pub const LOGS_SCHEMA_WITH_RUNTIME_DONE: &str = "2021-03-18";

/// Settings of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// `--telemetry-out`: every recorded event as one JSON line.
    pub telemetry_out: Option<PathBuf>,
    /// Bytes of encoded events one subscriber may have waiting (beyond the
    /// batch in flight) before new records are dropped. The default, 64 MiB,
    /// holds a few hundred thousand log lines, so only a stalled or
    /// vanished subscriber loses records.
    pub queue_limit_bytes: usize,
    /// Bytes of Init events kept for replay (default 16 MiB).
    pub replay_limit_bytes: usize,
    /// How long one batch delivery may take before it counts as failed
    /// (default 5 s). Real Lambda's value is not documented.
    pub post_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            telemetry_out: None,
            queue_limit_bytes: 64 * 1024 * 1024,
            replay_limit_bytes: 16 * 1024 * 1024,
            post_timeout: Duration::from_secs(5),
        }
    }
}

/// The hub could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `--telemetry-out` could not be opened.
    #[error("cannot open the telemetry output file {path}: {source}")]
    OpenOutput {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A subscription the hub refuses. Validation errors (400) are the core's
/// to detect with [`SubscribeRequest::validate`] before calling
/// [`Hub::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// Init is over; the APIs answer 403 `Telemetry.SubscriptionClosed` /
    /// `Logs.SubscriptionClosed`.
    #[error("{} API subscription is closed already", api_name(*.0))]
    Closed(Api),
    /// The extension already subscribed through the other API (the status
    /// Lambda answers is UNCONFIRMED).
    #[error("extension {0} already subscribed through the other API")]
    MixedApis(String),
    /// The destination is unusable (only possible with an unvalidated
    /// request).
    #[error("invalid destination: {0}")]
    Destination(String),
    /// `subscribe` was called outside a tokio runtime, so no delivery task
    /// can run.
    #[error("telemetry subscriptions need a tokio runtime")]
    NoRuntime,
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Telemetry => "Telemetry",
        Api::Logs => "Logs",
    }
}

/// What one subscriber did not get, reported at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// The extension's name.
    pub extension: String,
    /// Records dropped over the subscription's life, announced or not.
    pub dropped_records: u64,
    /// Their encoded size.
    pub dropped_bytes: u64,
}

/// The outcome of [`Hub::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Every subscriber that lost records, with its totals (including what
    /// was still queued at the deadline).
    pub undelivered: Vec<Undelivered>,
    /// Whether every subscriber finished within the deadline.
    pub completed: bool,
}

/// One recorded event, encoded once for every Telemetry API subscriber.
#[derive(Debug)]
struct Recorded {
    event: TelemetryEvent,
    log_type: LogType,
    json: Bytes,
}

/// The telemetry hub. Cloning it is cheap; all clones share one hub.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HubConfig,
    /// A std mutex: it is never held across an `await`, and `record` is
    /// called from synchronous contexts (the output line sink).
    state: Mutex<State>,
    out: Mutex<Option<BufWriter<File>>>,
    /// `--telemetry-out` was given.
    has_out: bool,
    freeze: Arc<Freeze>,
}

/// Whether the environment's processes are frozen. While they are, their
/// listeners cannot answer, so delivery waits instead of failing: Lambda
/// delivers what an invoke produced after the freeze at the next thaw.
#[derive(Debug, Default)]
struct Freeze {
    frozen: AtomicBool,
    /// Incremented at every freeze and thaw, so that a send that lived
    /// through either gets a fresh timeout (the listener just woke up).
    epoch: AtomicU64,
}

impl Freeze {
    fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Subscriptions are accepted (Init phase).
    open: bool,
    /// Init events kept for late subscribers, while `open`.
    replay: VecDeque<Arc<Recorded>>,
    replay_bytes: usize,
    replay_dropped_records: u64,
    replay_dropped_bytes: u64,
    subscribers: Vec<Arc<Subscriber>>,
    tasks: Vec<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going
    // rather than losing telemetry.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// A hub in the Init phase (subscriptions open, replay recording).
    pub fn new(config: HubConfig) -> Result<Self, TelemetryError> {
        let out = match &config.telemetry_out {
            Some(path) => Some(BufWriter::new(File::create(path).map_err(|source| {
                TelemetryError::OpenOutput {
                    path: path.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    open: true,
                    ..State::default()
                }),
                has_out: out.is_some(),
                out: Mutex::new(out),
                freeze: Arc::default(),
            }),
        })
    }

    /// Record an event stamped with the current time.
    pub fn record(&self, record: Record) {
        self.record_at(SystemTime::now(), record);
    }

    /// Record an event that happened at `time`.
    pub fn record_at(&self, time: SystemTime, record: Record) {
        // Nobody can ever see the event (no file, no subscriber, Init over
        // so no future subscriber either): skip the encoding, which is most
        // of the cost of an event on the invoke path.
        if !self.inner.has_out {
            let state = lock(&self.inner.state);
            if !state.open && state.subscribers.is_empty() {
                return;
            }
        }
        let event = TelemetryEvent::new(iso8601_ms(time), record);
        let json = match serde_json::to_vec(&event) {
            Ok(json) => Bytes::from(json),
            Err(error) => {
                // Records are plain data; this cannot happen, but a lost
                // event must still be visible.
                tracing::warn!(%error, "telemetry event could not be encoded; dropped");
                return;
            }
        };
        let recorded = Arc::new(Recorded {
            log_type: event.record.log_type(),
            event,
            json,
        });
        self.write_out(&recorded.json);
        let mut state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            subscriber.offer(&recorded, self.inner.config.queue_limit_bytes);
        }
        if state.open {
            let size = recorded.json.len();
            if state.replay_bytes + size <= self.inner.config.replay_limit_bytes {
                state.replay_bytes += size;
                state.replay.push_back(recorded);
            } else {
                state.replay_dropped_records += 1;
                state.replay_dropped_bytes += size as u64;
            }
        }
    }

    /// Record one output line as a `function` or `extension` event.
    pub fn record_line(&self, line: &OutputLine) {
        let text = LogRecord::Text(line.line.clone());
        let record = match line.source {
            Source::Function => Record::Function(text),
            Source::Extension(_) => Record::ExtensionLog(text),
        };
        self.record_at(line.time, record);
    }

    /// Subscribe `extension` through `api` with a request the core has
    /// validated. Starts its delivery task (call within a tokio runtime),
    /// replays the Init events recorded so far that match its types, and
    /// records `platform.telemetrySubscription` or
    /// `platform.logsSubscription`.
    ///
    /// A repeated subscription by the same extension replaces the previous
    /// one (the Logs API is documented as idempotent; the Telemetry API's
    /// behaviour is UNCONFIRMED), and pending events move over.
    pub fn subscribe(
        &self,
        api: Api,
        extension: &str,
        request: &SubscribeRequest,
    ) -> Result<(), SubscribeError> {
        let target = Target::from_request(api, request)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SubscribeError::NoRuntime)?;
        let limits = request
            .buffering
            .as_ref()
            .map_or(lext_protocol::telemetry::Buffering::DEFAULT, |b| b.limits());
        let types: Vec<LogType> = request.types.clone();
        let subscriber;
        {
            let mut state = lock(&self.inner.state);
            if !state.open {
                return Err(SubscribeError::Closed(api));
            }
            if state
                .subscribers
                .iter()
                .any(|s| s.name == extension && s.api != api)
            {
                return Err(SubscribeError::MixedApis(extension.to_owned()));
            }
            let previous = state
                .subscribers
                .iter()
                .position(|s| s.name == extension && s.api == api)
                .map(|i| state.subscribers.remove(i));
            subscriber = Arc::new(Subscriber {
                name: extension.to_owned(),
                api,
                types,
                runtime_done: request.schema_version.as_deref()
                    == Some(LOGS_SCHEMA_WITH_RUNTIME_DONE),
                limits,
                target,
                queue: Mutex::new(Queue::default()),
                notify: Notify::new(),
                freeze: self.inner.freeze.clone(),
            });
            {
                let mut queue = lock(&subscriber.queue);
                match &previous {
                    // The old subscription's undelivered events move over;
                    // its task ends when it sees the `replaced` flag.
                    Some(old) => {
                        let mut old_queue = lock(&old.queue);
                        old_queue.replaced = true;
                        queue.items = std::mem::take(&mut old_queue.items);
                        queue.bytes = std::mem::take(&mut old_queue.bytes);
                        queue.dropped_records = std::mem::take(&mut old_queue.dropped_records);
                        queue.dropped_bytes = std::mem::take(&mut old_queue.dropped_bytes);
                        queue.total_dropped_records = old_queue.total_dropped_records;
                        queue.total_dropped_bytes = old_queue.total_dropped_bytes;
                        old.notify.notify_one();
                    }
                    None => {
                        if state.replay_dropped_records > 0 {
                            queue.add_drops(
                                state.replay_dropped_records,
                                state.replay_dropped_bytes,
                                REASON_REPLAY_OVERFLOW,
                            );
                        }
                        let limit = self.inner.config.queue_limit_bytes;
                        for recorded in &state.replay {
                            subscriber.push(&mut queue, recorded, limit);
                        }
                    }
                }
                if !queue.items.is_empty() {
                    queue.first_at = Some(Instant::now());
                    subscriber.notify.notify_one();
                }
            }
            state.subscribers.push(subscriber.clone());
            let task = runtime.spawn(deliver(subscriber.clone(), self.inner.config.post_timeout));
            state.tasks.push(task);
        }
        let names: Vec<String> = request
            .types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        let record = Subscription {
            name: extension.to_owned(),
            state: "Subscribed".to_owned(),
            types: names,
            extra: Default::default(),
        };
        self.record(match api {
            Api::Telemetry => Record::TelemetrySubscription(record),
            Api::Logs => Record::LogsSubscription(record),
        });
        tracing::debug!(extension, api = api_name(api), "telemetry subscriber added");
        Ok(())
    }

    /// End of Init: later subscriptions are refused with
    /// [`SubscribeError::Closed`], and the replay buffer is released.
    pub fn close_subscriptions(&self) {
        let mut state = lock(&self.inner.state);
        state.open = false;
        state.replay.clear();
        state.replay_bytes = 0;
        state.replay_dropped_records = 0;
        state.replay_dropped_bytes = 0;
    }

    /// Start a new Init after a reset: subscriptions open again and Init
    /// events are kept for replay. Subscribers of the previous environment
    /// should have been flushed with [`Hub::shutdown`] first; any left are
    /// kept.
    pub fn begin_init(&self) {
        let mut state = lock(&self.inner.state);
        state.open = true;
        state.replay.clear();
        state.replay_bytes = 0;
        state.replay_dropped_records = 0;
        state.replay_dropped_bytes = 0;
    }

    /// The environment's processes are about to be frozen (SIGSTOP): hold
    /// deliveries until [`Hub::thaw`]. Events are still recorded and queued;
    /// a batch already in flight waits for its answer without timing out.
    pub fn freeze(&self) {
        self.inner.freeze.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.freeze.frozen.store(true, Ordering::Release);
    }

    /// The processes were thawed (SIGCONT): deliver what is due.
    pub fn thaw(&self) {
        self.inner.freeze.frozen.store(false, Ordering::Release);
        self.inner.freeze.epoch.fetch_add(1, Ordering::AcqRel);
        let state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            subscriber.notify.notify_one();
        }
    }

    /// Send what every subscriber has queued now, without waiting for
    /// `timeoutMs` (for example before a SHUTDOWN event, so the extension
    /// gets its last logs while it can still process them).
    pub fn flush_now(&self) {
        let state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            lock(&subscriber.queue).flush_requested = true;
            subscriber.notify.notify_one();
        }
    }

    /// Deliver everything pending to every subscriber within `deadline`,
    /// then remove all subscribers and flush `--telemetry-out`. What could
    /// not be delivered is logged as a warning, written to
    /// `--telemetry-out` as `platform.logsDropped`, and returned.
    pub async fn shutdown(&self, deadline: Duration) -> FlushReport {
        let (subscribers, tasks) = {
            let mut state = lock(&self.inner.state);
            (
                std::mem::take(&mut state.subscribers),
                std::mem::take(&mut state.tasks),
            )
        };
        for subscriber in &subscribers {
            lock(&subscriber.queue).closing = true;
            subscriber.notify.notify_one();
        }
        let mut completed = true;
        let until = Instant::now() + deadline;
        for mut task in tasks {
            match tokio::time::timeout_at(until, &mut task).await {
                Ok(_) => {}
                Err(_) => {
                    completed = false;
                    task.abort();
                }
            }
        }
        let mut report = FlushReport {
            undelivered: Vec::new(),
            completed,
        };
        for subscriber in &subscribers {
            let mut queue = lock(&subscriber.queue);
            if queue.replaced {
                continue;
            }
            // Whatever is still queued or in flight at the deadline is lost
            // too (an announced drop whose notice was in flight is still
            // unannounced).
            let (mut records, mut bytes) = (queue.items.len() as u64, queue.bytes as u64);
            if let Some(in_flight) = queue.in_flight.take() {
                records += in_flight.records;
                bytes += in_flight.bytes;
                if let Some((notice_records, notice_bytes)) = in_flight.notice {
                    queue.dropped_records += notice_records;
                    queue.dropped_bytes += notice_bytes;
                }
            }
            queue.items.clear();
            queue.bytes = 0;
            queue.total_dropped_records += records;
            queue.total_dropped_bytes += bytes;
            if queue.total_dropped_records > 0 {
                tracing::warn!(
                    extension = %subscriber.name,
                    dropped_records = queue.total_dropped_records,
                    dropped_bytes = queue.total_dropped_bytes,
                    "telemetry subscriber did not receive every record"
                );
                if records > 0 || queue.dropped_records > 0 {
                    let notice = Record::LogsDropped(LogsDropped {
                        reason: format!(
                            "{} undelivered when the environment shut down",
                            subscriber.name
                        ),
                        dropped_records: records + queue.dropped_records,
                        dropped_bytes: bytes + queue.dropped_bytes,
                        extra: Default::default(),
                    });
                    let event = TelemetryEvent::new(iso8601_ms(SystemTime::now()), notice);
                    if let Ok(json) = serde_json::to_vec(&event) {
                        self.write_out(&json);
                    }
                }
                report.undelivered.push(Undelivered {
                    extension: subscriber.name.clone(),
                    dropped_records: queue.total_dropped_records,
                    dropped_bytes: queue.total_dropped_bytes,
                });
            }
        }
        self.flush_out();
        report
    }

    /// Flush `--telemetry-out` to disk (also done at shutdown).
    pub fn flush_out(&self) {
        if let Some(out) = lock(&self.inner.out).as_mut() {
            if let Err(error) = out.flush() {
                tracing::warn!(%error, "cannot write the telemetry output file");
            }
        }
    }

    /// The number of current subscribers.
    pub fn subscriber_count(&self) -> usize {
        lock(&self.inner.state).subscribers.len()
    }

    fn write_out(&self, json: &[u8]) {
        let mut out = lock(&self.inner.out);
        if let Some(writer) = out.as_mut() {
            let result = writer
                .write_all(json)
                .and_then(|()| writer.write_all(b"\n"));
            if let Err(error) = result {
                tracing::warn!(%error, "cannot write the telemetry output file; it is closed");
                *out = None;
            }
        }
    }
}

/// Where a subscriber's events go.
#[derive(Debug, Clone)]
enum Target {
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
        /// POST, or PUT for a Logs API subscriber that asked for it.
        put: bool,
    },
    Tcp {
        addr: SocketAddr,
    },
}

impl Target {
    fn from_request(api: Api, request: &SubscribeRequest) -> Result<Self, SubscribeError> {
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
                    // The Logs API delivers with the method the subscriber
                    // chose; the Telemetry API always POSTs (D-TEL, D-LOGS).
                    put: api == Api::Logs
                        && request
                            .destination
                            .method
                            .as_deref()
                            .is_some_and(|m| m.eq_ignore_ascii_case("PUT")),
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

#[derive(Debug)]
struct Subscriber {
    name: String,
    api: Api,
    types: Vec<LogType>,
    /// Logs API schema 2021-03-18: `platform.runtimeDone` is delivered.
    runtime_done: bool,
    limits: BufferingLimits,
    target: Target,
    queue: Mutex<Queue>,
    /// Wakes the delivery task; `notify_one` keeps a permit, so a wake-up
    /// sent while the task is busy is not lost.
    notify: Notify,
    freeze: Arc<Freeze>,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    /// When the oldest queued item arrived: the batch's `timeoutMs` runs
    /// from there.
    first_at: Option<Instant>,
    /// Drops not yet announced to the subscriber.
    dropped_records: u64,
    dropped_bytes: u64,
    drop_reason: &'static str,
    /// Every drop over the subscription's life.
    total_dropped_records: u64,
    total_dropped_bytes: u64,
    /// The batch being sent: records and bytes, plus the drop notice it
    /// carries, so that an abort at the shutdown deadline still counts them.
    in_flight: Option<InFlight>,
    flush_requested: bool,
    closing: bool,
    replaced: bool,
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
    fn add_drops(&mut self, records: u64, bytes: u64, reason: &'static str) {
        if self.dropped_records == 0 {
            self.drop_reason = reason;
        }
        self.dropped_records += records;
        self.dropped_bytes += bytes;
        self.total_dropped_records += records;
        self.total_dropped_bytes += bytes;
    }
}

impl Subscriber {
    /// Queue `recorded` if this subscriber wants it.
    fn offer(&self, recorded: &Recorded, limit: usize) {
        let mut queue = lock(&self.queue);
        self.push(&mut queue, recorded, limit);
    }

    fn push(&self, queue: &mut Queue, recorded: &Recorded, limit: usize) {
        if !self.types.contains(&recorded.log_type) {
            return;
        }
        let Some(json) = self.shape(recorded) else {
            return;
        };
        if queue.bytes + json.len() > limit {
            if queue.dropped_records == 0 {
                tracing::warn!(
                    extension = %self.name,
                    "telemetry subscriber is not keeping up; dropping records"
                );
            }
            queue.add_drops(1, json.len() as u64, REASON_SLOW_CONSUMER);
            return;
        }
        let was_empty = queue.items.is_empty();
        queue.bytes += json.len();
        queue.items.push_back(json);
        if was_empty {
            queue.first_at = Some(Instant::now());
        }
        // Wake the task when a batch can start or is full; in between it
        // sleeps until the batch's timeout.
        if was_empty
            || queue.items.len() >= self.limits.max_items as usize
            || queue.bytes >= self.limits.max_bytes as usize
        {
            self.notify.notify_one();
        }
    }

    /// The event as this subscriber's API shapes it, or `None` when the API
    /// does not deliver it.
    fn shape(&self, recorded: &Recorded) -> Option<Bytes> {
        let record = &recorded.event.record;
        match self.api {
            Api::Telemetry => match record {
                Record::End(_) | Record::Fault(_) | Record::LogsSubscription(_) => None,
                _ => Some(recorded.json.clone()),
            },
            Api::Logs => {
                let shaped = logs_record(record, self.runtime_done)?;
                let event = json!({
                    "time": recorded.event.time,
                    "type": record.event_type(),
                    "record": shaped,
                });
                serde_json::to_vec(&event).ok().map(Bytes::from)
            }
        }
    }
}

/// The Logs API's record for `record`, or `None` when the Logs API does not
/// deliver that type (contract section 3.3, D-LOGS).
fn logs_record(record: &Record, runtime_done: bool) -> Option<Value> {
    match record {
        Record::Start(start) => Some(json!({
            "requestId": start.request_id,
            "version": start.version.as_deref().unwrap_or("$LATEST"),
        })),
        Record::Report(report) => {
            let m = &report.metrics;
            let mut metrics = json!({ "durationMs": m.duration_ms });
            let extra = [
                ("billedDurationMs", m.billed_duration_ms.map(Value::from)),
                ("memorySizeMB", m.memory_size_mb.map(Value::from)),
                ("maxMemoryUsedMB", m.max_memory_used_mb.map(Value::from)),
                ("initDurationMs", m.init_duration_ms.map(Value::from)),
            ];
            for (key, value) in extra {
                if let (Some(value), Some(map)) = (value, metrics.as_object_mut()) {
                    map.insert(key.to_owned(), value);
                }
            }
            Some(json!({ "requestId": report.request_id, "metrics": metrics }))
        }
        Record::RuntimeDone(done) if runtime_done => Some(json!({
            "requestId": done.request_id,
            "status": done.status.as_str(),
        })),
        Record::End(End { .. })
        | Record::Fault(_)
        | Record::Extension(_)
        | Record::LogsSubscription(_)
        | Record::LogsDropped(_)
        | Record::Function(_)
        | Record::ExtensionLog(_) => Some(record.to_value()),
        _ => None,
    }
}

/// One subscriber's delivery loop: wait for a batch to fill or time out,
/// send it, repeat; one batch in flight at a time.
async fn deliver(subscriber: Arc<Subscriber>, post_timeout: Duration) {
    let mut sender = Sender::new(subscriber.target.clone());
    let timeout = Duration::from_millis(u64::from(subscriber.limits.timeout_ms));
    loop {
        // Phase 1: wait until a batch is due.
        let batch = loop {
            let due_at = {
                let mut queue = lock(&subscriber.queue);
                if queue.replaced {
                    return;
                }
                let due = queue.items.len() >= subscriber.limits.max_items as usize
                    || queue.bytes >= subscriber.limits.max_bytes as usize
                    || queue.closing
                    || queue.flush_requested;
                // At shutdown a drop notice alone is not sent: if the
                // subscriber is down it would be retried forever, and the
                // shutdown report carries the counts anyway.
                if queue.items.is_empty() && (queue.dropped_records == 0 || queue.closing) {
                    if queue.closing {
                        return;
                    }
                    queue.flush_requested = false;
                    None
                } else if subscriber.freeze.is_frozen() && !queue.closing {
                    // Frozen: wait for the thaw's wake-up. (At shutdown
                    // the core thaws first; closing delivers regardless.)
                    None
                } else if due {
                    queue.flush_requested = false;
                    break take_batch(&subscriber, &mut queue);
                } else {
                    Some(queue.first_at.unwrap_or_else(Instant::now) + timeout)
                }
            };
            match due_at {
                Some(at) if at <= Instant::now() => {
                    let mut queue = lock(&subscriber.queue);
                    break take_batch(&subscriber, &mut queue);
                }
                Some(at) => {
                    tokio::select! {
                        () = subscriber.notify.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => subscriber.notify.notified().await,
            }
        };
        let Some(batch) = batch else { continue };

        // Phase 2: send it.
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
        lock(&subscriber.queue).in_flight = None;
        if let Err(error) = result {
            let mut queue = lock(&subscriber.queue);
            // The notice (if any) was not delivered: its counts go back,
            // and the batch's own records are now dropped too.
            queue.add_drops(batch.records, batch.record_bytes, REASON_DELIVERY_FAILED);
            if let Some((records, bytes, reason)) = batch.notice {
                queue.dropped_records += records;
                queue.dropped_bytes += bytes;
                queue.drop_reason = reason;
            }
            tracing::warn!(
                extension = %subscriber.name,
                records = batch.records,
                %error,
                "telemetry batch not delivered; records dropped"
            );
        } else if let Some((records, bytes, _)) = batch.notice {
            tracing::warn!(
                extension = %subscriber.name,
                dropped_records = records,
                dropped_bytes = bytes,
                "platform.logsDropped sent to the subscriber"
            );
        }
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
        let record = Record::LogsDropped(LogsDropped {
            reason: queue.drop_reason.to_owned(),
            dropped_records: queue.dropped_records,
            dropped_bytes: queue.dropped_bytes,
            extra: Default::default(),
        });
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
    while let Some(next) = queue.items.front() {
        let added = next.len() + usize::from(!events.is_empty());
        if events.len() >= max_items || (!events.is_empty() && body_bytes + added > max_bytes) {
            break;
        }
        body_bytes += added;
        let item = queue.items.pop_front().unwrap_or_default();
        queue.bytes -= item.len();
        records += 1;
        record_bytes += item.len() as u64;
        events.push(item);
    }
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

/// Sends batches to one destination over one kept-alive connection,
/// reconnecting after any failure.
struct Sender {
    target: Target,
    http: Option<http1::SendRequest<Full<Bytes>>>,
    tcp: Option<TcpStream>,
}

impl Sender {
    fn new(target: Target) -> Self {
        Self {
            target,
            http: None,
            tcp: None,
        }
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
            } => self.post(addr, &host, &path, put, batch).await,
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
        put: bool,
        batch: &Batch,
    ) -> Result<(), String> {
        let mut body =
            Vec::with_capacity(batch.events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, event) in batch.events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event);
        }
        body.push(b']');
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
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the answer to the end so the connection can be reused.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
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
        let mut body = Vec::new();
        for event in &batch.events {
            body.extend_from_slice(event);
            body.push(b'\n');
        }
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
    use super::*;
    use lext_protocol::telemetry::{RuntimeDone, Status};

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
            event,
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
        assert_eq!(queue.items.len(), 2);
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
            event,
            json,
        };
        sub.push(&mut queue, &ext, usize::MAX);
        assert!(queue.items.is_empty());
    }

    #[test]
    fn logs_api_shapes() {
        let done = Record::RuntimeDone(RuntimeDone {
            request_id: "r".into(),
            status: Status::Success,
            error_type: None,
            metrics: None,
            spans: None,
            tracing: None,
            extra: Default::default(),
        });
        assert_eq!(logs_record(&done, false), None);
        assert_eq!(
            logs_record(&done, true),
            Some(json!({"requestId": "r", "status": "success"}))
        );
        let sub = Record::TelemetrySubscription(Subscription {
            name: "x".into(),
            state: "Subscribed".into(),
            types: vec![],
            extra: Default::default(),
        });
        assert_eq!(logs_record(&sub, true), None);
        assert_eq!(
            logs_record(&Record::Fault(LogRecord::Text("f".into())), false),
            Some(json!("f"))
        );
    }

    #[test]
    fn subscribe_needs_a_runtime_and_errors_read_like_aws() {
        let hub = Hub::new(HubConfig::default()).unwrap();
        let request = SubscribeRequest::http(vec![LogType::Platform], 4243);
        assert_eq!(
            hub.subscribe(Api::Telemetry, "x", &request),
            Err(SubscribeError::NoRuntime)
        );
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(
            SubscribeError::Closed(Api::Logs).to_string(),
            "Logs API subscription is closed already"
        );
    }
}
