//! Each lifecycle event, told twice: as its CloudWatch platform line(s) and
//! as its `platform.*` telemetry record(s).
//!
//! Lambda reports every step of an environment both ways (the `REPORT` line
//! and `platform.report`, `START` and `platform.start`, ...), and the two
//! must agree: same request id, same rounded durations, same error type.
//! Here each event is one function that emits both, from one set of
//! figures, so the driver never builds one without the other. The texts
//! come from [`logline`], the records from [`platform`]; both are pure.
//!
//! Which lines and records each step emits follows AWS's documentation
//! ("Lambda Telemetry API reference" and "Working with Lambda function
//! logs") and RIE (`internal/lambda/rapidcore/standalone/telemetry/events_api.go`).

use std::time::{Duration, SystemTime};

use lext_protocol::extensions::EventType;
use lext_protocol::telemetry::{Api, LogType, Phase, Record};

use crate::config::FunctionConfig;
use crate::lifecycle::{ExtensionSummary, Fault, Report};
use crate::{logline, platform};

/// Where an event's line and record go.
pub(crate) trait Emit {
    /// A platform line, stamped now.
    fn line(&mut self, text: String);
    /// A telemetry record, stamped now.
    fn record(&mut self, record: Record);
}

/// A duration in milliseconds, as the platform prints it.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Init begins: `platform.initStart`. (Its `INIT_START` line is written for
/// managed runtimes only, which a local environment never runs.)
pub(crate) fn init_started(out: &mut impl Emit, function: &FunctionConfig, phase: Phase) {
    if let (Some(version), Some(arn)) = (&function.runtime_version, function.runtime_version_arn())
    {
        out.line(logline::init_start(version, &arn));
    }
    out.record(platform::init_start(function, phase));
}

/// A subscription was accepted: its `TELEMETRY` or `LOGS` line. (The hub
/// records `platform.telemetrySubscription` itself, as it accepts it.)
pub(crate) fn subscribed(out: &mut impl Emit, name: &str, api: Api, types: &[LogType]) {
    let types: Vec<&str> = types.iter().map(LogType::as_str).collect();
    out.line(match api {
        Api::Telemetry => logline::telemetry_subscription(name, &types),
        Api::Logs => logline::logs_subscription(name, &types),
    });
}

fn extension_lines(out: &mut impl Emit, extensions: &[ExtensionSummary]) {
    for ext in extensions {
        let events: Vec<&str> = ext.events.iter().map(EventType::as_str).collect();
        out.line(logline::extension(
            &ext.name,
            &ext.state.to_string(),
            &events,
            ext.error_type,
        ));
    }
}

/// Init succeeded: an `EXTENSION` line per extension; `initRuntimeDone`, a
/// `platform.extension` per extension and `initReport`.
pub(crate) fn init_done(out: &mut impl Emit, duration: Duration, extensions: &[ExtensionSummary]) {
    extension_lines(out, extensions);
    for record in platform::init_done(duration, extensions) {
        out.record(record);
    }
}

/// Init failed: the `EXTENSION` lines and `INIT_REPORT` with the fault;
/// `initRuntimeDone` with the error status (as RIE sends it), then
/// `initReport`.
pub(crate) fn init_failed(
    out: &mut impl Emit,
    phase: Phase,
    duration: Duration,
    fault: &Fault,
    extensions: &[ExtensionSummary],
) {
    extension_lines(out, extensions);
    let outcome = match fault {
        Fault::Timeout => logline::Outcome::Timeout,
        other => logline::Outcome::Error(other.error_type().to_owned()),
    };
    out.line(logline::init_report(ms(duration), &phase, &outcome));
    out.record(platform::init_runtime_done(phase.clone(), Some(fault)));
    out.record(platform::init_report(phase, duration, Some(fault)));
}

/// An invoke starts: `START` and `platform.start`.
pub(crate) fn invoke_started(
    out: &mut impl Emit,
    request_id: &str,
    version: &str,
    trace: Option<String>,
    function_arn: Option<String>,
) {
    out.line(logline::start(request_id, version));
    out.record(platform::start(request_id, version, trace, function_arn));
}

/// The runtime's part of an invoke is over: `platform.runtimeDone` (no
/// line).
pub(crate) fn runtime_done(
    out: &mut impl Emit,
    request_id: &str,
    fault: Option<&Fault>,
    trace: Option<String>,
    duration: Duration,
    produced_bytes: Option<u64>,
) {
    out.record(platform::runtime_done(
        request_id,
        fault,
        trace,
        duration,
        produced_bytes,
    ));
}

