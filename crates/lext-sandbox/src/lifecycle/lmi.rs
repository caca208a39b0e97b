//! Lambda Managed Instances (LMI): one long-lived environment that serves
//! many invokes at once through concurrent runtime workers.
//!
//! The rules that differ from on-demand, each an `impl Lifecycle` method fed
//! before the on-demand ones when [`LifecycleConfig::managed`] is set:
//!
//! - **Workers**: each runtime `/next` is an idle worker; an invoke takes
//!   one, and with none idle it is rejected at once with
//!   `Runtime.Unavailable` (no queue). The caller's request id is the
//!   invoke id; a duplicate of one running is `Client.DuplicatedInvokeId`.
//! - **Answers** are matched to their invoke by the request id in the path
//!   (and the `Lambda-Runtime-Invocation-Id` when echoed). An invoke ends
//!   with its answer: extensions are never on the invoke path (no INVOKE,
//!   no post-runtime wait, no freeze), and no `platform.runtimeDone` is
//!   sent.
//! - **Timeouts** are per invoke: one fails that invoke only
//!   (`Sandbox.Timedout`), with no reset; its late answer gets 410.
//! - **Extensions** may register for SHUTDOWN only (external) or for
//!   nothing (internal); anything else is refused with 403
//!   `Extension.InvalidEventType` and fails Init.
//! - **Telemetry** subscriptions must use schema `2025-01-29`.
//! - **Init** runs at once with a limit of max(130 s, function timeout); it
//!   is done when every extension is ready and one worker has called
//!   `/next`. A failed Init, any process exit, or a spindown shuts the
//!   environment down for good, with reason `failure` or `spindown`; the
//!   runtime gets 600 ms after SIGTERM, the extensions' SHUTDOWN deadline
//!   is 2 s after the shutdown began.
//!
//! Sources, by the short names the comments use:
//!
//! - AWS: LMI execution environment,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/lambda-managed-instances-execution-environment.html>
//! - AWS: LMI runtimes,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/lambda-managed-instances-runtimes.html>
//! - RIE v1.30's Managed Instances core, paths under
//!   `internal/lambda-managed-instances/` of
//!   github.com/aws/aws-lambda-runtime-interface-emulator.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use lext_protocol::error::{error_type, sanitize_runtime_error_type};
use lext_protocol::extensions::EventType;
use lext_protocol::telemetry::SubscribeRequest;

use super::{
    Effect, Fault, Input, Lifecycle, Now, Outcome, Refusal, Report, RuntimeState, Stage, Step,
};

/// The Init limit's floor under Managed Instances: Init may take
/// max(130 s, function timeout) (AWS: LMI execution environment).
pub(crate) const INIT_TIMEOUT_FLOOR: Duration = Duration::from_secs(130);
/// The runtime's time between SIGTERM and SIGKILL at shutdown (RIE
/// `rapid/shutdown.go`, `defaultRuntimeShutdownTimeout`).
pub(crate) const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(600);
/// The whole shutdown, from its start to the extensions' SHUTDOWN deadline
/// (RIE `rapid/shutdown.go`, `defaultShutdownTimeout`).
pub(crate) const SHUTDOWN_BUDGET: Duration = Duration::from_millis(2_000);
/// The only Telemetry API schema Managed Instances accept (AWS: LMI
/// execution environment, "Telemetry").
pub(crate) const TELEMETRY_SCHEMA: &str = "2025-01-29";
/// At most this many idle workers (RIE `invoke/invoke_router.go` makes its
/// queue of idle runtimes 10,000 long); a `/next` past it is refused.
pub(crate) const MAX_IDLE_WORKERS: usize = 10_000;
/// How many timed-out request ids are remembered for their 410; older ones
/// are forgotten (and counted), and a late answer for one of those gets
/// `InvalidRequestID` instead.
pub(crate) const TIMED_OUT_REMEMBERED: usize = 10_000;

/// An invoke running on a worker.
#[derive(Debug)]
struct Running {
    invocation_id: String,
    /// When the event was handed to the worker.
    started: Instant,
    deadline: Instant,
}

/// The request ids of invokes that timed out, bounded.
#[derive(Debug, Default)]
struct TimedOut {
    order: VecDeque<String>,
    ids: HashSet<String>,
    /// Ids forgotten to keep the bound.
    forgotten: u64,
}

impl TimedOut {
    fn insert(&mut self, id: String) {
        // A caller may reuse a request id once its invoke is over.
        if self.ids.contains(&id) {
            return;
        }
        if self.order.len() >= TIMED_OUT_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
                self.forgotten += 1;
            }
        }
        self.ids.insert(id.clone());
        self.order.push_back(id);
    }
}

