//! Failures: fatal errors, the two timeouts, and process exits outside
//! shutdown.
//!
//! A fatal error fails whatever runs and resets the environment: Init fails
//! with `INIT_REPORT`, an invoke with a platform error, an idle environment
//! just resets; the next invoke re-runs Init (AWS: Lambda execution
//! environment lifecycle, "Failures during the invoke phase"). The first
//! fatal error wins (RIE: internal/lambda/appctx/appctxutil.go
//! `StoreFirstFatalError`). The pages and the repository are listed in the
//! module docs of `lifecycle`.

use lext_protocol::extensions::ShutdownReason;

use super::{
    Effect, ExitStatus, Extension, ExtensionId, ExtensionState, Fault, Lifecycle, Now, Outcome,
    PendingInvoke, Proc, Refusal, Report, RuntimeState, Stage, Step,
};

impl Lifecycle {
    /// `POST /extension/exit/error`: the extension reports an error before
    /// it exits (AWS: Extensions API).
    pub(super) fn extension_exit_error(&mut self, id: ExtensionId, now: Now) -> Step {
        let index = self.known_reporter(id)?;
        let ext = &mut self.extensions[index];
        match ext.state {
            // Any state in which it talks to the API may end this way (RIE:
            // internal/lambda/core/externalagent_states.go).
            ExtensionState::Registered | ExtensionState::Ready | ExtensionState::Running => {
                ext.state = ExtensionState::ExitError;
                if matches!(self.stage, Stage::Shutdown(_)) {
                    // Already going down; the error is recorded in the state.
                    // rapid ignores fatal errors while it shuts down (RIE:
                    // internal/lambda/rapid/shutdown.go `shutdown`).
                    return Ok(Vec::new());
                }
                // Otherwise it fails whatever runs with Extension.ExitError
                // (RIE: internal/lambda/rapi/handler/agentexiterror.go).
                Ok(self.fatal_error(Fault::ExtensionExit, now))
            }
            // rapid's refusal names Exited as the state asked for (RIE:
            // internal/lambda/rapi/handler/agentexiterror.go).
            from => Err(Refusal::ExtensionState {
                from,
                to: ExtensionState::Exited,
                who: id.to_string(),
            }),
        }
    }

