//! Helpers shared by the crate's tests that run real processes.
//!
//! Also home of `support_tests`, the test of the support modules together,
//! declared here so that it is compiled for tests only.

use std::path::PathBuf;

/// A Python 3 interpreter for the tests that need one: the test venv's
/// (`LEXT_TEST_VENV`, set by scripts/test), else `python3` on PATH. Fails
/// loudly when there is none.
///
/// The path returned is the interpreter itself (`sys.executable`), not a
/// wrapper such as a pyenv shim, because the sandboxed processes get a clean
/// environment in which such wrappers do not work.
pub(crate) fn python() -> PathBuf {
    let venv = std::env::var_os("LEXT_TEST_VENV")
        .map(|venv| PathBuf::from(venv).join("bin/python"))
        .filter(|p| p.exists());
    let candidate = venv.or_else(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("python3"))
            .find(|p| p.is_file())
    });
    let Some(candidate) = candidate else {
        panic!("these tests need Python 3 (python3 on PATH): run scripts/install-test-deps");
    };
    let output = std::process::Command::new(&candidate)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", candidate.display()));
    let executable = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() && !executable.is_empty(),
        "{} does not work: run scripts/install-test-deps",
        candidate.display()
    );
    PathBuf::from(executable)
}

#[path = "support_tests.rs"]
mod support_tests;
