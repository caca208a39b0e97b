//! Compiles the built-in echo runtime (`echo/main.rs`) and the cgroup guard
//! (`guard/main.rs`), standard library only, into small programs of their
//! own, which the library embeds.
//!
//! Why a program and not the embedding binary re-executed: an environment
//! started from `cargo test` or a doctest has no `lext` binary to re-execute
//! (the running executable is the test harness), yet its echo runtime must
//! be a real process, so that signals, freezing, timeouts and memory behave
//! as for any runtime. A standalone program of a few hundred kilobytes also
//! starts faster than a re-executed multi-megabyte one.

// Cargo reads a build script's instructions from its standard output.
#![allow(clippy::print_stdout)]

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=echo/main.rs");
    println!("cargo:rerun-if-changed=echo/runtime.rs");
    println!("cargo:rerun-if-changed=guard/main.rs");
    compile("lext_echo_runtime", "echo/main.rs", "echo-runtime");
    compile("lext_cgroup_guard", "guard/main.rs", "cgroup-guard");
}

/// Compiles `source` (standard library only) into `OUT_DIR/output`.
fn compile(crate_name: &str, source: &str, output: &str) {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let mut command = Command::new(rustc);
    command
        .args(["--edition", "2021", "--crate-type", "bin"])
        .args(["--crate-name", crate_name, "--target", &target])
        // Small and quick to load: it starts on every cold start.
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "codegen-units=1", "--cap-lints", "allow"])
        .arg("-o")
        .arg(out.join(output))
        .arg(source);
    // The linker cargo would use for this target, if one is configured.
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    if let Some(linker) = env::var_os(linker_var) {
        command.arg("-C").arg({
            let mut arg = std::ffi::OsString::from("linker=");
            arg.push(linker);
            arg
        });
    }
    let status = command
        .status()
        .expect("running rustc to build a helper program");
    assert!(status.success(), "building {source} failed ({status})");
}
