//! The figures: each run's invokes as its REPORT records tell them, and
//! what each extension adds, as the difference between a run with it and
//! the baseline run without any extension (the same invokes, side by side).
//!
//! Pure: from what [`Recorder`](super::record::Recorder) kept to the
//! [`Figures`] that `--report-json` writes (serialized as they are; the
//! shape is documented in docs/report.md) and that the page and `-v` show.

use std::collections::BTreeMap;

use lext_protocol::telemetry::{Record, Status};
use serde::Serialize;

use super::record::{Recorded, Who};

/// The version of the JSON shape (docs/report.md).
pub(super) const SCHEMA: &str = "lext-report/1";

/// Everything `--report-json` writes.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Figures {
    /// [`SCHEMA`].
    pub(super) schema: &'static str,
    /// The function the runs invoked.
    pub(super) function: FunctionInfo,
    /// Invokes in each run.
    pub(super) invokes_per_run: u32,
    /// The runs, baseline first.
    pub(super) runs: Vec<RunFigures>,
    /// What each extension (each `--extension`, each `--layer`) costs,
    /// against the baseline; with several, also all of them together.
    pub(super) costs: Vec<Cost>,
}

/// The function's settings.
#[derive(Debug, Clone, Serialize)]
pub(super) struct FunctionInfo {
    /// `--function-name`.
    pub(super) name: String,
    /// `--memory`.
    pub(super) memory_mb: u32,
    /// `--timeout`.
    pub(super) timeout_s: u32,
}

/// One run: one environment, its Init and its invokes.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RunFigures {
    /// `baseline`, `all`, or the one extension's name.
    pub(super) label: String,
    /// The extensions (or layers) given to this run.
    pub(super) subjects: Vec<String>,
    /// The extensions that took part (`platform.extension` records).
    pub(super) extensions: Vec<ExtensionState>,
    /// The first Init's `platform.initReport` duration.
    pub(super) init_ms: Option<f64>,
    /// Its status (`success`, `error`, `timeout`, ...).
    pub(super) init_status: Option<String>,
    /// How many Inits ran (more than one after a reset).
    pub(super) inits: u32,
    /// Each invoke, in order.
    pub(super) invokes: Vec<InvokeFigures>,
    /// Duration (REPORT), over the invokes.
    pub(super) duration_ms: Stat,
    /// The runtime's part (`platform.runtimeDone`).
    pub(super) runtime_ms: Stat,
    /// Duration minus the runtime's part: the time the extensions took
    /// after the runtime was done (Lambda's PostRuntimeExtensionsDuration,
    /// part of the invoke's Duration: AWS: Extensions API, "Invoke phase",
    /// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html>).
    pub(super) post_runtime_ms: Stat,
    /// The highest Max Memory Used of the run's REPORTs.
    pub(super) max_memory_used_mb: Option<u64>,
    /// CPU time (user + system) of the run's processes, when measured.
    pub(super) cpu_ms: Option<f64>,
    /// What each process wrote, and what it subscribed to.
    pub(super) processes: Vec<ProcessFigures>,
    /// `platform.logsDropped`, summed.
    pub(super) logs_dropped: Dropped,
    /// Records and marks the report could not keep (its bound).
    pub(super) not_kept: u64,
}

/// An extension's state at the end of Init.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ExtensionState {
    /// Its name.
    pub(super) name: String,
    /// `Ready`, `LaunchError`, ...
    pub(super) state: String,
    /// The events it registered for.
    pub(super) events: Vec<String>,
}

/// One invoke, from its records.
#[derive(Debug, Clone, Serialize)]
pub(super) struct InvokeFigures {
    /// The invoke's request id, as REPORT prints it.
    pub(super) request_id: String,
    /// `success`, `error`, `timeout`, `failure`.
    pub(super) status: String,
    /// REPORT's Error Type.
    pub(super) error_type: Option<String>,
    /// REPORT's Duration.
    pub(super) duration_ms: f64,
    /// `platform.runtimeDone`'s duration.
    pub(super) runtime_ms: Option<f64>,
    /// `duration_ms - runtime_ms`.
    pub(super) post_runtime_ms: Option<f64>,
    /// REPORT's Billed Duration.
    pub(super) billed_duration_ms: Option<u64>,
    /// REPORT's Max Memory Used.
    pub(super) max_memory_used_mb: Option<u64>,
    /// REPORT's Init Duration (cold starts only).
    pub(super) init_duration_ms: Option<f64>,
}

