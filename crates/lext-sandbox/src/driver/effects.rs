//! Carrying out the lifecycle's effects: one small function per family.
//!
//! - processes: launch, start, signal, freeze and thaw, through the
//!   [`Host`];
//! - answers: the extensions' and the runtime's long polls, and the caller
//!   of the invoke;
//! - telling: every lifecycle event as its platform line and its telemetry
//!   record, through [`crate::events`];
//! - the end of a shutdown: forget the old processes' long polls, flush
//!   telemetry.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lext_protocol::error::error_type;
use lext_protocol::extensions::{InvokeEvent, NextEvent, ShutdownEvent, ShutdownReason, Tracing};
use lext_protocol::telemetry::{Phase, Record};

use super::{Driver, FREEZE_DELAY};
use crate::api::{ApiReply, Invocation};
use crate::config::Logging;
use crate::events::{self, Emit};
use crate::invocation::{InvokeResponse, InvokeResult};
use crate::jsonlog;
use crate::lifecycle::{
    Effect, ExtensionId, ExtensionSummary, Fault, Input, Outcome, Proc, Report,
};
use crate::marks::{self, MarkKind, MarkProcess};
use crate::ports::{Host, Telemetry};
use crate::sink::{LineSource, LogLine, Sink};
use crate::stream::{Answer, StreamError, Streamed};

/// The driver's two outputs, for [`events`]: lines to the sink, records to
/// telemetry.
pub(super) struct Out<'a, T> {
    sink: &'a dyn Sink,
    telemetry: &'a mut T,
    logging: Logging,
    /// The environment's tenant, stamped on `platform.start`,
    /// `platform.runtimeDone` and `platform.report` (RIE
    /// `internal/lambda/interop/events_api.go`: `tenantId`, omitted when
    /// empty).
    tenant: Option<&'a str>,
    /// Managed Instances: Init's records name that initialization type.
    managed: bool,
}

impl<T: Telemetry> Emit for Out<'_, T> {
    fn line(&mut self, text: String) {
        // In JSON format the platform's records take the text lines'
        // place (AWS: Configuring advanced logging controls).
        if self.logging.is_json() {
            return;
        }
        self.sink.line(LogLine {
            time: SystemTime::now(),
            source: LineSource::Platform,
            text,
            environment: None,
        });
    }

    fn record(&mut self, mut record: Record) {
        if self.managed {
            use lext_protocol::telemetry::InitializationType;
            match &mut record {
                Record::InitRuntimeDone(r) => {
                    r.initialization_type = InitializationType::LambdaManagedInstances;
                }
                Record::InitReport(r) => {
                    r.initialization_type = InitializationType::LambdaManagedInstances;
                }
                Record::Report(r) => crate::platform::managed_report(r, SystemTime::now()),
                _ => {}
            }
        }
        if let Some(tenant) = self.tenant {
            let slot = match &mut record {
                Record::Start(r) => Some(&mut r.tenant_id),
                Record::RuntimeDone(r) => Some(&mut r.tenant_id),
                Record::Report(r) => Some(&mut r.tenant_id),
                _ => None,
            };
            if let Some(slot) = slot {
                *slot = Some(tenant.to_owned());
            }
        }
        if self.logging.is_json() {
            let time = SystemTime::now();
            if let Some(text) = jsonlog::platform_line(&record, time, self.logging.system_level) {
                self.sink.line(LogLine {
                    time,
                    source: LineSource::Platform,
                    text,
                    environment: None,
                });
            }
        }
        self.telemetry.record(record);
    }
}

/// [`out`] from the driver's own fields; a macro rather than a method, so
/// that the borrows stay per field and the caller may still read the
/// others (`self.function`).
macro_rules! out {
    ($driver:ident) => {
        out(
            &$driver.sink,
            &mut $driver.telemetry,
            $driver.function.logging,
            $driver.tenant.as_deref(),
            $driver.managed,
        )
    };
}