/// The workers and invokes of a Managed Instances environment.
#[derive(Debug)]
pub(super) struct Managed {
    /// Workers waiting in `/next`.
    idle: usize,
    /// Invokes in flight, by request id.
    running: HashMap<String, Running>,
    timed_out: TimedOut,
}

impl Managed {
    pub(super) fn new() -> Self {
        Self {
            idle: 0,
            running: HashMap::new(),
            timed_out: TimedOut::default(),
        }
    }
}

impl Lifecycle {
    /// Whether this is a Managed Instances environment.
    pub(crate) fn is_managed(&self) -> bool {
        self.managed.is_some()
    }

    /// Workers waiting in `/next` and invokes in flight (0, 0 on-demand).
    pub(crate) fn workers(&self) -> (usize, usize) {
        self.managed
            .as_ref()
            .map_or((0, 0), |m| (m.idle, m.running.len()))
    }

    /// Timed-out request ids forgotten to keep their bound.
    pub(crate) fn timed_out_forgotten(&self) -> u64 {
        self.managed.as_ref().map_or(0, |m| m.timed_out.forgotten)
    }

    /// The earliest per-invoke deadline while serving.
    pub(super) fn managed_deadline(&self) -> Option<Instant> {
        let m = self.managed.as_ref()?;
        m.running.values().map(|r| r.deadline).min()
    }

    /// The Managed Instances rules for `input`, or the input back when the
    /// on-demand rule applies unchanged (Init, extensions' `next`, errors,
    /// exits, shutdown timers).
    pub(super) fn managed_input(&mut self, input: Input, now: Now) -> Result<Step, Input> {
        Ok(match input {
            Input::RuntimeNext => self.worker_next(now),
            Input::Invoke {
                request_id,
                invocation_id,
                payload,
                client_context,
            } => Ok(self.managed_invoke(request_id, invocation_id, payload, client_context, now)),
            Input::RuntimeResponse {
                request_id,
                invocation_id,
                body,
                content_type,
                too_large,
            } => {
                let outcome = if too_large {
                    Outcome::PlatformError {
                        fault: Fault::ResponseTooLarge,
                        message: format!(
                            "Response payload size exceeded maximum allowed payload size ({} bytes).",
                            lext_protocol::MAX_PAYLOAD_SIZE
                        ),
                    }
                } else {
                    Outcome::Response { body, content_type }
                };
                let fault = too_large.then_some(Fault::ResponseTooLarge);
                self.worker_answer(&request_id, invocation_id.as_deref(), outcome, fault, now)
            }
            Input::RuntimeError {
                request_id,
                invocation_id,
                error_type,
                body,
            } => {
                let t = sanitize_runtime_error_type(error_type.as_deref().unwrap_or(""));
                let fault = Some(Fault::Function(t.to_owned()));
                let outcome = Outcome::FunctionError { body };
                self.worker_answer(&request_id, invocation_id.as_deref(), outcome, fault, now)
            }
            // Streamed responses are not modelled under Managed Instances
            // (docs/fidelity.md): refused as an out-of-turn response.
            Input::RuntimeStreamStart { .. } | Input::RuntimeStreamEnd { .. } => {
                Err(Refusal::RuntimeState {
                    from: self.runtime,
                    to: RuntimeState::InvocationResponse,
                })
            }
            Input::Register {
                id,
                name,
                events,
                account_id,
            } => match self.refused_events(&name, &events) {
                Some(refusal) => Ok(self.refuse_registration(refusal, now)),
                None => {
                    return Err(Input::Register {
                        id,
                        name,
                        events,
                        account_id,
                    })
                }
            },
            Input::Tick if matches!(self.stage, Stage::Serving) => Ok(self.invokes_timed_out(now)),
            other => return Err(other),
        })
    }

    /// `GET /runtime/invocation/next`: one more idle worker.
    fn worker_next(&mut self, now: Now) -> Step {
        let (idle, running) = self.workers();
        if idle + running >= MAX_IDLE_WORKERS {
            return Err(Refusal::RuntimeState {
                from: self.runtime,
                to: RuntimeState::Ready,
            });
        }
        let first = match (&self.stage, self.runtime) {
            // The first worker's /next: the runtime's Init is done, and it
            // closes registration, as on-demand (RIE `rapid/handlers.go`).
            (Stage::Init(_), RuntimeState::Started) => true,
            (Stage::Init(_) | Stage::Serving, RuntimeState::Ready) => false,
            // A worker's /next during shutdown waits with the others; no
            // invoke will come.
            (Stage::Shutdown(_), _) => return Ok(Vec::new()),
            (_, from) => {
                return Err(Refusal::RuntimeState {
                    from,
                    to: RuntimeState::Ready,
                })
            }
        };
        if let Some(m) = self.managed.as_mut() {
            m.idle += 1;
        }
        if !first {
            return Ok(Vec::new());
        }
        self.runtime = RuntimeState::Ready;
        self.registration_open = false;
        // Init is complete when the extensions are ready and at least one
        // worker has called /next (AWS: LMI execution environment).
        Ok(self.maybe_finish_init(now))
    }

