//! Helpers shared by the end-to-end tests of the layer flow
//! (tests/layer_cli.rs, tests/adversarial_publish.rs): the test peers from
//! the venv, and `lext` run with them on PATH, optionally in an isolated AWS
//! environment for publish.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub(crate) const INSTALL_HINT: &str =
    "run scripts/install-test-deps (it installs moto[server], ziglang and \
                            cargo-zigbuild) and make sure LEXT_TEST_VENV points at its .venv";

/// The venv's bin directory: `$LEXT_TEST_VENV/bin`, else the repository's
/// `.venv/bin` (where scripts/install-test-deps puts it).
pub(crate) fn venv_bin() -> PathBuf {
    let venv = std::env::var_os("LEXT_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    venv.join("bin")
}

/// A program from the venv, else from PATH; panics loudly if neither has it.
pub(crate) fn peer(name: &str) -> PathBuf {
    let in_venv = venv_bin().join(name);
    if in_venv.is_file() {
        return in_venv;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found in {} nor on PATH: {INSTALL_HINT}",
                venv_bin().display()
            )
        })
}

/// PATH with the venv (for `python3 -m ziglang`) and ~/.cargo/bin first.
pub(crate) fn test_path() -> std::ffi::OsString {
    let mut dirs = vec![venv_bin()];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// `lext` with a PATH that finds the test peers.
pub(crate) fn lext() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lext"));
    cmd.env("PATH", test_path()).stdin(Stdio::null());
    cmd
}

/// `lext` for publish: an isolated AWS environment (no ~/.aws, no IMDS), with
/// moto's conventional dummy credentials.
pub(crate) fn lext_aws(home: &Path) -> Command {
    let mut cmd = lext();
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_LAMBDA",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(var);
    }
    // Empty files rather than missing ones: aws-config warns about a
    // missing file named by these variables.
    let (config, credentials) = (home.join("aws-config"), home.join("aws-credentials"));
    for file in [&config, &credentials] {
        if !file.exists() {
            fs::write(file, "").unwrap();
        }
    }
    cmd.env("HOME", home)
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1");
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("lext runs")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
