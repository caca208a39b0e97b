//! A function of several environments (`lext run --concurrency`,
//! `--idle-timeout`, `--tenant-isolation`), with real processes: the
//! function is AWS's `lambda_runtime` crate (tests/peers), which answers
//! with a random id of its process (pids repeat: each environment has a PID
//! namespace), how many invokes that process served and the tenant its
//! `Context` read; the extensions are a Python one that logs its events and
//! the SDK's telemetry example.
//!
//! Timings are asserted only as bounds that tell serial from parallel runs
//! (a 2 s handler, three at once), never as performance.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use sandbox_support::{
    aws_lambda_invoke, build_bins, build_peer_bins, header, http, interrupt, serve, Scene,
};

const INVOKE: &str = "/2015-03-31/functions/lext-function/invocations";

/// The peer function on `lambda_runtime`.
fn peer_function() -> String {
    build_peer_bins(&["lext-peer-function"])["lext-peer-function"]
        .display()
        .to_string()
}

/// One synchronous invoke; the answer's JSON.
fn invoke(addr: &str, payload: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (status, _, body) = http(addr, "POST", INVOKE, headers, payload.as_bytes());
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `n` invokes at once; each answer with how long it took.
fn invoke_at_once(addr: &str, payload: &str, n: usize) -> Vec<(serde_json::Value, Duration)> {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let addr = addr.to_owned();
            let payload = payload.to_owned();
            std::thread::spawn(move || {
                let start = Instant::now();
                let answer = invoke(&addr, &payload, &[]);
                (answer, start.elapsed())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The environment label of a console line (`... [env-2] text`), and the
/// text after it.
fn tagged(line: &str) -> Option<(&str, &str)> {
    let rest = line.split_once(" [env-")?.1;
    let (n, text) = rest.split_once("] ")?;
    Some((n, text))
}

/// Request ids by the environment whose START line names them.
fn starts_by_environment(logs: &str) -> HashMap<String, BTreeSet<String>> {
    let mut by_env: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (env, text) in logs.lines().filter_map(tagged) {
        if let Some(rest) = text.strip_prefix("START RequestId: ") {
            let id = rest.split_whitespace().next().unwrap().to_owned();
            by_env.entry(env.to_owned()).or_default().insert(id);
        }
    }
    by_env
}

#[test]
fn concurrent_invokes_get_environments_of_their_own_and_the_rest_wait() {
    let function = peer_function();
    let telemetry = build_bins(&["rust-telemetry-extension"])["rust-telemetry-extension"].clone();
    let s = Scene::new();
    let ext = s.extension("observer", "ok");
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--concurrency",
            "3",
            "--function",
            &function,
            "--extension",
            &ext.display().to_string(),
            "--extension",
            &telemetry.display().to_string(),
        ],
    );

    // Three at once: three environments, so three processes, each on its
    // first invoke, and all done in about the time of one (2 s; one after
    // the other would take 6 s).
    let start = Instant::now();
    let first = invoke_at_once(&addr, r#"{"sleep_ms":2000}"#, 3);
    let elapsed = start.elapsed();
    let pids: BTreeSet<String> = first
        .iter()
        .map(|(a, _)| a["instance"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pids.len(), 3, "{first:?}");
    assert!(first.iter().all(|(a, _)| a["served"] == 1), "{first:?}");
    // Each has a /tmp of its own: it sees the file it left, not those the
    // other two left meanwhile (each listed its /tmp after its 2 s).
    for (answer, _) in &first {
        let own = format!("served-by-{}", answer["instance"].as_str().unwrap());
        assert_eq!(answer["tmp"], serde_json::json!([own]), "{first:?}");
    }
    assert!(
        elapsed < Duration::from_millis(5_000),
        "three 2 s invokes took {elapsed:?}: they ran one after the other"
    );

    // Four at once: three reuse the warm environments, the fourth waits
    // for one of them.
    let second = invoke_at_once(&addr, r#"{"sleep_ms":2000}"#, 4);
    let again: BTreeSet<String> = second
        .iter()
        .map(|(a, _)| a["instance"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        again, pids,
        "only the three environments served: {second:?}"
    );
    let slowest = second.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        slowest >= Duration::from_millis(3_900),
        "the fourth did not wait for a free environment: {second:?}"
    );
    let mut served: Vec<u64> = second
        .iter()
        .map(|(a, _)| a["served"].as_u64().unwrap())
        .collect();
    served.sort_unstable();
    assert_eq!(served, [2, 2, 2, 3], "{second:?}");

    interrupt(&mut child);
    let logs = logs.join().unwrap();
    // Each environment ran its own Init of every extension, and its first
    // invoke says so.
    let extension_lines: BTreeSet<&str> = logs
        .lines()
        .filter_map(tagged)
        .filter(|(_, t)| t.starts_with("EXTENSION\tName: observer"))
        .map(|(env, _)| env)
        .collect();
    assert_eq!(extension_lines.len(), 3, "{logs}");
    let cold = logs
        .lines()
        .filter(|l| l.contains("REPORT RequestId") && l.contains("Init Duration"))
        .count();
    assert_eq!(cold, 3, "{logs}");
    // Ctrl-C: every environment's extensions got their own SHUTDOWN.
    let shutdowns: BTreeSet<&str> = logs
        .lines()
        .filter_map(tagged)
        .filter(|(_, t)| t.starts_with("[observer] SHUTDOWN spindown"))
        .map(|(env, _)| env)
        .collect();
    assert_eq!(shutdowns, extension_lines, "{logs}");

    // The telemetry extension of each environment received the records of
    // its own environment's invokes, and of no other.
    let starts = starts_by_environment(&logs);
    assert_eq!(
        starts.values().map(BTreeSet::len).sum::<usize>(),
        7,
        "{logs}"
    );
    for (env, text) in logs.lines().filter_map(tagged) {
        let Some(rest) =
            text.strip_prefix("[rust-telemetry-extension] telemetry: platform.start requestId=")
        else {
            continue;
        };
        let id = rest.split_whitespace().next().unwrap();
        assert!(
            starts[env].contains(id),
            "env-{env}'s telemetry extension got the start of {id}, not its own:\n{logs}"
        );
    }
    let seen = logs
        .lines()
        .filter(|l| l.contains("telemetry: platform.start requestId="))
        .count();
    assert_eq!(
        seen, 7,
        "every start reached its environment's subscriber: {logs}"
    );
}

#[test]
fn past_the_queue_bound_invokes_are_throttled_and_reserved_concurrency_0_throttles_all() {
    let function = peer_function();
    let s = Scene::new();
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--concurrency",
            "2",
            "--max-queued-invokes",
            "2",
            "--function",
            &function,
        ],
    );
    // Event invokes answer at once: two run (one per environment), two
    // wait, and the rest are over the bound.
    let event = [("X-Amz-Invocation-Type", "Event")];
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, headers, body) = http(&addr, "POST", INVOKE, &event, br#"{"sleep_ms":2000}"#);
        if status == 429 {
            assert_eq!(
                header(&headers, "x-amzn-errortype"),
                Some("TooManyRequestsException")
            );
            assert_eq!(header(&headers, "retry-after"), Some("1"));
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                body["Reason"], "ConcurrentInvocationLimitExceeded",
                "{body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [202, 202, 202, 202, 429, 429]);
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert!(logs.contains("[env-2]"), "a second environment ran: {logs}");

    let (mut child, addr, logs) = serve(
        &s,
        &["--reserved-concurrency", "0", "--function", &function],
    );
    let (status, headers, body) = http(&addr, "POST", INVOKE, &[], b"{}");
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["Reason"], "ReservedFunctionConcurrentInvocationLimitExceeded",
        "{body}"
    );
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    assert!(!logs.contains("START RequestId"), "nothing ran: {logs}");
}

#[test]
fn an_idle_environment_spins_down_and_the_next_invoke_starts_a_new_one() {
    let function = peer_function();
    let s = Scene::new();
    let ext = s.extension("observer", "ok");
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--concurrency",
            "2",
            "--idle-timeout",
            "1",
            "--function",
            &function,
            "--extension",
            &ext.display().to_string(),
        ],
    );
    let first = invoke(&addr, "{}", &[]);
    std::thread::sleep(Duration::from_millis(2_500));
    let second = invoke(&addr, "{}", &[]);
    assert_ne!(first["instance"], second["instance"], "{first} {second}");
    assert_eq!(second["served"], 1, "a new environment: {second}");
    interrupt(&mut child);
    let logs = logs.join().unwrap();
    // The environment of the first invoke spun down on its own, before
    // the second invoke started.
    let first_env = logs
        .lines()
        .filter_map(tagged)
        .find(|(_, t)| t.starts_with("START RequestId: "))
        .map(|(env, _)| env.to_owned())
        .unwrap_or_else(|| panic!("no START:\n{logs}"));
    let lines: Vec<&str> = logs.lines().collect();
    let spindown = lines
        .iter()
        .position(|l| {
            tagged(l).is_some_and(|(env, t)| {
                env == first_env && t.starts_with("[observer] SHUTDOWN spindown")
            })
        })
        .unwrap_or_else(|| panic!("no spindown of env-{first_env}:\n{logs}"));
    let second_start = lines
        .iter()
        .rposition(|l| l.contains("START RequestId"))
        .unwrap();
    assert!(spindown < second_start, "{logs}");
    let cold = logs.matches("Init Duration").count();
    assert_eq!(cold, 2, "{logs}");
}

/// `aws lambda invoke` with a tenant; the response file's JSON, or the
/// error output.
fn aws_invoke(
    addr: &str,
    out: &std::path::Path,
    tenant: Option<&str>,
) -> Result<serde_json::Value, String> {
    let mut command = aws_lambda_invoke(addr);
    command.args(["--function-name", "lext-function", "--payload", "{}"]);
    if let Some(tenant) = tenant {
        command.args(["--tenant-id", tenant]);
    }
    let output = command.arg(out).output().unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap())
}

