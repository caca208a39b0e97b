use super::*;
use serde_json::json;

/// A batch shaped like those Lambda delivers: fields as in AWS's Telemetry
/// API schema reference
/// (AWS: <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html>)
/// and in the payloads decoded by the official crate
/// (aws/aws-lambda-rust-runtime, `lambda-extension/src/telemetry.rs`) and by
/// Datadog's extension.
const BATCH: &str = r#"[
{"time":"2022-10-12T00:00:15.064Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn:aws:lambda:us-east-1::runtime:1234567890abcdef"}},
{"time":"2022-10-12T00:00:15.064Z","type":"extension","record":"[rust-example-extension] Registering..."},
{"time":"2022-10-12T00:00:15.300Z","type":"platform.telemetrySubscription","record":{"name":"my-telemetry-extension","state":"Subscribed","types":["platform","function"]}},
{"time":"2022-10-12T00:00:15.512Z","type":"platform.initRuntimeDone","record":{"initializationType":"on-demand","phase":"init","status":"success","spans":[{"name":"someTimeSpan","start":"2022-06-02T12:02:33.913Z","durationMs":70.5}]}},
{"time":"2022-10-12T00:00:15.513Z","type":"platform.extension","record":{"name":"my-telemetry-extension","state":"Ready","events":["INVOKE","SHUTDOWN"]}},
{"time":"2022-10-12T00:00:15.514Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","metrics":{"durationMs":125.33}}},
{"time":"2022-10-12T00:01:15.000Z","type":"platform.start","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","version":"$LATEST","tracing":{"spanId":"54565fb41ac79632","type":"X-Amzn-Trace-Id","value":"Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}}},
{"time":"2022-10-12T00:01:15.100Z","type":"function","record":"2022-10-12T00:01:15.100Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tINFO\tHello world\n"},
{"time":"2022-10-12T00:01:15.101Z","type":"function","record":{"timestamp":"2022-10-12T00:01:15.101Z","level":"INFO","requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","message":"Hello JSON"}},
{"time":"2022-10-12T00:01:15.200Z","type":"platform.runtimeDone","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","status":"success","metrics":{"durationMs":140.0,"producedBytes":16},"spans":[{"name":"responseLatency","start":"2022-08-02T12:01:23.521Z","durationMs":23.02},{"name":"responseDuration","start":"2022-08-02T12:01:23.544Z","durationMs":0.012}]}},
{"time":"2022-10-12T00:01:15.300Z","type":"platform.report","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","status":"success","metrics":{"durationMs":140.0,"billedDurationMs":141,"memorySizeMB":128,"maxMemoryUsedMB":54,"initDurationMs":125.33}}},
{"time":"2022-10-12T00:01:16.000Z","type":"platform.logsDropped","record":{"reason":"Consumer seems to have fallen behind as it has not acknowledged receipt of logs.","droppedRecords":123,"droppedBytes":12345}},
{"time":"2022-10-12T00:01:17.000Z","type":"platform.futureThing","record":{"anything":[1,2,3]}}
]"#;

#[test]
fn a_real_batch_decodes_every_event() {
    let batch = decode_batch(BATCH.as_bytes()).unwrap();
    assert!(batch.failures.is_empty(), "{:?}", batch.failures);
    let types: Vec<_> = batch.events.iter().map(|e| e.record.event_type()).collect();
    assert_eq!(
        types,
        [
            "platform.initStart",
            "extension",
            "platform.telemetrySubscription",
            "platform.initRuntimeDone",
            "platform.extension",
            "platform.initReport",
            "platform.start",
            "function",
            "function",
            "platform.runtimeDone",
            "platform.report",
            "platform.logsDropped",
            "platform.futureThing",
        ]
    );
    let Record::Report(report) = &batch.events[10].record else {
        panic!("not a report")
    };
    assert_eq!(report.status, Status::Success);
    assert_eq!(report.metrics.billed_duration_ms, Some(141));
    assert_eq!(report.metrics.memory_size_mb, Some(128));
    assert_eq!(report.metrics.max_memory_used_mb, Some(54));
    assert_eq!(report.metrics.init_duration_ms, Some(125.33));
    let Record::Function(LogRecord::Json(obj)) = &batch.events[8].record else {
        panic!("JSON function record not kept as JSON")
    };
    assert_eq!(obj["message"], "Hello JSON");
    assert_eq!(batch.events[12].record.log_type(), LogType::Platform);
    assert_eq!(batch.events[1].record.log_type(), LogType::Extension);
}

#[test]
fn every_event_round_trips_exactly() {
    let original: Vec<Value> = serde_json::from_str(BATCH).unwrap();
    let batch = decode_batch(BATCH.as_bytes()).unwrap();
    let again: Vec<Value> = batch
        .events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(again, original);
}

#[test]
fn unknown_fields_survive_re_encoding() {
    let raw =
        json!({"time":"t","type":"platform.start","record":{"requestId":"r","newField":{"x":1}}});
    let event = TelemetryEvent::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), raw);
}

