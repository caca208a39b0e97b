//! The example's SHUTDOWN path against a scripted Extensions API: it waits
//! for the last invoke's `platform.report` when that comes after SHUTDOWN,
//! gives up with a warning at the deadline when it never comes, and prints
//! a batch it cannot parse as a warning. (`lext run` usually delivers the
//! report before SHUTDOWN, so tests/sandbox_sdk.rs does not reach these.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the scripted API sends to the listener once SHUTDOWN is answered.
#[derive(Clone, Copy)]
enum AfterShutdown {
    /// The report of the last invoke, 300 ms later.
    Report,
    /// A body that is not JSON, and no report.
    Garbage,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The address the SDK's listener binds by default (the address of
/// sandbox.localdomain, else loopback), to deliver batches to.
fn listener_ip() -> IpAddr {
    ("sandbox.localdomain", 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()).map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// One request: method, path, body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut len = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn answer(stream: &mut TcpStream, headers: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).unwrap();
}

/// POSTs `body` to the extension's listener.
fn deliver(port: u16, body: &str) {
    // Refused when the example has exited already: what it printed then
    // says what went wrong, better than a panic here would.
    let Ok(mut s) = TcpStream::connect(SocketAddr::new(listener_ip(), port)) else {
        return;
    };
    let req = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    // The answer is not checked: the listener hands the batch over before
    // answering, and the example may print it and exit before the answer
    // is written. What it printed is what the tests check.
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
}

/// Serves one extension: register, subscribe, one INVOKE, then SHUTDOWN.
fn serve(listener: TcpListener, after: AfterShutdown) {
    let mut port = 0;
    let mut invoked = false;
    for stream in listener.incoming() {
        let mut stream = stream.unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        while let Some((method, path, body)) = read_request(&mut reader) {
            match (method.as_str(), path.as_str()) {
                ("POST", "/2020-01-01/extension/register") => answer(
                    &mut stream,
                    "Lambda-Extension-Identifier: ext-1\r\n",
                    r#"{"functionName":"f","functionVersion":"$LATEST","handler":"h"}"#,
                ),
                ("PUT", "/2022-07-01/telemetry") => {
                    let sub: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let uri = sub["destination"]["URI"].as_str().unwrap();
                    port = uri.rsplit(':').next().unwrap().parse().unwrap();
                    answer(&mut stream, "", "\"OK\"");
                }
                // Subscribed first: the example subscribes during Init.
                ("GET", "/2020-01-01/extension/event/next") if port != 0 => {
                    if !invoked {
                        invoked = true;
                        let event = format!(
                            r#"{{"eventType":"INVOKE","deadlineMs":{},"requestId":"req-X","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:f"}}"#,
                            now_ms() + 3_000
                        );
                        answer(&mut stream, "", &event);
                        continue;
                    }
                    // Far off when the report comes (it must not be what
                    // ends the wait); near when it does not.
                    let deadline_ms = match after {
                        AfterShutdown::Report => 10_000,
                        AfterShutdown::Garbage => 1_000,
                    };
                    let event = format!(
                        r#"{{"eventType":"SHUTDOWN","deadlineMs":{},"shutdownReason":"spindown"}}"#,
                        now_ms() + deadline_ms
                    );
                    answer(&mut stream, "", &event);
                    thread::sleep(Duration::from_millis(300));
                    match after {
                        AfterShutdown::Report => deliver(
                            port,
                            r#"[{"time":"2026-01-01T00:00:00.000Z","type":"platform.report","record":{"requestId":"req-X","status":"success","metrics":{"durationMs":1.5,"billedDurationMs":2,"memorySizeMB":128,"maxMemoryUsedMB":20}}}]"#,
                        ),
                        AfterShutdown::Garbage => deliver(port, "not json"),
                    }
                    return;
                }
                other => panic!("unexpected request {other:?}"),
            }
        }
    }
}

/// Runs the example against a scripted API; returns its exit status and stdout.
fn run(after: AfterShutdown) -> (std::process::ExitStatus, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || serve(listener, after));
    let output = Command::new(env!("CARGO_BIN_EXE_rust-telemetry-extension"))
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    server.join().expect("the scripted API failed");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn waits_for_the_report_that_comes_after_shutdown() {
    let (status, out) = run(AfterShutdown::Report);
    assert!(status.success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let find = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{out}"))
    };
    let shutdown = find("[rust-telemetry-extension] Received SHUTDOWN event (spindown)");
    let report = find("[rust-telemetry-extension] telemetry: platform.report requestId=req-X status=success durationMs=1.5");
    let exiting = find("[rust-telemetry-extension] Exiting");
    assert!(shutdown < report && report < exiting, "{out}");
    assert!(!out.contains("warning:"), "{out}");
}

#[test]
fn gives_up_at_the_deadline_and_reports_an_unparsed_batch() {
    let (status, out) = run(AfterShutdown::Garbage);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("[rust-telemetry-extension] warning: telemetry batch not parsed (")
            && out.contains("): not json"),
        "{out}"
    );
    assert!(
        out.contains(
            "[rust-telemetry-extension] warning: no platform.report for req-X before the shutdown deadline"
        ),
        "{out}"
    );
    assert!(
        out.ends_with("[rust-telemetry-extension] Exiting\n"),
        "{out}"
    );
}