#[test]
fn each_tenant_gets_environments_of_its_own() {
    let function = peer_function();
    let s = Scene::new();
    let telemetry = s.path("telemetry.jsonl");
    let (mut child, addr, logs) = serve(
        &s,
        &[
            "--tenant-isolation",
            "--function",
            &function,
            "--log-format",
            "json",
            "--telemetry-out",
            &telemetry.display().to_string(),
        ],
    );
    let out = s.path("out.json");
    let blue = aws_invoke(&addr, &out, Some("blue")).unwrap();
    let green = aws_invoke(&addr, &out, Some("green")).unwrap();
    let blue_again = aws_invoke(&addr, &out, Some("blue")).unwrap();
    // lambda_runtime's Context read the tenant from /next.
    assert_eq!(blue["tenantId"], "blue", "{blue}");
    assert_eq!(green["tenantId"], "green", "{green}");
    // Different processes; the same tenant reuses its own, warm.
    assert_ne!(blue["instance"], green["instance"]);
    assert_eq!(blue_again["instance"], blue["instance"]);
    assert_eq!(blue_again["served"], 2);
    assert_eq!(green["served"], 1);
    // No tenant: refused, as Lambda refuses it.
    let refused = aws_invoke(&addr, &out, None).unwrap_err();
    assert!(
        refused.contains("(InvalidParameterValueException)")
            && refused.contains("Tenant ID configuration not specified"),
        "{refused}"
    );
    interrupt(&mut child);
    let logs = logs.join().unwrap();

    // Telemetry carries the tenant on start, runtimeDone and report, and
    // --telemetry-out says which environment each record came from.
    let text = std::fs::read_to_string(&telemetry).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut tenants_by_env: HashMap<String, BTreeSet<String>> = HashMap::new();
    for kind in ["platform.start", "platform.runtimeDone", "platform.report"] {
        let of_kind: Vec<_> = records.iter().filter(|r| r["type"] == kind).collect();
        assert_eq!(of_kind.len(), 3, "{kind}: {text}");
        for r in of_kind {
            let tenant = r["record"]["tenantId"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"));
            let env = r["environment"].as_str().unwrap_or_else(|| panic!("{r}"));
            tenants_by_env
                .entry(env.to_owned())
                .or_default()
                .insert(tenant.to_owned());
        }
    }
    assert_eq!(tenants_by_env.len(), 2, "{tenants_by_env:?}");
    assert!(
        tenants_by_env.values().all(|t| t.len() == 1),
        "an environment served two tenants: {tenants_by_env:?}"
    );
    // In JSON format every line on standard output is one JSON document
    // that says its environment.
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["environment"].is_string(), "{line}");
    }
}
