//! `bench-sandbox`: the figures of issue 3's targets for `lext run`,
//! measured side by side with their references in one run.
//!
//! This module owns the procedure and the report; the parts live in
//! [`crate::sandbox`]. In order:
//!
//! 1. **Invokes** (R rounds, interleaved so a noisy moment on the shared
//!    2-core machine hits every subject alike): `lext run --serve` with the
//!    built-in echo runtime and rust-example-extension, freeze on (the
//!    default) and `--no-freeze`, driven over one kept-alive HTTP
//!    connection; the crates.io `lambda-simulator` through its in-process
//!    API (`xtask/peers/lambda-simulator-bench`, its own workspace) with
//!    rust-example-extension and either a runtime thread in its process
//!    that signals the loop, or lext's echo runtime process waited for
//!    with its own helper (freeze off: its freeze mode stalls under back-to-back
//!    invokes, see the peer); and the loopback floor: chains of the 6 round trips an
//!    invoke needs, on a std::net echo pair.
//! 2. **Cold start**: `lext run --invoke 1`'s Init Duration (from the
//!    sandbox's REPORT line: first process launched → runtime in `/next`
//!    and every extension in `/event/next`) next to the floor Init of the
//!    same two processes on a minimal std::net API.
//! 3. **Telemetry**: 100,000 lines from the function during one invoke,
//!    counted one by one at a Telemetry API subscriber, next to the floor
//!    of the same bytes in the same number of POSTs over loopback.
//!
//! The results are printed as Markdown tables for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::sandbox::stats::{self, Series};
use crate::sandbox::{floor, lext, telemetry};

/// The round trips of one invoke: client → server, server → extension
/// (INVOKE), extension → `/event/next`, server → runtime (`/next` answer),
/// runtime → `/response`, runtime → `/next`.
const ROUND_TRIPS: usize = 6;
/// Of these, the ones on the caller's path to the response: the invoke
/// request/answer and the runtime's `/next` answer → `/response`.
const CRITICAL_ROUND_TRIPS: usize = 2;
/// The pause between paced invokes: longer than lext's 2 ms freeze delay,
/// so that every paced invoke finds the environment frozen.
const PACED_GAP: Duration = Duration::from_millis(5);
/// Paced invokes per round.
const PACED_INVOKES: usize = 300;

struct Options {
    invokes: usize,
    warmup: usize,
    rounds: usize,
    cold_runs: usize,
    /// The pause before each cold run, so that each starts on a quiet
    /// kernel as a user's does (back to back, one run's cgroup moves can
    /// leave the next one's fast).
    cold_gap: Duration,
    lines: u64,
    build: bool,
    simulator: bool,
    /// Another lext binary to measure instead of the release build (for
    /// A/B comparisons of two commits).
    lext: Option<PathBuf>,
    /// Pin this process, and so every thread and process it starts, to one
    /// CPU.
    one_cpu: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `gap`: invokes sent this long after the previous answer, so that
    /// the environment is frozen when each arrives (zero: back to back).
    Lext { freeze: bool, gap: Duration },
    /// `external`: lext's echo runtime as a process, waited for with the
    /// simulator's own helper; otherwise a runtime thread in the peer that
    /// signals the loop (no simulator wait helper involved).
    Simulator { external: bool },
}

struct Subject {
    label: &'static str,
    kind: Kind,
    series: Series,
    /// Each round's invokes/s, for the table (the spread shows the noise).
    rounds: Vec<f64>,
}

pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut o = Options {
        invokes: 10_000,
        warmup: 1_000,
        rounds: 5,
        cold_runs: 21,
        cold_gap: Duration::from_millis(250),
        lines: 100_000,
        build: true,
        simulator: true,
        lext: None,
        one_cpu: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--invokes" => o.invokes = value()?.parse()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--cold-runs" => o.cold_runs = value()?.parse()?,
            "--cold-gap-ms" => o.cold_gap = Duration::from_millis(value()?.parse()?),
            "--lines" => o.lines = value()?.parse()?,
            "--no-build" => o.build = false,
            "--no-simulator" => o.simulator = false,
            "--lext" => o.lext = Some(PathBuf::from(value()?)),
            "--one-cpu" => o.one_cpu = true,
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(
        o.invokes >= 1 && o.rounds >= 1 && o.cold_runs >= 1 && o.lines >= 1,
        "--invokes, --rounds, --cold-runs and --lines must be at least 1"
    );

    let target = crate::cargo::target_dir()?;
    let release = target.join("release");
    let peers = target.join("peers");
    if o.build {
        crate::cargo::build_release(&["-p", "lext", "-p", "rust-example-extension"])?;
        if o.simulator {
            crate::cargo::build_peer("lambda-simulator-bench", &peers, &[])?;
        }
    }
    let lext_bin = o.lext.clone().unwrap_or_else(|| release.join("lext"));
    let extension = release.join("rust-example-extension");
    let sim_bin = peers.join("release/lambda-simulator-bench");
    for path in [&lext_bin, &extension] {
        ensure!(
            path.is_file(),
            "{} is missing (build it, or drop --no-build)",
            path.display()
        );
    }
    if o.simulator {
        ensure!(sim_bin.is_file(), "{} is missing", sim_bin.display());
    }
    let xtask = std::env::current_exe().context("the xtask executable")?;
    // After the builds (cargo keeps both CPUs), before any thread starts.
    if o.one_cpu {
        let cpu = pin_to_current_cpu()?;
        eprintln!("pinned to CPU {cpu}: every process of the benchmark runs on it");
    }

    let mut subjects = vec![
        Subject {
            label: "lext run --serve, freeze on (default)",
            kind: Kind::Lext {
                freeze: true,
                gap: Duration::ZERO,
            },
            series: Series::default(),
            rounds: Vec::new(),
        },
        Subject {
            label: "lext run --serve --no-freeze",
            kind: Kind::Lext {
                freeze: false,
                gap: Duration::ZERO,
            },
            series: Series::default(),
            rounds: Vec::new(),
        },
        Subject {
            label: "lext run --serve, freeze on, invokes 5 ms apart (each one thaws)",
            kind: Kind::Lext {
                freeze: true,
                gap: PACED_GAP,
            },
            series: Series::default(),
            rounds: Vec::new(),
        },
    ];
    if o.simulator {
        for (label, external) in [
            (
                "lambda-simulator 0.2, runtime thread in its process (signals the loop)",
                false,
            ),
            (
                "lambda-simulator 0.2, lext's echo runtime process + wait_for_invocation_complete",
                true,
            ),
        ] {
            subjects.push(Subject {
                label,
                kind: Kind::Simulator { external },
                series: Series::default(),
                rounds: Vec::new(),
            });
        }
    }

    // ----- 1. invokes ------------------------------------------------------
    eprintln!(
        "invokes: {} rounds x {} subjects x ({} warm-up + {} timed)",
        o.rounds,
        subjects.len(),
        o.warmup,
        o.invokes
    );
    let mut floor_chain: Vec<u64> = Vec::new();
    for round in 0..o.rounds {
        for s in &mut subjects {
            let series = match s.kind {
                Kind::Lext { freeze, gap } => {
                    let extra: &[&str] = if freeze { &[] } else { &["--no-freeze"] };
                    let server = lext::Server::start(&lext_bin, &extension, extra)?;
                    // Paced invokes take 5 ms each: fewer of them.
                    let (warmup, n) = if gap.is_zero() {
                        (o.warmup, o.invokes)
                    } else {
                        (20, PACED_INVOKES)
                    };
                    let series = lext::invokes(server.addr, warmup, n, gap).with_context(|| {
                        format!("{}; lext stderr:\n{}", s.label, server.stderr_tail())
                    })?;
                    if !server.stop()? {
                        eprintln!("warning: {} did not exit within 10 s of SIGTERM", s.label);
                    }
                    series
                }
                Kind::Simulator { external } => {
                    simulator(&sim_bin, &lext_bin, &extension, &o, external)
                        .with_context(|| s.label.to_owned())?
                }
            };
            eprintln!(
                "  round {}: {:<66} {:>8.0} invokes/s  p50 {:>6.1} µs  p99 {:>6.1} µs",
                round + 1,
                s.label,
                series.rate(),
                series.median_us(),
                series.p99_us()
            );
            s.rounds.push(series.rate());
            s.series.extend(series);
        }
        floor_chain.extend(floor::round_trips(2_000, ROUND_TRIPS)?);
    }
    let chain_us = stats::percentile(&floor_chain, 50.0) as f64 / 1000.0;
    let chain_p99_us = stats::percentile(&floor_chain, 99.0) as f64 / 1000.0;
    // One round trip: a sixth of the chain (a separate short series of
    // single round trips is at the mercy of one noisy moment).
    let rt_us = chain_us / ROUND_TRIPS as f64;

    // ----- 2. cold start ---------------------------------------------------
    eprintln!(
        "cold start: {} runs, interleaved with the floor, {} ms apart",
        o.cold_runs,
        o.cold_gap.as_millis()
    );
    let mut lext_init = Vec::new();
    let mut lext_wall = Vec::new();
    let mut floor_init = Vec::new();
    let mut lext_first = Vec::new();
    // One warm-up of each (page cache, dynamic loader).
    floor::init(&extension, &lext_bin, &["__echo-runtime"])?;
    lext::cold_start(&lext_bin, &extension)?;
    for _ in 0..o.cold_runs {
        std::thread::sleep(o.cold_gap);
        floor_init.push(floor::init(&extension, &lext_bin, &["__echo-runtime"])?);
        let (init, wall) = lext::cold_start(&lext_bin, &extension)?;
        lext_init.push(init);
        lext_wall.push(wall);
        lext_first.push(lext::first_answer(&lext_bin, &extension)?);
    }
    // Paired: run i of lext minus run i of the floor, taken back to back,
    // so that a slow moment of the shared machine cancels out.
    let added: Vec<i64> = lext_init
        .iter()
        .zip(&floor_init)
        .map(|(l, f)| l.as_nanos() as i64 - f.as_nanos() as i64)
        .collect();
    let mut sorted = added.clone();
    sorted.sort_unstable();
    let added_median_ms = sorted[sorted.len() / 2] as f64 / 1e6;
    let lext_init = stats::median(&lext_init);
    let floor_init = stats::median(&floor_init);
    let lext_wall = stats::median(&lext_wall);
    let lext_first = stats::median(&lext_first);

    // ----- 3. telemetry ----------------------------------------------------
    eprintln!("telemetry: {} lines in one invoke", o.lines);
    let scratch = std::env::temp_dir().join(format!("lext-bench-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let tel_nofreeze = telemetry::measure(&lext_bin, &xtask, o.lines, &scratch, false);
    let tel_freeze = telemetry::measure(&lext_bin, &xtask, o.lines, &scratch, true);
    let _ = std::fs::remove_dir_all(&scratch);
    let tels = [
        (
            "`--serve --no-freeze`, one invoke, wait for all",
            tel_nofreeze?,
        ),
        (
            "`--invoke 1` (freeze on), one invoke then spindown",
            tel_freeze?,
        ),
    ];
    let bulk = floor::bulk(tels[0].1.batches as usize, tels[0].1.bytes as usize)?;
    let pipe = floor::pipe(o.lines)?;

    // ----- report ----------------------------------------------------------
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "Sequential invokes ({} rounds x {} timed, after {} warm-up each; one kept-alive connection):",
        o.rounds, o.invokes, o.warmup
    );
    println!();
    println!("| subject | invokes/s (each round) | p50 | p99 | added p50 over the {ROUND_TRIPS}-round-trip floor | over the {CRITICAL_ROUND_TRIPS} on the response path |");
    println!("|---|---|---|---|---|---|");
    for s in &subjects {
        let p50 = s.series.median_us();
        // A paced series' wall time is mostly its pauses: no rate.
        let rate = match s.kind {
            Kind::Lext { gap, .. } if !gap.is_zero() => "– (paced)".to_owned(),
            _ => {
                let rounds: Vec<String> = s.rounds.iter().map(|r| format!("{r:.0}")).collect();
                format!("{:.0} ({})", s.series.rate(), rounds.join(" / "))
            }
        };
        println!(
            "| {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            s.label,
            rate,
            p50,
            s.series.p99_us(),
            p50 - chain_us,
            p50 - rt_us * CRITICAL_ROUND_TRIPS as f64
        );
    }
    println!(
        "| loopback floor: {ROUND_TRIPS} sequential round trips ({} B each way) | {:.0} | {:.1} µs | {:.1} µs | – | – |",
        floor::MESSAGE,
        1e6 / chain_us,
        chain_us,
        chain_p99_us
    );
    println!(
        "| loopback floor: {CRITICAL_ROUND_TRIPS} round trips (the response path; {rt_us:.1} µs each) | – | {:.1} µs | – | – | – |",
        rt_us * CRITICAL_ROUND_TRIPS as f64
    );
    println!();
    println!(
        "Cold start (median of {} runs each, {} ms apart):",
        o.cold_runs,
        o.cold_gap.as_millis()
    );
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| lext Init Duration (REPORT line: first process launched → runtime in /next and extension in /event/next) | {:.2} ms |", ms(lext_init));
    println!(
        "| floor Init of the same two processes on a minimal std::net API | {:.2} ms |",
        ms(floor_init)
    );
    println!(
        "| **added by the sandbox**: median over runs of (Init Duration − the floor run next to it) | **{added_median_ms:.2} ms** |"
    );
    println!(
        "| (the difference of the two medians) | {:.2} ms |",
        ms(lext_init) - ms(floor_init)
    );
    println!("| for context: spawn `lext run --serve` → first invoke answered over HTTP (lext's own start, Init, one invoke) | {:.2} ms |", ms(lext_first));
    println!("| for context: the whole `lext run --invoke 1` command, spawn → exit (adds the spindown shutdown) | {:.2} ms |", ms(lext_wall));
    println!();
    println!("Telemetry ({} lines written by the function during one invoke; subscriber of `function` records, buffering maxItems 1000, maxBytes 262144, timeoutMs 25):", o.lines);
    println!();
    println!("| run | delivered / expected | batches (bytes) | function writes its lines | first line → its last line's record received | last line → its record received |");
    println!("|---|---|---|---|---|---|");
    for (label, t) in &tels {
        // Without every line there is no last record to time.
        let (total, tail) = if t.delivered == t.expect {
            (
                format!("{:.1} ms", ms(t.total)),
                format!("{:.1} ms", ms(t.tail)),
            )
        } else {
            ("not all delivered".to_owned(), "–".to_owned())
        };
        println!(
            "| {label} | {} / {} (missing {}, duplicates {}, logsDropped {}) | {} ({} B) | {:.1} ms | {total} | {tail} |",
            t.delivered, t.expect, t.missing, t.duplicates, t.logs_dropped_events, t.batches, t.bytes,
            ms(t.write)
        );
    }
    println!(
        "| floor: the same lines through a pipe into `cat > /dev/null` | – | – | {:.1} ms | – | – |",
        ms(pipe)
    );
    println!(
        "| floor: the same bytes in the same number of messages over loopback, each acknowledged | – | {} | – | – | {:.1} ms |",
        tels[0].1.batches,
        ms(bulk)
    );
    for (label, t) in &tels {
        ensure!(
            t.delivered == t.expect && t.missing == 0,
            "telemetry ({label}): {} of {} lines delivered",
            t.delivered,
            t.expect
        );
    }
    Ok(())
}

/// One round of the reference peer; it prints its samples as JSON.
fn simulator(
    peer: &Path,
    lext_bin: &Path,
    extension: &Path,
    o: &Options,
    external: bool,
) -> Result<Series> {
    let mut cmd = Command::new(peer);
    cmd.arg("--extension")
        .arg(extension)
        .args(["--invokes", &o.invokes.to_string()])
        .args(["--warmup", &o.warmup.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if external {
        cmd.arg("--external-runtime")
            .arg(lext_bin)
            .args(["--runtime-arg", "__echo-runtime"]);
    }
    let out = cmd.output().context("running the lambda-simulator peer")?;
    ensure!(
        out.status.success(),
        "the lambda-simulator peer failed ({})",
        out.status
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the lambda-simulator peer's output")?;
    let latencies_ns = v["latencies_ns"]
        .as_array()
        .context("latencies_ns")?
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    Ok(Series {
        latencies_ns,
        elapsed: Duration::from_nanos(v["elapsed_ns"].as_u64().context("elapsed_ns")?),
    })
}

/// Pins the calling thread (before any other is started, so the whole
/// process) to the CPU it runs on; children inherit the mask.
///
/// Why it is an option: a sequential invoke runs one process at a time, so
/// one CPU suffices, and on this 2-vCPU VM each wake-up that crosses to the
/// other vCPU costs tens of microseconds. Unpinned runs are bimodal (each
/// `lext run` settles at about 65 or about 135 µs p50 depending on where
/// the scheduler puts its threads); pinned runs measure the code's own cost
/// steadily. Both are reported.
fn pin_to_current_cpu() -> Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu).context("sched_getcpu failed")?;
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set;
    // CPU_SET writes inside it (cpu is below CPU_SETSIZE, checked by libc's
    // macro); sched_setaffinity reads size_of::<cpu_set_t>() bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    ensure!(
        rc == 0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
    Ok(cpu)
}
