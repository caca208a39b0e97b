//! Helpers of the `tests/sandbox_*.rs` end-to-end tests: run the built
//! `lext run` in a temporary directory, with extensions and runtimes written
//! here as small Python scripts (python3 is on every machine the tests run
//! on), and check that no process they started outlives lext.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory with scripts and their pid files.
pub(crate) struct Scene {
    pub dir: tempfile::TempDir,
}

/// What `lext run` did.
pub(crate) struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The log lines (stdout), without their timestamp.
    pub(crate) fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
            .collect()
    }

    /// The first line starting with `prefix`; panics with the whole log.
    pub(crate) fn line(&self, prefix: &str) -> &str {
        self.lines()
            .into_iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no line starting with {prefix:?} in:\n{}\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    /// Every line starting with `prefix`.
    pub(crate) fn all(&self, prefix: &str) -> Vec<&str> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// Whether some line contains `text`.
    pub(crate) fn has(&self, text: &str) -> bool {
        self.stdout.contains(text)
    }

    /// The JSON `lext run` printed to stderr for invoke `n` after
    /// `lext: invoke <n>: <what> ` (`response` or `function error`);
    /// panics with the whole output when there is none.
    pub(crate) fn invoke_json(&self, n: usize, what: &str) -> serde_json::Value {
        let prefix = format!("lext: invoke {n}: {what} ");
        let text = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.dump()));
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{prefix:?} is not JSON ({e}): {text}"))
    }

    /// Asserts that `lext run` failed and said `text` on stderr.
    #[track_caller]
    pub(crate) fn assert_failed_with(&self, text: &str) {
        assert!(!self.output.status.success(), "{}", self.dump());
        assert!(self.stderr.contains(text), "{}", self.dump());
    }

    pub(crate) fn dump(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Python code shared by the generated extensions: a tiny Extensions API
/// client over http.client (no read timeout: /event/next is a long poll).
const PY_PRELUDE: &str = r#"import http.client, json, os, sys, time, signal
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, PORT = API.rsplit(":", 1)
# The name must be the file name in extensions/; a launcher that execs
# the real code elsewhere passes it on (as AWS's Python samples do).
NAME = os.environ.get("EXT_NAME") or os.path.basename(sys.argv[0])
# The pid and its namespace: inside the environment's PID namespace the
# pid is not the host's (see host_pid).
with open(os.environ.get("PIDFILE_DIR", os.path.dirname(sys.argv[0])) + "/" + NAME + ".pids", "a") as f:
    f.write(f"{os.getpid()} {os.readlink('/proc/self/ns/pid')}\n")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
def say(text):
    print(f"[{NAME}] {text}", flush=True)
"#;

impl Scene {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an executable script.
    pub(crate) fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A Python external extension. `mode` picks its misbehaviour:
    /// `ok`, `crash-init`, `init-error`, `crash-invoke`, `exit-error`,
    /// `never-next`, `crash-shutdown`, `ignore-shutdown`; prefixed with
    /// `shutdown-only-` (`shutdown-only-ok`, ...) it registers for SHUTDOWN
    /// alone, as Lambda Managed Instances require.
    pub(crate) fn extension(&self, name: &str, mode: &str) -> PathBuf {
        let body = format!(
            r#"#!/usr/bin/env python3
{PY_PRELUDE}
MODE = "{mode}"
EVENTS = ["SHUTDOWN"] if MODE.startswith("shutdown-only-") else ["INVOKE", "SHUTDOWN"]
MODE = MODE.removeprefix("shutdown-only-")
if MODE == "ignore-shutdown":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
status, h, body = call("POST", "/2020-01-01/extension/register", json.dumps({{"events": EVENTS}}), {{"Lambda-Extension-Name": NAME}})
assert status == 200, (status, body)
ID = h["lambda-extension-identifier"]
say("registered")
if MODE == "crash-init":
    # Late enough for the other extensions to be waiting in /event/next
    # (and so to receive SHUTDOWN), still inside Init.
    time.sleep(0.3)
    os._exit(3)
if MODE == "init-error":
    time.sleep(0.3)  # see crash-init
    status, _, body = call("POST", "/2020-01-01/extension/init/error", json.dumps({{"errorMessage": "bad config", "errorType": "Extension.ConfigInvalid"}}), {{"Lambda-Extension-Identifier": ID, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"}})
    say(f"init/error answered {{status}} {{body.decode().strip()}}")
    sys.exit(1)
while True:
    status, _, body = call("GET", "/2020-01-01/extension/event/next", headers={{"Lambda-Extension-Identifier": ID}})
    if status != 200:
        say(f"next answered {{status}}")
        sys.exit(1)
    event = json.loads(body)
    if event["eventType"] == "SHUTDOWN":
        say(f"SHUTDOWN {{event['shutdownReason']}} in {{event['deadlineMs'] - int(time.time() * 1000)}} ms")
        if MODE == "crash-shutdown":
            os._exit(5)
        if MODE == "ignore-shutdown":
            while True:
                time.sleep(1)
        sys.exit(0)
    say(f"INVOKE {{event['requestId']}}")
    if MODE == "crash-invoke":
        os._exit(4)
    if MODE == "exit-error":
        status, _, body = call("POST", "/2020-01-01/extension/exit/error", "", {{"Lambda-Extension-Identifier": ID, "Lambda-Extension-Function-Error-Type": "Extension.Broken"}})
        say(f"exit/error answered {{status}}")
        sys.exit(1)
    if MODE == "never-next":
        while True:
            time.sleep(1)
"#
        );
        self.script(name, &body)
    }

    /// A Python function runtime. `mode`: `echo`, `crash-invoke`, `sleep`,
    /// `init-error`, `error`, `ignore-term` (an echo that ignores SIGTERM).
    pub(crate) fn runtime(&self, mode: &str) -> String {
        let body = format!(
            r#"#!/usr/bin/env python3
{PY_PRELUDE}
MODE = "{mode}"
if MODE == "init-error":
    time.sleep(0.3)  # see crash-init
    call("POST", "/2018-06-01/runtime/init/error", json.dumps({{"errorMessage": "no handler", "errorType": "Runtime.ImportModuleError"}}), {{"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}})
    sys.exit(2)
if MODE == "internal":
    # An internal extension: a thread of the runtime process that registers
    # (INVOKE only) before the runtime's first /next.
    import threading
    status, h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({{"events": ["INVOKE"]}}), {{"Lambda-Extension-Name": "internal-ext"}})
    assert status == 200, status
    def internal(ext_id):
        while True:
            _, _, body = call("GET", "/2020-01-01/extension/event/next", headers={{"Lambda-Extension-Identifier": ext_id}})
            print(f"[internal-ext] {{json.loads(body)['eventType']}}", flush=True)
    threading.Thread(target=internal, args=(h["lambda-extension-identifier"],), daemon=True).start()
    def on_term(*_):
        say("SIGTERM")
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
if MODE == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    status, h, body = call("GET", "/2018-06-01/runtime/invocation/next")
    rid = h["lambda-runtime-aws-request-id"]
    say(f"invocation {{rid}}")
    if MODE == "crash-invoke":
        os._exit(1)
    if MODE == "sleep":
        time.sleep(100)
    if MODE == "error":
        call("POST", f"/2018-06-01/runtime/invocation/{{rid}}/error", json.dumps({{"errorMessage": "boom", "errorType": "ValueError"}}), {{"Lambda-Runtime-Function-Error-Type": "Function.ValueError"}})
        continue
    call("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", body)
"#
        );
        let path = self.script("runtime.py", &body);
        path.display().to_string()
    }

    /// Pids written by the script `name` (one per start), as host pids
    /// (0 for a process that is gone; see [`host_pid`]).
    pub(crate) fn pids(&self, name: &str) -> Vec<i32> {
        fs::read_to_string(self.path(&format!("{name}.pids")))
            .unwrap_or_default()
            .lines()
            .filter_map(host_pid)
            .collect()
    }

    /// Runs `lext run ARGS` here and waits (at most 60 s).
    pub(crate) fn lext(&self, args: &[&str]) -> Run {
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lext"))
            .arg("run")
            .args(args)
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lext");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                panic!(
                    "lext run {args:?} hung\n{}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
            elapsed: start.elapsed(),
        }
    }

    /// Asserts that none of the processes the scripts recorded is alive.
    pub(crate) fn assert_no_process_left(&self, names: &[&str]) {
        for name in names {
            for pid in self.pids(name) {
                assert!(
                    !alive(pid),
                    "{name} (pid {pid}) outlived lext run: {}",
                    fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
                );
            }
        }
    }
}

/// The host pid of a process that recorded `PID NAMESPACE` (its pid and
/// `readlink /proc/self/ns/pid`) or just `PID`. Inside the environment's
/// PID namespace a process's own pid is not the host's: the process is
/// found by its namespace and its pid there (the last of `NSpid` in
/// `/proc/<pid>/status`). 0 when no such process is alive any more; `None`
/// for a line that is no pid.
pub(crate) fn host_pid(line: &str) -> Option<i32> {
    let mut words = line.split_whitespace();
    let pid: i32 = words.next()?.parse().ok()?;
    let Some(ns) = words.next() else {
        return Some(pid);
    };
    let own = fs::read_link("/proc/self/ns/pid").ok();
    if own.as_deref() == Some(Path::new(ns)) {
        return Some(pid);
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(host) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fs::read_link(entry.path().join("ns/pid")).ok().as_deref() != Some(Path::new(ns)) {
            continue;
        }
        let inside = fs::read_to_string(entry.path().join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|v| v.split_whitespace().last().map(str::to_owned))
            });
        if inside.as_deref() == Some(&pid.to_string()) {
            return Some(host);
        }
    }
    Some(0)
}

/// Whether `pid` is a live (not zombie) process, with a grace period for
/// the kernel to finish tearing it down.
pub(crate) fn alive(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s,
            Err(_) => return false,
        };
        let state = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next());
        if state == Some(Some('Z')) {
            return false;
        }
        if Instant::now() > deadline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The repository root (where Cargo.toml of the lext package is).
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A program of the test virtualenv (`$LEXT_TEST_VENV/bin`, else the
/// repository's `.venv/bin`); panics with the fix when it is missing.
pub(crate) fn venv_program(name: &str) -> PathBuf {
    let venv = std::env::var_os("LEXT_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-test-deps (it installs the Python peers of \
         scripts/requirements-test.txt into .venv)",
        path.display()
    );
    path
}

/// `lext run --serve 127.0.0.1:0 ...` in the background; returns the child
/// and the Invoke API address it printed.
pub(crate) fn serve(
    scene: &Scene,
    args: &[&str],
) -> (Lext, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(["run", "--serve", "127.0.0.1:0"])
        .args(args)
        .current_dir(scene.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        line.clear();
        assert!(
            Instant::now() < deadline,
            "lext did not print its Invoke API address"
        );
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("lext exited before serving");
        }
        if let Some(rest) = line.split("serving the Invoke API on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let mut stdout = child.stdout.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let _ = reader.read_to_string(&mut s);
        s
    });
    (Lext(child), addr, logs)
}

/// `aws lambda invoke --endpoint-url http://ADDR` from the test venv, with
/// placeholder credentials and no user configuration; add the rest.
pub(crate) fn aws_lambda_invoke(addr: &str) -> Command {
    let mut command = Command::new(venv_program("aws"));
    command
        .args([
            "lambda",
            "invoke",
            "--endpoint-url",
            &format!("http://{addr}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    command
}

/// One HTTP/1.1 request; returns status, headers (lowercase names), body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn interrupt(child: &mut Child) -> std::process::ExitStatus {
    // SIGINT, as Ctrl-C sends it.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "lext did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds workspace packages (test peers) and returns their executables by
/// name. A separate target directory: the outer `cargo test` may hold the
/// lock of the usual one.
pub(crate) fn build_bins(packages: &[&str]) -> std::collections::HashMap<String, PathBuf> {
    build_bins_of(None, packages)
}

/// [`build_bins`] for the test peers on AWS's crates, a workspace of their
/// own (tests/peers/Cargo.toml).
pub(crate) fn build_peer_bins(packages: &[&str]) -> std::collections::HashMap<String, PathBuf> {
    build_bins_of(Some(&repo().join("tests/peers/Cargo.toml")), packages)
}

fn build_bins_of(
    manifest: Option<&Path>,
    packages: &[&str],
) -> std::collections::HashMap<String, PathBuf> {
    let target = nested_target();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo())
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--quiet", "--message-format=json"]);
    if let Some(manifest) = manifest {
        cmd.arg("--manifest-path").arg(manifest);
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(output.status.success(), "cargo build {packages:?} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let exe = m["executable"].as_str()?;
            Some((m["target"]["name"].as_str()?.to_owned(), PathBuf::from(exe)))
        })
        .collect()
}

/// The target directory of the cargo builds the tests run themselves: not
/// the usual one, whose lock the outer `cargo test` may hold, and inside
/// this checkout, so that two checkouts' test runs never share (and
/// overwrite) each other's binaries.
pub(crate) fn nested_target() -> PathBuf {
    repo().join("target").join("lext-nested")
}

/// A free TCP port on 127.0.0.1 (for peers that need a fixed port).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `lext run` child that is stopped when the test ends, even when the
/// test panics first: SIGTERM (a spindown), then SIGKILL if it lingers.
pub(crate) struct Lext(pub Child);

impl std::ops::Deref for Lext {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Lext {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Lext {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let pid = self.0.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
