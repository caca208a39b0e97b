//! The lifecycle of one execution environment, as a pure state machine.
//!
//! [`Lifecycle::transition`] takes one [`Input`] (an API call, a process
//! exit, a timer tick, an invoke or a shutdown request) and the current time,
//! and returns the [`Effect`]s the driver must carry out, or a typed
//! [`Refusal`] that the HTTP layer renders exactly as AWS does. It does no
//! I/O, reads no clock and spawns nothing, so every rule of the contract
//! (sections 1.4, 1.5, 2.2, 4.1-4.3) is unit-tested here with injected time.
//!
//! The phases, in the order Lambda runs them:
//!
//! - **Init**: launch the extensions (name order), wait for every external
//!   one to register, start the runtime, close registration at the runtime's
//!   first `/next`, wait for every extension's `/event/next`, close the
//!   subscriptions. Bounded by the init limit (10 s), or by the function
//!   timeout when Init re-runs inside an invoke (`Phase: invoke`).
//! - **Invoke**: INVOKE to the subscribed extensions, then the event to the
//!   runtime; the response goes back to the caller at once; the invoke ends
//!   when the runtime has called `/next` again and every INVOKE-subscribed
//!   extension has called `/event/next`. Bounded by the function timeout.
//! - **Shutdown**: runtime first (SIGTERM, then SIGKILL after its share),
//!   then SHUTDOWN to the subscribed extensions with a real deadline, SIGKILL
//!   to the others and to every process still alive at the deadline. After a
//!   timeout or a failure this is a *reset*: the next invoke re-runs Init.
//!
//! The first fatal error wins (rapid's `StoreFirstFatalError`): later errors
//! of the same Init or invoke are not allowed to rewrite its error type.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use lext_protocol::error::{error_type, sanitize_runtime_error_type};
use lext_protocol::extensions::{EventType, ShutdownReason};
use lext_protocol::telemetry::Api;

use crate::refusal::Refusal;

/// Init is limited to 10 s for on-demand functions (contract 4.1).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Shutdown budget with at least one external extension (contract 4.3).
pub const SHUTDOWN_BUDGET_EXTERNAL: Duration = Duration::from_millis(2_000);
/// Shutdown budget with internal extensions only.
pub const SHUTDOWN_BUDGET_INTERNAL: Duration = Duration::from_millis(500);
/// The runtime's share of the budget when external extensions exist.
pub const RUNTIME_SHARE_EXTERNAL: Duration = Duration::from_millis(300);
/// rapid waits this long for killed processes to be reaped
/// (`maxProcessExitWait`) before it gives up on them.
pub const MAX_PROCESS_EXIT_WAIT: Duration = Duration::from_millis(2_000);

/// An extension's identifier (the `Lambda-Extension-Identifier` UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtensionId(pub uuid::Uuid);

impl fmt::Display for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The two clocks an input happens at: a monotonic instant for durations and
/// deadlines, and the wall clock (Unix epoch ms) for the `deadlineMs` values
/// that go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time (tokio's clock in the driver, so tests can pause it).
    pub instant: Instant,
    /// Unix epoch milliseconds at the same moment.
    pub epoch_ms: u64,
}

impl Now {
    /// The same moment `d` later, on both clocks.
    pub fn after(self, d: Duration) -> Self {
        Self {
            instant: self.instant + d,
            epoch_ms: self.epoch_ms + d.as_millis() as u64,
        }
    }
}

/// An extension's state, with rapid's names (they appear in the `EXTENSION`
/// line and in refusal messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionState {
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

/// The runtime's state, with rapid's names (`core/states.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeState {
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
pub enum LaunchFailure {
    /// Not executable.
    PermissionDenied,
    /// More than ten extensions.
    TooManyExtensions,
    /// Anything else (missing file, wrong architecture...).
    UnknownError,
}

impl LaunchFailure {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PermissionDenied => error_type::LAUNCH_PERMISSION_DENIED,
            Self::TooManyExtensions => error_type::LAUNCH_TOO_MANY_EXTENSIONS,
            Self::UnknownError => error_type::LAUNCH_UNKNOWN_ERROR,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    /// Go's `ProcessState.String()` wording, which rapid's messages embed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit status {code}"),
            Self::Signal(9) => f.write_str("signal: killed"),
            Self::Signal(15) => f.write_str("signal: terminated"),
            Self::Signal(sig) => write!(f, "signal: {sig}"),
        }
    }
}

/// A process of the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proc {
    /// The function runtime.
    Runtime,
    /// The external extension with this index (name order).
    Extension(usize),
}

/// A signal the driver sends to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: please exit.
    Term,
    /// SIGKILL.
    Kill,
}

/// Which Init this is, for `INIT_REPORT … Phase:` and telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPhase {
    /// The environment's own Init, before any invoke.
    Init,
    /// Init re-run inside an invoke after a reset ("suppressed init").
    Invoke,
}

/// The outcome of an Init, an invoke or a runtime's part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It worked.
    Success,
    /// A customer error (function error, crash, extension error).
    Error,
    /// A platform error.
    Failure,
    /// It ran out of time.
    Timeout,
}

/// What the caller of an invoke gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The runtime's `/response` body.
    Response,
    /// The runtime's `/error` body (a handled function error).
    FunctionError {
        /// The `Lambda-Runtime-Function-Error-Type` header, if any.
        error_type: Option<String>,
    },
    /// An error made by the platform: `{"errorType","errorMessage"}` with
    /// `X-Amz-Function-Error: Unhandled`.
    PlatformError {
        /// E.g. `Sandbox.Timedout`, `Runtime.ExitError`.
        error_type: String,
        /// E.g. `RequestId: … Error: Task timed out after 3.00 seconds`.
        message: String,
    },
}

/// One extension's line of the Init summary (`EXTENSION` / `platform.extension`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionSummary {
    /// Its name.
    pub name: String,
    /// Its state at the end of Init.
    pub state: ExtensionState,
    /// The events it subscribed to, INVOKE first.
    pub events: Vec<EventType>,
    /// For `LaunchError`, why.
    pub error_type: Option<&'static str>,
}

/// The figures of one invoke, for `END`/`REPORT` and `platform.report`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The invocation's request id.
    pub request_id: String,
    /// From the event's release to the end of the invoke (or the timeout).
    pub duration: Duration,
    /// The Init that preceded this invoke, after a cold start.
    pub init_duration: Option<Duration>,
    /// The outcome.
    pub status: Status,
    /// The error type, when the status is not success.
    pub error_type: Option<String>,
}

