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

const INSTALL_HINT: &str = "run scripts/install-test-deps (it installs moto[server], ziglang and \
                            cargo-zigbuild) and make sure LEXT_TEST_VENV points at its .venv";

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

/// The entry names of a zip.
fn zip_names(path: &Path) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
        .collect()
}

/// A dependency-free Cargo project whose binaries are `bins`.
fn project(dir: &Path, package: &str, bins: &[&str]) -> PathBuf {
    fs::create_dir_all(dir.join("src/bin")).unwrap();
    let mut manifest = format!(
        "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         autobins = false\n\n[profile.release]\nopt-level = 1\n\n[workspace]\n"
    );
    for bin in bins {
        manifest.push_str(&format!(
            "\n[[bin]]\nname = \"{bin}\"\npath = \"src/bin/{bin}.rs\"\n"
        ));
        fs::write(dir.join(format!("src/bin/{bin}.rs")), "fn main() {}\n").unwrap();
    }
    fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    dir.join("Cargo.toml")
}

// --- 1. lext build / package: only this build's binaries ----------------------

/// Two projects built into one target directory, as the README's flow does
/// in a workspace: the zip holds the last build's extensions only, and a
/// file that no build wrote is refused by name.
#[test]
fn package_zips_only_what_the_last_build_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let first = project(&tmp.path().join("first"), "first", &["old-ext", "tool"]);
    let second = project(&tmp.path().join("second"), "second", &["new-ext"]);
    let build = |manifest: &Path| {
        let out = run(lext()
            .args(["build", "--manifest-path"])
            .arg(manifest)
            .env("CARGO_TARGET_DIR", &target));
        assert!(
            out.status.success(),
            "lext build (needs cargo-zigbuild and zig: {INSTALL_HINT}):\n{}",
            text(&out.stderr)
        );
    };
    build(&first);
    build(&second);

    let extensions = target.join("lambda/extensions");
    let mut names: Vec<_> = fs::read_dir(&extensions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["new-ext"],
        "what lext build left in {extensions:?}"
    );

    let package = || {
        run(lext()
            .args(["package", "--manifest-path"])
            .arg(&second)
            .env("CARGO_TARGET_DIR", &target))
    };
    let out = package();
    assert!(out.status.success(), "package: {}", text(&out.stderr));
    let zip = target.join("lambda/extension.zip");
    assert_eq!(zip_names(&zip), vec!["extensions/", "extensions/new-ext"]);

    // A file put there by hand (here: a copy of another program) is not
    // zipped silently: package refuses and names it.
    fs::copy(env!("CARGO_BIN_EXE_lext"), extensions.join("lext")).unwrap();
    let out = package();
    let stderr = failed_stderr(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "error: {} holds files the last lext build did not write: lext",
            extensions.display()
        )),
        "{stderr}"
    );
    // The refused run left the previous zip alone.
    assert_eq!(zip_names(&zip), vec!["extensions/", "extensions/new-ext"]);

    // Building again puts the directory back to that build's output.
    build(&second);
    let out = package();
    assert!(out.status.success(), "package: {}", text(&out.stderr));
    assert_eq!(zip_names(&zip), vec!["extensions/", "extensions/new-ext"]);

    // Extra files go in with --include, which package zips as asked.
    let script = tmp.path().join("helper.sh");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(lext()
        .args(["package", "--manifest-path"])
        .arg(&second)
        .arg("--include")
        .arg(format!("{}:extensions/helper.sh", script.display()))
        .env("CARGO_TARGET_DIR", &target));
    assert!(out.status.success(), "package: {}", text(&out.stderr));
    assert_eq!(
        zip_names(&zip),
        vec!["extensions/", "extensions/helper.sh", "extensions/new-ext"]
    );
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
