//! `bench-function`: the figures of issue 8 (BENCHMARKS.md).
//!
//! 1. **A cold start does not delay warm invokes.** `lext run --serve
//!    --tenant-isolation --concurrency 3`, with rust-example-extension and a
//!    std-only runtime whose Init sleeps `--init-ms` (500). Two callers of
//!    tenant `warm` keep two environments busy with sequential invokes. In
//!    each round they run alone first (the reference), then again while a
//!    third caller invokes as a new tenant, which starts a third
//!    environment and its 500 ms Init: the warm invokes that overlap that
//!    cold start are the subject. p99 of both, side by side.
//! 2. **Streaming throughput.** The same runtime streams `--stream-mb` MB
//!    (64 KiB chunks) to `InvokeWithResponseStream` under
//!    `--no-stream-rate-limit`; the caller reads the whole event stream.
//!    The reference is one loopback TCP transfer of the same bytes in the
//!    same chunks, measured in the same run: the two hops of lext's path
//!    (runtime to lext, lext to caller) cannot beat one.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::sandbox::http::Client;
use crate::sandbox::lext::{Server, FUNCTION};
use crate::sandbox::stats::percentile;
use crate::sandbox::telemetry::{runtime_api, value_of};

#[derive(Debug)]
struct Options {
    invokes: usize,
    rounds: usize,
    init_ms: u64,
    stream_mb: usize,
    build: bool,
    lext: Option<PathBuf>,
}

pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut o = Options {
        invokes: 2_000,
        rounds: 5,
        init_ms: 500,
        stream_mb: 200,
        build: true,
        lext: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--invokes" => o.invokes = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--init-ms" => o.init_ms = value()?.parse()?,
            "--stream-mb" => o.stream_mb = value()?.parse()?,
            "--no-build" => o.build = false,
            "--lext" => o.lext = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(
        o.invokes >= 10 && o.rounds >= 1 && o.stream_mb >= 1,
        "--invokes must be at least 10, --rounds and --stream-mb at least 1"
    );
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
    let runtime = format!(
        "{} __function-runtime --init-ms {}",
        xtask.display(),
        o.init_ms
    );

    // ----- 1. warm invokes around a cold start -----------------------------
    let server = Server::start(
        &lext,
        &extension,
        &[
            "--tenant-isolation",
            "--concurrency",
            "3",
            "--function",
            &runtime,
        ],
    )?;
    // Two warm environments of tenant `warm`.
    let warmup = thread::scope(|s| {
        let a = s.spawn(|| invoke_once(server.addr, "warm"));
        let b = s.spawn(|| invoke_once(server.addr, "warm"));
        (a.join(), b.join())
    });
    match warmup {
        (Ok(Ok(_)), Ok(Ok(_))) => {}
        other => bail!("warm-up failed: {other:?}\n{}", server.stderr_tail()),
    }
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    let mut cold_ms = Vec::new();
    for round in 0..o.rounds {
        alone.extend(warm_callers(server.addr, o.invokes, None)?.0);
        let (during, cold) = warm_callers(server.addr, o.invokes, Some(round))?;
        ensure!(
            !during.is_empty(),
            "no warm invoke overlapped the cold start"
        );
        beside.extend(during);
        cold_ms.extend(cold.map(|d| d.as_secs_f64() * 1000.0));
        eprintln!(
            "round {}: {} warm invokes during a cold start",
            round + 1,
            beside.len()
        );
    }
    let clean = server.stop()?;
    ensure!(clean, "lext did not stop within 10 s of SIGTERM");
    let p = |s: &[u64], q: f64| percentile(s, q) as f64 / 1000.0;
    println!("\nwarm invokes, 2 callers of tenant `warm` (2 environments), rust-example-extension in each:");
    println!(
        "{:<52} {:>8} {:>10} {:>10}",
        "", "invokes", "p50 µs", "p99 µs"
    );
    println!(
        "{:<52} {:>8} {:>10.1} {:>10.1}",
        "alone (reference)",
        alone.len(),
        p(&alone, 50.0),
        p(&alone, 99.0)
    );
    println!(
        "{:<52} {:>8} {:>10.1} {:>10.1}",
        "while a third environment runs its Init",
        beside.len(),
        p(&beside, 50.0),
        p(&beside, 99.0)
    );
    println!(
        "p99 during the cold start / p99 alone: {:.2} (target: at most 2.00); the cold invokes took {:.0} ms median ({} ms of it the runtime's Init)",
        p(&beside, 99.0) / p(&alone, 99.0).max(1e-9),
        median_f64(&mut cold_ms),
        o.init_ms
    );

    // ----- 2. streaming throughput -------------------------------------------
    let bytes = o.stream_mb * 1024 * 1024;
    let server = Server::start(
        &lext,
        &extension,
        &["--no-stream-rate-limit", "--function", &runtime],
    )?;
    let mut through = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..o.rounds {
        let t = stream_once(server.addr, bytes)?;
        through.push(bytes as f64 / t.as_secs_f64() / 1e6);
        let t = loopback(bytes)?;
        floor.push(bytes as f64 / t.as_secs_f64() / 1e6);
    }
    let clean = server.stop()?;
    ensure!(clean, "lext did not stop within 10 s of SIGTERM");
    println!(
        "\nstreaming {} MiB (64 KiB chunks), --no-stream-rate-limit, median of {} rounds:",
        o.stream_mb, o.rounds
    );
    println!(
        "  runtime -> lext -> InvokeWithResponseStream caller: {:>8.0} MB/s (target: at least 500)",
        median_f64(&mut through)
    );
    println!(
        "  one loopback TCP transfer (the floor's reference):  {:>8.0} MB/s",
        median_f64(&mut floor)
    );
    Ok(())
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn invoke_path() -> String {
    format!("/2015-03-31/functions/{FUNCTION}/invocations")
}

fn invoke_once(addr: SocketAddr, tenant: &str) -> Result<Duration> {
    let mut client = Client::connect(addr)?;
    let t = Instant::now();
    let r = client.send(
        "POST",
        &invoke_path(),
        &[("X-Amz-Tenant-Id", tenant)],
        b"{}",
    )?;
    ensure!(r.status == 200, "invoke answered {}", r.status);
    Ok(t.elapsed())
}

/// Two callers of tenant `warm`, `n` sequential invokes each. With `cold`,
/// a third caller invokes as tenant `cold-N` once the warm ones are under
/// way; then only the warm invokes that started while that cold invoke
/// ran are returned, with the cold invoke's time.
fn warm_callers(
    addr: SocketAddr,
    n: usize,
    cold: Option<usize>,
) -> Result<(Vec<u64>, Option<Duration>)> {
    let start = Arc::new(Barrier::new(if cold.is_some() { 3 } else { 2 }));
    let t0 = Instant::now();
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || -> Result<Vec<(Duration, u64)>> {
                let mut client = Client::connect(addr)?;
                let path = invoke_path();
                start.wait();
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let begin = t0.elapsed();
                    let t = Instant::now();
                    let r = client.send("POST", &path, &[("X-Amz-Tenant-Id", "warm")], b"{}")?;
                    ensure!(r.status == 200, "warm invoke answered {}", r.status);
                    out.push((begin, t.elapsed().as_nanos() as u64));
                }
                Ok(out)
            })
        })
        .collect();
    let window = match cold {
        Some(round) => {
            start.wait();
            // A quarter of the way in, so that warm invokes surround it.
            thread::sleep(Duration::from_millis(50));
            let begin = t0.elapsed();
            let took = invoke_once(addr, &format!("cold-{round}"))?;
            Some((begin, begin + took, took))
        }
        None => None,
    };
    let mut samples = Vec::new();
    for caller in callers {
        let out = caller
            .join()
            .map_err(|_| anyhow::anyhow!("a caller panicked"))??;
        samples.extend(out.into_iter().filter(|(begin, _)| match window {
            Some((from, to, _)) => *begin >= from && *begin <= to,
            None => true,
        }));
    }
    Ok((
        samples.into_iter().map(|(_, ns)| ns).collect(),
        window.map(|w| w.2),
    ))
}

