//! The support modules together, as `lext run` uses them: an extension from
//! a layer, started through `process` inside the `isolation` namespace with
//! the `env` extension environment, binds its telemetry listener to
//! `sandbox.localdomain` (as AWS's Python samples do), and the `telemetry`
//! hub delivers to it. What the listener receives comes back as its output
//! lines, through the same hub.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lext_protocol::telemetry::{Api, Buffering, LogRecord, LogType, Record, SubscribeRequest};

use crate::env::{extension_env, EnvConfig};
use crate::isolation::{self, Decision, Isolation};
use crate::process::{self, LineSink, OutputLines, Source, Spec};
use crate::sink::Fanout;
use crate::telemetry::{Hub, HubConfig};

/// A minimal Telemetry API listener in Python, bound like AWS's sample:
/// `sandbox.localdomain:0`; prints its port, then every record it receives.
const LISTENER: &str = r#"
import http.server, json, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        for event in json.loads(body):
            if event["type"] == "function":
                print("got", event["record"], flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("sandbox.localdomain", 0), H)
print("listening", server.server_address[0], server.server_address[1], flush=True)
server.serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_extension_listening_on_sandbox_localdomain_receives_telemetry() {
    let python = crate::test_support::python();
    let mode = match isolation::detect().await {
        Decision::Isolate(mode) => mode,
        rewrite => panic!("isolation is needed here: {:?}", rewrite.fallback_line()),
    };
    let layers = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(layers.path().join("extensions")).unwrap();
    std::fs::create_dir_all(layers.path().join("py-listener")).unwrap();
    std::fs::write(layers.path().join("py-listener/listener.py"), LISTENER).unwrap();
    // The extension launcher refers to the layer by its /opt path, as real
    // layers do.
    let launcher = layers.path().join("extensions/py-listener");
    std::fs::write(
        &launcher,
        format!(
            "#!/bin/sh\nexec {} /opt/py-listener/listener.py\n",
            python.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();

    // No --telemetry-out: a sink that wants no events.
    let hub = Hub::new(HubConfig::default(), Arc::new(Fanout::new(Vec::new())));
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    let sink_hub = hub.clone();
    let sink: LineSink = Arc::new(move |batch: OutputLines| {
        sink_hub.record_lines(&batch);
        sink_lines.lock().unwrap().extend(batch.lines);
    });
    let env = extension_env(&EnvConfig::new("127.0.0.1:9001", "fn"));
    let mut spec = Spec::new(
        "/opt/extensions/py-listener",
        env,
        Source::Extension("py-listener".into()),
    );
    spec.isolation = Some(Arc::new(
        Isolation::new(mode, layers.path(), state.path()).unwrap(),
    ));
    let mut extension = process::spawn(spec, sink).unwrap();

    // The listener resolved sandbox.localdomain to loopback inside the
    // sandbox and tells us its port.
    let start = Instant::now();
    let port: u16 = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            let rest = l.strip_prefix("listening 127.0.0.1 ")?;
            rest.parse().ok()
        });
        if let Some(port) = found {
            break port;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listener did not start: {:?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let mut request = SubscribeRequest::http(vec![LogType::Function], port);
    request.buffering = Some(Buffering {
        max_items: Some(1000),
        max_bytes: Some(262_144),
        timeout_ms: Some(25),
    });
    request.validate(Api::Telemetry).unwrap();
    hub.subscribe(Api::Telemetry, "py-listener", &request)
        .unwrap();
    for i in 0..3 {
        hub.record(Record::Function(LogRecord::Text(format!("hello {i}"))));
    }
    let start = Instant::now();
    loop {
        let got: Vec<String> = lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("got "))
            .cloned()
            .collect();
        if got.len() == 3 {
            assert_eq!(got, ["got hello 0", "got hello 1", "got hello 2"]);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the listener received {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = hub.shutdown(Duration::from_secs(5)).await;
    assert!(
        report.completed && report.undelivered.is_empty(),
        "{report:?}"
    );
    extension.terminate().unwrap();
    extension.wait().await.unwrap();
}