/// What the driver must do. Effects are ordered: carry them out in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Init begins: `platform.initStart`.
    InitStarted {
        /// Init or invoke phase.
        phase: InitPhase,
    },
    /// Start the external extension with this index.
    LaunchExtension {
        /// Index in name order.
        index: usize,
    },
    /// Start the runtime: every external extension has registered.
    StartRuntime,
    /// Forward a subscription (Telemetry or Logs API) to the telemetry hub;
    /// its `TELEMETRY`/`LOGS` line follows.
    Subscribed {
        /// The subscriber's name.
        name: String,
        /// The API used.
        api: Api,
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
        phase: InitPhase,
        /// How long Init ran.
        duration: Duration,
        /// `Error` or `Timeout`.
        status: Status,
        /// The first fatal error (none for a timeout).
        error_type: Option<String>,
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
        /// Wall-clock deadline, epoch ms.
        deadline_ms: u64,
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
        /// Success, error (function error) or timeout/failure.
        status: Status,
        /// The error type, if any.
        error_type: Option<String>,
        /// From the event's release to the runtime's next `/next` (or the
        /// timeout): `metrics.durationMs`.
        duration: Duration,
    },
    /// Print `Task timed out after N.NN seconds`.
    TimedOut {
        /// The invocation's request id.
        request_id: String,
        /// The configured timeout.
        after: Duration,
    },
    /// Print a platform fault line (`RequestId: … Error: …` then the type).
    Fault {
        /// The invocation, if one was running.
        request_id: Option<String>,
        /// The message.
        message: String,
        /// The error type.
        error_type: String,
    },
    /// The invoke is over: `END`, `REPORT`, `platform.report`.
    InvokeEnded(Report),
    /// Stop every process of the environment (SIGSTOP to each group).
    Freeze,
    /// Resume them (SIGCONT).
    Thaw,
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

/// Everything that can happen to the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Run Init now (the driver does so when it starts).
    Init,
    /// An extension could not be launched.
    LaunchFailed {
        /// Index in name order.
        index: usize,
        /// Why.
        failure: LaunchFailure,
    },
    /// The runtime could not be started.
    RuntimeLaunchFailed {
        /// The OS error, for the fault line.
        message: String,
    },
    /// `POST /extension/register` (body and headers already parsed).
    Register {
        /// A fresh identifier, made by the driver.
        id: ExtensionId,
        /// `Lambda-Extension-Name`, non-empty.
        name: String,
        /// The events asked for (already known to be INVOKE or SHUTDOWN).
        events: Vec<EventType>,
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
    },
    /// `POST /extension/exit/error`.
    ExtensionExitError {
        /// Who.
        id: ExtensionId,
    },
    /// `PUT /telemetry` or `PUT /logs` with a valid body.
    Subscribe {
        /// Who.
        id: ExtensionId,
        /// Which API.
        api: Api,
    },
    /// `GET /runtime/invocation/next`.
    RuntimeNext,
    /// `POST /runtime/invocation/{id}/response`.
    RuntimeResponse {
        /// The id in the path.
        request_id: String,
        /// The body is over the payload limit.
        too_large: bool,
    },
    /// `POST /runtime/invocation/{id}/error`.
    RuntimeError {
        /// The id in the path.
        request_id: String,
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
    },
    /// `POST /runtime/init/error`.
    RuntimeInitError {
        /// `Lambda-Runtime-Function-Error-Type`, if sent.
        error_type: Option<String>,
    },
    /// A caller invokes the function. Only fed when
    /// [`Lifecycle::accepts_invoke`] is true: invokes queue in the driver.
    Invoke {
        /// A fresh request id.
        request_id: String,
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
pub struct LifecycleConfig {
    /// External extension names, in launch (name) order.
    pub extensions: Vec<String>,
    /// The function timeout.
    pub function_timeout: Duration,
    /// The Init limit ([`INIT_TIMEOUT`] in Lambda).
    pub init_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    External,
    Internal,
}

#[derive(Debug)]
struct Extension {
    name: String,
    kind: Kind,
    id: Option<ExtensionId>,
    state: ExtensionState,
    invoke: bool,
    shutdown: bool,
    /// The process is running (external extensions only).
    alive: bool,
    launch_failure: Option<LaunchFailure>,
    /// SHUTDOWN is due at its next `/event/next`.
    shutdown_pending: bool,
    shutdown_sent: bool,
}

impl Extension {
    fn events(&self) -> Vec<EventType> {
        let mut events = Vec::with_capacity(2);
        if self.invoke {
            events.push(EventType::Invoke);
        }
        if self.shutdown {
            events.push(EventType::Shutdown);
        }
        events
    }

    fn summary(&self) -> ExtensionSummary {
        ExtensionSummary {
            name: self.name.clone(),
            state: self.state,
            events: self.events(),
            error_type: self.launch_failure.map(LaunchFailure::as_str),
        }
    }
}

#[derive(Debug)]
struct InitCtx {
    phase: InitPhase,
    started: Instant,
    deadline: Instant,
    /// The invoke that triggered a phase-invoke Init.
    pending_invoke: Option<PendingInvoke>,
}

#[derive(Debug)]
struct PendingInvoke {
    request_id: String,
    started: Now,
}

#[derive(Debug)]
struct InvokeCtx {
    request_id: String,
    started: Instant,
    deadline: Instant,
    responded: bool,
    runtime_done: bool,
    init_duration: Option<Duration>,
    /// Error type of a handled function error (REPORT has no Status for
    /// it, but `platform.report` does).
    function_error: Option<String>,
}

#[derive(Debug)]
struct ShutdownCtx {
    reason: ShutdownReason,
    stopped: bool,
    /// End of the budget: SIGKILL to whatever is left.
    deadline: Instant,
    deadline_ms: u64,
    /// While the runtime has its share: when to SIGKILL it.
    runtime_kill_at: Option<Instant>,
    killed_all: bool,
    /// After SIGKILL, how long to wait for exits before giving up.
    give_up_at: Instant,
}

#[derive(Debug)]
enum Phase {
    /// No processes: before the first Init, or after a reset.
    Down,
    Init(InitCtx),
    /// Init done, no invoke running: frozen.
    Idle,
    Invoke(InvokeCtx),
    Shutdown(ShutdownCtx),
    /// Shut down for good.
    Stopped,
}

/// The state machine of one execution environment. See the module docs.
#[derive(Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    phase: Phase,
    extensions: Vec<Extension>,
    by_id: HashMap<ExtensionId, usize>,
    runtime: RuntimeState,
    runtime_alive: bool,
    registration_open: bool,
    /// The first fatal error of the current Init or invoke.
    fatal: Option<String>,
    /// Init duration waiting for the first REPORT after it.
    cold_start: Option<Duration>,
    /// Bumped on every Init; process exits carry it.
    generation: u64,
    frozen: bool,
    /// A spindown was asked for while a reset was running.
    stop_requested: bool,
    /// How the process behind the current fatal error ended, for the
    /// fault line (`Runtime exited with error: exit status 1`).
    fault_detail: Option<String>,
}

