//! The front door, as a user's `cargo test` sees it: only the crate's
//! public face, real processes, sockets on 127.0.0.1.
//!
//! The extensions here are small Python programs (standard library only,
//! `python3` from the sandbox's `PATH`), written into a layer directory.

// A failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lext_protocol::telemetry::Record;
use lext_sandbox::{
    Capture, Environment, EnvironmentError, FunctionConfig, InvokeRequest, InvokeResult,
    JsonLinesSink, LineSource, Runtime,
};

/// Registers for INVOKE and SHUTDOWN; with `SUBSCRIBE=1` it first binds a
/// Telemetry API listener on `sandbox.localdomain:0` (as AWS's Python
/// samples do) and subscribes to platform and function records, printing
/// `got <type> <requestId>` for each platform record it receives. It exits
/// on SHUTDOWN.
const EXTENSION: &str = r#"#!/usr/bin/env python3
import http.server, json, os, sys, threading, urllib.request
name = os.path.basename(sys.argv[0])
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
def call(path, body=None, method="GET", headers={}):
    request = urllib.request.Request(api + path, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request) as answer:
        return answer.headers, answer.read()
headers, _ = call("/2020-01-01/extension/register", json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
                  "POST", {"Lambda-Extension-Name": name})
ext = {"Lambda-Extension-Identifier": headers["Lambda-Extension-Identifier"]}
if os.environ.get("SUBSCRIBE") == "1":
    class Listener(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            for event in json.loads(self.rfile.read(int(self.headers["Content-Length"]))):
                if event["type"].startswith("platform."):
                    print("got", event["type"], event["record"].get("requestId", "-"), flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("sandbox.localdomain", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    subscription = {"schemaVersion": "2022-12-13", "types": ["platform", "function"],
                    "buffering": {"timeoutMs": 25},
                    "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:%d" % server.server_address[1]}}
    call("/2022-07-01/telemetry", json.dumps(subscription).encode(), "PUT", ext)
while True:
    _, body = call("/2020-01-01/extension/event/next", headers=ext)
    if json.loads(body)["eventType"] == "SHUTDOWN":
        break
"#;

/// A layer directory holding the extension under `names`.
fn layer(dir: &Path, names: &[&str]) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("extensions")).unwrap();
    for name in names {
        let path = layer.join("extensions").join(name);
        std::fs::write(&path, EXTENSION).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    layer
}

/// Polls `capture` until `done` holds (bounded: 10 s).
async fn eventually(capture: &Capture, what: &str, done: impl Fn(&Capture) -> bool) {
    for _ in 0..500 {
        if done(capture) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {:#?}", capture.lines());
}

#[tokio::test]
async fn a_layer_extension_gets_the_telemetry_of_its_invokes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::new();
    // Not frozen between invokes: batches then go out when their 25 ms are
    // up, instead of at the next thaw as in Lambda.
    let env = Environment::new()
        .layer(layer(dir.path(), &["observer"]))
        .env("SUBSCRIBE", "1")
        .freeze(false)
        .sink(capture.clone())
        .start()
        .await
        .unwrap();
    env.ready().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = env.invoke(InvokeRequest::new("{}")).await.unwrap();
        assert!(response.is_success(), "{response:?}");
        ids.push(response.request_id);
    }
    env.idle().await;
    // What the extension received comes back as its own output lines.
    eventually(&capture, "the extension's reports", |c| {
        let got: Vec<String> = c
            .lines()
            .into_iter()
            .filter(|l| l.source == LineSource::Extension("observer".into()))
            .map(|l| l.text)
            .collect();
        ids.iter()
            .all(|id| got.contains(&format!("got platform.report {id}")))
    })
    .await;
    let lines = capture.platform_lines();
    assert!(
        lines[0].starts_with(
            "INIT_START Runtime Version: provided:al2023.v1\tRuntime Version ARN: \
             arn:aws:lambda:us-east-1::runtime:"
        ),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "TELEMETRY\tName: observer\tState: Subscribed\tTypes: [Platform, Function]"
    );
    assert_eq!(
        lines[2],
        "EXTENSION\tName: observer\tState: Ready\tEvents: [INVOKE, SHUTDOWN]"
    );
    let summary = env.stop().await.unwrap();
    assert_eq!(summary.invokes, 2);
    assert_eq!(summary.unreaped, 0);
}

#[tokio::test]
async fn the_capture_and_the_json_lines_file_hold_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("telemetry.jsonl");
    let capture = Capture::new();
    let env = Environment::new()
        .sink(capture.clone())
        .sink(JsonLinesSink::create(&file).unwrap())
        .start()
        .await
        .unwrap();
    env.invoke(InvokeRequest::new("[1]")).await.unwrap();
    env.stop().await.unwrap();
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The file holds what a Telemetry API subscriber gets; the capture
    // everything, the Logs API's platform.end included.
    let captured: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| !e.record.is_logs_api_only())
        .collect();
    assert_eq!(written.len(), captured.len());
    assert_eq!(capture.records("platform.end").len(), 1);
    let types: Vec<&str> = written
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "platform.initStart",
            "platform.initRuntimeDone",
            "platform.initReport",
            "platform.start",
            "platform.runtimeDone",
            "platform.report",
        ]
    );
    for (w, c) in written.iter().zip(&captured) {
        assert_eq!(w["type"], c.record.event_type());
        assert_eq!(w["time"], c.time);
    }
    let Record::Report(report) = &capture.records("platform.report")[0] else {
        panic!("no report")
    };
    assert_eq!(report.metrics.memory_size_mb, Some(128));
}