#[test]
fn managed_instances_report_has_only_duration() {
    let raw = json!({"time":"t","type":"platform.report","record":{"requestId":"r","status":"success","metrics":{"durationMs":1.5}}});
    let event = TelemetryEvent::from_value(raw.clone()).unwrap();
    let Record::Report(r) = &event.record else {
        panic!()
    };
    assert_eq!(r.metrics.billed_duration_ms, None);
    assert_eq!(serde_json::to_value(&event).unwrap(), raw);
}

/// A batch as Lambda Managed Instances sends it (schema `2025-01-29`): the
/// shapes of RIE `internal/lambda-managed-instances/interop/events_api.go`
/// (`initStart` with `instanceId` and `instanceMaxMemory` in bytes, `start`
/// with `functionArn`, `report` with `durationMs` only and spans), with the
/// requests of two overlapping invokes interleaved, and a JSON function line.
const LMI_BATCH: &str = r#"[
{"time":"2026-11-01T10:00:00.000Z","type":"platform.initStart","record":{"initializationType":"lambda-managed-instances","runtimeVersion":"provided:al2023.v1","runtimeVersionArn":"arn:aws:lambda:us-east-1::runtime:abc","functionName":"fn","functionVersion":"1","instanceId":"i-0123456789abcdef0","instanceMaxMemory":2147483648,"phase":"init"}},
{"time":"2026-11-01T10:00:00.200Z","type":"platform.initRuntimeDone","record":{"initializationType":"lambda-managed-instances","status":"success","phase":"init"}},
{"time":"2026-11-01T10:00:00.201Z","type":"platform.initReport","record":{"initializationType":"lambda-managed-instances","metrics":{"durationMs":201.5},"phase":"init","status":"success"}},
{"time":"2026-11-01T10:00:01.000Z","type":"platform.start","record":{"requestId":"a","version":"1","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:fn:1"}},
{"time":"2026-11-01T10:00:01.001Z","type":"platform.start","record":{"requestId":"b","version":"1","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:fn:1"}},
{"time":"2026-11-01T10:00:01.050Z","type":"function","record":{"timestamp":"2026-11-01T10:00:01.050Z","level":"INFO","requestId":"b","message":"hi"}},
{"time":"2026-11-01T10:00:01.100Z","type":"platform.report","record":{"requestId":"b","status":"success","metrics":{"durationMs":99.125},"spans":[{"name":"responseLatency","start":"2026-11-01T10:00:01.001Z","durationMs":98.5}]}},
{"time":"2026-11-01T10:00:01.200Z","type":"platform.report","record":{"requestId":"a","status":"error","errorType":"Sandbox.Timedout","metrics":{"durationMs":200.0}}}
]"#;

