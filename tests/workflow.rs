//! End-to-end tests of the extension author's workflow: `lext new` then
//! `lext build`, `package`, `check`, `publish` (to moto), `run` and the
//! generated project's own `cargo test`; `lext build`'s cargo passthrough, size profile and
//! missing-target line; `lext invoke` against `lext run --serve`, next to
//! aws-cli. Real processes on 127.0.0.1 (cargo-zigbuild with Zig,
//! awslambdaric, aws-cli and moto from the test venv); a missing peer fails the test
//! with a message naming scripts/install-test-deps.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

mod layer_support;

use layer_support::*;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

// --- helpers ----------------------------------------------------------------

/// The cargo target directory the scaffolded projects share, so the SDK
/// and the sandbox are compiled once for all of them (under the workspace's
/// own target directory).
fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("workflow-scaffold")
}

/// `lext` in `dir`.
fn lext_in(dir: &Path) -> Command {
    let mut cmd = lext();
    cmd.current_dir(dir).env_remove("CARGO_TARGET_DIR");
    cmd
}

/// Runs `cmd`, asserting success; returns stdout and stderr.
fn ok(what: &str, cmd: &mut Command) -> (String, String) {
    let out = run(cmd);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}\n({INSTALL_HINT})",
        out.status
    );
    (stdout, stderr)
}

/// A failed run that printed exactly one `error:` line containing `needle`.
fn assert_one_error_line(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected `{needle}` in: {stderr}"
    );
}

// --- lext new -----------------------------------------------------------------

/// `lext new NAME FLAGS` in a temporary directory, then build, package,
/// check, publish to `publish_to` (if given) and run three invokes from the
/// layer, each with no edit; with `cargo_test`, the generated project's own
/// test too.
fn scaffold(name: &str, flags: &[&str], publish_to: Option<&Moto>, cargo_test: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, _) = ok(
        "lext new",
        lext_in(tmp.path()).arg("new").arg(name).args(flags),
    );
    assert_eq!(stdout.trim(), name);
    let project = tmp.path().join(name);
    for file in [
        "Cargo.toml",
        "README.md",
        ".gitignore",
        "src/main.rs",
        "tests/sandbox.rs",
    ] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    let readme = fs::read_to_string(project.join("README.md")).unwrap();
    for command in ["lext build", "lext package", "lext check", "lext publish"] {
        assert!(readme.contains(command), "README lacks {command}");
    }

    // The project's own size-tuned profile is used, and said so.
    let (stdout, stderr) = ok(
        "lext build",
        lext_in(&project)
            .arg("build")
            .arg("--target-dir")
            .arg(shared_target()),
    );
    assert!(
        stderr.contains("lext: profile release as the project's Cargo.toml sets it"),
        "{stderr}"
    );
    let built = project.join("target/lambda/extensions").join(name);
    assert_eq!(stdout.trim(), built.display().to_string());

    let (stdout, _) = ok("lext package", lext_in(&project).arg("package"));
    let zip = project.join("target/lambda/extension.zip");
    assert_eq!(stdout.trim(), zip.display().to_string());
    // compatible-runtimes = [provided.al2023, provided.al2]: the oldest.
    let (stdout, _) = ok("lext check", lext_in(&project).arg("check"));
    assert!(
        stdout.contains("ok for provided.al2 (x86_64)"),
        "check: {stdout}"
    );

    if let Some(moto) = publish_to {
        // layer-name and compatible-runtimes from [package.metadata.lext]:
        // no flag but where to publish.
        let home = tempfile::tempdir().unwrap();
        let (stdout, _) = ok(
            "lext publish",
            lext_aws(home.path())
                .current_dir(&project)
                .env_remove("CARGO_TARGET_DIR")
                .args(["publish", "--output", "json", "--endpoint-url", &moto.url]),
        );
        let published: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            published["LayerVersionArn"],
            format!("arn:aws:lambda:us-east-1:123456789012:layer:{name}:1"),
            "{stdout}"
        );
        assert_eq!(
            published["CompatibleRuntimes"],
            serde_json::json!(["provided.al2023", "provided.al2"]),
            "{stdout}"
        );
        assert_eq!(moto.layer_versions(name).len(), 1);
    }

    let (stdout, stderr) = ok(
        "lext run --layer",
        lext_in(&project).args([
            "run",
            "--layer",
            "target/lambda/extension.zip",
            "--invoke",
            "3",
        ]),
    );
    let all = format!("{stdout}{stderr}");
    for n in 1..=3 {
        assert!(
            all.contains(&format!("lext: invoke {n}: response {{}}")),
            "{all}"
        );
    }
    let tag = format!("[{name}] ");
    let extension_invokes = all
        .lines()
        .filter(|l| l.contains(&format!("{tag}invoke ")))
        .count();
    assert_eq!(extension_invokes, 3, "{all}");
    assert_eq!(all.matches("REPORT RequestId").count(), 3, "{all}");
    let count: usize = all
        .lines()
        .find_map(|l| {
            l.split_once(&format!("{tag}telemetry: "))?
                .1
                .strip_suffix(" records received")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no telemetry count printed:\n{all}"));
    assert!(count > 0, "{all}");

    if cargo_test {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = run(Command::new(cargo)
            .arg("test")
            .current_dir(&project)
            .env("PATH", test_path())
            .env("CARGO_TARGET_DIR", shared_target()));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "cargo test of {name}:\n{all}");
        assert!(all.contains("three_invokes_then_shutdown ... ok"), "{all}");
    }
}

