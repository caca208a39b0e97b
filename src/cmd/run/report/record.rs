//! The report's sink: what one run's environment tells (platform records,
//! log volume, the processes' marks), kept for the figures and the
//! timeline.
//!
//! Bounded: at most [`MAX_KEPT`] records and [`MAX_KEPT`] marks are kept;
//! past that they are counted as dropped (the page says so), while the
//! volume counters keep counting. Log lines and function/extension records
//! are only counted, never kept.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use lext_protocol::telemetry::{LogType, Record, TelemetryEvent};
use lext_sandbox::{LineSource, LogLine, Mark, MarkKind, MarkProcess, Sink};

/// How many records, and how many marks, one run keeps.
pub(super) const MAX_KEPT: usize = 100_000;

/// A process, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Who {
    /// The function runtime.
    Runtime,
    /// An extension, by name.
    Extension(String),
    /// Every process (freeze, thaw).
    Environment,
}

/// A platform record and when the sink got it.
#[derive(Debug, Clone)]
pub(super) struct Timed<T> {
    pub(super) time: SystemTime,
    pub(super) item: T,
}

/// A mark with its process's name owned.
#[derive(Debug, Clone)]
pub(super) struct OwnedMark {
    pub(super) time: SystemTime,
    pub(super) who: Who,
    pub(super) kind: MarkKind,
}

/// Lines and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Volume {
    pub(super) lines: u64,
    pub(super) bytes: u64,
}

impl Volume {
    fn add(&mut self, bytes: usize) {
        self.lines += 1;
        self.bytes += bytes as u64;
    }
}

/// Everything one run told.
#[derive(Debug, Default)]
pub(super) struct Recorded {
    /// The platform records (not the function's and extensions' lines).
    pub(super) records: Vec<Timed<Record>>,
    /// The processes' marks.
    pub(super) marks: Vec<OwnedMark>,
    /// Output lines written, by writer.
    pub(super) output: BTreeMap<Who, Volume>,
    /// Telemetry events by stream, as a Telemetry API subscriber to that
    /// stream would get them (the Logs-API-only records left out).
    pub(super) telemetry: BTreeMap<&'static str, Volume>,
    /// Records and marks not kept (past [`MAX_KEPT`]).
    pub(super) dropped: u64,
}

/// A [`Sink`] that keeps a [`Recorded`]; clones share it.
#[derive(Debug, Clone, Default)]
pub(super) struct Recorder {
    inner: Arc<Mutex<Recorded>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // Nothing panics under this lock; poisoned data is still right.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What was recorded so far, taken out.
    pub(super) fn take(&self) -> Recorded {
        std::mem::take(&mut *self.lock())
    }
}

/// The stream name of a log type, for the counters.
fn stream(log_type: &LogType) -> &'static str {
    match log_type {
        LogType::Platform => "platform",
        LogType::Function => "function",
        LogType::Extension => "extension",
        LogType::Other(_) => "other",
    }
}

/// Counts a line's bytes by its writer.
fn take_line(recorded: &mut Recorded, line: LogLine) {
    let who = match line.source {
        // The platform's own lines are not anybody's output.
        LineSource::Platform => return,
        LineSource::Function => Who::Runtime,
        LineSource::Extension(name) => Who::Extension(name),
    };
    // One entry per writer: the runtime and at most the environment's
    // extensions, so the map stays small.
    recorded
        .output
        .entry(who)
        .or_default()
        .add(line.text.len() + 1);
}

/// Counts `event` by stream, and keeps it if it is a platform record.
fn take_event(recorded: &mut Recorded, time: SystemTime, event: &TelemetryEvent, json: &[u8]) {
    if !event.record.is_logs_api_only() {
        let name = stream(&event.record.log_type());
        recorded.telemetry.entry(name).or_default().add(json.len());
    }
    if matches!(
        event.record,
        Record::Function(_) | Record::ExtensionLog(_) | Record::Fault(_)
    ) {
        return;
    }
    if recorded.records.len() >= MAX_KEPT {
        recorded.dropped += 1;
        return;
    }
    recorded.records.push(Timed {
        time,
        item: event.record.clone(),
    });
}

impl Sink for Recorder {
    fn lines(&self, lines: Vec<LogLine>) {
        let mut recorded = self.lock();
        for line in lines {
            take_line(&mut recorded, line);
        }
    }

    fn events(&self, events: &[(&TelemetryEvent, &[u8])]) {
        let time = SystemTime::now();
        let mut recorded = self.lock();
        for (event, json) in events {
            take_event(&mut recorded, time, event, json);
        }
    }

    fn line(&self, line: LogLine) {
        take_line(&mut self.lock(), line);
    }

    fn event(&self, event: &TelemetryEvent, json: &[u8]) {
        take_event(&mut self.lock(), SystemTime::now(), event, json);
    }

    fn mark(&self, mark: &Mark<'_>) {
        let who = match mark.process {
            MarkProcess::Runtime => Who::Runtime,
            MarkProcess::Extension(name) => Who::Extension(name.to_owned()),
            MarkProcess::Environment => Who::Environment,
        };
        let mut recorded = self.lock();
        if recorded.marks.len() >= MAX_KEPT {
            recorded.dropped += 1;
            return;
        }
        recorded.marks.push(OwnedMark {
            time: mark.time,
            who,
            kind: mark.kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use lext_protocol::telemetry::LogRecord;

    use super::*;

    #[test]
    fn keeps_platform_records_counts_lines_and_stops_at_the_bound() {
        let recorder = Recorder::default();
        recorder.line(LogLine {
            time: SystemTime::now(),
            source: LineSource::Extension("x".into()),
            text: "hello".into(),
            environment: None,
        });
        let line = TelemetryEvent::new("t", Record::Function(LogRecord::Text("f".into())));
        recorder.event(&line, b"{\"a\":1}");
        let recorded = recorder.take();
        assert_eq!(
            recorded.output.get(&Who::Extension("x".into())),
            Some(&Volume { lines: 1, bytes: 6 })
        );
        assert_eq!(
            recorded.telemetry.get("function"),
            Some(&Volume { lines: 1, bytes: 7 })
        );
        assert!(recorded.records.is_empty());
        for _ in 0..MAX_KEPT + 2 {
            recorder.mark(&Mark {
                time: SystemTime::now(),
                process: MarkProcess::Runtime,
                kind: MarkKind::Next,
            });
        }
        let recorded = recorder.take();
        assert_eq!(recorded.marks.len(), MAX_KEPT);
        assert_eq!(recorded.dropped, 2);
    }
}