/// Where events are told. A function of the two fields rather than a
/// method, so that the rest of the driver stays borrowable beside it.
pub(super) fn out<'a, T>(
    sink: &'a Arc<dyn Sink>,
    telemetry: &'a mut T,
    logging: Logging,
    tenant: Option<&'a str>,
    managed: bool,
) -> Out<'a, T> {
    Out {
        sink: &**sink,
        telemetry,
        logging,
        tenant,
        managed,
    }
}

impl<H: Host, T: Telemetry> Driver<H, T> {
    /// Carries out one effect. A launch that fails becomes a follow-up
    /// input, fed after the current batch.
    pub(super) fn apply(&mut self, effect: Effect, followups: &mut VecDeque<Input>) {
        match effect {
            Effect::InitStarted { phase } => {
                self.inits_started();
                tracing::info!(phase = phase.as_str(), "init started");
                let out = &mut out!(self);
                events::init_started(out, &self.function, phase);
            }
            Effect::LaunchExtension { index } => {
                let generation = self.lc.generation();
                marks::tell(
                    &*self.sink,
                    &self.lc,
                    Proc::Extension(index),
                    MarkKind::Launched,
                );
                if let Err(failure) = self.host.launch_extension(index, generation, &self.exits) {
                    // One input for all the failures of this batch.
                    match followups.back_mut() {
                        Some(Input::LaunchFailed { failures }) => failures.push((index, failure)),
                        _ => followups.push_back(Input::LaunchFailed {
                            failures: vec![(index, failure)],
                        }),
                    }
                }
            }
            Effect::StartRuntime => {
                let generation = self.lc.generation();
                marks::tell(&*self.sink, &self.lc, Proc::Runtime, MarkKind::Launched);
                if let Err(message) = self.host.start_runtime(generation, &self.exits) {
                    followups.push_back(Input::RuntimeLaunchFailed { message });
                }
            }
            Effect::Subscribe { name, .. } => {
                // Only an API call makes this effect, and `calls` carries it
                // out where it can still refuse the call.
                tracing::warn!(extension = ?name, "subscription outside an API call ignored");
            }
            Effect::InitDone {
                duration,
                extensions,
            } => self.init_done(duration, &extensions),
            Effect::InitFailed {
                phase,
                duration,
                fault,
                extensions,
            } => self.init_failed(phase, duration, &fault, &extensions),
            Effect::Refuse(refusal) => {
                // Only an API call's batch starts with it, and `calls`
                // answers it there.
                tracing::debug!(%refusal, "refusal outside an API call");
            }
            other => self.apply_invoke_or_shutdown(other),
        }
    }

