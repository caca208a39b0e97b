//! The Telemetry API and Logs API delivery engine.
//!
//! This module owns what happens to every telemetry event after the sandbox
//! produced it: the [`Hub`] records each event (`platform.*` records from the
//! core, `function` and `extension` lines from [`crate::process`]), stamps it
//! with an ISO-8601 UTC millisecond time, hands it to the environment's
//! [`Sink`] (`--telemetry-out` is a [`JsonLinesSink`](crate::sink::JsonLinesSink)),
//! keeps the Init-phase events for replay to subscribers that join during
//! Init, and hands it to every subscriber whose types match. Each subscriber
//! has its own delivery task ([`delivery`]) that batches events into JSON
//! arrays and POSTs them (or writes them as newline-delimited JSON for a TCP
//! destination) with one batch in flight at a time, honouring the
//! subscription's `maxItems`, `maxBytes` and `timeoutMs` (AWS: Telemetry
//! API, <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>).
//!
//! Nothing is lost without being reported. A subscriber that is slow lets
//! its queue fill up to [`HubConfig::queue_limit_bytes`]; records beyond are
//! dropped and counted. A batch that cannot be delivered (connection
//! refused, a non-2xx answer, no answer within [`HubConfig::post_timeout`])
//! is dropped and counted too: like the Managed Instances telemetry of RIE
//! (github.com/aws/aws-lambda-runtime-interface-emulator,
//! `internal/lambda-managed-instances/aws-lambda-rie/internal/telemetry/internal/subscriber.go`),
//! and unlike real Lambda, which retries with a backoff the Telemetry API
//! page does not specify, the sandbox does not retry. Counted drops are
//! announced to that subscriber as a `platform.logsDropped` event at the
//! head of its next batch, logged as a `tracing` warning, given to the sink,
//! and whatever is still undelivered at shutdown is returned in the
//! [`FlushReport`] of [`Hub::shutdown`].
//!
//! Logs API subscribers get the Logs API's shapes ([`logs_api`]):
//! `platform.start`, `platform.end`, `platform.report` (metrics only),
//! `platform.fault`, `platform.extension`, `platform.logsSubscription`,
//! `platform.logsDropped`, `platform.runtimeDone` (schema `2021-03-18` only)
//! and the log lines; Telemetry API subscribers get every other platform
//! event but not the Logs-only ones (`platform.end`, `platform.fault`,
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

mod delivery;
mod logs_api;
#[cfg(test)]
mod tests_delivery;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lext_protocol::telemetry::{
    Api, LogRecord, LogType, LogsDropped, Record, SubscribeRequest, Subscription, TelemetryEvent,
};
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::logline::iso8601_ms;
use crate::process::{OutputLines, Source};
use crate::sink::Sink;
use delivery::{Courier, Freeze, Subscriber, Target};

/// `reason` of a `platform.logsDropped` for Init events that did not fit in
/// the replay buffer before this subscriber joined.
const REASON_REPLAY_OVERFLOW: &str =
    "Some logs produced before the subscription were dropped because the init buffer was full.";

/// Settings of the hub.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    /// Bytes of encoded events one subscriber may have waiting (beyond the
    /// batch in flight) before new records are dropped. The default, 64 MiB,
    /// holds a few hundred thousand log lines, so only a stalled or
    /// vanished subscriber loses records.
    pub(crate) queue_limit_bytes: usize,
    /// Bytes of Init events kept for replay (default 16 MiB).
    pub(crate) replay_limit_bytes: usize,
    /// How long one batch delivery may take before it counts as failed
    /// (default 5 s). Real Lambda's value is not documented.
    pub(crate) post_timeout: Duration,
    /// HTTP deliveries carry `Sequence-Id: base64(SHA-256(body))`, as
    /// Managed Instances send them (RIE
    /// `internal/lambda-managed-instances/aws-lambda-rie/internal/telemetry/internal/client.go`).
    pub(crate) sequence_id: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_limit_bytes: 64 * 1024 * 1024,
            replay_limit_bytes: 16 * 1024 * 1024,
            post_timeout: Duration::from_secs(5),
            sequence_id: false,
        }
    }
}

