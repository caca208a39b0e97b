//! The `platform.*` telemetry records, built from the lifecycle's effects
//! with real figures (monotonic durations, the peak memory of the process
//! tree). Pure: [`crate::events`] pairs each with its log line.
//!
//! The shapes are [`lext_protocol::telemetry`]'s records; this module only
//! fills them in, in the order RIE emits them (RIE
//! `internal/lambda/telemetry/events_api.go`, and AWS: "Lambda Telemetry API
//! reference", `Event` objects): `initStart`, then at the end of Init
//! `initRuntimeDone`, one `platform.extension` per extension and
//! `initReport`; per invoke `start`, `runtimeDone`, `report`.

use std::time::Duration;

use lext_protocol::telemetry::{
    self as tel, DurationMetrics, ExtensionInfo, InitializationType, LogRecord, Phase, Record,
    ReportMetrics, Status,
};

use crate::config::FunctionConfig;
use crate::lifecycle::{ExtensionSummary, Fault, Report, ResponseSpans};
use crate::logline;

/// Milliseconds with two decimals: the figures must agree with the REPORT
/// line, which prints two decimals, so that a subscriber comparing both
/// sees the same numbers.
fn ms(d: Duration) -> f64 {
    // Two decimals, as Lambda reports them.
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// `platform.initStart`.
pub(crate) fn init_start(function: &FunctionConfig, phase: Phase) -> Record {
    Record::InitStart(Box::new(tel::InitStart {
        // A local environment is created on demand, or as Managed
        // Instances: there is no provisioned concurrency or SnapStart to
        // emulate.
        initialization_type: match function.managed_instances {
            Some(_) => InitializationType::LambdaManagedInstances,
            None => InitializationType::OnDemand,
        },
        phase,
        runtime_version: function.runtime_version.clone(),
        runtime_version_arn: function.runtime_version_arn(),
        // The function fields are those of the current schema (AWS: "Lambda
        // Telemetry API reference", `platform.initStart`).
        function_name: Some(function.name.clone()),
        function_version: Some(function.version.clone()),
        // Managed Instances name the instance (RIE
        // `internal/lambda-managed-instances/interop/events_api.go`); one
        // id per process of lext, in EC2's shape.
        instance_id: function.managed_instances.map(|_| instance_id()),
        instance_max_memory: Some(u64::from(function.memory_mb) * 1024 * 1024),
        tracing: None,
        extra: Default::default(),
    }))
}

/// An EC2-shaped instance id (`i-` and 17 hex digits), the same for every
/// environment of this process.
fn instance_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("i-{}", crate::ids::hex(17)))
        .clone()
}

/// End of a successful Init: `initRuntimeDone`, `platform.extension` × N,
/// `initReport`.
pub(crate) fn init_done(duration: Duration, extensions: &[ExtensionSummary]) -> Vec<Record> {
    let mut events = Vec::with_capacity(extensions.len() + 2);
    events.push(init_runtime_done(Phase::Init, None));
    for ext in extensions {
        events.push(Record::Extension(Box::new(ExtensionInfo {
            name: ext.name.clone(),
            state: ext.state.to_string(),
            events: ext.events.iter().map(|e| e.as_str().to_owned()).collect(),
            error_type: ext.error_type.map(str::to_owned),
            extra: Default::default(),
        })));
    }
    // initReport closes Init, after every extension's record (RIE order).
    events.push(init_report(Phase::Init, duration, None));
    events
}

/// `platform.initRuntimeDone`: a success, or a failed Init with its fault
/// (RIE sends it with the error status too).
pub(crate) fn init_runtime_done(phase: Phase, fault: Option<&Fault>) -> Record {
    Record::InitRuntimeDone(Box::new(tel::InitRuntimeDone {
        initialization_type: InitializationType::OnDemand,
        phase: Some(phase),
        status: fault.map_or(Status::Success, Fault::status),
        error_type: error_type(fault),
        spans: None,
        tracing: None,
        extra: Default::default(),
    }))
}

/// `platform.initReport`, with the fault of a failed Init.
pub(crate) fn init_report(phase: Phase, duration: Duration, fault: Option<&Fault>) -> Record {
    Record::InitReport(Box::new(tel::InitReport {
        initialization_type: InitializationType::OnDemand,
        phase,
        status: Some(fault.map_or(Status::Success, Fault::status)),
        error_type: error_type(fault),
        metrics: DurationMetrics {
            duration_ms: ms(duration),
            extra: Default::default(),
        },
        spans: None,
        tracing: None,
        extra: Default::default(),
    }))
}

/// The `errorType` of a record: the fault's, except for a timeout, whose
/// `status: "timeout"` says it all (as in the `Status: timeout` lines).
fn error_type(fault: Option<&Fault>) -> Option<String> {
    fault
        .filter(|f| **f != Fault::Timeout)
        .map(|f| f.error_type().to_owned())
}

fn trace_context(trace: Option<String>) -> Option<tel::TraceContext> {
    trace.map(|value| tel::TraceContext {
        span_id: None,
        kind: "X-Amzn-Trace-Id".to_owned(),
        value,
    })
}

/// `platform.start`.
pub(crate) fn start(
    request_id: &str,
    version: &str,
    trace: Option<String>,
    function_arn: Option<String>,
) -> Record {
    Record::Start(Box::new(tel::Start {
        request_id: request_id.to_owned(),
        version: Some(version.to_owned()),
        // Managed Instances only (RIE
        // `internal/lambda-managed-instances/interop/events_api.go`).
        function_arn,
        tenant_id: None,
        tracing: trace_context(trace),
        extra: Default::default(),
    }))
}

