//! End-to-end tests of `lext build`, `package`, `check` and `publish`: the
//! built `lext` binary run in temporary directories, against real peers:
//! cargo-zigbuild with Zig for builds, and a moto server (started here on
//! 127.0.0.1 with an ephemeral port, stopped by a drop guard) for publish.
//! Missing peers fail the test with a message naming
//! scripts/install-test-deps; nothing is skipped.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

mod layer_support;
#[path = "../crates/lext-layer/tests/support/mod.rs"]
mod support;

use layer_support::*;

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lext_layer::elf::{inspect, Content};
use lext_layer::{Arch, GlibcVersion};
use serde_json::Value;

// --- helpers ----------------------------------------------------------------

/// Asserts a failed run printed exactly one line on stderr, no panic.
fn assert_one_error_line(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected `{needle}` in: {stderr}"
    );
}

/// A free port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto server on 127.0.0.1, killed (and reaped) on drop, even when the
/// test panics.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts moto with extra environment, retrying on a port clash.
    fn start_with(env: &[(&str, &str)]) -> Moto {
        let server = peer("moto_server");
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {}: {e}: {INSTALL_HINT}", server.display())
                });
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut err);
                    }
                    if err.contains("Address already in use") {
                        break; // clash: try another port
                    }
                    panic!("moto_server exited ({status}): {err}\n{INSTALL_HINT}");
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Moto {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("moto_server did not listen on port {port} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server: no free port after 5 attempts");
    }

    /// Runs boto3 code against this server; `lam` and `iam` are clients.
    /// Returns stdout.
    fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json, io, zipfile, hashlib, base64\n\
             kw = dict(endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             lam = boto3.client('lambda', **kw)\n\
             iam = boto3.client('iam', **kw)\n{code}",
            self.url
        );
        let out = Command::new(peer("python3"))
            .args(["-c", &script])
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "boto3 script failed: {}\n{INSTALL_HINT}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Creates an IAM role and a provided.al2 function named `name`.
    fn create_function(&self, name: &str) {
        self.boto(&format!(
            "role = iam.create_role(RoleName='r-{name}', AssumeRolePolicyDocument='{{}}')['Role']['Arn']\n\
             b = io.BytesIO(); z = zipfile.ZipFile(b, 'w'); z.writestr('bootstrap', '#!/bin/sh'); z.close()\n\
             lam.create_function(FunctionName='{name}', Runtime='provided.al2', Role=role, \
             Handler='bootstrap', Code={{'ZipFile': b.getvalue()}})\n"
        ));
    }

    /// The function's layer ARNs.
    fn function_layers(&self, name: &str) -> Vec<String> {
        let out = self.boto(&format!(
            "print(json.dumps([l['Arn'] for l in \
             lam.get_function_configuration(FunctionName='{name}').get('Layers', [])]))"
        ));
        serde_json::from_str(out.trim()).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of extension binaries plus its layer zip, made by
/// `lext package` from hand-made ELFs.
fn packaged_layer(dir: &Path, binaries: &[(&str, Vec<u8>, u32)]) -> PathBuf {
    let bins = dir.join("bins");
    fs::create_dir_all(&bins).unwrap();
    for (name, bytes, mode) in binaries {
        let path = bins.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
    }
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

// --- build --------------------------------------------------------------------

/// Writes a dependency-free Cargo project with two binaries.
fn fixture_project(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("src/bin")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"fixture-ext\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [[bin]]\nname = \"fixture-ext\"\npath = \"src/main.rs\"\n\n\
         [profile.release]\nopt-level = 1\n\n[workspace]\n",
    )
    .unwrap();
    fs::write(
        dir.join("src/main.rs"),
        "fn main() { let t = std::thread::spawn(|| 1); println!(\"{}\", t.join().unwrap()); }\n",
    )
    .unwrap();
    fs::write(dir.join("src/bin/helper.rs"), "fn main() {}\n").unwrap();
    dir.join("Cargo.toml")
}

#[test]
fn build_pins_glibc_226_then_package_and_check_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = fixture_project(&tmp.path().join("proj"));
    let target = tmp.path().join("target");

    let out = run(lext()
        .args(["build", "--bin", "fixture-ext", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    assert!(
        out.status.success(),
        "lext build failed (needs cargo-zigbuild and zig: {INSTALL_HINT}):\n{}",
        text(&out.stderr)
    );
    let built = target.join("lambda/extensions/fixture-ext");
    assert_eq!(text(&out.stdout).trim(), built.display().to_string());
    // Only the asked-for binary was built and copied.
    assert!(!target.join("lambda/extensions/helper").exists());

    // Prove the glibc floor by reading the binary's GLIBC_ versions.
    let bytes = fs::read(&built).unwrap();
    let Content::Elf(info) = inspect(&bytes) else {
        panic!("built file is not an ELF");
    };
    assert_eq!(info.arch, Some(Arch::X86_64));
    let max = info
        .max_glibc
        .expect("a gnu binary needs some GLIBC_ version");
    assert!(
        max <= GlibcVersion::new(2, 26, 0),
        "needs GLIBC_{max}, above 2.26"
    );
    assert_eq!(
        fs::metadata(&built).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // package + check with the project's defaults.
    let out = run(lext()
        .arg("package")
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    assert!(out.status.success(), "package: {}", text(&out.stderr));
    let zip = target.join("lambda/extension.zip");
    assert_eq!(text(&out.stdout).trim(), zip.display().to_string());
    let out = run(lext()
        .arg("check")
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    assert!(
        out.status.success(),
        "check: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("ok for provided.al2 (x86_64)"));

    // The trap lext build avoids: the same program linked by the host's
    // own toolchain needs the build machine's newer glibc, and lext check
    // says so for provided.al2.
    let host_target = tmp.path().join("host-target");
    let host = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--bin",
            "fixture-ext",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &host_target)
        .output()
        .unwrap();
    assert!(host.status.success(), "{}", text(&host.stderr));
    let layer = tmp.path().join("host-layer");
    fs::create_dir_all(layer.join("extensions")).unwrap();
    fs::copy(
        host_target.join("release/fixture-ext"),
        layer.join("extensions/fixture-ext"),
    )
    .unwrap();
    let Content::Elf(host_info) = inspect(&fs::read(layer.join("extensions/fixture-ext")).unwrap())
    else {
        panic!("host build is not an ELF");
    };
    let host_glibc = host_info.max_glibc.unwrap();
    assert!(
        host_glibc > GlibcVersion::new(2, 26, 0),
        "this test expects the build machine's glibc to be newer than 2.26 (found {host_glibc})"
    );
    let out = run(lext().arg("check").arg(&layer));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "extensions/fixture-ext: needs GLIBC_{host_glibc}, provided.al2 has glibc 2.26 \
             (`GLIBC_{host_glibc}' not found at init): rebuild with lext build, which pins glibc 2.26"
        )
    );

    // An unknown --bin names the ones that exist.
    let out = run(lext()
        .args(["build", "--bin", "nope", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target));
    assert_one_error_line(&out, "no binary named `nope`");
    assert!(text(&out.stderr).contains("available: fixture-ext, helper"));
}

// The arm64 target's missing-standard-library line is in tests/workflow.rs
// (with a PATH without rustup: with rustup, lext build installs it).

#[test]
fn build_without_zig_says_how_to_install_it() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = fixture_project(&tmp.path().join("proj"));
    // A PATH with cargo and cargo-zigbuild but no zig and no python3.
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let zigbuild = peer("cargo-zigbuild");
    std::os::unix::fs::symlink(&zigbuild, bin.join("cargo-zigbuild")).unwrap();
    let cargo = Command::new("rustup").args(["which", "cargo"]).output();
    let cargo = match cargo {
        Ok(o) if o.status.success() => PathBuf::from(text(&o.stdout).trim()),
        _ => PathBuf::from(std::env::var("CARGO").unwrap()),
    };
    std::os::unix::fs::symlink(&cargo, bin.join("cargo")).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(["build", "--manifest-path"])
        .arg(&manifest)
        .env("PATH", &bin)
        .env_remove("CARGO_ZIGBUILD_ZIG_PATH"));
    assert_one_error_line(&out, "zig is not installed");
    assert!(text(&out.stderr).contains("pip install ziglang"));

    // And with no cargo-zigbuild at all.
    fs::remove_file(bin.join("cargo-zigbuild")).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(["build", "--manifest-path"])
        .arg(&manifest)
        .env("PATH", &bin));
    assert_one_error_line(&out, "cargo-zigbuild is not installed");
    assert!(text(&out.stderr).contains("cargo install --locked cargo-zigbuild"));
}

// --- package / check ------------------------------------------------------------

#[test]
fn package_is_reproducible_and_honours_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = tmp.path().join("bins");
    fs::create_dir_all(&bins).unwrap();
    // A binary left at mode 0700. (The test's own executable would be the
    // obvious real binary, but at 150 MB it makes the debug-built deflate
    // take a minute; the build test packages a real binary instead.)
    fs::write(bins.join("real-ext"), support::good_x86_64()).unwrap();
    fs::set_permissions(bins.join("real-ext"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(tmp.path().join("extra.json"), "{}").unwrap();

    let package = |out: &Path, epoch: Option<&str>| {
        let mut cmd = lext();
        cmd.arg("package")
            .arg("--extensions-dir")
            .arg(&bins)
            .arg("--include")
            .arg(format!(
                "{}:config/extra.json",
                tmp.path().join("extra.json").display()
            ))
            .arg("--output")
            .arg(out);
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", text(&o.stderr));
        fs::read(out).unwrap()
    };
    let a = package(&tmp.path().join("a.zip"), None);
    let b = package(&tmp.path().join("b.zip"), None);
    assert_eq!(a, b, "two packages of the same inputs differ");
    let c = package(&tmp.path().join("c.zip"), Some("1700000000"));
    let d = package(&tmp.path().join("d.zip"), Some("1700000000"));
    assert_eq!(c, d);
    assert_ne!(a, c);

    for (bytes, stamp) in [(a, (1980, 1, 1, 0, 0, 0)), (c, (2023, 11, 14, 22, 13, 20))] {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut seen = Vec::new();
        for i in 0..zip.len() {
            let f = zip.by_index(i).unwrap();
            let t = f.last_modified().unwrap();
            assert_eq!(
                (
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ),
                stamp
            );
            seen.push((
                f.name().unwrap().into_owned(),
                f.unix_mode().unwrap() & 0o7777,
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("config/".to_owned(), 0o755),
                ("config/extra.json".to_owned(), 0o644),
                ("extensions/".to_owned(), 0o755),
                ("extensions/real-ext".to_owned(), 0o755),
            ]
        );
    }

    let out = run(lext()
        .arg("package")
        .arg("--extensions-dir")
        .arg(&bins)
        .arg("--output")
        .arg(tmp.path().join("e.zip"))
        .env("SOURCE_DATE_EPOCH", "last tuesday"));
    assert_one_error_line(&out, "SOURCE_DATE_EPOCH=`last tuesday` is not");
}

#[test]
fn check_prints_one_line_per_problem_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.zip");
    fs::write(
        &bad,
        support::zip_bytes(&[
            support::file("extensions/noexec", support::good_x86_64(), 0o644),
            support::file("extensions/py", b"#!/usr/bin/env python3\n".to_vec(), 0o755),
            support::file(
                "extensions/arm",
                support::fake_elf(support::EM_AARCH64, true, &["GLIBC_2.17"], None),
                0o755,
            ),
        ]),
    )
    .unwrap();
    let out = run(lext().arg("check").arg(&bad).args(["--arch", "x86_64"]));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "extensions/noexec: not executable (mode 0644): chmod 0755 it before zipping, or use lext package",
            "extensions/py: script interpreter `/usr/bin/env python3` does not exist on provided.al2: use #!/bin/sh or #!/bin/bash, ship the interpreter in the layer (bin/ is on PATH as /opt/bin), or compile the extension",
            "extensions/arm: built for aarch64, the function runs on x86_64 (exec format error at init): rebuild with lext build --arch x86_64",
        ],
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stderr).trim(),
        format!("error: 3 problem(s) in {}", bad.display())
    );

    // The same layer as a directory is checked too; a good one passes.
    let dir = tmp.path().join("opt");
    fs::create_dir_all(dir.join("extensions")).unwrap();
    fs::write(dir.join("extensions/ok"), support::good_x86_64()).unwrap();
    fs::set_permissions(dir.join("extensions/ok"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(lext()
        .arg("check")
        .arg(&dir)
        .args(["--runtime", "provided.al2023"]));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // A corrupt zip is one error line.
    let corrupt = tmp.path().join("corrupt.zip");
    fs::write(&corrupt, b"PK\x03\x04garbage").unwrap();
    let out = run(lext().arg("check").arg(&corrupt));
    assert_one_error_line(&out, "is not a valid zip file");
}

// --- publish ------------------------------------------------------------------

#[test]
fn publish_and_attach_against_moto() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path(), &[("my-ext", support::good_x86_64(), 0o755)]);
    moto.create_function("fn1");

    // First version, JSON output, attached to a function without layers.
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "my-ext", "--endpoint-url", &moto.url])
        .args(["--description", "lext test", "--license-info", "MIT"])
        .args(["--attach", "fn1", "--output", "json"]));
    assert!(out.status.success(), "publish: {}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arn1 = json["LayerVersionArn"].as_str().unwrap().to_owned();
    assert!(arn1.ends_with(":layer:my-ext:1"), "{arn1}");
    assert_eq!(json["Version"], 1);
    assert_eq!(json["Description"], "lext test");
    assert_eq!(json["LicenseInfo"], "MIT");
    assert_eq!(
        json["CompatibleArchitectures"],
        serde_json::json!(["x86_64"])
    );
    assert_eq!(
        json["CompatibleRuntimes"],
        serde_json::json!(["provided.al2", "provided.al2023"])
    );
    let zip_len = fs::metadata(&zip).unwrap().len();
    assert_eq!(json["Content"]["CodeSize"], zip_len);
    // aws-cli's layout: 4-space indent, PascalCase keys in model order.
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("{\n    \"Content\": {\n        \""),
        "{stdout}"
    );
    assert_eq!(moto.function_layers("fn1"), vec![arn1.clone()]);

    // Read it back with GetLayerVersion (boto3, independent of our client).
    let back: Value = serde_json::from_str(
        moto.boto(&format!(
            "r = lam.get_layer_version(LayerName='my-ext', VersionNumber=1)\n\
             data = open('{}', 'rb').read()\n\
             r['ExpectedSha'] = base64.b64encode(hashlib.sha256(data).digest()).decode()\n\
             r.pop('ResponseMetadata')\nprint(json.dumps(r, default=str))",
            zip.display()
        ))
        .trim(),
    )
    .unwrap();
    assert_eq!(back["LayerVersionArn"], arn1.as_str());
    assert_eq!(back["Description"], "lext test");
    assert_eq!(back["Content"]["CodeSize"], zip_len);
    assert_eq!(back["Content"]["CodeSha256"], back["ExpectedSha"]);
    assert_eq!(
        back["CompatibleArchitectures"],
        serde_json::json!(["x86_64"])
    );

    // Give the function four other layers after ours; a new version of ours
    // replaces the old one in place and keeps the others (5 in all).
    moto.boto(
        "arns = []\n\
         for i in range(4):\n\
         \x20   arns.append(lam.publish_layer_version(LayerName=f'other{i}', Content={'ZipFile': b'PK\\x05\\x06' + bytes(18)})['LayerVersionArn'])\n\
         cur = [l['Arn'] for l in lam.get_function_configuration(FunctionName='fn1')['Layers']]\n\
         lam.update_function_configuration(FunctionName='fn1', Layers=cur + arns)\n",
    );
    let before = moto.function_layers("fn1");
    assert_eq!(before.len(), 5);
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "my-ext",
        "--endpoint-url",
        &moto.url,
        "--attach",
        "fn1",
    ]));
    assert!(out.status.success(), "publish 2: {}", text(&out.stderr));
    let arn2 = text(&out.stdout).trim().to_owned();
    assert!(arn2.ends_with(":layer:my-ext:2"), "{arn2}");
    let after = moto.function_layers("fn1");
    let mut expected = before.clone();
    expected[0] = arn2.clone();
    assert_eq!(after, expected);

    // A sixth layer is refused before the upload, and the function keeps
    // its five.
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "sixth",
        "--endpoint-url",
        &moto.url,
        "--attach",
        "fn1",
    ]));
    assert_one_error_line(
        &out,
        "not publishing: --attach fn1 would fail: function fn1 would have 6 layers, Lambda allows \
         at most 5",
    );
    assert_eq!(moto.function_layers("fn1"), expected);
    let versions = moto
        .boto("print(len(lam.list_layer_versions(LayerName='sixth').get('LayerVersions', [])))");
    assert_eq!(versions.trim(), "0");

    // A layer that fails lext check is never uploaded.
    let bad = packaged_layer(
        &tmp.path().join("bad"),
        &[("py", b"#!/usr/bin/env python3\n".to_vec(), 0o755)],
    );
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&bad).args([
        "--layer-name",
        "bad-layer",
        "--endpoint-url",
        &moto.url,
    ]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("extensions/py: script interpreter `/usr/bin/env python3`"));
    assert!(
        lines[1].starts_with("error: ")
            && lines[1].ends_with("failed lext check with 1 problem(s); not publishing")
    );
    let versions = moto.boto(
        "print(len(lam.list_layer_versions(LayerName='bad-layer').get('LayerVersions', [])))",
    );
    assert_eq!(versions.trim(), "0");
}

