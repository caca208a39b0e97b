//! End-to-end cross-check of the SDK against the sandbox: an extension built
//! on lext-extension's blocking Telemetry API listener
//! (examples/rust-telemetry-extension) runs under `lext run`, and what it
//! printed about the batches it received is compared with what lext printed
//! about the invokes it ran.
//!
//! The SDK and the sandbox share only lext-protocol, so this is where a bug
//! on either side of the Telemetry API (the sandbox not delivering, the
//! listener not serving, the SDK not decoding) shows.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::path::Path;

use sandbox_support::{alive, build_bins, Scene};

const EXT: &str = "rust-telemetry-extension";

#[test]
fn sdk_listener_receives_telemetry_under_lext_run() {
    let bins = build_bins(&[EXT]);
    let ext = bins
        .get(EXT)
        .unwrap_or_else(|| panic!("cargo built no {EXT} executable: {bins:?}"));
    let s = Scene::new();
    // Prints `[runtime.py] invocation <request id>` for every invoke.
    let runtime = s.runtime("echo");
    let r = s.lext(&[
        "--extension",
        &ext.display().to_string(),
        "--function",
        &runtime,
        "--invoke",
        "2",
    ]);
    let dump = r.dump();
    assert!(r.output.status.success(), "{dump}");
    assert!(
        r.has(&format!(
            "TELEMETRY\tName: {EXT}\tState: Subscribed\tTypes: [Platform, Function, Extension]"
        )),
        "{dump}"
    );

    // The request ids, as lext printed them.
    let starts: Vec<&str> = r
        .all("START RequestId: ")
        .into_iter()
        .map(|l| request_id(l, "START RequestId: "))
        .collect();
    let reports: Vec<&str> = r
        .all("REPORT RequestId: ")
        .into_iter()
        .map(|l| request_id(l, "REPORT RequestId: "))
        .collect();
    assert_eq!(starts.len(), 2, "{dump}");
    assert_eq!(starts, reports, "{dump}");
    assert_ne!(starts[0], starts[1], "{dump}");

    // What the extension printed about the events it received (its lines,
    // without the timestamp lext puts in front).
    let told = |what: &str| format!("[{EXT}] telemetry: {what}");
    let lines = r.lines();
    let position = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("the extension did not print {line:?}\n{dump}"))
    };
    let position_prefix = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the extension printed nothing like {prefix:?}\n{dump}"))
    };

    // The init replay: events of Init that happened before the
    // subscription, and the extension's own line from before it subscribed.
    position(&told("platform.initStart phase=init"));
    position(&told(&format!("extension: [{EXT}] Registering...")));

    // Each invoke: platform.start, then the function's line as a `function`
    // record and platform.report. (Whether the line is read from the
    // function's pipe before or after the runtime's answer is scheduling,
    // so the order of those two is not asserted.)
    for id in &starts {
        let start = position(&told(&format!("platform.start requestId={id}")));
        let function = position(&told(&format!("function: [runtime.py] invocation {id}")));
        let report = position_prefix(&told(&format!(
            "platform.report requestId={id} status=success durationMs="
        )));
        assert!(start < function && start < report, "{id}\n{dump}");
    }

    // Everything received was decoded, and the extension ended normally,
    // after the last invoke's report had arrived.
    assert!(!r.has(&format!("[{EXT}] warning:")), "{dump}");
    let exiting = position(&format!("[{EXT}] Exiting"));
    let last_report = position_prefix(&told(&format!("platform.report requestId={}", starts[1])));
    assert!(last_report < exiting, "{dump}");

    assert_no_process_runs(ext);
}

/// The request id that follows `prefix` in `line`.
fn request_id<'a>(line: &'a str, prefix: &str) -> &'a str {
    line.strip_prefix(prefix)
        .and_then(|rest| rest.split([' ', '\t']).next())
        .unwrap_or_else(|| panic!("no request id in {line:?}"))
}

/// Asserts that no live process runs the executable `exe` (lext must have
/// stopped the extension it started).
fn assert_no_process_runs(exe: &Path) {
    let exe = exe.canonicalize().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // Processes of other users, or gone meanwhile, cannot be read.
        let Ok(running) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        assert!(
            running != exe || !alive(pid),
            "{} (pid {pid}) outlived lext run",
            exe.display()
        );
    }
}
