//! `bench-lmi`: the figures of issue 11 (BENCHMARKS.md), Lambda Managed
//! Instances through the Invoke API of `lext run --serve`, side by side in
//! one run with the on-demand environment of the same build.
//!
//! 1. **Concurrent throughput.** `--managed-instances --max-concurrency 16`,
//!    16 callers, a handler that sleeps `--sleep-ms` (10): invokes/s (the
//!    sleep alone allows 1,600) and p50.
//! 2. **No-op handler, 8 callers** (`--max-concurrency 8`) against the
//!    sequential on-demand rate (one caller, no `--managed-instances`).
//! 3. **p99 added latency under load**: p99 less the handler's sleep, for
//!    16 callers on LMI and for one sequential caller on-demand.
//!
//! The runtime (`__lmi-runtime --sleep-ms MS`) is std-only: it starts
//! `AWS_LAMBDA_MAX_CONCURRENCY` workers (1 without it), each a thread with
//! its own connection doing `/next`, sleep, `/response`. A caller whose
//! invoke finds no idle worker (`Runtime.Unavailable`: the worker that
//! answered its previous invoke is not back in `/next` yet) sends it again
//! at once; its latency counts from the first attempt, and the rejections
//! are counted and printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::sandbox::http::Client;
use crate::sandbox::lext::{Server, FUNCTION};
use crate::sandbox::stats::Series;
use crate::sandbox::telemetry::{runtime_api, value_of};

#[derive(Debug)]
struct Options {
    invokes: usize,
    warmup: usize,
    sleep_ms: u64,
    build: bool,
    lext: Option<PathBuf>,
}

pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut o = Options {
        invokes: 1_000,
        warmup: 100,
        sleep_ms: 10,
        build: true,
        lext: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--invokes" => o.invokes = value()?.parse()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--sleep-ms" => o.sleep_ms = value()?.parse()?,
            "--no-build" => o.build = false,
            "--lext" => o.lext = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(o.invokes >= 10, "--invokes must be at least 10");
    let release = crate::cargo::target_dir()?.join("release");
    if o.build {
        crate::cargo::build_release(&["-p", "lext", "-p", "rust-example-extension"])?;
    }
    let lext = o.lext.clone().unwrap_or_else(|| release.join("lext"));
    let extension = release.join("rust-example-extension");
    for path in [&lext, &extension] {
        ensure!(
            path.is_file(),
            "{} is missing (build it, or drop --no-build)",
            path.display()
        );
    }
    let xtask = std::env::current_exe().context("the xtask executable")?;
    let runtime =
        |sleep_ms: u64| format!("{} __lmi-runtime --sleep-ms {sleep_ms}", xtask.display());
    let lmi = |workers: &str, sleep_ms: u64| -> Result<Server> {
        Server::start(
            &lext,
            &extension,
            &[
                "--managed-instances",
                "--max-concurrency",
                workers,
                "--function",
                &runtime(sleep_ms),
            ],
        )
    };
    let on_demand =
        |sleep_ms: u64| Server::start(&lext, &extension, &["--function", &runtime(sleep_ms)]);

    // ----- 1. 16 callers, handler sleeping --sleep-ms ------------------------
    let server = lmi("16", o.sleep_ms)?;
    let (busy, busy_rejected) = callers(server.addr, 16, o.warmup, o.invokes)?;
    ensure!(server.stop()?, "lext did not stop within 10 s of SIGTERM");
    let server = on_demand(o.sleep_ms)?;
    let (seq_sleep, _) = callers(server.addr, 1, o.warmup, o.invokes)?;
    ensure!(server.stop()?, "lext did not stop within 10 s of SIGTERM");

    // ----- 2. no-op handler: 8 callers on LMI, one on-demand -----------------
    let server = lmi("8", 0)?;
    let (noop, noop_rejected) = callers(server.addr, 8, o.warmup, o.invokes)?;
    ensure!(server.stop()?, "lext did not stop within 10 s of SIGTERM");
    let server = on_demand(0)?;
    let (seq, _) = callers(server.addr, 1, o.warmup, o.invokes)?;
    ensure!(server.stop()?, "lext did not stop within 10 s of SIGTERM");

    let sleep_us = o.sleep_ms as f64 * 1000.0;
    println!(
        "\nLambda Managed Instances through the Invoke API, rust-example-extension, {} invokes per caller after {} warm-up:",
        o.invokes, o.warmup
    );
    println!(
        "{:<58} {:>10} {:>10} {:>10} {:>9}",
        "", "invokes/s", "p50 µs", "p99 µs", "rejected"
    );
    let row = |name: &str, s: &Series, rejected: u64| {
        println!(
            "{:<58} {:>10.0} {:>10.1} {:>10.1} {:>9}",
            name,
            s.rate(),
            s.median_us(),
            s.p99_us(),
            rejected
        );
    };
    row(
        &format!(
            "LMI, 16 workers, 16 callers, handler sleeps {} ms",
            o.sleep_ms
        ),
        &busy,
        busy_rejected,
    );
    row(
        &format!("on-demand, 1 caller, handler sleeps {} ms", o.sleep_ms),
        &seq_sleep,
        0,
    );
    row(
        "LMI, 8 workers, 8 callers, no-op handler",
        &noop,
        noop_rejected,
    );
    row("on-demand, 1 caller (sequential), no-op handler", &seq, 0);
    println!(
        "\n1. 16 callers, {} ms handler: {:.0} invokes/s (target: at least 1,500), p50 {:.2} ms (target: at most 10.5)",
        o.sleep_ms,
        busy.rate(),
        busy.median_us() / 1000.0
    );
    println!(
        "2. no-op, 8 callers / sequential on-demand: {:.2}x (target: at least 1.5)",
        noop.rate() / seq.rate().max(1e-9)
    );
    let added = busy.p99_us() - sleep_us;
    let added_seq = seq_sleep.p99_us() - sleep_us;
    println!(
        "3. p99 added latency (p99 less the {} ms sleep): LMI under load {:.1} µs, on-demand {:.1} µs: {:.2}x (target: at most 2)",
        o.sleep_ms,
        added,
        added_seq,
        added / added_seq.max(1e-9)
    );
    println!(
        "   no-op: LMI 8 callers p99 {:.1} µs, on-demand sequential p99 {:.1} µs: {:.2}x",
        noop.p99_us(),
        seq.p99_us(),
        noop.p99_us() / seq.p99_us().max(1e-9)
    );
    Ok(())
}

