//! The HTTP server of `AWS_LAMBDA_RUNTIME_API`: Runtime, Extensions,
//! Telemetry and Logs APIs on one listener.
//!
//! Handlers are thin: each parses headers and body into the lifecycle's
//! [`Input`], refusing malformed input with the exact status, `errorType`
//! and message AWS uses (rapid's handlers in RIE `internal/lambda/rapi/handler/`),
//! sends it to the driver, and renders the driver's [`ApiReply`]. A refusal
//! renders itself ([`Refusal`] is `IntoResponse`), so handlers use `?`. All
//! state lives in the driver's [`Lifecycle`](crate::lifecycle::Lifecycle);
//! a long poll (`/event/next`, `/invocation/next`) is simply a reply that
//! comes later.
//! No header is required that AWS does not require: in particular
//! `Content-Type` never is, since AWS's own Go sample registers without one.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use lext_protocol::error::StatusResponse;
use lext_protocol::extensions::{
    self as ext, EventType, NextEvent, RegisterRequest, RegisterResponse,
};
use lext_protocol::runtime as rt;
use lext_protocol::telemetry::{Api, SubscribeRequest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::lifecycle::{ExtensionId, Input, Refusal};

/// The metadata of an invocation, as the runtime's `/next` headers carry it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Invocation-Id`.
    pub invocation_id: String,
    /// `Lambda-Runtime-Deadline-Ms`.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub invoked_function_arn: String,
    /// `Lambda-Runtime-Trace-Id`.
    pub trace_id: Option<String>,
    /// `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    /// `Lambda-Runtime-Aws-Tenant-Id`, for an environment of one tenant.
    pub tenant_id: Option<Arc<str>>,
    /// The raw payload.
    pub payload: Bytes,
}

/// The driver's answer to an API call.
#[derive(Debug)]
pub(crate) enum ApiReply {
    /// 200 to register, with the identifier header.
    Registered {
        /// The new identifier.
        id: ExtensionId,
        /// The body.
        response: RegisterResponse,
    },
    /// 200 to `/event/next`.
    Event(NextEvent),
    /// 200 to `/invocation/next`.
    Invocation(Invocation),
    /// 202 `{"status":"OK"}`.
    Accepted,
    /// 200 `"OK"` to a subscription.
    Subscribed,
    /// The refusal, rendered as AWS does.
    Refused(Refusal),
    /// A streamed response may start: where its bytes go. Never rendered;
    /// the handler forwards the body, then ends the stream.
    Stream(crate::stream::StreamSink),
}

/// What the router sends to the driver: a request and where to answer.
pub(crate) type ApiCall = (Input, oneshot::Sender<ApiReply>);

/// Builds the router of the Runtime, Extensions, Telemetry and Logs APIs.
/// Requests go to `driver`. Without `logs_api` (Lambda Managed Instances)
/// the Logs API path is not served: it answers 404, as in RIE's Managed
/// Instances core (`internal/lambda-managed-instances/rapi/router.go` has
/// no logs route).
pub(crate) fn router(driver: mpsc::Sender<ApiCall>, logs_api: bool) -> Router {
    let router = Router::new();
    let router = match logs_api {
        true => router.route(lext_protocol::telemetry::LOGS_PATH, put(logs_subscribe)),
        false => router,
    };
    router
        .route(ext::REGISTER_PATH, post(register))
        .route(ext::NEXT_EVENT_PATH, get(extension_next))
        .route(ext::INIT_ERROR_PATH, post(extension_init_error))
        .route(ext::EXIT_ERROR_PATH, post(extension_exit_error))
        .route(
            lext_protocol::telemetry::TELEMETRY_PATH,
            put(telemetry_subscribe),
        )
        .route(rt::NEXT_INVOCATION_PATH, get(runtime_next))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(runtime_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(runtime_error),
        )
        .route(rt::INIT_ERROR_PATH, post(runtime_init_error))
        .with_state(driver)
}

