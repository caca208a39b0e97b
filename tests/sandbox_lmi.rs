//! `lext run --managed-instances`: Lambda Managed Instances with real
//! processes on 127.0.0.1. A function on AWS's `lambda_runtime` with its
//! `run_concurrent` worker pool (tests/peers/rust-function,
//! `lext-peer-concurrent`), the official `lambda-extension` crate's default
//! extension, the lext SDK's telemetry example, and Python peers for the
//! refusals and the shutdown.
//!
//! No timing is asserted: that invokes overlap is shown by the function
//! itself (each invoke waits in its handler until the test releases them
//! all), and the shutdown budgets by the lifecycle's own words.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::path::Path;
use std::time::Duration;

use sandbox_support::{
    aws_lambda_invoke, build_bins, build_peer_bins, free_port, header, http, interrupt, serve,
    Scene,
};

const INVOKE_PATH: &str = "/2015-03-31/functions/lext-function/invocations";

/// One invoke through the Invoke API, with `X-Amzn-RequestId: id`.
fn invoke(addr: &str, id: &str, payload: &str) -> (u16, Vec<(String, String)>, String) {
    http(
        addr,
        "POST",
        INVOKE_PATH,
        &[("X-Amzn-RequestId", id)],
        payload.as_bytes(),
    )
}

