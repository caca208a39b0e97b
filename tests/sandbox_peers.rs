//! `lext run` with third-party peers installed by scripts/install-test-deps:
//! AWS's Python runtime interface client (`awslambdaric`) as the function
//! runtime, and the AWS CLI (`aws lambda invoke --endpoint-url`) as the
//! caller, and boto3 (installed with moto) as an SDK caller. A missing peer
//! fails the test with the fix; nothing is skipped.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::process::Command;

use sandbox_support::{aws_lambda_invoke, interrupt, serve, venv_program, Scene};

/// A handler module for awslambdaric, and the runtime command that runs it.
fn awslambdaric_runtime(scene: &Scene, handler: &str) -> String {
    std::fs::write(
        scene.path("app.py"),
        r#"import json
def echo(event, context):
    print("handling", json.dumps(event), flush=True)
    return {"echo": event, "function": context.function_name, "requestId": context.aws_request_id,
            "remainingMs": context.get_remaining_time_in_millis()}
def fail(event, context):
    raise ValueError("boom")
"#,
    )
    .unwrap();
    let python = venv_program("python");
    // The runtime's environment is Lambda's (no venv on PATH): call the
    // venv's interpreter by path, from the handler's directory.
    format!(
        "cd '{}' && exec '{}' -m awslambdaric app.{handler}",
        scene.dir.path().display(),
        python.display()
    )
}

#[test]
fn awslambdaric_runtime_with_extension() {
    let s = Scene::new();
    let observer = s.extension("observer", "ok");
    let runtime = awslambdaric_runtime(&s, "echo");
    let r = s.lext(&[
        "--extension",
        &observer.display().to_string(),
        "--function",
        &runtime,
        "--invoke",
        "2",
        "--payload",
        r#"{"n":42}"#,
        "--function-name",
        "py-fn",
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    assert_eq!(r.all("REPORT").len(), 2, "{}", r.dump());
    assert!(
        r.has("handling {\"n\": 42}"),
        "function output captured: {}",
        r.dump()
    );
    let v = r.invoke_json(1, "response");
    assert_eq!(v["echo"]["n"], 42);
    assert_eq!(v["function"], "py-fn");
    let remaining = v["remainingMs"].as_i64().unwrap();
    assert!(
        (1..=3000).contains(&remaining),
        "a real deadline: {remaining}"
    );
    assert!(r.has("[observer] SHUTDOWN spindown"), "{}", r.dump());
    s.assert_no_process_left(&["observer"]);
}

#[test]
fn awslambdaric_function_error() {
    let s = Scene::new();
    let runtime = awslambdaric_runtime(&s, "fail");
    let r = s.lext(&["--function", &runtime, "--invoke", "1"]);
    assert!(!r.output.status.success());
    let v = r.invoke_json(1, "function error");
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "boom");
    // A handled error: no reset, no Status on REPORT.
    assert!(!r.line("REPORT").contains("Status:"), "{}", r.dump());
}

fn aws_invoke(
    addr: &str,
    function: &str,
    payload: &str,
    out: &std::path::Path,
) -> serde_json::Value {
    aws_invoke_with(addr, function, payload, out, &[])
}

/// `aws lambda invoke` with `extra` arguments; returns its JSON output.
fn aws_invoke_with(
    addr: &str,
    function: &str,
    payload: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let output = aws_lambda_invoke(addr)
        .args(["--function-name", function, "--payload", payload])
        .args(extra)
        // awscli v1 sends --payload as given (v2 would need
        // --cli-binary-format raw-in-base64-out).
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "aws lambda invoke failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn aws_cli_invoke_against_serve() {
    let s = Scene::new();
    let observer = s.extension("observer", "ok");
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--extension",
            &observer.display().to_string(),
            "--function-name",
            "cli-fn",
        ],
    );
    let out = s.path("out.json");
    let meta = aws_invoke(&addr, "cli-fn", r#"{"from":"awscli"}"#, &out);
    assert_eq!(meta["StatusCode"], 200, "{meta}");
    assert_eq!(meta["ExecutedVersion"], "$LATEST", "{meta}");
    assert!(meta.get("FunctionError").is_none(), "{meta}");
    // The built-in echo runtime answers with the payload.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        r#"{"from":"awscli"}"#
    );
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert!(logs.contains("REPORT RequestId"), "{logs}");
    s.assert_no_process_left(&["observer"]);

    // A function error reaches the CLI as FunctionError: Unhandled.
    let s = Scene::new();
    let runtime = awslambdaric_runtime(&s, "fail");
    let (mut child, addr, logs) = serve(&s, &["--function", &runtime, "--function-name", "cli-fn"]);
    let out = s.path("out.json");
    let meta = aws_invoke(&addr, "cli-fn", "{}", &out);
    assert_eq!(meta["FunctionError"], "Unhandled", "{meta}");
    let body: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(body["errorType"], "ValueError");
    interrupt(&mut child);
    drop(logs.join());
}

