//! The lifecycle of one execution environment, as a pure state machine.
//!
//! [`Lifecycle::transition`] takes one [`Input`] (an API call, a process
//! exit, a timer tick, an invoke or a shutdown request) and the current time,
//! and returns the [`Effect`]s the driver must carry out, or a typed
//! [`Refusal`] that the HTTP layer renders exactly as AWS does. It does no
//! I/O, reads no clock and spawns nothing, so every rule of Init, Invoke and
//! Shutdown is unit-tested here with injected time.
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
//!
//! # Sources
//!
//! Each rule's comment names where it comes from: a page of AWS's Lambda
//! developer guide, or a file of rapid, the Go core of the AWS Lambda
//! Runtime Interface Emulator (RIE,
//! github.com/aws/aws-lambda-runtime-interface-emulator; paths under its
//! `internal/lambda/`). The pages, by the short names the comments use:
//!
//! - AWS: Lambda execution environment lifecycle,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html>
//! - AWS: Extensions API,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html>
//! - AWS: Runtime API,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>
//! - AWS: Telemetry API,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>
//! - AWS: Lambda quotas,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
//! - aws-samples/graceful-shutdown-with-aws-lambda, its README:
//!   <https://github.com/aws-samples/graceful-shutdown-with-aws-lambda>
//!
//! # Layout
//!
//! - this file: the [`Lifecycle`] and its private state, its queries, and
//!   the dispatch of each [`Input`] to the rule that handles it;
//! - `vocabulary`: the inputs, effects and the values they carry;
//! - `refusal`: every call the sandbox turns down, typed;
//! - `init`, `invoke`, `failure`, `shutdown`: the rules, each an
//!   `impl Lifecycle` block: Init and the calls only Init accepts; the
//!   invoke and the Runtime API calls it answers; fatal errors, timeouts
//!   and process exits; the shutdown sequence and its timers.
//! - `lmi`: Lambda Managed Instances (runtime workers, concurrent invokes,
//!   per-invoke timeouts), fed first when the environment is one; what it
//!   does not handle falls through to the rules above.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lext_protocol::extensions::{EventType, ShutdownReason};
use lext_protocol::telemetry::Phase;

mod failure;
mod init;
mod invoke;
mod lmi;
mod refusal;
mod shutdown;
#[cfg(test)]
mod tests;
mod vocabulary;

pub(crate) use self::refusal::Refusal;
pub(crate) use self::vocabulary::{
    Effect, ExitStatus, ExtensionId, ExtensionState, ExtensionSummary, Fault, Input, LaunchFailure,
    LifecycleConfig, Now, Outcome, Proc, Report, ResponseSpans, RuntimeState, Signal,
    MAX_PROCESS_EXIT_WAIT, RUNTIME_SHARE_EXTERNAL, SHUTDOWN_BUDGET_EXTERNAL,
    SHUTDOWN_BUDGET_INTERNAL,
};

/// Whether an extension is a process of its own (a file of
/// `/opt/extensions`) or lives inside the runtime process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    External,
    Internal,
}

