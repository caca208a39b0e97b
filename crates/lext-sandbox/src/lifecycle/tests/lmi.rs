//! Unit tests of the Managed Instances rules (`lmi`), with injected time.

use std::time::Duration;

use bytes::Bytes;
use lext_protocol::error::error_type;
use lext_protocol::extensions::{EventType, ShutdownReason};
use lext_protocol::telemetry::{Api, LogType, Phase, SubscribeRequest};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(3);

impl H {
    /// A Managed Instances environment with up to 8 workers.
    fn managed(exts: &[&str]) -> Self {
        Self::managed_with_timeout(exts, TIMEOUT)
    }

    fn managed_with_timeout(exts: &[&str], timeout: Duration) -> Self {
        Self::with_config(exts, timeout, INIT_TIMEOUT, Some(8))
    }

    /// Init with every extension on SHUTDOWN, ids 1..=n, and `workers`
    /// runtime workers in /next.
    fn serve(&mut self, workers: usize) -> Vec<Effect> {
        let mut fx = self.ok(Input::Init);
        let names = self.lc.config.extensions.clone();
        for (i, name) in names.iter().enumerate() {
            fx.extend(self.ok(register(i as u128 + 1, name, &[EventType::Shutdown])));
        }
        for _ in 0..workers {
            fx.extend(self.ok(Input::RuntimeNext));
        }
        for i in 0..names.len() {
            fx.extend(self.ok(Input::ExtensionNext {
                id: id(i as u128 + 1),
            }));
        }
        fx
    }
}

fn response(rid: &str) -> Input {
    Input::RuntimeResponse {
        request_id: rid.into(),
        invocation_id: None,
        body: Bytes::from_static(b"ok"),
        content_type: None,
        too_large: false,
    }
}

fn rejected(fx: &[Effect]) -> Option<&'static str> {
    fx.iter().find_map(|e| match e {
        Effect::Respond {
            outcome: Outcome::Rejected { error_type },
            ..
        } => Some(*error_type),
        _ => None,
    })
}

fn reports(fx: &[Effect]) -> Vec<&Report> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::InvokeEnded(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn init_limit_is_130_s_or_the_function_timeout() {
    let h = H::managed(&[]);
    assert_eq!(h.lc.config.init_timeout, Duration::from_secs(130));
    let h = H::managed_with_timeout(&[], Duration::from_secs(900));
    assert_eq!(h.lc.config.init_timeout, Duration::from_secs(900));
}

#[test]
fn init_is_done_when_extensions_are_ready_and_one_worker_called_next() {
    let mut h = H::managed(&["a"]);
    h.ok(Input::Init);
    h.ok(register(1, "a", &[EventType::Shutdown]));
    // The runtime's first worker: not yet done, the extension is not ready.
    let fx = h.ok(Input::RuntimeNext);
    assert!(!fx.iter().any(|e| matches!(e, Effect::InitDone { .. })));
    // More workers may come during Init.
    h.ok(Input::RuntimeNext);
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    assert!(fx.iter().any(|e| matches!(e, Effect::InitDone { .. })));
    // Nothing is frozen under Managed Instances.
    assert!(!fx.iter().any(|e| matches!(e, Effect::Freeze)));
    assert_eq!(h.lc.workers(), (2, 0));
    assert!(h.lc.accepts_invoke());
    assert!(h.lc.is_quiet());
}

#[test]
fn invokes_run_concurrently_up_to_the_idle_workers_then_are_unavailable() {
    let mut h = H::managed(&["a"]);
    h.serve(3);
    for rid in ["r1", "r2", "r3"] {
        let fx = h.invoke(rid);
        assert!(matches!(&fx[0], Effect::InvokeStarted { request_id } if request_id == rid));
        // No INVOKE to any extension, no thaw: only the runtime.
        assert!(!fx.iter().any(|e| matches!(e, Effect::DeliverInvoke { .. })));
        assert!(
            matches!(&fx[1], Effect::DeliverToRuntime { deadline_ms, .. }
            if *deadline_ms == T0_EPOCH + 3_000)
        );
    }
    assert_eq!(h.lc.workers(), (0, 3));
    assert!(!h.lc.is_quiet());
    // The fourth finds no idle worker: rejected at once, nothing started.
    let fx = h.invoke("r4");
    assert_eq!(rejected(&fx), Some(error_type::RUNTIME_UNAVAILABLE));
    assert_eq!(fx.len(), 1);
    // A worker answers: its invoke ends at once (no runtimeDone, no wait
    // for extensions), and it is idle again only at its next /next.
    h.advance(Duration::from_millis(100));
    let fx = h.ok(response("r2"));
    assert!(
        matches!(&fx[0], Effect::Respond { request_id, outcome: Outcome::Response { .. } } if request_id == "r2")
    );
    let r = reports(&fx);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].duration, Duration::from_millis(100));
    assert_eq!(r[0].fault, None);
    assert!(!fx.iter().any(|e| matches!(e, Effect::RuntimeDone { .. })));
    assert_eq!(
        rejected(&h.invoke("r5")),
        Some(error_type::RUNTIME_UNAVAILABLE)
    );
    h.ok(Input::RuntimeNext);
    assert_eq!(rejected(&h.invoke("r5")), None);
}

