//! End-to-end tests of what a new user following the README runs into
//! between `lext build` and a published, attached layer: each test is one
//! bug found that way, asserting what the user sees (exit code, the line
//! printed, the files in the zip, what moto holds).
//!
//! Like tests/layer_cli.rs, the built `lext` binary runs in temporary
//! directories against real peers: cargo-zigbuild with Zig for builds, and a
//! moto server (127.0.0.1, ephemeral port, stopped by a drop guard) for
//! publish. Missing peers fail the test with a message naming
//! scripts/install-test-deps; nothing is skipped.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

#[path = "../crates/lext-layer/tests/support/mod.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// --- helpers ----------------------------------------------------------------

/// `$LEXT_TEST_VENV/bin`, else the repository's `.venv/bin`.
fn venv_bin() -> PathBuf {
    let venv = std::env::var_os("LEXT_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    venv.join("bin")
}

/// PATH with the venv (for `python3 -m ziglang`) and ~/.cargo/bin first.
fn test_path() -> std::ffi::OsString {
    let mut dirs = vec![venv_bin()];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

fn lext() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lext"));
    cmd.env("PATH", test_path()).stdin(Stdio::null());
    cmd
}

/// `lext` in an isolated AWS environment: no ~/.aws (empty shared files
/// under `home`), no instance metadata, moto's dummy keys, us-east-1.
fn lext_aws(home: &Path) -> Command {
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

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("lext runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stderr of a run that must have failed with exit 1 and no panic.
fn failed_stderr(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

/// A layer zip with one good extension, made by `lext package`.
fn packaged_layer(dir: &Path) -> PathBuf {
    let bins = dir.join("bins");
    fs::create_dir_all(&bins).unwrap();
    let path = bins.join("my-ext");
    fs::write(&path, support::good_x86_64()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    let zip = dir.join("extension.zip");
    let out = run(lext()
        .arg("package")
        .arg("--extensions-dir")
        .arg(&bins)
        .arg("--output")
        .arg(&zip));
    assert!(out.status.success(), "package: {}", text(&out.stderr));
    zip
}

// --- 4. errors name each cause once -------------------------------------------

#[test]
fn errors_name_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    let one_line = |out: &Output| {
        let stderr = failed_stderr(out);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr.trim_end().to_owned()
    };
    let missing = tmp.path().join("missing.json");

    // package --include of a file that is not there.
    let out = run(lext()
        .arg("package")
        .arg("--extensions-dir")
        .arg(tmp.path().join("bins"))
        .arg("--include")
        .arg(&missing)
        .arg("--output")
        .arg(tmp.path().join("out.zip")));
    assert_eq!(
        one_line(&out),
        format!(
            "error: lext package: reading {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    // publish of a directory, of a missing file, of a file that is no zip.
    let publish = |path: &Path| {
        run(lext_aws(tmp.path()).arg("publish").arg(path).args([
            "--layer-name",
            "x",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ]))
    };
    let dir = tmp.path().join("bins");
    assert_eq!(
        one_line(&publish(&dir)),
        format!(
            "error: reading {}: Is a directory (os error 21)",
            dir.display()
        )
    );
    assert_eq!(
        one_line(&publish(&missing)),
        format!(
            "error: reading {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let not_zip = tmp.path().join("notes.txt");
    fs::write(&not_zip, "not a zip\n").unwrap();
    let expected = format!(
        "error: {} is not a valid zip file: invalid Zip archive: Could not find EOCD",
        not_zip.display()
    );
    assert_eq!(one_line(&publish(&not_zip)), expected);
    // lext check reads the layer the same way.
    assert_eq!(one_line(&run(lext().arg("check").arg(&not_zip))), expected);

    // The zip made above is fine: the error is the file, not lext.
    assert!(zip.is_file());
}
