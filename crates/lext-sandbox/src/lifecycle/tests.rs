//! Unit tests of the lifecycle: every refusal that depends on state, and
//! every timeout and deadline, with injected time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use lext_protocol::extensions::{EventType, ShutdownReason};
use lext_protocol::telemetry::{Api, LogType, Phase, Status, SubscribeRequest};

use super::*;

mod lmi;

const T0_EPOCH: u64 = 1_700_000_000_000;

/// Lambda's Init limit for on-demand functions (AWS: Lambda execution
/// environment lifecycle, "Init phase"), the driver's default.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

fn id(n: u128) -> ExtensionId {
    ExtensionId(uuid::Uuid::from_u128(n))
}

struct H {
    lc: Lifecycle,
    now: Now,
}

impl H {
    fn new(exts: &[&str]) -> Self {
        Self::with_timeout(exts, Duration::from_secs(3))
    }

    fn with_timeout(exts: &[&str], timeout: Duration) -> Self {
        Self::with_config(exts, timeout, INIT_TIMEOUT, None)
    }

    /// `managed`: Lambda Managed Instances with that many workers at most.
    fn with_config(
        exts: &[&str],
        timeout: Duration,
        init_timeout: Duration,
        managed: Option<u32>,
    ) -> Self {
        Self {
            lc: Lifecycle::new(LifecycleConfig {
                extensions: exts.iter().map(|s| s.to_string()).collect(),
                function_timeout: timeout,
                init_timeout,
                managed,
            }),
            now: Now {
                instant: Instant::now(),
                epoch_ms: T0_EPOCH,
            },
        }
    }

    fn ok(&mut self, input: Input) -> Vec<Effect> {
        match self.lc.transition(input.clone(), self.now) {
            Ok(fx) => fx,
            Err(r) => panic!("{input:?} refused: {r:?}"),
        }
    }

    fn refused(&mut self, input: Input) -> Refusal {
        match self.lc.transition(input.clone(), self.now) {
            Ok(fx) => panic!("{input:?} accepted: {fx:?}"),
            Err(r) => r,
        }
    }

    /// Moves both clocks `d` on.
    fn advance(&mut self, d: Duration) {
        self.now = Now {
            instant: self.now.instant + d,
            epoch_ms: self.now.epoch_ms + d.as_millis() as u64,
        };
    }

    /// Moves time to the next deadline and ticks.
    fn tick_to_deadline(&mut self) -> Vec<Effect> {
        let at = self.lc.next_deadline().expect("a deadline");
        let d = at.saturating_duration_since(self.now.instant);
        self.advance(d);
        self.ok(Input::Tick)
    }

    fn register(&mut self, n: u128, name: &str, events: &[EventType]) -> Vec<Effect> {
        self.ok(register(n, name, events))
    }

    fn exit(&mut self, proc: Proc, status: ExitStatus) -> Vec<Effect> {
        let generation = self.lc.generation();
        self.ok(Input::Exited {
            generation,
            proc,
            status,
        })
    }

    /// Init with every extension on INVOKE+SHUTDOWN, ids 1..=n.
    fn init_all(&mut self) -> Vec<Effect> {
        let mut fx = self.ok(Input::Init);
        let names = self.lc.config.extensions.clone();
        for (i, name) in names.iter().enumerate() {
            fx.extend(self.register(
                i as u128 + 1,
                name,
                &[EventType::Invoke, EventType::Shutdown],
            ));
        }
        fx.extend(self.ok(Input::RuntimeNext));
        for i in 0..names.len() {
            fx.extend(self.ok(Input::ExtensionNext {
                id: id(i as u128 + 1),
            }));
        }
        fx
    }

    fn invoke(&mut self, rid: &str) -> Vec<Effect> {
        self.ok(Input::Invoke {
            request_id: rid.into(),
            invocation_id: format!("inv-{rid}"),
            payload: Bytes::new(),
            client_context: None,
        })
    }
}

/// `POST /extension/register` without the `accountId` feature.
fn register(n: u128, name: &str, events: &[EventType]) -> Input {
    Input::Register {
        id: id(n),
        name: name.into(),
        events: events.to_vec(),
        account_id: false,
    }
}

fn init_error(n: u128) -> Input {
    Input::ExtensionInitError {
        id: id(n),
        error_type: "Extension.TestFailure".into(),
    }
}

fn exit_error(n: u128) -> Input {
    Input::ExtensionExitError {
        id: id(n),
        error_type: "Extension.TestFailure".into(),
    }
}

/// A valid Telemetry or Logs API subscription.
fn subscription() -> Box<SubscribeRequest> {
    Box::new(SubscribeRequest::http(vec![LogType::Platform], 9999))
}

fn subscribe(n: u128, api: Api) -> Input {
    Input::Subscribe {
        id: id(n),
        api,
        request: Ok(subscription()),
    }
}

/// A subscription whose body the router found invalid.
fn bad_subscribe(n: u128, api: Api) -> Input {
    Input::Subscribe {
        id: id(n),
        api,
        request: Err("buffering.maxItems: 5 is below 1000".into()),
    }
}

const BODY: &[u8] = br#"{"ok":true}"#;

/// The runtime's `/response` for `rid`, with a JSON body.
fn response(rid: &str) -> Input {
    Input::RuntimeResponse {
        request_id: rid.into(),
        invocation_id: None,
        body: Bytes::from_static(BODY),
        content_type: Some("application/json".into()),
        too_large: false,
    }
}

/// The runtime's `/error` for `rid`.
fn runtime_error(rid: &str, error_type: Option<&str>) -> Input {
    Input::RuntimeError {
        request_id: rid.into(),
        invocation_id: None,
        error_type: error_type.map(str::to_owned),
        body: Bytes::from_static(BODY),
    }
}

const BOTH: &[EventType] = &[EventType::Invoke, EventType::Shutdown];

fn has(fx: &[Effect], pred: impl Fn(&Effect) -> bool) -> bool {
    fx.iter().any(pred)
}