/// Serves `router` on an already bound `listener` until `shutdown`
/// completes (style practice 5: binding is the caller's, so a port clash is
/// an error returned to it, never a panic in a task).
///
/// Connections are served by hyper's HTTP/1 builder with title-case header
/// names, as Lambda's Go server writes them (`Lambda-Extension-Identifier`,
/// `Lambda-Runtime-Aws-Request-Id`): a client that looks headers up
/// case-sensitively works here as it does in Lambda. `TCP_NODELAY` is set,
/// since every answer is one small write on a latency-bound path.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(connection_limit()));
    let mut accept_errors = RateLimited::default();
    loop {
        // A free slot first: past the limit, new connections wait in the
        // kernel's backlog instead of taking the descriptors every process
        // of the environment shares.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving,
                    // and say so at most once a second.
                    accept_errors.warn(&e);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .title_case_headers(true)
                // A client that opens a connection and sends no complete
                // request head within this time is hung up on: idle
                // connections cannot pile up (slowloris). Long polls are
                // not affected: their request head is read at once, and
                // the answer may take as long as it takes.
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many connections one listener serves at once: a quarter of the
/// file descriptors lext may open (two listeners, the processes' pipes and
/// the telemetry connections share them), between 16 and 4,096.
fn connection_limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(4 * 4096);
    usize::try_from(soft / 4).unwrap_or(4096).clamp(16, 4096)
}

/// A warning printed at most once a second, with the count of those held
/// back in between.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl RateLimited {
    fn warn(&mut self, error: &io::Error) {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < std::time::Duration::from_secs(1))
        {
            self.held_back += 1;
            return;
        }
        tracing::warn!(error = %error, more = self.held_back, "accept failed (and `more` times since the last warning)");
        self.last = Some(now);
        self.held_back = 0;
    }
}

type Driver = State<mpsc::Sender<ApiCall>>;

/// Sends a call to the driver and renders its reply. A driver that is gone
/// (the environment stopped) is a 500, as rapid answers when it cannot
/// serve.
async fn call(driver: &mpsc::Sender<ApiCall>, input: Input) -> Response {
    let (tx, rx) = oneshot::channel();
    if driver.send((input, tx)).await.is_err() {
        return Refusal::Internal.into_response();
    }
    match rx.await {
        Ok(reply) => render(reply),
        Err(_) => Refusal::Internal.into_response(),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for Refusal {
    /// Its status and `{"errorMessage","errorType"}\n`, as rapid writes it.
    fn into_response(self) -> Response {
        tracing::debug!(error_type = self.error_type(), message = %self, "refused");
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, self.to_response().to_body())
    }
}

fn render(reply: ApiReply) -> Response {
    match reply {
        ApiReply::Refused(r) => r.into_response(),
        // Only the streaming handler asks for this, and it does not render
        // it.
        ApiReply::Stream(_) => Refusal::Internal.into_response(),
        ApiReply::Accepted => {
            // Go's json.Encoder, like every rapid body, ends with a newline.
            let mut body = serde_json::to_vec(&StatusResponse::ok()).unwrap_or_default();
            body.push(b'\n');
            json_response(StatusCode::ACCEPTED, body)
        }
        ApiReply::Subscribed => json_response(StatusCode::OK, b"\"OK\"".to_vec()),
        ApiReply::Registered { id, response } => {
            let body = serde_json::to_vec(&response).unwrap_or_default();
            let mut r = json_response(StatusCode::OK, body);
            if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
                r.headers_mut().insert(ext::HEADER_EXTENSION_IDENTIFIER, v);
            }
            r
        }
        ApiReply::Event(event) => {
            let invoke = matches!(event, NextEvent::Invoke(_));
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let mut r = json_response(StatusCode::OK, body);
            if invoke {
                // RIE sets a fresh event identifier on INVOKE events.
                if let Ok(v) = HeaderValue::from_str(&crate::ids::uuid().to_string()) {
                    r.headers_mut().insert(ext::HEADER_EVENT_IDENTIFIER, v);
                }
            }
            r
        }
        ApiReply::Invocation(inv) => {
            let mut r = (StatusCode::OK, Body::from(inv.payload)).into_response();
            let h = r.headers_mut();
            let mut set = |name: &'static str, value: &str| {
                // Each header only when non-empty, as rapid does.
                if value.is_empty() {
                    return;
                }
                if let Ok(v) = HeaderValue::from_str(value) {
                    h.insert(name, v);
                }
            };
            set(rt::HEADER_REQUEST_ID, &inv.request_id);
            set(rt::HEADER_INVOCATION_ID, &inv.invocation_id);
            set(rt::HEADER_DEADLINE_MS, &inv.deadline_ms.to_string());
            set(rt::HEADER_INVOKED_FUNCTION_ARN, &inv.invoked_function_arn);
            set(rt::HEADER_TRACE_ID, inv.trace_id.as_deref().unwrap_or(""));
            set(
                rt::HEADER_CLIENT_CONTEXT,
                inv.client_context.as_deref().unwrap_or(""),
            );
            set(rt::HEADER_TENANT_ID, inv.tenant_id.as_deref().unwrap_or(""));
            set("content-type", "application/json");
            r
        }
    }
}