/// `lext` hands `publish` and `invoke` to `lext-aws` beside it (the program
/// that links the AWS SDK). Without it, one line says what to do; beside
/// it, the same `lext` hands over, and the error is lext-aws's own.
#[test]
fn lext_hands_publish_and_invoke_to_lext_aws_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let alone = tmp.path().join("lext");
    fs::copy(env!("CARGO_BIN_EXE_lext"), &alone).unwrap();
    let missing = tmp.path().join("missing.zip");
    let publish = [
        "publish".as_ref(),
        missing.as_os_str(),
        "--layer-name".as_ref(),
        "x".as_ref(),
    ];
    for args in [&publish[..], &["invoke".as_ref()][..]] {
        let out = run(Command::new(&alone)
            .args(args)
            .current_dir(tmp.path())
            .stdin(Stdio::null()));
        assert_one_error_line(&out, "run by lext-aws, which is not beside lext");
    }
    fs::copy(env!("CARGO_BIN_EXE_lext-aws"), tmp.path().join("lext-aws")).unwrap();
    let out = run(Command::new(&alone)
        .args(publish)
        .current_dir(tmp.path())
        .stdin(Stdio::null()));
    assert_one_error_line(&out, "missing.zip");
    assert!(
        !text(&out.stderr).contains("lext-aws"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn publish_errors_are_one_line_and_quick() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path(), &[("my-ext", support::good_x86_64(), 0o755)]);

    // Bad credentials: moto checks keys when its auth is on.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "x", "--endpoint-url", &moto.url])
        .env("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1"));
    assert_one_error_line(
        &out,
        "PublishLayerVersion failed: InvalidClientTokenId: The security token included in the request is invalid.",
    );
    drop(moto);

    // Unreachable endpoint: a port nobody listens on. Must not hang.
    let port = free_port();
    let started = Instant::now();
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "x",
        "--endpoint-url",
        &format!("http://127.0.0.1:{port}"),
    ]));
    assert_one_error_line(&out, "Connection refused");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    // Corrupt zip: refused before any request.
    let corrupt = tmp.path().join("corrupt.zip");
    fs::write(&corrupt, b"PK\x03\x04 torn").unwrap();
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&corrupt).args([
        "--layer-name",
        "x",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]));
    assert_one_error_line(&out, "corrupt.zip is not a valid zip file");

    // No credentials anywhere, no region anywhere, a bad layer name.
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "x", "--endpoint-url", "http://127.0.0.1:9"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY"));
    assert_one_error_line(&out, "no usable AWS credentials (set AWS_ACCESS_KEY_ID");
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "x", "--endpoint-url", "http://127.0.0.1:9"])
        .env_remove("AWS_REGION"));
    assert_one_error_line(&out, "no AWS region: pass --region");
    let out = run(lext_aws(tmp.path()).arg("publish").arg(&zip).args([
        "--layer-name",
        "not a name",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]));
    assert_one_error_line(
        &out,
        "Value 'not a name' at 'layerName' failed to satisfy constraint",
    );
}

