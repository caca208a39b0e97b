//! The HTTP server of `AWS_LAMBDA_RUNTIME_API`: Runtime, Extensions,
//! Telemetry and Logs APIs on one listener.
//!
//! Handlers are thin (style practice 4): each parses headers and body into
//! an [`ApiRequest`], refusing malformed input with the exact status,
//! `errorType` and message AWS uses (contract 1.3, 2.2, 3.1), sends it to
//! the driver, and renders the driver's [`ApiReply`]. All state lives in the
//! driver's [`Lifecycle`](crate::lifecycle::Lifecycle); a long poll
//! (`/event/next`, `/invocation/next`) is simply a reply that comes later.
//! No header is required that AWS does not require: in particular
//! `Content-Type` never is, since AWS's own Go sample registers without one.

use std::future::Future;
use std::io;

use axum::body::Body;
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
use tokio::sync::{mpsc, oneshot};

use crate::lifecycle::ExtensionId;
use crate::refusal::Refusal;

/// A parsed, well-formed API call, for the driver.
#[derive(Debug)]
pub enum ApiRequest {
    /// `POST /extension/register`.
    Register {
        /// `Lambda-Extension-Name`.
        name: String,
        /// The events (INVOKE/SHUTDOWN only).
        events: Vec<EventType>,
        /// `Lambda-Extension-Accept-Feature` contains `accountId`.
        account_id: bool,
    },
    /// `GET /extension/event/next`.
    ExtensionNext {
        /// The caller.
        id: ExtensionId,
    },
    /// `POST /extension/init/error` or `/exit/error`.
    ExtensionError {
        /// The caller.
        id: ExtensionId,
        /// `init/error` (true) or `exit/error`.
        init: bool,
        /// `Lambda-Extension-Function-Error-Type`.
        error_type: String,
    },
    /// `PUT /telemetry` or `PUT /logs`, validated.
    Subscribe {
        /// The caller.
        id: ExtensionId,
        /// Which API.
        api: Api,
        /// The request.
        request: Box<SubscribeRequest>,
    },
    /// `GET /runtime/invocation/next`.
    RuntimeNext,
    /// `POST /runtime/invocation/{id}/response`.
    RuntimeResponse {
        /// The id in the path.
        request_id: String,
        /// The body (empty when too large).
        body: Bytes,
        /// Its content type, passed on to the caller.
        content_type: Option<HeaderValue>,
        /// The body was over the payload limit.
        too_large: bool,
    },
    /// `POST /runtime/invocation/{id}/error`.
    RuntimeError {
        /// The id in the path.
        request_id: String,
        /// `Lambda-Runtime-Function-Error-Type`.
        error_type: Option<String>,
        /// The body, passed on to the caller unchanged.
        body: Bytes,
    },
    /// `POST /runtime/init/error`.
    RuntimeInitError {
        /// `Lambda-Runtime-Function-Error-Type`.
        error_type: Option<String>,
    },
}

/// The metadata of an invocation, as the runtime's `/next` headers carry it.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Deadline-Ms`.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub invoked_function_arn: String,
    /// `Lambda-Runtime-Trace-Id`.
    pub trace_id: Option<String>,
    /// `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    /// The raw payload.
    pub payload: Bytes,
}

/// The driver's answer to an [`ApiRequest`].
#[derive(Debug)]
pub enum ApiReply {
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
}

/// What the router sends to the driver: a request and where to answer.
pub type ApiCall = (ApiRequest, oneshot::Sender<ApiReply>);

/// Builds the router of the Runtime, Extensions, Telemetry and Logs APIs.
/// Requests go to `driver`.
pub fn router(driver: mpsc::Sender<ApiCall>) -> Router {
    Router::new()
        .route(ext::REGISTER_PATH, post(register))
        .route(ext::NEXT_EVENT_PATH, get(extension_next))
        .route(ext::INIT_ERROR_PATH, post(extension_init_error))
        .route(ext::EXIT_ERROR_PATH, post(extension_exit_error))
        .route(
            lext_protocol::telemetry::TELEMETRY_PATH,
            put(telemetry_subscribe),
        )
        .route(lext_protocol::telemetry::LOGS_PATH, put(logs_subscribe))
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
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %e, "accept failed");
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
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

