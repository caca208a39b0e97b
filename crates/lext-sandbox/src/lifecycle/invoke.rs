//! Invoke: handing an event to the extensions and the runtime, the Runtime
//! API calls that answer it, and the end of the invoke.
//!
//! The event goes to the INVOKE-subscribed extensions, then to the runtime;
//! the runtime's answer goes to the caller at once; the invoke ends when the
//! runtime has called `/next` again and every INVOKE-subscribed extension
//! has called `/event/next`, and the function timeout bounds all of it (AWS:
//! Extensions API, "Invoke phase"; AWS: Lambda execution environment
//! lifecycle, "Invoke phase"). rapid runs it in `doInvoke` (RIE:
//! internal/lambda/rapid/handlers.go). The pages and the repository are
//! listed in the module docs of `lifecycle`.

use bytes::Bytes;
use lext_protocol::error::sanitize_runtime_error_type;
use lext_protocol::telemetry::Phase;

use super::{
    Effect, ExtensionState, Fault, InvokeCtx, Lifecycle, Now, Outcome, PendingInvoke, Refusal,
    Report, ResponseSpans, RuntimeState, Stage, Step,
};

impl Lifecycle {
    /// `GET /runtime/invocation/next`.
    pub(super) fn runtime_next(&mut self, now: Now) -> Step {
        match self.runtime {
            RuntimeState::Started => {
                // The runtime's first /next: its Init is done.
                self.runtime = RuntimeState::Ready;
                // It closes registration (RIE: `registrations.TurnOff`,
                // called right after it by internal/lambda/rapid/handlers.go
                // `doRuntimeDomainInit`), and may be the last call Init
                // waits for.
                self.registration_open = false;
                Ok(self.maybe_finish_init(now))
            }
            RuntimeState::ResponseSent => {
                // The /next after an answer ends the runtime's part of the
                // invoke: rapid emits platform.runtimeDone then (RIE:
                // internal/lambda/rapid/handlers.go `doInvoke` waits in
                // `AwaitRuntimeReady` before `SendInvokeRuntimeDone`), with
                // the time since the event's release. The invoke itself may
                // still wait for extensions.
                self.runtime = RuntimeState::Ready;
                let mut fx = Vec::new();
                if let Stage::Invoke(inv) = &mut self.stage {
                    inv.runtime_done = true;
                    fx.push(Effect::RuntimeDone {
                        request_id: inv.request_id.clone(),
                        fault: inv.function_error.clone(),
                        duration: now.instant.saturating_duration_since(inv.started),
                        spans: inv.spans,
                    });
                }
                fx.extend(self.maybe_finish_invoke(now));
                Ok(fx)
            }
            // Any other /next is out of turn: a second one while the runtime
            // is already waiting, one during an invoke before answering it,
            // or one after /init/error.
            from => Err(Refusal::RuntimeState {
                from,
                to: RuntimeState::Ready,
            }),
        }
    }

    /// The invoke a `/response` or `/error` answers, or why there is none.
    /// `ids` are the request id in the path and the invocation id the
    /// runtime echoed, if any.
    fn current_invoke(
        &mut self,
        (request_id, invocation_id): (&str, Option<&str>),
        to: RuntimeState,
    ) -> Result<&mut InvokeCtx, Refusal> {
        // An answer for an invoke that timed out, told by its invocation id:
        // 410 InvokeTimeout (platform-2026: the runtime clients' 2026
        // Invocation-Id changes; RIE's Managed Instances core renders the
        // same, internal/lambda-managed-instances/rapi/rendering/render_error.go
        // `RenderInvokeTimeout`).
        if invocation_id.is_some() && invocation_id == self.timed_out.as_deref() {
            return Err(Refusal::InvokeTimeout);
        }
        // Only a Running runtime may answer, once per invocation: a second
        // answer is a refused transition (RIE: internal/lambda/core/states.go,
        // where only the running state accepts a response or an error).
        let from = self.runtime;
        if from != RuntimeState::Running {
            return Err(Refusal::RuntimeState { from, to });
        }
        // The id in the path must be the current invocation's (400
        // InvalidRequestID, RIE: internal/lambda/rapi/middleware/middleware.go).
        // A Running runtime whose invoke has already failed (a reset is under
        // way) has nothing left to answer: that is a state refusal.
        // An invocation id that is not the current one is refused like a
        // wrong request id (Lambda's answer is UNCONFIRMED: docs/fidelity.md);
        // a runtime that sends none is accepted, as older clients send none.
        match &mut self.stage {
            Stage::Invoke(inv)
                if inv.request_id == request_id
                    && invocation_id.is_none_or(|id| id == inv.invocation_id) =>
            {
                Ok(inv)
            }
            Stage::Invoke(_) => Err(Refusal::InvalidRequestId),
            _ => Err(Refusal::RuntimeState { from, to }),
        }
    }