#[tokio::test]
async fn waits_tell_init_failures_and_the_end() {
    // A runtime that exits during Init: ready() says so rather than hang.
    let env = Environment::new()
        .runtime(Runtime::Shell("exit 3".into()))
        .start()
        .await
        .unwrap();
    assert!(matches!(
        env.ready().await,
        Err(EnvironmentError::InitFailed)
    ));
    let handle = env.handle();
    // The next invoke re-runs Init inside the invoke and fails with it.
    let response = env.invoke(InvokeRequest::new("{}")).await.unwrap();
    assert!(
        matches!(&response.result, InvokeResult::PlatformError { error_type, .. } if error_type == "Runtime.ExitError"),
        "{response:?}"
    );
    handle.shutdown();
    let summary = handle.stopped().await;
    assert_eq!(summary.init_failures, 2);
    assert!(matches!(
        handle.invoke(InvokeRequest::new("{}")).await,
        Err(EnvironmentError::Stopped)
    ));
    env.stopped().await.unwrap();
}

#[tokio::test]
async fn an_extension_that_cannot_be_launched_fails_the_first_init_at_once() {
    // Its interpreter does not exist: the launch fails in Init's first
    // step, and nothing else happens until an invoke. ready() still hears.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-interpreter");
    std::fs::write(&path, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let capture = Capture::new();
    let env = Environment::new()
        .extension(&path)
        .sink(capture.clone())
        .start()
        .await
        .unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(30), env.ready()).await;
    assert!(
        matches!(ready, Ok(Err(EnvironmentError::InitFailed))),
        "{ready:?}"
    );
    let lines = capture.platform_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("INIT_REPORT")
            && l.ends_with("Status: error\tError Type: Extension.LaunchError")),
        "{lines:?}"
    );
    assert_eq!(env.stop().await.unwrap().init_failures, 1);
}