type Driver = State<mpsc::Sender<ApiCall>>;

/// Sends a request to the driver and renders its reply. A driver that is
/// gone (the environment stopped) is a 500, as rapid answers when it cannot
/// serve.
async fn call(driver: &mpsc::Sender<ApiCall>, request: ApiRequest) -> Response {
    let (tx, rx) = oneshot::channel();
    if driver.send((request, tx)).await.is_err() {
        return refused(Refusal::Internal);
    }
    match rx.await {
        Ok(reply) => render(reply),
        Err(_) => refused(Refusal::Internal),
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

/// Renders a refusal: its status and `{"errorMessage","errorType"}\n`.
pub fn refused(refusal: Refusal) -> Response {
    tracing::debug!(error_type = refusal.error_type(), message = %refusal, "refused");
    let status =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, refusal.to_response().to_body())
}

fn render(reply: ApiReply) -> Response {
    match reply {
        ApiReply::Refused(r) => refused(r),
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
            set(rt::HEADER_DEADLINE_MS, &inv.deadline_ms.to_string());
            set(rt::HEADER_INVOKED_FUNCTION_ARN, &inv.invoked_function_arn);
            set(rt::HEADER_TRACE_ID, inv.trace_id.as_deref().unwrap_or(""));
            set(
                rt::HEADER_CLIENT_CONTEXT,
                inv.client_context.as_deref().unwrap_or(""),
            );
            set("content-type", "application/json");
            r
        }
    }
}

/// The body, read up to `limit` bytes. `Ok(None)` when it is longer.
async fn read_body(body: Body, limit: usize) -> Result<Option<Bytes>, Refusal> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(None),
        // The client went away mid-body.
        Err(_) => Err(Refusal::Truncated),
    }
}

/// Small bodies (register, errors, subscriptions): anything over the
/// payload limit is refused like an unreadable request.
async fn small_body(body: Body) -> Result<Bytes, Refusal> {
    match read_body(body, lext_protocol::MAX_PAYLOAD_SIZE).await? {
        Some(b) => Ok(b),
        None => Err(Refusal::PayloadTooLarge),
    }
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

async fn register(State(driver): Driver, headers: HeaderMap, body: Body) -> Response {
    let parsed = async {
        let name = header_str(&headers, ext::HEADER_EXTENSION_NAME)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or(Refusal::EmptyExtensionName)?
            .to_owned();
        let body = small_body(body).await?;
        // An empty body is not JSON: rapid refuses it too.
        let request: RegisterRequest = serde_json::from_slice(&body)
            .map_err(|e| Refusal::InvalidRequestFormat(e.to_string()))?;
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
        Ok(ApiRequest::Register {
            name,
            events: request.events,
            account_id,
        })
    }
    .await;
    match parsed {
        Ok(request) => call(&driver, request).await,
        Err(r) => refused(r),
    }
}

async fn extension_next(State(driver): Driver, headers: HeaderMap) -> Response {
    match identifier(&headers) {
        Ok(id) => call(&driver, ApiRequest::ExtensionNext { id }).await,
        Err(r) => refused(r),
    }
}

async fn extension_error(
    driver: &mpsc::Sender<ApiCall>,
    headers: &HeaderMap,
    body: Body,
    init: bool,
) -> Response {
    let id = match identifier(headers) {
        Ok(id) => id,
        Err(r) => return refused(r),
    };
    let Some(error_type) =
        header_str(headers, ext::HEADER_FUNCTION_ERROR_TYPE).filter(|t| !t.is_empty())
    else {
        return refused(Refusal::MissingErrorType);
    };
    let error_type = error_type.to_owned();
    // The body is optional and, as in RIE, not interpreted; read it so that
    // the connection can be reused.
    if let Err(r) = small_body(body).await {
        return refused(r);
    }
    call(
        driver,
        ApiRequest::ExtensionError {
            id,
            init,
            error_type,
        },
    )
    .await
}

async fn extension_init_error(State(driver): Driver, headers: HeaderMap, body: Body) -> Response {
    extension_error(&driver, &headers, body, true).await
}

async fn extension_exit_error(State(driver): Driver, headers: HeaderMap, body: Body) -> Response {
    extension_error(&driver, &headers, body, false).await
}

async fn subscribe(
    driver: &mpsc::Sender<ApiCall>,
    headers: &HeaderMap,
    body: Body,
    api: Api,
) -> Response {
    let id = match identifier(headers) {
        Ok(id) => id,
        Err(r) => return refused(r),
    };
    let body = match small_body(body).await {
        Ok(b) => b,
        Err(r) => return refused(r),
    };
    let request: SubscribeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refused(Refusal::Validation {
                api,
                message: e.to_string(),
            })
        }
    };
    if let Err(e) = request.validate(api) {
        return refused(Refusal::Validation { api, message: e.0 });
    }
    call(
        driver,
        ApiRequest::Subscribe {
            id,
            api,
            request: Box::new(request),
        },
    )
    .await
}

