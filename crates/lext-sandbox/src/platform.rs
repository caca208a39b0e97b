//! The `platform.*` telemetry events the driver publishes, built from the
//! lifecycle's effects with real figures (monotonic durations, the peak
//! memory of the process tree).
//!
//! The shapes are [`lext_protocol::telemetry`]'s records; this module only
//! fills them in, in the order RIE emits them (contract 3.3): `initStart`,
//! then at the end of Init `initRuntimeDone`, one `platform.extension` per
//! extension and `initReport`; per invoke `start`, `runtimeDone`, `report`.

use std::time::Duration;

use lext_protocol::telemetry::{
    self as tel, DurationMetrics, ExtensionInfo, InitializationType, LogRecord, Record,
    ReportMetrics,
};

use crate::driver::FunctionConfig;
use crate::lifecycle::{ExtensionSummary, InitPhase, Report, Status};
use crate::logline;

/// Records are stamped with the time by the telemetry hub that records them.
fn event(record: Record) -> Record {
    record
}

/// Milliseconds with two decimals: the figures must agree with the REPORT
/// line, which prints two decimals, so that a subscriber comparing both
/// sees the same numbers.
fn ms(d: Duration) -> f64 {
    // Two decimals, as Lambda reports them.
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

fn phase(p: InitPhase) -> tel::Phase {
    match p {
        InitPhase::Init => tel::Phase::Init,
        InitPhase::Invoke => tel::Phase::Invoke,
    }
}

fn status(s: Status) -> tel::Status {
    match s {
        Status::Success => tel::Status::Success,
        Status::Error => tel::Status::Error,
        Status::Failure => tel::Status::Failure,
        Status::Timeout => tel::Status::Timeout,
    }
}

/// `platform.initStart`.
pub fn init_start(function: &FunctionConfig, p: InitPhase) -> Record {
    event(Record::InitStart(tel::InitStart {
        // Every local environment is created on demand: there is no
        // provisioned concurrency or SnapStart to emulate.
        initialization_type: InitializationType::OnDemand,
        phase: phase(p),
        runtime_version: None,
        runtime_version_arn: None,
        // A custom runtime has no runtime version; the function fields are
        // those of the current schema (contract 3.3).
        function_name: Some(function.name.clone()),
        function_version: Some(function.version.clone()),
        instance_id: None,
        instance_max_memory: Some(u64::from(function.memory_mb) * 1024 * 1024),
        tracing: None,
        extra: Default::default(),
    }))
}

/// End of a successful Init: `initRuntimeDone`, `platform.extension` × N,
/// `initReport`.
pub fn init_done(duration: Duration, extensions: &[ExtensionSummary]) -> Vec<Record> {
    let mut events = Vec::with_capacity(extensions.len() + 2);
    events.push(event(Record::InitRuntimeDone(tel::InitRuntimeDone {
        initialization_type: InitializationType::OnDemand,
        phase: Some(tel::Phase::Init),
        status: tel::Status::Success,
        error_type: None,
        spans: None,
        tracing: None,
        extra: Default::default(),
    })));
    for ext in extensions {
        events.push(event(Record::Extension(ExtensionInfo {
            name: ext.name.clone(),
            state: ext.state.to_string(),
            events: ext.events.iter().map(|e| e.as_str().to_owned()).collect(),
            error_type: ext.error_type.map(str::to_owned),
            extra: Default::default(),
        })));
    }
    // initReport closes Init, after every extension's record (RIE order).
    events.push(init_report(
        InitPhase::Init,
        duration,
        Status::Success,
        None,
    ));
    events
}

/// `platform.initRuntimeDone` of a failed Init.
pub fn init_runtime_done(p: InitPhase, s: Status, error_type: Option<&str>) -> Record {
    event(Record::InitRuntimeDone(tel::InitRuntimeDone {
        initialization_type: InitializationType::OnDemand,
        phase: Some(phase(p)),
        status: status(s),
        error_type: error_type.map(str::to_owned),
        spans: None,
        tracing: None,
        extra: Default::default(),
    }))
}

/// `platform.initReport`.
pub fn init_report(
    p: InitPhase,
    duration: Duration,
    s: Status,
    error_type: Option<&str>,
) -> Record {
    event(Record::InitReport(tel::InitReport {
        initialization_type: InitializationType::OnDemand,
        phase: phase(p),
        status: Some(status(s)),
        error_type: error_type.map(str::to_owned),
        metrics: DurationMetrics {
            duration_ms: ms(duration),
            extra: Default::default(),
        },
        spans: None,
        tracing: None,
        extra: Default::default(),
    }))
}

fn trace_context(trace: Option<String>) -> Option<tel::TraceContext> {
    trace.map(|value| tel::TraceContext {
        span_id: None,
        kind: "X-Amzn-Trace-Id".to_owned(),
        value,
    })
}

/// `platform.start`.
pub fn start(request_id: &str, version: &str, trace: Option<String>) -> Record {
    event(Record::Start(tel::Start {
        request_id: request_id.to_owned(),
        version: Some(version.to_owned()),
        tenant_id: None,
        tracing: trace_context(trace),
        extra: Default::default(),
    }))
}

/// `platform.runtimeDone`.
pub fn runtime_done(
    request_id: &str,
    s: Status,
    error_type: Option<&str>,
    trace: Option<String>,
    duration: Duration,
    produced_bytes: Option<u64>,
) -> Record {
    event(Record::RuntimeDone(tel::RuntimeDone {
        request_id: request_id.to_owned(),
        status: status(s),
        error_type: error_type.map(str::to_owned),
        metrics: Some(tel::RuntimeDoneMetrics {
            duration_ms: ms(duration),
            produced_bytes,
            extra: Default::default(),
        }),
        spans: None,
        tracing: trace_context(trace),
        extra: Default::default(),
    }))
}

/// `platform.report`.
pub fn report(
    report: &Report,
    memory_mb: u32,
    max_memory_used_mb: u64,
    trace: Option<String>,
) -> Record {
    // Billed duration from the same rounded figures as the REPORT line:
    // ceil(Duration + Init Duration) after a cold start.
    let duration_ms = ms(report.duration);
    let init_ms = report.init_duration.map(ms);
    event(Record::Report(tel::Report {
        request_id: report.request_id.clone(),
        status: status(report.status),
        error_type: report.error_type.clone(),
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
        tracing: trace_context(trace),
        extra: Default::default(),
    }))
}

/// `platform.end` (Logs API only; the hub routes it).
pub fn end(request_id: &str) -> Record {
    Record::End(tel::End {
        request_id: request_id.to_owned(),
        extra: Default::default(),
    })
}

/// `platform.fault` (Logs API only): one line of text.
pub fn fault(text: String) -> Record {
    Record::Fault(LogRecord::Text(text))
}