#[tokio::test]
async fn the_invoke_api_is_served_until_the_environment_stops() {
    let env = Environment::new()
        .function(FunctionConfig {
            name: "echo".into(),
            ..FunctionConfig::default()
        })
        .serve_invoke_api("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let addr = env.invoke_api_addr().unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let body = r#"{"a":1}"#;
        write!(
            stream,
            "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("X-Amz-Executed-Version: $LATEST"),
        "{answer}"
    );
    assert!(answer.ends_with(r#"{"a":1}"#), "{answer}");
    env.stop().await.unwrap();
    // The server closed with the environment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[tokio::test]
async fn bad_configurations_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let layer = layer(dir.path(), &["twin"]);
    let twin = layer.join("extensions/twin");
    let err = Environment::new()
        .layer(&layer)
        .extension(&twin)
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("two extensions are named \"twin\""),
        "{err}"
    );
    let err = Environment::new()
        .env("AWS_REGION", "eu-west-1")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, EnvironmentError::Env(_)), "{err}");
    // The step, then the cause, each once.
    assert_eq!(err.to_string(), "--env");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        cause.ends_with("Reserved keys used in this request: AWS_REGION"),
        "{cause}"
    );
    let err = Environment::new()
        .layer(dir.path().join("no-such-layer.zip"))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("--layer "), "{err}");
    // Lambda's ephemeral storage is 512 to 10,240 MB.
    for mb in [511, 10_241] {
        let err = Environment::new()
            .ephemeral_storage(mb)
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(err, EnvironmentError::EphemeralStorage { mb: m } if m == mb),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("ephemeral storage of {mb} MB: Lambda allows 512 to 10240 MB")
        );
    }
}

/// A [`Function`] from `cargo test`: invokes that overlap get environments
/// of their own, each with its own copy of the extension and its own
/// telemetry, and a tenant's environment serves only that tenant.
#[tokio::test]
async fn a_function_runs_overlapping_invokes_in_environments_of_their_own() {
    use lext_sandbox::Function;
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::new();
    let template = Environment::new()
        .layer(layer(dir.path(), &["observer"]))
        .env("SUBSCRIBE", "1")
        .freeze(false)
        .sink(capture.clone());
    let function = Function::new(template.clone())
        .concurrency(2)
        .start()
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        function.invoke(InvokeRequest::new("1")),
        function.invoke(InvokeRequest::new("2"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((&a.payload()[..], &b.payload()[..]), (&b"1"[..], &b"2"[..]));
    function.idle().await;
    // Each environment's extension got the report of its own invoke, and
    // its lines say which environment it is.
    eventually(&capture, "each environment's reports", |c| {
        let got: Vec<(String, String)> = c
            .lines()
            .into_iter()
            .filter(|l| l.source == LineSource::Extension("observer".into()))
            .filter_map(|l| Some((l.environment?.to_string(), l.text)))
            .collect();
        [&a, &b].iter().all(|r| {
            got.iter()
                .any(|(_, text)| *text == format!("got platform.report {}", r.request_id))
        })
    })
    .await;
    let mut where_reported: Vec<String> = capture
        .lines()
        .into_iter()
        .filter(|l| l.text.starts_with("got platform.report "))
        .map(|l| l.environment.unwrap().to_string())
        .collect();
    where_reported.sort();
    assert_eq!(where_reported, ["env-1", "env-2"]);
    // A tenant id for a function without tenant isolation is refused.
    let refused = function
        .invoke(InvokeRequest {
            tenant_id: Some("blue".into()),
            ..InvokeRequest::new("{}")
        })
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        EnvironmentError::Tenant { isolated: false }
    ));
    let summary = function.stop().await.unwrap();
    assert_eq!(summary.environments, 2);
    assert_eq!(summary.invokes, 2);
    assert_eq!(summary.unreaped, 0);

    // With tenant isolation, invokes need a tenant, and each tenant's
    // records say whose they are.
    capture.clear();
    let function = Function::new(template)
        .tenant_isolation(true)
        .start()
        .await
        .unwrap();
    let refused = function.invoke(InvokeRequest::new("{}")).await.unwrap_err();
    assert!(matches!(
        refused,
        EnvironmentError::Tenant { isolated: true }
    ));
    for tenant in ["blue", "green", "blue"] {
        let response = function
            .invoke(InvokeRequest {
                tenant_id: Some(tenant.into()),
                ..InvokeRequest::new("{}")
            })
            .await
            .unwrap();
        assert!(response.is_success(), "{response:?}");
    }
    let summary = function.stop().await.unwrap();
    assert_eq!(
        summary.environments, 2,
        "blue's environment served blue twice"
    );
    let tenants: Vec<Option<String>> = capture
        .records("platform.report")
        .into_iter()
        .map(|r| match r {
            Record::Report(r) => r.tenant_id,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        tenants,
        [Some("blue"), Some("green"), Some("blue")].map(|t| t.map(str::to_owned))
    );
}

/// A new environment that cannot start fails only the invoke given to it:
/// the function keeps serving with the others, and stops cleanly.
#[tokio::test]
async fn a_function_whose_new_environment_cannot_start_fails_that_invoke_only() {
    use lext_sandbox::Function;
    let dir = tempfile::tempdir().unwrap();
    let layer = layer(dir.path(), &["observer"]);
    let function = Function::new(Environment::new().layer(&layer).freeze(false))
        .concurrency(2)
        .start()
        .await
        .unwrap();
    // The first environment has its copy; a second one would unpack the
    // layer again, and it is gone.
    std::fs::remove_dir_all(&layer).unwrap();
    let (a, b) = tokio::join!(
        function.invoke(InvokeRequest::new("1")),
        function.invoke(InvokeRequest::new("2"))
    );
    let (ok, failed): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "{ok:?} {failed:?}");
    let error = failed.into_iter().next().unwrap().unwrap_err();
    assert!(
        matches!(&error, EnvironmentError::StartFailed { message } if message.contains("layer")),
        "{error}"
    );
    // The first environment still serves, once its extension is done with
    // the invoke (until then a third invoke would need a new one).
    function.idle().await;
    let again = function.invoke(InvokeRequest::new("3")).await.unwrap();
    assert!(again.is_success(), "{again:?}");
    let summary = tokio::time::timeout(Duration::from_secs(20), function.stop())
        .await
        .expect("the function stops")
        .unwrap();
    assert_eq!(summary.environments, 1);
    assert_eq!(summary.invokes, 2);
}

