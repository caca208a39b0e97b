//! A scripted fake Extensions API for the SDK's tests (a test peer).
//!
//! It listens on 127.0.0.1 with an ephemeral port, records every request,
//! and answers each one with what the test's script returns. Connections
//! are kept alive unless the reply says otherwise. Dropping the value stops
//! the server and its connection threads.
#![allow(dead_code)]
// Each test binary uses a different part of it.
// A test peer: a poisoned lock or a failed bind is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Status, extra headers, body (Content-Length framed).
    Status(u16, Vec<(&'static str, String)>, String),
    /// Bytes written as they are, then the connection is closed.
    Raw(Vec<u8>),
    /// Never answer (a long poll that does not end); the connection stays open.
    Hold,
}

impl Reply {
    pub(crate) fn json(status: u16, body: &str) -> Self {
        Reply::Status(status, vec![], body.to_owned())
    }

    /// Lambda's answer to a successful register: 200, the identifier
    /// header ([`ID`]) and [`REGISTER_BODY`].
    pub(crate) fn registered() -> Self {
        Reply::Status(
            200,
            vec![("Lambda-Extension-Identifier", ID.to_owned())],
            REGISTER_BODY.to_owned(),
        )
    }
}

type Script = dyn FnMut(&Recorded) -> Reply + Send;

pub(crate) struct FakeApi {
    pub(crate) addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeApi {
    pub(crate) fn start(script: impl FnMut(&Recorded) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake API");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Mutex<Box<Script>>> = Arc::new(Mutex::new(Box::new(script)));
        let accept = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop, script) = (requests.clone(), stop.clone(), script.clone());
                    std::thread::spawn(move || serve(stream, requests, stop, script));
                }
            })
        };
        Self {
            addr,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    pub(crate) fn api(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    /// Waits until `n` requests have arrived (at most 10 s).
    pub(crate) fn wait_for(&self, n: usize) {
        for _ in 0..1000 {
            if self.requests.lock().unwrap().len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("fake API: expected {n} requests, got {:?}", self.paths());
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    script: Arc<Mutex<Box<Script>>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse one request if buffered.
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next().unwrap_or("").split(' ');
            let method = first.next().unwrap_or("").to_owned();
            let path = first.next().unwrap_or("").to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                let rec = Recorded {
                    method,
                    path,
                    headers,
                    body,
                };
                requests.lock().unwrap().push(rec.clone());
                let reply = (script.lock().unwrap())(&rec);
                match reply {
                    Reply::Status(status, extra, body) => {
                        let mut msg =
                            format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n");
                        for (n, v) in extra {
                            msg.push_str(&format!("{n}: {v}\r\n"));
                        }
                        msg.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
                        if stream.write_all(msg.as_bytes()).is_err() {
                            return;
                        }
                    }
                    Reply::Raw(bytes) => {
                        let _ = stream.write_all(&bytes);
                        return;
                    }
                    Reply::Hold => {
                        while !stop.load(Ordering::SeqCst) {
                            match stream.read(&mut chunk) {
                                Ok(0) => return,
                                Ok(_) => {}
                                Err(_) => {}
                            }
                        }
                        return;
                    }
                }
                continue;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

pub(crate) const REGISTER_PATH: &str = "/2020-01-01/extension/register";
pub(crate) const ID: &str = "6b1e5b2c-8a4e-4c6f-9d0b-1f2e3d4c5b6a";
pub(crate) const REGISTER_BODY: &str =
    r#"{"functionName":"my-function","functionVersion":"$LATEST","handler":"function.handler"}"#;
pub(crate) const INVOKE: &str = r#"{"eventType":"INVOKE","deadlineMs":1654469121614,"requestId":"3da1f2dc-3222-475e-9205-e2e6c6318895","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:ExtensionTest","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"}}"#;
pub(crate) const SHUTDOWN: &str =
    r#"{"eventType":"SHUTDOWN","deadlineMs":1654470414327,"shutdownReason":"spindown"}"#;

/// The happy path: register, then INVOKE, then SHUTDOWN, then holds.
pub(crate) fn lifecycle_script() -> impl FnMut(&Recorded) -> Reply + Send + 'static {
    let mut nexts = 0;
    move |req: &Recorded| match req.path.as_str() {
        REGISTER_PATH => Reply::registered(),
        "/2020-01-01/extension/event/next" => {
            nexts += 1;
            match nexts {
                1 => Reply::json(200, INVOKE),
                2 => Reply::json(200, SHUTDOWN),
                _ => Reply::Hold,
            }
        }
        "/2020-01-01/extension/init/error" | "/2020-01-01/extension/exit/error" => {
            Reply::json(202, r#"{"status":"OK"}"#)
        }
        _ => Reply::json(
            404,
            r#"{"errorMessage":"not found","errorType":"NotFound"}"#,
        ),
    }
}

// Payloads in the shapes of AWS's Telemetry API schema reference (AWS:
// https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html),
// one of each kind an extension sees: platform init and invoke records,
// plain and JSON function logs, an extension log line, a drop report, and a
// type this version does not know.
pub(crate) const BATCH: &str = r#"[
 {"time":"2022-10-12T00:00:15.064Z","type":"platform.initStart","record":{"initializationType":"on-demand","phase":"init","runtimeVersion":"nodejs-14.v3","runtimeVersionArn":"arn:aws:lambda:us-east-1::runtime:1234567890abcdef"}},
 {"time":"2022-10-12T00:00:15.065Z","type":"extension","record":"[rust-example-extension] Registering..."},
 {"time":"2022-10-12T00:00:15.513Z","type":"platform.extension","record":{"name":"async-ext","state":"Ready","events":["INVOKE","SHUTDOWN"]}},
 {"time":"2022-10-12T00:01:15.000Z","type":"platform.start","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","version":"$LATEST","tracing":{"spanId":"54565fb41ac79632","type":"X-Amzn-Trace-Id","value":"Root=1-62e900b2-710d76f009d6e7785905449a;Parent=0efbd19962d95b05;Sampled=1"}}},
 {"time":"2022-10-12T00:01:15.100Z","type":"function","record":"2022-10-12T00:01:15.100Z\t6d68ca91-49c9-448d-89b8-7ca3e6dc66aa\tINFO\tHello world\n"},
 {"time":"2022-10-12T00:01:15.101Z","type":"function","record":{"timestamp":"2022-10-12T00:01:15.101Z","level":"INFO","requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","message":"Hello JSON"}},
 {"time":"2022-10-12T00:01:15.200Z","type":"platform.runtimeDone","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","status":"success","metrics":{"durationMs":140.0,"producedBytes":16},"spans":[{"name":"responseLatency","start":"2022-08-02T12:01:23.521Z","durationMs":23.02}]}},
 {"time":"2022-10-12T00:01:15.300Z","type":"platform.report","record":{"requestId":"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","status":"success","metrics":{"durationMs":140.0,"billedDurationMs":141,"memorySizeMB":128,"maxMemoryUsedMB":54,"initDurationMs":125.33}}},
 {"time":"2022-10-12T00:01:16.000Z","type":"platform.logsDropped","record":{"reason":"Consumer seems to have fallen behind as it has not acknowledged receipt of logs.","droppedRecords":123,"droppedBytes":12345}},
 {"time":"2022-10-12T00:01:17.000Z","type":"platform.somethingNew","record":{"x":1}}
]"#;

/// The expected event types of [`BATCH`], in order.
pub(crate) const BATCH_TYPES: [&str; 10] = [
    "platform.initStart",
    "extension",
    "platform.extension",
    "platform.start",
    "function",
    "function",
    "platform.runtimeDone",
    "platform.report",
    "platform.logsDropped",
    "platform.somethingNew",
];

/// `script` served under the base path `/.rt`, as `cargo lambda watch`
/// serves the APIs (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:9000/.rt`): a request
/// outside it gets a 404, one inside it is answered as `script` answers its
/// path without the prefix.
pub(crate) fn under_base_path(
    mut script: impl FnMut(&Recorded) -> Reply + Send + 'static,
) -> impl FnMut(&Recorded) -> Reply + Send + 'static {
    move |req: &Recorded| match req.path.strip_prefix(BASE_PATH) {
        Some(rest) if rest.starts_with('/') => script(&Recorded {
            path: rest.to_owned(),
            ..req.clone()
        }),
        _ => Reply::json(
            404,
            r#"{"errorMessage":"outside the base path","errorType":"NotFound"}"#,
        ),
    }
}

