//! The port, run as a process against a fake Extensions API on 127.0.0.1:
//! its lines, in order, and its exit status.

// Test helpers outside #[test] fns: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rust-example-extension");
const ID: &str = "6b1e5b2c-8a4e-4c6f-9d0b-1f2e3d4c5b6a";
const REGISTER: &str =
    r#"{"functionName":"my-function","functionVersion":"$LATEST","handler":"function.handler"}"#;
const INVOKE: &str = r#"{"eventType":"INVOKE","deadlineMs":1234567890123,"requestId":"9ca08945-de9b-46ec-adc6-3fe9ef0d2e8d","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:my-function","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"}}"#;
const SHUTDOWN: &str =
    r#"{"eventType":"SHUTDOWN","deadlineMs":1234567892123,"shutdownReason":"spindown"}"#;

/// One scripted answer per request, in order; `None` holds the request open.
type Answer = Option<Vec<u8>>;

fn http(status: u16, headers: &str, body: &str) -> Answer {
    Some(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn registered() -> Answer {
    http(
        200,
        &format!("Lambda-Extension-Identifier: {ID}\r\n"),
        REGISTER,
    )
}

/// Serves `answers` to the request sequence on 127.0.0.1:<ephemeral>;
/// sends each request's first line to `seen`.
fn fake_api(answers: Vec<Answer>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut answers = answers.into_iter();
        let mut conn: Option<TcpStream> = None;
        let mut buf = Vec::new();
        loop {
            if conn.is_none() {
                let Ok((s, _)) = listener.accept() else {
                    return;
                };
                conn = Some(s);
                buf.clear();
            }
            let stream = conn.as_mut().unwrap();
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    buf.drain(..end + 4 + len);
                    let _ = tx.send(head.lines().next().unwrap_or("").to_owned());
                    match answers.next() {
                        Some(Some(bytes)) => {
                            let _ = stream.write_all(&bytes);
                        }
                        // Hold: keep the connection open, never answer.
                        Some(None) | None => {
                            let mut sink = [0u8; 1024];
                            while stream.read(&mut sink).unwrap_or(0) > 0 {}
                            return;
                        }
                    }
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => conn = None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    (addr, rx)
}

fn run_port(api: &str) -> Output {
    Command::new(BIN)
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn prints_the_samples_lines_in_order() {
    let (api, seen) = fake_api(vec![
        registered(),
        http(200, "", INVOKE),
        http(200, "", SHUTDOWN),
    ]);
    let out = run_port(&api);
    assert!(out.status.success(), "{out:?}");
    let expected = "\
[rust-example-extension] Registering...
[rust-example-extension] Register response: {
\t\"functionName\": \"my-function\",
\t\"functionVersion\": \"$LATEST\",
\t\"handler\": \"function.handler\"
}
[rust-example-extension] Waiting for event...
[rust-example-extension] Received event: {
\t\"eventType\": \"INVOKE\",
\t\"deadlineMs\": 1234567890123,
\t\"requestId\": \"9ca08945-de9b-46ec-adc6-3fe9ef0d2e8d\",
\t\"invokedFunctionArn\": \"arn:aws:lambda:us-east-1:123456789012:function:my-function\",
\t\"tracing\": {
\t\t\"type\": \"X-Amzn-Trace-Id\",
\t\t\"value\": \"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1\"
\t}
}
[rust-example-extension] Waiting for event...
[rust-example-extension] Received event: {
\t\"eventType\": \"SHUTDOWN\",
\t\"deadlineMs\": 1234567892123,
\t\"shutdownReason\": \"spindown\"
}
[rust-example-extension] Received SHUTDOWN event
[rust-example-extension] Exiting
";
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests: Vec<String> = seen.try_iter().collect();
    assert_eq!(
        requests,
        [
            "POST /2020-01-01/extension/register HTTP/1.1",
            "GET /2020-01-01/extension/event/next HTTP/1.1",
            "GET /2020-01-01/extension/event/next HTTP/1.1",
        ]
    );
}

#[test]
fn account_id_is_printed_when_present() {
    let body =
        r#"{"functionName":"f","functionVersion":"1","handler":"h","accountId":"123456789012"}"#;
    let (api, _) = fake_api(vec![
        http(200, &format!("Lambda-Extension-Identifier: {ID}\r\n"), body),
        http(200, "", SHUTDOWN),
    ]);
    let out = run_port(&api);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout_lines(&out).contains(&"\t\"accountId\": \"123456789012\"".to_owned()));
}

/// A failing API: one clear line on stderr, exit status 1, no panic.
fn assert_fails_cleanly(answers: Vec<Answer>, expect_in_stderr: &str) {
    let (api, _) = fake_api(answers);
    let out = run_port(&api);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("[rust-example-extension] Error: "),
        "{stderr}"
    );
    assert!(stderr.contains(expect_in_stderr), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn register_403_exits_non_zero_with_one_line() {
    assert_fails_cleanly(
        vec![http(
            403,
            "",
            "{\"errorMessage\":\"Empty extension name\",\"errorType\":\"Extension.InvalidExtensionName\"}\n",
        )],
        "403: Extension.InvalidExtensionName: Empty extension name",
    );
}

#[test]
fn next_500_exits_non_zero_with_one_line() {
    assert_fails_cleanly(
        vec![
            registered(),
            http(
                500,
                "",
                r#"{"errorMessage":"Internal Server Error","errorType":"InternalServerError"}"#,
            ),
        ],
        "event/next: Lambda API answered 500: InternalServerError",
    );
}

#[test]
fn garbage_exits_non_zero_with_one_line() {
    assert_fails_cleanly(
        vec![Some(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec())],
        "invalid answer from the Lambda API",
    );
    assert_fails_cleanly(
        vec![registered(), http(200, "", "{\"eventType\":")],
        "event is not the expected JSON",
    );
}

#[test]
fn missing_runtime_api_exits_non_zero_with_one_line() {
    let out = Command::new(BIN)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("AWS_LAMBDA_RUNTIME_API"), "{stderr}");
}

fn signal_ends_the_wait(signal: i32, name: &str) {
    let (api, seen) = fake_api(vec![registered(), None]);
    let child = Command::new(BIN)
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the port is blocked in its first /event/next.
    assert!(seen
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .starts_with("POST"));
    assert!(seen
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .starts_with("GET"));
    thread::sleep(Duration::from_millis(50));
    // SAFETY: kill(2) on our own child with a valid signal number.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines = stdout_lines(&out);
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "[rust-example-extension] Waiting for event...".to_owned(),
            format!("[rust-example-extension] Received {name}"),
            "[rust-example-extension] Exiting".to_owned(),
        ]
    );
}

#[test]
fn sigterm_prints_received_terminated_and_exits() {
    signal_ends_the_wait(libc::SIGTERM, "terminated");
}

#[test]
fn sigint_prints_received_interrupt_and_exits() {
    signal_ends_the_wait(libc::SIGINT, "interrupt");
}
