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

mod layer_support;
#[path = "../crates/lext-layer/tests/support/mod.rs"]
mod support;

use layer_support::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

// --- helpers ----------------------------------------------------------------

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

// --- 2. publish --attach: check the function before uploading -----------------

/// `--attach` to a function that does not exist publishes nothing.
#[test]
fn attach_to_a_missing_function_publishes_nothing() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "orphan",
        "--endpoint-url",
        &moto.url,
        "--attach",
        "no-such-function",
    ]));
    let stderr = failed_stderr(&out);
    assert_eq!(text(&out.stdout), "", "nothing published, nothing printed");
    assert_eq!(
        stderr.trim_end(),
        "error: not publishing: --attach no-such-function would fail: \
         GetFunctionConfiguration failed: ResourceNotFoundException: Function not found: \
         arn:aws:lambda:us-east-1:123456789012:function:no-such-function"
    );
    assert_eq!(moto.layer_versions("orphan"), Vec::<String>::new());
}

/// A function that already has five other layers: refused before the
/// upload, so no version is left behind.
#[test]
fn attach_over_the_layer_limit_publishes_nothing() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    moto.create_function("full");
    moto.boto(
        "arns = [lam.publish_layer_version(LayerName=f'other{i}', \
         Content={'ZipFile': b'PK\\x05\\x06' + bytes(18)})['LayerVersionArn'] for i in range(5)]\n\
         lam.update_function_configuration(FunctionName='full', Layers=arns)\n",
    );
    let before = moto.function_layers("full");
    assert_eq!(before.len(), 5);
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "sixth",
        "--endpoint-url",
        &moto.url,
        "--attach",
        "full",
    ]));
    let stderr = failed_stderr(&out);
    assert!(
        stderr.starts_with(
            "error: not publishing: --attach full would fail: function full would have 6 \
             layers, Lambda allows at most 5"
        ),
        "{stderr}"
    );
    assert_eq!(moto.layer_versions("sixth"), Vec::<String>::new());
    assert_eq!(moto.function_layers("full"), before);
}

/// When attaching fails after the upload (here moto starts refusing the
/// dummy keys after PublishLayerVersion), the ARN of the version that was
/// created is printed on stdout and named in the error.
#[test]
fn attach_failing_after_publish_prints_what_was_published() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    moto.create_function("fn1");
    // lext makes two requests before the update: GetFunctionConfiguration
    // (the function exists) and PublishLayerVersion.
    moto.allow_unauthenticated("2");
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "half-done",
        "--endpoint-url",
        &moto.url,
        "--attach",
        "fn1",
    ]));
    moto.allow_unauthenticated("inf");
    let stderr = failed_stderr(&out);
    let versions = moto.layer_versions("half-done");
    assert_eq!(versions.len(), 1, "{stderr}");
    let arn = &versions[0];
    assert_eq!(text(&out.stdout), format!("{arn}\n"), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: published {arn} but could not attach it to fn1: \
             UpdateFunctionConfiguration failed: InvalidClientTokenId: The security token \
             included in the request is invalid."
        )
    );
    assert_eq!(moto.function_layers("fn1"), Vec::<String>::new());
}

// --- 3. publish --profile: an unknown profile is refused ----------------------

#[test]
fn an_unknown_profile_is_refused_even_with_keys_in_the_environment() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    fs::write(
        tmp.path().join("aws-config"),
        "[default]\nregion = us-east-1\n[profile in-config]\nregion = eu-west-1\n\
         [sso-session nope]\nsso_region = us-east-1\n",
    )
    .unwrap();
    fs::write(
        tmp.path().join("aws-credentials"),
        "[in-credentials]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let publish = |profile: &str| {
        run(lext_aws(tmp.path())
            .arg("publish")
            .arg(&zip)
            .args(["--layer-name", "profiled", "--endpoint-url", &moto.url])
            .args(["--profile", profile]))
    };
    // AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set (lext_aws), so
    // the SDK's chain alone would sign with them and publish.
    let out = publish("nope");
    let stderr = failed_stderr(&out);
    let config = tmp.path().join("aws-config");
    let credentials = tmp.path().join("aws-credentials");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: The config profile (nope) could not be found in {} or {}",
            config.display(),
            credentials.display()
        )
    );
    assert_eq!(moto.layer_versions("profiled"), Vec::<String>::new());

    // AWS_PROFILE is held to the same rule, as aws-cli does.
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "profiled", "--endpoint-url", &moto.url])
        .env("AWS_PROFILE", "also-nope"));
    let stderr = failed_stderr(&out);
    assert!(
        stderr.starts_with("error: The config profile (also-nope) could not be found"),
        "{stderr}"
    );
    assert_eq!(moto.layer_versions("profiled"), Vec::<String>::new());

    // A profile named in either file, under the paths the variables give,
    // is found.
    for profile in ["in-config", "in-credentials", "default"] {
        let out = publish(profile);
        assert!(out.status.success(), "{profile}: {}", text(&out.stderr));
    }
    assert_eq!(moto.layer_versions("profiled").len(), 3);
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

