//! `lext run` with AWS's own Rust crates as peers (tests/peers/): a
//! function on `lambda_runtime`, and extensions on `lambda-extension`, a
//! basic one and a Telemetry API subscriber.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use sandbox_support::{build_peer_bins, free_port, Scene};

#[test]
fn lambda_runtime_function_with_lambda_extension_peers() {
    let bins = build_peer_bins(&["lext-peer-function", "lext-peer-extensions"]);
    let function = bins["lext-peer-function"].display().to_string();
    let basic = bins["basic-extension"].display().to_string();
    let telemetry = bins["telemetry-extension"].display().to_string();
    let s = Scene::new();
    let port = format!("TELEMETRY_PORT={}", free_port());
    let r = s.lext(&[
        "--extension",
        &basic,
        "--extension",
        &telemetry,
        "--function",
        &function,
        "--env",
        &port,
        "--invoke",
        "2",
        "--payload",
        r#"{"x":1}"#,
        "--function-name",
        "rust-fn",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    // The runtime crate sees a real context.
    let v = r.invoke_json(1, "response");
    assert_eq!(v["echo"]["x"], 1);
    assert_eq!(
        v["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:rust-fn"
    );
    assert!(v["deadline"].as_u64().unwrap() > 1_600_000_000_000);
    // Both extensions registered and got the events.
    assert!(
        r.has("TELEMETRY\tName: telemetry-extension\tState: Subscribed"),
        "{}",
        r.dump()
    );
    assert_eq!(r.all("[basic-extension] INVOKE").len(), 2, "{}", r.dump());
    assert!(r.has("[basic-extension] SHUTDOWN spindown"), "{}", r.dump());
    // The telemetry crate parsed our batches: start, function lines, report
    // with real figures.
    let request_id = v["requestId"].as_str().unwrap();
    assert!(
        r.has(&format!(
            "[telemetry-extension] platform.start {request_id}"
        )),
        "{}",
        r.dump()
    );
    assert!(
        r.has(&format!(
            "[telemetry-extension] function: [lambda_runtime] handling {request_id}"
        )),
        "{}",
        r.dump()
    );
    let report = r.line(&format!(
        "[telemetry-extension] platform.report {request_id}"
    ));
    let mem: u64 = report
        .split("maxMemoryUsedMB=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mem > 1, "{report}");
    // lambda-extension never exits after SHUTDOWN: killed at the deadline.
    assert!(r.elapsed.as_millis() >= 1900, "{:?}", r.elapsed);
}

#[test]
fn lambda_runtime_function_error_and_timeout() {
    let bins = build_peer_bins(&["lext-peer-function"]);
    let function = bins["lext-peer-function"].display().to_string();
    let s = Scene::new();
    let r = s.lext(&[
        "--function",
        &function,
        "--invoke",
        "1",
        "--payload",
        r#"{"fail":true}"#,
    ]);
    assert!(!r.output.status.success());
    assert!(
        r.stderr.contains("lext: invoke 1: function error"),
        "{}",
        r.dump()
    );
    assert!(r.stderr.contains("requested failure"), "{}", r.dump());
    let r = s.lext(&[
        "--function",
        &function,
        "--invoke",
        "1",
        "--timeout",
        "1",
        "--payload",
        r#"{"sleep_ms":5000}"#,
    ]);
    assert!(r.has("Task timed out after 1.00 seconds"), "{}", r.dump());
    assert!(
        r.line("REPORT").ends_with("Status: timeout"),
        "{}",
        r.dump()
    );
}