/// One extension of the current Init.
#[derive(Debug)]
struct Extension {
    name: String,
    kind: Kind,
    /// Set when it registers.
    id: Option<ExtensionId>,
    state: ExtensionState,
    /// Subscribed to INVOKE.
    invoke: bool,
    /// Subscribed to SHUTDOWN (external extensions only).
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

/// A running Init.
#[derive(Debug)]
struct InitCtx {
    phase: Phase,
    started: Instant,
    deadline: Instant,
    /// The invoke that triggered a phase-invoke Init.
    pending_invoke: Option<PendingInvoke>,
}

/// An invoke accepted but not yet handed to the runtime.
#[derive(Debug)]
struct PendingInvoke {
    request_id: String,
    invocation_id: String,
    payload: Bytes,
    client_context: Option<String>,
    /// When the caller's invoke arrived: its timeout counts from here.
    started: Now,
}

/// A running invoke.
#[derive(Debug)]
struct InvokeCtx {
    request_id: String,
    invocation_id: String,
    /// When the event was released: the start of its `Duration`.
    started: Instant,
    deadline: Instant,
    /// The caller has its answer.
    responded: bool,
    /// The runtime has called `/next` after answering.
    runtime_done: bool,
    init_duration: Option<Duration>,
    /// A failure that did not end the invoke at once: a handled function
    /// error (REPORT has no Status for it, but `platform.report` does) or an
    /// oversized response.
    function_error: Option<Fault>,
    /// When a streamed response started.
    stream_started: Option<Now>,
    /// The spans of a streamed response that ended.
    spans: Option<ResponseSpans>,
}

/// A running shutdown (a spindown or a reset).
#[derive(Debug)]
struct ShutdownCtx {
    reason: ShutdownReason,
    /// Stop for good when done, rather than wait for the next invoke.
    stopped: bool,
    /// End of the budget: SIGKILL to whatever is left.
    deadline: Instant,
    deadline_ms: u64,
    /// While the runtime has its share: when to SIGKILL it.
    runtime_kill_at: Option<Instant>,
    /// The processes already sent SIGKILL before the deadline (no SHUTDOWN
    /// could reach them): at the deadline they are not reported again as
    /// having missed it.
    killed: Vec<Proc>,
    killed_all: bool,
    /// After SIGKILL, how long to wait for exits before giving up.
    give_up_at: Instant,
}

/// Where the environment is (called a stage so as not to be confused with
/// the telemetry [`Phase`] of an Init).
#[derive(Debug)]
enum Stage {
    /// No processes: before the first Init, or after a reset.
    Down,
    Init(InitCtx),
    /// Init done, no invoke running: frozen.
    Idle,
    Invoke(InvokeCtx),
    /// Managed Instances: Init done, serving invokes on its workers (any
    /// number in flight, nothing frozen). See `lmi`.
    Serving,
    Shutdown(ShutdownCtx),
    /// Shut down for good.
    Stopped,
}

/// The state machine of one execution environment. See the module docs.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    config: LifecycleConfig,
    stage: Stage,
    /// External extensions in name order, then internal ones in the order
    /// they registered.
    extensions: Vec<Extension>,
    by_id: HashMap<ExtensionId, usize>,
    runtime: RuntimeState,
    runtime_alive: bool,
    registration_open: bool,
    /// The first fatal error of the current Init or invoke.
    fatal: Option<Fault>,
    /// Init duration waiting for the first REPORT after it.
    cold_start: Option<Duration>,
    /// The invocation id of the last invoke that timed out: a late answer
    /// carrying it gets 410 `InvokeTimeout`.
    timed_out: Option<String>,
    /// Bumped on every Init; process exits carry it.
    generation: u64,
    frozen: bool,
    /// A spindown was asked for while a reset was running.
    stop_requested: bool,
    /// How the process behind the current fatal error ended, for the
    /// fault line (`Runtime exited with error: exit status 1`).
    fault_detail: Option<String>,
    /// Managed Instances: the workers and the invokes in flight.
    managed: Option<lmi::Managed>,
}

/// The answer to one input: effects, or the refusal of an API call.
type Step = Result<Vec<Effect>, Refusal>;

impl Lifecycle {
    /// A new environment, down (no processes) until [`Input::Init`] or an
    /// invoke.
    pub(crate) fn new(mut config: LifecycleConfig) -> Self {
        let managed = config.managed.map(|_| {
            // Init may take max(130 s, function timeout) under Managed
            // Instances (AWS: LMI execution environment).
            config.init_timeout = lmi::INIT_TIMEOUT_FLOOR.max(config.function_timeout);
            lmi::Managed::new()
        });
        Self {
            managed,
            config,
            stage: Stage::Down,
            extensions: Vec::new(),
            by_id: HashMap::new(),
            runtime: RuntimeState::NotStarted,
            runtime_alive: false,
            registration_open: false,
            fatal: None,
            cold_start: None,
            timed_out: None,
            generation: 0,
            frozen: false,
            stop_requested: false,
            fault_detail: None,
        }
    }

    /// Which Init's processes are current; the driver tags exits with it.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether an [`Input::Invoke`] may be fed now (the environment is idle
    /// or down). Otherwise the driver keeps the invoke queued.
    pub(crate) fn accepts_invoke(&self) -> bool {
        match self.managed {
            // Managed Instances: every invoke is fed while serving, and the
            // lifecycle takes a worker for it or rejects it at once.
            Some(_) => matches!(self.stage, Stage::Serving),
            None => matches!(self.stage, Stage::Idle | Stage::Down),
        }
    }

