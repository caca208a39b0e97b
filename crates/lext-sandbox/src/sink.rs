//! Where an environment's output goes: its log lines (the platform's
//! `START`/`END`/`REPORT`, the runtime's and the extensions' output) and its
//! telemetry events (everything the Telemetry and Logs APIs carry).
//!
//! A [`Sink`] receives both. Three are ready to use: [`ConsoleSink`] prints
//! the log the way the CloudWatch console shows it, [`JsonLinesSink`] writes
//! every telemetry event to a file as one JSON line, and [`Capture`] keeps
//! both in memory for tests. An environment can have several; each gets
//! everything.
//!
//! Sinks are called from the environment's own tasks, in the order things
//! happen. They must not block for long: the console sink hands lines to a
//! thread of its own, the capture takes a lock for a push.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use lext_protocol::telemetry::{Record, TelemetryEvent};

/// Who wrote a line of the environment's log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LineSource {
    /// The platform (`START`, `REPORT`, ...).
    Platform,
    /// The function runtime.
    Function,
    /// An extension, by name.
    Extension(String),
}

/// One line of the environment's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: SystemTime,
    /// Who wrote it.
    pub source: LineSource,
    /// The text, without a newline.
    pub text: String,
}

/// A receiver of an environment's log lines and telemetry events.
///
/// Both methods have empty defaults, so a sink implements what it wants.
pub trait Sink: Send + Sync + 'static {
    /// One line of the environment's log, in order.
    fn line(&self, line: LogLine) {
        let _ = line;
    }

    /// One telemetry event as the environment recorded it (stamped with its
    /// time), with its JSON encoding. Every event either API carries comes
    /// here once, including the Logs-API-only `platform.end` and
    /// `platform.fault`, and the `platform.logsDropped` notices.
    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        let _ = (event, json);
    }

    /// Whether [`event`](Self::event) does anything. When no sink and no
    /// subscriber wants events, the environment skips encoding them, which
    /// is most of an event's cost.
    fn wants_events(&self) -> bool {
        true
    }

    /// Writes out what is buffered. Called when the environment stops.
    fn flush(&self) {}
}

/// Several sinks as one: each gets everything, in the order given.
#[derive(Clone, Default)]
pub(crate) struct Fanout {
    sinks: Vec<Arc<dyn Sink>>,
    wants_events: bool,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Fanout {
    pub(crate) fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        let wants_events = sinks.iter().any(|s| s.wants_events());
        Self {
            sinks,
            wants_events,
        }
    }
}

impl Sink for Fanout {
    fn line(&self, line: LogLine) {
        // The last sink takes the line itself: with one sink (the usual
        // case) no line is copied.
        if let Some((last, rest)) = self.sinks.split_last() {
            for sink in rest {
                sink.line(line.clone());
            }
            last.line(line);
        }
    }

    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        for sink in &self.sinks {
            sink.event(event, json);
        }
    }

    fn wants_events(&self) -> bool {
        self.wants_events
    }

    fn flush(&self) {
        for sink in &self.sinks {
            sink.flush();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; poisoned data is still the
    // right data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ----- Console ---------------------------------------------------------------

/// Prints the log on standard output as the CloudWatch console shows it:
/// `2026-11-25T07:07:23.661Z START RequestId: ...`.
///
/// Lines arrive from several tasks (platform lines, each process's output)
/// and are written by a thread of its own through one buffer that is flushed
/// whenever no more lines are waiting, so a burst of lines costs one write,
/// not one per line, and the environment never waits for the terminal. A
/// closed standard output loses the lines (they are in the telemetry too)
/// but never stops the environment.
#[derive(Debug)]
pub struct ConsoleSink {
    tx: mpsc::Sender<ConsoleMsg>,
}

#[derive(Debug)]
enum ConsoleMsg {
    /// A line and its time; formatted on the printer thread, straight into
    /// its buffer (no per-line string on the environment's thread).
    Line(SystemTime, String),
    /// Flush, then answer.
    Sync(mpsc::Sender<()>),
}

impl ConsoleSink {
    /// Starts the printer thread. It ends when the sink is dropped.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<ConsoleMsg>();
        std::thread::spawn(move || {
            let mut out = BufWriter::new(io::stdout().lock());
            while let Ok(msg) = rx.recv() {
                let mut next = Some(msg);
                while let Some(msg) = next {
                    match msg {
                        ConsoleMsg::Line(time, text) => {
                            let time = crate::logline::iso8601_ms(time);
                            let _ = writeln!(out, "{time} {text}");
                        }
                        ConsoleMsg::Sync(ack) => {
                            let _ = out.flush();
                            let _ = ack.send(());
                        }
                    }
                    next = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
            let _ = out.flush();
        });
        Self { tx }
    }
}

impl Default for ConsoleSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for ConsoleSink {
    fn line(&self, line: LogLine) {
        let _ = self.tx.send(ConsoleMsg::Line(line.time, line.text));
    }

    fn wants_events(&self) -> bool {
        false
    }

    /// Waits (at most 5 s) until every line sent so far is written.
    fn flush(&self) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(ConsoleMsg::Sync(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }
}

// ----- JSON lines ------------------------------------------------------------

/// Writes the telemetry events a Telemetry API subscriber to every type
/// receives to a file, one JSON document a line, exactly as encoded for the
/// subscribers (`lext run --telemetry-out FILE`). The Logs API's own
/// records (`platform.end`, `platform.fault`, `platform.logsSubscription`)
/// are not written: no Telemetry API subscriber gets them.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    /// `None` once a write failed: the error is reported once, not per event.
    out: Mutex<Option<BufWriter<File>>>,
}

impl JsonLinesSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path)?;
        Ok(Self {
            path,
            out: Mutex::new(Some(BufWriter::new(file))),
        })
    }
}

