//! The lifecycle's vocabulary: what goes in ([`Input`]), what comes out
//! ([`Effect`]), and the values both carry.
//!
//! The names of the states are rapid's (the core of the AWS Lambda Runtime
//! Interface Emulator, RIE: github.com/aws/aws-lambda-runtime-interface-emulator),
//! because they appear in platform lines and refusal messages. Sources:
//! AWS: Lambda execution environment lifecycle,
//! <https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lext_protocol::error::error_type;
use lext_protocol::extensions::{EventType, ShutdownReason};
use lext_protocol::telemetry::{Api, Phase, Status, SubscribeRequest};

/// Shutdown budget with at least one external extension (AWS: Lambda
/// execution environment lifecycle, "Shutdown phase").
pub(crate) const SHUTDOWN_BUDGET_EXTERNAL: Duration = Duration::from_millis(2_000);
/// Shutdown budget with internal extensions only (same page).
pub(crate) const SHUTDOWN_BUDGET_INTERNAL: Duration = Duration::from_millis(500);
/// The runtime's share of the budget when external extensions exist (same
/// page, and the aws-samples/graceful-shutdown-with-aws-lambda README).
pub(crate) const RUNTIME_SHARE_EXTERNAL: Duration = Duration::from_millis(300);
/// rapid waits this long for killed processes to be reaped
/// (`maxProcessExitWait`, RIE: internal/lambda/rapid/shutdown.go) before it
/// gives up on them.
pub(crate) const MAX_PROCESS_EXIT_WAIT: Duration = Duration::from_millis(2_000);

/// An extension's identifier (the `Lambda-Extension-Identifier` UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ExtensionId(pub(crate) uuid::Uuid);

impl fmt::Display for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The two clocks an input happens at: a monotonic instant for durations and
/// deadlines, and the wall clock (Unix epoch ms) for the `deadlineMs` values
/// that go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic time (tokio's clock in the driver, so tests can pause it).
    pub(crate) instant: Instant,
    /// Unix epoch milliseconds at the same moment.
    pub(crate) epoch_ms: u64,
}

/// An extension's state, with rapid's names (they appear in the `EXTENSION`
/// line and in refusal messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtensionState {
    /// Launched, not registered yet.
    Started,
    /// Registered, has not asked for an event yet.
    Registered,
    /// Blocked in `/event/next`.
    Ready,
    /// Handling an event.
    Running,
    /// Called `init/error`.
    InitError,
    /// Called `exit/error`.
    ExitError,
    /// Exited with status 0 after SHUTDOWN.
    Exited,
    /// Killed, or exited non-zero, during shutdown.
    ShutdownFailed,
    /// Could not be started.
    LaunchError,
}

impl fmt::Display for ExtensionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Started => "Started",
            Self::Registered => "Registered",
            Self::Ready => "Ready",
            Self::Running => "Running",
            Self::InitError => "InitError",
            Self::ExitError => "ExitError",
            Self::Exited => "Exited",
            Self::ShutdownFailed => "ShutdownFailed",
            Self::LaunchError => "LaunchError",
        })
    }
}

/// The runtime's state, with rapid's names (RIE:
/// internal/lambda/core/states.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimeState {
    /// Not started (Init has not reached it, or the environment is down).
    NotStarted,
    /// Started, has not called `/next` yet.
    Started,
    /// Blocked in `/next`.
    Ready,
    /// Handling an invocation.
    Running,
    /// Posted `/response`.
    InvocationResponse,
    /// Posted `/error`.
    InvocationErrorResponse,
    /// Posted its result; the next `/next` ends its part of the invoke.
    ResponseSent,
    /// Posted `/init/error`.
    InitError,
    /// Its process is gone.
    Exited,
}

impl fmt::Display for RuntimeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotStarted => "NotStarted",
            Self::Started => "Started",
            Self::Ready => "Ready",
            Self::Running => "Running",
            Self::InvocationResponse => "InvocationResponse",
            Self::InvocationErrorResponse => "InvocationErrorResponse",
            Self::ResponseSent => "RuntimeResponseSentState",
            Self::InitError => "InitError",
            Self::Exited => "Exited",
        })
    }
}

