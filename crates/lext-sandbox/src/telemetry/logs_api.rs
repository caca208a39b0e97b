//! The Logs API's shapes: which events a Logs API subscriber gets and how
//! each record looks there (AWS: Lambda Logs API,
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-logs-api.html>).
//!
//! The Logs API predates the Telemetry API and carries less: `platform.start`
//! without tracing, `platform.report` with its metrics only, and
//! `platform.runtimeDone` only for subscriptions with schema version
//! `2021-03-18`. Three types exist only there (`platform.end`,
//! `platform.fault`, `platform.logsSubscription`); the Telemetry API does not
//! deliver them.

use bytes::Bytes;
use lext_protocol::telemetry::{Record, SubscribeRequest, TelemetryEvent};
use serde_json::{json, Value};

/// The Logs API schema version that adds `platform.runtimeDone`.
const LOGS_SCHEMA_WITH_RUNTIME_DONE: &str = "2021-03-18";

/// Whether a Logs API subscription made with `request` gets
/// `platform.runtimeDone` (schema version `2021-03-18`).
pub(super) fn delivers_runtime_done(request: &SubscribeRequest) -> bool {
    request.schema_version.as_deref() == Some(LOGS_SCHEMA_WITH_RUNTIME_DONE)
}

/// Whether a Logs API subscriber asked to receive its batches with PUT
/// rather than POST. The Logs API delivers with the method the subscriber
/// chose; the Telemetry API always POSTs (AWS: Telemetry API,
/// <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>; Lambda
/// Logs API, <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-logs-api.html>).
pub(super) fn delivers_with_put(request: &SubscribeRequest) -> bool {
    request
        .destination
        .method
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("PUT"))
}

/// The types only the Logs API delivers (`platform.end`, `platform.fault`,
/// `platform.logsSubscription`): a Telemetry API subscriber never gets them.
pub(super) fn logs_only(record: &Record) -> bool {
    record.is_logs_api_only()
}

/// `event` as a Logs API subscriber receives it, encoded; `None` when the
/// Logs API does not deliver its type.
pub(super) fn encode(event: &TelemetryEvent, runtime_done: bool) -> Option<Bytes> {
    let record = &event.record;
    let shaped = logs_record(record, runtime_done)?;
    let event = json!({
        "time": event.time,
        "type": record.event_type(),
        "record": shaped,
    });
    serde_json::to_vec(&event).ok().map(Bytes::from)
}

/// The Logs API's record for `record`, or `None` when the Logs API does not
/// deliver that type (AWS: Lambda Logs API,
/// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-logs-api.html>).
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
        Record::End(_)
        | Record::Fault(_)
        | Record::Extension(_)
        | Record::LogsSubscription(_)
        | Record::LogsDropped(_)
        | Record::Function(_)
        | Record::ExtensionLog(_) => Some(record.to_value()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lext_protocol::telemetry::{LogRecord, RuntimeDone, Status, Subscription};

    #[test]
    fn logs_api_shapes() {
        let done = Record::RuntimeDone(Box::new(RuntimeDone {
            request_id: "r".into(),
            status: Status::Success,
            error_type: None,
            metrics: None,
            spans: None,
            tenant_id: None,
            tracing: None,
            extra: Default::default(),
        }));
        assert_eq!(logs_record(&done, false), None);
        assert_eq!(
            logs_record(&done, true),
            Some(json!({"requestId": "r", "status": "success"}))
        );
        let sub = Record::TelemetrySubscription(Box::new(Subscription {
            name: "x".into(),
            state: "Subscribed".into(),
            types: vec![],
            extra: Default::default(),
        }));
        assert_eq!(logs_record(&sub, true), None);
        assert_eq!(
            logs_record(&Record::Fault(LogRecord::Text("f".into())), false),
            Some(json!("f"))
        );
    }
}
