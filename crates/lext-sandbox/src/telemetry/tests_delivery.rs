//! Telemetry delivery against real subscriber servers on 127.0.0.1:0:
//! batching limits, 100,000 lines with none lost, logsDropped with exact
//! counts, Init replay, Logs API shapes, TCP destinations, --telemetry-out.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use lext_protocol::telemetry::{
    Api, Buffering, End, InitStart, InitializationType, LogRecord, LogType, Phase, Record, Report,
    ReportMetrics, Start, Status, SubscribeRequest, TraceContext,
};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::process::{self, Source, Spec};
use crate::sink::{Fanout, JsonLinesSink, Sink};
use crate::telemetry::delivery::Item;
use crate::telemetry::{FlushReport, Hub, HubConfig, SubscribeError};

/// One POST the test subscriber received.
#[derive(Debug)]
struct Received {
    at: Instant,
    method: hyper::Method,
    body_len: usize,
    events: Vec<Value>,
}

/// A Telemetry API subscriber: an HTTP server on 127.0.0.1:0 that forwards
/// each batch to the test and answers 200 once `open` is true (a stall
/// otherwise). Dropping `stop` ends it.
struct TestSubscriber {
    port: u16,
    batches: mpsc::UnboundedReceiver<Received>,
    open: watch::Sender<bool>,
    /// The HTTP status it answers (200 unless a test changes it).
    status: Arc<AtomicU16>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestSubscriber {
    /// Every event received so far, in order, from batches that must all
    /// have come with `method`. For after `Hub::shutdown`, when all is in.
    fn drain(&mut self, method: hyper::Method) -> Vec<Value> {
        let mut events = Vec::new();
        while let Ok(batch) = self.batches.try_recv() {
            assert_eq!(batch.method, method, "the method of a batch");
            events.extend(batch.events);
        }
        events
    }
}

/// The `type` of each event.
fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn subscriber_server(open: bool) -> TestSubscriber {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status = Arc::new(AtomicU16::new(200));
    let server_status = status.clone();
    let port = listener.local_addr().unwrap().port();
    let (tx, batches) = mpsc::unbounded_channel();
    let (open_tx, open_rx) = watch::channel(open);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                _ = &mut stop_rx => return,
            };
            let tx = tx.clone();
            let open_rx = open_rx.clone();
            let status = server_status.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let mut open_rx = open_rx.clone();
                    let status = status.load(Ordering::SeqCst);
                    async move {
                        let method = request.method().clone();
                        assert_eq!(request.uri().path(), "/telemetry");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        let _ = tx.send(Received {
                            at: Instant::now(),
                            method,
                            body_len: body.len(),
                            events,
                        });
                        // Stall until the test opens the gate.
                        let _ = open_rx.wait_for(|open| *open).await;
                        let mut response =
                            hyper::Response::new(Full::new(Bytes::from_static(b"OK")));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestSubscriber {
        port,
        batches,
        open: open_tx,
        status,
        _stop: stop_tx,
    }
}

fn request(types: &[LogType], port: u16, buffering: Option<Buffering>) -> SubscribeRequest {
    let mut request = SubscribeRequest::http(types.to_vec(), port);
    request.destination.uri = Some(format!("http://sandbox.localdomain:{port}/telemetry"));
    request.buffering = buffering;
    request.validate(Api::Telemetry).unwrap();
    request
}

fn buffering(max_items: u32, max_bytes: u32, timeout_ms: u32) -> Option<Buffering> {
    Some(Buffering {
        max_items: Some(max_items),
        max_bytes: Some(max_bytes),
        timeout_ms: Some(timeout_ms),
    })
}

fn line(text: impl Into<String>) -> Record {
    Record::Function(LogRecord::Text(text.into()))
}

/// Receive batches until `want` log records (function/extension) arrived.
async fn receive_records(sub: &mut TestSubscriber, want: usize) -> (Vec<Received>, Vec<Value>) {
    let mut batches = Vec::new();
    let mut records = Vec::new();
    while records.len() < want {
        let batch = tokio::time::timeout(Duration::from_secs(20), sub.batches.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} records arrived", records.len()))
            .unwrap();
        records.extend(
            batch
                .events
                .iter()
                .filter(|e| e["type"] == "function" || e["type"] == "extension")
                .cloned(),
        );
        batches.push(batch);
    }
    (batches, records)
}

/// Subscribes `name` to function logs at `port`, batched by a 25 ms
/// timeout (the setting of the tests that count records, not batches).
fn subscribe_function_logs(hub: &Hub, name: &str, port: u16) {
    hub.subscribe(
        Api::Telemetry,
        name,
        &request(&[LogType::Function], port, buffering(1000, 262_144, 25)),
    )
    .unwrap();
}

/// The next batch the subscriber received, waiting at most 5 s.
async fn next_batch(sub: &mut TestSubscriber) -> Received {
    tokio::time::timeout(Duration::from_secs(5), sub.batches.recv())
        .await
        .expect("no batch arrived within 5 s")
        .expect("the subscriber stopped")
}

/// A sink that wants no events, as `lext run` without `--telemetry-out`.
fn no_sink() -> Arc<dyn Sink> {
    Arc::new(Fanout::new(Vec::new()))
}

/// A sink writing every event to `path` as JSON lines (`--telemetry-out`).
fn json_lines(path: &std::path::Path) -> Arc<dyn Sink> {
    Arc::new(JsonLinesSink::create(path).unwrap())
}

fn hub() -> Hub {
    Hub::new(HubConfig::default(), no_sink())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_honour_max_items_and_keep_order() {
    let mut sub = subscriber_server(true).await;
    let hub = hub();
    hub.subscribe(
        Api::Telemetry,
        "ext",
        &request(
            &[LogType::Function],
            sub.port,
            buffering(1000, 1_048_576, 30_000),
        ),
    )
    .unwrap();
    for i in 0..2500 {
        hub.record(line(format!("line {i}")));
    }
    let (batches, records) = receive_records(&mut sub, 2000).await;
    // The first two batches are full (1,000 items each) long before the
    // 30 s timeout; the remaining 500 wait for the flush at shutdown.
    assert!(
        batches.iter().all(|b| b.events.len() == 1000),
        "{:?}",
        batches.iter().map(|b| b.events.len()).collect::<Vec<_>>()
    );
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        FlushReport {
            undelivered: vec![],
            completed: true
        }
    );
    let (_, rest) = receive_records(&mut sub, 500).await;
    let all: Vec<Value> = records.into_iter().chain(rest).collect();
    assert_eq!(all.len(), 2500);
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event["record"], format!("line {i}"), "order kept");
        let time = event["time"].as_str().unwrap();
        assert_eq!(time.len(), "2022-10-21T14:05:03.165Z".len());
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_honour_max_bytes() {
    let mut sub = subscriber_server(true).await;
    let hub = hub();
    hub.subscribe(
        Api::Telemetry,
        "ext",
        &request(
            &[LogType::Function],
            sub.port,
            buffering(10_000, 262_144, 30_000),
        ),
    )
    .unwrap();
    let long = "x".repeat(1000);
    for i in 0..1000 {
        hub.record(line(format!("{i:04} {long}")));
    }
    hub.shutdown(Duration::from_secs(5)).await;
    let (batches, records) = receive_records(&mut sub, 1000).await;
    assert_eq!(records.len(), 1000);
    assert!(
        batches.len() >= 4,
        "about 1 MB in batches of at most 256 KiB"
    );
    for batch in &batches {
        assert!(
            batch.body_len <= 262_144,
            "a batch of {} bytes",
            batch.body_len
        );
    }
    // Full batches really are close to the limit (not one event each).
    assert!(batches[0].body_len > 250_000, "{}", batches[0].body_len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_event_waits_for_timeout_ms() {
    let mut sub = subscriber_server(true).await;
    let hub = hub();
    hub.subscribe(
        Api::Telemetry,
        "ext",
        &request(
            &[LogType::Function],
            sub.port,
            buffering(1000, 262_144, 300),
        ),
    )
    .unwrap();
    let sent = Instant::now();
    hub.record(line("alone"));
    let (batches, _) = receive_records(&mut sub, 1).await;
    let waited = batches[0].at - sent;
    assert!(
        waited >= Duration::from_millis(290),
        "sent after {waited:?}, before timeoutMs"
    );
    assert_eq!(batches[0].events.len(), 1);
    hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_function_lines_all_arrive_batched() {
    let mut sub = subscriber_server(true).await;
    let hub = hub();
    hub.subscribe(
        Api::Telemetry,
        "ext",
        &request(&[LogType::Function], sub.port, None),
    )
    .unwrap();
    // A real process writes the lines; the process module's sink feeds the hub.
    let sink_hub = hub.clone();
    let sink: process::LineSink = Arc::new(move |batch| sink_hub.record_lines(&batch));
    let mut spec = Spec::new(
        "/bin/sh",
        vec![("PATH".into(), "/usr/bin:/bin".into())],
        Source::Function,
    );
    spec.args = vec!["-c".into(), "seq 1 100000".into()];
    let mut child = process::spawn(spec, sink).unwrap();
    assert!(child.wait().await.unwrap().success());
    let report = hub.shutdown(Duration::from_secs(20)).await;
    assert_eq!(
        report,
        FlushReport {
            undelivered: vec![],
            completed: true
        }
    );
    let (batches, records) = receive_records(&mut sub, 100_000).await;
    assert_eq!(records.len(), 100_000, "none lost");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["record"], (i + 1).to_string());
    }
    assert!(batches.len() < 1000, "batched: {} POSTs", batches.len());
    assert!(!batches
        .iter()
        .flat_map(|b| &b.events)
        .any(|e| e["type"] == "platform.logsDropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_gets_logs_dropped_with_exact_counts() {
    let mut sub = subscriber_server(false).await;
    // Every record below encodes to the same size, so the queue limit is
    // an exact number of records.
    let sample = serde_json::to_vec(&lext_protocol::telemetry::TelemetryEvent::new(
        "2022-10-21T14:05:03.165Z",
        line("record-000"),
    ))
    .unwrap()
    .len();
    let capacity = 10;
    let hub = Hub::new(
        HubConfig {
            queue_limit_bytes: capacity * sample,
            post_timeout: Duration::from_secs(30),
            ..HubConfig::default()
        },
        no_sink(),
    );
    subscribe_function_logs(&hub, "ext", sub.port);
    hub.record(line("first-rec"));
    // The first batch is now in flight and stalled at the subscriber.
    let first = next_batch(&mut sub).await;
    assert_eq!(first.events.len(), 1);
    let total = 100;
    for i in 0..total {
        hub.record(line(format!("record-{i:03}")));
    }
    sub.open.send(true).unwrap();
    let (batches, records) = receive_records(&mut sub, capacity).await;
    let dropped: Vec<&Value> = batches
        .iter()
        .flat_map(|b| &b.events)
        .filter(|e| e["type"] == "platform.logsDropped")
        .collect();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    let notice = &dropped[0]["record"];
    assert_eq!(notice["droppedRecords"], (total - capacity) as u64);
    assert_eq!(notice["droppedBytes"], ((total - capacity) * sample) as u64);
    assert!(notice["reason"].as_str().unwrap().contains("fallen behind"));
    // The notice leads the batch that follows the stall, and the records
    // that fitted arrive in order.
    assert_eq!(batches[0].events[0]["type"], "platform.logsDropped");
    let got: Vec<&str> = records
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..capacity).map(|i| format!("record-{i:03}")).collect();
    assert_eq!(got, want);
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert!(report.completed);
    assert_eq!(
        report.undelivered.len(),
        1,
        "the losses are reported at shutdown too"
    );
    assert_eq!(
        report.undelivered[0].dropped_records,
        (total - capacity) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_is_down_is_reported_never_silent() {
    // Bind and close a listener to get a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("telemetry.jsonl");
    let hub = Hub::new(HubConfig::default(), json_lines(&out));
    subscribe_function_logs(&hub, "down", port);
    for i in 0..5 {
        hub.record(line(format!("r{i}")));
    }
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.undelivered.len(), 1);
    assert_eq!(report.undelivered[0].extension, "down");
    assert_eq!(report.undelivered[0].dropped_records, 5);
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dropped = lines
        .iter()
        .find(|e| e["type"] == "platform.logsDropped")
        .expect("logsDropped in --telemetry-out");
    assert_eq!(dropped["record"]["droppedRecords"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_events_are_replayed_to_late_subscribers() {
    let mut sub = subscriber_server(true).await;
    let hub = hub();
    hub.record(Record::InitStart(Box::new(InitStart {
        initialization_type: InitializationType::OnDemand,
        phase: Phase::Init,
        runtime_version: None,
        runtime_version_arn: None,
        function_name: Some("fn".into()),
        function_version: Some("$LATEST".into()),
        instance_id: None,
        instance_max_memory: None,
        tracing: None,
        extra: Default::default(),
    })));
    hub.record(Record::ExtensionLog(LogRecord::Text(
        "before subscribe".into(),
    )));
    hub.record(line("function before subscribe"));
    hub.subscribe(
        Api::Telemetry,
        "late",
        &request(
            &[LogType::Platform, LogType::Extension],
            sub.port,
            buffering(1000, 262_144, 25),
        ),
    )
    .unwrap();
    hub.record(Record::ExtensionLog(LogRecord::Text(
        "after subscribe".into(),
    )));
    hub.close_subscriptions();
    hub.record(Record::ExtensionLog(LogRecord::Text("after init".into())));
    let err = hub
        .subscribe(
            Api::Telemetry,
            "later",
            &request(&[LogType::Platform], sub.port, None),
        )
        .unwrap_err();
    assert_eq!(err, SubscribeError::Closed(Api::Telemetry));
    assert_eq!(
        err.to_string(),
        "Telemetry API subscription is closed already"
    );
    hub.shutdown(Duration::from_secs(5)).await;
    let events = sub.drain(hyper::Method::POST);
    let types: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["record"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            "platform.initStart ",
            "extension before subscribe",
            "platform.telemetrySubscription ",
            "extension after subscribe",
            "extension after init",
        ],
        "replayed first, function lines filtered out"
    );
    let subscription = &events[2]["record"];
    assert_eq!(subscription["name"], "late");
    assert_eq!(subscription["state"], "Subscribed");
    assert_eq!(
        subscription["types"],
        serde_json::json!(["platform", "extension"])
    );
}

fn report_record() -> Record {
    Record::Report(Box::new(Report {
        request_id: "req".into(),
        status: Status::Success,
        error_type: None,
        metrics: ReportMetrics {
            duration_ms: 12.5,
            billed_duration_ms: Some(13),
            memory_size_mb: Some(128),
            max_memory_used_mb: Some(20),
            init_duration_ms: Some(100.25),
            restore_duration_ms: None,
            extra: Default::default(),
        },
        spans: None,
        tenant_id: None,
        tracing: None,
        extra: Default::default(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_api_subscribers_get_logs_api_shapes() {
    let mut logs_sub = subscriber_server(true).await;
    let mut tel_sub = subscriber_server(true).await;
    let hub = hub();
    let mut logs_request = request(
        &[LogType::Platform, LogType::Function],
        logs_sub.port,
        buffering(1000, 262_144, 25),
    );
    logs_request.schema_version = Some("2021-03-18".into());
    logs_request.destination.method = Some("PUT".into());
    hub.subscribe(Api::Logs, "logs-ext", &logs_request).unwrap();
    hub.subscribe(
        Api::Telemetry,
        "tel-ext",
        &request(
            &[LogType::Platform],
            tel_sub.port,
            buffering(1000, 262_144, 25),
        ),
    )
    .unwrap();
    assert_eq!(
        hub.subscribe(
            Api::Telemetry,
            "logs-ext",
            &request(&[LogType::Platform], tel_sub.port, None)
        ),
        Err(SubscribeError::MixedApis("logs-ext".into()))
    );
    hub.record(Record::Start(Box::new(Start {
        request_id: "req".into(),
        version: Some("$LATEST".into()),
        function_arn: None,
        tenant_id: None,
        tracing: Some(TraceContext {
            span_id: None,
            kind: "X-Amzn-Trace-Id".into(),
            value: "Root=1".into(),
        }),
        extra: Default::default(),
    })));
    hub.record(line("hello"));
    hub.record(Record::End(Box::new(End {
        request_id: "req".into(),
        extra: Default::default(),
    })));
    hub.record(report_record());
    hub.record(Record::Fault(LogRecord::Text(
        "RequestId: req Process exited before completing request".into(),
    )));
    hub.shutdown(Duration::from_secs(5)).await;

    // The Logs API honours the subscription's method.
    let logs = logs_sub.drain(hyper::Method::PUT);
    assert_eq!(
        types(&logs),
        [
            "platform.logsSubscription",
            "platform.start",
            "function",
            "platform.end",
            "platform.report",
            "platform.fault"
        ]
    );
    assert_eq!(
        logs[0]["record"],
        serde_json::json!({"name": "logs-ext", "state": "Subscribed", "types": ["platform", "function"]})
    );
    assert_eq!(
        logs[1]["record"],
        serde_json::json!({"requestId": "req", "version": "$LATEST"})
    );
    assert_eq!(
        logs[4]["record"],
        serde_json::json!({"requestId": "req", "metrics": {"durationMs": 12.5, "billedDurationMs": 13, "memorySizeMB": 128, "maxMemoryUsedMB": 20, "initDurationMs": 100.25}})
    );
    assert_eq!(
        logs[5]["record"],
        "RequestId: req Process exited before completing request"
    );

    // The Telemetry API always POSTs.
    let tel = tel_sub.drain(hyper::Method::POST);
    assert_eq!(
        types(&tel),
        [
            "platform.telemetrySubscription",
            "platform.start",
            "platform.report"
        ]
    );
    assert_eq!(tel[1]["record"]["tracing"]["value"], "Root=1");
    assert_eq!(tel[2]["record"]["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_destinations_get_newline_delimited_json() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hub = hub();
    let mut tcp = SubscribeRequest::http(vec![LogType::Function], port);
    tcp.destination.protocol = lext_protocol::telemetry::Protocol::Tcp;
    tcp.destination.uri = None;
    tcp.destination.port = Some(port);
    tcp.buffering = buffering(1000, 262_144, 25);
    tcp.validate(Api::Telemetry).unwrap();
    hub.subscribe(Api::Telemetry, "tcp", &tcp).unwrap();
    hub.record(line("one"));
    hub.record(line("two"));
    let (stream, _) = listener.accept().await.unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (first["record"].as_str(), second["record"].as_str()),
        (Some("one"), Some("two"))
    );
    assert!(hub
        .shutdown(Duration::from_secs(5))
        .await
        .undelivered
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_out_holds_every_event_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let hub = Hub::new(HubConfig::default(), json_lines(&out));
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_666_361_103_165);
    hub.record_at(t, line("fn line"));
    hub.record_at(t, Record::ExtensionLog(LogRecord::Text("ext line".into())));
    hub.record_at(t, report_record());
    hub.shutdown(Duration::from_secs(1)).await;
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        r#"{"time":"2022-10-21T14:05:03.165Z","type":"function","record":"fn line"}"#
    );
    assert_eq!(
        lines[1],
        r#"{"time":"2022-10-21T14:05:03.165Z","type":"extension","record":"ext line"}"#
    );
    let report: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(report["type"], "platform.report");
    assert_eq!(report["record"]["metrics"]["billedDurationMs"], 13);
    // An unwritable path is a clear error, now the sink's to report (the
    // CLI adds "cannot open the telemetry output file <path>").
    let err = JsonLinesSink::create(dir.path().join("no/such/dir/x")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_counts_what_a_stalled_subscriber_never_got() {
    let mut sub = subscriber_server(false).await;
    let hub = hub();
    subscribe_function_logs(&hub, "stalled", sub.port);
    hub.record(line("in flight"));
    let first = next_batch(&mut sub).await;
    assert_eq!(first.events.len(), 1);
    hub.record(line("queued 1"));
    hub.record(line("queued 2"));
    let started = Instant::now();
    let report = hub.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline holds"
    );
    assert!(!report.completed);
    assert_eq!(report.undelivered.len(), 1);
    assert_eq!(report.undelivered[0].extension, "stalled");
    assert_eq!(
        report.undelivered[0].dropped_records, 3,
        "the batch in flight and the two queued records"
    );
    assert_eq!(hub.subscriber_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_waits_while_the_environment_is_frozen() {
    // A frozen listener cannot answer: the POST in flight must not time
    // out, and nothing new is sent until the thaw.
    let mut sub = subscriber_server(false).await;
    let hub = Hub::new(
        HubConfig {
            post_timeout: Duration::from_millis(200),
            ..HubConfig::default()
        },
        no_sink(),
    );
    subscribe_function_logs(&hub, "ext", sub.port);
    hub.record(line("before freeze"));
    let first = next_batch(&mut sub).await;
    assert_eq!(first.events[0]["record"], "before freeze");
    hub.freeze();
    hub.record(line("while frozen"));
    // Three post timeouts pass while frozen.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        sub.batches.try_recv().is_err(),
        "nothing is sent while frozen"
    );
    sub.open.send(true).unwrap();
    hub.thaw();
    let (_, records) = receive_records(&mut sub, 1).await;
    assert_eq!(records[0]["record"], "while frozen");
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        FlushReport {
            undelivered: vec![],
            completed: true
        },
        "the batch in flight during the freeze was not dropped"
    );

    // The control: without a freeze the same stall is a failed delivery.
    let mut sub = subscriber_server(false).await;
    let hub = Hub::new(
        HubConfig {
            post_timeout: Duration::from_millis(200),
            ..HubConfig::default()
        },
        no_sink(),
    );
    subscribe_function_logs(&hub, "ext", sub.port);
    hub.record(line("stalled"));
    sub.batches.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.undelivered.len(), 1);
    assert_eq!(report.undelivered[0].dropped_records, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_counted_and_announced_when_the_subscriber_recovers() {
    let mut sub = subscriber_server(true).await;
    sub.status.store(500, Ordering::SeqCst);
    let hub = hub();
    subscribe_function_logs(&hub, "ext", sub.port);
    hub.record(line("refused 1"));
    hub.record(line("refused 2"));
    let refused = next_batch(&mut sub).await;
    assert_eq!(refused.events.len(), 2);
    let refused_bytes: usize = refused
        .events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len())
        .sum();
    sub.status.store(200, Ordering::SeqCst);
    hub.record(line("accepted"));
    let (batches, records) = receive_records(&mut sub, 1).await;
    assert_eq!(records[0]["record"], "accepted");
    let notice = &batches[0].events[0];
    assert_eq!(notice["type"], "platform.logsDropped", "{batches:?}");
    assert_eq!(notice["record"]["droppedRecords"], 2);
    assert_eq!(notice["record"]["droppedBytes"], refused_bytes as u64);
    assert!(notice["record"]["reason"]
        .as_str()
        .unwrap()
        .contains("could not be reached or refused"));
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.undelivered[0].dropped_records, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cannot_make_lext_read_an_answer_of_any_size() {
    // A listener that takes the batch, answers 200 with a body it claims is
    // 2 GiB long, and streams it until lext hangs up (at most 256 MiB).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n")
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0usize;
        while written < 256 * 1024 * 1024 {
            match stream.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    let hub = hub();
    subscribe_function_logs(&hub, "ext", port);
    hub.record(line("hello"));
    let report = hub.shutdown(Duration::from_secs(10)).await;
    // The batch counts as delivered (the answer was 200)...
    assert!(report.undelivered.is_empty(), "{report:?}");
    // ...and lext hung up after a bounded prefix, not after the whole body.
    let written = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert!(
        written < 32 * 1024 * 1024,
        "lext read {written} bytes of the answer"
    );
}

#[test]
fn losses_are_split_at_the_extensions_shutdown() {
    use super::delivery::Queue;
    let mut queue = Queue::default();
    // Before SHUTDOWN every loss counts: one batch of 3 fails.
    queue.cutoff.settled(3, false);
    queue.cutoff.lost_new(1);
    assert_eq!((queue.cutoff.lost_before, queue.cutoff.lost_after), (4, 0));
    // 5 records wait when SHUTDOWN is sent; 2 more come after it.
    queue
        .items
        .extend((0..5).map(|_| Item::One(Bytes::from_static(b"{}"))));
    queue.records = 5;
    queue.mark_shutdown();
    queue.cutoff.lost_new(2);
    // The first batch (4 of the 5) is delivered; the next (the last of
    // the 5, and 3 after) fails.
    queue.cutoff.settled(4, true);
    queue.cutoff.settled(4, false);
    assert_eq!((queue.cutoff.lost_before, queue.cutoff.lost_after), (5, 5));
}

#[test]
fn sequence_id_is_the_base64_sha256_of_the_body() {
    // As RIE's Managed Instances client computes it (`sequenceId` in
    // internal/lambda-managed-instances/aws-lambda-rie/internal/telemetry/internal/client.go).
    assert_eq!(
        super::delivery::sequence_id_of(br#"[{"a":1}]"#),
        "txP20qmJ6QfFhRanyLtId5LIeF3b82e4Dcd0vzO4WoU="
    );
}

/// The lines of one read after Init reach a Telemetry API subscriber over
/// HTTP (as runs of records), one over TCP (a record a line) and a Logs API
/// subscriber (its own shape) alike, escaped, in order, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_lines_reach_every_kind_of_subscriber() {
    let mut http = subscriber_server(true).await;
    let mut logs = subscriber_server(true).await;
    let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp_listener.local_addr().unwrap().port();
    let hub = hub();
    // maxItems 1,000 (the least): the second read's run is cut across two
    // batches.
    hub.subscribe(
        Api::Telemetry,
        "http-ext",
        &request(
            &[LogType::Function],
            http.port,
            buffering(1000, 262_144, 25),
        ),
    )
    .unwrap();
    let mut tcp = SubscribeRequest::http(vec![LogType::Function], tcp_port);
    tcp.destination.protocol = lext_protocol::telemetry::Protocol::Tcp;
    tcp.destination.uri = None;
    tcp.destination.port = Some(tcp_port);
    tcp.buffering = buffering(1000, 262_144, 25);
    tcp.validate(Api::Telemetry).unwrap();
    hub.subscribe(Api::Telemetry, "tcp-ext", &tcp).unwrap();
    let mut logs_request = request(
        &[LogType::Function],
        logs.port,
        buffering(1000, 262_144, 25),
    );
    logs_request.schema_version = Some("2021-03-18".into());
    hub.subscribe(Api::Logs, "logs-ext", &logs_request).unwrap();
    hub.close_subscriptions();

    let mut first: Vec<String> = ["plain", "a \"quote\" and \\", "tab\there", "é😀"]
        .map(str::to_owned)
        .into();
    first.extend((first.len()..600).map(|i| format!("line {i}")));
    let second: Vec<String> = (600..1300).map(|i| format!("line {i}")).collect();
    for lines in [&first, &second] {
        hub.record_lines(&process::OutputLines {
            time: SystemTime::now(),
            source: Source::Function,
            stream: process::Stream::Stdout,
            lines: lines.clone(),
        });
    }
    let want: Vec<&str> = first.iter().chain(&second).map(String::as_str).collect();
    let texts = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["record"].as_str().unwrap().to_owned())
            .collect()
    };

    let (batches, records) = receive_records(&mut http, want.len()).await;
    assert_eq!(texts(&records), want);
    assert!(
        batches.iter().all(|b| b.events.len() <= 1000),
        "maxItems holds"
    );
    let (_, records) = receive_records(&mut logs, want.len()).await;
    assert_eq!(texts(&records), want);
    let (stream, _) = tcp_listener.accept().await.unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let line = lines.next_line().await.unwrap().unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["type"], "function");
        got.push(event);
    }
    assert_eq!(texts(&got), want);
    assert!(hub
        .shutdown(Duration::from_secs(5))
        .await
        .undelivered
        .is_empty());
}
