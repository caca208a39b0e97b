//! The telemetry figure: a function writes N log lines during one invoke;
//! a Telemetry API subscriber must receive every one, batched.
//!
//! Both peers are this xtask binary in hidden roles, so nothing outside the
//! repository is needed:
//! - [`log_runtime`] (`--function "<xtask> __sandbox-log-runtime ..."`): a
//!   Runtime API loop on std::net that, per invocation, writes N numbered
//!   lines to stdout (buffered, as a logging library would) and answers
//!   with the wall-clock times of its first and last line.
//! - [`subscriber`] (an extension, started through a two-line shell
//!   wrapper because `lext run --extension` takes a path without
//!   arguments): registers for INVOKE and SHUTDOWN, binds a listener on
//!   127.0.0.1, subscribes to `platform` and `function` records at
//!   `http://sandbox.localdomain:PORT`, counts every batch and every
//!   function record (each line number must arrive exactly once), and
//!   writes its counts to a JSON file as soon as all N arrived and again at
//!   SHUTDOWN (after waiting, up to the deadline, for the last batches).
//!
//! [`measure`] runs `lext run` with both, once per freeze mode (see there).

use std::io::{BufWriter, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use super::http::{Client, ServerConn};
use super::lext::{Server, FUNCTION};

/// The subscriber's name (its wrapper's file name).
const SUBSCRIBER: &str = "bench-telemetry-subscriber";
/// Buffering asked for: the minimum maxItems, Lambda's default maxBytes,
/// and the minimum timeoutMs. The subscription takes `function` records
/// only, so that the lines fill every batch: 1,000 lines of about 82 bytes
/// are below maxBytes, and a line count that is a multiple of 1,000 ends on
/// a full batch, sent at once. A partial last batch would be held until
/// timeoutMs by Lambda's rule, and the figure is about delivery, not about
/// that wait.
const MAX_ITEMS: u64 = 1_000;
const MAX_BYTES: u64 = 262_144;
const TIMEOUT_MS: u64 = 25;

fn epoch_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) fn runtime_api() -> Result<String> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context("AWS_LAMBDA_RUNTIME_API")?;
    Ok(api.trim_start_matches("http://").to_owned())
}

pub(crate) fn value_of(args: &[String], flag: &str) -> Result<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("{flag} VALUE"))
}

/// The log-writing runtime (`__sandbox-log-runtime --lines N`).
pub(crate) fn log_runtime(args: &[String]) -> Result<()> {
    let lines: u64 = value_of(args, "--lines")?.parse()?;
    let mut api = Client::connect(runtime_api()?).context("connect to the Runtime API")?;
    loop {
        let next = api.send("GET", "/2018-06-01/runtime/invocation/next", &[], b"")?;
        ensure!(next.status == 200, "/next answered {}", next.status);
        let id = next
            .head
            .header("Lambda-Runtime-Aws-Request-Id")
            .context("no request id")?
            .to_owned();
        let first = SystemTime::now();
        {
            let stdout = std::io::stdout().lock();
            let mut out = BufWriter::with_capacity(64 * 1024, stdout);
            for i in 0..lines {
                writeln!(out, "bench-line {i}")?;
            }
            out.flush()?;
        }
        let last = SystemTime::now();
        let body = json!({ "first_ns": epoch_ns(first), "last_ns": epoch_ns(last) }).to_string();
        let path = format!("/2018-06-01/runtime/invocation/{id}/response");
        let r = api.send("POST", &path, &[], body.as_bytes())?;
        ensure!(r.status == 202, "/response answered {}", r.status);
    }
}

/// Bodies held undecoded at most (the default run sends 100).
const MAX_PENDING: usize = 1024;

/// What the subscriber counted.
#[derive(Debug, Default)]
struct Counts {
    expect: u64,
    seen: Vec<bool>,
    delivered: u64,
    duplicates: u64,
    unexpected: u64,
    batches: u64,
    bytes: u64,
    dropped_reports: u64,
    last_ns: u64,
    out: PathBuf,
    written_complete: bool,
    /// The line records seen by a quick scan of each body as it comes;
    /// the bodies are decoded in full only once the scan has seen every
    /// line (or at SHUTDOWN), so that decoding, which costs as much CPU as
    /// the sandbox's own delivery, does not compete with it meanwhile.
    scanned: u64,
    pending: Vec<Vec<u8>>,
}

