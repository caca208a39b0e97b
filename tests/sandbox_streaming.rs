//! Response streaming end to end: a Python runtime (stdlib `http.client`,
//! chunked encoding by hand, error trailers) streams through
//! `lext run --serve`, and boto3's `invoke_with_response_stream` reads the
//! event stream. Every wait is bounded; the only timings asserted are the
//! streaming behaviour itself (chunks arrive as written, the bandwidth rule
//! holds as a lower bound).

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::process::Command;

use sandbox_support::{build_bins, build_peer_bins, interrupt, serve, venv_program, Scene};

/// A runtime that streams what the event asks for: `chunks` lines `gap`
/// seconds apart, then `size` bytes, then the end, with error trailers when
/// `error` is set.
const STREAMING_RUNTIME: &str = r#"#!/usr/bin/env python3
import base64, http.client, json, os, time
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
nxt = http.client.HTTPConnection(HOST, int(PORT))
while True:
    nxt.request("GET", "/2018-06-01/runtime/invocation/next")
    r = nxt.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    ev = json.loads(r.read() or b"{}")
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
    c.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    c.putheader("Transfer-Encoding", "chunked")
    c.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    c.putheader("Content-Type", "text/plain")
    c.endheaders()
    def chunk(b):
        c.send(b"%x\r\n" % len(b) + b + b"\r\n")
    for i in range(ev.get("chunks", 0)):
        if i:
            time.sleep(ev.get("gap", 0))
        chunk(f"chunk {i}\n".encode())
    time.sleep(ev.get("hang", 0))
    size = ev.get("size", 0)
    block = b"x" * 65536
    while size > 0:
        n = min(size, len(block))
        chunk(block[:n])
        size -= n
    if ev.get("error"):
        body = base64.b64encode(b"broke mid-stream")
        c.send(b"0\r\nLambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
               b"Lambda-Runtime-Function-Error-Body: " + body + b"\r\n\r\n")
    else:
        c.send(b"0\r\n\r\n")
    resp = c.getresponse()
    print("[runtime] stream answered", resp.status, flush=True)
    resp.read()
    c.close()
"#;

/// The boto3 caller: one `invoke_with_response_stream` per event given,
/// each printed as one JSON line: the arrival time of every chunk (seconds
/// since the call), the bytes, and `InvokeComplete`.
const CALLER: &str = r#"
import boto3, json, sys, time
from botocore.config import Config
c = boto3.client("lambda", endpoint_url="http://" + sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test",
                 config=Config(read_timeout=60, retries={"max_attempts": 1}))
for event in sys.argv[2:]:
    t0 = time.monotonic()
    r = c.invoke_with_response_stream(FunctionName="stream-fn", Payload=event.encode())
    times, total, head, complete = [], 0, b"", None
    for e in r["EventStream"]:
        if "PayloadChunk" in e:
            p = e["PayloadChunk"]["Payload"]
            times.append(time.monotonic() - t0)
            total += len(p)
            if len(head) < 200:
                head += p[:200]
        if "InvokeComplete" in e:
            complete = e["InvokeComplete"]
    print(json.dumps({"status": r["StatusCode"], "times": times, "total": total,
                      "head": head[:200].decode("latin-1"), "complete": complete,
                      "elapsed": time.monotonic() - t0}), flush=True)
"#;

