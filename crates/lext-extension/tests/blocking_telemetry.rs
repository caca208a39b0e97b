//! The blocking flavour's Telemetry API listener: real payloads, garbage,
//! keep-alive, an oversized body, a port clash, and stopping.

// Test helpers outside #[test] fns: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{telemetry_api, BATCH, BATCH_TYPES};
use lext_extension::lext_protocol::telemetry::{LogType, Record};
use lext_extension::{Error, Extension, Op, SubscribeOutcome, TelemetryBatch, TelemetryConfig};

fn register(api: &common::FakeApi) -> lext_extension::Registered {
    Extension::builder()
        .name("blocking-telemetry")
        .runtime_api(api.api())
        .handle_signals(false)
        .register()
        .unwrap()
}

fn post(stream: &mut TcpStream, addr: SocketAddr, body: &[u8], close: bool) -> String {
    let head = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        addr.port(),
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    // The answer is small and Content-Length framed: read until "OK".
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\nOK") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "closed early: {answer:?}"
        );
        answer.push(byte[0]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

fn next_batch(sub: &lext_extension::blocking::TelemetrySubscription) -> TelemetryBatch {
    sub.recv_timeout(Duration::from_secs(5))
        .expect("a batch within 5 s")
}

#[test]
fn subscribe_then_deliver_real_and_garbage_batches() {
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = register(&api);
    let mut sub = ext
        .subscribe_telemetry(
            TelemetryConfig::default().types([LogType::Platform, LogType::Extension]),
        )
        .unwrap();
    assert_eq!(sub.outcome(), &SubscribeOutcome::Subscribed);
    assert_eq!(sub.local_addr().ip().to_string(), "127.0.0.1");
    let body = common::subscription_request(&api);
    assert_eq!(
        body["destination"]["URI"],
        format!("http://sandbox.localdomain:{}", sub.local_addr().port())
    );
    assert_eq!(body["types"], serde_json::json!(["platform", "extension"]));

    // Two deliveries on one keep-alive connection, as Lambda's client does.
    let addr = sub.local_addr();
    let mut conn = TcpStream::connect(addr).unwrap();
    assert_eq!(
        post(&mut conn, addr, BATCH.as_bytes(), false),
        "HTTP/1.1 200 OK"
    );
    match next_batch(&sub) {
        TelemetryBatch::Events { events, failures } => {
            assert!(failures.is_empty(), "{failures:?}");
            let types: Vec<&str> = events.iter().map(|e| e.record.event_type()).collect();
            assert_eq!(types, BATCH_TYPES);
            assert!(matches!(events[8].record, Record::LogsDropped(_)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        post(&mut conn, addr, b"{\"not\": \"an array\"}", false),
        "HTTP/1.1 200 OK"
    );
    match next_batch(&sub) {
        TelemetryBatch::Unparsed { body, error } => {
            assert_eq!(body, b"{\"not\": \"an array\"}");
            assert!(!error.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // Bytes that are not HTTP at all: reported, answered 200, closed.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(b"\x16\x03\x01 not http\r\n\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(matches!(next_batch(&sub), TelemetryBatch::Unparsed { .. }));

    // Stopping closes the port.
    sub.stop();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn an_oversized_delivery_is_reported_and_answered_200() {
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = register(&api);
    let sub = ext.subscribe_telemetry(TelemetryConfig::default()).unwrap();
    let mut s = TcpStream::connect(sub.local_addr()).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n[")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    match next_batch(&sub) {
        TelemetryBatch::Unparsed { error, .. } => assert!(error.contains("exceeds"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn port_clash_is_an_error_and_nothing_is_subscribed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = register(&api);
    match ext.subscribe_telemetry(TelemetryConfig::default().port(port)) {
        Err(Error::Listener { addr, source }) => {
            assert_eq!(addr, format!("127.0.0.1:{port}"));
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api.paths(), ["/2020-01-01/extension/register"]);
}

#[test]
fn a_refused_subscription_is_typed_and_stops_the_listener() {
    let api = telemetry_api(
        403,
        r#"{"errorMessage":"Telemetry API subscription is closed already","errorType":"Telemetry.SubscriptionClosed"}"#,
    );
    let mut ext = register(&api);
    let err = ext
        .subscribe_telemetry(TelemetryConfig::default().port(0))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { op: Op::SubscribeTelemetry, status: 403, error_type, .. } if error_type == "Telemetry.SubscriptionClosed"),
        "{err:?}"
    );
}
