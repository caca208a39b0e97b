//! `bench-telemetry`: the SDK's two flavours as Telemetry API subscribers,
//! against the same extension on the official `lambda-extension` crate.
//!
//! This module owns the benchmark of issue 12's target "the SDK, tokio
//! flavour and telemetry". Three subjects do the same work (see
//! `xtask/peers/lext-telemetry-extension` and
//! `xtask/peers/official-telemetry-extension`): register for INVOKE and
//! SHUTDOWN, subscribe to `platform`, `function` and `extension` events,
//! decode every batch into their crate's typed events, and write one line per
//! batch to stdout (the number of events decoded), which the benchmark reads
//! from a pipe. Every subject starts as an extension does in Lambda and in
//! `lext run`, with `sandbox.localdomain` defined in `/etc/hosts`: in a
//! private mount namespace showing a generated hosts file (`private_hosts`),
//! or, with `--no-hosts`, with the machine's own file (then the table's
//! heading says so). For each subject and each run (interleaved, after one
//! warm-up run each), on the minimal Extensions API of `api.rs`:
//!
//! 1. fork and exec it (see the `pre_exec` note in `bench.rs`: peak RSS),
//!    answer register and the subscription (checking what it asked for),
//!    and time spawn → first `/event/next`;
//! 2. connect to the listener the subscription names, as Lambda does (the
//!    generated file's 127.0.0.1; with `--no-hosts`, `sandbox.localdomain`
//!    resolved on this machine, else loopback, as a local emulator must),
//!    and POST B batches of R records (default 10 of 1,000) on that
//!    one kept-alive connection, one at a time; each is timed from just
//!    before its request is written to the subject's line being read from
//!    the pipe, and must be answered with 200 and counted in full;
//! 3. deliver SHUTDOWN, reap the process, and read its peak RSS from wait4.
//!
//! Anything that stalls for `api::STALL` (10 s) is killed and the benchmark
//! fails with the subject's name; every child is reaped on every path.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::api::{complete_message, has_exited, Session, NEXT_PATH, REGISTER_PATH, STALL};
use crate::bench::{median, median_u64, peer, vm_hwm_kb, wait4};
use crate::private_hosts::{self, PrivateHosts};
use crate::sandbox::stats::percentile;

const TELEMETRY_PATH: &str = "/2022-07-01/telemetry";
/// The host Lambda requires in a subscriber's URI.
const SANDBOX_HOST: &str = "sandbox.localdomain";
/// Where the official crate's subject reads its fixed listener port.
const PORT_VAR: &str = "BENCH_TELEMETRY_PORT";

/// One subject and every sample taken of it (raw: medians are over all).
#[derive(Debug)]
struct Subject {
    label: String,
    path: PathBuf,
    /// The official crate listens on a fixed port: the benchmark picks it.
    fixed_port: bool,
    size: u64,
    first_next: Vec<Duration>,
    first_batch: Vec<Duration>,
    later_batches: Vec<Duration>,
    rss_kb: Vec<u64>,
    hwm_kb: Vec<u64>,
}

impl Subject {
    fn new(label: &str, path: PathBuf, fixed_port: bool) -> Result<Self> {
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} (build it first, or drop --no-build)", path.display()))?
            .len();
        Ok(Self {
            label: label.to_owned(),
            path,
            fixed_port,
            size,
            first_next: Vec::new(),
            first_batch: Vec::new(),
            later_batches: Vec::new(),
            rss_kb: Vec::new(),
            hwm_kb: Vec::new(),
        })
    }

    fn all_batches(&self) -> Vec<Duration> {
        let mut all = self.first_batch.clone();
        all.extend_from_slice(&self.later_batches);
        all
    }
}

/// What one run measures, before it is recorded.
struct Run {
    first_next: Duration,
    batches: Vec<Duration>,
    hwm_kb: u64,
}

pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut runs = 31usize;
    let mut batches = 10usize;
    let mut records = 1000usize;
    let mut build = true;
    let mut blocking_path: Option<PathBuf> = None;
    let mut tokio_path: Option<PathBuf> = None;
    let mut official_path: Option<PathBuf> = None;
    let mut peers: Vec<(String, PathBuf)> = Vec::new();
    let mut private_hosts = true;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            "--batches" => batches = it.next().context("--batches B")?.parse()?,
            "--records" => records = it.next().context("--records R")?.parse()?,
            "--no-build" => build = false,
            "--no-hosts" => private_hosts = false,
            "--blocking" => blocking_path = Some(it.next().context("--blocking PATH")?.into()),
            "--tokio" => tokio_path = Some(it.next().context("--tokio PATH")?.into()),
            "--official" => official_path = Some(it.next().context("--official PATH")?.into()),
            "--peer" => peers.push(peer(it.next())?),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(
        runs >= 1 && batches >= 1 && records >= 1,
        "--runs, --batches and --records must be at least 1"
    );
    // Before anything is built: a machine where the private /etc/hosts
    // cannot be made fails here, with what to do.
    let hosts = if private_hosts {
        Some(PrivateHosts::create()?)
    } else {
        None
    };

    // The peers are separate workspaces, built into their own target
    // directory (as bench-extension's official peer is), so that their lock
    // files never mix with the workspace's.
    let needs_target = blocking_path.is_none() || tokio_path.is_none() || official_path.is_none();
    let peer_target = if needs_target {
        crate::cargo::target_dir()?.join("peers")
    } else {
        PathBuf::new()
    };
    let release = peer_target.join("release");
    // One cargo invocation per lext flavour: in one, cargo would unify the
    // features and the blocking binary would be built with `tokio` on.
    if build && blocking_path.is_none() {
        crate::cargo::build_peer(
            "lext-telemetry-extension",
            &peer_target,
            &["--bin", "lext-telemetry-blocking"],
        )?;
    }
    if build && tokio_path.is_none() {
        crate::cargo::build_peer(
            "lext-telemetry-extension",
            &peer_target,
            &["--features", "tokio", "--bin", "lext-telemetry-tokio"],
        )?;
    }
    if build && official_path.is_none() {
        crate::cargo::build_peer("official-telemetry-extension", &peer_target, &[])?;
    }
    let mut subjects = vec![
        Subject::new(
            "lext-extension, blocking (std threads)",
            blocking_path.unwrap_or_else(|| release.join("lext-telemetry-blocking")),
            false,
        )?,
        Subject::new(
            "lext-extension, tokio (current-thread)",
            tokio_path.unwrap_or_else(|| release.join("lext-telemetry-tokio")),
            false,
        )?,
        Subject::new(
            "official lambda-extension (tokio current-thread)",
            official_path.unwrap_or_else(|| release.join("official-telemetry-extension")),
            true,
        )?,
    ];
    // Extra subjects (another build, for an A/B), served as the lext ones
    // are: an ephemeral port, read from their subscription.
    for (name, path) in peers {
        subjects.push(Subject::new(&name, path, false)?);
    }

    let body = batch_body(records);
    let listener = TcpListener::bind("127.0.0.1:0").context("bind the benchmark API")?;
    let api = listener.local_addr()?.to_string();
    let sandbox = match &hosts {
        Some(hosts) => {
            eprintln!(
                "each subject starts in a private mount namespace with a generated /etc/hosts \
                 ({SANDBOX_HOST} {}); entering it adds {} to a spawn (throwaway children)",
                private_hosts::SANDBOX_IP,
                ms(hosts.spawn_cost()?),
            );
            private_hosts::SANDBOX_IP
        }
        None => sandbox_ip(),
    };
    eprintln!(
        "benchmark API on {api}; {SANDBOX_HOST} delivered to {sandbox}; {runs} runs x {batches} batches of {records} records ({} bytes) per subject",
        body.len()
    );
    let bench = Bench {
        listener: &listener,
        api: &api,
        sandbox,
        body: &body,
        records,
        batches,
        hosts: hosts.as_ref(),
    };
    // One warm-up run each: page cache and the dynamic loader's caches.
    for s in &mut subjects {
        bench.run_once(s, false)?;
    }
    // Interleaved, as in bench-extension: a burst of load from other work
    // on the machine hits every subject alike.
    for _ in 0..runs {
        for s in &mut subjects {
            bench.run_once(s, true)?;
        }
    }
    print_table(
        &subjects,
        runs,
        batches,
        records,
        body.len(),
        hosts.is_some(),
    );
    Ok(())
}

