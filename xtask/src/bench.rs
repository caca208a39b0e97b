//! `bench-extension`: start-up, round-trip and memory figures of extension
//! binaries, measured side by side against a std-only floor.
//!
//! This module owns the benchmark procedure of issue 2. For each binary and
//! each run: bind nothing new (one listener serves every run), spawn the
//! binary with `AWS_LAMBDA_RUNTIME_API` pointing at the listener, time
//! spawn → register and spawn → first `/event/next`, deliver K INVOKEs and
//! time each INVOKE → next `/event/next`, deliver SHUTDOWN and time
//! SHUTDOWN → exit, and read the child's peak RSS from `wait4`. Binaries are
//! measured interleaved (run i of every binary before run i+1), so a noisy
//! moment on the shared 2-core machine hits all of them alike. Medians are
//! printed as a Markdown table ready for BENCHMARKS.md.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::api::{Session, NEXT_PATH, REGISTER_PATH};

/// One binary under test and every sample taken of it. Samples are kept
/// raw (not summarised per run) so that the medians are over all of them.
#[derive(Debug)]
struct Subject {
    label: String,
    path: PathBuf,
    size: u64,
    register: Vec<Duration>,
    first_next: Vec<Duration>,
    round_trip: Vec<Duration>,
    shutdown: Vec<Duration>,
    rss_kb: Vec<u64>,
    hwm_kb: Vec<u64>,
    minflt: Vec<u64>,
}

pub(crate) fn main(args: &[String]) -> Result<()> {
    // 31 runs: the issue asks for at least 15; an odd count makes the
    // median one real sample. 20 invokes per run give 620 round trips,
    // enough for a stable median of a few-microsecond figure.
    let mut runs = 31usize;
    let mut invokes = 20usize;
    let mut build = true;
    let mut official = false;
    let mut peers: Vec<(String, PathBuf)> = Vec::new();
    let mut floor_path: Option<PathBuf> = None;
    let mut port_path: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            "--invokes" => invokes = it.next().context("--invokes K")?.parse()?,
            "--no-build" => build = false,
            "--with-official" => official = true,
            "--floor" => floor_path = Some(it.next().context("--floor PATH")?.into()),
            "--port" => port_path = Some(it.next().context("--port PATH")?.into()),
            "--peer" => peers.push(peer(it.next())?),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    ensure!(
        runs >= 1 && invokes >= 1,
        "--runs and --invokes must be at least 1"
    );

    // The target directory is needed only for what is built here.
    let needs_target = official || floor_path.is_none() || port_path.is_none();
    let target = if needs_target {
        crate::cargo::target_dir()?
    } else {
        PathBuf::new()
    };
    let release = target.join("release");
    if build && port_path.is_none() {
        crate::cargo::build_release(&[
            "-p",
            "rust-example-extension",
            "--bin",
            "rust-example-extension",
        ])?;
    }
    if build && floor_path.is_none() {
        crate::cargo::build_release(&["-p", "xtask", "--bin", "floor-extension"])?;
    }
    let mut subjects = vec![
        subject(
            "std-only floor (hand-written HTTP)",
            floor_path.unwrap_or_else(|| release.join("floor-extension")),
        )?,
        subject(
            "rust-example-extension (lext-extension, blocking)",
            port_path.unwrap_or_else(|| release.join("rust-example-extension")),
        )?,
    ];
    if official {
        // The peer is its own workspace (see its Cargo.toml), built into a
        // separate target directory so that its dependency versions never
        // mix with the workspace's lock file.
        let peer_target = target.join("peers");
        if build {
            crate::cargo::build_peer("official-extension", &peer_target, &[])?;
        }
        subjects.push(subject(
            "official lambda-extension (tokio current-thread, LTO, stripped)",
            peer_target.join("release/official-extension"),
        )?);
    }
    for (name, path) in peers {
        subjects.push(subject(&name, path)?);
    }

    // One listener for every run: binding per run would add a variable
    // (TIME_WAIT, port choice) that is not the extension's.
    let listener = TcpListener::bind("127.0.0.1:0").context("bind the benchmark API")?;
    let api = listener.local_addr()?.to_string();
    eprintln!("benchmark API on {api}; {runs} runs x {invokes} invokes per binary");
    // One warm-up run each: page cache and the dynamic loader's caches.
    for s in &mut subjects {
        run_once(&listener, &api, s, invokes, false)?;
    }
    // Interleaved: run i of every binary, then run i+1. A burst of load
    // from other work on the machine then hits every binary alike instead of
    // spoiling one binary's whole series.
    for _ in 0..runs {
        for s in &mut subjects {
            run_once(&listener, &api, s, invokes, true)?;
        }
    }
    print_table(&subjects, runs, invokes);
    Ok(())
}

