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
//! happen. They must not block: the console and JSON-lines sinks hand what
//! they get to a bounded queue and a thread of their own, the capture takes a
//! lock for a push.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use lext_protocol::telemetry::{Record, TelemetryEvent};

use crate::marks::Mark;
use crate::spool::{Losses, Spool};

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
    /// Which environment of a [`Function`](crate::Function) wrote it
    /// (`env-2`), as CloudWatch keeps one log stream per environment;
    /// `None` for a lone [`Environment`](crate::Environment).
    pub environment: Option<Arc<str>>,
}

/// A receiver of an environment's log lines and telemetry events.
///
/// Both methods have empty defaults, so a sink implements what it wants.
pub trait Sink: Send + Sync + 'static {
    /// One line of the environment's log, in order.
    fn line(&self, line: LogLine) {
        let _ = line;
    }

    /// Several lines of the log, in order: the lines one read of a
    /// process's output brought. The default gives each to
    /// [`line`](Self::line); a sink that takes a lock per line can take it
    /// once here.
    fn lines(&self, lines: Vec<LogLine>) {
        for line in lines {
            self.line(line);
        }
    }

    /// One telemetry event as the environment recorded it (stamped with its
    /// time), with its JSON encoding. Every event either API carries comes
    /// here once, including the Logs-API-only `platform.end` and
    /// `platform.fault`, and the `platform.logsDropped` notices.
    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        let _ = (event, json);
    }

    /// Several events, in order, each with its JSON encoding (the records
    /// of the lines given to [`lines`](Self::lines)). The default gives each
    /// to [`event`](Self::event).
    fn events(&self, events: &[(&TelemetryEvent, &[u8])]) {
        for (event, json) in events {
            self.event(event, json);
        }
    }

    /// Whether [`event`](Self::event) does anything. When no sink and no
    /// subscriber wants events, the environment skips encoding them, which
    /// is most of an event's cost.
    fn wants_events(&self) -> bool {
        true
    }

    /// Writes out what is buffered. Called when the environment stops.
    fn flush(&self) {}

    /// One moment of a process's life that no record tells (see
    /// [`Mark`]), for a sink that draws a timeline. The default ignores it.
    fn mark(&self, mark: &Mark<'_>) {
        let _ = mark;
    }
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

    fn lines(&self, lines: Vec<LogLine>) {
        if let Some((last, rest)) = self.sinks.split_last() {
            for sink in rest {
                sink.lines(lines.clone());
            }
            last.lines(lines);
        }
    }

    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        for sink in &self.sinks {
            sink.event(event, json);
        }
    }

    fn events(&self, events: &[(&TelemetryEvent, &[u8])]) {
        for sink in &self.sinks {
            sink.events(events);
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

    fn mark(&self, mark: &Mark<'_>) {
        for sink in &self.sinks {
            sink.mark(mark);
        }
    }
}

/// The lines and events of one environment of a [`Function`](crate::Function),
/// each marked with the environment's label before it reaches the sinks:
/// lines in [`LogLine::environment`], events with an `"environment"` key
/// first in their JSON (so `--telemetry-out` says whose each record is).
/// Subscribers get the records unmarked, as Lambda sends them.
pub(crate) struct Tagged {
    inner: Arc<dyn Sink>,
    label: Arc<str>,
}

impl Tagged {
    pub(crate) fn new(inner: Arc<dyn Sink>, label: Arc<str>) -> Self {
        Self { inner, label }
    }
}

impl Sink for Tagged {
    fn line(&self, mut line: LogLine) {
        line.environment = Some(self.label.clone());
        self.inner.line(line);
    }

    fn lines(&self, mut lines: Vec<LogLine>) {
        for line in &mut lines {
            line.environment = Some(self.label.clone());
        }
        self.inner.lines(lines);
    }

    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        match tagged_json(json, &self.label) {
            Some(tagged) => self.inner.event(event, &tagged),
            None => self.inner.event(event, json),
        }
    }

    fn wants_events(&self) -> bool {
        self.inner.wants_events()
    }

    fn flush(&self) {
        self.inner.flush();
    }

    fn mark(&self, mark: &Mark<'_>) {
        self.inner.mark(mark);
    }
}