    /// `POST /runtime/invocation/{id}/response`.
    pub(super) fn runtime_response(
        &mut self,
        ids: (&str, Option<&str>),
        body: Bytes,
        content_type: Option<String>,
        too_large: bool,
    ) -> Step {
        let inv = self.current_invoke(ids, RuntimeState::InvocationResponse)?;
        inv.responded = true;
        let rid = inv.request_id.clone();
        // The body arrives whole, so the runtime passes through
        // InvocationResponse straight to RuntimeResponseSentState (RIE:
        // internal/lambda/core/states.go); only its /next is left to do.
        self.runtime = RuntimeState::ResponseSent;
        if too_large {
            // Over the 6 MB limit (AWS: Lambda quotas; rapid's exact cap is
            // 6 MiB + 100 bytes, `MaxPayloadSize` in RIE:
            // internal/lambda/interop/model.go). The runtime gets 413; the
            // caller gets the platform's error and the invoke counts as
            // failed, but it is not a fatal error: the runtime still calls
            // /next and the environment stays.
            if let Stage::Invoke(inv) = &mut self.stage {
                inv.function_error = Some(Fault::ResponseTooLarge);
            }
            return Ok(vec![Effect::Respond {
                request_id: rid,
                outcome: Outcome::PlatformError {
                    fault: Fault::ResponseTooLarge,
                    message: format!(
                        "Response payload size exceeded maximum allowed payload size ({} bytes).",
                        lext_protocol::MAX_PAYLOAD_SIZE
                    ),
                },
            }]);
        }
        // The caller gets the response at once, even while extensions are
        // still busy with their INVOKE (AWS: Extensions API, "Invoke phase").
        Ok(vec![Effect::Respond {
            request_id: rid,
            outcome: Outcome::Response { body, content_type },
        }])
    }

    /// `POST /runtime/invocation/{id}/response` in streaming mode, once its
    /// headers have come. The caller gets the stream at once; the runtime
    /// stays in InvocationResponse until the body ends (RIE:
    /// internal/lambda/core/states.go, where a streamed response is the
    /// state's own duration), and may not call `/next` before.
    pub(super) fn runtime_stream_start(
        &mut self,
        ids: (&str, Option<&str>),
        content_type: Option<String>,
        now: Now,
    ) -> Step {
        let inv = self.current_invoke(ids, RuntimeState::InvocationResponse)?;
        inv.responded = true;
        inv.stream_started = Some(now);
        let rid = inv.request_id.clone();
        self.runtime = RuntimeState::InvocationResponse;
        Ok(vec![Effect::Respond {
            request_id: rid,
            outcome: Outcome::Stream { content_type },
        }])
    }

    /// The streamed body of the current invoke ended: with a mid-stream
    /// error (the `Lambda-Runtime-Function-Error-Type` trailer; AWS:
    /// Custom runtimes, "Response streaming",
    /// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming>),
    /// past the streaming limit, or whole. The invoke fails for the first
    /// two, as for `/error`, without a reset: the runtime answered.
    pub(super) fn runtime_stream_end(
        &mut self,
        request_id: &str,
        error_type: Option<String>,
        too_large: bool,
        now: Now,
    ) -> Step {
        let from = self.runtime;
        let to = RuntimeState::ResponseSent;
        let Stage::Invoke(inv) = &mut self.stage else {
            return Err(Refusal::RuntimeState { from, to });
        };
        let Some(started) = inv
            .stream_started
            .filter(|_| from == RuntimeState::InvocationResponse)
        else {
            return Err(Refusal::RuntimeState { from, to });
        };
        if inv.request_id != request_id {
            return Err(Refusal::InvalidRequestId);
        }
        let latency = started.instant.saturating_duration_since(inv.started);
        inv.spans = Some(ResponseSpans {
            released_ms: started.epoch_ms.saturating_sub(latency.as_millis() as u64),
            latency,
            duration: now.instant.saturating_duration_since(started.instant),
        });
        if too_large {
            inv.function_error = Some(Fault::ResponseTooLarge);
        } else if let Some(t) = error_type {
            inv.function_error = Some(Fault::Function(sanitize_runtime_error_type(&t).to_owned()));
        }
        self.runtime = to;
        Ok(Vec::new())
    }

    /// `POST /runtime/invocation/{id}/error`: a handled function error.
    pub(super) fn runtime_error(
        &mut self,
        ids: (&str, Option<&str>),
        error_type: Option<String>,
        body: Bytes,
    ) -> Step {
        let inv = self.current_invoke(ids, RuntimeState::InvocationErrorResponse)?;
        inv.responded = true;
        // Telemetry and REPORT record the sanitised type; the caller gets the
        // body unchanged (RIE: internal/lambda/rapi/handler/invocationerror.go,
        // internal/lambda/fatalerror/fatalerror.go). The runtime answered, so
        // this is no fatal error and no reset: the invoke fails, the
        // environment stays.
        inv.function_error = Some(Fault::Function(
            sanitize_runtime_error_type(error_type.as_deref().unwrap_or("")).to_owned(),
        ));
        let rid = inv.request_id.clone();
        self.runtime = RuntimeState::ResponseSent;
        Ok(vec![Effect::Respond {
            request_id: rid,
            outcome: Outcome::FunctionError { body },
        }])
    }