fn subject(label: &str, path: PathBuf) -> Result<Subject> {
    let size = std::fs::metadata(&path)
        .with_context(|| format!("{} (build it first, or drop --no-build)", path.display()))?
        .len();
    Ok(Subject {
        label: label.to_owned(),
        path,
        size,
        register: Vec::new(),
        first_next: Vec::new(),
        round_trip: Vec::new(),
        shutdown: Vec::new(),
        rss_kb: Vec::new(),
        hwm_kb: Vec::new(),
        minflt: Vec::new(),
    })
}

/// One process lifetime: register, K invokes, shutdown.
fn run_once(
    listener: &TcpListener,
    api: &str,
    s: &mut Subject,
    invokes: usize,
    record: bool,
) -> Result<()> {
    let spawned = Instant::now();
    // A clean environment, as Lambda gives extensions only its own
    // variables; output to /dev/null so that the terminal's speed is not
    // measured (the port's writes are still made, one per event).
    let mut command = Command::new(&s.path);
    // Fork, then exec; never posix_spawn/vfork. Why: Linux folds the peak
    // RSS of the address space that exec replaces into the process's
    // ru_maxrss. With posix_spawn (CLONE_VM) that address space is this
    // benchmark's own (over 2 MB), so every extension would report at least
    // the benchmark's size. A forked child starts with only its copied
    // anonymous pages (well under an extension's RSS), so ru_maxrss is the
    // extension's own peak. std uses fork+exec whenever a pre_exec hook is
    // set; this one does nothing.
    // SAFETY: the closure performs no allocation, locking or other call
    // that is unsafe between fork and exec.
    unsafe {
        command.pre_exec(|| Ok(()));
    }
    let child = command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {}", s.path.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut session = Session::new(listener, pid);
    // From here on, any early return must still reap the child.
    let result = (|| -> Result<(Duration, Duration, Vec<Duration>, u64, Instant)> {
        let req = session.next_request()?;
        ensure!(
            req.path == REGISTER_PATH,
            "expected register, got {}",
            req.path
        );
        let register = req.at - spawned;
        session.answer_register()?;
        let req = session.next_request()?;
        ensure!(
            req.path == NEXT_PATH,
            "expected event/next, got {}",
            req.path
        );
        let first_next = req.at - spawned;
        let mut trips = Vec::with_capacity(invokes);
        for i in 0..invokes {
            let body = format!(
                r#"{{"eventType":"INVOKE","deadlineMs":1700000000000,"requestId":"00000000-0000-4000-8000-{i:012}","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:bench","tracing":{{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"}}}}"#
            );
            let sent = session.respond("", &body)?;
            let req = session.next_request()?;
            ensure!(
                req.path == NEXT_PATH,
                "expected event/next, got {}",
                req.path
            );
            trips.push(req.at - sent);
        }
        // The extension is now blocked in its last poll: read its own
        // high-water RSS as a cross-check of wait4's figure.
        let hwm = vm_hwm_kb(pid).unwrap_or(0);
        // SHUTDOWN to exit ends when wait4 reaps the child: it includes the
        // process teardown, which is what Lambda waits for too.
        let sent = session.respond(
            "",
            r#"{"eventType":"SHUTDOWN","deadlineMs":1700000002000,"shutdownReason":"spindown"}"#,
        )?;
        Ok((register, first_next, trips, hwm, sent))
    })();
    if result.is_err() {
        // A stuck or misbehaving binary: stop it so wait4 below returns.
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let (status, rss_kb, minflt, exited) = wait4(pid)?;
    let (register, first_next, trips, hwm_kb, shutdown_sent) =
        result.with_context(|| format!("run of {}", s.path.display()))?;
    ensure!(
        status == 0,
        "{} exited with wait status {status}",
        s.path.display()
    );
    if record {
        s.register.push(register);
        s.first_next.push(first_next);
        s.round_trip.extend(trips);
        s.shutdown.push(exited - shutdown_sent);
        s.rss_kb.push(rss_kb);
        s.hwm_kb.push(hwm_kb);
        s.minflt.push(minflt);
    }
    Ok(())
}

/// The value of a `--peer NAME=PATH` argument.
pub(crate) fn peer(spec: Option<&String>) -> Result<(String, PathBuf)> {
    let spec = spec.context("--peer NAME=PATH")?;
    let (name, path) = spec.split_once('=').context("--peer NAME=PATH")?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// `VmHWM` of a live process, in KiB: the peak RSS of its current address
/// space (after exec), from /proc.
pub(crate) fn vm_hwm_kb(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reaps the child with wait4(2): its wait status, peak RSS in KiB, minor
/// page faults, and the instant it was reaped.
pub(crate) fn wait4(pid: libc::pid_t) -> Result<(i32, u64, u64, Instant)> {
    let mut status = 0;
    // SAFETY: `usage` is plain old data that wait4 fills in; zeroed is a
    // valid value for it. `status` is a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pointers are to live locals; pid is our own child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let at = Instant::now();
    // Linux reports ru_maxrss in KiB.
    Ok((
        status,
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
        u64::try_from(usage.ru_minflt).unwrap_or(0),
        at,
    ))
}

pub(crate) fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn median_u64(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[allow(clippy::print_stdout)] // The report is this task's output.
fn print_table(subjects: &[Subject], runs: usize, invokes: usize) {
    println!(
        "medians over {runs} runs ({} round trips) per binary\n",
        runs * invokes
    );
    println!("| binary | stripped size | spawn to register | spawn to first next | invoke round trip | SHUTDOWN to exit | peak RSS (wait4) | VmHWM at last poll | minor faults |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in subjects {
        println!(
            "| {} | {} B ({:.0} KB) | {} | {} | {} | {} | {:.2} MB ({} KiB) | {} KiB | {} |",
            s.label,
            s.size,
            s.size as f64 / 1000.0,
            ms(median(&s.register)),
            ms(median(&s.first_next)),
            us(median(&s.round_trip)),
            ms(median(&s.shutdown)),
            median_u64(&s.rss_kb) as f64 * 1024.0 / 1e6,
            median_u64(&s.rss_kb),
            median_u64(&s.hwm_kb),
            median_u64(&s.minflt),
        );
    }
    if let [floor, port, ..] = subjects {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!();
        println!(
            "rust-example-extension vs floor: spawn to first next {:.2}x (target <= 1.15x), round trip {:.2}x (target <= 1.3x)",
            ratio(median(&port.first_next), median(&floor.first_next)),
            ratio(median(&port.round_trip), median(&floor.round_trip)),
        );
        println!(
            "rust-example-extension: size {} B (target <= 600 KB = 614400 B), peak RSS {:.2} MB (target <= 2.3 MB)",
            port.size,
            median_u64(&port.rss_kb) as f64 * 1024.0 / 1e6,
        );
    }
}
