//! `lext run` attacked as an unlucky user or a hostile layer would: each
//! test is a fault found that way, and asserts what the user sees (the exit
//! code, the line printed, the answer). Real processes, sockets on
//! 127.0.0.1, every wait bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sandbox_support;

use std::os::unix::fs::PermissionsExt as _;

use sandbox_support::Scene;

/// An extension (Python) that registers, and on its first INVOKE waits
/// long enough for the echo runtime's response to reach the caller, then
/// crashes: the invoke fails after its response was sent.
const LATE_CRASH: &str = r#"#!/usr/bin/env python3
import http.client, json, os, sys, time
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return {k.lower(): v for k, v in r.getheaders()}, r.read()
h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
            {"Lambda-Extension-Name": os.path.basename(sys.argv[0])})
ext = {"Lambda-Extension-Identifier": h["lambda-extension-identifier"]}
while True:
    _, body = call("GET", "/2020-01-01/extension/event/next", headers=ext)
    if json.loads(body)["eventType"] == "SHUTDOWN":
        sys.exit(0)
    time.sleep(0.5)
    os._exit(4)
"#;

#[test]
fn an_invoke_that_fails_after_its_response_fails_the_run() {
    let s = Scene::new();
    let ext = s.script("late-crash", LATE_CRASH);
    let r = s.lext(&["--extension", ext.to_str().unwrap(), "--invoke", "1"]);
    // The caller got the echo.
    assert!(
        r.stderr.contains("lext: invoke 1: response {}"),
        "{}",
        r.dump()
    );
    // REPORT says the invoke failed, and so does the exit code.
    assert!(
        r.line("REPORT")
            .ends_with("Status: error\tError Type: Extension.Crash"),
        "{}",
        r.dump()
    );
    assert_eq!(r.output.status.code(), Some(1), "{}", r.dump());
}

#[test]
fn a_layer_file_name_cannot_forge_a_platform_line() {
    let s = Scene::new();
    let layer = s.path("layer");
    std::fs::create_dir_all(layer.join("extensions")).unwrap();
    // A name with a newline and a terminal escape; it is not executable,
    // so it fails to launch and only its EXTENSION line is printed.
    let name = "evil\nEXTENSION\tName: forged\tState: Ready\tEvents: [INVOKE]\u{1b}[31m";
    let path = layer.join("extensions").join(name);
    std::fs::write(&path, "not a program").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = s.lext(&["--layer", layer.to_str().unwrap(), "--invoke", "1"]);
    // One EXTENSION line per Init (the failed one, and its re-run inside
    // the invoke), each with the name escaped; no forged line.
    let extension_lines = r.all("EXTENSION");
    assert_eq!(extension_lines.len(), 2, "{}", r.dump());
    for line in extension_lines {
        assert!(
            line.starts_with(
                "EXTENSION\tName: evil\\nEXTENSION\\tName: forged\\tState: Ready\\tEvents: [INVOKE]\\u{1b}[31m\tState: LaunchError"
            ),
            "{}",
            r.dump()
        );
    }
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("EXTENSION")),
        "{}",
        r.dump()
    );
    assert!(!r.stdout.contains('\u{1b}'), "{}", r.dump());
    assert!(!r.stderr.contains('\u{1b}'), "{}", r.dump());
}

#[test]
fn lexts_own_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let s = Scene::new();
    // -v: lext's own info lines, through the tracing subscriber.
    let r = s.lext(&["--invoke", "1", "-v", "--function", "exit 3"]);
    assert!(r.stderr.contains("INFO"), "{}", r.dump());
    assert!(!r.stderr.contains('\u{1b}'), "{:?}", r.stderr);
}

#[test]
fn a_runtime_that_exits_0_is_reported_as_rapid_reports_it() {
    let s = Scene::new();
    let r = s.lext(&["--invoke", "1", "--function", "exit 0"]);
    assert!(
        r.has("Runtime exited without providing a reason"),
        "{}",
        r.dump()
    );
    assert!(!r.has("exit status 0"), "{}", r.dump());
    assert_eq!(r.output.status.code(), Some(1), "{}", r.dump());
}