#[test]
fn new_telemetry_then_build_package_check_publish_run_and_its_cargo_test() {
    let moto = Moto::start();
    scaffold("demo", &["--telemetry"], Some(&moto), true);
}

#[test]
fn new_async_telemetry_then_build_package_check_run() {
    // Another name: the two projects share a cargo target directory.
    scaffold("demo-async", &["--telemetry", "--async"], None, false);
}

#[test]
fn new_refuses_a_non_empty_directory_and_a_bad_name() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("taken")).unwrap();
    fs::write(tmp.path().join("taken/file"), "x").unwrap();
    let out = run(lext_in(tmp.path()).args(["new", "taken"]));
    assert_one_error_line(&out, "taken already exists and is not empty");
    assert_eq!(
        fs::read_dir(tmp.path().join("taken")).unwrap().count(),
        1,
        "nothing was written"
    );

    for (name, why) in [
        ("1st", "invalid crate name `1st`"),
        ("my.ext", "invalid crate name `my.ext`"),
        ("fn", "invalid crate name `fn`"),
    ] {
        let out = run(lext_in(tmp.path()).args(["new", name]));
        assert_one_error_line(&out, why);
        assert!(!tmp.path().join(name).exists());
    }

    let out = run(lext_in(tmp.path())
        .args(["new", "x", "--sdk-path"])
        .arg(tmp.path()));
    assert_one_error_line(&out, "is not the lext-extension crate");

    // An empty directory is fine.
    fs::create_dir(tmp.path().join("empty")).unwrap();
    ok(
        "lext new into an empty directory",
        lext_in(tmp.path()).args(["new", "empty"]),
    );
    assert!(tmp.path().join("empty/src/main.rs").is_file());
}

// --- lext build ---------------------------------------------------------------

/// A dependency-free project whose binary prints which features it was
/// built with; `extra` is appended to its manifest.
fn feature_project(dir: &Path, extra: &str) -> PathBuf {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"flagged\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [features]\ndefault = [\"marker\"]\nmarker = []\nextra = []\n\n\
             [workspace]\n\n{extra}"
        ),
    )
    .unwrap();
    // Some real code, so that the profile makes a difference.
    fs::write(
        dir.join("src/main.rs"),
        r#"use std::collections::BTreeMap;
fn main() {
    let mut words = BTreeMap::new();
    for arg in std::env::args() {
        *words.entry(arg).or_insert(0u32) += 1;
    }
    let t = std::thread::spawn(move || format!("{words:?}"));
    println!("{}", t.join().unwrap());
    if cfg!(feature = "marker") { println!("FEATURE-MARKER-ON-7f3a"); }
    if cfg!(feature = "extra") { println!("FEATURE-EXTRA-ON-7f3a"); }
}
"#,
    )
    .unwrap();
    dir.join("Cargo.toml")
}

/// `lext build ARGS` of `manifest` into `target`; the built binary.
fn build(manifest: &Path, target: &Path, args: &[&str]) -> (Vec<u8>, String) {
    let (_, stderr) = ok(
        "lext build",
        lext()
            .arg("build")
            .arg("--manifest-path")
            .arg(manifest)
            .args(args)
            .env("CARGO_TARGET_DIR", target),
    );
    let bytes = fs::read(target.join("lambda/extensions/flagged")).unwrap();
    (bytes, stderr)
}

fn has(bytes: &[u8], marker: &str) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