fn report(fx: &[Effect]) -> Report {
    fx.iter()
        .find_map(|e| match e {
            Effect::InvokeEnded(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no report in {fx:?}"))
}

fn shutdown_done(fx: &[Effect]) -> (ShutdownReason, bool) {
    fx.iter()
        .find_map(|e| match e {
            Effect::ShutdownDone {
                reason, stopped, ..
            } => Some((reason.clone(), *stopped)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ShutdownDone in {fx:?}"))
}

// ----- Init ------------------------------------------------------------------

#[test]
fn init_launches_in_order_and_starts_runtime_after_all_register() {
    let mut h = H::new(&["a-ext", "b-ext"]);
    let fx = h.ok(Input::Init);
    assert_eq!(
        fx,
        vec![
            Effect::InitStarted { phase: Phase::Init },
            Effect::LaunchExtension { index: 0 },
            Effect::LaunchExtension { index: 1 }
        ]
    );
    assert!(
        h.register(1, "a-ext", BOTH).is_empty(),
        "runtime must wait for b-ext"
    );
    assert_eq!(
        h.register(2, "b-ext", &[EventType::Invoke]),
        vec![Effect::StartRuntime]
    );
    assert_eq!(h.lc.runtime_state(), RuntimeState::Started);
    // The runtime is ready, but Init waits for every extension's next.
    assert!(h.ok(Input::RuntimeNext).is_empty());
    assert!(h.ok(Input::ExtensionNext { id: id(1) }).is_empty());
    h.advance(Duration::from_millis(7));
    let fx = h.ok(Input::ExtensionNext { id: id(2) });
    match &fx[0] {
        Effect::InitDone {
            duration,
            extensions,
        } => {
            assert_eq!(*duration, Duration::from_millis(7));
            assert_eq!(extensions.len(), 2);
            assert_eq!(extensions[0].state, ExtensionState::Ready);
            assert_eq!(
                extensions[0].events,
                vec![EventType::Invoke, EventType::Shutdown]
            );
            assert_eq!(extensions[1].events, vec![EventType::Invoke]);
        }
        other => panic!("expected InitDone, got {other:?}"),
    }
    assert_eq!(fx[1], Effect::Freeze);
    assert!(h.lc.accepts_invoke());
}

#[test]
fn no_extensions_starts_runtime_at_once() {
    let mut h = H::new(&[]);
    let fx = h.ok(Input::Init);
    assert_eq!(
        fx,
        vec![
            Effect::InitStarted { phase: Phase::Init },
            Effect::StartRuntime
        ]
    );
    let fx = h.ok(Input::RuntimeNext);
    assert!(matches!(fx[0], Effect::InitDone { .. }));
}

#[test]
fn init_times_out_after_ten_seconds() {
    let mut h = H::new(&["slow"]);
    h.ok(Input::Init);
    h.register(1, "slow", BOTH);
    h.ok(Input::RuntimeNext);
    // "slow" never calls /event/next.
    assert_eq!(h.lc.next_deadline(), Some(h.now.instant + INIT_TIMEOUT));
    h.advance(INIT_TIMEOUT - Duration::from_millis(1));
    assert!(h.ok(Input::Tick).is_empty(), "no timeout before 10 s");
    h.advance(Duration::from_millis(1));
    let fx = h.ok(Input::Tick);
    match &fx[0] {
        Effect::InitFailed {
            phase,
            fault,
            duration,
            ..
        } => {
            assert_eq!(*phase, Phase::Init);
            assert_eq!(fault.status(), Status::Timeout);
            // A timeout is reported without an error type.
            assert_eq!(*fault, Fault::Timeout);
            assert_eq!(*duration, INIT_TIMEOUT);
        }
        other => panic!("{other:?}"),
    }
    // Reset with reason timeout: the runtime gets SIGTERM first.
    assert!(has(&fx, |e| *e
        == Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Term
        }));
}

#[test]
fn launch_error_permission_denied_fails_init() {
    let mut h = H::new(&["good", "noexec"]);
    h.ok(Input::Init);
    let fx = h.ok(Input::LaunchFailed {
        failures: vec![(1, LaunchFailure::PermissionDenied)],
    });
    match &fx[0] {
        Effect::InitFailed {
            fault, extensions, ..
        } => {
            assert_eq!(fault.error_type(), "Extension.LaunchError");
            assert_eq!(extensions[1].state, ExtensionState::LaunchError);
            assert_eq!(extensions[1].error_type, Some("PermissionDenied"));
            assert_eq!(extensions[0].state, ExtensionState::Started);
        }
        other => panic!("{other:?}"),
    }
    // The launched one is killed (it has not registered for SHUTDOWN).
    assert!(has(&fx, |e| *e
        == Effect::Signal {
            proc: Proc::Extension(0),
            signal: Signal::Kill
        }));
    assert_eq!(h.lc.extension_state(1), Some(ExtensionState::LaunchError));
}

#[test]
fn eleventh_extension_file_is_a_launch_error() {
    let names: Vec<String> = (0..11).map(|i| format!("ext{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = H::new(&refs);
    let fx = h.ok(Input::Init);
    let launched = fx
        .iter()
        .filter(|e| matches!(e, Effect::LaunchExtension { .. }))
        .count();
    assert_eq!(launched, 10);
    let failed = fx
        .iter()
        .find_map(|e| match e {
            Effect::InitFailed { extensions, .. } => Some(extensions.clone()),
            _ => None,
        })
        .expect("init fails");
    assert_eq!(failed[10].state, ExtensionState::LaunchError);
    assert_eq!(failed[10].error_type, Some("TooManyExtensions"));
}

#[test]
fn runtime_init_error_fails_init_with_sanitized_type() {
    let mut h = H::new(&[]);
    h.ok(Input::Init);
    let fx = h.ok(Input::RuntimeInitError {
        error_type: Some("Runtime.ImportModuleError".into()),
    });
    assert!(has(
        &fx,
        |e| matches!(e, Effect::InitFailed { fault, .. } if fault.error_type() == "Runtime.ImportModuleError" && fault.status() == Status::Error)
    ));
    let mut h = H::new(&[]);
    h.ok(Input::Init);
    let fx = h.ok(Input::RuntimeInitError {
        error_type: Some("weird".into()),
    });
    assert!(has(
        &fx,
        |e| matches!(e, Effect::InitFailed { fault, .. } if fault.error_type() == "Runtime.Unknown")
    ));
    // After init/error the runtime's /next is refused.
    assert!(matches!(
        h.refused(Input::RuntimeNext),
        Refusal::RuntimeState { .. }
    ));
}

#[test]
fn runtime_init_error_after_first_next_is_refused() {
    let mut h = H::new(&["e"]);
    h.init_all();
    let r = h.refused(Input::RuntimeInitError { error_type: None });
    assert_eq!(r.status(), 403);
    assert_eq!(r.error_type(), "InvalidStateTransition");
    assert_eq!(
        r.to_string(),
        "State transition from Ready to InitError failed for runtime. Error: State transition is not allowed"
    );
}

#[test]
fn extension_crash_during_init() {
    let mut h = H::new(&["crashy"]);
    h.ok(Input::Init);
    let fx = h.exit(Proc::Extension(0), ExitStatus::Code(2));
    assert!(has(
        &fx,
        |e| matches!(e, Effect::InitFailed { fault, .. } if fault.error_type() == "Extension.Crash")
    ));
    let (reason, stopped) = shutdown_done(&fx);
    assert_eq!(reason, ShutdownReason::Failure);
    assert!(!stopped, "a reset, not a stop");
    assert!(h.lc.accepts_invoke());
}

#[test]
fn first_fatal_error_wins() {
    let mut h = H::new(&["a", "b"]);
    h.ok(Input::Init);
    h.register(1, "a", BOTH);
    h.register(2, "b", BOTH);
    let fx = h.ok(init_error(1));
    let fails: Vec<_> = fx
        .iter()
        .filter(|e| matches!(e, Effect::InitFailed { .. }))
        .collect();
    assert_eq!(fails.len(), 1);
    assert!(
        matches!(fails[0], Effect::InitFailed { fault, .. } if fault.error_type() == "Extension.InitError")
    );
    // b crashes afterwards: no second INIT_REPORT, no other error type.
    let fx = h.exit(Proc::Extension(1), ExitStatus::Code(1));
    assert!(!has(&fx, |e| matches!(e, Effect::InitFailed { .. })));
}

#[test]
fn extension_init_error_rules() {
    let mut h = H::new(&["a"]);
    h.ok(Input::Init);
    h.register(1, "a", BOTH);
    h.ok(init_error(1));
    // The environment is resetting; the id is gone with it.
    let mut h = H::new(&["a", "b"]);
    h.ok(Input::Init);
    h.register(1, "a", BOTH);
    h.register(2, "b", BOTH);
    h.ok(Input::ExtensionNext { id: id(1) });
    // init/error after the first next: from Ready.
    let r = h.refused(init_error(1));
    assert_eq!(
        r.to_string(),
        format!(
            "State transition from Ready to InitError failed for extension {}. Error: State transition is not allowed",
            id(1)
        )
    );
    assert_eq!(r.error_type(), "Extension.InvalidExtensionState");
    assert_eq!(r.status(), 403);
    // Unknown id on init/error has its own message.
    let r = h.refused(init_error(99));
    assert_eq!(r.to_string(), "Unknown Lambda-Extension-Identifier");
    assert_eq!(r.error_type(), "Extension.UnknownExtensionIdentifier");
    let r = h.refused(exit_error(99));
    assert_eq!(r.to_string(), "Unknown Lambda-Extension-Identifier");
}

#[test]
fn repeated_init_error_is_a_no_op_and_exit_error_after_it_is_refused() {
    let mut h = H::new(&["a", "b"]);
    h.ok(Input::Init);
    h.register(1, "a", BOTH);
    // b has not registered: Init keeps waiting, so state stays observable.
    // Keep the environment in Init by making the fatal path visible:
    let fx = h.ok(init_error(1));
    assert!(has(&fx, |e| matches!(e, Effect::InitFailed { .. })));
    // The reset is still running (b alive): a's calls still resolve.
    assert_eq!(h.ok(init_error(1)), vec![]);
    let r = h.refused(exit_error(1));
    assert_eq!(
        r.to_string(),
        format!(
            "State transition from InitError to Exited failed for extension {}. Error: State transition is not allowed",
            id(1)
        )
    );
    let r = h.refused(Input::ExtensionNext { id: id(1) });
    assert!(r
        .to_string()
        .starts_with("State transition from InitError to Ready failed"));
}

#[test]
fn register_refusals() {
    let mut h = H::new(&["ext"]);
    h.ok(Input::Init);
    h.register(1, "ext", BOTH);
    // An external extension registering twice.
    let r = h.refused(register(2, "ext", &[]));
    assert_eq!(r.error_type(), "Extension.InvalidExtensionState");
    assert_eq!(
        r.to_string(),
        "State transition from Registered to Registered failed for extension ext. Error: State transition is not allowed"
    );
    // An internal one (unknown file name) asking for SHUTDOWN.
    let r = h.refused(register(
        3,
        "inner",
        &[EventType::Invoke, EventType::Shutdown],
    ));
    assert_eq!(r.error_type(), "Extension.InvalidEventType");
    assert_eq!(
        r.to_string(),
        "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension"
    );
    // Internal with INVOKE only is accepted, and its name is then taken.
    h.register(4, "inner", &[EventType::Invoke]);
    let r = h.refused(register(5, "inner", &[]));
    assert_eq!(r.error_type(), "Extension.InvalidExtensionState");
    assert_eq!(r.to_string(), "Extension with this name already registered");
    // Registration closes at the runtime's first /next.
    h.ok(Input::RuntimeNext);
    let r = h.refused(register(6, "late", &[EventType::Invoke]));
    assert_eq!(r.error_type(), "Extension.RegistrationClosed");
    assert_eq!(r.to_string(), "Extension registration closed already");
}

#[test]
fn eleventh_internal_extension_is_refused() {
    let mut h = H::new(&[]);
    h.ok(Input::Init);
    for i in 0..10 {
        h.register(i + 1, &format!("int{i}"), &[EventType::Invoke]);
    }
    let r = h.refused(register(50, "int10", &[EventType::Invoke]));
    assert_eq!(r.error_type(), "Extension.TooManyExtensions");
    assert_eq!(r.to_string(), "Extension limit (10) reached");
}

#[test]
fn late_register_of_external_after_init() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    let r = h.refused(register(9, "ext", &[]));
    assert_eq!(r.error_type(), "Extension.InvalidExtensionState");
    assert!(r
        .to_string()
        .starts_with("State transition from Ready to Registered failed for extension ext."));
}

#[test]
fn next_refusals() {
    let mut h = H::new(&["ext"]);
    h.ok(Input::Init);
    let r = h.refused(Input::ExtensionNext { id: id(7) });
    assert_eq!(r.error_type(), "Extension.UnknownExtensionIdentifier");
    assert_eq!(r.to_string(), format!("Unknown extension {}", id(7)));
    h.register(1, "ext", BOTH);
    h.ok(Input::ExtensionNext { id: id(1) });
    // A second concurrent next.
    let r = h.refused(Input::ExtensionNext { id: id(1) });
    assert_eq!(
        r.to_string(),
        format!(
            "State transition from Ready to Ready failed for extension {}. Error: State transition is not allowed",
            id(1)
        )
    );
}

#[test]
fn subscriptions_open_during_init_only() {
    let mut h = H::new(&["ext"]);
    h.ok(Input::Init);
    let r = h.refused(subscribe(1, Api::Telemetry));
    assert_eq!(r.error_type(), "Extension.UnknownExtensionIdentifier");
    h.register(1, "ext", BOTH);
    assert_eq!(
        h.ok(subscribe(1, Api::Telemetry)),
        vec![Effect::Subscribe {
            name: "ext".into(),
            api: Api::Telemetry,
            request: subscription(),
        }]
    );
    h.ok(Input::RuntimeNext);
    // Still Init until the extension's next: subscriptions still open.
    h.ok(subscribe(1, Api::Logs));
    h.ok(Input::ExtensionNext { id: id(1) });
    let r = h.refused(subscribe(1, Api::Telemetry));
    assert_eq!(r.status(), 403);
    assert_eq!(r.error_type(), "Telemetry.SubscriptionClosed");
    assert_eq!(
        r.to_string(),
        "Telemetry API subscription is closed already"
    );
}

#[test]
fn a_bad_subscription_body_is_refused_after_the_caller_is_known() {
    let mut h = H::new(&["ext"]);
    h.ok(Input::Init);
    // Unknown caller: 403 whatever the body.
    let r = h.refused(bad_subscribe(1, Api::Telemetry));
    assert_eq!(r.status(), 403);
    assert_eq!(r.error_type(), "Extension.UnknownExtensionIdentifier");
    h.register(1, "ext", BOTH);
    // Known caller in Init: the body's 400.
    let r = h.refused(bad_subscribe(1, Api::Logs));
    assert_eq!((r.status(), r.error_type()), (400, "Logs.ValidationError"));
    assert_eq!(r.to_string(), "buffering.maxItems: 5 is below 1000");
}

// ----- Invoke ----------------------------------------------------------------

#[test]
fn invoke_happy_path_and_post_runtime_wait() {
    let mut h = H::new(&["inv", "shut"]);
    h.ok(Input::Init);
    h.register(1, "inv", &[EventType::Invoke]);
    h.register(2, "shut", &[EventType::Shutdown]);
    h.ok(Input::RuntimeNext);
    h.ok(Input::ExtensionNext { id: id(1) });
    h.advance(Duration::from_millis(40));
    h.ok(Input::ExtensionNext { id: id(2) });
    let fx = h.invoke("r1");
    let deadline_ms = T0_EPOCH + 40 + 3000;
    assert_eq!(
        fx,
        vec![
            Effect::Thaw,
            Effect::InvokeStarted {
                request_id: "r1".into()
            },
            Effect::DeliverInvoke {
                id: id(1),
                request_id: "r1".into(),
                deadline_ms
            },
            Effect::DeliverToRuntime {
                request_id: "r1".into(),
                invocation_id: "inv-r1".into(),
                deadline_ms,
                payload: Bytes::new(),
                client_context: None,
            },
        ]
    );
    assert!(!h.lc.accepts_invoke());
    h.advance(Duration::from_millis(5));
    let fx = h.ok(response("r1"));
    assert_eq!(
        fx,
        vec![Effect::Respond {
            request_id: "r1".into(),
            outcome: Outcome::Response {
                body: Bytes::from_static(BODY),
                content_type: Some("application/json".into()),
            }
        }]
    );
    let fx = h.ok(Input::RuntimeNext);
    assert!(matches!(&fx[0], Effect::RuntimeDone { fault: None, .. }));
    assert_eq!(
        fx.len(),
        1,
        "still waiting for the INVOKE extension: {fx:?}"
    );
    h.advance(Duration::from_millis(10));
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    let r = report(&fx);
    assert_eq!(
        r.duration,
        Duration::from_millis(15),
        "post-runtime time counts"
    );
    assert_eq!(r.init_duration, Some(Duration::from_millis(40)));
    assert_eq!(r.status(), Status::Success);
    assert_eq!(fx.last(), Some(&Effect::Freeze));
    // The second invoke is warm: no Init Duration.
    h.invoke("r2");
    h.ok(response("r2"));
    h.ok(Input::RuntimeNext);
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    assert_eq!(report(&fx).init_duration, None);
}

#[test]
fn runtime_api_refusals_during_invoke() {
    let mut h = H::new(&[]);
    h.init_all();
    let r = h.refused(response("x"));
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.to_string(),
        "State transition from Ready to InvocationResponse failed for runtime. Error: State transition is not allowed"
    );
    let r = h.refused(Input::RuntimeNext);
    assert_eq!(r.to_string(), "State transition from Ready to Ready failed for runtime. Error: State transition is not allowed");
    h.invoke("r1");
    let r = h.refused(response("other"));
    assert_eq!(r, Refusal::InvalidRequestId);
    assert_eq!(r.status(), 400);
    assert_eq!(r.error_type(), "InvalidRequestID");
    let r = h.refused(runtime_error("other", None));
    assert_eq!(r, Refusal::InvalidRequestId);
    let r = h.refused(Input::RuntimeNext);
    assert_eq!(
        r,
        Refusal::RuntimeState {
            from: RuntimeState::Running,
            to: RuntimeState::Ready
        }
    );
    h.ok(response("r1"));
    // A second answer for the same invocation.
    let r = h.refused(response("r1"));
    assert_eq!(
        r.to_string(),
        "State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. Error: State transition is not allowed"
    );
    let r = h.refused(runtime_error("r1", None));
    assert_eq!(r.error_type(), "InvalidStateTransition");
}

#[test]
fn oversized_response_fails_the_invoke_for_the_caller() {
    let mut h = H::new(&[]);
    h.init_all();
    h.invoke("r1");
    let fx = h.ok(Input::RuntimeResponse {
        request_id: "r1".into(),
        invocation_id: None,
        body: Bytes::new(),
        content_type: None,
        too_large: true,
    });
    assert_eq!(
        fx,
        vec![Effect::Respond {
            request_id: "r1".into(),
            outcome: Outcome::PlatformError {
                fault: Fault::ResponseTooLarge,
                message:
                    "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
                        .into()
            }
        }]
    );
    let fx = h.ok(Input::RuntimeNext);
    let r = report(&fx);
    assert_eq!(r.status(), Status::Error);
    assert_eq!(r.error_type(), Some("Function.ResponseSizeTooLarge"));
}

#[test]
fn function_error_is_not_a_reset() {
    let mut h = H::new(&["e"]);
    h.init_all();
    h.invoke("r1");
    let fx = h.ok(runtime_error("r1", Some("unhandled")));
    assert_eq!(
        fx,
        vec![Effect::Respond {
            request_id: "r1".into(),
            outcome: Outcome::FunctionError {
                body: Bytes::from_static(BODY)
            }
        }]
    );
    let fx = h.ok(Input::RuntimeNext);
    assert!(
        matches!(&fx[0], Effect::RuntimeDone { fault: Some(f), .. } if f.status() == Status::Error && f.error_type() == "Runtime.Unknown")
    );
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    let r = report(&fx);
    assert_eq!(r.status(), Status::Error);
    assert_eq!(r.error_type(), Some("Runtime.Unknown"));
    assert!(
        !has(&fx, |e| matches!(e, Effect::Signal { .. })),
        "no reset"
    );
    assert!(h.lc.accepts_invoke());
}

#[test]
fn function_timeout_resets_with_reason_timeout() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.invoke("r1");
    assert_eq!(
        h.lc.next_deadline(),
        Some(h.now.instant + Duration::from_secs(3))
    );
    h.advance(Duration::from_millis(2999));
    assert!(h.ok(Input::Tick).is_empty());
    h.advance(Duration::from_millis(1));
    let fx = h.ok(Input::Tick);
    assert_eq!(
        fx[0],
        Effect::TimedOut {
            request_id: "r1".into(),
            after: Duration::from_secs(3)
        }
    );
    assert!(has(&fx, |e| *e
        == Effect::Respond {
            request_id: "r1".into(),
            outcome: Outcome::PlatformError {
                fault: Fault::Timeout,
                message: "RequestId: r1 Error: Task timed out after 3.00 seconds".into()
            }
        }));
    let r = report(&fx);
    assert_eq!(r.status(), Status::Timeout);
    assert_eq!(r.duration, Duration::from_secs(3));
    // Shutdown: SIGTERM to the runtime, then 300 ms later SIGKILL and the
    // SHUTDOWN event (the extension is still busy with INVOKE, so it is due
    // at its next /event/next).
    assert!(has(&fx, |e| *e
        == Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Term
        }));
    let shutdown_at = h.now;
    let fx = h.tick_to_deadline();
    assert_eq!(h.now.instant - shutdown_at.instant, RUNTIME_SHARE_EXTERNAL);
    // Named, with the time it had, then killed.
    assert_eq!(
        fx,
        vec![
            Effect::MissedDeadline {
                proc: Proc::Runtime,
                name: "runtime".into(),
                budget: RUNTIME_SHARE_EXTERNAL,
            },
            Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Kill
            }
        ]
    );
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    assert_eq!(
        fx,
        vec![Effect::DeliverShutdown {
            id: id(1),
            reason: ShutdownReason::Timeout,
            deadline_ms: shutdown_at.epoch_ms + 2000
        }]
    );
    h.exit(Proc::Runtime, ExitStatus::Signal(9));
    let fx = h.exit(Proc::Extension(0), ExitStatus::Code(0));
    let (reason, stopped) = shutdown_done(&fx);
    assert_eq!(reason, ShutdownReason::Timeout);
    assert!(!stopped);
    assert_eq!(h.lc.extension_state(0), Some(ExtensionState::Exited));
}

#[test]
fn reset_then_reinit_inside_the_next_invoke() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.invoke("r1");
    h.exit(Proc::Runtime, ExitStatus::Code(1));
    // The runtime is gone; the extension gets SHUTDOWN(failure) at once? It
    // is still Running the INVOKE, so SHUTDOWN waits for its next.
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    assert!(matches!(
        &fx[0],
        Effect::DeliverShutdown {
            reason: ShutdownReason::Failure,
            ..
        }
    ));
    let fx = h.exit(Proc::Extension(0), ExitStatus::Code(0));
    shutdown_done(&fx);
    assert!(h.lc.accepts_invoke());
    // The next invoke re-runs Init with phase invoke, then runs.
    let fx = h.invoke("r2");
    assert_eq!(
        fx[0],
        Effect::InitStarted {
            phase: Phase::Invoke
        }
    );
    assert!(has(&fx, |e| *e == Effect::LaunchExtension { index: 0 }));
    // The old identifier is gone with the old environment.
    assert!(matches!(
        h.refused(Input::ExtensionNext { id: id(1) }),
        Refusal::UnknownExtension(_)
    ));
    h.register(11, "ext", BOTH);
    h.ok(Input::RuntimeNext);
    h.advance(Duration::from_millis(20));
    let fx = h.ok(Input::ExtensionNext { id: id(11) });
    assert!(matches!(fx[0], Effect::InitDone { .. }));
    assert!(has(
        &fx,
        |e| matches!(e, Effect::DeliverToRuntime { request_id, .. } if request_id == "r2")
    ));
    h.ok(response("r2"));
    h.ok(Input::RuntimeNext);
    let fx = h.ok(Input::ExtensionNext { id: id(11) });
    assert_eq!(report(&fx).init_duration, Some(Duration::from_millis(20)));
}

#[test]
fn a_runtime_that_exits_0_gives_no_reason() {
    let mut h = H::new(&[]);
    h.init_all();
    h.invoke("r1");
    let fx = h.exit(Proc::Runtime, ExitStatus::Code(0));
    assert!(
        has(
            &fx,
            |e| matches!(e, Effect::FaultLine { message, fault: Fault::RuntimeExit }
            if message == "RequestId: r1 Error: Runtime exited without providing a reason")
        ),
        "{fx:?}"
    );
}

#[test]
fn runtime_crash_during_invoke() {
    let mut h = H::new(&[]);
    h.init_all();
    h.invoke("r1");
    let fx = h.exit(Proc::Runtime, ExitStatus::Code(1));
    assert!(has(&fx, |e| *e
        == Effect::FaultLine {
            message: "RequestId: r1 Error: Runtime exited with error: exit status 1".into(),
            fault: Fault::RuntimeExit,
        }));
    assert!(has(
        &fx,
        |e| matches!(e, Effect::Respond { outcome: Outcome::PlatformError { fault, .. }, .. } if fault.error_type() == "Runtime.ExitError")
    ));
    let r = report(&fx);
    assert_eq!(
        (r.status(), r.error_type()),
        (Status::Error, Some("Runtime.ExitError"))
    );
    // No extensions: budget 0, the (dead) runtime is not signalled; done.
    let (reason, _) = shutdown_done(&fx);
    assert_eq!(reason, ShutdownReason::Failure);
}

#[test]
fn extension_crash_during_invoke_fails_it_even_after_the_response() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.invoke("r1");
    h.ok(response("r1"));
    let fx = h.exit(Proc::Extension(0), ExitStatus::Signal(11));
    assert!(
        !has(&fx, |e| matches!(e, Effect::Respond { .. })),
        "the caller already has its answer"
    );
    let r = report(&fx);
    assert_eq!(r.error_type(), Some("Extension.Crash"));
    assert!(has(&fx, |e| *e
        == Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Term
        }));
}