#[test]
fn the_invoke_apis_404_names_the_function_asked_for() {
    let s = Scene::new();
    let (mut lext, addr, _stderr) = sandbox_support::serve(&s, &["--function-name", "mine"]);
    for (path, arn) in [
        (
            "/2015-03-31/functions/other/invocations",
            "arn:aws:lambda:us-east-1:123456789012:function:other",
        ),
        // Only $LATEST exists locally: version 2 is not found, as in Lambda.
        (
            "/2015-03-31/functions/mine:2/invocations",
            "arn:aws:lambda:us-east-1:123456789012:function:mine:2",
        ),
        (
            "/2015-03-31/functions/mine/invocations?Qualifier=7",
            "arn:aws:lambda:us-east-1:123456789012:function:mine:7",
        ),
    ] {
        let (status, headers, body) = sandbox_support::http(&addr, "POST", path, &[], b"{}");
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(
            sandbox_support::header(&headers, "x-amzn-errortype"),
            Some("ResourceNotFoundException")
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["message"],
            format!("Function not found: {arn}"),
            "{path}"
        );
    }
    let (status, _, body) = sandbox_support::http(
        &addr,
        "POST",
        "/2015-03-31/functions/mine:$LATEST/invocations",
        &[],
        b"{}",
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    sandbox_support::interrupt(&mut lext);
}

#[test]
fn a_sigkill_at_the_shutdown_deadline_is_reported() {
    let s = Scene::new();
    let stubborn = s.extension("stubborn", "ignore-shutdown");
    let r = s.lext(&["--extension", stubborn.to_str().unwrap(), "--invoke", "1"]);
    // Without -v: a warning names the process, its budget and the signal.
    assert!(
        r.stderr.contains(
            "shutdown: extension stubborn did not exit within its 2000 ms; killing it (SIGKILL)"
        ),
        "{}",
        r.dump()
    );
    s.assert_no_process_left(&["stubborn"]);
}

#[test]
fn two_extensions_that_fail_to_launch_do_not_stall_the_reset() {
    let s = Scene::new();
    let layer = s.path("layer");
    std::fs::create_dir_all(layer.join("extensions")).unwrap();
    for name in ["a", "b"] {
        let path = layer.join("extensions").join(name);
        std::fs::write(&path, "not a program").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let r = s.lext(&["--layer", layer.to_str().unwrap(), "--invoke", "1"]);
    assert!(r.has("Error Type: Extension.LaunchError"), "{}", r.dump());
    // Two resets (the Init and its re-run), neither waiting for processes
    // that never started: it used to take over 8 s and end with "2
    // process(es) did not exit after SIGKILL".
    assert!(
        !r.stderr.contains("did not exit after SIGKILL"),
        "{}",
        r.dump()
    );
    assert!(
        r.elapsed < std::time::Duration::from_secs(3),
        "{:?}\n{}",
        r.elapsed,
        r.dump()
    );
    // Each is a LaunchError, in both Inits (the second used to be shown as
    // Started: its failure arrived after the first had failed Init).
    for name in ["a", "b"] {
        let line = format!("EXTENSION\tName: {name}\tState: LaunchError\tEvents: []");
        assert_eq!(r.all("EXTENSION").len(), 4, "{}", r.dump());
        assert_eq!(
            r.lines().iter().filter(|l| l.contains(&line)).count(),
            2,
            "{name}\n{}",
            r.dump()
        );
    }
}

#[test]
fn a_layer_for_another_architecture_is_one_launch_error_per_extension() {
    let s = Scene::new();
    let layer = s.path("layer");
    std::fs::create_dir_all(layer.join("extensions")).unwrap();
    // An executable ELF header for a machine this host cannot run (SPARC
    // v9: neither x86_64 nor arm64), as an arm64 layer is on x86_64.
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x2b\0".to_vec();
    elf.resize(256, 0);
    for name in ["agent", "collector"] {
        let path = layer.join("extensions").join(name);
        std::fs::write(&path, &elf).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let r = s.lext(&["--layer", layer.to_str().unwrap(), "--invoke", "1"]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.dump());
    for name in ["agent", "collector"] {
        let line = format!(
            "EXTENSION\tName: {name}\tState: LaunchError\tEvents: []\tError Type: UnknownError"
        );
        assert!(r.has(&line), "{name}\n{}", r.dump());
    }
    assert!(!r.has("State: Started"), "{}", r.dump());
}

#[test]
fn telemetry_out_holds_what_a_telemetry_api_subscriber_gets() {
    let s = Scene::new();
    let out = s.path("telemetry.jsonl");
    let r = s.lext(&["--invoke", "1", "--telemetry-out", out.to_str().unwrap()]);
    assert!(r.output.status.success(), "{}", r.dump());
    let types: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert!(
        types.iter().any(|t| t == "\"platform.report\""),
        "{types:?}"
    );
    // platform.end is the Logs API's alone.
    assert!(!types.iter().any(|t| t == "\"platform.end\""), "{types:?}");
}

#[test]
fn payloads_the_invoke_api_refuses_as_lambda_does() {
    let s = Scene::new();
    let (mut lext, addr, _logs) = sandbox_support::serve(&s, &[]);
    let path = "/2015-03-31/functions/function/invocations";
    // Not JSON, or binary: the service parses every payload as JSON.
    for body in [&b"not json"[..], &[0xff, 0xfe, 0x00][..]] {
        let (status, headers, _) = sandbox_support::http(&addr, "POST", path, &[], body);
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(
            sandbox_support::header(&headers, "x-amzn-errortype"),
            Some("InvalidRequestContentException")
        );
    }
    // Asynchronous invokes take 1 MB, not 6.
    let event = [("X-Amz-Invocation-Type", "Event")];
    let mut big = b"\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    big.push(b'"');
    let (status, headers, body) = sandbox_support::http(&addr, "POST", path, &event, &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        sandbox_support::header(&headers, "x-amzn-errortype"),
        Some("RequestEntityTooLargeException")
    );
    assert!(body.contains("1048576 bytes"), "{body}");
    let (status, _, _) = sandbox_support::http(&addr, "POST", path, &event, b"{}");
    assert_eq!(status, 202);
    // An empty payload is allowed.
    let (status, _, _) = sandbox_support::http(&addr, "POST", path, &[], b"");
    assert_eq!(status, 200);
    sandbox_support::interrupt(&mut lext);
}

#[test]
fn a_payload_file_over_6_mb_is_refused_before_anything_starts() {
    let s = Scene::new();
    let file = s.path("big.json");
    let mut big = b"\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 6 * 1024 * 1024));
    big.push(b'"');
    std::fs::write(&file, &big).unwrap();
    let arg = format!("@{}", file.display());
    let r = s.lext(&["--invoke", "1", "--payload", &arg]);
    r.assert_failed_with(
        "--payload is 6291458 bytes; Lambda refuses synchronous invokes over 6291456",
    );
    assert!(!r.has("START"), "{}", r.dump());
}

#[test]
fn idle_connections_cannot_starve_lext_of_descriptors() {
    let s = Scene::new();
    let api = sandbox_support::free_port();
    // lext under a 256-descriptor limit, set on the child alone.
    let command = format!(
        "ulimit -n 256 && exec {} run --serve 127.0.0.1:0 --api 127.0.0.1:{api}",
        env!("CARGO_BIN_EXE_lext")
    );
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", &command])
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "lext exited before serving"
        );
        if let Some(rest) = line.split("serving the Invoke API on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let invoke = || {
        sandbox_support::http(
            &addr,
            "POST",
            "/2015-03-31/functions/function/invocations",
            &[],
            b"{}",
        )
    };
    // Init is over and the runtime connected once the first invoke answers.
    assert_eq!(invoke().0, 200);
    // 300 connections to the Runtime API that never send a request. Past
    // lext's limit and the listen backlog the kernel stops completing
    // handshakes: the first connect that times out ends the flood. (2.5 s:
    // while lext has yet to accept what its slots allow, a full backlog
    // drops the SYN, and the client sends it again only after 1 s.)
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], api));
    let wait = std::time::Duration::from_millis(2500);
    let idle: Vec<_> = (0..300)
        .map_while(|_| std::net::TcpStream::connect_timeout(&target, wait).ok())
        .collect();
    // More than the 256 descriptors lext may have would have been needed
    // to hold them all, had it accepted them.
    assert!(idle.len() >= 150, "only {} connections opened", idle.len());
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Invokes still work: the idle ones hold their listener's slots, not
    // every descriptor lext has.
    for _ in 0..3 {
        let (status, _, body) = invoke();
        assert_eq!((status, body.as_str()), (200, "{}"));
    }
    drop(idle);
    sandbox_support::interrupt(&mut child);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    let warnings = rest.matches("accept failed").count();
    assert!(warnings <= 2, "{warnings} accept warnings:\n{rest}");
}