#[test]
fn aws_cli_log_type_tail_prints_the_decoded_tail() {
    let s = Scene::new();
    let observer = s.extension("observer", "ok");
    let (mut child, addr, logs) = serve(&s, &["--extension", &observer.display().to_string()]);
    let out = s.path("out.json");
    let tail = ["--log-type", "Tail"];
    let meta = aws_invoke_with(&addr, "lext-function", "{}", &out, &tail);
    assert_eq!(meta["StatusCode"], 200, "{meta}");
    let encoded = meta["LogResult"].as_str().expect("a LogResult");
    // Decoded by Python's base64, as a user would (`base64 -d`).
    let decoded = Command::new(venv_program("python3"))
        .args([
            "-c",
            "import base64, sys; sys.stdout.write(base64.b64decode(sys.argv[1]).decode())",
        ])
        .arg(encoded)
        .output()
        .unwrap();
    let text = String::from_utf8(decoded.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("START RequestId: "), "{text}");
    let id = lines[0]["START RequestId: ".len()..]
        .split(' ')
        .next()
        .unwrap();
    assert!(
        lines.contains(&format!("[observer] INVOKE {id}").as_str()),
        "{text}"
    );
    assert!(
        lines.contains(&format!("END RequestId: {id}").as_str()),
        "{text}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("REPORT RequestId: {id}\tDuration: ")),
        "{text}"
    );
    // Without it, no LogResult.
    let meta = aws_invoke(&addr, "lext-function", "{}", &out);
    assert!(meta.get("LogResult").is_none(), "{meta}");
    interrupt(&mut child);
    drop(logs.join());
}

#[test]
fn a_tenant_id_for_a_function_without_tenant_isolation_is_refused_as_lambda_refuses_it() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve(&s, &[]);
    let output = aws_lambda_invoke(&addr)
        .args(["--function-name", "lext-function", "--tenant-id", "blue"])
        .arg(s.path("out.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("(InvalidParameterValueException)")
            && stderr.contains("Tenant ID configuration not specified or passed to a function when tenant isolation is not enabled."),
        "{stderr}"
    );
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert!(!logs.contains("START RequestId"), "nothing ran: {logs}");
}

#[test]
fn boto3_invoke_against_serve() {
    let s = Scene::new();
    let (mut child, addr, logs) = serve(&s, &["--function-name", "sdk-fn", "--timeout", "1"]);
    let python = venv_program("python");
    let script = r#"
import boto3, json, sys
c = boto3.client("lambda", endpoint_url="http://" + sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
r = c.invoke(FunctionName="sdk-fn", Payload=json.dumps({"sdk": "boto3"}).encode())
print(json.dumps({"status": r["StatusCode"], "version": r.get("ExecutedVersion"),
                  "error": r.get("FunctionError"), "payload": r["Payload"].read().decode()}))
r = c.invoke(FunctionName="sdk-fn", InvocationType="Event", Payload=b"{}")
print(json.dumps({"status": r["StatusCode"]}))
try:
    c.invoke(FunctionName="nope", Payload=b"{}")
except c.exceptions.ResourceNotFoundException as e:
    print(json.dumps({"notfound": True}))
"#;
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&addr)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"], 200, "{stdout}");
    assert_eq!(lines[0]["version"], "$LATEST", "{stdout}");
    assert!(lines[0]["error"].is_null(), "{stdout}");
    assert_eq!(lines[0]["payload"], r#"{"sdk": "boto3"}"#, "{stdout}");
    assert_eq!(lines[1]["status"], 202, "{stdout}");
    assert_eq!(
        lines[2]["notfound"], true,
        "the SDK maps our 404 to its exception: {stdout}"
    );
    interrupt(&mut child);
    drop(logs.join());
}

#[test]
fn a_runtime_api_proxy_through_aws_lambda_exec_wrapper_with_awslambdaric() {
    let s = Scene::new();
    let bins = sandbox_support::build_bins(&["rust-runtime-api-proxy"]);
    // A layer as the proxy vendors ship one: the extension, and the wrapper
    // script that points the runtime at the proxy's port.
    let layer = s.path("layer");
    std::fs::create_dir_all(layer.join("extensions")).unwrap();
    std::fs::copy(
        &bins["rust-runtime-api-proxy"],
        layer.join("extensions/rust-runtime-api-proxy"),
    )
    .unwrap();
    let port = sandbox_support::free_port();
    let wrapper = layer.join("proxy-wrapper");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexport AWS_LAMBDA_RUNTIME_API=\"127.0.0.1:${LEXT_PROXY_PORT}\"\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let runtime = awslambdaric_runtime(&s, "echo");
    let r = s.lext(&[
        "--layer",
        layer.to_str().unwrap(),
        "--env",
        "AWS_LAMBDA_EXEC_WRAPPER=/opt/proxy-wrapper",
        "--env",
        &format!("LEXT_PROXY_PORT={port}"),
        "--function",
        &runtime,
        "--invoke",
        "2",
        "--payload",
        r#"{"via":"proxy"}"#,
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    // Both invokes answered, through the proxy.
    for n in [1, 2] {
        let answer = r.invoke_json(n, "response");
        assert_eq!(
            answer["echo"],
            serde_json::json!({"via": "proxy"}),
            "{answer}"
        );
    }
    let prefix = "[rust-runtime-api-proxy] ";
    let nexts = r
        .lines()
        .into_iter()
        .filter(|l| {
            l.contains(&format!(
                "{prefix}GET /2018-06-01/runtime/invocation/next -> 200 (request "
            ))
        })
        .count();
    assert_eq!(nexts, 2, "{}", r.dump());
    let responses = r
        .lines()
        .into_iter()
        .filter(|l| l.contains(prefix) && l.contains("/response -> 202"))
        .count();
    assert_eq!(responses, 2, "{}", r.dump());
    assert!(
        r.has(&format!("{prefix}SHUTDOWN (spindown)")),
        "{}",
        r.dump()
    );
}
