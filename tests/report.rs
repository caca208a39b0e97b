//! `lext run --report FILE.html --report-json FILE`: what the extensions
//! cost, end to end. Real processes on 127.0.0.1 (Python extensions and
//! runtimes from `sandbox_support`); the page is rendered by headless
//! Chromium (Debian's `chromium`, installed by scripts/install-test-deps),
//! and the checks read the DOM it rendered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sandbox_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_support::{Run, Scene};

/// Chromium, or a loud failure: this test never skips.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is missing: run scripts/install-test-deps (as root it runs \
                 apt-get install -y chromium), or install Debian's chromium package"
            )
        })
}

/// The DOM headless Chromium rendered from `page` (at most 60 s).
fn rendered_dom(scene: &Scene, page: &Path) -> String {
    let profile = tempfile::tempdir_in(scene.dir.path()).unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium --dump-dom hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</svg>"),
        "chromium did not render the page ({}):\n{}\n{}",
        output.status,
        dom,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// The value of every `attr="..."` in `text`.
fn attrs<'a>(text: &'a str, attr: &str) -> Vec<&'a str> {
    let key = format!("{attr}=\"");
    text.match_indices(&key)
        .filter_map(|(i, _)| {
            let rest = &text[i + key.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Each lane of the rendered timeline: its process and its part of the
/// DOM (up to the next lane, or the markers after the last).
fn lanes(dom: &str) -> Vec<(String, String)> {
    let svg = &dom[dom.find("<svg").expect("an svg")..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    let mut lanes = Vec::new();
    let parts: Vec<&str> = svg.split("<g class=\"lane\"").skip(1).collect();
    for part in parts {
        let part = part.split("<g class=\"marker").next().unwrap();
        let process = attrs(part, "data-process")[0].to_owned();
        lanes.push((process, part.to_owned()));
    }
    lanes
}

/// The markers of class `kind` in the rendered DOM: their process and
/// hover text.
fn markers<'a>(dom: &'a str, kind: &str) -> Vec<(&'a str, &'a str)> {
    dom.split(&format!("<g class=\"marker {kind}\""))
        .skip(1)
        .map(|m| {
            let process = attrs(m, "data-process").first().copied().unwrap_or("");
            let title = m.split("<title>").nth(1).unwrap_or("");
            (process, title.split("</title>").next().unwrap_or(""))
        })
        .collect()
}

/// The REPORT line (without its time) of `request_id`.
fn report_line<'a>(run: &'a Run, request_id: &str) -> &'a str {
    let needle = format!("REPORT RequestId: {request_id}\t");
    run.lines()
        .into_iter()
        .find(|l| l.starts_with(&needle))
        .unwrap_or_else(|| panic!("no REPORT line for {request_id}:\n{}", run.dump()))
}

/// A figure of a REPORT line: `Duration: 1.23 ms` -> 1.23.
fn field(line: &str, name: &str) -> Option<f64> {
    line.split('\t').find_map(|f| {
        let value = f.strip_prefix(name)?.strip_prefix(": ")?;
        value.split(' ').next()?.parse().ok()
    })
}

/// Every invoke of every run in the JSON agrees with the REPORT line
/// printed for it: Duration and Init Duration within 1 ms, Max Memory Used
/// exactly. Returns how many invokes were checked.
fn assert_json_agrees_with_report_lines(run: &Run, json: &serde_json::Value) -> usize {
    let mut checked = 0;
    for r in json["runs"].as_array().unwrap() {
        for invoke in r["invokes"].as_array().unwrap() {
            let id = invoke["request_id"].as_str().unwrap();
            let line = report_line(run, id);
            let duration = field(line, "Duration").unwrap();
            let json_duration = invoke["duration_ms"].as_f64().unwrap();
            assert!(
                (duration - json_duration).abs() <= 1.0,
                "{id}: JSON {json_duration} ms, REPORT {duration} ms: {line}"
            );
            match (
                field(line, "Init Duration"),
                invoke["init_duration_ms"].as_f64(),
            ) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1.0, "{id}: {a} vs {b}"),
                (None, None) => {}
                other => panic!("{id}: Init Duration {other:?}: {line}"),
            }
            assert_eq!(
                field(line, "Max Memory Used"),
                invoke["max_memory_used_mb"].as_f64(),
                "{line}"
            );
            // The post-runtime time is Duration minus the runtime's part
            // (none when the invoke failed before the runtime was done: a
            // crash can come first).
            match (
                invoke["runtime_ms"].as_f64(),
                invoke["post_runtime_ms"].as_f64(),
            ) {
                (Some(runtime), Some(post)) => {
                    assert!((json_duration - runtime - post).abs() < 0.011, "{invoke}")
                }
                (None, None) => assert_ne!(invoke["status"], "success", "{invoke}"),
                _ => panic!("{invoke}"),
            }
            checked += 1;
        }
    }
    checked
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The request ids of the invokes of run `label`.
fn request_ids(json: &serde_json::Value, label: &str) -> Vec<String> {
    let run = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == label)
        .unwrap_or_else(|| panic!("no run {label:?} in {json}"));
    run["invokes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["request_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn two_extensions_get_a_lane_each_a_bar_per_invoke_and_figures_that_match_report() {
    let s = Scene::new();
    let a = s.extension("ext-a", "ok");
    let b = s.extension("ext-b", "ok");
    let (page, json_path) = (s.path("report.html"), s.path("report.json"));
    let r = s.lext(&[
        "-v",
        "--extension",
        a.to_str().unwrap(),
        "--extension",
        b.to_str().unwrap(),
        "--invoke",
        "3",
        "--report",
        page.to_str().unwrap(),
        "--report-json",
        json_path.to_str().unwrap(),
    ]);
    assert!(r.output.status.success(), "{}", r.dump());
    let json = read_json(&json_path);
    let labels: Vec<&str> = json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["baseline", "all", "ext-a", "ext-b"], "{json}");
    let subjects: Vec<&str> = json["costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["ext-a", "ext-b", "all together"], "{json}");
    // Alone, each extension writes a line at registration, one per INVOKE
    // and one at SHUTDOWN.
    for cost in &json["costs"].as_array().unwrap()[..2] {
        assert_eq!(cost["log_lines"], 1 + 3 + 1, "{cost}");
    }
    assert_eq!(assert_json_agrees_with_report_lines(&r, &json), 4 * 3);
    // In the run with both, each extension's own post-runtime time (from
    // its own /event/next) is there.
    let all = &json["runs"][1];
    for name in ["ext-a", "ext-b"] {
        let p = all["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["process"] == name)
            .unwrap_or_else(|| panic!("no process {name}: {all}"));
        assert!(
            p["own_post_runtime_ms"]["p50"].as_f64().unwrap() >= 0.0,
            "{p}"
        );
    }

    // The page: nothing from elsewhere, and as Chromium renders it, one
    // lane per process and one invoke bar per invoke in each.
    let source = std::fs::read_to_string(&page).unwrap();
    for outside in ["<script", "src=", "href=", "url(", "@import", "https://"] {
        assert!(!source.contains(outside), "{outside} in the page");
    }
    let dom = rendered_dom(&s, &page);
    let lanes = lanes(&dom);
    let names: Vec<&str> = lanes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["runtime", "ext-a", "ext-b"], "{dom}");
    let ids = request_ids(&json, "all");
    assert_eq!(ids.len(), 3);
    for (name, part) in &lanes {
        let bars = part.matches("<g class=\"bar invoke").count();
        assert_eq!(bars, 3, "lane {name}: {part}");
        assert_eq!(attrs(part, "data-request-id"), ids, "lane {name}");
        assert_eq!(part.matches("<g class=\"bar init").count(), 1, "{name}");
        assert_eq!(part.matches("<g class=\"bar shutdown").count(), 1, "{name}");
        // Hovering a bar shows its request id.
        assert!(part.contains(&format!("<title>{}\n", ids[0])), "{part}");
    }
    // -v: the same table in the terminal.
    for text in [
        "Init added (ms)",
        "post-runtime p50 (ms)",
        "ext-a",
        "all together",
    ] {
        assert!(r.stderr.contains(text), "{text}: {}", r.dump());
    }
}

#[test]
fn an_extension_that_crashes_is_marked_on_its_lane() {
    let s = Scene::new();
    let crasher = s.extension("crasher", "crash-invoke");
    let (page, json_path) = (s.path("report.html"), s.path("report.json"));
    let r = s.lext(&[
        "--extension",
        crasher.to_str().unwrap(),
        "--invoke",
        "2",
        "--report",
        page.to_str().unwrap(),
        "--report-json",
        json_path.to_str().unwrap(),
    ]);
    // The invokes failed, so does lext run; the report is written anyway.
    assert_eq!(r.output.status.code(), Some(1), "{}", r.dump());
    let json = read_json(&json_path);
    assert_json_agrees_with_report_lines(&r, &json);
    let all = &json["runs"][1];
    for invoke in all["invokes"].as_array().unwrap() {
        assert_eq!(invoke["status"], "error", "{invoke}");
        assert_eq!(invoke["error_type"], "Extension.Crash", "{invoke}");
    }
    assert_eq!(json["costs"][0]["failed_invokes"], 2, "{json}");
    let dom = rendered_dom(&s, &page);
    // Each invoke's INVOKE kills it (the second after the reset's Init).
    let crashes: Vec<(&str, &str)> = markers(&dom, "crash")
        .into_iter()
        .filter(|(_, title)| title.contains("exited with status 4"))
        .collect();
    assert_eq!(
        crashes,
        [
            ("crasher", "crasher: exited with status 4"),
            ("crasher", "crasher: exited with status 4")
        ],
        "{dom}"
    );
    assert_eq!(dom.matches("<g class=\"marker error\"").count(), 2, "{dom}");
    let lanes = lanes(&dom);
    let (_, crasher_lane) = lanes.iter().find(|(n, _)| n == "crasher").unwrap();
    assert_eq!(
        crasher_lane.matches("<g class=\"bar invoke failed").count(),
        2,
        "{crasher_lane}"
    );
}

#[test]
fn a_function_that_times_out_is_marked() {
    let s = Scene::new();
    let ext = s.extension("quiet", "ok");
    let runtime = s.runtime("sleep");
    let (page, json_path) = (s.path("report.html"), s.path("report.json"));
    let r = s.lext(&[
        "--extension",
        ext.to_str().unwrap(),
        "--function",
        &runtime,
        "--timeout",
        "1",
        "--invoke",
        "1",
        "--report",
        page.to_str().unwrap(),
        "--report-json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.dump());
    let json = read_json(&json_path);
    assert_json_agrees_with_report_lines(&r, &json);
    assert_eq!(json["runs"][1]["invokes"][0]["status"], "timeout", "{json}");
    let dom = rendered_dom(&s, &page);
    let timeouts = markers(&dom, "timeout");
    assert_eq!(timeouts.len(), 1, "{dom}");
    assert_eq!(timeouts[0].0, "runtime", "{dom}");
    assert!(timeouts[0].1.contains("Task timed out after"), "{dom}");
}