#[test]
fn exit_error_during_invoke_is_a_failure() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.invoke("r1");
    let fx = h.ok(exit_error(1));
    assert_eq!(report(&fx).error_type(), Some("Extension.ExitError"));
    // The extension's own exit afterwards is not a second error.
    h.tick_to_deadline();
    let fx = h.exit(Proc::Extension(0), ExitStatus::Code(1));
    assert!(!has(&fx, |e| matches!(
        e,
        Effect::InvokeEnded(_) | Effect::InitFailed { .. }
    )));
}

#[test]
fn extension_that_never_calls_next_times_the_invoke_out() {
    let mut h = H::new(&["lazy"]);
    h.init_all();
    h.invoke("r1");
    h.ok(response("r1"));
    h.ok(Input::RuntimeNext);
    let fx = h.tick_to_deadline();
    let r = report(&fx);
    assert_eq!(r.status(), Status::Timeout);
    // The caller was already answered: no second answer.
    assert!(!has(&fx, |e| matches!(e, Effect::Respond { .. })));
    // The runtime had already finished: no second runtimeDone.
    assert!(!has(&fx, |e| matches!(e, Effect::RuntimeDone { .. })));
}

#[test]
fn phase_invoke_init_failure_answers_the_invoke() {
    let mut h = H::new(&["crashy"]);
    let fx = h.invoke("r1");
    assert_eq!(
        fx[0],
        Effect::InitStarted {
            phase: Phase::Invoke
        }
    );
    let fx = h.exit(Proc::Extension(0), ExitStatus::Code(1));
    assert!(has(&fx, |e| matches!(
        e,
        Effect::InitFailed {
            phase: Phase::Invoke,
            ..
        }
    )));
    assert!(has(&fx, |e| matches!(e, Effect::InvokeStarted { .. })));
    assert!(has(
        &fx,
        |e| matches!(e, Effect::Respond { outcome: Outcome::PlatformError { fault, .. }, .. } if fault.error_type() == "Extension.Crash")
    ));
    assert_eq!(report(&fx).status(), Status::Error);
}

