//! Property test: no sequence of requests to any endpoint panics the server
//! or wedges the lifecycle. Requests are drawn from every API path (and
//! near misses), every method, the headers the APIs read (valid, invalid
//! and random values) and bodies from valid JSON to random bytes. After
//! each sequence the environment must still answer, and must still shut
//! down on request. The same under Lambda Managed Instances, with invokes
//! in flight (one of them `abc`, the id the runtime paths answer) whose
//! callers must all get an answer.

use std::sync::Arc;
use std::time::Duration;

use super::{function, FakeHost};
use crate::driver::{Engine, EngineConfig};
use crate::ports::NoTelemetry;
use crate::sink::Capture;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use tower::ServiceExt as _;

const PATHS: &[&str] = &[
    "/2020-01-01/extension/register",
    "/2020-01-01/extension/event/next",
    "/2020-01-01/extension/init/error",
    "/2020-01-01/extension/exit/error",
    "/2022-07-01/telemetry",
    "/2020-08-15/logs",
    "/2018-06-01/runtime/invocation/next",
    "/2018-06-01/runtime/init/error",
    "/2018-06-01/runtime/invocation/abc/response",
    "/2018-06-01/runtime/invocation/abc/error",
    "/2018-06-01/runtime/invocation//response",
    "/2018-06-01/runtime/invocation/%00%ff/error",
    "/2020-01-01/extension",
    "/",
    "/2018-06-01/runtime/invocation/next/extra",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

const HEADER_NAMES: &[&str] = &[
    "Lambda-Extension-Name",
    "Lambda-Extension-Identifier",
    "Lambda-Extension-Function-Error-Type",
    "Lambda-Extension-Accept-Feature",
    "Lambda-Runtime-Function-Error-Type",
    "Lambda-Runtime-Function-Response-Mode",
    "Content-Type",
];

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ext".to_owned()),
        Just("other".to_owned()),
        Just("accountId".to_owned()),
        Just("streaming".to_owned()),
        Just("00000000-0000-0000-0000-000000000001".to_owned()),
        Just(String::new()),
        "[ -~]{0,40}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(br#"{"events":["INVOKE","SHUTDOWN"]}"#.to_vec()),
        Just(br#"{"events":["SHUTDOWN"]}"#.to_vec()),
        Just(br#"{"events":["BOGUS"],"configurationKeys":["x"]}"#.to_vec()),
        Just(
            br#"{"schemaVersion":"2022-12-13","types":["platform"],"buffering":{"timeoutMs":25},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}"#
                .to_vec()
        ),
        Just(br#"{"schemaVersion":"2022-12-13","types":[],"destination":{"protocol":"TCP"}}"#.to_vec()),
        Just(b"null".to_vec()),
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::sample::select(METHODS),
        proptest::sample::select(PATHS),
        proptest::collection::vec(
            (proptest::sample::select(HEADER_NAMES), header_value()),
            0..4,
        ),
        body(),
    )
        .prop_map(|(method, path, headers, body)| Req {
            method,
            path,
            headers,
            body,
        })
}

async fn run_case(reqs: Vec<Req>, managed: bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut function = function();
    function.managed_instances = managed.then_some(4);
    let config = EngineConfig {
        function,
        extensions: vec!["ext".into()],
        freeze: !managed,
        queue: crate::driver::QueueLimit::default(),
        stream_rate_limit: true,
        tenant: None,
    };
    let sink = Arc::new(Capture::new());
    let sandbox = Engine::start(listener, config, FakeHost::default(), NoTelemetry, sink).unwrap();
    let router = sandbox.api_router();
    let invokes: Vec<_> = (0..3)
        .filter(|_| managed)
        .map(|i| {
            let handle = sandbox.handle();
            tokio::spawn(async move {
                let request = crate::invocation::InvokeRequest {
                    request_id: Some(if i == 0 {
                        "abc".into()
                    } else {
                        format!("id-{i}")
                    }),
                    ..crate::invocation::InvokeRequest::new("{}")
                };
                let _ = handle.invoke(request).await;
            })
        })
        .collect();
    for r in reqs {
        let mut builder = Request::builder().method(r.method).uri(r.path);
        for (k, v) in &r.headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(v) {
                builder = builder.header(*k, v);
            }
        }
        let Ok(req) = builder.body(Body::from(r.body.clone())) else {
            continue;
        };
        // Long polls may legitimately stay open; everything else answers
        // at once. A panic in a handler fails the test right here.
        let call = router.clone().oneshot(req);
        if let Ok(resp) = tokio::time::timeout(Duration::from_millis(50), call).await {
            let resp = resp.unwrap();
            let status = resp.status().as_u16();
            // (A Managed Instances environment may have stopped for good:
            // see the probe below.)
            let stopped = managed && sandbox.handle().wait_for(|_| true).await.stopped;
            assert!(
                status != 500 || stopped,
                "{r:?} got 500: the driver is gone"
            );
            let _ = resp.into_body().collect().await;
        }
    }
    // Still alive: a fresh internal registration is answered (200, or 403
    // once registration closed), never 500.
    let probe = Request::builder()
        .method("POST")
        .uri("/2020-01-01/extension/register")
        .header("Lambda-Extension-Name", "probe-x")
        .body(Body::from(r#"{"events":[]}"#))
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(2), router.clone().oneshot(probe))
        .await
        .expect("the driver answers")
        .unwrap()
        .status()
        .as_u16();
    // Managed Instances never reset: a failed Init (an extension that
    // asked for INVOKE, say) or a process exit stops the environment for
    // good, and a stopped environment's API answers 500.
    let stopped = sandbox.handle().wait_for(|_| true).await.stopped;
    assert!(
        status == 200 || status == 403 || (managed && stopped && status == 500),
        "probe answered {status}"
    );
    // And not wedged: it shuts down within the longest shutdown window.
    sandbox.handle().shutdown();
    tokio::time::timeout(Duration::from_secs(10), sandbox.wait())
        .await
        .expect("shutdown completes")
        .unwrap();
    // Every caller got an answer (or learnt that the environment stopped).
    for invoke in invokes {
        tokio::time::timeout(Duration::from_secs(2), invoke)
            .await
            .expect("every invoke is answered")
            .unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_sequence_panics_or_wedges(reqs in proptest::collection::vec(request(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_case(reqs, false));
    }

    #[test]
    fn no_request_sequence_panics_or_wedges_managed_instances(reqs in proptest::collection::vec(request(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_case(reqs, true));
    }
}
