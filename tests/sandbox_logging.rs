//! The JSON log format and log levels (Lambda's advanced logging
//! controls) under `lext run`: real processes, AWS's Python runtime
//! interface client, a Telemetry API subscriber, 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sandbox_support;

use sandbox_support::{venv_program, Scene};
use serde_json::Value;

/// A function runtime (Python) that writes, on each invoke, a plain line,
/// a DEBUG JSON line and an ERROR JSON line.
const LEVELS: &str = r#"#!/usr/bin/env python3
import http.client, json, os
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
c = http.client.HTTPConnection(HOST, int(PORT))
while True:
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    print("a plain line", flush=True)
    print(json.dumps({"level": "debug", "msg": "hidden at INFO"}), flush=True)
    print(json.dumps({"level": "ERROR", "msg": "kept"}), flush=True)
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", b"{}")
    c.getresponse().read()
"#;

/// A Telemetry API subscriber (Python) that appends every event it
/// receives to `OUT` as a JSON line, and waits for its last report at
/// SHUTDOWN.
fn subscriber(s: &Scene, out: &std::path::Path) -> std::path::PathBuf {
    s.script(
        "subscriber",
        &format!(
            r#"#!/usr/bin/env python3
import http.client, http.server, json, os, sys, threading, time
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
reports = []
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        events = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open("{out}", "a") as f:
            for e in events:
                f.write(json.dumps(e) + "\n")
                if e["type"] == "platform.report":
                    reports.append(e)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("sandbox.localdomain", 0), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {{}})
    r = c.getresponse()
    return {{k.lower(): v for k, v in r.getheaders()}}, r.read()
h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}),
            {{"Lambda-Extension-Name": "subscriber"}})
ext = {{"Lambda-Extension-Identifier": h["lambda-extension-identifier"]}}
sub = {{"schemaVersion": "2022-12-13", "types": ["platform", "function"],
       "buffering": {{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}},
       "destination": {{"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{{server.server_address[1]}}"}}}}
call("PUT", "/2022-07-01/telemetry", json.dumps(sub), ext)
invokes = 0
while True:
    _, body = call("GET", "/2020-01-01/extension/event/next", headers=ext)
    event = json.loads(body)
    if event["eventType"] == "INVOKE":
        invokes += 1
        continue
    while len(reports) < invokes and time.time() * 1000 < event["deadlineMs"] - 100:
        time.sleep(0.01)
    sys.exit(0)
"#,
            out = out.display()
        ),
    )
}

#[test]
fn in_json_format_stdout_is_json_records_levels_filter_and_plain_lines_are_wrapped() {
    let s = Scene::new();
    let runtime = s.script("levels", LEVELS);
    let received = s.path("received.jsonl");
    let sub = subscriber(&s, &received);
    let r = s.lext(&[
        "--log-format",
        "json",
        "--extension",
        sub.to_str().unwrap(),
        "--function",
        runtime.to_str().unwrap(),
        "--invoke",
        "2",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    // Every line of standard output is a JSON document; no text platform
    // line is left.
    let docs: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!r.stdout.contains("START RequestId"), "{}", r.dump());
    let types: Vec<&str> = docs.iter().filter_map(|d| d["type"].as_str()).collect();
    for wanted in ["platform.initStart", "platform.start", "platform.report"] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    assert_eq!(types.iter().filter(|t| **t == "platform.report").count(), 2);
    // The plain line, wrapped with its invoke's request id; DEBUG dropped at
    // INFO; ERROR kept as written.
    let plain: Vec<&Value> = docs
        .iter()
        .filter(|d| d["message"] == "a plain line")
        .collect();
    assert_eq!(plain.len(), 2, "{}", r.dump());
    assert_eq!(plain[0]["level"], "INFO");
    let start = docs.iter().find(|d| d["type"] == "platform.start").unwrap();
    assert_eq!(plain[0]["requestId"], start["record"]["requestId"]);
    assert!(!r.stdout.contains("hidden at INFO"), "{}", r.dump());
    assert_eq!(
        r.stdout.matches(r#""msg": "kept""#).count(),
        2,
        "{}",
        r.dump()
    );
    // The subscriber got the same records, the lines as objects.
    let got: Vec<Value> = std::fs::read_to_string(&received)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let functions: Vec<&Value> = got.iter().filter(|e| e["type"] == "function").collect();
    assert_eq!(functions.len(), 4, "{got:?}");
    assert!(
        functions.iter().all(|e| e["record"].is_object()),
        "{functions:?}"
    );
    assert!(functions
        .iter()
        .any(|e| e["record"]["message"] == "a plain line"));
    // The system level: WARN keeps only failures, so no platform record.
    let r = s.lext(&[
        "--log-format",
        "json",
        "--system-log-level",
        "WARN",
        "--application-log-level",
        "DEBUG",
        "--function",
        runtime.to_str().unwrap(),
        "--invoke",
        "1",
    ]);
    assert!(!r.stdout.contains("platform."), "{}", r.dump());
    assert!(r.stdout.contains("hidden at INFO"), "{}", r.dump());
}

#[test]
fn awslambdaric_logs_json_which_subscribers_receive_as_objects() {
    let s = Scene::new();
    std::fs::write(
        s.path("app.py"),
        "import logging\nlogger = logging.getLogger()\n\
         def handler(event, context):\n    logger.info('from the handler')\n    return event\n",
    )
    .unwrap();
    let runtime = format!(
        "cd '{}' && exec '{}' -m awslambdaric app.handler",
        s.dir.path().display(),
        venv_program("python").display()
    );
    let received = s.path("received.jsonl");
    let sub = subscriber(&s, &received);
    let r = s.lext(&[
        "--log-format",
        "json",
        "--extension",
        sub.to_str().unwrap(),
        "--function",
        &runtime,
        "--invoke",
        "1",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    // awslambdaric read AWS_LAMBDA_LOG_FORMAT=JSON and logged JSON.
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("from the handler"))
        .unwrap_or_else(|| panic!("no handler line:\n{}", r.dump()));
    let logged: Value = serde_json::from_str(line).unwrap();
    assert_eq!(logged["level"], "INFO", "{logged}");
    assert!(logged["requestId"].is_string(), "{logged}");
    let got = std::fs::read_to_string(&received).unwrap();
    let record = got
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "function" && e["record"]["message"] == "from the handler")
        .unwrap_or_else(|| panic!("no function record:\n{got}"));
    assert_eq!(record["record"]["level"], "INFO");
}