/// `json` (an object) with `"environment":"<label>"` as its first key, or
/// `None` when it is no object. The label is lext's own (`env-N`), with
/// nothing to escape.
fn tagged_json(json: &[u8], label: &str) -> Option<Vec<u8>> {
    let rest = json.strip_prefix(b"{")?;
    let mut out = Vec::with_capacity(json.len() + label.len() + 20);
    out.extend_from_slice(b"{\"environment\":\"");
    out.extend_from_slice(label.as_bytes());
    out.push(b'"');
    if !rest.trim_ascii_start().starts_with(b"}") {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; poisoned data is still the
    // right data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ----- Console ---------------------------------------------------------------

/// `time` as the console prints it, formatted once for the lines that share
/// it (those of one read of a process's output).
fn stamp(last: &mut Option<(SystemTime, String)>, time: SystemTime) -> &str {
    if last.as_ref().is_none_or(|(t, _)| *t != time) {
        *last = Some((time, crate::logline::iso8601_ms(time)));
    }
    last.as_ref().map_or("", |(_, text)| text)
}

/// How many bytes of lines [`ConsoleSink`] and [`JsonLinesSink`] hold while
/// their output is slower than the environment: 16 MiB. Past it, lines and
/// records are dropped and counted, and the count is printed when the
/// environment stops.
pub const OUTPUT_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// How long a sink's [`flush`](Sink::flush) waits for its output to take
/// what is queued before it reports the rest unwritten.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Prints the log on standard output as the CloudWatch console shows it:
/// `2026-11-25T07:07:23.661Z START RequestId: ...`.
///
/// Lines arrive from several tasks (platform lines, each process's output)
/// and are written by a thread of its own, which takes every line waiting
/// and writes them as one batch, so a burst of lines costs one write, not one
/// per line, and the environment never waits for the terminal. At most
/// [`OUTPUT_BUFFER_BYTES`] wait: when standard output is slower than that (a
/// pipe nobody reads), lines are dropped and counted, a warning says so at
/// the first, and [`flush`](Sink::flush) prints the total. A closed standard
/// output loses the lines (they are in the telemetry too) but never stops
/// the environment.
#[derive(Debug)]
pub struct ConsoleSink {
    spool: Spool<(SystemTime, Option<Arc<str>>, String)>,
    report: LossReport,
}

impl ConsoleSink {
    /// Starts the printer thread. It ends when the sink is dropped.
    ///
    /// # Panics
    /// If the thread cannot be started (the process is out of threads).
    pub fn new() -> Self {
        Self::start(true)
    }

    /// As [`new`](Self::new), but each line is printed as it is, without
    /// the time in front: for the JSON log format, whose lines carry their
    /// own, so that standard output is one JSON document a line.
    pub fn without_times() -> Self {
        Self::start(false)
    }

    fn start(times: bool) -> Self {
        let mut last: Option<(SystemTime, String)> = None;
        let spool = Spool::start(
            "lext-console",
            io::stdout(),
            OUTPUT_BUFFER_BYTES,
            move |out, (time, environment, text): (SystemTime, Option<Arc<str>>, String)| {
                match (times, environment) {
                    (false, None) => writeln!(out, "{text}"),
                    // A JSON line says its environment as its first key,
                    // so that each line stays one JSON document.
                    (false, Some(env)) => match tagged_json(text.as_bytes(), &env) {
                        Some(json) => {
                            out.write_all(&json)?;
                            out.write_all(b"\n")
                        }
                        None => writeln!(out, "[{env}] {text}"),
                    },
                    (true, None) => {
                        out.write_all(stamp(&mut last, time).as_bytes())?;
                        out.write_all(b" ")?;
                        out.write_all(text.as_bytes())?;
                        out.write_all(b"\n")
                    }
                    (true, Some(env)) => {
                        writeln!(out, "{} [{env}] {text}", stamp(&mut last, time))
                    }
                }
            },
            // A closed standard output (`lext run | head`) is not an error
            // worth a line: the lines are in the telemetry too.
            |_| {},
        )
        .unwrap_or_else(|error| panic!("cannot start the console thread: {error}"));
        Self {
            spool,
            report: LossReport::new("log lines", "standard output"),
        }
    }

    /// Lines dropped so far because standard output did not keep up.
    pub fn dropped(&self) -> u64 {
        self.spool.dropped()
    }
}

impl Default for ConsoleSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for ConsoleSink {
    fn line(&self, line: LogLine) {
        let size = line.text.len();
        if !self
            .spool
            .push((line.time, line.environment, line.text), size)
        {
            self.report.first_drop(self.spool.dropped());
        }
    }

    fn lines(&self, lines: Vec<LogLine>) {
        let items = lines.into_iter().map(|line| {
            let size = line.text.len();
            ((line.time, line.environment, line.text), size)
        });
        if self.spool.push_all(items) > 0 {
            self.report.first_drop(self.spool.dropped());
        }
    }

    fn wants_events(&self) -> bool {
        false
    }

    /// Waits (at most 5 s) until every line sent so far is written, and
    /// reports what was dropped or is still unwritten.
    fn flush(&self) {
        self.report.totals(self.spool.flush(FLUSH_WAIT));
    }
}

/// Says, once, that a sink began to drop, and at each flush what it lost
/// since the last.
#[derive(Debug)]
struct LossReport {
    what: &'static str,
    output: &'static str,
    warned: AtomicBool,
    reported: Mutex<Losses>,
}

impl LossReport {
    fn new(what: &'static str, output: &'static str) -> Self {
        Self {
            what,
            output,
            warned: AtomicBool::new(false),
            reported: Mutex::default(),
        }
    }

    fn first_drop(&self, dropped: u64) {
        if dropped > 0 && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{} is not keeping up: lext drops the {} it cannot hold ({} MiB) and counts them",
                self.output,
                self.what,
                OUTPUT_BUFFER_BYTES >> 20,
            );
        }
    }

    fn totals(&self, now: Losses) {
        let mut reported = lock(&self.reported);
        let dropped = now.dropped - reported.dropped;
        if dropped > 0 {
            let mb = (now.dropped_bytes - reported.dropped_bytes) as f64 / 1e6;
            tracing::warn!(
                "{dropped} {} ({mb:.1} MB) were dropped: {} did not keep up",
                self.what,
                self.output,
            );
        }
        if now.unwritten > 0 && now.unwritten != reported.unwritten {
            tracing::warn!(
                "{} {} were not written: {} took none for {} s",
                now.unwritten,
                self.what,
                self.output,
                FLUSH_WAIT.as_secs(),
            );
        }
        *reported = now;
    }
}

