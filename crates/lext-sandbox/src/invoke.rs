//! The Lambda Invoke API endpoint: `POST
//! /2015-03-31/functions/{name}/invocations`, served on its own address
//! (`lext run --serve ADDR`).
//!
//! It speaks the service API as `aws lambda invoke --endpoint-url` and the
//! AWS SDKs expect it: 200 with the function's bytes, `X-Amz-Function-Error:
//! Unhandled` when the function or the platform failed (with the
//! `Sandbox.Timedout` and `Function.ResponseSizeTooLarge` bodies), 202 for
//! `Event` invocations, 204 for `DryRun`, and the service's own error shape
//! (`x-amzn-ErrorType` + `{"Type","message"}`) for a bad request. Invokes
//! queue in the driver: one runs at a time per environment, as in Lambda,
//! and past the queue's bound ([`QueueLimit`](crate::QueueLimit)) an invoke
//! gets Lambda's throttling answer, 429 `TooManyRequestsException`.
//!
//! `POST /2021-11-15/functions/{name}/response-streaming-invocations`
//! (`InvokeWithResponseStream`) takes the same requests and answers with an
//! event stream ([`crate::eventstream`]): the runtime's bytes as they come
//! ([`crate::stream`]), then `InvokeComplete`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt as _;
use lext_protocol::runtime::invoke as inv;

use bytes::Bytes;

use crate::driver::{Handle, NotRun};
use crate::eventstream;
use crate::function::FunctionHandle;
use crate::invocation::InvokeResponse;
use crate::invocation::{InvokeRequest, InvokeResult};
use crate::stream::{Answer, StreamError, StreamItem};
use crate::tail::{Tails, TAIL_BYTES};

/// The largest synchronous request payload the Invoke API takes (6 MB).
pub const MAX_REQUEST_PAYLOAD: usize = 6 * 1024 * 1024;

/// The largest asynchronous (`Event`) request payload (1 MB).
pub(crate) const MAX_EVENT_PAYLOAD: usize = 1024 * 1024;

/// What the endpoint needs to know about the function.
#[derive(Debug, Clone)]
pub(crate) struct InvokeTarget {
    /// The function's name.
    pub(crate) name: String,
    /// Its unqualified ARN.
    pub(crate) arn: String,
    /// `$LATEST` or a number, for `X-Amz-Executed-Version`.
    pub(crate) version: String,
    /// The function timeout: how long a `Tail` caller may wait for the
    /// invoke's `REPORT` after its answer (plus the shutdown budget).
    pub(crate) timeout: std::time::Duration,
}

impl InvokeTarget {
    /// Whether `name` (a name or an ARN, either with a `:qualifier`), with
    /// the `Qualifier` query parameter if any, names this function. The
    /// only version here is the function's own (`$LATEST`), so any other
    /// qualifier names a version that does not exist, as it would in
    /// Lambda. `function`, RIE's fixed name, is accepted too, so that tools
    /// written for RIE work unchanged.
    fn matches(&self, name: &str, qualifier: Option<&str>) -> bool {
        let qualifier_ok = |q: &str| q == self.version;
        if qualifier.is_some_and(|q| !qualifier_ok(q)) {
            return false;
        }
        let strip = |s: &'_ str, base: &str| -> bool {
            s == base
                || s.strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(qualifier_ok)
        };
        name == "function" || strip(name, &self.name) || strip(name, &self.arn)
    }

    /// The ARN the service names in its 404: the one asked for, qualified
    /// as asked (`Function not found: arn:aws:lambda:…:function:other:2`).
    fn asked_arn(&self, name: &str, qualifier: Option<&str>) -> String {
        let base = if name.starts_with("arn:") {
            name.to_owned()
        } else {
            // This function's ARN with the name asked for.
            let prefix = self
                .arn
                .strip_suffix(self.name.as_str())
                .unwrap_or(&self.arn);
            format!("{prefix}{name}")
        };
        match qualifier {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }
}

/// The `Qualifier` query parameter (`aws lambda invoke --qualifier`).
fn qualifier(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "Qualifier").then(|| value.replace("%24", "$"))
    })
}