#[test]
fn a_managed_instances_batch_decodes_into_typed_records() {
    let batch = decode_batch(LMI_BATCH.as_bytes()).unwrap();
    assert!(batch.failures.is_empty(), "{:?}", batch.failures);
    let Record::InitStart(init) = &batch.events[0].record else {
        panic!("not initStart")
    };
    assert_eq!(
        init.initialization_type,
        InitializationType::LambdaManagedInstances
    );
    assert_eq!(init.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    assert_eq!(init.instance_max_memory, Some(2 * 1024 * 1024 * 1024));
    let Record::Start(start) = &batch.events[3].record else {
        panic!("not start")
    };
    assert_eq!(
        start.function_arn.as_deref(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:fn:1")
    );
    let reports: Vec<(&str, f64, Option<&str>)> = batch
        .events
        .iter()
        .filter_map(|e| match &e.record {
            Record::Report(r) => Some((
                r.request_id.as_str(),
                r.metrics.duration_ms,
                r.error_type.as_deref(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        reports,
        [("b", 99.125, None), ("a", 200.0, Some("Sandbox.Timedout"))]
    );
    let Record::Report(b) = &batch.events[6].record else {
        panic!("not report")
    };
    assert_eq!(b.spans.as_ref().map(Vec::len), Some(1));
    assert_eq!(b.metrics.billed_duration_ms, None);
    // Nothing is lost on the way back out.
    let original: Vec<Value> = serde_json::from_str(LMI_BATCH).unwrap();
    let again: Vec<Value> = batch
        .events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(again, original);
}

#[test]
fn a_malformed_element_does_not_spoil_the_batch() {
    let body = br#"[{"time":"t","type":"platform.report","record":{"status":"success"}},{"time":"t","type":"function","record":"ok"},42]"#;
    let batch = decode_batch(body).unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.failures.len(), 2);
    assert_eq!(batch.failures[0].index, 0);
    assert!(
        batch.failures[0].error.contains("platform.report"),
        "{}",
        batch.failures[0].error
    );
    assert_eq!(batch.failures[1].index, 2);
    assert!(decode_batch(b"{}").is_err());
    assert!(decode_batch(b"garbage").is_err());
}

#[test]
fn statuses_and_types_are_open() {
    let raw = json!({"time":"t","type":"platform.runtimeDone","record":{"requestId":"r","status":"SomethingNew","errorType":"Runtime.ExitError"}});
    let event = TelemetryEvent::from_value(raw).unwrap();
    let Record::RuntimeDone(done) = event.record else {
        panic!()
    };
    assert_eq!(done.status, Status::Other("SomethingNew".into()));
}

fn subscribe(json: Value) -> SubscribeRequest {
    serde_json::from_value(json).unwrap()
}

#[test]
fn subscription_requests_validate_like_lambda() {
    // The SAMPLE's Telemetry API subscription.
    let ok = subscribe(json!({
        "schemaVersion": "2022-12-13",
        "types": ["platform", "function"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 1000},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4323", "method": "POST", "encoding": "JSON"}
    }));
    assert_eq!(ok.validate(Api::Telemetry), Ok(()));
    assert_eq!(ok.destination_port(), Some(4323));

    let cases = [
        (
            json!({"schemaVersion":"2022-07-01","types":[],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain"}}),
            "URI port is not provided; types should not be empty",
        ),
        (
            json!({"types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
            "schemaVersion is required",
        ),
        (
            json!({"schemaVersion":"2019-01-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
            "schemaVersion \"2019-01-01\" is not supported",
        ),
        (
            json!({"schemaVersion":"2022-07-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://example.com:1234"}}),
            "URI host must be sandbox.localdomain or sandbox, got \"example.com\"",
        ),
        (
            json!({"schemaVersion":"2022-07-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"https://sandbox:1234"}}),
            "URI \"https://sandbox:1234\" must start with http://",
        ),
        (
            json!({"schemaVersion":"2022-07-01","types":["platform"],"buffering":{"maxItems":10},"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
            "buffering.maxItems must be between 1000 and 10000, got 10",
        ),
        (
            json!({"schemaVersion":"2022-07-01","types":["platform"],"buffering":{"timeoutMs":24},"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
            "buffering.timeoutMs must be between 25 and 30000, got 24",
        ),
        (
            json!({"schemaVersion":"2022-07-01","types":["platform"],"buffering":{"maxBytes":2000000},"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
            "buffering.maxBytes must be between 262144 and 1048576, got 2000000",
        ),
        (
            json!({"schemaVersion":"2022-07-01","types":["platform","metrics"],"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
            "type \"metrics\" is not supported",
        ),
        (
            json!({"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"TCP"}}),
            "destination.port is required for TCP",
        ),
        (
            json!({"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"UDP"}}),
            "destination.protocol \"UDP\" is not supported",
        ),
    ];
    for (body, message) in cases {
        assert_eq!(
            subscribe(body.clone()).validate(Api::Telemetry),
            Err(ValidationError(message.to_owned())),
            "{body}"
        );
    }
}

#[test]
fn logs_api_schema_is_optional() {
    let req = subscribe(
        json!({"types":["platform","function"],"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
    );
    assert_eq!(req.validate(Api::Logs), Ok(()));
    assert!(req.validate(Api::Telemetry).is_err());
    let bad = subscribe(
        json!({"schemaVersion":"2022-07-01","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox:1234"}}),
    );
    assert!(bad.validate(Api::Logs).is_err());
}

#[test]
fn buffering_defaults() {
    assert_eq!(Buffering::default().limits(), Buffering::DEFAULT);
    let some = Buffering {
        max_items: Some(1000),
        ..Default::default()
    };
    assert_eq!(some.limits().max_items, 1000);
    assert_eq!(some.limits().timeout_ms, 1000);
}

#[test]
fn builder_subscription_serializes_like_the_samples() {
    let req = SubscribeRequest::http(vec![LogType::Platform, LogType::Function], 4243);
    assert_eq!(
        serde_json::to_value(&req).unwrap(),
        json!({"schemaVersion":"2025-01-29","types":["platform","function"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243"}})
    );
    assert_eq!(req.validate(Api::Telemetry), Ok(()));
}

#[test]
fn an_event_is_small_because_only_log_lines_are_inline() {
    // A batch holds up to 10,000 events, nearly all of them log lines: each
    // event's slot is what every line costs an extension that decodes it.
    assert!(
        std::mem::size_of::<TelemetryEvent>() <= 80,
        "TelemetryEvent is {} bytes",
        std::mem::size_of::<TelemetryEvent>()
    );
    let line = TelemetryEvent::new(
        "2022-10-21T14:05:03.165Z",
        Record::Function(LogRecord::Text("hello".into())),
    );
    let report: TelemetryEvent =
        serde_json::from_value(json!({"time":"2022-10-21T14:05:03.165Z","type":"platform.report","record":{"requestId":"r","status":"success","metrics":{"durationMs":1.5,"billedDurationMs":2,"memorySizeMB":128,"maxMemoryUsedMB":20}}})).unwrap();
    match &report.record {
        Record::Report(r) => assert_eq!(r.request_id, "r"),
        other => panic!("not a report: {other:?}"),
    }
    assert_eq!(serde_json::to_value(&line).unwrap()["record"], "hello");
}