type Step = Result<Vec<Effect>, Refusal>;

impl Lifecycle {
    /// A new environment, down (no processes) until [`Input::Init`] or an
    /// invoke.
    pub fn new(config: LifecycleConfig) -> Self {
        Self {
            config,
            phase: Phase::Down,
            extensions: Vec::new(),
            by_id: HashMap::new(),
            runtime: RuntimeState::NotStarted,
            runtime_alive: false,
            registration_open: false,
            fatal: None,
            cold_start: None,
            generation: 0,
            frozen: false,
            stop_requested: false,
            fault_detail: None,
        }
    }

    /// Which Init's processes are current; the driver tags exits with it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether an [`Input::Invoke`] may be fed now (the environment is idle
    /// or down). Otherwise the driver keeps the invoke queued.
    pub fn accepts_invoke(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Down)
    }

    /// Whether the environment is stopped for good.
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// Whether Init is running.
    pub fn is_initializing(&self) -> bool {
        matches!(self.phase, Phase::Init(_))
    }

    /// The external extension with this identifier: its index and name.
    pub fn extension(&self, id: ExtensionId) -> Option<(usize, &str, bool)> {
        self.by_id.get(&id).map(|&i| {
            let e = &self.extensions[i];
            (i, e.name.as_str(), e.kind == Kind::External)
        })
    }

    /// The state of the extension with this index.
    pub fn extension_state(&self, index: usize) -> Option<ExtensionState> {
        self.extensions.get(index).map(|e| e.state)
    }

    /// The runtime's state.
    pub fn runtime_state(&self) -> RuntimeState {
        self.runtime
    }

    /// The earliest pending deadline: the driver feeds [`Input::Tick`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Init(init) => Some(init.deadline),
            Phase::Invoke(inv) => Some(inv.deadline),
            Phase::Shutdown(s) => Some(match s.runtime_kill_at {
                Some(at) => at,
                None if s.killed_all => s.give_up_at,
                None => s.deadline,
            }),
            Phase::Down | Phase::Idle | Phase::Stopped => None,
        }
    }

    /// Applies one input at `now`. See the module docs.
    pub fn transition(&mut self, input: Input, now: Now) -> Step {
        match input {
            Input::Init => Ok(self.start_init(InitPhase::Init, None, now)),
            Input::LaunchFailed { index, failure } => Ok(self.launch_failed(index, failure, now)),
            Input::RuntimeLaunchFailed { message } => {
                let mut fx = vec![Effect::Fault {
                    request_id: None,
                    message,
                    error_type: error_type::RUNTIME_INVALID_ENTRYPOINT.to_owned(),
                }];
                self.runtime = RuntimeState::Exited;
                fx.extend(self.fatal_error(error_type::RUNTIME_INVALID_ENTRYPOINT.into(), now));
                Ok(fx)
            }
            Input::Register { id, name, events } => self.register(id, name, events),
            Input::ExtensionNext { id } => self.extension_next(id, now),
            Input::ExtensionInitError { id } => self.extension_init_error(id, now),
            Input::ExtensionExitError { id } => self.extension_exit_error(id, now),
            Input::Subscribe { id, api } => self.subscribe(id, api),
            Input::RuntimeNext => self.runtime_next(now),
            Input::RuntimeResponse {
                request_id,
                too_large,
            } => self.runtime_response(&request_id, too_large),
            Input::RuntimeError {
                request_id,
                error_type,
            } => self.runtime_error(&request_id, error_type),
            Input::RuntimeInitError { error_type } => self.runtime_init_error(error_type, now),
            Input::Invoke { request_id } => Ok(self.invoke(request_id, now)),
            Input::Exited {
                generation,
                proc,
                status,
            } => Ok(self.exited(generation, proc, status, now)),
            Input::Tick => Ok(self.tick(now)),
            Input::Shutdown => Ok(self.spindown(now)),
        }
    }

    // ----- Init -------------------------------------------------------------

    fn start_init(
        &mut self,
        phase: InitPhase,
        pending: Option<PendingInvoke>,
        now: Now,
    ) -> Vec<Effect> {
        if !matches!(self.phase, Phase::Down) {
            // Already initialized or on the way: nothing to do.
            return Vec::new();
        }
        self.generation += 1;
        self.fatal = None;
        self.fault_detail = None;
        self.by_id.clear();
        self.runtime = RuntimeState::NotStarted;
        self.runtime_alive = false;
        self.registration_open = true;
        self.frozen = false;
        let deadline = match (&pending, phase) {
            // A re-run inside an invoke shares the invoke's timeout.
            (Some(p), InitPhase::Invoke) => p.started.instant + self.config.function_timeout,
            _ => now.instant + self.config.init_timeout,
        };
        self.phase = Phase::Init(InitCtx {
            phase,
            started: now.instant,
            deadline,
            pending_invoke: pending,
        });
        self.extensions = self
            .config
            .extensions
            .iter()
            .map(|name| Extension {
                name: name.clone(),
                kind: Kind::External,
                id: None,
                state: ExtensionState::Started,
                invoke: false,
                shutdown: false,
                alive: false,
                launch_failure: None,
                shutdown_pending: false,
                shutdown_sent: false,
            })
            .collect();
        let mut fx = vec![Effect::InitStarted { phase }];
        let mut too_many = false;
        for (index, ext) in self.extensions.iter_mut().enumerate() {
            if index < lext_protocol::MAX_EXTENSIONS {
                ext.alive = true;
                fx.push(Effect::LaunchExtension { index });
            } else {
                // An 11th file is never started (rapid's launch refuses it).
                ext.state = ExtensionState::LaunchError;
                ext.launch_failure = Some(LaunchFailure::TooManyExtensions);
                too_many = true;
            }
        }
        if too_many {
            fx.extend(self.fatal_error(error_type::EXTENSION_LAUNCH_ERROR.into(), now));
        } else {
            fx.extend(self.maybe_start_runtime());
        }
        fx
    }

    fn launch_failed(&mut self, index: usize, failure: LaunchFailure, now: Now) -> Vec<Effect> {
        let Some(ext) = self.extensions.get_mut(index) else {
            return Vec::new();
        };
        if !matches!(self.phase, Phase::Init(_)) || ext.state != ExtensionState::Started {
            return Vec::new();
        }
        ext.state = ExtensionState::LaunchError;
        ext.launch_failure = Some(failure);
        ext.alive = false;
        self.fatal_error(error_type::EXTENSION_LAUNCH_ERROR.into(), now)
    }

    /// Starts the runtime once no external extension is still `Started`.
    fn maybe_start_runtime(&mut self) -> Vec<Effect> {
        if self.runtime != RuntimeState::NotStarted || !matches!(self.phase, Phase::Init(_)) {
            return Vec::new();
        }
        let waiting = self
            .extensions
            .iter()
            .any(|e| e.kind == Kind::External && e.state == ExtensionState::Started);
        if waiting {
            return Vec::new();
        }
        self.runtime = RuntimeState::Started;
        self.runtime_alive = true;
        vec![Effect::StartRuntime]
    }

    fn register(&mut self, id: ExtensionId, name: String, events: Vec<EventType>) -> Step {
        // Only INVOKE and SHUTDOWN reach here; the router refuses the rest.
        let invoke = events.contains(&EventType::Invoke);
        let shutdown = events.contains(&EventType::Shutdown);
        let external = self
            .extensions
            .iter()
            .position(|e| e.kind == Kind::External && e.name == name);
        if let Some(index) = external {
            let ext = &mut self.extensions[index];
            if ext.state != ExtensionState::Started || !matches!(self.phase, Phase::Init(_)) {
                return Err(Refusal::ExtensionState {
                    from: ext.state,
                    to: ExtensionState::Registered,
                    who: name,
                });
            }
            ext.state = ExtensionState::Registered;
            ext.id = Some(id);
            ext.invoke = invoke;
            ext.shutdown = shutdown;
            self.by_id.insert(id, index);
            return Ok(self.maybe_start_runtime());
        }
        // No launched file has this name: rapid takes the caller for an
        // internal extension (contract 1.5).
        if !self.registration_open || !matches!(self.phase, Phase::Init(_)) {
            return Err(Refusal::RegistrationClosed);
        }
        if shutdown {
            return Err(Refusal::ShutdownForInternal);
        }
        if self.extensions.iter().any(|e| e.name == name) {
            return Err(Refusal::NameTaken);
        }
        if self.extensions.len() >= lext_protocol::MAX_EXTENSIONS {
            return Err(Refusal::TooManyExtensions);
        }
        self.by_id.insert(id, self.extensions.len());
        self.extensions.push(Extension {
            name,
            kind: Kind::Internal,
            id: Some(id),
            state: ExtensionState::Registered,
            invoke,
            shutdown: false,
            alive: false,
            launch_failure: None,
            shutdown_pending: false,
            shutdown_sent: false,
        });
        Ok(Vec::new())
    }

    fn known(&self, id: ExtensionId) -> Result<usize, Refusal> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or(Refusal::UnknownExtension(id))
    }

    /// [`known`](Self::known) for `init/error` and `exit/error`, which
    /// answer an unknown identifier with their own message
    /// (`Unknown Lambda-Extension-Identifier`, contract 1.3).
    fn known_reporter(&self, id: ExtensionId) -> Result<usize, Refusal> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or(Refusal::UnknownIdentifier)
    }

    fn extension_next(&mut self, id: ExtensionId, now: Now) -> Step {
        let index = self.known(id)?;
        let ext = &mut self.extensions[index];
        if !matches!(
            ext.state,
            ExtensionState::Registered | ExtensionState::Running
        ) {
            return Err(Refusal::ExtensionState {
                from: ext.state,
                to: ExtensionState::Ready,
                who: id.to_string(),
            });
        }
        ext.state = ExtensionState::Ready;
        if ext.shutdown_pending {
            // SHUTDOWN waited for this extension to finish its invoke.
            ext.shutdown_pending = false;
            ext.shutdown_sent = true;
            ext.state = ExtensionState::Running;
            if let Phase::Shutdown(s) = &self.phase {
                return Ok(vec![Effect::DeliverShutdown {
                    id,
                    reason: s.reason.clone(),
                    deadline_ms: s.deadline_ms,
                }]);
            }
        }
        Ok(match self.phase {
            Phase::Init(_) => self.maybe_finish_init(now),
            Phase::Invoke(_) => self.maybe_finish_invoke(now),
            _ => Vec::new(),
        })
    }

    fn extension_init_error(&mut self, id: ExtensionId, now: Now) -> Step {
        let index = self.known_reporter(id)?;
        let ext = &mut self.extensions[index];
        match ext.state {
            // A repeated init/error is a no-op (contract 1.4).
            ExtensionState::InitError => Ok(Vec::new()),
            ExtensionState::Registered if matches!(self.phase, Phase::Init(_)) => {
                ext.state = ExtensionState::InitError;
                Ok(self.fatal_error(error_type::EXTENSION_INIT_ERROR.into(), now))
            }
            from => Err(Refusal::ExtensionState {
                from,
                to: ExtensionState::InitError,
                who: id.to_string(),
            }),
        }
    }

    fn extension_exit_error(&mut self, id: ExtensionId, now: Now) -> Step {
        let index = self.known_reporter(id)?;
        let ext = &mut self.extensions[index];
        match ext.state {
            ExtensionState::Registered | ExtensionState::Ready | ExtensionState::Running => {
                ext.state = ExtensionState::ExitError;
                if matches!(self.phase, Phase::Shutdown(_)) {
                    // Already going down; the error is recorded in the state.
                    return Ok(Vec::new());
                }
                Ok(self.fatal_error(error_type::EXTENSION_EXIT_ERROR.into(), now))
            }
            from => Err(Refusal::ExtensionState {
                from,
                to: ExtensionState::Exited,
                who: id.to_string(),
            }),
        }
    }

    fn subscribe(&mut self, id: ExtensionId, api: Api) -> Step {
        let index = self.known(id)?;
        // Subscriptions close at the end of Init (contract 3.1).
        if !matches!(self.phase, Phase::Init(_)) {
            return Err(Refusal::SubscriptionClosed(api));
        }
        Ok(vec![Effect::Subscribed {
            name: self.extensions[index].name.clone(),
            api,
        }])
    }

    fn maybe_finish_init(&mut self, now: Now) -> Vec<Effect> {
        let Phase::Init(init) = &self.phase else {
            return Vec::new();
        };
        if self.runtime != RuntimeState::Ready || self.fatal.is_some() {
            return Vec::new();
        }
        if self
            .extensions
            .iter()
            .any(|e| e.state != ExtensionState::Ready)
        {
            return Vec::new();
        }
        let duration = now.instant.saturating_duration_since(init.started);
        let pending = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Init(init) => init.pending_invoke,
            _ => None,
        };
        self.cold_start = Some(duration);
        let mut fx = vec![Effect::InitDone {
            duration,
            extensions: self.extensions.iter().map(Extension::summary).collect(),
        }];
        match pending {
            Some(p) => fx.extend(self.start_invoke(p, now)),
            None => fx.extend(self.freeze()),
        }
        fx
    }

    // ----- Runtime API ------------------------------------------------------

    fn runtime_next(&mut self, now: Now) -> Step {
        match self.runtime {
            RuntimeState::Started => {
                self.runtime = RuntimeState::Ready;
                // The runtime's first /next closes registration (RIE
                // `registrations.TurnOff`).
                self.registration_open = false;
                Ok(self.maybe_finish_init(now))
            }
            RuntimeState::ResponseSent => {
                self.runtime = RuntimeState::Ready;
                let mut fx = Vec::new();
                if let Phase::Invoke(inv) = &mut self.phase {
                    inv.runtime_done = true;
                    let (status, error_type) = match &inv.function_error {
                        Some(t) => (Status::Error, Some(t.clone())),
                        None => (Status::Success, None),
                    };
                    fx.push(Effect::RuntimeDone {
                        request_id: inv.request_id.clone(),
                        status,
                        error_type,
                        duration: now.instant.saturating_duration_since(inv.started),
                    });
                }
                fx.extend(self.maybe_finish_invoke(now));
                Ok(fx)
            }
            from => Err(Refusal::RuntimeState {
                from,
                to: RuntimeState::Ready,
            }),
        }
    }

    fn current_invoke(
        &mut self,
        request_id: &str,
        to: RuntimeState,
    ) -> Result<&mut InvokeCtx, Refusal> {
        let from = self.runtime;
        if from != RuntimeState::Running {
            return Err(Refusal::RuntimeState { from, to });
        }
        match &mut self.phase {
            Phase::Invoke(inv) if inv.request_id == request_id => Ok(inv),
            Phase::Invoke(_) => Err(Refusal::InvalidRequestId),
            _ => Err(Refusal::RuntimeState { from, to }),
        }
    }

    fn runtime_response(&mut self, request_id: &str, too_large: bool) -> Step {
        let inv = self.current_invoke(request_id, RuntimeState::InvocationResponse)?;
        inv.responded = true;
        let rid = inv.request_id.clone();
        self.runtime = RuntimeState::ResponseSent;
        if too_large {
            // The runtime gets 413; the caller gets the platform's error and
            // the invoke counts as failed (contract 2.2).
            let t = error_type::FUNCTION_RESPONSE_SIZE_TOO_LARGE;
            if let Phase::Invoke(inv) = &mut self.phase {
                inv.function_error = Some(t.to_owned());
            }
            return Ok(vec![Effect::Respond {
                request_id: rid,
                outcome: Outcome::PlatformError {
                    error_type: t.to_owned(),
                    message: format!(
                        "Response payload size exceeded maximum allowed payload size ({} bytes).",
                        lext_protocol::MAX_PAYLOAD_SIZE
                    ),
                },
            }]);
        }
        Ok(vec![Effect::Respond {
            request_id: rid,
            outcome: Outcome::Response,
        }])
    }

    fn runtime_error(&mut self, request_id: &str, error_type: Option<String>) -> Step {
        let inv = self.current_invoke(request_id, RuntimeState::InvocationErrorResponse)?;
        inv.responded = true;
        // Telemetry and REPORT record the sanitised type; the caller gets the
        // body unchanged (contract 2.2).
        inv.function_error =
            Some(sanitize_runtime_error_type(error_type.as_deref().unwrap_or("")).to_owned());
        let rid = inv.request_id.clone();
        self.runtime = RuntimeState::ResponseSent;
        Ok(vec![Effect::Respond {
            request_id: rid,
            outcome: Outcome::FunctionError { error_type },
        }])
    }

    fn runtime_init_error(&mut self, error_type: Option<String>, now: Now) -> Step {
        if self.runtime != RuntimeState::Started || !matches!(self.phase, Phase::Init(_)) {
            return Err(Refusal::RuntimeState {
                from: self.runtime,
                to: RuntimeState::InitError,
            });
        }
        self.runtime = RuntimeState::InitError;
        let t = sanitize_runtime_error_type(error_type.as_deref().unwrap_or("")).to_owned();
        Ok(self.fatal_error(t, now))
    }

    // ----- Invoke -----------------------------------------------------------

    fn invoke(&mut self, request_id: String, now: Now) -> Vec<Effect> {
        let pending = PendingInvoke {
            request_id,
            started: now,
        };
        match self.phase {
            Phase::Idle => self.start_invoke(pending, now),
            // After a reset (or before any Init), Init re-runs inside the
            // invoke, under its timeout (`Phase: invoke`).
            Phase::Down => self.start_init(InitPhase::Invoke, Some(pending), now),
            // The driver only feeds invokes when `accepts_invoke`; anything
            // else is a driver bug, answered rather than lost.
            _ => vec![Effect::Respond {
                request_id: pending.request_id,
                outcome: Outcome::PlatformError {
                    error_type: error_type::SANDBOX_FAILURE.to_owned(),
                    message: "the environment is busy".to_owned(),
                },
            }],
        }
    }

    fn start_invoke(&mut self, p: PendingInvoke, now: Now) -> Vec<Effect> {
        let mut fx = self.thaw();
        let deadline_ms = p.started.epoch_ms + self.config.function_timeout.as_millis() as u64;
        fx.push(Effect::InvokeStarted {
            request_id: p.request_id.clone(),
        });
        // Extensions first, then the runtime (contract 4.2 step 2).
        for ext in &mut self.extensions {
            if ext.invoke && ext.state == ExtensionState::Ready {
                if let Some(id) = ext.id {
                    ext.state = ExtensionState::Running;
                    fx.push(Effect::DeliverInvoke {
                        id,
                        request_id: p.request_id.clone(),
                        deadline_ms,
                    });
                }
            }
        }
        self.runtime = RuntimeState::Running;
        fx.push(Effect::DeliverToRuntime {
            request_id: p.request_id.clone(),
            deadline_ms,
        });
        self.fatal = None;
        self.fault_detail = None;
        self.phase = Phase::Invoke(InvokeCtx {
            request_id: p.request_id,
            // A phase-invoke Init counts in the invoke's timeout but not in
            // its Duration (it is reported as Init Duration).
            started: now.instant,
            deadline: p.started.instant + self.config.function_timeout,
            responded: false,
            runtime_done: false,
            init_duration: self.cold_start.take(),
            function_error: None,
        });
        fx
    }

    fn maybe_finish_invoke(&mut self, now: Now) -> Vec<Effect> {
        let Phase::Invoke(inv) = &self.phase else {
            return Vec::new();
        };
        if !inv.runtime_done {
            return Vec::new();
        }
        // Only INVOKE-subscribed extensions are waited for; the others stay
        // blocked in /event/next all along.
        if self
            .extensions
            .iter()
            .any(|e| e.invoke && e.state == ExtensionState::Running)
        {
            return Vec::new();
        }
        let Phase::Invoke(inv) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Vec::new();
        };
        let status = if inv.function_error.is_some() {
            Status::Error
        } else {
            Status::Success
        };
        let mut fx = vec![Effect::InvokeEnded(Report {
            request_id: inv.request_id,
            duration: now.instant.saturating_duration_since(inv.started),
            init_duration: inv.init_duration,
            status,
            error_type: inv.function_error,
        })];
        fx.extend(self.freeze());
        fx
    }

    fn freeze(&mut self) -> Vec<Effect> {
        if self.frozen {
            return Vec::new();
        }
        self.frozen = true;
        vec![Effect::Freeze]
    }

    fn thaw(&mut self) -> Vec<Effect> {
        if !self.frozen {
            return Vec::new();
        }
        self.frozen = false;
        vec![Effect::Thaw]
    }

    // ----- Failures ---------------------------------------------------------

    /// Records a fatal error (the first one wins) and fails whatever phase is
    /// running: Init fails with `INIT_REPORT`, an invoke fails with a
    /// platform error, an idle environment is reset.
    fn fatal_error(&mut self, error_type: String, now: Now) -> Vec<Effect> {
        if self.fatal.is_some() {
            return Vec::new();
        }
        self.fatal = Some(error_type.clone());
        let mut fx = Vec::new();
        match std::mem::replace(&mut self.phase, Phase::Down) {
            Phase::Init(init) => {
                fx.push(Effect::InitFailed {
                    phase: init.phase,
                    duration: now.instant.saturating_duration_since(init.started),
                    status: Status::Error,
                    error_type: Some(error_type.clone()),
                    extensions: self.extensions.iter().map(Extension::summary).collect(),
                });
                if let Some(p) = init.pending_invoke {
                    fx.extend(self.fail_pending(p, Status::Error, error_type, None, now));
                }
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            Phase::Invoke(inv) => {
                let message = format!(
                    "RequestId: {} Error: {}",
                    inv.request_id,
                    self.fault_text(&error_type)
                );
                fx.push(Effect::Fault {
                    request_id: Some(inv.request_id.clone()),
                    message: message.clone(),
                    error_type: error_type.clone(),
                });
                if !inv.responded {
                    fx.push(Effect::Respond {
                        request_id: inv.request_id.clone(),
                        outcome: Outcome::PlatformError {
                            error_type: error_type.clone(),
                            message,
                        },
                    });
                }
                fx.push(Effect::InvokeEnded(Report {
                    request_id: inv.request_id,
                    duration: now.instant.saturating_duration_since(inv.started),
                    init_duration: inv.init_duration,
                    status: Status::Error,
                    error_type: Some(error_type),
                }));
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            Phase::Idle => {
                fx.push(Effect::Fault {
                    request_id: None,
                    message: self.fault_text(&error_type),
                    error_type,
                });
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            other => {
                // Down, Stopped or already shutting down: nothing to fail.
                self.phase = other;
            }
        }
        fx
    }

    fn fault_text(&self, error_type: &str) -> String {
        if let Some(detail) = &self.fault_detail {
            return detail.clone();
        }
        match error_type {
            error_type::RUNTIME_EXIT_ERROR => "Runtime exited with error".to_owned(),
            error_type::EXTENSION_CRASH => {
                "Extension exited before completing the request".to_owned()
            }
            other => other.to_owned(),
        }
    }

    /// Answers an invoke whose phase-invoke Init failed or timed out: it
    /// still gets `START`, `END` and `REPORT`.
    fn fail_pending(
        &mut self,
        p: PendingInvoke,
        status: Status,
        error_type: String,
        message: Option<String>,
        now: Now,
    ) -> Vec<Effect> {
        let message = message.unwrap_or_else(|| {
            format!(
                "RequestId: {} Error: {}",
                p.request_id,
                self.fault_text(&error_type)
            )
        });
        vec![
            Effect::InvokeStarted {
                request_id: p.request_id.clone(),
            },
            Effect::Respond {
                request_id: p.request_id.clone(),
                outcome: Outcome::PlatformError {
                    error_type: error_type.clone(),
                    message,
                },
            },
            Effect::InvokeEnded(Report {
                request_id: p.request_id,
                duration: now.instant.saturating_duration_since(p.started.instant),
                init_duration: None,
                status,
                error_type: Some(error_type),
            }),
        ]
    }

    fn exited(&mut self, generation: u64, proc: Proc, status: ExitStatus, now: Now) -> Vec<Effect> {
        if generation != self.generation {
            return Vec::new();
        }
        let shutting_down = matches!(self.phase, Phase::Shutdown(_));
        let error = match proc {
            Proc::Runtime => {
                if !self.runtime_alive {
                    return Vec::new();
                }
                self.runtime_alive = false;
                let before = self.runtime;
                self.runtime = RuntimeState::Exited;
                if before == RuntimeState::InitError {
                    // The fatal error was stored by /init/error already.
                    None
                } else {
                    Some((
                        error_type::RUNTIME_EXIT_ERROR,
                        format!("Runtime exited with error: {status}"),
                    ))
                }
            }
            Proc::Extension(index) => {
                let Some(ext) = self.extensions.get_mut(index) else {
                    return Vec::new();
                };
                if !ext.alive {
                    return Vec::new();
                }
                ext.alive = false;
                if shutting_down {
                    if matches!(
                        ext.state,
                        ExtensionState::Running
                            | ExtensionState::Ready
                            | ExtensionState::Registered
                            | ExtensionState::Started
                    ) {
                        ext.state = if ext.shutdown_sent && status.success() {
                            ExtensionState::Exited
                        } else {
                            ExtensionState::ShutdownFailed
                        };
                    }
                    None
                } else if matches!(
                    ext.state,
                    ExtensionState::InitError | ExtensionState::ExitError
                ) {
                    None
                } else {
                    Some((
                        error_type::EXTENSION_CRASH,
                        format!("Extension {} exited: {status}", ext.name),
                    ))
                }
            }
        };
        if shutting_down {
            let runtime_stage =
                matches!(&self.phase, Phase::Shutdown(s) if s.runtime_kill_at.is_some());
            if proc == Proc::Runtime && runtime_stage {
                // The runtime went before its share ran out: on to the
                // extensions at once.
                return self.shutdown_extensions(now);
            }
            return self.maybe_finish_shutdown();
        }
        match error {
            Some((t, text)) => {
                let mut fx = Vec::new();
                if self.fatal.is_none() {
                    self.fault_detail = Some(text.clone());
                }
                // In an invoke the fault line names the request id; during
                // Init it has none (fatal_error prints the Idle one).
                if matches!(self.phase, Phase::Init(_)) {
                    fx.push(Effect::Fault {
                        request_id: None,
                        message: text,
                        error_type: t.to_owned(),
                    });
                }
                fx.extend(self.fatal_error(t.to_owned(), now));
                fx
            }
            // An extension that reported init/exit error and then exited
            // (as it should): its report already failed the phase and
            // started the reset, so its exit is not a second error.
            None => Vec::new(),
        }
    }

    // ----- Timers -----------------------------------------------------------

    fn tick(&mut self, now: Now) -> Vec<Effect> {
        let t = now.instant;
        match &mut self.phase {
            Phase::Init(init) if t >= init.deadline => {
                let Phase::Init(init) = std::mem::replace(&mut self.phase, Phase::Down) else {
                    return Vec::new();
                };
                self.fatal = Some(error_type::SANDBOX_TIMEDOUT.to_owned());
                let mut fx = vec![Effect::InitFailed {
                    phase: init.phase,
                    duration: t.saturating_duration_since(init.started),
                    status: Status::Timeout,
                    error_type: None,
                    extensions: self.extensions.iter().map(Extension::summary).collect(),
                }];
                if let Some(p) = init.pending_invoke {
                    let secs = self.config.function_timeout.as_secs_f64();
                    let message = format!(
                        "RequestId: {} Error: Task timed out after {secs:.2} seconds",
                        p.request_id
                    );
                    let rid = p.request_id.clone();
                    fx.push(Effect::TimedOut {
                        request_id: rid,
                        after: self.config.function_timeout,
                    });
                    fx.extend(self.fail_pending(
                        p,
                        Status::Timeout,
                        error_type::SANDBOX_TIMEDOUT.to_owned(),
                        Some(message),
                        now,
                    ));
                }
                fx.extend(self.begin_shutdown(ShutdownReason::Timeout, now));
                fx
            }
            Phase::Invoke(inv) if t >= inv.deadline => {
                let Phase::Invoke(inv) = std::mem::replace(&mut self.phase, Phase::Down) else {
                    return Vec::new();
                };
                self.fatal = Some(error_type::SANDBOX_TIMEDOUT.to_owned());
                let after = self.config.function_timeout;
                let mut fx = vec![Effect::TimedOut {
                    request_id: inv.request_id.clone(),
                    after,
                }];
                if !inv.responded {
                    fx.push(Effect::Respond {
                        request_id: inv.request_id.clone(),
                        outcome: Outcome::PlatformError {
                            error_type: error_type::SANDBOX_TIMEDOUT.to_owned(),
                            message: format!(
                                "RequestId: {} Error: Task timed out after {:.2} seconds",
                                inv.request_id,
                                after.as_secs_f64()
                            ),
                        },
                    });
                }
                if !inv.runtime_done {
                    fx.push(Effect::RuntimeDone {
                        request_id: inv.request_id.clone(),
                        status: Status::Timeout,
                        error_type: None,
                        duration: after,
                    });
                }
                // REPORT shows the timeout as Duration (contract 4.2).
                fx.push(Effect::InvokeEnded(Report {
                    request_id: inv.request_id,
                    duration: after,
                    init_duration: inv.init_duration,
                    status: Status::Timeout,
                    error_type: None,
                }));
                fx.extend(self.begin_shutdown(ShutdownReason::Timeout, now));
                fx
            }
            Phase::Shutdown(s) => {
                if let Some(at) = s.runtime_kill_at {
                    if t >= at {
                        return self.shutdown_extensions(now);
                    }
                    return Vec::new();
                }
                if !s.killed_all && t >= s.deadline {
                    s.killed_all = true;
                    let mut fx = self.kill_all();
                    fx.extend(self.maybe_finish_shutdown());
                    return fx;
                }
                if s.killed_all && t >= s.give_up_at {
                    let unreaped = usize::from(self.runtime_alive)
                        + self.extensions.iter().filter(|e| e.alive).count();
                    self.runtime_alive = false;
                    for e in &mut self.extensions {
                        if e.alive {
                            e.alive = false;
                            e.state = ExtensionState::ShutdownFailed;
                        }
                    }
                    return self.finish_shutdown(unreaped);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    // ----- Shutdown ---------------------------------------------------------

    fn spindown(&mut self, now: Now) -> Vec<Effect> {
        match &mut self.phase {
            Phase::Down => {
                self.phase = Phase::Stopped;
                vec![Effect::ShutdownDone {
                    reason: ShutdownReason::Spindown,
                    stopped: true,
                    unreaped: 0,
                }]
            }
            Phase::Stopped => Vec::new(),
            Phase::Shutdown(s) => {
                // A reset is running: stop for good when it is done.
                s.stopped = true;
                self.stop_requested = true;
                Vec::new()
            }
            Phase::Init(_) | Phase::Idle | Phase::Invoke(_) => {
                self.stop_requested = true;
                let mut fx = Vec::new();
                match std::mem::replace(&mut self.phase, Phase::Down) {
                    Phase::Invoke(inv) if !inv.responded => fx.push(Effect::Respond {
                        request_id: inv.request_id,
                        outcome: Outcome::PlatformError {
                            error_type: error_type::SANDBOX_FAILURE.to_owned(),
                            message: "The local environment was shut down during the invoke"
                                .to_owned(),
                        },
                    }),
                    Phase::Init(init) => {
                        if let Some(p) = init.pending_invoke {
                            fx.push(Effect::Respond {
                                request_id: p.request_id,
                                outcome: Outcome::PlatformError {
                                    error_type: error_type::SANDBOX_FAILURE.to_owned(),
                                    message: "The local environment was shut down during Init"
                                        .to_owned(),
                                },
                            });
                        }
                    }
                    _ => {}
                }
                fx.extend(self.begin_shutdown(ShutdownReason::Spindown, now));
                fx
            }
        }
    }

    /// The shutdown budget for this configuration (contract 4.3).
    fn budget(&self) -> (Duration, Duration) {
        let external = self.extensions.iter().any(|e| e.kind == Kind::External);
        let internal = self.extensions.iter().any(|e| e.kind == Kind::Internal);
        match (external, internal) {
            (true, true) => (SHUTDOWN_BUDGET_EXTERNAL, SHUTDOWN_BUDGET_INTERNAL),
            (true, false) => (SHUTDOWN_BUDGET_EXTERNAL, RUNTIME_SHARE_EXTERNAL),
            (false, true) => (SHUTDOWN_BUDGET_INTERNAL, SHUTDOWN_BUDGET_INTERNAL),
            (false, false) => (Duration::ZERO, Duration::ZERO),
        }
    }

    fn begin_shutdown(&mut self, reason: ShutdownReason, now: Now) -> Vec<Effect> {
        // Frozen processes cannot handle SIGTERM or SHUTDOWN: thaw first.
        let mut fx = self.thaw();
        self.registration_open = false;
        let (budget, runtime_share) = self.budget();
        let stopped = self.stop_requested || reason == ShutdownReason::Spindown;
        self.phase = Phase::Shutdown(ShutdownCtx {
            reason,
            stopped,
            deadline: now.instant + budget,
            deadline_ms: now.epoch_ms + budget.as_millis() as u64,
            runtime_kill_at: None,
            killed_all: false,
            give_up_at: now.instant + budget + MAX_PROCESS_EXIT_WAIT,
        });
        if self.runtime_alive && !runtime_share.is_zero() {
            fx.push(Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Term,
            });
            if let Phase::Shutdown(s) = &mut self.phase {
                s.runtime_kill_at = Some(now.instant + runtime_share);
            }
            return fx;
        }
        fx.extend(self.shutdown_extensions(now));
        fx
    }

    /// Second stage: the runtime is gone or out of time; SHUTDOWN to the
    /// subscribed extensions, SIGKILL to the others.
    fn shutdown_extensions(&mut self, _now: Now) -> Vec<Effect> {
        let Phase::Shutdown(s) = &mut self.phase else {
            return Vec::new();
        };
        s.runtime_kill_at = None;
        let reason = s.reason.clone();
        let deadline_ms = s.deadline_ms;
        let mut fx = Vec::new();
        if self.runtime_alive {
            fx.push(Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Kill,
            });
        }
        for (index, ext) in self.extensions.iter_mut().enumerate() {
            if !ext.alive || ext.shutdown_sent || ext.shutdown_pending {
                continue;
            }
            let can_receive = ext.shutdown
                && matches!(ext.state, ExtensionState::Ready | ExtensionState::Running);
            match (can_receive, ext.state, ext.id) {
                (true, ExtensionState::Ready, Some(id)) => {
                    ext.state = ExtensionState::Running;
                    ext.shutdown_sent = true;
                    fx.push(Effect::DeliverShutdown {
                        id,
                        reason: reason.clone(),
                        deadline_ms,
                    });
                }
                // Still busy with an INVOKE (a timeout): SHUTDOWN waits for
                // its next /event/next, within the same deadline.
                (true, _, _) => ext.shutdown_pending = true,
                // It reported init/exit error and is expected to exit by
                // itself (D-EXT); it has until the deadline, like the others.
                (false, ExtensionState::InitError | ExtensionState::ExitError, _) => {}
                _ => fx.push(Effect::Signal {
                    proc: Proc::Extension(index),
                    signal: Signal::Kill,
                }),
            }
        }
        fx.extend(self.maybe_finish_shutdown());
        fx
    }

    fn kill_all(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.runtime_alive {
            fx.push(Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Kill,
            });
        }
        for (index, ext) in self.extensions.iter().enumerate() {
            if ext.alive {
                fx.push(Effect::Signal {
                    proc: Proc::Extension(index),
                    signal: Signal::Kill,
                });
            }
        }
        fx
    }

    fn maybe_finish_shutdown(&mut self) -> Vec<Effect> {
        let Phase::Shutdown(s) = &self.phase else {
            return Vec::new();
        };
        if s.runtime_kill_at.is_some()
            || self.runtime_alive
            || self.extensions.iter().any(|e| e.alive)
        {
            return Vec::new();
        }
        self.finish_shutdown(0)
    }

    fn finish_shutdown(&mut self, unreaped: usize) -> Vec<Effect> {
        let Phase::Shutdown(s) = std::mem::replace(&mut self.phase, Phase::Down) else {
            return Vec::new();
        };
        self.frozen = false;
        self.by_id.clear();
        if s.stopped {
            self.phase = Phase::Stopped;
        }
        vec![Effect::ShutdownDone {
            reason: s.reason,
            stopped: s.stopped,
            unreaped,
        }]
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
