//! Cargo from the benchmarks: where the workspace and its target directory
//! are, and building release binaries (the workspace's own and the peers',
//! which are separate workspaces with their own lock files and target
//! directory, so that their dependency versions never mix with ours).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

/// The cargo that runs the xtask (`$CARGO`), else `cargo` from PATH.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace root: xtask/ is one level below it.
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else `cargo metadata`'s.
pub(crate) fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("cargo metadata")?;
    ensure!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata: no target_directory")
}

/// `cargo build --release ARGS` in the workspace.
pub(crate) fn build_release(args: &[&str]) -> Result<()> {
    let status = Command::new(cargo())
        .args(["build", "--release"])
        .args(args)
        .current_dir(workspace_root())
        .status()
        .context("run cargo build")?;
    ensure!(
        status.success(),
        "cargo build --release {} failed",
        args.join(" ")
    );
    Ok(())
}

/// Builds a peer (`xtask/peers/<name>`, its own workspace) in release mode
/// into `target_dir`, with extra cargo arguments `args` (features, bins).
pub(crate) fn build_peer(name: &str, target_dir: &Path, args: &[&str]) -> Result<()> {
    let manifest = workspace_root()
        .join("xtask/peers")
        .join(name)
        .join("Cargo.toml");
    let status = Command::new(cargo())
        .args(["build", "--release", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(args)
        .status()
        .with_context(|| format!("run cargo build for {}", manifest.display()))?;
    ensure!(
        status.success(),
        "building {} {} failed",
        manifest.display(),
        args.join(" ")
    );
    Ok(())
}
