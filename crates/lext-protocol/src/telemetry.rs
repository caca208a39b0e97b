//! The Telemetry API (`/2022-07-01/telemetry`) and the Logs API
//! (`/2020-08-15/logs`).
//!
//! An extension subscribes during Init with a [`SubscribeRequest`]; Lambda
//! then POSTs JSON arrays of [`TelemetryEvent`]s to the destination. Both
//! APIs share the request shape; [`SubscribeRequest::validate`] applies the
//! rules of either one.
//!
//! Events are typed record by record ([`Record`]). An event type this crate
//! does not know is kept as [`Record::Other`] with its raw JSON, so a
//! listener never fails on a new platform event. Every typed record also
//! keeps fields it does not know in an `extra` map, so an event forwarded
//! elsewhere loses nothing.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// `PUT`: subscribe to the Telemetry API.
pub const TELEMETRY_PATH: &str = "/2022-07-01/telemetry";
/// `PUT`: subscribe to the (legacy) Logs API.
pub const LOGS_PATH: &str = "/2020-08-15/logs";
/// The host name a subscriber's URI must use; it resolves to the
/// environment's loopback address.
pub const SANDBOX_HOST: &str = "sandbox.localdomain";
/// The short alias of [`SANDBOX_HOST`].
pub const SANDBOX_HOST_SHORT: &str = "sandbox";

/// Telemetry API schema versions accepted by Lambda.
pub const TELEMETRY_SCHEMA_VERSIONS: &[&str] = &["2022-07-01", "2022-12-13", "2025-01-29"];
/// Logs API schema versions accepted by Lambda.
pub const LOGS_SCHEMA_VERSIONS: &[&str] = &["2020-08-15", "2021-03-18"];
/// The Telemetry schema version lext subscribes with by default: the newest
/// one that both on-demand functions and Managed Instances accept.
pub const DEFAULT_TELEMETRY_SCHEMA: &str = "2025-01-29";

/// Which of the two subscription APIs a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `/2022-07-01/telemetry`.
    Telemetry,
    /// `/2020-08-15/logs`.
    Logs,
}

impl Api {
    /// The subscription path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Telemetry => TELEMETRY_PATH,
            Self::Logs => LOGS_PATH,
        }
    }

    /// The `errorType` of a 400 validation answer.
    pub fn validation_error_type(self) -> &'static str {
        match self {
            Self::Telemetry => crate::error::error_type::VALIDATION_ERROR,
            Self::Logs => crate::error::error_type::LOGS_VALIDATION_ERROR,
        }
    }
}

open_enum! {
    /// A stream a subscriber can ask for.
    pub enum LogType {
        /// `platform.*` events.
        Platform = "platform",
        /// The function's stdout and stderr.
        Function = "function",
        /// The extensions' stdout and stderr.
        Extension = "extension",
    }
}

open_enum! {
    /// How events reach the subscriber.
    pub enum Protocol {
        /// POSTed JSON arrays.
        Http = "HTTP",
        /// Newline-delimited JSON over TCP.
        Tcp = "TCP",
    }
}

/// Body of a subscription (`PUT /telemetry` or `PUT /logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    /// Required by the Telemetry API; optional for the Logs API
    /// (default `2020-08-15`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// The streams wanted; must not be empty.
    #[serde(default)]
    pub types: Vec<LogType>,
    /// Batching limits; every field optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffering: Option<Buffering>,
    /// Where to deliver.
    pub destination: Destination,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// `HTTP` or `TCP`.
    pub protocol: Protocol,
    /// `http://sandbox.localdomain:<port>[/<path>]` (HTTP).
    #[serde(rename = "URI", default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// TCP port (schema `2025-01-29`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Logs API field (`POST` or `PUT`); accepted and ignored by the
    /// Telemetry API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Logs API field (`JSON`); accepted and ignored by the Telemetry API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

