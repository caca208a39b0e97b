//! The timeline of one run: a lane per process (the runtime, then each
//! extension), with its Init, each invoke split into the runtime's part
//! and the post-runtime part, its shutdown up to the deadline, the freeze
//! gaps, and markers for timeouts, crashes, errors and
//! `platform.logsDropped`.
//!
//! Built from the run's records (the invokes' start and durations) and the
//! sandbox's marks (each process's launch, long polls, signals and exit).
//! Times are milliseconds from the run's first mark; `scale` maps them to
//! pixels.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lext_protocol::telemetry::Record;
use lext_sandbox::{MarkExit, MarkKind};

use super::figures::{ExtensionState, InvokeFigures};
use super::record::{OwnedMark, Recorded, Who};

/// What a bar is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BarKind {
    /// From the process's start to its first long poll.
    Init,
    /// One invoke: from its start to when this process was done with it.
    Invoke,
    /// From SHUTDOWN (or SIGTERM) to the process's exit.
    Shutdown,
}

/// One bar of a lane.
#[derive(Debug, Clone)]
pub(super) struct Bar {
    /// What it is.
    pub(super) kind: BarKind,
    /// Its start, ms from the run's first mark.
    pub(super) start: f64,
    /// Its end, ms.
    pub(super) end: f64,
    /// An invoke: where the runtime's part ends (the rest is post-runtime).
    pub(super) split: Option<f64>,
    /// A shutdown: its deadline.
    pub(super) deadline: Option<f64>,
    /// An invoke: its request id.
    pub(super) request_id: Option<String>,
    /// The hover text.
    pub(super) title: String,
    /// It did not end well (a crash, a timeout, an error).
    pub(super) failed: bool,
}

/// A lane: one process.
#[derive(Debug, Clone)]
pub(super) struct Lane {
    /// `runtime`, or the extension's name.
    pub(super) name: String,
    /// Its bars, in time order.
    pub(super) bars: Vec<Bar>,
}

/// What a marker marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MarkerKind {
    /// The function timed out.
    Timeout,
    /// A process ended outside a shutdown, or was killed.
    Crash,
    /// An invoke or an Init ended with an error.
    Error,
    /// `platform.logsDropped`.
    LogsDropped,
}

impl MarkerKind {
    /// The CSS class and legend name.
    pub(super) fn class(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Crash => "crash",
            Self::Error => "error",
            Self::LogsDropped => "logs-dropped",
        }
    }
}

/// A marker: on one lane, or across all (`lane: None`).
#[derive(Debug, Clone)]
pub(super) struct Marker {
    /// What it marks.
    pub(super) kind: MarkerKind,
    /// When, ms.
    pub(super) at: f64,
    /// The lane's index, or `None` for all of them.
    pub(super) lane: Option<usize>,
    /// The hover text.
    pub(super) title: String,
}

/// The timeline of one run.
#[derive(Debug, Clone, Default)]
pub(super) struct Timeline {
    /// The runtime's, then each extension's.
    pub(super) lanes: Vec<Lane>,
    /// Freeze gaps: every process stopped.
    pub(super) freezes: Vec<(f64, f64)>,
    /// Timeouts, crashes, errors, logsDropped.
    pub(super) markers: Vec<Marker>,
    /// The last time anything is drawn at.
    pub(super) end: f64,
}

/// Milliseconds of `t` after `t0` (0 before it).
fn ms(t0: SystemTime, t: SystemTime) -> f64 {
    t.duration_since(t0).unwrap_or_default().as_secs_f64() * 1000.0
}

fn exit_text(exit: MarkExit) -> String {
    match exit {
        MarkExit::Code(code) => format!("exited with status {code}"),
        MarkExit::Signal(signal) => format!("killed by signal {signal}"),
        MarkExit::OutOfMemory => "killed: out of memory".to_owned(),
    }
}

