//! Shutdown: a spindown (for good) or a reset (after a timeout or a
//! failure), in two stages.
//!
//! The runtime goes first: SIGTERM, then SIGKILL when its share of the
//! budget is up. Then every external extension subscribed to SHUTDOWN gets
//! the event and must exit by its `deadlineMs`; the others are killed at
//! once, and whatever is left at the deadline is killed too (AWS: Lambda
//! execution environment lifecycle, "Shutdown phase"; AWS: Extensions API,
//! "Shutdown phase"; aws-samples/graceful-shutdown-with-aws-lambda README;
//! RIE: internal/lambda/rapid/shutdown.go). The pages and the repository are
//! listed in the module docs of `lifecycle`.

use std::time::{Duration, Instant};

use lext_protocol::extensions::ShutdownReason;

use super::{
    Effect, ExitStatus, ExtensionState, Fault, Kind, Lifecycle, Now, Outcome, Proc, RuntimeState,
    ShutdownCtx, Signal, Stage, MAX_PROCESS_EXIT_WAIT, RUNTIME_SHARE_EXTERNAL,
    SHUTDOWN_BUDGET_EXTERNAL, SHUTDOWN_BUDGET_INTERNAL,
};

impl Lifecycle {
    /// [`Input::Shutdown`](super::Input::Shutdown): stop for good (Ctrl-C,
    /// the end of `--invoke N`), as Lambda's idle spindown does (reason
    /// `spindown`).
    pub(super) fn spindown(&mut self, now: Now) -> Vec<Effect> {
        match &mut self.stage {
            // No process runs: there is nothing to shut down.
            Stage::Down => {
                self.stage = Stage::Stopped;
                vec![Effect::ShutdownDone {
                    reason: ShutdownReason::Spindown,
                    stopped: true,
                    unreaped: 0,
                }]
            }
            Stage::Stopped => Vec::new(),
            Stage::Shutdown(s) => {
                // A reset is running: stop for good when it is done. It
                // keeps its reason and its deadline, which the extensions
                // may already have been sent.
                s.stopped = true;
                self.stop_requested = true;
                Vec::new()
            }
            Stage::Init(_) | Stage::Idle | Stage::Invoke(_) | Stage::Serving => {
                self.stop_requested = true;
                let mut fx = Vec::new();
                // Managed Instances: a caller still waiting is answered.
                fx.extend(self.fail_running(&Fault::Sandbox, now));
                // Whatever runs is cut short, but a caller still waiting
                // gets an answer rather than a dropped connection.
                match std::mem::replace(&mut self.stage, Stage::Down) {
                    Stage::Invoke(inv) if !inv.responded => fx.push(Effect::Respond {
                        request_id: inv.request_id,
                        outcome: Outcome::PlatformError {
                            fault: Fault::Sandbox,
                            message: "The local environment was shut down during the invoke"
                                .to_owned(),
                        },
                    }),
                    Stage::Init(init) => {
                        if let Some(p) = init.pending_invoke {
                            fx.push(Effect::Respond {
                                request_id: p.request_id,
                                outcome: Outcome::PlatformError {
                                    fault: Fault::Sandbox,
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

    /// The shutdown budget for this configuration, and the runtime's share
    /// of it (AWS: Lambda execution environment lifecycle, "Shutdown
    /// phase"; aws-samples/graceful-shutdown-with-aws-lambda README).
    fn budget(&self) -> (Duration, Duration) {
        if self.is_managed() {
            // Managed Instances: 2 s in all, the runtime SIGKILLed 600 ms
            // after its SIGTERM; with no extension the runtime is SIGKILLed
            // at once (RIE `rapid/shutdown.go`).
            return match self.extensions.is_empty() {
                true => (Duration::ZERO, Duration::ZERO),
                false => (super::lmi::SHUTDOWN_BUDGET, super::lmi::RUNTIME_SHUTDOWN),
            };
        }
        let external = self.extensions.iter().any(|e| e.kind == Kind::External);
        let internal = self.extensions.iter().any(|e| e.kind == Kind::Internal);
        // rapid gives the runtime 30 % of whatever time is left
        // (`runtimeDeadlineShare` in RIE: internal/lambda/rapid/shutdown.go);
        // these are the figures AWS documents for Lambda itself.
        match (external, internal) {
            // 2,000 ms; the runtime has up to 500 ms when an internal
            // extension runs in it, 300 ms otherwise; the extensions have
            // the rest.
            (true, true) => (SHUTDOWN_BUDGET_EXTERNAL, SHUTDOWN_BUDGET_INTERNAL),
            (true, false) => (SHUTDOWN_BUDGET_EXTERNAL, RUNTIME_SHARE_EXTERNAL),
            // 500 ms, all of it the runtime's: internal extensions live in
            // its process.
            (false, true) => (SHUTDOWN_BUDGET_INTERNAL, SHUTDOWN_BUDGET_INTERNAL),
            // 0 ms: with no extension to wait for, the runtime gets no
            // SIGTERM and is killed at once (RIE:
            // internal/lambda/rapid/shutdown.go `shutdown`).
            (false, false) => (Duration::ZERO, Duration::ZERO),
        }
    }

    /// Starts a shutdown: the runtime's stage, or straight the extensions'
    /// when the runtime has no share.
    pub(super) fn begin_shutdown(&mut self, reason: ShutdownReason, now: Now) -> Vec<Effect> {
        // Frozen processes cannot handle SIGTERM or SHUTDOWN: thaw first.
        let mut fx = self.thaw();
        // Nothing may register into an environment going down.
        self.registration_open = false;
        let (budget, runtime_share) = self.budget();
        // Managed Instances know two reasons only, spindown and failure
        // (RIE `rapid/shutdown.go`): an Init timeout is a failure there.
        let reason = match (self.is_managed(), reason) {
            (true, ShutdownReason::Timeout) => ShutdownReason::Failure,
            (_, reason) => reason,
        };
        // A spindown stops for good; a reset leaves the environment down,
        // for the next invoke to re-run Init, unless a spindown was asked
        // for in the meantime.
        // Managed Instances never reset: any shutdown is for good.
        let stopped =
            self.stop_requested || reason == ShutdownReason::Spindown || self.is_managed();
        self.stage = Stage::Shutdown(ShutdownCtx {
            reason,
            stopped,
            // SHUTDOWN's `deadlineMs` is the end of the whole budget, by
            // which every process must be gone (AWS: Extensions API).
            deadline: now.instant + budget,
            deadline_ms: now.epoch_ms + budget.as_millis() as u64,
            runtime_kill_at: None,
            killed: Vec::new(),
            killed_all: false,
            // rapid waits this long for killed processes to be reaped, then
            // gives up on them (RIE: internal/lambda/rapid/shutdown.go
            // `clearExitedChannel`).
            give_up_at: now.instant + budget + MAX_PROCESS_EXIT_WAIT,
        });
        // The runtime goes first: SIGTERM now, SIGKILL when its share is up
        // (RIE: internal/lambda/rapid/shutdown.go `shutdownRuntime`).
        if self.runtime_alive && !runtime_share.is_zero() {
            fx.push(Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Term,
            });
            if let Stage::Shutdown(s) = &mut self.stage {
                s.runtime_kill_at = Some(now.instant + runtime_share);
            }
            return fx;
        }
        fx.extend(self.shutdown_extensions());
        fx
    }

    /// Second stage: the runtime is gone or out of time; SHUTDOWN to the
    /// subscribed extensions, SIGKILL to the others.
    fn shutdown_extensions(&mut self) -> Vec<Effect> {
        let Stage::Shutdown(s) = &mut self.stage else {
            return Vec::new();
        };
        // The runtime's stage is over, whether it exited or ran out of time.
        s.runtime_kill_at = None;
        let reason = s.reason.clone();
        let deadline_ms = s.deadline_ms;
        let mut fx = Vec::new();
        // Out of time (or given none): SIGKILL.
        if self.runtime_alive {
            s.killed.push(Proc::Runtime);
            fx.push(Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Kill,
            });
        }
        let killed = &mut s.killed;
        for (index, ext) in self.extensions.iter_mut().enumerate() {
            // Gone (internal extensions never had a process), or already
            // sent its SHUTDOWN, or due it.
            if !ext.alive || ext.shutdown_sent || ext.shutdown_pending {
                continue;
            }
            let can_receive = ext.shutdown
                && matches!(ext.state, ExtensionState::Ready | ExtensionState::Running);
            match (can_receive, ext.state, ext.id) {
                // A SHUTDOWN subscriber blocked in /event/next gets the
                // event now, and has until the deadline to exit (RIE:
                // internal/lambda/rapid/shutdown.go `shutdownAgents`).
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
                // itself (AWS: Extensions API); it has until the deadline,
                // like the others.
                (false, ExtensionState::InitError | ExtensionState::ExitError, _) => {}
                // Not subscribed to SHUTDOWN, or not waiting for events yet
                // (never registered, or no /event/next yet): no SHUTDOWN can
                // reach it, so SIGKILL at once (AWS: Extensions API,
                // "Shutdown phase"; RIE: internal/lambda/rapid/shutdown.go
                // `shutdownAgents`).
                _ => {
                    killed.push(Proc::Extension(index));
                    fx.push(Effect::Signal {
                        proc: Proc::Extension(index),
                        signal: Signal::Kill,
                    });
                }
            }
        }
        // Every process may be gone already.
        fx.extend(self.maybe_finish_shutdown());
        fx
    }

    /// The deadline is up: SIGKILL to every process still alive, SHUTDOWN
    /// subscribers included (AWS: Extensions API, "Shutdown phase"; rapid
    /// does it in the standalone mode the emulator runs in, RIE:
    /// internal/lambda/rapid/shutdown.go `shutdownAgents`).
    fn kill_all(&mut self) -> Vec<Effect> {
        let budget = self.budget().0;
        let killed = match &self.stage {
            Stage::Shutdown(s) => s.killed.clone(),
            _ => Vec::new(),
        };
        let mut fx = Vec::new();
        let mut kill = |proc: Proc, name: &str| {
            // Each one named, with the time it had: a user sees what
            // Lambda would have killed, and why. One already SIGKILLed
            // (and not yet reaped) did not miss anything.
            if !killed.contains(&proc) {
                fx.push(Effect::MissedDeadline {
                    proc,
                    name: name.to_owned(),
                    budget,
                });
            }
            fx.push(Effect::Signal {
                proc,
                signal: Signal::Kill,
            });
        };
        if self.runtime_alive {
            kill(Proc::Runtime, "runtime");
        }
        for (index, ext) in self.extensions.iter().enumerate() {
            if ext.alive {
                kill(Proc::Extension(index), &ext.name);
            }
        }
        fx
    }

    /// A process exited during shutdown: an expected exit, not an error.
    pub(super) fn exited_in_shutdown(&mut self, proc: Proc, status: ExitStatus) -> Vec<Effect> {
        match proc {
            Proc::Runtime => {
                if !self.runtime_alive {
                    return Vec::new();
                }
                self.runtime_alive = false;
                self.runtime = RuntimeState::Exited;
                // The runtime went before its share ran out: on to the
                // extensions at once, so they get the time it left.
                let runtime_stage =
                    matches!(&self.stage, Stage::Shutdown(s) if s.runtime_kill_at.is_some());
                if runtime_stage {
                    return self.shutdown_extensions();
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
                // Exit status 0 after SHUTDOWN is a clean exit, Exited;
                // anything else (killed, non-zero, never sent SHUTDOWN) is
                // ShutdownFailed (RIE: internal/lambda/rapid/shutdown.go
                // `handleProcessExit`). The error states keep their name.
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
            }
        }
        self.maybe_finish_shutdown()
    }

    /// Fires the shutdown timer that is due: the end of the runtime's share,
    /// the deadline, or the end of the wait for the killed.
    pub(super) fn shutdown_tick(&mut self, t: Instant) -> Vec<Effect> {
        let Stage::Shutdown(s) = &mut self.stage else {
            return Vec::new();
        };
        // The runtime's share is up: on to the extensions, which SIGKILLs
        // the runtime first.
        if let Some(at) = s.runtime_kill_at {
            if t < at {
                return Vec::new();
            }
            let mut fx = Vec::new();
            if self.runtime_alive {
                fx.push(Effect::MissedDeadline {
                    proc: Proc::Runtime,
                    name: "runtime".to_owned(),
                    budget: self.budget().1,
                });
            }
            fx.extend(self.shutdown_extensions());
            return fx;
        }
        // The deadline is up: SIGKILL to whatever is left.
        if !s.killed_all && t >= s.deadline {
            s.killed_all = true;
            let mut fx = self.kill_all();
            fx.extend(self.maybe_finish_shutdown());
            return fx;
        }
        // A killed process that is still not reaped (stuck in
        // uninterruptible sleep, say) is given up on rather than waited for
        // forever, as rapid does (RIE: internal/lambda/rapid/shutdown.go
        // `clearExitedChannel`); an extension given up on failed its
        // shutdown.
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

    /// Ends the shutdown once every process has exited.
    pub(super) fn maybe_finish_shutdown(&mut self) -> Vec<Effect> {
        let Stage::Shutdown(s) = &self.stage else {
            return Vec::new();
        };
        // The extensions' stage must have run: until then the SHUTDOWN
        // subscribers have not been told, even if every process is gone.
        if s.runtime_kill_at.is_some()
            || self.runtime_alive
            || self.extensions.iter().any(|e| e.alive)
        {
            return Vec::new();
        }
        self.finish_shutdown(0)
    }

    /// The shutdown is over: the environment is down, or stopped for good.
    fn finish_shutdown(&mut self, unreaped: usize) -> Vec<Effect> {
        let Stage::Shutdown(s) = std::mem::replace(&mut self.stage, Stage::Down) else {
            return Vec::new();
        };
        // No process is left to be frozen, and identifiers die with the
        // environment: after a reset the next invoke re-runs Init, and its
        // extensions register anew (AWS: Lambda execution environment
        // lifecycle, "Failures during the invoke phase").
        self.frozen = false;
        self.by_id.clear();
        if s.stopped {
            self.stage = Stage::Stopped;
        }
        vec![Effect::ShutdownDone {
            reason: s.reason,
            stopped: s.stopped,
            unreaped,
        }]
    }
}