#[test]
fn build_passes_features_through_to_cargo() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = feature_project(&tmp.path().join("proj"), "");
    let target = tmp.path().join("target");
    let (bin, _) = build(&manifest, &target, &[]);
    assert!(has(&bin, "FEATURE-MARKER-ON-7f3a") && !has(&bin, "FEATURE-EXTRA-ON-7f3a"));
    let (bin, _) = build(&manifest, &target, &["--no-default-features"]);
    assert!(!has(&bin, "FEATURE-MARKER-ON-7f3a"));
    let (bin, _) = build(
        &manifest,
        &target,
        &["--no-default-features", "--features", "extra", "--locked"],
    );
    assert!(!has(&bin, "FEATURE-MARKER-ON-7f3a") && has(&bin, "FEATURE-EXTRA-ON-7f3a"));
    // A feature the package lacks: cargo's own error, then lext's line.
    let out = run(lext()
        .args(["build", "--features", "nope", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
}

#[test]
fn the_size_profile_shrinks_an_extension_that_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    // No [profile.release]; `plain` is release with cargo's defaults.
    let manifest = feature_project(
        &tmp.path().join("proj"),
        "[profile.plain]\ninherits = \"release\"\n",
    );
    let target = tmp.path().join("target");
    let (tuned, stderr) = build(&manifest, &target, &[]);
    assert!(
        stderr.contains("lext: profile release with lext's size settings (opt-level=\"z\""),
        "{stderr}"
    );
    let (plain, stderr) = build(&manifest, &target, &["--profile", "plain"]);
    assert!(
        stderr.contains("lext: profile plain (--profile)"),
        "{stderr}"
    );
    assert!(
        tuned.len() < plain.len(),
        "size-tuned {} bytes, plain release {} bytes",
        tuned.len(),
        plain.len()
    );

    // A project that sets [profile.release] keeps it, and is told so.
    let own = feature_project(
        &tmp.path().join("own"),
        "[profile.release]\nopt-level = 1\n",
    );
    let (_, stderr) = build(&own, &tmp.path().join("own-target"), &[]);
    assert!(
        stderr.contains("lext: profile release as the project's Cargo.toml sets it"),
        "{stderr}"
    );
}

/// A directory of links to the programs `lext build` needs, without
/// rustup.
fn path_without_rustup(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(peer("cargo-zigbuild"), bin.join("cargo-zigbuild")).unwrap();
    for tool in ["cargo", "rustc"] {
        let which = Command::new("rustup").args(["which", tool]).output();
        let path = match which {
            Ok(o) if o.status.success() => PathBuf::from(text(&o.stdout).trim()),
            _ => peer(tool),
        };
        std::os::unix::fs::symlink(&path, bin.join(tool)).unwrap();
    }
    bin
}

#[test]
fn a_missing_target_without_rustup_says_exactly_why() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = feature_project(&tmp.path().join("proj"), "");
    let bin = path_without_rustup(tmp.path());
    let rustc = bin.join("rustc");
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let std_dir =
        Path::new(text(&sysroot.stdout).trim()).join("lib/rustlib/aarch64-unknown-linux-gnu/lib");
    let out = run(Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(["build", "--arch", "arm64", "--manifest-path"])
        .arg(&manifest)
        .env("PATH", &bin)
        .env("RUSTC", &rustc)
        .env("CARGO", bin.join("cargo"))
        // Zig is never reached: the target is checked before cargo runs.
        .env("CARGO_ZIGBUILD_ZIG_PATH", "zig")
        .env("CARGO_TARGET_DIR", tmp.path().join("target")));
    if std_dir.is_dir() {
        // Installed on this machine: nothing to say; the check passes and
        // the build goes on (it fails later, without a real Zig).
        assert!(
            !text(&out.stderr).contains("is not installed"),
            "{}",
            text(&out.stderr)
        );
    } else {
        assert_one_error_line(
            &out,
            "the Rust target aarch64-unknown-linux-gnu is not installed",
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains("rustup is not on PATH"), "{stderr}");
        assert!(
            stderr.contains("rustup target add aarch64-unknown-linux-gnu"),
            "{stderr}"
        );
    }
}

// --- lext invoke --------------------------------------------------------------