// ----- JSON lines ------------------------------------------------------------

/// Writes the telemetry events a Telemetry API subscriber to every type
/// receives to a file, one JSON document a line, exactly as encoded for the
/// subscribers (`lext run --telemetry-out FILE`). The Logs API's own
/// records (`platform.end`, `platform.fault`, `platform.logsSubscription`)
/// are not written: no Telemetry API subscriber gets them.
///
/// The file is written by a thread of its own, so a slow disk or a FIFO
/// whose reader stopped never holds up the environment: as with
/// [`ConsoleSink`], at most [`OUTPUT_BUFFER_BYTES`] wait, what passes the
/// bound is dropped and counted, and the count is printed at
/// [`flush`](Sink::flush).
#[derive(Debug)]
pub struct JsonLinesSink {
    spool: Spool<Vec<u8>>,
    report: LossReport,
}

impl JsonLinesSink {
    /// Creates (or truncates) `path`. A FIFO must already have a reader:
    /// opening one without is refused (`ENXIO`) rather than waited for.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = open_for_output(&path)?;
        let shown = path.display().to_string();
        let spool = Spool::start(
            "lext-telemetry-out",
            file,
            OUTPUT_BUFFER_BYTES,
            |out, json: Vec<u8>| {
                out.write_all(&json)?;
                out.write_all(b"\n")
            },
            move |error| {
                tracing::warn!(path = %shown, %error, "cannot write the telemetry output file; it is closed");
            },
        )?;
        Ok(Self {
            spool,
            report: LossReport::new("telemetry records", "the telemetry output file"),
        })
    }

    /// Records dropped so far because the file did not keep up.
    pub fn dropped(&self) -> u64 {
        self.spool.dropped()
    }
}

/// Opens `path` for writing without waiting: `O_NONBLOCK` makes a FIFO
/// without a reader fail at once, instead of blocking until one comes. The
/// flag is cleared again, so the writer thread's writes wait as writes do.
fn open_for_output(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ENXIO) {
                io::Error::new(
                    error.kind(),
                    "it is a FIFO with no reader: start the reader first",
                )
            } else {
                error
            }
        })?;
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

impl Sink for JsonLinesSink {
    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        if event.record.is_logs_api_only() {
            return;
        }
        if !self.spool.push(json.to_vec(), json.len() + 1) {
            self.report.first_drop(self.spool.dropped());
        }
    }

    /// Waits (at most 5 s) until every record so far is written, and reports
    /// what was dropped or is still unwritten.
    fn flush(&self) {
        self.report.totals(self.spool.flush(FLUSH_WAIT));
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
        self.push_all(queue, [item]);
    }

    /// Keeps `items` under one lock; the oldest go when the capture is full.
    fn push_all<T>(&self, queue: &Mutex<VecDeque<T>>, items: impl IntoIterator<Item = T>) {
        let mut queue = lock(queue);
        for item in items {
            if queue.len() >= self.inner.limit {
                queue.pop_front();
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(item);
        }
    }
}

impl Sink for Capture {
    fn line(&self, line: LogLine) {
        self.push(&self.inner.lines, line);
    }

    fn lines(&self, lines: Vec<LogLine>) {
        self.push_all(&self.inner.lines, lines);
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
            environment: None,
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
    fn tagged_json_puts_the_environment_first() {
        let tag = |json: &str| tagged_json(json.as_bytes(), "env-2").map(String::from_utf8);
        assert_eq!(
            tag(r#"{"time":"t","type":"x"}"#),
            Some(Ok(
                r#"{"environment":"env-2","time":"t","type":"x"}"#.to_owned()
            ))
        );
        assert_eq!(tag("{}"), Some(Ok(r#"{"environment":"env-2"}"#.to_owned())));
        assert_eq!(tag("[1]"), None);
        let value: serde_json::Value =
            serde_json::from_slice(&tagged_json(br#"{ "a": 1 }"#, "env-9").unwrap()).unwrap();
        assert_eq!(value["environment"], "env-9");
        assert_eq!(value["a"], 1);
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
