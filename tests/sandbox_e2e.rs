//! End-to-end tests of `lext run` with real processes: the README's main
//! command with rust-example-extension, the Invoke API endpoint (`--serve`)
//! spoken to over raw HTTP, Ctrl-C, and Telemetry API delivery to a
//! subscriber listening on `sandbox.localdomain`.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::process::Command;

use sandbox_support::{header, http, interrupt, repo, serve, Scene};

#[test]
fn main_command_prints_the_sample_log() {
    // `cargo run -- run` from the repository root, with its own target
    // directory.
    let target = sandbox_support::nested_target();
    let output = Command::new(env!("CARGO_BIN_EXE_lext"))
        .arg("run")
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let dump = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(output.status.success(), "{dump}");
    let lines: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, r)| r))
        .collect();
    let find = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?}\n{dump}"))
    };
    let registering = find("[rust-example-extension] Registering...");
    let extension =
        find("EXTENSION\tName: rust-example-extension\tState: Ready\tEvents: [INVOKE, SHUTDOWN]");
    let start = find("START RequestId: ");
    let received = find("[rust-example-extension] Received event: {");
    let end = find("END RequestId: ");
    let report = find("REPORT RequestId: ");
    let shutdown = find("[rust-example-extension] Received SHUTDOWN event");
    let exiting = find("[rust-example-extension] Exiting");
    assert!(
        registering < extension && extension < start && start < received,
        "{dump}"
    );
    assert!(
        received < end && end < report && report < shutdown && shutdown < exiting,
        "{dump}"
    );
    // The INVOKE event carries the request id of START, and a real deadline.
    let request_id = lines[start]
        .trim_start_matches("START RequestId: ")
        .split(' ')
        .next()
        .unwrap();
    assert!(
        stdout.contains(&format!("\"requestId\": \"{request_id}\"")),
        "{dump}"
    );
    assert!(
        lines[report].contains("Init Duration: "),
        "cold start: {dump}"
    );
    assert!(lines[report].contains("Memory Size: 128 MB"), "{dump}");
    assert!(
        stdout.contains("\"shutdownReason\": \"spindown\""),
        "{dump}"
    );
}

#[test]
fn invoke_endpoint_and_ctrl_c() {
    let s = Scene::new();
    let ext = s.extension("observer", "ok");
    let runtime = s.runtime("echo");
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--extension",
            &ext.display().to_string(),
            "--function",
            &runtime,
            "--function-name",
            "my-fn",
        ],
    );
    let (status, headers, body) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/my-fn/invocations",
        &[],
        br#"{"hello":"world"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"hello":"world"}"#);
    assert_eq!(header(&headers, "x-amz-executed-version"), Some("$LATEST"));
    assert!(header(&headers, "x-amzn-requestid").is_some());
    assert_eq!(header(&headers, "x-amz-function-error"), None);
    // The function's ARN works as a name; another name does not.
    let (status, _, _) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:my-fn/invocations",
        &[],
        b"{}",
    );
    assert_eq!(status, 200);
    let (status, headers, body) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/other/invocations",
        &[],
        b"{}",
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    // Asynchronous and dry-run invocation types.
    let (status, _, _) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/my-fn/invocations",
        &[("X-Amz-Invocation-Type", "DryRun")],
        b"{}",
    );
    assert_eq!(status, 204);
    let (status, _, _) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/my-fn/invocations",
        &[("X-Amz-Invocation-Type", "Event")],
        b"{}",
    );
    assert_eq!(status, 202);
    // Invokes queue: several callers at once all get their own answer.
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                http(
                    &addr,
                    "POST",
                    "/2015-03-31/functions/my-fn/invocations",
                    &[],
                    format!("{{\"n\":{i}}}").as_bytes(),
                )
            })
        })
        .collect();
    for (i, c) in callers.into_iter().enumerate() {
        let (status, _, body) = c.join().unwrap();
        assert_eq!((status, body), (200, format!("{{\"n\":{i}}}")));
    }
    let status = interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("[observer] SHUTDOWN spindown"), "{logs}");
    assert_eq!(
        logs.matches("\nEND RequestId").count() + logs.matches(" END RequestId").count(),
        7,
        "{logs}"
    );
    s.assert_no_process_left(&["observer", "runtime.py"]);
}