impl Destination {
    /// An HTTP destination on `sandbox.localdomain:<port>`.
    pub fn http(port: u16) -> Self {
        Self {
            protocol: Protocol::Http,
            uri: Some(format!("http://{SANDBOX_HOST}:{port}")),
            port: None,
            method: None,
            encoding: None,
        }
    }
}

/// Batching limits of a subscription. A batch is sent when it holds
/// `max_items` events or `max_bytes` bytes, or `timeout_ms` after it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Buffering {
    /// 1,000 to 10,000; default 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u32>,
    /// 262,144 to 1,048,576; default 262,144.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u32>,
    /// 25 to 30,000; default 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// [`Buffering`] with the defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferingLimits {
    /// Events per batch.
    pub max_items: u32,
    /// Bytes per batch.
    pub max_bytes: u32,
    /// Milliseconds a batch may wait.
    pub timeout_ms: u32,
}

impl Buffering {
    /// Inclusive range of `maxItems`.
    pub const MAX_ITEMS: (u32, u32) = (1_000, 10_000);
    /// Inclusive range of `maxBytes`.
    pub const MAX_BYTES: (u32, u32) = (262_144, 1_048_576);
    /// Inclusive range of `timeoutMs`.
    pub const TIMEOUT_MS: (u32, u32) = (25, 30_000);
    /// Defaults: 10,000 items, 262,144 bytes, 1,000 ms.
    pub const DEFAULT: BufferingLimits = BufferingLimits {
        max_items: 10_000,
        max_bytes: 262_144,
        timeout_ms: 1_000,
    };

