//! A minimal Extensions API for the benchmark, on std::net.
//!
//! This module owns the server side of one benchmark run: accept the
//! extension's connection, read requests, answer register and `/event/next`,
//! and time when each request arrives. It is written for low overhead, not
//! for fidelity (that is lext-sandbox's job): one thread, requests read with
//! one `read` each in the common case, answers written with one `write`.
//! Clients that open a new connection per request are served too.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One request as the benchmark needs it: when it was complete, its method
/// and path, and its body.
#[derive(Debug)]
pub(crate) struct Request {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// The Extensions API paths the benchmarks serve.
pub(crate) const REGISTER_PATH: &str = "/2020-01-01/extension/register";
pub(crate) const NEXT_PATH: &str = "/2020-01-01/extension/event/next";

/// How long the benchmark waits for an extension to connect or to send its
/// next request before it gives up (a dead or stuck binary must not hang it).
pub(crate) const STALL: Duration = Duration::from_secs(10);

/// The server end of the conversation with one extension process.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    listener: &'a TcpListener,
    child: libc::pid_t,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl<'a> Session<'a> {
    /// A session with the extension process `child` (not reaped here).
    pub(crate) fn new(listener: &'a TcpListener, child: libc::pid_t) -> Self {
        Self {
            listener,
            child,
            conn: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Waits for the next complete request, accepting a new connection if
    /// the client closed the previous one.
    pub(crate) fn next_request(&mut self) -> Result<Request> {
        loop {
            if self.conn.is_none() {
                wait_for_connection(self.listener.as_raw_fd(), self.child, STALL)
                    .context("waiting for the extension to connect")?;
                let (stream, _) = self.listener.accept().context("accept")?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(STALL))?;
                self.conn = Some(stream);
                self.buf.clear();
            }
            if let Some(req) = self.parse_buffered()? {
                return Ok(req);
            }
            let mut chunk = [0u8; 4096];
            let n = match self.conn.as_mut() {
                Some(stream) => match stream.read(&mut chunk) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        bail!("the extension sent no request for {STALL:?}")
                    }
                    Err(_) => 0,
                },
                None => 0,
            };
            if n == 0 {
                self.conn = None;
                continue;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Takes one complete request off the front of the buffer. The instant
    /// is taken here, when the last byte is in, so that every binary's
    /// figure ends at the same point of its request.
    fn parse_buffered(&mut self) -> Result<Option<Request>> {
        let Some((head, body)) = complete_message(&self.buf) else {
            return Ok(None);
        };
        let at = Instant::now();
        let mut words = head.split(' ');
        let method = words.next().map(str::to_owned).unwrap_or_default();
        let path = words.next().map(str::to_owned).unwrap_or_default();
        let end = body.end;
        let body = self.buf[body].to_vec();
        self.buf.drain(..end);
        Ok(Some(Request {
            at,
            method,
            path,
            body,
        }))
    }

    /// Answers register as Lambda does: the extension's identifier, and the
    /// function's name, version and handler.
    pub(crate) fn answer_register(&mut self) -> Result<Instant> {
        self.respond(
            "Lambda-Extension-Identifier: 6b1e5b2c-8a4e-4c6f-9d0b-1f2e3d4c5b6a\r\n",
            r#"{"functionName":"bench","functionVersion":"$LATEST","handler":"bench.handler"}"#,
        )
    }

    /// Writes a 200 answer with a JSON body and extra headers; returns the
    /// instant just before the write (when the answer is "delivered").
    pub(crate) fn respond(&mut self, extra_headers: &str, body: &str) -> Result<Instant> {
        let Some(stream) = self.conn.as_mut() else {
            bail!("no connection to answer on");
        };
        // One write for head and body: an answer split over two segments
        // would let the client's read return early and add a wake-up.
        let msg = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let at = Instant::now();
        stream.write_all(msg.as_bytes()).context("write answer")?;
        Ok(at)
    }
}

/// Waits until the listener `fd` has a connection to accept, at most
/// `timeout`, and fails early if the child exits first.
fn wait_for_connection(fd: i32, child: libc::pid_t, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, 20) };
        if rc > 0 {
            return Ok(());
        }
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("poll");
            }
        }
        if has_exited(child) {
            bail!("the extension exited without connecting");
        }
        if started.elapsed() > timeout {
            bail!("no connection within {timeout:?}");
        }
    }
}

/// Whether `child` has exited, without reaping it (WNOWAIT), so that the
/// caller's wait4 still gets its resource usage.
/// The Content-Length an HTTP head (start line, then header lines) gives,
/// 0 without one.
/// The head of the HTTP message at the start of `buf` (request or answer,
/// framed by Content-Length), and where its body lies in `buf`, once all of
/// it is there.
pub(crate) fn complete_message(buf: &[u8]) -> Option<(String, std::ops::Range<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body = end + 4..end + 4 + content_length(&head);
    (buf.len() >= body.end).then_some((head, body))
}

fn content_length(head: &str) -> usize {
    head.lines()
        .skip(1)
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

pub(crate) fn has_exited(child: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain old data; zeroed is valid. waitid with
    // WNOHANG|WNOWAIT only inspects our own child.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            child as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}