/// p50 and p99 (nearest rank) of some milliseconds; `None` with no value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(super) struct Stat {
    /// The median.
    pub(super) p50: Option<f64>,
    /// The 99th percentile.
    pub(super) p99: Option<f64>,
}

/// One process's output and subscriptions.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ProcessFigures {
    /// `runtime`, or the extension's name.
    pub(super) process: String,
    /// `runtime` or `extension`.
    pub(super) kind: &'static str,
    /// Lines it wrote to stdout and stderr.
    pub(super) log_lines: u64,
    /// Their bytes, newlines included.
    pub(super) log_bytes: u64,
    /// Its Telemetry and Logs API subscriptions.
    pub(super) subscriptions: Vec<Subscription>,
    /// The records of the streams it subscribed to over the run (what a
    /// Telemetry API subscriber to them is sent, before any drop).
    pub(super) records_of_subscribed_types: u64,
    /// Their bytes, as encoded.
    pub(super) bytes_of_subscribed_types: u64,
    /// An extension's own post-runtime time per invoke: from the end of
    /// the runtime's part to its own next `/event/next` (0 when it was back
    /// first), from the sandbox's marks. With several extensions, the
    /// invoke's post-runtime time is the longest of theirs.
    pub(super) own_post_runtime_ms: Stat,
}

/// One subscription.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Subscription {
    /// `telemetry` or `logs`.
    pub(super) api: &'static str,
    /// The streams.
    pub(super) types: Vec<String>,
}

/// Records lost to slow subscribers.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Dropped {
    /// `platform.logsDropped` records.
    pub(super) notices: u64,
    /// The records they say were dropped.
    pub(super) records: u64,
    /// And their bytes.
    pub(super) bytes: u64,
}

/// What one extension (or all of them) adds to the function.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Cost {
    /// The extension, the layer, or `all`.
    pub(super) subject: String,
    /// The run measured against the baseline.
    pub(super) run: String,
    /// Init Duration over the baseline's.
    pub(super) init_added_ms: Option<f64>,
    /// The run's own post-runtime time.
    pub(super) post_runtime_ms: Stat,
    /// Post-runtime time over the baseline's, p50 and p99.
    pub(super) post_runtime_added_ms: Stat,
    /// Duration over the baseline's, p50 and p99.
    pub(super) duration_added_ms: Stat,
    /// Max Memory Used over the baseline's, MB.
    pub(super) max_memory_added_mb: Option<i64>,
    /// CPU time over the baseline's.
    pub(super) cpu_added_ms: Option<f64>,
    /// The output lines and bytes of the subject's extensions.
    pub(super) log_lines: u64,
    pub(super) log_bytes: u64,
    /// Their subscriptions.
    pub(super) subscriptions: Vec<Subscription>,
    /// The records of the streams they subscribed to.
    pub(super) records_of_subscribed_types: u64,
    /// Failed invokes in the run (the baseline's are not counted).
    pub(super) failed_invokes: usize,
}

/// Nearest-rank percentile `p` (0-100) of `values`.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn stat(values: &[f64]) -> Stat {
    Stat {
        p50: percentile(values, 50.0),
        p99: percentile(values, 99.0),
    }
}

/// Two decimals, as Lambda prints milliseconds.
fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

fn minus(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(round2(a? - b?))
}

fn status(status: &Status) -> String {
    status.as_str().to_owned()
}

