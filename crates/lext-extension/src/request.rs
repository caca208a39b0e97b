//! Pure builders for every request the SDK sends, and the interpretation of
//! every answer (crate-private; [`ExtensionId`] and [`SubscribeOutcome`] are
//! re-exported at the crate root).
//!
//! This module owns the shape of the Extensions API and Telemetry API calls:
//! which path, which headers, which body, and what each status means. The
//! builders return [`ApiRequest`] values and the interpreters take
//! [`ApiResponse`] values, so all of it is tested without a socket, and the
//! blocking and tokio transports cannot drift apart.

use lext_protocol::error::{ErrorRequest, ErrorResponse};
use lext_protocol::extensions::{
    EventType, NextEvent, RegisterRequest, RegisterResponse, EXIT_ERROR_PATH, FEATURE_ACCOUNT_ID,
    HEADER_ACCEPT_FEATURE, HEADER_EXTENSION_IDENTIFIER, HEADER_EXTENSION_NAME,
    HEADER_FUNCTION_ERROR_TYPE, INIT_ERROR_PATH, NEXT_EVENT_PATH, REGISTER_PATH,
};

use lext_protocol::telemetry::{Api, SubscribeRequest, TELEMETRY_PATH};

use crate::error::{Error, ErrorEndpoint, HandlerError, Op};
use crate::http::{ApiRequest, ApiResponse, Method};

/// The identifier Lambda gives an extension at registration
/// (`Lambda-Extension-Identifier`), sent with every later call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionId(String);