/// What runs the invokes: one environment, or a function's pool of them.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Environment(Handle),
    Function(FunctionHandle),
}

impl Backend {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, NotRun> {
        match self {
            Self::Environment(h) => h.invoke(request).await,
            Self::Function(f) => f.invoke_inner(request).await,
        }
    }

    fn invoke_async(&self, request: InvokeRequest) -> Result<String, NotRun> {
        match self {
            Self::Environment(h) => h.invoke_async(request),
            Self::Function(f) => f.invoke_async_inner(request),
        }
    }

    async fn invoke_stream(&self, request: InvokeRequest) -> Result<Answer, NotRun> {
        match self {
            Self::Environment(h) => h.invoke_stream(request).await,
            Self::Function(f) => f.invoke_stream(request).await,
        }
    }

    fn tenant_isolation(&self) -> bool {
        match self {
            Self::Environment(_) => false,
            Self::Function(f) => f.tenant_isolation(),
        }
    }

    /// Returns when the environment or every environment has stopped.
    pub(crate) async fn stopped(&self) {
        match self {
            Self::Environment(h) => {
                h.wait_for(|p| p.stopped).await;
            }
            Self::Function(f) => {
                f.wait_for(|p| p.stopped).await;
            }
        }
    }
}

#[derive(Clone)]
struct Ctx {
    handle: Backend,
    target: Arc<InvokeTarget>,
    tails: Tails,
}

/// The router of the Invoke API for one function; `tails` follows the log
/// for `X-Amz-Log-Type: Tail`.
pub(crate) fn router(handle: Backend, target: InvokeTarget, tails: Tails) -> Router {
    Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route(
            "/2021-11-15/functions/{name}/response-streaming-invocations",
            post(invoke_with_response_stream),
        )
        .with_state(Ctx {
            handle,
            target: Arc::new(target),
            tails,
        })
}

/// The service's error shape: `x-amzn-ErrorType` and a JSON body.
fn service_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "message": message }).to_string();
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        h.insert("x-amzn-ErrorType", v);
    }
    r
}

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sync,
    Event,
    DryRun,
}

impl Kind {
    /// The largest payload the service takes (AWS: Lambda API Reference,
    /// Invoke: "For synchronous invocations, the maximum payload size is
    /// 6 MB. For asynchronous invocations, the maximum payload size is
    /// 1 MB.").
    fn payload_limit(self) -> usize {
        match self {
            Self::Event => MAX_EVENT_PAYLOAD,
            Self::Sync | Self::DryRun => MAX_REQUEST_PAYLOAD,
        }
    }
}

/// The whole payload, read before the invoke is queued: the runtime gets it
/// as one body, and one the service would refuse is refused here, before
/// any environment sees it: over the limit (413), or not JSON (400, as the
/// service parses every payload as JSON). An empty payload is allowed.
async fn read_payload(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    let payload = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(service_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                &format!(
                    "Request must be smaller than {limit} bytes for the InvokeFunction operation"
                ),
            ))
        }
        Err(_) => {
            return Err(service_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                "Could not read the request body",
            ))
        }
    };
    if !payload.is_empty() {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
            return Err(service_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &format!("Could not parse request body into json: {e}"),
            ));
        }
    }
    Ok(payload)
}

/// The service's answer to a tenant id where none belongs, or to none
/// where one must be (AWS: Troubleshooting tenant isolation).
fn tenant_refused() -> Response {
    service_error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        "Tenant ID configuration not specified or passed to a function when tenant isolation \
         is not enabled.",
    )
}

/// The answer for an invoke that did not run.
fn not_run(why: NotRun) -> Response {
    match why {
        NotRun::Stopped => service_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the execution environment has stopped",
        ),
        NotRun::QueueFull(_) => too_many_requests("ConcurrentInvocationLimitExceeded"),
        NotRun::ReservedConcurrency => {
            too_many_requests("ReservedFunctionConcurrentInvocationLimitExceeded")
        }
        NotRun::Tenant { .. } => tenant_refused(),
        NotRun::Rejected(error_type) => rejected(error_type),
        NotRun::Failed(message) => service_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &format!("a new execution environment could not start: {message}"),
        ),
    }
}