/// A subscription the hub refuses. Validation errors (400) are the core's
/// to detect with [`SubscribeRequest::validate`] before calling
/// [`Hub::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubscribeError {
    /// Init is over; the APIs answer 403 `Telemetry.SubscriptionClosed` /
    /// `Logs.SubscriptionClosed`.
    #[error("{} API subscription is closed already", api_name(*.0))]
    Closed(Api),
    /// The extension already subscribed through the other API. The
    /// Telemetry API page says only that this is an error, not with which
    /// status Lambda answers (AWS: Telemetry API,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>).
    #[error("extension {0} already subscribed through the other API")]
    MixedApis(String),
    /// The destination is unusable (only possible with an unvalidated
    /// request).
    #[error("invalid destination: {0}")]
    Destination(String),
    /// The delivery thread could not be started (the system is out of
    /// threads or memory).
    #[error("telemetry delivery cannot start: {0}")]
    NoDelivery(String),
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Telemetry => "Telemetry",
        Api::Logs => "Logs",
    }
}

/// What one subscriber did not get, reported at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undelivered {
    /// The extension's name.
    pub(crate) extension: String,
    /// Records dropped over the subscription's life, announced or not.
    pub(crate) dropped_records: u64,
    /// Their encoded size.
    pub(crate) dropped_bytes: u64,
    /// Of the records, those that existed when the extension was sent
    /// SHUTDOWN (all of them when it never was).
    pub(crate) before_shutdown: u64,
    /// How long after its SHUTDOWN the extension exited, if it did.
    pub(crate) exited_after_shutdown: Option<Duration>,
}

impl Undelivered {
    /// The one line that tells the user what this extension lost and why,
    /// or `None` when it lost only records written after its SHUTDOWN
    /// (those cannot reach it in Lambda either).
    pub(crate) fn line(&self) -> Option<String> {
        let name = crate::logline::printable(&self.extension);
        let n = self.before_shutdown;
        if n == 0 {
            return None;
        }
        Some(match self.exited_after_shutdown {
            Some(after) => format!(
                "extension {name} exited {} ms after SHUTDOWN with {n} telemetry records \
                 undelivered (the final platform.report arrives after SHUTDOWN; wait for it \
                 before exiting)",
                after.as_millis()
            ),
            None => format!(
                "extension {name} did not receive {n} telemetry records (see the warnings \
                 above: it fell behind, or could not be reached)"
            ),
        })
    }
}

/// The outcome of [`Hub::shutdown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FlushReport {
    /// Every subscriber that lost records, with its totals (including what
    /// was still queued at the deadline).
    pub(crate) undelivered: Vec<Undelivered>,
    /// Whether every subscriber finished within the deadline.
    pub(crate) completed: bool,
}

/// One recorded event, encoded once for every Telemetry API subscriber.
#[derive(Debug)]
struct Recorded {
    /// The typed event; `None` for an output line that nobody needed typed
    /// when it was recorded (see [`Hub::record_lines`]): its JSON says it
    /// all, and [`Recorded::event`] decodes it where it is wanted later.
    /// Boxed: a line's record is 64 bytes instead of 136, and a read of
    /// the function's output makes thousands of them.
    event: Option<Box<TelemetryEvent>>,
    log_type: LogType,
    json: Bytes,
}

impl Recorded {
    /// The typed event, decoded from the JSON when it was not kept.
    fn event(&self) -> Option<std::borrow::Cow<'_, TelemetryEvent>> {
        match &self.event {
            Some(event) => Some(std::borrow::Cow::Borrowed(&**event)),
            None => serde_json::from_slice(&self.json)
                .ok()
                .map(std::borrow::Cow::Owned),
        }
    }
}