impl ExtensionId {
    /// The identifier as text. It is a valid header value: the SDK checks
    /// the one Lambda returns.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ExtensionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `value` can be sent as an HTTP header value as is: visible ASCII
/// and spaces/tabs, no CR/LF (which would split the request).
pub(crate) fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// `POST /2020-01-01/extension/register`.
///
/// # Errors
/// [`Error::Config`] if `name` is empty or cannot be a header value.
pub(crate) fn register(
    name: &str,
    events: &[EventType],
    accept_account_id: bool,
) -> Result<ApiRequest, Error> {
    if name.is_empty() {
        return Err(Error::Config("the extension name is empty".into()));
    }
    if !is_header_value(name) {
        return Err(Error::Config(format!(
            "the extension name {name:?} cannot be sent in the {HEADER_EXTENSION_NAME} header \
             (use ASCII letters, digits, '-', '_' or '.' in the executable's file name)"
        )));
    }
    let body = RegisterRequest {
        events: events.to_vec(),
        configuration_keys: Vec::new(),
    };
    let mut headers = vec![(HEADER_EXTENSION_NAME, name.to_owned())];
    if accept_account_id {
        headers.push((HEADER_ACCEPT_FEATURE, FEATURE_ACCOUNT_ID.to_owned()));
    }
    headers.push(("Content-Type", "application/json".to_owned()));
    Ok(ApiRequest {
        method: Method::Post,
        path: REGISTER_PATH.to_owned(),
        headers,
        body: to_json(&body),
    })
}

/// `GET /2020-01-01/extension/event/next`.
pub(crate) fn next_event(id: &ExtensionId) -> ApiRequest {
    ApiRequest {
        method: Method::Get,
        path: NEXT_EVENT_PATH.to_owned(),
        headers: vec![(HEADER_EXTENSION_IDENTIFIER, id.0.clone())],
        body: Vec::new(),
    }
}

/// `POST /2020-01-01/extension/init/error` or `.../exit/error`.
fn error_report(endpoint: ErrorEndpoint, id: &ExtensionId, error: &HandlerError) -> ApiRequest {
    let path = match endpoint {
        ErrorEndpoint::InitError => INIT_ERROR_PATH,
        ErrorEndpoint::ExitError => EXIT_ERROR_PATH,
    };
    let body = ErrorRequest {
        error_message: error.message().to_owned(),
        error_type: error.error_type().to_owned(),
        stack_trace: Vec::new(),
    };
    ApiRequest {
        method: Method::Post,
        path: path.to_owned(),
        headers: vec![
            (HEADER_EXTENSION_IDENTIFIER, id.0.clone()),
            // HandlerError's constructor already sanitized it.
            (HEADER_FUNCTION_ERROR_TYPE, error.error_type().to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ],
        body: to_json(&body),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no custom Serialize that errors); an empty body would be refused
    // by the API with a clear 403 rather than a panic here.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `PUT /2022-07-01/telemetry`. The body is validated first with the
/// protocol's rules (schema version, types, buffering ranges, a
/// `sandbox.localdomain` destination), so a bad subscription fails here with
/// the message Lambda would give, without a round trip.
///
/// # Errors
/// [`Error::Config`] with the validation message.
pub(crate) fn subscribe_telemetry(
    id: &ExtensionId,
    body: &SubscribeRequest,
) -> Result<ApiRequest, Error> {
    body.validate(Api::Telemetry)
        .map_err(|e| Error::Config(format!("telemetry subscription: {e}")))?;
    Ok(ApiRequest {
        method: Method::Put,
        path: TELEMETRY_PATH.to_owned(),
        headers: vec![
            (HEADER_EXTENSION_IDENTIFIER, id.0.clone()),
            ("Content-Type", "application/json".to_owned()),
        ],
        body: to_json(body),
    })
}

/// How the Telemetry API took a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// 200: events will be delivered.
    Subscribed,
    /// 202: a local emulator without a telemetry backend (AWS's RIE, SAM
    /// local) accepted the call but will deliver nothing. Carries its message.
    NotSupported(String),
}

/// Interprets the answer to a telemetry subscription sent with
/// [`subscribe_telemetry`].
///
/// # Errors
/// [`Error::Api`] for a refusal (400 `ValidationError`, 403
/// `Telemetry.SubscriptionClosed`, 500).
pub(crate) fn subscribed(response: &ApiResponse) -> Result<SubscribeOutcome, Error> {
    match response.status {
        202 => {
            let message = serde_json::from_slice::<ErrorResponse>(&response.body)
                .map(|b| b.error_message)
                .unwrap_or_else(|_| response.body_text());
            Ok(SubscribeOutcome::NotSupported(message))
        }
        s if is_success(s) => Ok(SubscribeOutcome::Subscribed),
        _ => Err(api_error(Op::SubscribeTelemetry, response)),
    }
}

/// The typed error for a non-2xx answer: AWS's `errorType`/`errorMessage`
/// when the body is rapid's JSON, else the raw body.
pub(crate) fn api_error(op: Op, response: &ApiResponse) -> Error {
    match serde_json::from_slice::<ErrorResponse>(&response.body) {
        Ok(body) if !body.error_type.is_empty() || !body.error_message.is_empty() => Error::Api {
            op,
            status: response.status,
            error_type: if body.error_type.is_empty() {
                "Unknown".into()
            } else {
                body.error_type
            },
            message: body.error_message,
        },
        _ => Error::Api {
            op,
            status: response.status,
            error_type: "Unknown".into(),
            message: response.body_text(),
        },
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Interprets the answer to register: the body and the identifier header.
pub(crate) fn registered(response: &ApiResponse) -> Result<(RegisterResponse, ExtensionId), Error> {
    let op = Op::Register;
    if !is_success(response.status) {
        return Err(api_error(op, response));
    }
    let id = response
        .header("lambda-extension-identifier")
        .filter(|v| !v.is_empty() && is_header_value(v))
        .ok_or_else(|| Error::Protocol {
            op,
            reason: format!(
                "status {} without a valid {HEADER_EXTENSION_IDENTIFIER} header",
                response.status
            ),
        })?;
    let body = serde_json::from_slice(&response.body).map_err(|e| Error::Protocol {
        op,
        reason: format!(
            "register body is not the expected JSON ({e}): {}",
            response.body_text()
        ),
    })?;
    Ok((body, ExtensionId(id.to_owned())))
}

/// Interprets the answer to `/event/next`.
pub(crate) fn next_event_response(response: &ApiResponse) -> Result<NextEvent, Error> {
    let op = Op::Next;
    if !is_success(response.status) {
        return Err(api_error(op, response));
    }
    serde_json::from_slice(&response.body).map_err(|e| Error::Protocol {
        op,
        reason: format!(
            "event is not the expected JSON ({e}): {}",
            response.body_text()
        ),
    })
}

/// The report of a handler failure to `endpoint` (`init/error` during init,
/// `exit/error` after) and the call it is, logged as a warning. Both
/// flavours send it, then build their result with [`failure_reported`].
pub(crate) fn failure_report(
    id: &ExtensionId,
    endpoint: ErrorEndpoint,
    error: &HandlerError,
) -> (Op, ApiRequest) {
    let (op, req) = (endpoint.op(), error_report(endpoint, id, error));
    tracing::warn!(%op, error_type = error.error_type(), message = error.message(), "reporting extension failure");
    (op, req)
}

/// The [`Error::Handler`] to return after sending a [`failure_report`]:
/// `sent` is what the transport got back, and a report that did not reach
/// Lambda is kept in the error.
pub(crate) fn failure_reported(
    endpoint: ErrorEndpoint,
    error: &HandlerError,
    sent: Result<ApiResponse, Error>,
) -> Error {
    let outcome = sent.and_then(|r| error_reported(endpoint.op(), &r));
    Error::Handler {
        endpoint,
        error_type: error.error_type().to_owned(),
        message: error.message().to_owned(),
        report_failed: outcome.err().map(Box::new),
    }
}

/// Interprets the answer to `init/error` or `exit/error`. Lambda answers
/// 202 `{"status":"OK"}`; any 2xx counts as delivered (the Go sample's
/// "anything but 200 is a failure" is a bug the port must not copy).
pub(crate) fn error_reported(op: Op, response: &ApiResponse) -> Result<(), Error> {
    if is_success(response.status) {
        Ok(())
    } else {
        Err(api_error(op, response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lext_protocol::extensions::ShutdownReason;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            close: false,
        }
    }

    #[test]
    fn register_request_shape() {
        let r = register("my-ext", &[EventType::Invoke, EventType::Shutdown], true).unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/2020-01-01/extension/register");
        assert_eq!(r.header("Lambda-Extension-Name"), Some("my-ext"));
        assert_eq!(
            r.header("Lambda-Extension-Accept-Feature"),
            Some("accountId")
        );
        assert_eq!(r.body, br#"{"events":["INVOKE","SHUTDOWN"]}"#);
        let r = register("my-ext", &[], false).unwrap();
        assert_eq!(r.header("Lambda-Extension-Accept-Feature"), None);
        assert_eq!(r.body, br#"{"events":[]}"#);
    }

    #[test]
    fn register_refuses_names_that_break_headers() {
        assert!(matches!(register("", &[], false), Err(Error::Config(_))));
        assert!(matches!(
            register("a\r\nb", &[], false),
            Err(Error::Config(_))
        ));
        assert!(matches!(register("é", &[], false), Err(Error::Config(_))));
    }

    #[test]
    fn next_and_error_report_shapes() {
        let id = ExtensionId("a-b-c".into());
        let n = next_event(&id);
        assert_eq!(
            (n.method, n.path.as_str()),
            (Method::Get, "/2020-01-01/extension/event/next")
        );
        assert_eq!(n.header("Lambda-Extension-Identifier"), Some("a-b-c"));
        assert!(n.body.is_empty());

        let err = HandlerError::new("Bad Config!\n", "line1\nline2");
        for (req, path) in [
            (
                error_report(ErrorEndpoint::InitError, &id, &err),
                "/2020-01-01/extension/init/error",
            ),
            (
                error_report(ErrorEndpoint::ExitError, &id, &err),
                "/2020-01-01/extension/exit/error",
            ),
        ] {
            assert_eq!(req.path, path);
            assert_eq!(
                req.header("Lambda-Extension-Function-Error-Type"),
                Some("Extension.BadConfig")
            );
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"errorMessage":"line1\nline2","errorType":"Extension.BadConfig"})
            );
        }
    }

    #[test]
    fn register_response_is_parsed_with_account_id() {
        let r = response(
            200,
            &[("lambda-extension-identifier", "id-1")],
            r#"{"functionName":"f","functionVersion":"$LATEST","handler":"h","accountId":"123"}"#,
        );
        let (body, id) = registered(&r).unwrap();
        assert_eq!(id.as_str(), "id-1");
        assert_eq!(body.account_id.as_deref(), Some("123"));
        assert_eq!(body.function_name, "f");
    }

    #[test]
    fn register_without_identifier_or_with_garbage_is_a_protocol_error() {
        let r = response(200, &[], r#"{"functionName":"f"}"#);
        assert!(matches!(
            registered(&r),
            Err(Error::Protocol {
                op: Op::Register,
                ..
            })
        ));
        let r = response(200, &[("lambda-extension-identifier", "x")], "not json");
        assert!(matches!(
            registered(&r),
            Err(Error::Protocol {
                op: Op::Register,
                ..
            })
        ));
    }

    #[test]
    fn api_errors_carry_aws_error_type() {
        let r = response(
            403,
            &[],
            "{\"errorMessage\":\"Empty extension name\",\"errorType\":\"Extension.InvalidExtensionName\"}\n",
        );
        match registered(&r) {
            Err(Error::Api {
                status: 403,
                error_type,
                message,
                ..
            }) => {
                assert_eq!(error_type, "Extension.InvalidExtensionName");
                assert_eq!(message, "Empty extension name");
            }
            other => panic!("{other:?}"),
        }
        let r = response(500, &[], "oops\nmore");
        match next_event_response(&r) {
            Err(Error::Api {
                status: 500,
                error_type,
                message,
                op: Op::Next,
            }) => {
                assert_eq!(error_type, "Unknown");
                assert_eq!(message, "oops more");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_parse_and_garbage_is_protocol_error() {
        let r = response(
            200,
            &[],
            r#"{"eventType":"SHUTDOWN","deadlineMs":5,"shutdownReason":"Timeout"}"#,
        );
        match next_event_response(&r).unwrap() {
            NextEvent::Shutdown(s) => assert_eq!(s.shutdown_reason, ShutdownReason::Timeout),
            other => panic!("{other:?}"),
        }
        let r = response(200, &[], "{garbage");
        assert!(matches!(
            next_event_response(&r),
            Err(Error::Protocol { op: Op::Next, .. })
        ));
    }

    #[test]
    fn error_reports_accept_202() {
        assert!(error_reported(Op::InitError, &response(202, &[], r#"{"status":"OK"}"#)).is_ok());
        assert!(error_reported(Op::ExitError, &response(200, &[], "")).is_ok());
        assert!(matches!(
            error_reported(Op::ExitError, &response(403, &[], "{}")),
            Err(Error::Api { status: 403, .. })
        ));
    }

    #[test]
    fn subscribe_shape_and_outcomes() {
        use lext_protocol::telemetry::LogType;
        let id = ExtensionId("id-9".into());
        let body = SubscribeRequest::http(vec![LogType::Platform, LogType::Function], 4243);
        let req = subscribe_telemetry(&id, &body).unwrap();
        assert_eq!(
            (req.method, req.path.as_str()),
            (Method::Put, "/2022-07-01/telemetry")
        );
        assert_eq!(req.header("Lambda-Extension-Identifier"), Some("id-9"));
        let sent: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            sent["destination"]["URI"],
            "http://sandbox.localdomain:4243"
        );
        assert_eq!(sent["types"], serde_json::json!(["platform", "function"]));
        assert!(matches!(
            subscribe_telemetry(&id, &SubscribeRequest::http(vec![], 4243)),
            Err(Error::Config(_))
        ));

        assert_eq!(
            subscribed(&response(200, &[], "\"OK\"")).unwrap(),
            SubscribeOutcome::Subscribed
        );
        assert_eq!(
            subscribed(&response(
                202,
                &[],
                r#"{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}"#
            ))
            .unwrap(),
            SubscribeOutcome::NotSupported("Telemetry API is not supported".into())
        );
        match subscribed(&response(
            403,
            &[],
            r#"{"errorMessage":"Telemetry API subscription is closed already","errorType":"Telemetry.SubscriptionClosed"}"#,
        )) {
            Err(Error::Api {
                op: Op::SubscribeTelemetry,
                status: 403,
                error_type,
                ..
            }) => {
                assert_eq!(error_type, "Telemetry.SubscriptionClosed")
            }
            other => panic!("{other:?}"),
        }
    }
}