/// A Managed Instances invoke rejected at once (no idle worker, a
/// duplicated id): 400, `Error-Type`, and `{"errorType"}` with no message,
/// as RIE's Managed Instances core writes it (RIE
/// `internal/lambda-managed-instances/aws-lambda-rie/internal/invoke/responder.go`,
/// `rapid/model/error_types.go`: `errorMessage` is omitted when empty).
fn rejected(error_type: &str) -> Response {
    let body = serde_json::json!({ "errorType": error_type }).to_string();
    let mut r = (StatusCode::BAD_REQUEST, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        h.insert("Error-Type", v);
    }
    r
}

/// Lambda's throttling answer (AWS: Lambda API Reference, Invoke, "Errors":
/// `TooManyRequestsException`, HTTP 429, with `Reason` and the
/// `Retry-After` header that the SDKs read as `retryAfterSeconds`). The
/// queue is full as a function is over its concurrency: the reason is
/// `ConcurrentInvocationLimitExceeded`, or
/// `ReservedFunctionConcurrentInvocationLimitExceeded` for a function with
/// reserved concurrency, the message the service's own "Rate Exceeded."
/// (docs/fidelity.md).
fn too_many_requests(reason: &str) -> Response {
    let body = serde_json::json!({
        "Reason": reason,
        "Type": "User",
        "message": "Rate Exceeded.",
    })
    .to_string();
    let mut r = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-amzn-ErrorType",
        HeaderValue::from_static("TooManyRequestsException"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A request both invoke endpoints accept, checked as the service checks
/// it: the function's name and qualifier, the invocation and log types,
/// and the payload.
struct Checked {
    kind: Kind,
    tail: bool,
    request: InvokeRequest,
}

async fn check(
    ctx: &Ctx,
    name: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Checked, Response> {
    // One environment serves one function: another name or version is the
    // service's 404, which the SDKs map to ResourceNotFoundException.
    let qualifier = qualifier(uri.query());
    if !ctx.target.matches(name, qualifier.as_deref()) {
        let asked = ctx.target.asked_arn(name, qualifier.as_deref());
        return Err(service_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {asked}"),
        ));
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let kind = match text(inv::HEADER_INVOCATION_TYPE).as_deref() {
        None | Some("RequestResponse") => Kind::Sync,
        Some("Event") => Kind::Event,
        Some("DryRun") => Kind::DryRun,
        Some(other) => {
            return Err(service_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("Unsupported invocation type {other}"),
            ))
        }
    };
    // `X-Amz-Log-Type` (AWS: Invoke, `LogType`: `None` or `Tail`, for
    // synchronous invokes only).
    let tail = match text(inv::HEADER_LOG_TYPE).as_deref() {
        None | Some("None") => false,
        Some("Tail") => kind == Kind::Sync,
        Some(other) => {
            return Err(service_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("Unsupported log type {other}"),
            ))
        }
    };
    // A tenant id for a function without tenant isolation, and none for
    // one with it: the service refuses both with one error (AWS:
    // Troubleshooting tenant isolation, "InvalidParameterValueException ...
    // This error occurs when invoking a tenant-isolated function without a
    // tenant ID, or invoking a non-tenant-isolated function with a tenant
    // ID").
    let tenant_id = text(inv::HEADER_TENANT_ID).filter(|t| !t.is_empty());
    if tenant_id.is_some() != ctx.handle.tenant_isolation() {
        return Err(tenant_refused());
    }
    let payload = read_payload(body, kind.payload_limit()).await?;
    // The client context travels base64-encoded in the header; the runtime
    // gets the JSON itself (RIE decodes it the same way).
    let request = InvokeRequest {
        payload,
        trace_id: text(inv::HEADER_TRACE_ID),
        client_context: text(inv::HEADER_CLIENT_CONTEXT).and_then(|b64| decode_base64(&b64)),
        tenant_id,
        request_id: text(inv::HEADER_REQUEST_ID).filter(|id| !id.is_empty()),
    };
    Ok(Checked {
        kind,
        tail,
        request,
    })
}

async fn invoke(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Checked {
        kind,
        tail,
        request,
    } = match check(&ctx, &name, &uri, &headers, body).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    match kind {
        Kind::Sync => {}
        // Asynchronous: queued behind the running invoke, answered at once.
        Kind::Event => {
            return match ctx.handle.invoke_async(request) {
                Ok(request_id) => {
                    let mut r = StatusCode::ACCEPTED.into_response();
                    if let Ok(v) = HeaderValue::from_str(&request_id) {
                        r.headers_mut().insert(inv::HEADER_REQUEST_ID, v);
                    }
                    r
                }
                Err(why) => not_run(why),
            }
        }
        // Validates the request and runs nothing.
        Kind::DryRun => return StatusCode::NO_CONTENT.into_response(),
    }
    let reply = match ctx.handle.invoke(request).await {
        Ok(reply) => reply,
        Err(why) => return not_run(why),
    };
    let body = reply.payload();
    let failed = reply.function_error().is_some();
    let content_type = match reply.result {
        InvokeResult::Response { content_type, .. } => content_type,
        _ => None,
    };
    // A failed function is still a 200 for the Invoke API: the failure is
    // told by X-Amz-Function-Error, and the body is the error document.
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    let ct = content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    h.insert(header::CONTENT_TYPE, ct);
    if let Ok(v) = HeaderValue::from_str(&reply.request_id) {
        h.insert(inv::HEADER_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.target.version) {
        h.insert(inv::HEADER_EXECUTED_VERSION, v);
    }
    if failed {
        h.insert(
            inv::HEADER_FUNCTION_ERROR,
            HeaderValue::from_static(inv::FUNCTION_ERROR_UNHANDLED),
        );
    }
    if tail {
        if let Some(v) = log_result(&ctx, &reply.request_id)
            .await
            .and_then(|l| HeaderValue::from_str(&l).ok())
        {
            h.insert(inv::HEADER_LOG_RESULT, v);
        }
    }
    r
}

/// The base64 tail of the invoke's log (`LogResult`). The tail ends with
/// REPORT, which comes once the extensions are done with the invoke:
/// bounded by the timeout and the shutdown budget.
async fn log_result(ctx: &Ctx, request_id: &str) -> Option<String> {
    use base64::Engine as _;
    let wait = ctx.target.timeout + std::time::Duration::from_secs(5);
    let log = tokio::time::timeout(wait, ctx.tails.take(request_id))
        .await
        .ok()??;
    debug_assert!(log.len() <= TAIL_BYTES);
    Some(base64::engine::general_purpose::STANDARD.encode(log))
}

/// Event stream messages in flight to the caller.
const MESSAGES_IN_FLIGHT: usize = 4;

/// `POST /2021-11-15/functions/{name}/response-streaming-invocations`
/// (`InvokeWithResponseStream`, botocore's Lambda model): the same checks
/// as `Invoke`, then a 200 whose body is an event stream of `PayloadChunk`
/// events, as the runtime writes its bytes, and one `InvokeComplete` with
/// the error, if any, and the log tail when asked for. Its invocation
/// types are `RequestResponse` and `DryRun` (the model's
/// `ResponseStreamingInvocationType`); `Event` is refused as an unknown
/// type.
async fn invoke_with_response_stream(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Checked {
        kind,
        tail,
        request,
    } = match check(&ctx, &name, &uri, &headers, body).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    match kind {
        Kind::Sync => {}
        Kind::DryRun => return StatusCode::NO_CONTENT.into_response(),
        Kind::Event => {
            return service_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "Unsupported invocation type Event",
            )
        }
    }
    let answer = match ctx.handle.invoke_stream(request).await {
        Ok(answer) => answer,
        Err(why) => return not_run(why),
    };
    let request_id = match &answer {
        Answer::Whole(r) => r.request_id.clone(),
        Answer::Stream(s) => s.request_id.clone(),
        Answer::Rejected(error_type) => return rejected(error_type),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(MESSAGES_IN_FLIGHT);
    tokio::spawn(pump(ctx.clone(), answer, tail, tx));
    let mut r = (StatusCode::OK, Body::new(Messages(rx))).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(eventstream::CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(inv::HEADER_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.target.version) {
        h.insert(inv::HEADER_EXECUTED_VERSION, v);
    }
    r
}

/// Writes the answer as event stream messages: the chunks as they come,
/// then `InvokeComplete`. Stops early if the caller goes away.
async fn pump(ctx: Ctx, answer: Answer, tail: bool, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let (request_id, error) = match answer {
        Answer::Whole(reply) => {
            // A buffered response (or an error) to a streaming caller: one
            // chunk, or the error (docs/fidelity.md).
            let error = match reply.result {
                InvokeResult::Response { body, .. } => {
                    if !body.is_empty() && tx.send(eventstream::payload_chunk(&body)).await.is_err()
                    {
                        return;
                    }
                    None
                }
                InvokeResult::FunctionError { body } => Some(function_error(&body)),
                InvokeResult::PlatformError {
                    error_type,
                    message,
                } => Some(StreamError {
                    code: error_type,
                    details: message,
                }),
            };
            (reply.request_id, error)
        }
        // Answered with its 400 before the stream began.
        Answer::Rejected(_) => return,
        Answer::Stream(mut streamed) => {
            let error = loop {
                match streamed.next().await {
                    StreamItem::Chunk(bytes) => {
                        if tx.send(eventstream::payload_chunk(&bytes)).await.is_err() {
                            return;
                        }
                    }
                    StreamItem::End(error) => break error,
                }
            };
            (streamed.request_id, error)
        }
    };
    let log = if tail {
        log_result(&ctx, &request_id).await
    } else {
        None
    };
    let _ = tx
        .send(eventstream::invoke_complete(error.as_ref(), log.as_deref()))
        .await;
}

/// A function's `/error` document as `InvokeComplete`'s error: its
/// `errorType` and `errorMessage`, or `Unhandled` and the body as text.
fn function_error(body: &[u8]) -> StreamError {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |name: &str| doc.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    StreamError {
        code: field("errorType").unwrap_or_else(|| inv::FUNCTION_ERROR_UNHANDLED.to_owned()),
        details: field("errorMessage")
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

/// The response body: the messages `pump` writes, each one frame.
struct Messages(tokio::sync::mpsc::Receiver<Bytes>);

impl axum::body::HttpBody for Messages {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|m| m.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// Decodes standard base64 (with or without padding), as the SDKs encode
/// `X-Amz-Client-Context`; `None` if invalid or not UTF-8.
fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    String::from_utf8(engine.decode(text.trim()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_client_context() {
        assert_eq!(decode_base64("eyJhIjoxfQ==").as_deref(), Some("{\"a\":1}"));
        assert_eq!(decode_base64("eyJhIjoxfQ").as_deref(), Some("{\"a\":1}"));
        assert_eq!(decode_base64("!!"), None);
    }

    #[test]
    fn names_that_match() {
        let t = InvokeTarget {
            name: "fn".into(),
            arn: "arn:aws:lambda:us-east-1:123456789012:function:fn".into(),
            version: "$LATEST".into(),
            timeout: std::time::Duration::from_secs(3),
        };
        for ok in [
            "fn",
            "fn:$LATEST",
            "function",
            "arn:aws:lambda:us-east-1:123456789012:function:fn",
            "arn:aws:lambda:us-east-1:123456789012:function:fn:$LATEST",
        ] {
            assert!(t.matches(ok, None), "{ok}");
        }
        assert!(t.matches("fn", Some("$LATEST")));
        // Only $LATEST exists here: any other version is not found.
        for bad in [
            "other",
            "fnx",
            "fn:1",
            "fn:1:2",
            "arn:aws:lambda:us-east-1:123456789012:function:fn:1",
        ] {
            assert!(!t.matches(bad, None), "{bad}");
        }
        assert!(!t.matches("fn", Some("2")));
        assert_eq!(
            t.asked_arn("other", None),
            "arn:aws:lambda:us-east-1:123456789012:function:other"
        );
        assert_eq!(
            t.asked_arn("fn", Some("2")),
            "arn:aws:lambda:us-east-1:123456789012:function:fn:2"
        );
        assert_eq!(
            qualifier(Some("Qualifier=%24LATEST")).as_deref(),
            Some("$LATEST")
        );
        assert_eq!(qualifier(Some("x=1")), None);
    }
}