impl Counts {
    fn write(&mut self, why: &str) -> Result<()> {
        let missing = self.seen.iter().filter(|s| !**s).count();
        let v = json!({
            "why": why,
            "expect": self.expect,
            "delivered": self.delivered,
            "missing": missing,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
            "batches": self.batches,
            "bytes": self.bytes,
            "logs_dropped_events": self.dropped_reports,
            "last_ns": self.last_ns,
        });
        // Write then rename: the xtask polls this file.
        let tmp = self.out.with_extension("tmp");
        std::fs::write(&tmp, v.to_string())?;
        std::fs::rename(&tmp, &self.out)?;
        Ok(())
    }

    /// Takes one batch, received (its body read) at `received_ns`.
    fn batch(&mut self, body: Vec<u8>, received_ns: u64) {
        self.batches += 1;
        self.bytes += body.len() as u64;
        self.scanned += count(&body, r#""type":"function""#);
        self.pending.push(body);
        if self.scanned >= self.expect && self.last_ns == 0 {
            // The batch that brought the last of the lines.
            self.last_ns = received_ns;
            self.decode();
        } else if self.pending.len() >= MAX_PENDING {
            // Bounded: a long run decodes on the way, at some cost to
            // its figures.
            self.decode();
        }
    }

    /// Decodes the bodies taken so far, and says when every line is in.
    fn decode(&mut self) {
        for body in std::mem::take(&mut self.pending) {
            self.decode_one(&body);
        }
        if self.delivered == self.expect && !self.written_complete {
            self.written_complete = true;
            let _ = self.write("complete");
        }
    }

    fn decode_one(&mut self, body: &[u8]) {
        let Ok(events) = serde_json::from_slice::<Vec<Event<'_>>>(body) else {
            self.unexpected += 1;
            return;
        };
        for event in &events {
            match (&*event.kind, &event.record) {
                ("function", Line::Bench(n)) => match self.seen.get_mut(*n) {
                    Some(seen) if *seen => self.duplicates += 1,
                    Some(seen) => {
                        *seen = true;
                        self.delivered += 1;
                    }
                    None => self.unexpected += 1,
                },
                ("function", Line::Other) => self.unexpected += 1,
                ("platform.logsDropped", _) => self.dropped_reports += 1,
                _ => {}
            }
        }
    }
}

/// How often `needle` occurs in `haystack` (std's substring search; a body
/// that is not UTF-8 counts nothing here and fails its decoding later).
fn count(haystack: &[u8], needle: &str) -> u64 {
    std::str::from_utf8(haystack).map_or(0, |text| text.matches(needle).count() as u64)
}

/// One event of a batch, read without building a tree: the subscriber
/// shares the CPU with the sandbox it measures.
#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    record: Line,
}

/// A record: the benchmark's line `bench-line N`, or anything else.
#[derive(Default)]
enum Line {
    Bench(usize),
    #[default]
    Other,
}