// --- 5. lext run and lext publish take the region from AWS_REGION -------------

/// `AWS_REGION=eu-west-1` reaches both commands: publish's ARN and the
/// function ARN that `lext run` hands the extension in its INVOKE event
/// (rust-example-extension prints the event).
#[test]
fn run_and_publish_agree_on_aws_region() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "regional", "--endpoint-url", &moto.url])
        .env("AWS_REGION", "eu-west-1"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("arn:aws:lambda:eu-west-1:"));

    let lext_run = |region: Option<&str>, flag: Option<&str>| {
        let mut cmd = lext();
        // Inside the repository, lext run builds and runs the example
        // extension when given none.
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["run", "--invoke", "1", "--function-name", "regional"])
            .env_remove("AWS_REGION");
        if let Some(region) = region {
            cmd.env("AWS_REGION", region);
        }
        if let Some(flag) = flag {
            cmd.args(["--region", flag]);
        }
        let out = run(&mut cmd);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{all}");
        assert!(all.contains("\"invokedFunctionArn\""), "{all}");
        all
    };
    let all = lext_run(Some("eu-west-1"), None);
    assert!(
        all.contains("arn:aws:lambda:eu-west-1:") && !all.contains("arn:aws:lambda:us-east-1:"),
        "{all}"
    );
    // The flag wins over the variable; neither means us-east-1.
    let all = lext_run(Some("eu-west-1"), Some("ap-south-1"));
    assert!(all.contains("arn:aws:lambda:ap-south-1:"), "{all}");
    let all = lext_run(None, None);
    assert!(all.contains("arn:aws:lambda:us-east-1:"), "{all}");
}

// --- exit codes in --help -----------------------------------------------------

#[test]
fn help_documents_exit_codes() {
    for command in ["build", "package", "check", "publish"] {
        let out = run(lext().args([command, "--help"]));
        assert!(out.status.success());
        let help = text(&out.stdout);
        let line = help
            .lines()
            .find(|l| l.starts_with("Exit codes: 0 "))
            .unwrap_or_else(|| panic!("no exit codes in lext {command} --help:\n{help}"));
        assert!(
            line.contains("; 1 ") && line.contains("; 2 bad arguments"),
            "{line}"
        );
    }
    // And 2 is what clap exits with on a bad argument.
    let out = run(lext().args(["package", "--no-such-flag"]));
    assert_eq!(out.status.code(), Some(2));
}

/// A proxy on 127.0.0.1 in front of moto that loses every answer: it
/// passes each request on, reads moto's answer (so moto has done the
/// work), and closes the caller's connection without it, as a timeout or
/// a dropped connection after the upload does. Stopped when dropped.
struct AnswerLosingProxy {
    url: String,
    /// The requests passed on.
    passed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnswerLosingProxy {
    fn start(upstream: &str) -> Self {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let passed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopping) = (passed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for caller in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(caller) = caller else { continue };
                let mut reader = BufReader::new(caller);
                let mut head = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let end = line == "\r\n";
                    head.extend_from_slice(line.as_bytes());
                    if end {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                // One request per upstream connection, read to its end.
                let mut moto = TcpStream::connect(&upstream).unwrap();
                let head =
                    String::from_utf8_lossy(&head).replacen("\r\n", "\r\nConnection: close\r\n", 1);
                moto.write_all(head.as_bytes()).unwrap();
                moto.write_all(&body).unwrap();
                let mut answer = Vec::new();
                let _ = moto.read_to_end(&mut answer);
                counter.fetch_add(1, Ordering::SeqCst);
                // The caller's connection drops here, unanswered.
            }
        });
        Self {
            url: format!("http://{addr}"),
            passed,
            stop,
            addr,
            thread: Some(thread),
        }
    }
}

impl Drop for AnswerLosingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept, which then sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// PublishLayerVersion is not idempotent: when its answer is lost after
/// Lambda published, sending it again would publish a second version. lext
/// sends it once, and says how to see what was published.
#[test]
fn a_lost_publish_answer_is_not_sent_again() {
    let moto = Moto::start();
    let proxy = AnswerLosingProxy::start(&moto.url);
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path());
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "lost-answer",
        "--endpoint-url",
        &proxy.url,
    ]));
    let stderr = failed_stderr(&out);
    assert_eq!(
        text(&out.stdout),
        "",
        "nothing known published, nothing printed"
    );
    assert!(
        stderr.contains("error: PublishLayerVersion failed: ")
            && stderr.contains(
                "the layer may have been published all the same; lext does not send it again, \
                 which would publish a second version: \
                 `aws lambda list-layer-versions --layer-name lost-answer` shows what is there"
            ),
        "{stderr}"
    );
    assert_eq!(
        proxy.passed.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{stderr}"
    );
    assert_eq!(moto.layer_versions("lost-answer").len(), 1);
}