/// Runs the caller against `addr` with these events; one JSON value each.
fn call(addr: &str, events: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(venv_program("python"))
        .arg("-c")
        .arg(CALLER)
        .arg(addr)
        .args(events)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `lext run --serve` with the streaming runtime, this timeout
/// (seconds) and `extra` flags.
fn serve_streaming(
    s: &Scene,
    timeout: &str,
    extra: &[&str],
) -> (
    sandbox_support::Lext,
    String,
    std::thread::JoinHandle<String>,
) {
    let runtime = s.script("stream.py", STREAMING_RUNTIME);
    let runtime = runtime.display().to_string();
    let mut args = vec![
        "--function",
        runtime.as_str(),
        "--function-name",
        "stream-fn",
        "--timeout",
        timeout,
    ];
    args.extend_from_slice(extra);
    serve(s, &args)
}

#[test]
fn chunks_reach_boto3_as_the_runtime_writes_them_and_trailers_become_invoke_complete() {
    let s = Scene::new();
    let telemetry = s.path("telemetry.jsonl");
    let telemetry_arg = telemetry.display().to_string();
    let (mut child, addr, logs) =
        serve_streaming(&s, "60", &["--telemetry-out", telemetry_arg.as_str()]);
    let results = call(
        &addr,
        &[
            r#"{"chunks": 5, "gap": 0.3}"#,
            r#"{"chunks": 2, "error": true}"#,
        ],
    );
    interrupt(&mut child);
    let logs = logs.join().unwrap();

    let first = &results[0];
    eprintln!("chunks arrived at {} s", first["times"]);
    assert_eq!(first["status"], 200, "{first}");
    let times: Vec<f64> = first["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(times.len() >= 2, "{first}");
    assert!(
        times[times.len() - 1] - times[0] > 1.0,
        "the first chunk came less than 1 s before the last: {first}"
    );
    assert_eq!(
        first["head"], "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n",
        "{first}"
    );
    assert_eq!(first["complete"], serde_json::json!({}), "{first}");

    let failed = &results[1];
    assert_eq!(failed["head"], "chunk 0\nchunk 1\n", "{failed}");
    assert_eq!(
        failed["complete"]["ErrorCode"], "Runtime.StreamError",
        "{failed}"
    );
    assert_eq!(
        failed["complete"]["ErrorDetails"], "broke mid-stream",
        "{failed}"
    );
    // The runtime got its answer to both streams, and the failed invoke's
    // REPORT says so.
    assert_eq!(
        logs.matches("[runtime] stream answered 202").count(),
        2,
        "{logs}"
    );

    // platform.runtimeDone of the streamed responses: producedBytes and the
    // two response spans; the slow stream's responseDuration covers its
    // 1.2 s of writing.
    let text = std::fs::read_to_string(&telemetry).unwrap();
    let done: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "platform.runtimeDone")
        .map(|e| e["record"].clone())
        .collect();
    assert_eq!(done.len(), 2, "{text}");
    assert_eq!(done[0]["status"], "success", "{text}");
    assert_eq!(done[0]["metrics"]["producedBytes"], 40, "{text}");
    let spans = done[0]["spans"].as_array().unwrap();
    assert_eq!(spans[0]["name"], "responseLatency", "{text}");
    assert_eq!(spans[1]["name"], "responseDuration", "{text}");
    assert!(spans[1]["durationMs"].as_f64().unwrap() >= 1000.0, "{text}");
    assert_eq!(done[1]["status"], "error", "{text}");
    assert_eq!(done[1]["errorType"], "Runtime.StreamError", "{text}");
}

/// The same through AWS's own client: a `lambda_runtime` streaming function
/// (tests/peers), and the SDK's telemetry example in the environment, which
/// sees the stream's spans on `platform.runtimeDone`.
#[test]
fn a_lambda_runtime_stream_reaches_boto3_as_written_and_its_spans_reach_the_sdk() {
    let function = build_peer_bins(&["lext-peer-function"])["lext-peer-streaming"]
        .display()
        .to_string();
    let telemetry = build_bins(&["rust-telemetry-extension"])["rust-telemetry-extension"]
        .display()
        .to_string();
    let s = Scene::new();
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--function",
            &function,
            "--function-name",
            "stream-fn",
            "--extension",
            &telemetry,
        ],
    );
    let results = call(&addr, &[r#"{"chunks": 5, "gap_ms": 300}"#]);
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    let r = &results[0];
    assert_eq!(r["status"], 200, "{r}");
    // lambda_runtime sends an HTTP integration response: its metadata
    // prelude and 8 NUL bytes come first, and reach an
    // InvokeWithResponseStream caller as bytes, as in Lambda (only Function
    // URLs read the prelude; docs/fidelity.md).
    let head = r["head"].as_str().unwrap();
    let (prelude, body) = head
        .split_once("\0\0\0\0\0\0\0\0")
        .unwrap_or_else(|| panic!("{r}"));
    assert!(prelude.starts_with(r#"{"statusCode":200"#), "{r}");
    assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n", "{r}");
    assert_eq!(r["complete"], serde_json::json!({}), "{r}");
    let times: Vec<f64> = r["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert!(
        times.len() >= 2 && times[times.len() - 1] - times[0] > 1.0,
        "the first chunk came less than 1 s before the last: {r}"
    );
    // The extension printed runtimeDone with both spans; the stream took
    // 1.2 s to write.
    let line = logs
        .lines()
        .find(|l| l.contains("telemetry: platform.runtimeDone"))
        .unwrap_or_else(|| panic!("no runtimeDone reached the extension:\n{logs}"));
    let duration: f64 = line
        .split(" responseDuration=")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("ms").or(rest.split("ms").next()))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no responseDuration: {line}"));
    assert!(line.contains(" responseLatency="), "{line}");
    assert!(duration >= 1000.0, "{line}");
}

#[test]
fn a_buffered_invoke_of_a_streaming_function_gets_the_whole_response() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve_streaming(&s, "60", &[]);
    let script = r#"
import boto3, json, sys
c = boto3.client("lambda", endpoint_url="http://" + sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
for event in ['{"chunks": 3}', '{"chunks": 1, "error": true}', '{"size": 7340032}']:
    r = c.invoke(FunctionName="stream-fn", Payload=event.encode())
    body = r["Payload"].read()
    print(json.dumps({"error": r.get("FunctionError"), "len": len(body),
                      "payload": body[:200].decode("latin-1")}), flush=True)
"#;
    let output = Command::new(venv_program("python"))
        .arg("-c")
        .arg(script)
        .arg(&addr)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{logs}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines[0]["error"].is_null(), "{stdout}");
    assert_eq!(
        lines[0]["payload"], "chunk 0\nchunk 1\nchunk 2\n",
        "{stdout}"
    );
    assert_eq!(lines[1]["error"], "Unhandled", "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(lines[1]["payload"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["errorType"], "Runtime.StreamError", "{stdout}");
    assert_eq!(doc["errorMessage"], "broke mid-stream", "{stdout}");
    // 7 MiB is over the buffered limit: the Invoke caller gets the
    // platform's error, and the runtime its 413.
    assert_eq!(lines[2]["error"], "Unhandled", "{stdout}");
    assert!(
        lines[2]["payload"]
            .as_str()
            .unwrap()
            .contains("Function.ResponseSizeTooLarge"),
        "{stdout}"
    );
    assert!(logs.contains("[runtime] stream answered 413"), "{logs}");
}

/// 12 MiB: 6 MiB of burst, then 6 MiB at 2 MiB/s, about 3 s.
/// 30 MiB: 24 MiB past the 6 MiB burst, 12 s at 2 MiB/s.
const BIG: &str = r#"{"size": 31457280}"#;
const BIG_BYTES: u64 = 30 * 1024 * 1024;

#[test]
fn a_large_stream_arrives_whole_at_the_documented_rate() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve_streaming(&s, "60", &[]);
    let results = call(&addr, &[BIG]);
    interrupt(&mut child);
    drop(logs.join());
    let r = &results[0];
    eprintln!(
        "elapsed {} s, {} chunks",
        r["elapsed"],
        r["times"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(r["total"], BIG_BYTES, "{r}");
    assert_eq!(r["complete"], serde_json::json!({}), "{r}");
    // 24 MiB past the burst at 2 MiB/s is 12 s: not faster than the rule
    // allows, and not far slower (the bound is loose for a loaded machine).
    let elapsed = r["elapsed"].as_f64().unwrap();
    assert!(
        (11.5..30.0).contains(&elapsed),
        "30 MiB took {elapsed:.2} s, not the 12 s of the rule"
    );
}

#[test]
fn without_the_rate_limit_a_large_stream_is_fast() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve_streaming(&s, "60", &["--no-stream-rate-limit"]);
    let results = call(&addr, &[BIG]);
    interrupt(&mut child);
    drop(logs.join());
    let r = &results[0];
    eprintln!(
        "elapsed {} s, {} chunks",
        r["elapsed"],
        r["times"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(r["total"], BIG_BYTES, "{r}");
    assert_eq!(r["complete"], serde_json::json!({}), "{r}");
    // Not a speed target: only clearly quicker than the 12 s the rule
    // would take.
    let elapsed = r["elapsed"].as_f64().unwrap();
    assert!(
        elapsed < 8.0,
        "30 MiB took {elapsed:.2} s without the limit"
    );
}

#[test]
fn a_stream_that_hangs_ends_with_the_timeout() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve_streaming(&s, "2", &[]);
    let results = call(&addr, &[r#"{"chunks": 1, "hang": 30}"#, r#"{"chunks": 1}"#]);
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    let r = &results[0];
    assert_eq!(r["head"], "chunk 0\n", "{r}");
    assert_eq!(
        r["complete"]["ErrorCode"], "Sandbox.Timedout",
        "{r}\n{logs}"
    );
    // The environment was reset and serves the next stream.
    assert_eq!(results[1]["head"], "chunk 0\n", "{}", results[1]);
    assert_eq!(
        results[1]["complete"],
        serde_json::json!({}),
        "{}",
        results[1]
    );
}

#[test]
fn a_caller_that_hangs_up_mid_stream_leaves_the_runtime_to_finish() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve_streaming(&s, "60", &[]);
    // A raw caller reads the head of a 20 MiB stream and hangs up; the
    // runtime still writes to the end and gets its 202, and the next
    // invoke is served.
    let script = r#"
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port), timeout=30)
c.request("POST", "/2021-11-15/functions/stream-fn/response-streaming-invocations",
          body=b'{"size": 20971520}')
r = c.getresponse()
print(r.status, r.getheader("Content-Type"), len(r.read(1000)), flush=True)
c.sock.close()
"#;
    let output = Command::new(venv_program("python"))
        .arg("-c")
        .arg(script)
        .arg(&addr)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        stdout.trim(),
        "200 application/vnd.amazon.eventstream 1000",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = call(&addr, &[r#"{"chunks": 1}"#]);
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert_eq!(results[0]["head"], "chunk 0\n", "{}", results[0]);
    assert_eq!(
        logs.matches("[runtime] stream answered 202").count(),
        2,
        "{logs}"
    );
}

#[test]
fn the_streaming_endpoint_checks_requests_as_invoke_does() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve_streaming(&s, "60", &[]);
    let script = r#"
import boto3, json, sys
c = boto3.client("lambda", endpoint_url="http://" + sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
try:
    c.invoke_with_response_stream(FunctionName="nope", Payload=b"{}")
except c.exceptions.ResourceNotFoundException as e:
    print("notfound", e.response["Error"]["Message"], flush=True)
try:
    c.invoke_with_response_stream(FunctionName="stream-fn", Payload=b"not json")
except c.exceptions.InvalidRequestContentException:
    print("badjson", flush=True)
r = c.invoke_with_response_stream(FunctionName="stream-fn", InvocationType="DryRun", Payload=b"{}")
print("dryrun", r["StatusCode"], flush=True)
"#;
    let output = Command::new(venv_program("python"))
        .arg("-c")
        .arg(script)
        .arg(&addr)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    interrupt(&mut child);
    drop(logs.join());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "notfound Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope",
            "badjson",
            "dryrun 204"
        ],
        "{stdout}"
    );
}