    /// The effects of an invoke and of a shutdown.
    fn apply_invoke_or_shutdown(&mut self, effect: Effect) {
        match effect {
            Effect::InvokeStarted { request_id } => {
                // Under Managed Instances invokes overlap: output lines
                // cannot be told apart by time, so none is stamped with a
                // request id by lext (the runtime's JSON lines carry it).
                if !self.managed {
                    self.telemetry.current_request(Some(&request_id));
                }
                let trace = self.trace();
                let arn = self.managed.then(|| self.arn.clone());
                let out = &mut out!(self);
                events::invoke_started(out, &request_id, &self.function.version, trace, arn);
            }
            Effect::DeliverInvoke {
                id,
                request_id,
                deadline_ms,
            } => self.deliver_invoke(id, request_id, deadline_ms),
            Effect::DeliverToRuntime {
                request_id,
                invocation_id,
                deadline_ms,
                payload,
                client_context,
            } => self.deliver_to_runtime(Invocation {
                request_id,
                invocation_id,
                deadline_ms,
                invoked_function_arn: self.arn.clone(),
                trace_id: self.trace(),
                client_context,
                tenant_id: self.tenant.clone(),
                payload,
            }),
            Effect::Respond {
                request_id,
                outcome,
            } => self.respond(request_id, outcome),
            Effect::RuntimeDone {
                request_id,
                fault,
                duration,
                spans,
            } => {
                let trace = self.trace();
                let produced = self.current.as_ref().and_then(|c| c.produced_bytes);
                let out = &mut out!(self);
                match spans {
                    // A streamed response: the same record, with its
                    // spans (no line either way).
                    Some(spans) => out.record(crate::platform::streamed_runtime_done(
                        crate::platform::runtime_done(
                            &request_id,
                            fault.as_ref(),
                            trace,
                            duration,
                            produced,
                        ),
                        &spans,
                    )),
                    None => events::runtime_done(
                        out,
                        &request_id,
                        fault.as_ref(),
                        trace,
                        duration,
                        produced,
                    ),
                }
            }
            Effect::TimedOut { request_id, after } => {
                let _ = self.host.peak_memory_mb();
                let out = &mut out!(self);
                events::timed_out(out, &request_id, after);
            }
            Effect::FaultLine { message, fault } => {
                events::fault(&mut out!(self), message, &fault);
            }
            Effect::InvokeEnded(report) => self.invoke_ended(report),
            Effect::Freeze => self.schedule_freeze(),
            Effect::Thaw => self.thaw(),
            Effect::MissedDeadline { proc, name, budget } => {
                let who = match proc {
                    crate::lifecycle::Proc::Runtime => "the runtime".to_owned(),
                    crate::lifecycle::Proc::Extension(_) => {
                        format!("extension {}", crate::logline::printable(&name))
                    }
                };
                tracing::warn!(
                    "shutdown: {who} did not exit within its {} ms; killing it (SIGKILL)",
                    budget.as_millis()
                );
            }
            Effect::Signal { proc, signal } => {
                let kill = signal == crate::lifecycle::Signal::Kill;
                marks::tell(&*self.sink, &self.lc, proc, MarkKind::Signalled { kill });
                self.host.signal(proc, signal);
            }
            Effect::DeliverShutdown {
                id,
                reason,
                deadline_ms,
            } if self.managed && !self.flush.done => {
                // Managed Instances flush telemetry, up to 1 s, before
                // SHUTDOWN goes out (RIE
                // `internal/lambda-managed-instances/rapid/shutdown.go`).
                if !self.flush.started {
                    self.flush.started = true;
                    self.flush.running = Some(self.telemetry.finish(super::FLUSH_BEFORE_SHUTDOWN));
                }
                self.flush.held.push((id, reason, deadline_ms));
            }
            Effect::DeliverShutdown {
                id,
                reason,
                deadline_ms,
            } => {
                // On-demand Lambda sends SHUTDOWN and the last batch (with
                // the last platform.report) together, without waiting for
                // timeoutMs; an extension must wait for that batch before
                // it exits (docs/fidelity.md). What is queued now existed
                // before SHUTDOWN: only its loss is worth a warning.
                if let Some((_, name, _)) = self.lc.extension(id) {
                    self.telemetry.shutdown_sent(name);
                }
                self.telemetry.flush_now();
                marks::tell_extension(
                    &*self.sink,
                    &self.lc,
                    id,
                    MarkKind::Shutdown { deadline_ms },
                );
                let event = NextEvent::Shutdown(ShutdownEvent {
                    deadline_ms,
                    shutdown_reason: reason,
                });
                self.answer_extension(id, event);
            }
            Effect::ShutdownDone {
                reason,
                stopped,
                unreaped,
            } => self.shutdown_done(reason, stopped, unreaped),
            // The Init effects are `apply`'s.
            other => tracing::warn!(effect = ?other, "effect out of place"),
        }
    }

    /// Managed Instances: telemetry is flushed; the held SHUTDOWNs go out.
    pub(super) fn flushed(&mut self) {
        self.flush.done = true;
        for (id, reason, deadline_ms) in std::mem::take(&mut self.flush.held) {
            self.apply_invoke_or_shutdown(Effect::DeliverShutdown {
                id,
                reason,
                deadline_ms,
            });
        }
    }

    fn init_done(&mut self, duration: Duration, extensions: &[ExtensionSummary]) {
        self.inits += 1;
        events::init_done(&mut out!(self), duration, extensions);
        self.telemetry.close_subscriptions();
    }