/// Why an extension could not be launched (the `Error Type:` of its
/// `EXTENSION` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaunchFailure {
    /// Not executable.
    PermissionDenied,
    /// More than ten extensions.
    TooManyExtensions,
    /// Anything else (missing file, wrong architecture...).
    UnknownError,
}

impl LaunchFailure {
    /// The wire string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::PermissionDenied => error_type::LAUNCH_PERMISSION_DENIED,
            Self::TooManyExtensions => error_type::LAUNCH_TOO_MANY_EXTENSIONS,
            Self::UnknownError => error_type::LAUNCH_UNKNOWN_ERROR,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Killed (SIGKILL) by the kernel because the environment's memory was
    /// over the function's memory setting.
    OutOfMemory,
}

impl ExitStatus {
    /// Exit code 0.
    pub(crate) fn success(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    /// Go's `ProcessState.String()` wording, which rapid's messages embed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit status {code}"),
            Self::Signal(9) | Self::OutOfMemory => f.write_str("signal: killed"),
            Self::Signal(15) => f.write_str("signal: terminated"),
            Self::Signal(sig) => write!(f, "signal: {sig}"),
        }
    }
}

/// A process of the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Proc {
    /// The function runtime.
    Runtime,
    /// The external extension with this index (name order).
    Extension(usize),
}

/// A signal the driver sends to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGTERM: please exit.
    Term,
    /// SIGKILL.
    Kill,
}

/// Why an Init or an invoke failed: one cause, one kind.
///
/// The `REPORT` and `INIT_REPORT` lines, the `platform.*` records and the
/// caller's answer are all derived from it, so nothing downstream has to
/// guess the kind of an error from how its type is spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The function answered `/invocation/error`: the invoke failed, the
    /// environment stays. The sanitised `Lambda-Runtime-Function-Error-Type`
    /// (`Runtime.Unknown` when absent or malformed).
    Function(String),
    /// The runtime reported a failed Init with `/init/error`; the sanitised
    /// type, e.g. `Runtime.ImportModuleError`.
    RuntimeInit(String),
    /// The runtime process exited (`Runtime.ExitError`).
    RuntimeExit,
    /// A process of the environment was killed for using more memory than
    /// the function has (`Runtime.OutOfMemory`, whichever process it was).
    OutOfMemory,
    /// The runtime could not be started (`Runtime.InvalidEntrypoint`).
    RuntimeLaunch,
    /// The response was over the 6 MB payload limit
    /// (`Function.ResponseSizeTooLarge`).
    ResponseTooLarge,
    /// An extension could not be launched (`Extension.LaunchError`).
    ExtensionLaunch,
    /// An extension called `init/error` (`Extension.InitError`).
    ExtensionInit,
    /// An extension called `exit/error` (`Extension.ExitError`).
    ExtensionExit,
    /// An extension process exited outside shutdown (`Extension.Crash`).
    ExtensionCrash,
    /// Init or the invoke ran out of time (`Sandbox.Timedout`).
    Timeout,
    /// The local environment itself ended the invoke, for example a
    /// shutdown asked for while it ran (`Sandbox.Failure`).
    Sandbox,
    /// Managed Instances: an extension registered for an event it may not
    /// have (`Extension.InvalidEventType`), which fails Init.
    InvalidEventType,
}

