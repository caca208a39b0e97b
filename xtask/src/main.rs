//! Project tasks. Run with `cargo run -p xtask --release -- <task>`.
//!
//! # Layout
//!
//! - `bench`: `bench-extension`, the extension start-up and round-trip
//!   benchmark of issue 2 (figures in BENCHMARKS.md).
//! - `api`: the minimal Extensions API the benchmark drives extensions with.
//! - `bin/floor-extension.rs`: the std-only reference client (the floor).
//! - `peers/official-extension`: the same minimal extension on the official
//!   `lambda-extension` crate (a separate workspace, built only on request).
//! - `bench_sandbox`: `bench-sandbox`, the `lext run` benchmark of issue 3
//!   (invokes/s, added latency, cold start, telemetry; figures in
//!   BENCHMARKS.md), with its parts in `sandbox/`.
//! - `bench_function`: `bench-function`, the figures of issue 8: warm
//!   invokes beside a cold start in a new environment, and streaming
//!   throughput against the loopback (BENCHMARKS.md).
//! - `bench_lmi`: `bench-lmi`, the figures of issue 11: Lambda Managed
//!   Instances' concurrent throughput and added latency against the
//!   on-demand environment of the same build (BENCHMARKS.md).
//! - `peers/lambda-simulator-bench`: its reference, the crates.io
//!   `lambda-simulator` (a separate workspace, built only on request).
//! - `bench_telemetry`: `bench-telemetry`, issue 12's target for the SDK's
//!   tokio flavour and telemetry listener: a telemetry extension on each
//!   lext flavour (`peers/lext-telemetry-extension`) against one on the
//!   official crate (`peers/official-telemetry-extension`), both separate
//!   workspaces built on request (BENCHMARKS.md).
//! - `private_hosts`: the generated `/etc/hosts` (in a private mount
//!   namespace) that `bench-telemetry` starts every subject with.

#![allow(clippy::print_stdout)] // A task runner: its output is for the terminal.

mod api;
mod bench;
mod bench_function;
mod bench_lmi;
mod bench_sandbox;
mod bench_telemetry;
mod cargo;
mod private_hosts;
mod sandbox;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo run -p xtask --release -- <task>

tasks:
  bench-extension [--runs N] [--invokes K] [--no-build] [--with-official]
                  [--floor PATH] [--port PATH] [--peer NAME=PATH]...
      Starts each extension binary N times (default 31) against a minimal
      local Extensions API, delivers K INVOKEs (default 20) and a SHUTDOWN per
      run, and prints medians: stripped size, spawn to register, spawn to
      first /event/next, INVOKE round trip, SHUTDOWN to exit, peak RSS.
      Measures rust-example-extension and the std-only floor side by side,
      plus, with --with-official, an extension on the official
      lambda-extension crate (xtask/peers/official-extension, its own
      workspace, built on demand), and any --peer binaries. --floor and
      --port replace the two default binaries (then they are not built).
      A binary that does not connect or stalls for 10 s is killed and the
      benchmark fails with its name.
  bench-sandbox [--invokes N] [--warmup W] [--rounds R] [--cold-runs C]
                [--cold-gap-ms G] [--lines L] [--no-build] [--no-simulator]
                [--lext PATH] [--one-cpu]
      Builds the release lext and rust-example-extension (and the
      lambda-simulator peer, xtask/peers/lambda-simulator-bench), then
      measures, side by side: sequential invokes/s and p50/p99 latency over
      `lext run --serve` (freeze on and --no-freeze) and over the crates.io
      lambda-simulator's in-process API, R rounds (default 5) of N (10000)
      after W (1000) warm-up; the loopback floor of an invoke's 6 round
      trips; the cold start (Init Duration vs the same processes on a
      minimal API, C runs, default 21, each after a pause of G ms, default
      250, so that each starts on a quiet kernel); and L (100000) function log lines
      delivered to a Telemetry API subscriber. --lext measures another lext
      binary (A/B of two commits). --one-cpu pins every process of the
      run to one CPU (steadier: no cross-vCPU wake-ups).
  bench-function [--invokes N] [--rounds R] [--init-ms MS] [--stream-mb M]
                 [--no-build] [--lext PATH]
      With `lext run --serve --tenant-isolation --concurrency 3` and
      rust-example-extension: two callers keep two warm environments busy,
      N invokes each (default 2000), alone and then while a new tenant's
      environment runs an Init of MS ms (default 500); p50/p99 of both, R
      rounds (default 5). Then M MiB (default 200) streamed through
      InvokeWithResponseStream with --no-stream-rate-limit, against one
      loopback TCP transfer of the same bytes.
  bench-lmi [--invokes N] [--warmup W] [--sleep-ms MS] [--no-build] [--lext PATH]
      `lext run --serve --managed-instances` with rust-example-extension and
      a std-only worker-pool runtime: 16 workers and 16 callers with a
      handler sleeping MS ms (default 10), then 8 and 8 with a no-op
      handler, each caller N invokes (default 1000) after W (100); side by
      side with one sequential caller of the on-demand environment: invokes/s,
      p50, p99, p99 added latency, rejected attempts (Runtime.Unavailable).
  bench-telemetry [--runs N] [--batches B] [--records R] [--no-build]
                  [--no-hosts] [--blocking PATH] [--tokio PATH]
                  [--official PATH] [--peer NAME=PATH]...
      Builds the same Telemetry API subscriber on lext-extension's blocking
      flavour, on its tokio flavour (current-thread) and on the official
      lambda-extension crate (xtask/peers/lext-telemetry-extension and
      official-telemetry-extension, separate workspaces), and for each, N
      interleaved runs (default 31): answers register and the subscription,
      POSTs B batches (default 10) of R Telemetry API records (default
      1000) to its listener, each timed from the request written to the
      handler's line on its stdout, then SHUTDOWN. Prints medians: stripped
      size, spawn to first /event/next, batch to handler, peak RSS, and the
      ratios to the official crate against issue 12's target (size and RSS
      <= 0.7x, no slower). --blocking/--tokio/--official replace a subject
      (then it is not built); --peer adds one (another build of a lext
      subject, for an A/B). A subject that stalls for 10 s is killed and
      the benchmark fails with its name. Every subject starts in a private
      mount namespace with a generated /etc/hosts naming sandbox.localdomain
      (127.0.0.1), as in Lambda and lext run; that needs root or
      CAP_SYS_ADMIN, and fails otherwise. --no-hosts measures with the
      machine's own /etc/hosts instead, and the table says so.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench-extension") => bench::main(&args[1..]),
        Some("bench-sandbox") => bench_sandbox::main(&args[1..]),
        Some("bench-function") => bench_function::main(&args[1..]),
        Some("__function-runtime") => bench_function::runtime(&args[1..]),
        Some("bench-lmi") => bench_lmi::main(&args[1..]),
        Some("bench-telemetry") => bench_telemetry::main(&args[1..]),
        Some("__lmi-runtime") => bench_lmi::runtime(&args[1..]),
        // Helper roles of bench-sandbox, run by `lext run` (not for users).
        Some("__sandbox-log-runtime") => sandbox::telemetry::log_runtime(&args[1..]),
        Some("__sandbox-telemetry-subscriber") => sandbox::telemetry::subscriber(&args[1..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