/// With `--no-hosts`, where a listener named `sandbox.localdomain` is
/// reached: the name's IPv4 address where it resolves on this machine, else
/// loopback, as a local emulator delivers (the SDK binds the same address;
/// the official crate binds 0.0.0.0).
fn sandbox_ip() -> IpAddr {
    (SANDBOX_HOST, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|addrs| addrs.map(|a| a.ip()).find(IpAddr::is_ipv4))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A port that was free a moment ago, for the subject that cannot take an
/// ephemeral one (the official crate subscribes with the port it was given).
fn free_port() -> Result<u16> {
    let probe = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(probe.local_addr()?.port())
}

/// What every run shares.
struct Bench<'a> {
    listener: &'a TcpListener,
    api: &'a str,
    sandbox: IpAddr,
    body: &'a str,
    records: usize,
    batches: usize,
    /// `None` with `--no-hosts`: the machine's own `/etc/hosts`.
    hosts: Option<&'a PrivateHosts>,
}

impl Bench<'_> {
    /// One process lifetime: register, subscribe, B batches, shutdown.
    fn run_once(&self, s: &mut Subject, record: bool) -> Result<()> {
        let port = if s.fixed_port {
            Some(free_port()?)
        } else {
            None
        };
        let mut command = Command::new(&s.path);
        // Fork, then exec (never posix_spawn): see bench.rs, run_once. Both
        // hooks do that; one also gives the child the generated /etc/hosts.
        match self.hosts {
            Some(hosts) => hosts.install(&mut command),
            // SAFETY: the closure performs no allocation, locking or other
            // call that is unsafe between fork and exec.
            None => unsafe {
                command.pre_exec(|| Ok(()));
            },
        }
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.api)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Nothing is written there unless a subject fails, and then its
            // message is worth seeing.
            .stderr(Stdio::inherit());
        if let Some(port) = port {
            command.env(PORT_VAR, port.to_string());
        }
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {} ({})", s.label, s.path.display()))?;
        let pid = child.id() as libc::pid_t;
        // From here on, every path reaps the child.
        let result = match child.stdout.take() {
            Some(stdout) => {
                let mut lines = Lines::new(stdout, pid);
                let run = self.lifetime(pid, spawned, &mut lines);
                run.and_then(|run| {
                    reap_within(pid, STALL)?;
                    lines.expect_end()?;
                    Ok(run)
                })
            }
            None => Err(anyhow::anyhow!("no stdout pipe")),
        };
        // On any failure: stop the child (a no-op if already exited) so the
        // reap below returns.
        if result.is_err() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let (status, rss_kb, _minflt, _at) = wait4(pid)?;
        let run = result.with_context(|| format!("run of {} ({})", s.label, s.path.display()))?;
        ensure!(
            status == 0,
            "{} ({}) exited with wait status {status}",
            s.label,
            s.path.display()
        );
        if record {
            s.first_next.push(run.first_next);
            if let Some((first, later)) = run.batches.split_first() {
                s.first_batch.push(*first);
                s.later_batches.extend_from_slice(later);
            }
            s.rss_kb.push(rss_kb);
            s.hwm_kb.push(run.hwm_kb);
        }
        Ok(())
    }

    /// The conversation with one live subject, up to SHUTDOWN sent.
    fn lifetime(&self, pid: libc::pid_t, spawned: Instant, lines: &mut Lines) -> Result<Run> {
        let mut session = Session::new(self.listener, pid);
        let req = session.next_request()?;
        ensure!(
            req.method == "POST" && req.path == REGISTER_PATH,
            "expected register, got {} {}",
            req.method,
            req.path
        );
        let events: serde_json::Value =
            serde_json::from_slice(&req.body).context("register body")?;
        ensure!(
            events["events"] == serde_json::json!(["INVOKE", "SHUTDOWN"]),
            "registered for {}, not INVOKE and SHUTDOWN",
            events["events"]
        );
        session.answer_register()?;

        let req = session.next_request()?;
        ensure!(
            req.method == "PUT" && req.path == TELEMETRY_PATH,
            "expected the Telemetry API subscription, got {} {}",
            req.method,
            req.path
        );
        let port = check_subscription(&req.body)?;
        session.respond("", r#""OK""#)?;

        let req = session.next_request()?;
        ensure!(
            req.path == NEXT_PATH,
            "expected event/next, got {}",
            req.path
        );
        let first_next = req.at - spawned;

        // The subject waits in /event/next; deliver as Lambda would.
        let mut conn = TcpStream::connect_timeout(&SocketAddr::new(self.sandbox, port), STALL)
            .with_context(|| format!("connect to the telemetry listener on port {port}"))?;
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(STALL))?;
        let mut post = format!(
            "POST / HTTP/1.1\r\nHost: {SANDBOX_HOST}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.body.len()
        )
        .into_bytes();
        post.extend_from_slice(self.body.as_bytes());
        let expected = self.records.to_string();
        let mut answer = Vec::with_capacity(1024);
        let mut batches = Vec::with_capacity(self.batches);
        for i in 0..self.batches {
            let sent = Instant::now();
            conn.write_all(&post)
                .with_context(|| format!("write batch {i}"))?;
            let (at, line) = lines.next_line()?;
            batches.push(at - sent);
            ensure!(
                line == expected,
                "batch {i}: the handler reported {line:?} events, not {expected}"
            );
            let status = read_answer(&mut conn, &mut answer)
                .with_context(|| format!("the answer to batch {i}"))?;
            ensure!(status == 200, "batch {i} was answered {status}, not 200");
        }
        // Blocked in /event/next again: its own high-water RSS, a
        // cross-check of wait4's figure.
        let hwm_kb = vm_hwm_kb(pid).unwrap_or(0);
        session.respond(
            "",
            r#"{"eventType":"SHUTDOWN","deadlineMs":1700000002000,"shutdownReason":"spindown"}"#,
        )?;
        Ok(Run {
            first_next,
            batches,
            hwm_kb,
        })
    }
}