#[test]
fn phase_invoke_init_is_bounded_by_the_function_timeout() {
    let mut h = H::with_timeout(&["slow"], Duration::from_secs(2));
    h.invoke("r1");
    assert_eq!(
        h.lc.next_deadline(),
        Some(h.now.instant + Duration::from_secs(2))
    );
    let fx = h.tick_to_deadline();
    assert!(has(&fx, |e| matches!(
        e,
        Effect::InitFailed {
            fault: Fault::Timeout,
            phase: Phase::Invoke,
            ..
        }
    )));
    assert!(has(
        &fx,
        |e| matches!(e, Effect::Respond { outcome: Outcome::PlatformError { message, .. }, .. } if message == "RequestId: r1 Error: Task timed out after 2.00 seconds")
    ));
}

#[test]
fn phase_invoke_runtime_init_error_is_shown_on_the_report_line() {
    // A runtime /init/error during an Init re-run inside an invoke fails the
    // invoke with the runtime's Init fault, which resets the environment and
    // so is named on the REPORT line, unlike a handled /invocation/error.
    let mut h = H::new(&[]);
    let fx = h.invoke("r1");
    assert!(has(&fx, |e| *e == Effect::StartRuntime));
    let fx = h.ok(Input::RuntimeInitError {
        error_type: Some("Runtime.ImportModuleError".into()),
    });
    let r = report(&fx);
    assert_eq!(
        r.fault,
        Some(Fault::RuntimeInit("Runtime.ImportModuleError".into()))
    );
    assert!(r.fault.as_ref().is_some_and(Fault::shown_on_report_line));
    assert!(!Fault::Function("Runtime.Unknown".into()).shown_on_report_line());
}