/// `lext run ARGS` serving, with its temporary files in `tmp`; returns the
/// child once its Init is over (an invoke was answered).
fn serve_in(s: &Scene, tmp: &std::path::Path, args: &[&str]) -> std::process::Child {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(["run", "--serve", "127.0.0.1:0"])
        .args(args)
        .env("TMPDIR", tmp)
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "lext exited before serving"
        );
        if let Some(rest) = line.split("serving the Invoke API on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            let path = "/2015-03-31/functions/function/invocations";
            assert_eq!(
                sandbox_support::http(&addr, "POST", path, &[], b"{}").0,
                200
            );
            break;
        }
    }
    // Keep reading, so that lext never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

/// The `lext-run-*` directories in `tmp`.
fn state_dirs(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lext-run-"))
        .collect()
}

/// Sends `signal` (`kill -SIG`) to `child`, and waits (at most 20 s) for it
/// to exit.
fn signal_and_wait(child: &mut std::process::Child, signals: &[&str]) -> std::process::ExitStatus {
    for sig in signals {
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "lext did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn no_temporary_directory_outlives_lext_whatever_stops_it() {
    let s = Scene::new();
    let tmp = tempfile::tempdir().unwrap();
    let stubborn = s.extension("stubborn", "ignore-shutdown");
    let layer_args = ["--extension", stubborn.to_str().unwrap()];
    // A second Ctrl-C, during the 2 s the stubborn extension is given.
    let mut child = serve_in(&s, tmp.path(), &layer_args);
    assert_eq!(state_dirs(tmp.path()).len(), 1);
    let status = signal_and_wait(&mut child, &["INT", "INT"]);
    assert_eq!(status.code(), Some(130));
    assert_eq!(state_dirs(tmp.path()), Vec::<String>::new());
    s.assert_no_process_left(&["stubborn"]);
    // SIGHUP and SIGQUIT spin the environment down like SIGTERM.
    for sig in ["HUP", "QUIT"] {
        let mut child = serve_in(&s, tmp.path(), &[]);
        let status = signal_and_wait(&mut child, &[sig]);
        assert!(status.success(), "{sig}: {status:?}");
        assert_eq!(state_dirs(tmp.path()), Vec::<String>::new(), "{sig}");
    }
}

#[test]
fn what_a_killed_lext_left_behind_is_removed_and_nothing_else() {
    let s = Scene::new();
    let tmp = tempfile::tempdir().unwrap();
    let leftover = tmp.path().join("lext-run-killed");
    std::fs::create_dir_all(leftover.join("opt")).unwrap();
    // The marker of an owner that is gone (no pid is that high).
    std::fs::write(leftover.join(".lext-sandbox-owner"), "4194305\n").unwrap();
    let foreign = tmp.path().join("lext-run-not-ours");
    std::fs::create_dir_all(&foreign).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lext"))
        .args(["run", "--invoke", "1"])
        .env("TMPDIR", tmp.path())
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(!leftover.exists());
    assert!(
        foreign.exists(),
        "a directory without lext's marker is not lext's"
    );
}

#[test]
fn lext_runs_errors_name_each_cause_once() {
    let s = Scene::new();
    let missing = s.path("no-such-layer.zip");
    let r = s.lext(&["--layer", missing.to_str().unwrap()]);
    r.assert_failed_with(&format!(
        "error: --layer {}: No such file or directory",
        missing.display()
    ));
    assert_eq!(
        r.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        r.dump()
    );
    let r = s.lext(&["--env", "AWS_REGION=x"]);
    assert_eq!(r.stderr.matches("Reserved keys").count(), 1, "{}", r.dump());
}

/// An extension (Python) that registers and, on each INVOKE, prints
/// `FLOOD_LINES` lines of 1,000 bytes before it asks for the next event.
const FLOOD: &str = r#"#!/usr/bin/env python3
import http.client, json, os, sys
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
LINES = int(os.environ["FLOOD_LINES"])
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return {k.lower(): v for k, v in r.getheaders()}, r.read()
h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
            {"Lambda-Extension-Name": os.path.basename(sys.argv[0])})