    /// Records a fatal error (the first one wins) and fails whatever phase is
    /// running: Init fails with `INIT_REPORT`, an invoke fails with a
    /// platform error, an idle environment is reset.
    pub(super) fn fatal_error(&mut self, fault: Fault, now: Now) -> Vec<Effect> {
        // The first fatal error is the root cause: it has failed the phase
        // and started the reset already, and a later one must neither
        // rewrite its error type nor fail anything twice (RIE:
        // internal/lambda/appctx/appctxutil.go `StoreFirstFatalError`).
        if self.fatal.is_some() {
            return Vec::new();
        }
        self.fatal = Some(fault.clone());
        let mut fx = Vec::new();
        match std::mem::replace(&mut self.stage, Stage::Down) {
            Stage::Init(init) => {
                // Any failure during Init fails it, and Lambda resets the
                // environment (AWS: Extensions API, "Failure handling"):
                // INIT_REPORT with the error, then a shutdown with reason
                // failure.
                fx.push(Effect::InitFailed {
                    phase: init.phase,
                    duration: now.instant.saturating_duration_since(init.started),
                    fault: fault.clone(),
                    extensions: self.extensions.iter().map(Extension::summary).collect(),
                });
                // The invoke this Init ran inside fails with it.
                if let Some(p) = init.pending_invoke {
                    fx.extend(self.fail_pending(p, fault, None, now));
                }
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            Stage::Invoke(inv) => {
                // A crash or an error during an invoke fails it and resets
                // the environment (AWS: Lambda execution environment
                // lifecycle, "Failures during the invoke phase"). The fault
                // line names the request; the caller, if not answered yet,
                // gets the same text; REPORT shows the error.
                let message = format!(
                    "RequestId: {} Error: {}",
                    inv.request_id,
                    self.fault_text(&fault)
                );
                fx.push(Effect::FaultLine {
                    message: message.clone(),
                    fault: fault.clone(),
                });
                if !inv.responded {
                    fx.push(Effect::Respond {
                        request_id: inv.request_id.clone(),
                        outcome: Outcome::PlatformError {
                            fault: fault.clone(),
                            message,
                        },
                    });
                }
                fx.push(Effect::InvokeEnded(Report {
                    request_id: inv.request_id,
                    duration: now.instant.saturating_duration_since(inv.started),
                    init_duration: inv.init_duration,
                    fault: Some(fault),
                }));
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            Stage::Serving => {
                // Managed Instances: every invoke in flight fails with it,
                // then the environment shuts down for good (RIE: any
                // process exit shuts down, with no re-init).
                fx.extend(self.fail_running(&fault, now));
                if fx.is_empty() {
                    fx.push(Effect::FaultLine {
                        message: self.fault_text(&fault),
                        fault,
                    });
                }
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            Stage::Idle => {
                // Nothing runs, so nothing fails but the environment: a fault
                // line without a request id, then the reset.
                fx.push(Effect::FaultLine {
                    message: self.fault_text(&fault),
                    fault,
                });
                fx.extend(self.begin_shutdown(ShutdownReason::Failure, now));
            }
            other => {
                // Down, Stopped or already shutting down: nothing to fail.
                self.stage = other;
            }
        }
        fx
    }

    /// The `Error:` text of a fault line and of the caller's
    /// `errorMessage`.
    pub(super) fn fault_text(&self, fault: &Fault) -> String {
        // How the process ended, when the fault is an exit: more precise
        // than the kind. The runtime's is worded as rapid words it,
        // `Runtime exited with error: exit status 1` (RIE:
        // internal/lambda/rapid/handlers.go `watchEvents`).
        if let Some(detail) = &self.fault_detail {
            return detail.clone();
        }
        match fault {
            Fault::RuntimeExit => "Runtime exited with error".to_owned(),
            Fault::ExtensionCrash => "Extension exited before completing the request".to_owned(),
            other => other.error_type().to_owned(),
        }
    }

    /// Answers an invoke whose phase-invoke Init failed or timed out: it
    /// still gets `START`, `END` and `REPORT` (rapid emits the start even
    /// when the Init inside the invoke fails: RIE:
    /// internal/lambda/rapid/handlers.go `doInvoke`).
    fn fail_pending(
        &mut self,
        p: PendingInvoke,
        fault: Fault,
        message: Option<String>,
        now: Now,
    ) -> Vec<Effect> {
        let message = message.unwrap_or_else(|| {
            format!(
                "RequestId: {} Error: {}",
                p.request_id,
                self.fault_text(&fault)
            )
        });
        vec![
            Effect::InvokeStarted {
                request_id: p.request_id.clone(),
            },
            Effect::Respond {
                request_id: p.request_id.clone(),
                outcome: Outcome::PlatformError {
                    fault: fault.clone(),
                    message,
                },
            },
            // The Init was part of the invoke: its Duration runs from the
            // invoke's arrival, and a failed Init is no cold start to show
            // as Init Duration.
            Effect::InvokeEnded(Report {
                request_id: p.request_id,
                duration: now.instant.saturating_duration_since(p.started.instant),
                init_duration: None,
                fault: Some(fault),
            }),
        ]
    }

    /// A process of the environment ended.
    pub(super) fn exited(
        &mut self,
        generation: u64,
        proc: Proc,
        status: ExitStatus,
        now: Now,
    ) -> Vec<Effect> {
        // An exit from a previous Init's processes (reaped late) says
        // nothing about this one.
        if generation != self.generation {
            return Vec::new();
        }
        // During shutdown exits are expected, and rapid does not count them
        // as errors (RIE: internal/lambda/rapid/handlers.go `watchEvents`).
        if matches!(self.stage, Stage::Shutdown(_)) {
            return self.exited_in_shutdown(proc, status);
        }
        // Outside shutdown every exit is a fatal error: Runtime.ExitError
        // for the runtime, Extension.Crash for an extension (RIE:
        // internal/lambda/rapid/handlers.go `watchEvents`), unless the
        // process had already reported its failure.
        let error = match proc {
            Proc::Runtime => {
                if !self.runtime_alive {
                    return Vec::new();
                }
                self.runtime_alive = false;
                let before = self.runtime;
                self.runtime = RuntimeState::Exited;
                if before == RuntimeState::InitError {
                    // The fatal error was stored by /init/error already:
                    // exiting after it is what the runtime should do.
                    None
                } else if status == ExitStatus::OutOfMemory {
                    // Lambda's words for it: the runtime's exit, with the
                    // out-of-memory type (observed: `Runtime exited with
                    // error: signal: killed` / `Runtime.OutOfMemory`).
                    Some((
                        Fault::OutOfMemory,
                        format!("Runtime exited with error: {status}"),
                    ))
                } else if status.success() {
                    // Exit code 0 is no error code to report: rapid says
                    // so (RIE: internal/lambda/rapid/handlers.go
                    // `watchEvents`).
                    Some((
                        Fault::RuntimeExit,
                        "Runtime exited without providing a reason".to_owned(),
                    ))
                } else {
                    Some((
                        Fault::RuntimeExit,
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
                if matches!(
                    ext.state,
                    ExtensionState::InitError | ExtensionState::ExitError
                ) {
                    None
                } else {
                    // An extension crash fails the invoke even when the
                    // runtime has already answered; one killed for the
                    // environment's memory is the environment's
                    // Runtime.OutOfMemory.
                    let fault = if status == ExitStatus::OutOfMemory {
                        Fault::OutOfMemory
                    } else {
                        Fault::ExtensionCrash
                    };
                    Some((fault, format!("Extension {} exited: {status}", ext.name)))
                }
            }
        };
        match error {
            Some((fault, text)) => {
                let mut fx = Vec::new();
                // The detail goes with the fault that wins, so only the
                // first one's is kept.
                if self.fatal.is_none() {
                    self.fault_detail = Some(text.clone());
                }
                // During Init the fault line is printed here, with the
                // exit's words and no request id (fatal_error prints none
                // for Init); in an invoke or while idle fatal_error prints
                // it, with the request id in an invoke.
                if matches!(self.stage, Stage::Init(_)) {
                    fx.push(Effect::FaultLine {
                        message: text,
                        fault: fault.clone(),
                    });
                }
                fx.extend(self.fatal_error(fault, now));
                fx
            }
            // An extension that reported init/exit error and then exited
            // (as it should): its report already failed the phase and
            // started the reset, so its exit is not a second error.
            None => Vec::new(),
        }
    }

    /// The Init limit (or, for a phase-invoke Init, the function timeout)
    /// is up.
    pub(super) fn init_timed_out(&mut self, now: Now) -> Vec<Effect> {
        let t = now.instant;
        let Stage::Init(init) = std::mem::replace(&mut self.stage, Stage::Down) else {
            return Vec::new();
        };
        // A timeout is this Init's fatal error: nothing after it may fail
        // the Init a second time.
        self.fatal = Some(Fault::Timeout);
        // INIT_REPORT with Status: timeout; the next invoke retries Init
        // under the function timeout (AWS: Lambda execution environment
        // lifecycle, "Init phase").
        let mut fx = vec![Effect::InitFailed {
            phase: init.phase,
            duration: t.saturating_duration_since(init.started),
            fault: Fault::Timeout,
            extensions: self.extensions.iter().map(Extension::summary).collect(),
        }];
        // A phase-invoke Init shares the invoke's timeout, so the invoke
        // times out with it, with the function timeout's own message.
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
            fx.extend(self.fail_pending(p, Fault::Timeout, Some(message), now));
        }
        fx.extend(self.begin_shutdown(ShutdownReason::Timeout, now));
        fx
    }

    /// The function timeout is up: it bounds the whole invoke, runtime and
    /// extensions together (AWS: Extensions API, "Invoke phase").
    pub(super) fn invoke_timed_out(&mut self, now: Now) -> Vec<Effect> {
        let Stage::Invoke(inv) = std::mem::replace(&mut self.stage, Stage::Down) else {
            return Vec::new();
        };
        self.fatal = Some(Fault::Timeout);
        // A late answer for it is told apart by its invocation id.
        self.timed_out = Some(inv.invocation_id.clone());
        let after = self.config.function_timeout;
        let mut fx = vec![Effect::TimedOut {
            request_id: inv.request_id.clone(),
            after,
        }];
        // The caller may already have its answer (the runtime answered, an
        // extension was late): it gets no second one.
        if !inv.responded {
            fx.push(Effect::Respond {
                request_id: inv.request_id.clone(),
                outcome: Outcome::PlatformError {
                    fault: Fault::Timeout,
                    message: format!(
                        "RequestId: {} Error: Task timed out after {:.2} seconds",
                        inv.request_id,
                        after.as_secs_f64()
                    ),
                },
            });
        }
        // A runtime that never finished still gets its platform.runtimeDone,
        // with status timeout (RIE: internal/lambda/rapid/handlers.go
        // `handleReset` sends it on a timeout reset).
        if !inv.runtime_done {
            fx.push(Effect::RuntimeDone {
                request_id: inv.request_id.clone(),
                fault: Some(Fault::Timeout),
                duration: after,
                spans: None,
            });
        }
        // REPORT shows the timeout itself as Duration, and Status: timeout,
        // as Lambda's REPORT lines after a timeout do.
        fx.push(Effect::InvokeEnded(Report {
            request_id: inv.request_id,
            duration: after,
            init_duration: inv.init_duration,
            fault: Some(Fault::Timeout),
        }));
        // A timeout resets the environment, with reason timeout (AWS:
        // Lambda execution environment lifecycle, "Failures during the
        // invoke phase").
        fx.extend(self.begin_shutdown(ShutdownReason::Timeout, now));
        fx
    }
}
