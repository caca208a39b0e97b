//! Router tests without sockets: every refusal of the Extensions, Runtime
//! and Telemetry APIs (the error bodies of RIE `internal/lambda/rapi/handler/`
//! and AWS's API references), sent with `tower::ServiceExt::oneshot` to the
//! router of a real driver whose processes are fakes.

use std::sync::Arc;
use std::time::Duration;

use super::{function, FakeHost};
use crate::driver::{Engine, EngineConfig};
use crate::invocation::{InvokeRequest, InvokeResponse, InvokeResult};
use crate::ports::NoTelemetry;
use crate::sink::Capture;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

struct Env {
    sandbox: Engine,
    router: Router,
    capture: Arc<Capture>,
    tenant: Option<String>,
}

async fn env(extensions: &[&str]) -> Env {
    env_of(extensions, None).await
}

/// An environment of `tenant` (tenant isolation).
async fn env_of(extensions: &[&str], tenant: Option<&str>) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = EngineConfig {
        function: function(),
        extensions: extensions.iter().map(|s| s.to_string()).collect(),
        freeze: true,
        queue: crate::driver::QueueLimit::default(),
        stream_rate_limit: true,
        tenant: tenant.map(Arc::from),
    };
    let capture = Arc::new(Capture::new());
    let sink = capture.clone();
    let sandbox = match tenant {
        // The records reach the capture through a real hub.
        Some(_) => {
            let hub = crate::telemetry::Hub::new(Default::default(), capture.clone());
            Engine::start(listener, config, FakeHost::default(), hub, sink)
        }
        None => Engine::start(listener, config, FakeHost::default(), NoTelemetry, sink),
    }
    .unwrap();
    let router = sandbox.api_router();
    Env {
        sandbox,
        router,
        capture,
        tenant: tenant.map(str::to_owned),
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    /// Asserts an AWS error answer.
    fn error(&self, status: u16, error_type: &str, message: &str) {
        assert_eq!(self.status.as_u16(), status, "body {:?}", self.body);
        assert!(
            self.body.ends_with('\n'),
            "rapid bodies end with a newline: {:?}",
            self.body
        );
        let v = self.json();
        assert_eq!(v["errorType"], error_type, "{:?}", self.body);
        assert_eq!(v["errorMessage"], message, "{:?}", self.body);
    }
}