    /// A caller's invoke, fed only when the environment accepts one.
    pub(super) fn invoke(&mut self, pending: PendingInvoke, now: Now) -> Vec<Effect> {
        match self.stage {
            Stage::Idle => self.start_invoke(pending, now),
            // After a reset (or before any Init), Init re-runs inside the
            // invoke, under its timeout (`Phase: invoke`): rapid's `doInvoke`
            // runs `doRuntimeDomainInit` itself when Init is not done (RIE:
            // internal/lambda/rapid/handlers.go).
            Stage::Down => self.start_init(Phase::Invoke, Some(pending), now),
            // The driver only feeds invokes when `accepts_invoke`; anything
            // else is a driver bug, answered rather than lost.
            _ => vec![Effect::Respond {
                request_id: pending.request_id,
                outcome: Outcome::PlatformError {
                    fault: Fault::Sandbox,
                    message: "the environment is busy".to_owned(),
                },
            }],
        }
    }

    /// Releases the event: to the INVOKE-subscribed extensions, then to the
    /// runtime.
    pub(super) fn start_invoke(&mut self, p: PendingInvoke, now: Now) -> Vec<Effect> {
        // The processes were frozen since the last event.
        let mut fx = self.thaw();
        // One deadline for the runtime (`Lambda-Runtime-Deadline-Ms`, AWS:
        // Runtime API) and the extensions (`deadlineMs`, AWS: Extensions
        // API): the invoke's arrival plus the function timeout.
        let deadline_ms = p.started.epoch_ms + self.config.function_timeout.as_millis() as u64;
        fx.push(Effect::InvokeStarted {
            request_id: p.request_id.clone(),
        });
        // Extensions first, then the runtime (RIE:
        // internal/lambda/rapid/handlers.go `doInvoke` releases the agents
        // before the runtime). Extensions not subscribed to INVOKE stay
        // blocked in /event/next and are not waited for.
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
            invocation_id: p.invocation_id.clone(),
            deadline_ms,
            payload: p.payload,
            client_context: p.client_context,
        });
        // The invoke starts with no fatal error of its own.
        self.fatal = None;
        self.fault_detail = None;
        self.stage = Stage::Invoke(InvokeCtx {
            request_id: p.request_id,
            invocation_id: p.invocation_id,
            // A phase-invoke Init counts in the invoke's timeout but not in
            // its Duration (it is reported as Init Duration).
            started: now.instant,
            // The function timeout bounds the whole invoke, runtime and
            // extensions together (AWS: Extensions API, "Invoke phase").
            deadline: p.started.instant + self.config.function_timeout,
            responded: false,
            runtime_done: false,
            // Only the first invoke after an Init is a cold start.
            init_duration: self.cold_start.take(),
            function_error: None,
            stream_started: None,
            spans: None,
        });
        fx
    }

    /// Ends the invoke when the runtime and every INVOKE-subscribed
    /// extension are done.
    pub(super) fn maybe_finish_invoke(&mut self, now: Now) -> Vec<Effect> {
        let Stage::Invoke(inv) = &self.stage else {
            return Vec::new();
        };
        if !inv.runtime_done {
            return Vec::new();
        }
        // Only INVOKE-subscribed extensions are waited for; the others stay
        // blocked in /event/next all along. The time they take after the
        // runtime is part of the invoke's Duration (AWS: Extensions API,
        // "Invoke phase": PostRuntimeExtensionsDuration; RIE:
        // internal/lambda/rapid/handlers.go `doInvoke`, `AwaitAgentsReady`).
        if self
            .extensions
            .iter()
            .any(|e| e.invoke && e.state == ExtensionState::Running)
        {
            return Vec::new();
        }
        let Stage::Invoke(inv) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Vec::new();
        };
        let mut fx = vec![Effect::InvokeEnded(Report {
            request_id: inv.request_id,
            duration: now.instant.saturating_duration_since(inv.started),
            init_duration: inv.init_duration,
            fault: inv.function_error,
        })];
        // Everyone is done and no event is pending: Lambda freezes the
        // environment (AWS: Lambda execution environment lifecycle).
        fx.extend(self.freeze());
        fx
    }

    /// Stops every process until the next event (SIGSTOP, by the driver).
    pub(super) fn freeze(&mut self) -> Vec<Effect> {
        // Once: the processes are stopped or they are not.
        if self.frozen {
            return Vec::new();
        }
        self.frozen = true;
        vec![Effect::Freeze]
    }

    /// Resumes the processes before anything must run: an event, or a
    /// shutdown (a frozen process can handle neither SIGTERM nor SHUTDOWN).
    pub(super) fn thaw(&mut self) -> Vec<Effect> {
        if !self.frozen {
            return Vec::new();
        }
        self.frozen = false;
        vec![Effect::Thaw]
    }
}