/// How much of a body past its limit is read and thrown away, so that the
/// client gets its 413 instead of a reset connection.
const DRAIN_LIMIT: usize = 256 * 1024 * 1024;

/// The body, read up to `limit` bytes. `Ok(None)` when it is longer.
///
/// The rest of a body that is too long is read and discarded (up to
/// [`DRAIN_LIMIT`] more): a server that answers before the client has sent
/// its body, and closes, makes the client's write fail with a broken pipe.
/// A runtime that posts a 64 MiB response would then crash, and its REPORT
/// would say `Runtime.ExitError` where the caller got
/// `Function.ResponseSizeTooLarge`. Read to the end, it gets the 413 as
/// RIE's runtime does (`internal/lambda/rapi/handler/invocationresponse.go`)
/// and carries on.
async fn read_body(mut body: Body, limit: usize) -> Result<Option<Bytes>, Refusal> {
    // One chunk (the usual case) is kept as it came, without a copy.
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        // An error is the client going away mid-body.
        let Ok(data) = frame.map_err(|_| Refusal::Truncated)?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            first = None;
            more = Vec::new();
            if total - limit > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        match first.take() {
            None if more.is_empty() => first = Some(data),
            None => more.extend_from_slice(&data),
            Some(head) => {
                more.reserve(head.len() + data.len());
                more.extend_from_slice(&head);
                more.extend_from_slice(&data);
            }
        }
    }
    if total > limit {
        return Ok(None);
    }
    Ok(Some(first.unwrap_or_else(|| Bytes::from(more))))
}

/// Small bodies (register, errors, subscriptions): anything over the
/// payload limit is refused like an unreadable request.
async fn small_body(body: Body) -> Result<Bytes, Refusal> {
    match read_body(body, lext_protocol::MAX_PAYLOAD_SIZE).await? {
        Some(b) => Ok(b),
        None => Err(Refusal::PayloadTooLarge),
    }
}

