//! The tokio flavour against a fake Extensions API, and the Telemetry API
//! listener with real payloads, garbage, keep-alive, and a port clash.

// Test helpers outside #[test] fns: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    lifecycle_script, registered_then, telemetry_api, FakeApi, Recorded, Reply, BATCH, BATCH_TYPES,
    ID,
};
use lext_extension::lext_protocol::telemetry::{LogType, Record};
use lext_extension::tokio::{TelemetryBatch, TelemetryConfig};
use lext_extension::{
    Error, ErrorEndpoint, Extension, HandlerError, NextEvent, Op, RunEnd, SubscribeOutcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn builder(api: &FakeApi) -> lext_extension::Builder {
    Extension::builder()
        .name("async-ext")
        .runtime_api(api.api())
        .handle_signals(false)
}

#[tokio::test]
async fn a_runtime_api_with_a_base_path_is_a_base_url() {
    // `cargo lambda watch` sets AWS_LAMBDA_RUNTIME_API=127.0.0.1:9000/.rt.
    let api = FakeApi::start(common::under_base_path(lifecycle_script()));
    let registered = Extension::builder()
        .name("async-ext")
        .runtime_api(format!("{}{}", api.api(), common::BASE_PATH))
        .handle_signals(false)
        .register_async()
        .await
        .unwrap();
    assert_eq!(registered.id().as_str(), ID);
    let end = registered.run(|_| async { Ok(()) }).await.unwrap();
    assert!(matches!(end, RunEnd::Shutdown(_)), "{end:?}");
    assert_eq!(
        api.paths(),
        [
            "/.rt/2020-01-01/extension/register",
            "/.rt/2020-01-01/extension/event/next",
            "/.rt/2020-01-01/extension/event/next"
        ]
    );
}

#[tokio::test]
async fn register_invoke_shutdown() {
    let api = FakeApi::start(lifecycle_script());
    let registered = builder(&api).register_async().await.unwrap();
    assert_eq!(registered.id().as_str(), ID);
    let mut seen = Vec::new();
    let end = registered
        .run(|event| {
            seen.push(event);
            async { Ok(()) }
        })
        .await
        .unwrap();
    assert!(matches!(end, RunEnd::Shutdown(_)));
    assert!(matches!(
        seen.as_slice(),
        [NextEvent::Invoke(_), NextEvent::Shutdown(_)]
    ));
    assert_eq!(
        api.paths().len(),
        3,
        "no poll after SHUTDOWN: {:?}",
        api.paths()
    );
}

#[tokio::test]
async fn errors_are_typed_and_reported_in_the_right_phase() {
    let api = FakeApi::start(lifecycle_script());
    let err = builder(&api)
        .register_async()
        .await
        .unwrap()
        .init_error(HandlerError::new("Boot", "no config"))
        .await;
    assert!(
        matches!(
            err,
            Error::Handler {
                endpoint: ErrorEndpoint::InitError,
                report_failed: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(api.paths()[1], "/2020-01-01/extension/init/error");

    let api = FakeApi::start(lifecycle_script());
    let err = builder(&api)
        .register_async()
        .await
        .unwrap()
        .run(|_| async { Err(HandlerError::new("Flush", "failed")) })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handler {
                endpoint: ErrorEndpoint::ExitError,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(api.paths()[2], "/2020-01-01/extension/exit/error");

    let api = FakeApi::start(|_: &Recorded| {
        Reply::json(
            403,
            r#"{"errorMessage":"Extension registration closed already","errorType":"Extension.RegistrationClosed"}"#,
        )
    });
    let err = builder(&api).register_async().await.unwrap_err();
    assert!(
        matches!(&err, Error::Api { op: Op::Register, status: 403, error_type, .. } if error_type == "Extension.RegistrationClosed"),
        "{err:?}"
    );
}

/// POSTs `body` to the listener like Lambda does; returns the status line.
async fn deliver(addr: std::net::SocketAddr, body: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        addr.port(),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn telemetry_listener_delivers_typed_batches_and_reports_garbage() {
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = builder(&api).register_async().await.unwrap();
    let mut sub = ext
        .subscribe_telemetry(
            TelemetryConfig::default().types([LogType::Platform, LogType::Function]),
        )
        .await
        .unwrap();
    assert_eq!(sub.outcome(), &SubscribeOutcome::Subscribed);
    assert_eq!(sub.local_addr().ip().to_string(), "127.0.0.1");
    assert_eq!(
        sub.uri(),
        format!("http://sandbox.localdomain:{}", sub.local_addr().port())
    );

    // The subscription the API received: PUT, identifier, our URI.
    let body = common::subscription_request(&api);
    assert_eq!(body["destination"]["protocol"], "HTTP");
    assert_eq!(body["destination"]["URI"], sub.uri());
    assert_eq!(body["types"], serde_json::json!(["platform", "function"]));

    // A real batch: typed events, unknown type kept.
    assert!(deliver(sub.local_addr(), BATCH.as_bytes())
        .await
        .contains(" 200 "));
    let batch = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    let TelemetryBatch::Events { events, failures } = batch else {
        panic!("{batch:?}")
    };
    assert!(failures.is_empty(), "{failures:?}");
    let types: Vec<&str> = events.iter().map(|e| e.record.event_type()).collect();
    assert_eq!(types, BATCH_TYPES);
    assert!(matches!(events[0].record, Record::InitStart(_)));
    assert!(matches!(events[3].record, Record::Start(_)));
    assert!(matches!(events[7].record, Record::Report(_)));
    assert!(matches!(events[8].record, Record::LogsDropped(_)));
    assert_eq!(events[7].time, "2022-10-12T00:01:15.300Z");

    // Garbage: still 200 (no redelivery loop), and reported.
    assert!(deliver(sub.local_addr(), b"{not json")
        .await
        .contains(" 200 "));
    match tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap()
    {
        TelemetryBatch::Unparsed { body, error } => {
            assert_eq!(body, b"{not json");
            assert!(!error.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // A batch with one malformed known event keeps the others.
    let mixed = br#"[{"time":"t","type":"platform.report","record":{"requestId":5}},{"time":"t","type":"function","record":"ok"}]"#;
    assert!(deliver(sub.local_addr(), mixed).await.contains(" 200 "));
    match tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap()
    {
        TelemetryBatch::Events { events, failures } => {
            assert_eq!((events.len(), failures.len()), (1, 1));
            assert_eq!(failures[0].index, 0);
        }
        other => panic!("{other:?}"),
    }

    // The extension then runs its loop as usual; the subscription lives on.
    drop(ext);
    sub.stop();
}

/// POSTs `body` on a kept-alive connection; returns the status line once
/// the whole (Content-Length framed, "OK") answer has been read.
async fn post_kept_alive(s: &mut tokio::net::TcpStream, port: u16, body: &[u8]) -> String {
    let head = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\nOK") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
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

#[tokio::test]
async fn telemetry_listener_keeps_the_connection_and_survives_what_is_not_a_delivery() {
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = builder(&api).register_async().await.unwrap();
    let mut sub = ext
        .subscribe_telemetry(TelemetryConfig::default())
        .await
        .unwrap();
    let addr = sub.local_addr();

    // Two deliveries on one keep-alive connection, as Lambda's client does.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            post_kept_alive(&mut conn, addr.port(), BATCH.as_bytes()).await,
            "HTTP/1.1 200 OK"
        );
        let batch = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        let TelemetryBatch::Events { events, failures } = batch else {
            panic!("{batch:?}")
        };
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(events.len(), BATCH_TYPES.len());
    }

    // Bytes that are not HTTP, and a body over the limit: each reported,
    // answered 200 and closed; the listener goes on serving.
    for raw in [
        &b"\x16\x03\x01 not http\r\n\r\n"[..],
        &b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n["[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        let batch = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(batch, TelemetryBatch::Unparsed { .. }),
            "{batch:?}"
        );
    }
    assert_eq!(
        post_kept_alive(&mut conn, addr.port(), b"[]").await,
        "HTTP/1.1 200 OK"
    );
    sub.stop();
}

#[tokio::test]
async fn port_clash_is_an_error_from_subscribe_and_nothing_is_subscribed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = builder(&api).register_async().await.unwrap();
    let err = ext
        .subscribe_telemetry(TelemetryConfig::default().port(port))
        .await
        .unwrap_err();
    match err {
        Error::Listener { addr, source } => {
            assert_eq!(addr, format!("127.0.0.1:{port}"));
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !api.paths().iter().any(|p| p.contains("telemetry")),
        "{:?}",
        api.paths()
    );
}

#[tokio::test]
async fn subscribe_refusals_are_typed() {
    // Lambda's answer after init.
    let api = telemetry_api(
        403,
        r#"{"errorMessage":"Telemetry API subscription is closed already","errorType":"Telemetry.SubscriptionClosed"}"#,
    );
    let mut ext = builder(&api).register_async().await.unwrap();
    let err = ext
        .subscribe_telemetry(TelemetryConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { op: Op::SubscribeTelemetry, status: 403, error_type, .. } if error_type == "Telemetry.SubscriptionClosed"),
        "{err:?}"
    );
    // A local emulator without telemetry: accepted, but flagged.
    let api = telemetry_api(
        202,
        r#"{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}"#,
    );
    let mut ext = builder(&api).register_async().await.unwrap();
    let sub = ext
        .subscribe_telemetry(TelemetryConfig::default())
        .await
        .unwrap();
    assert_eq!(
        sub.outcome(),
        &SubscribeOutcome::NotSupported("Telemetry API is not supported".into())
    );
    // Invalid buffering never reaches the API.
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = builder(&api).register_async().await.unwrap();
    let bad = lext_extension::lext_protocol::telemetry::Buffering {
        max_items: Some(5),
        ..Default::default()
    };
    let err = ext
        .subscribe_telemetry(TelemetryConfig::default().buffering(bad))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(api.paths().len(), 1);
}

#[test]
fn sigterm_ends_the_async_loop() {
    // Runs in its own process: see tests/signal.rs for why signals are
    // tested apart. Here the async loop, on the default current-thread
    // runtime, in a child process of this test binary.
    if std::env::var_os("LEXT_ASYNC_SIGNAL_CHILD").is_some() {
        let api = std::env::var("LEXT_ASYNC_SIGNAL_API").unwrap();
        let rt = lext_extension::tokio::runtime().unwrap();
        let end = rt
            .block_on(async {
                let ext = Extension::builder()
                    .name("sig")
                    .runtime_api(api)
                    .register_async()
                    .await?;
                ext.run(|_| async { Ok(()) }).await
            })
            .unwrap();
        assert_eq!(end, RunEnd::Signal(lext_extension::Signal::Term));
        std::process::exit(42);
    }
    let api = registered_then(Reply::Hold);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["sigterm_ends_the_async_loop", "--exact", "--nocapture"])
        .env("LEXT_ASYNC_SIGNAL_CHILD", "1")
        .env("LEXT_ASYNC_SIGNAL_API", api.api())
        .spawn()
        .unwrap();
    api.wait_for(2); // register, then the blocked /event/next
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42), "{status:?}");
}
