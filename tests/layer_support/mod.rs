//! Helpers shared by the end-to-end tests of the layer flow
//! (tests/layer_cli.rs, tests/adversarial_publish.rs, tests/workflow.rs):
//! the test peers from the venv, `lext` run with them on PATH, optionally in
//! an isolated AWS environment for publish, and a moto server to publish to.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A moto server on 127.0.0.1, killed (and reaped) on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
    pub(crate) port: u16,
}

impl Moto {
    /// Starts moto on a port the kernel picks (`-p 0`), read back from the
    /// line werkzeug prints: a port chosen here and then bound by moto
    /// could be taken by a concurrent test's moto in between.
    pub(crate) fn start() -> Moto {
        let server = peer("moto_server");
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}: {INSTALL_HINT}", server.display()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the port, then keeps draining moto's request log so that
        // it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split_once("Running on http://127.0.0.1:")
                    .and_then(|(_, port)| port.trim().parse::<u16>().ok())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "moto_server did not report its port within 30 s ({status:?}): {INSTALL_HINT}"
                );
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server does not answer on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Runs boto3 code against this server (`lam`, `iam` are clients);
    /// returns stdout.
    pub(crate) fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json, io, zipfile\n\
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
    pub(crate) fn create_function(&self, name: &str) {
        self.boto(&format!(
            "role = iam.create_role(RoleName='r-{name}', AssumeRolePolicyDocument='{{}}')['Role']['Arn']\n\
             b = io.BytesIO(); z = zipfile.ZipFile(b, 'w'); z.writestr('bootstrap', '#!/bin/sh'); z.close()\n\
             lam.create_function(FunctionName='{name}', Runtime='provided.al2', Role=role, \
             Handler='bootstrap', Code={{'ZipFile': b.getvalue()}})\n"
        ));
    }

    /// The ARNs of every version of layer `name` moto holds.
    pub(crate) fn layer_versions(&self, name: &str) -> Vec<String> {
        let out = self.boto(&format!(
            "print(json.dumps([v['LayerVersionArn'] for v in \
             lam.list_layer_versions(LayerName='{name}').get('LayerVersions', [])]))"
        ));
        serde_json::from_str(out.trim()).unwrap()
    }

    /// The function's layer ARNs.
    pub(crate) fn function_layers(&self, name: &str) -> Vec<String> {
        let out = self.boto(&format!(
            "print(json.dumps([l['Arn'] for l in \
             lam.get_function_configuration(FunctionName='{name}').get('Layers', [])]))"
        ));
        serde_json::from_str(out.trim()).unwrap()
    }

    /// moto's `/moto-api/reset-auth`: the next `count` requests are served
    /// without authentication, every later one is checked against IAM (so
    /// moto's dummy keys are refused with InvalidClientTokenId). `"inf"`
    /// turns the checks off again.
    pub(crate) fn allow_unauthenticated(&self, count: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "POST /moto-api/reset-auth HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{count}",
            count.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "reset-auth: {reply}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
