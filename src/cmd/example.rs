//! The extension `lext run` runs when given none: inside the lext
//! repository, examples/rust-example-extension (the port of AWS's
//! go-example-extension), built with cargo first.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// Inside the lext repository, builds examples/rust-example-extension and
/// returns it; elsewhere, `None`.
pub(crate) fn build() -> anyhow::Result<Option<PathBuf>> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let Some(root) = cwd.ancestors().find(|dir| {
        dir.join("examples/rust-example-extension/Cargo.toml")
            .is_file()
    }) else {
        note!("lext: no --extension or --layer given; running the function alone");
        return Ok(None);
    };
    note!("lext: building examples/rust-example-extension (no --extension or --layer given)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "-p",
            "rust-example-extension",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p rust-example-extension")?;
    if !output.status.success() {
        bail!(
            "cargo build -p rust-example-extension failed ({})",
            output.status
        );
    }
    let executable = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "rust-example-extension"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo did not report the rust-example-extension executable")?;
    Ok(Some(executable))
}