async fn telemetry_subscribe(State(driver): Driver, headers: HeaderMap, body: Body) -> Response {
    subscribe(&driver, &headers, body, Api::Telemetry).await
}

async fn logs_subscribe(State(driver): Driver, headers: HeaderMap, body: Body) -> Response {
    subscribe(&driver, &headers, body, Api::Logs).await
}

async fn runtime_next(State(driver): Driver) -> Response {
    call(&driver, ApiRequest::RuntimeNext).await
}

async fn runtime_response(
    State(driver): Driver,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(mode) = headers.get(rt::HEADER_RESPONSE_MODE) {
        // Streaming responses are accepted and buffered (docs/fidelity.md);
        // any other value is refused as rapid does.
        if !mode
            .as_bytes()
            .eq_ignore_ascii_case(rt::RESPONSE_MODE_STREAMING.as_bytes())
        {
            return refused(Refusal::InvalidResponseMode);
        }
    }
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    let (body, too_large) = match read_body(body, lext_protocol::MAX_PAYLOAD_SIZE).await {
        Ok(Some(b)) => (b, false),
        Ok(None) => (Bytes::new(), true),
        Err(r) => return refused(r),
    };
    let response = call(
        &driver,
        ApiRequest::RuntimeResponse {
            request_id,
            body,
            content_type,
            too_large,
        },
    )
    .await;
    // The lifecycle has recorded the failure (the caller gets
    // Function.ResponseSizeTooLarge); the runtime itself gets 413.
    if too_large && response.status() == StatusCode::ACCEPTED {
        return refused(Refusal::PayloadTooLarge);
    }
    response
}

async fn runtime_error(
    State(driver): Driver,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let error_type = header_str(&headers, rt::HEADER_FUNCTION_ERROR_TYPE).map(str::to_owned);
    let body = match small_body(body).await {
        Ok(b) => b,
        Err(r) => return refused(r),
    };
    call(
        &driver,
        ApiRequest::RuntimeError {
            request_id,
            error_type,
            body,
        },
    )
    .await
}

async fn runtime_init_error(State(driver): Driver, headers: HeaderMap, body: Body) -> Response {
    let error_type = header_str(&headers, rt::HEADER_FUNCTION_ERROR_TYPE).map(str::to_owned);
    if let Err(r) = small_body(body).await {
        return refused(r);
    }
    call(&driver, ApiRequest::RuntimeInitError { error_type }).await
}