/// Checks the subscription body against what every subject is meant to
/// send, and returns the port of its destination URI.
fn check_subscription(body: &[u8]) -> Result<u16> {
    let sub: serde_json::Value = serde_json::from_slice(body).context("subscription body")?;
    let mut types: Vec<&str> = sub["types"]
        .as_array()
        .context("subscription: no types")?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    types.sort_unstable();
    ensure!(
        types == ["extension", "function", "platform"],
        "subscribed to {types:?}, not platform, function and extension"
    );
    let buffering = &sub["buffering"];
    ensure!(
        buffering["maxItems"] == 1000
            && buffering["maxBytes"] == 262_144
            && buffering["timeoutMs"] == 25,
        "buffering {buffering}, not 1000 items / 262144 bytes / 25 ms"
    );
    let destination = &sub["destination"];
    ensure!(
        destination["protocol"] == "HTTP",
        "destination {destination}: not HTTP"
    );
    let uri = destination["URI"]
        .as_str()
        .context("subscription: no destination URI")?;
    // Lambda requires this host (https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html).
    let port = uri
        .strip_prefix("http://")
        .and_then(|rest| rest.trim_end_matches('/').strip_prefix(SANDBOX_HOST))
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|port| port.parse::<u16>().ok())
        .filter(|&port| port != 0)
        .with_context(|| format!("destination URI {uri:?}: not http://{SANDBOX_HOST}:PORT"))?;
    Ok(port)
}

/// Reads one Content-Length-framed HTTP answer off `conn`; its status.
fn read_answer(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((head, body)) = complete_message(buf) {
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("not an HTTP answer: {head:?}"))?;
            buf.drain(..body.end);
            return Ok(status);
        }
        let n = match conn.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no answer within {STALL:?}")
            }
            Err(e) => return Err(e).context("read the answer"),
        };
        ensure!(n > 0, "the listener closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The subject's stdout: one line per batch, read as soon as it is written.
struct Lines {
    out: ChildStdout,
    pid: libc::pid_t,
    buf: Vec<u8>,
    /// When the read that brought the buffer's newest bytes returned.
    read_at: Instant,
}

impl Lines {
    fn new(out: ChildStdout, pid: libc::pid_t) -> Self {
        Self {
            out,
            pid,
            buf: Vec::with_capacity(256),
            read_at: Instant::now(),
        }
    }

    /// The next line and when it was read; fails after `STALL` without one.
    fn next_line(&mut self) -> Result<(Instant, String)> {
        let started = Instant::now();
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..nl]).into_owned();
                self.buf.drain(..=nl);
                return Ok((self.read_at, line));
            }
            // A short poll timeout, so that an exited child is noticed; data
            // wakes the poll at once.
            if self.wait_readable(20)? {
                let mut chunk = [0u8; 256];
                let n = self
                    .out
                    .read(&mut chunk)
                    .context("read the subject's stdout")?;
                self.read_at = Instant::now();
                ensure!(n > 0, "the subject closed its stdout");
                self.buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            if has_exited(self.pid) {
                bail!("the subject exited before its handler signalled the batch");
            }
            if started.elapsed() > STALL {
                bail!("the handler did not signal the batch within {STALL:?}");
            }
        }
    }

    fn wait_readable(&self, timeout_ms: i32) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.out.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(err).context("poll the subject's stdout");
        }
        Ok(rc > 0)
    }

    /// After the subject exited: it wrote nothing but its batch lines.
    fn expect_end(&mut self) -> Result<()> {
        let mut rest = std::mem::take(&mut self.buf);
        self.out
            .read_to_end(&mut rest)
            .context("read the subject's stdout")?;
        ensure!(
            rest.is_empty(),
            "the subject wrote more than one line per batch: {:?}",
            String::from_utf8_lossy(&rest)
        );
        Ok(())
    }
}