async fn send(
    router: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

const REGISTER: &str = "/2020-01-01/extension/register";
const NEXT: &str = "/2020-01-01/extension/event/next";
const INIT_ERROR: &str = "/2020-01-01/extension/init/error";
const EXIT_ERROR: &str = "/2020-01-01/extension/exit/error";
const RT_NEXT: &str = "/2018-06-01/runtime/invocation/next";
const TELEMETRY: &str = "/2022-07-01/telemetry";
const LOGS: &str = "/2020-08-15/logs";

async fn register(router: &Router, name: &str, events: &str) -> String {
    let a = send(
        router,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", name)],
        format!(r#"{{"events":{events}}}"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.headers["lambda-extension-identifier"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A long poll, in the background.
fn poll(
    router: &Router,
    method: &'static str,
    path: &'static str,
    id: Option<String>,
) -> tokio::task::JoinHandle<Answer> {
    let router = router.clone();
    tokio::spawn(async move {
        let headers: Vec<(&str, &str)> = match &id {
            Some(id) => vec![("Lambda-Extension-Identifier", id.as_str())],
            None => vec![],
        };
        send(&router, method, path, &headers, Body::empty()).await
    })
}

/// Lets the driver process what was sent.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn register_success_without_content_type_and_account_id() {
    let e = env(&["ext"]).await;
    let a = send(
        &e.router,
        "POST",
        REGISTER,
        &[
            ("Lambda-Extension-Name", "ext"),
            ("Lambda-Extension-Accept-Feature", " foo, accountId"),
        ],
        r#"{"events":["INVOKE","SHUTDOWN"]}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.headers["lambda-extension-identifier"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(
        a.json(),
        serde_json::json!({"functionName":"fn","functionVersion":"$LATEST","handler":"h","accountId":"123456789012"})
    );
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn register_refusals() {
    let e = env(&["ext", "ext2"]).await;
    let r = &e.router;
    send(r, "POST", REGISTER, &[], r#"{"events":[]}"#)
        .await
        .error(
            403,
            "Extension.InvalidExtensionName",
            "Empty extension name",
        );
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "")],
        r#"{"events":[]}"#,
    )
    .await
    .error(
        403,
        "Extension.InvalidExtensionName",
        "Empty extension name",
    );
    let a = send(r, "POST", REGISTER, &[("Lambda-Extension-Name", "ext")], "").await;
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["errorType"], "InvalidRequestFormat");
    let a = send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "ext")],
        "{not json",
    )
    .await;
    assert_eq!(a.json()["errorType"], "InvalidRequestFormat");
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "ext")],
        r#"{"events":[],"configurationKeys":["k"]}"#,
    )
    .await
    .error(
        403,
        "InvalidRequestFormat",
        "configurationKeys are deprecated; use environment variables instead",
    );
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "ext")],
        r#"{"events":["INVOKE","FOO"]}"#,
    )
    .await
    .error(
        403,
        "Extension.InvalidEventType",
        "FOO: ErrorInvalidEventType",
    );
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "inner")],
        r#"{"events":["SHUTDOWN"]}"#,
    )
    .await
    .error(
        403,
        "Extension.InvalidEventType",
        "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
    );
    register(r, "ext", r#"["INVOKE"]"#).await;
    send(r, "POST", REGISTER, &[("Lambda-Extension-Name", "ext")], r#"{"events":[]}"#)
        .await
        .error(
            403,
            "Extension.InvalidExtensionState",
            "State transition from Registered to Registered failed for extension ext. Error: State transition is not allowed",
        );
    register(r, "inner", r#"["INVOKE"]"#).await;
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "inner")],
        r#"{"events":[]}"#,
    )
    .await
    .error(
        403,
        "Extension.InvalidExtensionState",
        "Extension with this name already registered",
    );
    for i in 0..7 {
        register(r, &format!("internal{i}"), "[]").await;
    }
    // ext, ext2 (not yet registered), inner and 7 internals: 10 in all.
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "one-too-many")],
        r#"{"events":[]}"#,
    )
    .await
    .error(
        403,
        "Extension.TooManyExtensions",
        "Extension limit (10) reached",
    );
    register(r, "ext2", "[]").await;
    // The runtime's first /next closes registration.
    let _runtime = poll(r, "GET", RT_NEXT, None);
    settle().await;
    send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "late")],
        r#"{"events":["INVOKE"]}"#,
    )
    .await
    .error(
        403,
        "Extension.RegistrationClosed",
        "Extension registration closed already",
    );
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn identifier_refusals_on_every_endpoint() {
    let e = env(&["ext"]).await;
    let r = &e.router;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (method, path) in [
        ("GET", NEXT),
        ("POST", INIT_ERROR),
        ("POST", EXIT_ERROR),
        ("PUT", TELEMETRY),
        ("PUT", LOGS),
    ] {
        send(r, method, path, &[], "").await.error(
            403,
            "Extension.MissingExtensionIdentifier",
            "Missing Lambda-Extension-Identifier header",
        );
        send(
            r,
            method,
            path,
            &[("Lambda-Extension-Identifier", "not-a-uuid")],
            "",
        )
        .await
        .error(
            403,
            "Extension.InvalidExtensionIdentifier",
            "Invalid Lambda-Extension-Identifier",
        );
    }
    send(
        r,
        "GET",
        NEXT,
        &[("Lambda-Extension-Identifier", &unknown)],
        "",
    )
    .await
    .error(
        403,
        "Extension.UnknownExtensionIdentifier",
        &format!("Unknown extension {unknown}"),
    );
    let sub = r#"{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243"}}"#;
    send(
        r,
        "PUT",
        TELEMETRY,
        &[("Lambda-Extension-Identifier", &unknown)],
        sub,
    )
    .await
    .error(
        403,
        "Extension.UnknownExtensionIdentifier",
        &format!("Unknown extension {unknown}"),
    );
    for path in [INIT_ERROR, EXIT_ERROR] {
        send(
            r,
            "POST",
            path,
            &[
                ("Lambda-Extension-Identifier", &unknown),
                ("Lambda-Extension-Function-Error-Type", "Extension.X"),
            ],
            "",
        )
        .await
        .error(
            403,
            "Extension.UnknownExtensionIdentifier",
            "Unknown Lambda-Extension-Identifier",
        );
    }
    let id = register(r, "ext", r#"["INVOKE","SHUTDOWN"]"#).await;
    send(
        r,
        "POST",
        INIT_ERROR,
        &[("Lambda-Extension-Identifier", &id)],
        "",
    )
    .await
    .error(
        403,
        "Extension.MissingHeader",
        "Lambda-Extension-Function-Error-Type not found",
    );
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn extension_state_refusals_and_error_reports() {
    let e = env(&["a", "b"]).await;
    let r = &e.router;
    let a = register(r, "a", r#"["INVOKE","SHUTDOWN"]"#).await;
    let b = register(r, "b", r#"["INVOKE","SHUTDOWN"]"#).await;
    let _a_next = poll(r, "GET", NEXT, Some(a.clone()));
    settle().await;
    // A second concurrent next.
    send(r, "GET", NEXT, &[("Lambda-Extension-Identifier", &a)], "").await.error(
        403,
        "Extension.InvalidExtensionState",
        &format!("State transition from Ready to Ready failed for extension {a}. Error: State transition is not allowed"),
    );
    // init/error after the first next.
    let h: Vec<(&str, &str)> = vec![
        ("Lambda-Extension-Identifier", a.as_str()),
        ("Lambda-Extension-Function-Error-Type", "Extension.Bad"),
    ];
    send(r, "POST", INIT_ERROR, &h, "").await.error(
        403,
        "Extension.InvalidExtensionState",
        &format!("State transition from Ready to InitError failed for extension {a}. Error: State transition is not allowed"),
    );
    // b reports an init error: 202 {"status":"OK"}.
    let h: Vec<(&str, &str)> = vec![
        ("Lambda-Extension-Identifier", b.as_str()),
        ("Lambda-Extension-Function-Error-Type", "Extension.Bad"),
    ];
    let ok = send(
        r,
        "POST",
        INIT_ERROR,
        &h,
        r#"{"errorMessage":"m","errorType":"Extension.Bad"}"#,
    )
    .await;
    assert_eq!(ok.status, 202);
    assert_eq!(ok.body, "{\"status\":\"OK\"}\n");
    e.sandbox.handle().shutdown();
    let summary = e.sandbox.wait().await.unwrap();
    assert_eq!(summary.init_failures, 1);
}

#[tokio::test]
async fn exit_error_after_init_error_is_refused() {
    let e = env(&["a"]).await;
    let r = &e.router;
    let a = register(r, "a", r#"["INVOKE"]"#).await;
    let h: Vec<(&str, &str)> = vec![
        ("Lambda-Extension-Identifier", a.as_str()),
        ("Lambda-Extension-Function-Error-Type", "Extension.Bad"),
    ];
    assert_eq!(send(r, "POST", INIT_ERROR, &h, "").await.status, 202);
    // The reset gives the extension until the deadline to exit; meanwhile
    // its calls are refused by state.
    send(r, "POST", EXIT_ERROR, &h, "").await.error(
        403,
        "Extension.InvalidExtensionState",
        &format!("State transition from InitError to Exited failed for extension {a}. Error: State transition is not allowed"),
    );
    // A repeated init/error is a no-op.
    assert_eq!(send(r, "POST", INIT_ERROR, &h, "").await.status, 202);
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn subscriptions() {
    let e = env(&["ext"]).await;
    let r = &e.router;
    let id = register(r, "ext", r#"["INVOKE","SHUTDOWN"]"#).await;
    let h = [("Lambda-Extension-Identifier", id.as_str())];
    let bad = r#"{"schemaVersion":"2022-12-13","types":[],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243"}}"#;
    let a = send(r, "PUT", TELEMETRY, &h, bad).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["errorType"], "ValidationError");
    let a = send(r, "PUT", LOGS, &h, bad).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["errorType"], "Logs.ValidationError");
    let a = send(r, "PUT", TELEMETRY, &h, "garbage").await;
    assert_eq!(a.status, 400);
    let good = r#"{"schemaVersion":"2022-12-13","types":["platform","function"],"buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":100},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:4243"}}"#;
    let a = send(r, "PUT", TELEMETRY, &h, good).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "\"OK\"");
    // End of Init: runtime ready, the extension's next.
    let _rt = poll(r, "GET", RT_NEXT, None);
    let _next = poll(r, "GET", NEXT, Some(id.clone()));
    settle().await;
    send(r, "PUT", TELEMETRY, &h, good).await.error(
        403,
        "Telemetry.SubscriptionClosed",
        "Telemetry API subscription is closed already",
    );
    e.sandbox.handle().shutdown();
}

async fn init_runtime_only(r: &Router) -> tokio::task::JoinHandle<Answer> {
    let rt = poll(r, "GET", RT_NEXT, None);
    settle().await;
    rt
}

/// Starts an invoke in the background and waits until the runtime's
/// pending `/next` (`rt`) receives it; returns the invoke and its request id.
async fn invoke_to_runtime(
    e: &Env,
    rt: tokio::task::JoinHandle<Answer>,
) -> (tokio::task::JoinHandle<InvokeResponse>, String) {
    let handle = e.sandbox.handle();
    let invoke =
        tokio::spawn(async move { handle.invoke(InvokeRequest::default()).await.unwrap() });
    let next = rt.await.unwrap();
    let rid = next.headers["lambda-runtime-aws-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    if let Some(tenant) = &e.tenant {
        assert_eq!(
            next.headers["lambda-runtime-aws-tenant-id"],
            tenant.as_str()
        );
    }
    (invoke, rid)
}

/// An environment of one tenant gives the runtime its id on `/next` and
/// puts it on `platform.start`, `runtimeDone` and `report` (RIE
/// `internal/lambda/rapi/rendering/rendering.go`,
/// `internal/lambda/interop/events_api.go`).
#[tokio::test]
async fn a_tenants_environment_tells_its_tenant() {
    use lext_protocol::telemetry::Record;
    let e = env_of(&[], Some("blue")).await;
    let r = &e.router;
    let rt = init_runtime_only(r).await;
    let (invoke, rid) = invoke_to_runtime(&e, rt).await;
    let next = poll(r, "GET", RT_NEXT, None);
    send(
        r,
        "POST",
        &format!("/2018-06-01/runtime/invocation/{rid}/response"),
        &[],
        "{}",
    )
    .await;
    invoke.await.unwrap();
    e.sandbox.handle().wait_for(|p| p.quiet).await;
    next.abort();
    let tenants: Vec<(&str, Option<String>)> = e
        .capture
        .events()
        .iter()
        .filter_map(|event| match &event.record {
            Record::Start(s) => Some(("start", s.tenant_id.clone())),
            Record::RuntimeDone(d) => Some(("runtimeDone", d.tenant_id.clone())),
            Record::Report(p) => Some(("report", p.tenant_id.clone())),
            _ => None,
        })
        .collect();
    let blue = Some("blue".to_owned());
    assert_eq!(
        tenants,
        [
            ("start", blue.clone()),
            ("runtimeDone", blue.clone()),
            ("report", blue)
        ]
    );
}

#[tokio::test]
async fn runtime_api_refusals_and_invoke() {
    let e = env(&[]).await;
    let r = &e.router;
    let rt = init_runtime_only(r).await;
    send(r, "POST", "/2018-06-01/runtime/invocation/x/response", &[], "{}").await.error(
        403,
        "InvalidStateTransition",
        "State transition from Ready to InvocationResponse failed for runtime. Error: State transition is not allowed",
    );
    send(r, "POST", "/2018-06-01/runtime/init/error", &[], "").await.error(
        403,
        "InvalidStateTransition",
        "State transition from Ready to InitError failed for runtime. Error: State transition is not allowed",
    );
    let handle = e.sandbox.handle();
    let invoke = tokio::spawn(async move {
        handle
            .invoke(InvokeRequest {
                payload: "{\"k\":1}".into(),
                trace_id: Some("Root=1-abc".into()),
                client_context: Some(r#"{"custom":{"k":"v"}}"#.into()),
                tenant_id: None,
                request_id: None,
            })
            .await
            .unwrap()
    });
    let next = rt.await.unwrap();
    assert_eq!(next.status, 200);
    assert_eq!(next.body, "{\"k\":1}");
    let rid = next.headers["lambda-runtime-aws-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let deadline: u64 = next.headers["lambda-runtime-deadline-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(deadline > 1_600_000_000_000);
    assert_eq!(
        next.headers["lambda-runtime-invoked-function-arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:fn"
    );
    assert_eq!(next.headers["lambda-runtime-trace-id"], "Root=1-abc");
    assert_eq!(
        next.headers["lambda-runtime-client-context"],
        r#"{"custom":{"k":"v"}}"#
    );
    assert_eq!(next.headers["content-type"], "application/json");
    assert!(next.headers.get("lambda-runtime-aws-tenant-id").is_none());
    send(
        r,
        "POST",
        "/2018-06-01/runtime/invocation/wrong/response",
        &[],
        "{}",
    )
    .await
    .error(400, "InvalidRequestID", "Invalid request ID");
    send(
        r,
        "POST",
        &format!("/2018-06-01/runtime/invocation/{rid}/response"),
        &[("Lambda-Runtime-Function-Response-Mode", "sideways")],
        "{}",
    )
    .await
    .error(
        400,
        "InvalidFunctionResponseMode",
        "Invalid function response mode",
    );
    send(r, "GET", RT_NEXT, &[], "").await.error(
        403,
        "InvalidStateTransition",
        "State transition from Running to Ready failed for runtime. Error: State transition is not allowed",
    );
    let ok = send(
        r,
        "POST",
        &format!("/2018-06-01/runtime/invocation/{rid}/response"),
        &[("Content-Type", "text/plain")],
        "hello",
    )
    .await;
    assert_eq!(ok.status, 202);
    assert_eq!(ok.body, "{\"status\":\"OK\"}\n");
    let reply: InvokeResponse = invoke.await.unwrap();
    assert_eq!(reply.request_id, rid);
    assert_eq!(
        reply.result,
        InvokeResult::Response {
            body: "hello".into(),
            content_type: Some("text/plain".into())
        }
    );
    send(r, "POST", &format!("/2018-06-01/runtime/invocation/{rid}/response"), &[], "{}")
        .await
        .error(
            403,
            "InvalidStateTransition",
            "State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. Error: State transition is not allowed",
        );
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn oversized_response_is_413_and_the_caller_gets_the_platform_error() {
    let e = env(&[]).await;
    let r = &e.router;
    let rt = init_runtime_only(r).await;
    let (invoke, rid) = invoke_to_runtime(&e, rt).await;
    let big = vec![b'x'; lext_protocol::MAX_PAYLOAD_SIZE + 1];
    send(
        r,
        "POST",
        &format!("/2018-06-01/runtime/invocation/{rid}/response"),
        &[],
        big,
    )
    .await
    .error(
        413,
        "RequestEntityTooLarge",
        "Exceeded maximum allowed payload size (6291556 bytes).",
    );
    let reply = invoke.await.unwrap();
    assert_eq!(
        reply.result,
        InvokeResult::PlatformError {
            error_type: "Function.ResponseSizeTooLarge".into(),
            message: "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
                .into()
        }
    );
    // Exactly the limit is accepted on the next invoke.
    let rt = poll(r, "GET", RT_NEXT, None);
    let (invoke, rid) = invoke_to_runtime(&e, rt).await;
    let exact = vec![b'x'; lext_protocol::MAX_PAYLOAD_SIZE];
    let a = send(
        r,
        "POST",
        &format!("/2018-06-01/runtime/invocation/{rid}/response"),
        &[],
        exact,
    )
    .await;
    assert_eq!(a.status, 202);
    assert!(
        matches!(invoke.await.unwrap().result, InvokeResult::Response { body, .. } if body.len() == lext_protocol::MAX_PAYLOAD_SIZE)
    );
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn function_error_passes_the_body_through() {
    let e = env(&[]).await;
    let r = &e.router;
    let rt = init_runtime_only(r).await;
    let (invoke, rid) = invoke_to_runtime(&e, rt).await;
    send(
        r,
        "POST",
        "/2018-06-01/runtime/invocation/nope/error",
        &[],
        "{}",
    )
    .await
    .error(400, "InvalidRequestID", "Invalid request ID");
    let body = r#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}"#;
    let a = send(
        r,
        "POST",
        &format!("/2018-06-01/runtime/invocation/{rid}/error"),
        &[],
        body,
    )
    .await;
    assert_eq!(a.status, 202);
    assert_eq!(
        invoke.await.unwrap().result,
        InvokeResult::FunctionError { body: body.into() }
    );
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let e = env(&[]).await;
    let a = send(&e.router, "GET", "/2020-01-01/extension/nope", &[], "").await;
    assert_eq!(a.status, 404);
    e.sandbox.handle().shutdown();
}

// ----- The driver's timers, under paused tokio time ---------------------------

#[tokio::test(start_paused = true)]
async fn driver_times_the_invoke_out_after_the_function_timeout() {
    let e = env(&[]).await;
    let r = &e.router;
    let rt = init_runtime_only(r).await;
    let handle = e.sandbox.handle();
    let started = tokio::time::Instant::now();
    let invoke =
        tokio::spawn(async move { handle.invoke(InvokeRequest::default()).await.unwrap() });
    // The runtime takes the event and never answers.
    let next = rt.await.unwrap();
    assert_eq!(next.status, 200);
    let reply = invoke.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_millis(3100),
        "{elapsed:?}"
    );
    match reply.result {
        InvokeResult::PlatformError {
            error_type,
            message,
        } => {
            assert_eq!(error_type, "Sandbox.Timedout");
            assert!(
                message.ends_with("Error: Task timed out after 3.00 seconds"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    e.sandbox.handle().shutdown();
    let summary = e.sandbox.wait().await.unwrap();
    assert_eq!((summary.invokes, summary.resets), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn driver_enforces_the_init_limit_then_reinits_inside_the_invoke() {
    // "never" is launched but never registers.
    let e = env(&["never"]).await;
    let handle = e.sandbox.handle();
    let started = tokio::time::Instant::now();
    let reply = handle.invoke(InvokeRequest::default()).await.unwrap();
    let elapsed = started.elapsed();
    // 10 s of Init, a reset, then the re-run inside the invoke, bounded by
    // the 3 s function timeout.
    assert!(
        elapsed >= Duration::from_secs(13) && elapsed < Duration::from_millis(13_200),
        "{elapsed:?}"
    );
    assert!(
        matches!(&reply.result, InvokeResult::PlatformError { error_type, .. } if error_type == "Sandbox.Timedout"),
        "{reply:?}"
    );
    handle.shutdown();
    let summary = e.sandbox.wait().await.unwrap();
    assert_eq!(summary.init_failures, 2);
}

// ----- Bodies and ids rapid reads differently from serde -------------------

#[tokio::test]
async fn register_bodies_as_go_unmarshals_them() {
    let e = env(&["ext", "ext2"]).await;
    let r = &e.router;
    for (body, kind) in [
        ("[]", "array"),
        ("\"x\"", "string"),
        ("1", "number"),
        ("true", "bool"),
    ] {
        send(
            r,
            "POST",
            REGISTER,
            &[("Lambda-Extension-Name", "ext")],
            body,
        )
        .await
        .error(
            403,
            "InvalidRequestFormat",
            &format!("json: cannot unmarshal {kind} into Go value of type handler.RegisterRequest"),
        );
    }
    // `null` leaves Go's struct empty: a registration for no events.
    let a = send(
        r,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "ext")],
        "null",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn an_unknown_subscriber_is_refused_before_its_body_is_read() {
    let e = env(&["ext"]).await;
    let r = &e.router;
    let unknown = "3f1c3f7e-0000-4000-8000-000000000000";
    for (path, body) in [(TELEMETRY, "not json"), (LOGS, r#"{"types":["platform"]}"#)] {
        let a = send(
            r,
            "PUT",
            path,
            &[("Lambda-Extension-Identifier", unknown)],
            body,
        )
        .await;
        a.error(
            403,
            "Extension.UnknownExtensionIdentifier",
            &format!("Unknown extension {unknown}"),
        );
    }
    e.sandbox.handle().shutdown();
}

#[tokio::test]
async fn a_request_id_that_is_not_utf8_is_an_invalid_request_id() {
    let e = env(&[]).await;
    for path in [
        "/2018-06-01/runtime/invocation/%ff%fe/response",
        "/2018-06-01/runtime/invocation/%ff%fe/error",
    ] {
        send(&e.router, "POST", path, &[], "{}").await.error(
            400,
            "InvalidRequestID",
            "Invalid request ID",
        );
    }
    e.sandbox.handle().shutdown();
}