/// The invokes of a run, in the order they started, from their
/// `platform.start`, `runtimeDone` and `report` records.
pub(super) fn invokes(recorded: &Recorded) -> Vec<InvokeFigures> {
    let mut runtime_done: BTreeMap<&str, f64> = BTreeMap::new();
    for timed in &recorded.records {
        if let Record::RuntimeDone(done) = &timed.item {
            if let Some(metrics) = &done.metrics {
                runtime_done.insert(done.request_id.as_str(), metrics.duration_ms);
            }
        }
    }
    let mut invokes = Vec::new();
    for timed in &recorded.records {
        let Record::Report(report) = &timed.item else {
            continue;
        };
        let metrics = &report.metrics;
        let runtime_ms = runtime_done.get(report.request_id.as_str()).copied();
        invokes.push(InvokeFigures {
            request_id: report.request_id.clone(),
            status: status(&report.status),
            error_type: report.error_type.clone(),
            duration_ms: metrics.duration_ms,
            runtime_ms,
            post_runtime_ms: runtime_ms.map(|r| round2((metrics.duration_ms - r).max(0.0))),
            billed_duration_ms: metrics.billed_duration_ms,
            max_memory_used_mb: metrics.max_memory_used_mb,
            init_duration_ms: metrics.init_duration_ms,
        });
    }
    invokes
}

/// The figures of one run. `cpu_ms` is measured outside the sink.
pub(super) fn run(
    label: &str,
    subjects: &[String],
    recorded: &Recorded,
    cpu_ms: Option<f64>,
) -> RunFigures {
    let invokes = invokes(recorded);
    let of = |f: fn(&InvokeFigures) -> Option<f64>| -> Vec<f64> {
        invokes.iter().filter_map(f).collect::<Vec<_>>()
    };
    let mut figures = RunFigures {
        label: label.to_owned(),
        subjects: subjects.to_vec(),
        extensions: Vec::new(),
        init_ms: None,
        init_status: None,
        inits: 0,
        duration_ms: stat(&of(|i| Some(i.duration_ms))),
        runtime_ms: stat(&of(|i| i.runtime_ms)),
        post_runtime_ms: stat(&of(|i| i.post_runtime_ms)),
        max_memory_used_mb: invokes.iter().filter_map(|i| i.max_memory_used_mb).max(),
        invokes,
        cpu_ms: cpu_ms.map(round2),
        processes: Vec::new(),
        logs_dropped: Dropped::default(),
        not_kept: recorded.dropped,
    };
    let mut subscriptions: BTreeMap<Who, Vec<Subscription>> = BTreeMap::new();
    for timed in &recorded.records {
        match &timed.item {
            Record::InitReport(init) => {
                figures.inits += 1;
                if figures.init_ms.is_none() {
                    figures.init_ms = Some(init.metrics.duration_ms);
                    figures.init_status = init.status.as_ref().map(status);
                }
            }
            // The states of the first Init.
            Record::Extension(ext) if figures.inits == 0 => {
                figures.extensions.push(ExtensionState {
                    name: ext.name.clone(),
                    state: ext.state.clone(),
                    events: ext.events.clone(),
                });
            }
            Record::TelemetrySubscription(sub) | Record::LogsSubscription(sub) => {
                let api = match &timed.item {
                    Record::TelemetrySubscription(_) => "telemetry",
                    _ => "logs",
                };
                let list = subscriptions
                    .entry(Who::Extension(sub.name.clone()))
                    .or_default();
                // Once per subscriber and API: a reset subscribes again.
                if !list.iter().any(|s| s.api == api) {
                    list.push(Subscription {
                        api,
                        types: sub.types.clone(),
                    });
                }
            }
            Record::LogsDropped(dropped) => {
                figures.logs_dropped.notices += 1;
                figures.logs_dropped.records += dropped.dropped_records;
                figures.logs_dropped.bytes += dropped.dropped_bytes;
            }
            _ => {}
        }
    }
    figures.processes = processes(recorded, &figures.extensions, subscriptions);
    figures
}