impl Sink for JsonLinesSink {
    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        if event.record.is_logs_api_only() {
            return;
        }
        let mut out = lock(&self.out);
        if let Some(writer) = out.as_mut() {
            let result = writer
                .write_all(json)
                .and_then(|()| writer.write_all(b"\n"));
            if let Err(error) = result {
                tracing::warn!(path = %self.path.display(), %error, "cannot write the telemetry output file; it is closed");
                *out = None;
            }
        }
    }

    fn flush(&self) {
        if let Some(out) = lock(&self.out).as_mut() {
            if let Err(error) = out.flush() {
                tracing::warn!(path = %self.path.display(), %error, "cannot write the telemetry output file");
            }
        }
    }
}

// ----- Capture ---------------------------------------------------------------

/// Keeps the log lines and telemetry events in memory, for tests.
///
/// Cloning it is cheap; the clones share one store, so a test keeps a clone
/// and gives the environment another. Each kind is bounded
/// ([`Capture::with_limit`], 100,000 by default): past the bound the oldest
/// entries are dropped and counted ([`Capture::dropped`]), never the newest.
#[derive(Debug, Clone)]
pub struct Capture {
    inner: Arc<CaptureInner>,
}

#[derive(Debug)]
struct CaptureInner {
    limit: usize,
    lines: Mutex<VecDeque<LogLine>>,
    events: Mutex<VecDeque<TelemetryEvent>>,
    dropped: AtomicU64,
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    /// The default bound of each kind.
    pub const DEFAULT_LIMIT: usize = 100_000;

    /// An empty capture with the default bound.
    pub fn new() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }

    /// An empty capture that keeps at most `limit` lines and `limit` events.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            inner: Arc::new(CaptureInner {
                limit: limit.max(1),
                lines: Mutex::default(),
                events: Mutex::default(),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        lock(&self.inner.lines).iter().cloned().collect()
    }

    /// The text of the platform's lines so far (`EXTENSION`, `START`, `END`,
    /// `REPORT`, ...).
    pub fn platform_lines(&self) -> Vec<String> {
        lock(&self.inner.lines)
            .iter()
            .filter(|l| l.source == LineSource::Platform)
            .map(|l| l.text.clone())
            .collect()
    }

    /// Every telemetry event so far.
    pub fn events(&self) -> Vec<TelemetryEvent> {
        lock(&self.inner.events).iter().cloned().collect()
    }

    /// The records of the events so far whose type is `event_type` (for
    /// example `"platform.report"`).
    pub fn records(&self, event_type: &str) -> Vec<Record> {
        lock(&self.inner.events)
            .iter()
            .filter(|e| e.record.event_type() == event_type)
            .map(|e| e.record.clone())
            .collect()
    }

    /// Lines and events dropped because the capture was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Forgets everything captured so far.
    pub fn clear(&self) {
        lock(&self.inner.lines).clear();
        lock(&self.inner.events).clear();
    }

    fn push<T>(&self, queue: &Mutex<VecDeque<T>>, item: T) {
        let mut queue = lock(queue);
        if queue.len() >= self.inner.limit {
            queue.pop_front();
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(item);
    }
}

impl Sink for Capture {
    fn line(&self, line: LogLine) {
        self.push(&self.inner.lines, line);
    }

    fn event(&self, event: &TelemetryEvent, _json: &[u8]) {
        self.push(&self.inner.events, event.clone());
    }
}

#[cfg(test)]
mod tests {
    use lext_protocol::telemetry::LogRecord;

    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            time: SystemTime::UNIX_EPOCH,
            source: LineSource::Platform,
            text: text.to_owned(),
        }
    }

    #[test]
    fn capture_keeps_the_newest_and_counts_what_it_drops() {
        let capture = Capture::with_limit(2);
        for text in ["a", "b", "c"] {
            capture.line(line(text));
        }
        assert_eq!(capture.platform_lines(), ["b", "c"]);
        assert_eq!(capture.dropped(), 1);
        let event = TelemetryEvent::new("t", Record::Function(LogRecord::Text("x".into())));
        capture.event(&event, b"{}");
        assert_eq!(capture.records("function").len(), 1);
        assert!(capture.records("platform.report").is_empty());
    }

    #[test]
    fn fanout_gives_every_sink_everything() {
        let (a, b) = (Capture::new(), Capture::new());
        let fanout = Fanout::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
        fanout.line(line("START"));
        assert_eq!(a.platform_lines(), ["START"]);
        assert_eq!(b.platform_lines(), ["START"]);
        assert!(fanout.wants_events());
        let quiet = Fanout::new(vec![Arc::new(ConsoleSink::new())]);
        assert!(!quiet.wants_events());
    }

    #[test]
    fn json_lines_are_written_as_given() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("t.jsonl");
        let sink = JsonLinesSink::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let event = TelemetryEvent::new("t", Record::Function(LogRecord::Text("x".into())));
        sink.event(&event, b"{\"a\":1}");
        sink.event(&event, b"{\"b\":2}");
        sink.flush();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
        assert!(JsonLinesSink::create(dir.path().join("no/such/dir")).is_err());
    }
}