ext = {"Lambda-Extension-Identifier": h["lambda-extension-identifier"]}
chunk = ("x" * 999 + "\n") * 1000
while True:
    _, body = call("GET", "/2020-01-01/extension/event/next", headers=ext)
    if json.loads(body)["eventType"] == "SHUTDOWN":
        sys.exit(0)
    for _ in range(LINES // 1000):
        sys.stdout.write(chunk)
    sys.stdout.flush()
"#;

/// `lext run ARGS --env FLOOD_LINES=N` with standard output a pipe that
/// is never read; returns the exit status, stderr and lext's peak RSS (kB),
/// read from `/proc` until it exits (at most 90 s).
fn run_unread(
    s: &Scene,
    flood_lines: u32,
    args: &[&str],
) -> (std::process::ExitStatus, String, u64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lext"))
        .arg("run")
        .args(args)
        .args(["--env", &format!("FLOOD_LINES={flood_lines}")])
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Held open and never read.
    let _stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status_path = format!("/proc/{}/status", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut peak_kb = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lext run {args:?} hung:\n{}", errors.join().unwrap());
        }
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            {
                peak_kb = kb;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, errors.join().unwrap(), peak_kb)
}

#[test]
fn output_nobody_reads_is_dropped_and_counted_not_held() {
    let s = Scene::new();
    let flood = s.script("flood", FLOOD);
    // 300 MB of extension output, and a standard output nobody reads.
    let (status, stderr, peak_kb) = run_unread(
        &s,
        100_000,
        &["--extension", flood.to_str().unwrap(), "--invoke", "3"],
    );
    assert!(status.success(), "{status:?}\n{stderr}");
    // lext's memory stays bounded: 16 MiB of queued lines and its own.
    assert!(peak_kb < 100 * 1024, "peak RSS {peak_kb} kB\n{stderr}");
    assert!(
        stderr.contains("log lines (")
            && stderr.contains("were dropped: standard output did not keep up"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("is not keeping up").count(), 1, "{stderr}");
}

/// Opens `fifo` for reading without blocking, and holds it unread.
fn stalled_reader(fifo: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_nonblock())
        .open(fifo)
        .unwrap()
}

/// `O_NONBLOCK` on Linux.
fn libc_nonblock() -> i32 {
    0o4000
}

#[test]
fn a_telemetry_out_fifo_nobody_reads_never_holds_lext_up() {
    let s = Scene::new();
    let fifo = s.path("telemetry.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // With no reader at all, lext refuses at once instead of waiting.
    let r = s.lext(&["--telemetry-out", fifo.to_str().unwrap()]);
    r.assert_failed_with("it is a FIFO with no reader: start the reader first");
    // A reader that stopped: 60 MB of records for a pipe that takes 64 KiB.
    let _reader = stalled_reader(&fifo);
    let flood = s.script("flood", FLOOD);
    let out = fifo.to_str().unwrap();
    let (status, stderr, _) = run_unread(
        &s,
        20_000,
        &[
            "--extension",
            flood.to_str().unwrap(),
            "--invoke",
            "3",
            "--telemetry-out",
            out,
        ],
    );
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("telemetry records (")
            && stderr.contains("were dropped: the telemetry output file did not keep up"),
        "{stderr}"
    );
    // Ctrl-C still works while the FIFO is stuck.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lext"))
        .args([
            "run",
            "--serve",
            "127.0.0.1:0",
            "--extension",
            flood.to_str().unwrap(),
        ])
        .args(["--telemetry-out", out, "--env", "FLOOD_LINES=20000"])
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = signal_and_wait(&mut child, &["INT"]);
    assert!(status.success(), "{status:?}");
}

/// A function runtime (Python) that answers the payload `"fast"` at once
/// and sleeps through any other.
const SLOW_RUNTIME: &str = r#"#!/usr/bin/env python3
import http.client, os, time
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
while True:
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    body = r.read()
    if body != b'"fast"':
        time.sleep(100)
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body)
    c.getresponse().read()
