//! Waiting for the last `platform.report` after SHUTDOWN, in both flavours:
//! a report that arrives late is returned, one that never comes is given up
//! on at the deadline (less the margin) with a warning, and one received
//! before the wait ends it at once.

// Test helpers outside #[test] fns: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{telemetry_api, BATCH};
use lext_extension::{
    Extension, ShutdownEvent, ShutdownReason, TelemetryBatch, TelemetryConfig, REPORT_WAIT_MARGIN,
};

/// The request id of the `platform.report` in [`BATCH`].
const REPORT_ID: &str = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa";

/// A batch without any report.
const NO_REPORT: &str = r#"[{"time":"2022-10-12T00:01:15.000Z","type":"platform.start","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","version":"$LATEST"}}]"#;

/// A SHUTDOWN whose deadline is `ms` from now.
fn shutdown_in(ms: u64) -> ShutdownEvent {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    ShutdownEvent {
        deadline_ms: now.as_millis() as u64 + ms,
        shutdown_reason: ShutdownReason::Spindown,
    }
}

/// POSTs one batch to the listener at `addr` on a connection of its own,
/// as Lambda's delivery does, and waits for the 200.
fn deliver(addr: SocketAddr, body: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        addr.port(),
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Delivers `body` from another thread, 200 ms from now (once the wait has
/// begun).
fn deliver_later(addr: SocketAddr, body: &'static str) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        deliver(addr, body);
    })
}

/// What the code run by `f` logged through `tracing`, as text.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (result, text)
}

fn types(batches: &[TelemetryBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|batch| match batch {
            TelemetryBatch::Events { events, .. } => events
                .iter()
                .map(|e| e.record.event_type().to_owned())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn blocking_wait_returns_the_late_report() {
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = Extension::builder()
        .name("late-report")
        .runtime_api(api.api())
        .handle_signals(false)
        .register()
        .unwrap();
    let sub = ext.subscribe_telemetry(TelemetryConfig::default()).unwrap();
    let delivery = deliver_later(sub.local_addr(), BATCH);
    let mut got = Vec::new();
    let shutdown = shutdown_in(10_000);
    assert!(sub.wait_for_report(REPORT_ID, &shutdown, |b| got.push(b)));
    delivery.join().unwrap();
    assert!(types(&got).contains(&"platform.report".to_owned()));
    assert_eq!(sub.last_report().as_deref(), Some(REPORT_ID));
    // Seen already: a second wait returns at once, with nothing new.
    let mut more = Vec::new();
    assert!(sub.wait_for_report(REPORT_ID, &shutdown, |b| more.push(b)));
    assert!(more.is_empty());
}

#[test]
fn blocking_wait_gives_up_at_the_deadline_with_a_warning() {
    let api = telemetry_api(200, "\"OK\"");
    let mut ext = Extension::builder()
        .name("no-report")
        .runtime_api(api.api())
        .handle_signals(false)
        .register()
        .unwrap();
    let sub = ext.subscribe_telemetry(TelemetryConfig::default()).unwrap();
    let delivery = deliver_later(sub.local_addr(), NO_REPORT);
    let shutdown = shutdown_in(REPORT_WAIT_MARGIN.as_millis() as u64 + 1_000);
    let mut got = Vec::new();
    let (arrived, log) = logged(|| sub.wait_for_report(REPORT_ID, &shutdown, |b| got.push(b)));
    delivery.join().unwrap();
    assert!(!arrived);
    assert!(
        log.contains("WARN") && log.contains("no platform.report") && log.contains(REPORT_ID),
        "{log}"
    );
    // What came meanwhile was handed over all the same.
    assert_eq!(types(&got), ["platform.start"]);
    // It gave up at the deadline less the margin, not before.
    let deadline = UNIX_EPOCH + Duration::from_millis(shutdown.deadline_ms) - REPORT_WAIT_MARGIN;
    assert!(SystemTime::now() >= deadline, "returned early");
}

#[test]
fn tokio_wait_returns_the_late_report_and_gives_up_at_the_deadline() {
    let rt = lext_extension::tokio::runtime().unwrap();
    let api = telemetry_api(200, "\"OK\"");
    let (late, log) = logged(|| {
        rt.block_on(async {
            let mut ext = Extension::builder()
                .name("async-report")
                .runtime_api(api.api())
                .handle_signals(false)
                .register_async()
                .await
                .unwrap();
            let mut sub = ext
                .subscribe_telemetry(lext_extension::tokio::TelemetryConfig::default())
                .await
                .unwrap();
            let addr = sub.local_addr();

            // The report comes late: returned.
            let delivery = tokio::task::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(200));
                deliver(addr, BATCH);
            });
            let mut got = Vec::new();
            let arrived = sub
                .wait_for_report(REPORT_ID, &shutdown_in(10_000), |b| got.push(b))
                .await;
            delivery.await.unwrap();
            assert!(arrived);
            assert!(types(&got).contains(&"platform.report".to_owned()));
            assert_eq!(sub.last_report(), Some(REPORT_ID));

            // The next invoke's report never comes: given up on, at the
            // deadline less the margin.
            let shutdown = shutdown_in(REPORT_WAIT_MARGIN.as_millis() as u64 + 500);
            let gave_up = !sub
                .wait_for_report("next-invoke", &shutdown, |b| got.push(b))
                .await;
            let deadline =
                UNIX_EPOCH + Duration::from_millis(shutdown.deadline_ms) - REPORT_WAIT_MARGIN;
            assert!(SystemTime::now() >= deadline, "returned early");
            gave_up
        })
    });
    assert!(late, "the wait for a report that never came returned true");
    assert!(
        log.contains("WARN") && log.contains("no platform.report") && log.contains("next-invoke"),
        "{log}"
    );
}