impl<'de> serde::Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Line;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a record")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Line, E> {
                Ok(v.trim_end()
                    .strip_prefix("bench-line ")
                    .and_then(|n| n.parse().ok())
                    .map_or(Line::Other, Line::Bench))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
                use serde::de::IgnoredAny;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Line::Other)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The subscribing extension (`__sandbox-telemetry-subscriber --expect N
/// --out FILE`).
pub(crate) fn subscriber(args: &[String]) -> Result<()> {
    let expect: u64 = value_of(args, "--expect")?.parse()?;
    let out = PathBuf::from(value_of(args, "--out")?);
    let counts = Arc::new(Mutex::new(Counts {
        expect,
        seen: vec![false; expect as usize],
        out,
        ..Counts::default()
    }));
    let mut api = Client::connect(runtime_api()?).context("connect to the Extensions API")?;
    let r = api.send(
        "POST",
        "/2020-01-01/extension/register",
        &[
            ("Lambda-Extension-Name", SUBSCRIBER),
            ("Content-Type", "application/json"),
        ],
        br#"{"events":["INVOKE","SHUTDOWN"]}"#,
    )?;
    ensure!(r.status == 200, "register answered {}", r.status);
    let id = r
        .head
        .header("Lambda-Extension-Identifier")
        .context("no extension id")?
        .to_owned();

    // Bound before subscribing, so no batch can find the port closed.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // The batches are counted on a thread of their own: a batch is
    // received when its body is read, and acknowledged at once, as a
    // telemetry extension that must not hold the sandbox back does.
    // Bounded: a counter that falls far behind holds the acknowledgements.
    let (batches, received) = std::sync::mpsc::sync_channel::<(Vec<u8>, u64)>(1024);
    let shared = counts.clone();
    thread::spawn(move || {
        for (body, received_ns) in received {
            if let Ok(mut c) = shared.lock() {
                c.batch(body, received_ns);
            }
        }
    });
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let batches = batches.clone();
            thread::spawn(move || {
                let Ok(mut conn) = ServerConn::new(stream) else {
                    return;
                };
                while let Ok(Some(req)) = conn.read() {
                    let received_ns = epoch_ns(SystemTime::now());
                    if conn.respond(200, &[], b"").is_err() {
                        return;
                    }
                    if batches.send((req.body, received_ns)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let subscribe = json!({
        "schemaVersion": "2022-12-13",
        "types": ["function"],
        "buffering": { "maxItems": MAX_ITEMS, "maxBytes": MAX_BYTES, "timeoutMs": TIMEOUT_MS },
        "destination": { "protocol": "HTTP", "URI": format!("http://sandbox.localdomain:{port}") },
    })
    .to_string();
    let r = api.send(
        "PUT",
        "/2022-07-01/telemetry",
        &[
            ("Lambda-Extension-Identifier", &id),
            ("Content-Type", "application/json"),
        ],
        subscribe.as_bytes(),
    )?;
    ensure!(
        r.status == 200,
        "subscribe answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    loop {
        let r = api.send(
            "GET",
            "/2020-01-01/extension/event/next",
            &[("Lambda-Extension-Identifier", &id)],
            b"",
        )?;
        ensure!(r.status == 200, "/event/next answered {}", r.status);
        let event: Value = serde_json::from_slice(&r.body)?;
        if event["eventType"] == "SHUTDOWN" {
            // The sandbox flushes what it holds when it sends SHUTDOWN;
            // like a real telemetry extension, keep listening until every
            // line is in or the deadline is near, then report.
            let deadline_ms = event["deadlineMs"].as_u64().unwrap_or(0);
            loop {
                let done = counts.lock().map(|c| c.scanned >= c.expect).unwrap_or(true);
                let now_ms = epoch_ns(SystemTime::now()) / 1_000_000;
                if done || now_ms + 50 >= deadline_ms {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
            if let Ok(mut c) = counts.lock() {
                c.decode();
                c.write("shutdown")?;
            }
            return Ok(());
        }
    }
}

/// The figures of one telemetry run.
#[derive(Debug)]
pub(crate) struct Figures {
    pub expect: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub batches: u64,
    pub bytes: u64,
    pub logs_dropped_events: u64,
    /// The runtime's first line → its last line written.
    pub write: Duration,
    /// The runtime's first line → the last record received.
    pub total: Duration,
    /// The runtime's last line → the last record received.
    pub tail: Duration,
}

/// Runs the telemetry measurement with `lines` lines.
///
/// With `freeze` off: `lext run --serve --no-freeze`, one invoke over
/// HTTP, then wait (up to 60 s) until the subscriber has every line.
/// With `freeze` on (the default, as Lambda): the environment freezes as
/// soon as the invoke ends and delivery resumes only when it thaws, so the
/// figure is `lext run --invoke 1`: one invoke, then the spindown shutdown,
/// during which the sandbox must deliver everything before the extension
/// exits.
pub(crate) fn measure(
    lext: &Path,
    xtask: &Path,
    lines: u64,
    scratch: &Path,
    freeze: bool,
) -> Result<Figures> {
    let out = scratch.join("telemetry-counts.json");
    let _ = std::fs::remove_file(&out);
    let wrapper = scratch.join(SUBSCRIBER);
    // exec: the wrapper's shell is replaced at once, so the extension's
    // process is the xtask itself (signals and freezing reach it).
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' __sandbox-telemetry-subscriber --expect {lines} --out '{}'\n",
            xtask.display(),
            out.display()
        ),
    )?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    }
    let function = format!(
        "'{}' __sandbox-log-runtime --lines {lines}",
        xtask.display()
    );
    let (answer, counts) = if freeze {
        invoke_once(lext, &wrapper, &function, &out)?
    } else {
        serve_once(lext, &wrapper, &function, &out)?
    };
    let times: Value = serde_json::from_str(&answer).context("the log runtime's answer")?;
    let first_ns = times["first_ns"].as_u64().context("first_ns")?;
    let last_ns = times["last_ns"].as_u64().context("last_ns")?;
    let get = |k: &str| counts[k].as_u64().unwrap_or(0);
    let last_record = get("last_ns");
    Ok(Figures {
        expect: get("expect"),
        delivered: get("delivered"),
        missing: get("missing"),
        duplicates: get("duplicates"),
        batches: get("batches"),
        bytes: get("bytes"),
        logs_dropped_events: get("logs_dropped_events"),
        write: Duration::from_nanos(last_ns.saturating_sub(first_ns)),
        total: Duration::from_nanos(last_record.saturating_sub(first_ns)),
        tail: Duration::from_nanos(last_record.saturating_sub(last_ns)),
    })
}

fn read_counts(out: &Path) -> Result<Value> {
    let text = std::fs::read(out).context("the subscriber wrote no counts")?;
    Ok(serde_json::from_slice(&text)?)
}

/// `lext run --serve --no-freeze`: the runtime's answer and the counts.
fn serve_once(lext: &Path, wrapper: &Path, function: &str, out: &Path) -> Result<(String, Value)> {
    let server = Server::start(lext, wrapper, &["--no-freeze", "--function", function])?;
    let mut client = Client::connect(server.addr)?;
    let r = client.send(
        "POST",
        &format!("/2015-03-31/functions/{FUNCTION}/invocations"),
        &[],
        b"{}",
    )?;
    ensure!(
        r.status == 200 && r.head.header("X-Amz-Function-Error").is_none(),
        "telemetry invoke: status {} body {}\nlext stderr:\n{}",
        r.status,
        String::from_utf8_lossy(&r.body),
        server.stderr_tail()
    );
    let answer = String::from_utf8_lossy(&r.body).into_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(v) = read_counts(out) {
            if v["why"] == "complete" {
                server.stop()?;
                return Ok((answer, v));
            }
        }
        if Instant::now() > deadline {
            // Stop lext: the subscriber writes what it has at SHUTDOWN.
            server.stop()?;
            bail!(
                "not every line was delivered within 60 s: {}",
                read_counts(out)?
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// `lext run --invoke 1` (freeze on): the runtime's answer and the counts
/// the subscriber wrote last (at SHUTDOWN).
fn invoke_once(lext: &Path, wrapper: &Path, function: &str, out: &Path) -> Result<(String, Value)> {
    let o = std::process::Command::new(lext)
        .args([
            "run",
            "--invoke",
            "1",
            "--function-name",
            FUNCTION,
            "--function",
            function,
        ])
        .arg("--extension")
        .arg(wrapper)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .context("running lext run --invoke 1")?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    ensure!(
        o.status.success(),
        "lext run --invoke 1 failed ({}):\n{stderr}",
        o.status
    );
    let answer = stderr
        .lines()
        .find_map(|l| l.split("invoke 1: response ").nth(1))
        .with_context(|| format!("no response line in lext's stderr:\n{stderr}"))?
        .to_owned();
    Ok((answer, read_counts(out)?))
}