    /// Checks each given field against its range.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let fields = [
            ("maxItems", self.max_items, Self::MAX_ITEMS),
            ("maxBytes", self.max_bytes, Self::MAX_BYTES),
            ("timeoutMs", self.timeout_ms, Self::TIMEOUT_MS),
        ];
        for (field, value, (min, max)) in fields {
            if let Some(value) = value {
                if value < min || value > max {
                    return Err(ValidationError(format!(
                        "buffering.{field} must be between {min} and {max}, got {value}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The limits with defaults for the fields left out.
    pub fn limits(&self) -> BufferingLimits {
        BufferingLimits {
            max_items: self.max_items.unwrap_or(Self::DEFAULT.max_items),
            max_bytes: self.max_bytes.unwrap_or(Self::DEFAULT.max_bytes),
            timeout_ms: self.timeout_ms.unwrap_or(Self::DEFAULT.timeout_ms),
        }
    }
}

/// Why a subscription request is refused; the text goes into the 400
/// answer's `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError(pub String);

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValidationError {}

impl SubscribeRequest {
    /// A Telemetry API subscription over HTTP to `sandbox.localdomain:<port>`,
    /// with the default schema version and buffering.
    pub fn http(types: Vec<LogType>, port: u16) -> Self {
        Self {
            schema_version: Some(DEFAULT_TELEMETRY_SCHEMA.to_owned()),
            types,
            buffering: None,
            destination: Destination::http(port),
        }
    }

    /// Applies the subscription rules of `api`: a known schema version, a
    /// non-empty list of known types, buffering within range, and a
    /// destination on `sandbox.localdomain` or `sandbox` with a port (HTTP,
    /// no HTTPS) or a port (TCP). All problems are reported together,
    /// separated by `; `, as Lambda does.
    pub fn validate(&self, api: Api) -> Result<(), ValidationError> {
        let mut problems = Vec::new();
        let versions = match api {
            Api::Telemetry => TELEMETRY_SCHEMA_VERSIONS,
            Api::Logs => LOGS_SCHEMA_VERSIONS,
        };
        match (&self.schema_version, api) {
            (None, Api::Telemetry) => problems.push("schemaVersion is required".to_owned()),
            (Some(v), _) if !versions.contains(&v.as_str()) => {
                problems.push(format!("schemaVersion {v:?} is not supported"))
            }
            _ => {}
        }
        if let Err(e) = self.destination_problem() {
            problems.push(e);
        }
        if self.types.is_empty() {
            problems.push("types should not be empty".to_owned());
        }
        for t in &self.types {
            if let LogType::Other(raw) = t {
                problems.push(format!("type {raw:?} is not supported"));
            }
        }
        if let Some(buffering) = &self.buffering {
            if let Err(e) = buffering.validate() {
                problems.push(e.0);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(problems.join("; ")))
        }
    }

    /// The TCP or HTTP port events go to, once validated.
    pub fn destination_port(&self) -> Option<u16> {
        match self.destination.protocol {
            Protocol::Tcp => self.destination.port,
            _ => self
                .destination
                .uri
                .as_deref()
                .and_then(|u| parse_uri(u).ok())
                .map(|u| u.port),
        }
    }

    fn destination_problem(&self) -> Result<(), String> {
        match &self.destination.protocol {
            Protocol::Http => {
                let uri = self
                    .destination
                    .uri
                    .as_deref()
                    .ok_or("destination.URI is required")?;
                parse_uri(uri).map(|_| ())
            }
            Protocol::Tcp => match self.destination.port {
                Some(0) | None => Err("destination.port is required for TCP".to_owned()),
                Some(_) => Ok(()),
            },
            Protocol::Other(raw) => Err(format!("destination.protocol {raw:?} is not supported")),
        }
    }
}

/// A parsed subscriber URI: `http://<host>:<port><path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberUri {
    /// `sandbox.localdomain` or `sandbox`.
    pub host: String,
    /// The listener's port.
    pub port: u16,
    /// The path, `/` when none was given.
    pub path: String,
}

/// Parses and checks a subscriber URI: plain `http`, host
/// `sandbox.localdomain` or `sandbox`, an explicit port.
pub fn parse_uri(uri: &str) -> Result<SubscriberUri, String> {
    let rest = uri
        .strip_prefix("http://")
        .ok_or_else(|| format!("URI {uri:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| "URI port is not provided".to_owned())?;
    if !host.eq_ignore_ascii_case(SANDBOX_HOST) && !host.eq_ignore_ascii_case(SANDBOX_HOST_SHORT) {
        return Err(format!(
            "URI host must be {SANDBOX_HOST} or {SANDBOX_HOST_SHORT}, got {host:?}"
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("URI port {port:?} is not valid"))?;
    Ok(SubscriberUri {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

// --------------------------------------------------------------------------
// Events
// --------------------------------------------------------------------------

/// One delivered event: `{"time": …, "type": …, "record": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    /// ISO-8601 UTC with milliseconds, e.g. `2022-10-21T14:05:03.165Z`,
    /// kept exactly as sent.
    pub time: String,
    /// The typed record; its variant is the event's `type`.
    pub record: Record,
}

/// The record of an event, by event type.
///
/// The platform's records are boxed and the log lines are not: a batch is
/// mostly `function` and `extension` lines, so an event stays 80 bytes
/// (a `platform.report` inline would make every event of a batch 352).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `platform.initStart`.
    InitStart(Box<InitStart>),
    /// `platform.initRuntimeDone`.
    InitRuntimeDone(Box<InitRuntimeDone>),
    /// `platform.initReport`.
    InitReport(Box<InitReport>),
    /// `platform.start`.
    Start(Box<Start>),
    /// `platform.runtimeDone`.
    RuntimeDone(Box<RuntimeDone>),
    /// `platform.report`.
    Report(Box<Report>),
    /// `platform.restoreStart` (SnapStart).
    RestoreStart(Extra),
    /// `platform.restoreRuntimeDone` (SnapStart).
    RestoreRuntimeDone(Box<RestoreDone>),
    /// `platform.restoreReport` (SnapStart).
    RestoreReport(Box<RestoreDone>),
    /// `platform.extension`: one per extension at the end of Init.
    Extension(Box<ExtensionInfo>),
    /// `platform.telemetrySubscription`.
    TelemetrySubscription(Box<Subscription>),
    /// `platform.logsSubscription` (Logs API).
    LogsSubscription(Box<Subscription>),
    /// `platform.logsDropped`.
    LogsDropped(Box<LogsDropped>),
    /// `platform.end` (Logs API).
    End(Box<End>),
    /// `platform.fault` (Logs API): a line of text.
    Fault(LogRecord),
    /// `function`: one line of the function's output.
    Function(LogRecord),
    /// `extension`: one line of an extension's output.
    ExtensionLog(LogRecord),
    /// A type this crate does not know, kept as sent.
    Other {
        /// The `type` field.
        event_type: String,
        /// The raw `record`.
        record: Value,
    },
}

/// Event type names.
pub mod event_type {
    /// `platform.initStart`
    pub const INIT_START: &str = "platform.initStart";
    /// `platform.initRuntimeDone`
    pub const INIT_RUNTIME_DONE: &str = "platform.initRuntimeDone";
    /// `platform.initReport`
    pub const INIT_REPORT: &str = "platform.initReport";
    /// `platform.start`
    pub const START: &str = "platform.start";
    /// `platform.runtimeDone`
    pub const RUNTIME_DONE: &str = "platform.runtimeDone";
    /// `platform.report`
    pub const REPORT: &str = "platform.report";
    /// `platform.restoreStart`
    pub const RESTORE_START: &str = "platform.restoreStart";
    /// `platform.restoreRuntimeDone`
    pub const RESTORE_RUNTIME_DONE: &str = "platform.restoreRuntimeDone";
    /// `platform.restoreReport`
    pub const RESTORE_REPORT: &str = "platform.restoreReport";
    /// `platform.extension`
    pub const EXTENSION: &str = "platform.extension";
    /// `platform.telemetrySubscription`
    pub const TELEMETRY_SUBSCRIPTION: &str = "platform.telemetrySubscription";
    /// `platform.logsSubscription`
    pub const LOGS_SUBSCRIPTION: &str = "platform.logsSubscription";
    /// `platform.logsDropped`
    pub const LOGS_DROPPED: &str = "platform.logsDropped";
    /// `platform.end`
    pub const END: &str = "platform.end";
    /// `platform.fault`
    pub const FAULT: &str = "platform.fault";
    /// `function`
    pub const FUNCTION: &str = "function";
    /// `extension`
    pub const EXTENSION_LOG: &str = "extension";
}

impl Record {
    /// The event's `type` string.
    pub fn event_type(&self) -> &str {
        use crate::telemetry::event_type as t;
        match self {
            Self::InitStart(_) => t::INIT_START,
            Self::InitRuntimeDone(_) => t::INIT_RUNTIME_DONE,
            Self::InitReport(_) => t::INIT_REPORT,
            Self::Start(_) => t::START,
            Self::RuntimeDone(_) => t::RUNTIME_DONE,
            Self::Report(_) => t::REPORT,
            Self::RestoreStart(_) => t::RESTORE_START,
            Self::RestoreRuntimeDone(_) => t::RESTORE_RUNTIME_DONE,
            Self::RestoreReport(_) => t::RESTORE_REPORT,
            Self::Extension(_) => t::EXTENSION,
            Self::TelemetrySubscription(_) => t::TELEMETRY_SUBSCRIPTION,
            Self::LogsSubscription(_) => t::LOGS_SUBSCRIPTION,
            Self::LogsDropped(_) => t::LOGS_DROPPED,
            Self::End(_) => t::END,
            Self::Fault(_) => t::FAULT,
            Self::Function(_) => t::FUNCTION,
            Self::ExtensionLog(_) => t::EXTENSION_LOG,
            Self::Other { event_type, .. } => event_type,
        }
    }

    /// Whether only the Logs API delivers this record (`platform.end`,
    /// `platform.fault`, `platform.logsSubscription`): a Telemetry API
    /// subscriber never gets it (AWS: Lambda Logs API,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-logs-api.html>,
    /// and the Telemetry API's event list,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html>).
    pub fn is_logs_api_only(&self) -> bool {
        matches!(
            self,
            Self::End(_) | Self::Fault(_) | Self::LogsSubscription(_)
        )
    }

    /// The stream this record belongs to, for subscription filtering.
    pub fn log_type(&self) -> LogType {
        match self {
            Self::Function(_) => LogType::Function,
            Self::ExtensionLog(_) => LogType::Extension,
            Self::Other { event_type, .. } if !event_type.starts_with("platform.") => {
                LogType::from(event_type.as_str())
            }
            _ => LogType::Platform,
        }
    }

    /// Decodes a record given its event type. A known type whose record does
    /// not have the documented shape is an error; an unknown type never is.
    pub fn from_parts(event_type: &str, record: Value) -> Result<Self, serde_json::Error> {
        use crate::telemetry::event_type as t;
        fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
            serde_json::from_value(v)
        }
        Ok(match event_type {
            t::INIT_START => Self::InitStart(de(record)?),
            t::INIT_RUNTIME_DONE => Self::InitRuntimeDone(de(record)?),
            t::INIT_REPORT => Self::InitReport(de(record)?),
            t::START => Self::Start(de(record)?),
            t::RUNTIME_DONE => Self::RuntimeDone(de(record)?),
            t::REPORT => Self::Report(de(record)?),
            t::RESTORE_START => Self::RestoreStart(de(record)?),
            t::RESTORE_RUNTIME_DONE => Self::RestoreRuntimeDone(de(record)?),
            t::RESTORE_REPORT => Self::RestoreReport(de(record)?),
            t::EXTENSION => Self::Extension(de(record)?),
            t::TELEMETRY_SUBSCRIPTION => Self::TelemetrySubscription(de(record)?),
            t::LOGS_SUBSCRIPTION => Self::LogsSubscription(de(record)?),
            t::LOGS_DROPPED => Self::LogsDropped(de(record)?),
            t::END => Self::End(de(record)?),
            t::FAULT => Self::Fault(de(record)?),
            t::FUNCTION => Self::Function(de(record)?),
            t::EXTENSION_LOG => Self::ExtensionLog(de(record)?),
            other => Self::Other {
                event_type: other.to_owned(),
                record,
            },
        })
    }

    /// The record as JSON.
    pub fn to_value(&self) -> Value {
        fn ser<T: Serialize>(v: &T) -> Value {
            // Records are plain data (strings, numbers, maps with string
            // keys): serializing them to a `Value` cannot fail.
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        match self {
            Self::InitStart(r) => ser(r),
            Self::InitRuntimeDone(r) => ser(r),
            Self::InitReport(r) => ser(r),
            Self::Start(r) => ser(r),
            Self::RuntimeDone(r) => ser(r),
            Self::Report(r) => ser(r),
            Self::RestoreStart(r) => ser(r),
            Self::RestoreRuntimeDone(r) | Self::RestoreReport(r) => ser(r),
            Self::Extension(r) => ser(r),
            Self::TelemetrySubscription(r) | Self::LogsSubscription(r) => ser(r),
            Self::LogsDropped(r) => ser(r),
            Self::End(r) => ser(r),
            Self::Fault(r) | Self::Function(r) | Self::ExtensionLog(r) => ser(r),
            Self::Other { record, .. } => record.clone(),
        }
    }
}

impl TelemetryEvent {
    /// Builds an event.
    pub fn new(time: impl Into<String>, record: Record) -> Self {
        Self {
            time: time.into(),
            record,
        }
    }

    /// Decodes one event from a JSON value (one element of a batch).
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

/// The envelope as it is on the wire.
#[derive(Serialize, Deserialize)]
struct RawEvent {
    time: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    record: Value,
}

impl Serialize for TelemetryEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawEvent {
            time: self.time.clone(),
            event_type: self.record.event_type().to_owned(),
            record: self.record.to_value(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TelemetryEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawEvent::deserialize(d)?;
        let record = Record::from_parts(&raw.event_type, raw.record)
            .map_err(|e| D::Error::custom(format!("{}: {e}", raw.event_type)))?;
        Ok(Self {
            time: raw.time,
            record,
        })
    }
}

/// Result of decoding a delivered batch element by element.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// The events that decoded.
    pub events: Vec<TelemetryEvent>,
    /// One entry per element that did not, with its index and raw JSON.
    pub failures: Vec<BatchFailure>,
}

/// One batch element that failed to decode.
#[derive(Debug)]
pub struct BatchFailure {
    /// Position in the batch.
    pub index: usize,
    /// The decode error's text.
    pub error: String,
    /// The element as sent.
    pub raw: Value,
}

/// Decodes a delivered batch (a JSON array of events). A malformed element
/// does not spoil the others: it is listed in
/// [`failures`](DecodedBatch::failures). A body that is not a JSON array at
/// all is an error.
pub fn decode_batch(body: &[u8]) -> Result<DecodedBatch, serde_json::Error> {
    let items: Vec<Value> = serde_json::from_slice(body)?;
    let mut batch = DecodedBatch::default();
    for (index, raw) in items.into_iter().enumerate() {
        match TelemetryEvent::deserialize(&raw) {
            Ok(event) => batch.events.push(event),
            Err(e) => batch.failures.push(BatchFailure {
                index,
                error: e.to_string(),
                raw,
            }),
        }
    }
    Ok(batch)
}

// --------------------------------------------------------------------------
// Records
// --------------------------------------------------------------------------

/// Unknown fields of a record, kept so that nothing is lost on re-encoding.
pub type Extra = Map<String, Value>;

open_enum! {
    /// How the environment was initialized.
    pub enum InitializationType {
        /// A normal cold start.
        OnDemand = "on-demand",
        /// Provisioned concurrency.
        ProvisionedConcurrency = "provisioned-concurrency",
        /// SnapStart.
        SnapStart = "snap-start",
        /// Lambda Managed Instances.
        LambdaManagedInstances = "lambda-managed-instances",
    }
}

open_enum! {
    /// Init phase: `init`, or `invoke` for an init re-run during the first
    /// invoke (a "suppressed" init).
    pub enum Phase {
        /// The Init phase proper.
        Init = "init",
        /// Init re-run during an invoke.
        Invoke = "invoke",
    }
}

open_enum! {
    /// Outcome of a phase.
    pub enum Status {
        /// It worked.
        Success = "success",
        /// A customer error.
        Error = "error",
        /// A platform error (`Sandbox.*`).
        Failure = "failure",
        /// It ran out of time.
        Timeout = "timeout",
    }
}

/// X-Ray context of a platform event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceContext {
    /// Span id, when one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// `X-Amzn-Trace-Id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The trace header.
    pub value: String,
}

/// A timed span, e.g. `responseLatency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// Name of the span.
    pub name: String,
    /// Start, ISO-8601.
    pub start: String,
    /// Duration in milliseconds.
    pub duration_ms: f64,
}

/// `platform.initStart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitStart {
    /// How the environment is initialized.
    pub initialization_type: InitializationType,
    /// `init` or `invoke`.
    pub phase: Phase,
    /// e.g. `python:3.13.v43`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Runtime version ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version_arn: Option<String>,
    /// Function name (newer schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// Function version (newer schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_version: Option<String>,
    /// Environment instance id (newer schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Memory of the instance, in bytes (Managed Instances: RIE
    /// `internal/lambda-managed-instances/interop/events_api.go`,
    /// `InstanceMaxMemory`, set from the function's memory size in bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_max_memory: Option<u64>,
    /// X-Ray context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.initRuntimeDone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitRuntimeDone {
    /// How the environment was initialized.
    pub initialization_type: InitializationType,
    /// `init` or `invoke`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Outcome.
    pub status: Status,
    /// Error type on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// X-Ray context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.initReport`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReport {
    /// How the environment was initialized.
    pub initialization_type: InitializationType,
    /// `init` or `invoke`.
    pub phase: Phase,
    /// Outcome (newer schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Error type on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// `durationMs` of the init.
    pub metrics: DurationMetrics,
    /// Spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// X-Ray context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"durationMs": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationMetrics {
    /// Milliseconds.
    pub duration_ms: f64,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// The request id.
    pub request_id: String,
    /// Function version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The function's ARN (Managed Instances: RIE
    /// `internal/lambda-managed-instances/interop/events_api.go`,
    /// `InvokeStartData.FunctionARN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// X-Ray context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.runtimeDone`: the runtime finished the invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDone {
    /// The request id.
    pub request_id: String,
    /// Outcome.
    pub status: Status,
    /// Error type on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Duration and produced bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RuntimeDoneMetrics>,
    /// `responseLatency`, `responseDuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// Tenant id, for a function with tenant isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// X-Ray context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Metrics of `platform.runtimeDone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDoneMetrics {
    /// Milliseconds.
    pub duration_ms: f64,
    /// Bytes of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_bytes: Option<u64>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.report`: the invocation ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The request id.
    pub request_id: String,
    /// Outcome.
    pub status: Status,
    /// Error type on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The figures of the REPORT line.
    pub metrics: ReportMetrics,
    /// Spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// Tenant id, for a function with tenant isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// X-Ray context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Metrics of `platform.report`. On Managed Instances only `durationMs` is
/// sent, so the others are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportMetrics {
    /// Milliseconds, two decimals.
    #[serde(rename = "durationMs")]
    pub duration_ms: f64,
    /// Billed milliseconds (integer).
    #[serde(
        rename = "billedDurationMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub billed_duration_ms: Option<u64>,
    /// Configured memory, MB.
    #[serde(
        rename = "memorySizeMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_size_mb: Option<u64>,
    /// Peak memory, MB.
    #[serde(
        rename = "maxMemoryUsedMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_memory_used_mb: Option<u64>,
    /// Init duration, only after a cold start.
    #[serde(
        rename = "initDurationMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub init_duration_ms: Option<f64>,
    /// Restore duration (SnapStart).
    #[serde(
        rename = "restoreDurationMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restore_duration_ms: Option<f64>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.restoreRuntimeDone` and `platform.restoreReport`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDone {
    /// Outcome.
    pub status: Status,
    /// Error type on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Duration (restoreReport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<DurationMetrics>,
    /// Spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<Span>>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.extension`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionInfo {
    /// The extension's name.
    pub name: String,
    /// Its state, e.g. `Ready` or `LaunchError`.
    pub state: String,
    /// The events it subscribed to.
    #[serde(default)]
    pub events: Vec<String>,
    /// Why it failed, e.g. `PermissionDenied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.telemetrySubscription` and `platform.logsSubscription`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscriber's name.
    pub name: String,
    /// `Subscribed`.
    pub state: String,
    /// The streams subscribed to.
    #[serde(default)]
    pub types: Vec<String>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.logsDropped`: records lost because a subscriber was too slow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsDropped {
    /// Why, e.g. `Consumer seems to have fallen behind as it has not acknowledged receipt of logs.`
    pub reason: String,
    /// How many records.
    pub dropped_records: u64,
    /// How many bytes.
    pub dropped_bytes: u64,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `platform.end` (Logs API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct End {
    /// The request id.
    pub request_id: String,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A log line: text, or a JSON object when the function uses the JSON log
/// format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogRecord {
    /// A line of text.
    Text(String),
    /// A structured (JSON log format) record.
    Json(Value),
}

#[cfg(test)]
mod tests;