#[test]
fn invoke_endpoint_timeout_and_function_error() {
    let s = Scene::new();
    let runtime = s.runtime("sleep");
    let (mut child, addr, logs) = serve(&s, &["--function", &runtime, "--timeout", "1"]);
    let (status, headers, body) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/lext-function/invocations",
        &[],
        b"{}",
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-amz-function-error"), Some("Unhandled"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "Sandbox.Timedout");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Error: Task timed out after 1.00 seconds"),
        "{body}"
    );
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert!(logs.contains("Status: timeout"), "{logs}");

    let s = Scene::new();
    let runtime = s.runtime("error");
    let (mut child, addr, logs) = serve(&s, &["--function", &runtime]);
    let (status, headers, body) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/function/invocations",
        &[],
        b"{}",
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        body,
        r#"{"errorMessage": "boom", "errorType": "ValueError"}"#
    );
    let big = vec![b'x'; 6 * 1024 * 1024 + 1];
    let (status, headers, _) = http(
        &addr,
        "POST",
        "/2015-03-31/functions/function/invocations",
        &[],
        &big,
    );
    assert_eq!(status, 413);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("RequestEntityTooLargeException")
    );
    interrupt(&mut child);
    drop(logs.join());
    s.assert_no_process_left(&["runtime.py"]);
}

/// A Python extension that listens on `sandbox.localdomain` (as AWS's
/// samples do), subscribes through `path` with `schema` and `types` (a JSON
/// list), and appends every event it receives to `out` as JSON lines.
fn subscriber_extension(
    s: &Scene,
    name: &str,
    out: &std::path::Path,
    path: &str,
    schema: &str,
    types: &str,
) -> std::path::PathBuf {
    s.script(
        name,
        &format!(
            r#"#!/usr/bin/env python3
import http.client, http.server, json, os, sys, threading, time
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, PORT = API.rsplit(":", 1)
NAME = os.path.basename(sys.argv[0])
with open(os.path.dirname(sys.argv[0]) + "/" + NAME + ".pids", "a") as f:
    f.write(f"{{os.getpid()}} {{os.readlink('/proc/self/ns/pid')}}\n")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {{}})
    r = c.getresponse()
    return r.status, {{k.lower(): v for k, v in r.getheaders()}}, r.read()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("{out}", "a") as f:
            for e in json.loads(body):
                f.write(json.dumps(e) + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
# AWS's samples bind the listener to sandbox.localdomain.
server = http.server.HTTPServer(("sandbox.localdomain", 0), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
status, h, body = call("POST", "/2020-01-01/extension/register", json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}), {{"Lambda-Extension-Name": NAME}})
ID = h["lambda-extension-identifier"]
print(f"[{{NAME}}] extension log before subscribing", flush=True)
sub = {{"schemaVersion": "{schema}", "types": {types},
       "buffering": {{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}},
       "destination": {{"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{{port}}"}}}}
status, _, body = call("PUT", "{path}", json.dumps(sub), {{"Lambda-Extension-Identifier": ID}})
print(f"[{{NAME}}] subscribe answered {{status}} {{body.decode()}}", flush=True)
while True:
    status, _, body = call("GET", "/2020-01-01/extension/event/next", headers={{"Lambda-Extension-Identifier": ID}})
    event = json.loads(body)
    if event["eventType"] == "SHUTDOWN":
        time.sleep(0.5)
        sys.exit(0)
"#,
            out = out.display()
        ),
    )
}