/// The invoke ran out of time: `<time> <id> Task timed out after N.NN
/// seconds`.
pub(crate) fn timed_out(out: &mut impl Emit, request_id: &str, after: Duration) {
    out.line(logline::task_timed_out(
        SystemTime::now(),
        request_id,
        after.as_secs_f64(),
    ));
}

/// A platform fault: the message line, then the error type on its own line
/// (`Runtime.ExitError`); `platform.fault` for Logs API subscribers.
pub(crate) fn fault(out: &mut impl Emit, message: String, fault: &Fault) {
    out.record(platform::fault(message.clone()));
    out.line(message);
    out.line(fault.error_type().to_owned());
}

/// The invoke is over: `END` and `REPORT`; `platform.report` and the Logs
/// API's `platform.end`.
///
/// `REPORT` names the fault (`Status: error\tError Type: …`) when the
/// invoke timed out or failed in a way that resets the environment or is
/// the platform's; a handled function error leaves it looking like a
/// success, its status being in `platform.report`.
pub(crate) fn invoke_ended(
    out: &mut impl Emit,
    report: &Report,
    memory_mb: u32,
    max_memory_mb: u64,
    trace: Option<String>,
) {
    out.line(logline::end(&report.request_id));
    let outcome = match &report.fault {
        Some(Fault::Timeout) => logline::Outcome::Timeout,
        Some(f) if f.shown_on_report_line() => logline::Outcome::Error(f.error_type().to_owned()),
        _ => logline::Outcome::Success,
    };
    out.line(logline::report(&logline::Report {
        request_id: &report.request_id,
        duration_ms: ms(report.duration),
        memory_size_mb: memory_mb,
        max_memory_used_mb: max_memory_mb,
        init_duration_ms: report.init_duration.map(ms),
        outcome,
    }));
    out.record(platform::report(report, memory_mb, max_memory_mb, trace));
    out.record(platform::end(&report.request_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Both {
        lines: Vec<String>,
        records: Vec<Record>,
    }

    impl Emit for Both {
        fn line(&mut self, text: String) {
            self.lines.push(text);
        }
        fn record(&mut self, record: Record) {
            self.records.push(record);
        }
    }

    fn report(fault: Option<Fault>) -> Report {
        Report {
            request_id: "r1".into(),
            duration: Duration::from_micros(38_660),
            init_duration: None,
            fault,
        }
    }

    #[test]
    fn the_report_line_and_record_agree() {
        let mut out = Both::default();
        invoke_ended(&mut out, &report(None), 128, 20, None);
        assert_eq!(out.lines[0], "END RequestId: r1");
        assert!(out.lines[1]
            .starts_with("REPORT RequestId: r1\tDuration: 38.66 ms\tBilled Duration: 39 ms\t"));
        let Record::Report(r) = &out.records[0] else {
            panic!("{:?}", out.records)
        };
        assert_eq!(r.metrics.duration_ms, 38.66);
        assert_eq!(r.metrics.billed_duration_ms, Some(39));
        assert!(matches!(out.records[1], Record::End(_)));
    }

    #[test]
    fn a_handled_function_error_is_not_on_the_report_line_but_is_in_the_record() {
        let mut out = Both::default();
        invoke_ended(
            &mut out,
            &report(Some(Fault::Function("Unhandled".into()))),
            128,
            20,
            None,
        );
        assert!(out.lines[1].ends_with('\t'), "{}", out.lines[1]);
        let Record::Report(r) = &out.records[0] else {
            panic!()
        };
        assert_eq!(r.error_type.as_deref(), Some("Unhandled"));
    }

    #[test]
    fn a_failed_init_re_run_inside_an_invoke_reports_its_error() {
        let mut out = Both::default();
        let fault = Fault::RuntimeInit("Runtime.ImportModuleError".into());
        invoke_ended(&mut out, &report(Some(fault)), 128, 20, None);
        assert!(
            out.lines[1].ends_with("Status: error\tError Type: Runtime.ImportModuleError"),
            "{}",
            out.lines[1]
        );
    }

    #[test]
    fn a_timeout_has_a_status_and_no_error_type() {
        let mut out = Both::default();
        invoke_ended(&mut out, &report(Some(Fault::Timeout)), 128, 20, None);
        assert!(
            out.lines[1].ends_with("Status: timeout"),
            "{}",
            out.lines[1]
        );
        let Record::Report(r) = &out.records[0] else {
            panic!()
        };
        assert_eq!(r.error_type, None);
        init_failed(
            &mut out,
            Phase::Init,
            Duration::from_secs(10),
            &Fault::Timeout,
            &[],
        );
        assert!(out
            .lines
            .last()
            .is_some_and(|l| l.ends_with("Phase: init\tStatus: timeout")));
    }
}