impl Fault {
    /// The `errorType` this fault is reported with.
    pub(crate) fn error_type(&self) -> &str {
        match self {
            Self::Function(t) | Self::RuntimeInit(t) => t,
            Self::RuntimeExit => error_type::RUNTIME_EXIT_ERROR,
            Self::OutOfMemory => error_type::RUNTIME_OUT_OF_MEMORY,
            Self::RuntimeLaunch => error_type::RUNTIME_INVALID_ENTRYPOINT,
            Self::ResponseTooLarge => error_type::FUNCTION_RESPONSE_SIZE_TOO_LARGE,
            Self::ExtensionLaunch => error_type::EXTENSION_LAUNCH_ERROR,
            Self::ExtensionInit => error_type::EXTENSION_INIT_ERROR,
            Self::ExtensionExit => error_type::EXTENSION_EXIT_ERROR,
            Self::ExtensionCrash => error_type::EXTENSION_CRASH,
            Self::Timeout => error_type::SANDBOX_TIMEDOUT,
            Self::Sandbox => error_type::SANDBOX_FAILURE,
            Self::InvalidEventType => error_type::INVALID_EVENT_TYPE,
        }
    }

    /// The telemetry `status`: `timeout` for a timeout, `error` otherwise
    /// (every other fault is the function's or an extension's).
    pub(crate) fn status(&self) -> Status {
        match self {
            Self::Timeout => Status::Timeout,
            _ => Status::Error,
        }
    }

    /// Whether the `REPORT` line names it (`Status: error\tError Type: …`).
    /// A handled function error does not: the runtime answered, and the
    /// line looks like a success (its status is in `platform.report`).
    pub(crate) fn shown_on_report_line(&self) -> bool {
        !matches!(self, Self::Function(_))
    }
}

/// What the caller of an invoke gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The runtime's `/response`.
    Response {
        /// The body, unchanged.
        body: Bytes,
        /// The runtime's `Content-Type`, if it sent one.
        content_type: Option<String>,
    },
    /// The runtime's `/error` body, unchanged (a handled function error).
    FunctionError {
        /// The body.
        body: Bytes,
    },
    /// The runtime started a streamed response
    /// (`Lambda-Runtime-Function-Response-Mode: streaming`): its bytes go
    /// to the caller as they come, outside the lifecycle, and
    /// [`Input::RuntimeStreamEnd`] ends it.
    Stream {
        /// The runtime's `Content-Type`, if it sent one.
        content_type: Option<String>,
    },
    /// Managed Instances: the invoke was not run at all, and its caller
    /// gets 400 with `Error-Type` and `{"errorType"}` (RIE
    /// `internal/lambda-managed-instances/invoke/invoke_router.go`,
    /// `aws-lambda-rie/internal/invoke/responder.go`).
    Rejected {
        /// `Runtime.Unavailable` or `Client.DuplicatedInvokeId`.
        error_type: &'static str,
    },
    /// An error made by the platform: `{"errorType","errorMessage"}` with
    /// `X-Amz-Function-Error: Unhandled`.
    PlatformError {
        /// Its kind (the `errorType`).
        fault: Fault,
        /// E.g. `RequestId: … Error: Task timed out after 3.00 seconds`.
        message: String,
    },
}

/// One extension's line of the Init summary (`EXTENSION` / `platform.extension`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtensionSummary {
    /// Its name.
    pub(crate) name: String,
    /// Its state at the end of Init.
    pub(crate) state: ExtensionState,
    /// The events it subscribed to, INVOKE first.
    pub(crate) events: Vec<EventType>,
    /// For `LaunchError`, why.
    pub(crate) error_type: Option<&'static str>,
}

/// The figures of one invoke, for `END`/`REPORT` and `platform.report`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    /// The invocation's request id.
    pub(crate) request_id: String,
    /// From the event's release to the end of the invoke (or the timeout).
    pub(crate) duration: Duration,
    /// The Init that preceded this invoke, after a cold start.
    pub(crate) init_duration: Option<Duration>,
    /// Why it failed; `None` for a success.
    pub(crate) fault: Option<Fault>,
}

impl Report {
    /// The telemetry status.
    pub(crate) fn status(&self) -> Status {
        self.fault.as_ref().map_or(Status::Success, Fault::status)
    }