#[test]
fn telemetry_is_delivered_to_a_subscriber_on_sandbox_localdomain() {
    let s = Scene::new();
    let out = s.path("received.jsonl");
    let listener = subscriber_extension(
        &s,
        "telemetry-ext",
        &out,
        "/2022-07-01/telemetry",
        "2022-12-13",
        r#"["platform", "function", "extension"]"#,
    );
    let runtime = s.runtime("echo");
    let telemetry_out = s.path("telemetry-out.jsonl");
    let r = s.lext(&[
        "--extension",
        &listener.display().to_string(),
        "--function",
        &runtime,
        "--invoke",
        "2",
        "--telemetry-out",
        &telemetry_out.display().to_string(),
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(
        r.has("[telemetry-ext] subscribe answered 200 \"OK\""),
        "{}",
        r.dump()
    );
    assert!(r.has("TELEMETRY\tName: telemetry-ext\tState: Subscribed\tTypes: [Platform, Function, Extension]"), "{}", r.dump());
    let received = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("nothing received ({e}): {}", r.dump()));
    let events: Vec<serde_json::Value> = received
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in [
        "platform.initStart",
        "platform.initReport",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "function",
        "extension",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}\n{}", r.dump());
    }
    // Init replay: the extension's own line from before it subscribed.
    assert!(
        events.iter().any(|e| e["type"] == "extension"
            && e["record"]
                .as_str()
                .is_some_and(|s| s.contains("before subscribing"))),
        "{received}"
    );
    let reports: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "platform.report")
        .collect();
    assert_eq!(reports.len(), 2, "{received}");
    let m = &reports[0]["record"]["metrics"];
    assert!(m["maxMemoryUsedMB"].as_u64().unwrap() > 1, "{m}");
    assert_eq!(m["memorySizeMB"], 128);
    assert!(m["initDurationMs"].as_f64().unwrap() > 0.0);
    assert!(reports[1]["record"]["metrics"]
        .get("initDurationMs")
        .is_none());
    // --telemetry-out has everything too, as JSON lines.
    let all = std::fs::read_to_string(&telemetry_out).unwrap();
    assert!(all.lines().count() >= events.len(), "{all}");
    assert!(all.contains("platform.report"));
    s.assert_no_process_left(&["telemetry-ext", "runtime.py"]);
}