/// Waits at most `timeout` for `pid` to exit, without reaping it (the
/// caller's wait4 reads its resource usage).
fn reap_within(pid: libc::pid_t, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    while !has_exited(pid) {
        if started.elapsed() > timeout {
            bail!("the subject did not exit within {timeout:?} of SHUTDOWN");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// A batch as Lambda delivers it (schema 2022-12-13): a JSON array of
/// `records` events, in invokes of 100 records each: `platform.start`, 97
/// `function` log lines (text format, a string `record`), then
/// `platform.runtimeDone` and `platform.report`.
fn batch_body(records: usize) -> String {
    let mut out = String::with_capacity(records * 200);
    out.push('[');
    for i in 0..records {
        if i > 0 {
            out.push(',');
        }
        // 3 ms apart, from 07:38:00.000 on.
        let ms = i * 3;
        let time = format!(
            "2026-11-25T07:{:02}:{:02}.{:03}Z",
            38 + ms / 60_000,
            (ms / 1000) % 60,
            ms % 1000
        );
        let invoke = i / 100;
        let request_id = format!("8f6c1a2e-4b5d-4e6f-9a0b-{invoke:012x}");
        let tracing = format!(
            r#"{{"spanId":"{invoke:016x}","type":"X-Amzn-Trace-Id","value":"Root=1-6744a1b0-{invoke:024x};Parent={invoke:016x};Sampled=1"}}"#
        );
        match i % 100 {
            0 => out.push_str(&format!(
                r#"{{"time":"{time}","type":"platform.start","record":{{"requestId":"{request_id}","version":"$LATEST","tracing":{tracing}}}}}"#
            )),
            98 => out.push_str(&format!(
                r#"{{"time":"{time}","type":"platform.runtimeDone","record":{{"requestId":"{request_id}","status":"success","tracing":{tracing},"spans":[{{"name":"responseLatency","start":"{time}","durationMs":2.081}},{{"name":"responseDuration","start":"{time}","durationMs":0.062}}],"metrics":{{"durationMs":291.466,"producedBytes":42}}}}}}"#
            )),
            99 => out.push_str(&format!(
                r#"{{"time":"{time}","type":"platform.report","record":{{"requestId":"{request_id}","metrics":{{"durationMs":292.01,"billedDurationMs":293,"memorySizeMB":128,"maxMemoryUsedMB":31}},"tracing":{tracing},"status":"success"}}}}"#
            )),
            n => out.push_str(&format!(
                r#"{{"time":"{time}","type":"function","record":"{time}\t{request_id}\tINFO\tprocessed order {order} for customer {customer}: {items} items, total {euros}.{cents:02} USD"}}"#,
                order = 100_000 + i,
                customer = 7_000 + (i * 37) % 1000,
                items = 1 + n % 9,
                euros = 5 + (i * 13) % 200,
                cents = (i * 7) % 100,
            )),
        }
    }
    out.push(']');
    out
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn p90(values: &[Duration]) -> Duration {
    let ns: Vec<u64> = values.iter().map(|d| d.as_nanos() as u64).collect();
    Duration::from_nanos(percentile(&ns, 90.0))
}

fn mb(kib: u64) -> String {
    format!("{:.2} MB ({kib} KiB)", kib as f64 * 1024.0 / 1e6)
}

#[allow(clippy::print_stdout)] // The report is this task's output.
fn print_table(
    subjects: &[Subject],
    runs: usize,
    batches: usize,
    records: usize,
    bytes: usize,
    private_hosts: bool,
) {
    let hosts = if private_hosts {
        format!("each subject with a generated /etc/hosts naming {SANDBOX_HOST}, as in Lambda")
    } else {
        format!("--no-hosts: this machine's own /etc/hosts, where {SANDBOX_HOST} may be missing (the lext subjects then ask the resolver)")
    };
    println!(
        "medians over {runs} runs per subject; {batches} batches of {records} records ({bytes} bytes) per run, p90 in brackets; {hosts}\n"
    );
    println!("| subject | stripped size | spawn to first /event/next | batch to handler, first of a run | later batches | all batches | peak RSS (wait4) | VmHWM before SHUTDOWN |");
    println!("|---|---|---|---|---|---|---|---|");
    for s in subjects {
        let all = s.all_batches();
        println!(
            "| {} | {} B ({:.0} KB) | {} | {} | {} ({}) | {} ({}) | {} | {} KiB |",
            s.label,
            s.size,
            s.size as f64 / 1000.0,
            ms(median(&s.first_next)),
            ms(median(&s.first_batch)),
            ms(median(&s.later_batches)),
            ms(p90(&s.later_batches)),
            ms(median(&all)),
            ms(p90(&all)),
            mb(median_u64(&s.rss_kb)),
            median_u64(&s.hwm_kb),
        );
    }
    let [blocking, tokio, official, ..] = subjects else {
        return;
    };
    println!();
    println!("against the official crate (target: size and peak RSS <= 0.7x, no slower: times <= 1.0x)\n");
    println!(
        "| subject | size | peak RSS | spawn to first /event/next | batch to handler (all) | met |"
    );
    println!("|---|---|---|---|---|---|");
    for s in [blocking, tokio] {
        let size = s.size as f64 / official.size as f64;
        let rss = median_u64(&s.rss_kb) as f64 / median_u64(&official.rss_kb) as f64;
        let time = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let start = time(median(&s.first_next), median(&official.first_next));
        let batch = time(median(&s.all_batches()), median(&official.all_batches()));
        let verdict = |ok: bool| if ok { "met" } else { "not met" };
        let missed: Vec<&str> = [
            (size <= 0.7, "size"),
            (rss <= 0.7, "RSS"),
            (start <= 1.0, "start-up"),
            (batch <= 1.0, "batch"),
        ]
        .into_iter()
        .filter_map(|(ok, what)| (!ok).then_some(what))
        .collect();
        println!(
            "| {} | {size:.2}x ({}) | {rss:.2}x ({}) | {start:.2}x ({}) | {batch:.2}x ({}) | {} |",
            s.label,
            verdict(size <= 0.7),
            verdict(rss <= 0.7),
            verdict(start <= 1.0),
            verdict(batch <= 1.0),
            if missed.is_empty() {
                "all met".to_owned()
            } else {
                format!("not met: {}", missed.join(", "))
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_is_a_json_array_of_lambdas_event_shapes() {
        let body = batch_body(1000);
        let events: Vec<serde_json::Value> = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(events.len(), 1000);
        let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
        assert_eq!(count("function"), 970);
        assert_eq!(count("platform.start"), 10);
        assert_eq!(count("platform.runtimeDone"), 10);
        assert_eq!(count("platform.report"), 10);
        assert!(events.iter().all(|e| e["time"].as_str().is_some()));
        assert!(events[1]["record"]
            .as_str()
            .is_some_and(|r| r.contains("\tINFO\t")));
        assert_eq!(
            events[99]["record"]["metrics"]["billedDurationMs"],
            serde_json::json!(293)
        );
        // Within the subscription's maxBytes, as Lambda's batches are.
        assert!(body.len() < 262_144, "{}", body.len());
    }

    #[test]
    fn the_subscription_must_name_the_sandbox_host() {
        let sub = |uri: &str| {
            format!(
                r#"{{"schemaVersion":"2022-12-13","types":["platform","function","extension"],"buffering":{{"maxItems":1000,"maxBytes":262144,"timeoutMs":25}},"destination":{{"protocol":"HTTP","URI":"{uri}"}}}}"#
            )
        };
        assert_eq!(
            check_subscription(sub("http://sandbox.localdomain:41234").as_bytes()).unwrap(),
            41234
        );
        for bad in [
            "http://127.0.0.1:41234",
            "http://sandbox.localdomain:0",
            "http://sandbox.localdomain",
        ] {
            assert!(check_subscription(sub(bad).as_bytes()).is_err(), "{bad}");
        }
        let two_types = br#"{"types":["platform","function"],"buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":25},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}"#;
        assert!(check_subscription(two_types).is_err());
    }
}