    /// The error type, when it failed.
    #[cfg(test)]
    pub(crate) fn error_type(&self) -> Option<&str> {
        self.fault.as_ref().map(Fault::error_type)
    }
}

/// The timing of a streamed response, for the `spans` of
/// `platform.runtimeDone` (AWS: Telemetry API schema reference,
/// <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html>):
/// `responseLatency` runs from the event's release to the start of the
/// response, `responseDuration` from there to its last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseSpans {
    /// The event's release, epoch ms (the start of `responseLatency`).
    pub(crate) released_ms: u64,
    /// `responseLatency`.
    pub(crate) latency: Duration,
    /// `responseDuration` (it starts at `released_ms + latency`).
    pub(crate) duration: Duration,
}

/// What the driver must do. Effects are ordered: carry them out in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Refuse the API call (or the invoke) that made this batch, and still
    /// carry out the rest: a refused call that changes the environment
    /// (Managed Instances: a registration for INVOKE is refused and fails
    /// Init). Only ever first in a batch.
    Refuse(super::Refusal),
    /// Init begins: `platform.initStart`.
    InitStarted {
        /// Init or invoke phase.
        phase: Phase,
    },
    /// Start the external extension with this index.
    LaunchExtension {
        /// Index in name order.
        index: usize,
    },
    /// Start the runtime: every external extension has registered.
    StartRuntime,
    /// Hand a subscription (Telemetry or Logs API) to the telemetry hub,
    /// which may still refuse it (an extension mixing the two APIs); its
    /// `TELEMETRY`/`LOGS` line follows acceptance.
    Subscribe {
        /// The subscriber's name.
        name: String,
        /// The API used.
        api: Api,
        /// The validated request.
        request: Box<SubscribeRequest>,
    },
    /// Init is complete: print the `EXTENSION` lines, emit
    /// `platform.initRuntimeDone`, `platform.extension`s and
    /// `platform.initReport`, and close the subscriptions.
    InitDone {
        /// How long Init took.
        duration: Duration,
        /// One entry per extension.
        extensions: Vec<ExtensionSummary>,
    },
    /// Init failed: `EXTENSION` lines, then `INIT_REPORT`.
    InitFailed {
        /// Init or invoke phase.
        phase: Phase,
        /// How long Init ran.
        duration: Duration,
        /// The first fatal error ([`Fault::Timeout`] for a timeout).
        fault: Fault,
        /// One entry per extension.
        extensions: Vec<ExtensionSummary>,
    },
    /// An invoke starts: `START` and `platform.start`.
    InvokeStarted {
        /// Its request id.
        request_id: String,
    },
    /// Answer the extension's pending `/event/next` with INVOKE.
    DeliverInvoke {
        /// The extension.
        id: ExtensionId,
        /// The invocation's request id.
        request_id: String,
        /// Wall-clock deadline, epoch ms.
        deadline_ms: u64,
    },
    /// Answer the runtime's pending `/next` with the invocation.
    DeliverToRuntime {
        /// The invocation's request id.
        request_id: String,
        /// `Lambda-Runtime-Invocation-Id`: fresh for every `/next` answer.
        invocation_id: String,
        /// Wall-clock deadline, epoch ms.
        deadline_ms: u64,
        /// The payload.
        payload: Bytes,
        /// The client context JSON.
        client_context: Option<String>,
    },
    /// Answer the caller of the invoke.
    Respond {
        /// The invocation's request id.
        request_id: String,
        /// What it gets.
        outcome: Outcome,
    },
    /// The runtime's part is over (`platform.runtimeDone`).
    RuntimeDone {
        /// The invocation's request id.
        request_id: String,
        /// Why the runtime's part failed (a function error or a timeout);
        /// `None` for a success.
        fault: Option<Fault>,
        /// From the event's release to the runtime's next `/next` (or the
        /// timeout): `metrics.durationMs`.
        duration: Duration,
        /// The `responseLatency` and `responseDuration` spans of a
        /// streamed response that ended.
        spans: Option<ResponseSpans>,
    },
    /// Print `Task timed out after N.NN seconds`.
    TimedOut {
        /// The invocation's request id.
        request_id: String,
        /// The configured timeout.
        after: Duration,
    },
    /// Print a platform fault line (`RequestId: … Error: …`) then its
    /// error type (`platform.fault` for Logs API subscribers).
    FaultLine {
        /// The message.
        message: String,
        /// The fault.
        fault: Fault,
    },
    /// The invoke is over: `END`, `REPORT`, `platform.report`.
    InvokeEnded(Report),
    /// Stop every process of the environment (SIGSTOP to each group).
    Freeze,
    /// Resume them (SIGCONT).
    Thaw,
    /// A process did not exit within its share of the shutdown budget and
    /// is about to be SIGKILLed: say which and why, as rapid warns
    /// (`Deadline: the agent <name> did not exit after deadline ...;
    /// Killing it.`, RIE `internal/lambda/rapid/shutdown.go`). The
    /// [`Effect::Signal`] that kills it follows.
    MissedDeadline {
        /// Which process.
        proc: Proc,
        /// Its name: the extension's, or `runtime`.
        name: String,
        /// The time it had.
        budget: Duration,
    },
    /// Signal a process group.
    Signal {
        /// Which process.
        proc: Proc,
        /// Which signal.
        signal: Signal,
    },
    /// Answer the extension's pending `/event/next` with SHUTDOWN.
    DeliverShutdown {
        /// The extension.
        id: ExtensionId,
        /// The lowercase reason.
        reason: ShutdownReason,
        /// End of the shutdown window, epoch ms.
        deadline_ms: u64,
    },
    /// Shutdown is over: every process is gone (or was given up on).
    ShutdownDone {
        /// Why it ran.
        reason: ShutdownReason,
        /// The environment is stopped for good (a spindown); otherwise it
        /// was a reset and the next invoke re-runs Init.
        stopped: bool,
        /// Processes that did not go away within [`MAX_PROCESS_EXIT_WAIT`]
        /// after SIGKILL (normally 0).
        unreaped: usize,
    },
}

