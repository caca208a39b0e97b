//! Driving the release `lext` binary: `lext run --serve` for the invoke
//! figures, `lext run --invoke 1` for the cold start.
//!
//! The server is started with `--serve 127.0.0.1:0`; the address it bound
//! is read from its "serving the Invoke API on http://ADDR" line on stderr,
//! so there is no port race. stdout (START/END/REPORT and the processes'
//! lines, one `write` each) goes to /dev/null: the cheapest sink, and the
//! same as the reference peer's. It is stopped with SIGTERM (a spindown
//! shutdown), then SIGKILL if it has not exited within 10 s, so that no
//! process is left behind even when a run fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::http::Client;
use super::stats::Series;

/// The function name the benchmark gives `lext run`.
pub(crate) const FUNCTION: &str = "bench";

/// A running `lext run --serve`.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The last lines of its stderr, for error messages.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `lext run --serve 127.0.0.1:0 --extension EXT [extra...]` and
    /// waits until the Invoke API is bound (Init may still be running: the
    /// first invoke waits for it, and is part of the warm-up).
    pub(crate) fn start(lext: &Path, extension: &Path, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(lext)
            .args(["run", "--serve", "127.0.0.1:0", "--function-name", FUNCTION])
            .arg("--extension")
            .arg(extension)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} run --serve", lext.display()))?;
        let stderr = child.stderr.take().context("lext's stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = lines.clone();
        // Drains stderr for the server's whole life (a full pipe would
        // block lext) and hands over the address when it appears.
        thread::spawn(move || {
            let marker = "serving the Invoke API on http://";
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.split(marker).nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                if let Ok(mut keep) = keep.lock() {
                    if keep.len() >= 50 {
                        keep.remove(0);
                    }
                    keep.push(line);
                }
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: lines,
        };
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => bail!(
                "lext run --serve did not report its address within 30 s; stderr:\n{}",
                server.stderr_tail()
            ),
        };
        server.addr = addr
            .parse()
            .with_context(|| format!("lext's Invoke API address {addr:?}"))?;
        Ok(server)
    }

    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 10 s for the spindown; SIGKILL after that.
    /// Returns whether it exited by itself.
    pub(crate) fn stop(mut self) -> Result<bool> {
        let clean = terminate(&mut self.child, Duration::from_secs(10))?;
        Ok(clean)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Already reaped by `stop` → these fail harmlessly.
        let _ = terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and reap. `Ok(true)` when the
/// child exited by itself.
fn terminate(child: &mut Child, grace: Duration) -> Result<bool> {
    if child.try_wait()?.is_some() {
        return Ok(true);
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it
    // cannot have been reused); no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        thread::sleep(Duration::from_millis(5));
    }
    child.kill()?;
    child.wait()?;
    Ok(false)
}

/// `warmup` then `n` sequential invokes of `{}` over one kept-alive
/// connection, each sent `gap` after the previous answer (zero: at once);
/// every answer is checked (200, no function error, the echo).
pub(crate) fn invokes(addr: SocketAddr, warmup: usize, n: usize, gap: Duration) -> Result<Series> {
    let mut client = Client::connect(addr).context("connecting to lext's Invoke API")?;
    let path = format!("/2015-03-31/functions/{FUNCTION}/invocations");
    let headers = [("Content-Type", "application/json")];
    let mut latencies = Vec::with_capacity(n);
    let mut started = Instant::now();
    for i in 0..warmup + n {
        if i == warmup {
            started = Instant::now();
        }
        if !gap.is_zero() {
            thread::sleep(gap);
        }
        let t = Instant::now();
        let r = client
            .send("POST", &path, &headers, b"{}")
            .with_context(|| format!("invoke {i}"))?;
        let latency = t.elapsed();
        ensure!(
            r.status == 200 && r.head.header("X-Amz-Function-Error").is_none() && r.body == b"{}",
            "invoke {i}: status {}, function error {:?}, body {:?}",
            r.status,
            r.head.header("X-Amz-Function-Error"),
            String::from_utf8_lossy(&r.body)
        );
        if i >= warmup {
            latencies.push(latency.as_nanos() as u64);
        }
    }
    Ok(Series {
        latencies_ns: latencies,
        elapsed: started.elapsed(),
    })
}

/// Spawn of `lext run --serve` → its first invoke answered (lext's own
/// start, Init, and one invoke), over a fresh connection.
pub(crate) fn first_answer(lext: &Path, extension: &Path) -> Result<Duration> {
    let t = Instant::now();
    let server = Server::start(lext, extension, &[])?;
    let series = invokes(server.addr, 0, 1, Duration::ZERO)?;
    let elapsed = t.elapsed();
    ensure!(series.latencies_ns.len() == 1, "one invoke expected");
    server.stop()?;
    Ok(elapsed)
}

/// One cold start: `lext run --invoke 1` with the extension; returns the
/// REPORT line's Init Duration and the wall time of the whole command.
pub(crate) fn cold_start(lext: &Path, extension: &Path) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    let out = Command::new(lext)
        .args(["run", "--invoke", "1", "--function-name", FUNCTION])
        .arg("--extension")
        .arg(extension)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running lext run --invoke 1")?;
    let wall = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "lext run --invoke 1 failed ({}):\n{}\n{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let init = stdout
        .lines()
        .filter(|l| l.contains("REPORT RequestId:"))
        .find_map(|l| {
            let rest = l.split("Init Duration: ").nth(1)?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| format!("no REPORT line with Init Duration in:\n{stdout}"))?;
    Ok((Duration::from_secs_f64(init / 1000.0), wall))
}