#[test]
fn layers_appear_at_opt() {
    let s = Scene::new();
    // A layer as AWS's Python samples ship them: the launcher in
    // extensions/ refers to its code and data by /opt paths.
    let layer = s.path("layer");
    std::fs::create_dir_all(layer.join("extensions")).unwrap();
    std::fs::create_dir_all(layer.join("opt-ext")).unwrap();
    std::fs::write(layer.join("opt-ext/config.txt"), "from-the-layer\n").unwrap();
    let ext = s.extension("opt-ext-main", "ok");
    std::fs::rename(&ext, layer.join("opt-ext/main.py")).unwrap();
    let launcher = layer.join("extensions/opt-ext");
    std::fs::write(
        &launcher,
        "#!/bin/sh\necho \"[opt-ext] config: $(cat /opt/opt-ext/config.txt)\"\nexport PIDFILE_DIR=\"$PIDFILE_DIR\"\nEXT_NAME=opt-ext exec /opt/opt-ext/main.py\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &launcher,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The pid files go next to the scene, not into the read-only layer.
    let pid_dir = s.dir.path().display().to_string();
    let env = format!("PIDFILE_DIR={pid_dir}");

    // As a directory.
    let r = s.lext(&[
        "--layer",
        &layer.display().to_string(),
        "--env",
        &env,
        "--invoke",
        "1",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(r.has("[opt-ext] config: from-the-layer"), "{}", r.dump());
    assert!(
        r.has("EXTENSION\tName: opt-ext\tState: Ready\tEvents: [INVOKE, SHUTDOWN]"),
        "{}",
        r.dump()
    );
    assert!(r.has("[opt-ext] SHUTDOWN spindown"), "{}", r.dump());

    // As a zip made the way the samples make it (zip -r, modes kept).
    let zip = s.path("layer.zip");
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sys, zipfile\n\
             root, out = sys.argv[1], sys.argv[2]\n\
             with zipfile.ZipFile(out, 'w') as z:\n\
             \x20   for d, _, files in os.walk(root):\n\
             \x20       for f in files:\n\
             \x20           p = os.path.join(d, f)\n\
             \x20           info = zipfile.ZipInfo(os.path.relpath(p, root))\n\
             \x20           info.external_attr = (os.stat(p).st_mode & 0xFFFF) << 16\n\
             \x20           z.writestr(info, open(p, 'rb').read())\n",
        )
        .arg(&layer)
        .arg(&zip)
        .status()
        .unwrap();
    assert!(status.success());
    let r = s.lext(&[
        "--layer",
        &zip.display().to_string(),
        "--env",
        &env,
        "--invoke",
        "1",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(r.has("[opt-ext] config: from-the-layer"), "{}", r.dump());
    assert_eq!(s.pids("opt-ext").len(), 2);
    s.assert_no_process_left(&["opt-ext"]);
}

/// An extension whose background thread ticks into a file every 20 ms.
fn ticking_extension(s: &Scene) -> std::path::PathBuf {
    let ticks = s.path("ticks");
    s.script(
        "ticker",
        &format!(
            r#"#!/usr/bin/env python3
import http.client, json, os, sys, threading, time
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, PORT = API.rsplit(":", 1)
with open(os.path.dirname(sys.argv[0]) + "/ticker.pids", "a") as f:
    f.write(f"{{os.getpid()}} {{os.readlink('/proc/self/ns/pid')}}\n")
def tick():
    while True:
        with open("{ticks}", "a") as f:
            f.write(f"{{time.time()}}\n")
        time.sleep(0.02)
threading.Thread(target=tick, daemon=True).start()
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {{}})
    r = c.getresponse()
    return {{k.lower(): v for k, v in r.getheaders()}}, r.read()
h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}), {{"Lambda-Extension-Name": "ticker"}})
while True:
    _, body = call("GET", "/2020-01-01/extension/event/next", headers={{"Lambda-Extension-Identifier": h["lambda-extension-identifier"]}})
    if json.loads(body)["eventType"] == "SHUTDOWN":
        sys.exit(0)
"#,
            ticks = ticks.display()
        ),
    )
}