impl Effect {
    /// The invoke this effect is about, when it is about one: under
    /// Managed Instances the driver tells the invokes in flight apart by it.
    pub(crate) fn request_id(&self) -> Option<&str> {
        match self {
            Self::InvokeStarted { request_id }
            | Self::DeliverToRuntime { request_id, .. }
            | Self::Respond { request_id, .. }
            | Self::RuntimeDone { request_id, .. }
            | Self::TimedOut { request_id, .. } => Some(request_id),
            Self::InvokeEnded(report) => Some(&report.request_id),
            _ => None,
        }
    }
}

/// Everything that can happen to the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Run Init now (the driver does so when it starts).
    Init,
    /// Extensions could not be launched: every failure of one batch of
    /// launches at once, so that Init's summary shows them all.
    LaunchFailed {
        /// Index in name order, and why.
        failures: Vec<(usize, LaunchFailure)>,
    },
    /// The runtime could not be started.
    RuntimeLaunchFailed {
        /// The OS error, for the fault line.
        message: String,
    },
    /// `POST /extension/register` (body and headers already parsed).
    Register {
        /// A fresh identifier, made by the router.
        id: ExtensionId,
        /// `Lambda-Extension-Name`, non-empty.
        name: String,
        /// The events asked for (already known to be INVOKE or SHUTDOWN).
        events: Vec<EventType>,
        /// `Lambda-Extension-Accept-Feature` names `accountId`.
        account_id: bool,
    },
    /// `GET /extension/event/next`.
    ExtensionNext {
        /// Who.
        id: ExtensionId,
    },
    /// `POST /extension/init/error`.
    ExtensionInitError {
        /// Who.
        id: ExtensionId,
        /// `Lambda-Extension-Function-Error-Type` (logged, not interpreted).
        error_type: String,
    },
    /// `POST /extension/exit/error`.
    ExtensionExitError {
        /// Who.
        id: ExtensionId,
        /// `Lambda-Extension-Function-Error-Type` (logged, not interpreted).
        error_type: String,
    },
    /// `PUT /telemetry` or `PUT /logs` with a valid body.
    Subscribe {
        /// Who.
        id: ExtensionId,
        /// Which API.
        api: Api,
        /// The request, validated against the API's rules by the router,
        /// or why it is invalid: that 400 is answered only once the
        /// extension is known and the API open, as rapid checks the caller
        /// before the body.
        request: Result<Box<SubscribeRequest>, String>,
    },
    /// `GET /runtime/invocation/next`.
    RuntimeNext,
    /// `POST /runtime/invocation/{id}/response`.
    RuntimeResponse {
        /// The id in the path.
        request_id: String,
        /// `Lambda-Runtime-Invocation-Id`, when the runtime echoes it.
        invocation_id: Option<String>,
        /// The body, for the caller (empty when too large).
        body: Bytes,
        /// Its `Content-Type`, for the caller.
        content_type: Option<String>,
        /// The body is over the payload limit.
        too_large: bool,
    },
    /// `POST /runtime/invocation/{id}/response` with
    /// `Lambda-Runtime-Function-Response-Mode: streaming`: its headers have
    /// come, its body is still coming.
    RuntimeStreamStart {
        /// The id in the path.
        request_id: String,
        /// `Lambda-Runtime-Invocation-Id`, when the runtime echoes it.
        invocation_id: Option<String>,
        /// Its `Content-Type`, for the caller.
        content_type: Option<String>,
    },
    /// The streamed body of the current invoke ended.
    RuntimeStreamEnd {
        /// The id in the path.
        request_id: String,
        /// The `Lambda-Runtime-Function-Error-Type` trailer, if sent (a
        /// mid-stream error).
        error_type: Option<String>,
        /// The body went past the streaming limit.
        too_large: bool,
        /// Bytes the runtime wrote, for `producedBytes` (the driver's).
        produced_bytes: u64,
    },
    /// `POST /runtime/invocation/{id}/error`.
    RuntimeError {
        /// The id in the path.
        request_id: String,
        /// `Lambda-Runtime-Invocation-Id`, when the runtime echoes it.
        invocation_id: Option<String>,
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
        /// The body, passed to the caller unchanged.
        body: Bytes,
    },
    /// `POST /runtime/init/error`.
    RuntimeInitError {
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
    },
    /// A caller invokes the function. Only fed when
    /// [`Lifecycle::accepts_invoke`](super::Lifecycle::accepts_invoke) is
    /// true: invokes queue in the driver.
    Invoke {
        /// A fresh request id.
        request_id: String,
        /// A fresh invocation id (`Lambda-Runtime-Invocation-Id`).
        invocation_id: String,
        /// The payload, for the runtime.
        payload: Bytes,
        /// The client context JSON, for the runtime.
        client_context: Option<String>,
    },
    /// A process ended.
    Exited {
        /// Which Init's processes it belongs to (stale exits are ignored).
        generation: u64,
        /// Which process.
        proc: Proc,
        /// How.
        status: ExitStatus,
    },
    /// Time passed; fire whatever deadline is due.
    Tick,
    /// Shut down for good (Ctrl-C, end of `--invoke N`): a spindown.
    Shutdown,
}

/// The configuration the lifecycle needs.
#[derive(Debug, Clone)]
pub(crate) struct LifecycleConfig {
    /// External extension names, in launch (name) order.
    pub(crate) extensions: Vec<String>,
    /// The function timeout.
    pub(crate) function_timeout: Duration,
    /// The Init limit (10 s for on-demand functions in Lambda).
    pub(crate) init_timeout: Duration,
    /// Lambda Managed Instances, with this many runtime workers at most
    /// (`AWS_LAMBDA_MAX_CONCURRENCY`); `None` for an on-demand function.
    pub(crate) managed: Option<u32>,
}