/// Builds the timeline of a run from what it recorded, its invokes (as
/// [`figures::invokes`](super::figures::invokes) made them) and the
/// extensions' states.
pub(super) fn build(
    recorded: &Recorded,
    invokes: &[InvokeFigures],
    extensions: &[ExtensionState],
) -> Timeline {
    let first = recorded.marks.first().map(|m| m.time);
    let first_record = recorded.records.first().map(|r| r.time);
    let Some(t0) = first.into_iter().chain(first_record).min() else {
        return Timeline::default();
    };
    let mut timeline = Timeline {
        lanes: lanes(&recorded.marks),
        ..Timeline::default()
    };
    let starts: Vec<(f64, &InvokeFigures)> = invokes
        .iter()
        .filter_map(|inv| {
            recorded.records.iter().find_map(|r| match &r.item {
                Record::Start(s) if s.request_id == inv.request_id => Some((ms(t0, r.time), inv)),
                _ => None,
            })
        })
        .collect();
    for index in 0..timeline.lanes.len() {
        let name = timeline.lanes[index].name.clone();
        let who = match index {
            0 => Who::Runtime,
            _ => Who::Extension(name.clone()),
        };
        let marks: Vec<(f64, MarkKind)> = recorded
            .marks
            .iter()
            .filter(|m| m.who == who)
            .map(|m| (ms(t0, m.time), m.kind))
            .collect();
        let invoke_subscribed = index == 0
            || extensions
                .iter()
                .any(|e| e.name == name && e.events.iter().any(|ev| ev == "INVOKE"));
        let mut bars = init_bars(&name, &marks);
        if invoke_subscribed {
            bars.extend(invoke_bars(index == 0, &name, &marks, &starts));
        }
        let (shutdowns, crashes) = shutdown_bars(&name, &marks, t0);
        bars.extend(shutdowns);
        bars.sort_by(|a, b| a.start.total_cmp(&b.start));
        timeline.lanes[index].bars = bars;
        for (at, title) in crashes {
            timeline.markers.push(Marker {
                kind: MarkerKind::Crash,
                at,
                lane: Some(index),
                title,
            });
        }
    }
    timeline.markers.extend(invoke_markers(&starts));
    timeline.markers.extend(record_markers(recorded, t0));
    timeline.freezes = freezes(&recorded.marks, t0);
    timeline.end = end_of(&timeline);
    timeline
}

/// The runtime's lane, then one per extension in the order they first
/// show up (launch order, which is name order).
fn lanes(marks: &[OwnedMark]) -> Vec<Lane> {
    let mut lanes = vec![Lane {
        name: "runtime".to_owned(),
        bars: Vec::new(),
    }];
    for mark in marks {
        if let Who::Extension(name) = &mark.who {
            if !lanes[1..].iter().any(|l| &l.name == name) {
                lanes.push(Lane {
                    name: name.clone(),
                    bars: Vec::new(),
                });
            }
        }
    }
    lanes
}

/// One Init bar per launch: to the first long poll, or to the exit.
fn init_bars(name: &str, marks: &[(f64, MarkKind)]) -> Vec<Bar> {
    let mut bars = Vec::new();
    for (i, &(start, kind)) in marks.iter().enumerate() {
        if kind != MarkKind::Launched {
            continue;
        }
        let next = marks[i + 1..]
            .iter()
            .find(|(_, k)| matches!(k, MarkKind::Next | MarkKind::Exited(_)));
        let (end, failed) = match next {
            Some(&(end, MarkKind::Next)) => (end, false),
            Some(&(end, _)) => (end, true),
            None => continue,
        };
        let how = match failed {
            true => "ended before its first /next",
            false => "started to first /next",
        };
        bars.push(Bar {
            kind: BarKind::Init,
            start,
            end,
            split: None,
            deadline: None,
            request_id: None,
            title: format!("{name}: Init {:.2} ms ({how})", end - start),
            failed,
        });
    }
    bars
}

/// One bar per invoke: the runtime's from the start to the end of the
/// invoke (its part, then the wait for the extensions); an extension's to
/// its own next `/event/next` (or its exit).
fn invoke_bars(
    runtime: bool,
    name: &str,
    marks: &[(f64, MarkKind)],
    starts: &[(f64, &InvokeFigures)],
) -> Vec<Bar> {
    let mut bars = Vec::new();
    for (n, &(start, inv)) in starts.iter().enumerate() {
        let end_of_invoke = start + inv.duration_ms;
        let runtime_end = start + inv.runtime_ms.unwrap_or(inv.duration_ms);
        let window_end = starts.get(n + 1).map_or(f64::INFINITY, |(s, _)| *s);
        let (end, failed) = if runtime {
            (end_of_invoke, inv.status != "success")
        } else {
            let done = marks.iter().find(|(t, k)| {
                *t >= start && *t < window_end && matches!(k, MarkKind::Next | MarkKind::Exited(_))
            });
            match done {
                Some(&(t, MarkKind::Next)) => (t, false),
                Some(&(t, _)) => (t, true),
                // Never back (a timeout): the invoke's end.
                None => (end_of_invoke, true),
            }
        };
        let split = runtime_end.min(end);
        let mut title = format!(
            "{}\nDuration {:.2} ms = runtime {} ms + post-runtime {} ms (status {}{})",
            inv.request_id,
            inv.duration_ms,
            inv.runtime_ms
                .map_or_else(|| "?".to_owned(), |v| format!("{v:.2}")),
            inv.post_runtime_ms
                .map_or_else(|| "?".to_owned(), |v| format!("{v:.2}")),
            inv.status,
            inv.error_type
                .as_deref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default(),
        );
        if !runtime {
            title.push_str(&format!(
                "\n{name}: done {:.2} ms after the start, {:.2} ms after the runtime",
                end - start,
                (end - runtime_end).max(0.0)
            ));
        }
        bars.push(Bar {
            kind: BarKind::Invoke,
            start,
            end: end.max(start),
            split: Some(split.max(start)),
            deadline: None,
            request_id: Some(inv.request_id.clone()),
            title,
            failed,
        });
    }
    bars
}