/// The base path of [`under_base_path`].
pub(crate) const BASE_PATH: &str = "/.rt";

/// A fake API that accepts the register request and answers every other
/// request with `rest`.
pub(crate) fn registered_then(rest: Reply) -> FakeApi {
    FakeApi::start(move |req: &Recorded| {
        if req.path == REGISTER_PATH {
            Reply::registered()
        } else {
            rest.clone()
        }
    })
}

/// A fake API that registers and answers telemetry subscriptions with
/// `status` and `body`; event polls are held.
pub(crate) fn telemetry_api(status: u16, body: &'static str) -> FakeApi {
    FakeApi::start(move |req: &Recorded| match req.path.as_str() {
        REGISTER_PATH => Reply::registered(),
        "/2022-07-01/telemetry" => Reply::json(status, body),
        _ => Reply::Hold,
    })
}

/// The telemetry subscription the fake API received, checked to be a `PUT`
/// with the extension's identifier; returns its JSON body.
pub(crate) fn subscription_request(api: &FakeApi) -> serde_json::Value {
    let put = api
        .requests()
        .into_iter()
        .find(|r| r.path == "/2022-07-01/telemetry")
        .expect("no telemetry subscription was received");
    assert_eq!(put.method, "PUT");
    assert_eq!(put.header("Lambda-Extension-Identifier"), Some(ID));
    serde_json::from_slice(&put.body).unwrap()
}