#[test]
fn publish_takes_credentials_and_region_from_a_profile() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let zip = packaged_layer(tmp.path(), &[("my-ext", support::good_x86_64(), 0o755)]);
    let mut cmd = lext_aws(tmp.path());
    // Replace the isolated empty files with a named profile.
    fs::write(
        tmp.path().join("aws-config"),
        "[profile lext-test]\nregion = eu-west-1\n",
    )
    .unwrap();
    fs::write(
        tmp.path().join("aws-credentials"),
        "[lext-test]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let out = run(cmd
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "from-profile", "--endpoint-url", &moto.url])
        .args(["--profile", "lext-test"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // moto puts the region of the request's signature into the ARN.
    let arn = text(&out.stdout).trim().to_owned();
    assert!(arn.starts_with("arn:aws:lambda:eu-west-1:"), "{arn}");

    // --region wins over the profile's region.
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "from-profile", "--endpoint-url", &moto.url])
        .args(["--profile", "lext-test", "--region", "ap-south-1"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("arn:aws:lambda:ap-south-1:"));

    // An unknown profile is one clear line.
    let out = run(lext_aws(tmp.path())
        .arg("publish")
        .arg(&zip)
        .args(["--layer-name", "x", "--endpoint-url", &moto.url])
        .args(["--profile", "nope"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY"));
    assert!(!out.status.success());
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    let last = text(&out.stderr).lines().last().unwrap_or("").to_owned();
    assert!(
        last.starts_with("error: The config profile (nope) could not be found in "),
        "{}",
        text(&out.stderr)
    );
}