/// The start of the wire form of a text record's event, up to its record:
/// `{"time":"...","type":"function","record":`. The lines of one read share
/// it, so it is built once for all of them.
fn text_event_prefix(time: &str, event_type: &str) -> Vec<u8> {
    let mut out = b"{\"time\":".to_vec();
    // Infallible: writing a string into a Vec.
    let _ = serde_json::to_writer(&mut out, time);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(b"\",\"record\":");
    out
}

/// Appends the wire form of a text record's event to `out`: what
/// `serde_json::to_vec(&TelemetryEvent)` gives for it, without building the
/// intermediate values. `prefix` is [`text_event_prefix`]'s.
fn encode_text_event(out: &mut Vec<u8>, prefix: &[u8], text: &str) {
    out.extend_from_slice(prefix);
    // Most lines have nothing to escape (no quote, backslash or control
    // character: serde_json escapes nothing else); one pass that the
    // compiler vectorises tells, and the text is copied as it is. The rest
    // is escaped by serde_json itself.
    let plain = !text.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Infallible: writing a string into a Vec.
        let _ = serde_json::to_writer(&mut *out, text);
    }
    out.push(b'}');
}

/// The records of one read's lines, encoded one after the other into one
/// buffer with a comma between two records, so that a run of them is
/// already the inside of a JSON array: a Telemetry API subscriber's batch
/// is sent as slices of it, with no copy per record.
#[derive(Debug)]
struct Run {
    buf: Bytes,
    /// Where each record ends (its comma follows; the next starts after it).
    ends: Vec<usize>,
    log_type: LogType,
}

impl Run {
    /// The records of `lines`, of type `event_type`, all at `time`.
    fn encode(time: &str, event_type: &str, log_type: LogType, lines: &[String]) -> Self {
        let prefix = text_event_prefix(time, event_type);
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + prefix.len() + 4).sum());
        let mut ends = Vec::with_capacity(lines.len());
        for text in lines {
            if !ends.is_empty() {
                buf.push(b',');
            }
            encode_text_event(&mut buf, &prefix, text);
            ends.push(buf.len());
        }
        Self {
            buf: Bytes::from(buf),
            ends,
            log_type,
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Where record `i` starts.
    fn start(&self, i: usize) -> usize {
        match i {
            0 => 0,
            i => self.ends[i - 1] + 1,
        }
    }

    /// Record `i` alone.
    fn record(&self, i: usize) -> Bytes {
        self.buf.slice(self.start(i)..self.ends[i])
    }

    /// Records `from..to` (at least one), with their commas between them.
    fn records(&self, from: usize, to: usize) -> Bytes {
        self.buf.slice(self.start(from)..self.ends[to - 1])
    }

    /// The size of record `i`.
    fn size(&self, i: usize) -> usize {
        self.ends[i] - self.start(i)
    }
}

/// The telemetry hub. Cloning it is cheap; all clones share one hub.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    /// A std mutex: it is never held across an `await`, and `record` is
    /// called from synchronous contexts (the output line sink).
    state: Mutex<State>,
    /// Where every recorded event goes besides the subscribers.
    sink: Arc<dyn Sink>,
    /// `sink.wants_events()`, asked once.
    wants_events: bool,
    freeze: Arc<Freeze>,
    /// The request id of the invoke running now, for the JSON log
    /// format's wrapped lines.
    current_request: Mutex<Option<Arc<str>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("wants_events", &self.wants_events)
            .field("freeze", &self.freeze)
            .finish_non_exhaustive()
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
    /// The delivery tasks' thread, from the first subscription on.
    courier: Option<Courier>,
}