/// One `InvokeWithResponseStream` of `bytes`, read whole; its wall time.
fn stream_once(addr: SocketAddr, bytes: usize) -> Result<Duration> {
    let mut client = Client::connect(addr)?;
    let path = format!("/2021-11-15/functions/{FUNCTION}/response-streaming-invocations");
    let body = format!(r#"{{"stream":{bytes}}}"#);
    let t = Instant::now();
    let r = client.send("POST", &path, &[], body.as_bytes())?;
    let took = t.elapsed();
    ensure!(r.status == 200, "streaming invoke answered {}", r.status);
    ensure!(
        r.body.len() >= bytes,
        "the event stream held {} bytes, fewer than the {bytes} streamed",
        r.body.len()
    );
    Ok(took)
}

/// One loopback transfer of `bytes` in 64 KiB writes, read to the end.
fn loopback(bytes: usize) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let chunk = vec![b'x'; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            s.write_all(&chunk[..n])?;
            left -= n;
        }
        Ok(())
    });
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let took = t.elapsed();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("loopback writer panicked"))??;
    ensure!(got == bytes, "loopback moved {got} of {bytes} bytes");
    Ok(took)
}

const CHUNK: usize = 64 * 1024;

/// The benchmark's runtime (`__function-runtime --init-ms MS`): sleeps
/// `MS` in its Init, then answers each invoke with `{}`, or, for a payload
/// `{"stream":N}`, streams N bytes in 64 KiB chunks.
pub(crate) fn runtime(args: &[String]) -> Result<()> {
    let init_ms: u64 = value_of(args, "--init-ms")?.parse()?;
    let api = runtime_api()?;
    thread::sleep(Duration::from_millis(init_ms));
    let mut client = Client::connect(api.as_str())?;
    loop {
        let next = client.send("GET", "/2018-06-01/runtime/invocation/next", &[], b"")?;
        ensure!(next.status == 200, "/next answered {}", next.status);
        let id = next
            .head
            .header("Lambda-Runtime-Aws-Request-Id")
            .context("no request id")?
            .to_owned();
        let path = format!("/2018-06-01/runtime/invocation/{id}/response");
        let event: serde_json::Value = serde_json::from_slice(&next.body).unwrap_or_default();
        match event.get("stream").and_then(serde_json::Value::as_u64) {
            Some(bytes) => stream(&api, &path, bytes as usize)?,
            None => {
                let r = client.send("POST", &path, &[], b"{}")?;
                ensure!(r.status == 202, "/response answered {}", r.status);
            }
        }
    }
}

/// A streamed response: chunked, `Lambda-Runtime-Function-Response-Mode:
/// streaming`, on a connection of its own.
fn stream(api: &str, path: &str, bytes: usize) -> Result<()> {
    let mut s = TcpStream::connect(api)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n\
         Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
    )?;
    let mut frame = Vec::with_capacity(CHUNK + 16);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        frame.clear();
        write!(frame, "{n:x}\r\n")?;
        frame.resize(frame.len() + n, b'x');
        frame.extend_from_slice(b"\r\n");
        s.write_all(&frame)?;
        left -= n;
    }
    s.write_all(b"0\r\n\r\n")?;
    // The answer (202) comes once the body is read.
    let mut answer = [0u8; 512];
    let n = s.read(&mut answer)?;
    let head = String::from_utf8_lossy(&answer[..n]);
    ensure!(
        head.starts_with("HTTP/1.1 202"),
        "streamed /response answered {head:?}"
    );
    Ok(())
}