/// Shutdown bars (SHUTDOWN or the first signal, to the exit, with the
/// deadline), and the exits that were no part of a shutdown: crashes.
fn shutdown_bars(
    name: &str,
    marks: &[(f64, MarkKind)],
    t0: SystemTime,
) -> (Vec<Bar>, Vec<(f64, String)>) {
    let mut bars = Vec::new();
    let mut crashes = Vec::new();
    // The open shutdown: its start and deadline.
    let mut open: Option<(f64, Option<f64>)> = None;
    for &(at, kind) in marks {
        match kind {
            MarkKind::Shutdown { deadline_ms } => {
                let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
                open.get_or_insert((at, Some(ms(t0, deadline))));
            }
            MarkKind::Signalled { kill } => {
                let (_, deadline) = *open.get_or_insert((at, None));
                if kill {
                    crashes.push((
                        at,
                        format!(
                            "{name}: SIGKILL{}",
                            match deadline {
                                Some(d) if at + 0.5 >= d => " at its shutdown deadline",
                                _ => "",
                            }
                        ),
                    ));
                }
            }
            MarkKind::Exited(exit) => match open.take() {
                Some((start, deadline)) => bars.push(Bar {
                    kind: BarKind::Shutdown,
                    start,
                    end: at,
                    split: None,
                    deadline,
                    request_id: None,
                    title: format!(
                        "{name}: shutdown {:.2} ms, {}{}",
                        at - start,
                        exit_text(exit),
                        deadline
                            .map(|d| format!(" (deadline {:.2} ms after it began)", d - start))
                            .unwrap_or_default()
                    ),
                    // SIGTERM's default action is how a runtime ends.
                    failed: !matches!(exit, MarkExit::Code(0) | MarkExit::Signal(15)),
                }),
                None => crashes.push((at, format!("{name}: {}", exit_text(exit)))),
            },
            MarkKind::Launched => open = None,
            _ => {}
        }
    }
    (bars, crashes)
}