/// `platform.runtimeDone`.
pub(crate) fn runtime_done(
    request_id: &str,
    fault: Option<&Fault>,
    trace: Option<String>,
    duration: Duration,
    produced_bytes: Option<u64>,
) -> Record {
    Record::RuntimeDone(Box::new(tel::RuntimeDone {
        request_id: request_id.to_owned(),
        status: fault.map_or(Status::Success, Fault::status),
        error_type: error_type(fault),
        metrics: Some(tel::RuntimeDoneMetrics {
            duration_ms: ms(duration),
            produced_bytes,
            extra: Default::default(),
        }),
        spans: None,
        // The driver stamps the tenant (`driver::effects::Out`).
        tenant_id: None,
        tracing: trace_context(trace),
        extra: Default::default(),
    }))
}

/// A `platform.runtimeDone` for a streamed response: with its
/// `responseLatency` and `responseDuration` spans (AWS: Telemetry API
/// schema reference,
/// <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html>,
/// `platform.runtimeDone`).
pub(crate) fn streamed_runtime_done(mut record: Record, spans: &ResponseSpans) -> Record {
    if let Record::RuntimeDone(done) = &mut record {
        let at = |epoch_ms: u64| {
            logline::iso8601_ms(std::time::UNIX_EPOCH + Duration::from_millis(epoch_ms))
        };
        let latency_ms = spans.latency.as_millis() as u64;
        done.spans = Some(vec![
            tel::Span {
                name: "responseLatency".to_owned(),
                start: at(spans.released_ms),
                duration_ms: ms(spans.latency),
            },
            tel::Span {
                name: "responseDuration".to_owned(),
                start: at(spans.released_ms + latency_ms),
                duration_ms: ms(spans.duration),
            },
        ]);
    }
    record
}

/// A `platform.report` in Managed Instances' shape (RIE
/// `internal/lambda-managed-instances/invoke/metrics.go`,
/// `SendInvokeFinishedEvent`): `metrics` holds `durationMs` alone (an
/// instance, not an invoke, is billed), and an answered invoke has the
/// spans `responseLatency` (from the event's release to the response,
/// which arrives whole) and `responseDuration` (0 ms); one with no answer
/// (a timeout) has none. `now` is the end of the invoke.
pub(crate) fn managed_report(report: &mut tel::Report, now: std::time::SystemTime) {
    report.metrics.billed_duration_ms = None;
    report.metrics.memory_size_mb = None;
    report.metrics.max_memory_used_mb = None;
    if report.status == Status::Timeout {
        return;
    }
    let latency = Duration::from_secs_f64(report.metrics.duration_ms.max(0.0) / 1000.0);
    let released = now.checked_sub(latency).unwrap_or(now);
    report.spans = Some(vec![
        tel::Span {
            name: "responseLatency".to_owned(),
            start: logline::iso8601_ms(released),
            duration_ms: report.metrics.duration_ms,
        },
        tel::Span {
            name: "responseDuration".to_owned(),
            start: logline::iso8601_ms(now),
            duration_ms: 0.0,
        },
    ]);
}

/// `platform.report`.
pub(crate) fn report(
    report: &Report,
    memory_mb: u32,
    max_memory_used_mb: u64,
    trace: Option<String>,
) -> Record {
    // Billed duration from the same rounded figures as the REPORT line:
    // ceil(Duration + Init Duration) after a cold start.
    let duration_ms = ms(report.duration);
    let init_ms = report.init_duration.map(ms);
    Record::Report(Box::new(tel::Report {
        request_id: report.request_id.clone(),
        status: report.status(),
        error_type: error_type(report.fault.as_ref()),
        metrics: ReportMetrics {
            duration_ms,
            billed_duration_ms: Some(logline::billed_duration_ms(duration_ms, init_ms)),
            memory_size_mb: Some(u64::from(memory_mb)),
            max_memory_used_mb: Some(max_memory_used_mb),
            init_duration_ms: init_ms,
            restore_duration_ms: None,
            extra: Default::default(),
        },
        spans: None,
        tenant_id: None,
        tracing: trace_context(trace),
        extra: Default::default(),
    }))
}

/// `platform.end` (Logs API only; the hub routes it).
pub(crate) fn end(request_id: &str) -> Record {
    Record::End(Box::new(tel::End {
        request_id: request_id.to_owned(),
        extra: Default::default(),
    }))
}

/// `platform.fault` (Logs API only): one line of text.
pub(crate) fn fault(text: String) -> Record {
    Record::Fault(LogRecord::Text(text))
}

#[cfg(test)]
mod managed_tests {
    use super::*;

    #[test]
    fn a_managed_report_has_spans_and_duration_alone() {
        let answered = Report {
            request_id: "r".into(),
            duration: Duration::from_millis(12),
            init_duration: None,
            fault: None,
        };
        let Record::Report(mut record) = report(&answered, 128, 20, None) else {
            panic!("not a report")
        };
        let now = std::time::UNIX_EPOCH + Duration::from_millis(1_000);
        managed_report(&mut record, now);
        assert_eq!(record.metrics.billed_duration_ms, None);
        assert_eq!(record.metrics.max_memory_used_mb, None);
        let spans = record.spans.unwrap();
        assert_eq!(spans[0].name, "responseLatency");
        assert_eq!(spans[0].start, "1970-01-01T00:00:00.988Z");
        assert_eq!(spans[0].duration_ms, 12.0);
        assert_eq!(spans[1].name, "responseDuration");
        let timed_out = Report {
            fault: Some(Fault::Timeout),
            ..answered
        };
        let Record::Report(mut record) = report(&timed_out, 128, 20, None) else {
            panic!("not a report")
        };
        managed_report(&mut record, now);
        assert_eq!(record.spans, None);
    }
}