/// `lext run --serve 127.0.0.1:0` with an awslambdaric function that
/// returns its event, or raises when the event has `"fail": true`; killed
/// (and reaped) on drop.
struct Served {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("app.py"),
            "def handler(event, context):\n    if event.get('fail'):\n        \
             raise ValueError('asked to fail')\n    return event\n",
        )
        .unwrap();
        // The function's environment is Lambda's, without the venv: call
        // the venv's interpreter by path.
        let function = format!(
            "cd '{}' && exec '{}' -m awslambdaric app.handler",
            dir.path().display(),
            peer("python3").display()
        );
        let mut child = lext()
            .args(["run", "--serve", "127.0.0.1:0", "--function", &function])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(Instant::now() < deadline, "lext run did not serve in 30 s");
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!("lext run --serve exited before serving");
            }
            if let Some(rest) = line.split("serving the Invoke API on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Served {
            child,
            url,
            _dir: dir,
        }
    }

    fn invoke(&self, args: &[&str]) -> Output {
        run(lext()
            .arg("invoke")
            .args(args)
            .arg("--endpoint-url")
            .arg(&self.url))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `aws lambda invoke` against `url`, with throwaway credentials; its exit
/// code, the summary it printed and the payload it wrote.
fn aws_invoke(url: &str, function: &str, payload: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let outfile = dir.path().join("out.json");
    let out = Command::new(peer("aws"))
        .args(["lambda", "invoke", "--endpoint-url", url])
        .args(["--function-name", function, "--payload", payload])
        .arg(&outfile)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("aws: {e}: {INSTALL_HINT}"));
    let written = fs::read_to_string(&outfile).unwrap_or_default();
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
        written,
    )
}