impl State {
    /// Keeps an Init event for late subscribers, within `limit` bytes;
    /// past it the event is counted as dropped from the replay.
    fn keep_for_replay(&mut self, recorded: Arc<Recorded>, limit: usize) {
        let size = recorded.json.len();
        if self.replay_bytes + size <= limit {
            self.replay_bytes += size;
            self.replay.push_back(recorded);
        } else {
            self.replay_dropped_records += 1;
            self.replay_dropped_bytes += size as u64;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going
    // rather than losing telemetry.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// A hub in the Init phase (subscriptions open, replay recording) that
    /// gives every recorded event to `sink` as well.
    pub(crate) fn new(config: HubConfig, sink: Arc<dyn Sink>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    open: true,
                    ..State::default()
                }),
                wants_events: sink.wants_events(),
                sink,
                freeze: Arc::default(),
                current_request: Mutex::new(None),
            }),
        }
    }

    /// Record an event stamped with the current time.
    pub(crate) fn record(&self, record: Record) {
        self.record_at(SystemTime::now(), record);
    }

    /// Record an event that happened at `time`.
    pub(crate) fn record_at(&self, time: SystemTime, record: Record) {
        // Nobody can ever see the event (no sink wants it, no subscriber,
        // Init over so no future subscriber either): skip the encoding,
        // which is most of the cost of an event on the invoke path.
        if !self.inner.wants_events {
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
            event: Some(Box::new(event)),
            json,
        });
        if let Some(event) = &recorded.event {
            self.inner.sink.event(event, &recorded.json);
        }
        let mut state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            subscriber.offer(&recorded, self.inner.config.queue_limit_bytes);
        }
        if state.open {
            state.keep_for_replay(recorded, self.inner.config.replay_limit_bytes);
        }
    }

    /// The invoke running now (`None` between invokes), for the lines
    /// written meanwhile.
    pub(crate) fn set_current_request(&self, request_id: Option<&str>) {
        *lock(&self.inner.current_request) = request_id.map(Arc::from);
    }

    /// The request id of the invoke running now.
    pub(crate) fn current_request(&self) -> Option<Arc<str>> {
        lock(&self.inner.current_request).clone()
    }

    /// Records the lines of one read of a process's output, each as a
    /// `function` or `extension` event: their JSON encoded into one buffer
    /// that every Telemetry API subscriber shares, the locks taken once for
    /// the batch.
    pub(crate) fn record_lines(&self, batch: &OutputLines) {
        // Typed events are built only for whoever reads them: the sinks,
        // the Logs API's own encoding, and the Init replay (a Logs API
        // subscriber may still come). Telemetry API subscribers need only
        // the JSON.
        let typed = {
            let state = lock(&self.inner.state);
            if !self.inner.wants_events && !state.open && state.subscribers.is_empty() {
                return;
            }
            self.inner.wants_events
                || state.open
                || state.subscribers.iter().any(|s| s.api == Api::Logs)
        };
        let time = iso8601_ms(batch.time);
        let (event_type, log_type) = match batch.source {
            Source::Function => ("function", LogType::Function),
            Source::Extension(_) => ("extension", LogType::Extension),
        };
        let run = Run::encode(&time, event_type, log_type, &batch.lines);
        // Each record on its own, for whoever wants them one by one.
        let recorded: Vec<Recorded> = if typed {
            batch
                .lines
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let text = LogRecord::Text(text.clone());
                    let record = match batch.source {
                        Source::Function => Record::Function(text),
                        Source::Extension(_) => Record::ExtensionLog(text),
                    };
                    Recorded {
                        event: Some(Box::new(TelemetryEvent::new(time.clone(), record))),
                        log_type: run.log_type.clone(),
                        json: run.record(i),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        if self.inner.wants_events {
            let events: Vec<(&TelemetryEvent, &[u8])> = recorded
                .iter()
                .filter_map(|r| Some((&**r.event.as_ref()?, r.json.as_ref())))
                .collect();
            self.inner.sink.events(&events);
        }
        let run = Arc::new(run);
        let mut state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            subscriber.offer_run(&run, &recorded, self.inner.config.queue_limit_bytes);
        }
        if state.open {
            for recorded in recorded {
                state.keep_for_replay(Arc::new(recorded), self.inner.config.replay_limit_bytes);
            }
        }
    }

    /// Subscribe `extension` through `api` with a request the core has
    /// validated. Starts its delivery task (on the hub's delivery thread),
    /// replays the Init events recorded so far that match its types, and
    /// records `platform.telemetrySubscription` or
    /// `platform.logsSubscription`.
    ///
    /// A repeated subscription by the same extension replaces the previous
    /// one, and pending events move over. The Logs API is documented as
    /// idempotent (AWS: Lambda Logs API,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-logs-api.html>);
    /// the Telemetry API page does not say.
    pub(crate) fn subscribe(
        &self,
        api: Api,
        extension: &str,
        request: &SubscribeRequest,
    ) -> Result<(), SubscribeError> {
        let mut target = Target::from_request(api, request)?;
        if let Target::Http { sequence_id, .. } = &mut target {
            *sequence_id = self.inner.config.sequence_id;
        }
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
            let courier = match &state.courier {
                Some(courier) => courier.clone(),
                None => {
                    let courier =
                        Courier::start().map_err(|e| SubscribeError::NoDelivery(e.to_string()))?;
                    state.courier.insert(courier).clone()
                }
            };
            let previous = state
                .subscribers
                .iter()
                .position(|s| s.name == extension && s.api == api)
                .map(|i| state.subscribers.remove(i));
            subscriber = Arc::new(Subscriber::new(
                extension,
                api,
                request,
                target,
                self.inner.freeze.clone(),
            ));
            {
                let mut queue = lock(&subscriber.queue);
                match &previous {
                    // The old subscription's undelivered events move over;
                    // its task ends when it sees the `replaced` flag.
                    Some(old) => {
                        let mut old_queue = lock(&old.queue);
                        queue.take_over(&mut old_queue);
                        old.notify.notify_one();
                    }
                    None => {
                        if state.replay_dropped_records > 0 {
                            queue.add_lost_new(
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
            let task = courier.deliver(subscriber.clone(), self.inner.config.post_timeout);
            state.subscribers.push(subscriber.clone());
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
            Api::Telemetry => Record::TelemetrySubscription(Box::new(record)),
            Api::Logs => Record::LogsSubscription(Box::new(record)),
        });
        tracing::debug!(extension, api = api_name(api), "telemetry subscriber added");
        Ok(())
    }

    /// End of Init: later subscriptions are refused with
    /// [`SubscribeError::Closed`], and the replay buffer is released.
    pub(crate) fn close_subscriptions(&self) {
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
    pub(crate) fn begin_init(&self) {
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
    pub(crate) fn freeze(&self) {
        self.inner.freeze.freeze();
    }

    /// The processes were thawed (SIGCONT): deliver what is due.
    pub(crate) fn thaw(&self) {
        self.inner.freeze.thaw();
        let state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            subscriber.notify.notify_one();
        }
    }

    /// Send what every subscriber has queued now, without waiting for
    /// `timeoutMs` (when shutdown starts).
    pub(crate) fn flush_now(&self) {
        let state = lock(&self.inner.state);
        for subscriber in &state.subscribers {
            lock(&subscriber.queue).flush_requested = true;
            subscriber.notify.notify_one();
        }
    }

    /// `extension` is being sent SHUTDOWN: what its subscription holds now
    /// existed before it (see [`Undelivered::before_shutdown`]).
    pub(crate) fn shutdown_sent(&self, extension: &str) {
        self.each_of(extension, delivery::Queue::mark_shutdown);
    }

    /// `extension`'s process exited.
    pub(crate) fn extension_exited(&self, extension: &str) {
        self.each_of(extension, |queue| {
            if queue.cutoff.exited_at.is_none() {
                queue.cutoff.exited_at = Some(Instant::now());
            }
        });
    }

    fn each_of(&self, extension: &str, mut f: impl FnMut(&mut delivery::Queue)) {
        let state = lock(&self.inner.state);
        for subscriber in state.subscribers.iter().filter(|s| s.name == extension) {
            f(&mut lock(&subscriber.queue));
        }
    }

    /// Deliver everything pending to every subscriber within `deadline`,
    /// then remove all subscribers and flush the sink. What could not be
    /// delivered is logged as a warning, given to the sink as
    /// `platform.logsDropped`, and returned.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> FlushReport {
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
        let until = tokio::time::Instant::now() + deadline;
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
            let (records, bytes) = queue.abandon();
            if queue.total_dropped_records > 0 {
                if records > 0 || queue.dropped_records > 0 {
                    let notice = Record::LogsDropped(Box::new(LogsDropped {
                        reason: format!(
                            "{} undelivered when the environment shut down",
                            subscriber.name
                        ),
                        dropped_records: records + queue.dropped_records,
                        dropped_bytes: bytes + queue.dropped_bytes,
                        extra: Default::default(),
                    }));
                    let event = TelemetryEvent::new(iso8601_ms(SystemTime::now()), notice);
                    if let Ok(json) = serde_json::to_vec(&event) {
                        self.inner.sink.event(&event, &json);
                    }
                }
                let cutoff = queue.cutoff;
                let lost = Undelivered {
                    extension: subscriber.name.clone(),
                    dropped_records: queue.total_dropped_records,
                    dropped_bytes: queue.total_dropped_bytes,
                    before_shutdown: cutoff.lost_before,
                    exited_after_shutdown: cutoff
                        .shutdown_at
                        .zip(cutoff.exited_at)
                        .map(|(sent, exited)| exited.saturating_duration_since(sent)),
                };
                if let Some(line) = lost.line() {
                    tracing::warn!("{line}");
                }
                if cutoff.lost_after > 0 {
                    tracing::debug!(
                        extension = ?subscriber.name,
                        records = cutoff.lost_after,
                        "records written after the extension's SHUTDOWN did not reach it (nor would they in Lambda)"
                    );
                }
                report.undelivered.push(lost);
            }
        }
        self.inner.sink.flush();
        report
    }

    /// The number of current subscribers.
    #[cfg(test)]
    pub(crate) fn subscriber_count(&self) -> usize {
        lock(&self.inner.state).subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Capture;

    proptest::proptest! {
        /// The hand-built wire form of a line's event is byte for byte what
        /// the protocol's encoder gives, for any text.
        #[test]
        fn a_lines_event_is_encoded_as_the_protocol_encodes_it(text in "\\PC*|[\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}é😀a]*") {
            let time = "2026-12-02T08:00:00.123Z";
            for (event_type, record) in [
                ("function", Record::Function(LogRecord::Text(text.clone()))),
                ("extension", Record::ExtensionLog(LogRecord::Text(text.clone()))),
            ] {
                let mut ours = Vec::new();
                encode_text_event(&mut ours, &text_event_prefix(time, event_type), &text);
                let theirs = serde_json::to_vec(&TelemetryEvent::new(time, record)).unwrap();
                proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
            }
        }
    }

    #[test]
    fn subscribe_needs_no_runtime_and_errors_read_like_aws() {
        // Delivery runs on the hub's own thread, so a caller outside any
        // tokio runtime can subscribe; the thread ends with the hub.
        let hub = Hub::new(HubConfig::default(), Arc::new(Capture::new()));
        let request = SubscribeRequest::http(vec![LogType::Platform], 4243);
        assert_eq!(hub.subscribe(Api::Telemetry, "x", &request), Ok(()));
        assert_eq!(hub.subscriber_count(), 1);
        drop(hub);
        assert_eq!(
            SubscribeError::Closed(Api::Logs).to_string(),
            "Logs API subscription is closed already"
        );
    }
}
