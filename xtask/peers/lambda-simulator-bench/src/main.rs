//! The reference peer of `cargo xtask bench-sandbox`: sequential invokes
//! through the crates.io `lambda-simulator` library's in-process API.
//!
//! It builds a simulator (freeze off: see "Freezing" below), spawns the
//! extension (rust-example-extension, the same binary lext runs) through
//! the simulator's own process API, waits for it to register, starts the
//! runtime, then runs `--warmup` invokes followed by `--invokes` timed
//! ones, one after the other: `enqueue_payload({})`, then wait for the
//! runtime's response. Two ways to run the runtime and to wait:
//!
//! - default: the runtime is a thread of this
//!   process (a std::net Runtime API loop like lext's echo runtime, with no
//!   process of its own), and it tells the loop over a channel as soon as
//!   the simulator has accepted its `/response` (202). No simulator wait
//!   helper is involved.
//! - `--external-runtime PATH [--runtime-arg ARG]...`: the runtime is a
//!   process (the benchmark passes lext's own echo runtime, so both
//!   subjects run the same runtime binary), and the loop waits with
//!   `wait_for_invocation_complete`, as the crate's docs show. That helper
//!   checks the state, then awaits a `tokio::sync::Notify` woken with
//!   `notify_waiters`, which keeps no permit: a response recorded between
//!   the check and the await is missed and the wait runs to its timeout
//!   (seen here: 10 s stalls within a few hundred invokes). The loop
//!   re-arms it every millisecond, so a lost wake-up costs about 1 ms.
//!
//! Freezing: with `FreezeMode::Process` the simulator freezes from a
//! background task after each response; a thaw that lands between that
//! task's epoch check and its SIGSTOP finds nothing frozen, and the SIGSTOP
//! then stops the processes with the next invoke pending. Seen here within
//! a few hundred sequential invokes, even when each invoke waits until the
//! environment is frozen; so freezing is not measured.
//!
//! It prints one JSON object on stdout: the elapsed wall time of the timed
//! invokes and every latency, in nanoseconds. The xtask computes the
//! figures, so that every subject is summarised by the same code.
//!
//! Usage: `lambda-simulator-bench --extension PATH [--invokes N]
//! [--warmup W] [--external-runtime PATH [--runtime-arg ARG]...]`

use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use lambda_simulator::process::{ProcessConfig, ProcessRole};
use lambda_simulator::{InvocationStatus, Simulator, SimulatorError};
use tokio::sync::mpsc;

/// A bound for every wait: a stalled peer fails the benchmark instead of
/// hanging it.
const STALL: Duration = Duration::from_secs(10);

struct Args {
    external_runtime: Option<String>,
    runtime_args: Vec<String>,
    extension: String,
    invokes: usize,
    warmup: usize,
}

fn parse() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        external_runtime: None,
        runtime_args: Vec::new(),
        extension: String::new(),
        invokes: 20_000,
        warmup: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--external-runtime" => args.external_runtime = Some(value()?),
            "--runtime-arg" => args.runtime_args.push(value()?),
            "--extension" => args.extension = value()?,
            "--invokes" => args.invokes = value()?.parse()?,
            "--warmup" => args.warmup = value()?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if args.extension.is_empty() {
        return Err("--extension is required".into());
    }
    Ok(args)
}

/// One HTTP/1.1 exchange on a kept-alive connection: returns the status,
/// the request id header (if any) and the body.
fn exchange(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    request: &[u8],
) -> std::io::Result<(u16, Option<String>, Vec<u8>)> {
    writer.write_all(request)?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut id) = (0usize, None);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("lambda-runtime-aws-request-id") {
                id = Some(value.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, id, body))
}