    /// A caller's invoke: it takes an idle worker, or is rejected at once.
    fn managed_invoke(
        &mut self,
        request_id: String,
        invocation_id: String,
        payload: bytes::Bytes,
        client_context: Option<String>,
        now: Now,
    ) -> Vec<Effect> {
        let timeout = self.config.function_timeout;
        let serving = matches!(self.stage, Stage::Serving);
        let shutting_down = matches!(self.stage, Stage::Shutdown(_) | Stage::Stopped);
        let Some(m) = self.managed.as_mut() else {
            return Vec::new();
        };
        let rejected = if m.running.contains_key(&request_id) {
            // RIE `invoke/invoke_router.go`: `SetIfAbsent` on the running
            // invokes, 400 Client.DuplicatedInvokeId.
            Some(error_type::DUPLICATED_INVOKE_ID)
        } else if shutting_down {
            // 400 Client.ExecutionEnvironmentShutDown (RIE
            // `rapid/model/client_error.go`).
            Some(error_type::EXECUTION_ENVIRONMENT_SHUT_DOWN)
        } else if !serving || m.idle == 0 {
            // No idle worker: 400 Runtime.Unavailable at once, no queue
            // (RIE `invoke/invoke_router.go`).
            Some(error_type::RUNTIME_UNAVAILABLE)
        } else {
            None
        };
        if let Some(error_type) = rejected {
            return vec![Effect::Respond {
                request_id,
                outcome: Outcome::Rejected { error_type },
            }];
        }
        m.idle -= 1;
        m.running.insert(
            request_id.clone(),
            Running {
                invocation_id: invocation_id.clone(),
                started: now.instant,
                deadline: now.instant + timeout,
            },
        );
        // No INVOKE to extensions and no thaw: nothing is frozen and
        // extensions are not on the invoke path (AWS: LMI execution
        // environment; RIE's agents register for SHUTDOWN only).
        vec![
            Effect::InvokeStarted {
                request_id: request_id.clone(),
            },
            Effect::DeliverToRuntime {
                request_id,
                invocation_id,
                deadline_ms: now.epoch_ms + timeout.as_millis() as u64,
                payload,
                client_context,
            },
        ]
    }

    /// A worker's `/response` or `/error`: it answers its invoke's caller
    /// and ends the invoke. The worker is idle again at its next `/next`.
    fn worker_answer(
        &mut self,
        request_id: &str,
        invocation_id: Option<&str>,
        outcome: Outcome,
        fault: Option<Fault>,
        now: Now,
    ) -> Step {
        let Some(m) = self.managed.as_mut() else {
            return Err(Refusal::Internal);
        };
        // A late answer for an invoke that timed out: 410 InvokeTimeout
        // (RIE `invoke/timeout/timeout_cache.go`,
        // `rapi/rendering/render_error.go` `RenderInvokeTimeout`).
        if m.timed_out.ids.contains(request_id) {
            return Err(Refusal::InvokeTimeout);
        }
        // Matched by the id in the path, and by the echoed invocation id
        // when the runtime sends one (400 InvalidRequestID otherwise, as
        // on-demand: RIE `rapi/middleware/middleware.go`).
        let matches = m
            .running
            .get(request_id)
            .is_some_and(|r| invocation_id.is_none_or(|id| id == r.invocation_id));
        if !matches {
            return Err(Refusal::InvalidRequestId);
        }
        let Some(run) = m.running.remove(request_id) else {
            return Err(Refusal::InvalidRequestId);
        };
        // The invoke ends with its answer: nobody else is on its path, and
        // RIE sends no platform.runtimeDone (docs/fidelity.md).
        Ok(vec![
            Effect::Respond {
                request_id: request_id.to_owned(),
                outcome,
            },
            Effect::InvokeEnded(Report {
                request_id: request_id.to_owned(),
                duration: now.instant.saturating_duration_since(run.started),
                init_duration: None,
                fault,
            }),
        ])
    }