#[test]
fn stale_exit_is_ignored() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    let old = h.lc.generation();
    h.ok(Input::Shutdown);
    let mut h2 = H::new(&["ext"]);
    h2.init_all();
    let fx = h2.ok(Input::Exited {
        generation: old + 5,
        proc: Proc::Runtime,
        status: ExitStatus::Code(1),
    });
    assert!(fx.is_empty());
}

// ----- Shutdown --------------------------------------------------------------

#[test]
fn spindown_without_extensions_kills_at_once() {
    let mut h = H::new(&[]);
    h.init_all();
    let fx = h.ok(Input::Shutdown);
    assert_eq!(
        fx,
        vec![
            Effect::Thaw,
            Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Kill
            }
        ]
    );
    // Its 0 ms deadline passes before the kill is reaped: it missed no
    // deadline (it was killed at once, as it had no time), so nothing is
    // reported.
    let fx = h.tick_to_deadline();
    assert!(
        !has(&fx, |e| matches!(e, Effect::MissedDeadline { .. })),
        "{fx:?}"
    );
    let fx = h.exit(Proc::Runtime, ExitStatus::Signal(9));
    assert_eq!(shutdown_done(&fx), (ShutdownReason::Spindown, true));
    assert!(h.lc.is_stopped());
}

#[test]
fn spindown_with_internal_extension_gives_runtime_500_ms() {
    let mut h = H::new(&[]);
    h.ok(Input::Init);
    h.register(1, "internal", &[EventType::Invoke]);
    h.ok(Input::RuntimeNext);
    h.ok(Input::ExtensionNext { id: id(1) });
    let fx = h.ok(Input::Shutdown);
    assert!(has(&fx, |e| *e
        == Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Term
        }));
    assert_eq!(
        h.lc.next_deadline(),
        Some(h.now.instant + Duration::from_millis(500))
    );
    let fx = h.tick_to_deadline();
    assert_eq!(
        fx,
        vec![
            Effect::MissedDeadline {
                proc: Proc::Runtime,
                name: "runtime".into(),
                budget: Duration::from_millis(500),
            },
            Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Kill
            }
        ]
    );
    let fx = h.exit(Proc::Runtime, ExitStatus::Signal(9));
    assert_eq!(shutdown_done(&fx), (ShutdownReason::Spindown, true));
}

