//! The JSON log format: what becomes of an output line and of a platform
//! record when a function logs in JSON (AWS: Configuring advanced logging
//! controls for Lambda functions,
//! <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html>;
//! Log-level filtering,
//! <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html>).
//!
//! - A line that is a JSON object is the record as it is; its `level` (any
//!   case) decides the filtering, INFO when absent or unknown.
//! - Any other line is wrapped as `{"timestamp","level":"INFO","message",
//!   "requestId"}` (and `"tenantId"` under tenant isolation), the shape seen in live batches (honeycomb-lambda-extension
//!   #173).
//! - Platform records are printed as the Telemetry API carries them,
//!   `{"time","type","record"}`, in place of the text lines, filtered by the
//!   system log level.
//!
//! Pure functions: a line and its context in, a record and its text out.

use std::time::SystemTime;

use lext_protocol::telemetry::{Record, Status, TelemetryEvent};
use serde_json::{Map, Value};

use crate::config::LogLevel;
use crate::logline::iso8601_ms;

/// An output line in JSON format: the record subscribers get and the line
/// CloudWatch stores (the same JSON), or `None` when its level is below
/// `min`.
pub(crate) fn output_line(
    text: &str,
    time: SystemTime,
    request_id: Option<&str>,
    tenant_id: Option<&str>,
    min: LogLevel,
) -> Option<(Value, String)> {
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) {
        let level = object
            .get("level")
            .and_then(Value::as_str)
            .and_then(LogLevel::parse)
            .unwrap_or(LogLevel::Info);
        return (level >= min).then(|| (Value::Object(object), text.to_owned()));
    }
    if LogLevel::Info < min {
        return None;
    }
    let mut object = Map::new();
    object.insert("timestamp".into(), Value::String(iso8601_ms(time)));
    object.insert("level".into(), Value::String("INFO".into()));
    object.insert("message".into(), Value::String(text.to_owned()));
    if let Some(id) = request_id {
        object.insert("requestId".into(), Value::String(id.to_owned()));
    }
    // "The tenant identifier is automatically included in Lambda logs when
    // you have JSON logging enabled" (AWS: Accessing tenant identifier in
    // Lambda function code).
    if let Some(id) = tenant_id {
        object.insert("tenantId".into(), Value::String(id.to_owned()));
    }
    let value = Value::Object(object);
    let line = value.to_string();
    Some((value, line))
}

/// The level of a platform record: WARN for a failed or timed-out phase,
/// INFO for everything else (lext's choice: Lambda documents the system
/// levels, not which record has which; docs/fidelity.md).
fn platform_level(record: &Record) -> LogLevel {
    let failed = |status: Option<&Status>| status.is_some_and(|s| *s != Status::Success);
    let failed = match record {
        Record::InitReport(r) => failed(r.status.as_ref()),
        Record::RuntimeDone(r) => failed(Some(&r.status)),
        Record::Report(r) => failed(Some(&r.status)),
        _ => false,
    };
    if failed {
        LogLevel::Warn
    } else {
        LogLevel::Info
    }
}

/// The line a platform record is in JSON format (`{"time","type","record"}`),
/// or `None` when its level is below `min`, or when it is no line of the
/// log (the Logs API's own records, and the logs themselves).
pub(crate) fn platform_line(record: &Record, time: SystemTime, min: LogLevel) -> Option<String> {
    if !record.event_type().starts_with("platform.") || record.is_logs_api_only() {
        return None;
    }
    if platform_level(record) < min {
        return None;
    }
    let event = TelemetryEvent::new(iso8601_ms(time), record.clone());
    serde_json::to_string(&event).ok()
}

#[cfg(test)]
mod tests {
    use lext_protocol::telemetry::LogRecord;

    use super::*;

    #[test]
    fn json_lines_stay_and_are_filtered_by_their_level() {
        let t = SystemTime::UNIX_EPOCH;
        let debug = r#"{"level":"debug","msg":"x"}"#;
        assert_eq!(output_line(debug, t, None, None, LogLevel::Info), None);
        let (value, line) = output_line(debug, t, None, None, LogLevel::Debug).unwrap();
        assert_eq!(value["msg"], "x");
        assert_eq!(line, debug);
        // No level, or an unknown one: INFO.
        assert!(output_line(r#"{"msg":"y"}"#, t, None, None, LogLevel::Info).is_some());
        assert!(output_line(r#"{"level":"LOUD"}"#, t, None, None, LogLevel::Warn).is_none());
        // A JSON value that is no object is a plain line.
        let (value, _) = output_line("42", t, None, None, LogLevel::Info).unwrap();
        assert_eq!(value["message"], "42");
    }

    #[test]
    fn plain_lines_are_wrapped_with_the_request_id() {
        let (value, line) = output_line(
            "hello",
            SystemTime::UNIX_EPOCH,
            Some("r1"),
            None,
            LogLevel::Info,
        )
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({"timestamp": "1970-01-01T00:00:00.000Z", "level": "INFO",
                               "message": "hello", "requestId": "r1"})
        );
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), value);
        assert_eq!(
            output_line("hello", SystemTime::UNIX_EPOCH, None, None, LogLevel::Warn),
            None
        );
        let (value, _) = output_line(
            "hi",
            SystemTime::UNIX_EPOCH,
            Some("r2"),
            Some("blue"),
            LogLevel::Info,
        )
        .unwrap();
        assert_eq!(value["tenantId"], "blue");
        assert_eq!(value["requestId"], "r2");
    }

    #[test]
    fn platform_records_become_lines_and_logs_do_not() {
        let function = Record::Function(LogRecord::Text("x".into()));
        assert_eq!(
            platform_line(&function, SystemTime::UNIX_EPOCH, LogLevel::Info),
            None
        );
    }
}