#[test]
fn invoke_round_trips_a_payload_and_reports_errors_with_aws_cli_s_codes() {
    let served = Served::start();

    // A payload, there and back, in both outputs.
    let out = served.invoke(&["--payload", r#"{"n":1,"word":"x"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let payload: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(payload, serde_json::json!({"n": 1, "word": "x"}));
    assert!(
        text(&out.stderr).contains("StatusCode: 200  ExecutedVersion: $LATEST"),
        "{}",
        text(&out.stderr)
    );
    let file = served._dir.path().join("event.json");
    fs::write(&file, r#"{"from":"file"}"#).unwrap();
    let out = served.invoke(&[
        "lext-function",
        "--payload",
        &format!("@{}", file.display()),
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["StatusCode"], 200, "{summary}");
    assert_eq!(summary["ExecutedVersion"], "$LATEST", "{summary}");
    assert_eq!(summary["Payload"]["from"], "file", "{summary}");
    assert!(summary.get("FunctionError").is_none(), "{summary}");

    // An unhandled error: a successful call with FunctionError, as aws-cli
    // says, with the same exit code.
    let fail = r#"{"fail":true}"#;
    let out = served.invoke(&["--payload", fail, "--output", "json"]);
    let (aws_code, aws_summary, aws_payload) = aws_invoke(&served.url, "lext-function", fail);
    assert_eq!(out.status.code(), aws_code, "aws-cli: {aws_summary}");
    assert_eq!(out.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let aws: Value = serde_json::from_str(&aws_summary).unwrap();
    assert_eq!(summary["FunctionError"], "Unhandled", "{summary}");
    assert_eq!(summary["FunctionError"], aws["FunctionError"]);
    assert_eq!(summary["StatusCode"], aws["StatusCode"]);
    // The same error document (each invoke has its own request id).
    let aws_payload: Value = serde_json::from_str(&aws_payload).unwrap();
    for key in ["errorType", "errorMessage", "stackTrace"] {
        assert_eq!(summary["Payload"][key], aws_payload[key], "{key}");
    }
    assert_eq!(summary["Payload"]["errorType"], "ValueError");

    // A function that does not exist: the service's error, in aws-cli's
    // words, with aws-cli v2's code for it (254; v1 exits 255).
    let out = served.invoke(&["nope"]);
    assert_eq!(out.status.code(), Some(254), "{}", text(&out.stderr));
    let (_, aws_said, _) = aws_invoke(&served.url, "nope", "{}");
    let line = text(&out.stderr);
    let line = line.trim().strip_prefix("error: ").unwrap();
    assert!(aws_said.contains(line), "lext: {line}\naws-cli: {aws_said}");

    // The log tail: decoded, from START to REPORT.
    let out = served.invoke(&["--log-type", "Tail", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = summary["LogResult"].as_str().unwrap_or_default();
    assert!(log.starts_with("START RequestId: "), "{summary}");
    assert!(
        log.trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("REPORT RequestId: "),
        "{summary}"
    );

    // Asynchronous: 202, no payload.
    let out = served.invoke(&["--invocation-type", "Event", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"{"StatusCode":202}"#);

    // No server: no answer, 255 as aws-cli.
    let url = served.url.clone();
    drop(served);
    let out = run(lext().args(["invoke", "--endpoint-url", &url]));
    let (aws_code, _, _) = aws_invoke(&url, "lext-function", "{}");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), aws_code);

    // A payload file that cannot be read: 252, before any call.
    let out = run(lext().args([
        "invoke",
        "--payload",
        "@/nonexistent/event.json",
        "--endpoint-url",
        &url,
    ]));
    assert_eq!(out.status.code(), Some(252), "{}", text(&out.stderr));
}

// --- one feature set ----------------------------------------------------------

/// Every package's features as `cargo tree` resolves them for `args`,
/// unioned per package and version.
fn features(
    args: &[&str],
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--prefix", "none", "-f", "{p} [{f}]"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", text(&out.stderr));
    let mut map = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for line in text(&out.stdout).lines() {
        let Some((package, rest)) = line.split_once(" [") else {
            continue;
        };
        let Some(list) = rest.split(']').next() else {
            continue;
        };
        // `name vX.Y.Z` (and the path of a local package).
        let id: Vec<&str> = package.split_whitespace().take(2).collect();
        map.entry(id.join(" "))
            .or_default()
            .extend(list.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
    }
    map
}

#[test]
fn cargo_run_after_the_tests_compiles_with_their_feature_set() {
    // What `cargo test --workspace` builds, dev-dependencies included, and
    // what `cargo run` (the lext package alone) builds.
    let tests = features(&["--workspace", "-e", "normal,build,dev"]);
    let run = features(&["-p", "lext", "-e", "normal,build"]);
    let differ: Vec<String> = run
        .iter()
        .filter(|(package, set)| tests.get(*package) != Some(set))
        .map(|(package, set)| {
            let extra: Vec<_> = tests[package].difference(set).collect();
            format!("{package}: the tests add {extra:?}")
        })
        .collect();
    assert!(
        differ.is_empty(),
        "cargo run would compile these (and every crate above them) again after the tests; \
         ask for the same features in the lext package's [dependencies] (\"One feature \
         set\"):\n{}",
        differ.join("\n")
    );
}

// --- run --watch ----------------------------------------------------------------

/// Lines a child writes, read on threads of their own.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    rx
}

/// The first line that contains `needle`, within `within`.
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?} within {within:?}:\n{}",
        seen.join("\n")
    );
}

fn invoke_at(addr: &str) -> u16 {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = "{}";
    write!(
        s,
        "POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn run_watch_rebuilds_on_a_change_keeps_the_address_and_survives_a_broken_build() {
    let tmp = tempfile::tempdir().unwrap();
    ok("lext new", lext_in(tmp.path()).args(["new", "watched"]));
    let project = tmp.path().join("watched");
    let mut child = lext_in(&project)
        .args(["run", "--watch", "--serve", "127.0.0.1:0"])
        .env("CARGO_TARGET_DIR", shared_target())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let build = Duration::from_secs(600);
    let serving = wait_for(&rx, "serving the Invoke API on http://", build);
    let addr = serving
        .split("http://")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(invoke_at(&addr), 200);
    wait_for(&rx, "[watched] invoke ", Duration::from_secs(10));

    // A change: rebuilt, restarted on the same address, the new code runs.
    let main = project.join("src/main.rs");
    let source = fs::read_to_string(&main).unwrap();
    fs::write(&main, source.replace("\"invoke {}\"", "\"invoke v2 {}\"")).unwrap();
    wait_for(&rx, "lext: rebuilt in ", build);
    let again = wait_for(
        &rx,
        "serving the Invoke API on http://",
        Duration::from_secs(30),
    );
    assert!(again.contains(&format!("http://{addr} ")), "{again}");
    assert_eq!(invoke_at(&addr), 200);
    wait_for(&rx, "[watched] invoke v2 ", Duration::from_secs(10));

    // A broken change: cargo's error, and the old environment still serves.
    let source = fs::read_to_string(&main).unwrap();
    fs::write(&main, format!("{source}\nfn broken( {{\n")).unwrap();
    wait_for(&rx, "the build failed", build);
    assert_eq!(invoke_at(&addr), 200);
    wait_for(&rx, "[watched] invoke v2 ", Duration::from_secs(10));

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "lext run --watch did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