    fn init_failed(
        &mut self,
        phase: Phase,
        duration: Duration,
        fault: &Fault,
        extensions: &[ExtensionSummary],
    ) {
        self.summary.init_failures += 1;
        // Before the reset's signals take the processes away.
        let _ = self.host.peak_memory_mb();
        let out = &mut out!(self);
        events::init_failed(out, phase, duration, fault, extensions);
    }

    fn deliver_to_runtime(&mut self, invocation: Invocation) {
        // The oldest waiting worker whose caller is still there (a worker
        // that went away gives the invocation back).
        let mut reply = ApiReply::Invocation(invocation);
        while let Some(w) = self.runtime_waiters.pop_front() {
            match w.send(reply) {
                Ok(()) => return,
                Err(back) => reply = back,
            }
        }
        tracing::warn!("the runtime is not waiting in /next");
    }

    fn schedule_freeze(&mut self) {
        if self.freeze {
            // Lambda freezes at once. SIGSTOP and SIGCONT cost two context
            // switches per process, which would halve the invoke rate of
            // back-to-back invokes, so the freeze lands FREEZE_DELAY later
            // and is cancelled if the next event comes first
            // (docs/fidelity.md).
            self.freeze_at = Some(tokio::time::Instant::now() + FREEZE_DELAY);
        }
    }

    fn thaw(&mut self) {
        // A pending freeze never happened: nothing to thaw.
        if self.freeze_at.take().is_none() && self.frozen {
            self.frozen = false;
            marks::tell_process(&*self.sink, MarkProcess::Environment, MarkKind::Thawed);
            self.host.freeze(false);
            self.telemetry.freeze(false);
        }
    }

    /// A new Init: after a reset, telemetry opens its subscriptions again.
    fn inits_started(&mut self) {
        if self.lc.generation() > 1 {
            self.telemetry.begin_init();
        }
    }

    /// The current invoke's trace header.
    fn trace(&self) -> Option<String> {
        self.current.as_ref().map(|c| c.trace.clone())
    }

    /// Carries out a pending freeze (its delay ran out with no new event).
    pub(super) fn freeze_now(&mut self) {
        if self.freeze_at.take().is_some() && !self.frozen {
            self.frozen = true;
            marks::tell_process(&*self.sink, MarkProcess::Environment, MarkKind::Frozen);
            self.telemetry.freeze(true);
            self.host.freeze(true);
        }
    }

    fn deliver_invoke(&mut self, id: ExtensionId, request_id: String, deadline_ms: u64) {
        let tracing = self.trace().map(|value| Tracing {
            kind: "X-Amzn-Trace-Id".to_owned(),
            value,
        });
        let event = NextEvent::Invoke(InvokeEvent {
            deadline_ms,
            request_id,
            invoked_function_arn: self.arn.clone(),
            tracing,
        });
        self.answer_extension(id, event);
    }

    fn answer_extension(&mut self, id: ExtensionId, event: NextEvent) {
        match self.ext_waiters.remove(&id) {
            Some(w) => {
                let _ = w.send(ApiReply::Event(event));
            }
            None => tracing::warn!(extension = %id, "the extension is not waiting in /event/next"),
        }
    }