#[test]
fn spindown_with_external_extensions() {
    let mut h = H::new(&["listens", "deaf", "stubborn"]);
    h.ok(Input::Init);
    h.register(1, "listens", BOTH);
    h.register(2, "deaf", &[EventType::Invoke]);
    h.register(3, "stubborn", &[EventType::Shutdown]);
    h.ok(Input::RuntimeNext);
    for i in 1..=3 {
        h.ok(Input::ExtensionNext { id: id(i) });
    }
    let start = h.now;
    let fx = h.ok(Input::Shutdown);
    assert_eq!(
        fx,
        vec![
            Effect::Thaw,
            Effect::Signal {
                proc: Proc::Runtime,
                signal: Signal::Term
            }
        ]
    );
    // The runtime exits on SIGTERM after 100 ms: extensions go at once.
    h.advance(Duration::from_millis(100));
    let fx = h.exit(Proc::Runtime, ExitStatus::Code(0));
    let deadline_ms = start.epoch_ms + 2000;
    assert_eq!(
        fx,
        vec![
            Effect::DeliverShutdown {
                id: id(1),
                reason: ShutdownReason::Spindown,
                deadline_ms
            },
            Effect::Signal {
                proc: Proc::Extension(1),
                signal: Signal::Kill
            },
            Effect::DeliverShutdown {
                id: id(3),
                reason: ShutdownReason::Spindown,
                deadline_ms
            },
        ]
    );
    h.exit(Proc::Extension(0), ExitStatus::Code(0));
    h.exit(Proc::Extension(1), ExitStatus::Signal(9));
    // "stubborn" ignores SHUTDOWN: SIGKILL at the deadline, 2 s after start.
    let fx = h.tick_to_deadline();
    assert_eq!(h.now.instant - start.instant, SHUTDOWN_BUDGET_EXTERNAL);
    assert_eq!(
        fx,
        vec![
            Effect::MissedDeadline {
                proc: Proc::Extension(2),
                name: "stubborn".into(),
                budget: SHUTDOWN_BUDGET_EXTERNAL,
            },
            Effect::Signal {
                proc: Proc::Extension(2),
                signal: Signal::Kill
            }
        ]
    );
    let fx = h.exit(Proc::Extension(2), ExitStatus::Signal(9));
    assert_eq!(shutdown_done(&fx), (ShutdownReason::Spindown, true));
    assert_eq!(h.lc.extension_state(0), Some(ExtensionState::Exited));
    assert_eq!(
        h.lc.extension_state(1),
        Some(ExtensionState::ShutdownFailed)
    );
    assert_eq!(
        h.lc.extension_state(2),
        Some(ExtensionState::ShutdownFailed)
    );
}