/// [`invoke`], again while the answer is `Runtime.Unavailable` (a worker
/// has not called `/next` yet): at most 500 tries.
fn invoke_when_a_worker_waits(
    addr: &str,
    id: &str,
    payload: &str,
) -> (u16, Vec<(String, String)>, String) {
    for _ in 0..500 {
        let answer = invoke(addr, id, payload);
        if header(&answer.1, "error-type") != Some("Runtime.Unavailable") {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no runtime worker became idle for {id}");
}

/// Waits (at most 20 s) until `dir` holds `n` files named `arrived-*`.
fn wait_arrivals(dir: &Path, n: usize) {
    for _ in 0..2000 {
        let arrived = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("arrived-"))
            .count();
        if arrived >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("fewer than {n} invokes reached the handler");
}

/// The platform records `lext` printed (JSON logging), in order: (type,
/// request id).
fn records(logs: &str) -> Vec<(String, String)> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("record").is_some())
        .map(|v| {
            (
                v["type"].as_str().unwrap_or_default().to_owned(),
                v["record"]["requestId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn lambda_runtime_workers_serve_concurrent_invokes() {
    let bins = build_peer_bins(&["lext-peer-function"]);
    let function = bins["lext-peer-concurrent"].display().to_string();
    let s = Scene::new();
    let api = format!("127.0.0.1:{}", free_port());
    let dir = s.path("arrivals");
    std::fs::create_dir(&dir).unwrap();
    // The function has a /tmp of its own: a host directory under /tmp is
    // reachable inside when the command line names it, as a variable here.
    let arrivals = format!("ARRIVALS={}", dir.display());
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--managed-instances",
            "--max-concurrency",
            "8",
            "--function",
            &function,
            "--timeout",
            "3",
            "--api",
            &api,
            "--env",
            &arrivals,
        ],
    );
    let held = serde_json::json!({ "dir": dir, "sleep_ms": 100 }).to_string();

    // Eight invokes at once, each held in its handler until released.
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let (addr, held) = (addr.clone(), held.clone());
            std::thread::spawn(move || {
                invoke_when_a_worker_waits(&addr, &format!("held-{i}"), &held)
            })
        })
        .collect();
    wait_arrivals(&dir, 8);
    // All eight workers are busy: a ninth is refused at once, as RIE does.
    let (status, headers, body) = invoke(&addr, "ninth", "{}");
    assert_eq!(status, 400, "{body}");
    assert_eq!(header(&headers, "error-type"), Some("Runtime.Unavailable"));
    assert_eq!(body, r#"{"errorType":"Runtime.Unavailable"}"#);
    // The caller's request id is the invoke id: one still running is a
    // duplicate.
    let (status, headers, _) = invoke(&addr, "held-3", "{}");
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "error-type"),
        Some("Client.DuplicatedInvokeId")
    );
    std::fs::write(dir.join("release"), b"").unwrap();
    for (i, caller) in callers.into_iter().enumerate() {
        let (status, headers, body) = caller.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            header(&headers, "x-amzn-requestid"),
            Some(&*format!("held-{i}"))
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["requestId"], format!("held-{i}"));
        assert_eq!(v["workers"], "8");
        assert_eq!(v["initializationType"], "lambda-managed-instances");
        assert_eq!(v["logFormat"], "JSON");
    }

    // A timeout fails that invoke only.
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            invoke_when_a_worker_waits(&addr, "slow", r#"{"sleep_ms":6000}"#)
        })
    };
    let (status, _, body) = invoke_when_a_worker_waits(&addr, "quick", "{}");
    assert_eq!(
        (status, body.contains(r#""requestId":"quick""#)),
        (200, true),
        "{body}"
    );
    let (status, headers, body) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        body,
        r#"{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: slow Error: Task timed out after 3.00 seconds"}"#
    );
    // Its late answer gets 410, and the environment goes on serving.
    let (status, _, body) = http(
        &api,
        "POST",
        "/2018-06-01/runtime/invocation/slow/response",
        &[],
        b"late",
    );
    assert_eq!(
        (status, body.trim()),
        (
            410,
            r#"{"errorMessage":"Invoke timeout","errorType":"InvokeTimeout"}"#
        )
    );
    let (status, _, _) = invoke_when_a_worker_waits(&addr, "after", "{}");
    assert_eq!(status, 200);

    assert!(interrupt(&mut child).success());
    let logs = logs.join().unwrap();
    // Every platform line is JSON (Managed Instances log in JSON only).
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{e}: {line}\n{logs}"));
    }
    let records = records(&logs);
    let at = |kind: &str, id: &str| {
        records
            .iter()
            .position(|(t, r)| t == kind && r == id)
            .unwrap_or_else(|| panic!("no {kind} for {id}\n{logs}"))
    };
    // The eight overlapped: every one started before any ended, and each
    // REPORT names its own request.
    let last_start = (0..8)
        .map(|i| at("platform.start", &format!("held-{i}")))
        .max();
    let first_report = (0..8)
        .map(|i| at("platform.report", &format!("held-{i}")))
        .min();
    assert!(last_start < first_report, "{logs}");
    // The rejected invokes never started; no runtimeDone under LMI.
    assert!(!records.iter().any(|(_, r)| r == "ninth"), "{logs}");
    assert!(
        !records.iter().any(|(t, _)| t == "platform.runtimeDone"),
        "{logs}"
    );
    let timeout = logs
        .lines()
        .find(|l| l.contains(r#""type":"platform.report""#) && l.contains(r#""requestId":"slow""#))
        .unwrap();
    assert!(timeout.contains(r#""status":"timeout""#), "{timeout}");
    // Managed Instances' report: spans for an answered invoke, none for
    // a timeout, and no per-invoke billing.
    assert!(!timeout.contains(r#""spans""#), "{timeout}");
    let answered = logs
        .lines()
        .find(|l| {
            l.contains(r#""type":"platform.report""#) && l.contains(r#""requestId":"held-0""#)
        })
        .unwrap();
    assert!(
        answered.contains(r#""spans":[{"durationMs":"#),
        "{answered}"
    );
    assert!(
        answered.contains(r#""name":"responseLatency""#),
        "{answered}"
    );
    assert!(!answered.contains("billedDurationMs"), "{answered}");
    // Function lines carry their request id (JSON logging).
    assert!(
        logs.contains(r#"{"level":"INFO","message":"handling","requestId":"held-5"}"#),
        "{logs}"
    );
}

#[test]
fn aws_cli_invokes_a_managed_instances_environment() {
    let s = Scene::new();
    let runtime = s.runtime("echo");
    let (mut child, addr, logs) = serve(&s, &["--managed-instances", "--function", &runtime]);
    for n in 0..2 {
        let out = s.path(&format!("out-{n}.json"));
        let mut last = None;
        // One worker: the next invoke may come before it is back in /next.
        for _ in 0..500 {
            let status = aws_lambda_invoke(&addr)
                .args(["--function-name", "lext-function", "--payload", "{\"n\":1}"])
                .arg(&out)
                .output()
                .unwrap();
            if status.status.success() {
                last = Some(status);
                break;
            }
            let stderr = String::from_utf8_lossy(&status.stderr);
            assert!(
                stderr.contains("Runtime.Unavailable") || stderr.contains("400"),
                "{stderr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(last.is_some());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"n\":1}");
    }
    assert!(interrupt(&mut child).success());
    let logs = logs.join().unwrap();
    assert_eq!(
        logs.matches(r#""type":"platform.report""#).count(),
        2,
        "{logs}"
    );
}

#[test]
fn the_lambda_extension_crates_default_extension_fails_init() {
    let bins = build_peer_bins(&["lext-peer-function", "lext-peer-extensions"]);
    let function = bins["lext-peer-function"].display().to_string();
    let basic = bins["basic-extension"].display().to_string();
    let s = Scene::new();
    let r = s.lext(&[
        "--managed-instances",
        "--extension",
        &basic,
        "--function",
        &function,
        "--invoke",
        "1",
    ]);
    let dump = r.dump();
    assert!(!r.output.status.success(), "{dump}");
    // INVOKE is refused, and Init fails with it (its initReport: the
    // INIT_REPORT of JSON logging).
    let init_report = r
        .lines()
        .into_iter()
        .find(|l| l.contains(r#""type":"platform.initReport""#))
        .unwrap_or_else(|| panic!("no initReport\n{dump}"));
    let v: serde_json::Value = serde_json::from_str(init_report).unwrap();
    assert_eq!(v["record"]["status"], "error", "{dump}");
    assert_eq!(
        v["record"]["errorType"], "Extension.InvalidEventType",
        "{dump}"
    );
    assert_eq!(
        v["record"]["initializationType"],
        "lambda-managed-instances"
    );
    assert!(!r.has(r#""type":"platform.start""#), "{dump}");
}

/// A Python extension that registers for SHUTDOWN, then tries what Managed
/// Instances refuse and prints the answers.
const PROBE: &str = r#"#!/usr/bin/env python3
import http.client, json, os, sys
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
status, h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({"events": ["SHUTDOWN"]}), {"Lambda-Extension-Name": "probe"})
ID = h["lambda-extension-identifier"]
old = {"schemaVersion": "2022-12-13", "types": ["platform"], "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243"}}
status, _, body = call("PUT", "/2022-07-01/telemetry", json.dumps(old), {"Lambda-Extension-Identifier": ID})
print(f"[probe] telemetry 2022-12-13: {status} {json.loads(body)['errorType']}", flush=True)
status, _, _ = call("PUT", "/2020-08-15/logs", json.dumps({"types": ["platform"], "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243"}}), {"Lambda-Extension-Identifier": ID})
print(f"[probe] logs api: {status}", flush=True)
# A subscription of its own, to see the Sequence-Id of each POST.
import base64, hashlib, http.server, threading
class Listener(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
        print(f"[probe] Sequence-Id matches: {self.headers.get('Sequence-Id') == expected}", flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Listener)
threading.Thread(target=server.serve_forever, daemon=True).start()
new = {"schemaVersion": "2025-01-29", "types": ["platform"], "buffering": {"timeoutMs": 25}, "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{server.server_port}"}}
status, _, _ = call("PUT", "/2022-07-01/telemetry", json.dumps(new), {"Lambda-Extension-Identifier": ID})
print(f"[probe] telemetry 2025-01-29: {status}", flush=True)
status, _, body = call("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ID})
print(f"[probe] {json.loads(body)['eventType']} {json.loads(body)['shutdownReason']}", flush=True)
"#;

#[test]
fn the_sdk_telemetry_example_gets_every_start_and_report() {
    const EXT: &str = "rust-telemetry-extension";
    let bins = build_bins(&[EXT]);
    let ext = bins[EXT].display().to_string();
    let s = Scene::new();
    let probe = s.script("probe", PROBE).display().to_string();
    let runtime = s.runtime("echo");
    let r = s.lext(&[
        "--managed-instances",
        "--extension",
        &ext,
        "--extension",
        &probe,
        "--function",
        &runtime,
        "--invoke",
        "3",
    ]);
    let dump = r.dump();
    assert!(r.output.status.success(), "{dump}");
    // The SDK subscribed with its default schema, 2025-01-29, and
    // registered for SHUTDOWN alone.
    assert!(
        r.has(
            r#""type":"platform.telemetrySubscription","record":{"name":"rust-telemetry-extension""#
        ) || r.has("[rust-telemetry-extension] Subscribed: listening on"),
        "{dump}"
    );
    assert!(
        r.has("[probe] telemetry 2022-12-13: 400 ValidationError"),
        "{dump}"
    );
    assert!(r.has("[probe] logs api: 404"), "{dump}");
    assert!(r.has("[probe] telemetry 2025-01-29: 200"), "{dump}");
    assert!(r.has("[probe] Sequence-Id matches: True"), "{dump}");
    assert!(!r.has("[probe] Sequence-Id matches: False"), "{dump}");
    assert!(r.has("[probe] SHUTDOWN spindown"), "{dump}");
    let ids: Vec<String> = records(&r.stdout)
        .into_iter()
        .filter(|(t, _)| t == "platform.start")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(ids.len(), 3, "{dump}");
    for id in &ids {
        assert!(
            r.has(&format!("[{EXT}] telemetry: platform.start requestId={id}")),
            "{id}\n{dump}"
        );
        assert!(
            r.has(&format!(
                "[{EXT}] telemetry: platform.report requestId={id} status=success"
            )),
            "{id}\n{dump}"
        );
    }
    assert!(!r.has(&format!("[{EXT}] warning")), "{dump}");
}

#[test]
fn shutdown_gives_the_runtime_600_ms_and_extensions_a_2_s_deadline() {
    let s = Scene::new();
    let ext = s.extension("stubborn", "shutdown-only-ignore-shutdown");
    let runtime = s.runtime("ignore-term");
    let r = s.lext(&[
        "--managed-instances",
        "--extension",
        &ext.display().to_string(),
        "--function",
        &runtime,
        "--invoke",
        "1",
    ]);
    let dump = r.dump();
    assert!(r.output.status.success(), "{dump}");
    assert!(
        r.stderr
            .contains("shutdown: the runtime did not exit within its 600 ms; killing it (SIGKILL)"),
        "{dump}"
    );
    assert!(
        r.stderr.contains(
            "shutdown: extension stubborn did not exit within its 2000 ms; killing it (SIGKILL)"
        ),
        "{dump}"
    );
    assert!(r.has("[stubborn] SHUTDOWN spindown in"), "{dump}");
    s.assert_no_process_left(&["stubborn", "runtime.py"]);
}

#[test]
fn a_runtime_crash_fails_its_invoke_and_shuts_down_for_good() {
    let s = Scene::new();
    let ext = s.extension("watcher", "shutdown-only-ok");
    let runtime = s.runtime("crash-invoke");
    let r = s.lext(&[
        "--managed-instances",
        "--extension",
        &ext.display().to_string(),
        "--function",
        &runtime,
        "--invoke",
        "2",
    ]);
    let dump = r.dump();
    assert!(!r.output.status.success(), "{dump}");
    assert!(
        r.stderr.contains("lext: invoke 1: Runtime.ExitError"),
        "{dump}"
    );
    // No re-init: the second invoke never runs.
    assert!(!r.stderr.contains("lext: invoke 2"), "{dump}");
    assert_eq!(
        r.stdout.matches(r#""type":"platform.start""#).count(),
        1,
        "{dump}"
    );
    let report = r
        .lines()
        .into_iter()
        .find(|l| l.contains(r#""type":"platform.report""#))
        .unwrap_or_else(|| panic!("no report\n{dump}"));
    assert!(
        report.contains(r#""errorType":"Runtime.ExitError""#),
        "{report}"
    );
    // The only reasons are spindown and failure.
    assert!(r.has("[watcher] SHUTDOWN failure in"), "{dump}");
    s.assert_no_process_left(&["watcher", "runtime.py"]);
}