/// `n` callers at once, each `warmup` then `invokes` sequential invokes over
/// its own kept-alive connection; the samples after the warm-up, the wall
/// time from the first measured invoke to the last answer, and how many
/// attempts were rejected with `Runtime.Unavailable`.
fn callers(addr: SocketAddr, n: usize, warmup: usize, invokes: usize) -> Result<(Series, u64)> {
    let start = Arc::new(Barrier::new(n));
    let measured = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (start, measured) = (start.clone(), measured.clone());
            thread::spawn(move || -> Result<(Vec<u64>, Instant, Instant, u64)> {
                let mut client = Client::connect(addr)?;
                let path = format!("/2015-03-31/functions/{FUNCTION}/invocations");
                start.wait();
                let mut samples = Vec::with_capacity(invokes);
                let mut rejected = 0;
                let mut begun = Instant::now();
                for i in 0..warmup + invokes {
                    if i == warmup {
                        measured.wait();
                        begun = Instant::now();
                    }
                    let t = Instant::now();
                    loop {
                        let r = client.send("POST", &path, &[], b"{}")?;
                        if r.status == 400
                            && r.head.header("Error-Type") == Some("Runtime.Unavailable")
                        {
                            rejected += u64::from(i >= warmup);
                            thread::yield_now();
                            continue;
                        }
                        ensure!(
                            r.status == 200 && r.head.header("X-Amz-Function-Error").is_none(),
                            "invoke {i}: status {}, {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        );
                        break;
                    }
                    if i >= warmup {
                        samples.push(t.elapsed().as_nanos() as u64);
                    }
                }
                Ok((samples, begun, Instant::now(), rejected))
            })
        })
        .collect();
    let mut series = Series::default();
    let mut rejected = 0;
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for h in handles {
        let (samples, begun, ended, r) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a caller panicked"))??;
        series.latencies_ns.extend(samples);
        rejected += r;
        first = Some(first.map_or(begun, |f| f.min(begun)));
        last = Some(last.map_or(ended, |l| l.max(ended)));
    }
    if let (Some(first), Some(last)) = (first, last) {
        series.elapsed = last.saturating_duration_since(first);
    }
    Ok((series, rejected))
}

/// The benchmark's runtime (`__lmi-runtime --sleep-ms MS`): one worker per
/// unit of `AWS_LAMBDA_MAX_CONCURRENCY` (1 without it), each answering `{}`
/// after sleeping `MS`.
pub(crate) fn runtime(args: &[String]) -> Result<()> {
    let sleep_ms: u64 = value_of(args, "--sleep-ms")?.parse()?;
    let api = runtime_api()?;
    let workers: usize = std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let api = api.clone();
            thread::spawn(move || worker(&api, sleep_ms))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    Ok(())
}

fn worker(api: &str, sleep_ms: u64) -> Result<()> {
    let mut client = Client::connect(api)?;
    loop {
        let next = client.send("GET", "/2018-06-01/runtime/invocation/next", &[], b"")?;
        ensure!(next.status == 200, "/next answered {}", next.status);
        let id = next
            .head
            .header("Lambda-Runtime-Aws-Request-Id")
            .context("no request id")?
            .to_owned();
        if sleep_ms > 0 {
            thread::sleep(Duration::from_millis(sleep_ms));
        }
        let path = format!("/2018-06-01/runtime/invocation/{id}/response");
        let r = client.send("POST", &path, &[], b"{}")?;
        ensure!(r.status == 202, "/response answered {}", r.status);
    }
}