    /// Whether the environment is stopped for good.
    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self.stage, Stage::Stopped)
    }

    /// Whether nothing is running: no Init, invoke or shutdown (idle, or
    /// down after a reset, or stopped; under Managed Instances, serving
    /// with no invoke in flight and a worker waiting).
    pub(crate) fn is_quiet(&self) -> bool {
        match self.stage {
            Stage::Idle | Stage::Down | Stage::Stopped => true,
            // Managed Instances: no invoke in flight, and a worker waits in
            // /next, so that the next invoke is not rejected.
            Stage::Serving => matches!(self.workers(), (1.., 0)),
            _ => false,
        }
    }

    /// The external extension with this identifier: its index and name.
    pub(crate) fn extension(&self, id: ExtensionId) -> Option<(usize, &str, bool)> {
        self.by_id.get(&id).map(|&i| {
            let e = &self.extensions[i];
            (i, e.name.as_str(), e.kind == Kind::External)
        })
    }

    /// The name of the external extension with this index.
    pub(crate) fn extension_name(&self, index: usize) -> Option<&str> {
        self.extensions.get(index).map(|e| e.name.as_str())
    }

    /// The state of the extension with this index.
    #[cfg(test)]
    pub(crate) fn extension_state(&self, index: usize) -> Option<ExtensionState> {
        self.extensions.get(index).map(|e| e.state)
    }

    /// The runtime's state.
    #[cfg(test)]
    pub(crate) fn runtime_state(&self) -> RuntimeState {
        self.runtime
    }

    /// The earliest pending deadline: the driver feeds [`Input::Tick`] then.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Init(init) => Some(init.deadline),
            Stage::Invoke(inv) => Some(inv.deadline),
            Stage::Serving => self.managed_deadline(),
            Stage::Shutdown(s) => Some(match s.runtime_kill_at {
                Some(at) => at,
                None if s.killed_all => s.give_up_at,
                None => s.deadline,
            }),
            Stage::Down | Stage::Idle | Stage::Stopped => None,
        }
    }

    /// Applies one input at `now`. See the module docs.
    pub(crate) fn transition(&mut self, input: Input, now: Now) -> Step {
        // Managed Instances first: where its rules differ they answer, the
        // rest falls through to the on-demand rules.
        let input = match self.managed {
            Some(_) => match self.managed_input(input, now) {
                Ok(step) => return step,
                Err(input) => input,
            },
            None => input,
        };
        match input {
            Input::Init => Ok(self.start_init(Phase::Init, None, now)),
            Input::LaunchFailed { failures } => Ok(self.launch_failed(failures, now)),
            Input::RuntimeLaunchFailed { message } => Ok(self.runtime_launch_failed(message, now)),
            Input::Register {
                id, name, events, ..
            } => self.register(id, name, events),
            Input::ExtensionNext { id } => self.extension_next(id, now),
            Input::ExtensionInitError { id, .. } => self.extension_init_error(id, now),
            Input::ExtensionExitError { id, .. } => self.extension_exit_error(id, now),
            Input::Subscribe { id, api, request } => self.subscribe(id, api, request),
            Input::RuntimeNext => self.runtime_next(now),
            Input::RuntimeResponse {
                request_id,
                invocation_id,
                body,
                content_type,
                too_large,
            } => {
                let ids = (request_id.as_str(), invocation_id.as_deref());
                self.runtime_response(ids, body, content_type, too_large)
            }
            Input::RuntimeStreamStart {
                request_id,
                invocation_id,
                content_type,
            } => {
                let ids = (request_id.as_str(), invocation_id.as_deref());
                self.runtime_stream_start(ids, content_type, now)
            }
            Input::RuntimeStreamEnd {
                request_id,
                error_type,
                too_large,
                ..
            } => self.runtime_stream_end(&request_id, error_type, too_large, now),
            Input::RuntimeError {
                request_id,
                invocation_id,
                error_type,
                body,
            } => {
                let ids = (request_id.as_str(), invocation_id.as_deref());
                self.runtime_error(ids, error_type, body)
            }
            Input::RuntimeInitError { error_type } => self.runtime_init_error(error_type, now),
            Input::Invoke {
                request_id,
                invocation_id,
                payload,
                client_context,
            } => Ok(self.invoke(
                PendingInvoke {
                    request_id,
                    invocation_id,
                    payload,
                    client_context,
                    started: now,
                },
                now,
            )),
            Input::Exited {
                generation,
                proc,
                status,
            } => Ok(self.exited(generation, proc, status, now)),
            Input::Tick => Ok(self.tick(now)),
            Input::Shutdown => Ok(self.spindown(now)),
        }
    }

    /// Fires the deadline of the current stage, if it is due: the Init
    /// limit, the function timeout, or one of the shutdown timers.
    fn tick(&mut self, now: Now) -> Vec<Effect> {
        let t = now.instant;
        match &self.stage {
            Stage::Init(init) if t >= init.deadline => self.init_timed_out(now),
            Stage::Invoke(inv) if t >= inv.deadline => self.invoke_timed_out(now),
            Stage::Shutdown(_) => self.shutdown_tick(t),
            _ => Vec::new(),
        }
    }
}