/// Ticks written between `from` and `to` (Unix seconds).
fn ticks_between(s: &Scene, from: f64, to: f64) -> usize {
    std::fs::read_to_string(s.path("ticks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse::<f64>().ok())
        .filter(|t| *t > from && *t < to)
        .count()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn processes_are_frozen_between_invokes_unless_no_freeze() {
    for (flag, frozen) in [(None, true), (Some("--no-freeze"), false)] {
        let s = Scene::new();
        let ext = ticking_extension(&s).display().to_string();
        let mut args = vec!["--extension", ext.as_str()];
        args.extend(flag);
        let (mut child, addr, logs) = serve(&s, &args);
        let path = "/2015-03-31/functions/lext-function/invocations";
        assert_eq!(http(&addr, "POST", path, &[], b"{}").0, 200);
        std::thread::sleep(std::time::Duration::from_millis(150));
        let idle_from = unix_now();
        std::thread::sleep(std::time::Duration::from_millis(600));
        let idle_to = unix_now();
        let idle = ticks_between(&s, idle_from, idle_to);
        // Thawed for the next invoke (which is answered), frozen again after.
        assert_eq!(http(&addr, "POST", path, &[], b"{}").0, 200);
        interrupt(&mut child);
        let logs = logs.join().unwrap();
        if frozen {
            assert_eq!(idle, 0, "{idle} ticks while frozen\n{logs}");
        } else {
            assert!(idle >= 10, "only {idle} ticks with --no-freeze\n{logs}");
        }
        // It ran before the idle window (its start-up ticks).
        assert!(ticks_between(&s, 0.0, idle_from) > 0, "{logs}");
        s.assert_no_process_left(&["ticker"]);
    }
}

#[test]
fn the_host_environment_is_not_passed_through() {
    let s = Scene::new();
    // The runtime dumps its environment, then serves as the echo runtime.
    let echo = s.runtime("echo");
    let runtime = s.script(
        "runtime-env.sh",
        &format!("#!/bin/sh\nenv | sort | sed 's/^/[runtime] env /'\nexec {echo}\n"),
    );
    // The extension dumps its environment, then behaves (registers etc.).
    let helper = s.extension("env-ext-helper", "ok");
    let ext = s.script(
        "env-ext",
        &format!(
            "#!/bin/sh\nenv | sort | sed 's/^/[env-ext] env /'\nEXT_NAME=env-ext exec {}\n",
            helper.display()
        ),
    );
    let api = format!("127.0.0.1:{}", sandbox_support::free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_lext"))
        .args([
            "run",
            "--invoke",
            "1",
            "--timeout",
            "1",
            "--handler",
            "my.handler",
            "--env",
            "FOO=bar",
        ])
        .arg("--function")
        .arg(&runtime)
        .arg("--extension")
        .arg(&ext)
        .arg("--api")
        .arg(&api)
        .env("SECRET_TOKEN", "do-not-leak")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(!out.contains("SECRET_TOKEN"), "{out}");
    for expected in &[
        "[runtime] env FOO=bar",
        &format!("[runtime] env AWS_LAMBDA_RUNTIME_API={api}"),
        "[runtime] env _HANDLER=my.handler",
        "[runtime] env AWS_LAMBDA_FUNCTION_NAME=lext-function",
        "[runtime] env AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
        "[runtime] env AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/lext-function",
        "[env-ext] env FOO=bar",
        "[env-ext] env AWS_LAMBDA_FUNCTION_NAME=lext-function",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{out}");
    }
    assert!(!out.contains("[env-ext] env _HANDLER"), "{out}");
    assert!(
        !out.contains("[env-ext] env AWS_LAMBDA_LOG_GROUP_NAME"),
        "{out}"
    );
    assert!(
        out.contains("[runtime] env PATH=") && out.contains("/opt/bin"),
        "{out}"
    );
}

#[test]
fn unsafe_layers_are_refused_before_anything_starts() {
    let s = Scene::new();
    let zip = s.path("evil.zip");
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
             \x20   z.writestr('extensions/ok', '#!/bin/sh\\n')\n\
             \x20   z.writestr('../escaped', 'x')\n",
        )
        .arg(&zip)
        .status()
        .unwrap();
    assert!(status.success());
    let r = s.lext(&["--layer", &zip.display().to_string(), "--invoke", "1"]);
    r.assert_failed_with("error: unpacking the layer");
    assert!(!r.has("START"), "nothing ran: {}", r.dump());
    assert!(!s.dir.path().parent().unwrap().join("escaped").exists());

    let dir = s.path("linky");
    std::fs::create_dir_all(dir.join("extensions")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("extensions/passwd")).unwrap();
    let r = s.lext(&["--layer", &dir.display().to_string(), "--invoke", "1"]);
    r.assert_failed_with("error: copying the layer directory");
}

#[test]
fn a_busy_api_address_is_a_clear_error() {
    let s = Scene::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = s.lext(&["--api", &addr, "--invoke", "1"]);
    assert!(!r.output.status.success(), "{}", r.dump());
    assert!(
        r.stderr
            .contains(&format!("error: binding the Runtime API on {addr}")),
        "{}",
        r.dump()
    );
}

#[test]
fn header_names_are_written_as_lambda_writes_them() {
    // Lambda's Go server writes canonical header names; clients that look
    // them up case-sensitively (a Python dict of getheaders()) depend on it.
    let s = Scene::new();
    let (mut child, addr, logs) = serve(&s, &[]);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read as _, Write as _};
    stream
        .write_all(b"POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(
        raw.contains("\r\nX-Amz-Executed-Version: $LATEST\r\n"),
        "{raw}"
    );
    assert!(
        raw.contains("\r\nContent-Type: application/json\r\n"),
        "{raw}"
    );
    interrupt(&mut child);
    drop(logs.join());
}

#[test]
fn logs_api_subscriber_gets_the_logs_api_shapes() {
    let s = Scene::new();
    let out = s.path("logs.jsonl");
    let listener = subscriber_extension(
        &s,
        "logs-ext",
        &out,
        "/2020-08-15/logs",
        "2021-03-18",
        r#"["platform", "function"]"#,
    );
    let runtime = s.runtime("echo");
    let r = s.lext(&[
        "--extension",
        &listener.display().to_string(),
        "--function",
        &runtime,
        "--invoke",
        "1",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(
        r.has("[logs-ext] subscribe answered 200 \"OK\""),
        "{}",
        r.dump()
    );
    assert!(
        r.has("LOGS\tName: logs-ext\tState: Subscribed\tTypes: [platform, function]"),
        "{}",
        r.dump()
    );
    let received = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("nothing received ({e}): {}", r.dump()));
    let types: Vec<String> = received
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for t in [
        "platform.start",
        "platform.end",
        "platform.report",
        "function",
    ] {
        assert!(types.iter().any(|x| x == t), "no {t} in {types:?}");
    }
    // Telemetry-only events do not reach a Logs API subscriber.
    assert!(
        !types.iter().any(|x| x == "platform.initStart"),
        "{types:?}"
    );
    s.assert_no_process_left(&["logs-ext", "runtime.py"]);
}

#[test]
fn payload_from_a_file_and_bad_payloads() {
    let s = Scene::new();
    let file = s.path("payload.json");
    std::fs::write(&file, r#"{"from":"file"}"#).unwrap();
    let r = s.lext(&["--payload", &format!("@{}", file.display())]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(
        r.stderr
            .contains(r#"lext: invoke 1: response {"from":"file"}"#),
        "{}",
        r.dump()
    );
    let r = s.lext(&["--payload", "{not json"]);
    assert!(!r.output.status.success());
    assert!(
        r.stderr.contains("--payload is not valid JSON"),
        "{}",
        r.dump()
    );
    let r = s.lext(&["--payload", "@/nonexistent/payload.json"]);
    assert!(
        r.stderr
            .contains("reading the payload file /nonexistent/payload.json"),
        "{}",
        r.dump()
    );
    let r = s.lext(&["--env", "AWS_REGION=eu-west-1"]);
    assert!(!r.output.status.success());
    assert!(r.stderr.contains("--env"), "{}", r.dump());
}

#[test]
fn duplicate_extension_names_are_refused() {
    let s = Scene::new();
    let a = s.extension("same", "ok");
    std::fs::create_dir_all(s.path("other")).unwrap();
    let b = s.path("other/same");
    std::fs::copy(&a, &b).unwrap();
    let r = s.lext(&[
        "--extension",
        &a.display().to_string(),
        "--extension",
        &b.display().to_string(),
    ]);
    r.assert_failed_with("two extensions are named \"same\"");
}

#[test]
fn ctrl_c_works_when_the_terminal_is_gone() {
    // The parent stops reading lext's output (its pipes close), then sends
    // SIGINT: lext must still spin down and leave nothing behind (a write
    // to a closed stderr must not kill the Ctrl-C handling).
    use std::io::BufRead as _;
    let s = Scene::new();
    let ext = s.extension("observer", "ok");
    let mut child = sandbox_support::Lext(
        Command::new(env!("CARGO_BIN_EXE_lext"))
            .args(["run", "--serve", "127.0.0.1:0", "--extension"])
            .arg(&ext)
            .current_dir(s.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "lext exited early"
        );
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    drop(stderr);
    drop(child.stdout.take());
    assert_eq!(
        http(
            &addr,
            "POST",
            "/2015-03-31/functions/function/invocations",
            &[],
            b"{}"
        )
        .0,
        200
    );
    let status = interrupt(&mut child);
    assert!(status.code().is_some(), "lext died of a signal: {status:?}");
    s.assert_no_process_left(&["observer"]);
}
