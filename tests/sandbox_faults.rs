//! Fault tests of `lext run`: real processes (Python extensions and
//! runtimes written by the tests), the real lext binary, 127.0.0.1 with
//! ephemeral ports. Each checks the REPORT or INIT_REPORT line, the
//! shutdown reason another extension observes, the re-init, and that no
//! process is left behind.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use sandbox_support::Scene;
use std::time::Duration;

/// Runs `lext run` with `extensions` (paths) and extra args.
fn run(scene: &Scene, extensions: &[&std::path::Path], extra: &[&str]) -> sandbox_support::Run {
    let mut args: Vec<String> = Vec::new();
    for e in extensions {
        args.push("--extension".into());
        args.push(e.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    scene.lext(&refs)
}

#[test]
fn extension_crash_during_init_fails_init_and_reinits_on_invoke() {
    let s = Scene::new();
    let bad = s.extension("crashy", "crash-init");
    let observer = s.extension("observer", "ok");
    let r = run(&s, &[&bad, &observer], &["--invoke", "1"]);
    assert!(!r.output.status.success(), "{}", r.dump());
    let reports = r.all("INIT_REPORT");
    assert_eq!(
        reports.len(),
        2,
        "init, then the re-init inside the invoke: {}",
        r.dump()
    );
    assert!(
        reports[0].contains("Phase: init\tStatus: error\tError Type: Extension.Crash"),
        "{}",
        r.dump()
    );
    assert!(
        reports[1].contains("Phase: invoke\tStatus: error\tError Type: Extension.Crash"),
        "{}",
        r.dump()
    );
    // The invoke is answered with START/END/REPORT and the error.
    assert!(
        r.line("REPORT")
            .contains("Status: error\tError Type: Extension.Crash"),
        "{}",
        r.dump()
    );
    assert!(r.stderr.contains("Extension.Crash"), "{}", r.dump());
    // Each reset told the observer why.
    assert!(r.has("[observer] SHUTDOWN failure"), "{}", r.dump());
    assert_eq!(s.pids("crashy").len(), 2, "re-init starts it again");
    s.assert_no_process_left(&["crashy", "observer"]);
}

#[test]
fn extension_crash_during_invoke_resets_with_failure() {
    let s = Scene::new();
    let bad = s.extension("a-crashy", "crash-invoke");
    let observer = s.extension("observer", "ok");
    let r = run(&s, &[&bad, &observer], &["--invoke", "2"]);
    let reports = r.all("REPORT");
    assert_eq!(reports.len(), 2, "{}", r.dump());
    assert!(
        reports[0].contains("Status: error\tError Type: Extension.Crash"),
        "{}",
        r.dump()
    );
    // The second invoke re-ran Init: it has an Init Duration again.
    assert!(reports[1].contains("Init Duration"), "{}", r.dump());
    // It crashes in both invokes: two resets, both seen by the observer.
    assert_eq!(
        r.all("[observer] SHUTDOWN failure").len(),
        2,
        "{}",
        r.dump()
    );
    assert_eq!(s.pids("a-crashy").len(), 2);
    assert_eq!(s.pids("observer").len(), 2);
    s.assert_no_process_left(&["a-crashy", "observer"]);
}

#[test]
fn extension_crash_during_shutdown_does_not_wait_for_the_deadline() {
    let s = Scene::new();
    let bad = s.extension("crashy", "crash-shutdown");
    let r = run(&s, &[&bad], &["--invoke", "1"]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(
        r.line("REPORT").ends_with('\t'),
        "a success REPORT ends with a TAB: {}",
        r.dump()
    );
    assert!(r.has("[crashy] SHUTDOWN spindown"), "{}", r.dump());
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    s.assert_no_process_left(&["crashy"]);
}

#[test]
fn extension_that_never_calls_next_times_the_invoke_out() {
    let s = Scene::new();
    let lazy = s.extension("lazy", "never-next");
    let observer = s.extension("observer", "ok");
    let r = run(
        &s,
        &[&lazy, &observer],
        &["--invoke", "2", "--timeout", "1"],
    );
    assert!(r.has("Task timed out after 1.00 seconds"), "{}", r.dump());
    let reports = r.all("REPORT");
    assert_eq!(reports.len(), 2, "{}", r.dump());
    assert!(reports[0].contains("Duration: 1000.00 ms"), "{}", r.dump());
    assert!(reports[0].ends_with("Status: timeout"), "{}", r.dump());
    assert!(
        reports[1].contains("Init Duration"),
        "re-init after the timeout: {}",
        r.dump()
    );
    assert!(r.has("[observer] SHUTDOWN timeout"), "{}", r.dump());
    assert_eq!(s.pids("lazy").len(), 2);
    s.assert_no_process_left(&["lazy", "observer"]);
}

#[test]
fn extension_ignoring_shutdown_and_sigterm_is_killed_at_the_deadline() {
    let s = Scene::new();
    let stubborn = s.extension("stubborn", "ignore-shutdown");
    let r = run(&s, &[&stubborn], &["--invoke", "1"]);
    assert!(r.output.status.success(), "{}", r.dump());
    let line = r.line("[stubborn] SHUTDOWN spindown in ");
    // deadlineMs is real: 2,000 ms after the shutdown began (minus the
    // time the extension took to read and print it).
    let ms: i64 = line
        .trim_start_matches("[stubborn] SHUTDOWN spindown in ")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(
        (1000..=2000).contains(&ms),
        "deadline {ms} ms: {}",
        r.dump()
    );
    assert!(
        r.elapsed >= Duration::from_millis(1900),
        "killed at the deadline, not before: {:?}",
        r.elapsed
    );
    s.assert_no_process_left(&["stubborn"]);
}

#[test]
fn runtime_crash_during_invoke() {
    let s = Scene::new();
    let observer = s.extension("observer", "ok");
    let runtime = s.runtime("crash-invoke");
    let r = run(&s, &[&observer], &["--invoke", "2", "--function", &runtime]);
    assert!(!r.output.status.success());
    let reports = r.all("REPORT");
    assert_eq!(reports.len(), 2, "{}", r.dump());
    assert!(
        reports[0].contains("Status: error\tError Type: Runtime.ExitError"),
        "{}",
        r.dump()
    );
    assert!(
        r.has("Error: Runtime exited with error: exit status 1"),
        "{}",
        r.dump()
    );
    assert!(reports[1].contains("Init Duration"), "{}", r.dump());
    assert!(r.has("[observer] SHUTDOWN failure"), "{}", r.dump());
    s.assert_no_process_left(&["observer", "runtime.py"]);
}

#[test]
fn function_timeout() {
    let s = Scene::new();
    let observer = s.extension("observer", "ok");
    let runtime = s.runtime("sleep");
    let r = run(
        &s,
        &[&observer],
        &["--invoke", "1", "--timeout", "1", "--function", &runtime],
    );
    assert!(!r.output.status.success());
    assert!(r.has("Task timed out after 1.00 seconds"), "{}", r.dump());
    assert!(
        r.line("REPORT").ends_with("Status: timeout"),
        "{}",
        r.dump()
    );
    assert!(r.stderr.contains("Sandbox.Timedout"), "{}", r.dump());
    assert!(r.has("[observer] SHUTDOWN timeout"), "{}", r.dump());
    s.assert_no_process_left(&["observer", "runtime.py"]);
}

#[test]
fn extension_init_error() {
    let s = Scene::new();
    let bad = s.extension("bad", "init-error");
    let observer = s.extension("observer", "ok");
    let r = run(&s, &[&bad, &observer], &["--invoke", "1"]);
    assert!(
        r.has("[bad] init/error answered 202 {\"status\":\"OK\"}"),
        "{}",
        r.dump()
    );
    assert!(
        r.line("INIT_REPORT")
            .contains("Phase: init\tStatus: error\tError Type: Extension.InitError"),
        "{}",
        r.dump()
    );
    assert!(r.has("[observer] SHUTDOWN failure"), "{}", r.dump());
    assert_eq!(s.pids("bad").len(), 2, "re-init in the invoke");
    s.assert_no_process_left(&["bad", "observer"]);
}

#[test]
fn extension_exit_error() {
    let s = Scene::new();
    let bad = s.extension("bad", "exit-error");
    let observer = s.extension("observer", "ok");
    let r = run(&s, &[&bad, &observer], &["--invoke", "2"]);
    assert!(r.has("[bad] exit/error answered 202"), "{}", r.dump());
    let reports = r.all("REPORT");
    assert!(
        reports[0].contains("Status: error\tError Type: Extension.ExitError"),
        "{}",
        r.dump()
    );
    assert!(reports[1].contains("Init Duration"), "{}", r.dump());
    assert!(r.has("[observer] SHUTDOWN failure"), "{}", r.dump());
    s.assert_no_process_left(&["bad", "observer"]);
}

#[test]
fn runtime_init_error() {
    let s = Scene::new();
    let runtime = s.runtime("init-error");
    let r = run(
        &s,
        &[],
        &[
            "--invoke",
            "1",
            "--function",
            &runtime,
            "--extension",
            &s.extension("ok-ext", "ok").display().to_string(),
        ],
    );
    assert!(
        r.line("INIT_REPORT")
            .contains("Status: error\tError Type: Runtime.ImportModuleError"),
        "{}",
        r.dump()
    );
    s.assert_no_process_left(&["runtime.py", "ok-ext"]);
}

#[test]
fn extension_not_executable_is_a_launch_error() {
    let s = Scene::new();
    let path = s.extension("noexec", "ok");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let observer = s.extension("observer", "ok");
    let r = run(&s, &[&path, &observer], &["--invoke", "1"]);
    let ext = r.line("EXTENSION\tName: noexec");
    assert_eq!(
        ext,
        "EXTENSION\tName: noexec\tState: LaunchError\tEvents: []\tError Type: PermissionDenied",
        "{}",
        r.dump()
    );
    assert!(
        r.line("INIT_REPORT")
            .contains("Status: error\tError Type: Extension.LaunchError"),
        "{}",
        r.dump()
    );
    // Init fails at once: the other extension has not registered yet, so
    // it gets no SHUTDOWN; it is killed.
    assert!(r.stderr.contains("Extension.LaunchError"), "{}", r.dump());
    s.assert_no_process_left(&["observer"]);
}

#[test]
fn handled_function_error_is_not_a_reset() {
    let s = Scene::new();
    let observer = s.extension("observer", "ok");
    let runtime = s.runtime("error");
    let r = run(&s, &[&observer], &["--invoke", "2", "--function", &runtime]);
    let reports = r.all("REPORT");
    assert_eq!(reports.len(), 2, "{}", r.dump());
    assert!(
        !reports[1].contains("Init Duration"),
        "no re-init after a handled error: {}",
        r.dump()
    );
    assert!(
        r.stderr
            .contains("function error {\"errorMessage\": \"boom\""),
        "{}",
        r.dump()
    );
    assert!(!r.has("SHUTDOWN failure"), "{}", r.dump());
    assert_eq!(s.pids("runtime.py").len(), 1);
    s.assert_no_process_left(&["observer", "runtime.py"]);
}

#[test]
fn internal_extension_in_the_runtime_process() {
    let s = Scene::new();
    let runtime = s.runtime("internal");
    let r = run(&s, &[], &["--invoke", "2", "--function", &runtime]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert!(
        r.has("EXTENSION\tName: internal-ext\tState: Ready\tEvents: [INVOKE]"),
        "{}",
        r.dump()
    );
    assert_eq!(r.all("[internal-ext] INVOKE").len(), 2, "{}", r.dump());
    // Internal extensions only: the runtime gets SIGTERM (500 ms budget)
    // and exits on it.
    assert!(r.has("[runtime.py] SIGTERM"), "{}", r.dump());
    s.assert_no_process_left(&["runtime.py"]);
}

/// A function runtime (Python) that echoes `Lambda-Runtime-Invocation-Id`
/// as 2026's runtime clients do. Its first answer carries another invoke's
/// id; then it answers properly; on the third invoke it outlives the
/// timeout (ignoring SIGTERM) and answers late. It prints each status.
const ECHOING_RUNTIME: &str = r#"#!/usr/bin/env python3
import http.client, os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
n = 0
while True:
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    inv = r.getheader("Lambda-Runtime-Invocation-Id")
    n += 1
    def answer(inv_id):
        c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", b"{}",
                  {"Lambda-Runtime-Invocation-Id": inv_id})
        resp = c.getresponse()
        print(f"invoke {n}: {resp.status} {resp.read().decode().strip()}", flush=True)
        return resp.status
    if n == 1:
        answer("not-" + inv)
    if n == 3:
        time.sleep(1.2)
    answer(inv)
"#;

#[test]
fn the_invocation_id_is_checked_and_a_late_answer_gets_410() {
    let s = Scene::new();
    let runtime = s.script("echoing", ECHOING_RUNTIME);
    // An external extension, so that the reset gives the runtime its 300 ms
    // after SIGTERM, in which the late answer arrives.
    let observer = s.extension("observer", "ok");
    let r = run(
        &s,
        &[&observer],
        &[
            "--function",
            runtime.to_str().unwrap(),
            "--timeout",
            "1",
            "--invoke",
            "3",
        ],
    );
    assert!(
        r.has("invoke 1: 400 {\"errorMessage\":\"Invalid request ID\",\"errorType\":\"InvalidRequestID\"}"),
        "{}",
        r.dump()
    );
    assert!(r.has("invoke 1: 202"), "{}", r.dump());
    assert!(r.has("invoke 2: 202"), "{}", r.dump());
    assert!(
        r.has(
            "invoke 3: 410 {\"errorMessage\":\"Invoke timeout\",\"errorType\":\"InvokeTimeout\"}"
        ),
        "{}",
        r.dump()
    );
    assert!(r.line("REPORT").contains("RequestId"), "{}", r.dump());
    assert!(
        r.all("REPORT")[2].contains("Status: timeout"),
        "{}",
        r.dump()
    );
}
