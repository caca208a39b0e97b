//! The floors: what loopback and process start cost by themselves, timed in
//! the same run as lext so that each figure has its reference beside it.
//!
//! - [`round_trips`]: a std::net echo server (one thread) and client on
//!   127.0.0.1, one kept-alive connection, fixed-size messages; each sample
//!   is a chain of K sequential round trips (K = the round trips an invoke
//!   needs).
//! - [`init`]: the least any environment must do to start the same
//!   extension and runtime in Lambda's order: spawn the extension, answer
//!   its register call, spawn the runtime, and wait until the runtime is in
//!   `/runtime/invocation/next` and the extension in `/event/next`. Served
//!   by a minimal thread-per-connection API on std::net. The time is the
//!   processes' own init plus a few loopback hops.
//! - [`pipe`]: the telemetry function's lines through a pipe to `cat`.
//! - [`bulk`]: the same number of bytes in the same number of POST-sized
//!   messages over one loopback connection, each acknowledged (what
//!   telemetry delivery cannot go below).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::http::ServerConn;

/// Message size of the round-trip floor: about an INVOKE event or a small
/// request head.
pub(crate) const MESSAGE: usize = 256;

/// `chains` samples of `k` sequential round trips each (after a warm-up),
/// in nanoseconds per chain.
pub(crate) fn round_trips(chains: usize, k: usize) -> Result<Vec<u64>> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind the echo floor")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                // The client is done.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = TcpStream::connect(addr).context("connect to the echo floor")?;
    c.set_nodelay(true)?;
    let msg = [b'x'; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    let mut samples = Vec::with_capacity(chains);
    for i in 0..chains + chains / 10 {
        let t = Instant::now();
        for _ in 0..k {
            c.write_all(&msg)?;
            c.read_exact(&mut buf)?;
        }
        // The first tenth is the warm-up.
        if i >= chains / 10 {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(c);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("echo floor thread panicked"))?
        .context("echo floor server")?;
    Ok(samples)
}

/// What the floor's API server saw.
enum Seen {
    Register,
    RuntimeNext,
    ExtensionNext,
}

/// Kills a child on every path out of [`init`].
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One floor Init: spawn `extension`, answer its register call, spawn the
/// runtime, wait for both long polls. Returns spawn of the extension →
/// both in their long poll.
pub(crate) fn init(extension: &Path, runtime: &Path, runtime_args: &[&str]) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind the init floor")?;
    let api = listener.local_addr()?.to_string();
    let (tx, rx) = mpsc::channel::<Seen>();
    // Accept loop: one thread per connection. It ends when the listener
    // thread is the only holder left and the process exits; the threads
    // stop when their connection closes (the children are killed).
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || serve_floor(stream, &tx));
        }
    });
    let env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_REGION", "us-east-1")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let wait = |what: &str| -> Result<Seen> {
        rx.recv_timeout(Duration::from_secs(10))
            .with_context(|| format!("init floor: no {what} within 10 s"))
    };
    let started = Instant::now();
    let mut cmd = Command::new(extension);
    env(&mut cmd);
    let _ext = Reap(cmd.spawn().context("spawn the extension (init floor)")?);
    if !matches!(wait("register")?, Seen::Register) {
        bail!("init floor: expected the register call first");
    }
    let mut cmd = Command::new(runtime);
    cmd.args(runtime_args);
    env(&mut cmd);
    let _rt = Reap(cmd.spawn().context("spawn the runtime (init floor)")?);
    let (mut runtime_next, mut ext_next) = (false, false);
    while !(runtime_next && ext_next) {
        match wait("long poll")? {
            Seen::RuntimeNext => runtime_next = true,
            Seen::ExtensionNext => ext_next = true,
            Seen::Register => bail!("init floor: a second register call"),
        }
    }
    Ok(started.elapsed())
}

fn serve_floor(stream: TcpStream, tx: &mpsc::Sender<Seen>) {
    let Ok(mut conn) = ServerConn::new(stream) else {
        return;
    };
    while let Ok(Some(req)) = conn.read() {
        let seen = if req.method == "POST" && req.path.ends_with("/extension/register") {
            // As Lambda: a register call must name the extension.
            if req.head.header("Lambda-Extension-Name").is_none() {
                let _ = conn.respond(403, &[], b"");
                return;
            }
            let body =
                br#"{"functionName":"bench","functionVersion":"$LATEST","handler":"bootstrap"}"#;
            let ok = conn.respond(
                200,
                &[
                    (
                        "Lambda-Extension-Identifier",
                        "6b3b9d4c-1b0b-4d8e-9f00-000000000001",
                    ),
                    ("Content-Type", "application/json"),
                ],
                body,
            );
            if ok.is_err() {
                return;
            }
            Seen::Register
        } else if req.path.ends_with("/runtime/invocation/next") {
            Seen::RuntimeNext
        } else if req.path.ends_with("/extension/event/next") {
            Seen::ExtensionNext
        } else {
            let _ = conn.respond(404, &[], b"");
            continue;
        };
        // Long polls are never answered: the floor ends when both arrive.
        if tx.send(seen).is_err() {
            return;
        }
    }
}

/// Writes the same `lines` lines as the telemetry function (`bench-line
/// <i>`, 64 KiB buffered) into the stdin pipe of `cat > /dev/null`, and
/// returns the time until cat has read them all and exited: what writing
/// them costs when the reader is as fast as a pipe allows.
pub(crate) fn pipe(lines: u64) -> Result<Duration> {
    let t = Instant::now();
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("spawn cat (pipe floor)")?;
    {
        let stdin = cat.stdin.take().context("cat's stdin")?;
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdin);
        for i in 0..lines {
            writeln!(out, "bench-line {i}")?;
        }
        out.flush()?;
    }
    let status = cat.wait()?;
    ensure!(status.success(), "cat failed ({status})");
    Ok(t.elapsed())
}

/// Sends `total` bytes as `messages` equal messages over one loopback
/// connection, each acknowledged by one byte; returns the wall time.
pub(crate) fn bulk(messages: usize, total: usize) -> Result<Duration> {
    let messages = messages.max(1);
    let size = total.div_ceil(messages).max(1);
    let listener = TcpListener::bind("127.0.0.1:0").context("bind the bulk floor")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        for _ in 0..messages {
            s.read_exact(&mut buf)?;
            s.write_all(b"k")?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr).context("connect to the bulk floor")?;
    c.set_nodelay(true)?;
    let msg = vec![b'x'; size];
    let mut ack = [0u8; 1];
    let t = Instant::now();
    for _ in 0..messages {
        c.write_all(&msg)?;
        c.read_exact(&mut ack)?;
    }
    let elapsed = t.elapsed();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("bulk floor thread panicked"))?
        .context("bulk floor server")?;
    Ok(elapsed)
}