/// The `Lambda-Runtime-Invocation-Id` a runtime echoed, if any.
fn echoed_invocation_id(headers: &HeaderMap) -> Option<String> {
    header_str(headers, rt::HEADER_INVOCATION_ID).map(str::to_owned)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Lambda-Extension-Identifier`: missing, not a UUID, or an id.
fn identifier(headers: &HeaderMap) -> Result<ExtensionId, Refusal> {
    let raw = headers
        .get(ext::HEADER_EXTENSION_IDENTIFIER)
        .ok_or(Refusal::MissingIdentifier)?;
    let text = raw.to_str().map_err(|_| Refusal::InvalidIdentifier)?;
    uuid::Uuid::parse_str(text.trim())
        .map(ExtensionId)
        .map_err(|_| Refusal::InvalidIdentifier)
}

/// The request id of `/invocation/{id}/…`. One that is not UTF-8 once
/// percent-decoded cannot be the current invocation's: rapid's answer to
/// any id but the current one (RIE `internal/lambda/rapi/middleware/middleware.go`,
/// `AwsRequestIDValidator`), rather than axum's plain-text 400.
fn invocation_id(path: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    path.map(|Path(id)| id)
        .map_err(|_| Refusal::InvalidRequestId)
}

/// What every handler returns: the driver's answer, or a refusal of
/// malformed input made before the driver sees it.
type Answer = Result<Response, Refusal>;

/// The register body, read as rapid reads it: Go's `json.Unmarshal` into
/// a struct (RIE `internal/lambda/rapi/handler/agentregister.go`
/// `parseRegister`). An empty body is not JSON and is refused; `null`
/// leaves the struct empty and is accepted; an array, string, number or
/// boolean is refused with Go's message.
fn register_request(body: &[u8]) -> Result<RegisterRequest, Refusal> {
    let bad = |e: serde_json::Error| Refusal::InvalidRequestFormat(e.to_string());
    let value: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
    let kind = match &value {
        serde_json::Value::Null => return Ok(RegisterRequest::default()),
        serde_json::Value::Object(_) => return serde_json::from_value(value).map_err(bad),
        serde_json::Value::Array(_) => "array",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::Bool(_) => "bool",
    };
    Err(Refusal::InvalidRequestFormat(format!(
        "json: cannot unmarshal {kind} into Go value of type handler.RegisterRequest"
    )))
}

async fn register(State(driver): Driver, headers: HeaderMap, body: Body) -> Answer {
    let name = header_str(&headers, ext::HEADER_EXTENSION_NAME)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(Refusal::EmptyExtensionName)?
        .to_owned();
    let body = small_body(body).await?;
    let request = register_request(&body)?;
    if !request.configuration_keys.is_empty() {
        return Err(Refusal::ConfigurationKeys);
    }
    if let Some(EventType::Other(bad)) = request
        .events
        .iter()
        .find(|e| matches!(e, EventType::Other(_)))
    {
        return Err(Refusal::InvalidEventType(bad.clone()));
    }
    let account_id = header_str(&headers, ext::HEADER_ACCEPT_FEATURE)
        .is_some_and(|v| v.split(',').any(|f| f.trim() == ext::FEATURE_ACCOUNT_ID));
    let input = Input::Register {
        id: ExtensionId(crate::ids::uuid()),
        name,
        events: request.events,
        account_id,
    };
    Ok(call(&driver, input).await)
}

async fn extension_next(State(driver): Driver, headers: HeaderMap) -> Answer {
    let id = identifier(&headers)?;
    Ok(call(&driver, Input::ExtensionNext { id }).await)
}

/// `init/error` and `exit/error`: the identifier, then the error type
/// header; the body is optional and, as in RIE, not interpreted (it is read
/// so that the connection can be reused).
async fn extension_error(
    headers: &HeaderMap,
    body: Body,
) -> Result<(ExtensionId, String), Refusal> {
    let id = identifier(headers)?;
    let error_type = header_str(headers, ext::HEADER_FUNCTION_ERROR_TYPE)
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::MissingErrorType)?
        .to_owned();
    small_body(body).await?;
    Ok((id, error_type))
}

async fn extension_init_error(State(driver): Driver, headers: HeaderMap, body: Body) -> Answer {
    let (id, error_type) = extension_error(&headers, body).await?;
    Ok(call(&driver, Input::ExtensionInitError { id, error_type }).await)
}

async fn extension_exit_error(State(driver): Driver, headers: HeaderMap, body: Body) -> Answer {
    let (id, error_type) = extension_error(&headers, body).await?;
    Ok(call(&driver, Input::ExtensionExitError { id, error_type }).await)
}

async fn subscribe(
    driver: &mpsc::Sender<ApiCall>,
    headers: &HeaderMap,
    body: Body,
    api: Api,
) -> Answer {
    let id = identifier(headers)?;
    let body = small_body(body).await?;
    // A bad body is refused by the lifecycle, after it has looked the
    // caller up: an unknown identifier is a 403 whatever the body.
    let request = serde_json::from_slice::<SubscribeRequest>(&body)
        .map_err(|e| e.to_string())
        .and_then(|request| match request.validate(api) {
            Ok(()) => Ok(Box::new(request)),
            Err(e) => Err(e.0),
        });
    let input = Input::Subscribe { id, api, request };
    Ok(call(driver, input).await)
}

async fn telemetry_subscribe(State(driver): Driver, headers: HeaderMap, body: Body) -> Answer {
    subscribe(&driver, &headers, body, Api::Telemetry).await
}

async fn logs_subscribe(State(driver): Driver, headers: HeaderMap, body: Body) -> Answer {
    subscribe(&driver, &headers, body, Api::Logs).await
}

async fn runtime_next(State(driver): Driver) -> Response {
    call(&driver, Input::RuntimeNext).await
}

async fn runtime_response(
    State(driver): Driver,
    request_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let request_id = invocation_id(request_id)?;
    let content_type = header_str(&headers, header::CONTENT_TYPE.as_str()).map(str::to_owned);
    if let Some(mode) = headers.get(rt::HEADER_RESPONSE_MODE) {
        // `streaming` is forwarded as it comes; any other value is refused
        // as rapid does.
        if !mode
            .as_bytes()
            .eq_ignore_ascii_case(rt::RESPONSE_MODE_STREAMING.as_bytes())
        {
            return Err(Refusal::InvalidResponseMode);
        }
        return runtime_stream(&driver, request_id, &headers, content_type, body).await;
    }
    let (body, too_large) = match read_body(body, lext_protocol::MAX_PAYLOAD_SIZE).await? {
        Some(b) => (b, false),
        None => (Bytes::new(), true),
    };
    let input = Input::RuntimeResponse {
        request_id,
        invocation_id: echoed_invocation_id(&headers),
        body,
        content_type,
        too_large,
    };
    Ok(call(&driver, input).await)
}

/// A streamed response (`Lambda-Runtime-Function-Response-Mode:
/// streaming`): the lifecycle accepts it (or refuses it as any response),
/// the body goes to the caller chunk by chunk through a bounded channel,
/// and once it has ended, with its trailers, the lifecycle hears of its
/// end and the runtime gets its answer (202, or 413 past the limit). The
/// body is never held whole.
async fn runtime_stream(
    driver: &mpsc::Sender<ApiCall>,
    request_id: String,
    headers: &HeaderMap,
    content_type: Option<String>,
    body: Body,
) -> Answer {
    let start = Input::RuntimeStreamStart {
        request_id: request_id.clone(),
        invocation_id: echoed_invocation_id(headers),
        content_type,
    };
    let (tx, rx) = oneshot::channel();
    if driver.send((start, tx)).await.is_err() {
        return Err(Refusal::Internal);
    }
    let sink = match rx.await {
        Ok(ApiReply::Stream(sink)) => sink,
        Ok(other) => {
            // Refused (not the current invoke, out of turn): the body is
            // read and thrown away first (up to DRAIN_LIMIT), so that the
            // runtime gets the answer rather than a broken pipe.
            let _ = read_body(body, 0).await;
            return Ok(render(other));
        }
        Err(_) => return Err(Refusal::Internal),
    };
    // A body that broke off: the runtime went away, and its exit (or the
    // timeout) ends the invoke.
    let forwarded = sink.forward(body).await.ok_or(Refusal::Truncated)?;
    let end = Input::RuntimeStreamEnd {
        request_id,
        error_type: forwarded.error_type,
        too_large: forwarded.too_large,
        produced_bytes: forwarded.produced,
    };
    Ok(call(driver, end).await)
}

async fn runtime_error(
    State(driver): Driver,
    request_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let request_id = invocation_id(request_id)?;
    let error_type = header_str(&headers, rt::HEADER_FUNCTION_ERROR_TYPE).map(str::to_owned);
    let body = small_body(body).await?;
    let input = Input::RuntimeError {
        request_id,
        invocation_id: echoed_invocation_id(&headers),
        error_type,
        body,
    };
    Ok(call(&driver, input).await)
}

async fn runtime_init_error(State(driver): Driver, headers: HeaderMap, body: Body) -> Answer {
    let error_type = header_str(&headers, rt::HEADER_FUNCTION_ERROR_TYPE).map(str::to_owned);
    small_body(body).await?;
    Ok(call(&driver, Input::RuntimeInitError { error_type }).await)
}
