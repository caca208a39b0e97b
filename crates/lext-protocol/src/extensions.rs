//! The Extensions API (`/2020-01-01/extension`).
//!
//! An external extension registers with [`REGISTER_PATH`], then long-polls
//! [`NEXT_EVENT_PATH`] for [`NextEvent`]s, and may report a fatal error with
//! [`INIT_ERROR_PATH`] (during Init) or [`EXIT_ERROR_PATH`] (later).
//! Client errors are all answered with 403 and an
//! [`ErrorResponse`](crate::error::ErrorResponse); the error reports are
//! acknowledged with `202 {"status":"OK"}`.

use serde::{Deserialize, Serialize};

/// API version prefix.
pub const API_VERSION: &str = "2020-01-01";
/// `POST`: register an extension.
pub const REGISTER_PATH: &str = "/2020-01-01/extension/register";
/// `GET`: long-poll for the next event.
pub const NEXT_EVENT_PATH: &str = "/2020-01-01/extension/event/next";
/// `POST`: report a fatal error during Init.
pub const INIT_ERROR_PATH: &str = "/2020-01-01/extension/init/error";
/// `POST`: report a fatal error after Init, before exiting.
pub const EXIT_ERROR_PATH: &str = "/2020-01-01/extension/exit/error";

/// Request header: the extension's name (its executable's file name).
pub const HEADER_EXTENSION_NAME: &str = "Lambda-Extension-Name";
/// Request header: optional features, comma-separated (only `accountId`).
pub const HEADER_ACCEPT_FEATURE: &str = "Lambda-Extension-Accept-Feature";
/// Response header of register, request header of every later call.
pub const HEADER_EXTENSION_IDENTIFIER: &str = "Lambda-Extension-Identifier";
/// Request header of init/exit error: the error type, e.g. `Extension.ConfigInvalid`.
pub const HEADER_FUNCTION_ERROR_TYPE: &str = "Lambda-Extension-Function-Error-Type";
/// Response header of an INVOKE event: a fresh UUID per event (RIE sets it).
pub const HEADER_EVENT_IDENTIFIER: &str = "Lambda-Extension-Event-Identifier";
/// The one feature defined for [`HEADER_ACCEPT_FEATURE`].
pub const FEATURE_ACCOUNT_ID: &str = "accountId";

open_enum! {
    /// An event an extension can subscribe to.
    pub enum EventType {
        /// A function invocation (external and internal extensions).
        Invoke = "INVOKE",
        /// The environment is shutting down (external extensions only).
        Shutdown = "SHUTDOWN",
    }
}

/// Body of `POST /extension/register`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Events to receive. Optional on the wire; an empty list is allowed and
    /// means the extension only wants to be kept alive (and to get SIGTERM).
    #[serde(default)]
    pub events: Vec<EventType>,
    /// Deprecated; Lambda refuses a non-empty list with
    /// `InvalidRequestFormat`. Kept so that the sandbox can see and refuse it.
    #[serde(
        default,
        rename = "configurationKeys",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub configuration_keys: Vec<String>,
}

/// Body of the 200 answer to register.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The function's name.
    #[serde(default)]
    pub function_name: String,
    /// `$LATEST` or a version number.
    #[serde(default)]
    pub function_version: String,
    /// The value of `_HANDLER` (may be empty).
    #[serde(default)]
    pub handler: String,
    /// The account id, only when the `accountId` feature was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// The answer of `GET /extension/event/next`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "eventType", rename_all = "UPPERCASE")]
pub enum NextEvent {
    /// A function invocation started.
    Invoke(InvokeEvent),
    /// The environment is shutting down: finish by `deadline_ms` and exit.
    Shutdown(ShutdownEvent),
}

impl NextEvent {
    /// The deadline in Unix epoch milliseconds, for either event.
    pub fn deadline_ms(&self) -> u64 {
        match self {
            Self::Invoke(e) => e.deadline_ms,
            Self::Shutdown(e) => e.deadline_ms,
        }
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Invoke(_) => EventType::Invoke,
            Self::Shutdown(_) => EventType::Shutdown,
        }
    }
}

/// An INVOKE event. The function's payload is not delivered to extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeEvent {
    /// The function's deadline, Unix epoch milliseconds.
    pub deadline_ms: u64,
    /// The AWS request id.
    pub request_id: String,
    /// The ARN the caller used (may carry a qualifier).
    #[serde(default)]
    pub invoked_function_arn: String,
    /// X-Ray tracing header, absent when there is no trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
}

/// The `tracing` object of an INVOKE event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracing {
    /// `X-Amzn-Trace-Id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The trace header, `Root=1-…;Parent=…;Sampled=1`.
    pub value: String,
}

impl Tracing {
    /// The only tracing type Lambda uses.
    pub const X_AMZN_TRACE_ID: &'static str = "X-Amzn-Trace-Id";
}

/// A SHUTDOWN event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownEvent {
    /// Every process must have exited by then, Unix epoch milliseconds.
    pub deadline_ms: u64,
    /// Why the environment shuts down.
    pub shutdown_reason: ShutdownReason,
}