#[test]
fn a_duplicate_of_a_running_invoke_id_is_refused() {
    let mut h = H::managed(&[]);
    h.serve(2);
    h.invoke("same");
    let fx = h.invoke("same");
    assert_eq!(rejected(&fx), Some(error_type::DUPLICATED_INVOKE_ID));
    // The first still runs and is answered; then the id is free again.
    h.ok(response("same"));
    h.ok(Input::RuntimeNext);
    assert_eq!(rejected(&h.invoke("same")), None);
}

#[test]
fn answers_are_matched_by_request_id_and_echoed_invocation_id() {
    let mut h = H::managed(&[]);
    h.serve(2);
    h.invoke("a");
    h.invoke("b");
    assert_eq!(h.refused(response("nope")), Refusal::InvalidRequestId);
    let wrong = Input::RuntimeError {
        request_id: "a".into(),
        invocation_id: Some("inv-b".into()),
        error_type: None,
        body: Bytes::new(),
    };
    assert_eq!(h.refused(wrong), Refusal::InvalidRequestId);
    let error = Input::RuntimeError {
        request_id: "b".into(),
        invocation_id: Some("inv-b".into()),
        error_type: Some("Function.Boom".into()),
        body: Bytes::from_static(b"{}"),
    };
    let fx = h.ok(error);
    assert_eq!(
        reports(&fx)[0].fault,
        Some(Fault::Function("Function.Boom".into()))
    );
    // A second answer for it is no longer matched.
    assert_eq!(h.refused(response("b")), Refusal::InvalidRequestId);
    assert_eq!(h.lc.workers(), (0, 1));
}

#[test]
fn a_timeout_fails_that_invoke_only_and_its_late_answer_gets_410() {
    let mut h = H::managed(&["a"]);
    h.serve(2);
    h.invoke("slow");
    h.advance(Duration::from_secs(1));
    h.invoke("fast");
    assert_eq!(
        h.lc.next_deadline(),
        Some(h.now.instant + Duration::from_secs(2))
    );
    h.advance(Duration::from_secs(2));
    let fx = h.ok(Input::Tick);
    assert!(matches!(&fx[0], Effect::TimedOut { request_id, .. } if request_id == "slow"));
    assert!(fx.iter().any(|e| matches!(e, Effect::Respond { request_id, outcome: Outcome::PlatformError { fault: Fault::Timeout, message } }
        if request_id == "slow" && message == "RequestId: slow Error: Task timed out after 3.00 seconds")));
    let r = reports(&fx);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].fault, Some(Fault::Timeout));
    // No reset: no signal, no shutdown, the other invoke still runs.
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::Signal { .. } | Effect::ShutdownDone { .. })));
    assert!(h.lc.accepts_invoke());
    assert_eq!(h.lc.workers(), (0, 1));
    assert_eq!(h.refused(response("slow")), Refusal::InvokeTimeout);
    assert_eq!(Refusal::InvokeTimeout.status(), 410);
    h.ok(response("fast"));
    // The late worker is idle again at its next /next.
    h.ok(Input::RuntimeNext);
    h.ok(Input::RuntimeNext);
    assert_eq!(h.lc.workers(), (2, 0));
}

#[test]
fn an_external_extension_on_invoke_is_refused_and_fails_init() {
    let mut h = H::managed(&["ext"]);
    h.ok(Input::Init);
    let fx = h.ok(register(
        1,
        "ext",
        &[EventType::Invoke, EventType::Shutdown],
    ));
    let Effect::Refuse(r) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(r.status(), 403);
    assert_eq!(r.error_type(), "Extension.InvalidEventType");
    assert_eq!(r.to_string(), "INVOKE: ErrorInvalidEventType");
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::InitFailed {
            fault: Fault::InvalidEventType,
            phase: Phase::Init,
            ..
        }
    )));
    assert_eq!(
        Fault::InvalidEventType.error_type(),
        "Extension.InvalidEventType"
    );
    // Reason failure, for good: the extension and nothing else to stop.
    let fx = h.ok(Input::Exited {
        generation: h.lc.generation(),
        proc: Proc::Extension(0),
        status: ExitStatus::Signal(9),
    });
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::ShutdownDone {
            reason: ShutdownReason::Failure,
            stopped: true,
            ..
        }
    )));
    assert!(h.lc.is_stopped());
}