    /// Answers the caller of the invoke.
    fn respond(&mut self, request_id: String, outcome: Outcome) {
        let result = match outcome {
            Outcome::Stream { content_type } => {
                let Some(chunks) = self.pending_stream.take() else {
                    tracing::warn!("a stream started without its channel");
                    return;
                };
                let (verdict, verdict_rx) = tokio::sync::oneshot::channel();
                let Some(current) = self.current.as_mut() else {
                    return;
                };
                current.verdict = Some(verdict);
                if let Some(reply) = current.reply.take() {
                    let _ = reply.send(Answer::Stream(Streamed {
                        request_id,
                        content_type,
                        chunks,
                        verdict: verdict_rx,
                    }));
                }
                return;
            }
            Outcome::Response { body, content_type } => {
                if let Some(c) = self.current.as_mut() {
                    c.produced_bytes = Some(body.len() as u64);
                }
                InvokeResult::Response { body, content_type }
            }
            Outcome::FunctionError { body } => InvokeResult::FunctionError { body },
            Outcome::Rejected { error_type } => {
                // Never run: its caller is told, and it is forgotten. An
                // `Event` invoke has no caller left to tell (it had its
                // 202): it is reported here.
                match self.current.take().and_then(|c| c.reply) {
                    Some(reply) => {
                        let _ = reply.send(Answer::Rejected(error_type));
                    }
                    None => tracing::warn!(
                        "Event invoke {request_id} was dropped, rejected with {error_type}"
                    ),
                }
                return;
            }
            Outcome::PlatformError { fault, message } => InvokeResult::PlatformError {
                error_type: fault.error_type().to_owned(),
                message,
            },
        };
        if let Some(reply) = self.current.as_mut().and_then(|c| c.reply.take()) {
            let _ = reply.send(Answer::Whole(InvokeResponse { request_id, result }));
        }
    }

    fn invoke_ended(&mut self, report: Report) {
        self.telemetry.current_request(None);
        self.summary.invokes += 1;
        if report.fault.is_some() {
            self.summary.failed_invokes += 1;
        }
        // A streamed response's caller learns the invoke's fault, if its
        // stream did not end by itself (a timeout, a crash).
        if let Some(verdict) = self.current.as_mut().and_then(|c| c.verdict.take()) {
            let _ = verdict.send(report.fault.as_ref().map(|f| StreamError {
                code: f.error_type().to_owned(),
                details: format!("RequestId: {} Error: {}", report.request_id, f.error_type()),
            }));
        }
        let max_memory = self.host.peak_memory_mb();
        let trace = self.trace();
        let memory_mb = self.function.memory_mb;
        events::invoke_ended(&mut out!(self), &report, memory_mb, max_memory, trace);
        // The invoke ended before the runtime answered (a phase-invoke Init
        // that failed is answered by its own Respond effect).
        self.answer_unanswered("The invoke ended without an answer");
    }

    /// Answers the current invoke's caller, if nobody has yet, with a
    /// `Sandbox.Failure`, and forgets the invoke.
    fn answer_unanswered(&mut self, message: &str) {
        let Some(current) = self.current.take() else {
            return;
        };
        if let Some(verdict) = current.verdict {
            let _ = verdict.send(Some(StreamError {
                code: error_type::SANDBOX_FAILURE.into(),
                details: message.into(),
            }));
        }
        if let Some(reply) = current.reply {
            let _ = reply.send(Answer::Whole(InvokeResponse {
                request_id: current.request_id,
                result: InvokeResult::PlatformError {
                    error_type: error_type::SANDBOX_FAILURE.into(),
                    message: message.into(),
                },
            }));
        }
    }

    fn shutdown_done(&mut self, reason: ShutdownReason, stopped: bool, unreaped: usize) {
        tracing::info!(%reason, stopped, unreaped, "shutdown done");
        self.summary.unreaped += unreaped;
        // What is left in the environment's cgroup had left its process
        // group (setsid): in Lambda it dies with the microVM.
        let escaped = self.host.sweep();
        if escaped > 0 {
            tracing::warn!(
                "{escaped} process(es) of the environment had left their process group \
                 (setsid) and outlived its shutdown; killed"
            );
        }
        if !stopped {
            self.summary.resets += 1;
        }
        // The old processes are gone; so are their long polls.
        self.freeze_at = None;
        self.frozen = false;
        self.ext_waiters.clear();
        self.runtime_waiters.clear();
        self.finishing = Some(self.telemetry.finish(Duration::ZERO));
        self.answer_unanswered("The execution environment shut down");
        for (_, current) in std::mem::take(&mut self.inflight) {
            self.current = Some(current);
            self.answer_unanswered("The execution environment shut down");
        }
    }
}