"#;

#[test]
fn a_full_invoke_queue_answers_429_and_dropped_event_invokes_are_named() {
    let s = Scene::new();
    let runtime = s.script("slow-runtime", SLOW_RUNTIME);
    let (mut child, addr, logs) = sandbox_support::serve(
        &s,
        &[
            "--function",
            runtime.to_str().unwrap(),
            "--max-queued-invokes",
            "3",
        ],
    );
    let path = "/2015-03-31/functions/function/invocations";
    // Once this is answered, Init is over.
    let (status, _, _) = sandbox_support::http(&addr, "POST", path, &[], b"\"fast\"");
    assert_eq!(status, 200);
    let event = [("X-Amz-Invocation-Type", "Event")];
    // The first runs (and sleeps), three wait; the next is throttled. (The
    // first may still be waiting when the second arrives: then only three
    // get in.)
    let mut accepted = Vec::new();
    let throttled = loop {
        assert!(accepted.len() <= 4, "no 429 after {accepted:?}");
        let (status, headers, body) = sandbox_support::http(&addr, "POST", path, &event, b"{}");
        if status != 202 {
            break (status, headers, body);
        }
        let id = sandbox_support::header(&headers, "x-amzn-requestid");
        accepted.push(id.expect("a 202 names its request id").to_owned());
    };
    assert!(accepted.len() >= 3, "{accepted:?}");
    let (status, headers, body) = throttled;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        sandbox_support::header(&headers, "x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    assert_eq!(sandbox_support::header(&headers, "retry-after"), Some("1"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["Reason"], "ConcurrentInvocationLimitExceeded");
    assert_eq!(body["message"], "Rate Exceeded.");
    // Ctrl-C: a running invoke ends (at its 3 s timeout); each accepted
    // invoke either ran (its START line) or is reported, never both.
    assert!(sandbox_support::interrupt(&mut child).success());
    let logs = logs.join().unwrap();
    let mut ran = 0;
    for id in &accepted {
        let started = logs.contains(&format!("START RequestId: {id} "));
        let dropped = logs.contains(&format!(
            "Event invoke {id} was dropped: the environment shut down before it ran"
        ));
        assert!(
            started != dropped,
            "{id} ran: {started}, dropped: {dropped}\n{logs}"
        );
        ran += usize::from(started);
    }
    assert_eq!(ran, 1, "only the first ran:\n{logs}");
}

#[test]
fn queued_payloads_are_bounded_in_bytes() {
    let s = Scene::new();
    let runtime = s.script("slow-runtime", SLOW_RUNTIME);
    let (mut child, addr, logs) =
        sandbox_support::serve(&s, &["--function", runtime.to_str().unwrap()]);
    let path = "/2015-03-31/functions/function/invocations";
    let event = [("X-Amz-Invocation-Type", "Event")];
    // 1 MB Event payloads (the largest Lambda takes) until the default
    // bound, 64 MiB, answers 429.
    let payload = format!("\"{}\"", "x".repeat(1_000_000 - 2));
    let mut accepted = 0;
    loop {
        assert!(accepted <= 80, "no 429 after {accepted} MB");
        let (status, _, body) =
            sandbox_support::http(&addr, "POST", path, &event, payload.as_bytes());
        if status == 429 {
            break;
        }
        assert_eq!(status, 202, "{body}");
        accepted += 1;
    }
    assert!(accepted >= 60, "{accepted}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    assert!(peak_kb < 128 * 1024, "peak RSS {peak_kb} kB");
    assert!(sandbox_support::interrupt(&mut child).success());
    let logs = logs.join().unwrap();
    assert!(
        logs.matches("was dropped: the environment shut down before it ran")
            .count()
            >= 59
    );
}

/// A Telemetry API subscriber (Python) with a 1 s `timeoutMs`. `MODE` is
/// `exit` (on SHUTDOWN it exits at once, as AWS's Go telemetry sample
/// does, and it is slow to answer a batch) or `wait` (it waits for the last `platform.report`, then says
/// goodbye and exits).
fn subscriber(s: &Scene, name: &str, mode: &str) -> std::path::PathBuf {
    s.script(
        name,
        &format!(
            r#"#!/usr/bin/env python3
import http.client, http.server, json, os, sys, threading, time
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
NAME = os.path.basename(sys.argv[0])
reports = set()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if "{mode}" == "exit":
            # Slow to handle a batch: the one sent with SHUTDOWN is never
            # answered (without this, it sometimes wins the race).
            time.sleep(0.3)
        for e in json.loads(body):
            if e["type"] == "platform.report":
                reports.add(e["record"]["requestId"])
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("sandbox.localdomain", 0), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request(method, path, body=body, headers=headers or {{}})
    r = c.getresponse()
    return {{k.lower(): v for k, v in r.getheaders()}}, r.read()
h, _ = call("POST", "/2020-01-01/extension/register", json.dumps({{"events": ["INVOKE", "SHUTDOWN"]}}), {{"Lambda-Extension-Name": NAME}})
ext = {{"Lambda-Extension-Identifier": h["lambda-extension-identifier"]}}
sub = {{"schemaVersion": "2022-12-13", "types": ["platform", "function", "extension"],
       "buffering": {{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 1000}},
       "destination": {{"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{{server.server_address[1]}}"}}}}
call("PUT", "/2022-07-01/telemetry", json.dumps(sub), ext)
last = None
while True:
    _, body = call("GET", "/2020-01-01/extension/event/next", headers=ext)
    event = json.loads(body)
    if event["eventType"] == "INVOKE":
        last = event["requestId"]
        continue
    if "{mode}" == "wait":
        while last not in reports and time.time() * 1000 < event["deadlineMs"] - 100:
            time.sleep(0.005)
        print(f"[{{NAME}}] got the last report: {{last in reports}}", flush=True)
        print(f"[{{NAME}}] goodbye", flush=True)
        time.sleep(0.05)
    os._exit(0)
"#
        ),
    )
}

#[test]
fn an_extension_that_exits_before_its_last_batch_is_told_in_one_line() {
    let s = Scene::new();
    let hasty = subscriber(&s, "hasty", "exit");
    let patient = subscriber(&s, "patient", "wait");
    let r = s.lext(&[
        "--extension",
        hasty.to_str().unwrap(),
        "--extension",
        patient.to_str().unwrap(),
        "--invoke",
        "3",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    // The patient one got its last platform.report (the on-demand order:
    // after SHUTDOWN), and what it wrote after SHUTDOWN is not a warning.
    assert!(r.has("[patient] got the last report: True"), "{}", r.dump());
    // The hasty one: one line, naming it, the count, and what to do.
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.dump());
    let line = warnings[0];
    let tail = line.split("extension hasty exited ").nth(1).expect(line);
    let (ms, rest) = tail.split_once(" ms after SHUTDOWN with ").expect(line);
    assert!(ms.parse::<u64>().is_ok(), "{line}");
    let (count, rest) = rest.split_once(' ').expect(line);
    assert!(count.parse::<u64>().unwrap() > 0, "{line}");
    assert_eq!(
        rest,
        "telemetry records undelivered (the final platform.report arrives after SHUTDOWN; \
         wait for it before exiting)"
    );
}

/// A function runtime (Python) that answers every invoke with a 64 MiB
/// JSON string, and prints the status it got back.
const HUGE_RESPONSE: &str = r#"#!/usr/bin/env python3
import http.client, os
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
body = b'"' + b"x" * (64 * 1024 * 1024) + b'"'
while True:
    c = http.client.HTTPConnection(HOST, int(PORT))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body)
    print("runtime got", c.getresponse().status, flush=True)
"#;

#[test]
fn an_oversized_response_has_one_error_type_for_caller_and_report() {
    let s = Scene::new();
    let runtime = s.script("huge", HUGE_RESPONSE);
    // Memory for the runtime's 64 MiB body (and its copies) to be made.
    let r = s.lext(&[
        "--function",
        runtime.to_str().unwrap(),
        "--memory",
        "1024",
        "--invoke",
        "2",
    ]);
    let caller = "Function.ResponseSizeTooLarge: Response payload size exceeded maximum allowed \
                  payload size (6291556 bytes).";
    assert!(
        r.stderr.contains(&format!("lext: invoke 2: {caller}")),
        "{}",
        r.dump()
    );
    // The runtime got its 413 (not a broken pipe) and served the second
    // invoke; both REPORTs name the caller's error type.
    assert_eq!(
        r.stdout.matches("runtime got 413").count(),
        2,
        "{}",
        r.dump()
    );
    let reports = r.all("REPORT");
    assert_eq!(reports.len(), 2, "{}", r.dump());
    for report in reports {
        assert!(
            report.ends_with("Status: error\tError Type: Function.ResponseSizeTooLarge"),
            "{report}"
        );
    }
}
