//! The reference peer of `cargo xtask bench-sandbox`: sequential invokes
//! through the crates.io `lambda-simulator` library's in-process API.
//!
//! It builds a simulator, spawns the extension and the runtime through the
//! simulator's own process API (so their PIDs are registered for its
//! SIGSTOP/SIGCONT freezing), waits for the extension to register, then
//! runs `--warmup` invokes followed by `--invokes` timed ones, each
//! `enqueue_payload({})` → `wait_for_invocation_complete`, one after the
//! other. With `--wait-extensions` each invoke also waits until every
//! INVOKE-subscribed extension is back in `/event/next` (what Lambda and
//! lext wait for before the next invoke starts). With `--freeze`
//! (`FreezeMode::Process`) each invoke also waits until the simulator has
//! frozen the processes (see the loop for why).
//!
//! It prints one JSON object on stdout: the elapsed wall time of the timed
//! invokes and every latency, in nanoseconds. The xtask computes the
//! figures, so that both subjects are summarised by the same code.
//!
//! Usage: `lambda-simulator-bench --runtime PATH [--runtime-arg ARG]...
//! --extension PATH [--invokes N] [--warmup W] [--freeze] [--wait-extensions]`

use std::error::Error;
use std::time::{Duration, Instant};

use lambda_simulator::process::{ProcessConfig, ProcessRole};
use lambda_simulator::{FreezeMode, InvocationStatus, Simulator, SimulatorError};

/// A bound for every wait: a stalled peer fails the benchmark instead of
/// hanging it.
const STALL: Duration = Duration::from_secs(10);

struct Args {
    runtime: String,
    runtime_args: Vec<String>,
    extension: String,
    invokes: usize,
    warmup: usize,
    freeze: bool,
    wait_extensions: bool,
}

fn parse() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        runtime: String::new(),
        runtime_args: Vec::new(),
        extension: String::new(),
        invokes: 20_000,
        warmup: 1_000,
        freeze: false,
        wait_extensions: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runtime" => args.runtime = value()?,
            "--runtime-arg" => args.runtime_args.push(value()?),
            "--extension" => args.extension = value()?,
            "--invokes" => args.invokes = value()?.parse()?,
            "--warmup" => args.warmup = value()?.parse()?,
            "--freeze" => args.freeze = true,
            "--wait-extensions" => args.wait_extensions = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if args.runtime.is_empty() || args.extension.is_empty() {
        return Err("--runtime and --extension are required".into());
    }
    Ok(args)
}

/// `wait_for_invocation_complete`, re-armed every millisecond.
///
/// Why: the simulator checks the state, then awaits a `Notify` that is
/// woken with `notify_waiters`, which keeps no permit; a response recorded
/// between the check and the await is missed and the wait runs to its full
/// timeout (seen here: a 10 s stall within the first few hundred invokes).
/// A 1 ms re-check bounds that lost wake-up to 1 ms; it shows in the p99.
async fn complete(
    simulator: &Simulator,
    id: &str,
) -> Result<lambda_simulator::InvocationState, Box<dyn Error>> {
    let deadline = Instant::now() + STALL;
    loop {
        match simulator
            .wait_for_invocation_complete(id, Duration::from_millis(1))
            .await
        {
            Ok(state) => return Ok(state),
            Err(SimulatorError::Timeout(_)) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `wait_for_extensions_ready`, re-armed every millisecond for the same
/// reason (a 10 s stall seen here too).
async fn extensions_ready(simulator: &Simulator, id: &str) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + STALL;
    loop {
        match simulator
            .wait_for_extensions_ready(id, Duration::from_millis(1))
            .await
        {
            Ok(()) => return Ok(()),
            Err(SimulatorError::Timeout(_)) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `wait_for_frozen`, re-armed every millisecond for the same reason.
async fn frozen(simulator: &Simulator) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + STALL;
    loop {
        match simulator.wait_for_frozen(Duration::from_millis(1)).await {
            Ok(()) => return Ok(()),
            Err(SimulatorError::Timeout(_)) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

// Multi-thread with two workers, like `lext run`'s runtime, so that both
// subjects get the machine's two cores for their servers.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse()?;
    let simulator = Simulator::builder()
        .function_name("bench")
        .invocation_timeout(Duration::from_secs(3))
        .freeze_mode(if args.freeze {
            FreezeMode::Process
        } else {
            FreezeMode::None
        })
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
    let mut runtime = ProcessConfig::new(&args.runtime, ProcessRole::Runtime).inherit_stdio(false);
    for arg in &args.runtime_args {
        runtime = runtime.arg(arg);
    }
    let _runtime = simulator.spawn_process_with_config(runtime)?;

    let mut latencies = Vec::with_capacity(args.invokes);
    let mut started = Instant::now();
    for i in 0..args.warmup + args.invokes {
        if i == args.warmup {
            started = Instant::now();
        }
        let t = Instant::now();
        let id = simulator.enqueue_payload(serde_json::json!({})).await;
        let state = complete(&simulator, &id)
            .await
            .map_err(|e| format!("invoke {i}: {e}"))?;
        let latency = t.elapsed();
        if state.status != InvocationStatus::Success {
            return Err(format!("invoke {i} ended with {:?}", state.status).into());
        }
        if args.wait_extensions {
            extensions_ready(&simulator, &id)
                .await
                .map_err(|e| format!("invoke {i}: extensions: {e}"))?;
        }
        if args.freeze {
            // The simulator freezes from a background task after the
            // response; an enqueue that lands between that task's epoch
            // check and its SIGSTOP is lost (the thaw finds nothing frozen,
            // then the SIGSTOP stops the processes with the invoke pending:
            // a 10 s stall, seen here). So wait until it is frozen before
            // the next invoke, as its own freeze tests do.
            frozen(&simulator)
                .await
                .map_err(|e| format!("invoke {i}: freeze: {e}"))?;
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
    simulator.shutdown().await;
    Ok(())
}