    /// The per-invoke deadlines that are due: each fails its invoke only
    /// (`Sandbox.Timedout`), and the environment keeps serving (AWS: LMI
    /// execution environment, "independent timeouts"; RIE
    /// `invoke/running_invoke.go`). The worker stays busy until it answers
    /// (that answer gets 410) and calls `/next` again.
    fn invokes_timed_out(&mut self, now: Now) -> Vec<Effect> {
        let after = self.config.function_timeout;
        let Some(m) = self.managed.as_mut() else {
            return Vec::new();
        };
        let mut due: Vec<String> = m
            .running
            .iter()
            .filter(|(_, r)| now.instant >= r.deadline)
            .map(|(id, _)| id.clone())
            .collect();
        due.sort();
        let mut fx = Vec::with_capacity(due.len() * 3);
        for request_id in due {
            m.running.remove(&request_id);
            m.timed_out.insert(request_id.clone());
            fx.push(Effect::TimedOut {
                request_id: request_id.clone(),
                after,
            });
            fx.push(Effect::Respond {
                request_id: request_id.clone(),
                outcome: Outcome::PlatformError {
                    fault: Fault::Timeout,
                    message: format!(
                        "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                        after.as_secs_f64()
                    ),
                },
            });
            fx.push(Effect::InvokeEnded(Report {
                request_id,
                duration: after,
                init_duration: None,
                fault: Some(Fault::Timeout),
            }));
        }
        fx
    }

    /// Fails every invoke in flight with `fault` (a process exit, a
    /// failure): each caller is answered, each invoke gets its REPORT.
    pub(super) fn fail_running(&mut self, fault: &Fault, now: Now) -> Vec<Effect> {
        let Some(m) = self.managed.as_mut() else {
            return Vec::new();
        };
        let mut running: Vec<(String, Running)> = m.running.drain().collect();
        running.sort_by(|a, b| a.0.cmp(&b.0));
        let text = self.fault_text(fault);
        let mut fx = Vec::with_capacity(running.len() * 3);
        for (request_id, run) in running {
            let message = format!("RequestId: {request_id} Error: {text}");
            fx.push(Effect::FaultLine {
                message: message.clone(),
                fault: fault.clone(),
            });
            fx.push(Effect::Respond {
                request_id: request_id.clone(),
                outcome: Outcome::PlatformError {
                    fault: fault.clone(),
                    message,
                },
            });
            fx.push(Effect::InvokeEnded(Report {
                request_id,
                duration: now.instant.saturating_duration_since(run.started),
                init_duration: None,
                fault: Some(fault.clone()),
            }));
        }
        fx
    }

    /// The events an extension may not register for under Managed
    /// Instances: an external one anything but SHUTDOWN, an internal one
    /// anything at all (RIE `rapi/handler/agentregister.go`,
    /// `core/externalagent.go` `ValidateExternalAgentEvent`).
    fn refused_events(&self, name: &str, events: &[EventType]) -> Option<Refusal> {
        let external = self.config.extensions.iter().any(|e| e == name);
        if !external {
            return (!events.is_empty()).then_some(Refusal::NoEventsForInternal);
        }
        events
            .iter()
            .find(|e| **e != EventType::Shutdown)
            .map(|e| Refusal::InvalidEventType(e.as_str().to_owned()))
    }

    /// A registration refused for its events: 403
    /// `Extension.InvalidEventType` to the caller, and Init fails with the
    /// same type (docs/fidelity.md: RIE only refuses the call; the
    /// extension then exits and Init fails with it).
    fn refuse_registration(&mut self, refusal: Refusal, now: Now) -> Vec<Effect> {
        let mut fx = vec![Effect::Refuse(refusal)];
        if matches!(self.stage, Stage::Init(_)) {
            fx.extend(self.fatal_error(Fault::InvalidEventType, now));
        }
        fx
    }

    /// Managed Instances accept only Telemetry schema `2025-01-29`; any
    /// other is a 400 `ValidationError` (AWS: LMI execution environment,
    /// "Telemetry"; RIE `aws-lambda-rie/internal/telemetry/schema/`).
    pub(super) fn managed_schema(
        &self,
        request: Box<SubscribeRequest>,
    ) -> Result<Box<SubscribeRequest>, String> {
        if !self.is_managed() || request.schema_version.as_deref() == Some(TELEMETRY_SCHEMA) {
            return Ok(request);
        }
        Err(format!(
            "schemaVersion: must be {TELEMETRY_SCHEMA} on Lambda Managed Instances, got {}",
            request.schema_version.as_deref().unwrap_or("none")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_out_ids_past_the_bound_are_forgotten_oldest_first_and_counted() {
        let mut t = TimedOut::default();
        for n in 0..=TIMED_OUT_REMEMBERED {
            t.insert(format!("r{n}"));
        }
        assert_eq!(t.forgotten, 1);
        assert_eq!(t.order.len(), TIMED_OUT_REMEMBERED);
        assert!(!t.ids.contains("r0"));
        assert!(t.ids.contains("r1"));
        assert!(t.ids.contains(&format!("r{TIMED_OUT_REMEMBERED}")));
        // The same id again takes no second place.
        t.insert("r1".to_owned());
        assert_eq!((t.order.len(), t.forgotten), (TIMED_OUT_REMEMBERED, 1));
    }
}