/// The runtime and each extension, with what they wrote and subscribed to.
fn processes(
    recorded: &Recorded,
    extensions: &[ExtensionState],
    mut subscriptions: BTreeMap<Who, Vec<Subscription>>,
) -> Vec<ProcessFigures> {
    let mut who: Vec<Who> = vec![Who::Runtime];
    who.extend(extensions.iter().map(|e| Who::Extension(e.name.clone())));
    for key in recorded.output.keys().chain(subscriptions.keys()) {
        if !who.contains(key) {
            who.push(key.clone());
        }
    }
    who.into_iter()
        .map(|w| {
            let volume = recorded.output.get(&w).copied().unwrap_or_default();
            let subs = subscriptions.remove(&w).unwrap_or_default();
            let mut streams: Vec<&str> = subs
                .iter()
                .flat_map(|s| s.types.iter().map(String::as_str))
                .collect();
            streams.sort_unstable();
            streams.dedup();
            let (mut records, mut bytes) = (0, 0);
            for name in streams {
                if let Some(v) = recorded.telemetry.get(name) {
                    records += v.lines;
                    bytes += v.bytes;
                }
            }
            let (process, kind) = match w {
                Who::Extension(name) => (name, "extension"),
                _ => ("runtime".to_owned(), "runtime"),
            };
            ProcessFigures {
                process,
                kind,
                log_lines: volume.lines,
                log_bytes: volume.bytes,
                subscriptions: subs,
                records_of_subscribed_types: records,
                bytes_of_subscribed_types: bytes,
                own_post_runtime_ms: Stat::default(),
            }
        })
        .collect()
}

/// Fills each extension's [`ProcessFigures::own_post_runtime_ms`] from the
/// run's timeline.
pub(super) fn own_post_runtime(run: &mut RunFigures, timeline: &super::timeline::Timeline) {
    for lane in timeline.lanes.iter().skip(1) {
        let times: Vec<f64> = lane
            .bars
            .iter()
            .filter(|b| b.kind == super::timeline::BarKind::Invoke)
            .filter_map(|b| b.split.map(|split| round2((b.end - split).max(0.0))))
            .collect();
        let lane_of = |p: &&mut ProcessFigures| p.kind == "extension" && p.process == lane.name;
        if let Some(p) = run.processes.iter_mut().find(lane_of) {
            p.own_post_runtime_ms = stat(&times);
        }
    }
}

/// What `run` adds over `baseline`, for `subject`.
pub(super) fn cost(subject: &str, baseline: &RunFigures, run: &RunFigures) -> Cost {
    let diff = |a: Stat, b: Stat| Stat {
        p50: minus(a.p50, b.p50),
        p99: minus(a.p99, b.p99),
    };
    // Every extension of a run is one of its subjects' (the baseline has
    // none), even one that never got as far as its platform.extension record.
    let own: Vec<&ProcessFigures> = run
        .processes
        .iter()
        .filter(|p| p.kind == "extension")
        .collect();
    Cost {
        subject: subject.to_owned(),
        run: run.label.clone(),
        init_added_ms: minus(run.init_ms, baseline.init_ms),
        post_runtime_ms: run.post_runtime_ms,
        post_runtime_added_ms: diff(run.post_runtime_ms, baseline.post_runtime_ms),
        duration_added_ms: diff(run.duration_ms, baseline.duration_ms),
        max_memory_added_mb: match (run.max_memory_used_mb, baseline.max_memory_used_mb) {
            (Some(a), Some(b)) => Some(a as i64 - b as i64),
            _ => None,
        },
        cpu_added_ms: minus(run.cpu_ms, baseline.cpu_ms),
        log_lines: own.iter().map(|p| p.log_lines).sum(),
        log_bytes: own.iter().map(|p| p.log_bytes).sum(),
        subscriptions: own.iter().flat_map(|p| p.subscriptions.clone()).collect(),
        records_of_subscribed_types: own.iter().map(|p| p.records_of_subscribed_types).sum(),
        failed_invokes: run.invokes.iter().filter(|i| i.status != "success").count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(5.0));
        assert_eq!(percentile(&values, 99.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, 2.0], 50.0), Some(2.0));
    }

    #[test]
    fn differences_are_rounded_and_unknown_stays_unknown() {
        assert_eq!(minus(Some(3.0), Some(1.25)), Some(1.75));
        assert_eq!(minus(None, Some(1.0)), None);
    }
}