/// The in-process runtime: `/next`, echo the payload to `/response`, and
/// report each accepted response on `done`.
fn thread_runtime(api: String, done: mpsc::UnboundedSender<()>) -> std::io::Result<()> {
    let mut writer = TcpStream::connect(&api)?;
    writer.set_nodelay(true)?;
    let mut reader = BufReader::new(writer.try_clone()?);
    let next = format!("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n");
    let mut out = Vec::with_capacity(256);
    loop {
        let (status, id, body) = exchange(&mut reader, &mut writer, next.as_bytes())?;
        let id = match (status, id) {
            (200, Some(id)) => id,
            _ => return Err(std::io::Error::other(format!("/next answered {status}"))),
        };
        out.clear();
        write!(
            out,
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: {api}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        out.extend_from_slice(&body);
        let (status, _, _) = exchange(&mut reader, &mut writer, &out)?;
        if status != 202 {
            return Err(std::io::Error::other(format!(
                "/response answered {status}"
            )));
        }
        if done.send(()).is_err() {
            return Ok(());
        }
    }
}

/// `wait_for_invocation_complete`, re-armed every millisecond (see the
/// module header for why).
async fn complete(simulator: &Simulator, id: &str) -> Result<InvocationStatus, Box<dyn Error>> {
    let deadline = Instant::now() + STALL;
    loop {
        match simulator
            .wait_for_invocation_complete(id, Duration::from_millis(1))
            .await
        {
            Ok(state) => return Ok(state.status),
            Err(SimulatorError::Timeout(_)) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

// Multi-thread with two workers: the machine's two cores for its axum
// server, as the crate is meant to run.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse()?;
    let simulator = Simulator::builder()
        .function_name("bench")
        .invocation_timeout(Duration::from_secs(3))
        .build()
        .await?;

    // Output goes to /dev/null: the simulator has no log capture, and this
    // is the cheapest choice for the peer.
    let _extension = simulator.spawn_process_with_config(
        ProcessConfig::new(&args.extension, ProcessRole::Extension).inherit_stdio(false),
    )?;
    simulator
        .wait_for(|| async { simulator.extension_count().await >= 1 }, STALL)
        .await?;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut _runtime = None;
    match &args.external_runtime {
        Some(path) => {
            let mut runtime = ProcessConfig::new(path, ProcessRole::Runtime).inherit_stdio(false);
            for arg in &args.runtime_args {
                runtime = runtime.arg(arg);
            }
            _runtime = Some(simulator.spawn_process_with_config(runtime)?);
        }
        None => {
            let api = simulator
                .runtime_api_url()
                .trim_start_matches("http://")
                .to_owned();
            std::thread::spawn(move || {
                let closed = done_tx.clone();
                // Once the loop is over, the simulator's shutdown ends the
                // long poll with an error that means nothing.
                if let Err(e) = thread_runtime(api, done_tx) {
                    if !closed.is_closed() {
                        eprintln!("runtime thread: {e}");
                    }
                }
            });
        }
    }

    let mut latencies = Vec::with_capacity(args.invokes);
    let mut started = Instant::now();
    for i in 0..args.warmup + args.invokes {
        if i == args.warmup {
            started = Instant::now();
        }
        let t = Instant::now();
        let id = simulator.enqueue_payload(serde_json::json!({})).await;
        let status = if args.external_runtime.is_some() {
            complete(&simulator, &id)
                .await
                .map_err(|e| format!("invoke {i}: {e}"))?
        } else {
            match tokio::time::timeout(STALL, done_rx.recv()).await {
                Ok(Some(())) => InvocationStatus::Success,
                _ => {
                    return Err(format!("invoke {i}: the runtime thread stopped or stalled").into())
                }
            }
        };
        let latency = t.elapsed();
        if status != InvocationStatus::Success {
            return Err(format!("invoke {i} ended with {status:?}").into());
        }
        if i >= args.warmup {
            latencies.push(latency.as_nanos() as u64);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "elapsed_ns": elapsed.as_nanos() as u64,
            "latencies_ns": latencies,
        })
    );
    drop(done_rx);
    simulator.shutdown().await;
    Ok(())
}