#[tokio::test]
async fn managed_instances_from_the_front_door() {
    let capture = Capture::new();
    let env = Environment::new()
        .managed_instances(4)
        .sink(capture.clone())
        .start()
        .await
        .unwrap();
    env.ready().await.unwrap();
    for n in 0..2 {
        // One worker (the echo runtime's): wait until it is back in /next.
        env.idle().await;
        let response = env
            .invoke(InvokeRequest {
                request_id: Some(format!("mine-{n}")),
                ..InvokeRequest::new(format!(r#"{{"n":{n}}}"#))
            })
            .await
            .unwrap();
        // The caller's request id is the invoke id.
        assert_eq!(response.request_id, format!("mine-{n}"));
        assert_eq!(response.payload(), format!(r#"{{"n":{n}}}"#));
    }
    env.idle().await;
    let Record::InitStart(init) = &capture.records("platform.initStart")[0] else {
        unreachable!()
    };
    assert_eq!(
        init.initialization_type.as_str(),
        "lambda-managed-instances"
    );
    assert!(init.instance_id.as_deref().unwrap().starts_with("i-"));
    let starts = capture.records("platform.start");
    assert_eq!(starts.len(), 2);
    let Record::Start(start) = &starts[1] else {
        unreachable!()
    };
    assert_eq!(start.request_id, "mine-1");
    assert!(start.function_arn.is_some());
    assert!(capture.records("platform.runtimeDone").is_empty());
    // JSON logging is forced: no START/END/REPORT text lines.
    assert!(!capture
        .platform_lines()
        .iter()
        .any(|l| l.starts_with("START ")));
    let summary = env.stop().await.unwrap();
    assert_eq!(summary.invokes, 2);
}