/// Timeouts and errors, at the end of their invoke, on the runtime's lane.
fn invoke_markers(starts: &[(f64, &InvokeFigures)]) -> Vec<Marker> {
    starts
        .iter()
        .filter(|(_, inv)| inv.status != "success")
        .map(|&(start, inv)| Marker {
            kind: match inv.status.as_str() {
                "timeout" => MarkerKind::Timeout,
                _ => MarkerKind::Error,
            },
            at: start + inv.duration_ms,
            lane: Some(0),
            title: format!(
                "{}: {} after {:.2} ms{}",
                inv.request_id,
                match inv.status.as_str() {
                    "timeout" => "Task timed out",
                    other => other,
                },
                inv.duration_ms,
                inv.error_type
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        })
        .collect()
}

/// Failed Inits, and `platform.logsDropped` across every lane.
fn record_markers(recorded: &Recorded, t0: SystemTime) -> Vec<Marker> {
    let mut markers = Vec::new();
    for timed in &recorded.records {
        let at = ms(t0, timed.time);
        match &timed.item {
            Record::InitReport(init)
                if init
                    .status
                    .as_ref()
                    .is_some_and(|s| s.as_str() != "success") =>
            {
                let status = init.status.as_ref().map_or("", |s| s.as_str());
                markers.push(Marker {
                    kind: match status {
                        "timeout" => MarkerKind::Timeout,
                        _ => MarkerKind::Error,
                    },
                    at,
                    lane: Some(0),
                    title: format!(
                        "Init {status} after {:.2} ms{}",
                        init.metrics.duration_ms,
                        init.error_type
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                });
            }
            Record::LogsDropped(dropped) => markers.push(Marker {
                kind: MarkerKind::LogsDropped,
                at,
                lane: None,
                title: format!(
                    "platform.logsDropped: {} records, {} bytes: {}",
                    dropped.dropped_records, dropped.dropped_bytes, dropped.reason
                ),
            }),
            _ => {}
        }
    }
    markers
}

/// Frozen to thawed (or to the end of the record).
fn freezes(marks: &[OwnedMark], t0: SystemTime) -> Vec<(f64, f64)> {
    let mut gaps = Vec::new();
    let mut frozen_at = None;
    for mark in marks.iter().filter(|m| m.who == Who::Environment) {
        match mark.kind {
            MarkKind::Frozen => frozen_at = frozen_at.or(Some(ms(t0, mark.time))),
            MarkKind::Thawed => {
                if let Some(start) = frozen_at.take() {
                    gaps.push((start, ms(t0, mark.time)));
                }
            }
            _ => {}
        }
    }
    if let (Some(start), Some(last)) = (frozen_at, marks.last()) {
        gaps.push((start, ms(t0, last.time)));
    }
    gaps
}

fn end_of(timeline: &Timeline) -> f64 {
    let bars = timeline
        .lanes
        .iter()
        .flat_map(|l| &l.bars)
        .map(|b| b.end.max(b.deadline.unwrap_or(0.0)));
    let markers = timeline.markers.iter().map(|m| m.at);
    let freezes = timeline.freezes.iter().map(|f| f.1);
    bars.chain(markers).chain(freezes).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_dropped_and_a_failed_init_are_marked() {
        use lext_protocol::telemetry::{
            DurationMetrics, InitReport, InitializationType, LogsDropped, Phase, Status,
        };
        let t0 = UNIX_EPOCH;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let recorded = Recorded {
            records: vec![
                super::super::record::Timed {
                    time: at(3),
                    item: Record::InitReport(Box::new(InitReport {
                        initialization_type: InitializationType::OnDemand,
                        phase: Phase::Init,
                        status: Some(Status::Error),
                        error_type: Some("Extension.Crash".into()),
                        metrics: DurationMetrics {
                            duration_ms: 3.0,
                            extra: Default::default(),
                        },
                        spans: None,
                        tracing: None,
                        extra: Default::default(),
                    })),
                },
                super::super::record::Timed {
                    time: at(7),
                    item: Record::LogsDropped(Box::new(LogsDropped {
                        reason: "<slow>".into(),
                        dropped_records: 12,
                        dropped_bytes: 345,
                        extra: Default::default(),
                    })),
                },
            ],
            ..Recorded::default()
        };
        let markers = record_markers(&recorded, t0);
        assert_eq!(markers.len(), 2);
        assert_eq!(markers[0].kind, MarkerKind::Error);
        assert!(markers[0].title.contains("Extension.Crash"));
        assert_eq!(markers[1].kind, MarkerKind::LogsDropped);
        assert_eq!((markers[1].at, markers[1].lane), (7.0, None));
        assert!(markers[1].title.contains("12 records, 345 bytes"));
    }

    #[test]
    fn an_exit_outside_a_shutdown_is_a_crash() {
        let t0 = UNIX_EPOCH;
        let marks = [
            (0.0, MarkKind::Launched),
            (1.0, MarkKind::Next),
            (5.0, MarkKind::Exited(MarkExit::Code(4))),
            (6.0, MarkKind::Launched),
            (7.0, MarkKind::Next),
            (8.0, MarkKind::Shutdown { deadline_ms: 2008 }),
            (9.0, MarkKind::Exited(MarkExit::Code(0))),
        ];
        let (bars, crashes) = shutdown_bars("x", &marks, t0);
        assert_eq!(crashes.len(), 1);
        assert!(crashes[0].1.contains("status 4"), "{crashes:?}");
        assert_eq!(bars.len(), 1);
        assert_eq!((bars[0].start, bars[0].end), (8.0, 9.0));
        assert_eq!(bars[0].deadline, Some(2008.0));
        assert!(!bars[0].failed);
        let inits = init_bars("x", &marks);
        assert_eq!(inits.len(), 2);
        assert_eq!((inits[1].start, inits[1].end), (6.0, 7.0));
    }
}
