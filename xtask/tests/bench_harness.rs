//! The benchmark harness works end to end (no timing is asserted: figures
//! are read by people from BENCHMARKS.md, never checked by tests).

use std::process::Command;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");
const FLOOR: &str = env!("CARGO_BIN_EXE_floor-extension");

#[test]
fn bench_runs_the_floor_through_the_whole_lifecycle() {
    let out = Command::new(XTASK)
        .args([
            "bench-extension",
            "--no-build",
            "--runs",
            "2",
            "--invokes",
            "3",
        ])
        .args(["--floor", FLOOR, "--port", FLOOR])
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("medians over 2 runs (6 round trips) per binary"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(" B ("))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].starts_with("| std-only floor"), "{stdout}");
    assert!(stdout.contains("vs floor: spawn to first next"), "{stdout}");
}

#[test]
fn a_binary_that_never_registers_fails_the_bench_instead_of_hanging() {
    let out = Command::new(XTASK)
        .args([
            "bench-extension",
            "--no-build",
            "--runs",
            "1",
            "--invokes",
            "1",
        ])
        .args(["--floor", FLOOR, "--port", "/bin/true"])
        .output()
        .expect("run xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("/bin/true"), "{stderr}");
}

#[test]
fn a_telemetry_subject_that_never_subscribes_fails_the_bench_with_its_name() {
    // The floor registers, then polls /event/next without subscribing.
    let out = Command::new(XTASK)
        .args([
            "bench-telemetry",
            "--no-build",
            "--runs",
            "1",
            "--batches",
            "1",
        ])
        .args(["--blocking", FLOOR, "--tokio", FLOOR, "--official", FLOOR])
        .output()
        .expect("run xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains(FLOOR), "{stderr}");
    assert!(
        stderr.contains("expected the Telemetry API subscription"),
        "{stderr}"
    );
}