#[test]
fn an_internal_extension_may_register_for_nothing() {
    let mut h = H::managed(&[]);
    h.ok(Input::Init);
    // The runtime process is up (no external extension to wait for).
    let fx = h.ok(register(7, "inside", &[EventType::Shutdown]));
    assert!(matches!(
        &fx[0],
        Effect::Refuse(Refusal::NoEventsForInternal)
    ));
    assert!(fx.iter().any(|e| matches!(e, Effect::InitFailed { .. })));
    let mut h = H::managed(&[]);
    h.ok(Input::Init);
    assert!(h.ok(register(7, "inside", &[])).is_empty());
}

#[test]
fn telemetry_subscriptions_need_schema_2025_01_29() {
    let mut h = H::managed(&["a"]);
    h.ok(Input::Init);
    h.ok(register(1, "a", &[EventType::Shutdown]));
    let mut request = SubscribeRequest::http(vec![LogType::Platform], 9000);
    request.schema_version = Some("2022-12-13".into());
    let r = h.refused(Input::Subscribe {
        id: id(1),
        api: Api::Telemetry,
        request: Ok(Box::new(request.clone())),
    });
    assert_eq!(r.status(), 400);
    assert_eq!(r.error_type(), "ValidationError");
    request.schema_version = Some("2025-01-29".into());
    let fx = h.ok(Input::Subscribe {
        id: id(1),
        api: Api::Telemetry,
        request: Ok(Box::new(request)),
    });
    assert!(matches!(&fx[0], Effect::Subscribe { .. }));
}

#[test]
fn a_process_exit_fails_every_invoke_in_flight_and_shuts_down_for_good() {
    let mut h = H::managed(&["a"]);
    h.serve(2);
    h.invoke("x");
    h.invoke("y");
    let fx = h.ok(Input::Exited {
        generation: h.lc.generation(),
        proc: Proc::Runtime,
        status: ExitStatus::Code(1),
    });
    let r = reports(&fx);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.fault == Some(Fault::RuntimeExit)));
    // The runtime is gone: SHUTDOWN (failure) to the extension at once,
    // with the 2 s deadline from the shutdown's start.
    assert!(fx.iter().any(
        |e| matches!(e, Effect::DeliverShutdown { reason: ShutdownReason::Failure, deadline_ms, .. }
        if *deadline_ms == T0_EPOCH + 2_000)
    ));
}

#[test]
fn spindown_gives_the_runtime_600_ms_then_shutdown_with_a_2_s_deadline() {
    let mut h = H::managed(&["a"]);
    h.serve(1);
    let fx = h.ok(Input::Shutdown);
    assert_eq!(
        fx,
        vec![Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Term
        }]
    );
    assert_eq!(
        h.lc.next_deadline(),
        Some(h.now.instant + Duration::from_millis(600))
    );
    h.advance(Duration::from_millis(600));
    let fx = h.ok(Input::Tick);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Kill
        }
    )));
    assert!(fx.iter().any(|e| matches!(e, Effect::DeliverShutdown { reason: ShutdownReason::Spindown, deadline_ms, .. }
        if *deadline_ms == T0_EPOCH + 2_000)));
}

#[test]
fn an_init_timeout_shuts_down_with_reason_failure() {
    let mut h = H::managed(&["a"]);
    h.ok(Input::Init);
    h.ok(register(1, "a", &[EventType::Shutdown]));
    // The extension is ready; no worker ever calls /next.
    h.ok(Input::ExtensionNext { id: id(1) });
    h.advance(Duration::from_secs(130));
    let fx = h.ok(Input::Tick);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::InitFailed {
            fault: Fault::Timeout,
            ..
        }
    )));
    h.advance(Duration::from_millis(600));
    let fx = h.ok(Input::Tick);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::DeliverShutdown {
            reason: ShutdownReason::Failure,
            ..
        }
    )));
}

#[test]
fn invokes_before_init_is_done_are_not_fed_and_would_be_unavailable() {
    let mut h = H::managed(&["a"]);
    h.ok(Input::Init);
    assert!(!h.lc.accepts_invoke());
    assert_eq!(
        rejected(&h.invoke("early")),
        Some(error_type::RUNTIME_UNAVAILABLE)
    );
}

#[test]
fn workers_past_the_bound_are_refused() {
    let mut h = H::managed(&[]);
    h.serve(1);
    for _ in 1..crate::lifecycle::lmi::MAX_IDLE_WORKERS {
        h.ok(Input::RuntimeNext);
    }
    assert_eq!(h.lc.workers(), (crate::lifecycle::lmi::MAX_IDLE_WORKERS, 0));
    assert!(matches!(
        h.refused(Input::RuntimeNext),
        Refusal::RuntimeState { .. }
    ));
    assert_eq!(h.lc.workers(), (crate::lifecycle::lmi::MAX_IDLE_WORKERS, 0));
}