#[test]
fn runtime_ignoring_sigterm_is_killed_after_its_share() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.ok(Input::Shutdown);
    h.advance(RUNTIME_SHARE_EXTERNAL - Duration::from_millis(1));
    assert!(h.ok(Input::Tick).is_empty());
    h.advance(Duration::from_millis(1));
    let fx = h.ok(Input::Tick);
    assert!(matches!(
        &fx[0],
        Effect::MissedDeadline {
            proc: Proc::Runtime,
            ..
        }
    ));
    assert_eq!(
        fx[1],
        Effect::Signal {
            proc: Proc::Runtime,
            signal: Signal::Kill
        }
    );
    assert!(matches!(fx[2], Effect::DeliverShutdown { .. }));
}

#[test]
fn unreaped_processes_are_given_up_on() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.ok(Input::Shutdown);
    h.tick_to_deadline(); // runtime SIGKILL + SHUTDOWN
    h.tick_to_deadline(); // deadline: SIGKILL everything
    let fx = h.tick_to_deadline(); // nobody ever exits
    assert!(has(&fx, |e| matches!(
        e,
        Effect::ShutdownDone {
            unreaped: 2,
            stopped: true,
            ..
        }
    )));
    assert!(h.lc.is_stopped());
}

#[test]
fn shutdown_while_down_stops_at_once_and_ctrl_c_during_reset_stops() {
    let mut h = H::new(&["e"]);
    assert_eq!(
        shutdown_done(&h.ok(Input::Shutdown)),
        (ShutdownReason::Spindown, true)
    );
    let mut h = H::new(&["e"]);
    h.init_all();
    h.invoke("r1");
    h.tick_to_deadline(); // timeout -> reset
    assert!(h.ok(Input::Shutdown).is_empty());
    h.exit(Proc::Runtime, ExitStatus::Code(0));
    let fx = h.ok(Input::ExtensionNext { id: id(1) });
    assert!(matches!(fx[0], Effect::DeliverShutdown { .. }));
    let fx = h.exit(Proc::Extension(0), ExitStatus::Code(0));
    assert_eq!(shutdown_done(&fx), (ShutdownReason::Timeout, true));
}

#[test]
fn spindown_during_invoke_answers_the_caller() {
    let mut h = H::new(&[]);
    h.init_all();
    h.invoke("r1");
    let fx = h.ok(Input::Shutdown);
    assert!(has(
        &fx,
        |e| matches!(e, Effect::Respond { outcome: Outcome::PlatformError { fault, .. }, .. } if fault.error_type() == "Sandbox.Failure")
    ));
}

// ----- Property: no input sequence panics or wedges the machine ---------------

mod property {
    use super::*;
    use proptest::prelude::*;

    fn input() -> impl Strategy<Value = Input> {
        let ids = 1u128..5;
        let names = proptest::sample::select(vec!["a", "b", "x", "y"]);
        let rids = proptest::sample::select(vec!["r1", "r2", "zz"]);
        let events = proptest::sample::select(vec![
            vec![],
            vec![EventType::Invoke],
            vec![EventType::Shutdown],
            vec![EventType::Invoke, EventType::Shutdown],
        ]);
        prop_oneof![
            Just(Input::Init),
            (ids.clone(), names, events).prop_map(|(n, name, events)| register(n, name, &events)),
            ids.clone().prop_map(|n| Input::ExtensionNext { id: id(n) }),
            ids.clone().prop_map(init_error),
            ids.clone().prop_map(exit_error),
            ids.prop_map(|n| subscribe(n, Api::Telemetry)),
            Just(Input::RuntimeNext),
            (rids.clone(), any::<bool>()).prop_map(|(r, too_large)| Input::RuntimeResponse {
                request_id: r.to_owned(),
                // Echoed or not; a stale one after a timeout is covered too.
                invocation_id: too_large.then(|| format!("inv-{r}")),
                body: Bytes::new(),
                content_type: None,
                too_large
            }),
            rids.clone().prop_map(|r| runtime_error(r, None)),
            rids.clone().prop_map(stream_start),
            (rids.clone(), any::<bool>(), any::<bool>()).prop_map(|(r, error, too_large)| {
                stream_end(r, error.then_some("Runtime.StreamError"), too_large)
            }),
            Just(Input::RuntimeInitError {
                error_type: Some("Runtime.X".into())
            }),
            rids.prop_map(|r| Input::Invoke {
                request_id: r.to_owned(),
                invocation_id: format!("inv-{r}"),
                payload: Bytes::new(),
                client_context: None,
            }),
            (0usize..3, any::<bool>(), 0i32..3).prop_map(|(i, runtime, code)| Input::Exited {
                generation: u64::MAX, // replaced by the current generation
                proc: if runtime {
                    Proc::Runtime
                } else {
                    Proc::Extension(i)
                },
                status: ExitStatus::Code(code)
            }),
            (0usize..3).prop_map(|index| Input::LaunchFailed {
                failures: vec![(index, LaunchFailure::PermissionDenied)]
            }),
            Just(Input::Tick),
            Just(Input::Shutdown),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_sequence_then_shutdown_reaches_stopped(
            steps in proptest::collection::vec((input(), 0u64..4_000), 0..60)
        ) {
            let mut h = H::new(&["a", "b"]);
            for (input, ms) in steps {
                h.advance(Duration::from_millis(ms));
                let input = match input {
                    // The driver feeds invokes only when they are accepted.
                    Input::Invoke { .. } if !h.lc.accepts_invoke() => continue,
                    Input::Exited { proc, status, .. } => Input::Exited {
                        generation: h.lc.generation(),
                        proc,
                        status,
                    },
                    other => other,
                };
                let _ = h.lc.transition(input, h.now);
            }
            // Spin down: processes that are signalled die; time runs to
            // each deadline. The machine must stop within a bounded number
            // of steps (the give-up deadline guarantees it).
            let mut effects = h.lc.transition(Input::Shutdown, h.now).unwrap();
            for _ in 0..50 {
                if h.lc.is_stopped() {
                    break;
                }
                let mut next = Vec::new();
                for e in effects.drain(..) {
                    if let Effect::Signal { proc, signal: Signal::Kill } = e {
                        let generation = h.lc.generation();
                        next.extend(h.lc.transition(Input::Exited { generation, proc, status: ExitStatus::Signal(9) }, h.now).unwrap());
                    }
                }
                if next.is_empty() {
                    let Some(at) = h.lc.next_deadline() else {
                        prop_assert!(h.lc.is_stopped(), "wedged: no deadline and not stopped: {:?}", h.lc);
                        break;
                    };
                    // An overdue deadline (time ran without ticks) fires at once.
                    let d = at.saturating_duration_since(h.now.instant);
                    h.advance(d);
                    next = h.lc.transition(Input::Tick, h.now).unwrap();
                }
                effects = next;
            }
            prop_assert!(h.lc.is_stopped(), "not stopped: {:?}", h.lc);
        }
    }
}

#[test]
fn two_extensions_that_fail_to_launch_leave_nothing_to_wait_for() {
    let mut h = H::new(&["a", "b"]);
    h.ok(Input::Init);
    // The driver reports both launch failures of the batch in one input:
    // Init's summary shows both as LaunchError (not the second as Started).
    let fx = h.ok(Input::LaunchFailed {
        failures: vec![
            (0, LaunchFailure::UnknownError),
            (1, LaunchFailure::UnknownError),
        ],
    });
    let summary = fx.iter().find_map(|e| match e {
        Effect::InitFailed { extensions, .. } => Some(extensions.clone()),
        _ => None,
    });
    let states: Vec<ExtensionState> = summary
        .expect("Init fails")
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        [ExtensionState::LaunchError, ExtensionState::LaunchError]
    );
    // The reset is over at once: no process existed, none is unreaped.
    assert!(
        has(&fx, |e| matches!(
            e,
            Effect::ShutdownDone {
                unreaped: 0,
                stopped: false,
                ..
            }
        )),
        "{fx:?}"
    );
    assert_eq!(h.lc.next_deadline(), None);
}