open_enum! {
    /// Why the environment shuts down. Real payloads are lowercase; the
    /// documentation writes capitals. Both parse; unknown values (RIE sends
    /// `Timeout`, `ReleaseFail`, `SandboxTerminated`) are kept.
    pub enum ShutdownReason {
        /// Normal shutdown of an idle environment.
        Spindown = "spindown",
        /// An invocation hit the function timeout.
        Timeout = "timeout",
        /// A crash, an out-of-memory kill or an extension error.
        Failure = "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Payloads from AWS's Extensions API reference
    // (AWS: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html)
    // and the README of aws-samples/aws-lambda-extensions'
    // go-example-extension.
    const INVOKE: &str = r#"{"eventType":"INVOKE","deadlineMs":1654469121614,"requestId":"3da1f2dc-3222-475e-9205-e2e6c6318895","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:ExtensionTest","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"}}"#;
    const SHUTDOWN: &str =
        r#"{"eventType":"SHUTDOWN","deadlineMs":1654470414327,"shutdownReason":"spindown"}"#;

    #[test]
    fn invoke_round_trips() {
        let event: NextEvent = serde_json::from_str(INVOKE).unwrap();
        let NextEvent::Invoke(invoke) = &event else {
            panic!("not an invoke: {event:?}")
        };
        assert_eq!(invoke.deadline_ms, 1654469121614);
        assert_eq!(invoke.request_id, "3da1f2dc-3222-475e-9205-e2e6c6318895");
        assert_eq!(invoke.tracing.as_ref().unwrap().kind, "X-Amzn-Trace-Id");
        assert_eq!(serde_json::to_string(&event).unwrap(), INVOKE);
    }

    #[test]
    fn invoke_without_tracing() {
        let raw =
            r#"{"eventType":"INVOKE","deadlineMs":1,"requestId":"r","invokedFunctionArn":"a"}"#;
        let event: NextEvent = serde_json::from_str(raw).unwrap();
        assert_eq!(serde_json::to_string(&event).unwrap(), raw);
    }

    #[test]
    fn shutdown_reasons_any_case_and_unknown() {
        for (text, want) in [
            ("spindown", ShutdownReason::Spindown),
            ("SPINDOWN", ShutdownReason::Spindown),
            ("timeout", ShutdownReason::Timeout),
            ("Timeout", ShutdownReason::Timeout),
            ("FAILURE", ShutdownReason::Failure),
            (
                "SandboxTerminated",
                ShutdownReason::Other("SandboxTerminated".into()),
            ),
        ] {
            let raw =
                format!(r#"{{"eventType":"SHUTDOWN","deadlineMs":5,"shutdownReason":"{text}"}}"#);
            let NextEvent::Shutdown(s) = serde_json::from_str(&raw).unwrap() else {
                panic!("not a shutdown")
            };
            assert_eq!(s.shutdown_reason, want, "{text}");
        }
        let event: NextEvent = serde_json::from_str(SHUTDOWN).unwrap();
        assert_eq!(serde_json::to_string(&event).unwrap(), SHUTDOWN);
        assert_eq!(event.deadline_ms(), 1654470414327);
    }

    #[test]
    fn unknown_event_type_is_an_error_not_a_panic() {
        assert!(
            serde_json::from_str::<NextEvent>(r#"{"eventType":"RESTORE","deadlineMs":1}"#).is_err()
        );
    }

    #[test]
    fn register_request_shapes() {
        let req = RegisterRequest {
            events: vec![EventType::Invoke, EventType::Shutdown],
            configuration_keys: vec![],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"events":["INVOKE","SHUTDOWN"]}"#
        );
        // `events` is optional; unknown names are kept for the server to refuse.
        let empty: RegisterRequest = serde_json::from_str("{}").unwrap();
        assert!(empty.events.is_empty());
        let odd: RegisterRequest =
            serde_json::from_str(r#"{"events":["INVOKE","RESTORE"]}"#).unwrap();
        assert_eq!(odd.events[1], EventType::Other("RESTORE".into()));
        let keys: RegisterRequest = serde_json::from_str(r#"{"configurationKeys":["k"]}"#).unwrap();
        assert_eq!(keys.configuration_keys, ["k"]);
    }

    #[test]
    fn register_response_with_and_without_account() {
        let raw = r#"{"functionName":"my-function","functionVersion":"$LATEST","handler":"function.handler"}"#;
        let resp: RegisterResponse = serde_json::from_str(raw).unwrap();
        assert_eq!(resp.account_id, None);
        assert_eq!(serde_json::to_string(&resp).unwrap(), raw);
        let with =
            r#"{"functionName":"f","functionVersion":"1","handler":"","accountId":"123456789012"}"#;
        let resp: RegisterResponse = serde_json::from_str(with).unwrap();
        assert_eq!(resp.account_id.as_deref(), Some("123456789012"));
        assert_eq!(serde_json::to_string(&resp).unwrap(), with);
    }
}