/// The runtime's `/response` for `rid`, echoing `invocation_id`.
fn response_with(rid: &str, invocation_id: &str) -> Input {
    match response(rid) {
        Input::RuntimeResponse {
            request_id,
            body,
            content_type,
            too_large,
            ..
        } => Input::RuntimeResponse {
            request_id,
            invocation_id: Some(invocation_id.into()),
            body,
            content_type,
            too_large,
        },
        other => other,
    }
}

#[test]
fn invocation_ids_are_checked_when_echoed_and_a_late_answer_gets_410() {
    let mut h = H::new(&["ext"]);
    h.init_all();
    h.invoke("r1");
    // Another invoke's id is refused like a wrong request id.
    assert_eq!(
        h.refused(response_with("r1", "inv-r0")),
        Refusal::InvalidRequestId
    );
    // The right one (or none, as older clients send) is accepted.
    h.ok(response_with("r1", "inv-r1"));
    h.ok(Input::RuntimeNext);
    let ext = id(1);
    h.ok(Input::ExtensionNext { id: ext });
    h.invoke("r2");
    h.advance(Duration::from_secs(3));
    let fx = h.ok(Input::Tick);
    assert!(has(&fx, |e| matches!(e, Effect::TimedOut { .. })));
    // The timed-out invoke's late answer: 410 InvokeTimeout.
    let late = h.refused(response_with("r2", "inv-r2"));
    assert_eq!(late, Refusal::InvokeTimeout);
    assert_eq!((late.status(), late.error_type()), (410, "InvokeTimeout"));
    assert_eq!(late.to_string(), "Invoke timeout");
    // Without the id, the same late answer is the state's refusal, as before.
    assert!(matches!(
        h.refused(response("r2")),
        Refusal::RuntimeState { .. }
    ));
}

fn stream_start(rid: &str) -> Input {
    Input::RuntimeStreamStart {
        request_id: rid.into(),
        invocation_id: None,
        content_type: Some("text/plain".into()),
    }
}

fn stream_end(rid: &str, error_type: Option<&str>, too_large: bool) -> Input {
    Input::RuntimeStreamEnd {
        request_id: rid.into(),
        error_type: error_type.map(str::to_owned),
        too_large,
        produced_bytes: 0,
    }
}

#[test]
fn a_streamed_response_answers_at_once_and_its_end_gives_the_spans() {
    let mut h = H::new(&[]);
    h.init_all();
    h.invoke("r1");
    h.advance(Duration::from_millis(40));
    let fx = h.ok(stream_start("r1"));
    assert_eq!(
        fx,
        vec![Effect::Respond {
            request_id: "r1".into(),
            outcome: Outcome::Stream {
                content_type: Some("text/plain".into())
            },
        }]
    );
    // While the body streams, the runtime may neither answer again nor
    // call /next.
    assert!(matches!(
        h.refused(response("r1")),
        Refusal::RuntimeState { .. }
    ));
    assert!(matches!(
        h.refused(Input::RuntimeNext),
        Refusal::RuntimeState { .. }
    ));
    h.advance(Duration::from_millis(1_500));
    assert!(h.ok(stream_end("r1", None, false)).is_empty());
    // A second end is out of turn.
    assert!(matches!(
        h.refused(stream_end("r1", None, false)),
        Refusal::RuntimeState { .. }
    ));
    h.advance(Duration::from_millis(5));
    let fx = h.ok(Input::RuntimeNext);
    let spans = fx.iter().find_map(|e| match e {
        Effect::RuntimeDone { spans, .. } => *spans,
        _ => None,
    });
    assert_eq!(
        spans,
        Some(ResponseSpans {
            released_ms: T0_EPOCH,
            latency: Duration::from_millis(40),
            duration: Duration::from_millis(1_500),
        })
    );
    assert_eq!(report(&fx).status(), Status::Success);
}

#[test]
fn a_mid_stream_error_or_an_oversized_stream_fails_the_invoke_without_a_reset() {
    for (error_type, too_large, expected) in [
        (Some("Runtime.StreamError"), false, "Runtime.StreamError"),
        (None, true, "Function.ResponseSizeTooLarge"),
    ] {
        let mut h = H::new(&[]);
        h.init_all();
        h.invoke("r1");
        h.ok(stream_start("r1"));
        h.ok(stream_end("r1", error_type, too_large));
        let fx = h.ok(Input::RuntimeNext);
        let r = report(&fx);
        assert_eq!(r.error_type(), Some(expected));
        assert!(!has(&fx, |e| matches!(e, Effect::ShutdownDone { .. })));
    }
}

#[test]
fn a_stream_for_another_request_or_out_of_turn_is_refused() {
    let mut h = H::new(&[]);
    h.init_all();
    // No invoke: nothing to stream.
    assert!(matches!(
        h.refused(stream_end("r1", None, false)),
        Refusal::RuntimeState { .. }
    ));
    h.invoke("r1");
    assert_eq!(h.refused(stream_start("r2")), Refusal::InvalidRequestId);
    // An end before any start is out of turn.
    assert!(matches!(
        h.refused(stream_end("r1", None, false)),
        Refusal::RuntimeState { .. }
    ));
    h.ok(stream_start("r1"));
    assert_eq!(
        h.refused(stream_end("r2", None, false)),
        Refusal::InvalidRequestId
    );
}

#[test]
fn a_stream_that_hangs_times_out_and_resets() {
    let mut h = H::new(&[]);
    h.init_all();
    h.invoke("r1");
    h.ok(stream_start("r1"));
    let fx = h.tick_to_deadline();
    // The caller already has its stream: no second answer, and the
    // timeout's REPORT.
    assert!(!has(&fx, |e| matches!(e, Effect::Respond { .. })));
    assert_eq!(report(&fx).error_type(), Some("Sandbox.Timedout"));
}
